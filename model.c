// model.c — the GPT-2 model: forward and backward, the matmul, LoRA, AdamW, checkpoints and
// Hugging Face / PEFT import. Depends on util.c. Read top to bottom.
#include "gfn.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// GPT-2: parameters
//
// The 16 tensors live one after another in a single block of floats (params_memory), in the order
// of GPTParams. Gradients, when some tensor is trainable, get a block of the same layout.

const char *const gpt_tensor_names[GPT_NUM_TENSORS] = {
    "wte.weight", "wpe.weight", "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
    "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_f.weight", "ln_f.bias",
};
enum { T_WTE, T_WPE, T_LN1W, T_LN1B, T_QKVW, T_QKVB, T_ATTPROJW, T_ATTPROJB, T_LN2W, T_LN2B,
       T_FCW, T_FCB, T_FCPROJW, T_FCPROJB, T_LNFW, T_LNFB };

// The four linear modules that LoRA may target: their weight and bias tensors and their
// (in, out) sizes as multiples of C.
typedef struct { int weight, bias, in_mult, out_mult; } ModuleInfo;
static const ModuleInfo modules[LORA_NUM_TARGETS] = {
    { T_QKVW, T_QKVB, 1, 3 }, { T_ATTPROJW, T_ATTPROJB, 1, 1 }, { T_FCW, T_FCB, 1, 4 }, { T_FCPROJW, T_FCPROJB, 4, 1 },
};

// What one forward pass keeps for the backward pass, plus the gradient scratch that every layer
// reuses. Laid out in one block for the (B, T) of the last forward; the block only grows.
typedef struct {
    float *encoded;     // (B, T, C)       wte[id] + wpe[pos]
    float *ln1;         // (L, B, T, C)    ln_1 output
    float *ln1_mean;    // (L, B, T)
    float *ln1_rstd;    // (L, B, T)
    float *qkv;         // (L, B, T, 3C)   q, k, v
    float *att;         // (L, B, NH, T·P + T(T+1)/2) causal softmax probabilities, row t
                        // (P + t + 1 long) at offset t·P + t(t+1)/2, P the longest prefix the
                        // rows read (0 without one): the masked half is never stored
    float *atty;        // (L, B, T, C)    attention output, input of attn.c_proj
    float *residual2;   // (L, B, T, C)    residual stream after the attention block
    float *ln2;         // (L, B, T, C)
    float *ln2_mean;    // (L, B, T)
    float *ln2_rstd;    // (L, B, T)
    float *fch;         // (L, B, T, 4C)   c_fc output
    float *fch_gelu;    // (B, T, 4C)      its GELU, input of mlp.c_proj: one layer at a time,
                        //                 recomputed by the backward (cheaper than L copies)
    float *residual3;   // (L, B, T, C)    residual stream after the MLP block
    float *lnf;         // (B, T, C)
    float *lnf_mean;    // (B, T)
    float *lnf_rstd;    // (B, T)
    float *logits;      // (B, T, V)
    float *losses;      // (B, T)          per-position −log p, summed in order afterwards
    float *lora_u[LORA_NUM_TARGETS];  // (L, B, T, r) s · (x · A) of each adapter
    // Gradient scratch, shared by all layers:
    float *dresidual;   // (B, T, C)   d loss / d residual stream; at the end, gpt_dinput
    float *dC;          // (B, T, C)   d of an LN output or of the attention output
    float *d4C;         // (B, T, 4C)  d of the MLP hidden layer; also holds dqkv (B, T, 3C)
    float *dlora;       // (B, T, r)   d of x · A
    float *datt_row;    // (B, NH, P + T)  one row of attention-probability gradients per head
} Activations;

struct GPT {
    GPTConfig config;
    size_t tensor_sizes[GPT_NUM_TENSORS];
    size_t num_parameters;
    GPTParams params;
    float *params_memory;
    GPTParams grads;
    float *grads_memory;             // NULL until a tensor needs a gradient
    int frozen[GPT_NUM_TENSORS];
    LoRA *lora;
    Activations acts;
    float *acts_memory;
    size_t acts_capacity;            // floats
    int *inputs;                     // (B, T) token ids of the last forward
    size_t inputs_capacity;
    int B, T;                        // of the last forward (0 before any)
    int lora_generation;             // counts attaches and detaches
    int forward_lora_generation;     // ... as of the last forward, whose layout the backward needs
    // The shared prefix of the last gpt_forward_shared (prefix_len 0: the last forward had none):
    // its activations (one row of prefix_len tokens; gpt_forward_shared swaps them with acts while
    // the prefix runs), which rows read it, and the gradient of its keys and values.
    int prefix_len;
    int forward_only;                // the last forward was gpt_forward_cached: no backward
    Activations prefix_acts;
    float *prefix_acts_memory;
    size_t prefix_acts_capacity;
    int *prefix_inputs;
    size_t prefix_inputs_capacity;
    int *prefix_rows, *prefix_lens;  // (B) all 0 and all prefix_len: every row reads the one prefix
    float *prefix_dqkv;              // (L, prefix_len, 3C) d of its q (unused), k and v
    size_t prefix_capacity;          // ints in prefix_rows / lens, floats in prefix_dqkv
    const GPT *view_of;              // a view (gpt_view): the weights and adapter are that model's
};

static float **tensor_slot(GPTParams *p, int i) {
    float **slots[GPT_NUM_TENSORS] = {
        &p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb, &p->attprojw, &p->attprojb,
        &p->ln2w, &p->ln2b, &p->fcw, &p->fcb, &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb,
    };
    return slots[i];
}

static void point_tensors(GPTParams *p, float *memory, const size_t sizes[GPT_NUM_TENSORS]) {
    for (int i = 0; i < GPT_NUM_TENSORS; i++) { *tensor_slot(p, i) = memory; memory += sizes[i]; }
}

// Limits keep every size product far from overflow and reject nonsense configs from files.
static int gpt_config_check(GPTConfig c, char *why, size_t why_len) {
    const char *problem = NULL;
    if (c.vocab_size < 1 || c.vocab_size > (1 << 22)) problem = "vocab_size outside [1, 4194304]";
    else if (c.max_seq_len < 1 || c.max_seq_len > (1 << 16)) problem = "max_seq_len outside [1, 65536]";
    else if (c.n_layer < 1 || c.n_layer > 1024) problem = "n_layer outside [1, 1024]";
    else if (c.n_embd < 1 || c.n_embd > (1 << 15)) problem = "n_embd outside [1, 32768]";
    else if (c.n_head < 1 || c.n_head > c.n_embd || c.n_embd % c.n_head) problem = "n_embd not divisible by n_head";
    if (problem) snprintf(why, why_len, "%s (V=%d maxT=%d L=%d NH=%d C=%d)", problem, c.vocab_size,
                          c.max_seq_len, c.n_layer, c.n_head, c.n_embd);
    return problem != NULL;
}

static void tensor_sizes(GPTConfig c, size_t sizes[GPT_NUM_TENSORS]) {
    size_t V = (size_t)c.vocab_size, maxT = (size_t)c.max_seq_len, L = (size_t)c.n_layer, C = (size_t)c.n_embd;
    size_t s[GPT_NUM_TENSORS] = {
        V * C, maxT * C, L * C, L * C, L * C * 3 * C, L * 3 * C, L * C * C, L * C,
        L * C, L * C, L * C * 4 * C, L * 4 * C, L * 4 * C * C, L * C, C, C,
    };
    memcpy(sizes, s, sizeof s);
}

// A model with its parameter block allocated but not filled.
static GPT *gpt_alloc(GPTConfig config) {
    GPT *model = gfn_calloc(1, sizeof(GPT));
    model->config = config;
    tensor_sizes(config, model->tensor_sizes);
    for (int i = 0; i < GPT_NUM_TENSORS; i++) model->num_parameters += model->tensor_sizes[i];
    model->params_memory = gfn_malloc(model->num_parameters * sizeof(float));
    point_tensors(&model->params, model->params_memory, model->tensor_sizes);
    return model;
}

GPT *gpt_new_random(GPTConfig config, uint64_t seed) {
    char why[256];
    if (gpt_config_check(config, why, sizeof why)) { fprintf(stderr, "gfn: bad model config: %s\n", why); return NULL; }
    GPT *model = gpt_alloc(config);
    Rng rng;
    rng_seed(&rng, seed);
    // GPT-2's init: weights N(0, 0.02); the two projections into the residual stream scaled by
    // 1/√(2L) so the stream's variance does not grow with depth; biases 0; LayerNorm 1 and 0.
    float residual_std = 0.02f / sqrtf(2.0f * (float)config.n_layer);
    for (int i = 0; i < GPT_NUM_TENSORS; i++) {
        float *t = *tensor_slot(&model->params, i);
        size_t n = model->tensor_sizes[i];
        int is_weight = i == T_WTE || i == T_WPE || i == T_QKVW || i == T_ATTPROJW || i == T_FCW || i == T_FCPROJW;
        int is_ln_weight = i == T_LN1W || i == T_LN2W || i == T_LNFW;
        float std = (i == T_ATTPROJW || i == T_FCPROJW) ? residual_std : 0.02f;
        for (size_t j = 0; j < n; j++) t[j] = is_weight ? std * rng_normal(&rng) : (is_ln_weight ? 1.0f : 0.0f);
    }
    return model;
}

void gpt_free(GPT *model) {
    if (!model) return;
    if (!model->view_of || model->lora != model->view_of->lora) gpt_lora_detach(model);   // its own adapter
    if (!model->view_of) {   // a view's weights are its model's
        free(model->params_memory);
        free(model->grads_memory);
    }
    free(model->acts_memory);
    free(model->inputs);
    free(model->prefix_acts_memory);
    free(model->prefix_inputs);
    free(model->prefix_rows);
    free(model->prefix_lens);
    free(model->prefix_dqkv);
    free(model);
}

// A second handle on model's weights and adapter with activations of its own. Weights are shared,
// not copied: a forward through the view computes exactly what one through model computes, and
// leaves model's activations (which model's backward reads) alone, so one thread can sample
// through the view while another runs model's forward and backward (gfn_train's pipeline). It
// has no gradients (every tensor frozen, no backward after its forwards), must be freed before
// model, and sees model's adapter as attached when the view was made.
GPT *gpt_view(GPT *model) {
    GPT *view = gfn_calloc(1, sizeof(GPT));
    view->config = model->config;
    memcpy(view->tensor_sizes, model->tensor_sizes, sizeof view->tensor_sizes);
    view->num_parameters = model->num_parameters;
    view->params = model->params;
    view->params_memory = model->params_memory;
    for (int i = 0; i < GPT_NUM_TENSORS; i++) view->frozen[i] = 1;
    view->lora = model->lora;
    view->lora_generation = model->lora_generation;
    view->view_of = model;
    return view;
}

GPTConfig gpt_config(const GPT *model) { return model->config; }
GPTParams *gpt_params(GPT *model) { return &model->params; }
size_t gpt_num_parameters(const GPT *model) { return model->num_parameters; }
float *gpt_params_memory(GPT *model) { return model->params_memory; }

GPTParams *gpt_grads(GPT *model) {
    if (!model->grads_memory) {
        model->grads_memory = gfn_calloc(model->num_parameters, sizeof(float));
        point_tensors(&model->grads, model->grads_memory, model->tensor_sizes);
    }
    return &model->grads;
}
float *gpt_grads_memory(GPT *model) { gpt_grads(model); return model->grads_memory; }

void gpt_set_frozen(GPT *model, int tensor, int frozen) {
    if (tensor >= 0 && tensor < GPT_NUM_TENSORS) model->frozen[tensor] = frozen != 0;
}
void gpt_freeze_all(GPT *model, int frozen) {
    for (int i = 0; i < GPT_NUM_TENSORS; i++) model->frozen[i] = frozen != 0;
}

// The gradient tensor of parameter tensor i, or NULL when it is frozen (nothing is computed).
static float *grad_of(GPT *model, int i) {
    if (model->frozen[i]) return NULL;
    return *tensor_slot(gpt_grads(model), i);
}

void gpt_zero_grad(GPT *model) {
    if (model->grads_memory) memset(model->grads_memory, 0, model->num_parameters * sizeof(float));
    if (model->lora) memset(model->lora->grad_memory, 0, model->lora->num_parameters * sizeof(float));
}

// ----------------------------------------------------------------------------------------------
// ==== matmul (the hot path) ====
//
// Every product below is one routine, gemm: C (m, n) (+)= A (m, k) · B (k, n), where A and B are
// read through a row stride and a column stride. A transposed operand is then just a matrix with
// its strides swapped, so the four public functions (and their transposed products dinp = dout·Wᵀ,
// dW += inpᵀ·dout) all share one cache-blocked loop nest and one micro-kernel:
//
//   for jc over n in NC-wide blocks              (NC: the C block MC x NC, 1 MB, stays in L3)
//     for pc over k in KC-deep slices            (KC: a B panel KC x NR fills half of L1)
//       for ic over m in MC-tall blocks          (MC: the packed A block MC x KC fits in L2)
//         pack A[ic.., pc..] into a_pack         (MR-row panels, column by column: contiguous)
//         for each NR-wide column panel jr of the C block:
//           pack B[pc.., jr..] into b_pack       (KC x NR: stays in L1)
//           for each MR-row panel ir of the A block:
//             micro-kernel: the MR x NR tile of C (+)= a_pack panel · b_pack panel
//
// With OpenMP, each thread runs this loop nest on its own slab of C (see gemm).
//
// The micro-kernel keeps an MR x NR block of C in registers (6 x 16 floats = 12 AVX2 registers;
// the other 4 hold two B vectors and the broadcast A element) and for each of the KC steps
// does MR x NR multiply-adds from one contiguous 16-float row of B and MR contiguous A elements.
// Packing puts both operands in exactly that order, zero-padded to whole panels, so the kernel
// has no edge cases: partial tiles are computed in full and only the valid part is written.
//
// Determinism: every element of C is computed by one thread and summed in the same order (pc
// slice by slice, k in order within a slice; the slices depend on k alone) whatever the thread
// count, so results are bit-identical between runs and even between thread counts. No atomics,
// no reductions: the weight gradient's sum over the M rows is the k loop of its own gemm.

#ifdef _OPENMP
#include <omp.h>
#endif
// The micro-kernel is plain C; loop pragmas steer gcc and clang to the code we want (checked in
// their assembly: 12 accumulator registers, 12 vfmadd231ps per k step, no spills; other
// compilers ignore them). Unrolling the row loop fully and the k loop by 2 lets clang keep acc in
// registers (without: spills, ~25 GFLOP/s). gcc, left alone, fully unrolls the column loop and
// then vectorises the wrong way (~2 GFLOP/s); told not to unroll it, it vectorises it.
#if defined(__GNUC__) && !defined(__clang__)
#define KEEP_COLUMN_LOOP _Pragma("GCC unroll 1")
#else
#define KEEP_COLUMN_LOOP
#endif

// Block sizes for a core with 32 KB L1d and 512 KB L2 (AMD Zen 3); override with -D to experiment.

#ifndef MM_MR
#define MM_MR 6       // rows of the register tile
#endif
#ifndef MM_NR
#ifdef __AVX512F__
#define MM_NR 32      // columns of the register tile: two 16-float AVX-512 vectors, so 12
#else                 // accumulators, as many as two FMA pipes with 4-cycle latency keep busy
#define MM_NR 16      // columns of the register tile (two 8-float AVX2 vectors)
#endif
#endif
// gcc 12 tunes an unknown AVX-512 core (Zen 5) as Zen 3 and then vectorises with 256-bit
// registers only: half the width, ~70 % of OpenBLAS (scripts/blas_compare.sh). Asked for 512-bit
// vectors in the matmul alone, the same C reaches 90-105 %. (clang uses them already.) The bits do
// not change with the width: each element is still summed in k order, slice by slice.
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=512")
#define MM_POP_OPTIONS
#endif
#ifndef MM_KC
#define MM_KC 256     // depth of a slice: b_pack = KC x NR floats = 16 KB (32 KB with AVX-512), in L1;
#endif                // the same on every machine, so that the sums, and the bits, are the same
#ifndef MM_MC
#define MM_MC 264     // rows of a packed A block: MC x KC floats = 264 KB, half of L2
#endif
#ifndef MM_C_BLOCK
#define MM_C_BLOCK 262144  // floats of C finished before moving on (1 MB): the C block MC x NC
#endif                     // stays in L3 across the pc slices instead of coming from memory

// a*b + c in one rounding where the hardware has FMA (C99's FP_FAST_FMAF says fmaf is as fast
// as a*b+c); a plain multiply-add otherwise, never a slow software fmaf.
#ifdef FP_FAST_FMAF
#define MADD(a, b, c) fmaf(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

// A strided read-only matrix: element (i, j) is at p[i * rs + j * cs].
typedef struct { const float *p; long rs, cs; } MatView;

// a_pack (mc rounded up to MR, kc): panel after panel of MR rows, each stored column by column,
// so the kernel reads MR consecutive floats per k step. Rows past m are zero. `width` is the
// panel's row count: MM_MR, or the few-rows path's packed A (up to FEW_ROWS_WIDE rows).
static void pack_a_panel(float *dst, MatView a, int i0, int rows, int p0, int kc, int width) {
    for (int p = 0; p < kc; p++) {
        const float *src = a.p + (long)i0 * a.rs + (long)(p0 + p) * a.cs;
        for (int i = 0; i < rows; i++) dst[p * width + i] = src[i * a.rs];
        for (int i = rows; i < width; i++) dst[p * width + i] = 0.0f;
    }
}

// b_pack (kc, NR): one column panel, row by row. Columns past n are zero. When B's rows are
// contiguous (cs == 1) each packed row is a copy; otherwise (Bᵀ) walk each column contiguously.
static void pack_b_panel(float *dst, MatView b, int p0, int kc, int j0, int cols) {
    if (b.cs == 1) {
        for (int p = 0; p < kc; p++) {
            const float *src = b.p + (long)(p0 + p) * b.rs + j0;
            for (int j = 0; j < cols; j++) dst[p * MM_NR + j] = src[j];
            for (int j = cols; j < MM_NR; j++) dst[p * MM_NR + j] = 0.0f;
        }
    } else {   // 16 rows of the panel at a time: the columns' reads are whole cache lines, the
               // writes stay in a 16 x NR window of L1 (a whole column at a time touched kc lines)
        for (int p1 = 0; p1 < kc; p1 += 16) {
            int rows = kc - p1 < 16 ? kc - p1 : 16;
            for (int j = 0; j < cols; j++) {
                const float *src = b.p + (long)(j0 + j) * b.cs + (long)(p0 + p1) * b.rs;
                for (int p = 0; p < rows; p++) dst[(p1 + p) * MM_NR + j] = src[p * b.rs];
            }
        }
        for (int j = cols; j < MM_NR; j++)
            for (int p = 0; p < kc; p++) dst[p * MM_NR + j] = 0.0f;
    }
}

