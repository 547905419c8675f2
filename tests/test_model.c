// tests/test_model.c — the GPT-2 engine of model.c: gradients against finite differences, LoRA,
// KV-cache decoding against the full forward, determinism, checkpoints, AdamW, schedule, clipping.
#include "test.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// A tiny model with an odd T, so no size happens to line up with another.
static const GPTConfig tiny = { 37, 16, 2, 2, 16 };   // V, maxT, L, NH, C
enum { TB = 2, TT = 7 };

// GPT-2's init makes most gradients tiny (std 0.02, LN at 1/0); for a gradient check every path
// should carry weight, so draw every tensor, LN weights and biases included, at a larger scale.
static GPT *tiny_model(uint64_t seed) {
    GPT *model = gpt_new_random(tiny, seed);
    Rng rng;
    rng_seed(&rng, seed + 1000);
    float *p = gpt_params_memory(model);
    for (size_t i = 0; i < gpt_num_parameters(model); i++) p[i] = 0.3f * rng_normal(&rng);
    GPTParams *t = gpt_params(model);
    for (int l = 0; l < tiny.n_layer * tiny.n_embd; l++) { t->ln1w[l] += 1.0f; t->ln2w[l] += 1.0f; }
    for (int c = 0; c < tiny.n_embd; c++) t->lnfw[c] += 1.0f;
    return model;
}

static void tiny_batch(int *inputs, int *targets, int B, int T, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < B * T; i++) inputs[i] = rng_below(&rng, tiny.vocab_size);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? inputs[b * T + t + 1] : -1;
    targets[1] = -1;   // an ignored target in the middle too
}

static double loss_of(GPT *model, const int *inputs, const int *targets, int B, int T) {
    gpt_forward(model, inputs, B, T);
    return gpt_cross_entropy(model, targets, NULL, NULL);
}

// Central difference with Richardson extrapolation, (4·D(h/2) − D(h)) / 3, in double: truncation
// error O(h⁴), so h can be large (3e-2) and the float rounding of the loss (~1e-6) divided by h
// stays ~1e-4 of the gradients. (Measured: h = 5e-3 leaves ~8e-3 of noise, h = 1e-1 ~3e-2 of
// truncation error on the LoRA tensors, h = 3e-2 at most ~2e-3.)
static double finite_difference(GPT *model, float *x, const int *inputs, const int *targets, int B, int T) {
    const float h = 3e-2f;
    float saved = *x;
    double d[2];
    for (int k = 0; k < 2; k++) {
        float step = k == 0 ? h : h / 2;
        *x = saved + step; double up = loss_of(model, inputs, targets, B, T);
        *x = saved - step; double down = loss_of(model, inputs, targets, B, T);
        *x = saved;
        d[k] = (up - down) / ((double)(saved + step) - (double)(saved - step));   // the steps as stored
    }
    return (4.0 * d[1] - d[0]) / 3.0;
}

// Compares analytic gradient `grad` of tensor `x` (n floats) with finite differences on 6 random
// entries and the 3 largest-gradient ones. Error measure per entry: |fd − an| / (|an| + 0.05·gmax),
// gmax the tensor's largest |gradient| (the 0.05·gmax keeps FD noise on near-zero entries from
// counting). Tolerance 1e-2: the measured errors are at most ~2e-3, while a wrong factor (×2, a
// missing 1/√hs) or a missing term (LN's mean term, a residual path) moves the largest entries
// by tens of percent. (Checked by hand by breaking those terms: every such break fails here.)
static double check_tensor(GPT *model, float *x, const float *grad, size_t n, const int *inputs,
                           const int *targets, int B, int T, uint64_t seed) {
    double gmax = 0;
    size_t top[3] = { 0, 0, 0 };
    for (size_t i = 0; i < n; i++) {
        double g = fabs(grad[i]);
        if (g > gmax) gmax = g;
        if (g > fabs(grad[top[2]])) {
            top[2] = i;
            for (int k = 2; k > 0 && fabs(grad[top[k]]) > fabs(grad[top[k - 1]]); k--) {
                size_t tmp = top[k]; top[k] = top[k - 1]; top[k - 1] = tmp;
            }
        }
    }
    Rng rng;
    rng_seed(&rng, seed);
    double worst = 0;
    for (int s = 0; s < 9; s++) {
        size_t i = s < 3 ? top[s] : (size_t)rng_below(&rng, (int)n);
        double fd = finite_difference(model, x + i, inputs, targets, B, T);
        double err = fabs(fd - grad[i]) / (fabs(grad[i]) + 0.05 * gmax + 1e-12);
        if (err > worst) worst = err;
    }
    return worst;
}

