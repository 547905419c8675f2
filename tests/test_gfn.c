// tests/test_gfn.c — the GFlowNet layer: every objective against finite differences, the
// identities between objectives, the replay buffer; then (with the model) the full gradient chain
// objective -> masked log-softmax -> LoRA, the exact policy distribution, forced tokens, and a
// short `toy` run that must cut the L1 distance to the exact posterior.
#include "test.h"

#include <stdlib.h>
#include <string.h>

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
    TrajBatch b = { rb->n, rb->stride, rb->len, rb->lf, rb->lt, rb->lr, rb->group };
    return b;
}

enum { OBJ_TB, OBJ_SUBTB, OBJ_SUBTB_HALF, OBJ_DB, OBJ_VARGRAD, OBJ_SFT, OBJ_REINFORCE, OBJ_COUNT };
static const char *obj_names[OBJ_COUNT] = { "tb", "subtb(1)", "subtb(0.5)", "db", "vargrad", "sft", "reinforce" };

static float eval_obj(int obj, RandomBatch *rb, float *log_z, float *dlf, float *dlt, float *dz) {
    TrajBatch b = view(rb);
    switch (obj) {
    case OBJ_TB: if (dz) memset(dz, 0, 3 * sizeof(float)); return loss_tb(&b, log_z, dlf, dlt, dz);
    case OBJ_SUBTB: return loss_subtb(&b, 1.0f, dlf, dlt);
    case OBJ_SUBTB_HALF: return loss_subtb(&b, 0.5f, dlf, dlt);
    case OBJ_DB: return loss_db(&b, dlf, dlt);
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
        if (obj == OBJ_TB) {
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
    float subtb = loss_subtb(&b, 1e6f, dlf2, dlt2);
    CHECK(fabsf(tb - subtb) < 1e-4f * (1 + fabsf(tb)), "SubTB(λ→∞, whole trajectories) %g != TB %g", subtb, tb);
    double worst = 0;
    for (int r = 0; r < rb.n; r++)
        for (int k = 0; k < 4; k++) worst = fmax(worst, fabs(dlf[r * rb.stride + k] - dlf2[r * rb.stride + k]));
    CHECK(worst < 1e-4, "SubTB(λ→∞) lf gradient differs from TB's by %g", worst);
    // Exactly, on one-action trajectories, the only pair is (0, 1).
    for (int r = 0; r < rb.n; r++) rb.len[r] = 1;
    tb = loss_tb(&b, log_z, dlf, dlt, dz);
    subtb = loss_subtb(&b, 1.0f, dlf2, dlt2);
    CHECK(fabsf(tb - subtb) < 1e-5f * (1 + fabsf(tb)), "one-action SubTB %g != TB %g", subtb, tb);
    // (b) SubTB with λ → 0 equals modified DB (an independent loop).
    random_batch(&rb, 6, 5, 3, &rng);
    b = view(&rb);
    float db = loss_db(&b, dlf, dlt);
    float sub0 = loss_subtb(&b, 1e-7f, dlf2, dlt2);
    CHECK(fabsf(db - sub0) < 1e-4f * (1 + fabsf(db)), "SubTB(λ→0) %g != DB %g", sub0, db);
    worst = 0;
    for (int i = 0; i < rb.n * rb.stride; i++) worst = fmax(worst, fmax(fabs(dlf[i] - dlf2[i]), fabs(dlt[i] - dlt2[i])));
    CHECK(worst < 1e-4, "SubTB(λ→0) gradients differ from DB's by %g", worst);
    // (c) At the optimum (log F = lr − lt consistent with q) every residual is zero: build
    // lt_j so that lr_i + Σ lf + lt_j − lr_j − lt_i = 0 for all pairs, i.e. lt_j = lr_j − Σ_{k≤j} lf + c.
    for (int r = 0; r < rb.n; r++) {
        double c = 0.7, cum = 0;
        for (int j = 0; j <= rb.len[r]; j++) {
            if (j > 0) cum += rb.lf[r * rb.stride + j - 1];
            rb.lt[r * rb.stride + j] = (float)(rb.lr[r * rb.stride + j] - cum + c);
        }
    }
    CHECK(loss_subtb(&b, 1.0f, dlf, dlt) < 1e-9f, "SubTB not zero at a balanced flow");
    CHECK(loss_db(&b, dlf, dlt) < 1e-9f, "DB not zero at a balanced flow");
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
    // the top 4 of scores: -0.1 (8), -0.5 (3), -1 (1), -1 (5), in this order
    int expect[4] = { 8, 3, 1, 5 }, ok = 1;
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
        worst = fmax(worst, fabs(f - p) / sqrt(p * (1 - p) / draws));
    }
    CHECK(worst < 5, "replay sampling off softmax(log R) by %g standard errors", worst);
    CHECK(replay_sample(rb, 1, &rng) == NULL, "empty query sampled");
    replay_free(rb);
}

void test_gfn(void) {
    test_objectives_fd();
    test_objective_identities();
    test_replay_buffer();
}
