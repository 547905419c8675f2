// gfn.h — the one public header of gfn.c.
//
// gfn.c fine-tunes a GPT-2-style language model as a GFlowNet policy (Hu et al., ICLR 2024,
// "Amortizing intractable inference in large language models"), in C with libc and libm only.
// Sections, in the order the files depend on each other (each uses only the ones above it):
//   1. util.c        errors, seeded RNG, little-endian bytes, files, a small JSON reader
//   2. model.c       GPT-2 forward/backward, matmul, LoRA, AdamW, checkpoints, HF / PEFT I/O
//   3. tokenizer.c   byte-level BPE: train, encode, decode, GPT-2's vocabulary
//   4. gfn.c         objectives, trajectories, replay, policy, sampler, exact distributions, training
//   5. eval.c        evaluation shared by the tasks: text metrics, Markdown tables, SVG plots
//   6. tasks/*.c     the tasks (toy, rng, arithmetic)
//   7. pretrain.c    pretraining, the token cache, the corpus recipe
//   8. main.c        the command line and the task registry
#ifndef GFN_H
#define GFN_H
// 64-bit file offsets and inode numbers on 32-bit Linux (i686, armhf): without it stat() and
// readdir() fail with EOVERFLOW on file systems that hand out inode numbers above 2^32, and a
// results folder reads as empty. Every .c file includes this header before any system header.
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// ----------------------------------------------------------------------------------------------
// 1. util.c: utilities

// Errors: functions that can fail on bad input return 0 on success and nonzero on failure,
// after writing a message that names the file and the problem into a caller's buffer.
#define GFN_ERR_LEN 512
typedef struct { char msg[GFN_ERR_LEN]; } GfnError;
void gfn_error_set(GfnError *err, const char *fmt, ...);
// malloc / calloc that exit with a message instead of returning NULL.
void *gfn_malloc(size_t n);
void *gfn_calloc(size_t count, size_t size);

// Seeded RNG (xoshiro-style, our own): the same seed gives the same bits on every platform.
typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *rng, uint64_t seed);
uint64_t rng_u64(Rng *rng);
float rng_uniform(Rng *rng);             // [0, 1), 24 random bits
float rng_normal(Rng *rng);              // standard normal (Box-Muller)
int rng_below(Rng *rng, int n);          // uniform integer in [0, n)

// Call first in main(): sets OMP_WAIT_POLICY=passive (unless the user set it) by running the
// program again, so that threads waiting for each other sleep instead of spinning (model.c says
// why). Does nothing without OpenMP or where the program cannot re-run itself.
void gfn_threads_init(char **argv);

// Little-endian reads and writes, byte by byte, so big-endian hosts read the same files.
uint16_t le_u16(const unsigned char *p);
uint32_t le_u32(const unsigned char *p);
uint64_t le_u64(const unsigned char *p);
float le_f32(const unsigned char *p);
void put_le_u32(unsigned char *p, uint32_t v);
void put_le_u64(unsigned char *p, uint64_t v);
void put_le_f32(unsigned char *p, float v);
float half_to_float(uint16_t h);          // IEEE binary16
float bfloat16_to_float(uint16_t h);      // bfloat16
uint16_t float_to_half(float f);          // round to nearest even

// Whole-file read; returns NULL and sets err on failure. *len gets the size in bytes.
unsigned char *read_file(const char *path, size_t *len, GfnError *err);
// The shared datasets folder: $GFN_DATA, ./data or ../shared/data; NULL when absent.
const char *gfn_data_dir(void);
// A growing text buffer (zero-initialise it): s is NUL-terminated, len bytes; free(s).
typedef struct { char *s; size_t len, cap; } Text;
void text_append(Text *t, const char *bytes, size_t n);   // n bytes at the end of t
void text_appendf(Text *t, const char *fmt, ...);          // printf at the end of t
// Atomic write: write to PATH.tmp, flush, close, rename over PATH. Never a half-written file.
int write_file_atomic(const char *path, const void *data, size_t len, GfnError *err);
// The same in two halves, for files streamed out: atomic_begin opens PATH.tmp (*tmp gets its
// name); atomic_finish flushes, closes and renames it over PATH, or removes it when ok == 0.
FILE *atomic_begin(const char *path, char **tmp, GfnError *err);
int atomic_finish(FILE *f, char *tmp, const char *path, int ok, GfnError *err);
// FNV-1a 64 of data[0..len), continuing from hash (start with FNV_OFFSET): identifies inputs and
// checks saved files (not cryptographic).
#define FNV_OFFSET 0xcbf29ce484222325ull
uint64_t fnv1a64(const void *data, size_t len, uint64_t hash);
// "PATH" + suffix, malloc'ed.
char *path_with_suffix(const char *path, const char *suffix);
// Removes PATH.tmp, left by a write killed before its rename, when it is a regular file; 1 if removed.
int remove_stale_temp(const char *path);
// Wall-clock seconds, for progress lines and throughput figures.
double gfn_wall_seconds(void);
// 0 when PATH may be written as an output (absent, or a regular file); else an error: a symlink,
// a device node or a directory is never replaced.
int output_path_check(const char *path, GfnError *err);
// 0 when all n values are finite; else an error naming the file and the tensor.
int check_finite(const float *x, size_t n, const char *path, const char *tensor, GfnError *err);

// A small JSON reader (RFC 8259), enough for config.json, safetensors headers, PEFT configs,
// GPT-2's encoder.json and the task data files. Parsing builds a tree of nodes in one arena.
typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;
typedef struct Json Json;
struct Json {
    JsonType type;
    double number;        // JSON_NUMBER, and JSON_BOOL as 0/1
    char *string;         // JSON_STRING: UTF-8, NUL-terminated (may hold NUL bytes: see len)
    size_t len;           // JSON_STRING: bytes; JSON_ARRAY / JSON_OBJECT: number of children
    char *key;            // the member name when this node is an object member, else NULL
    size_t key_len;
    Json *child;          // first element / member
    Json *next;           // next sibling
};
// Parses text[0..len); returns the root or NULL with err set ("what: offset N: problem").
// `what` names the source in error messages. Free with json_free.
Json *json_parse(const char *text, size_t len, const char *what, GfnError *err);
void json_free(Json *root);
Json *json_get(const Json *object, const char *key);   // member by name, or NULL
Json *json_at(const Json *array, size_t index);        // element by index, or NULL

// ----------------------------------------------------------------------------------------------
// 2. model.c: the model
//
// GPT-2 exactly as Hugging Face's GPT2LMHeadModel computes it: x = wte[id] + wpe[pos]; per layer
// x += attn(ln_1(x)); x += mlp(ln_2(x)); logits = ln_f(x) · wteᵀ (tied head). LayerNorm eps 1e-5,
// tanh-GELU, causal attention with biases. Weights are kept in HF's Conv1D layout [in, out], so
// y = x · W + b, and every tensor lives in one contiguous block of floats.

typedef struct {
    int vocab_size;   // V
    int max_seq_len;  // maxT (HF n_positions)
    int n_layer;      // L
    int n_head;       // NH
    int n_embd;       // C
} GPTConfig;

#define GPT_NUM_TENSORS 16
typedef struct {
    float *wte;       // (V, C)       token embeddings, also the LM head
    float *wpe;       // (maxT, C)    position embeddings
    float *ln1w;      // (L, C)
    float *ln1b;      // (L, C)
    float *qkvw;      // (L, C, 3C)   attn.c_attn  [in, out]; outputs are q, k, v
    float *qkvb;      // (L, 3C)
    float *attprojw;  // (L, C, C)    attn.c_proj
    float *attprojb;  // (L, C)
    float *ln2w;      // (L, C)
    float *ln2b;      // (L, C)
    float *fcw;       // (L, C, 4C)   mlp.c_fc
    float *fcb;       // (L, 4C)
    float *fcprojw;   // (L, 4C, C)   mlp.c_proj
    float *fcprojb;   // (L, C)
    float *lnfw;      // (C)
    float *lnfb;      // (C)
} GPTParams;
// The tensors in this order, as (GPTParams *) can be walked as an array of GPT_NUM_TENSORS
// pointers; their names in HF's save_pretrained spelling without "transformer." and "h.i.":
extern const char *const gpt_tensor_names[GPT_NUM_TENSORS];

