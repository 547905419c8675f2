// gfn.c — GFlowNet fine-tuning of a language model: the objectives (each next to its gradient),
// trajectories and the replay buffer, the policy over allowed tokens, the batched sampler, the
// exact distributions of enumerable tasks and the training loop. Depends on util.c, model.c and
// tokenizer.c; never on a task, a report or the command line. Read top to bottom.
//
// Notation (PAPER.md): a query X, a sampled Z = z_1..z_n, the terminator ⊤. For state i (the
// prefix z_≤i): lr_i = log R(z_≤i ⊤), lt_i = log q(⊤ | X z_≤i); for action k:
// lf_k = log q(z_k | X z_<k). Rewards are constants: gradients flow only through lf and lt.
#include "gfn.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// ----------------------------------------------------------------------------------------------
// Objectives. Inputs are (n, stride) rows; row b has len[b] actions, so lf uses [0, len) and lt,
// lr use [0, len]. Every function overwrites d_pf and d_pterm over the whole (n, stride) arrays.

static void zero_grads(const TrajBatch *b, float *d_pf, float *d_pterm) {
    memset(d_pf, 0, sizeof(float) * (size_t)b->n * (size_t)b->stride);
    memset(d_pterm, 0, sizeof(float) * (size_t)b->n * (size_t)b->stride);
}

// log q(Z ⊤) = Σ_k lf_k + lt_n of row r.
static double traj_log_q(const TrajBatch *b, int r) {
    const float *lf = b->log_pf + (size_t)r * b->stride;
    double s = b->log_pterm[(size_t)r * b->stride + b->len[r]];
    for (int k = 0; k < b->len[r]; k++) s += lf[k];
    return s;
}

// Trajectory balance:  L = (1/N) Σ_Z ( log Z_X + Σ_t log q(z_t | X z_<t) + log q(⊤ | X Z) − log R(Z) )²
// dL/d lf_k = dL/d lt_n = dL/d log Z_X = 2 δ / N.
float loss_tb(const TrajBatch *b, const float *log_z, float *d_pf, float *d_pterm, float *d_log_z) {
    zero_grads(b, d_pf, d_pterm);
    double loss = 0;
    for (int r = 0; r < b->n; r++) {
        int n = b->len[r];
        double delta = log_z[b->group[r]] + traj_log_q(b, r) - b->log_r[(size_t)r * b->stride + n];
        loss += delta * delta;
        float g = (float)(2.0 * delta / b->n);
        for (int k = 0; k < n; k++) d_pf[(size_t)r * b->stride + k] = g;
        d_pterm[(size_t)r * b->stride + n] = g;
        if (d_log_z) d_log_z[b->group[r]] += g;
    }
    return (float)(loss / b->n);
}

// Modified sub-trajectory balance (the paper's loss). For 0 ≤ i < j ≤ n:
//   δ(i,j) = log F(s_i) + Σ_{k=i+1..j} lf_k + lt_j − lr_j,   log F(s_i) = lr_i − lt_i
//   L = Σ_batch Σ_{i<j} λ^(j−i−1) δ(i,j)²  /  Σ_batch Σ_{i<j} λ^(j−i−1)
// (normalised over every pair of the whole batch, as the official code). At a state that may
// stop, log F = lr − lt because F(s) q(⊤ | s) = R(s ⊤).
//
// States shorter than the minimum length m (b->min_len) cannot stop, so lr_i − lt_i is no flow
// there. The official code writes lr_i = −99 with ⊤ left unmasked in lt; then every pair (0, j)
// asks log F(s_0) = −99 − lt_0, about 95 below the true log Σ_Z R(Z), and on `continuation`
// (m = 1) the untuned base, already balanced at every other state, starts at a loss near 900
// that 30 steps at sane rates do not lower (README / issue 11 measurements). Instead, with m > 0:
//   - state 0 reads a learned log F(s_0) = log_f0[X] (the same quantity as TB's log Z), set at a
//     query's first batch to log R − log q(Z ⊤) averaged over its rows, then learned at lr_log_z;
//   - pairs that end at j < m, or start at 0 < i < m, are dropped: their states have no flow
//     estimate, and the pairs (0, j ≥ m) already constrain every action of the short prefix;
//   - lf, lt are those of the sampled policy (⊤ masked before m, policy_logprobs' mask_short).
// At the exact posterior q(Z ⊤) = R(Z) / Σ R every residual is then zero with log F(s_0) = log Σ R
// (tests/test_gfn.c). Dropping the short states without a root flow (pairs from i ≥ m only)
// would be wrong: no residual would contain lf_1..lf_m, so the first m tokens would get no
// gradient and stay the base's. With m = 0 nothing changes: log F(s_0) = lr_0 − lt_0.
// dL/dδ(i,j) = 2 λ^(j−i−1) δ / W (W the denominator); δ has +1 on lf_{i+1..j} and lt_j, and −1
// on lt_i, or +1 on log_f0[X] when i < m. The lf range is added through a difference array so
// each row costs O(n²).
float loss_subtb(const TrajBatch *b, float lambda, const float *log_f0, float *d_pf, float *d_pterm,
                 float *d_log_f0) {
    zero_grads(b, d_pf, d_pterm);
    int m = b->min_len;
    double total_weight = 0;
    for (int r = 0; r < b->n; r++)
        for (int i = 0; i < b->len[r]; i++)
            for (int j = i + 1; j <= b->len[r]; j++)
                if (!(i > 0 && i < m) && j >= m) total_weight += pow(lambda, j - i - 1);
    if (total_weight == 0) return 0;
    double loss = 0;
    int maxn = b->stride;
    double *prefix = gfn_malloc(sizeof(double) * (size_t)(maxn + 1));   // (n+1) Σ_{k≤i} lf
    double *diff = gfn_malloc(sizeof(double) * (size_t)(maxn + 2));     // (n+2) range adds on lf
    for (int r = 0; r < b->n; r++) {
        int n = b->len[r];
        const float *lf = b->log_pf + (size_t)r * b->stride;
        const float *lt = b->log_pterm + (size_t)r * b->stride;
        const float *lr = b->log_r + (size_t)r * b->stride;
        float *dlf = d_pf + (size_t)r * b->stride, *dlt = d_pterm + (size_t)r * b->stride;
        prefix[0] = 0;
        for (int k = 1; k <= n; k++) prefix[k] = prefix[k - 1] + lf[k - 1];
        for (int k = 0; k <= n + 1; k++) diff[k] = 0;
        for (int i = 0; i < n; i++) {
            if (i > 0 && i < m) continue;
            double log_flow_i = i < m ? (double)log_f0[b->group[r]] : (double)lr[i] - lt[i];
            for (int j = i + 1 > m ? i + 1 : m; j <= n; j++) {
                double w = pow(lambda, j - i - 1);
                if (w == 0) continue;
                double delta = log_flow_i + (prefix[j] - prefix[i]) + lt[j] - lr[j];
                loss += w * delta * delta;
                double g = 2.0 * w * delta / total_weight;
                diff[i] += g;       // lf_{i+1..j} are entries [i, j) of the 0-based lf row
                diff[j] -= g;
                dlt[j] += (float)g;
                if (i >= m) dlt[i] -= (float)g;
                else if (d_log_f0) d_log_f0[b->group[r]] += (float)g;
            }
        }
        double run = 0;
        for (int k = 0; k < n; k++) { run += diff[k]; dlf[k] = (float)run; }
    }
    free(prefix);
    free(diff);
    return (float)(loss / total_weight);
}

// Modified detailed balance: the j = i+1 terms of modified SubTB (written out on its own, so the
// test that SubTB with λ → 0 equals it compares two implementations):
//   δ_i = lr_i + lf_{i+1} + lt_{i+1} − lr_{i+1} − lt_i,   L = mean over all transitions of δ_i²
// dL/d lf_{i+1} = dL/d lt_{i+1} = 2 δ_i / M, dL/d lt_i −= 2 δ_i / M (M transitions in the batch).
// With a minimum length m > 0 (see loss_subtb) the states before m have no flow, so the root's
// transition is the whole forced prefix, (0, m), read with the learned log F(s_0):
//   δ_0 = log_f0[X] + Σ_{k≤m} lf_k + lt_m − lr_m,   then δ_i as above for i ≥ m.
float loss_db(const TrajBatch *b, const float *log_f0, float *d_pf, float *d_pterm, float *d_log_f0) {
    zero_grads(b, d_pf, d_pterm);
    int m = b->min_len;
    long transitions = 0;
    for (int r = 0; r < b->n; r++)
        if (b->len[r] >= m) transitions += b->len[r] - (m > 0 ? m - 1 : 0);
    if (transitions == 0) return 0;
    double loss = 0;
    for (int r = 0; r < b->n; r++) {
        size_t o = (size_t)r * b->stride;
        if (m > 0 && b->len[r] >= m) {   // the root's transition (0, m)
            double delta = (double)log_f0[b->group[r]] + b->log_pterm[o + m] - b->log_r[o + m];
            for (int k = 0; k < m; k++) delta += b->log_pf[o + k];
            loss += delta * delta;
            float g = (float)(2.0 * delta / transitions);
            for (int k = 0; k < m; k++) d_pf[o + k] += g;
            d_pterm[o + m] += g;
            if (d_log_f0) d_log_f0[b->group[r]] += g;
        }
        for (int i = m; i < b->len[r]; i++) {
            double delta = (double)b->log_r[o + i] + b->log_pf[o + i] + b->log_pterm[o + i + 1]
                         - b->log_r[o + i + 1] - b->log_pterm[o + i];
            loss += delta * delta;
            float g = (float)(2.0 * delta / transitions);
            d_pf[o + i] += g;
            d_pterm[o + i + 1] += g;
            d_pterm[o + i] -= g;
        }
    }
    return (float)(loss / transitions);
}

// VarGrad's log Ẑ_X (defined below) of every query X of the batch, into log_z[X]: a constant, no
// gradient flows through it. At the exact posterior every row gives log Σ_Z R, so it is exact.
// Queries absent from the batch, and those with `skip` set (may be NULL), keep their log_z; the
// others get it and, with skip, are marked. Also TB's first log Z of a query and, with
// --short-states batch, SubTB's / DB's root flow.
void batch_log_z(const TrajBatch *b, float *log_z, unsigned char *skip) {
    for (int r = 0; r < b->n; r++) {
        int q = b->group[r], count = 0, first = 1;
        if (skip && skip[q]) continue;
        for (int o = 0; o < r && first; o++) first = b->group[o] != q;
        if (!first) continue;   // done at the query's first row
        double sum = 0;
        for (int o = r; o < b->n; o++)
            if (b->group[o] == q) { sum += b->log_r[(size_t)o * b->stride + b->len[o]] - traj_log_q(b, o); count++; }
        log_z[q] = (float)(sum / count);
        if (skip) skip[q] = 1;
    }
}

// VarGrad: TB where log Z_X is the stop-gradient batch estimate
//   log Ẑ_X = mean over the K samples of X of ( log R(Z) − log q(Z ⊤) ),
//   L = (1/N) Σ_Z ( log Ẑ_X + log q(Z ⊤) − log R(Z) )²   (N trajectories, X = group).
// dL/d lf_k = dL/d lt_n = 2 δ / N. This equals the gradient of the loss with log Ẑ not stopped,
// because the δ of one group sum to zero: the batch variance of log R − log q.
float loss_vargrad(const TrajBatch *b, int num_groups, float *d_pf, float *d_pterm, float *log_z_out) {
    float *log_z = gfn_calloc((size_t)num_groups, sizeof(float));
    batch_log_z(b, log_z, NULL);
    float loss = loss_tb(b, log_z, d_pf, d_pterm, NULL);
    if (log_z_out) memcpy(log_z_out, log_z, sizeof(float) * (size_t)num_groups);
    free(log_z);
    return loss;
}

// Supervised fine-tuning (maximum likelihood): L = −(1/N) Σ_Z log q(Z ⊤); dL/d lf = dL/d lt_n = −1/N.
float loss_sft(const TrajBatch *b, float *d_pf, float *d_pterm) {
    zero_grads(b, d_pf, d_pterm);
    double loss = 0;
    for (int r = 0; r < b->n; r++) {
        loss -= traj_log_q(b, r);
        for (int k = 0; k < b->len[r]; k++) d_pf[(size_t)r * b->stride + k] = -1.0f / b->n;
        d_pterm[(size_t)r * b->stride + b->len[r]] = -1.0f / b->n;
    }
    return (float)(loss / b->n);
}

// The reward maximiser: REINFORCE with a baseline. With R = exp(lr_n) and the baseline b_Z the
// mean R of the other samples of the same query (0 when alone), the surrogate
//   L = −(1/N) Σ_Z (R(Z) − b_Z) log q(Z ⊤)
// has the policy gradient as its gradient: dL/d lf_k = dL/d lt_n = −(R − b_Z) / N.
// Rewards are measured relative to the best sample of their query, R = exp(lr_n − max lr_n):
// a positive factor per query, so each query's gradient keeps its direction, but a task whose
// rewards are likelihoods (arithmetic: log R ≈ −20 to −50) no longer has all R underflow to 0.
float loss_reinforce(const TrajBatch *b, float *d_pf, float *d_pterm) {
    zero_grads(b, d_pf, d_pterm);
    double loss = 0;
    for (int r = 0; r < b->n; r++) {
        double best = -INFINITY;
        for (int o = 0; o < b->n; o++)
            if (b->group[o] == b->group[r] && b->log_r[(size_t)o * b->stride + b->len[o]] > best)
                best = b->log_r[(size_t)o * b->stride + b->len[o]];
        double reward = exp(b->log_r[(size_t)r * b->stride + b->len[r]] - best), others = 0;
        int count = 0;
        for (int o = 0; o < b->n; o++)
            if (o != r && b->group[o] == b->group[r]) {
                others += exp(b->log_r[(size_t)o * b->stride + b->len[o]] - best);
                count++;
            }
        double advantage = reward - (count ? others / count : 0.0);
        loss -= advantage * traj_log_q(b, r);
        float g = (float)(-advantage / b->n);
        for (int k = 0; k < b->len[r]; k++) d_pf[(size_t)r * b->stride + k] = g;
        d_pterm[(size_t)r * b->stride + b->len[r]] = g;
    }
    return (float)(loss / b->n);
}

