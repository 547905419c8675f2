// tests/test_gfn.c — the GFlowNet layer: every objective against finite differences, the
// identities between objectives, the replay buffer; then (with the model) the full gradient chain
// objective -> masked log-softmax -> LoRA, the exact policy distribution, forced tokens, and a
// short `toy` run that must cut the L1 distance to the exact posterior.
#include "test.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// A random batch of trajectories with lengths 0..maxn (per-state arrays of stride maxn + 1).
typedef struct {
    int n, stride;
    int len[8], group[8];
    float lf[8 * 8], lt[8 * 8], lr[8 * 8];
} RandomBatch;

static void random_batch(RandomBatch *rb, int n, int maxn, int groups, Rng *rng) {
    rb->n = n;
    rb->stride = maxn + 1;
    for (int r = 0; r < n; r++) {
        rb->len[r] = r == 0 ? 0 : (r == 1 ? maxn : 1 + rng_below(rng, maxn));
        rb->group[r] = r % groups;
        for (int k = 0; k < rb->stride; k++) {
            rb->lf[r * rb->stride + k] = -3.0f * rng_uniform(rng);
            rb->lt[r * rb->stride + k] = -4.0f * rng_uniform(rng);
            rb->lr[r * rb->stride + k] = -5.0f * rng_uniform(rng);
        }
    }
}

static TrajBatch view(RandomBatch *rb) {
    TrajBatch b = { rb->n, rb->stride, rb->len, rb->lf, rb->lt, rb->lr, rb->group, 0 };
    return b;
}

// The *_ROOT objectives: minimum length 2, so states 0 and 1 cannot stop and state 0 reads the
// learned root flow log_z[group] (the random batch has rows of 0, 1 and more actions).
enum { OBJ_TB, OBJ_SUBTB, OBJ_SUBTB_HALF, OBJ_DB, OBJ_SUBTB_ROOT, OBJ_SUBTB_HALF_ROOT, OBJ_DB_ROOT,
       OBJ_VARGRAD, OBJ_SFT, OBJ_REINFORCE, OBJ_COUNT };
static const char *obj_names[OBJ_COUNT] = { "tb", "subtb(1)", "subtb(0.5)", "db", "subtb(1), min 2", "subtb(0.5), min 2",
                                            "db, min 2", "vargrad", "sft", "reinforce" };
static int obj_learns_log_z(int obj) { return obj == OBJ_TB || obj == OBJ_SUBTB_ROOT || obj == OBJ_SUBTB_HALF_ROOT || obj == OBJ_DB_ROOT; }

static float eval_obj(int obj, RandomBatch *rb, float *log_z, float *dlf, float *dlt, float *dz) {
    TrajBatch b = view(rb);
    if (dz) memset(dz, 0, 3 * sizeof(float));
    if (obj == OBJ_SUBTB_ROOT || obj == OBJ_SUBTB_HALF_ROOT || obj == OBJ_DB_ROOT) b.min_len = 2;
    switch (obj) {
    case OBJ_TB: return loss_tb(&b, log_z, dlf, dlt, dz);
    case OBJ_SUBTB: case OBJ_SUBTB_ROOT: return loss_subtb(&b, 1.0f, log_z, dlf, dlt, dz);
    case OBJ_SUBTB_HALF: case OBJ_SUBTB_HALF_ROOT: return loss_subtb(&b, 0.5f, log_z, dlf, dlt, dz);
    case OBJ_DB: case OBJ_DB_ROOT: return loss_db(&b, log_z, dlf, dlt, dz);
    case OBJ_VARGRAD: return loss_vargrad(&b, 3, dlf, dlt, NULL);
    case OBJ_SFT: return loss_sft(&b, dlf, dlt);
    default: return loss_reinforce(&b, dlf, dlt);
    }
}

// Every objective is at most quadratic in its inputs, so a central difference is exact up to
// rounding; VarGrad's stop-gradient gradient equals the total derivative (its residuals of one
// group sum to zero), so it is checked against finite differences of the full function too.
static void test_objectives_fd(void) {
    Rng rng;
    rng_seed(&rng, 7);
    RandomBatch rb;
    random_batch(&rb, 6, 5, 3, &rng);
    float log_z[3] = { 0.3f, -1.2f, 2.0f };
    float dlf[64], dlt[64], dz[3], scratch1[64], scratch2[64];
    const float h = 0.05f;   // exact for quadratics; large h keeps float rounding small
    for (int obj = 0; obj < OBJ_COUNT; obj++) {
        eval_obj(obj, &rb, log_z, dlf, dlt, dz);
        double worst = 0;
        for (int which = 0; which < 3; which++) {
            for (int r = 0; r < rb.n; r++) {
                int count = which == 0 ? rb.len[r] : rb.len[r] + 1;
                for (int k = 0; k < count; k++) {
                    float *x = which == 0 ? &rb.lf[r * rb.stride + k] : which == 1 ? &rb.lt[r * rb.stride + k] : &rb.lr[r * rb.stride + k];
                    float saved = *x;
                    *x = saved + h;
                    double up = eval_obj(obj, &rb, log_z, scratch1, scratch2, NULL);
                    *x = saved - h;
                    double down = eval_obj(obj, &rb, log_z, scratch1, scratch2, NULL);
                    *x = saved;
                    double fd = (up - down) / (2 * h);
                    if (which == 2) continue;   // rewards are constants: no gradient is returned
                    double an = which == 0 ? dlf[r * rb.stride + k] : dlt[r * rb.stride + k];
                    double err = fabs(fd - an) / (1e-2 + fabs(fd));
                    if (err > worst) worst = err;
                }
            }
        }
        if (obj_learns_log_z(obj)) {
            for (int g = 0; g < 3; g++) {
                float saved = log_z[g];
                log_z[g] = saved + h;
                double up = eval_obj(obj, &rb, log_z, scratch1, scratch2, NULL);
                log_z[g] = saved - h;
                double down = eval_obj(obj, &rb, log_z, scratch1, scratch2, NULL);
                log_z[g] = saved;
                double err = fabs((up - down) / (2 * h) - dz[g]) / (1e-2 + fabs(dz[g]));
                if (err > worst) worst = err;
            }
        }
        CHECK(worst < 2e-3, "%s: gradient vs finite differences, worst relative error %g", obj_names[obj], worst);
    }
    // Gradients exist only where the inputs are used (lf beyond len, lt beyond len are zero).
    eval_obj(OBJ_SUBTB, &rb, log_z, dlf, dlt, dz);
    int clean = 1;
    for (int r = 0; r < rb.n; r++)
        for (int k = 0; k < rb.stride; k++) {
            if (k >= rb.len[r] && dlf[r * rb.stride + k] != 0) clean = 0;
            if (k > rb.len[r] && dlt[r * rb.stride + k] != 0) clean = 0;
        }
    CHECK(clean, "gradient outside the trajectories");
}