// The matmul, the hot path. Row-major; `weight` is [K, N] (Conv1D layout).
//   forward:  out (M, N) = inp (M, K) · weight (K, N) + bias (N)          (bias may be NULL)
//   backward: dinp (M, K) += dout · weightᵀ;  dweight (K, N) += inpᵀ · dout;
//             dbias (N) += Σ_rows dout.  Any of dinp, dweight, dbias may be NULL (not wanted).
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N);
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int M, int K, int N);
// The tied LM head keeps wte as [N, K] (nn.Linear layout): the _nt variants take weight [N, K].
//   forward:  out (M, N) = inp (M, K) · weightᵀ;  backward: dinp += dout · weight;
//             dweight (N, K) += doutᵀ · inp.
void matmul_forward_nt(float *out, const float *inp, const float *weight, int M, int K, int N);
void matmul_backward_nt(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, int M, int K, int N);

// LoRA adapters (Hu et al. 2021, as PEFT applies them): for a targeted module with weight
// W [in, out], y = x·W + b + s · (x · A) · B, with A [in, r] and B [r, out] here (the transpose of
// PEFT's lora_A [r, in] and lora_B [out, r]); s = alpha / r, or alpha / √r with rsLoRA.
#define LORA_ALPHA_MAX 65536.0f   // the largest LoRA alpha accepted (flag, adapter file, PEFT config)
enum { LORA_ATTN_QKV = 0, LORA_ATTN_PROJ = 1, LORA_MLP_FC = 2, LORA_MLP_PROJ = 3, LORA_NUM_TARGETS = 4 };
extern const char *const lora_target_names[LORA_NUM_TARGETS];  // "c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"
typedef struct {
    int rank;                       // r
    float alpha;                    // lora_alpha
    int use_rslora;                 // scale = alpha / sqrt(r) instead of alpha / r
    float scale;                    // s
    int targeted[LORA_NUM_TARGETS]; // 1 where the module carries an adapter
    float *A[LORA_NUM_TARGETS];     // (L, in, r)  or NULL when not targeted
    float *B[LORA_NUM_TARGETS];     // (L, r, out) or NULL
    float *memory;                  // all A and B, one block
    size_t num_parameters;
    float *grad_A[LORA_NUM_TARGETS], *grad_B[LORA_NUM_TARGETS];
    float *grad_memory;             // same layout as memory
} LoRA;

typedef struct GPT GPT;   // defined in model.c; read it through the functions below

// Building, loading, saving. Loading takes our checkpoint file or an HF GPT-2 directory
// (config.json + model.safetensors). Every failure is a message naming the file and the problem.
GPT *gpt_new_random(GPTConfig config, uint64_t seed);   // GPT-2 init: N(0, 0.02), residual
                                                         // projections N(0, 0.02/√(2L)), LN 1/0
GPT *gpt_load(const char *path, GfnError *err);
int gpt_save(const GPT *model, const char *path, GfnError *err);   // atomic
// The same with f16 tensors (half the size; shipped weights): loads back as f32 rounded to f16.
int gpt_save_f16(const GPT *model, const char *path, GfnError *err);
void gpt_free(GPT *model);
// The same weights and adapter (shared, not copied) with activations of its own, for forwards
// only: sampling on one thread beside model's forward and backward on another. Free it first.
GPT *gpt_view(GPT *model);
GPTConfig gpt_config(const GPT *model);
GPTParams *gpt_params(GPT *model);
GPTParams *gpt_grads(GPT *model);         // allocated on first use
size_t gpt_num_parameters(const GPT *model);
float *gpt_params_memory(GPT *model);     // the one block, gpt_num_parameters floats
float *gpt_grads_memory(GPT *model);
void gpt_set_frozen(GPT *model, int tensor, int frozen);   // frozen: no weight gradient computed
void gpt_freeze_all(GPT *model, int frozen);

// Forward over B sequences of T tokens (T <= maxT; B and T may change between calls).
// Returns the logits (B, T, V), owned by the model and valid until the next call.
float *gpt_forward(GPT *model, const int *inputs, int B, int T);
// After gpt_forward: the last hidden layer, ln_f's output (B, T, C) (logits = hidden · wteᵀ),
// owned by the model and valid until the next forward.
const float *gpt_hidden(const GPT *model);
// The same for B rows that all begin with the same P tokens `prefix` (P >= 0): the prefix runs
// once, as one row without the LM head, and the rows' remaining tokens, inputs (B, T) at positions
// P..P+T-1, attend to its keys and values. Returns the logits (B, T, V) of those T positions,
// bit-identical to the matching positions of gpt_forward over the rows prefix + inputs.
// gpt_backward then sums the gradient of the prefix's keys and values over the rows and
// backpropagates it once through the prefix: every gradient equals the unshared one up to the
// order of summation. gpt_cross_entropy and gpt_dinput see the T positions only.
float *gpt_forward_shared(GPT *model, const int *prefix, int P, const int *inputs, int B, int T);
// After gpt_forward: log p(targets[b,t] | inputs[b,≤t]) into logprobs (B, T) (may be NULL),
// targets < 0 are ignored (logprob 0). Returns the mean of −log p over the counted targets.
// When `dlogits` is non-NULL it receives d(mean loss)/d(logits) (B, T, V); it may be the logits
// buffer itself (in place).
float gpt_cross_entropy(GPT *model, const int *targets, float *logprobs, float *dlogits);
// Backward from the gradient of any loss with respect to the logits (B, T, V) of the last
// forward. Accumulates (+=) into the grads of unfrozen tensors and of the LoRA adapters.
// dlogits may alias the logits buffer. The gradient with respect to the input embeddings
// (wte[id] + wpe[pos]) is left in gpt_dinput (B, T, C).
void gpt_backward(GPT *model, const float *dlogits);
const float *gpt_dinput(const GPT *model);
void gpt_zero_grad(GPT *model);           // model and LoRA grads
// GPT-2's tanh GELU (HF "gelu_new") on N floats, exposed for its accuracy test:
// out = gelu(inp);  d *= gelu'(inp) in place.
void gelu_forward(float *out, const float *inp, size_t N);
void gelu_backward(float *d, const float *inp, size_t N);

// LoRA on the model: attach (PEFT init from seed: A Kaiming-uniform, B zero), detach, merge.
LoRA *gpt_lora_attach(GPT *model, int rank, float alpha, int use_rslora, const int targeted[LORA_NUM_TARGETS], uint64_t seed);
LoRA *gpt_lora(GPT *model);               // NULL when none attached
void gpt_lora_merge(GPT *model);          // W += s · A · B, then detach: fast inference
void gpt_lora_detach(GPT *model);
// Adapters: our own file, or a PEFT directory (adapter_config.json + adapter_model.safetensors)
// when the path is an existing directory or ends in '/'. lora_load replaces any attached adapter
// after checking every shape against the model (on error the model is unchanged).
int lora_save(const GPT *model, const char *path, GfnError *err);
int lora_load(GPT *model, const char *path, GfnError *err);

// Interchange formats (model.c, its last section): safetensors, Hugging Face GPT-2 directories
// (config.json + model.safetensors) and PEFT LoRA adapter directories.
#define SAFETENSORS_MAX_DIMS 8
typedef struct {
    const char *name;
    const char *dtype;                  // "F32", "F16", "BF16", ... as written in the file
    int ndim;
    size_t shape[SAFETENSORS_MAX_DIMS];
    size_t numel;                       // product of shape
    const unsigned char *bytes;         // numel × dtype size bytes inside the file buffer
} SafeTensor;
typedef struct {
    char *path;
    unsigned char *file;                // the whole file
    size_t file_len;
    Json *header;
    SafeTensor *tensors;                // sorted by data offset
    int n;
} SafeTensors;
// Reads and validates a safetensors file: header length, JSON, dtypes, shapes, offsets within
// the data and not overlapping. Returns 0, or 1 with err naming the file (and the tensor).
int safetensors_open(SafeTensors *st, const char *path, GfnError *err);
void safetensors_close(SafeTensors *st);
const SafeTensor *safetensors_find(const SafeTensors *st, const char *name);   // or NULL
// Converts a F32, F16 or BF16 tensor to numel floats; other dtypes are an error.
int safetensors_to_f32(const SafeTensors *st, const SafeTensor *t, float *out, GfnError *err);
// Writes F32 tensors with __metadata__ {"format": "pt"}, the header padded to 8 bytes; atomic.
typedef struct { const char *name; int ndim; size_t shape[SAFETENSORS_MAX_DIMS]; const float *data; } SafeTensorWrite;
int safetensors_write(const char *path, const SafeTensorWrite *tensors, int n, GfnError *err);
// An HF GPT-2 directory. Loading accepts "transformer."-prefixed (save_pretrained) and bare
// (hub) names, F32/F16/BF16; saving writes F32 with the prefix. gpt_load calls gpt_load_hf for
// a directory.
GPT *gpt_load_hf(const char *dir, GfnError *err);
int gpt_save_hf(const GPT *model, const char *dir, GfnError *err);