static void test_gradients(void) {
    GPT *model = tiny_model(1);
    int inputs[TB * TT], targets[TB * TT];
    tiny_batch(inputs, targets, TB, TT, 5);
    gpt_zero_grad(model);
    float *logits = gpt_forward(model, inputs, TB, TT);
    // The loss against an independent log-softmax in double.
    float logprobs[TB * TT];
    float loss = gpt_cross_entropy(model, targets, logprobs, NULL);
    double ref = 0;
    int count = 0, lp_ok = 1;
    for (int i = 0; i < TB * TT; i++) {
        if (targets[i] < 0) { lp_ok &= logprobs[i] == 0.0f; continue; }
        double sum = 0;
        for (int v = 0; v < tiny.vocab_size; v++) sum += exp((double)logits[i * tiny.vocab_size + v]);
        double lp = logits[i * tiny.vocab_size + targets[i]] - log(sum);
        lp_ok &= fabs(lp - logprobs[i]) < 1e-5;
        ref -= lp;
        count++;
    }
    CHECK(lp_ok && fabs(loss - ref / count) < 1e-5, "cross-entropy %f vs %f", loss, ref / count);

    gpt_forward(model, inputs, TB, TT);
    float *dlogits = gpt_forward(model, inputs, TB, TT);
    gpt_cross_entropy(model, targets, NULL, dlogits);   // in place
    gpt_backward(model, dlogits);
    GPTParams *g = gpt_grads(model);
    size_t sizes_seen = 0;
    for (int t = 0; t < GPT_NUM_TENSORS; t++) {
        float *x = ((float **)gpt_params(model))[t];
        const float *gx = ((float **)g)[t];
        size_t n = (size_t)((t + 1 < GPT_NUM_TENSORS ? ((float **)gpt_params(model))[t + 1]
                                                     : gpt_params_memory(model) + gpt_num_parameters(model)) - x);
        sizes_seen += n;
        double worst = check_tensor(model, x, gx, n, inputs, targets, TB, TT, 100 + t);
        if (getenv("GFN_VERBOSE")) printf("   %s %.3g\n", gpt_tensor_names[t], worst);
        CHECK(worst < 1e-2, "gradient of %s off by %.3g (relative)", gpt_tensor_names[t], worst);
    }
    CHECK(sizes_seen == gpt_num_parameters(model), "tensors cover the block");

    // Input embeddings: Σ_b dinput[b, t] is wpe's gradient (wpe enters only there) ...
    gpt_zero_grad(model);
    dlogits = gpt_forward(model, inputs, TB, TT);
    gpt_cross_entropy(model, targets, NULL, dlogits);
    gpt_backward(model, dlogits);
    const float *dinput = gpt_dinput(model);
    double worst = 0;
    for (int t = 0; t < TT; t++)
        for (int c = 0; c < tiny.n_embd; c++) {
            double s = dinput[t * tiny.n_embd + c] + dinput[(TT + t) * tiny.n_embd + c];
            double d = fabs(s - g->wpe[t * tiny.n_embd + c]);
            if (d > worst) worst = d;   // not fmax: see larger() in tests/test.h
        }
    CHECK(worst < 1e-6, "sum of dinput != dwpe (%g)", worst);
    // ... and with B = 1 each position's embedding is its own wpe row: dinput vs finite differences.
    gpt_zero_grad(model);
    dlogits = gpt_forward(model, inputs, 1, TT);
    gpt_cross_entropy(model, targets, NULL, dlogits);
    gpt_backward(model, dlogits);
    float dinput1[TT * 16];
    memcpy(dinput1, gpt_dinput(model), sizeof dinput1);
    worst = check_tensor(model, gpt_params(model)->wpe, dinput1, TT * 16, inputs, targets, 1, TT, 7);
    CHECK(worst < 1e-2, "input-embedding gradient off by %.3g", worst);

    // Frozen tensors get no gradient at all; the others still do.
    gpt_zero_grad(model);
    gpt_freeze_all(model, 1);
    gpt_set_frozen(model, 4, 0);  // attn.c_attn.weight
    dlogits = gpt_forward(model, inputs, TB, TT);
    gpt_cross_entropy(model, targets, NULL, dlogits);
    gpt_backward(model, dlogits);
    float *gm = gpt_grads_memory(model);
    size_t nonzero_frozen = 0, nonzero_open = 0;
    size_t qkv_begin = (size_t)(g->qkvw - gm), qkv_end = (size_t)(g->qkvb - gm);
    for (size_t i = 0; i < gpt_num_parameters(model); i++) {
        if (i >= qkv_begin && i < qkv_end) nonzero_open += gm[i] != 0;
        else nonzero_frozen += gm[i] != 0;
    }
    CHECK(nonzero_frozen == 0 && nonzero_open > 0, "frozen grads touched (%zu) or open ones empty", nonzero_frozen);
    gpt_free(model);
}

static void lora_randomize(LoRA *lora, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < lora->num_parameters; i++) lora->memory[i] = 0.3f * rng_normal(&rng);
}

static void test_lora(void) {
    GPT *model = tiny_model(2);
    int inputs[TB * TT], targets[TB * TT];
    tiny_batch(inputs, targets, TB, TT, 6);
    int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    LoRA *lora = gpt_lora_attach(model, 3, 6.0f, 0, all, 11);
    CHECK(lora && gpt_lora(model) == lora && lora->scale == 2.0f, "attach");
    // PEFT init: B zero, A uniform within ±1/√in.
    int b_zero = 1, a_bounded = 1, a_nonzero = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        int in = (t == LORA_MLP_PROJ ? 4 : 1) * tiny.n_embd, out = (t == LORA_ATTN_QKV ? 3 : t == LORA_MLP_FC ? 4 : 1) * tiny.n_embd;
        for (int i = 0; i < tiny.n_layer * in * 3; i++) {
            a_bounded &= fabsf(lora->A[t][i]) <= 1.0f / sqrtf((float)in);
            a_nonzero += lora->A[t][i] != 0;
        }
        for (int i = 0; i < tiny.n_layer * 3 * out; i++) b_zero &= lora->B[t][i] == 0;
    }
    CHECK(b_zero && a_bounded && a_nonzero > 0, "PEFT init");
    lora_randomize(lora, 12);

    gpt_freeze_all(model, 1);
    gpt_grads(model);   // allocated (zero) here only to prove that nothing writes into it
    gpt_zero_grad(model);
    float *dlogits = gpt_forward(model, inputs, TB, TT);
    gpt_cross_entropy(model, targets, NULL, dlogits);
    gpt_backward(model, dlogits);
    float *gm = gpt_grads_memory(model);
    size_t touched = 0;
    for (size_t i = 0; i < gpt_num_parameters(model); i++) touched += gm[i] != 0;
    CHECK(touched == 0, "frozen base got %zu gradient entries", touched);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        size_t a_n = (size_t)(lora->B[t] - lora->A[t]);   // A and B lie back to back
        size_t in = (t == LORA_MLP_PROJ ? 4 : 1) * (size_t)tiny.n_embd, out = (t == LORA_ATTN_QKV ? 3 : t == LORA_MLP_FC ? 4 : 1) * (size_t)tiny.n_embd;
        CHECK(a_n == tiny.n_layer * in * 3, "A size");
        double wa = check_tensor(model, lora->A[t], lora->grad_A[t], a_n, inputs, targets, TB, TT, 200 + t);
        double wb = check_tensor(model, lora->B[t], lora->grad_B[t], tiny.n_layer * 3 * out, inputs, targets, TB, TT, 300 + t);
        if (getenv("GFN_VERBOSE")) printf("   lora %s %.3g %.3g\n", lora_target_names[t], wa, wb);
        CHECK(wa < 1e-2 && wb < 1e-2, "LoRA %s gradients off: A %.3g B %.3g", lora_target_names[t], wa, wb);
    }

    // Merging gives the logits of the unmerged adapter.
    float *logits = gpt_forward(model, inputs, TB, TT);
    size_t nl = (size_t)TB * TT * tiny.vocab_size;
    float *before = malloc(nl * sizeof(float));
    memcpy(before, logits, nl * sizeof(float));
    gpt_lora_merge(model);
    CHECK(gpt_lora(model) == NULL, "merge detaches");
    logits = gpt_forward(model, inputs, TB, TT);
    double worst = 0;
    for (size_t i = 0; i < nl; i++) {   // not fmax: see larger() in tests/test.h
        double d = fabs(logits[i] - before[i]) / (1.0 + fabs(before[i]));
        if (d > worst) worst = d;
    }
    CHECK(worst < 1e-4, "merged logits differ by %g", worst);
    free(before);

    // A partial adapter (two targets) with rsLoRA: scale α/√r.
    int some[LORA_NUM_TARGETS] = { 0, 1, 0, 1 };
    lora = gpt_lora_attach(model, 4, 2.0f, 1, some, 3);
    CHECK(lora->scale == 1.0f && lora->A[0] == NULL && lora->A[1] != NULL, "rsLoRA / partial targets");
    gpt_lora_detach(model);
    CHECK(gpt_lora(model) == NULL, "detach");
    gpt_free(model);
}