// ----------------------------------------------------------------------------------------------
// Trajectories and the replay buffer

Traj *traj_new(int max_len) {
    Traj *t = gfn_calloc(1, sizeof(Traj));
    t->tokens = gfn_calloc((size_t)max_len + 1, sizeof(int));
    t->forced = gfn_calloc((size_t)max_len + 1, 1);
    t->log_r = gfn_calloc((size_t)max_len + 1, sizeof(float));
    return t;
}

void traj_free(Traj *t) {
    if (!t) return;
    free(t->tokens); free(t->forced); free(t->log_r); free(t);
}

void traj_copy(Traj *dst, const Traj *src) {
    dst->query = src->query;
    dst->ntok = src->ntok;
    dst->nact = src->nact;
    memcpy(dst->tokens, src->tokens, sizeof(int) * (size_t)src->ntok);
    memcpy(dst->forced, src->forced, (size_t)src->ntok);
    memcpy(dst->log_r, src->log_r, sizeof(float) * (size_t)(src->nact + 1));
}

static float traj_final_log_r(const Traj *t) { return t->log_r[t->nact]; }

ReplayBuffer *replay_new(int num_queries, int capacity, int max_len) {
    ReplayBuffer *rb = gfn_calloc(1, sizeof(ReplayBuffer));
    rb->num_queries = num_queries;
    rb->capacity = capacity;
    rb->max_len = max_len;
    rb->count = gfn_calloc((size_t)num_queries, sizeof(int));
    rb->filled = gfn_calloc((size_t)num_queries, sizeof(int));
    rb->items = gfn_calloc((size_t)num_queries * (size_t)capacity, sizeof(Traj *));
    for (size_t i = 0; i < (size_t)num_queries * (size_t)capacity; i++) rb->items[i] = traj_new(max_len);
    return rb;
}

void replay_free(ReplayBuffer *rb) {
    if (!rb) return;
    for (size_t i = 0; i < (size_t)rb->num_queries * (size_t)rb->capacity; i++) traj_free(rb->items[i]);
    free(rb->items); free(rb->count); free(rb->filled); free(rb);
}

// Kept sorted by final log R, best first, so the worst is the last and eviction is a shift.
// Among equal log R the newest comes first: when every kept Z ties (rng: all 101 valid answers
// have log R = 0), a new one still enters and the oldest leaves, so the buffer follows what is
// being found instead of freezing on the first `capacity` answers ever sampled.
int replay_add(ReplayBuffer *rb, const Traj *t) {
    if (t->query < 0 || t->query >= rb->num_queries || t->ntok > rb->max_len) return 0;
    Traj **items = rb->items + (size_t)t->query * rb->capacity;
    int count = rb->count[t->query];
    for (int i = 0; i < count; i++)
        if (items[i]->ntok == t->ntok && !memcmp(items[i]->tokens, t->tokens, sizeof(int) * (size_t)t->ntok))
            return 0;   // exact duplicate
    float score = traj_final_log_r(t);
    int at = count;
    while (at > 0 && traj_final_log_r(items[at - 1]) <= score) at--;
    if (at >= rb->capacity) return 0;
    Traj *slot = items[count < rb->capacity ? count : rb->capacity - 1];   // reused storage
    for (int i = (count < rb->capacity ? count : rb->capacity - 1); i > at; i--) items[i] = items[i - 1];
    items[at] = slot;
    traj_copy(slot, t);
    if (count < rb->capacity) rb->count[t->query] = count + 1;
    if (count == 0) rb->filled[rb->num_filled++] = t->query;
    return 1;
}

// The training run's buffer: room for every seeded Z of a query (rng --seed-answers seeds 101
// answers of one query; a buffer of 50 would keep 50 of them), then the task's demonstrations.
ReplayBuffer *replay_seeded(const Task *task, int capacity) {
    int *per_query = gfn_calloc((size_t)task->num_train, sizeof(int));   // (num_train) demos
    for (int d = 0; d < task->num_demos; d++) {
        int q = task->demos[d]->query;
        if (q >= 0 && q < task->num_train && ++per_query[q] > capacity) capacity = per_query[q];
    }
    free(per_query);
    ReplayBuffer *rb = replay_new(task->num_train, capacity, task->max_len);
    for (int d = 0; d < task->num_demos; d++) replay_add(rb, task->demos[d]);
    return rb;
}

int replay_query(const ReplayBuffer *rb, Rng *rng) {
    return rb->num_filled ? rb->filled[rng_below(rng, rb->num_filled)] : -1;
}

const Traj *replay_sample(const ReplayBuffer *rb, int query, Rng *rng) {
    int count = rb->count[query];
    if (count == 0) return NULL;
    Traj *const *items = rb->items + (size_t)query * rb->capacity;
    double top = traj_final_log_r(items[0]), total = 0;   // sorted: items[0] is the max
    for (int i = 0; i < count; i++) total += exp(traj_final_log_r(items[i]) - top);
    double u = rng_uniform(rng) * total;
    for (int i = 0; i < count; i++) {
        u -= exp(traj_final_log_r(items[i]) - top);
        if (u < 0) return items[i];
    }
    return items[count - 1];
}

// ----------------------------------------------------------------------------------------------
// The policy: the LM's softmax restricted to the allowed tokens. Disallowed logits are -inf, so
// their probability and their gradient are exactly zero.

void masked_log_softmax(const float *logits, const unsigned char *allowed, int V, float *logp) {
    float max = -INFINITY;
    for (int v = 0; v < V; v++) if (allowed[v] && logits[v] > max) max = logits[v];
    double sum = 0;
    for (int v = 0; v < V; v++) if (allowed[v]) sum += exp((double)logits[v] - max);
    float log_norm = max + (float)log(sum);
    for (int v = 0; v < V; v++) logp[v] = allowed[v] ? logits[v] - log_norm : -INFINITY;
}

// Where each state of a trajectory sits in the teacher-forced row prompt + tokens: state i (after
// action i and the tokens its tool call inserted) is read at the logits of its last token.
// pos (nact + 1), and ntok_at (nact + 1): tokens after the prompt at state i.
static void traj_states(const Traj *t, int prompt_len, int *pos, int *ntok_at) {
    int k = 0;
    pos[0] = prompt_len - 1;
    ntok_at[0] = 0;
    for (int j = 0; j < t->ntok; j++) {
        if (!t->forced[j]) k++;
        if (j + 1 == t->ntok || !t->forced[j + 1]) { pos[k] = prompt_len + j; ntok_at[k] = j + 1; }
    }
}

// The token of action k (1-based) in t->tokens.
static int traj_action_token(const Traj *t, int k) {
    for (int j = 0, seen = 0; j < t->ntok; j++)
        if (!t->forced[j] && ++seen == k) return t->tokens[j];
    return -1;
}

// The allowed set at state `nact` (actions taken), which has `ntok` tokens after the prompt (more
// than nact where a tool inserted some). The sampler (sampler_mask 1) masks ⊤ before the minimum
// length, counted in actions like the objectives' states, and so does training with a learned
// root flow; training with the official floor (--short-states floor, sampler_mask 0) keeps it —
// every prefix is terminable, with lr = −99 there. At the maximum length (in tokens: the
// context's room) only ⊤ is left.
static void state_mask(const Task *task, int V, int ntok, int nact, int sampler_mask, unsigned char *mask) {
    if (ntok >= task->max_len) {
        memset(mask, 0, (size_t)V);
        mask[task->terminator] = 1;
        return;
    }
    memcpy(mask, task->allowed, (size_t)V);
    mask[task->terminator] = !(sampler_mask && nact < task->min_len);
}

int gfn_prefix_sharing = 1;

// The prompt tokens that every row of a teacher-forced batch starts with and that run once
// (gpt_forward_shared): the longest common prefix of the rows' prompts, short of each row's last
// prompt token, whose logits are state 0's. 0 when sharing is off (gfn_prefix_sharing = 0 or
// GFN_NO_PREFIX_SHARE set to anything but 0).
int gfn_prefix_sharing_enabled(void) {
    const char *off = getenv("GFN_NO_PREFIX_SHARE");
    return gfn_prefix_sharing && !(off && *off && strcmp(off, "0"));
}

static int shared_prompt_len(Task *task, Traj *const *t, int n) {
    if (!gfn_prefix_sharing_enabled()) return 0;
    int common;
    const int *first = task->prompt(task, t[0]->query, &common);
    common--;
    for (int r = 1; r < n && common > 0; r++) {
        int plen, j = 0;
        const int *prompt = task->prompt(task, t[r]->query, &plen);
        while (j < common && j < plen - 1 && prompt[j] == first[j]) j++;
        common = j;
    }
    return common > 0 ? common : 0;
}

// One teacher-forced forward of the trajectories: rows prompt + tokens, right-padded with ⊤
// (causal attention: padding never influences earlier positions), their first P =
// shared_prompt_len tokens run once. Returns the logits (n, T, V) of positions P..P+T-1 of the
// rows; *T_out = T.
static float *teacher_forward(GPT *model, Task *task, Traj *const *t, int n, int *T_out) {
    int P = shared_prompt_len(task, t, n), T = 1;
    for (int r = 0; r < n; r++) {
        int plen;
        task->prompt(task, t[r]->query, &plen);
        if (plen + t[r]->ntok - P > T) T = plen + t[r]->ntok - P;
    }
    int *inputs = gfn_malloc(sizeof(int) * (size_t)n * (size_t)T);   // (n, T) the rows after the shared prefix
    for (int r = 0; r < n; r++) {
        int plen;
        const int *prompt = task->prompt(task, t[r]->query, &plen);
        int *row = inputs + (size_t)r * T;
        for (int j = 0; j < T; j++) row[j] = task->terminator;
        memcpy(row, prompt + P, sizeof(int) * (size_t)(plen - P));
        memcpy(row + plen - P, t[r]->tokens, sizeof(int) * (size_t)t[r]->ntok);
    }
    int plen0;
    float *logits = gpt_forward_shared(model, task->prompt(task, t[0]->query, &plen0), P, inputs, n, T);
    free(inputs);
    *T_out = T;
    return logits;
}

// lf and lt of every trajectory from the logits of teacher_forward, under the training mask
// (sampler_mask 0) or the sampler's (1). A state at the maximum length has lt = 0 (⊤ forced).
static void logprobs_from_logits(const float *logits, int T, Task *task, Traj *const *t, int n,
                                 int stride, int sampler_mask, float *log_pf, float *log_pterm) {
    int V = gpt_config(task->base).vocab_size;
    float *logp = gfn_malloc(sizeof(float) * (size_t)V);                 // (V)
    unsigned char *mask = gfn_malloc((size_t)V);                           // (V)
    int *pos = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 2));      // (nact + 1)
    int *ntok_at = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 2));  // (nact + 1)
    int P = shared_prompt_len(task, t, n);   // logits row j is position P + j
    for (int r = 0; r < n; r++) {
        int plen;
        task->prompt(task, t[r]->query, &plen);
        traj_states(t[r], plen - P, pos, ntok_at);
        float *lf = log_pf + (size_t)r * stride, *lt = log_pterm + (size_t)r * stride;
        for (int i = 0; i <= t[r]->nact; i++) {
            state_mask(task, V, ntok_at[i], i, sampler_mask, mask);
            masked_log_softmax(logits + ((size_t)r * T + pos[i]) * V, mask, V, logp);
            lt[i] = logp[task->terminator];
            if (i < t[r]->nact) lf[i] = logp[traj_action_token(t[r], i + 1)];
        }
    }
    free(logp); free(mask); free(pos); free(ntok_at);
}

float *policy_logprobs(GPT *policy, Task *task, Traj *const *t, int n, int stride, int mask_short,
                       float *log_pf, float *log_pterm, int *T_out) {
    float *logits = teacher_forward(policy, task, t, n, T_out);
    logprobs_from_logits(logits, *T_out, task, t, n, stride, mask_short, log_pf, log_pterm);
    return logits;
}

// Teacher forcing, then the chain rule through the masked log-softmax: at a state with
// probabilities π over the allowed tokens, d log π_a / d logit_v = 1[v = a] − π_v, so
//   dlogits_v = g_v − (Σ_a g_a) π_v  for allowed v, 0 otherwise,
// where g_a is the loss gradient of the log-probability of token a read at that state (the
// action's lf and ⊤'s lt). A forced ⊤ (lt = 0 at the maximum) is a constant and a masked one
// (−inf before the minimum) is no variable: no gradient.
// Then one gpt_backward; gradients accumulate into the model's / LoRA's grads. `logits`
// (n, T, V) are those policy_logprobs returned; they are overwritten by dlogits.
void policy_backward(GPT *policy, Task *task, Traj *const *t, int n, int stride, int mask_short,
                     float *logits, int T, const float *d_pf, const float *d_pterm) {
    int V = gpt_config(policy).vocab_size;
    float *logp = gfn_malloc(sizeof(float) * (size_t)V);
    unsigned char *mask = gfn_malloc((size_t)V);
    unsigned char *is_state = gfn_calloc((size_t)n * (size_t)T, 1);           // (n, T)
    int *pos = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 2));
    int *ntok_at = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 2));
    int P = shared_prompt_len(task, t, n);   // logits row j is position P + j
    for (int r = 0; r < n; r++) {
        int plen;
        task->prompt(task, t[r]->query, &plen);
        traj_states(t[r], plen - P, pos, ntok_at);
        for (int i = 0; i <= t[r]->nact; i++) {
            float *row = logits + ((size_t)r * T + pos[i]) * V;
            is_state[(size_t)r * T + pos[i]] = 1;
            state_mask(task, V, ntok_at[i], i, mask_short, mask);
            masked_log_softmax(row, mask, V, logp);
            float g_term = ntok_at[i] >= task->max_len || !mask[task->terminator] ? 0.0f : d_pterm[(size_t)r * stride + i];
            float g_act = i < t[r]->nact ? d_pf[(size_t)r * stride + i] : 0.0f;
            int act = i < t[r]->nact ? traj_action_token(t[r], i + 1) : -1;
            float g_sum = g_term + g_act;
            for (int v = 0; v < V; v++) row[v] = mask[v] ? -g_sum * expf(logp[v]) : 0.0f;
            row[task->terminator] += g_term;
            if (act >= 0) row[act] += g_act;
        }
    }
    for (size_t p = 0; p < (size_t)n * (size_t)T; p++)   // rows that are no state: zero gradient
        if (!is_state[p]) memset(logits + p * V, 0, sizeof(float) * (size_t)V);
    gpt_backward(policy, logits);
    free(logp); free(mask); free(is_state); free(pos); free(ntok_at);
}