// KV cache for incremental decoding of B rows, each row at its own position. It also keeps a
// transposed copy of the tied head's weights (C x V floats) for the decode steps, taken at
// gpt_prefill (kept when the embedding is frozen): change the weights and the cache, keys, values
// and head, must be filled again (with wte trainable, or a new cache).
typedef struct KVCache KVCache;
KVCache *kv_cache_new(const GPT *model, int B, int max_len);
void kv_cache_free(KVCache *cache);
// Feeds tokens[b] at position pos[b] for each row b with tokens[b] >= 0 (other rows untouched);
// attends to that row's cached positions < pos[b]. Writes logits (B, V) for the fed rows.
void gpt_decode_step(GPT *model, KVCache *cache, const int *tokens, const int *pos, float *logits);
// Fills positions 0..T-1 of every row from one batched forward of inputs (B, T); returns the
// logits (B, T, V) of that forward.
float *gpt_prefill(GPT *model, KVCache *cache, const int *inputs, int B, int T);
void kv_cache_copy_row(KVCache *cache, int dst_row, int src_row, int len);   // positions [0, len)
// Reselects rows (beam search): row b takes the keys and values row src_row[b] held, positions
// [0, len); rows with src_row[b] < 0 keep theirs. Any mapping (repeats, swaps) is right: the old rows
// are read from a copy (one layer of the cache at a time).
void kv_cache_gather(KVCache *cache, const int *src_row, int len);
// A forward (no backward) of B rows of T tokens that continue cache rows: row b's tokens sit at
// positions lens[b].. and attend first to positions [0, lens[b]) of cache row rows[b]. Returns the
// logits (B, T, V), equal to those of decoding the tokens one by one after that row. With
// store_rows (may be NULL) the new keys and values go to cache row store_rows[b], positions
// lens[b]..lens[b]+T-1, after the forward.
float *gpt_forward_cached(GPT *model, KVCache *cache, const int *rows, const int *lens, const int *inputs, int B,
                          int T, const int *store_rows);

// Training utilities.
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int step;                 // 1-based after the first update (bias correction)
    float *m, *v;             // first and second moments, one per parameter
    size_t n;
} AdamW;
void adamw_init(AdamW *opt, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay);
void adamw_free(AdamW *opt);
// One AdamW step (decoupled weight decay, bias correction) over n parameters.
void adamw_update(AdamW *opt, float *params, const float *grads, float lr);
// Scales grads so their global L2 norm is at most max_norm; returns the norm before clipping.
float clip_grad_norm(float *grads, size_t n, float max_norm);
// One supervised step: zero grads, forward, mean cross-entropy, backward, clip to max_norm
// (INFINITY: none), AdamW at lr over the LoRA adapter if one is attached, else the whole model.
// Returns the loss; *grad_norm (may be NULL) gets the norm before clipping.
float gpt_train_step(GPT *model, AdamW *opt, const int *inputs, const int *targets, int B, int T, float lr,
                     float max_norm, float *grad_norm);
// Linear warm-up over `warmup` steps, then cosine decay to lr_min at `total`. step counts from 0:
// lr_max·(step+1)/warmup while step < warmup, lr_min from step = total on.
float lr_schedule(int step, int warmup, int total, float lr_max, float lr_min);

// ----------------------------------------------------------------------------------------------
// 3. tokenizer.c: the tokenizer
//
// Byte-level BPE exactly as GPT-2 encodes: any byte string encodes, and decode(encode(b)) == b.
// A Tokenizer is our own trained vocabulary (a file: ids 0..255 are the bytes, then one id per
// merge, then <|endoftext|>) or GPT-2's (a directory holding encoder.json + vocab.bpe, or HF's
// vocab.json + merges.txt; <|endoftext|> = 50256).

typedef struct Tokenizer Tokenizer;
// Loads our tokenizer file or a GPT-2 vocabulary directory; NULL with err naming file and problem.
Tokenizer *tokenizer_load(const char *path, GfnError *err);
int tokenizer_save(const Tokenizer *tok, const char *path, GfnError *err);  // atomic; our files only
// Learns vocab_size - 257 merges from the text files (fewer if the text runs out of pairs), ties
// broken by the smallest (left id, right id). Same files -> byte-identical tokenizer.
Tokenizer *tokenizer_train(const char *const *paths, int num_paths, int vocab_size, GfnError *err);
void tokenizer_free(Tokenizer *tok);
int tokenizer_vocab_size(const Tokenizer *tok);
int tokenizer_eot_id(const Tokenizer *tok);
// A token's bytes (not NUL-terminated), or NULL with *len = 0 for an id outside the vocabulary.
const unsigned char *tokenizer_token_bytes(const Tokenizer *tok, int id, size_t *len);
// Encodes text[0..len) (any bytes) into a fresh array of *num_ids ids (free() it). With
// allow_special, the text "<|endoftext|>" becomes the EOT id; otherwise it is plain text.
// Encoding fills a cache inside tok: do not encode with one Tokenizer from two threads at once.
int *tokenizer_encode(const Tokenizer *tok, const char *text, size_t len, int allow_special, size_t *num_ids);
// Decodes ids into a fresh NUL-terminated buffer of *len bytes (free() it); NULL with err when an
// id is outside the vocabulary.
char *tokenizer_decode(const Tokenizer *tok, const int *ids, size_t num_ids, size_t *len, GfnError *err);

// ----------------------------------------------------------------------------------------------
// 4. gfn.c: the GFlowNet method
//
// A trajectory is one sampled continuation Z = z_1..z_n of a query's prompt X, ended by the
// terminator ⊤. State i is the prefix after i actions (sampled tokens); tokens that a task's
// tool hook inserts (a calculator's answer) follow their action as context, not as actions.
// Every state may stop (the state graph is a tree, P_B = 1), so each state i has a reward
// log R(z_≤i ⊤) and a stop probability log q(⊤ | X z_≤i).

// 4a. Objectives: pure functions over per-trajectory arrays. Each returns the loss and writes
// d loss / d(each input log-probability) (arrays of the same shape as the inputs, overwritten).
typedef struct {
    int n;                  // trajectories in the batch
    int stride;             // row stride of the per-state arrays (>= max actions + 1)
    const int *len;         // (n) actions of each trajectory
    const float *log_pf;    // (n, stride) [k-1] = log q(z_k | X z_<k), k = 1..len
    const float *log_pterm; // (n, stride) [i] = log q(⊤ | X z_≤i), i = 0..len
    const float *log_r;     // (n, stride) [i] = log R(z_≤i ⊤) (tempered), i = 0..len
    const int *group;       // (n) query of each trajectory: TB's log Z index, VarGrad's groups
    int min_len;            // states i < min_len cannot stop (⊤ masked there): their lr, lt are not
                            // read, the root's flow is the learned log_f0 (0: every state may stop)
} TrajBatch;
// Trajectory balance; log_z (num_groups) indexed by group; d_log_z may be NULL.
float loss_tb(const TrajBatch *b, const float *log_z, float *d_pf, float *d_pterm, float *d_log_z);
// Modified sub-trajectory balance with weight λ^(j-i-1), normalised over every pair of the batch.
// With b->min_len > 0, log_f0 (num_groups, indexed by group) is the learned log F(s_0) of each
// query and d_log_f0 its gradient (added to; may be NULL); both are unused when min_len is 0.
float loss_subtb(const TrajBatch *b, float lambda, const float *log_f0, float *d_pf, float *d_pterm,
                 float *d_log_f0);