static void test_objective_identities(void) {
    Rng rng;
    rng_seed(&rng, 11);
    RandomBatch rb;
    random_batch(&rb, 6, 4, 6, &rng);
    for (int r = 0; r < rb.n; r++) rb.len[r] = 4;   // equal lengths
    TrajBatch b = view(&rb);
    float dlf[64], dlt[64], dlf2[64], dlt2[64], dz[6];
    // (a) SubTB restricted to whole trajectories is TB with log Z = lr_0 − lt_0 (log F(s_0)):
    // with λ huge, the (0, n) pair's weight λ^(n−1) dominates every shorter pair.
    float log_z[6];
    for (int r = 0; r < rb.n; r++) { rb.group[r] = r; log_z[r] = rb.lr[r * rb.stride] - rb.lt[r * rb.stride]; }
    float tb = loss_tb(&b, log_z, dlf, dlt, dz);
    float subtb = loss_subtb(&b, 1e6f, NULL, dlf2, dlt2, NULL);
    CHECK(fabsf(tb - subtb) < 1e-4f * (1 + fabsf(tb)), "SubTB(λ→∞, whole trajectories) %g != TB %g", subtb, tb);
    // Running maxima use larger() or `if (d > worst)`, never fmax: see larger() in tests/test.h.
    double worst = 0;
    for (int r = 0; r < rb.n; r++)
        for (int k = 0; k < 4; k++) {
            double d = fabs(dlf[r * rb.stride + k] - dlf2[r * rb.stride + k]);
            if (d > worst) worst = d;
        }
    CHECK(worst < 1e-4, "SubTB(λ→∞) lf gradient differs from TB's by %g", worst);
    // The same with a minimum length: the learned root flow log F(s_0) is TB's log Z, and the
    // gradients of the two coincide (lt_0 then has none: state 0 cannot stop).
    float dz2[6] = { 0 };
    for (int r = 0; r < rb.n; r++) log_z[r] = -0.4f + 0.3f * r;
    b.min_len = 2;
    memset(dz, 0, sizeof dz);
    tb = loss_tb(&b, log_z, dlf, dlt, dz);
    subtb = loss_subtb(&b, 1e6f, log_z, dlf2, dlt2, dz2);
    worst = 0;
    for (int r = 0; r < rb.n; r++) {
        worst = larger(worst, fabs(dz[r] - dz2[r]));
        for (int k = 0; k < 4; k++) worst = larger(worst, fabs(dlf[r * rb.stride + k] - dlf2[r * rb.stride + k]));
    }
    CHECK(fabsf(tb - subtb) < 1e-4f * (1 + fabsf(tb)) && worst < 1e-4, "SubTB(λ→∞, min 2) %g vs TB %g, gradients differ by %g", subtb, tb, worst);
    b.min_len = 0;
    // Exactly, on one-action trajectories, the only pair is (0, 1).
    for (int r = 0; r < rb.n; r++) rb.len[r] = 1;
    for (int r = 0; r < rb.n; r++) log_z[r] = rb.lr[r * rb.stride] - rb.lt[r * rb.stride];
    tb = loss_tb(&b, log_z, dlf, dlt, dz);
    subtb = loss_subtb(&b, 1.0f, NULL, dlf2, dlt2, NULL);
    CHECK(fabsf(tb - subtb) < 1e-5f * (1 + fabsf(tb)), "one-action SubTB %g != TB %g", subtb, tb);
    // (b) SubTB with λ → 0 equals modified DB (an independent loop).
    random_batch(&rb, 6, 5, 3, &rng);
    b = view(&rb);
    float db = loss_db(&b, NULL, dlf, dlt, NULL);
    float sub0 = loss_subtb(&b, 1e-7f, NULL, dlf2, dlt2, NULL);
    CHECK(fabsf(db - sub0) < 1e-4f * (1 + fabsf(db)), "SubTB(λ→0) %g != DB %g", sub0, db);
    worst = 0;
    for (int i = 0; i < rb.n * rb.stride; i++) {
        double d = larger(fabs(dlf[i] - dlf2[i]), fabs(dlt[i] - dlt2[i]));
        if (d > worst) worst = d;
    }
    CHECK(worst < 1e-4, "SubTB(λ→0) gradients differ from DB's by %g", worst);
    // ... and with minimum length 1 (the root's transition (0, 1) reads the learned log F(s_0)).
    float f0[3] = { 0.5f, -2.0f, 1.0f }, df0[3] = { 0 }, df0_sub[3] = { 0 };
    b.min_len = 1;
    db = loss_db(&b, f0, dlf, dlt, df0);
    sub0 = loss_subtb(&b, 1e-7f, f0, dlf2, dlt2, df0_sub);
    worst = 0;
    for (int i = 0; i < rb.n * rb.stride; i++) worst = larger(worst, larger(fabs(dlf[i] - dlf2[i]), fabs(dlt[i] - dlt2[i])));
    for (int g = 0; g < 3; g++) worst = larger(worst, fabs(df0[g] - df0_sub[g]));
    CHECK(fabsf(db - sub0) < 1e-4f * (1 + fabsf(db)) && worst < 1e-4, "min 1: SubTB(λ→0) %g vs DB %g, gradients differ by %g", sub0, db, worst);
    b.min_len = 0;
    // (c) At the optimum (log F = lr − lt consistent with q) every residual is zero: build
    // lt_j so that lr_i + Σ lf + lt_j − lr_j − lt_i = 0 for all pairs, i.e. lt_j = lr_j − Σ_{k≤j} lf + c.
    for (int r = 0; r < rb.n; r++) {
        double c = 0.7, cum = 0;
        for (int j = 0; j <= rb.len[r]; j++) {
            if (j > 0) cum += rb.lf[r * rb.stride + j - 1];
            rb.lt[r * rb.stride + j] = (float)(rb.lr[r * rb.stride + j] - cum + c);
        }
    }
    CHECK(loss_subtb(&b, 1.0f, NULL, dlf, dlt, NULL) < 1e-9f, "SubTB not zero at a balanced flow");
    CHECK(loss_db(&b, NULL, dlf, dlt, NULL) < 1e-9f, "DB not zero at a balanced flow");
    // With minimum length 2, balance only involves the states from 2 on and the root flow, here
    // log F(s_0) = −c: the lt of states 0 and 1 (no flow there) are never read.
    for (int r = 0; r < rb.n; r++) { rb.lt[r * rb.stride] = 1e3f; rb.lt[r * rb.stride + 1] = -1e3f; }
    float root[3] = { -0.7f, -0.7f, -0.7f };
    b.min_len = 2;
    CHECK(loss_subtb(&b, 1.0f, root, dlf, dlt, NULL) < 1e-9f, "SubTB (min 2) not zero at a balanced flow");
    CHECK(loss_db(&b, root, dlf, dlt, NULL) < 1e-9f, "DB (min 2) not zero at a balanced flow");
}

static Traj *make_traj(int query, const int *tokens, int ntok, float log_r, int max_len) {
    Traj *t = traj_new(max_len);
    t->query = query;
    t->ntok = t->nact = ntok;
    memcpy(t->tokens, tokens, sizeof(int) * (size_t)ntok);
    t->log_r[ntok] = log_r;
    return t;
}

static void test_replay_buffer(void) {
    ReplayBuffer *rb = replay_new(2, 4, 6);
    int seq[6];
    float scores[10] = { -3, -1, -7, -0.5f, -2, -1, -9, -4, -0.1f, -6 };
    int added_dup = 0;
    for (int i = 0; i < 10; i++) {
        seq[0] = i; seq[1] = 100 + i;
        Traj *t = make_traj(0, seq, 2, scores[i], 6);
        int added = replay_add(rb, t);
        added_dup += replay_add(rb, t);
        // the same tokens again, even with a better score, are a duplicate while kept
        t->log_r[2] += 10;
        if (added) added_dup += replay_add(rb, t);
        traj_free(t);
    }
    CHECK(added_dup == 0, "duplicates were added %d times", added_dup);
    CHECK(rb->count[0] == 4 && rb->count[1] == 0, "counts %d %d", rb->count[0], rb->count[1]);
    // the top 4 of scores: -0.1 (8), -0.5 (3), -1 (5), -1 (1), in this order (newest first among ties)
    int expect[4] = { 8, 3, 5, 1 }, ok = 1;
    for (int i = 0; i < 4; i++) ok &= rb->items[i]->tokens[0] == expect[i] && rb->items[i]->log_r[2] == scores[expect[i]];
    CHECK(ok, "top-4 kept wrong: %d %d %d %d", rb->items[0]->tokens[0], rb->items[1]->tokens[0], rb->items[2]->tokens[0], rb->items[3]->tokens[0]);
    int distinct = 1;
    for (int i = 0; i < 4; i++) for (int j = i + 1; j < 4; j++) distinct &= rb->items[i]->tokens[0] != rb->items[j]->tokens[0];
    CHECK(distinct, "duplicate kept");
    // Sampling ∝ softmax(log R): compare frequencies with the exact probabilities.
    Rng rng;
    rng_seed(&rng, 3);
    int hits[10] = { 0 };
    const int draws = 200000;
    for (int i = 0; i < draws; i++) hits[replay_sample(rb, 0, &rng)->tokens[0]]++;
    double z = 0;
    for (int i = 0; i < 4; i++) z += exp(scores[expect[i]]);
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        double p = exp(scores[expect[i]]) / z, f = (double)hits[expect[i]] / draws;
        worst = larger(worst, fabs(f - p) / sqrt(p * (1 - p) / draws));
    }
    CHECK(worst < 5, "replay sampling off softmax(log R) by %g standard errors", worst);
    CHECK(replay_sample(rb, 1, &rng) == NULL, "empty query sampled");
    replay_free(rb);
    // A full buffer whose Z all tie (rng: every valid answer has log R = 0) still takes a new Z,
    // evicting the oldest, so ten equal answers through a buffer of 4 leave the last four.
    rb = replay_new(1, 4, 6);
    int took = 0;
    for (int i = 0; i < 10; i++) {
        seq[0] = i;
        Traj *t = make_traj(0, seq, 1, 0.0f, 6);
        took += replay_add(rb, t);
        traj_free(t);
    }
    int last_four = rb->count[0] == 4;
    for (int i = 0; i < 4 && last_four; i++) last_four = rb->items[i]->tokens[0] == 9 - i;
    CHECK(took == 10 && last_four, "equal log R: %d of 10 taken, kept %d %d %d %d", took,
          rb->items[0]->tokens[0], rb->items[1]->tokens[0], rb->items[2]->tokens[0], rb->items[3]->tokens[0]);
    replay_free(rb);
}

// ----------------------------------------------------------------------------------------------
// A small task for the model-level tests: a random tiny GPT over 12 tokens, two queries with
// prompts of different lengths, actions 0..5, ⊤ = 11, 1..4 tokens; writing 3 calls a "tool" that
// inserts the tokens 7 8 (context, not actions). The reward is an arbitrary function of the prefix.
enum { TT_V = 12, TT_TERM = 11 };
// Query 2's prompt is a prefix of query 0's; query 1 shares no first token with either.
static const int tt_prompts[3][3] = { { 9, 10, 6 }, { 10, 9, 0 }, { 9, 10, 0 } };
static const int tt_prompt_len[3] = { 3, 2, 2 };

static const int *tt_prompt(Task *task, int query, int *len) {
    (void)task;
    *len = tt_prompt_len[query];
    return tt_prompts[query];
}

static int tt_tool(Task *task, int query, const int *tokens, int ntok, int *forced, int max_forced) {
    (void)task; (void)query;
    if (tokens[ntok - 1] != 3) return 0;
    int n = 0;
    if (n < max_forced) forced[n++] = 7;
    if (n < max_forced) forced[n++] = 8;
    return n;
}

static void tt_log_reward(Task *task, Traj *const *t, int n) {
    (void)task;
    for (int i = 0; i < n; i++) {
        double acc = 0.3 * t[i]->query;
        int k = 0;
        t[i]->log_r[0] = (float)acc;
        for (int j = 0; j < t[i]->ntok; j++) {
            acc += 0.37 * t[i]->tokens[j] - 0.5 * (j % 2);
            if (!t[i]->forced[j] && (j + 1 == t[i]->ntok || !t[i]->forced[j + 1])) t[i]->log_r[++k] = (float)(-acc);
            else if (t[i]->forced[j] && (j + 1 == t[i]->ntok || !t[i]->forced[j + 1])) t[i]->log_r[k] = (float)(-acc);
        }
    }
}

static unsigned char tt_allowed[TT_V] = { 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1 };