// Decoding row by row, at different positions per row, gives the full forward's logits.
static void check_decode(GPT *model, const char *what) {
    enum { R = 3, LEN = 9, PRE = 2 };
    int seqs[R][LEN];
    Rng rng;
    rng_seed(&rng, 77);
    for (int b = 0; b < R; b++)
        for (int t = 0; t < LEN; t++) seqs[b][t] = rng_below(&rng, tiny.vocab_size);
    int V = tiny.vocab_size;
    KVCache *kv = kv_cache_new(model, R, LEN);
    int prefix[R * PRE];
    for (int b = 0; b < R; b++) for (int t = 0; t < PRE; t++) prefix[b * PRE + t] = seqs[b][t];
    gpt_prefill(model, kv, prefix, R, PRE);
    int pos[R] = { PRE, PRE, PRE }, tokens[R];
    float logits[R * 37], expected[37];
    double worst = 0;
    int fed_total = 0;
    for (int step = 0; step < 12; step++) {
        // row b is fed unless (step + b) % 3 == 0 or it is done: rows drift apart in position
        int fed[R];
        for (int b = 0; b < R; b++) {
            fed[b] = (step + b) % 3 != 0 && pos[b] < LEN;
            tokens[b] = fed[b] ? seqs[b][pos[b]] : -1;
        }
        // Rows not fed stay untouched. The mark is a float variable, not the literal 1e30f in the
        // comparison: where FLT_EVAL_METHOD is 1 or 2 (s390x, i686 with -std=c11) a float
        // constant keeps double (or long double) precision and never equals the stored float.
        const float untouched = 1e30f;
        for (int i = 0; i < R * V; i++) logits[i] = untouched;
        gpt_decode_step(model, kv, tokens, pos, logits);
        for (int b = 0; b < R; b++) {
            if (!fed[b]) { worst = larger(worst, logits[b * V] == untouched ? 0 : 1); continue; }
            float *full = gpt_forward(model, seqs[b], 1, pos[b] + 1);
            memcpy(expected, full + (size_t)pos[b] * V, sizeof expected);
            for (int v = 0; v < V; v++) {   // `if (d > worst)`, not fmax: see below
                double d = fabs(logits[b * V + v] - expected[v]) / (1.0 + fabs(expected[v]));
                if (d > worst) worst = d;
            }
            pos[b]++;
            fed_total++;
        }
    }
    CHECK(worst < 1e-5 && fed_total > 15, "%s: decode differs from the full forward by %g", what, worst);
    // A copied row continues like its source.
    kv_cache_copy_row(kv, 0, 1, pos[1]);
    int p0 = pos[1];
    if (p0 < LEN) {
        int tok[R] = { seqs[1][p0], -1, -1 }, ps[R] = { p0, 0, 0 };
        gpt_decode_step(model, kv, tok, ps, logits);
        float *full = gpt_forward(model, seqs[1], 1, p0 + 1);
        double w = 0;
        // `if (d > w)`, not fmax (here and in the loop above): see larger() in tests/test.h.
        for (int v = 0; v < V; v++) {
            double d = fabs(logits[v] - full[(size_t)p0 * V + v]);
            if (d > w) w = d;
        }
        CHECK(w < 1e-4, "%s: copied row differs by %g", what, w);
    }
    kv_cache_free(kv);
}

// The cache keeps the tied head's weights transposed for its decode steps (model.c, KVCache):
// taken again at gpt_prefill, so a cache refilled after the weights changed decodes with the new
// ones (bit for bit the full forward's last logits: the same sums in the same order), and a
// decode step with another model's weights takes that model's.
static void check_head_refresh(void) {
    enum { LEN = 6 };
    int V = tiny.vocab_size, seq[LEN] = { 3, 1, 4, 1, 5, 9 }, tok[1] = { seq[LEN - 1] }, pos[1] = { LEN - 1 };
    GPT *model = tiny_model(31), *other = tiny_model(32);
    KVCache *kv = kv_cache_new(model, 1, LEN);
    float logits[37];
    for (int round = 0; round < 2; round++) {
        if (round == 1) {   // new weights for the head (and the embedding it is tied to)
            GPTParams *p = gpt_params(model);
            for (int i = 0; i < V * tiny.n_embd; i++) p->wte[i] *= -1.5f;
        }
        gpt_prefill(model, kv, seq, 1, LEN - 1);
        gpt_decode_step(model, kv, tok, pos, logits);
        float *full = gpt_forward(model, seq, 1, LEN);
        CHECK(!memcmp(logits, full + (size_t)(LEN - 1) * V, sizeof(float) * (size_t)V),
              "decode step after %s differs from the full forward", round ? "new weights and a new prefill" : "a prefill");
    }
    // the same cache's keys, another model's head: its logits are other's head applied to the same state
    gpt_prefill(other, kv, seq, 1, LEN - 1);
    gpt_decode_step(other, kv, tok, pos, logits);
    float *full = gpt_forward(other, seq, 1, LEN);
    CHECK(!memcmp(logits, full + (size_t)(LEN - 1) * V, sizeof(float) * (size_t)V), "decode step with another model's head");
    // frozen (a fine-tuning run's base): a prefill keeps the head it holds, taking it only when the
    // cache holds another model's (here other's, from just above), and then once more kept
    gpt_freeze_all(model, 1);
    for (int round = 0; round < 2; round++) {
        gpt_prefill(model, kv, seq, 1, LEN - 1);
        gpt_decode_step(model, kv, tok, pos, logits);
        full = gpt_forward(model, seq, 1, LEN);
        CHECK(!memcmp(logits, full + (size_t)(LEN - 1) * V, sizeof(float) * (size_t)V), "frozen model, prefill %d: decode differs", round);
    }
    kv_cache_free(kv);
    gpt_free(model);
    gpt_free(other);
}

static void test_kv_cache(void) {
    check_head_refresh();
    GPT *model = tiny_model(3);
    check_decode(model, "base");
    int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    lora_randomize(gpt_lora_attach(model, 2, 4.0f, 0, all, 5), 9);
    check_decode(model, "with LoRA");
    gpt_free(model);
}