// Modified detailed balance: the j = i+1 terms of loss_subtb (with min_len > 0: the pairs
// (i, i+1), i >= min_len, and the root's (0, min_len)).
float loss_db(const TrajBatch *b, const float *log_f0, float *d_pf, float *d_pterm, float *d_log_f0);
// VarGrad: TB with log Z = stop-gradient mean of log R − log q(Z ⊤) over each group; the
// per-group estimates go to log_z_out (num_groups entries, may be NULL).
float loss_vargrad(const TrajBatch *b, int num_groups, float *d_pf, float *d_pterm, float *log_z_out);
// VarGrad's log Ẑ_X (mean of log R − log q(Z ⊤) over the batch's rows of X) into log_z[X] for every
// query X of the batch but those with skip[X] set (skip may be NULL; the others are then marked).
void batch_log_z(const TrajBatch *b, float *log_z, unsigned char *skip);
// Maximum likelihood of the given trajectories: mean of −log q(Z ⊤).
float loss_sft(const TrajBatch *b, float *d_pf, float *d_pterm);
// REINFORCE with the leave-one-out mean reward of the group as baseline: reward = exp(log R −
// the group's max log R) (relative rewards, so likelihood rewards do not underflow).
float loss_reinforce(const TrajBatch *b, float *d_pf, float *d_pterm);

// 4b. Trajectories and the replay buffer.
typedef struct {
    int query;              // index of its query in the task's train (or test) list
    int ntok;               // tokens after the prompt, forced ones included, ⊤ excluded
    int nact;               // actions among them
    int *tokens;            // (max_len)
    unsigned char *forced;  // (max_len) 1 where the tool hook inserted the token
    float *log_r;           // (max_len + 1) untempered log R of states 0..nact
} Traj;
Traj *traj_new(int max_len);
void traj_free(Traj *t);
void traj_copy(Traj *dst, const Traj *src);

// Per query, the top `capacity` trajectories by log R (of the whole Z), exact duplicates dropped,
// the newest first among equal log R.
typedef struct {
    int num_queries, capacity, max_len;
    int *count;             // (num_queries)
    Traj **items;           // (num_queries, capacity)
    int *filled;            // (num_queries) the queries that hold entries, in order of their first
    int num_filled;
} ReplayBuffer;
ReplayBuffer *replay_new(int num_queries, int capacity, int max_len);
void replay_free(ReplayBuffer *rb);
// Returns 1 if added, 0 if a duplicate or worse than all `capacity` kept ones.
int replay_add(ReplayBuffer *rb, const Traj *t);
// Samples one of the query's trajectories with probability ∝ softmax(log R); NULL when empty.
const Traj *replay_sample(const ReplayBuffer *rb, int query, Rng *rng);
// A uniform draw among the queries that hold entries; -1 when the buffer is empty.
int replay_query(const ReplayBuffer *rb, Rng *rng);

// 4c. Tasks: a file in tasks/ fills one Task and adds a line to the registry in main.c.
typedef struct {
    const char *model_path;     // -m: a checkpoint or HF directory ("" for the task's default)
    const char *tokenizer_path; // -t
    const char *data_path;      // --data
    uint64_t seed;
    float reward_floor;         // log R of an invalid answer (rng: log 1e-6)
    int quiet;
    int eval_n;                 // --eval-n: test questions per evaluated set (0: the task's default)
    const char *stop;           // --stop: rng's terminator with a tokenizer, "eot" or "newline" (NULL: eot)
    const char *prompt;         // --prompt: arithmetic's policy prompt, "question" or "fewshot" (NULL:
                                // question for a tuned policy, the 3-shot prompt for the untuned base)
    int seed_answers;           // --seed-answers 1: rng's 101 valid answers (infill: the true 4th
                                // sentences; subj: "wishful" rationales) seed the replay buffer
    int num_labelled;           // --labelled N: subj's labelled examples, 10, 20 or 50 (0: 10)
    int baselines;              // --baselines N: continuation / infill evaluation: 0 the policy only,
                                // 1 also the decoding (prompting) baselines on the base, 2 those only
} TaskOptions;

typedef struct Task Task;
struct Task {
    const char *name;
    const char *help;           // one line for `gfn train --help`
    // Builds the base LM and the queries; returns 0 or sets err.
    int (*setup)(Task *task, const TaskOptions *opt, GfnError *err);
    void (*cleanup)(Task *task);
    // Filled by setup:
    GPT *base;                  // the frozen base LM; the policy starts as a copy of it
    int num_train, num_test;    // queries: train ones are 0..num_train-1, test ones follow
    int terminator;             // ⊤
    int min_len, max_len;       // ⊤ masked before min_len actions, forced at max_len tokens after the
                                // prompt (the two differ where a tool inserts tokens)
    unsigned char *allowed;     // (V) tokens the policy may write (⊤ included)
    // The prompt tokens of query q (pointer owned by the task), length in *len (>= 1).
    const int *(*prompt)(Task *task, int query, int *len);
    // Optional tool hook: after the action tokens[ntok-1], writes tokens to insert (context,
    // not actions) into forced[0..max_forced) and returns how many. NULL for none.
    int (*tool)(Task *task, int query, const int *tokens, int ntok, int *forced, int max_forced);
    // Untempered log R of every state of each trajectory into t[i]->log_r[0..nact].
    void (*log_reward)(Task *task, Traj *const *t, int n);
    // Prints the task's metrics for a trained policy, one `name value` per line. log_z (one per
    // train query) is TB's learned log Z, or NULL when the objective learns none.
    void (*evaluate)(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed);
    // Optional: draws one given ("gold") Z for query q into out, for --loss sft; NULL for none.
    void (*demonstration)(Task *task, int query, Traj *out, Rng *rng);
    // Text of a trajectory for logs (may be NULL): writes at most cap bytes, NUL-terminated.
    void (*render)(Task *task, const Traj *t, char *buf, size_t cap);
    void *state;                // the task's own data
    // k >= 1 when log_reward touches only the frozen base and a scorer of its own, nothing that
    // prompt, tool and demonstration use (a tokenizer's encode cache, scratch): gfn_train may then
    // score a micro-batch on another thread while it samples the next (its pipeline). With k >= 2,
    // log_reward_on(task, c, ...) for c < k uses scorer c, and different scorers may run at once
    // (log_reward is scorer 0's). 0: every reward in order.
    int concurrent_reward;
    void (*log_reward_on)(Task *task, int scorer, Traj *const *t, int n);
    // Set by gfn_train while its objective reads only the last state's log R (TB, VarGrad, SFT,
    // REINFORCE; not SubTB or DB): log_reward may then compute log_r[nact] alone and leave the
    // other states −∞ (arithmetic does: each state's reward is a forward of the answer after it).
    int final_reward_only;
    // Optional known good trajectories (log_r filled by setup): they seed the replay buffer.
    int num_demos;
    Traj **demos;
    // Optional learning curve (--eval-every): num_curve values named curve_names into values, from
    // the first per_set questions of each test set, sampled with `seed` (the same at every point).
    int num_curve;
    const char *const *curve_names;
    void (*curve)(Task *task, GPT *policy, int per_set, uint64_t seed, double *values);
};
// The training run's replay buffer seeded with task->demos, its capacity grown so that every
// demonstration of a query fits.
ReplayBuffer *replay_seeded(const Task *task, int capacity);

// 4d. The policy over the allowed tokens, and sampling.
// log-softmax of one logits row over the tokens with allowed[v] != 0 (the rest get -inf).
void masked_log_softmax(const float *logits, const unsigned char *allowed, int V, float *logp);

typedef struct {
    float temperature;      // 1: the policy itself; 0: greedy (the most likely allowed token)
    int top_k;              // 0: off
    float top_p;            // 1: off
    float explore;          // ε-uniform exploration: with this probability the token is drawn
                            // uniformly among the allowed ones instead (0: off)
} SamplerConfig;
// Draws a token from one logits row restricted to mask (V), with cfg's temperature, top-k and
// top-p, or (probability cfg->explore) uniformly among the allowed tokens; pairs is (V, 2) scratch.
int sample_token(const float *logits, const unsigned char *mask, int V, const SamplerConfig *cfg,
                 float *pairs, Rng *rng);