// The register tile: acc (MR, NR) = a panel · b panel over kc steps, then the MR x NR tile of C
// gets acc (+ bias) when `store` (the first slice of a product that overwrites C), else C += acc.
// acc is only ever indexed by constants, so the compilers keep all of it in registers; partial
// tiles at the edges of C go through a small buffer instead (see write_edge_tile).
static void micro_kernel(int kc, const float *restrict a, const float *restrict b, long b_stride, float *restrict c,
                         long ldc, int store, const float *restrict bias) {
    float acc[MM_MR][MM_NR];
    for (int i = 0; i < MM_MR; i++)
        for (int j = 0; j < MM_NR; j++) acc[i][j] = 0.0f;
    _Pragma("GCC unroll 2")
    for (int p = 0; p < kc; p++) {
        const float *bp = b + p * b_stride;
        const float *ap = a + p * MM_MR;
        _Pragma("GCC unroll 16")
        for (int i = 0; i < MM_MR; i++) {
            KEEP_COLUMN_LOOP
            for (int j = 0; j < MM_NR; j++) acc[i][j] = MADD(ap[i], bp[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MM_MR; i++) {
        float *ci = c + i * ldc;
        if (store && bias) for (int j = 0; j < MM_NR; j++) ci[j] = acc[i][j] + bias[j];
        else if (store)    for (int j = 0; j < MM_NR; j++) ci[j] = acc[i][j];
        else               for (int j = 0; j < MM_NR; j++) ci[j] += acc[i][j];
    }
}

// The valid rows x cols corner of a full tile computed into `tile` (MR, NR), onto C.
static void write_edge_tile(const float *tile, float *c, long ldc, int rows, int cols, int store, const float *bias) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float v = tile[i * MM_NR + j];
            c[i * ldc + j] = store ? (bias ? v + bias[j] : v) : c[i * ldc + j] + v;
        }
}

// Splits `total` into equal blocks of at most `most`, rounded up to a multiple of `unit`, so
// that e.g. 300 rows are two blocks of 150 rather than 264 + 36.
static int balanced_block(int total, int most, int unit) {
    int count = (total + most - 1) / most, size = (total + count - 1) / count;
    return (size + unit - 1) / unit * unit;
}

// One thread's gemm: C (m, n), row stride ldc, (+)= A · B through the blocked loop nest above.
// With store (the product overwrites C), C = A·B + bias (bias may be NULL); k >= 1.
static void gemm_blocked(float *c, long ldc, MatView a, MatView b, const float *bias, int m, int n, int k, int store) {
    int kc_max = balanced_block(k, MM_KC, 1), mc_max = balanced_block(m, MM_MC, MM_MR);
    int nc_max = balanced_block(n, MM_C_BLOCK / mc_max > MM_NR ? MM_C_BLOCK / mc_max : MM_NR, MM_NR);
    float *a_pack = gfn_malloc(sizeof(float) * ((size_t)mc_max * kc_max + (size_t)kc_max * MM_NR));
    float *b_pack = a_pack + (size_t)mc_max * kc_max;   // ~280 KB in all
    for (int j0 = 0; j0 < n; j0 += nc_max) {
        int nc = n - j0 < nc_max ? n - j0 : nc_max;
        for (int p0 = 0; p0 < k; p0 += kc_max) {
            int kc = k - p0 < kc_max ? k - p0 : kc_max;
            int first = store && p0 == 0;
            for (int i0 = 0; i0 < m; i0 += mc_max) {
                int mc = m - i0 < mc_max ? m - i0 : mc_max, m_panels = (mc + MM_MR - 1) / MM_MR;
                for (int ip = 0; ip < m_panels; ip++) {
                    int rows = mc - ip * MM_MR < MM_MR ? mc - ip * MM_MR : MM_MR;
                    pack_a_panel(a_pack + (size_t)ip * MM_MR * kc, a, i0 + ip * MM_MR, rows, p0, kc, MM_MR);
                }
                for (int c0 = j0; c0 < j0 + nc; c0 += MM_NR) {
                    int cols = n - c0 < MM_NR ? n - c0 : MM_NR;
                    // With one or two row panels the packed panel would be read once or twice:
                    // B's rows are read in place then, when they are contiguous and whole.
                    const float *b_panel = b_pack;
                    long b_stride = MM_NR;
                    if (m_panels <= 2 && b.cs == 1 && cols == MM_NR) {
                        b_panel = b.p + (long)p0 * b.rs + c0;
                        b_stride = b.rs;
                    } else {
                        pack_b_panel(b_pack, b, p0, kc, c0, cols);
                    }
                    const float *bias_tile = bias ? bias + c0 : NULL;
                    for (int ip = 0; ip < m_panels; ip++) {
                        int r0 = i0 + ip * MM_MR, rows = m - r0 < MM_MR ? m - r0 : MM_MR;
                        const float *a_panel = a_pack + (size_t)ip * MM_MR * kc;
                        float *c_tile = c + (long)r0 * ldc + c0;
                        if (rows == MM_MR && cols == MM_NR) {
                            micro_kernel(kc, a_panel, b_panel, b_stride, c_tile, ldc, first, bias_tile);
                        } else {   // an edge tile: computed in full, written in part
                            float tile[MM_MR * MM_NR];
                            micro_kernel(kc, a_panel, b_panel, b_stride, tile, MM_NR, 1, NULL);
                            write_edge_tile(tile, c_tile, ldc, rows, cols, first, bias_tile);
                        }
                    }
                }
            }
        }
    }
    free(a_pack);
}

// Few rows (m < MM_MR: the sampler's decode steps at batch 1-5; and m = 7, 8 with 32-column
// tiles, see below). The register tile would compute whole MM_MR-row panels (m = 8 as a 6-row and
// a 2-row panel: the cost of 12 rows), and packing all of B up front would copy it for one use;
// instead each thread takes its strips of MM_NR columns of B, one K slice at a time (read in place
// when B's rows are contiguous; else packed into L1 as the blocked path packs them, which turns
// Bᵀ's columns into rows), and runs the m rows over it together: each row of the slice is read once
// and feeds every row's accumulators, so B is read once and the product is limited by memory
// bandwidth, as a matrix-vector product must be. (Row after row instead re-read each slice from L2
// for every row: 2-5 rows took 2-5 times as long as one.) Every element is summed exactly as
// gemm_blocked sums it (the same K slices, each from zero in index order, the bias with the
// first), so a decode step at any batch gives the full forward's bits.
//
// FEW_ROWS_SLICE(NAME, MAX_ROWS) defines NAME(rows, ...): `rows` (<= MAX_ROWS) rows of C over one
// slice of one strip, from A packed as (k, MAX_ROWS): element (i, p) at a_rows[p·MAX_ROWS + i], or
// A's one row read in place (a_step = its column stride). rows is a constant at each call
// (gemm_few_rows switches on m), so that acc stays in registers. It is a macro because the sum
// array's size must be a constant of its own: one array of 8 rows for every m made gcc keep the
// sums of m <= 5 in memory (1.6x slower at m = 1).
#define FEW_ROWS_SLICE(NAME, MAX_ROWS) \
static inline void NAME(int rows, float *c, long ldc, const float *a_rows, long a_step, \
                        const float *b_rows, long b_stride, int p0, int kc, int j0, int cols, \
                        const float *bias, int first) { \
    float acc[MAX_ROWS][MM_NR];   /* this slice's sums of the rows' strips */ \
    for (int i = 0; i < MAX_ROWS; i++) \
        for (int j = 0; j < MM_NR; j++) acc[i][j] = 0.0f; \
    for (int p = 0; p < kc; p++) { \
        const float *b_row = b_rows + p * b_stride, *a_p = a_rows + (long)(p0 + p) * a_step; \
        _Pragma("GCC unroll 16") \
        for (int i = 0; i < rows; i++) { \
            KEEP_COLUMN_LOOP \
            for (int j = 0; j < MM_NR; j++) acc[i][j] = MADD(a_p[i], b_row[j], acc[i][j]); \
        } \
    } \
    for (int i = 0; i < rows; i++) { \
        float *ci = c + (long)i * ldc + j0; \
        for (int j = 0; j < cols; j++) \
            ci[j] = first ? (bias ? acc[i][j] + bias[j0 + j] : acc[i][j]) : ci[j] + acc[i][j]; \
    } \
}
FEW_ROWS_SLICE(few_rows_slice, MM_MR)
// With 32-column tiles (AVX-512: 32 vector registers), 8 rows' sums are 16 registers, so m = 7
// and 8 (K = 8 samples of a question, the GFlowNet runs' decode batch) also run in one pass:
// 1.35-1.55x faster than the two panels of the blocked path at the shipped model's shapes. With
// 16-column tiles (AVX2, SSE: 16 registers) 8 rows' sums would not fit.
#if MM_NR >= 32 && defined(__AVX512F__)
#define FEW_ROWS_WIDE 8
FEW_ROWS_SLICE(few_rows_slice_wide, FEW_ROWS_WIDE)
#else
#define FEW_ROWS_WIDE 0
#endif

// `rows` rows of C over all of B's strips; A as few_rows_slice reads it, a_step MM_MR (or
// FEW_ROWS_WIDE for more than MM_MR rows).
static inline void few_rows_strips(int rows, float *c, long ldc, const float *a_rows, long a_step, MatView b,
                                   const float *bias, int n, int k, int accumulate) {
    int strips = (n + MM_NR - 1) / MM_NR, kc_max = balanced_block(k, MM_KC, 1);
    #pragma omp parallel for schedule(static) if ((double)n * k >= 262144.0)
    for (int s = 0; s < strips; s++) {
        int j0 = s * MM_NR, cols = n - j0 < MM_NR ? n - j0 : MM_NR;
        float *b_pack = gfn_malloc(sizeof(float) * (size_t)kc_max * MM_NR);   // (kc, MM_NR) the slice
        for (int p0 = 0; p0 < k; p0 += kc_max) {
            int kc = k - p0 < kc_max ? k - p0 : kc_max, first = !accumulate && p0 == 0;
            // B's rows straight from memory when they are contiguous and the strip is whole
            const float *b_rows = b.p + (long)p0 * b.rs + j0;
            long b_stride = b.rs;
            if (b.cs != 1 || cols < MM_NR) {
                pack_b_panel(b_pack, b, p0, kc, j0, cols);
                b_rows = b_pack;
                b_stride = MM_NR;
            }
#if FEW_ROWS_WIDE
            if (rows > MM_MR)
                few_rows_slice_wide(rows, c, ldc, a_rows, a_step, b_rows, b_stride, p0, kc, j0, cols, bias, first);
            else
#endif
                few_rows_slice(rows, c, ldc, a_rows, a_step, b_rows, b_stride, p0, kc, j0, cols, bias, first);
        }
        free(b_pack);
    }
}

// Does gemm take the few-rows path for m rows? Not with clang (14): it keeps these sums in memory,
// so each row costs about as much as m = 1 and even one row took longer than a whole 6-row panel
// of the blocked path (AVX2 and AVX-512, measured 2026-12-08: m = 1-5 1.4-9x slower); the blocked
// path gives the same bits.
static int few_rows(int m) {
#ifdef __clang__
    (void)m;
    return 0;
#else
    return m < MM_MR || (m > MM_MR && m <= FEW_ROWS_WIDE);
#endif
}

static void gemm_few_rows(float *c, long ldc, MatView a, MatView b, const float *bias, int m, int n, int k, int accumulate) {
    if (m == 1) {   // a matrix-vector product: A's row read in place
        few_rows_strips(1, c, ldc, a.p, a.cs, b, bias, n, k, accumulate);
        return;
    }
    int width = m < MM_MR ? MM_MR : FEW_ROWS_WIDE;   // the packed A's row count, zero rows past m
    float *a_pack = gfn_malloc(sizeof(float) * (size_t)k * width);   // (k, width): all of A, m x k floats
    pack_a_panel(a_pack, a, 0, m, 0, k, width);
    switch (m) {
        case 2: few_rows_strips(2, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;
        case 3: few_rows_strips(3, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;
        case 4: few_rows_strips(4, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;
        case 5: few_rows_strips(5, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;
        case 7: few_rows_strips(7, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;
        case 8: few_rows_strips(8, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;
        default: few_rows_strips(m, c, ldc, a_pack, width, b, bias, n, k, accumulate); break;   // MM_MR != 6 by -D
    }
    free(a_pack);
}

// C (m, n), row stride ldc, (+)= A · B. With accumulate == 0, C = A·B + bias (bias may be NULL).
// Threads split C into one slab each, whole register panels, and run independently: no barrier
// until the end, which matters on a busy machine where a waiting thread waits a time slice.
// They split the longer side (rows when m >= n), so that the operand each packs for itself in
// full (B for row slabs, A for column slabs) is the smaller one.
static void gemm(float *c, long ldc, MatView a, MatView b, const float *bias, int m, int n, int k, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   // an empty sum: C is untouched (+= 0) or becomes the bias
        if (!accumulate)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) c[i * ldc + j] = bias ? bias[j] : 0.0f;
        return;
    }
    if (few_rows(m)) {
        gemm_few_rows(c, ldc, a, b, bias, m, n, k, accumulate);
        return;
    }
    int split_rows = m >= n, unit = split_rows ? MM_MR : MM_NR;
    int units = ((split_rows ? m : n) + unit - 1) / unit, threads = 1;
#ifdef _OPENMP
    // Threads only pay off above ~10 µs of work: a parallel region costs a few µs.
    if ((double)m * n * k >= 262144.0) threads = omp_get_max_threads();
#endif
    if (threads > units) threads = units;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < threads; t++) {
        int begin = (int)((long)units * t / threads) * unit, end = (int)((long)units * (t + 1) / threads) * unit;
        if (split_rows) {
            if (end > m) end = m;
            MatView a_rows = { a.p + (long)begin * a.rs, a.rs, a.cs };
            gemm_blocked(c + (long)begin * ldc, ldc, a_rows, b, bias, end - begin, n, k, !accumulate);
        } else {
            if (end > n) end = n;
            MatView b_cols = { b.p + (long)begin * b.cs, b.rs, b.cs };
            gemm_blocked(c + begin, ldc, a, b_cols, bias ? bias + begin : NULL, m, end - begin, k, !accumulate);
        }
    }
}
#ifdef MM_POP_OPTIONS
#pragma GCC pop_options
#endif

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N) {
    // out (M, N) = inp (M, K) · weight (K, N) + bias
    MatView a = { inp, K, 1 }, b = { weight, N, 1 };
    gemm(out, N, a, b, bias, M, N, K, 0);
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int M, int K, int N) {
    if (dinp) {      // dinp (M, K) += dout (M, N) · weightᵀ (N, K)
        MatView a = { dout, N, 1 }, wt = { weight, 1, N };
        gemm(dinp, K, a, wt, NULL, M, K, N, 1);
    }
    if (dweight) {   // dweight (K, N) += inpᵀ (K, M) · dout (M, N): the sum over the M rows
        MatView inp_t = { inp, 1, K }, b = { dout, N, 1 };
        gemm(dweight, N, inp_t, b, NULL, K, N, M, 1);
    }
    if (dbias) {     // dbias (N) += Σ_rows dout: each thread owns a range of columns
        #pragma omp parallel for schedule(static) if ((double)M * N >= 262144.0)
        for (int j0 = 0; j0 < N; j0 += 64) {
            int j1 = N - j0 < 64 ? N : j0 + 64;
            for (int i = 0; i < M; i++)
                for (int j = j0; j < j1; j++) dbias[j] += dout[(long)i * N + j];
        }
    }
}

void matmul_forward_nt(float *out, const float *inp, const float *weight, int M, int K, int N) {
    // out (M, N) = inp (M, K) · weightᵀ, weight (N, K)
    MatView a = { inp, K, 1 }, wt = { weight, 1, K };
    gemm(out, N, a, wt, NULL, M, N, K, 0);
}

void matmul_backward_nt(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, int M, int K, int N) {
    if (dinp) {      // dinp (M, K) += dout (M, N) · weight (N, K)
        MatView a = { dout, N, 1 }, b = { weight, K, 1 };
        gemm(dinp, K, a, b, NULL, M, K, N, 1);
    }
    if (dweight) {   // dweight (N, K) += doutᵀ (N, M) · inp (M, K)
        MatView dout_t = { dout, 1, N }, b = { inp, K, 1 };
        gemm(dweight, K, dout_t, b, NULL, N, K, M, 1);
    }
}
// ==== end matmul ====

// ----------------------------------------------------------------------------------------------
// GPT-2: the layers, each forward next to its backward. N below is a number of positions (B·T
// or the rows of a decode step). Every loop gives each output element to one thread, which sums
// in a fixed order: results are bit-identical from run to run and for any thread count.

// A loop opens a parallel region only when it has at least this many flops of work: below it,
// waking the other threads (and, on a busy machine, waiting for one that has lost its core)
// costs more than the loop.
#define PARALLEL_MIN_WORK 50000.0

// Encoder: out[b,t] = wte[id] + wpe[first[b] + t]; first (B) is each row's first position (NULL: 0).
static void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C,
                            const int *first) {
    // out (B, T, C), inp (B, T), wte (V, C), wpe (maxT, C)
    #pragma omp parallel for schedule(static) if ((double)B * T * C >= PARALLEL_MIN_WORK)
    for (int bt = 0; bt < B * T; bt++) {
        const float *e = wte + (size_t)inp[bt] * C, *p = wpe + (size_t)(bt % T + (first ? first[bt / T] : 0)) * C;
        float *o = out + (size_t)bt * C;
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
}

static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C,
                             const int *first) {
    // dout (B, T, C). A token may repeat, so dwte is split by channel: each thread owns columns.
    if (dwte) {
        #pragma omp parallel for schedule(static) if ((double)B * T * C >= PARALLEL_MIN_WORK)
        for (int c = 0; c < C; c++)
            for (int bt = 0; bt < B * T; bt++) dwte[(size_t)inp[bt] * C + c] += dout[(size_t)bt * C + c];
    }
    if (dwpe) {   // rows may start at different positions: each thread owns 16 channels at a time
        #pragma omp parallel for schedule(static) if ((double)B * T * C >= PARALLEL_MIN_WORK)
        for (int c0 = 0; c0 < C; c0 += 16)
            for (int t = 0; t < T; t++)
                for (int b = 0; b < B; b++) {
                    float *dp = dwpe + (size_t)(t + (first ? first[b] : 0)) * C;
                    const float *d = dout + ((size_t)b * T + t) * C;
                    for (int c = c0; c < C && c < c0 + 16; c++) dp[c] += d[c];
                }
    }
}

// LayerNorm (eps 1e-5 as HF): y = (x − mean) / √(var + eps) · w + b, var the biased variance.
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C) {
    // out (N, C), mean (N), rstd (N), inp (N, C), weight (C), bias (C)
    #pragma omp parallel for schedule(static) if (8.0 * N * C >= PARALLEL_MIN_WORK)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float m = 0.0f, v = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= (float)C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        float s = 1.0f / sqrtf(v / (float)C + 1e-5f);
        float *o = out + (size_t)i * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N, int C) {
    // dinp (N, C) +=; with n = (x − mean)·rstd and g = dout·w:  dx = rstd · (g − mean(g) − n · mean(g·n))
    // One parallel region for both loops (rows, then channels).
    #pragma omp parallel if (12.0 * N * C >= PARALLEL_MIN_WORK)
    {
        #pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
            float m = mean[i], s = rstd[i], g_mean = 0.0f, gn_mean = 0.0f;
            for (int c = 0; c < C; c++) {
                float g = d[c] * weight[c];
                g_mean += g;
                gn_mean += g * (x[c] - m) * s;
            }
            g_mean /= (float)C;
            gn_mean /= (float)C;
            float *dx = dinp + (size_t)i * C;
            for (int c = 0; c < C; c++) dx[c] += s * (d[c] * weight[c] - g_mean - (x[c] - m) * s * gn_mean);
        }
        // dweight (C) += Σ_i dout·n, dbias (C) += Σ_i dout: each thread owns channels
        if (dweight || dbias) {
            #pragma omp for schedule(static) nowait
            for (int c = 0; c < C; c++) {
                float dw = 0.0f, db = 0.0f;
                for (int i = 0; i < N; i++) {
                    float d = dout[(size_t)i * C + c];
                    dw += d * (inp[(size_t)i * C + c] - mean[i]) * rstd[i];
                    db += d;
                }
                if (dweight) dweight[c] += dw;
                if (dbias) dbias[c] += db;
            }
        }
    }
}