// Prefix sharing (gpt_forward_shared): B rows that begin with the same P tokens, the prefix run
// once. Against gpt_forward over the whole rows: the suffix logits bit for bit (same arithmetic in
// the same order), and every gradient — each base tensor (all trainable) and each LoRA A and B —
// within 1e-5 of the tensor's largest entry: the rows' contributions to the prefix are summed
// before its backward instead of after, a change of summation order only (measured ~1e-7; the
// finite-difference tolerance of the unshared gradients above is 1e-2). Cases: a prefix of 5 with
// suffixes of 6, a one-token prefix, and a single row.
static void check_shared(GPT *model, int P, int B, int T, uint64_t seed, const char *what) {
    int V = tiny.vocab_size, W = P + T;
    int *full = malloc(sizeof(int) * (size_t)B * W), *suffix = malloc(sizeof(int) * (size_t)B * T);
    int *targets_full = malloc(sizeof(int) * (size_t)B * W), *targets = malloc(sizeof(int) * (size_t)B * T);
    Rng rng;
    rng_seed(&rng, seed);
    for (int t = 0; t < P; t++) full[t] = rng_below(&rng, V);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < P; t++) full[b * W + t] = full[t];
        for (int t = 0; t < T; t++) suffix[b * T + t] = full[b * W + P + t] = rng_below(&rng, V);
        for (int t = 0; t < W; t++)   // the loss reads suffix positions only, one of them ignored
            targets_full[b * W + t] = t >= P && t + 1 < W && t != P + 1 ? full[b * W + t + 1] : -1;
        for (int t = 0; t < T; t++) targets[b * T + t] = targets_full[b * W + P + t];
    }
    size_t n = gpt_num_parameters(model);
    LoRA *lora = gpt_lora(model);
    size_t nl = lora ? lora->num_parameters : 0;
    float *grads = malloc(sizeof(float) * (n + nl));
    float *logits_full = malloc(sizeof(float) * (size_t)B * T * V);

    gpt_zero_grad(model);
    float *logits = gpt_forward(model, full, B, W);
    for (int b = 0; b < B; b++) memcpy(logits_full + (size_t)b * T * V, logits + ((size_t)b * W + P) * V, sizeof(float) * (size_t)T * V);
    float loss_full = gpt_cross_entropy(model, targets_full, NULL, logits);
    gpt_backward(model, logits);
    memcpy(grads, gpt_grads_memory(model), sizeof(float) * n);
    if (lora) memcpy(grads + n, lora->grad_memory, sizeof(float) * nl);

    gpt_zero_grad(model);
    logits = gpt_forward_shared(model, full, P, suffix, B, T);
    CHECK(!memcmp(logits, logits_full, sizeof(float) * (size_t)B * T * V), "%s: shared logits differ from the full forward", what);
    float loss = gpt_cross_entropy(model, targets, NULL, logits);
    CHECK(loss == loss_full, "%s: loss %.9g vs %.9g", what, loss, loss_full);
    gpt_backward(model, logits);
    const float *g = gpt_grads_memory(model);
    for (int k = 0; k < GPT_NUM_TENSORS; k++) {
        size_t off = (size_t)(((float **)gpt_params(model))[k] - gpt_params_memory(model));
        size_t len = (k + 1 < GPT_NUM_TENSORS ? (size_t)(((float **)gpt_params(model))[k + 1] - gpt_params_memory(model)) : n) - off;
        double gmax = 0, diff = 0;
        for (size_t i = off; i < off + len; i++) { gmax = larger(gmax, fabs(grads[i])); diff = larger(diff, fabs(g[i] - grads[i])); }
        CHECK(gmax > 0 && diff <= 1e-5 * gmax, "%s: gradient of %s differs by %.3g of %.3g", what, gpt_tensor_names[k], diff, gmax);
    }
    if (lora)
        for (int k = 0; k < LORA_NUM_TARGETS; k++) {
            if (!lora->targeted[k]) continue;
            for (int which = 0; which < 2; which++) {
                const float *x = which ? lora->grad_B[k] : lora->grad_A[k];
                size_t off = (size_t)(x - lora->grad_memory);
                size_t len = (size_t)(which ? (k + 1 < LORA_NUM_TARGETS && lora->grad_A[k + 1] ? lora->grad_A[k + 1] - x : (lora->grad_memory + nl) - x)
                                            : lora->grad_B[k] - x);
                double gmax = 0, diff = 0;
                for (size_t i = 0; i < len; i++) { gmax = larger(gmax, fabs(grads[n + off + i])); diff = larger(diff, fabs(x[i] - grads[n + off + i])); }
                CHECK(gmax > 0 && diff <= 1e-5 * gmax, "%s: LoRA %s %s gradient differs by %.3g of %.3g", what,
                      lora_target_names[k], which ? "B" : "A", diff, gmax);
            }
        }
    free(full); free(suffix); free(targets_full); free(targets); free(grads); free(logits_full);
}

// gpt_forward_cached: rows continuing KV-cache rows of different lengths give the logits of the
// full forward bit for bit; with store_rows, a decode step after the stored positions matches
// the full forward as check_decode does (1e-5).
static void check_cached(GPT *model, const char *what) {
    enum { R = 5, LEN = 12, T = 4 };
    int V = tiny.vocab_size, seqs[R * LEN];
    Rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < R * LEN; i++) seqs[i] = rng_below(&rng, V);
    KVCache *kv = kv_cache_new(model, 2 * R, LEN);
    gpt_prefill(model, kv, seqs, R, LEN);
    // Rows 1-3 continue the same stored row at lengths 7, 2, 6: attention_forward transposes that
    // row's keys once and reuses them up to the shorter length (a longer one adds the rest).
    int rows[R] = { 2, 0, 0, 0, 1 }, lens[R] = { 3, 7, 2, 6, 0 }, inputs[R * T], store[R] = { 5, 6, 7, 8, 9 };
    for (int b = 0; b < R; b++)
        for (int t = 0; t < T; t++) inputs[b * T + t] = (b * 7 + t * 3) % V;
    float *logits = gpt_forward_cached(model, kv, rows, lens, inputs, R, T, store);
    float *got = malloc(sizeof(float) * R * T * V);
    memcpy(got, logits, sizeof(float) * R * T * V);
    int same = 1;
    double worst = 0;
    for (int b = 0; b < R; b++) {
        int row[LEN + T];
        memcpy(row, seqs + rows[b] * LEN, sizeof(int) * (size_t)lens[b]);
        memcpy(row + lens[b], inputs + b * T, sizeof(int) * T);
        float *full = gpt_forward(model, row, 1, lens[b] + T);
        same &= !memcmp(got + (size_t)b * T * V, full + (size_t)lens[b] * V, sizeof(float) * T * V);
        // the stored row: copy the source's first lens[b] positions, decode the next token
        kv_cache_copy_row(kv, store[b], rows[b], lens[b]);
        int tok[2 * R], pos[2 * R];
        for (int i = 0; i < 2 * R; i++) tok[i] = -1;
        tok[store[b]] = row[0];
        pos[store[b]] = lens[b] + T;
        float out[2 * R * 37];
        gpt_decode_step(model, kv, tok, pos, out);
        row[lens[b] + T] = row[0];
        full = gpt_forward(model, row, 1, lens[b] + T + 1);
        for (int v = 0; v < V; v++)
            worst = larger(worst, fabs(out[store[b] * V + v] - full[(size_t)(lens[b] + T) * V + v]) / (1.0 + fabs(full[(size_t)(lens[b] + T) * V + v])));
    }
    CHECK(same, "%s: gpt_forward_cached differs from the full forward", what);
    CHECK(worst < 1e-5, "%s: decoding after stored keys and values differs by %g", what, worst);
    free(got);
    kv_cache_free(kv);
}

