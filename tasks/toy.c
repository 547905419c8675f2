// tasks/toy.c — the exact-posterior proof. A tiny GPT (16 tokens) is pretrained for a few seconds
// on sequences from a fixed seeded process, so that it is an informative base LM; the target is
// the posterior over Z given a prefix X and a suffix Y,
//   log R(Z) = log p_base(Z ⊤ Y | X)   (= log p_base(X Z ⊤ Y) − log p_base(X)),
// for Z over 6 allowed tokens, 0..4 of them (1 + 6 + 36 + 216 + 1296 = 1555 sequences). Every Z
// is enumerated, so the target, its log Z and the policy's own distribution q(Z ⊤) are exact.
//
// The pretraining process: X = 3 tokens from 6..14; Z = 0..4 tokens from a peaked bigram chain
// over 0..5; ⊤ (15); then Y = (y1, y2) with y1 = 6 + last token of Z and y2 = 6 + |Z|, each
// replaced by a uniform token of 6..14 with probability 0.3. The chosen Y (y1 = 8, y2 = 9) asks
// for three-token Z ending in 2, a posterior far from the base policy's q (its L1 is reported).
#include "../gfn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TOY_V = 16, TOY_TERM = 15, TOY_ACTIONS = 6, TOY_MAX_LEN = 4, TOY_SEQ = 10 };
static const int toy_x[3] = { 7, 12, 10 };
static const int toy_y[2] = { 8, 9 };

typedef struct {
    int count;              // 1555
    int *z, *len;           // (count, max_len), (count) every Z, in enumerate_z order
    float *log_r;           // (count) log R(Z ⊤)
    double log_z;           // log Σ R
} ToyState;

// The pretraining sequences: X Z ⊤ Y, right-padded; targets −1 beyond the end.
static void toy_sequence(Rng *rng, const float *chain, int *inputs, int *targets) {
    int seq[TOY_SEQ + 1], n = 0;
    for (int i = 0; i < 3; i++) seq[n++] = 6 + rng_below(rng, 9);
    int zlen = rng_below(rng, TOY_MAX_LEN + 1), prev = rng_below(rng, TOY_ACTIONS), last = -1;
    for (int i = 0; i < zlen; i++) {
        float u = rng_uniform(rng), acc = 0;
        int next = TOY_ACTIONS - 1;
        for (int v = 0; v < TOY_ACTIONS; v++) { acc += chain[prev * TOY_ACTIONS + v]; if (u < acc) { next = v; break; } }
        seq[n++] = next;
        prev = last = next;
    }
    seq[n++] = TOY_TERM;
    seq[n++] = rng_uniform(rng) < 0.3f ? 6 + rng_below(rng, 9) : 6 + (last < 0 ? 8 : last);
    seq[n++] = rng_uniform(rng) < 0.3f ? 6 + rng_below(rng, 9) : 6 + zlen;
    for (int t = 0; t < TOY_SEQ; t++) {
        inputs[t] = t < n ? seq[t] : TOY_TERM;
        targets[t] = t + 1 < n ? seq[t + 1] : -1;
    }
}

// A tiny GPT (2 layers, C = 64; with C = 32 the LoRA policy plateaued at L1 ≈ 0.05) pretrained
// with AdamW for 300 steps (a few seconds).
static GPT *toy_base_model(uint64_t seed) {
    GPTConfig config = { TOY_V, 16, 2, 4, 64 };
    GPT *model = gpt_new_random(config, seed);
    Rng rng;
    rng_seed(&rng, seed + 1);
    float chain[TOY_ACTIONS * TOY_ACTIONS];   // peaked bigram transitions over the actions
    for (int a = 0; a < TOY_ACTIONS; a++) {
        float sum = 0;
        for (int b = 0; b < TOY_ACTIONS; b++) sum += chain[a * TOY_ACTIONS + b] = expf(1.5f * rng_normal(&rng));
        for (int b = 0; b < TOY_ACTIONS; b++) chain[a * TOY_ACTIONS + b] /= sum;
    }
    enum { B = 16, STEPS = 300 };
    int inputs[B * TOY_SEQ], targets[B * TOY_SEQ];
    AdamW opt;
    adamw_init(&opt, gpt_num_parameters(model), 3e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < B; b++) toy_sequence(&rng, chain, inputs + b * TOY_SEQ, targets + b * TOY_SEQ);
        gpt_train_step(model, &opt, inputs, targets, B, TOY_SEQ, lr_schedule(step, 20, STEPS, 3e-3f, 3e-4f), INFINITY, NULL);
    }
    adamw_free(&opt);
    return model;
}

static const int *toy_prompt(Task *task, int query, int *len) {
    (void)task; (void)query;
    *len = 3;
    return toy_x;
}

// Index of Z in enumerate_z order: all shorter Z first, then base-6 digits, first most significant.
static int toy_index(const int *z, int len) {
    int offset = 0, power = 1;
    for (int l = 0; l < len; l++) { offset += power; power *= TOY_ACTIONS; }
    int idx = 0;
    for (int k = 0; k < len; k++) idx = idx * TOY_ACTIONS + z[k];
    return offset + idx;
}

static void toy_log_reward(Task *task, Traj *const *t, int n) {
    ToyState *st = task->state;
    for (int i = 0; i < n; i++)
        for (int k = 0; k <= t[i]->nact; k++) t[i]->log_r[k] = st->log_r[toy_index(t[i]->tokens, k)];
}