#define TRI(t) ((size_t)(t) * ((size_t)(t) + 1) / 2)   // entries of a causal triangle of t rows

// exp(x) in plain float arithmetic that the compiler vectorises (libm's expf is a call per
// element): x = n·ln2 + r with |r| ≤ ln2/2, exp(r) by a degree-7 polynomial (Cephes' expf
// coefficients, ~1 ulp), 2^n assembled in the exponent bits. x is clamped to [-87, 88], where
// 2^n stays a normal float; below, the true value is < 2e-38 and is returned as ~1.6e-38.
// The clamp compares bit patterns: integer selects are if-converted, while float compares
// (which may trap) would stay branches and stop the vectoriser. NaN clamps to 88.
static inline float exp_approx(float x) {
    union { float value; uint32_t bits; } c = { x }, t, two_n;
    c.bits = (int32_t)c.bits > 0x42B00000 ? 0x42B00000u : c.bits;   // x > 88: 88 (0x42B00000)
    c.bits = c.bits > 0xC2AE0000u ? 0xC2AE0000u : c.bits;            // x < -87: -87 (0xC2AE0000)
    x = c.value;
    t.value = x * 1.44269504088896341f + 12582912.0f;   // round(x / ln2) in the low bits: 1.5·2^23
    float n = t.value - 12582912.0f;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;   // ln2 split in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    two_n.bits = (t.bits - 0x4B400000u + 127u) << 23;   // 2^n: n + 127 in the exponent field
    return p * two_n.value;
}

// Keys and values of earlier positions, computed elsewhere, that the rows of a forward attend to
// before their own: row b continues row row[b] of that store, which holds its positions
// [0, len[b]); the row's own tokens then sit at positions len[b], len[b] + 1, ... Element
// (l, r, p, c) of the keys is k[l·layer + r·row_stride + p·pos_stride + c], the values likewise
// from v. Two stores are used: the activations of a shared prefix (one row, the K and V thirds
// of its qkv) and a KV cache. dk, dv (same layout as k, v, NULL: no gradient) collect the
// gradient of those keys and values, summed over every row that reads them.
typedef struct {
    const float *k, *v;           // (L, rows, positions, C) through the strides below
    size_t layer, row_stride, pos_stride;
    const int *row, *len;         // (B) which stored row each forward row continues, and its length
    int max_len;                  // the largest len[b]
    float *dk, *dv;               // gradients, or NULL
} PrefixKV;

// The prefix length of row b (0 without a prefix) and the size of one head's attention rows:
// row t (len[b] + t + 1 probabilities) at offset t·max_len + t(t+1)/2.
static int prefix_len(const PrefixKV *pre, int b) { return pre ? pre->len[b] : 0; }
static size_t att_head_size(const PrefixKV *pre, int T) { return (size_t)T * (pre ? pre->max_len : 0) + TRI(T); }

// Causal self-attention over qkv (B, T, 3C); head h uses channels [h·hs, (h+1)·hs), hs = C/NH.
//   att[t, t2] = softmax_t2≤t (q_t · k_t2 / √hs),   out_t = Σ_t2 att[t, t2] · v_t2
// With a prefix, row b's keys and values are the P = len[b] stored ones followed by its own, and
// its query t (at position P + t) attends to t2 ≤ P + t: the arithmetic is the same as over one
// row holding the prefix and the suffix, so the outputs are bit-identical to that.
// O(T²·hs) per head, forward and backward. One thread owns a whole (b, h): it copies the head's
// keys (forward) or values (backward) transposed to (hs, P + T) (the forward pads the keys to
// whole blocks), so that a query's dot products with all keys become hs contiguous axpys over the
// keys; every inner loop then runs over a contiguous axis without a reduction chain, which the
// compiler vectorises.

// The key (which = 0) or value (1) of position t2 of row b, head channel 0, and the place of its
// gradient in the prefix store (NULL for the row's own positions: those live in dqkv).
static const float *kv_of(const float *qkv, const PrefixKV *pre, int which, int l, int b, int t2, int T, int C, int h, int hs) {
    int P = prefix_len(pre, b);
    if (t2 >= P) return qkv + ((size_t)b * T + (t2 - P)) * 3 * C + (1 + which) * C + h * hs;
    const float *base = which ? pre->v : pre->k;
    return base + l * pre->layer + (size_t)pre->row[b] * pre->row_stride + (size_t)t2 * pre->pos_stride + h * hs;
}

// The blocks of keys (scores) and of channels (outputs) whose sums stay in registers. Each sum
// still runs over its terms in order from zero, so the blocking leaves the bits unchanged.
enum { ATT_KEYS = 64, ATT_CHANNELS = 32 };

// The values of head h of a row start at x + 2C (x: its q, at qkv row 0 + h·hs).
static const float *v_own_of(const float *x, int C) { return x + 2 * C; }

// o[0..width) = Σ_t2<n a[t2] · v_t2[0..width), where v_t2 is v_pre + t2·pre_step for the P prefix
// positions and v_own + (t2 − P)·own_step for the row's own. width is a constant at each call, so
// that acc lives in registers through each loop (one loop per source: a select inside one loop
// made gcc keep acc in memory).
static inline void att_values_block(float *o, const float *a, const float *v_pre, size_t pre_step, const float *v_own,
                                    size_t own_step, int P, int n, int width) {
    float acc[ATT_CHANNELS] = { 0 };
    for (int t2 = 0; t2 < P; t2++) {
        const float *v = v_pre + (size_t)t2 * pre_step;
        float p = a[t2];
        for (int j = 0; j < width; j++) acc[j] += p * v[j];
    }
    for (int t2 = P; t2 < n; t2++) {
        const float *v = v_own + (size_t)(t2 - P) * own_step;
        float p = a[t2];
        for (int j = 0; j < width; j++) acc[j] += p * v[j];
    }
    for (int j = 0; j < width; j++) o[j] = acc[j];
}

// The same for two consecutive queries of a row at once, o0 over n keys and o1 over n + 1: each
// value row read feeds both (twice the independent sums per load, each still summed in order).
static inline void att_values_pair(float *o0, float *o1, const float *a0, const float *a1, const float *v_pre,
                                   size_t pre_step, const float *v_own, size_t own_step, int P, int n, int width) {
    float acc0[ATT_CHANNELS] = { 0 }, acc1[ATT_CHANNELS] = { 0 };
    for (int t2 = 0; t2 < P; t2++) {
        const float *v = v_pre + (size_t)t2 * pre_step;
        float p0 = a0[t2], p1 = a1[t2];
        for (int j = 0; j < width; j++) { acc0[j] += p0 * v[j]; acc1[j] += p1 * v[j]; }
    }
    for (int t2 = P; t2 < n; t2++) {
        const float *v = v_own + (size_t)(t2 - P) * own_step;
        float p0 = a0[t2], p1 = a1[t2];
        for (int j = 0; j < width; j++) { acc0[j] += p0 * v[j]; acc1[j] += p1 * v[j]; }
    }
    const float *v = v_own + (size_t)(n - P) * own_step;   // the key only the second query sees
    for (int j = 0; j < width; j++) { o0[j] = acc0[j]; o1[j] = acc1[j] + a1[n] * v[j]; }
}

static void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                              const PrefixKV *pre, int l) {
    // out (B, T, C), att (B, NH, att_head_size), qkv (B, T, 3C); l: the layer, for the prefix
    int hs = C / NH, maxP = pre ? pre->max_len : 0;
    float scale = 1.0f / sqrtf((float)hs);
    size_t head = att_head_size(pre, T);
    // kT's rows are padded to whole key blocks (zeros), so that every block of scores is computed
    // at full width and its sums stay in registers (a block that may be partial makes the
    // compilers keep them in memory: 3x slower); only the row's n scores are stored.
    int S_pad = (T + maxP + ATT_KEYS - 1) / ATT_KEYS * ATT_KEYS;
    #pragma omp parallel if (2.0 * B * NH * T * (T + maxP) * hs >= PARALLEL_MIN_WORK)
    {
        float *kT = gfn_calloc((size_t)hs * S_pad, sizeof(float));   // (hs, S_pad) this head's keys
        int kT_row = -1, kT_h = -1, kT_P = 0;   // whose prefix keys kT holds in columns [0, kT_P)
        // Head-major order: a thread's consecutive (h, b) share the head, and rows that continue
        // the same stored row (every row of a batch reading a shared prompt; the arithmetic
        // reward's states of one trajectory, each a little longer) share its keys up to the
        // shorter length: those are transposed once, not once per row.
        #pragma omp for schedule(static)
        for (int hb = 0; hb < NH * B; hb++) {
            int h = hb / B, b = hb % B, bh = b * NH + h, P = prefix_len(pre, b), S = P + T;   // S: keys of the row
            const float *x = qkv + (size_t)b * T * 3 * C + h * hs;   // (T, 3C) rows: q at +0, k at +C, v at +2C
            int have = P > 0 && pre->row[b] == kT_row && h == kT_h ? (P < kT_P ? P : kT_P) : 0;
            for (int t = have; t < S; t++) {
                const float *k = kv_of(qkv, pre, 0, l, b, t, T, C, h, hs);
                for (int i = 0; i < hs; i++) kT[(size_t)i * S_pad + t] = k[i];
            }
            if (P > 0) { kT_row = pre->row[b]; kT_h = h; kT_P = P; }
            // this head's values: the prefix's (v_pre + t2·pos_stride) then the row's (v_own + (t2 − P)·3C)
            const float *v_own = v_own_of(x, C);
            const float *v_pre = P > 0 ? kv_of(qkv, pre, 1, l, b, 0, T, C, h, hs) : v_own;   // (unread without a prefix)
            size_t pre_step = pre ? pre->pos_stride : 0, own_step = (size_t)3 * C;
            for (int t = 0; t < T; t += 2) {   // queries two at a time (see att_values_pair)
                int pair = t + 1 < T;
                float *a_of[2];
                for (int u = t; u <= t + pair; u++) {
                    const float *q = x + (size_t)u * 3 * C;            // (hs)
                    int n = P + u + 1;                                 // keys this query sees
                    float *a = a_of[u - t] = att + (size_t)bh * head + (size_t)u * maxP + TRI(u);   // (n)
                    // a[t2] = Σ_i q[i] · k_t2[i], ATT_KEYS keys at a time with their sums in registers
                    for (int t0 = 0; t0 < n; t0 += ATT_KEYS) {
                        float acc[ATT_KEYS] = { 0 };
                        for (int i = 0; i < hs; i++) {
                            const float *k = kT + (size_t)i * S_pad + t0;
                            float qi = q[i];
                            for (int j = 0; j < ATT_KEYS; j++) acc[j] += qi * k[j];
                        }
                        int w = n - t0 < ATT_KEYS ? n - t0 : ATT_KEYS;
                        for (int j = 0; j < w; j++) a[t0 + j] = acc[j];
                    }
                    float max = -INFINITY, sum = 0.0f;
                    for (int t2 = 0; t2 < n; t2++) { a[t2] *= scale; max = a[t2] > max ? a[t2] : max; }
                    for (int t2 = 0; t2 < n; t2++) a[t2] = exp_approx(a[t2] - max);
                    for (int t2 = 0; t2 < n; t2++) sum += a[t2];
                    for (int t2 = 0; t2 < n; t2++) a[t2] /= sum;
                }
                // o = Σ_t2 a[t2] · v_t2 in blocks of channels whose sums stay in registers
                int n = P + t + 1;
                float *o = out + ((size_t)b * T + t) * C + h * hs, *o1 = o + C;   // (hs) of query t, t + 1
                int i0 = 0;
                if (pair) {
                    for (; i0 + ATT_CHANNELS <= hs; i0 += ATT_CHANNELS)
                        att_values_pair(o + i0, o1 + i0, a_of[0], a_of[1], v_pre + i0, pre_step, v_own + i0, own_step, P, n, ATT_CHANNELS);
                    for (; i0 + 16 <= hs; i0 += 16)
                        att_values_pair(o + i0, o1 + i0, a_of[0], a_of[1], v_pre + i0, pre_step, v_own + i0, own_step, P, n, 16);
                    for (; i0 < hs; i0++)
                        att_values_pair(o + i0, o1 + i0, a_of[0], a_of[1], v_pre + i0, pre_step, v_own + i0, own_step, P, n, 1);
                } else {
                    for (; i0 + ATT_CHANNELS <= hs; i0 += ATT_CHANNELS)
                        att_values_block(o + i0, a_of[0], v_pre + i0, pre_step, v_own + i0, own_step, P, n, ATT_CHANNELS);
                    for (; i0 + 16 <= hs; i0 += 16) att_values_block(o + i0, a_of[0], v_pre + i0, pre_step, v_own + i0, own_step, P, n, 16);
                    for (; i0 < hs; i0++) att_values_block(o + i0, a_of[0], v_pre + i0, pre_step, v_own + i0, own_step, P, n, 1);
                }
            }
        }
        free(kT);
    }
}

// The backward of one (b, h) of attention_forward: dqkv of the row's own positions +=, and of
// the prefix's keys and values into pre->dk / dv. vT (hs, P + T) and da (P + T) are scratch.
static void attention_backward_head(float *dqkv, float *vT, float *da, const float *dout, const float *qkv,
                                    const float *att, int b, int h, int T, int C, int NH, const PrefixKV *pre, int l) {
    int hs = C / NH, P = prefix_len(pre, b), S = P + T, maxP = pre ? pre->max_len : 0;
    float scale = 1.0f / sqrtf((float)hs);
    const float *x = qkv + (size_t)b * T * 3 * C + h * hs;   // (T, 3C) rows: q, k, v of head h
    float *dx = dqkv + (size_t)b * T * 3 * C + h * hs;       // (T, 3C) rows: dq, dk, dv
    for (int t = 0; t < S; t++) {
        const float *v = kv_of(qkv, pre, 1, l, b, t, T, C, h, hs);
        for (int i = 0; i < hs; i++) vT[(size_t)i * S + t] = v[i];
    }
    for (int t = 0; t < T; t++) {
        int n = P + t + 1;
        const float *a = att + ((size_t)b * NH + h) * att_head_size(pre, T) + (size_t)t * maxP + TRI(t);   // (n)
        const float *dy = dout + ((size_t)b * T + t) * C + h * hs;   // (hs)
        // out_t = Σ_t2 a[t2] v_t2:  da[t2] = dy · v_t2,  dv_t2 += a[t2] · dy
        for (int t2 = 0; t2 < n; t2++) da[t2] = 0.0f;
        for (int i = 0; i < hs; i++) {
            const float *v = vT + (size_t)i * S;
            float dyi = dy[i];
            for (int t2 = 0; t2 < n; t2++) da[t2] += dyi * v[t2];
        }
        for (int t2 = 0; t2 < n; t2++) {
            float *dv = t2 >= P ? dx + (size_t)(t2 - P) * 3 * C + 2 * C
                                : pre->dv + l * pre->layer + (size_t)pre->row[b] * pre->row_stride + (size_t)t2 * pre->pos_stride + h * hs;
            float p = a[t2];
            for (int i = 0; i < hs; i++) dv[i] += p * dy[i];
        }
        // softmax backward, then the 1/√hs: dscore = a · (da − Σ a·da) / √hs
        float dot = 0.0f;
        for (int t2 = 0; t2 < n; t2++) dot += a[t2] * da[t2];
        for (int t2 = 0; t2 < n; t2++) da[t2] = a[t2] * (da[t2] - dot) * scale;
        // score = q_t · k_t2:  dq_t += dscore · k_t2,  dk_t2 += dscore · q_t
        const float *q = x + (size_t)t * 3 * C;
        float *dq = dx + (size_t)t * 3 * C;
        for (int t2 = 0; t2 < n; t2++) {
            const float *k = kv_of(qkv, pre, 0, l, b, t2, T, C, h, hs);
            float *dk = t2 >= P ? dx + (size_t)(t2 - P) * 3 * C + C
                                : pre->dk + l * pre->layer + (size_t)pre->row[b] * pre->row_stride + (size_t)t2 * pre->pos_stride + h * hs;
            float ds = da[t2];
            for (int i = 0; i < hs; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
        }
    }
}

static void attention_backward(float *dqkv, float *datt_row, const float *dout, const float *qkv, const float *att,
                               int B, int T, int C, int NH, const PrefixKV *pre, int l) {
    // dqkv (B, T, 3C) +=, datt_row (B, NH, maxP + T) scratch, dout (B, T, C). Keys and values
    // collect gradients from every later query, so a thread owns a whole (b, h): no two threads
    // write the same element, and each sums in a fixed order. The prefix's keys and values are
    // read by every row, so with a prefix gradient a thread owns a head h of all rows instead.
    int hs = C / NH, maxP = pre ? pre->max_len : 0, S = maxP + T;
    int by_head = pre && pre->dk;
    #pragma omp parallel if (2.0 * B * NH * T * S * hs >= PARALLEL_MIN_WORK)
    {
        float *vT = gfn_malloc((size_t)hs * S * sizeof(float));   // (hs, P + T) this head's values
        if (by_head) {
            #pragma omp for schedule(static)
            for (int h = 0; h < NH; h++)
                for (int b = 0; b < B; b++)
                    attention_backward_head(dqkv, vT, datt_row + ((size_t)b * NH + h) * S, dout, qkv, att, b, h, T, C, NH, pre, l);
        } else {
            #pragma omp for schedule(static)
            for (int bh = 0; bh < B * NH; bh++)
                attention_backward_head(dqkv, vT, datt_row + (size_t)bh * S, dout, qkv, att, bh / NH, bh % NH, T, C, NH, pre, l);
        }
        free(vT);
    }
}

// GELU, tanh approximation (HF "gelu_new"): y = ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³).
// Computed through the identity ½(1 + tanh u) = σ(2u) = 1 / (1 + e^(−2u)), so y = x · σ(2u):
// one exp_approx (vectorised, unlike libm's tanhf) and no cancellation for negative x.
// Derivative: ½(1 + tanh u) = s and ½(1 − tanh² u) = 2s(1 − s) with s = σ(2u), so
//   gelu'(x) = s + 2x · s(1 − s) · √(2/π)(1 + 3 · 0.044715x²).
#define GELU_SCALE 0.7978845608028654f  // √(2/π)
void gelu_forward(float *out, const float *inp, size_t N) {
    // out (N), inp (N)
    #pragma omp parallel for schedule(static) if (20.0 * N >= PARALLEL_MIN_WORK)
    for (long long i = 0; i < (long long)N; i++) {
        float x = inp[i], u = GELU_SCALE * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + exp_approx(-2.0f * u));
    }
}