static void test_prefix_sharing(void) {
    GPT *model = tiny_model(4);
    check_shared(model, 5, 3, 6, 21, "base, P=5");
    check_cached(model, "base");
    int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    lora_randomize(gpt_lora_attach(model, 2, 4.0f, 0, all, 5), 10);
    check_shared(model, 5, 3, 6, 22, "LoRA, P=5");
    check_shared(model, 1, 4, 9, 23, "LoRA, P=1");
    check_shared(model, 8, 1, 3, 24, "LoRA, P=8, one row");
    check_cached(model, "LoRA");
    gpt_free(model);
}

// Forward, backward, clip and AdamW for a few steps; returns a copy of the parameters.
static float *train_steps(uint64_t seed, int steps, float *logits_out) {
    GPT *model = gpt_new_random(tiny, seed);
    int inputs[TB * TT], targets[TB * TT];
    tiny_batch(inputs, targets, TB, TT, 8);
    AdamW opt;
    adamw_init(&opt, gpt_num_parameters(model), 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f);
    for (int s = 0; s < steps; s++) {
        gpt_zero_grad(model);
        float *logits = gpt_forward(model, inputs, TB, TT);
        if (s == 0 && logits_out) memcpy(logits_out, logits, sizeof(float) * TB * TT * tiny.vocab_size);
        gpt_cross_entropy(model, targets, NULL, logits);
        gpt_backward(model, logits);
        clip_grad_norm(gpt_grads_memory(model), gpt_num_parameters(model), 1.0f);
        adamw_update(&opt, gpt_params_memory(model), gpt_grads_memory(model), lr_schedule(s, 2, steps, 1e-2f, 1e-3f));
    }
    float *out = malloc(gpt_num_parameters(model) * sizeof(float));
    memcpy(out, gpt_params_memory(model), gpt_num_parameters(model) * sizeof(float));
    adamw_free(&opt);
    gpt_free(model);
    return out;
}

static void test_determinism(void) {
    GPT *a = gpt_new_random(tiny, 42), *b = gpt_new_random(tiny, 42), *c = gpt_new_random(tiny, 43);
    size_t n = gpt_num_parameters(a), bytes = n * sizeof(float);
    CHECK(!memcmp(gpt_params_memory(a), gpt_params_memory(b), bytes), "same seed, different init");
    CHECK(memcmp(gpt_params_memory(a), gpt_params_memory(c), bytes) != 0, "different seeds, same init");
    // Init statistics: wte N(0, 0.02), c_proj N(0, 0.02/√(2L)), LN weight 1, biases 0.
    GPTParams *p = gpt_params(a);
    double s2 = 0, r2 = 0;
    size_t nw = (size_t)tiny.vocab_size * tiny.n_embd, nr = (size_t)tiny.n_layer * tiny.n_embd * tiny.n_embd;
    for (size_t i = 0; i < nw; i++) s2 += p->wte[i] * p->wte[i];
    for (size_t i = 0; i < nr; i++) r2 += p->attprojw[i] * p->attprojw[i];
    CHECK(fabs(sqrt(s2 / nw) - 0.02) < 0.003 && fabs(sqrt(r2 / nr) - 0.01) < 0.002, "init std %g %g", sqrt(s2 / nw), sqrt(r2 / nr));
    CHECK(p->ln1w[3] == 1.0f && p->ln1b[3] == 0.0f && p->qkvb[5] == 0.0f && p->lnfw[0] == 1.0f, "LN/bias init");
    gpt_free(a); gpt_free(b); gpt_free(c);

    size_t nl = (size_t)TB * TT * tiny.vocab_size;
    float *l1 = malloc(nl * sizeof(float)), *l2 = malloc(nl * sizeof(float));
    float *p1 = train_steps(42, 3, l1), *p2 = train_steps(42, 3, l2);
    CHECK(!memcmp(l1, l2, nl * sizeof(float)), "same seed, different logits");
    CHECK(!memcmp(p1, p2, bytes), "same seed, different parameters after 3 AdamW steps");
    free(p2);
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    float *q1 = train_steps(42, 3, l2);
    omp_set_num_threads(2);
    float *q2 = train_steps(42, 3, l1);
    omp_set_num_threads(threads);
    double worst = 0;
    for (size_t i = 0; i < n; i++)   // not fmax: see larger() in tests/test.h
        if (fabs(q1[i] - q2[i]) > worst) worst = fabs(q1[i] - q2[i]);
    CHECK(worst < 1e-5, "1 vs 2 threads differ by %g", worst);
    free(q1); free(q2);
#endif
    free(p1); free(l1); free(l2);
}

static void write_bytes(const char *path, const unsigned char *data, size_t len) {
    GfnError err;
    CHECK(write_file_atomic(path, data, len, &err) == 0, "%s", err.msg);
}