// ----------------------------------------------------------------------------------------------
// Sampling: B trajectories at once with the KV cache, each row at its own position.

// Draws a token from one logits row restricted to `mask`, with temperature, top-k and top-p.
// cand and prob are (V) scratch.
static int cmp_prob_desc(const void *a, const void *b) {
    float x = ((const float *)a)[1], y = ((const float *)b)[1];
    return (x < y) - (x > y);
}

int sample_token(const float *logits, const unsigned char *mask, int V, const SamplerConfig *cfg,
                        float *pairs, Rng *rng) {
    // pairs (V, 2): token id and its probability, for the allowed tokens only
    if (cfg->explore > 0 && rng_uniform(rng) < cfg->explore) {   // the uniform part of the mixture
        int m = 0;
        for (int v = 0; v < V; v++) m += mask[v] != 0;
        int pick = rng_below(rng, m);
        for (int v = 0; v < V; v++) if (mask[v] && pick-- == 0) return v;
    }
    if (cfg->temperature <= 0) {   // greedy: the most likely allowed token
        int best = -1;
        for (int v = 0; v < V; v++) if (mask[v] && (best < 0 || logits[v] > logits[best])) best = v;
        return best;
    }
    int m = 0;
    float max = -INFINITY, temp = cfg->temperature;
    for (int v = 0; v < V; v++)
        if (mask[v]) { pairs[2 * m] = (float)v; pairs[2 * m + 1] = logits[v] / temp; if (pairs[2 * m + 1] > max) max = pairs[2 * m + 1]; m++; }
    double total = 0;
    for (int i = 0; i < m; i++) { pairs[2 * i + 1] = expf(pairs[2 * i + 1] - max); total += pairs[2 * i + 1]; }
    int keep = m;
    if ((cfg->top_k > 0 && cfg->top_k < m) || (cfg->top_p > 0 && cfg->top_p < 1)) {
        qsort(pairs, (size_t)m, 2 * sizeof(float), cmp_prob_desc);
        if (cfg->top_k > 0 && cfg->top_k < keep) keep = cfg->top_k;
        if (cfg->top_p > 0 && cfg->top_p < 1) {   // smallest prefix whose mass reaches top_p
            double mass = 0;
            for (int i = 0; i < keep; i++) {
                mass += pairs[2 * i + 1] / total;
                if (mass >= cfg->top_p) { keep = i + 1; break; }
            }
        }
        total = 0;
        for (int i = 0; i < keep; i++) total += pairs[2 * i + 1];
    }
    double u = rng_uniform(rng) * total;
    for (int i = 0; i < keep; i++) {
        u -= pairs[2 * i + 1];
        if (u < 0) return (int)pairs[2 * i];
    }
    return (int)pairs[2 * (keep - 1)];
}

// Appends action `token` to t, then what the task's tool inserts after it (context, not actions):
// those forced tokens also go to the row's feed queue (queue_len grows). forced: (max_len) scratch.
static void traj_append_action(Task *task, Traj *t, int token, int *queue, int *queue_len, int *forced) {
    t->tokens[t->ntok] = token;
    t->forced[t->ntok] = 0;
    t->ntok++;
    t->nact++;
    if (!task->tool || t->ntok >= task->max_len) return;
    int k = task->tool(task, t->query, t->tokens, t->ntok, forced, task->max_len - t->ntok);
    for (int i = 0; i < k; i++) {
        t->tokens[t->ntok] = forced[i];
        t->forced[t->ntok] = 1;
        t->ntok++;
        queue[(*queue_len)++] = forced[i];
    }
}

static int longest_prompt(Task *task, const int *queries, int n) {
    int longest = 0;
    for (int i = 0; i < n; i++) {
        int plen;
        task->prompt(task, queries[i], &plen);
        if (plen > longest) longest = plen;
    }
    return longest;
}

void sample_trajectories(GPT *policy, Task *task, const int *queries, Traj **out, int n,
                         const SamplerConfig *cfg, Rng *rng) {
    int V = gpt_config(policy).vocab_size, max_plen = longest_prompt(task, queries, n);
    int cache_len = max_plen + task->max_len + 1;
    KVCache *cache = kv_cache_new(policy, n, cache_len);
    int *feed = gfn_malloc(sizeof(int) * (size_t)n);          // (n) token fed this step, or -1
    int *pos = gfn_malloc(sizeof(int) * (size_t)n);           // (n) its position
    int *queue = gfn_malloc(sizeof(int) * (size_t)n * (size_t)cache_len);   // (n, cache_len) to feed
    int *queue_head = gfn_calloc((size_t)n, sizeof(int)), *queue_len = gfn_calloc((size_t)n, sizeof(int));
    int *done = gfn_calloc((size_t)n, sizeof(int));
    float *logits = gfn_malloc(sizeof(float) * (size_t)n * (size_t)V);      // (n, V) latest per row
    float *pairs = gfn_malloc(sizeof(float) * 2 * (size_t)V);
    unsigned char *mask = gfn_malloc((size_t)V);
    int *forced = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 1));

    // The prompts' longest common prefix (a few-shot prompt, "Question: ", or the whole prompt of
    // a one-query task) is prefilled once, in row 0, and its keys and values copied to the other
    // rows; the rest of each prompt runs as one batched forward of all rows reading that prefix
    // (gpt_forward_cached, tails right-padded: a padded position's keys are overwritten by the
    // row's first token there before anything reads them). With prefix sharing off (the earlier
    // path) the rest goes through the queue, one decode step per token; with no common prefix
    // every row starts from its queue, so its logits are first set by a decode step.
    int common;
    const int *first = task->prompt(task, queries[0], &common);
    for (int b = 1; b < n; b++) {
        int plen, j = 0;
        const int *prompt = task->prompt(task, queries[b], &plen);
        while (j < common && j < plen && prompt[j] == first[j]) j++;
        common = j;
    }
    int tails = common > 0 && gfn_prefix_sharing_enabled(), tail_len = 0;   // tails: one forward
    for (int b = 0; b < n; b++) {
        int plen;
        const int *prompt = task->prompt(task, queries[b], &plen);
        if (!tails) for (int j = common; j < plen; j++) queue[(size_t)b * cache_len + queue_len[b]++] = prompt[j];
        if (plen - common > tail_len) tail_len = plen - common;
        out[b]->query = queries[b];
        out[b]->ntok = out[b]->nact = 0;
        pos[b] = tails ? plen : common;
    }
    if (common > 0) {
        float *prefill = gpt_prefill(policy, cache, first, 1, common);   // (1, common, V)
        for (int b = 0; b < n; b++) {
            kv_cache_copy_row(cache, b, 0, common);
            memcpy(logits + (size_t)b * V, prefill + (size_t)(common - 1) * V, sizeof(float) * (size_t)V);
        }
    }
    if (tails && tail_len > 0) {
        int *inputs = gfn_malloc(sizeof(int) * (size_t)n * tail_len);   // (n, tail_len)
        int *rows = gfn_malloc(sizeof(int) * 3 * (size_t)n), *lens = rows + n, *store = rows + 2 * n;   // (n) each
        for (int b = 0; b < n; b++) {
            int plen;
            const int *prompt = task->prompt(task, queries[b], &plen);
            for (int j = 0; j < tail_len; j++) inputs[(size_t)b * tail_len + j] = common + j < plen ? prompt[common + j] : task->terminator;
            rows[b] = 0;        // every row reads the common prefix in row 0 ...
            lens[b] = common;
            store[b] = b;       // ... and keeps its tail's keys and values in its own row
        }
        float *tail_logits = gpt_forward_cached(policy, cache, rows, lens, inputs, n, tail_len, store);   // (n, tail_len, V)
        for (int b = 0; b < n; b++)   // a row without a tail keeps the prefill's logits
            if (pos[b] > common)
                memcpy(logits + (size_t)b * V, tail_logits + ((size_t)b * tail_len + pos[b] - common - 1) * V, sizeof(float) * (size_t)V);
        free(inputs); free(rows);
    }

    for (;;) {
        int active = 0;
        for (int b = 0; b < n; b++) {
            feed[b] = -1;
            if (done[b]) continue;
            Traj *t = out[b];
            if (queue_head[b] < queue_len[b]) {            // prompt tail or forced tokens first
                feed[b] = queue[(size_t)b * cache_len + queue_head[b]++];
            } else {                                       // a state: the policy acts
                state_mask(task, V, t->ntok, t->nact, 1, mask);
                int token = sample_token(logits + (size_t)b * V, mask, V, cfg, pairs, rng);
                if (token == task->terminator) { done[b] = 1; continue; }
                feed[b] = token;
                traj_append_action(task, t, token, queue + (size_t)b * cache_len, &queue_len[b], forced);
            }
            active++;
        }
        if (!active) break;
        gpt_decode_step(policy, cache, feed, pos, logits);
        for (int b = 0; b < n; b++) if (feed[b] >= 0) pos[b]++;
    }
    kv_cache_free(cache);
    free(feed); free(pos); free(queue); free(queue_head); free(queue_len); free(done);
    free(logits); free(pairs); free(mask); free(forced);
}

// ----------------------------------------------------------------------------------------------
// Exact distributions of enumerable tasks (no tool hook): every Z of min_len..max_len actions
// over the allowed tokens other than ⊤, shortest first, each length in lexicographic order.

int enumerate_z(const Task *task, int *z_out, int *len_out, int max_count) {
    int V = gpt_config(task->base).vocab_size, A = 0;
    int *alphabet = gfn_malloc(sizeof(int) * (size_t)V);
    for (int v = 0; v < V; v++) if (task->allowed[v] && v != task->terminator) alphabet[A++] = v;
    int count = 0;
    int *digit = gfn_calloc((size_t)task->max_len + 1, sizeof(int));
    for (int len = task->min_len; len <= task->max_len; len++) {
        memset(digit, 0, sizeof(int) * (size_t)(len + 1));
        for (;;) {
            if (count < max_count) {
                for (int k = 0; k < len; k++) z_out[(size_t)count * task->max_len + k] = alphabet[digit[k]];
                len_out[count] = len;
            }
            count++;
            int k = len - 1;   // odometer increment, last position fastest
            while (k >= 0 && ++digit[k] == A) digit[k--] = 0;
            if (k < 0) break;
        }
    }
    free(digit); free(alphabet);
    return count;
}

// log q(Z ⊤) = Σ_k log q(z_k | X z_<k) + log q(⊤ | X Z) under the sampler's own masking at T = 1,
// from teacher-forced forwards of at most 64 trajectories each.
void policy_sequence_logq(GPT *policy, Task *task, Traj *const *t, int n, float *log_q) {
    const int chunk = 64;
    int stride = task->max_len + 1;
    float *lf = gfn_malloc(sizeof(float) * (size_t)chunk * stride);   // (chunk, stride) log q of each action
    float *lt = gfn_malloc(sizeof(float) * (size_t)chunk * stride);   // (chunk, stride) log q(⊤) at each state
    for (int start = 0; start < n; start += chunk) {
        int m = n - start < chunk ? n - start : chunk, T;
        float *logits = teacher_forward(policy, task, t + start, m, &T);
        logprobs_from_logits(logits, T, task, t + start, m, stride, 1, lf, lt);
        for (int i = 0; i < m; i++) {
            double sum = lt[(size_t)i * stride + t[start + i]->nact];
            for (int k = 0; k < t[start + i]->nact; k++) sum += lf[(size_t)i * stride + k];
            log_q[start + i] = (float)sum;
        }
    }
    free(lf); free(lt);
}

void policy_exact_logq(GPT *policy, Task *task, int query, const int *z, const int *len, int count,
                       float *log_q) {
    enum { CHUNK = 64 };
    Traj *t[CHUNK];
    for (int i = 0; i < CHUNK; i++) t[i] = traj_new(task->max_len);
    for (int start = 0; start < count; start += CHUNK) {
        int m = count - start < CHUNK ? count - start : CHUNK;
        for (int i = 0; i < m; i++) {
            t[i]->query = query;
            t[i]->ntok = t[i]->nact = len[start + i];
            memcpy(t[i]->tokens, z + (size_t)(start + i) * task->max_len, sizeof(int) * (size_t)t[i]->ntok);
            memset(t[i]->forced, 0, (size_t)t[i]->ntok);
        }
        policy_sequence_logq(policy, task, t, m, log_q + start);
    }
    for (int i = 0; i < CHUNK; i++) traj_free(t[i]);
}