// Samples n trajectories, trajectory i for query queries[i], batched with the KV cache.
// Uses the task's allowed mask, min/max lengths and tool hook. Rewards are not filled.
void sample_trajectories(GPT *policy, Task *task, const int *queries, Traj **out, int n,
                         const SamplerConfig *cfg, Rng *rng);
// log q(Z ⊤) of whole trajectories at T = 1 under the sampler's masking (⊤ masked before the
// minimum length, forced at the maximum), by teacher forcing; forced tokens are context. (n)
void policy_sequence_logq(GPT *policy, Task *task, Traj *const *t, int n, float *log_q);

// 4d'. Decoding strategies. Greedy (temperature 0), plain and tempered sampling, top-k and nucleus
// (top-p) are sample_trajectories with a SamplerConfig. Beam search and diverse beam search
// (Vijayakumar et al. 2016, Hugging Face's group beam search) score a Z by log q(Z ⊤) at T = 1 (the
// sum over its actions and ⊤, no length penalty), with the sampler's masks, lengths and tool hook.
typedef struct {
    int beams;          // n: finished hypotheses wanted per prompt
    int groups;         // G: n / G beams per group; 1: plain beam search
    float diversity;    // λ >= 0: in group g a token's log q is lowered by λ × the beams of groups
                        // 0..g-1 that continued with it at this step
} BeamConfig;
// For each of the num_queries prompts, the best n finished hypotheses (fewer when fewer Z exist)
// into out[p n .. p n + count[p]) with log q(Z ⊤) in log_q (same index): plain beam search ranks
// them best first; diverse beam search lists them group after group, each group ranked by its
// penalised score. out: (num_queries n) trajectories from traj_new(task->max_len). Exact pruning:
// a group stops when no open beam can beat its n / G-th finished hypothesis.
void beam_search(GPT *policy, Task *task, const int *queries, int num_queries, const BeamConfig *cfg,
                 Traj **out, float *log_q, int *count);
// Teacher forcing at T = 1: log q of every action and of ⊤ at every state, as the objectives
// take them ((n, stride) arrays, stride >= max_len + 1), from one batched forward of the rows
// prompt + tokens. Returns that forward's logits (n, T, V), T in *T_out, valid until the next
// forward. policy_backward then takes the gradients of a loss with respect to those
// log-probabilities through the masked log-softmax into the model (and its LoRA) with one
// gpt_backward (the logits buffer becomes dlogits).
// mask_short 1: ⊤ masked before the task's minimum length, as the sampler does (log q is the
// sampled policy's; lt = −inf there); 0: kept, every prefix terminable (the official code's
// floor reward, --short-states floor).
float *policy_logprobs(GPT *policy, Task *task, Traj *const *t, int n, int stride, int mask_short,
                       float *log_pf, float *log_pterm, int *T_out);
void policy_backward(GPT *policy, Task *task, Traj *const *t, int n, int stride, int mask_short,
                     float *logits, int T, const float *d_pf, const float *d_pterm);
// Rows whose prompts begin alike run that common part once (gpt_forward_shared); then the
// logits above are those of the positions after it. 0 here, or the environment variable
// GFN_NO_PREFIX_SHARE=1, runs every row whole (the unshared pass, kept for comparisons).
extern int gfn_prefix_sharing;
int gfn_prefix_sharing_enabled(void);   // gfn_prefix_sharing, unless GFN_NO_PREFIX_SHARE says no
// With two or more threads, gfn_train runs a step's micro-batches as a pipeline (train_step_micro
// in gfn.c: one thread samples the next micro-batch while another scores and learns the last);
// the numbers are the same as in order. 0 here, or GFN_NO_PIPELINE=1, runs them in order with
// the threads inside each matrix product (the earlier path, kept for comparisons).
extern int gfn_pipeline;
int gfn_pipeline_enabled(void);
extern long gfn_pipeline_steps;   // steps run as a pipeline so far (tests check that it ran)
// The exact distribution of the sampler at T = 1 over every Z of an enumerable task (one query):
// fills log_q with log q(Z ⊤) in the order of enumerate_z; returns the count.
int enumerate_z(const Task *task, int *z_out, int *len_out, int max_count);
void policy_exact_logq(GPT *policy, Task *task, int query, const int *z, const int *len, int count,
                       float *log_q);

// 4e. Training (`gfn train TASK`): behaviour policy = a mix of on-policy, tempered and replayed
// batches; LoRA on a frozen base; rewards tempered by an annealed T(step).
typedef enum { LOSS_SUBTB, LOSS_TB, LOSS_DB, LOSS_VARGRAD, LOSS_SFT, LOSS_REINFORCE } LossKind;
extern const char *const loss_names[];   // "subtb", "tb", "db", "vargrad", "sft", "reinforce"
// States shorter than the task's minimum length under SubTB / DB: SHORT_LEARNED, a learned root
// flow log F(s_0) per query (⊤ masked there in log q); SHORT_FLOOR, the official code's constant
// lr = short_log_r with ⊤ kept (see loss_subtb in gfn.c for why the first is the default);
// SHORT_BATCH, the root flow of each micro-batch's queries estimated from that micro-batch's own
// rows as VarGrad estimates log Z (nothing per query to learn; ⊤ masked as for SHORT_LEARNED).
typedef enum { SHORT_LEARNED, SHORT_FLOOR, SHORT_BATCH } ShortStates;
extern const char *const short_state_names[];   // "learned", "floor", "batch"
typedef struct {
    LossKind loss;
    int steps;                  // optimizer steps
    int batch;                  // trajectories per micro-batch
    int samples_per_query;      // K trajectories share one query (VarGrad's and REINFORCE's groups)
    int accum;                  // micro-batches per step, gradients averaged
    float lr, lr_min, lr_log_z; // LoRA peak lr, its cosine floor, the log Z learning rate
    int warmup;
    float weight_decay, clip;
    int lora_rank;
    float lora_alpha;
    int lora_targets[LORA_NUM_TARGETS];
    float frac_on_policy, frac_tempered;    // the rest of the batches come from the replay buffer
    float temp_lo, temp_hi;                 // tempered sampling: T ~ U(lo, hi)
    float explore;                          // and ε-uniform actions in those rows (0: off)
    float reward_temp_start, reward_temp_end;
    int reward_temp_horizon;
    int replay_capacity;
    float lambda;               // SubTB's λ
    ShortStates short_states;   // how SubTB / DB treat prefixes shorter than the minimum
    float short_log_r;          // SHORT_FLOOR: their lr (−99)
    uint64_t seed;
    const char *log_path;       // JSONL, or NULL
    const char *save_path;      // adapter, or NULL; its training state goes to train_state_path(save_path)
    int save_every;             // 0: only at the end
    int stop_after;             // stop after this step with adapter and state saved (0: run to the end)
    const char *resume_path;    // a training state to continue from (bit for bit), or NULL
    const char *task_options;   // the task's options that change rewards, as text (or NULL): recorded
                                // in the training state, and a resume under others is refused
    int quiet;                  // no progress line
    float frac_gold;            // --gold-replay: the fraction of micro-batches that train on one given
                                // ("gold") Z (task->demonstration) instead of the behaviour policy's rows
    int eval_every;             // --eval-every N: the learning curve (task->curve) at step 0, every N
                                // steps and at the end; 0: none
    int curve_n;                // --curve-n: test questions per set for the curve (the task's first ones)
    FILE *curve_out;            // the curve's lines "curve STEP name value ..." (NULL: none; the JSONL log
                                // gets them too)
} TrainConfig;
void train_config_default(TrainConfig *cfg);
// The peak LoRA learning rate of an objective when none is given (`gfn train` without --lr):
// modified SubTB and DB constrain log q(⊤) at every prefix, a steeper loss than one residual per
// Z, and diverge at rates the others take (rng: 1e-2 vs 3e-3; arithmetic: 5e-4 vs 2e-4).
float loss_default_lr(LossKind loss);
// Trains a LoRA on `policy` (a copy of task->base) for the task; log_z (num_train) gets the
// learned log Z = log F(s_0) (TB, and SubTB / DB with SHORT_LEARNED on a task with a minimum
// length; a query's starts at the VarGrad estimate of its first batch). Returns 0, or nonzero with err set (e.g. the adapter could not be saved).
// With save_path, every save point writes the adapter and then the training state (step, LoRA,
// AdamW moments, log Z, RNG, replay buffer, the log's length; format in gfn.c); with resume_path
// the run continues from such a state and ends with the bits of the uninterrupted run.
int gfn_train(Task *task, GPT *policy, const TrainConfig *cfg, float *log_z, GfnError *err);
// The training state written beside an adapter: PATH.state (trailing '/' of a PEFT directory
// dropped), malloc'ed.
char *train_state_path(const char *save_path);
// A fresh model with the same weights as `model` (no LoRA): the policy starts as the base.
GPT *copy_model(GPT *model);