static void test_checkpoint(void) {
    GfnError err;
    const char *path = test_path("model.ckpt");
    GPT *model = tiny_model(4);
    CHECK(gpt_save(model, path, &err) == 0, "save: %s", err.msg);
    GPT *back = gpt_load(path, &err);
    CHECK(back != NULL, "load: %s", back ? "" : err.msg);
    if (!back) { gpt_free(model); return; }
    GPTConfig c = gpt_config(back);
    CHECK(!memcmp(&c, &tiny, sizeof c) && gpt_num_parameters(back) == gpt_num_parameters(model), "config round trip");
    CHECK(!memcmp(gpt_params_memory(back), gpt_params_memory(model), gpt_num_parameters(model) * sizeof(float)),
          "parameters round trip bit-exact");
    gpt_free(back);
    // f16 storage: every value comes back as its nearest half, and the file is half the size.
    const char *path16 = test_path("model16.ckpt");
    CHECK(gpt_save_f16(model, path16, &err) == 0, "save f16: %s", err.msg);
    back = gpt_load(path16, &err);
    CHECK(back != NULL, "load f16: %s", back ? "" : err.msg);
    if (back) {
        const float *orig = gpt_params_memory(model), *half = gpt_params_memory(back);
        size_t wrong = 0;
        for (size_t i = 0; i < gpt_num_parameters(model); i++) wrong += half[i] != half_to_float(float_to_half(orig[i]));
        CHECK(wrong == 0, "%zu f16 values differ from their rounding", wrong);
        gpt_free(back);
    }
    size_t saved16_len;
    unsigned char *file16 = read_file(path16, &saved16_len, &err);
    CHECK(file16 && saved16_len == 64 + 2 * gpt_num_parameters(model) && le_u32(file16 + 12) == 1, "f16 file layout");
    free(file16);
    remove(path16);

    size_t len;
    unsigned char *file = read_file(path, &len, &err);
    size_t n = gpt_num_parameters(model);
    CHECK(file && len == 64 + 4 * n && !memcmp(file, "GFNCKPT1", 8), "file layout");
    // truncated
    write_bytes(path, file, len - 3);
    back = gpt_load(path, &err);
    CHECK(!back && strstr(err.msg, path) && strstr(err.msg, "truncated"), "truncated: %s", err.msg);
    write_bytes(path, file, 20);
    back = gpt_load(path, &err);
    CHECK(!back && strstr(err.msg, path), "short header: %s", err.msg);
    // wrong magic
    file[0] = 'X';
    write_bytes(path, file, len);
    back = gpt_load(path, &err);
    CHECK(!back && strstr(err.msg, path) && strstr(err.msg, "magic"), "magic: %s", err.msg);
    file[0] = 'G';
    // a header that lies about the size (3 layers, 2 stored), and one with an impossible config
    put_le_u32(file + 24, 3);
    write_bytes(path, file, len);
    back = gpt_load(path, &err);
    CHECK(!back && strstr(err.msg, path) && strstr(err.msg, "needs exactly"), "lying size: %s", err.msg);
    put_le_u32(file + 24, 2);
    put_le_u32(file + 28, 3);  // n_head 3 with n_embd 16
    write_bytes(path, file, len);
    back = gpt_load(path, &err);
    CHECK(!back && strstr(err.msg, "divisible"), "bad config: %s", err.msg);
    put_le_u32(file + 28, 0xFFFFFFFFu);
    write_bytes(path, file, len);
    back = gpt_load(path, &err);
    CHECK(!back && strstr(err.msg, path), "huge field: %s", err.msg);
    put_le_u32(file + 28, 2);
    // f16 storage: half the bytes, values rounded to half
    size_t len16 = 64 + 2 * n;
    unsigned char *f16 = calloc(len16, 1);
    memcpy(f16, file, 64);
    put_le_u32(f16 + 12, 1);
    const float *pm = gpt_params_memory(model);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = float_to_half(pm[i]);
        f16[64 + 2 * i] = (unsigned char)h;
        f16[65 + 2 * i] = (unsigned char)(h >> 8);
    }
    write_bytes(path, f16, len16);
    back = gpt_load(path, &err);
    CHECK(back != NULL, "f16 load: %s", back ? "" : err.msg);
    if (back) {
        int same = 1;
        for (size_t i = 0; i < n; i++) same &= gpt_params_memory(back)[i] == half_to_float(float_to_half(pm[i]));
        CHECK(same, "f16 values");
        gpt_free(back);
    }
    free(f16);
    free(file);
    remove(path);
    back = gpt_load("no/such/model.ckpt", &err);
    CHECK(!back && strstr(err.msg, "no/such/model.ckpt"), "missing file: %s", err.msg);
    back = gpt_load("tests", &err);   // a directory goes to the HF import, which finds no model there
    CHECK(!back && strstr(err.msg, "tests"), "directory: %s", err.msg);
    gpt_free(model);
}