static Task tt_task(GPT *base, int with_tool, int min_len, int max_len) {
    Task task = { 0 };
    task.name = "test";
    task.base = base;
    task.num_train = 2;
    task.terminator = TT_TERM;
    task.min_len = min_len;
    task.max_len = max_len;
    task.allowed = tt_allowed;
    task.prompt = tt_prompt;
    task.tool = with_tool ? tt_tool : NULL;
    task.log_reward = tt_log_reward;
    return task;
}

static GPT *tt_model(void) {
    GPTConfig config = { TT_V, 16, 2, 2, 16 };
    GPT *model = gpt_new_random(config, 5);
    // Larger weights than GPT-2's init so the distribution is far from uniform.
    float *p = gpt_params_memory(model);
    for (size_t i = 0; i < gpt_num_parameters(model); i++) p[i] *= 8.0f;
    GPTParams *w = gpt_params(model);
    for (int i = 0; i < 2 * 16; i++) { w->ln1w[i] = 1; w->ln2w[i] = 1; }
    for (int i = 0; i < 16; i++) w->lnfw[i] = 1;
    return model;
}

// A rank-2 LoRA on every target with random (non-zero) weights of scale `scale`, so the policy
// differs from the base in both the plain and the adapted paths.
static LoRA *tt_random_lora(GPT *policy, float scale, Rng *rng) {
    int targeted[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    LoRA *lora = gpt_lora_attach(policy, 2, 4.0f, 0, targeted, 9);
    for (size_t i = 0; i < lora->num_parameters; i++) lora->memory[i] = scale * rng_normal(rng);
    return lora;
}

// Loss of a fixed batch as a function of the LoRA parameters (teacher forcing only).
// loss_kind 0: SubTB with the learned root flow (⊤ masked before the minimum); 1: TB with ⊤ kept
// there (the floor's log q).
static double chain_loss(GPT *policy, Task *task, Traj **t, int n, int loss_kind, float *dlf, float *dlt, int backward) {
    int stride = task->max_len + 1, T, mask_short = loss_kind == 0;
    float lf[64], lt[64], lr[64], log_z[2] = { 0.4f, -0.3f };
    int len[8], group[8];
    float *logits = policy_logprobs(policy, task, t, n, stride, mask_short, lf, lt, &T);
    for (int i = 0; i < n; i++) {
        len[i] = t[i]->nact;
        group[i] = t[i]->query;
        for (int k = 0; k <= t[i]->nact; k++) lr[i * stride + k] = k < task->min_len ? -99.0f : t[i]->log_r[k];
    }
    TrajBatch b = { n, stride, len, lf, lt, lr, group, mask_short ? task->min_len : 0 };
    double loss = loss_kind == 0 ? loss_subtb(&b, 1.0f, log_z, dlf, dlt, NULL) : loss_tb(&b, log_z, dlf, dlt, NULL);
    if (backward) policy_backward(policy, task, t, n, stride, mask_short, logits, T, dlf, dlt);
    return loss;
}

// The full chain objective -> masked log-softmax -> model -> LoRA against finite differences,
// on sampled trajectories that include forced tool tokens and maximum-length ones, with a
// minimum length of 2: SubTB with ⊤ masked below it and the root flow, TB with ⊤ kept.
static void test_chain_fd(void) {
    GPT *policy = tt_model();
    Task task = tt_task(policy, 1, 2, 5);
    Rng rng;
    rng_seed(&rng, 21);
    LoRA *lora = tt_random_lora(policy, 0.3f, &rng);
    enum { N = 6 };
    Traj *t[N];
    int queries[N] = { 0, 1, 0, 1, 0, 1 };
    for (int i = 0; i < N; i++) t[i] = traj_new(task.max_len);
    SamplerConfig sc = { 1.5f, 0, 1.0f, 0 };
    sample_trajectories(policy, &task, queries, t, N, &sc, &rng);
    // make sure a tool call and a maximum-length trajectory are in the batch
    int tool_seq[5] = { 1, 3, 7, 8, 2 }, tool_forced[5] = { 0, 0, 1, 1, 0 };
    t[0]->ntok = 5; t[0]->nact = 3;
    for (int j = 0; j < 5; j++) { t[0]->tokens[j] = tool_seq[j]; t[0]->forced[j] = (unsigned char)tool_forced[j]; }
    t[1]->ntok = t[1]->nact = 5;
    for (int j = 0; j < 5; j++) { t[1]->tokens[j] = j; t[1]->forced[j] = 0; }
    tt_log_reward(&task, t, N);
    float dlf[64], dlt[64];
    for (int loss_kind = 0; loss_kind < 2; loss_kind++) {
        gpt_zero_grad(policy);
        chain_loss(policy, &task, t, N, loss_kind, dlf, dlt, 1);
        // The model runs in float: judge each error against the gradient's scale (max |grad|).
        double max_grad = 0, fd[24], an[24];
        for (size_t i = 0; i < lora->num_parameters; i++)   // not fmax: see larger() in tests/test.h
            if (fabs(lora->grad_memory[i]) > max_grad) max_grad = fabs(lora->grad_memory[i]);
        for (int probe = 0; probe < 24; probe++) {
            size_t i = (size_t)rng_below(&rng, (int)lora->num_parameters);
            float saved = lora->memory[i], h = 1e-2f;
            lora->memory[i] = saved + h;
            double up = chain_loss(policy, &task, t, N, loss_kind, dlf, dlt, 0);
            lora->memory[i] = saved - h;
            double down = chain_loss(policy, &task, t, N, loss_kind, dlf, dlt, 0);
            lora->memory[i] = saved;
            fd[probe] = (up - down) / (2 * h);
            an[probe] = lora->grad_memory[i];
            if (getenv("GFN_TEST_VERBOSE")) printf("   %zu fd %.6g an %.6g\n", i, fd[probe], an[probe]);
        }
        double worst = 0;
        for (int probe = 0; probe < 24; probe++)
            worst = larger(worst, fabs(fd[probe] - an[probe]) / (1e-2 * max_grad + fabs(fd[probe])));
        CHECK(worst < 1e-2 && max_grad > 1e-3, "%s chain: LoRA gradient vs finite differences, worst relative error %g (max |grad| %g)",
              loss_kind ? "TB" : "SubTB", worst, max_grad);
    }
    for (int i = 0; i < N; i++) traj_free(t[i]);
    gpt_free(policy);
}

// Forced tokens are context: they appear in the trajectory but give no log q term. Checked
// against log-probabilities summed by hand from one plain forward of the same row.
static void test_forced_tokens(void) {
    GPT *policy = tt_model();
    Task task = tt_task(policy, 1, 0, 6);
    Rng rng;
    rng_seed(&rng, 4);
    enum { N = 64 };
    Traj *t[N];
    int queries[N];
    for (int i = 0; i < N; i++) { t[i] = traj_new(task.max_len); queries[i] = i % 2; }
    SamplerConfig sc = { 2.0f, 0, 1.0f, 0 };
    sample_trajectories(policy, &task, queries, t, N, &sc, &rng);
    int calls = 0, consistent = 1;
    for (int i = 0; i < N; i++) {
        int actions = 0;
        for (int j = 0; j < t[i]->ntok; j++) {
            if (!t[i]->forced[j]) actions++;
            if (!t[i]->forced[j] && t[i]->tokens[j] == 3) {
                calls++;
                // 7 8 follow (or as much of it as fits before the maximum)
                if (j + 1 < t[i]->ntok && (t[i]->tokens[j + 1] != 7 || !t[i]->forced[j + 1])) consistent = 0;
                if (j + 2 < t[i]->ntok && (t[i]->tokens[j + 2] != 8 || !t[i]->forced[j + 2])) consistent = 0;
            }
        }
        if (actions != t[i]->nact) consistent = 0;
    }
    CHECK(calls > 5 && consistent, "tool calls %d, forced tokens consistent %d", calls, consistent);
    // log q by hand: Σ over action tokens of log softmax over allowed (⊤ included), + log q(⊤).
    int stride = task.max_len + 1, T;
    float *lf = gfn_malloc(sizeof(float) * N * stride), *lt = gfn_malloc(sizeof(float) * N * stride);
    policy_logprobs(policy, &task, t, N, stride, 1, lf, lt, &T);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        int row[16], plen;
        const int *prompt = tt_prompt(&task, t[i]->query, &plen);
        int n = 0;
        for (int j = 0; j < plen; j++) row[n++] = prompt[j];
        for (int j = 0; j < t[i]->ntok; j++) row[n++] = t[i]->tokens[j];
        float *logits = gpt_forward(policy, row, 1, n);
        double by_hand = 0, ours = 0;
        for (int p = plen - 1; p < n; p++) {
            // the token read at position p is row[p + 1] (or ⊤ at the end)
            int next = p + 1 < n ? row[p + 1] : TT_TERM;
            int is_forced = p + 1 < n && t[i]->forced[p + 1 - plen];
            int next_forced = p + 2 < n && t[i]->forced[p + 2 - plen];
            if (is_forced) continue;              // no log q for a forced token
            if (next != TT_TERM && next_forced) {} // action before a tool call: counted below
            float mx = -INFINITY;
            double z = 0;
            for (int v = 0; v < TT_V; v++) if (tt_allowed[v] && logits[p * TT_V + v] > mx) mx = logits[p * TT_V + v];
            for (int v = 0; v < TT_V; v++) if (tt_allowed[v]) z += exp(logits[p * TT_V + v] - mx);
            if (p + 1 - plen >= task.max_len) continue;   // ⊤ forced at the maximum: log 1
            by_hand += logits[p * TT_V + next] - mx - log(z);
        }
        for (int k = 0; k < t[i]->nact; k++) ours += lf[i * stride + k];
        ours += lt[i * stride + t[i]->nact];
        worst = larger(worst, fabs(ours - by_hand));
    }
    CHECK(worst < 1e-4, "log q(Z ⊤) with forced tokens differs from the hand sum by %g", worst);
    free(lf); free(lt);
    for (int i = 0; i < N; i++) traj_free(t[i]);
    gpt_free(policy);
}