// ----------------------------------------------------------------------------------------------
// Decoding strategies. Greedy (T = 0), plain and tempered sampling, top-k and nucleus (top-p)
// sampling are sample_trajectories with a SamplerConfig. Beam search and diverse beam search
// (Vijayakumar et al. 2016, as Hugging Face's group beam search) are here: searches for the Z with
// the highest log q(Z ⊤) at T = 1, under the sampler's masks, lengths and tool hook, with the
// beams of every prompt as rows of one KV cache.
//
// The score of a hypothesis is Σ log q over its actions and its ⊤ (no length penalty). Pruning is
// exact: a hypothesis is finished when it takes ⊤; log q <= 0, so an open beam's score only falls,
// and a group stops when it holds its quota of finished hypotheses and no open beam beats the last.
// Diverse beam search splits the n beams into G groups of W = n / G; at each step the groups
// choose in order, and in group g a token's log q is lowered by λ × the number of beams of groups
// 0..g-1 that continued with that token at this step (HF's count; ⊤ never counts). A group ranks
// by these penalised sums (they only fall, too); the hypotheses carry their plain log q as score.

// One open extension of a beam: its parent (the beam's index in its group), the token, the
// penalised rank score and the plain log q.
typedef struct { double rank, log_q; int parent, token; } BeamCandidate;

static int cmp_candidate(const void *a, const void *b) {
    const BeamCandidate *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? 1 : -1;   // best first, then a fixed order
    if (x->parent != y->parent) return x->parent - y->parent;
    return x->token - y->token;
}

// The k best tokens by score (finite ones only), best first, the lower id first among equals.
// top: (k); returns how many were found.
static int best_tokens(const float *score, int V, int k, int *top) {
    int m = 0;
    for (int v = 0; v < V; v++) {
        if (score[v] == -INFINITY || (m == k && score[v] <= score[top[m - 1]])) continue;
        int i = m < k ? m++ : k - 1;          // insertion sort into top[0..m)
        while (i > 0 && score[top[i - 1]] < score[v]) { top[i] = top[i - 1]; i--; }
        top[i] = v;
    }
    return m;
}

// Offers a finished hypothesis (t followed by ⊤) to a group's list of the best `width`: slot
// (width) trajectories with their rank and log q, *count filled, best first; equal ranks keep the
// earlier one first.
static void offer_finished(Traj **slot, double *rank, double *log_q, int *count, int width,
                          const Traj *t, double t_rank, double t_log_q) {
    int at = *count;
    while (at > 0 && rank[at - 1] < t_rank) at--;
    if (at == width) return;
    if (*count < width) (*count)++;
    for (int i = *count - 1; i > at; i--) {
        traj_copy(slot[i], slot[i - 1]);
        rank[i] = rank[i - 1];
        log_q[i] = log_q[i - 1];
    }
    traj_copy(slot[at], t);
    rank[at] = t_rank;
    log_q[at] = t_log_q;
}

// Feeds every row's queued tokens, one decode step per token, until all queues are empty; the
// logits (R, V) of each fed row are then those after its last token. queue: (R, cap).
static void feed_queues(GPT *policy, KVCache *cache, int R, const int *queue, int cap, int *queue_len,
                        int *pos, int *feed, float *logits) {
    for (int step = 0;; step++) {
        int any = 0;
        for (int r = 0; r < R; r++) {
            feed[r] = step < queue_len[r] ? queue[(size_t)r * cap + step] : -1;
            any |= feed[r] >= 0;
        }
        if (!any) break;
        gpt_decode_step(policy, cache, feed, pos, logits);
        for (int r = 0; r < R; r++) if (feed[r] >= 0) pos[r]++;
    }
    memset(queue_len, 0, sizeof(int) * (size_t)R);
}

// Beam search over a batch of prompts whose rows (num_queries × n) all share one KV cache.
static void beam_search_batch(GPT *policy, Task *task, const int *queries, int num_queries, const BeamConfig *cfg,
                              Traj **out, float *log_q, int *count) {
    int V = gpt_config(policy).vocab_size, n = cfg->beams, G = cfg->groups;
    // row of beam j of group g of prompt p: (p G + g) W + j
    int W = n / G, R = num_queries * n, max_plen = longest_prompt(task, queries, num_queries);
    int cap = max_plen + task->max_len + 1;
    KVCache *cache = kv_cache_new(policy, R, cap);
    Traj **beam = gfn_malloc(sizeof(Traj *) * (size_t)R);       // (R) the open beams
    Traj **next = gfn_malloc(sizeof(Traj *) * (size_t)R);       // (R) the beams being selected
    for (int r = 0; r < R; r++) { beam[r] = traj_new(task->max_len); next[r] = traj_new(task->max_len); }
    int *is_open = gfn_calloc((size_t)R, sizeof(int));          // (R)
    double *rank = gfn_malloc(sizeof(double) * (size_t)R);      // (R) penalised Σ log q of each open beam
    double *lq = gfn_malloc(sizeof(double) * (size_t)R);        // (R) its plain Σ log q
    double *next_rank = gfn_malloc(sizeof(double) * (size_t)R), *next_lq = gfn_malloc(sizeof(double) * (size_t)R);
    int *parent = gfn_malloc(sizeof(int) * (size_t)R);          // (R) row a new beam continues, or -1
    int *next_token = gfn_malloc(sizeof(int) * (size_t)R);      // (R) the action it appends
    int *pos = gfn_calloc((size_t)R, sizeof(int));              // (R) cached positions of each row
    int *next_pos = gfn_malloc(sizeof(int) * (size_t)R);        // (R)
    int *queue = gfn_malloc(sizeof(int) * (size_t)R * cap);     // (R, cap) tokens to feed
    int *queue_len = gfn_calloc((size_t)R, sizeof(int));        // (R)
    int *feed = gfn_malloc(sizeof(int) * (size_t)R);            // (R)
    float *logits = gfn_malloc(sizeof(float) * (size_t)R * V); // (R, V) at each open beam's state
    double *fin_rank = gfn_malloc(sizeof(double) * (size_t)R);  // (R) finished hypotheses, slots as rows
    double *fin_lq = gfn_malloc(sizeof(double) * (size_t)R);    // (R)
    int *fin_count = gfn_calloc((size_t)num_queries * G, sizeof(int));   // (num_queries, G)
    int *chosen = gfn_malloc(sizeof(int) * (size_t)V);          // (V) earlier groups' beams per token, this step
    float *logp = gfn_malloc(sizeof(float) * (size_t)V);        // (V) masked log-softmax of one beam
    float *penalised = gfn_malloc(sizeof(float) * (size_t)V);   // (V) minus the diversity penalty, ⊤ excluded
    unsigned char *mask = gfn_malloc((size_t)V);                // (V)
    int *top = gfn_malloc(sizeof(int) * (size_t)W);             // (W)
    BeamCandidate *cand = gfn_malloc(sizeof(BeamCandidate) * (size_t)W * W);   // (W·W) of one group
    int *forced = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 1));

    // The prompts: fed to the first row of each prompt, whose state then roots every group.
    for (int p = 0; p < num_queries; p++) {
        int plen, r = p * n;
        const int *prompt = task->prompt(task, queries[p], &plen);
        memcpy(queue + (size_t)r * cap, prompt, sizeof(int) * (size_t)plen);
        queue_len[r] = plen;
    }
    feed_queues(policy, cache, R, queue, cap, queue_len, pos, feed, logits);
    for (int r = 0; r < R; r++) parent[r] = r % W == 0 ? r - r % n : -1;
    kv_cache_gather(cache, parent, max_plen);
    for (int r = 0; r < R; r++) {
        if (parent[r] < 0) continue;
        int p = r / n;
        beam[r]->query = queries[p];
        beam[r]->ntok = beam[r]->nact = 0;
        rank[r] = lq[r] = 0;
        pos[r] = pos[parent[r]];
        is_open[r] = 1;
        if (r != parent[r]) memcpy(logits + (size_t)r * V, logits + (size_t)parent[r] * V, sizeof(float) * (size_t)V);
    }

    for (;;) {
        // 1. Selection, prompt by prompt, group by group.
        int any_open = 0;
        for (int r = 0; r < R; r++) parent[r] = -1;
        for (int p = 0; p < num_queries; p++) {
            memset(chosen, 0, sizeof(int) * (size_t)V);
            for (int g = 0; g < G; g++) {
                int base = (p * G + g) * W, m = 0, *fc = &fin_count[p * G + g];
                for (int j = 0; j < W; j++) {
                    int r = base + j;
                    if (!is_open[r]) continue;
                    state_mask(task, V, beam[r]->ntok, beam[r]->nact, 1, mask);
                    masked_log_softmax(logits + (size_t)r * V, mask, V, logp);
                    if (mask[task->terminator])   // ⊤: a finished hypothesis
                        offer_finished(out + base, fin_rank + base, fin_lq + base, fc, W, beam[r],
                                       rank[r] + logp[task->terminator], lq[r] + logp[task->terminator]);
                    for (int v = 0; v < V; v++)
                        penalised[v] = mask[v] && v != task->terminator ? logp[v] - cfg->diversity * (float)chosen[v] : -INFINITY;
                    int k = best_tokens(penalised, V, W, top);   // no other token of r can be among the group's W best
                    for (int i = 0; i < k; i++)
                        cand[m++] = (BeamCandidate){ rank[r] + penalised[top[i]], lq[r] + logp[top[i]], j, top[i] };
                }
                qsort(cand, (size_t)m, sizeof *cand, cmp_candidate);
                // The W best extensions that can still beat the group's W-th finished hypothesis.
                for (int i = 0, kept = 0; i < m && kept < W; i++) {
                    if (*fc == W && cand[i].rank <= fin_rank[base + W - 1]) break;
                    int r = base + kept++;
                    parent[r] = base + cand[i].parent;
                    next_token[r] = cand[i].token;
                    next_rank[r] = cand[i].rank;
                    next_lq[r] = cand[i].log_q;
                    chosen[cand[i].token]++;
                    any_open = 1;
                }
            }
        }
        if (!any_open) break;
        // 2. Each new beam takes its parent's state: keys and values, tokens, position.
        int cached = 0;
        for (int r = 0; r < R; r++) if (parent[r] >= 0 && pos[parent[r]] > cached) cached = pos[parent[r]];
        kv_cache_gather(cache, parent, cached);
        for (int r = 0; r < R; r++) if (parent[r] >= 0) { traj_copy(next[r], beam[parent[r]]); next_pos[r] = pos[parent[r]]; }
        for (int r = 0; r < R; r++) {
            is_open[r] = parent[r] >= 0;
            if (!is_open[r]) continue;
            Traj *swap = beam[r]; beam[r] = next[r]; next[r] = swap;
            pos[r] = next_pos[r];
            rank[r] = next_rank[r];
            lq[r] = next_lq[r];
        }
        // 3. Then appends its action (and the tool's output) and feeds them.
        for (int r = 0; r < R; r++) {
            if (!is_open[r]) continue;
            queue[(size_t)r * cap] = next_token[r];
            queue_len[r] = 1;
            traj_append_action(task, beam[r], next_token[r], queue + (size_t)r * cap, &queue_len[r], forced);
        }
        feed_queues(policy, cache, R, queue, cap, queue_len, pos, feed, logits);
    }

    // The finished hypotheses of each prompt, group after group, moved to the front of its n slots.
    for (int p = 0; p < num_queries; p++) {
        int c = 0;
        for (int g = 0; g < G; g++)
            for (int i = 0; i < fin_count[p * G + g]; i++, c++) {
                int from = (p * G + g) * W + i, to = p * n + c;
                if (to != from) traj_copy(out[to], out[from]);
                log_q[to] = (float)fin_lq[from];
            }
        count[p] = c;
    }
    kv_cache_free(cache);
    for (int r = 0; r < R; r++) { traj_free(beam[r]); traj_free(next[r]); }
    free(beam); free(next); free(is_open); free(rank); free(lq); free(next_rank); free(next_lq);
    free(parent); free(next_token); free(pos); free(next_pos); free(queue); free(queue_len); free(feed);
    free(logits); free(fin_rank); free(fin_lq); free(fin_count); free(chosen); free(logp); free(penalised);
    free(mask); free(top); free(cand); free(forced);
}

// Prompts go in batches of at most BEAM_MAX_ROWS rows (at least one prompt), which bounds the KV
// cache; each row's arithmetic does not depend on the others, so batching changes no bit.
#define BEAM_MAX_ROWS 256
void beam_search(GPT *policy, Task *task, const int *queries, int num_queries, const BeamConfig *cfg,
                 Traj **out, float *log_q, int *count) {
    int n = cfg->beams, G = cfg->groups;
    if (n < 1 || G < 1 || n % G || !(cfg->diversity >= 0) || num_queries < 1) {
        fprintf(stderr, "gfn: beam_search: %d beams in %d groups, diversity %g, %d prompts: need beams a "
                "multiple of groups, diversity >= 0\n", n, G, cfg->diversity, num_queries);
        exit(1);
    }
    int per_batch = BEAM_MAX_ROWS / n > 1 ? BEAM_MAX_ROWS / n : 1;
    for (int p = 0; p < num_queries; p += per_batch) {
        int m = num_queries - p < per_batch ? num_queries - p : per_batch;
        beam_search_batch(policy, task, queries + p, m, cfg, out + (size_t)p * n, log_q + (size_t)p * n, count + p);
    }
}

// ----------------------------------------------------------------------------------------------
// Training

const char *const loss_names[] = { "subtb", "tb", "db", "vargrad", "sft", "reinforce" };
const char *const short_state_names[] = { "learned", "floor", "batch" };