static void test_adamw(void) {
    // Two steps over three parameters, expected values worked in double from the AdamW equations.
    float params[3] = { 0.5f, -1.0f, 2.0f };
    const float grads[2][3] = { { 0.1f, -0.2f, 0.0f }, { -0.3f, 0.05f, 1.0f } };
    const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    double x[3] = { 0.5, -1.0, 2.0 }, m[3] = { 0 }, v[3] = { 0 };
    AdamW opt;
    adamw_init(&opt, 3, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd);
    for (int t = 1; t <= 2; t++) {
        adamw_update(&opt, params, grads[t - 1], (float)lr);
        for (int i = 0; i < 3; i++) {
            double g = grads[t - 1][i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
            x[i] -= lr * (mh / (sqrt(vh) + eps) + wd * x[i]);
        }
    }
    // by hand for parameter 0: step 1 moves by −0.1·(1 + 0.005) → 0.3995; step 2 has m̂ ≈ −0.1105
    double worst = 0;
    for (int i = 0; i < 3; i++) worst = larger(worst, fabs(params[i] - x[i]));
    CHECK(worst < 1e-6 && opt.step == 2, "AdamW off by %g", worst);
    // By hand for parameter 0 (g = 0.1, then −0.3): step 1 has m̂ = 0.1, v̂ = 0.01, so it moves by
    // −0.1·(0.1/0.1 + 0.01·0.5) to 0.3995; step 2 has m̂ = −0.021/0.19, v̂ = 9.999e-5/0.001999, so
    // 0.3995 − 0.1·(m̂/√v̂ + 0.01·0.3995) = 0.4485186.
    CHECK(fabs(x[0] - 0.4485186) < 1e-6 && fabs(params[0] - 0.4485186) < 1e-6, "parameter 0: %.7f", params[0]);
    adamw_free(&opt);
}

static void test_schedule_and_clip(void) {
    float lr[121];   // (float)0.1f below: the cast drops the excess precision FLT_EVAL_METHOD 1/2 gives a constant
    for (int s = 0; s <= 120; s++) lr[s] = lr_schedule(s, 10, 110, 1.0f, 0.1f);
    CHECK(fabsf(lr[0] - 0.1f) < 1e-6f && fabsf(lr[4] - 0.5f) < 1e-6f && lr[9] == 1.0f && lr[10] == 1.0f, "warm-up");
    CHECK(fabsf(lr[60] - 0.55f) < 1e-6f && fabsf(lr[110] - 0.1f) < 1e-6f && lr[120] == (float)0.1f, "cosine mid/end");
    int monotone = 1;
    for (int s = 10; s < 120; s++) monotone &= lr[s + 1] <= lr[s];
    CHECK(monotone, "decay not monotone");

    float g[4] = { 3, 4, 0, 0 };
    float norm = clip_grad_norm(g, 4, 1.0f);
    CHECK(norm == 5.0f && fabsf(g[0] - 0.6f) < 1e-6f && fabsf(g[1] - 0.8f) < 1e-6f, "clip to 1");
    norm = clip_grad_norm(g, 4, 10.0f);
    CHECK(fabsf(norm - 1.0f) < 1e-5f && fabsf(g[0] - 0.6f) < 1e-6f, "no clip under the limit");
    size_t n = 300001;   // several chunks, ragged end
    float *big = malloc(n * sizeof(float));
    double ref = 0;
    Rng rng;
    rng_seed(&rng, 3);
    for (size_t i = 0; i < n; i++) { big[i] = rng_normal(&rng); ref += (double)big[i] * big[i]; }
    norm = clip_grad_norm(big, n, 1.0f);
    double after = 0;
    for (size_t i = 0; i < n; i++) after += (double)big[i] * big[i];
    CHECK(fabs(norm - sqrt(ref)) < 1e-3 && fabs(sqrt(after) - 1.0) < 1e-4, "big clip: %f vs %f, after %f", norm, sqrt(ref), sqrt(after));
    free(big);
}

// Against an independent implementation: scripts/gen_model_fixture.py writes a tiny random GPT-2
// in our checkpoint format and what torch (HF's formulas, float64, autograd) computes for one
// batch: logits, loss, every parameter gradient, the input-embedding gradient, and the same with
// a LoRA adapter given in PEFT's orientation. Tolerances: float32 against float64 over two layers
// leaves ~1e-6 relative; 1e-4 of each array's largest value catches any wrong formula.
// (`if (d > m)`, not fmax: see larger() in tests/test.h.)
static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}
static double max_diff(const float *x, const unsigned char *le, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(x[i] - le_f32(le + 4 * i));
        if (d > m) m = d;
    }
    return m;
}

static void test_reference(void) {
    const char *ckpt = "tests/fixtures/tiny_gpt2.ckpt", *expected = "tests/fixtures/tiny_gpt2_expected.bin";
    GfnError err;
    size_t len;
    unsigned char *e = read_file(expected, &len, &err);
    GPT *model = e ? gpt_load(ckpt, &err) : NULL;
    if (!model) { free(e); test_skip("model reference", "tests/fixtures missing (run from the repository root)"); return; }
    GPTConfig c = gpt_config(model);
    int B = (int)le_u32(e), T = (int)le_u32(e + 4), r = (int)le_u32(e + 8), V = c.vocab_size;
    float alpha = le_f32(e + 12);
    size_t n = gpt_num_parameters(model), nl = (size_t)B * T * V, L = (size_t)c.n_layer, C = (size_t)c.n_embd;
    size_t lora_n = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        lora_n += L * r * C * ((t == LORA_MLP_PROJ ? 4 : 1) + (t == LORA_ATTN_QKV ? 3 : t == LORA_MLP_FC ? 4 : 1));
    size_t need = 16 + 8 * (size_t)B * T + 4 * (1 + nl + n + (size_t)B * T * C + lora_n + 1 + nl + lora_n);
    CHECK(len == need, "fixture size %zu, expected %zu", len, need);
    if (len != need) { free(e); gpt_free(model); return; }
    int inputs[64], targets[64];
    const unsigned char *p = e + 16;
    for (int i = 0; i < B * T; i++) inputs[i] = (int)le_u32(p + 4 * i);
    p += 4 * B * T;
    for (int i = 0; i < B * T; i++) targets[i] = (int)le_u32(p + 4 * i);
    p += 4 * B * T;

    float *logits = gpt_forward(model, inputs, B, T);
    double dl = max_diff(logits, p + 4, nl) / max_abs(logits, nl);
    float loss = gpt_cross_entropy(model, targets, NULL, logits);
    CHECK(dl < 1e-5 && fabs(loss - le_f32(p)) < 1e-5, "logits off by %g, loss %f vs %f", dl, loss, le_f32(p));
    p += 4 * (1 + nl);
    gpt_zero_grad(model);
    gpt_backward(model, logits);
    float *grads = gpt_grads_memory(model);
    for (int t = 0; t < GPT_NUM_TENSORS; t++) {
        float *g = ((float **)gpt_grads(model))[t];
        size_t off = (size_t)(g - grads), cnt = (t + 1 < GPT_NUM_TENSORS ? (size_t)(((float **)gpt_grads(model))[t + 1] - grads) : n) - off;
        double d = max_diff(g, p + 4 * off, cnt) / (max_abs(g, cnt) + 1e-12);
        CHECK(d < 1e-4, "gradient of %s differs from torch by %g", gpt_tensor_names[t], d);
    }
    p += 4 * n;
    size_t nd = (size_t)B * T * C;
    CHECK(max_diff(gpt_dinput(model), p, nd) / max_abs(gpt_dinput(model), nd) < 1e-4, "input-embedding gradient");
    p += 4 * nd;

    int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    LoRA *lora = gpt_lora_attach(model, r, alpha, 0, all, 1);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        size_t in = (t == LORA_MLP_PROJ ? 4 : 1) * C, out = (t == LORA_ATTN_QKV ? 3 : t == LORA_MLP_FC ? 4 : 1) * C;
        for (size_t i = 0; i < L * in * r; i++) lora->A[t][i] = le_f32(p + 4 * i);
        p += 4 * L * in * r;
        for (size_t i = 0; i < L * r * out; i++) lora->B[t][i] = le_f32(p + 4 * i);
        p += 4 * L * r * out;
    }
    gpt_freeze_all(model, 1);
    logits = gpt_forward(model, inputs, B, T);
    dl = max_diff(logits, p + 4, nl) / max_abs(logits, nl);
    loss = gpt_cross_entropy(model, targets, NULL, logits);
    CHECK(dl < 1e-5 && fabs(loss - le_f32(p)) < 1e-5, "LoRA logits off by %g, loss %f vs %f", dl, loss, le_f32(p));
    p += 4 * (1 + nl);
    gpt_backward(model, logits);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        size_t in = (t == LORA_MLP_PROJ ? 4 : 1) * C, out = (t == LORA_ATTN_QKV ? 3 : t == LORA_MLP_FC ? 4 : 1) * C;
        double da = max_diff(lora->grad_A[t], p, L * in * r) / max_abs(lora->grad_A[t], L * in * r);
        p += 4 * L * in * r;
        double db = max_diff(lora->grad_B[t], p, L * r * out) / max_abs(lora->grad_B[t], L * r * out);
        p += 4 * L * r * out;
        CHECK(da < 1e-4 && db < 1e-4, "LoRA %s gradients differ from torch: A %g B %g", lora_target_names[t], da, db);
    }
    free(e);
    gpt_free(model);
}