// The exact distribution of the sampler sums to 1, and the batched KV-cache sampler draws from it.
static void test_exact_distribution(void) {
    GPT *policy = tt_model();
    Task task = tt_task(policy, 0, 1, 3);
    Rng init;
    rng_seed(&init, 8);
    tt_random_lora(policy, 0.5f, &init);   // with a non-zero LoRA in both paths
    int count = enumerate_z(&task, NULL, NULL, 0);
    CHECK(count == 6 + 36 + 216, "enumerated %d sequences", count);
    int *z = gfn_malloc(sizeof(int) * (size_t)count * task.max_len), *len = gfn_malloc(sizeof(int) * (size_t)count);
    enumerate_z(&task, z, len, count);
    float *log_q = gfn_malloc(sizeof(float) * (size_t)count);
    // Each query sampled in batches shared with another one, so that the sampler's common-prefix
    // prefill is exercised: 0 with 2 (two tokens shared, 0 has one more), 1 with 0 (none shared),
    // 2 with 0 (2's whole prompt shared).
    static const int partner[3] = { 2, 0, 0 };
    for (int query = 0; query < 3; query++) {
        policy_exact_logq(policy, &task, query, z, len, count, log_q);
        double total = 0;
        for (int i = 0; i < count; i++) total += exp(log_q[i]);
        CHECK(fabs(total - 1) < 1e-4, "query %d: exact q sums to %.7f", query, total);
        // Sample and compare frequencies (index by the same base-6 order as enumerate_z).
        enum { N = 50, ROUNDS = 400 };
        Traj *t[N];
        int queries[N];
        for (int i = 0; i < N; i++) { t[i] = traj_new(task.max_len); queries[i] = i % 2 ? partner[query] : query; }
        double *freq = gfn_calloc((size_t)count, sizeof(double));
        Rng rng;
        rng_seed(&rng, 77 + query);
        SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
        for (int r = 0; r < ROUNDS; r++) {
            sample_trajectories(policy, &task, queries, t, N, &sc, &rng);
            for (int i = 0; i < N; i += 2) {
                int offset = 0, power = 6, idx = 0;
                for (int l = 1; l < t[i]->nact; l++) { offset += power; power *= 6; }
                for (int k = 0; k < t[i]->nact; k++) idx = idx * 6 + t[i]->tokens[k];
                freq[offset + idx] += 2.0 / (N * ROUNDS);
            }
        }
        double l1 = 0;
        for (int i = 0; i < count; i++) l1 += fabs(freq[i] - exp(log_q[i]));
        // 10,000 samples over 258 outcomes: the expected L1 of an exact sampler is about 0.1
        CHECK(l1 < 0.2, "query %d: sampler vs exact distribution, L1 %g", query, l1);
        free(freq);
        for (int i = 0; i < N; i++) traj_free(t[i]);
    }
    free(z); free(len); free(log_q);
    gpt_free(policy);
}

// At the exact posterior of a task with a minimum length (2 here), modified SubTB with the
// learned root flow is zero, with log F(s_0) = log Σ_Z R(Z); the official floor (lr = −99 below
// the minimum, ⊤ kept in log q) is not. R is defined as e^c times the sampler's exact q (enumerated
// by policy_exact_logq), so that q is the posterior. Then R is tilted by the first token:
// the root flow's pairs see it, while the pairs from states ≥ 2 alone (dropping the short states
// without a root flow) stay balanced — that variant would never train the first tokens.
static void test_root_flow_exact(void) {
    GPT *policy = tt_model();
    Task task = tt_task(policy, 0, 2, 3);
    Rng rng;
    rng_seed(&rng, 31);
    tt_random_lora(policy, 0.5f, &rng);
    int count = enumerate_z(&task, NULL, NULL, 0);   // 36 of length 2, then 216 of length 3
    int *z = gfn_malloc(sizeof(int) * (size_t)count * task.max_len), *zlen = gfn_malloc(sizeof(int) * (size_t)count);
    enumerate_z(&task, z, zlen, count);
    float *log_q = gfn_malloc(sizeof(float) * (size_t)count);
    policy_exact_logq(policy, &task, 0, z, zlen, count, log_q);
    enum { N = 51, STRIDE = 4 };   // every 5th Z: both lengths
    const float c = 1.3f;          // log Σ_Z R(Z)
    Traj *t[N];
    for (int r = 0; r < N; r++) {
        int e = 5 * r, *zz = z + (size_t)e * task.max_len;
        t[r] = traj_new(task.max_len);
        t[r]->query = 0;
        t[r]->ntok = t[r]->nact = zlen[e];
        for (int k = 0; k < zlen[e]; k++) { t[r]->tokens[k] = zz[k]; t[r]->forced[k] = 0; }
        t[r]->log_r[0] = t[r]->log_r[1] = 0;   // no reward below the minimum
        t[r]->log_r[2] = c + log_q[zz[0] * 6 + zz[1]];          // the prefix z_1 z_2 ⊤
        if (zlen[e] == 3) t[r]->log_r[3] = c + log_q[e];
    }
    float lf[N * STRIDE], lt[N * STRIDE], lr[N * STRIDE], dlf[N * STRIDE], dlt[N * STRIDE];
    int len[N], group[N], T;
    for (int tilt = 0; tilt < 2; tilt++) {
        for (int r = 0; r < N; r++) {
            len[r] = t[r]->nact;
            group[r] = 0;
            for (int k = 0; k <= t[r]->nact; k++) lr[r * STRIDE + k] = t[r]->log_r[k] + (k >= 2 ? 0.5f * tilt * t[r]->tokens[0] : 0);
        }
        float log_f0 = c, d_log_f0 = 0;
        policy_logprobs(policy, &task, t, N, STRIDE, 1, lf, lt, &T);
        TrajBatch b = { N, STRIDE, len, lf, lt, lr, group, 2 };
        float learned = loss_subtb(&b, 1.0f, &log_f0, dlf, dlt, &d_log_f0);
        // the pairs (i ≥ 2, j), by hand
        double from_long = 0;
        for (int r = 0; r < N; r++)
            if (len[r] == 3) {
                double d = lr[r * STRIDE + 2] - lt[r * STRIDE + 2] + lf[r * STRIDE + 2] + lt[r * STRIDE + 3] - lr[r * STRIDE + 3];
                from_long += d * d;
            }
        if (!tilt) {
            CHECK(learned < 1e-8f && fabsf(d_log_f0) < 1e-4f, "exact posterior: SubTB with the root flow %g (want ~0), d log F(s_0) %g",
                  learned, d_log_f0);
            // --short-states batch: the batch's own estimate of the root flow is log Σ R here.
            float estimate = 0;
            batch_log_z(&b, &estimate, NULL);
            CHECK(fabsf(estimate - c) < 1e-4f && loss_subtb(&b, 1.0f, &estimate, dlf, dlt, NULL) < 1e-8f,
                  "exact posterior: the batch's root flow %.6f, want log sum R = %.6f", estimate, c);
            for (int r = 0; r < N; r++)
                for (int k = 0; k <= t[r]->nact; k++) lr[r * STRIDE + k] = k < 2 ? -99.0f : t[r]->log_r[k];
            policy_logprobs(policy, &task, t, N, STRIDE, 0, lf, lt, &T);
            b.min_len = 0;
            float floor_loss = loss_subtb(&b, 1.0f, NULL, dlf, dlt, NULL);
            CHECK(floor_loss > 100, "exact posterior: the official floor's SubTB %g (want far from 0)", floor_loss);
            printf("   exact posterior, min length 2: SubTB %.3g with the learned root flow, %.4g with the -99 floor\n", learned, floor_loss);
        } else {
            CHECK(learned > 1e-2f && from_long < 1e-8, "first token tilted: SubTB with the root flow %g (want > 0.01), pairs from "
                  "states >= 2 alone %g (want ~0)", learned, from_long);
        }
    }
    for (int r = 0; r < N; r++) traj_free(t[r]);
    free(z); free(zlen); free(log_q);
    gpt_free(policy);
}

// A short `toy` run must cut the L1 distance to the exact posterior at least 5x: as the task is,
// and with a minimum length of 2 (the exact posterior then over Z of 2-4 tokens), where SubTB's
// root flow is learned (--short-states learned) or each batch's estimate (batch).
static void toy_run(int min_len, ShortStates short_states) {
    Task *task = &task_toy;
    TaskOptions opt = { "", "", "", 1, -13.8f, 1, 0, NULL, NULL, 0, 0, 0 };
    GfnError err = { { 0 } };
    CHECK(task && task->setup(task, &opt, &err) == 0, "toy setup: %s", err.msg);
    if (!task) return;
    task->min_len = min_len;
    GPT *policy = copy_model(task->base);
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.steps = 200; cfg.batch = 32; cfg.samples_per_query = 32; cfg.lr = 1e-2f; cfg.warmup = 10;
    cfg.lora_rank = 8; cfg.lora_alpha = 16; cfg.quiet = 1; cfg.short_states = short_states;
    float log_z = 0;
    CHECK(gfn_train(task, policy, &cfg, &log_z, &err) == 0, "toy training: %s", err.msg);
    char buf[1024];
    FILE *f = tmpfile();
    task->evaluate(task, policy, NULL, f, 1);
    rewind(f);
    double l1 = -1, l1_base = -1, value;
    while (fscanf(f, "%1000s %lf", buf, &value) == 2) {
        if (!strcmp(buf, "l1")) l1 = value;
        if (!strcmp(buf, "l1_base")) l1_base = value;
    }
    fclose(f);
    CHECK(l1_base >= 0.5 && l1 >= 0 && l1 * 5 <= l1_base, "toy, min length %d, short states %s: L1 %g from the base's %g "
          "(want >= 5x cut, base >= 0.5)", min_len, short_state_names[short_states], l1, l1_base);
    if (min_len) printf("   toy, min length %d, SubTB, short states %s: L1 to the exact posterior %.4f (base %.4f)\n",
                        min_len, short_state_names[short_states], l1, l1_base);
    gpt_free(policy);
    task->cleanup(task);
}