void gelu_backward(float *d, const float *inp, size_t N) {
    // d (N) *= gelu'(inp), in place
    #pragma omp parallel for schedule(static) if (20.0 * N >= PARALLEL_MIN_WORK)
    for (long long i = 0; i < (long long)N; i++) {
        float x = inp[i], u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float e = exp_approx(-2.0f * u), s = 1.0f / (1.0f + e);   // 1 − s = e · s, without cancellation
        d[i] *= s + 2.0f * x * (e * s * s) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    }
}

// Residual connection: out += inp. Its backward is the identity (the gradient passes through).
static void residual_add(float *out, const float *inp, size_t N) {
    #pragma omp parallel for schedule(static) if ((double)N >= PARALLEL_MIN_WORK)
    for (long long i = 0; i < (long long)N; i++) out[i] += inp[i];
}

// LoRA on one module: y (N, out) += s · (x · A) · B, A (in, r), B (r, out). u = s · (x · A) (N, r)
// is kept for the backward.
static void lora_forward(float *y, float *u, const float *x, const float *A, const float *Bm, float s,
                         int N, int in, int r, int out) {
    matmul_forward(u, x, A, NULL, N, in, r);
    #pragma omp parallel for schedule(static) if (2.0 * N * r * out >= PARALLEL_MIN_WORK)
    for (int i = 0; i < N; i++) {
        float *ui = u + (size_t)i * r, *yi = y + (size_t)i * out;
        for (int j = 0; j < r; j++) {
            ui[j] *= s;
            const float *bj = Bm + (size_t)j * out;
            for (int o = 0; o < out; o++) yi[o] += ui[j] * bj[o];
        }
    }
}

static void lora_backward(float *dx, float *dA, float *dB, float *du, const float *dy, const float *x,
                          const float *u, const float *A, const float *Bm, float s, int N, int in, int r, int out) {
    // du (N, r) = s · dy · Bᵀ;  dB (r, out) += uᵀ · dy;  dA (in, r) += xᵀ · du;  dx (N, in) += du · Aᵀ
    memset(du, 0, (size_t)N * r * sizeof(float));
    matmul_backward(du, dB, NULL, dy, u, Bm, N, r, out);
    for (size_t i = 0; i < (size_t)N * r; i++) du[i] *= s;
    matmul_backward(dx, dA, NULL, du, x, A, N, in, r);
}

// A linear module of layer l (y = x · W + b, plus its adapter when LoRA targets it).
static void linear_forward(GPT *model, int target, int l, float *y, const float *x, float *lora_u, int N) {
    const ModuleInfo *mi = &modules[target];
    int C = model->config.n_embd, in = mi->in_mult * C, out = mi->out_mult * C;
    const float *W = *tensor_slot(&model->params, mi->weight) + (size_t)l * in * out;
    const float *b = *tensor_slot(&model->params, mi->bias) + (size_t)l * out;
    matmul_forward(y, x, W, b, N, in, out);
    LoRA *lora = model->lora;
    if (lora && lora->targeted[target]) {
        int r = lora->rank;
        lora_forward(y, lora_u, x, lora->A[target] + (size_t)l * in * r, lora->B[target] + (size_t)l * r * out,
                     lora->scale, N, in, r, out);
    }
}

static void linear_backward(GPT *model, int target, int l, float *dx, const float *dy, const float *x,
                            const float *lora_u, float *dlora, int N) {
    const ModuleInfo *mi = &modules[target];
    int C = model->config.n_embd, in = mi->in_mult * C, out = mi->out_mult * C;
    const float *W = *tensor_slot(&model->params, mi->weight) + (size_t)l * in * out;
    float *dW = grad_of(model, mi->weight), *db = grad_of(model, mi->bias);
    if (dW) dW += (size_t)l * in * out;
    if (db) db += (size_t)l * out;
    matmul_backward(dx, dW, db, dy, x, W, N, in, out);
    LoRA *lora = model->lora;
    if (lora && lora->targeted[target]) {
        int r = lora->rank;
        size_t a_off = (size_t)l * in * r, b_off = (size_t)l * r * out;
        lora_backward(dx, lora->grad_A[target] + a_off, lora->grad_B[target] + b_off, dlora, dy, x, lora_u,
                      lora->A[target] + a_off, lora->B[target] + b_off, lora->scale, N, in, r, out);
    }
}

// ----------------------------------------------------------------------------------------------
// GPT-2: forward, loss, backward

// Lays out the activation block for (B, T), rows after a prefix of at most maxP positions (and
// the attached adapter's rank), growing it when this needs more than any earlier call.
static void activations_layout(GPT *model, int B, int T, int maxP) {
    GPTConfig c = model->config;
    size_t L = (size_t)c.n_layer, C = (size_t)c.n_embd, V = (size_t)c.vocab_size, NH = (size_t)c.n_head;
    size_t N = (size_t)B * T, r = model->lora ? (size_t)model->lora->rank : 0;
    Activations *a = &model->acts;
    struct { float **slot; size_t n; } plan[] = {
        { &a->encoded, N * C }, { &a->ln1, L * N * C }, { &a->ln1_mean, L * N }, { &a->ln1_rstd, L * N },
        { &a->qkv, L * N * 3 * C }, { &a->att, L * B * NH * ((size_t)T * maxP + TRI(T)) }, { &a->atty, L * N * C },
        { &a->residual2, L * N * C }, { &a->ln2, L * N * C }, { &a->ln2_mean, L * N }, { &a->ln2_rstd, L * N },
        { &a->fch, L * N * 4 * C }, { &a->fch_gelu, N * 4 * C }, { &a->residual3, L * N * C },
        { &a->lnf, N * C }, { &a->lnf_mean, N }, { &a->lnf_rstd, N }, { &a->logits, N * V }, { &a->losses, N },
        { &a->lora_u[0], L * N * r }, { &a->lora_u[1], L * N * r }, { &a->lora_u[2], L * N * r },
        { &a->lora_u[3], L * N * r }, { &a->dresidual, N * C }, { &a->dC, N * C }, { &a->d4C, N * 4 * C },
        { &a->dlora, N * r }, { &a->datt_row, B * NH * ((size_t)T + maxP) },
    };
    size_t count = sizeof plan / sizeof *plan, total = 0;
    for (size_t i = 0; i < count; i++) total += plan[i].n;
    if (total > model->acts_capacity) {
        free(model->acts_memory);
        model->acts_memory = gfn_malloc(total * sizeof(float));
        model->acts_capacity = total;
    }
    float *p = model->acts_memory;
    for (size_t i = 0; i < count; i++) { *plan[i].slot = p; p += plan[i].n; }
    if (N > model->inputs_capacity) {
        free(model->inputs);
        model->inputs = gfn_malloc(N * sizeof(int));
        model->inputs_capacity = N;
    }
}

// Checks a forward's shape and tokens; `what` names the caller in the message.
static void forward_check(const GPT *model, const char *what, const int *inputs, int B, int T, int first_pos) {
    GPTConfig c = model->config;
    if (B < 1 || T < 1 || first_pos < 0 || first_pos + T > c.max_seq_len) {
        fprintf(stderr, "gfn: %s: B=%d T=%d from position %d: outside 1..maxT=%d\n", what, B, T, first_pos, c.max_seq_len);
        exit(1);
    }
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (inputs[i] < 0 || inputs[i] >= c.vocab_size) {
            fprintf(stderr, "gfn: %s: token id %d outside the vocabulary [0, %d)\n", what, inputs[i], c.vocab_size);
            exit(1);
        }
}

// The forward of B rows of T tokens into model->acts, each row continuing its prefix in `pre`
// (NULL: none). Without `head` it stops before ln_f and the logits (a prefix needs neither).
static void forward_pass(GPT *model, const int *inputs, int B, int T, const PrefixKV *pre, int head) {
    GPTConfig c = model->config;
    int L = c.n_layer, C = c.n_embd, NH = c.n_head, V = c.vocab_size, N = B * T;
    activations_layout(model, B, T, pre ? pre->max_len : 0);
    model->B = B;
    model->T = T;
    model->forward_lora_generation = model->lora_generation;
    memcpy(model->inputs, inputs, (size_t)N * sizeof(int));
    Activations *a = &model->acts;
    GPTParams *p = &model->params;
    size_t r = model->lora ? (size_t)model->lora->rank : 0, NC = (size_t)N * C, head_att = att_head_size(pre, T);

    encoder_forward(a->encoded, inputs, p->wte, p->wpe, B, T, C, pre ? pre->len : NULL);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * NC;
        float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + l * 3 * NC, *atty = a->atty + l * NC;
        float *att = a->att + (size_t)l * B * NH * head_att, *residual2 = a->residual2 + l * NC;
        float *ln2 = a->ln2 + l * NC, *fch = a->fch + l * 4 * NC, *fch_gelu = a->fch_gelu;
        float *residual3 = a->residual3 + l * NC;
        float *lora_u[LORA_NUM_TARGETS];
        for (int t = 0; t < LORA_NUM_TARGETS; t++) lora_u[t] = a->lora_u[t] + l * N * r;

        // x += attn(ln_1(x))
        layernorm_forward(ln1, a->ln1_mean + l * N, a->ln1_rstd + l * N, residual, p->ln1w + l * C, p->ln1b + l * C, N, C);
        linear_forward(model, LORA_ATTN_QKV, l, qkv, ln1, lora_u[LORA_ATTN_QKV], N);
        attention_forward(atty, att, qkv, B, T, C, NH, pre, l);
        linear_forward(model, LORA_ATTN_PROJ, l, residual2, atty, lora_u[LORA_ATTN_PROJ], N);
        residual_add(residual2, residual, NC);
        // x += mlp(ln_2(x))
        layernorm_forward(ln2, a->ln2_mean + l * N, a->ln2_rstd + l * N, residual2, p->ln2w + l * C, p->ln2b + l * C, N, C);
        linear_forward(model, LORA_MLP_FC, l, fch, ln2, lora_u[LORA_MLP_FC], N);
        gelu_forward(fch_gelu, fch, 4 * NC);
        linear_forward(model, LORA_MLP_PROJ, l, residual3, fch_gelu, lora_u[LORA_MLP_PROJ], N);
        residual_add(residual3, residual2, NC);
    }
    if (!head) return;
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->residual3 + (L - 1) * NC, p->lnfw, p->lnfb, N, C);
    matmul_forward_nt(a->logits, a->lnf, p->wte, N, C, V);   // tied head: logits = ln_f(x) · wteᵀ
}

float *gpt_forward(GPT *model, const int *inputs, int B, int T) {
    forward_check(model, "gpt_forward", inputs, B, T, 0);
    model->prefix_len = 0;
    model->forward_only = 0;
    forward_pass(model, inputs, B, T, NULL, 1);
    return model->acts.logits;
}

// The prefix's activation block and the main one trade places, so that forward_pass and
// backward_pass, which work on model->acts, run the prefix as a forward of its own.
static void swap_prefix_pass(GPT *model) {
    Activations acts = model->acts; model->acts = model->prefix_acts; model->prefix_acts = acts;
    float *memory = model->acts_memory; model->acts_memory = model->prefix_acts_memory; model->prefix_acts_memory = memory;
    size_t capacity = model->acts_capacity; model->acts_capacity = model->prefix_acts_capacity; model->prefix_acts_capacity = capacity;
    int *inputs = model->inputs; model->inputs = model->prefix_inputs; model->prefix_inputs = inputs;
    capacity = model->inputs_capacity; model->inputs_capacity = model->prefix_inputs_capacity; model->prefix_inputs_capacity = capacity;
}

// The shared prefix as the rows' PrefixKV: its one row's keys and values are the K and V thirds
// of its qkv (L, P, 3C), and their gradient goes to prefix_dqkv of the same layout.
static PrefixKV shared_prefix_view(GPT *model) {
    size_t P = (size_t)model->prefix_len, C = (size_t)model->config.n_embd;
    PrefixKV pre = { model->prefix_acts.qkv + C, model->prefix_acts.qkv + 2 * C, P * 3 * C, 0, 3 * C,
                     model->prefix_rows, model->prefix_lens, model->prefix_len, model->prefix_dqkv + C, model->prefix_dqkv + 2 * C };
    return pre;
}

float *gpt_forward_shared(GPT *model, const int *prefix, int P, const int *inputs, int B, int T) {
    if (P <= 0) return gpt_forward(model, inputs, B, T);
    forward_check(model, "gpt_forward_shared (prefix)", prefix, 1, P, 0);
    forward_check(model, "gpt_forward_shared", inputs, B, T, P);
    size_t L = (size_t)model->config.n_layer, C = (size_t)model->config.n_embd;
    size_t need = (size_t)B > L * P * 3 * C ? (size_t)B : L * P * 3 * C;
    if (need > model->prefix_capacity) {
        free(model->prefix_rows); free(model->prefix_lens); free(model->prefix_dqkv);
        model->prefix_rows = gfn_malloc(need * sizeof(int));
        model->prefix_lens = gfn_malloc(need * sizeof(int));
        model->prefix_dqkv = gfn_malloc(need * sizeof(float));
        model->prefix_capacity = need;
    }
    for (int b = 0; b < B; b++) { model->prefix_rows[b] = 0; model->prefix_lens[b] = P; }
    swap_prefix_pass(model);
    forward_pass(model, prefix, 1, P, NULL, 0);
    swap_prefix_pass(model);
    model->prefix_len = P;
    model->forward_only = 0;
    PrefixKV pre = shared_prefix_view(model);
    forward_pass(model, inputs, B, T, &pre, 1);
    return model->acts.logits;
}

const float *gpt_hidden(const GPT *model) { return model->acts.lnf; }

float gpt_cross_entropy(GPT *model, const int *targets, float *logprobs, float *dlogits) {
    int N = model->B * model->T, V = model->config.vocab_size;
    const float *logits = model->acts.logits;
    float *losses = model->acts.losses;
    int count = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] >= V) { fprintf(stderr, "gfn: gpt_cross_entropy: target %d outside [0, %d)\n", targets[i], V); exit(1); }
        count += targets[i] >= 0;
    }
    float inv_count = count ? 1.0f / (float)count : 0.0f;
    // log p(y) = logit_y − logsumexp(logits), with the max subtracted so exp never overflows;
    // d(mean loss)/d logit_v = (softmax_v − [v = y]) / count.
    #pragma omp parallel for schedule(static) if (4.0 * N * V >= PARALLEL_MIN_WORK)
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * V;
        float *drow = dlogits ? dlogits + (size_t)i * V : NULL;
        int y = targets[i];
        if (y < 0) {
            losses[i] = 0.0f;
            if (logprobs) logprobs[i] = 0.0f;
            if (drow) memset(drow, 0, (size_t)V * sizeof(float));
            continue;
        }
        float max = row[0];
        for (int v = 1; v < V; v++) if (row[v] > max) max = row[v];
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)(row[v] - max));
        float lse = max + (float)log(sum);
        float lp = row[y] - lse;
        losses[i] = -lp;
        if (logprobs) logprobs[i] = lp;
        if (drow)
            for (int v = 0; v < V; v++) drow[v] = (expf(row[v] - lse) - (v == y ? 1.0f : 0.0f)) * inv_count;
    }
    double total = 0.0;
    for (int i = 0; i < N; i++) total += losses[i];
    return count ? (float)(total / count) : 0.0f;
}

// The backward of the last forward_pass from dlogits (B, T, V) (NULL: the pass had no head, and
// its outputs no gradient of their own). inject_dqkv (L, B, T, 3C), or NULL, is a gradient of
// each layer's q, k, v from elsewhere (a prefix's keys and values, from the rows that read
// them); `pre` is the prefix this pass read, whose dk / dv get its share.
static void backward_pass(GPT *model, const float *dlogits, const PrefixKV *pre, const float *inject_dqkv) {
    GPTConfig c = model->config;
    int B = model->B, T = model->T, L = c.n_layer, C = c.n_embd, NH = c.n_head, V = c.vocab_size, N = B * T;
    Activations *a = &model->acts;
    GPTParams *p = &model->params;
    size_t r = model->lora ? (size_t)model->lora->rank : 0, NC = (size_t)N * C, head_att = att_head_size(pre, T);
    // Per-layer gradient slices of a (possibly frozen, hence NULL) tensor.
    #define GRAD(tensor, l, width) (grad_of(model, tensor) ? grad_of(model, tensor) + (size_t)(l) * (width) : NULL)

    memset(a->dresidual, 0, NC * sizeof(float));
    if (dlogits) {   // logits = ln_f(x) · wteᵀ
        memset(a->dC, 0, NC * sizeof(float));
        matmul_backward_nt(a->dC, grad_of(model, T_WTE), dlogits, a->lnf, p->wte, N, C, V);
        layernorm_backward(a->dresidual, grad_of(model, T_LNFW), grad_of(model, T_LNFB), a->dC,
                           a->residual3 + (L - 1) * NC, p->lnfw, a->lnf_mean, a->lnf_rstd, N, C);
    }
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * NC;
        float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + l * 3 * NC, *atty = a->atty + l * NC;
        float *att = a->att + (size_t)l * B * NH * head_att, *residual2 = a->residual2 + l * NC;
        float *ln2 = a->ln2 + l * NC, *fch = a->fch + l * 4 * NC, *fch_gelu = a->fch_gelu;
        float *lora_u[LORA_NUM_TARGETS];
        for (int t = 0; t < LORA_NUM_TARGETS; t++) lora_u[t] = a->lora_u[t] + l * N * r;

        // x += mlp(ln_2(x)): dresidual holds d x_out, which also flows straight to x_in
        gelu_forward(fch_gelu, fch, 4 * NC);
        memset(a->d4C, 0, 4 * NC * sizeof(float));
        linear_backward(model, LORA_MLP_PROJ, l, a->d4C, a->dresidual, fch_gelu, lora_u[LORA_MLP_PROJ], a->dlora, N);
        gelu_backward(a->d4C, fch, 4 * NC);
        memset(a->dC, 0, NC * sizeof(float));
        linear_backward(model, LORA_MLP_FC, l, a->dC, a->d4C, ln2, lora_u[LORA_MLP_FC], a->dlora, N);
        layernorm_backward(a->dresidual, GRAD(T_LN2W, l, C), GRAD(T_LN2B, l, C), a->dC, residual2,
                           p->ln2w + l * C, a->ln2_mean + l * N, a->ln2_rstd + l * N, N, C);
        // x += attn(ln_1(x))
        memset(a->dC, 0, NC * sizeof(float));
        linear_backward(model, LORA_ATTN_PROJ, l, a->dC, a->dresidual, atty, lora_u[LORA_ATTN_PROJ], a->dlora, N);
        float *dqkv = a->d4C;
        if (inject_dqkv) memcpy(dqkv, inject_dqkv + l * 3 * NC, 3 * NC * sizeof(float));
        else memset(dqkv, 0, 3 * NC * sizeof(float));
        attention_backward(dqkv, a->datt_row, a->dC, qkv, att, B, T, C, NH, pre, l);
        memset(a->dC, 0, NC * sizeof(float));
        linear_backward(model, LORA_ATTN_QKV, l, a->dC, dqkv, ln1, lora_u[LORA_ATTN_QKV], a->dlora, N);
        layernorm_backward(a->dresidual, GRAD(T_LN1W, l, C), GRAD(T_LN1B, l, C), a->dC, residual,
                           p->ln1w + l * C, a->ln1_mean + l * N, a->ln1_rstd + l * N, N, C);
    }
    #undef GRAD
    // dresidual is now d loss / d(wte[id] + wpe[pos]): gpt_dinput
    encoder_backward(grad_of(model, T_WTE), grad_of(model, T_WPE), a->dresidual, model->inputs, B, T, C,
                     pre ? pre->len : NULL);
}