// ----------------------------------------------------------------------------------------------
// 5. eval.c: evaluation shared by the tasks: text metrics and the reports' tables and plots

// --- Text metrics
// Text metrics, shared by the tasks and `gfn metrics`; all scores on a 0..1 scale. Tokens are the
// whitespace-separated words (as Python's str.split()), case kept, unless said otherwise.
// BLEU-4 exactly as nltk 3.8's sentence_bleu with SmoothingFunction().method1, one reference.
double bleu4(const char *reference, const char *hypothesis);
// GLEU (Wu et al. 2016) as nltk's sentence_gleu, 1- to 4-grams.
double gleu(const char *reference, const char *hypothesis);
// chrF as sacrebleu 2.x's default CHRF() (6 character orders, β = 2, whitespace removed), / 100.
double chrf(const char *reference, const char *hypothesis);
// Diversity of a set of samples: distinct n-grams / all n-grams over all samples; the mean BLEU-4
// of each sample against each other one as its reference (ordered pairs; 0 for < 2 samples).
double distinct_n(const char *const *texts, int count, int n);
double self_bleu4(const char *const *texts, int count);
// TF-IDF of lower-cased words (runs of ASCII letters/digits and non-ASCII bytes) with the IDF of a
// fixed corpus (the tasks use their training prompts): idf = ln((1 + N)/(1 + df)) + 1, tf = counts.
typedef struct TfIdf TfIdf;
TfIdf *tfidf_new(const char *const *corpus, int count);
void tfidf_free(TfIdf *t);
double tfidf_idf(const TfIdf *t, const char *word, int len);   // word: lower-cased bytes
double tfidf_cosine(const TfIdf *t, const char *a, const char *b);   // 0 when a text has no word
// 1 − the mean cosine over all unordered pairs of samples (0 for < 2 samples).
double tfidf_diversity(const TfIdf *t, const char *const *texts, int count);
// The BERTScore stand-in (no idf weighting): token vectors = the encoder's last hidden layer
// (gpt_hidden) of the sentence fed after `bos` (the end-of-text token), scaled to unit length,
// (n, C) floats (free()); NULL for no tokens; sentences are cut at maxT − 1 tokens. They run
// forwards on the encoder: one thread per encoder (and tokenizer) at a time.
float *bertscore_embed_ids(GPT *encoder, int bos, const int *ids, int n);
// The same for count sentences of ids[i] (n[i] tokens), 16 per forward: emb[i] (n', C) or NULL,
// len[i] = n' (n[i] cut at maxT − 1); and for texts, encoded with tok (bos = its end-of-text).
void bertscore_embed_batch(GPT *encoder, int bos, const int *const *ids, const int *n, int count, float **emb, int *len);
void bertscore_embed_texts(GPT *encoder, const Tokenizer *tok, const char *const *texts, int count, float **emb, int *len);
// Greedy matching: P = mean over hyp tokens of the max cosine to a ref token, R the same the
// other way, returns F1 = 2PR/(P+R) (0 when a side is empty); precision, recall may be NULL.
double bertscore_f1(const float *hyp, int hn, const float *ref, int rn, int C, double *precision, double *recall);
// b = the mean F1 of `pairs` random (reference i, reference j ≠ i) pairs drawn with `seed`
// (`gfn metrics`: 1000 pairs of the --ref lines, seed 1); rescaled = (F − b) / (1 − b).
double bertscore_baseline(float *const *emb, const int *len, int count, int C, int pairs, uint64_t seed);
double bertscore_rescale(double f1, double baseline);
// 95 % percentile bootstrap interval of the mean of x[0..n): `resamples` means of n values drawn
// with replacement (an Rng seeded with seed), sorted ascending; lo = the ⌊0.025 R⌋-th and hi =
// the (⌈0.975 R⌉ − 1)-th of them (0-based; R = 1000: the 25th and the 974th).
void bootstrap_ci(const double *x, int n, int resamples, uint64_t seed, double *lo, double *hi);

// --- Markdown tables and SVG plots
// A report is built in memory in a Text (section 1) and then written atomically.
// Mean and sample standard deviation (n − 1; 0 for n < 2) of x[0..n).
void mean_std(const double *x, int n, double *mean, double *std);
// The result files of a report: the paths DIR/NAME.txt (at most max, malloc'ed each), sorted by
// name so the report does not depend on the file system's order. Returns their count, or -1 with
// err set when DIR cannot be opened.
int report_list_files(const char *dir, char **paths, int max, GfnError *err);
// A Markdown table's header: "| a | b |" and "|---|---|", each ended by a newline.
void md_table_header(Text *md, const char *const *columns, int num_columns);
// A line plot of fractions (y from 0 to 1, drawn as 0..100 with a grid line every 20) at num_x
// evenly spaced labelled x positions; each series a polyline with ± std bars and a legend entry.
typedef struct {
    int width, height;                  // pixels
    int left, right, top, bottom;       // margins; the legend sits in the right one
    int num_x;                          // x positions (>= 2)
    const char *const *x_labels;        // (num_x)
    const char *x_title, *y_title;
} LinePlot;
typedef struct {
    const char *name;                   // the legend's text
    int slot;                           // colour (slot % 8) and legend row
    const double *mean, *std;           // (num_x) each, fractions
} PlotSeries;
void svg_line_plot(Text *svg, const LinePlot *plot, const PlotSeries *series, int num_series);
// A scatter plot of labelled points (x, y) with ± std bars; the axes span the points.
typedef struct {
    int width, height;                  // pixels
    int left, right, top, bottom;       // margins; the legend sits in the right one
    const char *x_title, *y_title;
} ScatterPlot;
typedef struct {
    const char *name;                   // the legend's text
    int slot;                           // colour (slot % 8)
    double x, y, x_std, y_std;
} ScatterPoint;
void svg_scatter_plot(Text *svg, const ScatterPlot *plot, const ScatterPoint *points, int num_points);

// ----------------------------------------------------------------------------------------------
// 6. tasks/*.c: the tasks. Each fills one Task (section 4c); main.c's registry lists them.

extern Task task_toy, task_rng;

// The arithmetic task (tasks/arithmetic.c): questions "Question: 6 - 0 - 4 - 8 = ? Answer:",
// rationales "6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6", solutions ". The answer is -6.". The generator is
// public so that the pretraining corpus can write the same text while excluding the test sets.
extern Task task_arithmetic;
#define ARITH_MAX_OPERANDS 8
typedef struct {
    int n;                                  // operands
    int operand[ARITH_MAX_OPERANDS];        // one digit each
    char op[ARITH_MAX_OPERANDS - 1];        // '+' or '-' between operand k and k+1
} ArithQuestion;
typedef enum { ARITH_QUERY, ARITH_RATIONALE, ARITH_SOLUTION, ARITH_WORKED } ArithPart;
int arith_answer(const ArithQuestion *q);
// X, the rationale (no leading space), Y, or the whole worked line X + " " + rationale + Y.
void arith_text(const ArithQuestion *q, ArithPart part, char *buf, size_t cap);
int arith_parse_query(const char *text, ArithQuestion *q);   // 0 on success
// `count` distinct questions of min_ops..max_ops one-digit operands and + / −, none in
// exclude[0..num_exclude); the same seed gives the same list. Returns how many were made.
int arith_generate(uint64_t seed, int min_ops, int max_ops, int count, const ArithQuestion *exclude,
                   int num_exclude, ArithQuestion *out);