static void test_toy_run(void) {
    toy_run(0, SHORT_LEARNED);
    toy_run(2, SHORT_LEARNED);
    toy_run(2, SHORT_BATCH);
}

// The rng task's reward: valid integers 0..100 (no leading zero, one optional leading space).
static void test_rng_reward(void) {
    Task *task = &task_rng;
    TaskOptions opt = { "", "", "", 1, -13.815511f, 1, 0, NULL, NULL, 0, 0, 0 };
    GfnError err = { { 0 } };
    if (!CHECK(task && task->setup(task, &opt, &err) == 0, "rng setup: %s", err.msg)) return;
    // symbols: digits are ids 0..9, ' ' is 11, 'a' is 12
    const int cases[][4] = { { 0 }, { 0, 0 }, { 1, 0, 0 }, { 1, 0, 1 }, { 11, 7 }, { 7, 12 }, { 9, 9 }, { 11, 11, 5 } };
    const int lens[] = { 1, 2, 3, 3, 2, 2, 2, 3 };
    const int valid[] = { 1, 0, 1, 0, 1, 0, 1, 0 };
    int ok = 1;
    Traj *t = traj_new(task->max_len);
    for (int c = 0; c < 8; c++) {
        t->query = 0;
        t->ntok = t->nact = lens[c];
        memcpy(t->tokens, cases[c], sizeof(int) * (size_t)lens[c]);
        memset(t->forced, 0, (size_t)lens[c]);
        task->log_reward(task, &t, 1);
        if ((t->log_r[lens[c]] == 0.0f) != valid[c]) { ok = 0; printf("   case %d: log R %g\n", c, t->log_r[lens[c]]); }
        if (t->log_r[0] == 0.0f) ok = 0;   // the empty answer is invalid
    }
    CHECK(ok, "rng rewards of the hand-made answers");
    // "100" has the valid prefixes "1" and "10"
    t->ntok = t->nact = 3;
    t->tokens[0] = 1; t->tokens[1] = 0; t->tokens[2] = 0;
    task->log_reward(task, &t, 1);
    CHECK(t->log_r[1] == 0 && t->log_r[2] == 0 && t->log_r[3] == 0, "prefix rewards of 100");
    traj_free(t);
    CHECK(task->num_demos == 0, "rng without --seed-answers has %d demonstrations", task->num_demos);
    task->cleanup(task);
    // --seed-answers: the 101 valid answers, each once, all with log R = 0, seed the replay buffer.
    opt.seed_answers = 1;
    if (!CHECK(task->setup(task, &opt, &err) == 0, "rng setup: %s", err.msg)) return;
    int seen[101] = { 0 }, good = task->num_demos == 101;
    for (int d = 0; d < task->num_demos && good; d++) {
        const Traj *a = task->demos[d];
        int v = 0;
        for (int k = 0; k < a->ntok; k++) v = 10 * v + a->tokens[k];
        good = a->nact == a->ntok && a->log_r[a->nact] == 0.0f && v <= 100 && !seen[v]++;
    }
    CHECK(good, "rng --seed-answers: %d demonstrations, not the 101 answers", task->num_demos);
    // The training run's buffer (default capacity 50) keeps all 101 of them, not answers 0..49.
    ReplayBuffer *rb = replay_seeded(task, 50);
    int kept[101] = { 0 }, all = rb->count[0] == 101;
    for (int i = 0; i < rb->count[0] && all; i++) {
        const Traj *a = rb->items[i];
        int v = 0;
        for (int k = 0; k < a->ntok; k++) v = 10 * v + a->tokens[k];
        all = v <= 100 && !kept[v]++;
    }
    CHECK(all, "rng --seed-answers: the replay buffer keeps %d of the 101 answers", rb->count[0]);
    replay_free(rb);
    task->cleanup(task);
}

// Largest |a − b| over n floats, relative to the largest |b| (0 when both are zero).
static double relative_diff(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) { diff = larger(diff, fabs(a[i] - b[i])); scale = larger(scale, fabs(b[i])); }
    return scale > 0 ? diff / scale : diff;
}

// Prefix sharing in the teacher-forced pass (gfn_prefix_sharing) against the unshared pass, on
// batches whose prompts share all (P = 2: the last prompt token stays with the rows), part
// (P = 1) or none (P = 0) of their tokens, with tool tokens and a maximum-length row: log q of
// every state bit for bit, and the gradient of SubTB with respect to every LoRA A and B and
// every base tensor (all trainable here) within 1e-5 of each tensor's largest entry (only the
// order of summation differs; test_model's finite-difference tolerance is 1e-2). Then two
// training steps, sharing on and off, leave LoRA parameters within 1e-6 of each other (not bit
// for bit: AdamW steps on gradients summed in another order).
static void test_prefix_share(void) {
    GPT *policy = tt_model();
    Task task = tt_task(policy, 1, 0, 5);
    Rng rng;
    rng_seed(&rng, 31);
    LoRA *lora = tt_random_lora(policy, 0.3f, &rng);
    gpt_freeze_all(policy, 0);
    enum { N = 6 };
    static const int batches[3][N] = { { 0, 0, 0, 0, 0, 0 }, { 0, 2, 0, 2, 2, 0 }, { 0, 1, 2, 1, 0, 1 } };
    static const char *const names[3] = { "all", "part", "none" };
    static const int shared[3] = { 2, 1, 0 };
    int stride = task.max_len + 1;
    size_t np = gpt_num_parameters(policy), nl = lora->num_parameters;
    for (int k = 0; k < 3; k++) {
        Traj *t[N];
        for (int i = 0; i < N; i++) t[i] = traj_new(task.max_len);
        SamplerConfig sc = { 1.5f, 0, 1.0f, 0 };
        sample_trajectories(policy, &task, batches[k], t, N, &sc, &rng);
        int tool_seq[5] = { 1, 3, 7, 8, 2 }, tool_forced[5] = { 0, 0, 1, 1, 0 };
        t[0]->ntok = 5; t[0]->nact = 3;
        for (int j = 0; j < 5; j++) { t[0]->tokens[j] = tool_seq[j]; t[0]->forced[j] = (unsigned char)tool_forced[j]; }
        t[1]->ntok = t[1]->nact = 5;
        for (int j = 0; j < 5; j++) { t[1]->tokens[j] = j; t[1]->forced[j] = 0; }
        tt_log_reward(&task, t, N);
        float lf[2][N * 6], lt[2][N * 6], dlf[N * 6], dlt[N * 6];
        float *base_grad[2], *lora_grad[2];
        int T[2];
        for (int share = 0; share < 2; share++) {
            gfn_prefix_sharing = share;
            gpt_zero_grad(policy);
            float *logits = policy_logprobs(policy, &task, t, N, stride, 1, lf[share], lt[share], &T[share]);
            float lr[N * 6];
            int len[N], group[N];
            for (int i = 0; i < N; i++) {
                len[i] = t[i]->nact;
                group[i] = t[i]->query;
                for (int s = 0; s <= t[i]->nact; s++) lr[i * stride + s] = t[i]->log_r[s];
            }
            TrajBatch b = { N, stride, len, lf[share], lt[share], lr, group, 0 };
            loss_subtb(&b, 1.0f, NULL, dlf, dlt, NULL);
            policy_backward(policy, &task, t, N, stride, 1, logits, T[share], dlf, dlt);
            base_grad[share] = malloc(sizeof(float) * np);
            lora_grad[share] = malloc(sizeof(float) * nl);
            memcpy(base_grad[share], gpt_grads_memory(policy), sizeof(float) * np);
            memcpy(lora_grad[share], lora->grad_memory, sizeof(float) * nl);
        }
        gfn_prefix_sharing = 1;
        CHECK(T[0] - T[1] == shared[k], "%s: %d prompt tokens shared, want %d", names[k], T[0] - T[1], shared[k]);
        int same = 1;
        for (int i = 0; i < N; i++)
            for (int s = 0; s <= t[i]->nact; s++) {
                same &= lt[0][i * stride + s] == lt[1][i * stride + s];
                if (s < t[i]->nact) same &= lf[0][i * stride + s] == lf[1][i * stride + s];
            }
        CHECK(same, "%s: log q with prefix sharing differs from the unshared pass", names[k]);
        for (int w = 0; w < GPT_NUM_TENSORS; w++) {
            float **params = (float **)gpt_params(policy);
            size_t off = (size_t)(params[w] - gpt_params_memory(policy));
            size_t len = (w + 1 < GPT_NUM_TENSORS ? (size_t)(params[w + 1] - gpt_params_memory(policy)) : np) - off;
            double d = relative_diff(base_grad[1] + off, base_grad[0] + off, len);
            CHECK(d <= 1e-5, "%s: gradient of %s differs by %.3g (relative)", names[k], gpt_tensor_names[w], d);
        }
        for (int w = 0; w < LORA_NUM_TARGETS; w++) {
            size_t a = (size_t)(lora->grad_A[w] - lora->grad_memory), b = (size_t)(lora->grad_B[w] - lora->grad_memory);
            size_t end = w + 1 < LORA_NUM_TARGETS ? (size_t)(lora->grad_A[w + 1] - lora->grad_memory) : nl;
            double da = relative_diff(lora_grad[1] + a, lora_grad[0] + a, b - a);
            double db = relative_diff(lora_grad[1] + b, lora_grad[0] + b, end - b);
            CHECK(da <= 1e-5 && db <= 1e-5, "%s: LoRA %s gradient differs: A %.3g, B %.3g", names[k], lora_target_names[w], da, db);
        }
        for (int share = 0; share < 2; share++) { free(base_grad[share]); free(lora_grad[share]); }
        for (int i = 0; i < N; i++) traj_free(t[i]);
    }
    // The sampler runs the prompts' tails after their common prefix as one forward with sharing
    // on, and as decode steps with it off: the same greedy trajectories (the logits differ at
    // most by rounding). Not compared when sampling: the decode-step path lets rows without a
    // tail draw their first token while the others still feed theirs, so the random draws go to
    // the rows in another order.
    for (int k = 1; k < 3; k++)
        for (int greedy = 1; greedy < 2; greedy++) {
            Traj *t[2][N];
            for (int share = 0; share < 2; share++) {
                gfn_prefix_sharing = share;
                Rng srng;
                rng_seed(&srng, 77);
                SamplerConfig sc = { greedy ? 0.0f : 1.5f, 0, 1.0f, 0 };
                for (int i = 0; i < N; i++) t[share][i] = traj_new(task.max_len);
                sample_trajectories(policy, &task, batches[k], t[share], N, &sc, &srng);
            }
            gfn_prefix_sharing = 1;
            int same = 1;
            for (int i = 0; i < N; i++) {
                same &= t[0][i]->ntok == t[1][i]->ntok && t[0][i]->nact == t[1][i]->nact;
                for (int j = 0; same && j < t[0][i]->ntok; j++) same &= t[0][i]->tokens[j] == t[1][i]->tokens[j];
                traj_free(t[0][i]); traj_free(t[1][i]);
            }
            CHECK(same, "%s, %s: the sampler's trajectories differ with prefix sharing", names[k], greedy ? "greedy" : "T=1.5");
        }
    gpt_free(policy);

    // Two training steps with sharing and without, from the same start.
    float *after[2];
    size_t count = 0;
    for (int share = 0; share < 2; share++) {
        gfn_prefix_sharing = share;
        GPT *base = tt_model();
        Task train_task = tt_task(base, 1, 0, 5);
        GPT *p = copy_model(base);
        TrainConfig cfg;
        train_config_default(&cfg);
        cfg.steps = 2; cfg.batch = 6; cfg.samples_per_query = 3; cfg.lora_rank = 2; cfg.quiet = 1; cfg.lr = 1e-2f; cfg.warmup = 0;
        float log_z[2] = { 0, 0 };
        GfnError err = { { 0 } };
        CHECK(gfn_train(&train_task, p, &cfg, log_z, &err) == 0, "train: %s", err.msg);
        count = gpt_lora(p)->num_parameters;
        after[share] = malloc(sizeof(float) * count);
        memcpy(after[share], gpt_lora(p)->memory, sizeof(float) * count);
        gpt_free(p);
        gpt_free(base);
    }
    gfn_prefix_sharing = 1;
    double worst = 0;
    for (size_t i = 0; i < count; i++) worst = larger(worst, fabs(after[0][i] - after[1][i]));
    CHECK(worst <= 1e-6, "two training steps with and without prefix sharing differ by %.3g", worst);
    if (getenv("GFN_TEST_VERBOSE")) printf("   training steps: shared vs unshared max |diff| %.3g\n", worst);
    free(after[0]); free(after[1]);
}