void gpt_backward(GPT *model, const float *dlogits) {
    if (model->forward_only) {
        fprintf(stderr, "gfn: gpt_backward: the last forward (gpt_forward_cached) has no backward\n");
        exit(1);
    }
    if (model->B * model->T == 0 || model->forward_lora_generation != model->lora_generation) {
        fprintf(stderr, "gfn: gpt_backward: needs a forward with the same adapter first\n");
        exit(1);
    }
    if (!model->prefix_len) { backward_pass(model, dlogits, NULL, NULL); return; }
    // The rows first, summing the gradient of the prefix's keys and values over them; then the
    // prefix once, with that gradient entering at each layer's k and v.
    size_t P = (size_t)model->prefix_len, L = (size_t)model->config.n_layer, C = (size_t)model->config.n_embd;
    memset(model->prefix_dqkv, 0, L * P * 3 * C * sizeof(float));
    PrefixKV pre = shared_prefix_view(model);
    backward_pass(model, dlogits, &pre, NULL);
    int B = model->B, T = model->T;
    swap_prefix_pass(model);
    model->B = 1; model->T = (int)P;
    backward_pass(model, NULL, NULL, model->prefix_dqkv);
    swap_prefix_pass(model);
    model->B = B; model->T = T;
}

const float *gpt_dinput(const GPT *model) { return model->acts.dresidual; }

// ----------------------------------------------------------------------------------------------
// LoRA: attach, merge, detach (the forward and backward live in linear_forward/_backward)

const char *const lora_target_names[LORA_NUM_TARGETS] = { "c_attn", "attn.c_proj", "c_fc", "mlp.c_proj" };

LoRA *gpt_lora_attach(GPT *model, int rank, float alpha, int use_rslora, const int targeted[LORA_NUM_TARGETS], uint64_t seed) {
    if (rank < 1) { fprintf(stderr, "gfn: LoRA rank must be at least 1 (got %d)\n", rank); exit(1); }
    gpt_lora_detach(model);
    int L = model->config.n_layer, C = model->config.n_embd;
    LoRA *lora = gfn_calloc(1, sizeof(LoRA));
    lora->rank = rank;
    lora->alpha = alpha;
    lora->use_rslora = use_rslora != 0;
    lora->scale = use_rslora ? alpha / sqrtf((float)rank) : alpha / (float)rank;
    size_t a_size[LORA_NUM_TARGETS], b_size[LORA_NUM_TARGETS];
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        lora->targeted[t] = targeted[t] != 0;
        a_size[t] = lora->targeted[t] ? (size_t)L * modules[t].in_mult * C * rank : 0;
        b_size[t] = lora->targeted[t] ? (size_t)L * rank * modules[t].out_mult * C : 0;
        lora->num_parameters += a_size[t] + b_size[t];
    }
    lora->memory = gfn_calloc(lora->num_parameters, sizeof(float));        // B starts at zero
    lora->grad_memory = gfn_calloc(lora->num_parameters, sizeof(float));
    float *p = lora->memory, *g = lora->grad_memory;
    Rng rng;
    rng_seed(&rng, seed);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora->targeted[t]) continue;
        lora->A[t] = p; lora->grad_A[t] = g; p += a_size[t]; g += a_size[t];
        lora->B[t] = p; lora->grad_B[t] = g; p += b_size[t]; g += b_size[t];
        // PEFT: kaiming_uniform_(a=√5) on lora_A [r, in] is U(−1/√in, 1/√in).
        float bound = 1.0f / sqrtf((float)(modules[t].in_mult * C));
        for (size_t i = 0; i < a_size[t]; i++) lora->A[t][i] = (2.0f * rng_uniform(&rng) - 1.0f) * bound;
    }
    model->lora = lora;
    model->lora_generation++;
    return lora;
}

LoRA *gpt_lora(GPT *model) { return model->lora; }

void gpt_lora_detach(GPT *model) {
    if (!model->lora) return;
    free(model->lora->memory);
    free(model->lora->grad_memory);
    free(model->lora);
    model->lora = NULL;
    model->lora_generation++;
}

void gpt_lora_merge(GPT *model) {
    LoRA *lora = model->lora;
    if (!lora) return;
    if (model->view_of) { fprintf(stderr, "gfn: gpt_lora_merge: a view's weights are shared; merge into a copy\n"); exit(1); }
    int L = model->config.n_layer, C = model->config.n_embd, r = lora->rank;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora->targeted[t]) continue;
        int in = modules[t].in_mult * C, out = modules[t].out_mult * C;
        for (int l = 0; l < L; l++) {
            float *W = *tensor_slot(&model->params, modules[t].weight) + (size_t)l * in * out;
            const float *A = lora->A[t] + (size_t)l * in * r, *Bm = lora->B[t] + (size_t)l * r * out;
            // W (in, out) += s · A (in, r) · B (r, out)
            #pragma omp parallel for schedule(static) if (2.0 * in * r * out >= PARALLEL_MIN_WORK)
            for (int i = 0; i < in; i++)
                for (int j = 0; j < r; j++) {
                    float a = lora->scale * A[(size_t)i * r + j];
                    for (int o = 0; o < out; o++) W[(size_t)i * out + o] += a * Bm[(size_t)j * out + o];
                }
        }
    }
    gpt_lora_detach(model);
}

// ----------------------------------------------------------------------------------------------
// KV cache: incremental decoding, one new token per row per step

struct KVCache {
    int B, max_len, L, C, NH, V;
    float *k, *v;              // (L, B, max_len, C) keys and values of every fed position
    // Scratch for one step over the fed rows (at most B):
    float *x;                  // (B, C)  residual stream
    float *ln, *mean, *rstd;   // (B, C), (B), (B)
    float *qkv;                // (B, 3C)
    float *atty, *proj;        // (B, C)
    float *h, *h_gelu;         // (B, 4C)
    float *att;                // (B, NH, max_len)
    float *logits;             // (B, V)  logits of the fed rows, compacted
    float *lora_u;             // (B, r)  grown when an adapter's rank needs it
    size_t lora_u_capacity;
    int *rows;                 // (B)     which rows are fed this step
    // The tied head's weights transposed, wteᵀ (C, V), as the decode steps read them: logits =
    // ln_f(x) · wteᵀ read straight from wte gathers a column of wteᵀ from V rows at every step
    // (packing it was ~10 % of a fine-tuning step); from this copy the rows are contiguous and a
    // few-row product reads them in place. Each logit is summed in the same order either way, so
    // the bits do not change. Taken at gpt_prefill (unless the embedding is frozen and already
    // held), or at a decode step with another model's weights: like the keys and values, the
    // cache holds what the weights were when it was filled.
    float *head;               // (C, V)
    const float *head_of;      // the wte it was copied from (NULL: none yet)
};

KVCache *kv_cache_new(const GPT *model, int B, int max_len) {
    GPTConfig c = model->config;
    if (B < 1 || max_len < 1) { fprintf(stderr, "gfn: kv_cache_new: B=%d max_len=%d\n", B, max_len); exit(1); }
    if (max_len > c.max_seq_len) max_len = c.max_seq_len;   // positions past maxT have no wpe row
    KVCache *kv = gfn_calloc(1, sizeof(KVCache));
    kv->B = B; kv->max_len = max_len; kv->L = c.n_layer; kv->C = c.n_embd; kv->NH = c.n_head; kv->V = c.vocab_size;
    size_t BC = (size_t)B * c.n_embd, cache = (size_t)c.n_layer * B * max_len * c.n_embd;
    kv->k = gfn_calloc(cache, sizeof(float));
    kv->v = gfn_calloc(cache, sizeof(float));
    kv->x = gfn_malloc(BC * sizeof(float));
    kv->ln = gfn_malloc(BC * sizeof(float));
    kv->mean = gfn_malloc((size_t)B * sizeof(float));
    kv->rstd = gfn_malloc((size_t)B * sizeof(float));
    kv->qkv = gfn_malloc(3 * BC * sizeof(float));
    kv->atty = gfn_malloc(BC * sizeof(float));
    kv->proj = gfn_malloc(BC * sizeof(float));
    kv->h = gfn_malloc(4 * BC * sizeof(float));
    kv->h_gelu = gfn_malloc(4 * BC * sizeof(float));
    kv->att = gfn_malloc((size_t)B * c.n_head * max_len * sizeof(float));
    kv->logits = gfn_malloc((size_t)B * c.vocab_size * sizeof(float));
    kv->rows = gfn_malloc((size_t)B * sizeof(int));
    return kv;
}

void kv_cache_free(KVCache *kv) {
    if (!kv) return;
    free(kv->k); free(kv->v); free(kv->x); free(kv->ln); free(kv->mean); free(kv->rstd); free(kv->qkv);
    free(kv->atty); free(kv->proj); free(kv->h); free(kv->h_gelu); free(kv->att); free(kv->logits);
    free(kv->lora_u); free(kv->rows); free(kv->head);
    free(kv);
}

// kv->head = wteᵀ of these weights, in column blocks so that both sides stay in cache.
static void kv_take_head(KVCache *kv, const float *wte) {
    size_t C = (size_t)kv->C, V = (size_t)kv->V;
    if (!kv->head) kv->head = gfn_malloc(C * V * sizeof(float));
    for (size_t v0 = 0; v0 < V; v0 += 64) {
        size_t v1 = V - v0 < 64 ? V : v0 + 64;
        for (size_t c = 0; c < C; c++)
            for (size_t v = v0; v < v1; v++) kv->head[c * V + v] = wte[v * C + c];
    }
    kv->head_of = wte;
}

static float *kv_at(const KVCache *kv, float *base, int l, int row, int pos) {
    return base + (((size_t)l * kv->B + row) * kv->max_len + pos) * kv->C;
}

void gpt_decode_step(GPT *model, KVCache *kv, const int *tokens, const int *pos, float *logits) {
    GPTParams *p = &model->params;
    int C = kv->C, NH = kv->NH, V = kv->V, hs = C / NH, M = 0, max_pos = 0;
    for (int b = 0; b < kv->B; b++) {
        if (tokens[b] < 0) continue;
        if (tokens[b] >= V || pos[b] < 0 || pos[b] >= kv->max_len) {
            fprintf(stderr, "gfn: gpt_decode_step: row %d: token %d / position %d outside [0, %d) / [0, %d)\n",
                    b, tokens[b], pos[b], V, kv->max_len);
            exit(1);
        }
        kv->rows[M++] = b;
        if (pos[b] > max_pos) max_pos = pos[b];
    }
    if (M == 0) return;
    size_t r = model->lora ? (size_t)model->lora->rank : 0;
    if ((size_t)M * r > kv->lora_u_capacity) {
        free(kv->lora_u);
        kv->lora_u_capacity = (size_t)kv->B * r;
        kv->lora_u = gfn_malloc(kv->lora_u_capacity * sizeof(float));
    }
    // x = wte[token] + wpe[pos]
    for (int i = 0; i < M; i++) {
        int b = kv->rows[i];
        for (int c = 0; c < C; c++) kv->x[(size_t)i * C + c] = p->wte[(size_t)tokens[b] * C + c] + p->wpe[(size_t)pos[b] * C + c];
    }
    float scale = 1.0f / sqrtf((float)hs);
    for (int l = 0; l < kv->L; l++) {
        layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->ln1w + l * C, p->ln1b + l * C, M, C);
        linear_forward(model, LORA_ATTN_QKV, l, kv->qkv, kv->ln, kv->lora_u, M);
        for (int i = 0; i < M; i++) {
            int b = kv->rows[i];
            memcpy(kv_at(kv, kv->k, l, b, pos[b]), kv->qkv + (size_t)i * 3 * C + C, (size_t)C * sizeof(float));
            memcpy(kv_at(kv, kv->v, l, b, pos[b]), kv->qkv + (size_t)i * 3 * C + 2 * C, (size_t)C * sizeof(float));
        }
        // the new query attends to this row's positions 0..pos (same arithmetic as attention_forward)
        #pragma omp parallel for schedule(static) if (4.0 * M * C * (max_pos + 1) >= PARALLEL_MIN_WORK)
        for (int ih = 0; ih < M * NH; ih++) {
            int i = ih / NH, h = ih % NH, b = kv->rows[i], t = pos[b];
            const float *q = kv->qkv + (size_t)i * 3 * C + h * hs;
            float *a = kv->att + (size_t)ih * kv->max_len, max = -INFINITY, sum = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                const float *k = kv_at(kv, kv->k, l, b, t2) + h * hs;
                float s = 0.0f;
                for (int j = 0; j < hs; j++) s += q[j] * k[j];
                a[t2] = s * scale;
                if (a[t2] > max) max = a[t2];
            }
            for (int t2 = 0; t2 <= t; t2++) { a[t2] = exp_approx(a[t2] - max); sum += a[t2]; }
            float *o = kv->atty + (size_t)i * C + h * hs;
            for (int j = 0; j < hs; j++) o[j] = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                a[t2] /= sum;
                const float *v = kv_at(kv, kv->v, l, b, t2) + h * hs;
                for (int j = 0; j < hs; j++) o[j] += a[t2] * v[j];
            }
        }
        linear_forward(model, LORA_ATTN_PROJ, l, kv->proj, kv->atty, kv->lora_u, M);
        residual_add(kv->x, kv->proj, (size_t)M * C);
        layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->ln2w + l * C, p->ln2b + l * C, M, C);
        linear_forward(model, LORA_MLP_FC, l, kv->h, kv->ln, kv->lora_u, M);
        gelu_forward(kv->h_gelu, kv->h, (size_t)M * 4 * C);
        linear_forward(model, LORA_MLP_PROJ, l, kv->proj, kv->h_gelu, kv->lora_u, M);
        residual_add(kv->x, kv->proj, (size_t)M * C);
    }
    layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->lnfw, p->lnfb, M, C);
    if (kv->head_of != p->wte) kv_take_head(kv, p->wte);
    matmul_forward(kv->logits, kv->ln, kv->head, NULL, M, C, V);   // tied head: ln_f(x) · wteᵀ
    for (int i = 0; i < M; i++)
        memcpy(logits + (size_t)kv->rows[i] * V, kv->logits + (size_t)i * V, (size_t)V * sizeof(float));
}

float *gpt_prefill(GPT *model, KVCache *kv, const int *inputs, int B, int T) {
    if (B > kv->B || T > kv->max_len) {
        fprintf(stderr, "gfn: gpt_prefill: B=%d T=%d exceed the cache's %d rows of %d positions\n", B, T, kv->B, kv->max_len);
        exit(1);
    }
    float *logits = gpt_forward(model, inputs, B, T);
    // A frozen embedding (a fine-tuning run's base) cannot have changed since the cache took it:
    // no new copy (with GPT-2's vocabulary it is 154 MB); a decode step takes it if the cache
    // holds another model's.
    const GPT *owner = model->view_of ? model->view_of : model;
    if (!owner->frozen[T_WTE]) kv_take_head(kv, model->params.wte);
    int C = kv->C;
    size_t NC = (size_t)B * T * C;
    for (int l = 0; l < kv->L; l++)
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float *qkv = model->acts.qkv + l * 3 * NC + ((size_t)b * T + t) * 3 * C;
                memcpy(kv_at(kv, kv->k, l, b, t), qkv + C, (size_t)C * sizeof(float));
                memcpy(kv_at(kv, kv->v, l, b, t), qkv + 2 * C, (size_t)C * sizeof(float));
            }
    return logits;
}

void kv_cache_copy_row(KVCache *kv, int dst_row, int src_row, int len) {
    if (dst_row == src_row || len <= 0) return;
    if (len > kv->max_len) len = kv->max_len;
    for (int l = 0; l < kv->L; l++) {
        memcpy(kv_at(kv, kv->k, l, dst_row, 0), kv_at(kv, kv->k, l, src_row, 0), (size_t)len * kv->C * sizeof(float));
        memcpy(kv_at(kv, kv->v, l, dst_row, 0), kv_at(kv, kv->v, l, src_row, 0), (size_t)len * kv->C * sizeof(float));
    }
}

void kv_cache_gather(KVCache *kv, const int *src_row, int len) {
    if (len <= 0) return;
    if (len > kv->max_len) len = kv->max_len;
    size_t row_floats = (size_t)len * kv->C;
    float *saved = gfn_malloc((size_t)kv->B * row_floats * sizeof(float));   // (B, len, C) one layer's rows
    unsigned char *is_source = gfn_calloc((size_t)kv->B, 1);                   // (B) read by another row
    for (int b = 0; b < kv->B; b++) if (src_row[b] >= 0 && src_row[b] != b) is_source[src_row[b]] = 1;
    for (int l = 0; l < kv->L; l++)
        for (int which = 0; which < 2; which++) {
            float *base = which ? kv->v : kv->k;
            for (int b = 0; b < kv->B; b++)
                if (is_source[b]) memcpy(saved + b * row_floats, kv_at(kv, base, l, b, 0), row_floats * sizeof(float));
            for (int b = 0; b < kv->B; b++)
                if (src_row[b] >= 0 && src_row[b] != b)
                    memcpy(kv_at(kv, base, l, b, 0), saved + (size_t)src_row[b] * row_floats, row_floats * sizeof(float));
        }
    free(saved); free(is_source);
}