void train_config_default(TrainConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->loss = LOSS_SUBTB;
    cfg->steps = 200;
    cfg->batch = 16;
    cfg->samples_per_query = 16;
    cfg->accum = 1;
    cfg->lr = loss_default_lr(cfg->loss);
    cfg->lr_min = 0;
    cfg->lr_log_z = 0.1f;
    cfg->warmup = 20;
    cfg->weight_decay = 0;
    cfg->clip = 1.0f;
    cfg->lora_rank = 64;
    cfg->lora_alpha = 16;
    cfg->lora_targets[LORA_ATTN_QKV] = cfg->lora_targets[LORA_ATTN_PROJ] = 1;
    cfg->lora_targets[LORA_MLP_FC] = cfg->lora_targets[LORA_MLP_PROJ] = 1;
    cfg->frac_on_policy = 0.25f;
    cfg->frac_tempered = 0.5f;
    cfg->temp_lo = 0.5f;
    cfg->temp_hi = 2.0f;
    cfg->reward_temp_start = cfg->reward_temp_end = 1.0f;
    cfg->reward_temp_horizon = 1;
    cfg->replay_capacity = 50;
    cfg->lambda = 1.0f;
    cfg->short_states = SHORT_LEARNED;
    cfg->short_log_r = -99.0f;
    cfg->seed = 1;
}

float loss_default_lr(LossKind loss) {
    return loss == LOSS_SUBTB || loss == LOSS_DB ? 2e-4f : 5e-4f;
}

GPT *copy_model(GPT *model) {
    GPT *copy = gpt_new_random(gpt_config(model), 0);
    memcpy(gpt_params_memory(copy), gpt_params_memory(model), sizeof(float) * gpt_num_parameters(model));
    return copy;
}

// Reward temperature: T(step) = T_start + (T_end − T_start) · min(1, step / horizon).
static float reward_temperature(const TrainConfig *cfg, int step) {
    float progress = cfg->reward_temp_horizon > 0 ? (float)step / (float)cfg->reward_temp_horizon : 1.0f;
    if (progress > 1) progress = 1;
    return cfg->reward_temp_start + (cfg->reward_temp_end - cfg->reward_temp_start) * progress;
}

// One JSON string, escaped.
static void json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

// One micro-batch in three stages: behave (draw its query and behaviour, then its trajectories:
// sampled, replayed or given), score (the task's reward of the new ones) and learn (replay
// buffer, log q at T = 1 by teacher forcing, the objective's gradient scaled by 1/accum). Only
// behave draws random numbers and only learn writes shared state (buffer, log Z, gradients,
// statistics), so with the stages of one micro-batch in order and behave and learn each in
// micro-batch order, the result is the same whatever runs beside what (gfn_train's pipeline).
typedef struct {
    Traj **traj;            // (batch) its rows
    int *queries;           // (batch)
    Traj **sample_traj;     // (batch) the rows the sampler fills (views into traj)
    int *sample_queries;    // (batch)
    int n;                  // rows this micro-batch uses (1 for a gold one)
    int num_scored;         // rows to score: traj[0..num_scored) (given) or the sampled ones
    int scores_sampled;     // 1: the sampled rows, to be added to the replay buffer after scoring
    int tempered;           // the sampled rows came from the tempered policy
    Rng rng, rng_after;     // a replay micro-batch's generator, and where it must end (pipeline)
    char part[2];           // the pipeline's dependence tokens: the two halves of its scoring
} MicroBatch;

typedef struct {
    MicroBatch *micro;      // (accum) one per micro-batch of a step
    float *lf, *lt, *lr;    // (batch, stride) the learn stage's
    float *dlf, *dlt;       // (batch, stride)
    int *len, *group;       // (batch)
    float *d_log_z;         // (num_train)
    float *batch_root;      // (num_train) --short-states batch: log F(s_0) of the micro-batch's queries
    unsigned char *log_z_known;   // (num_train) 1 once a query's log Z / log F(s_0) was initialised
    int stride;
} TrainScratch;

// What one step did, for the log: rows by behaviour, gold micro-batches, and TB's residuals δ
// (sum and sum of |δ|).
typedef struct {
    long on_policy, tempered, replayed, given, gold;
    double delta, abs_delta;
    long delta_rows;
} StepStats;

// Whether the objective learns log F(s_0) per query: TB's log Z, and SubTB's / DB's root flow
// on a task whose short prefixes cannot stop (loss_subtb says why). The same quantity, log Σ_Z R.
static int learns_root_flow(const TrainConfig *cfg, const Task *task) {
    return cfg->loss == LOSS_TB || ((cfg->loss == LOSS_SUBTB || cfg->loss == LOSS_DB) &&
                                     cfg->short_states == SHORT_LEARNED && task->min_len > 0);
}


// The behaviour's first draws: the micro-batch's queries, whether it is a gold one, and u, which
// picks on-policy, tempered or replay. Returns 1 when the rest of behave reads the replay buffer
// (a replay micro-batch), so that every earlier learn stage must have run first.
static int behave_draw(Task *task, const TrainConfig *cfg, MicroBatch *mb, Rng *rng, int *gold, float *u) {
    int n = cfg->batch, K = cfg->samples_per_query < 1 ? 1 : cfg->samples_per_query;
    for (int i = 0; i < n; i++) {   // K samples per query, queries drawn uniformly
        if (i % K == 0) mb->queries[i] = rng_below(rng, task->num_train);
        else mb->queries[i] = mb->queries[i - 1];
    }
    // A gold micro-batch (--gold-replay, drawn first and only when asked, so that without it the
    // random stream is the one of before): one given Z (the task's demonstration for the drawn
    // query). The objectives average over rows (SubTB over pairs), so this one row weighs exactly
    // as a micro-batch of K copies of it would, at 1/K of the cost, and no sampling or reward of
    // the behaviour rows is spent on it. Gold Z seeded into the replay buffer compete with every
    // sampled Z of their query; this gives them their own, fixed share of the updates.
    *gold = cfg->frac_gold > 0 && task->demonstration && rng_uniform(rng) < cfg->frac_gold;
    // Behaviour policy of this batch: on-policy, tempered, or the replay buffer. REINFORCE is an
    // on-policy estimator, so it always samples from the policy itself.
    *u = cfg->loss == LOSS_REINFORCE || *gold ? 0.0f : rng_uniform(rng);
    return !*gold && cfg->loss != LOSS_SFT && *u >= cfg->frac_on_policy + cfg->frac_tempered;
}

// The rest of behave: the micro-batch's trajectories. `sampler` is the policy or a view of it.
static void behave(Task *task, GPT *sampler, const TrainConfig *cfg, MicroBatch *mb, ReplayBuffer *replay,
                   int gold, float u, Rng *rng, StepStats *stats) {
    int n = cfg->batch, K = cfg->samples_per_query < 1 ? 1 : cfg->samples_per_query;
    float sampled = cfg->frac_on_policy + cfg->frac_tempered;
    int num_sample = 0;
    mb->n = n;
    mb->num_scored = 0;
    mb->scores_sampled = 0;
    if (gold) {
        mb->n = mb->num_scored = 1;
        task->demonstration(task, mb->queries[0], mb->traj[0], rng);
        stats->gold++;
    } else if (cfg->loss == LOSS_SFT) {   // maximum likelihood on given Z, not on the policy's own
        for (int i = 0; i < n; i++) task->demonstration(task, mb->queries[i], mb->traj[i], rng);
        mb->num_scored = n;
        stats->given += n;
    } else if (u >= sampled) {
        // A replay batch draws its queries among those that hold entries (with 1000 questions
        // most have none for most of a run); only while the buffer is empty are rows sampled.
        // (The rows of one query share its draw: an empty buffer makes all K of them sampled rows.)
        for (int i = 0, q = -1; i < n; i++) {
            if (i % K == 0) q = replay_query(replay, rng);
            if (q >= 0) { mb->queries[i] = q; traj_copy(mb->traj[i], replay_sample(replay, q, rng)); stats->replayed++; }
            else { mb->sample_traj[num_sample] = mb->traj[i]; mb->sample_queries[num_sample++] = mb->queries[i]; }
        }
        u = rng_uniform(rng) * sampled;   // the sampled fallback rows: on-policy or tempered, in proportion
    } else {
        for (int i = 0; i < n; i++) { mb->sample_traj[i] = mb->traj[i]; mb->sample_queries[i] = mb->queries[i]; }
        num_sample = n;
    }
    if (num_sample) {
        SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
        mb->tempered = u >= cfg->frac_on_policy;
        if (mb->tempered) {   // the exploring rows: a random temperature, and ε-uniform actions
            sc.temperature = cfg->temp_lo + (cfg->temp_hi - cfg->temp_lo) * rng_uniform(rng);
            sc.explore = cfg->explore;
        }
        sample_trajectories(sampler, task, mb->sample_queries, mb->sample_traj, num_sample, &sc, rng);
        mb->num_scored = num_sample;
        mb->scores_sampled = 1;
        if (mb->tempered) stats->tempered += num_sample; else stats->on_policy += num_sample;
    }
}

// score: untempered log R of every state of the new rows [lo, hi) (replayed ones carry theirs),
// on the task's scorer `scorer` (0 unless the task has several, Task.concurrent_reward). A row's
// log R does not depend on the rows scored with it, so a micro-batch may be scored in parts.
static void score(Task *task, MicroBatch *mb, int scorer, int lo, int hi) {
    if (hi > mb->num_scored) hi = mb->num_scored;
    if (lo >= hi) return;
    Traj *const *rows = (mb->scores_sampled ? mb->sample_traj : mb->traj) + lo;
    if (scorer > 0) task->log_reward_on(task, scorer, rows, hi - lo);
    else task->log_reward(task, rows, hi - lo);
}

// The sampled rows into the replay buffer, after their score, in micro-batch order.
static void remember(MicroBatch *mb, ReplayBuffer *replay) {
    if (mb->scores_sampled)
        for (int i = 0; i < mb->num_scored; i++) replay_add(replay, mb->sample_traj[i]);
}

// learn: the objective's gradient on the micro-batch's rows. Returns the loss.
static float learn(Task *task, GPT *policy, const TrainConfig *cfg, TrainScratch *s, MicroBatch *mb,
                   float *log_z, int step, double *mean_log_r, long *tokens, StepStats *stats) {
    int n = mb->n;
    // Tempered rewards of every state; with the official floor, prefixes shorter than the
    // minimum get a constant (with a learned root flow they are not read).
    int use_floor = cfg->short_states == SHORT_FLOOR;
    float reward_temp = reward_temperature(cfg, step);
    *mean_log_r = 0;
    for (int i = 0; i < n; i++) {
        Traj *t = mb->traj[i];
        s->len[i] = t->nact;
        s->group[i] = t->query;
        *mean_log_r += t->log_r[t->nact] / n;
        *tokens += t->ntok + 1;
        for (int k = 0; k <= t->nact; k++)
            s->lr[(size_t)i * s->stride + k] = use_floor && k < task->min_len ? cfg->short_log_r : t->log_r[k] / reward_temp;
    }
    int T;
    float *logits = policy_logprobs(policy, task, mb->traj, n, s->stride, !use_floor, s->lf, s->lt, &T);
    TrajBatch b = { n, s->stride, s->len, s->lf, s->lt, s->lr, s->group, use_floor ? 0 : task->min_len };
    // The log Z (log F(s_0)) of a query not seen before starts at this batch's VarGrad estimate, so
    // its first residuals average zero instead of being ≈ −log Z_X each; it is then learned.
    if (learns_root_flow(cfg, task)) batch_log_z(&b, log_z, s->log_z_known);
    const float *root = log_z;   // SubTB's / DB's log F(s_0), read below the minimum length
    if (cfg->short_states == SHORT_BATCH && task->min_len > 0) {   // this micro-batch's estimate
        batch_log_z(&b, s->batch_root, NULL);
        root = s->batch_root;
    }
    float *d_root = root == log_z ? s->d_log_z : NULL;
    float loss;
    switch (cfg->loss) {
    case LOSS_TB:
        loss = loss_tb(&b, log_z, s->dlf, s->dlt, s->d_log_z);
        for (int r = 0; r < n; r++) {
            double delta = log_z[b.group[r]] + traj_log_q(&b, r) - b.log_r[(size_t)r * b.stride + b.len[r]];
            stats->delta += delta;
            stats->abs_delta += fabs(delta);
            stats->delta_rows++;
        }
        break;
    case LOSS_DB: loss = loss_db(&b, root, s->dlf, s->dlt, d_root); break;
    case LOSS_VARGRAD: loss = loss_vargrad(&b, task->num_train, s->dlf, s->dlt, NULL); break;
    case LOSS_SFT: loss = loss_sft(&b, s->dlf, s->dlt); break;
    case LOSS_REINFORCE: loss = loss_reinforce(&b, s->dlf, s->dlt); break;
    default: loss = loss_subtb(&b, cfg->lambda, root, s->dlf, s->dlt, d_root); break;
    }
    for (size_t i = 0; i < (size_t)n * s->stride; i++) { s->dlf[i] /= cfg->accum; s->dlt[i] /= cfg->accum; }
    policy_backward(policy, task, mb->traj, n, s->stride, !use_floor, logits, T, s->dlf, s->dlt);
    return loss;
}

int gfn_pipeline = 1;
long gfn_pipeline_steps = 0;

int gfn_pipeline_enabled(void) {
    const char *off = getenv("GFN_NO_PIPELINE");
    return gfn_pipeline && !(off && *off && strcmp(off, "0"));
}

#ifdef _OPENMP
// The random numbers a replay micro-batch's behave draws when the buffer holds entries: a query
// per K rows (replay_query), an entry per row (replay_sample), and the fallback's u; no row is
// sampled (every drawn query has entries). One rng_u64 each.
static int replay_draws(const TrainConfig *cfg) {
    int K = cfg->samples_per_query < 1 ? 1 : cfg->samples_per_query;
    return (cfg->batch + K - 1) / K + cfg->batch + 1;
}

// A replay micro-batch's behave with its own copy of the generator, checked to end where the
// step's generator was advanced to (replay_draws).
static void behave_replay(Task *task, const TrainConfig *cfg, MicroBatch *mb, ReplayBuffer *replay, StepStats *st) {
    Rng rng = mb->rng;
    behave(task, NULL, cfg, mb, replay, 0, 1.0f, &rng, st);
    if (memcmp(&rng, &mb->rng_after, sizeof rng) || mb->num_scored) {
        fprintf(stderr, "gfn: train: a replay micro-batch drew other random numbers than replay_draws counts\n");
        exit(1);
    }
}
#endif