// The toy task with many queries: the same X, Y and reward under num_queries indices, so that,
// as in arithmetic's 1000 questions, most queries are seen once or never in a short run.
static int many_query_toy(Task *many, int num_queries) {
    *many = task_toy;
    TaskOptions opt = { "", "", "", 1, -13.8f, 1, 0, NULL, NULL, 0, 0, 0 };
    GfnError err = { { 0 } };
    if (!CHECK(many->setup(many, &opt, &err) == 0, "toy setup: %s", err.msg)) return 1;
    many->num_train = num_queries;
    return 0;
}

// Trains a copy of the task's base with cfg (logging to a temp file); returns the JSONL lines'
// values of `field` in values[0..steps) (NAN where absent).
static void train_logged(Task *task, TrainConfig *cfg, float *log_z, const char *field, double *values) {
    const char *path = test_path("gfn_log.jsonl");
    cfg->log_path = path;
    cfg->quiet = 1;
    GPT *policy = copy_model(task->base);
    GfnError err = { { 0 } };
    CHECK(gfn_train(task, policy, cfg, log_z, &err) == 0, "training: %s", err.msg);
    gpt_free(policy);
    for (int i = 0; i < cfg->steps; i++) values[i] = NAN;
    FILE *f = fopen(path, "r");
    char line[4096], key[64];
    snprintf(key, sizeof key, "\"%s\": ", field);
    for (int i = 0; f && i < cfg->steps && fgets(line, sizeof line, f); i++) {
        const char *at = strstr(line, key);
        if (at) values[i] = strtod(at + strlen(key), NULL);
    }
    if (f) fclose(f);
    remove(path);
}

static double mean_of(const double *v, int from, int to) {
    double s = 0;
    for (int i = from; i < to; i++) s += v[i];
    return s / (to - from);
}

// A 25 % replay setting replays about 25 % of the rows once the buffer holds entries, however
// many queries have none (1000 here); gold Z seeded into the buffer are replayed.
static void test_replay_fraction(void) {
    Task many;
    if (many_query_toy(&many, 1000)) return;
    enum { STEPS = 240 };
    double frac[STEPS];
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.loss = LOSS_SUBTB; cfg.steps = STEPS; cfg.batch = 4; cfg.samples_per_query = 4; cfg.lr = 1e-3f;
    cfg.lora_rank = 4; cfg.frac_on_policy = 0.5f; cfg.frac_tempered = 0.25f;
    float *log_z = calloc(1000, sizeof(float));
    const char *names[3] = { "on_policy", "tempered", "replay" };
    const double want[3] = { 0.5, 0.25, 0.25 };
    for (int b = 0; b < 3; b++) {
        train_logged(&many, &cfg, log_z, names[b], frac);
        double m = mean_of(frac, 1, STEPS);   // step 1 may find the buffer empty
        CHECK(fabs(m - want[b]) < 0.08, "%s rows: %.3f of the rows, want %.2f +- 0.08 (binomial sd 0.03)", names[b], m, want[b]);
    }
    // Replay only, the buffer seeded with one gold Z of query 7: every row replays it.
    Traj *gold = traj_new(many.max_len);
    Rng rng;
    rng_seed(&rng, 5);
    many.demonstration(&many, 7, gold, &rng);
    many.log_reward(&many, &gold, 1);
    many.demos = &gold;
    many.num_demos = 1;
    cfg.steps = 20; cfg.frac_on_policy = 0; cfg.frac_tempered = 0;
    double mean_log_r[20];
    train_logged(&many, &cfg, log_z, "replay", frac);
    int all_replayed = 1;
    for (int i = 0; i < 20; i++) all_replayed &= frac[i] == 1.0;
    train_logged(&many, &cfg, log_z, "mean_log_r", mean_log_r);
    int all_gold = 1;
    for (int i = 0; i < 20; i++) all_gold &= fabs(mean_log_r[i] - gold->log_r[gold->nact]) < 1e-4;
    CHECK(all_replayed && all_gold, "replay-only training with one gold Z: rows replayed %d, all the gold Z %d", all_replayed, all_gold);
    many.demos = NULL;
    many.num_demos = 0;
    traj_free(gold);
    free(log_z);
    many.cleanup(&many);
}

// --gold-replay F: about F of the micro-batches train on one given Z (the task's demonstration),
// counted in the log's "gold"; at F = 1 every micro-batch does and no row is sampled or replayed.
static void test_gold_replay(void) {
    Task many;
    if (many_query_toy(&many, 1000)) return;
    enum { STEPS = 100 };
    double frac[STEPS], other[STEPS];
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.loss = LOSS_SUBTB; cfg.steps = STEPS; cfg.batch = 4; cfg.samples_per_query = 4; cfg.accum = 4; cfg.lr = 1e-3f;
    cfg.lora_rank = 4; cfg.frac_gold = 0.25f;
    float *log_z = calloc(1000, sizeof(float));
    train_logged(&many, &cfg, log_z, "gold", frac);
    double m = mean_of(frac, 0, STEPS);   // 400 Bernoulli(0.25) micro-batches: sd 0.022
    CHECK(fabs(m - 0.25) < 0.07, "gold micro-batches: %.3f of them, want 0.25 +- 0.07", m);
    cfg.frac_gold = 1; cfg.steps = 10;
    train_logged(&many, &cfg, log_z, "gold", frac);
    int all_gold = 1;
    for (int i = 0; i < 10; i++) all_gold &= frac[i] == 1.0;
    const char *names[3] = { "on_policy", "tempered", "replay" };
    for (int b = 0; b < 3; b++) {
        train_logged(&many, &cfg, log_z, names[b], other);
        for (int i = 0; i < 10; i++) all_gold &= other[i] == 0.0;
    }
    CHECK(all_gold, "--gold-replay 1: a step trained on rows other than given ones");
    printf("   --gold-replay 0.25: %.3f of 400 micro-batches gold\n", m);
    free(log_z);
    many.cleanup(&many);
}