float *gpt_forward_cached(GPT *model, KVCache *kv, const int *rows, const int *lens, const int *inputs, int B, int T,
                          const int *store_rows) {
    int max_len = 0;
    for (int b = 0; b < B; b++) {
        if (rows[b] < 0 || rows[b] >= kv->B || lens[b] < 0 || lens[b] > kv->max_len) {
            fprintf(stderr, "gfn: gpt_forward_cached: row %d: cache row %d / length %d outside [0, %d) / [0, %d]\n",
                    b, rows[b], lens[b], kv->B, kv->max_len);
            exit(1);
        }
        forward_check(model, "gpt_forward_cached", inputs + (size_t)b * T, 1, T, lens[b]);
        if (store_rows && (store_rows[b] < 0 || store_rows[b] >= kv->B || lens[b] + T > kv->max_len)) {
            fprintf(stderr, "gfn: gpt_forward_cached: row %d: cache row %d cannot hold positions up to %d\n", b, store_rows[b], lens[b] + T);
            exit(1);
        }
        if (lens[b] > max_len) max_len = lens[b];
    }
    size_t C = (size_t)kv->C, row = (size_t)kv->max_len * C;
    PrefixKV pre = { kv->k, kv->v, (size_t)kv->B * row, row, C, rows, lens, max_len, NULL, NULL };
    model->prefix_len = 0;
    forward_pass(model, inputs, B, T, &pre, 1);
    model->forward_only = 1;   // the backward has no way to the cache's keys and values
    if (store_rows)
        for (int l = 0; l < kv->L; l++)
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++) {
                    const float *qkv = model->acts.qkv + ((size_t)l * B * T + (size_t)b * T + t) * 3 * C;
                    memcpy(kv_at(kv, kv->k, l, store_rows[b], lens[b] + t), qkv + C, C * sizeof(float));
                    memcpy(kv_at(kv, kv->v, l, store_rows[b], lens[b] + t), qkv + 2 * C, C * sizeof(float));
                }
    return model->acts.logits;
}

// ----------------------------------------------------------------------------------------------
// Training utilities: AdamW, gradient clipping, learning-rate schedule

void adamw_init(AdamW *opt, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay) {
    opt->lr = lr; opt->beta1 = beta1; opt->beta2 = beta2; opt->eps = eps; opt->weight_decay = weight_decay;
    opt->step = 0;
    opt->n = n;
    opt->m = gfn_calloc(n, sizeof(float));
    opt->v = gfn_calloc(n, sizeof(float));
}

void adamw_free(AdamW *opt) {
    free(opt->m); free(opt->v);
    opt->m = opt->v = NULL;
    opt->n = 0;
}

void adamw_update(AdamW *opt, float *params, const float *grads, float lr) {
    // Loshchilov & Hutter: m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t);
    // θ ← θ − lr·(m̂/(√v̂ + ε) + λ·θ)   (decay decoupled from the gradient, as torch.optim.AdamW)
    opt->step++;
    float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps, wd = opt->weight_decay;
    float bc1 = (float)(1.0 - pow(b1, opt->step)), bc2 = (float)(1.0 - pow(b2, opt->step));
    float *m = opt->m, *v = opt->v;
    #pragma omp parallel for schedule(static) if (10.0 * opt->n >= PARALLEL_MIN_WORK)
    for (long long i = 0; i < (long long)opt->n; i++) {
        float g = grads[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float m_hat = m[i] / bc1, v_hat = v[i] / bc2;
        params[i] -= lr * (m_hat / (sqrtf(v_hat) + eps) + wd * params[i]);
    }
}

float clip_grad_norm(float *grads, size_t n, float max_norm) {
    // Sum of squares in fixed chunks (double), then the chunks in order: the same bits for any
    // thread count.
    enum { CHUNK = 1 << 16 };
    long long chunks = (long long)((n + CHUNK - 1) / CHUNK);
    double *partial = gfn_malloc((size_t)(chunks ? chunks : 1) * sizeof(double));
    #pragma omp parallel for schedule(static) if (chunks > 1)
    for (long long k = 0; k < chunks; k++) {
        size_t begin = (size_t)k * CHUNK, end = begin + CHUNK < n ? begin + CHUNK : n;
        double s = 0.0;
        for (size_t i = begin; i < end; i++) s += (double)grads[i] * grads[i];
        partial[k] = s;
    }
    double total = 0.0;
    for (long long k = 0; k < chunks; k++) total += partial[k];
    free(partial);
    float norm = (float)sqrt(total);
    if (norm > max_norm) {
        float scale = max_norm / (norm + 1e-6f);   // as torch.nn.utils.clip_grad_norm_
        #pragma omp parallel for schedule(static) if ((double)n >= PARALLEL_MIN_WORK)
        for (long long i = 0; i < (long long)n; i++) grads[i] *= scale;
    }
    return norm;
}

float lr_schedule(int step, int warmup, int total, float lr_max, float lr_min) {
    // step counts from 0. Warm-up: lr_max·(step+1)/warmup for step < warmup (never 0); then
    // lr_min + ½(lr_max − lr_min)(1 + cos(π·progress)), progress 0 at `warmup`, 1 at `total`.
    if (step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
    if (step >= total || total <= warmup) return lr_min;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    return lr_min + 0.5f * (lr_max - lr_min) * (float)(1.0 + cos(3.14159265358979323846 * progress));
}

// One supervised step: zero the grads, forward, mean cross-entropy (targets < 0 ignored),
// backward, clip the global norm to max_norm (INFINITY: no clipping), AdamW at lr. It trains the
// LoRA adapter when one is attached (opt sized for it), else every parameter of the model.
float gpt_train_step(GPT *model, AdamW *opt, const int *inputs, const int *targets, int B, int T, float lr,
                     float max_norm, float *grad_norm) {
    LoRA *lora = model->lora;
    float *params = lora ? lora->memory : gpt_params_memory(model);
    float *grads = lora ? lora->grad_memory : gpt_grads_memory(model);
    size_t n = lora ? lora->num_parameters : gpt_num_parameters(model);
    gpt_zero_grad(model);
    float *logits = gpt_forward(model, inputs, B, T);
    float loss = gpt_cross_entropy(model, targets, NULL, logits);   // logits become dlogits
    gpt_backward(model, logits);
    float norm = clip_grad_norm(grads, n, max_norm);
    if (grad_norm) *grad_norm = norm;
    if (isfinite(loss) && isfinite(norm)) adamw_update(opt, params, grads, lr);   // else the caller stops; params stay finite
    return loss;
}

// ----------------------------------------------------------------------------------------------
// Checkpoints
//
// Our file format, every number little-endian:
//   offset  0  8 bytes   magic "GFNCKPT1"
//           8  u32       format version (1)
//          12  u32       dtype of the tensors: 0 = f32, 1 = f16 (IEEE half; for shipped weights)
//          16  u32 × 5   vocab_size, max_seq_len, n_layer, n_head, n_embd
//          36  28 bytes  zero (reserved); the header is 64 bytes
//          64  the 16 tensors in gpt_tensor_names order, C-order, each value in dtype
// The file size must be exactly 64 + num_parameters × (4 or 2): a truncated or padded file is
// refused before anything is read. gpt_save writes f32, gpt_save_f16 f16.

#define CKPT_MAGIC "GFNCKPT1"
#define CKPT_VERSION 1
#define CKPT_HEADER 64

// Writes the checkpoint with tensors in f32 (dtype 0) or f16 (dtype 1, rounded to nearest even).
static int checkpoint_write(const GPT *model, const char *path, int dtype, GfnError *err) {
    unsigned char header[CKPT_HEADER] = { 0 };
    memcpy(header, CKPT_MAGIC, 8);
    put_le_u32(header + 8, CKPT_VERSION);
    put_le_u32(header + 12, (uint32_t)dtype);
    const GPTConfig *c = &model->config;
    int fields[5] = { c->vocab_size, c->max_seq_len, c->n_layer, c->n_head, c->n_embd };
    for (int i = 0; i < 5; i++) put_le_u32(header + 16 + 4 * i, (uint32_t)fields[i]);
    char *tmp;
    FILE *f = atomic_begin(path, &tmp, err);
    if (!f) return 1;
    int ok = fwrite(header, 1, CKPT_HEADER, f) == CKPT_HEADER;
    // Streamed in 1 MiB pieces, so saving never holds a second copy of the weights.
    enum { CHUNK = 1 << 18 };
    size_t bytes_per = dtype ? 2 : 4;
    unsigned char *buf = gfn_malloc(4 * CHUNK);
    for (size_t done = 0; ok && done < model->num_parameters; done += CHUNK) {
        size_t count = model->num_parameters - done < CHUNK ? model->num_parameters - done : CHUNK;
        const float *p = model->params_memory + done;
        if (dtype) {
            for (size_t i = 0; i < count; i++) {
                uint16_t h = float_to_half(p[i]);
                buf[2 * i] = (unsigned char)h;
                buf[2 * i + 1] = (unsigned char)(h >> 8);
            }
        } else {
            for (size_t i = 0; i < count; i++) put_le_f32(buf + 4 * i, p[i]);
        }
        ok = fwrite(buf, bytes_per, count, f) == count;
    }
    free(buf);
    return atomic_finish(f, tmp, path, ok, err);
}

int gpt_save(const GPT *model, const char *path, GfnError *err) { return checkpoint_write(model, path, 0, err); }
int gpt_save_f16(const GPT *model, const char *path, GfnError *err) { return checkpoint_write(model, path, 1, err); }

static GPT *gpt_load_checkpoint(const char *path, GfnError *err) {
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || stat(path, &st) != 0) {
        gfn_error_set(err, "%s: cannot open: %s", path, strerror(errno));
        if (f) fclose(f);
        return NULL;
    }
    unsigned long long file_size = (unsigned long long)st.st_size;
    unsigned char header[CKPT_HEADER];
    if (file_size < CKPT_HEADER || fread(header, 1, CKPT_HEADER, f) != CKPT_HEADER) {
        gfn_error_set(err, "%s: %llu bytes, too short for a gfn checkpoint header (%d bytes)", path, file_size, CKPT_HEADER);
        fclose(f); return NULL;
    }
    if (memcmp(header, CKPT_MAGIC, 8) != 0) {
        gfn_error_set(err, "%s: not a gfn checkpoint (magic is not \"%s\")", path, CKPT_MAGIC);
        fclose(f); return NULL;
    }
    uint32_t version = le_u32(header + 8), dtype = le_u32(header + 12);
    if (version != CKPT_VERSION) {
        gfn_error_set(err, "%s: checkpoint version %u, this build reads version %d", path, version, CKPT_VERSION);
        fclose(f); return NULL;
    }
    if (dtype > 1) { gfn_error_set(err, "%s: unknown dtype code %u (0 = f32, 1 = f16)", path, dtype); fclose(f); return NULL; }
    uint32_t raw[5];
    for (int i = 0; i < 5; i++) raw[i] = le_u32(header + 16 + 4 * i);
    for (int i = 0; i < 5; i++)
        if (raw[i] > (1u << 30)) { gfn_error_set(err, "%s: config field %d is %u, not plausible", path, i, raw[i]); fclose(f); return NULL; }
    GPTConfig config = { (int)raw[0], (int)raw[1], (int)raw[2], (int)raw[3], (int)raw[4] };
    char why[256];
    if (gpt_config_check(config, why, sizeof why)) { gfn_error_set(err, "%s: bad config: %s", path, why); fclose(f); return NULL; }
    size_t sizes[GPT_NUM_TENSORS], n = 0, bytes_per = dtype == 0 ? 4 : 2;
    tensor_sizes(config, sizes);
    for (int i = 0; i < GPT_NUM_TENSORS; i++) n += sizes[i];
    unsigned long long expected = CKPT_HEADER + (unsigned long long)n * bytes_per;
    if (file_size != expected) {
        gfn_error_set(err, "%s: %llu bytes, but this config (V=%d maxT=%d L=%d NH=%d C=%d, %s) needs exactly %llu: "
                      "truncated or corrupt", path, file_size, config.vocab_size, config.max_seq_len, config.n_layer,
                      config.n_head, config.n_embd, dtype ? "f16" : "f32", expected);
        fclose(f); return NULL;
    }
    GPT *model = gpt_alloc(config);
    // Read in chunks and decode byte by byte, so big-endian hosts read the same values.
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = gfn_malloc(CHUNK);
    size_t done = 0, per_chunk = CHUNK / bytes_per;
    while (done < n) {
        size_t count = n - done < per_chunk ? n - done : per_chunk;
        if (fread(buf, bytes_per, count, f) != count) {
            gfn_error_set(err, "%s: read error after %zu of %zu values", path, done, n);
            free(buf); fclose(f); gpt_free(model); return NULL;
        }
        float *dst = model->params_memory + done;
        for (size_t i = 0; i < count; i++) dst[i] = dtype == 0 ? le_f32(buf + 4 * i) : half_to_float(le_u16(buf + 2 * i));
        done += count;
    }
    free(buf);
    fclose(f);
    float **params = (float **)&model->params;   // GPTParams walked as an array
    for (int k = 0; k < GPT_NUM_TENSORS; k++)
        if (check_finite(params[k], model->tensor_sizes[k], path, gpt_tensor_names[k], err)) { gpt_free(model); return NULL; }
    return model;
}

GPT *gpt_load_hf(const char *dir, GfnError *err);   // the HF import, below

GPT *gpt_load(const char *path, GfnError *err) {
    struct stat st;
    if (stat(path, &st) != 0) { gfn_error_set(err, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    if (S_ISDIR(st.st_mode)) return gpt_load_hf(path, err);   // HF config.json + model.safetensors
    return gpt_load_checkpoint(path, err);
}

// ----------------------------------------------------------------------------------------------
// ---- Hugging Face import and PEFT adapters ----
//
// Three formats meet other tools here (see FORMATS.md): safetensors files, Hugging Face GPT-2
// directories (config.json + model.safetensors) and PEFT LoRA adapter directories
// (adapter_config.json + adapter_model.safetensors); plus our own small adapter file.
// Adapters are installed with gpt_lora_attach, so the engine owns their layout and gradients.

static char *path_join(const char *dir, const char *file) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    char *path = gfn_malloc(n + strlen(file) + 2);
    memcpy(path, dir, n);
    path[n] = '/';
    strcpy(path + n + 1, file);
    return path;
}

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// *created tells whether the directory is new, so that a failed save can take it away again.
static int make_directory(const char *dir, int *created, GfnError *err) {
    *created = 0;
    if (is_directory(dir)) return 0;
    if (mkdir(dir, 0777) != 0) { gfn_error_set(err, "%s: cannot create directory: %s", dir, strerror(errno)); return 1; }
    *created = 1;
    return 0;
}

// After a failed save into a directory it created: the files it may have written, then the
// directory itself, so that no empty or half-written directory is left behind.
static void unmake_directory(const char *dir, const char *file1, const char *file2) {
    remove(file1);
    remove(file2);
    rmdir(dir);
}

// A JSON number that is a whole number in [0, limit].
static int json_whole(const Json *j, double limit, uint64_t *out) {
    if (!j || j->type != JSON_NUMBER || j->number < 0 || j->number > limit || j->number != floor(j->number)) return 0;
    *out = (uint64_t)j->number;
    return 1;
}

// ---- safetensors: 8-byte little-endian header length N, N bytes of JSON, then the data.

#define SAFETENSORS_MAX_HEADER (100u << 20)   // the reference implementation's limit

static int safetensors_dtype_size(const char *dtype) {
    static const struct { const char *name; int size; } dtypes[] = {
        { "F64", 8 }, { "F32", 4 }, { "F16", 2 }, { "BF16", 2 }, { "I64", 8 }, { "I32", 4 }, { "I16", 2 },
        { "I8", 1 }, { "U64", 8 }, { "U32", 4 }, { "U16", 2 }, { "U8", 1 }, { "BOOL", 1 },
        { "F8_E4M3", 1 }, { "F8_E5M2", 1 },
    };
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (!strcmp(dtype, dtypes[i].name)) return dtypes[i].size;
    return 0;
}

static int safetensor_by_offset(const void *a, const void *b) {
    const SafeTensor *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    return x->numel < y->numel ? -1 : x->numel > y->numel;   // empty tensors first
}

void safetensors_close(SafeTensors *st) {
    free(st->path);
    free(st->file);
    json_free(st->header);
    free(st->tensors);
    memset(st, 0, sizeof *st);
}

int safetensors_open(SafeTensors *st, const char *path, GfnError *err) {
    memset(st, 0, sizeof *st);
    st->file = read_file(path, &st->file_len, err);
    if (!st->file) return 1;
    st->path = gfn_malloc(strlen(path) + 1);
    strcpy(st->path, path);
    size_t len = st->file_len;
    if (len < 8) { gfn_error_set(err, "%s: %zu bytes, too short for a safetensors file", path, len); goto fail; }
    uint64_t header_len = le_u64(st->file);
    if (header_len > len - 8) {
        gfn_error_set(err, "%s: safetensors header length %llu runs past the end of the file (%zu bytes)",
                      path, (unsigned long long)header_len, len);
        goto fail;
    }
    if (header_len > SAFETENSORS_MAX_HEADER) {
        gfn_error_set(err, "%s: safetensors header of %llu bytes is over the 100 MB limit", path, (unsigned long long)header_len);
        goto fail;
    }
    char what[GFN_ERR_LEN / 2];
    snprintf(what, sizeof what, "%s: safetensors header", path);
    st->header = json_parse((const char *)st->file + 8, (size_t)header_len, what, err);
    if (!st->header) goto fail;
    if (st->header->type != JSON_OBJECT) { gfn_error_set(err, "%s: safetensors header is not a JSON object", path); goto fail; }
    const unsigned char *data = st->file + 8 + header_len;
    size_t data_len = len - 8 - (size_t)header_len;
    st->tensors = gfn_calloc(st->header->len ? st->header->len : 1, sizeof(SafeTensor));
    for (Json *m = st->header->child; m; m = m->next) {
        if (!strcmp(m->key, "__metadata__")) continue;
        SafeTensor *t = &st->tensors[st->n];
        t->name = m->key;
        Json *dtype = json_get(m, "dtype"), *shape = json_get(m, "shape"), *offsets = json_get(m, "data_offsets");
        if (!dtype || dtype->type != JSON_STRING || !shape || shape->type != JSON_ARRAY || !offsets ||
            offsets->type != JSON_ARRAY || offsets->len != 2) {
            gfn_error_set(err, "%s: tensor %s: needs \"dtype\", \"shape\" and \"data_offsets\" [begin, end]", path, m->key);
            goto fail;
        }
        t->dtype = dtype->string;
        int size = safetensors_dtype_size(t->dtype);
        if (!size) { gfn_error_set(err, "%s: tensor %s: unknown dtype \"%s\"", path, m->key, t->dtype); goto fail; }
        if (shape->len > SAFETENSORS_MAX_DIMS) {
            gfn_error_set(err, "%s: tensor %s: %zu dimensions (at most %d)", path, m->key, shape->len, SAFETENSORS_MAX_DIMS);
            goto fail;
        }
        t->ndim = (int)shape->len;
        uint64_t numel = 1, dim;
        for (int d = 0; d < t->ndim; d++) {
            if (!json_whole(json_at(shape, (size_t)d), (double)data_len, &dim)) {
                gfn_error_set(err, "%s: tensor %s: shape entry %d is not a size within the file", path, m->key, d);
                goto fail;
            }
            t->shape[d] = (size_t)dim;
            numel = dim == 0 ? 0 : (numel > data_len / dim ? (uint64_t)data_len + 1 : numel * dim);  // saturates past the data
        }
        uint64_t begin, end;
        if (!json_whole(json_at(offsets, 0), 9007199254740992.0, &begin) ||
            !json_whole(json_at(offsets, 1), 9007199254740992.0, &end) || end < begin) {
            gfn_error_set(err, "%s: tensor %s: data_offsets must be whole numbers with begin <= end", path, m->key);
            goto fail;
        }
        if (end > data_len) {
            gfn_error_set(err, "%s: tensor %s: data_offsets [%llu, %llu] run past the end of the data (%zu bytes)",
                          path, m->key, (unsigned long long)begin, (unsigned long long)end, data_len);
            goto fail;
        }
        if (numel > data_len || end - begin != numel * (uint64_t)size) {
            gfn_error_set(err, "%s: tensor %s: %llu bytes in data_offsets but its shape and %s need %llu",
                          path, m->key, (unsigned long long)(end - begin), t->dtype, (unsigned long long)(numel * (uint64_t)size));
            goto fail;
        }
        t->numel = (size_t)numel;
        t->bytes = data + begin;
        st->n++;
    }
    qsort(st->tensors, (size_t)st->n, sizeof(SafeTensor), safetensor_by_offset);
    for (int i = 1; i < st->n; i++) {
        const SafeTensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (b->bytes < a->bytes + a->numel * (size_t)safetensors_dtype_size(a->dtype)) {
            gfn_error_set(err, "%s: tensors %s and %s overlap in the data", path, a->name, b->name);
            goto fail;
        }
    }
    return 0;
fail:
    safetensors_close(st);
    return 1;
}

const SafeTensor *safetensors_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

int safetensors_to_f32(const SafeTensors *st, const SafeTensor *t, float *out, GfnError *err) {
    const unsigned char *p = t->bytes;
    if (!strcmp(t->dtype, "F32")) for (size_t i = 0; i < t->numel; i++) out[i] = le_f32(p + 4 * i);
    else if (!strcmp(t->dtype, "F16")) for (size_t i = 0; i < t->numel; i++) out[i] = half_to_float(le_u16(p + 2 * i));
    else if (!strcmp(t->dtype, "BF16")) for (size_t i = 0; i < t->numel; i++) out[i] = bfloat16_to_float(le_u16(p + 2 * i));
    else {
        gfn_error_set(err, "%s: tensor %s has dtype %s; only F32, F16 and BF16 can be read", st->path, t->name, t->dtype);
        return 1;
    }
    return 0;
}

// Writes a JSON string literal; our names are ASCII, but quote anything a name could hold.
static void text_json_string(Text *b, const char *s) {
    text_appendf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') text_appendf(b, "\\%c", c);
        else if (c < 0x20) text_appendf(b, "\\u%04x", c);
        else text_appendf(b, "%c", c);
    }
    text_appendf(b, "\"");
}

int safetensors_write(const char *path, const SafeTensorWrite *tensors, int n, GfnError *err) {
    Text header = { 0 };
    text_appendf(&header, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= tensors[i].shape[d];
        text_appendf(&header, ",");
        text_json_string(&header, tensors[i].name);
        text_appendf(&header, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < tensors[i].ndim; d++) text_appendf(&header, "%s%zu", d ? "," : "", tensors[i].shape[d]);
        text_appendf(&header, "],\"data_offsets\":[%zu,%zu]}", offset, offset + 4 * numel);
        offset += 4 * numel;
    }
    text_appendf(&header, "}");
    while (header.len % 8) text_appendf(&header, " ");   // the data starts 8-byte aligned
    size_t total = 8 + header.len + offset;
    unsigned char *buf = gfn_malloc(total), *p = buf + 8 + header.len;
    put_le_u64(buf, header.len);
    memcpy(buf + 8, header.s, header.len);
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= tensors[i].shape[d];
        for (size_t j = 0; j < numel; j++, p += 4) put_le_f32(p, tensors[i].data[j]);
    }
    int rc = write_file_atomic(path, buf, total, err);
    free(buf);
    free(header.s);
    return rc;
}