// The generated test set of one operand count (used when the paper's files are absent).
int arith_test_questions(int num_operands, int count, ArithQuestion *out);
// The calculator: text ends with '='; the value of the `a op b` written since the last ','.
// Returns 1 and *value, or 0 when the text is not exactly int op int (see tasks/arithmetic.c).
int arith_calculator(const char *text, size_t len, long long *value);
int arith_last_number(const char *text, size_t len, long long *value);   // the vote of a Z
// After setup: the reward's context (few-shot prompt + X) and Y of a query, as tokens.
const int *arith_reward_context(Task *task, int query, int *len, const int **answer, int *answer_len);
// Rebuilds a trajectory from its actions alone, the calculator inserting its outputs again.
void arith_rebuild(Task *task, Traj *t, const int *actions, int nact);
// results/arithmetic.md and .svg from a folder of result files (`gfn report arithmetic DIR`).
int arith_report(const char *dir, const char *md_path, const char *svg_path, GfnError *err);

// Probes of the base model (tasks/arithmetic_probe.c, `gfn probe arithmetic`). A chain of kind
// full (every step), truncated (the first n − 2 steps) or corrupted (the running value copied into
// step `at`, 2 <= at <= n − 1, off by `delta`, later values computed from it as the calculator does).
typedef enum { ARITH_CHAIN_FULL, ARITH_CHAIN_TRUNCATED, ARITH_CHAIN_CORRUPTED } ArithChain;
// Its text as ARITH_RATIONALE writes it (no leading space); returns its last value.
int arith_chain_text(const ArithQuestion *q, ArithChain kind, int at, int delta, char *buf, size_t cap);
// The same chain as a trajectory of the set-up task: each step's " a op b =" (", a op b =" after the
// first) encoded as actions, arith_rebuild inserting the calculator's values. 0, or 1 if it does not fit.
int arith_chain_traj(Task *task, const Tokenizer *tok, const ArithQuestion *q, ArithChain kind, int at, int delta, Traj *t);
// log p(Z Y | ctx) from one plain forward of ctx Z Y (no cache): the task's log R of a finished Z.
double arith_probe_log_r(GPT *base, const int *ctx, int ctx_len, const int *z, int z_len, const int *y, int y_len);
// The next-step check: 1 iff the text of the tokens written[0..n) is exactly `expected`.
int arith_step_check(const Tokenizer *tok, const int *written, int n, const char *expected);
// The three probes (reward discrimination, next-step accuracy with the gold prefix, and, when
// with_accuracy, the task's evaluation of the untuned base 3-shot and question alone) on the first
// per_set test questions of 3, 4 and 5 operands, as Markdown appended to md. Sets the task up itself.
int arith_probe(Task *task, const TaskOptions *opt, int per_set, uint64_t seed, int with_accuracy, Text *md, GfnError *err);

// The text tasks: next-sentence continuation (tasks/continuation.c), story infilling
// (tasks/infill.c), subjectivity with a latent rationale (tasks/subj.c), and what they share
// (tasks/text.c). Data from the shared folder (--data DIR,
// else gfn_data_dir()); base model and tokenizer from -m / -t, else weights/base.ckpt and
// weights/tokenizer.bin.
extern Task task_continuation, task_infill, task_subj;
// Loads the tokenizer and task->base (checking they fit together); 0 or err set.
int text_task_load(Task *task, const TaskOptions *opt, Tokenizer **tok, GfnError *err);
// Frees what text_task_load and a text task's setup put in the Task: the base model, the allowed
// mask and the demos array (not the trajectories in it, which the task owns).
void text_task_release(Task *task);
// The data folder of a text task: --data, else gfn_data_dir(); NULL with err set when neither.
const char *text_task_data_dir(const TaskOptions *opt, const char *task_name, GfnError *err);
// Tokens of a text (after an end-of-text token when after_eot: a document's start) into a fresh
// array (free() it) of *len ids.
int *text_encode(const Tokenizer *tok, const char *text, int after_eot, int *len);
// The bytes of tokens[0..n) into buf, NUL-terminated, truncated at cap; returns the length.
size_t text_of_tokens(const Tokenizer *tok, const int *tokens, int n, char *buf, size_t cap);
// (V) 1 for every token except end-of-text and those whose bytes contain a byte of `banned`;
// the terminator is allowed whatever its bytes. Free it.
unsigned char *text_allowed_mask(const Tokenizer *tok, int V, const char *banned, int terminator);
// log Σ_v exp(logits[v]) over the tokens with mask[v] != 0 (all when NULL): a log-softmax's
// normaliser.
double logits_normaliser(const float *logits, const unsigned char *mask, int V);
// The base model's log-likelihood of a context C, a Z and a suffix Y (the text C Z Y).
typedef struct {
    const int *ctx; int ctx_len;    // C (>= 1 token: the first token is not scored)
    const int *z; int z_len;        // Z
    const int *y; int y_len;        // Y (>= 1 token)
} ScoredText;
// Scratch of log_p_every_prefix (a KV cache), kept between calls; zero-initialise it.
typedef struct { KVCache *cache; int rows, len; float *logits; } PrefixScorer;
void prefix_scorer_free(PrefixScorer *s);
// out[r * stride + i] = log p(z_1..z_i Y | C) for i = 0..z_len of each row: one forward of C Z per
// row for Z and Y_1, then |Y| - 1 decode steps per state from a copy of that row's KV cache. The
// Z tokens and Y_1 are scored under `mask` (the softmax renormalised over mask[v] != 0; NULL: the
// full softmax), Y_2.. under the full softmax.
void log_p_every_prefix(GPT *base, PrefixScorer *s, const ScoredText *rows, int n, const unsigned char *mask,
                        float *out, int stride);
