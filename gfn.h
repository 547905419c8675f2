// gfn.h — the one public header of gfn.c.
//
// gfn.c fine-tunes a GPT-2-style language model as a GFlowNet policy (Hu et al., ICLR 2024,
// "Amortizing intractable inference in large language models"), in C with libc and libm only.
// Sections, in the order the files read:
//   1. utilities   (model.c)     errors, seeded RNG, a small JSON reader, little-endian bytes
//   2. model       (model.c)     GPT-2 forward/backward, matmul, LoRA, AdamW, checkpoints
//   3. tokenizer   (tokenizer.c) byte-level BPE: train, encode, decode, GPT-2's vocabulary
//   4. gflownet    (gfn.c)       objectives, sampler, replay buffer, training loop, tasks
#ifndef GFN_H
#define GFN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// ----------------------------------------------------------------------------------------------
// 1. Utilities (model.c)

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
// Atomic write: write to PATH.tmp, flush, close, rename over PATH. Never a half-written file.
int write_file_atomic(const char *path, const void *data, size_t len, GfnError *err);

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
// 2. Model (model.c)
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
void gpt_free(GPT *model);
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

// KV cache for incremental decoding of B rows, each row at its own position.
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
// Linear warm-up over `warmup` steps, then cosine decay to lr_min at `total`. step counts from 0:
// lr_max·(step+1)/warmup while step < warmup, lr_min from step = total on.
float lr_schedule(int step, int warmup, int total, float lr_max, float lr_min);

// ----------------------------------------------------------------------------------------------
// 3. Tokenizer (tokenizer.c)
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
// 4. GFlowNet (gfn.c) — filled in by the GFlowNet work.

// ----------------------------------------------------------------------------------------------
// 4p. Pretraining (gfn.c): a small GPT-2 trained from scratch on a text corpus (`gfn pretrain`).
//
// The corpus: each input file is split into documents at the literal text "<|endoftext|>"; each
// document is encoded and followed by the tokenizer's end-of-text token. The token stream is
// cached in a file (OUT.tokens, format in gfn.c) and rebuilt when the tokenizer or an input
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
// out for evaluation is listed in gfn.c ("The corpus recipe"). *bytes (may be NULL) gets its size.
int corpus_build(const char *data_dir, const char *out_path, uint64_t seed, size_t *bytes, GfnError *err);

#endif // GFN_H