// The micro-batches of one step. In order, each is behave, score, remember (its sampled rows into
// the replay buffer), learn: that is the whole computation, and with one thread (or without
// OpenMP, or without the pipeline) it runs so.
//
// With two or more threads and a task whose reward may run beside its sampling
// (task->concurrent_reward), the step is a pipeline. This thread behaves micro-batch after
// micro-batch, sampling through `sampler` (a view of the policy with activations of its own),
// and leaves the rest to tasks that either thread runs: each micro-batch's score (its two halves
// side by side on the task's two scorers, when it has two), then its remember and its learn. The
// remembers run in micro-batch order (the buffer's content depends on it), the learns too (they
// share log Z, the gradients and the statistics). A replay micro-batch reads the buffer, so its
// behave is a task in the remembers' chain; its random numbers are a known count (replay_draws),
// so this thread skips them in its generator and goes on sampling. Nothing else is shared, so
// every number is the one of the plain order, for any number of threads. The grain is whole
// stages, milliseconds each: the threads meet a few times a step instead of in every matrix
// product, which is what lets two threads beat one on this small model and keeps a busy machine
// from stalling them (issue 13). Inside the stages the products use the threads left over
// (nested regions of threads / 2).
static double train_step_micro(Task *task, GPT *policy, GPT *sampler, const TrainConfig *cfg, TrainScratch *s,
                               ReplayBuffer *replay, float *log_z, int step, Rng *rng,
                               double *mean_log_r, long *tokens, StepStats *st) {
    int accum = cfg->accum, threads = 1;
    double loss = 0, mlr_sum = 0;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#else
    (void)sampler;
#endif
    if (threads < 2 || !task->concurrent_reward || !gfn_pipeline_enabled()) {
        for (int m = 0; m < accum; m++) {
            MicroBatch *mb = &s->micro[m];
            int gold;
            float u;
            double mlr;
            behave_draw(task, cfg, mb, rng, &gold, &u);
            behave(task, policy, cfg, mb, replay, gold, u, rng, st);
            score(task, mb, 0, 0, mb->num_scored);
            remember(mb, replay);
            loss += learn(task, policy, cfg, s, mb, log_z, step, &mlr, tokens, st) / accum;
            mlr_sum += mlr / accum;
        }
        *mean_log_r = mlr_sum;
        return loss;
    }
#ifdef _OPENMP
    int inner = threads / 2, levels = omp_get_max_active_levels();
    int scorers = task->concurrent_reward > 1 && task->log_reward_on ? 2 : 1;   // two are enough for two threads
    if (inner > 1) omp_set_max_active_levels(2);
    char scorer_free[2], buffer, learns;   // dependence tokens: each scorer, the buffer, the learns
    int filled = replay->num_filled > 0;   // read before any task runs; filled queries stay filled
    gfn_pipeline_steps++;
    #pragma omp parallel num_threads(2)
    #pragma omp single
    {
        omp_set_num_threads(inner);   // for this thread's stages and, inherited, the tasks'
        for (int m = 0; m < accum; m++) {
            MicroBatch *mb = &s->micro[m];
            int gold, deferred = 0;
            float u;
            if (behave_draw(task, cfg, mb, rng, &gold, &u)) {   // a replay micro-batch
                if (filled) {   // its draws are replay_draws; its rows carry their rewards: no score
                    mb->rng = *rng;
                    for (int d = replay_draws(cfg); d > 0; d--) rng_u64(rng);
                    mb->rng_after = *rng;
                    deferred = 1;
                    #pragma omp task firstprivate(mb) depend(inout: buffer) depend(out: mb->part[0], mb->part[1])
                    behave_replay(task, cfg, mb, replay, st);
                } else {   // empty: its rows are sampled, which needs the generator in order
                    #pragma omp taskwait
                    behave(task, sampler, cfg, mb, replay, gold, u, rng, st);
                }
            } else {
                behave(task, sampler, cfg, mb, replay, gold, u, rng, st);
            }
            if (deferred) {
                // nothing to score
            } else if (scorers > 1) {   // each half of the rows on its own scorer
                int half = (mb->num_scored + 1) / 2;
                #pragma omp task firstprivate(mb, half) depend(inout: scorer_free[0]) depend(inout: mb->part[0])
                score(task, mb, 0, 0, half);
                #pragma omp task firstprivate(mb, half) depend(inout: scorer_free[1]) depend(inout: mb->part[1])
                score(task, mb, 1, half, mb->num_scored);
            } else {
                #pragma omp task firstprivate(mb) depend(inout: scorer_free[0]) depend(inout: mb->part[0])
                score(task, mb, 0, 0, mb->num_scored);
            }
            #pragma omp task firstprivate(mb) depend(in: mb->part[0], mb->part[1]) depend(inout: buffer)
            remember(mb, replay);
            #pragma omp task firstprivate(mb) depend(in: mb->part[0], mb->part[1]) depend(inout: learns) shared(loss, mlr_sum)
            {
                double mlr;
                loss += learn(task, policy, cfg, s, mb, log_z, step, &mlr, tokens, st) / accum;
                mlr_sum += mlr / accum;
            }
        }
    }
    omp_set_max_active_levels(levels);
    (void)scorer_free; (void)buffer; (void)learns;
#endif
    *mean_log_r = mlr_sum;
    return loss;
}

// One point of the learning curve: the task's curve values after `step` optimizer steps, as a line
// "curve STEP name value ..." on cfg->curve_out and a JSONL line {"curve_step": STEP, name: value}.
// It samples with its own generator (the same seed at every point, so the points differ by the
// policy only) and leaves the training's random stream and gradients untouched. Returns the
// number of lines written to the log (0 or 1).
static int train_curve(Task *task, GPT *policy, const TrainConfig *cfg, int step, FILE *log) {
    enum { MAX_CURVE = 16 };
    if (!task->curve || task->num_curve < 1) return 0;
    double values[MAX_CURVE];
    int count = task->num_curve < MAX_CURVE ? task->num_curve : MAX_CURVE;
    task->curve(task, policy, cfg->curve_n > 0 ? cfg->curve_n : 20, cfg->seed, values);
    if (cfg->curve_out) {
        fprintf(cfg->curve_out, "curve %d", step);
        for (int i = 0; i < count; i++) fprintf(cfg->curve_out, " %s %.4f", task->curve_names[i], values[i]);
        fputc('\n', cfg->curve_out);
        fflush(cfg->curve_out);
    }
    if (log) {
        fprintf(log, "{\"curve_step\": %d", step);
        for (int i = 0; i < count; i++) fprintf(log, ", \"%s\": %.6g", task->curve_names[i], values[i]);
        fputs("}\n", log);
    }
    return log != NULL;
}

// ----------------------------------------------------------------------------------------------
// The training state (`gfn train --save PATH` writes PATH.state after the adapter; `--resume`
// reads it): everything the loop carries from one step to the next, so that a resumed run ends
// with the bits of an uninterrupted one. The reward temperature and the learning rates are
// functions of the step, so the step is their position. Layout, little-endian byte by byte:
//   "GFNTRAIN", u32 version = 1
//   the run's identity: the task's name (32 bytes, NUL-padded), the fields of train_identity
//     (u32, f32 or u64 each), u32 length + the bytes of cfg->task_options
//   u32 completed steps, 4 × u64 RNG state, 4 × u64 rows on-policy / tempered / replayed / given
//   u64 the JSONL log's lines at the save (0 without a log)
//   LoRA:   u64 P, P × f32 weights, u32 AdamW step, P × f32 m, P × f32 v
//   log Z:  u64 Q (train queries), Q × f32 log Z, Q × u8 initialised, u32 AdamW step, Q × f32 m, Q × f32 v
//   replay: u32 capacity, u32 F, F × u32 the queries holding entries (in the order they filled),
//           then per query u32 count and per entry u32 ntok, u32 nact, ntok × u32 tokens,
//           ntok × u8 forced, (nact + 1) × f32 log R
//   u64 FNV-1a 64 of everything before it
// Every size in the file is checked against this run's before anything is read into it.

#define TRAIN_STATE_VERSION 1
#define TRAIN_STATE_NAME_BYTES 32
#define TRAIN_STATE_MAX_OPTIONS 4096

char *train_state_path(const char *save_path) {
    char *dir = path_with_suffix(save_path, "");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = 0;   // a PEFT directory "out/": out.state
    char *path = path_with_suffix(dir, ".state");
    free(dir);
    return path;
}

// One identity field: a flag (or a property of the task) that must be the same at a resume.
typedef struct {
    const char *name;
    char kind;                      // 'u' u32, 'f' f32, 'q' u64 shown in decimal, 'h' u64 shown in hex
    uint64_t u;
    float f;
    const char *const *names;       // enum names for 'u' fields (or NULL)
} StateField;

static void hash_u32(uint64_t *h, uint32_t v) { unsigned char b[4]; put_le_u32(b, v); *h = fnv1a64(b, 4, *h); }
static void hash_f32(uint64_t *h, float v) { unsigned char b[4]; put_le_f32(b, v); *h = fnv1a64(b, 4, *h); }

// What the run's bits depend on besides the flags: the base model's weights, the training
// prompts, the allowed tokens and the task's demonstrations (hashed as little-endian bytes, so
// the same on every host). A state written on other data or another model is refused with it.
static uint64_t task_fingerprint(Task *task) {
    uint64_t h = FNV_OFFSET;
    const float *w = gpt_params_memory(task->base);
    for (size_t i = 0, n = gpt_num_parameters(task->base); i < n; i++) hash_f32(&h, w[i]);
    for (int q = 0; q < task->num_train; q++) {
        int len;
        const int *prompt = task->prompt(task, q, &len);
        hash_u32(&h, (uint32_t)len);
        for (int j = 0; j < len; j++) hash_u32(&h, (uint32_t)prompt[j]);
    }
    h = fnv1a64(task->allowed, (size_t)gpt_config(task->base).vocab_size, h);
    for (int d = 0; d < task->num_demos; d++) {
        const Traj *t = task->demos[d];
        hash_u32(&h, (uint32_t)t->query); hash_u32(&h, (uint32_t)t->ntok); hash_u32(&h, (uint32_t)t->nact);
        for (int j = 0; j < t->ntok; j++) { hash_u32(&h, (uint32_t)t->tokens[j]); hash_u32(&h, t->forced[j]); }
        for (int k = 0; k <= t->nact; k++) hash_f32(&h, t->log_r[k]);
    }
    return h;
}

enum { NUM_STATE_FIELDS = 35 };
static void train_identity(const Task *task, const TrainConfig *cfg, uint64_t fingerprint, StateField *f) {
    uint32_t targets = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) targets |= (uint32_t)(cfg->lora_targets[t] != 0) << t;
    StateField fields[NUM_STATE_FIELDS] = {
        { "--loss", 'u', (uint64_t)cfg->loss, 0, loss_names }, { "--steps", 'u', (uint64_t)cfg->steps, 0, NULL },
        { "--batch", 'u', (uint64_t)cfg->batch, 0, NULL }, { "--k", 'u', (uint64_t)cfg->samples_per_query, 0, NULL },
        { "--accum", 'u', (uint64_t)cfg->accum, 0, NULL }, { "--warmup", 'u', (uint64_t)cfg->warmup, 0, NULL },
        { "--rank", 'u', (uint64_t)cfg->lora_rank, 0, NULL }, { "--targets (bit mask)", 'u', targets, 0, NULL },
        { "--reward-temp HORIZON", 'u', (uint64_t)cfg->reward_temp_horizon, 0, NULL },
        { "--replay", 'u', (uint64_t)cfg->replay_capacity, 0, NULL },
        { "--short-states", 'u', (uint64_t)cfg->short_states, 0, short_state_names },
        { "--lr", 'f', 0, cfg->lr, NULL }, { "--lr-min", 'f', 0, cfg->lr_min, NULL },
        { "--lr-logz", 'f', 0, cfg->lr_log_z, NULL }, { "weight decay", 'f', 0, cfg->weight_decay, NULL },
        { "--clip", 'f', 0, cfg->clip, NULL }, { "--alpha", 'f', 0, cfg->lora_alpha, NULL },
        { "--on-policy", 'f', 0, cfg->frac_on_policy, NULL }, { "--tempered", 'f', 0, cfg->frac_tempered, NULL },
        { "--temp-lo", 'f', 0, cfg->temp_lo, NULL }, { "--temp-hi", 'f', 0, cfg->temp_hi, NULL },
        { "--explore", 'f', 0, cfg->explore, NULL },
        { "--reward-temp START", 'f', 0, cfg->reward_temp_start, NULL },
        { "--reward-temp END", 'f', 0, cfg->reward_temp_end, NULL }, { "--lambda", 'f', 0, cfg->lambda, NULL },
        { "--gold-replay", 'f', 0, cfg->frac_gold, NULL },
        { "--eval-every (its curve lines are in the log)", 'u', (uint64_t)cfg->eval_every, 0, NULL },
        { "the short states' floor log R", 'f', 0, cfg->short_log_r, NULL }, { "seed (-s)", 'q', cfg->seed, 0, NULL },
        { "the task's training queries", 'u', (uint64_t)task->num_train, 0, NULL },
        { "the task's maximum length", 'u', (uint64_t)task->max_len, 0, NULL },
        { "the task's minimum length", 'u', (uint64_t)task->min_len, 0, NULL },
        { "the task's terminator", 'u', (uint64_t)task->terminator, 0, NULL },
        { "the vocabulary size", 'u', (uint64_t)gpt_config(task->base).vocab_size, 0, NULL },
        { "base model, prompts, allowed tokens or demonstrations (fingerprint)", 'h', fingerprint, 0, NULL },
    };
    memcpy(f, fields, sizeof fields);
}