// The same into t[r]->log_r[0..nact] (row r scores trajectory r, whose Z is all actions).
void text_log_reward(GPT *base, PrefixScorer *s, const ScoredText *rows, Traj *const *t, int n, const unsigned char *mask);
// out[r] = log p(Z Y | C) of each row (the last state only) from one forward of C Z Y per row.
void log_p_whole(GPT *base, const ScoredText *rows, int n, const unsigned char *mask, float *out);
// k trajectories for each query first..first+count-1 (row q*k + j), sampled with sc in batches
// of whole queries from one seed; rewards not filled. Free with text_free_trajectories.
Traj **text_sample_queries(Task *task, GPT *policy, int first, int count, int k, const SamplerConfig *sc, uint64_t seed);
void text_free_trajectories(Traj **t, int n);
// values (count, k): the mean and the max over each query's k values, each averaged over queries.
void per_query_mean_max(const float *values, int count, int k, double *mean, double *max);
// The result files of the text tasks' reports (the Makefile's one_run): a line "method RUN" names
// the run, lines "method NAME key value key value ..." are its evaluation lines, "seed S",
// "wall_s W" and "command ..." describe it. A table row gathers one NAME over the files (the
// line named "policy" takes the run's name RUN instead), value[k][i] = key k of its i-th file
// (NAN when absent); the runs gather the wall times of each RUN.
enum { TEXT_REPORT_MAX_ROWS = 48, TEXT_REPORT_MAX_KEYS = 16, TEXT_REPORT_MAX_SEEDS = 16 };
typedef struct {
    char name[48];
    int count;                                                  // files holding the row
    double value[TEXT_REPORT_MAX_KEYS][TEXT_REPORT_MAX_SEEDS];
} ReportRow;
typedef struct {
    char name[48];
    int count;                                                  // files of the run (seeds)
    double wall;                                                // seconds, summed over them
    char command[1024];                                         // the last one read
} ReportRun;
typedef struct {
    int num_rows, num_runs;
    ReportRow rows[TEXT_REPORT_MAX_ROWS];
    ReportRun runs[TEXT_REPORT_MAX_ROWS];
} TextResults;
// Reads DIR/*.txt (sorted by name) for the given keys; 0, or 1 with err naming the file.
int text_results_read(const char *dir, const char *const *keys, int num_keys, TextResults *res, GfnError *err);
// The row called name, or NULL.
const ReportRow *text_results_row(const TextResults *res, const char *name);
// Mean and std over a row's files of key k.
void report_row_stat(const ReportRow *row, int k, double *mean, double *std);
// The report's closing parts: DIR/NOTES.md verbatim under "## What was tried" (a placeholder
// line when there is none), then each run's wall time and command. 0, or 1 with err set.
int text_report_tail(Text *md, const char *dir, const TextResults *res, GfnError *err);
// Continuation: log p(Z "." | X) under the base, with the sentence mask (the untempered final
// log R) of each trajectory, into out (n).
void continuation_log_p(Task *task, Traj *const *t, int n, float *out);
// The evaluation's numbers of (count, k) trajectories, k per prompt (query order as in t): log P's
// mean and max over each prompt's k averaged over prompts; per prompt and averaged: 1 − mean
// pairwise TF-IDF cosine (idf), distinct-2, self-BLEU-4 of the k Z texts (⊤ not included).
typedef struct { double logp_mean, logp_max, diversity, distinct2, self_bleu, mean_tokens; } ContMetrics;
void continuation_metrics(Task *task, const TfIdf *idf, Traj *const *t, int count, int k, ContMetrics *m);
// The TF-IDF of the 950 training prompts' texts (tfidf_free it).
TfIdf *continuation_idf(Task *task);
// The report `gfn report continuation DIR OUT`: OUT.md and OUT.svg from DIR's result files.
int continuation_report(const char *dir, const char *md_path, const char *svg_path, GfnError *err);
// Infilling: the reward's context (end-of-text, "s1 s2 s3") and suffix (" s5") of a query, the
// true 4th sentence (" s4" as tokens; NULL when it does not fit 5..25 tokens), and log R of the
// last state of each trajectory (one forward each).
void infill_reward_text(Task *task, int query, const int **ctx, int *ctx_len, const int **y, int *y_len);
const int *infill_true_middle(Task *task, int query, int *len);
void infill_log_p(Task *task, Traj *const *t, int n, float *out);
// The evaluation's per-story means of (count, k) trajectories, k per story, against each story's
// true 4th sentence: per_story (4, count) = BLEU-4, GLEU, chrF, rescaled BERTScore stand-in. The
// Z texts lose their leading space; with cut, they end after their first ".", "!" or "?".
void infill_metrics(Task *task, Traj *const *t, int count, int k, int cut, double *per_story);
// The report `gfn report infill DIR OUT`: OUT.md from DIR's result files.
int infill_report(const char *dir, const char *md_path, GfnError *err);
// Subjectivity: a query's label (0 objective, 1 subjective), and the label the base prefers after
// X Z of each trajectory (one forward of X Z Y per label) into out (n).
int subj_label(Task *task, int query);
void subj_base_label(Task *task, Traj *const *t, int n, int *out);
// The classifier p(Y | C Z) of the M-step and of SFT: rows[i] gives C (ctx) and Z (z; y unused);
// s_l = log p(Y_l | C Z) under the full softmax into scores (n, 2) (may be NULL). With label (n)
// it returns L = mean_i −log softmax(s_i0, s_i1)[label_i] (TASKS.md's M-step loss), else 0; with
// backward also, accumulates dL into the model's (and its LoRA's) gradients.
float subj_pair_loss(GPT *model, const ScoredText *rows, const int *const y[2], const int y_len[2], const int *label, int n,
                     float *scores, int backward);
// Attaches a fresh LoRA to model and fits it with subj_pair_loss on the examples (their queries'
// X, their tokens as Z, their queries' labels) for `steps` AdamW steps (tasks/subj.c has the
// settings), then merges it into the weights.
void subj_fit_classifier(Task *task, GPT *model, Traj *const *examples, int n, int steps, uint64_t seed);
// margin (count, k) = log p(Y_subjective | X Z) − log p(Y_objective | X Z) under model for the k
// trajectories z[q k .. q k + k) of one query each (ntok 0: no Z); X runs once per query.
void subj_margins(Task *task, GPT *model, Traj *const *z, int count, int k, float *margin);
// The majority vote of k margins: 1 subjective, 0 objective; a tie goes to the sign of their sum.
int subj_vote(const float *margin, int k);
// The few-shot prompt of a query (end-of-text, the demonstrations, X) into out (cap ints); returns
// its length and the number of demonstrations in *num_demos (may be NULL).
int subj_fewshot_prompt(Task *task, int query, int *out, int cap, int *num_demos);
// margin (count) of queries first..first+count-1 under the base after their few-shot prompts, the
// demonstrations run once into a KV cache.
void subj_fewshot_margins(Task *task, int first, int count, float *margin);
// The report `gfn report subj DIR OUT`: OUT.md (Table 3's layout) and OUT.svg (accuracy vs N).
int subj_report(const char *dir, const char *md_path, const char *svg_path, GfnError *err);

// ----------------------------------------------------------------------------------------------
// 7. pretrain.c: a small GPT-2 trained from scratch on a text corpus (`gfn pretrain`), and the
// corpus recipe (`gfn corpus`).
//
// The corpus: each input file is split into documents at the literal text "<|endoftext|>"; each
// document is encoded and followed by the tokenizer's end-of-text token. The token stream is
// cached in a file (OUT.tokens, format in pretrain.c) and rebuilt when the tokenizer or an input
// changes. Validation split: the stream is cut into chunks of ctx+1 tokens and chunk c is held
// out when floor((c+1)·val_frac) > floor(c·val_frac), i.e. evenly spread chunks, val_frac of them;
// training windows of ctx+1 tokens never overlap a held-out chunk.
typedef struct {
    const char *tokenizer_path;     // -t: a tokenizer file for tokenizer_load
    const char *const *inputs;      // -i FILE...: the corpus
    int num_inputs;
    const char *out_path;           // -o: the final model, a checkpoint for gpt_load
    const char *cache_path;         // token cache; NULL: OUT.tokens
    const char *state_path;         // training state written at save points; NULL: OUT.state
    const char *resume_path;        // a training-state file to continue from, or NULL
    const char *log_path;           // JSONL log (appended), or NULL
    int n_layer, n_head, n_embd, ctx;
    int batch, steps, warmup;
    float lr, min_lr, weight_decay, clip, val_frac;
    int eval_every;                 // steps between validation losses (0: only at the end)
    int eval_chunks;                // validation chunks used by those (0: all); the end uses all
    int save_every;                 // steps between checkpoints (0: only at the end)
    int stop_after;                 // stop after this step with the state saved (0: run to the end)
    uint64_t seed;
    int threads;                    // OpenMP threads (0: the default)
    const char *eval_file;          // a held-out text whose bits/byte is reported at the end, or NULL
    int samples, sample_len;        // samples printed at the end, and their length in tokens
    float temperature;              // of those samples (0: greedy)
    int verbose;                    // progress lines on stdout
} PretrainConfig;
void pretrain_config_default(PretrainConfig *config);
typedef struct {
    int cache_rebuilt;              // 1 when the token cache was built this run
    long long num_tokens, num_val_tokens, num_val_bytes;   // val: the scored targets
    int steps_done;                 // the step reached (counting the resumed ones)
    float initial_val_loss;         // nats/token before the first step, over eval_chunks chunks
                                    // (fresh runs only; NAN after a resume)
    float val_loss;                 // nats/token at the end, over every validation chunk
    float val_bits_per_byte;        // Σ nats / ln 2 / Σ bytes of the scored tokens
    double tokens_per_second;       // training throughput of this run
    float eval_file_bits_per_byte;  // of eval_file (NAN without one): Σ nats / ln 2 / its size
} PretrainResult;
// The eval file is scored whole: [end-of-text] + its tokens, cut into windows of ctx tokens that
// each see only their own window, every token scored once.
// Trains per config; 0 on success, nonzero with err set (file and problem named).
int pretrain_run(const PretrainConfig *config, PretrainResult *result, GfnError *err);
// The pretraining corpus from the shared data folder, deterministically per seed; what is held
// out for evaluation is listed in pretrain.c ("The corpus recipe"). *bytes (may be NULL) gets its size.
int corpus_build(const char *data_dir, const char *out_path, uint64_t seed, size_t *bytes, GfnError *err);
// Bits per byte (and nats per token) of a whole text file under a model; see pretrain.c.
int evaluate_file(GPT *model, const Tokenizer *tok, const char *path, int B, int T, double *bits_per_byte,
                  double *nats_per_token, GfnError *err);

// ----------------------------------------------------------------------------------------------
// 8. main.c: the command line. Its task registry is the only list of the tasks; tests and the
// bench, which link without main.c, name a task's Task directly (&task_toy).
Task *task_find(const char *name);

#endif // GFN_H