// log p_base(Z ⊤ Y | X) of every Z: one batched forward of the rows X Z ⊤ Y.
static void toy_rewards(GPT *base, ToyState *st) {
    const int chunk = 128, T = 3 + TOY_MAX_LEN + 3;
    int *inputs = gfn_malloc(sizeof(int) * chunk * T), *targets = gfn_malloc(sizeof(int) * chunk * T);
    float *logprobs = gfn_malloc(sizeof(float) * chunk * T);
    for (int start = 0; start < st->count; start += chunk) {
        int m = st->count - start < chunk ? st->count - start : chunk;
        for (int i = 0; i < m; i++) {
            int *in = inputs + i * T, *tg = targets + i * T, n = 0, seq[16];
            for (int k = 0; k < 3; k++) seq[n++] = toy_x[k];
            for (int k = 0; k < st->len[start + i]; k++) seq[n++] = st->z[(start + i) * TOY_MAX_LEN + k];
            seq[n++] = TOY_TERM;
            seq[n++] = toy_y[0];
            seq[n++] = toy_y[1];
            for (int k = 0; k < T; k++) {
                in[k] = k < n ? seq[k] : TOY_TERM;
                tg[k] = (k >= 2 && k + 1 < n) ? seq[k + 1] : -1;   // predictions of Z ⊤ Y only
            }
        }
        gpt_forward(base, inputs, m, T);
        gpt_cross_entropy(base, targets, logprobs, NULL);
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int k = 0; k < T; k++) s += logprobs[i * T + k];
            st->log_r[start + i] = (float)s;
        }
    }
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < st->count; i++) if (st->log_r[i] > max) max = st->log_r[i];
    for (int i = 0; i < st->count; i++) sum += exp(st->log_r[i] - max);
    st->log_z = max + log(sum);
    free(inputs); free(targets); free(logprobs);
}

static int toy_setup(Task *task, const TaskOptions *opt, GfnError *err) {
    (void)err;
    task->base = toy_base_model(opt->seed ? opt->seed : 1);
    task->num_train = 1;
    task->num_test = 0;
    task->terminator = TOY_TERM;
    task->min_len = 0;
    task->max_len = TOY_MAX_LEN;
    task->allowed = gfn_calloc(TOY_V, 1);
    for (int v = 0; v < TOY_ACTIONS; v++) task->allowed[v] = 1;
    task->allowed[TOY_TERM] = 1;
    ToyState *st = gfn_calloc(1, sizeof(ToyState));
    st->count = enumerate_z(task, NULL, NULL, 0);
    st->z = gfn_calloc((size_t)st->count * TOY_MAX_LEN, sizeof(int));
    st->len = gfn_malloc(sizeof(int) * (size_t)st->count);
    st->log_r = gfn_malloc(sizeof(float) * (size_t)st->count);
    enumerate_z(task, st->z, st->len, st->count);
    task->state = st;
    toy_rewards(task->base, st);
    return 0;
}

static void toy_cleanup(Task *task) {
    ToyState *st = task->state;
    if (st) { free(st->z); free(st->len); free(st->log_r); free(st); }
    task->state = NULL;
    free(task->allowed);
    task->allowed = NULL;
    if (task->base) gpt_free(task->base);
    task->base = NULL;
}

// Σ |q − p| and KL(p ‖ q) of a model's exact distribution against the exact posterior.
static void toy_distance(Task *task, GPT *model, double *l1, double *kl) {
    ToyState *st = task->state;
    float *log_q = gfn_malloc(sizeof(float) * (size_t)st->count);
    policy_exact_logq(model, task, 0, st->z, st->len, st->count, log_q);
    *l1 = 0; *kl = 0;
    for (int i = 0; i < st->count; i++) {
        double log_p = st->log_r[i] - st->log_z, p = exp(log_p), q = exp(log_q[i]);
        *l1 += fabs(q - p);
        *kl += p * (log_p - log_q[i]);
    }
    free(log_q);
}

static void toy_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)seed;
    ToyState *st = task->state;
    double l1, kl, l1_base, kl_base;
    toy_distance(task, policy, &l1, &kl);
    toy_distance(task, task->base, &l1_base, &kl_base);
    fprintf(out, "l1 %.6f\nkl %.6f\nl1_base %.6f\nkl_base %.6f\nlogz_true %.6f\n", l1, kl, l1_base, kl_base, st->log_z);
    if (log_z) fprintf(out, "logz_learned %.6f\n", log_z[0]);
}

// Given Z for SFT: an exact sample of the posterior (inverse CDF over the enumeration).
static void toy_demonstration(Task *task, int query, Traj *out, Rng *rng) {
    ToyState *st = task->state;
    double u = rng_uniform(rng);
    int i = 0;
    for (; i < st->count - 1; i++) if ((u -= exp(st->log_r[i] - st->log_z)) < 0) break;
    out->query = query;
    out->ntok = out->nact = st->len[i];
    memcpy(out->tokens, st->z + (size_t)i * TOY_MAX_LEN, sizeof(int) * (size_t)out->ntok);
    memset(out->forced, 0, (size_t)out->ntok);
}

static void toy_render(Task *task, const Traj *t, char *buf, size_t cap) {
    (void)task;
    size_t n = 0;
    for (int k = 0; k < t->ntok && n + 2 < cap; k++) buf[n++] = (char)('a' + t->tokens[k]);
    if (n + 1 < cap) buf[n++] = '.';
    buf[n < cap ? n : cap - 1] = 0;
}

Task task_toy = {
    .name = "toy",
    .help = "exact posterior p(Z | X, Y) of a tiny pretrained GPT; Z over 6 tokens, up to 4 long",
    .setup = toy_setup,
    .cleanup = toy_cleanup,
    .prompt = toy_prompt,
    .log_reward = toy_log_reward,
    .concurrent_reward = 1,   // the reward reads a table
    .evaluate = toy_evaluate,
    .demonstration = toy_demonstration,
    .render = toy_render,
};