// The loop's state between two steps, as gfn_train keeps it.
typedef struct {
    int step;                       // completed steps
    Rng *rng;
    long *rows;                     // (4) on-policy, tempered, replayed, given rows so far
    uint64_t log_lines;             // JSONL lines written by the run so far (one per step while logged)
    LoRA *lora;
    AdamW *opt, *opt_z;
    float *log_z;                   // (num_train)
    unsigned char *log_z_known;     // (num_train)
    ReplayBuffer *replay;
} LoopState;

static void put_u32(Text *t, uint32_t v) { unsigned char b[4]; put_le_u32(b, v); text_append(t, (const char *)b, 4); }
static void put_u64(Text *t, uint64_t v) { unsigned char b[8]; put_le_u64(b, v); text_append(t, (const char *)b, 8); }
static void put_f32s(Text *t, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) { unsigned char b[4]; put_le_f32(b, x[i]); text_append(t, (const char *)b, 4); }
}

static int train_state_save(const char *path, const Task *task, const TrainConfig *cfg, uint64_t fingerprint,
                            const LoopState *s, GfnError *err) {
    Text t = { NULL, 0, 0 };
    text_append(&t, "GFNTRAIN", 8);
    put_u32(&t, TRAIN_STATE_VERSION);
    char name[TRAIN_STATE_NAME_BYTES] = { 0 };
    strncpy(name, task->name, sizeof name - 1);
    text_append(&t, name, sizeof name);
    StateField f[NUM_STATE_FIELDS];
    train_identity(task, cfg, fingerprint, f);
    for (int i = 0; i < NUM_STATE_FIELDS; i++) {
        if (f[i].kind == 'u') put_u32(&t, (uint32_t)f[i].u);
        else if (f[i].kind == 'f') put_f32s(&t, &f[i].f, 1);
        else put_u64(&t, f[i].u);
    }
    const char *options = cfg->task_options ? cfg->task_options : "";
    put_u32(&t, (uint32_t)strlen(options));
    text_append(&t, options, strlen(options));
    put_u32(&t, (uint32_t)s->step);
    for (int i = 0; i < 4; i++) put_u64(&t, s->rng->s[i]);
    for (int i = 0; i < 4; i++) put_u64(&t, (uint64_t)s->rows[i]);
    put_u64(&t, s->log_lines);
    put_u64(&t, s->lora->num_parameters);
    put_f32s(&t, s->lora->memory, s->lora->num_parameters);
    put_u32(&t, (uint32_t)s->opt->step);
    put_f32s(&t, s->opt->m, s->opt->n);
    put_f32s(&t, s->opt->v, s->opt->n);
    put_u64(&t, (uint64_t)task->num_train);
    put_f32s(&t, s->log_z, (size_t)task->num_train);
    text_append(&t, (const char *)s->log_z_known, (size_t)task->num_train);
    put_u32(&t, (uint32_t)s->opt_z->step);
    put_f32s(&t, s->opt_z->m, s->opt_z->n);
    put_f32s(&t, s->opt_z->v, s->opt_z->n);
    const ReplayBuffer *rb = s->replay;
    put_u32(&t, (uint32_t)rb->capacity);
    put_u32(&t, (uint32_t)rb->num_filled);
    for (int i = 0; i < rb->num_filled; i++) put_u32(&t, (uint32_t)rb->filled[i]);
    for (int q = 0; q < rb->num_queries; q++) {
        put_u32(&t, (uint32_t)rb->count[q]);
        for (int i = 0; i < rb->count[q]; i++) {
            const Traj *e = rb->items[(size_t)q * rb->capacity + i];
            put_u32(&t, (uint32_t)e->ntok);
            put_u32(&t, (uint32_t)e->nact);
            for (int j = 0; j < e->ntok; j++) put_u32(&t, (uint32_t)e->tokens[j]);
            text_append(&t, (const char *)e->forced, (size_t)e->ntok);
            put_f32s(&t, e->log_r, (size_t)e->nact + 1);
        }
    }
    put_u64(&t, fnv1a64(t.s, t.len, FNV_OFFSET));
    int status = write_file_atomic(path, t.s, t.len, err);
    free(t.s);
    return status;
}

// Reading: a cursor that fails, naming the file and the part, when the bytes run out.
typedef struct { const unsigned char *at, *end; const char *path; GfnError *err; int failed; } StateReader;

static const unsigned char *take(StateReader *r, size_t count, size_t size, const char *what) {
    if (r->failed) return NULL;
    size_t left = (size_t)(r->end - r->at);
    if (size && count > left / size) {
        gfn_error_set(r->err, "%s: truncated: %s needs %zu x %zu bytes, %zu are left", r->path, what, count, size, left);
        r->failed = 1;
        return NULL;
    }
    const unsigned char *p = r->at;
    r->at += count * size;
    return p;
}
static uint32_t take_u32(StateReader *r, const char *what) { const unsigned char *p = take(r, 1, 4, what); return p ? le_u32(p) : 0; }
static uint64_t take_u64(StateReader *r, const char *what) { const unsigned char *p = take(r, 1, 8, what); return p ? le_u64(p) : 0; }
// n floats into x; they must be finite (NaN and ±inf would flow silently into the run).
static void take_f32s(StateReader *r, float *x, size_t n, const char *what) {
    const unsigned char *p = take(r, n, 4, what);
    if (!p) return;
    for (size_t i = 0; i < n; i++) x[i] = le_f32(p + 4 * i);
    if (check_finite(x, n, r->path, what, r->err)) r->failed = 1;
}
static int state_fail(StateReader *r, const char *fmt, ...) {
    char msg[GFN_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!r->failed) gfn_error_set(r->err, "%s: %s", r->path, msg);
    r->failed = 1;
    return 1;
}

// One replay entry of query q into e, checked: lengths within the task's, tokens in the
// vocabulary, nact the count of the not-forced tokens (the states' positions depend on it).
static void take_replay_entry(StateReader *r, const Task *task, int q, Traj *e) {
    uint32_t ntok = take_u32(r, "a replay entry's length"), nact = take_u32(r, "a replay entry's actions");
    if (r->failed) return;
    if (ntok > (uint32_t)task->max_len || nact > ntok) {
        state_fail(r, "a replay entry of query %d has %u tokens and %u actions (the task allows %d tokens)", q, ntok, nact, task->max_len);
        return;
    }
    const unsigned char *tokens = take(r, ntok, 4, "a replay entry's tokens"), *forced = take(r, ntok, 1, "a replay entry's flags");
    if (r->failed) return;
    int V = gpt_config(task->base).vocab_size;
    uint32_t actions = 0;
    for (uint32_t j = 0; j < ntok; j++) {
        uint32_t id = le_u32(tokens + 4 * j);
        if (id >= (uint32_t)V || forced[j] > 1) { state_fail(r, "a replay entry of query %d holds token %u (flag %u): not in [0, %d)", q, id, forced[j], V); return; }
        e->tokens[j] = (int)id;
        e->forced[j] = forced[j];
        actions += !forced[j];
    }
    if (actions != nact) { state_fail(r, "a replay entry of query %d says %u actions, its tokens hold %u", q, nact, actions); return; }
    e->query = q;
    e->ntok = (int)ntok;
    e->nact = (int)nact;
    const unsigned char *lr = take(r, nact + 1, 4, "a replay entry's log R");
    if (!lr) return;
    for (uint32_t k = 0; k <= nact; k++) e->log_r[k] = le_f32(lr + 4 * k);
    for (uint32_t k = 0; k <= nact; k++)
        if (isnan(e->log_r[k])) { state_fail(r, "a replay entry of query %d has a log R that is NaN", q); return; }
}

// Fills s (whose buffers gfn_train allocated for this run) from the file; on error err names the
// file and what does not match, and s may be partly overwritten (the run stops).
static int train_state_load(const char *path, const Task *task, const TrainConfig *cfg, uint64_t fingerprint,
                            LoopState *s, GfnError *err) {
    size_t len;
    unsigned char *buf = read_file(path, &len, err);
    if (!buf) return 1;
    StateReader r = { buf, buf + (len >= 8 ? len - 8 : 0), path, err, 0 };
    if (len < 20 || memcmp(buf, "GFNTRAIN", 8) != 0) {
        gfn_error_set(err, "%s: not a gfn training state (%s)", path, len < 20 ? "too short" : "bad magic");
        free(buf);
        return 1;
    }
    uint32_t version = le_u32(buf + 8);
    if (version != TRAIN_STATE_VERSION) state_fail(&r, "training-state version %u; this program reads version %d", version, TRAIN_STATE_VERSION);
    else if (fnv1a64(buf, len - 8, FNV_OFFSET) != le_u64(buf + len - 8))
        state_fail(&r, "damaged or truncated: its checksum does not match (%zu bytes)", len);
    take(&r, 1, 12, "the header");
    const unsigned char *name = take(&r, 1, TRAIN_STATE_NAME_BYTES, "the task's name");
    if (name && (name[TRAIN_STATE_NAME_BYTES - 1] != 0 || strncmp((const char *)name, task->name, TRAIN_STATE_NAME_BYTES)))
        state_fail(&r, "written for task '%.31s'; this run is task '%s'", name[TRAIN_STATE_NAME_BYTES - 1] ? "?" : (const char *)name, task->name);
    StateField f[NUM_STATE_FIELDS], *other_data = NULL;
    train_identity(task, cfg, fingerprint, f);
    for (int i = 0; i < NUM_STATE_FIELDS && !r.failed; i++) {
        const unsigned char *p = take(&r, 1, f[i].kind == 'u' || f[i].kind == 'f' ? 4 : 8, f[i].name);
        if (!p) break;
        if (f[i].kind == 'f') {
            float stored = le_f32(p);
            if (memcmp(&stored, &f[i].f, 4)) state_fail(&r, "written with %s %g; this run has %g", f[i].name, (double)stored, (double)f[i].f);
        } else if (f[i].kind == 'u') {
            uint32_t stored = le_u32(p);
            if (stored == f[i].u) continue;
            if (f[i].names && stored <= (uint32_t)(f[i].names == loss_names ? LOSS_REINFORCE : SHORT_BATCH))
                state_fail(&r, "written with %s %s; this run has %s", f[i].name, f[i].names[stored], f[i].names[f[i].u]);
            else state_fail(&r, "written with %s %u; this run has %llu", f[i].name, stored, (unsigned long long)f[i].u);
        } else {
            uint64_t stored = le_u64(p);
            if (stored == f[i].u) continue;
            if (f[i].kind == 'q') state_fail(&r, "written with %s %llu; this run has %llu", f[i].name, (unsigned long long)stored, (unsigned long long)f[i].u);
            else other_data = &f[i];   // said after the task options, which name the cause more plainly
        }
    }
    uint32_t options_len = take_u32(&r, "the task options' length");
    const char *options = cfg->task_options ? cfg->task_options : "";
    if (!r.failed && options_len > TRAIN_STATE_MAX_OPTIONS) state_fail(&r, "task options of %u bytes (at most %d)", options_len, TRAIN_STATE_MAX_OPTIONS);
    const unsigned char *stored_options = take(&r, options_len, 1, "the task options");
    if (stored_options && (options_len != strlen(options) || memcmp(stored_options, options, options_len)))
        state_fail(&r, "written with the task options '%.*s'; this run has '%s'", (int)(options_len < 200 ? options_len : 200), (const char *)stored_options, options);
    if (other_data) state_fail(&r, "written with another %s", other_data->name);
    // Where the run is.
    uint32_t step = take_u32(&r, "the step");
    if (!r.failed && step > (uint32_t)cfg->steps) state_fail(&r, "step %u is past the run's %d steps", step, cfg->steps);
    s->step = (int)step;
    for (int i = 0; i < 4; i++) s->rng->s[i] = take_u64(&r, "the RNG state");
    for (int i = 0; i < 4; i++) {
        uint64_t rows = take_u64(&r, "the row counts");
        if (!r.failed && rows > (uint64_t)LONG_MAX) state_fail(&r, "a row count of %llu", (unsigned long long)rows);
        s->rows[i] = (long)rows;
    }
    s->log_lines = take_u64(&r, "the log's line count");
    // The adapter and its optimizer.
    uint64_t P = take_u64(&r, "the LoRA size");
    if (!r.failed && P != s->lora->num_parameters)
        state_fail(&r, "holds %llu LoRA parameters; this run's adapter has %zu", (unsigned long long)P, s->lora->num_parameters);
    take_f32s(&r, s->lora->memory, s->lora->num_parameters, "the LoRA weights");
    s->opt->step = (int)take_u32(&r, "the AdamW step");
    if (!r.failed && (uint32_t)s->opt->step > step) state_fail(&r, "AdamW step %d is past the run's step %u", s->opt->step, step);
    take_f32s(&r, s->opt->m, s->opt->n, "AdamW's first moment");
    take_f32s(&r, s->opt->v, s->opt->n, "AdamW's second moment");
    // log Z per query and its optimizer.
    uint64_t Q = take_u64(&r, "the number of queries");
    if (!r.failed && Q != (uint64_t)task->num_train) state_fail(&r, "holds %llu queries' log Z; the task has %d", (unsigned long long)Q, task->num_train);
    take_f32s(&r, s->log_z, (size_t)task->num_train, "log Z");
    const unsigned char *known = take(&r, (size_t)task->num_train, 1, "the initialised log Z flags");
    for (int q = 0; known && q < task->num_train && !r.failed; q++)
        if (known[q] > 1) state_fail(&r, "query %d's log Z flag is %u (0 or 1)", q, known[q]);
        else s->log_z_known[q] = known[q];
    s->opt_z->step = (int)take_u32(&r, "log Z's AdamW step");
    if (!r.failed && (uint32_t)s->opt_z->step > step) state_fail(&r, "log Z's AdamW step %d is past the run's step %u", s->opt_z->step, step);
    take_f32s(&r, s->opt_z->m, s->opt_z->n, "log Z's first moment");
    take_f32s(&r, s->opt_z->v, s->opt_z->n, "log Z's second moment");
    // The replay buffer: the same dimensions as the one this run seeded, then its entries.
    ReplayBuffer *rb = s->replay;
    uint32_t capacity = take_u32(&r, "the replay capacity"), filled = take_u32(&r, "the replay's queries");
    if (!r.failed && capacity != (uint32_t)rb->capacity) state_fail(&r, "a replay buffer of %u per query; this run's holds %d", capacity, rb->capacity);
    if (!r.failed && filled > (uint32_t)rb->num_queries) state_fail(&r, "%u replay queries of %d", filled, rb->num_queries);
    if (r.failed) { free(buf); return 1; }
    for (int q = 0; q < rb->num_queries; q++) rb->count[q] = 0;
    rb->num_filled = (int)filled;
    unsigned char *listed = gfn_calloc((size_t)rb->num_queries, 1);   // (num_queries) 1 when in filled
    for (uint32_t i = 0; i < filled && !r.failed; i++) {
        uint32_t q = take_u32(&r, "the replay's queries");
        if (r.failed) break;
        if (q >= (uint32_t)rb->num_queries || listed[q]) state_fail(&r, "replay query %u is out of range or listed twice", q);
        else { listed[q] = 1; rb->filled[i] = (int)q; }
    }
    for (int q = 0; q < rb->num_queries && !r.failed; q++) {
        uint32_t count = take_u32(&r, "a replay count");
        if (r.failed) break;
        if (count > capacity || (count > 0) != listed[q]) { state_fail(&r, "query %d holds %u replay entries (capacity %u, listed %d)", q, count, capacity, listed[q]); break; }
        for (uint32_t i = 0; i < count && !r.failed; i++) take_replay_entry(&r, task, q, rb->items[(size_t)q * rb->capacity + i]);
        rb->count[q] = (int)count;
    }
    free(listed);
    if (!r.failed && r.at != r.end) state_fail(&r, "%zu bytes after the replay buffer", (size_t)(r.end - r.at));
    free(buf);
    return r.failed;
}