// SubTB's gradient of rows 0..n-1 (one micro-batch: the loss normalised over its own pairs),
// scaled by `scale`, added to the LoRA's gradients.
static void micro_batch_backward(GPT *policy, Task *task, Traj **t, int n, float scale) {
    int stride = task->max_len + 1, T, len[8], group[8];
    float lf[64], lt[64], lr[64], dlf[64], dlt[64];
    float *logits = policy_logprobs(policy, task, t, n, stride, 1, lf, lt, &T);
    for (int i = 0; i < n; i++) {
        len[i] = t[i]->nact;
        group[i] = t[i]->query;
        for (int k = 0; k <= t[i]->nact; k++) lr[i * stride + k] = t[i]->log_r[k];
    }
    TrajBatch b = { n, stride, len, lf, lt, lr, group, 0 };
    loss_subtb(&b, 1.0f, NULL, dlf, dlt, NULL);
    for (int i = 0; i < n * stride; i++) { dlf[i] *= scale; dlt[i] *= scale; }
    policy_backward(policy, task, t, n, stride, 1, logits, T, dlf, dlt);
}

// The official recipe's step (one question per micro-batch of K samples, accumulated over Q
// questions) is `--batch K --k K --accum Q`: each micro-batch's loss is normalised over its own
// pairs (the official code normalises over the pairs of its micro-batch) and the Q gradients are
// averaged (the official code sums them, a defect: PAPER.md). Accumulating Q = 2 micro-batches
// scaled 1/Q into the LoRA's gradients gives the mean of the 2 gradients taken alone, and differs
// from one micro-batch of all rows (normalised over the pairs of both questions, which weighs a
// question by its trajectories' lengths).
static void test_accumulation(void) {
    GPT *policy = tt_model();
    Task task = tt_task(policy, 0, 0, 5);
    Rng rng;
    rng_seed(&rng, 8);
    LoRA *lora = tt_random_lora(policy, 0.3f, &rng);
    enum { K = 3 };
    Traj *t[2 * K];
    int queries[2 * K] = { 0, 0, 0, 1, 1, 1 };
    for (int i = 0; i < 2 * K; i++) t[i] = traj_new(task.max_len);
    SamplerConfig sc = { 1.5f, 0, 1.0f, 0 };
    sample_trajectories(policy, &task, queries, t, 2 * K, &sc, &rng);
    t[0]->ntok = t[0]->nact = 5;   // lengths differ between the questions
    for (int j = 0; j < 5; j++) { t[0]->tokens[j] = j; t[0]->forced[j] = 0; }
    t[3]->ntok = t[3]->nact = 0;
    tt_log_reward(&task, t, 2 * K);
    size_t P = lora->num_parameters;
    float *alone[2], *acc = malloc(sizeof(float) * P), *whole = malloc(sizeof(float) * P);
    for (int q = 0; q < 2; q++) {
        gpt_zero_grad(policy);
        micro_batch_backward(policy, &task, t + q * K, K, 1.0f);
        alone[q] = malloc(sizeof(float) * P);
        memcpy(alone[q], lora->grad_memory, sizeof(float) * P);
    }
    gpt_zero_grad(policy);
    for (int q = 0; q < 2; q++) micro_batch_backward(policy, &task, t + q * K, K, 0.5f);
    memcpy(acc, lora->grad_memory, sizeof(float) * P);
    gpt_zero_grad(policy);
    micro_batch_backward(policy, &task, t, 2 * K, 1.0f);
    memcpy(whole, lora->grad_memory, sizeof(float) * P);
    double scale = 0, off_mean = 0, off_whole = 0;
    for (size_t i = 0; i < P; i++) {
        double mean = 0.5 * ((double)alone[0][i] + alone[1][i]);
        scale = larger(scale, fabs(mean));
        off_mean = larger(off_mean, fabs(acc[i] - mean));
        off_whole = larger(off_whole, fabs(whole[i] - mean));
    }
    CHECK(scale > 1e-3 && off_mean <= 1e-5 * scale, "accumulated gradient off the mean of the micro-batches' by %.3g (scale %.3g)", off_mean, scale);
    CHECK(off_whole > 1e-2 * scale, "one micro-batch of both questions gives the mean of the per-question gradients (off by %.3g): "
          "the test's lengths do not tell the normalisations apart", off_whole);
    for (int i = 0; i < 2 * K; i++) traj_free(t[i]);
    free(alone[0]); free(alone[1]); free(acc); free(whole);
    gpt_free(policy);
}

// TB's log Z of a fresh query starts at its first batch's VarGrad estimate, so the residual's
// mean over that batch is 0; with many queries seen once or twice each, |δ| then shrinks.
static void test_tb_log_z_init(void) {
    Task many;
    if (many_query_toy(&many, 200)) return;
    enum { STEPS = 300 };
    double delta[STEPS];
    float *log_z = calloc(200, sizeof(float));
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.loss = LOSS_TB; cfg.steps = 1; cfg.batch = 16; cfg.samples_per_query = 8; cfg.lr = 0; cfg.lr_log_z = 0;
    train_logged(&many, &cfg, log_z, "tb_delta", delta);
    CHECK(fabs(delta[0]) < 1e-4, "TB residual's mean over the first batch %g, want 0", delta[0]);
    cfg.steps = STEPS; cfg.lr = 1e-2f; cfg.lr_log_z = 0.1f; cfg.warmup = 10; cfg.lora_rank = 8;
    for (int q = 0; q < 200; q++) log_z[q] = 0;
    train_logged(&many, &cfg, log_z, "tb_abs_delta", delta);
    double first = mean_of(delta, 0, 30), last = mean_of(delta, STEPS - 30, STEPS);
    CHECK(last < 0.5 * first, "TB mean |delta|: %.3f over the first 30 steps, %.3f over the last 30 (want at most half)", first, last);
    printf("   toy, 200 queries, TB: mean |delta| %.3f over steps 1-30, %.3f over steps %d-%d\n", first, last, STEPS - 29, STEPS);
    // Every query has the same exact log Z (the toy enumerates it): the learned ones are near it.
    FILE *f = tmpfile();
    GPT *base = copy_model(many.base);
    many.evaluate(&many, base, NULL, f, 1);
    gpt_free(base);
    rewind(f);
    char name[64];
    double value, log_z_true = NAN, err_sum = 0;
    while (fscanf(f, "%63s %lf", name, &value) == 2) if (!strcmp(name, "logz_true")) log_z_true = value;
    fclose(f);
    int seen = 0;
    for (int q = 0; q < 200; q++) if (log_z[q] != 0) { err_sum += fabs(log_z[q] - log_z_true); seen++; }
    CHECK(seen > 100 && err_sum / seen < 0.5, "learned log Z of %d queries off the exact %.3f by %.3f on average", seen, log_z_true, err_sum / seen);
    free(log_z);
    many.cleanup(&many);
}

#ifdef _OPENMP
// The log's lines without the timing field ("tokens_per_s": ...), into out (NUL-terminated).
static void log_without_timing(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t len = 0;
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        char *at = strstr(line, "\"tokens_per_s\": ");
        if (at) { char *end = strchr(at, ','); if (end) memmove(at, end + 1, strlen(end + 1) + 1); }
        size_t n = strlen(line);
        if (len + n + 1 > cap) break;
        memcpy(out + len, line, n);
        len += n;
    }
    out[len] = 0;
    if (f) fclose(f);
}
#endif

// The pipeline (gfn_train's train_step_micro: one thread samples the next micro-batch while
// others score and learn the earlier ones) computes what the plain order computes: the adapter,
// every query's log Z and the log are bit-identical with it on and off, at 2 and 3 threads, for
// TB (log Z learned), SubTB and SFT, with replay micro-batches (the buffer empty at first, so a
// replay micro-batch's both paths run: sampled rows while empty, then deferred draws), gold
// micro-batches and K samples per query, on 1000 queries of `toy`.
static void test_pipeline(void) {
#ifndef _OPENMP
    test_skip("pipeline", "built without OpenMP: there is no pipeline, every step runs in order");
#else
    Task many;
    if (many_query_toy(&many, 1000)) return;
    static const LossKind losses[3] = { LOSS_TB, LOSS_SUBTB, LOSS_SFT };
    size_t log_cap = 1 << 20;
    char *want_log = malloc(log_cap), *got_log = malloc(log_cap);
    for (int li = 0; li < 3; li++) {
        TrainConfig cfg;
        train_config_default(&cfg);
        cfg.loss = losses[li]; cfg.steps = 12; cfg.batch = 4; cfg.samples_per_query = 2; cfg.accum = 4; cfg.lr = 1e-2f;
        cfg.lora_rank = 4; cfg.frac_on_policy = 0.25f; cfg.frac_tempered = 0.35f; cfg.frac_gold = 0.25f; cfg.quiet = 1;
        cfg.log_path = test_path("pipeline.jsonl");
        float *want_z = calloc(1000, sizeof(float)), *got_z = calloc(1000, sizeof(float)), *want = NULL;
        size_t P = 0;
        for (int run = 0; run < 3; run++) {   // plain on 1 thread, then the pipeline on 2 and on 3
            gfn_pipeline = run > 0;
            omp_set_num_threads(run == 0 ? 1 : run + 1);
            long before = gfn_pipeline_steps;
            GPT *policy = gpt_view(many.base);
            GfnError err = { { 0 } };
            float *log_z = run == 0 ? want_z : got_z;
            memset(log_z, 0, 1000 * sizeof(float));
            CHECK(gfn_train(&many, policy, &cfg, log_z, &err) == 0, "training: %s", err.msg);
            LoRA *lora = gpt_lora(policy);
            P = lora->num_parameters;
            if (run == 0) {
                want = malloc(sizeof(float) * P);
                memcpy(want, lora->memory, sizeof(float) * P);
                log_without_timing(cfg.log_path, want_log, log_cap);
                CHECK(gfn_pipeline_steps == before, "the plain run ran %ld steps as a pipeline", gfn_pipeline_steps - before);
            } else {
                log_without_timing(cfg.log_path, got_log, log_cap);
                CHECK(gfn_pipeline_steps - before == cfg.steps, "loss %d, %d threads: %ld of %d steps ran as a pipeline", (int)cfg.loss,
                      run + 1, gfn_pipeline_steps - before, cfg.steps);
                CHECK(!memcmp(want, lora->memory, sizeof(float) * P), "loss %d, %d threads: the pipeline's adapter differs from the plain order's",
                      (int)cfg.loss, run + 1);
                CHECK(!memcmp(want_z, got_z, 1000 * sizeof(float)), "loss %d, %d threads: log Z differs", (int)cfg.loss, run + 1);
                CHECK(strlen(want_log) > 100 && !strcmp(want_log, got_log), "loss %d, %d threads: the log differs", (int)cfg.loss, run + 1);
            }
            gpt_free(policy);
        }
        remove(cfg.log_path);
        free(want); free(want_z); free(got_z);
    }
    gfn_pipeline = 1;
    omp_set_num_threads(1);
    free(want_log); free(got_log);
    many.cleanup(&many);
#endif
}