// GELU against the tanh formula evaluated in double (libm's exp), on a dense sweep: the float version goes
// through σ(2u) and a polynomial exp, so check it stays within a few float roundings everywhere.
static void test_gelu(void) {
    enum { N = 400001 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *d = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -20.0f + 40.0f * (float)i / (float)(N - 1);   // step 1e-4
    x[0] = -1e4f; x[1] = -300.0f; x[2] = 1e4f; x[3] = 300.0f; x[4] = 0.0f; x[5] = 1e-30f; x[6] = -1e-30f;
    for (int i = 0; i < N; i++) d[i] = 1.0f;
    gelu_forward(y, x, N);
    gelu_backward(d, x, N);
    double worst_rel = 0.0, worst_abs = 0.0, worst_grad = 0.0;
    for (int i = 0; i < N; i++) {
        double xd = x[i], s = 0.7978845608028654, a = 0.044715;
        // 1 + tanh u and 1 − tanh² u from e^(2u) in double: 1 + tanh(u) itself would cancel
        // catastrophically for x < −7 even in double
        double e = exp(2.0 * s * (xd + a * xd * xd * xd));
        double one_plus_th = isinf(e) ? 2.0 : 2.0 * e / (1.0 + e);
        double one_minus_th2 = isinf(e) ? 0.0 : 4.0 * e / ((1.0 + e) * (1.0 + e));
        double ref = 0.5 * xd * one_plus_th;
        double grad = 0.5 * one_plus_th + 0.5 * xd * one_minus_th2 * s * (1.0 + 3.0 * a * xd * xd);
        double err = fabs((double)y[i] - ref);
        if (err > worst_abs) worst_abs = err;
        // u = √(2/π)(x + 0.044715x³) is rounded to float before e^(−2u), which multiplies its
        // relative error by |2u| for negative x: allow for that conditioning, nothing more
        double u = s * (xd + a * xd * xd * xd), cond = fabs(u) > 1.0 ? fabs(u) : 1.0;
        if (fabs(ref) >= 1e-30 && err / fabs(ref) / cond > worst_rel) worst_rel = err / fabs(ref) / cond;
        double gerr = fabs((double)d[i] - grad) / (fabs(grad) > 1.0 ? fabs(grad) : 1.0);
        if (gerr > worst_grad) worst_grad = gerr;
    }
    printf("   gelu over [-20, 20] step 1e-4 and extremes: max rel err / max(1, |u|) %.2g, max abs err %.2g, grad err %.2g\n",
           worst_rel, worst_abs, worst_grad);
    CHECK(worst_rel < 1e-6, "gelu: relative error %g against the double tanh formula", worst_rel);
    CHECK(worst_abs < 1e-6, "gelu: absolute error %g", worst_abs);
    CHECK(worst_grad < 1e-6, "gelu': error %g (relative, floor 1) against the double formula", worst_grad);
    free(x); free(y); free(d);
}

// gpt_view: the same weights and adapter, activations of its own. Its forward gives the model's
// logits bit for bit; a forward through it between the model's forward and backward leaves the
// model's gradients as they are without it (the pipeline samples through a view while the
// learner's backward reads the model's activations); an adapter attached to a view of the bare
// base is the view's own, and freeing the view frees it and not the base's weights.
static void test_view(void) {
    GPT *model = tiny_model(5);
    int inputs[TB * TT], targets[TB * TT], other[TB * TT], junk[TB * TT];
    tiny_batch(inputs, targets, TB, TT, 7);
    tiny_batch(other, junk, TB, TT, 8);
    int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    LoRA *lora = gpt_lora_attach(model, 3, 6.0f, 0, all, 13);
    lora_randomize(lora, 14);
    gpt_freeze_all(model, 1);
    GPT *view = gpt_view(model);
    size_t nl = (size_t)TB * TT * tiny.vocab_size, P = lora->num_parameters;
    float *want = malloc(nl * sizeof(float)), *grads = malloc(P * sizeof(float));
    memcpy(want, gpt_forward(model, inputs, TB, TT), nl * sizeof(float));
    CHECK(!memcmp(want, gpt_forward(view, inputs, TB, TT), nl * sizeof(float)), "a view's logits differ from its model's");
    for (int interleave = 0; interleave < 2; interleave++) {
        gpt_zero_grad(model);
        float *dlogits = gpt_forward(model, inputs, TB, TT);
        if (interleave) gpt_forward(view, other, TB, TT);   // the view's forward in between
        gpt_cross_entropy(model, targets, NULL, dlogits);
        gpt_backward(model, dlogits);
        if (!interleave) memcpy(grads, lora->grad_memory, P * sizeof(float));
        else CHECK(!memcmp(grads, lora->grad_memory, P * sizeof(float)), "a forward through a view changed the model's gradients");
    }
    gpt_free(view);
    CHECK(gpt_lora(model) == lora, "freeing a view detached its model's adapter");
    // A view of the bare base with an adapter of its own (the training policy): the base keeps
    // none, and freeing the view leaves the base whole.
    gpt_lora_detach(model);
    memcpy(want, gpt_forward(model, inputs, TB, TT), nl * sizeof(float));
    GPT *policy = gpt_view(model);
    LoRA *own = gpt_lora_attach(policy, 2, 4.0f, 0, all, 15);
    lora_randomize(own, 16);
    gpt_forward(policy, inputs, TB, TT);
    CHECK(gpt_lora(model) == NULL && gpt_lora(policy) == own, "the view's adapter is not its own");
    gpt_free(policy);
    CHECK(!memcmp(want, gpt_forward(model, inputs, TB, TT), nl * sizeof(float)), "the base changed under a view with an adapter");
    free(want); free(grads);
    gpt_free(model);
}

void test_model(void) {
    test_gelu();
    test_reference();
    test_gradients();
    test_lora();
    test_kv_cache();
    test_prefix_sharing();
    test_view();
    test_determinism();
    test_checkpoint();
    test_adamw();
    test_schedule_and_clip();
}