// The log of a resumed run continues the saved one: it is cut back to its first `lines` lines, those
// written up to the save (a killed run may have written steps after it), and appended to; a log
// with fewer lines is no continuation (another file) and starts afresh.
static FILE *log_continue(const char *path, uint64_t lines, GfnError *err) {
    size_t len, keep = 0;
    GfnError ignored;
    unsigned char *old = read_file(path, &len, &ignored);
    uint64_t seen = 0;
    while (old && seen < lines && keep < len) if (old[keep++] == '\n') seen++;
    int cut = old && seen == lines;
    if (cut && keep < len && write_file_atomic(path, old, keep, err)) { free(old); return NULL; }
    free(old);
    FILE *f = fopen(path, cut ? "a" : "w");
    if (!f) gfn_error_set(err, "%s: cannot open the log: %s", path, strerror(errno));
    return f;
}

// One save point: the adapter, then the training state (after the log is flushed, so that the
// lines the state counts are on disk). Each file is written to PATH.tmp and renamed, the
// state last: a kill leaves each file whole, the old or the new version, and the state never
// ahead of the adapter. A resume rewrites the adapter from the state, which mends the one torn
// pair (an adapter one save ahead of its state).
static int train_save_point(const char *state_path, GPT *policy, const Task *task, const TrainConfig *cfg,
                            uint64_t fingerprint, FILE *log, LoopState *s, GfnError *err) {
    if (log && (fflush(log) != 0 || ferror(log))) {
        gfn_error_set(err, "%s: error writing the log (disk full?)", cfg->log_path);
        return 1;
    }
    if (lora_save(policy, cfg->save_path, err)) return 1;
    return train_state_save(state_path, task, cfg, fingerprint, s, err);
}

int gfn_train(Task *task, GPT *policy, const TrainConfig *cfg, float *log_z, GfnError *err) {
    FILE *log = NULL;   // opened first, so that a bad path fails before anything is allocated
    if (cfg->log_path && !cfg->resume_path && !(log = fopen(cfg->log_path, "w"))) {
        gfn_error_set(err, "%s: cannot create the log file: %s", cfg->log_path, strerror(errno));
        return 1;
    }
    char *state_path = cfg->save_path ? train_state_path(cfg->save_path) : NULL;
    if (cfg->save_path) { remove_stale_temp(cfg->save_path); remove_stale_temp(state_path); }
    uint64_t fingerprint = cfg->save_path || cfg->resume_path ? task_fingerprint(task) : 0;
    gpt_freeze_all(policy, 1);
    LoRA *lora = gpt_lora(policy);
    if (!lora) lora = gpt_lora_attach(policy, cfg->lora_rank, cfg->lora_alpha, 0, cfg->lora_targets, cfg->seed);
    AdamW opt, opt_z;
    adamw_init(&opt, lora->num_parameters, cfg->lr, 0.9f, 0.999f, 1e-8f, cfg->weight_decay);
    adamw_init(&opt_z, (size_t)task->num_train, cfg->lr_log_z, 0.9f, 0.999f, 1e-8f, 0);
    TrainScratch s;
    int n = cfg->batch;
    s.stride = task->max_len + 1;
    s.micro = gfn_calloc((size_t)cfg->accum, sizeof(MicroBatch));
    for (int m = 0; m < cfg->accum; m++) {
        MicroBatch *mb = &s.micro[m];
        mb->traj = gfn_malloc(sizeof(Traj *) * (size_t)n);
        for (int i = 0; i < n; i++) mb->traj[i] = traj_new(task->max_len);
        mb->queries = gfn_malloc(sizeof(int) * (size_t)n);
        mb->sample_traj = gfn_malloc(sizeof(Traj *) * (size_t)n);
        mb->sample_queries = gfn_malloc(sizeof(int) * (size_t)n);
    }
    s.len = gfn_malloc(sizeof(int) * (size_t)n);
    s.group = gfn_malloc(sizeof(int) * (size_t)n);
    size_t cells = (size_t)n * s.stride;
    s.lf = gfn_calloc(cells, sizeof(float)); s.lt = gfn_calloc(cells, sizeof(float));
    s.lr = gfn_calloc(cells, sizeof(float));
    s.dlf = gfn_calloc(cells, sizeof(float)); s.dlt = gfn_calloc(cells, sizeof(float));
    s.d_log_z = gfn_calloc((size_t)task->num_train, sizeof(float));
    s.batch_root = gfn_calloc((size_t)task->num_train, sizeof(float));
    s.log_z_known = gfn_calloc((size_t)task->num_train, 1);
    long total[4] = { 0, 0, 0, 0 };   // rows on-policy, tempered, replayed, given since the start
    ReplayBuffer *replay = replay_seeded(task, cfg->replay_capacity);   // seeded with known good Z
    Rng rng;
    rng_seed(&rng, cfg->seed);
    LoopState loop = { 0, &rng, total, 0, lora, &opt, &opt_z, log_z, s.log_z_known, replay };
    int status = 0;
    if (cfg->resume_path) {
        status = train_state_load(cfg->resume_path, task, cfg, fingerprint, &loop, err);
        if (!status && cfg->log_path && !(log = log_continue(cfg->log_path, loop.log_lines, err))) status = 1;
        // the pair on disk made whole at once: the adapter written again from the state
        if (!status && cfg->save_path) status = train_save_point(state_path, policy, task, cfg, fingerprint, log, &loop, err);
    }
    GPT *sampler = gpt_view(policy);   // samples beside the policy's backward (train_step_micro)
    int show_progress = !cfg->quiet && isatty(2), first_step = loop.step, saved_step = cfg->resume_path ? loop.step : -1;
    double start = gfn_wall_seconds();
    long tokens = 0;
    char text[512];
    if (cfg->eval_every > 0 && loop.step == 0) {   // the untuned start
        loop.log_lines += train_curve(task, policy, cfg, 0, log);
    }
    task->final_reward_only = cfg->loss == LOSS_TB || cfg->loss == LOSS_VARGRAD || cfg->loss == LOSS_SFT ||
                              cfg->loss == LOSS_REINFORCE;
    for (int step = loop.step; !status && step < cfg->steps; step++) {
        gpt_zero_grad(policy);
        memset(s.d_log_z, 0, sizeof(float) * (size_t)task->num_train);
        double loss = 0, mean_log_r = 0;
        StepStats st = { 0, 0, 0, 0, 0, 0, 0, 0 };
        loss = train_step_micro(task, policy, sampler, cfg, &s, replay, log_z, step, &rng, &mean_log_r, &tokens, &st);
        float grad_norm = clip_grad_norm(lora->grad_memory, lora->num_parameters, cfg->clip > 0 ? cfg->clip : INFINITY);
        if (!isfinite(loss) || !isfinite(grad_norm)) {   // stop before the update: the saved adapter stays the last good one
            gfn_error_set(err, "train: step %d: the loss (%g) or the gradient norm (%g) is not finite; stopped "
                          "(try a lower --lr; %s)", step + 1, loss, (double)grad_norm,
                          cfg->save_path ? "the adapter saved last is kept" : "nothing was saved");
            status = 1;
            break;
        }
        float lr = lr_schedule(step, cfg->warmup, cfg->steps, cfg->lr, cfg->lr_min);
        adamw_update(&opt, lora->memory, lora->grad_memory, lr);
        if (learns_root_flow(cfg, task)) {
            for (int q = 0; q < task->num_train; q++) s.d_log_z[q] /= cfg->accum;
            // log Z follows the same warm-up and decay, at its own (higher) peak rate
            adamw_update(&opt_z, log_z, s.d_log_z, cfg->lr_log_z * (cfg->lr > 0 ? lr / cfg->lr : 1.0f));
        }
        total[0] += st.on_policy; total[1] += st.tempered; total[2] += st.replayed; total[3] += st.given;
        double elapsed = gfn_wall_seconds() - start, rows = (double)n * cfg->accum;
        if (log) {
            text[0] = 0;
            if (task->render) task->render(task, s.micro[cfg->accum - 1].traj[0], text, sizeof text);
            // the behaviour of this step's rows (fractions), and TB's residual δ (mean, mean |δ|)
            fprintf(log, "{\"step\": %d, \"loss\": %.6g, \"mean_log_r\": %.6g, \"log_z\": %.6g, "
                         "\"lr\": %.3g, \"grad_norm\": %.4g, \"tokens_per_s\": %.1f, "
                         "\"on_policy\": %.4g, \"tempered\": %.4g, \"replay\": %.4g, ",
                    step + 1, loss, mean_log_r, log_z[0], lr, grad_norm, tokens / (elapsed > 0 ? elapsed : 1),
                    st.on_policy / rows, st.tempered / rows, st.replayed / rows);
            if (cfg->frac_gold > 0) fprintf(log, "\"gold\": %.4g, ", (double)st.gold / cfg->accum);   // of the micro-batches
            if (st.delta_rows) fprintf(log, "\"tb_delta\": %.6g, \"tb_abs_delta\": %.6g, ", st.delta / st.delta_rows, st.abs_delta / st.delta_rows);
            fputs("\"text\": ", log);
            json_write_string(log, text);
            fputs("}\n", log);
            loop.log_lines++;
        }
        if (show_progress) {
            double eta = elapsed / (step + 1 - first_step) * (cfg->steps - step - 1), all = rows * (step + 1);
            fprintf(stderr, "\rstep %d/%d  loss %.4f  mean log R %.3f  log Z %.3f  rows on/temp/replay %.0f/%.0f/%.0f%%  %.0f tok/s  ETA %.0fs   ",
                    step + 1, cfg->steps, loss, mean_log_r, log_z[0], 100 * total[0] / all, 100 * total[1] / all,
                    100 * total[2] / all, tokens / (elapsed > 0 ? elapsed : 1), eta);
        }
        if (cfg->eval_every > 0 && ((step + 1) % cfg->eval_every == 0 || step + 1 == cfg->steps)) {
            if (show_progress) fputc('\n', stderr);
            loop.log_lines += train_curve(task, policy, cfg, step + 1, log);   // before the save point: the state counts it
        }
        loop.step = step + 1;
        int stopping = cfg->stop_after > 0 && loop.step >= cfg->stop_after;
        if (cfg->save_path && ((cfg->save_every > 0 && loop.step % cfg->save_every == 0) || loop.step == cfg->steps || stopping)) {
            if (train_save_point(state_path, policy, task, cfg, fingerprint, log, &loop, err)) { status = 1; break; }
            saved_step = loop.step;
        }
        if (stopping) break;
    }
    task->final_reward_only = 0;
    if (show_progress) fputc('\n', stderr);
    if (!status && cfg->save_path && saved_step != loop.step &&   // nothing trained (--steps 0): still the pair
        train_save_point(state_path, policy, task, cfg, fingerprint, log, &loop, err)) status = 1;
    if (log && (ferror(log) | fclose(log)) && !status) {
        gfn_error_set(err, "%s: error writing the log (disk full?)", cfg->log_path);
        status = 1;
    }
    for (int m = 0; m < cfg->accum; m++) {
        MicroBatch *mb = &s.micro[m];
        for (int i = 0; i < n; i++) traj_free(mb->traj[i]);
        free(mb->traj); free(mb->queries); free(mb->sample_traj); free(mb->sample_queries);
    }
    free(s.micro); free(s.len); free(s.group);
    free(s.lf); free(s.lt); free(s.lr); free(s.dlf); free(s.dlt); free(s.d_log_z); free(s.batch_root);
    free(s.log_z_known);
    gpt_free(sampler);
    replay_free(replay);
    adamw_free(&opt); adamw_free(&opt_z);
    free(state_path);
    return status;
}