// ---- Hugging Face GPT-2 directories

// Shape of tensor k (GPTParams order) for one layer, in HF's [in, out] layout; returns ndim.
static int hf_tensor_shape(GPTConfig c, int k, size_t shape[2]) {
    size_t C = (size_t)c.n_embd;
    switch (k) {
        case 0: shape[0] = (size_t)c.vocab_size; shape[1] = C; return 2;     // wte
        case 1: shape[0] = (size_t)c.max_seq_len; shape[1] = C; return 2;    // wpe
        case 4: shape[0] = C; shape[1] = 3 * C; return 2;                     // attn.c_attn.weight
        case 5: shape[0] = 3 * C; return 1;
        case 6: shape[0] = C; shape[1] = C; return 2;                         // attn.c_proj.weight
        case 10: shape[0] = C; shape[1] = 4 * C; return 2;                    // mlp.c_fc.weight
        case 11: shape[0] = 4 * C; return 1;
        case 12: shape[0] = 4 * C; shape[1] = C; return 2;                    // mlp.c_proj.weight
        default: shape[0] = C; return 1;                                      // LayerNorms, biases of C
    }
}
static void shape_text(char *buf, size_t len, const size_t *shape, int ndim) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && n < len; d++) n += (size_t)snprintf(buf + n, len - n, "%s%zu", d ? ", " : "", shape[d]);
    if (n < len) snprintf(buf + n, len - n, "]");
}
static int hf_tensor_per_layer(int k) { return k >= 2 && k <= 13; }

static int hf_config_size(const Json *config, const char *key, const char *path, int *out, GfnError *err) {
    uint64_t v;
    if (!json_whole(json_get(config, key), 1 << 30, &v) || v == 0) {
        gfn_error_set(err, "%s: \"%s\" must be a positive whole number", path, key);
        return 1;
    }
    *out = (int)v;
    return 0;
}

// Reads config.json into a GPTConfig, refusing what our GPT-2 does not compute.
static int hf_read_config(const char *path, GPTConfig *c, GfnError *err) {
    size_t len;
    char *text = (char *)read_file(path, &len, err);
    if (!text) return 1;
    Json *config = json_parse(text, len, path, err);
    free(text);
    if (!config) return 1;
    int rc = 1;
    const char *positions = json_get(config, "n_positions") ? "n_positions" : "n_ctx";
    if (hf_config_size(config, "vocab_size", path, &c->vocab_size, err) ||
        hf_config_size(config, positions, path, &c->max_seq_len, err) ||
        hf_config_size(config, "n_embd", path, &c->n_embd, err) ||
        hf_config_size(config, "n_layer", path, &c->n_layer, err) ||
        hf_config_size(config, "n_head", path, &c->n_head, err)) goto done;
    if (c->n_embd % c->n_head) { gfn_error_set(err, "%s: n_embd %d is not a multiple of n_head %d", path, c->n_embd, c->n_head); goto done; }
    Json *eps = json_get(config, "layer_norm_epsilon"), *act = json_get(config, "activation_function");
    Json *inner = json_get(config, "n_inner"), *tie = json_get(config, "tie_word_embeddings");
    Json *scale = json_get(config, "scale_attn_weights"), *by_layer = json_get(config, "scale_attn_by_inverse_layer_idx");
    if (eps && (eps->type != JSON_NUMBER || fabs(eps->number - 1e-5) > 1e-12)) {
        gfn_error_set(err, "%s: layer_norm_epsilon must be 1e-05 (the only value gfn computes)", path); goto done;
    }
    if (act && (act->type != JSON_STRING || (strcmp(act->string, "gelu_new") && strcmp(act->string, "gelu_pytorch_tanh")))) {
        gfn_error_set(err, "%s: activation_function must be \"gelu_new\" (tanh GELU)", path); goto done;
    }
    if (inner && inner->type != JSON_NULL && !(inner->type == JSON_NUMBER && inner->number == 4.0 * c->n_embd)) {
        gfn_error_set(err, "%s: n_inner must be null or 4 * n_embd", path); goto done;
    }
    if ((tie && tie->type == JSON_BOOL && !tie->number) || (scale && scale->type == JSON_BOOL && !scale->number) ||
        (by_layer && by_layer->type == JSON_BOOL && by_layer->number)) {
        gfn_error_set(err, "%s: untied LM head or non-standard attention scaling is not supported", path); goto done;
    }
    rc = 0;
done:
    json_free(config);
    return rc;
}

// Maps an HF tensor name (with or without "transformer.") to (k, layer); returns 0 when it is
// one of ours, 1 for a name to ignore (causal-mask buffers, the tied lm_head), -1 otherwise.
static int hf_tensor_index(const char *name, GPTConfig c, int *k, int *layer) {
    if (!strncmp(name, "transformer.", 12)) name += 12;
    if (!strcmp(name, "lm_head.weight")) { *k = -1; return 1; }
    int l = 0;
    if (!strncmp(name, "h.", 2)) {
        const char *s = name + 2;
        if (*s < '0' || *s > '9') return -1;
        while (*s >= '0' && *s <= '9') { l = l * 10 + (*s - '0'); if (l > c.n_layer) return -1; s++; }
        if (*s != '.' || l >= c.n_layer) return -1;
        name = s + 1;
        if (!strcmp(name, "attn.bias") || !strcmp(name, "attn.masked_bias")) { *k = -1; return 1; }
        for (int j = 2; j <= 13; j++)
            if (!strcmp(name, gpt_tensor_names[j])) { *k = j; *layer = l; return 0; }
        return -1;
    }
    for (int j = 0; j < GPT_NUM_TENSORS; j++)
        if (!hf_tensor_per_layer(j) && !strcmp(name, gpt_tensor_names[j])) { *k = j; *layer = 0; return 0; }
    return -1;
}

GPT *gpt_load_hf(const char *dir, GfnError *err) {
    char *config_path = path_join(dir, "config.json"), *weights_path = path_join(dir, "model.safetensors");
    GPT *model = NULL;
    GPTConfig c;
    SafeTensors st;
    int st_open = 0;
    char *seen = NULL;
    char why[256];
    if (hf_read_config(config_path, &c, err)) goto done;
    if (gpt_config_check(c, why, sizeof why)) { gfn_error_set(err, "%s: %s", config_path, why); goto done; }
    if (safetensors_open(&st, weights_path, err)) goto done;
    st_open = 1;
    // The config must not make us allocate more than the file can fill: every parameter takes
    // at least 2 bytes (F16, BF16), so a config declaring a huge model is refused here.
    size_t sizes[GPT_NUM_TENSORS], num_params = 0;
    tensor_sizes(c, sizes);
    for (int k = 0; k < GPT_NUM_TENSORS; k++) num_params += sizes[k];
    if (num_params > st.file_len / 2) {
        gfn_error_set(err, "%s declares %zu parameters (V=%d maxT=%d L=%d NH=%d C=%d), but %s has only %zu bytes",
                      config_path, num_params, c.vocab_size, c.max_seq_len, c.n_layer, c.n_head, c.n_embd, weights_path, st.file_len);
        goto done;
    }
    model = gpt_alloc(c);   // every tensor is filled below, or the load fails
    float **params = (float **)&model->params;   // GPTParams walked as an array
    seen = gfn_calloc(GPT_NUM_TENSORS * (size_t)c.n_layer, 1);
    const SafeTensor *lm_head = NULL;
    for (int i = 0; i < st.n; i++) {
        const SafeTensor *t = &st.tensors[i];
        int k, layer, kind = hf_tensor_index(t->name, c, &k, &layer);
        if (kind < 0) { gfn_error_set(err, "%s: unexpected tensor %s (not part of GPT-2 with this config.json)", weights_path, t->name); goto fail; }
        if (kind == 1) { if (strstr(t->name, "lm_head")) lm_head = t; continue; }
        size_t shape[2];
        int ndim = hf_tensor_shape(c, k, shape);
        if (t->ndim != ndim || t->shape[0] != shape[0] || (ndim == 2 && t->shape[1] != shape[1])) {
            char got[128], want[128];
            shape_text(got, sizeof got, t->shape, t->ndim);
            shape_text(want, sizeof want, shape, ndim);
            gfn_error_set(err, "%s: tensor %s has shape %s but config.json needs %s", weights_path, t->name, got, want);
            goto fail;
        }
        char *flag = &seen[(size_t)k * (size_t)c.n_layer + (size_t)layer];
        if (*flag) { gfn_error_set(err, "%s: tensor %s appears twice (with and without \"transformer.\")", weights_path, t->name); goto fail; }
        *flag = 1;
        float *dst = params[k] + (size_t)layer * t->numel;
        if (safetensors_to_f32(&st, t, dst, err) || check_finite(dst, t->numel, weights_path, t->name, err)) goto fail;
    }
    for (int k = 0; k < GPT_NUM_TENSORS; k++)
        for (int l = 0; l < (hf_tensor_per_layer(k) ? c.n_layer : 1); l++)
            if (!seen[(size_t)k * (size_t)c.n_layer + (size_t)l]) {
                if (hf_tensor_per_layer(k)) gfn_error_set(err, "%s: missing tensor transformer.h.%d.%s", weights_path, l, gpt_tensor_names[k]);
                else gfn_error_set(err, "%s: missing tensor transformer.%s", weights_path, gpt_tensor_names[k]);
                goto fail;
            }
    if (lm_head) {   // a stored head must be the tied one: the same numbers as wte
        size_t n = (size_t)c.vocab_size * (size_t)c.n_embd;
        float *head = (lm_head->numel == n && lm_head->ndim == 2) ? gfn_malloc(n * sizeof(float)) : NULL;
        int same = head && !safetensors_to_f32(&st, lm_head, head, err) && !memcmp(head, params[0], n * sizeof(float));
        free(head);
        if (!same) { gfn_error_set(err, "%s: lm_head.weight differs from wte: only a tied LM head is supported", weights_path); goto fail; }
    }
    goto done;
fail:
    gpt_free(model);
    model = NULL;
done:
    if (st_open) safetensors_close(&st);
    free(seen);
    free(config_path);
    free(weights_path);
    return model;
}

int gpt_save_hf(const GPT *model, const char *dir, GfnError *err) {
    GPTConfig c = gpt_config(model);
    float *const *params = (float *const *)&model->params;   // GPTParams walked as an array
    int created;
    if (make_directory(dir, &created, err)) return 1;
    int n = 4 + 12 * c.n_layer;
    SafeTensorWrite *tensors = gfn_calloc((size_t)n, sizeof(SafeTensorWrite));
    char (*names)[96] = gfn_malloc((size_t)n * sizeof *names);
    int i = 0;
    for (int k = 0; k < GPT_NUM_TENSORS; k++)
        for (int l = 0; l < (hf_tensor_per_layer(k) ? c.n_layer : 1); l++, i++) {
            if (hf_tensor_per_layer(k)) snprintf(names[i], sizeof names[i], "transformer.h.%d.%s", l, gpt_tensor_names[k]);
            else snprintf(names[i], sizeof names[i], "transformer.%s", gpt_tensor_names[k]);
            tensors[i].name = names[i];
            tensors[i].ndim = hf_tensor_shape(c, k, tensors[i].shape);
            size_t numel = tensors[i].shape[0] * (tensors[i].ndim > 1 ? tensors[i].shape[1] : 1);
            tensors[i].data = params[k] + (size_t)l * numel;
        }
    char *weights_path = path_join(dir, "model.safetensors"), *config_path = path_join(dir, "config.json");
    int rc = safetensors_write(weights_path, tensors, n, err);
    if (!rc) {
        Text text = { 0 };
        text_appendf(&text, "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                    "  \"vocab_size\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n  \"n_embd\": %d,\n"
                    "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_inner\": null,\n  \"layer_norm_epsilon\": 1e-05,\n"
                    "  \"activation_function\": \"gelu_new\",\n  \"tie_word_embeddings\": true,\n"
                    "  \"torch_dtype\": \"float32\"\n}\n",
                    c.vocab_size, c.max_seq_len, c.max_seq_len, c.n_embd, c.n_layer, c.n_head);
        rc = write_file_atomic(config_path, text.s, text.len, err);
        free(text.s);
    }
    if (rc && created) unmake_directory(dir, weights_path, config_path);
    free(weights_path);
    free(config_path);
    free(names);
    free(tensors);
    return rc;
}

// ---- LoRA adapters: our file and PEFT directories

// Module paths of the four targets inside GPT-2's blocks, and their (in, out) sizes.
static const char *const lora_module_paths[LORA_NUM_TARGETS] = { "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj" };
static void lora_dims(GPTConfig c, int target, int *in, int *out) {
    static const int in_mult[LORA_NUM_TARGETS] = { 1, 1, 1, 4 }, out_mult[LORA_NUM_TARGETS] = { 3, 1, 4, 1 };
    *in = in_mult[target] * c.n_embd;
    *out = out_mult[target] * c.n_embd;
}

static int lora_path_is_peft(const char *path) {
    size_t n = strlen(path);
    return (n && path[n - 1] == '/') || is_directory(path);
}

// Replaces any adapter on the model by one with these settings and the given weights
// (A (L, in, r), B (L, r, out) per target in our orientation, NULL where not targeted).
static void lora_install(GPT *model, int rank, float alpha, int use_rslora, const int targeted[LORA_NUM_TARGETS],
                         float *const A[LORA_NUM_TARGETS], float *const B[LORA_NUM_TARGETS]) {
    GPTConfig c = gpt_config(model);
    if (gpt_lora(model)) gpt_lora_detach(model);
    LoRA *lora = gpt_lora_attach(model, rank, alpha, use_rslora, targeted, 0);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!targeted[t]) continue;
        int in, out;
        lora_dims(c, t, &in, &out);
        memcpy(lora->A[t], A[t], (size_t)c.n_layer * (size_t)in * (size_t)rank * sizeof(float));
        memcpy(lora->B[t], B[t], (size_t)c.n_layer * (size_t)rank * (size_t)out * sizeof(float));
    }
}

// Our adapter file, all numbers little-endian:
//   "GFNLORA\0" (8 bytes), u32 version = 1, u32 rank r, f32 alpha, u32 use_rslora (0/1),
//   u32 targets (bit t set when target t of LORA_ATTN_QKV.. is adapted), u32 n_layer L,
//   then for each of the 4 targets u32 in, u32 out (0, 0 when not targeted);
//   then for each targeted target in order: A (L, in, r) f32, then B (L, r, out) f32.
#define LORA_FILE_MAGIC "GFNLORA"
#define LORA_FILE_HEADER (8 + 6 * 4 + 8 * LORA_NUM_TARGETS)