// --explore ε (ε-uniform exploration, the tempered rows only). (1) sample_token's law is exactly
// (1 − ε) softmax(logits / T) + ε / m over the m allowed tokens, and at ε = 0 it draws one number,
// as it always did (so no earlier run changes). (2) The sampler at ε = 1 draws each Z of the toy
// task with the uniform policy's probability: 6 tokens and ⊤ allowed, ⊤ masked before 1 action and
// forced at 3, so q(Z) = 1/6 · (1/7)^(l−1) · (l < 3 ? 1/7 : 1). (3) In training, on-policy rows never
// explore (the same adapter with ε = 0.5) while tempered rows do (a different adapter).
static void test_explore(void) {
    enum { V = 8, N = 400000 };
    const float logits[V] = { 2.0f, -1.0f, 0.5f, 3.0f, -4.0f, 0.0f, 1.0f, -2.0f };
    const unsigned char mask[V] = { 1, 1, 0, 1, 1, 0, 1, 0 };   // 5 allowed
    const float eps = 0.3f, temp = 1.5f;
    double want[V] = { 0 }, total = 0;
    for (int v = 0; v < V; v++) if (mask[v]) total += want[v] = exp(logits[v] / temp);
    for (int v = 0; v < V; v++) if (mask[v]) want[v] = (1 - eps) * want[v] / total + eps / 5;
    float pairs[2 * V];
    double count[V] = { 0 };
    Rng rng;
    rng_seed(&rng, 11);
    SamplerConfig sc = { temp, 0, 1.0f, eps };
    for (int i = 0; i < N; i++) count[sample_token(logits, mask, V, &sc, pairs, &rng)]++;
    double worst = 0;
    for (int v = 0; v < V; v++) {
        double z = mask[v] ? fabs(count[v] / N - want[v]) / sqrt(want[v] * (1 - want[v]) / N) : count[v] > 0 ? INFINITY : 0;
        if (z > worst) worst = z;
    }
    CHECK(worst < 5, "sample_token with explore %.1f: worst token %.2f standard errors from (1-e) softmax + e/m", (double)eps, worst);
    Rng a, b;
    rng_seed(&a, 12);
    rng_seed(&b, 12);
    SamplerConfig plain = { temp, 0, 1.0f, 0 };
    sample_token(logits, mask, V, &plain, pairs, &a);
    rng_uniform(&b);
    CHECK(rng_u64(&a) == rng_u64(&b), "explore 0 draws exactly one number per token");

    GPT *policy = tt_model();
    Task task = tt_task(policy, 0, 1, 3);
    int count_z = enumerate_z(&task, NULL, NULL, 0);
    enum { B = 64, ROUNDS = 300 };
    Traj *t[B];
    int queries[B] = { 0 };
    for (int i = 0; i < B; i++) t[i] = traj_new(task.max_len);
    double *freq = gfn_calloc((size_t)count_z, sizeof(double));
    SamplerConfig uniform = { 1.0f, 0, 1.0f, 1.0f };
    for (int r = 0; r < ROUNDS; r++) {
        sample_trajectories(policy, &task, queries, t, B, &uniform, &rng);
        for (int i = 0; i < B; i++) {
            int offset = 0, power = 6, idx = 0;
            for (int l = 1; l < t[i]->nact; l++) { offset += power; power *= 6; }
            for (int k = 0; k < t[i]->nact; k++) idx = idx * 6 + t[i]->tokens[k];
            freq[offset + idx] += 1.0 / (B * ROUNDS);
        }
    }
    double l1 = 0;
    for (int i = 0, l = 1, in_len = 0; i < count_z; i++) {
        double q = 1.0 / 6 * pow(1.0 / 7, l - 1) * (l < 3 ? 1.0 / 7 : 1.0);
        l1 += fabs(freq[i] - q);
        if (++in_len == (int)pow(6, l)) { l++; in_len = 0; }
    }
    // 19,200 samples over 258 outcomes: an exact sampler's expected L1 is about 0.09
    CHECK(count_z == 258 && l1 < 0.15, "sampler with explore 1 vs the uniform policy: L1 %g over %d outcomes", l1, count_z);
    free(freq);
    for (int i = 0; i < B; i++) traj_free(t[i]);
    gpt_free(policy);

    Task many;
    if (many_query_toy(&many, 50)) return;
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.loss = LOSS_TB; cfg.steps = 6; cfg.batch = 4; cfg.samples_per_query = 4; cfg.lr = 1e-2f; cfg.lora_rank = 2;
    cfg.quiet = 1;
    size_t bytes[4];
    float *adapter[4];
    for (int run = 0; run < 4; run++) {   // on-policy ε 0, 0.5; tempered ε 0, 0.5
        cfg.frac_on_policy = run < 2 ? 1.0f : 0.0f;
        cfg.frac_tempered = run < 2 ? 0.0f : 1.0f;
        cfg.explore = run % 2 ? 0.5f : 0.0f;
        float *log_z = calloc(50, sizeof(float));
        GPT *p = copy_model(many.base);
        GfnError err = { { 0 } };
        CHECK(gfn_train(&many, p, &cfg, log_z, &err) == 0, "training: %s", err.msg);
        LoRA *lora = gpt_lora(p);
        bytes[run] = lora ? lora->num_parameters * sizeof(float) : 0;
        adapter[run] = malloc(bytes[run] ? bytes[run] : 1);
        if (lora) memcpy(adapter[run], lora->memory, bytes[run]);
        gpt_free(p);
        free(log_z);
    }
    CHECK(bytes[0] && bytes[0] == bytes[1] && !memcmp(adapter[0], adapter[1], bytes[0]),
          "on-policy rows with explore 0.5: the adapter differs from explore 0");
    CHECK(bytes[2] == bytes[3] && memcmp(adapter[2], adapter[3], bytes[2]) != 0,
          "tempered rows with explore 0.5: the adapter equals explore 0's (exploration had no effect)");
    for (int run = 0; run < 4; run++) free(adapter[run]);
    many.cleanup(&many);
}

// gfn_train tells the task when its objective reads only the last state's log R (so arithmetic
// may skip the others): for TB, VarGrad and REINFORCE, not for SubTB and DB, and only while it
// trains. Seen through a log_reward that records the flag at every call.
static void (*inner_log_reward)(Task *task, Traj *const *t, int n);
static int flag_seen_min, flag_seen_max;
static void recording_log_reward(Task *task, Traj *const *t, int n) {
    inner_log_reward(task, t, n);
    if (task->final_reward_only < flag_seen_min) flag_seen_min = task->final_reward_only;
    if (task->final_reward_only > flag_seen_max) flag_seen_max = task->final_reward_only;
}

static void test_final_reward_flag(void) {
    Task task;
    if (many_query_toy(&task, 4)) return;
    inner_log_reward = task.log_reward;
    task.log_reward = recording_log_reward;
    task.concurrent_reward = 0;
    task.log_reward_on = NULL;
    const LossKind losses[] = { LOSS_TB, LOSS_VARGRAD, LOSS_REINFORCE, LOSS_SUBTB, LOSS_DB };
    for (size_t i = 0; i < sizeof losses / sizeof *losses; i++) {
        TrainConfig cfg;
        train_config_default(&cfg);
        cfg.loss = losses[i]; cfg.steps = 2; cfg.batch = 4; cfg.samples_per_query = 4; cfg.lr = 1e-3f;
        cfg.lora_rank = 2; cfg.quiet = 1;
        float log_z[4] = { 0 };
        GfnError err = { { 0 } };
        GPT *policy = copy_model(task.base);
        flag_seen_min = 2; flag_seen_max = -1;
        CHECK(gfn_train(&task, policy, &cfg, log_z, &err) == 0, "training: %s", err.msg);
        int want = losses[i] != LOSS_SUBTB && losses[i] != LOSS_DB;
        CHECK(flag_seen_min == want && flag_seen_max == want && task.final_reward_only == 0,
              "loss %d: final_reward_only seen %d..%d (want %d), %d after training", (int)losses[i], flag_seen_min,
              flag_seen_max, want, task.final_reward_only);
        gpt_free(policy);
    }
    task.cleanup(&task);
}

void test_gfn(void) {
    // Every model here is tiny (C <= 64): threads only add synchronisation, which on a busy
    // machine costs several times the work. Run this suite on one thread, then restore.
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    test_rng_reward();
    test_objectives_fd();
    test_objective_identities();
    test_replay_buffer();
    test_chain_fd();
    test_prefix_share();
    test_forced_tokens();
    test_exact_distribution();
    test_root_flow_exact();
    test_toy_run();
    test_replay_fraction();
    test_gold_replay();
    test_accumulation();
    test_tb_log_z_init();
    test_pipeline();
    test_explore();
    test_final_reward_flag();
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
}