static int lora_save_file(const LoRA *lora, GPTConfig c, const char *path, GfnError *err) {
    size_t total = LORA_FILE_HEADER + lora->num_parameters * 4;
    unsigned char *buf = gfn_calloc(total, 1), *p = buf;
    memcpy(p, LORA_FILE_MAGIC, 8); p += 8;   // with its NUL
    uint32_t mask = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) mask |= (uint32_t)(lora->targeted[t] != 0) << t;
    put_le_u32(p, 1); put_le_u32(p + 4, (uint32_t)lora->rank); put_le_f32(p + 8, lora->alpha);
    put_le_u32(p + 12, (uint32_t)(lora->use_rslora != 0)); put_le_u32(p + 16, mask); put_le_u32(p + 20, (uint32_t)c.n_layer);
    p += 24;
    for (int t = 0; t < LORA_NUM_TARGETS; t++, p += 8) {
        int in, out;
        lora_dims(c, t, &in, &out);
        if (lora->targeted[t]) { put_le_u32(p, (uint32_t)in); put_le_u32(p + 4, (uint32_t)out); }
    }
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora->targeted[t]) continue;
        int in, out;
        lora_dims(c, t, &in, &out);
        size_t na = (size_t)c.n_layer * (size_t)in * (size_t)lora->rank, nb = (size_t)c.n_layer * (size_t)lora->rank * (size_t)out;
        for (size_t i = 0; i < na; i++, p += 4) put_le_f32(p, lora->A[t][i]);
        for (size_t i = 0; i < nb; i++, p += 4) put_le_f32(p, lora->B[t][i]);
    }
    int rc = (size_t)(p - buf) == total ? write_file_atomic(path, buf, total, err)
                                        : (gfn_error_set(err, "%s: adapter size mismatch (internal)", path), 1);
    free(buf);
    return rc;
}

static int lora_load_file(GPT *model, const char *path, GfnError *err) {
    GPTConfig c = gpt_config(model);
    size_t len;
    unsigned char *buf = read_file(path, &len, err);
    if (!buf) return 1;
    int rc = 1;
    float *A[LORA_NUM_TARGETS] = { 0 }, *B[LORA_NUM_TARGETS] = { 0 };
    if (len < LORA_FILE_HEADER || memcmp(buf, LORA_FILE_MAGIC, 8)) {
        gfn_error_set(err, "%s: not a gfn LoRA adapter file (bad magic or too short)", path); goto done;
    }
    uint32_t version = le_u32(buf + 8), rank = le_u32(buf + 12), rslora = le_u32(buf + 20), mask = le_u32(buf + 24);
    uint32_t n_layer = le_u32(buf + 28);
    float alpha = le_f32(buf + 16);
    if (version != 1) { gfn_error_set(err, "%s: adapter file version %u (this gfn reads version 1)", path, version); goto done; }
    if (rank == 0 || rank > 65536 || !(alpha > 0 && alpha <= LORA_ALPHA_MAX) || rslora > 1 || mask == 0 || mask >= (1u << LORA_NUM_TARGETS)) {
        gfn_error_set(err, "%s: bad adapter header (rank %u, alpha %g, rslora %u, targets 0x%x)", path, rank, alpha, rslora, mask);
        goto done;
    }
    if (n_layer != (uint32_t)c.n_layer) {
        gfn_error_set(err, "%s: adapter has %u layers but the model has %d", path, n_layer, c.n_layer); goto done;
    }
    int targeted[LORA_NUM_TARGETS];
    uint64_t expected = LORA_FILE_HEADER;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        targeted[t] = (mask >> t) & 1;
        uint32_t fin = le_u32(buf + 32 + 8 * t), fout = le_u32(buf + 36 + 8 * t);
        int in, out;
        lora_dims(c, t, &in, &out);
        if (!targeted[t]) continue;
        if (fin != (uint32_t)in || fout != (uint32_t)out) {
            gfn_error_set(err, "%s: adapter for %s is %u x %u but the model's module is %d x %d", path, lora_module_paths[t], fin, fout, in, out);
            goto done;
        }
        expected += 4ull * n_layer * rank * ((uint64_t)in + (uint64_t)out);
    }
    if (expected != len) {
        gfn_error_set(err, "%s: %zu bytes, but its header describes %llu", path, len, (unsigned long long)expected); goto done;
    }
    const unsigned char *p = buf + LORA_FILE_HEADER;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!targeted[t]) continue;
        int in, out;
        lora_dims(c, t, &in, &out);
        size_t na = (size_t)n_layer * (size_t)in * rank, nb = (size_t)n_layer * rank * (size_t)out;
        A[t] = gfn_malloc(na * sizeof(float));
        B[t] = gfn_malloc(nb * sizeof(float));
        for (size_t i = 0; i < na; i++, p += 4) A[t][i] = le_f32(p);
        for (size_t i = 0; i < nb; i++, p += 4) B[t][i] = le_f32(p);
        char name[64];
        snprintf(name, sizeof name, "%s.lora_A", lora_module_paths[t]);
        if (check_finite(A[t], na, path, name, err)) goto done;
        snprintf(name, sizeof name, "%s.lora_B", lora_module_paths[t]);
        if (check_finite(B[t], nb, path, name, err)) goto done;
    }
    lora_install(model, (int)rank, alpha, (int)rslora, targeted, A, B);
    rc = 0;
done:
    for (int t = 0; t < LORA_NUM_TARGETS; t++) { free(A[t]); free(B[t]); }
    free(buf);
    return rc;
}

// PEFT directory. Tensors base_model.model.transformer.h.{i}.{module}.lora_A.weight (r, in) and
// .lora_B.weight (out, r): the transposes of our A (in, r) and B (r, out) for layer i.
static const char *const peft_prefix = "base_model.model.transformer.h.";

static int lora_save_peft(const LoRA *lora, GPTConfig c, const char *dir, GfnError *err) {
    int created;
    if (make_directory(dir, &created, err)) return 1;
    int n = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) n += lora->targeted[t] ? 2 * c.n_layer : 0;
    SafeTensorWrite *tensors = gfn_calloc((size_t)n, sizeof(SafeTensorWrite));
    char (*names)[128] = gfn_malloc((size_t)n * sizeof *names);
    float *transposed = gfn_malloc(lora->num_parameters * sizeof(float)), *q = transposed;
    int i = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora->targeted[t]) continue;
        int in, out, r = lora->rank;
        lora_dims(c, t, &in, &out);
        for (int l = 0; l < c.n_layer; l++) {
            const float *A = lora->A[t] + (size_t)l * in * r, *B = lora->B[t] + (size_t)l * r * out;
            snprintf(names[i], sizeof names[i], "%s%d.%s.lora_A.weight", peft_prefix, l, lora_module_paths[t]);
            tensors[i] = (SafeTensorWrite){ names[i], 2, { (size_t)r, (size_t)in }, q };
            for (int a = 0; a < r; a++) for (int b = 0; b < in; b++) *q++ = A[(size_t)b * r + a];
            i++;
            snprintf(names[i], sizeof names[i], "%s%d.%s.lora_B.weight", peft_prefix, l, lora_module_paths[t]);
            tensors[i] = (SafeTensorWrite){ names[i], 2, { (size_t)out, (size_t)r }, q };
            for (int a = 0; a < out; a++) for (int b = 0; b < r; b++) *q++ = B[(size_t)b * out + a];
            i++;
        }
    }
    char *weights_path = path_join(dir, "adapter_model.safetensors"), *config_path = path_join(dir, "adapter_config.json");
    int rc = safetensors_write(weights_path, tensors, n, err);
    if (!rc) {
        // PEFT matches a target_modules entry against a module path by equality or as a dotted
        // suffix, so "c_proj" alone would adapt both projections: name the one we mean.
        Text text = { 0 };
        int both_proj = lora->targeted[LORA_ATTN_PROJ] && lora->targeted[LORA_MLP_PROJ];
        text_appendf(&text, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": \"%s\",\n"
                    "  \"r\": %d,\n  \"lora_alpha\": %.9g,\n  \"use_rslora\": %s,\n  \"target_modules\": [",
                    c.vocab_size == 50257 && c.n_layer == 12 && c.n_embd == 768 ? "gpt2" : "",
                    lora->rank, (double)lora->alpha, lora->use_rslora ? "true" : "false");
        int first = 1;
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora->targeted[t] || (both_proj && t == LORA_MLP_PROJ)) continue;
            const char *name = (t == LORA_ATTN_QKV || t == LORA_MLP_FC) ? lora_module_paths[t] + (t == LORA_MLP_FC ? 4 : 5)
                             : both_proj ? "c_proj" : lora_module_paths[t];
            text_appendf(&text, "%s\"%s\"", first ? "" : ", ", name);
            first = 0;
        }
        text_appendf(&text, "],\n  \"fan_in_fan_out\": true,\n  \"lora_dropout\": 0.0,\n  \"bias\": \"none\",\n"
                    "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n  \"modules_to_save\": null,\n"
                    "  \"layers_to_transform\": null,\n  \"rank_pattern\": {},\n  \"alpha_pattern\": {}\n}\n");
        rc = write_file_atomic(config_path, text.s, text.len, err);
        free(text.s);
    }
    if (rc && created) unmake_directory(dir, weights_path, config_path);
    free(weights_path);
    free(config_path);
    free(transposed);
    free(names);
    free(tensors);
    return rc;
}

// Parses "{i}.{module}.lora_{A,B}.weight" after the prefix; returns 0 and (layer, target, is_B).
static int peft_parse_key(const char *name, int n_layer, int *layer, int *target, int *is_B) {
    const char *s = name;
    if (!strncmp(s, "base_model.model.", 17)) s += 17;
    if (!strncmp(s, "transformer.", 12)) s += 12;
    if (strncmp(s, "h.", 2)) return 1;
    s += 2;
    int l = 0;
    if (*s < '0' || *s > '9') return 1;
    while (*s >= '0' && *s <= '9') { l = l * 10 + (*s - '0'); if (l >= n_layer) return 1; s++; }
    if (*s++ != '.') return 1;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        size_t n = strlen(lora_module_paths[t]);
        if (strncmp(s, lora_module_paths[t], n)) continue;
        const char *rest = s + n;
        // PEFT drops the adapter name ("default") when saving; accept it when present.
        if (!strcmp(rest, ".lora_A.weight") || !strcmp(rest, ".lora_A.default.weight")) { *is_B = 0; }
        else if (!strcmp(rest, ".lora_B.weight") || !strcmp(rest, ".lora_B.default.weight")) { *is_B = 1; }
        else return 1;
        *layer = l;
        *target = t;
        return 0;
    }
    return 1;
}

// Does a target_modules list entry select module `t`? PEFT: equal to the full module path or
// a dotted suffix of it.
static int peft_entry_matches(const char *entry, int t) {
    char path[96];
    snprintf(path, sizeof path, "transformer.h.0.%s", lora_module_paths[t]);
    size_t n = strlen(path), e = strlen(entry);
    if (!strncmp(entry, "base_model.model.", 17)) entry += 17, e -= 17;
    if (!strncmp(entry, "transformer.h.", 14)) {   // a full path names one layer: compare from the module
        const char *s = entry + 14;
        while (*s >= '0' && *s <= '9') s++;
        return *s == '.' && !strcmp(s + 1, lora_module_paths[t]);
    }
    return e < n && path[n - e - 1] == '.' && !strcmp(path + n - e, entry);
}

static int lora_load_peft(GPT *model, const char *dir, GfnError *err) {
    GPTConfig c = gpt_config(model);
    char *config_path = path_join(dir, "adapter_config.json"), *weights_path = path_join(dir, "adapter_model.safetensors");
    float *A[LORA_NUM_TARGETS] = { 0 }, *B[LORA_NUM_TARGETS] = { 0 };
    char *seen = NULL;
    Json *config = NULL;
    SafeTensors st;
    int st_open = 0, rc = 1;
    size_t len;
    char *text = (char *)read_file(config_path, &len, err);
    if (!text) goto done;
    config = json_parse(text, len, config_path, err);
    free(text);
    if (!config) goto done;
    Json *type = json_get(config, "peft_type"), *alpha = json_get(config, "lora_alpha"), *rslora = json_get(config, "use_rslora");
    Json *bias = json_get(config, "bias"), *dora = json_get(config, "use_dora"), *modules = json_get(config, "target_modules");
    Json *save = json_get(config, "modules_to_save"), *layers = json_get(config, "layers_to_transform");
    Json *rank_pattern = json_get(config, "rank_pattern"), *alpha_pattern = json_get(config, "alpha_pattern");
    uint64_t r;
    if (!type || type->type != JSON_STRING || strcmp(type->string, "LORA")) { gfn_error_set(err, "%s: peft_type must be \"LORA\"", config_path); goto done; }
    if (!json_whole(json_get(config, "r"), 65536, &r) || r == 0) { gfn_error_set(err, "%s: \"r\" must be a positive whole number", config_path); goto done; }
    if (!alpha || alpha->type != JSON_NUMBER || !(alpha->number > 0 && alpha->number <= LORA_ALPHA_MAX)) {
        gfn_error_set(err, "%s: \"lora_alpha\" must be a number in (0, %g]", config_path, (double)LORA_ALPHA_MAX); goto done;
    }
    if (rslora && rslora->type != JSON_BOOL && rslora->type != JSON_NULL) { gfn_error_set(err, "%s: \"use_rslora\" must be true or false", config_path); goto done; }
    if ((bias && bias->type == JSON_STRING && strcmp(bias->string, "none")) || (dora && dora->type == JSON_BOOL && dora->number) ||
        (save && save->type != JSON_NULL && save->len) || (layers && layers->type != JSON_NULL) ||
        (rank_pattern && rank_pattern->len) || (alpha_pattern && alpha_pattern->len)) {
        gfn_error_set(err, "%s: unsupported PEFT options (gfn reads bias \"none\", no DoRA, no modules_to_save, "
                      "no layers_to_transform, no rank or alpha patterns)", config_path);
        goto done;
    }
    if (!modules || (modules->type != JSON_STRING && modules->type != JSON_ARRAY)) {
        gfn_error_set(err, "%s: \"target_modules\" must be a list of names or a regular expression", config_path); goto done;
    }
    if (safetensors_open(&st, weights_path, err)) goto done;
    st_open = 1;
    // The tensors decide what is adapted; a list in target_modules must agree with them (a regular
    // expression string is not evaluated: PEFT wrote exactly the tensors it matched).
    int targeted[LORA_NUM_TARGETS] = { 0 };
    seen = gfn_calloc((size_t)LORA_NUM_TARGETS * (size_t)c.n_layer * 2, 1);
    for (int i = 0; i < st.n; i++) {
        int l, t, is_B;
        if (peft_parse_key(st.tensors[i].name, c.n_layer, &l, &t, &is_B)) {
            gfn_error_set(err, "%s: unexpected tensor %s (gfn reads LoRA A and B of attn.c_attn, attn.c_proj, mlp.c_fc, "
                          "mlp.c_proj in layers 0..%d)", weights_path, st.tensors[i].name, c.n_layer - 1);
            goto done;
        }
        char *flag = &seen[((size_t)t * (size_t)c.n_layer + (size_t)l) * 2 + (size_t)is_B];
        if (*flag) { gfn_error_set(err, "%s: tensor %s appears twice", weights_path, st.tensors[i].name); goto done; }
        *flag = 1;
        targeted[t] = 1;
    }
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        int listed = 0;
        if (modules->type == JSON_ARRAY) {
            for (Json *e = modules->child; e; e = e->next)
                listed |= e->type == JSON_STRING && peft_entry_matches(e->string, t);
            if (listed != targeted[t]) {
                gfn_error_set(err, "%s: target_modules %s %s but %s %s weights for it", config_path, listed ? "selects" : "does not select",
                              lora_module_paths[t], weights_path, targeted[t] ? "has" : "has no");
                goto done;
            }
        }
        if (!targeted[t]) continue;
        for (int l = 0; l < c.n_layer; l++)
            for (int is_B = 0; is_B < 2; is_B++)
                if (!seen[((size_t)t * (size_t)c.n_layer + (size_t)l) * 2 + (size_t)is_B]) {
                    gfn_error_set(err, "%s: missing %s%d.%s.lora_%c.weight (gfn adapts a module in every layer or none)",
                                  weights_path, peft_prefix, l, lora_module_paths[t], is_B ? 'B' : 'A');
                    goto done;
                }
    }
    int any = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) any |= targeted[t];
    if (!any) { gfn_error_set(err, "%s: no LoRA weights", weights_path); goto done; }
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!targeted[t]) continue;
        int in, out;
        lora_dims(c, t, &in, &out);
        A[t] = gfn_malloc((size_t)c.n_layer * (size_t)in * r * sizeof(float));
        B[t] = gfn_malloc((size_t)c.n_layer * r * (size_t)out * sizeof(float));
    }
    float *tmp = NULL;
    for (int i = 0; i < st.n; i++) {
        const SafeTensor *ts = &st.tensors[i];
        int l, t, is_B;
        peft_parse_key(ts->name, c.n_layer, &l, &t, &is_B);
        int in, out;
        lora_dims(c, t, &in, &out);
        size_t rows = is_B ? (size_t)out : r, cols = is_B ? r : (size_t)in;   // PEFT: A (r, in), B (out, r)
        if (ts->ndim != 2 || ts->shape[0] != rows || ts->shape[1] != cols) {
            char got[128];
            shape_text(got, sizeof got, ts->shape, ts->ndim);
            gfn_error_set(err, "%s: tensor %s has shape %s but r = %d and the model's %s need [%zu, %zu]", weights_path, ts->name,
                          got, (int)r, lora_module_paths[t], rows, cols);
            free(tmp);
            goto done;
        }
        tmp = realloc(tmp, rows * cols * sizeof(float));
        if (!tmp) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        if (safetensors_to_f32(&st, ts, tmp, err) || check_finite(tmp, rows * cols, weights_path, ts->name, err)) { free(tmp); goto done; }
        float *dst = is_B ? B[t] + (size_t)l * r * out : A[t] + (size_t)l * in * r;   // ours: the transpose
        for (size_t a = 0; a < rows; a++)
            for (size_t b = 0; b < cols; b++) dst[b * rows + a] = tmp[a * cols + b];
    }
    free(tmp);
    lora_install(model, (int)r, (float)alpha->number, rslora && rslora->number != 0, targeted, A, B);
    rc = 0;
done:
    for (int t = 0; t < LORA_NUM_TARGETS; t++) { free(A[t]); free(B[t]); }
    if (st_open) safetensors_close(&st);
    json_free(config);
    free(seen);
    free(config_path);
    free(weights_path);
    return rc;
}

int lora_save(const GPT *model, const char *path, GfnError *err) {
    const LoRA *lora = model->lora;
    if (!lora) { gfn_error_set(err, "%s: the model carries no LoRA adapter to save", path); return 1; }
    return lora_path_is_peft(path) ? lora_save_peft(lora, model->config, path, err) : lora_save_file(lora, model->config, path, err);
}

int lora_load(GPT *model, const char *path, GfnError *err) {
    return lora_path_is_peft(path) ? lora_load_peft(model, path, err) : lora_load_file(model, path, err);
}
