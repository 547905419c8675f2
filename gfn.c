// gfn.c — GFlowNet fine-tuning of a language model: the objectives (each next to its gradient),
// trajectories and the replay buffer, the policy over allowed tokens, the batched sampler, the
// training loop and the command line. Read top to bottom.
//
// Notation (PAPER.md): a query X, a sampled Z = z_1..z_n, the terminator ⊤. For state i (the
// prefix z_≤i): lr_i = log R(z_≤i ⊤), lt_i = log q(⊤ | X z_≤i); for action k:
// lf_k = log q(z_k | X z_<k). Rewards are constants: gradients flow only through lf and lt.
#include "gfn.h"

#include <errno.h>
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
//   δ(i,j) = lr_i + Σ_{k=i+1..j} lf_k + lt_j − lr_j − lt_i
//   L = Σ_batch Σ_{i<j} λ^(j−i−1) δ(i,j)²  /  Σ_batch Σ_{i<j} λ^(j−i−1)
// (normalised over every pair of the whole batch, as the official code). With W the denominator,
// dL/dδ(i,j) = 2 λ^(j−i−1) δ / W, and δ has +1 on lf_{i+1..j}, +1 on lt_j, −1 on lt_i. The lf
// range is added through a difference array so each row costs O(n²).
float loss_subtb(const TrajBatch *b, float lambda, float *d_pf, float *d_pterm) {
    zero_grads(b, d_pf, d_pterm);
    double total_weight = 0;
    for (int r = 0; r < b->n; r++)
        for (int span = 1; span <= b->len[r]; span++)
            total_weight += (double)(b->len[r] - span + 1) * pow(lambda, span - 1);
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
            for (int j = i + 1; j <= n; j++) {
                double w = pow(lambda, j - i - 1);
                if (w == 0) continue;
                double delta = lr[i] + (prefix[j] - prefix[i]) + lt[j] - lr[j] - lt[i];
                loss += w * delta * delta;
                double g = 2.0 * w * delta / total_weight;
                diff[i] += g;       // lf_{i+1..j} are entries [i, j) of the 0-based lf row
                diff[j] -= g;
                dlt[j] += (float)g;
                dlt[i] -= (float)g;
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
float loss_db(const TrajBatch *b, float *d_pf, float *d_pterm) {
    zero_grads(b, d_pf, d_pterm);
    long transitions = 0;
    for (int r = 0; r < b->n; r++) transitions += b->len[r];
    if (transitions == 0) return 0;
    double loss = 0;
    for (int r = 0; r < b->n; r++) {
        size_t o = (size_t)r * b->stride;
        for (int i = 0; i < b->len[r]; i++) {
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

// VarGrad: TB where log Z_X is the stop-gradient batch estimate
//   log Ẑ_X = mean over the K samples of X of ( log R(Z) − log q(Z ⊤) ),
//   L = (1/N) Σ_Z ( log Ẑ_X + log q(Z ⊤) − log R(Z) )²   (N trajectories, X = group).
// dL/d lf_k = dL/d lt_n = 2 δ / N. This equals the gradient of the loss with log Ẑ not stopped,
// because the δ of one group sum to zero: the batch variance of log R − log q.
float loss_vargrad(const TrajBatch *b, int num_groups, float *d_pf, float *d_pterm, float *log_z_out) {
    double *sum = gfn_calloc((size_t)num_groups, sizeof(double));
    int *count = gfn_calloc((size_t)num_groups, sizeof(int));
    for (int r = 0; r < b->n; r++) {
        sum[b->group[r]] += b->log_r[(size_t)r * b->stride + b->len[r]] - traj_log_q(b, r);
        count[b->group[r]]++;
    }
    float *log_z = gfn_malloc(sizeof(float) * (size_t)num_groups);
    for (int g = 0; g < num_groups; g++) log_z[g] = count[g] ? (float)(sum[g] / count[g]) : 0.0f;
    float loss = loss_tb(b, log_z, d_pf, d_pterm, NULL);
    if (log_z_out) memcpy(log_z_out, log_z, sizeof(float) * (size_t)num_groups);
    free(sum); free(count); free(log_z);
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
    rb->items = gfn_calloc((size_t)num_queries * (size_t)capacity, sizeof(Traj *));
    for (size_t i = 0; i < (size_t)num_queries * (size_t)capacity; i++) rb->items[i] = traj_new(max_len);
    return rb;
}

void replay_free(ReplayBuffer *rb) {
    if (!rb) return;
    for (size_t i = 0; i < (size_t)rb->num_queries * (size_t)rb->capacity; i++) traj_free(rb->items[i]);
    free(rb->items); free(rb->count); free(rb);
}

// Kept sorted by final log R, best first, so the worst is the last and eviction is a shift.
int replay_add(ReplayBuffer *rb, const Traj *t) {
    if (t->query < 0 || t->query >= rb->num_queries || t->ntok > rb->max_len) return 0;
    Traj **items = rb->items + (size_t)t->query * rb->capacity;
    int count = rb->count[t->query];
    for (int i = 0; i < count; i++)
        if (items[i]->ntok == t->ntok && !memcmp(items[i]->tokens, t->tokens, sizeof(int) * (size_t)t->ntok))
            return 0;   // exact duplicate
    float score = traj_final_log_r(t);
    int at = count;
    while (at > 0 && traj_final_log_r(items[at - 1]) < score) at--;
    if (at >= rb->capacity) return 0;
    Traj *slot = items[count < rb->capacity ? count : rb->capacity - 1];   // reused storage
    for (int i = (count < rb->capacity ? count : rb->capacity - 1); i > at; i--) items[i] = items[i - 1];
    items[at] = slot;
    traj_copy(slot, t);
    if (count < rb->capacity) rb->count[t->query] = count + 1;
    return 1;
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

// The allowed set at a state that has `ntok` tokens after the prompt. Training (sampler_mask 0)
// keeps ⊤ before the minimum length — every prefix is terminable, with lr = −99 there — while
// the sampler (sampler_mask 1) masks it, as the task demands. At the maximum only ⊤ is left.
static void state_mask(const Task *task, int V, int ntok, int sampler_mask, unsigned char *mask) {
    if (ntok >= task->max_len) {
        memset(mask, 0, (size_t)V);
        mask[task->terminator] = 1;
        return;
    }
    memcpy(mask, task->allowed, (size_t)V);
    mask[task->terminator] = !(sampler_mask && ntok < task->min_len);
}

// One teacher-forced forward of the trajectories: rows prompt + tokens, right-padded with ⊤
// (causal attention: padding never influences earlier positions). Returns the logits (n, T, V).
static float *teacher_forward(GPT *model, Task *task, Traj *const *t, int n, int *T_out) {
    int T = 1;
    for (int r = 0; r < n; r++) {
        int plen;
        task->prompt(task, t[r]->query, &plen);
        if (plen + t[r]->ntok > T) T = plen + t[r]->ntok;
    }
    int *inputs = gfn_malloc(sizeof(int) * (size_t)n * (size_t)T);   // (n, T)
    for (int r = 0; r < n; r++) {
        int plen;
        const int *prompt = task->prompt(task, t[r]->query, &plen);
        int *row = inputs + (size_t)r * T;
        for (int j = 0; j < T; j++) row[j] = task->terminator;
        memcpy(row, prompt, sizeof(int) * (size_t)plen);
        memcpy(row + plen, t[r]->tokens, sizeof(int) * (size_t)t[r]->ntok);
    }
    float *logits = gpt_forward(model, inputs, n, T);
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
    for (int r = 0; r < n; r++) {
        int plen;
        task->prompt(task, t[r]->query, &plen);
        traj_states(t[r], plen, pos, ntok_at);
        float *lf = log_pf + (size_t)r * stride, *lt = log_pterm + (size_t)r * stride;
        for (int i = 0; i <= t[r]->nact; i++) {
            state_mask(task, V, ntok_at[i], sampler_mask, mask);
            masked_log_softmax(logits + ((size_t)r * T + pos[i]) * V, mask, V, logp);
            lt[i] = logp[task->terminator];
            if (i < t[r]->nact) lf[i] = logp[traj_action_token(t[r], i + 1)];
        }
    }
    free(logp); free(mask); free(pos); free(ntok_at);
}

float *policy_logprobs(GPT *policy, Task *task, Traj *const *t, int n, int stride, float *log_pf,
                       float *log_pterm, int *T_out) {
    float *logits = teacher_forward(policy, task, t, n, T_out);
    logprobs_from_logits(logits, *T_out, task, t, n, stride, 0, log_pf, log_pterm);
    return logits;
}

// Teacher forcing, then the chain rule through the masked log-softmax: at a state with
// probabilities π over the allowed tokens, d log π_a / d logit_v = 1[v = a] − π_v, so
//   dlogits_v = g_v − (Σ_a g_a) π_v  for allowed v, 0 otherwise,
// where g_a is the loss gradient of the log-probability of token a read at that state (the
// action's lf and ⊤'s lt). A forced ⊤ (lt = 0 at the maximum) is a constant: no gradient.
// Then one gpt_backward; gradients accumulate into the model's / LoRA's grads. `logits`
// (n, T, V) are those policy_logprobs returned; they are overwritten by dlogits.
void policy_backward(GPT *policy, Task *task, Traj *const *t, int n, int stride, float *logits,
                     int T, const float *d_pf, const float *d_pterm) {
    int V = gpt_config(policy).vocab_size;
    float *logp = gfn_malloc(sizeof(float) * (size_t)V);
    unsigned char *mask = gfn_malloc((size_t)V);
    unsigned char *is_state = gfn_calloc((size_t)n * (size_t)T, 1);           // (n, T)
    int *pos = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 2));
    int *ntok_at = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 2));
    for (int r = 0; r < n; r++) {
        int plen;
        task->prompt(task, t[r]->query, &plen);
        traj_states(t[r], plen, pos, ntok_at);
        for (int i = 0; i <= t[r]->nact; i++) {
            float *row = logits + ((size_t)r * T + pos[i]) * V;
            is_state[(size_t)r * T + pos[i]] = 1;
            state_mask(task, V, ntok_at[i], 0, mask);
            masked_log_softmax(row, mask, V, logp);
            float g_term = ntok_at[i] >= task->max_len ? 0.0f : d_pterm[(size_t)r * stride + i];
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

static int sample_token(const float *logits, const unsigned char *mask, int V, const SamplerConfig *cfg,
                        float *pairs, Rng *rng) {
    // pairs (V, 2): token id and its probability, for the allowed tokens only
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

void sample_trajectories(GPT *policy, Task *task, const int *queries, Traj **out, int n,
                         const SamplerConfig *cfg, Rng *rng) {
    int V = gpt_config(policy).vocab_size, max_plen = 0;
    for (int b = 0; b < n; b++) {
        int plen;
        task->prompt(task, queries[b], &plen);
        if (plen > max_plen) max_plen = plen;
    }
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
    // rows; the rest of each prompt goes through the queue, one decode step per token. With no
    // common prefix every row starts from its queue, so its logits are first set by a decode step.
    int common;
    const int *first = task->prompt(task, queries[0], &common);
    for (int b = 1; b < n; b++) {
        int plen, j = 0;
        const int *prompt = task->prompt(task, queries[b], &plen);
        while (j < common && j < plen && prompt[j] == first[j]) j++;
        common = j;
    }
    for (int b = 0; b < n; b++) {
        int plen;
        const int *prompt = task->prompt(task, queries[b], &plen);
        for (int j = common; j < plen; j++) queue[(size_t)b * cache_len + queue_len[b]++] = prompt[j];
        out[b]->query = queries[b];
        out[b]->ntok = out[b]->nact = 0;
        pos[b] = common;
    }
    if (common > 0) {
        float *prefill = gpt_prefill(policy, cache, first, 1, common);   // (1, common, V)
        for (int b = 0; b < n; b++) {
            kv_cache_copy_row(cache, b, 0, common);
            memcpy(logits + (size_t)b * V, prefill + (size_t)(common - 1) * V, sizeof(float) * (size_t)V);
        }
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
                state_mask(task, V, t->ntok, 1, mask);
                int token = sample_token(logits + (size_t)b * V, mask, V, cfg, pairs, rng);
                if (token == task->terminator) { done[b] = 1; continue; }
                t->tokens[t->ntok] = token;
                t->forced[t->ntok] = 0;
                t->ntok++;
                t->nact++;
                feed[b] = token;
                if (task->tool && t->ntok < task->max_len) {
                    int k = task->tool(task, t->query, t->tokens, t->ntok, forced, task->max_len - t->ntok);
                    for (int i = 0; i < k; i++) {
                        t->tokens[t->ntok] = forced[i];
                        t->forced[t->ntok] = 1;
                        t->ntok++;
                        queue[(size_t)b * cache_len + queue_len[b]++] = forced[i];
                    }
                }
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

// log q(Z ⊤) = Σ_k log q(z_k | X z_<k) + log q(⊤ | X Z) under the sampler's own masking at T = 1.
void policy_exact_logq(GPT *policy, Task *task, int query, const int *z, const int *len, int count,
                       float *log_q) {
    const int chunk = 64;
    int stride = task->max_len + 1;
    Traj *t[64];
    for (int i = 0; i < chunk; i++) t[i] = traj_new(task->max_len);
    float *lf = gfn_malloc(sizeof(float) * (size_t)chunk * stride), *lt = gfn_malloc(sizeof(float) * (size_t)chunk * stride);
    for (int start = 0; start < count; start += chunk) {
        int m = count - start < chunk ? count - start : chunk;
        for (int i = 0; i < m; i++) {
            t[i]->query = query;
            t[i]->ntok = t[i]->nact = len[start + i];
            memcpy(t[i]->tokens, z + (size_t)(start + i) * task->max_len, sizeof(int) * (size_t)t[i]->ntok);
            memset(t[i]->forced, 0, (size_t)t[i]->ntok);
        }
        int T;
        float *logits = teacher_forward(policy, task, t, m, &T);
        logprobs_from_logits(logits, T, task, t, m, stride, 1, lf, lt);
        for (int i = 0; i < m; i++) {
            double s = lt[(size_t)i * stride + t[i]->nact];
            for (int k = 0; k < t[i]->nact; k++) s += lf[(size_t)i * stride + k];
            log_q[start + i] = (float)s;
        }
    }
    for (int i = 0; i < chunk; i++) traj_free(t[i]);
    free(lf); free(lt);
}

// ----------------------------------------------------------------------------------------------
// The task registry: a new task adds its line here (and its file in tasks/).

static Task *const tasks[] = { &task_toy, &task_rng, &task_arithmetic };

Task *task_find(const char *name) {
    for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++)
        if (!strcmp(tasks[i]->name, name)) return tasks[i];
    return NULL;
}

// ----------------------------------------------------------------------------------------------
// Training

const char *const loss_names[] = { "subtb", "tb", "db", "vargrad", "sft", "reinforce" };

void train_config_default(TrainConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->loss = LOSS_SUBTB;
    cfg->steps = 200;
    cfg->batch = 16;
    cfg->samples_per_query = 16;
    cfg->accum = 1;
    cfg->lr = 1e-4f;
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
    cfg->short_log_r = -99.0f;
    cfg->seed = 1;
}

GPT *copy_model(GPT *model) {
    GPT *copy = gpt_new_random(gpt_config(model), 0);
    memcpy(gpt_params_memory(copy), gpt_params_memory(model), sizeof(float) * gpt_num_parameters(model));
    return copy;
}

static double now_seconds(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
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

// One micro-batch: draw trajectories from the behaviour policy, score them, recompute log q at
// T = 1 by teacher forcing, and backpropagate the objective (scaled by 1/accum). Returns the loss.
typedef struct {
    Traj **traj;            // (batch)
    int *queries;           // (batch)
    float *lf, *lt, *lr;    // (batch, stride)
    float *dlf, *dlt;       // (batch, stride)
    int *len, *group;       // (batch)
    float *d_log_z;         // (num_train)
    int stride;
} TrainScratch;

static float train_micro_batch(Task *task, GPT *policy, const TrainConfig *cfg, TrainScratch *s,
                               ReplayBuffer *replay, const float *log_z, int step, Rng *rng,
                               double *mean_log_r, long *tokens) {
    int n = cfg->batch, K = cfg->samples_per_query < 1 ? 1 : cfg->samples_per_query;
    for (int i = 0; i < n; i++) {   // K samples per query, queries drawn uniformly
        if (i % K == 0) s->queries[i] = rng_below(rng, task->num_train);
        else s->queries[i] = s->queries[i - 1];
    }
    // Behaviour policy of this batch: on-policy, tempered, or the replay buffer. REINFORCE is an
    // on-policy estimator, so it always samples from the policy itself.
    float u = cfg->loss == LOSS_REINFORCE ? 0.0f : rng_uniform(rng);
    int from_replay = u >= cfg->frac_on_policy + cfg->frac_tempered;
    if (from_replay) {
        for (int i = 0; i < n && from_replay; i++) if (!replay->count[s->queries[i]]) from_replay = 0;
        for (int i = 0; i < n && from_replay; i++) traj_copy(s->traj[i], replay_sample(replay, s->queries[i], rng));
    }
    if (cfg->loss == LOSS_SFT) {   // maximum likelihood on given Z, not on the policy's own
        for (int i = 0; i < n; i++) task->demonstration(task, s->queries[i], s->traj[i], rng);
        task->log_reward(task, s->traj, n);
        from_replay = 1;
    }
    if (!from_replay) {
        SamplerConfig sc = { 1.0f, 0, 1.0f };
        if (u >= cfg->frac_on_policy) sc.temperature = cfg->temp_lo + (cfg->temp_hi - cfg->temp_lo) * rng_uniform(rng);
        sample_trajectories(policy, task, s->queries, s->traj, n, &sc, rng);
        task->log_reward(task, s->traj, n);
        for (int i = 0; i < n; i++) replay_add(replay, s->traj[i]);
    }
    // Tempered rewards of every state; prefixes shorter than the minimum get a constant floor.
    float reward_temp = reward_temperature(cfg, step);
    *mean_log_r = 0;
    for (int i = 0; i < n; i++) {
        Traj *t = s->traj[i];
        s->len[i] = t->nact;
        s->group[i] = t->query;
        *mean_log_r += t->log_r[t->nact] / n;
        *tokens += t->ntok + 1;
        for (int k = 0; k <= t->nact; k++)
            s->lr[(size_t)i * s->stride + k] = k < task->min_len ? cfg->short_log_r : t->log_r[k] / reward_temp;
    }
    int T;
    float *logits = policy_logprobs(policy, task, s->traj, n, s->stride, s->lf, s->lt, &T);
    TrajBatch b = { n, s->stride, s->len, s->lf, s->lt, s->lr, s->group };
    float loss;
    switch (cfg->loss) {
    case LOSS_TB: loss = loss_tb(&b, log_z, s->dlf, s->dlt, s->d_log_z); break;
    case LOSS_DB: loss = loss_db(&b, s->dlf, s->dlt); break;
    case LOSS_VARGRAD: loss = loss_vargrad(&b, task->num_train, s->dlf, s->dlt, NULL); break;
    case LOSS_SFT: loss = loss_sft(&b, s->dlf, s->dlt); break;
    case LOSS_REINFORCE: loss = loss_reinforce(&b, s->dlf, s->dlt); break;
    default: loss = loss_subtb(&b, cfg->lambda, s->dlf, s->dlt); break;
    }
    for (size_t i = 0; i < (size_t)n * s->stride; i++) { s->dlf[i] /= cfg->accum; s->dlt[i] /= cfg->accum; }
    policy_backward(policy, task, s->traj, n, s->stride, logits, T, s->dlf, s->dlt);
    return loss;
}

int gfn_train(Task *task, GPT *policy, const TrainConfig *cfg, float *log_z, GfnError *err) {
    FILE *log = NULL;   // opened first, so that a bad path fails before anything is allocated
    if (cfg->log_path && !(log = fopen(cfg->log_path, "w"))) {
        gfn_error_set(err, "%s: cannot create the log file: %s", cfg->log_path, strerror(errno));
        return 1;
    }
    gpt_freeze_all(policy, 1);
    LoRA *lora = gpt_lora(policy);
    if (!lora) lora = gpt_lora_attach(policy, cfg->lora_rank, cfg->lora_alpha, 0, cfg->lora_targets, cfg->seed);
    AdamW opt, opt_z;
    adamw_init(&opt, lora->num_parameters, cfg->lr, 0.9f, 0.999f, 1e-8f, cfg->weight_decay);
    adamw_init(&opt_z, (size_t)task->num_train, cfg->lr_log_z, 0.9f, 0.999f, 1e-8f, 0);
    TrainScratch s;
    int n = cfg->batch;
    s.stride = task->max_len + 1;
    s.traj = gfn_malloc(sizeof(Traj *) * (size_t)n);
    for (int i = 0; i < n; i++) s.traj[i] = traj_new(task->max_len);
    s.queries = gfn_malloc(sizeof(int) * (size_t)n);
    s.len = gfn_malloc(sizeof(int) * (size_t)n);
    s.group = gfn_malloc(sizeof(int) * (size_t)n);
    size_t cells = (size_t)n * s.stride;
    s.lf = gfn_calloc(cells, sizeof(float)); s.lt = gfn_calloc(cells, sizeof(float));
    s.lr = gfn_calloc(cells, sizeof(float));
    s.dlf = gfn_calloc(cells, sizeof(float)); s.dlt = gfn_calloc(cells, sizeof(float));
    s.d_log_z = gfn_calloc((size_t)task->num_train, sizeof(float));
    ReplayBuffer *replay = replay_new(task->num_train, cfg->replay_capacity, task->max_len);
    for (int d = 0; d < task->num_demos; d++) replay_add(replay, task->demos[d]);   // seeded with known good Z
    Rng rng;
    rng_seed(&rng, cfg->seed);
    int show_progress = !cfg->quiet && isatty(2);
    double start = now_seconds();
    long tokens = 0;
    char text[512];
    int status = 0;
    for (int step = 0; step < cfg->steps; step++) {
        gpt_zero_grad(policy);
        memset(s.d_log_z, 0, sizeof(float) * (size_t)task->num_train);
        double loss = 0, mean_log_r = 0;
        for (int micro = 0; micro < cfg->accum; micro++) {
            double mlr;
            loss += train_micro_batch(task, policy, cfg, &s, replay, log_z, step, &rng, &mlr, &tokens) / cfg->accum;
            mean_log_r += mlr / cfg->accum;
        }
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
        if (cfg->loss == LOSS_TB) {
            for (int q = 0; q < task->num_train; q++) s.d_log_z[q] /= cfg->accum;
            // log Z follows the same warm-up and decay, at its own (higher) peak rate
            adamw_update(&opt_z, log_z, s.d_log_z, cfg->lr_log_z * (cfg->lr > 0 ? lr / cfg->lr : 1.0f));
        }
        double elapsed = now_seconds() - start;
        if (log) {
            text[0] = 0;
            if (task->render) task->render(task, s.traj[0], text, sizeof text);
            fprintf(log, "{\"step\": %d, \"loss\": %.6g, \"mean_log_r\": %.6g, \"log_z\": %.6g, "
                         "\"lr\": %.3g, \"grad_norm\": %.4g, \"tokens_per_s\": %.1f, \"text\": ",
                    step + 1, loss, mean_log_r, log_z[0], lr, grad_norm, tokens / (elapsed > 0 ? elapsed : 1));
            json_write_string(log, text);
            fputs("}\n", log);
        }
        if (show_progress) {
            double eta = elapsed / (step + 1) * (cfg->steps - step - 1);
            fprintf(stderr, "\rstep %d/%d  loss %.4f  mean log R %.3f  log Z %.3f  %.0f tok/s  ETA %.0fs   ",
                    step + 1, cfg->steps, loss, mean_log_r, log_z[0], tokens / (elapsed > 0 ? elapsed : 1), eta);
        }
        if (cfg->save_path && cfg->save_every > 0 && (step + 1) % cfg->save_every == 0 && step + 1 < cfg->steps)
            if (lora_save(policy, cfg->save_path, err)) { status = 1; break; }
    }
    if (show_progress) fputc('\n', stderr);
    if (!status && cfg->save_path && lora_save(policy, cfg->save_path, err)) status = 1;
    if (log && (ferror(log) | fclose(log)) && !status) {
        gfn_error_set(err, "%s: error writing the log (disk full?)", cfg->log_path);
        status = 1;
    }
    for (int i = 0; i < n; i++) traj_free(s.traj[i]);
    free(s.traj); free(s.queries); free(s.len); free(s.group);
    free(s.lf); free(s.lt); free(s.lr); free(s.dlf); free(s.dlt); free(s.d_log_z);
    replay_free(replay);
    adamw_free(&opt); adamw_free(&opt_z);
    return status;
}

// ----------------------------------------------------------------------------------------------
// Command line

// ==============================================================================================
// Pretraining (`gfn pretrain`): a small GPT-2 trained from scratch on a text corpus with AdamW,
// warm-up + cosine learning rate and global-norm clipping. The pieces, in the order they run:
// the token cache, the validation split and the training windows, the validation loss, the
// training-state file (resume to the same bits), the samples, and the loop that ties them.

#define FNV_OFFSET 0xcbf29ce484222325ull
// FNV-1a, 64 bits: identifies files and token streams (not a cryptographic hash; it only has to
// notice that an input changed).
static uint64_t fnv1a64(const void *data, size_t len, uint64_t hash) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}


// "PATH" + suffix, malloc'ed.
static char *path_with_suffix(const char *path, const char *suffix) {
    size_t a = strlen(path), b = strlen(suffix);
    char *s = gfn_malloc(a + b + 1);
    memcpy(s, path, a);
    memcpy(s + a, suffix, b + 1);
    return s;
}

typedef struct { int *data; size_t len, cap; } IntVec;
static void intvec_push(IntVec *v, int x) {
    if (v->len == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        int *grown = realloc(v->data, v->cap * sizeof *grown);
        if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        v->data = grown;
    }
    v->data[v->len++] = x;
}

// The tokenizer, as this section uses it: encode appends ids ("<|endoftext|>" stays plain text:
// documents are split before encoding).
static int tok_encode_append(const Tokenizer *tok, const char *text, size_t len, IntVec *out) {
    size_t n;
    int *ids = tokenizer_encode(tok, text, len, 0, &n);
    if (!ids) return 1;
    for (size_t i = 0; i < n; i++) intvec_push(out, ids[i]);
    free(ids);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// The token cache. Tokenizing a large corpus takes a while, so the stream is kept in a file and
// reused while the tokenizer and the inputs are byte-identical to those it was made from.
// File layout (little-endian):
//   "GFNTOK01"                         8 bytes
//   u32 version = 1, u32 vocab_size    (at most 65536: ids are stored in 16 bits)
//   u64 FNV-1a 64 of the tokenizer file (of a GPT-2 directory: its vocabulary files in turn)
//   u32 number of input files F, then F × { u64 size in bytes, u64 FNV-1a 64 of the bytes }
//   u64 number of tokens N, then N × u16 token ids
//   u64 FNV-1a 64 of everything before it
// Any mismatch or damage means "rebuild", never an error: the cache is derived data.

#define DOC_SEPARATOR "<|endoftext|>"

// The header that a cache made from these inputs must start with (up to and excluding N).
static unsigned char *token_cache_header(int vocab_size, uint64_t tokenizer_hash, const size_t *sizes,
                                         const uint64_t *hashes, int num_inputs, size_t *header_len) {
    size_t len = 8 + 4 + 4 + 8 + 4 + 16 * (size_t)num_inputs;
    unsigned char *h = gfn_malloc(len), *p = h;
    memcpy(p, "GFNTOK01", 8); p += 8;
    put_le_u32(p, 1); p += 4;
    put_le_u32(p, (uint32_t)vocab_size); p += 4;
    put_le_u64(p, tokenizer_hash); p += 8;
    put_le_u32(p, (uint32_t)num_inputs); p += 4;
    for (int i = 0; i < num_inputs; i++) {
        put_le_u64(p, (uint64_t)sizes[i]); p += 8;
        put_le_u64(p, hashes[i]); p += 8;
    }
    *header_len = len;
    return h;
}

// The cached ids when the file at path matches `header`; NULL (with the reason in *why) when it
// is absent, stale or damaged.
static int *token_cache_read(const char *path, const unsigned char *header, size_t header_len,
                             int vocab_size, size_t *num_tokens, const char **why) {
    GfnError err;
    size_t len;
    unsigned char *file = read_file(path, &len, &err);
    if (!file) { *why = "no cache yet"; return NULL; }
    int *tokens = NULL;
    *why = NULL;
    if (len < header_len + 16 || memcmp(file, header, header_len) != 0) *why = "the tokenizer or an input changed";
    else {
        uint64_t n = le_u64(file + header_len);
        if (n > (len - header_len - 16) / 2 || header_len + 8 + 2 * n + 8 != len) *why = "its size does not match its header";
        else if (fnv1a64(file, len - 8, FNV_OFFSET) != le_u64(file + len - 8)) *why = "its checksum does not match";
        else {
            tokens = gfn_malloc((size_t)n * sizeof *tokens);
            const unsigned char *p = file + header_len + 8;
            for (size_t i = 0; i < n && tokens; i++) {
                tokens[i] = le_u16(p + 2 * i);
                if (tokens[i] >= vocab_size) { free(tokens); tokens = NULL; *why = "a token id is out of range"; }
            }
            *num_tokens = (size_t)n;
        }
    }
    free(file);
    return tokens;
}

// Encodes one input file: documents split at DOC_SEPARATOR (a newline right after it belongs to
// the separator), each followed by the end-of-text token; empty documents are skipped.
static int encode_corpus_file(const Tokenizer *tok, const char *text, size_t len, IntVec *out,
                              const char *path, GfnError *err) {
    const size_t sep_len = strlen(DOC_SEPARATOR);
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && !(end + sep_len <= len && !memcmp(text + end, DOC_SEPARATOR, sep_len))) end++;
        if (end > pos) {
            if (tok_encode_append(tok, text + pos, end - pos, out)) {
                gfn_error_set(err, "%s: cannot encode bytes %zu..%zu", path, pos, end);
                return 1;
            }
            intvec_push(out, tokenizer_eot_id(tok));
        }
        pos = end + sep_len;
        if (pos < len && text[pos] == '\n') pos++;
    }
    return 0;
}

// The tokenizer's identity: the hash of its file, or of the vocabulary files of a GPT-2 directory.
static int tokenizer_identity(const char *path, uint64_t *hash, GfnError *err) {
    static const char *const dir_files[] = { "encoder.json", "vocab.bpe", "vocab.json", "merges.txt" };
    struct stat st;
    *hash = FNV_OFFSET;
    if (stat(path, &st) != 0) { gfn_error_set(err, "%s: cannot stat the tokenizer", path); return 1; }
    int is_dir = S_ISDIR(st.st_mode), found = 0;
    for (size_t i = 0; i < (is_dir ? sizeof dir_files / sizeof *dir_files : 1); i++) {
        char *file = is_dir ? gfn_malloc(strlen(path) + strlen(dir_files[i]) + 2) : NULL;
        if (file) sprintf(file, "%s/%s", path, dir_files[i]);
        size_t len;
        GfnError ignored;
        unsigned char *bytes = read_file(file ? file : path, &len, is_dir ? &ignored : err);
        free(file);
        if (!bytes) { if (is_dir) continue; return 1; }
        *hash = fnv1a64(bytes, len, *hash);
        found++;
        free(bytes);
    }
    if (!found) { gfn_error_set(err, "%s: no tokenizer files in this directory", path); return 1; }
    return 0;
}

typedef struct {
    int *tokens;            // (N,)  the whole corpus, documents separated by end-of-text
    size_t num_tokens;      // N
    uint64_t hash;          // FNV-1a 64 of the ids (as LE u16): the identity of the data
} TokenStream;

// Loads the stream from the cache when it is current, else tokenizes the inputs and writes it.
static int token_stream_prepare(const PretrainConfig *cfg, const Tokenizer *tok, const char *cache_path,
                                TokenStream *stream, int *rebuilt, GfnError *err) {
    int n_in = cfg->num_inputs, vocab_size = tokenizer_vocab_size(tok);
    if (vocab_size > 65536) { gfn_error_set(err, "%s: vocabulary of %d ids does not fit the token cache's 16 bits", cfg->tokenizer_path, vocab_size); return 1; }
    uint64_t tokenizer_hash;
    if (tokenizer_identity(cfg->tokenizer_path, &tokenizer_hash, err)) return 1;
    unsigned char **texts = gfn_calloc((size_t)n_in, sizeof *texts);
    size_t *sizes = gfn_calloc((size_t)n_in, sizeof *sizes);
    uint64_t *hashes = gfn_calloc((size_t)n_in, sizeof *hashes);
    int status = 1;
    for (int i = 0; i < n_in; i++) {
        texts[i] = read_file(cfg->inputs[i], &sizes[i], err);
        if (!texts[i]) goto done;
        hashes[i] = fnv1a64(texts[i], sizes[i], FNV_OFFSET);
    }
    size_t header_len;
    unsigned char *header = token_cache_header(vocab_size, tokenizer_hash, sizes, hashes, n_in, &header_len);
    const char *why;
    stream->tokens = token_cache_read(cache_path, header, header_len, vocab_size, &stream->num_tokens, &why);
    *rebuilt = stream->tokens == NULL;
    if (*rebuilt) {
        if (cfg->verbose) { printf("token cache %s: rebuilding (%s)\n", cache_path, why); fflush(stdout); }
        double t0 = now_seconds();
        IntVec ids = {0};
        for (int i = 0; i < n_in; i++)
            if (encode_corpus_file(tok, (const char *)texts[i], sizes[i], &ids, cfg->inputs[i], err)) { free(ids.data); free(header); goto done; }
        size_t file_len = header_len + 8 + 2 * ids.len + 8;
        unsigned char *file = gfn_malloc(file_len);
        memcpy(file, header, header_len);
        put_le_u64(file + header_len, ids.len);
        for (size_t t = 0; t < ids.len; t++) {
            file[header_len + 8 + 2 * t] = (unsigned char)ids.data[t];
            file[header_len + 8 + 2 * t + 1] = (unsigned char)(ids.data[t] >> 8);
        }
        put_le_u64(file + file_len - 8, fnv1a64(file, file_len - 8, FNV_OFFSET));
        int failed = write_file_atomic(cache_path, file, file_len, err);
        free(file);
        if (failed) { free(ids.data); free(header); goto done; }
        stream->tokens = ids.data;
        stream->num_tokens = ids.len;
        if (cfg->verbose) printf("token cache %s: %zu tokens from %d files in %.1f s\n", cache_path, ids.len, n_in, now_seconds() - t0);
    }
    free(header);
    // The identity of the data for the training state: the ids as LE u16, hashed.
    stream->hash = FNV_OFFSET;
    for (size_t t = 0; t < stream->num_tokens; t++) {
        unsigned char b[2] = { (unsigned char)stream->tokens[t], (unsigned char)(stream->tokens[t] >> 8) };
        stream->hash = fnv1a64(b, 2, stream->hash);
    }
    status = 0;
done:
    for (int i = 0; i < n_in; i++) free(texts[i]);
    free(texts); free(sizes); free(hashes);
    return status;
}

// ----------------------------------------------------------------------------------------------
// The validation split and the training windows. The stream is cut into chunks of ctx+1 tokens;
// chunk c is held out when floor((c+1)·f) > floor(c·f), which spreads a fraction f of the chunks
// evenly over the corpus (every 20th chunk for f = 0.05). A held-out chunk scores its last ctx
// tokens, each given the tokens before it in the chunk. Training windows (ctx+1 tokens at any
// offset) are drawn uniformly from the stretches between held-out chunks, never overlapping one.

typedef struct {
    const int *tokens;
    int chunk_len;              // ctx + 1
    size_t *val_chunks;         // (num_val,)  indices of the held-out chunks
    size_t num_val;
    size_t *segment_start;      // (num_segments,)  first token of each training stretch
    uint64_t *starts_before;    // (num_segments + 1,)  window starts in the stretches before it
    size_t num_segments;
} DataSplit;

static int chunk_is_held_out(size_t c, double frac) {
    return floor((double)(c + 1) * frac) > floor((double)c * frac);
}

static void data_split_init(DataSplit *split, const TokenStream *stream, int ctx, double val_frac) {
    memset(split, 0, sizeof *split);
    split->tokens = stream->tokens;
    split->chunk_len = ctx + 1;
    size_t chunk = (size_t)split->chunk_len, num_chunks = stream->num_tokens / chunk;
    split->val_chunks = gfn_malloc((num_chunks + 1) * sizeof *split->val_chunks);
    split->segment_start = gfn_malloc((num_chunks + 2) * sizeof *split->segment_start);
    split->starts_before = gfn_malloc((num_chunks + 3) * sizeof *split->starts_before);
    split->starts_before[0] = 0;
    size_t open = 0;   // first token of the stretch being walked
    for (size_t c = 0; c <= num_chunks; c++) {
        int held_out = c < num_chunks && chunk_is_held_out(c, val_frac);
        if (c < num_chunks && !held_out) continue;
        size_t end = c < num_chunks ? c * chunk : stream->num_tokens;
        if (end >= open + chunk) {   // room for at least one window
            split->segment_start[split->num_segments] = open;
            split->starts_before[split->num_segments + 1] =
                split->starts_before[split->num_segments] + (uint64_t)(end - open - chunk + 1);
            split->num_segments++;
        }
        if (held_out) split->val_chunks[split->num_val++] = c;
        open = (c + 1) * chunk;
    }
}

static void data_split_free(DataSplit *split) {
    free(split->val_chunks); free(split->segment_start); free(split->starts_before);
}

static uint64_t data_split_num_windows(const DataSplit *split) { return split->starts_before[split->num_segments]; }

// One training window: inputs (T,) and the next tokens as targets (T,), T = ctx.
static void sample_window(const DataSplit *split, Rng *rng, int *inputs, int *targets) {
    uint64_t k = rng_u64(rng) % data_split_num_windows(split);   // bias < 2^-40: irrelevant
    size_t lo = 0, hi = split->num_segments - 1;                  // find the stretch holding k
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (split->starts_before[mid] <= k) lo = mid; else hi = mid - 1;
    }
    const int *w = split->tokens + split->segment_start[lo] + (k - split->starts_before[lo]);
    int T = split->chunk_len - 1;
    memcpy(inputs, w, (size_t)T * sizeof *inputs);
    memcpy(targets, w + 1, (size_t)T * sizeof *targets);
}

// ----------------------------------------------------------------------------------------------
// Validation loss over the first max_chunks held-out chunks (0: all), in batches of B: the sums
// of −log p over the scored tokens, their count, and the bytes they decode to (for bits/byte).
typedef struct { double nats; long long tokens, bytes; } EvalSums;

static EvalSums evaluate(GPT *model, const DataSplit *split, const int *token_bytes, int B, size_t max_chunks) {
    int T = split->chunk_len - 1;
    size_t n = split->num_val;
    if (max_chunks && max_chunks < n) n = max_chunks;
    int *inputs = gfn_malloc((size_t)B * T * sizeof *inputs);       // (B, T)
    int *targets = gfn_malloc((size_t)B * T * sizeof *targets);     // (B, T)
    float *logprobs = gfn_malloc((size_t)B * T * sizeof *logprobs); // (B, T)
    EvalSums sums = {0, 0, 0};
    for (size_t first = 0; first < n; first += (size_t)B) {
        int rows = (int)(n - first < (size_t)B ? n - first : (size_t)B);
        for (int b = 0; b < rows; b++) {
            const int *w = split->tokens + split->val_chunks[first + (size_t)b] * (size_t)split->chunk_len;
            memcpy(inputs + (size_t)b * T, w, (size_t)T * sizeof *inputs);
            memcpy(targets + (size_t)b * T, w + 1, (size_t)T * sizeof *targets);
        }
        gpt_forward(model, inputs, rows, T);
        gpt_cross_entropy(model, targets, logprobs, NULL);
        for (int i = 0; i < rows * T; i++) {
            sums.nats -= logprobs[i];
            sums.bytes += token_bytes[targets[i]];
        }
        sums.tokens += (long long)rows * T;
    }
    free(inputs); free(targets); free(logprobs);
    return sums;
}

// Bits per byte of a whole text file: the stream [end-of-text] + encode(file) is cut into windows
// of T tokens; window w feeds tokens [wT, wT + T) and scores the next ones, so every token of the
// file is scored once, seeing at most T tokens before it. Short last windows are padded with
// ignored targets (-1).
static int evaluate_file(GPT *model, const Tokenizer *tok, const char *path, int B, int T, double *bits_per_byte,
                         double *nats_per_token, GfnError *err) {
    size_t len, n;
    char *text = (char *)read_file(path, &len, err);
    if (!text) return 1;
    int *ids = tokenizer_encode(tok, text, len, 0, &n);
    free(text);
    if (!ids || n == 0 || len == 0) { free(ids); gfn_error_set(err, "%s: nothing to evaluate", path); return 1; }
    int *stream = gfn_malloc((n + 1) * sizeof *stream);               // (n + 1,)
    stream[0] = tokenizer_eot_id(tok);
    memcpy(stream + 1, ids, n * sizeof *ids);
    free(ids);
    int *inputs = gfn_malloc((size_t)B * T * sizeof *inputs);        // (B, T)
    int *targets = gfn_malloc((size_t)B * T * sizeof *targets);      // (B, T)
    float *logprobs = gfn_malloc((size_t)B * T * sizeof *logprobs);  // (B, T)
    size_t windows = (n + (size_t)T - 1) / (size_t)T;
    double nats = 0;
    for (size_t first = 0; first < windows; first += (size_t)B) {
        int rows = (int)(windows - first < (size_t)B ? windows - first : (size_t)B);
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < T; t++) {
                size_t i = (first + (size_t)b) * (size_t)T + (size_t)t;   // input position in stream
                int scored = i < n;                                         // target i + 1 exists
                inputs[b * T + t] = scored ? stream[i] : 0;
                targets[b * T + t] = scored ? stream[i + 1] : -1;
            }
        gpt_forward(model, inputs, rows, T);
        gpt_cross_entropy(model, targets, logprobs, NULL);
        for (int i = 0; i < rows * T; i++) nats -= logprobs[i];
    }
    *bits_per_byte = nats / 0.69314718055994530942 / (double)len;
    *nats_per_token = nats / (double)n;
    free(stream); free(inputs); free(targets); free(logprobs);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// The training-state file: everything the rest of a run depends on, so that a resumed run ends
// with the same bits as an uninterrupted one. Layout (little-endian):
//   "GFNSTATE"                                      8 bytes
//   u32 version = 1
//   u32 vocab_size, ctx, n_layer, n_head, n_embd     the model's shape
//   u32 batch, steps, warmup                         the schedule ...
//   f32 lr, min_lr, weight_decay, clip, val_frac     ... and the optimisation
//   u64 seed, u64 FNV-1a 64 of the token stream       the data
//   u32 completed steps, 4 × u64 RNG state            where the run is
//   u32 AdamW step, f32 beta1, beta2, eps
//   u64 number of parameters P
//   P × f32 parameters, P × f32 AdamW m, P × f32 AdamW v
//   u64 FNV-1a 64 of everything before it
// The fields before "completed steps" must match the resuming run's; a mismatch is an error
// naming the field, since continuing under other settings could not give the same bits.

#define STATE_FIXED_BYTES (8 + 4 + 8 * 4 + 5 * 4 + 8 + 8 + 4 + 32 + 4 + 12 + 8 + 8)   // all but the arrays

typedef struct {
    const PretrainConfig *cfg;
    int vocab_size;
    uint64_t data_hash;
} RunIdentity;

static unsigned char *put_identity(unsigned char *p, const RunIdentity *id) {
    const PretrainConfig *c = id->cfg;
    memcpy(p, "GFNSTATE", 8); p += 8;
    put_le_u32(p, 1); p += 4;
    uint32_t shape[8] = { (uint32_t)id->vocab_size, (uint32_t)c->ctx, (uint32_t)c->n_layer, (uint32_t)c->n_head,
                          (uint32_t)c->n_embd, (uint32_t)c->batch, (uint32_t)c->steps, (uint32_t)c->warmup };
    for (int i = 0; i < 8; i++) { put_le_u32(p, shape[i]); p += 4; }
    float opt[5] = { c->lr, c->min_lr, c->weight_decay, c->clip, c->val_frac };
    for (int i = 0; i < 5; i++) { put_le_f32(p, opt[i]); p += 4; }
    put_le_u64(p, c->seed); p += 8;
    put_le_u64(p, id->data_hash); p += 8;
    return p;
}

static int state_save(const char *path, const RunIdentity *id, int step, const Rng *rng, const AdamW *opt,
                      const float *params, size_t n, GfnError *err) {
    size_t len = STATE_FIXED_BYTES + 12 * n;
    unsigned char *buf = gfn_malloc(len), *p = put_identity(buf, id);
    put_le_u32(p, (uint32_t)step); p += 4;
    for (int i = 0; i < 4; i++) { put_le_u64(p, rng->s[i]); p += 8; }
    put_le_u32(p, (uint32_t)opt->step); p += 4;
    put_le_f32(p, opt->beta1); put_le_f32(p + 4, opt->beta2); put_le_f32(p + 8, opt->eps); p += 12;
    put_le_u64(p, n); p += 8;
    const float *arrays[3] = { params, opt->m, opt->v };
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < n; i++) { put_le_f32(p, arrays[a][i]); p += 4; }
    put_le_u64(p, fnv1a64(buf, len - 8, FNV_OFFSET));
    int status = write_file_atomic(path, buf, len, err);
    free(buf);
    return status;
}

// Restores step, RNG, AdamW and parameters from path; every field is checked first.
static int state_load(const char *path, const RunIdentity *id, int *step, Rng *rng, AdamW *opt,
                      float *params, size_t n, GfnError *err) {
    size_t len;
    unsigned char *buf = read_file(path, &len, err);
    if (!buf) return 1;
    int status = 1;
    unsigned char expect[STATE_FIXED_BYTES];
    size_t id_len = (size_t)(put_identity(expect, id) - expect);
    if (len < 12 || memcmp(buf, "GFNSTATE", 8) != 0) { gfn_error_set(err, "%s: not a training-state file (bad magic)", path); goto done; }
    if (le_u32(buf + 8) != 1) { gfn_error_set(err, "%s: unsupported training-state version %u", path, le_u32(buf + 8)); goto done; }
    if (len < STATE_FIXED_BYTES) { gfn_error_set(err, "%s: truncated (%zu bytes, the header alone is %d)", path, len, STATE_FIXED_BYTES); goto done; }
    uint64_t stored_n = le_u64(buf + STATE_FIXED_BYTES - 16);
    if (stored_n != n || len != STATE_FIXED_BYTES + 12 * n) {
        gfn_error_set(err, "%s: %zu bytes for %llu parameters; this model has %zu parameters (%zu bytes expected)",
                      path, len, (unsigned long long)stored_n, n, (size_t)STATE_FIXED_BYTES + 12 * n);
        goto done;
    }
    if (fnv1a64(buf, len - 8, FNV_OFFSET) != le_u64(buf + len - 8)) { gfn_error_set(err, "%s: checksum mismatch: the file is damaged", path); goto done; }
    static const char *const fields[] = { "vocab_size", "ctx", "n_layer", "n_head", "n_embd", "batch", "steps",
                                          "warmup", "lr", "min_lr", "weight_decay", "clip", "val_frac" };
    for (int i = 0; i < 13; i++)
        if (memcmp(buf + 12 + 4 * i, expect + 12 + 4 * i, 4) != 0) {
            if (i < 8) gfn_error_set(err, "%s: written with %s %u, this run has %u", path, fields[i], le_u32(buf + 12 + 4 * i), le_u32(expect + 12 + 4 * i));
            else gfn_error_set(err, "%s: written with %s %g, this run has %g", path, fields[i], (double)le_f32(buf + 12 + 4 * i), (double)le_f32(expect + 12 + 4 * i));
            goto done;
        }
    if (memcmp(buf + 64, expect + 64, 8) != 0) { gfn_error_set(err, "%s: written with seed %llu, this run has %llu", path, (unsigned long long)le_u64(buf + 64), (unsigned long long)le_u64(expect + 64)); goto done; }
    if (memcmp(buf + 72, expect + 72, 8) != 0) { gfn_error_set(err, "%s: trained on another token stream (the tokenizer or the inputs changed)", path); goto done; }
    const unsigned char *p = buf + id_len;
    uint32_t stored_step = le_u32(p); p += 4;
    if (stored_step > (uint32_t)id->cfg->steps) { gfn_error_set(err, "%s: step %u is past the run's %d steps", path, stored_step, id->cfg->steps); goto done; }
    *step = (int)stored_step;
    for (int i = 0; i < 4; i++) { rng->s[i] = le_u64(p); p += 8; }
    opt->step = (int)le_u32(p); p += 4;
    opt->beta1 = le_f32(p); opt->beta2 = le_f32(p + 4); opt->eps = le_f32(p + 8); p += 12 + 8;
    float *arrays[3] = { params, opt->m, opt->v };
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < n; i++) { arrays[a][i] = le_f32(p); p += 4; }
    status = 0;
done:
    free(buf);
    return status;
}

// ----------------------------------------------------------------------------------------------
// Samples: rows start from end-of-text and draw tokens through the KV cache until end-of-text
// or `len` tokens; temperature 0 is greedy.

static void print_samples(GPT *model, const Tokenizer *tok, int rows, int len, float temperature, uint64_t seed) {
    GPTConfig mc = gpt_config(model);
    if (len > mc.max_seq_len - 1) len = mc.max_seq_len - 1;
    int V = mc.vocab_size, eot = tokenizer_eot_id(tok);
    Rng rng;
    rng_seed(&rng, seed ^ 0x53414D504C455321ull);   // its own stream: samples never move training
    KVCache *cache = kv_cache_new(model, rows, len + 1);
    int *tokens = gfn_malloc((size_t)rows * sizeof *tokens), *pos = gfn_malloc((size_t)rows * sizeof *pos);
    int *out = gfn_malloc((size_t)rows * (size_t)len * sizeof *out);   // (rows, len)
    int *out_len = gfn_calloc((size_t)rows, sizeof *out_len);
    float *logits = gfn_malloc((size_t)rows * V * sizeof *logits);    // (rows, V)
    float *pairs = gfn_malloc(2 * (size_t)V * sizeof *pairs);           // (V, 2) sampler scratch
    unsigned char *every_token = gfn_malloc((size_t)V);                 // (V) no mask
    memset(every_token, 1, (size_t)V);
    SamplerConfig sampler = { temperature, 0, 1.0f };
    for (int b = 0; b < rows; b++) { tokens[b] = eot; pos[b] = 0; }
    for (int t = 0; t < len; t++) {
        gpt_decode_step(model, cache, tokens, pos, logits);
        int live = 0;
        for (int b = 0; b < rows; b++) {
            if (tokens[b] < 0) continue;
            int next = sample_token(logits + (size_t)b * V, every_token, V, &sampler, pairs, &rng);
            if (next == eot) { tokens[b] = -1; continue; }
            out[(size_t)b * len + out_len[b]++] = next;
            tokens[b] = next;
            pos[b]++;
            live++;
        }
        if (!live) break;
    }
    for (int b = 0; b < rows; b++) {
        size_t text_len;
        GfnError err;
        char *text = tokenizer_decode(tok, out + (size_t)b * len, (size_t)out_len[b], &text_len, &err);
        if (!text) { printf("--- sample %d: %s\n", b + 1, err.msg); continue; }
        printf("--- sample %d (%d tokens, temperature %.2f)\n%.*s\n", b + 1, out_len[b], (double)temperature, (int)text_len, text);
        free(text);
    }
    kv_cache_free(cache);
    free(tokens); free(pos); free(out); free(out_len); free(logits); free(pairs); free(every_token);
}

// ----------------------------------------------------------------------------------------------
// The run.

void pretrain_config_default(PretrainConfig *c) {
    memset(c, 0, sizeof *c);
    c->n_layer = 4; c->n_head = 4; c->n_embd = 256; c->ctx = 128;
    c->batch = 16; c->steps = 5000; c->warmup = 100;
    c->lr = 1e-3f; c->min_lr = 1e-4f; c->weight_decay = 0.1f; c->clip = 1.0f; c->val_frac = 0.05f;
    c->eval_every = 250; c->eval_chunks = 64; c->save_every = 500;
    c->seed = 1337;
    c->samples = 3; c->sample_len = 64; c->temperature = 0.8f;
    c->verbose = 1;
}

static int pretrain_check_config(const PretrainConfig *c, GfnError *err) {
    const char *bad = NULL;
    if (!c->tokenizer_path) bad = "a tokenizer (-t) is required";
    else if (c->num_inputs < 1) bad = "at least one input file (-i) is required";
    else if (!c->out_path) bad = "an output path (-o) is required";
    else if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head) bad = "need layers >= 1, heads >= 1 and dim a multiple of heads";
    else if (c->ctx < 2) bad = "ctx must be at least 2";
    else if (c->batch < 1 || c->steps < 0 || c->warmup < 0) bad = "need batch >= 1, steps >= 0, warmup >= 0";
    else if (!(c->lr >= 0) || !(c->min_lr >= 0) || !(c->weight_decay >= 0) || !(c->clip >= 0)) bad = "lr, min-lr, weight-decay and clip must be >= 0";
    else if (!(c->val_frac > 0 && c->val_frac < 1)) bad = "val-frac must be in (0, 1)";
    else if (c->eval_every < 0 || c->eval_chunks < 0 || c->save_every < 0 || c->stop_after < 0) bad = "eval-every, eval-chunks, save-every and stop-after must be >= 0";
    else if (c->samples < 0 || c->sample_len < 0 || !(c->temperature >= 0)) bad = "samples, their length and temperature must be >= 0";
    if (bad) { gfn_error_set(err, "pretrain: %s", bad); return 1; }
    // Files read at the end are checked now, before hours of training; outputs before writing.
    FILE *f = c->eval_file ? fopen(c->eval_file, "rb") : NULL;
    if (c->eval_file && !f) { gfn_error_set(err, "%s: cannot open the --eval-file: %s", c->eval_file, strerror(errno)); return 1; }
    if (f) fclose(f);
    return output_path_check(c->out_path, err);
}

static void log_json(FILE *log, const char *fmt, ...) {
    if (!log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fputc('\n', log);
    fflush(log);
}

static void format_duration(char *out, size_t cap, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, cap, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else snprintf(out, cap, "%ldm%02lds", s / 60, s % 60);
}

// Writes the training state and the plain model checkpoint, both atomically.
static int save_point(const char *state_path, const char *out_path, const RunIdentity *id, int step,
                      const Rng *rng, const AdamW *opt, GPT *model, GfnError *err) {
    if (state_save(state_path, id, step, rng, opt, gpt_params_memory(model), gpt_num_parameters(model), err)) return 1;
    return gpt_save(model, out_path, err);
}

int pretrain_run(const PretrainConfig *cfg, PretrainResult *result, GfnError *err) {
    PretrainResult local;
    if (!result) result = &local;
    memset(result, 0, sizeof *result);
    result->initial_val_loss = result->val_loss = result->val_bits_per_byte = result->eval_file_bits_per_byte = NAN;
    if (pretrain_check_config(cfg, err)) return 1;
#ifdef _OPENMP
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
#endif
    Tokenizer *tok = tokenizer_load(cfg->tokenizer_path, err);
    if (!tok) return 1;
    int status = 1, V = tokenizer_vocab_size(tok);
    char *cache_path = path_with_suffix(cfg->cache_path ? cfg->cache_path : cfg->out_path, cfg->cache_path ? "" : ".tokens");
    char *state_path = path_with_suffix(cfg->state_path ? cfg->state_path : cfg->out_path, cfg->state_path ? "" : ".state");
    TokenStream stream = {0};
    DataSplit split = {0};
    GPT *model = NULL;
    AdamW opt = {0};
    FILE *log = NULL;
    int *token_bytes = NULL, *inputs = NULL, *targets = NULL;
    if (token_stream_prepare(cfg, tok, cache_path, &stream, &result->cache_rebuilt, err)) goto done;
    result->num_tokens = (long long)stream.num_tokens;
    data_split_init(&split, &stream, cfg->ctx, cfg->val_frac);
    if (split.num_val == 0 || split.num_segments == 0) {
        gfn_error_set(err, "%s: %zu tokens are too few for a validation chunk and a training window of %d tokens "
                      "(val-frac %g)", cfg->inputs[0], stream.num_tokens, cfg->ctx + 1, (double)cfg->val_frac);
        goto done;
    }
    // Bytes each token decodes to, for bits per byte.
    token_bytes = gfn_malloc((size_t)V * sizeof *token_bytes);
    for (int i = 0; i < V; i++) {
        size_t n;
        tokenizer_token_bytes(tok, i, &n);
        token_bytes[i] = (int)n;
    }

    GPTConfig mc = { V, cfg->ctx, cfg->n_layer, cfg->n_head, cfg->n_embd };
    model = gpt_new_random(mc, cfg->seed);
    size_t P = gpt_num_parameters(model);
    float *params = gpt_params_memory(model);
    // AdamW with β = (0.9, 0.95), ε = 1e-8; the decay applies to every parameter (one block).
    adamw_init(&opt, P, cfg->lr, 0.9f, 0.95f, 1e-8f, cfg->weight_decay);
    Rng rng;
    rng_seed(&rng, cfg->seed);
    RunIdentity id = { cfg, V, stream.hash };
    int step = 0;
    if (cfg->resume_path) {
        if (state_load(cfg->resume_path, &id, &step, &rng, &opt, params, P, err)) goto done;
    }
    if (cfg->log_path && !(log = fopen(cfg->log_path, "a"))) { gfn_error_set(err, "%s: cannot open for appending", cfg->log_path); goto done; }
    int B = cfg->batch, T = cfg->ctx;
    if (cfg->verbose) {
        printf("pretrain: %zu parameters (L=%d, H=%d, C=%d, V=%d, ctx %d); %zu tokens, %zu validation chunks, "
               "%llu training windows; batch %d; %s at step %d of %d\n",
               P, cfg->n_layer, cfg->n_head, cfg->n_embd, V, T, stream.num_tokens, split.num_val,
               (unsigned long long)data_split_num_windows(&split), B, cfg->resume_path ? "resumed" : "starting", step, cfg->steps);
        fflush(stdout);
    }
    if (step == 0) {
        EvalSums e = evaluate(model, &split, token_bytes, B, (size_t)cfg->eval_chunks);
        result->initial_val_loss = (float)(e.nats / (double)e.tokens);
        if (cfg->verbose) printf("step %d: val loss %.4f\n", step, (double)result->initial_val_loss);
        log_json(log, "{\"step\":0,\"val_loss\":%.6f}", (double)result->initial_val_loss);
    }

    inputs = gfn_malloc((size_t)B * T * sizeof *inputs);     // (B, T)
    targets = gfn_malloc((size_t)B * T * sizeof *targets);   // (B, T)
    int first_step = step, print_every = cfg->steps >= 100 ? 10 : 1;
    double t_start = now_seconds(), t_last = t_start;
    int last_printed = step;
    double train_seconds = 0;   // time in the steps themselves, for the throughput figure
    while (step < cfg->steps && !(cfg->stop_after && step >= cfg->stop_after)) {
        double t_step = now_seconds();
        for (int b = 0; b < B; b++) sample_window(&split, &rng, inputs + (size_t)b * T, targets + (size_t)b * T);
        float lr = lr_schedule(step, cfg->warmup, cfg->steps, cfg->lr, cfg->min_lr), norm;
        float loss = gpt_train_step(model, &opt, inputs, targets, B, T, lr, cfg->clip > 0 ? cfg->clip : INFINITY, &norm);
        step++;
        if (!isfinite(loss) || !isfinite(norm)) {   // the files on disk stay those of the last save
            gfn_error_set(err, "pretrain: step %d: the loss (%g) or the gradient norm (%g) is not finite; stopped, "
                          "%s keeps the last save (try a lower --lr)", step, (double)loss, (double)norm, cfg->out_path);
            goto done;
        }
        double now = now_seconds();
        train_seconds += now - t_step;

        log_json(log, "{\"step\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6g,\"time\":%.3f}", step, (double)loss,
                 (double)lr, (double)norm, now - t_start);
        if (cfg->verbose && (step % print_every == 0 || step == cfg->steps || step - first_step <= 3)) {
            char eta[32];
            double tps = (double)(step - last_printed) * B * T / (now - t_last + 1e-9);
            format_duration(eta, sizeof eta, (now - t_start) / (step - first_step) * (cfg->steps - step));
            printf("step %d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | ETA %s\n", step, cfg->steps,
                   (double)loss, (double)lr, (double)norm, tps, eta);
            fflush(stdout);
            t_last = now;
            last_printed = step;
        }
        if (cfg->eval_every && step % cfg->eval_every == 0 && step < cfg->steps) {
            EvalSums e = evaluate(model, &split, token_bytes, B, (size_t)cfg->eval_chunks);
            double vl = e.nats / (double)e.tokens;
            if (cfg->verbose) printf("step %d: val loss %.4f (%lld tokens)\n", step, vl, e.tokens);
            log_json(log, "{\"step\":%d,\"val_loss\":%.6f}", step, vl);
        }
        int stopping = cfg->stop_after && step >= cfg->stop_after;
        if ((cfg->save_every && step % cfg->save_every == 0) || step == cfg->steps || stopping)
            if (save_point(state_path, cfg->out_path, &id, step, &rng, &opt, model, err)) goto done;
    }
    result->steps_done = step;
    if (step > first_step) result->tokens_per_second = (double)(step - first_step) * B * T / train_seconds;
    if (step == first_step && step == cfg->steps)   // nothing trained here: still leave the model
        if (save_point(state_path, cfg->out_path, &id, step, &rng, &opt, model, err)) goto done;

    EvalSums e = evaluate(model, &split, token_bytes, B, 0);
    result->num_val_tokens = e.tokens;
    result->num_val_bytes = e.bytes;
    result->val_loss = (float)(e.nats / (double)e.tokens);
    result->val_bits_per_byte = (float)(e.nats / 0.69314718055994530942 / (double)e.bytes);
    if (cfg->verbose) {
        printf("validation at step %d: %.4f nats/token, %.4f bits/byte (%lld tokens, %lld bytes)\n", step,
               (double)result->val_loss, (double)result->val_bits_per_byte, e.tokens, e.bytes);
        if (step > first_step) printf("training throughput: %.0f tokens/s\n", result->tokens_per_second);
        fflush(stdout);
    }
    log_json(log, "{\"step\":%d,\"final_val_loss\":%.6f,\"val_bits_per_byte\":%.6f,\"val_tokens\":%lld,\"val_bytes\":%lld}",
             step, (double)result->val_loss, (double)result->val_bits_per_byte, e.tokens, e.bytes);
    if (cfg->eval_file) {
        double bpb, npt;
        if (evaluate_file(model, tok, cfg->eval_file, B, T, &bpb, &npt, err)) goto done;
        result->eval_file_bits_per_byte = (float)bpb;
        if (cfg->verbose) printf("%s: %.4f nats/token, %.4f bits/byte\n", cfg->eval_file, npt, bpb);
        log_json(log, "{\"step\":%d,\"eval_file_nats_per_token\":%.6f,\"eval_file_bits_per_byte\":%.6f}", step, npt, bpb);
    }
    if (cfg->samples > 0 && cfg->sample_len > 0) print_samples(model, tok, cfg->samples, cfg->sample_len, cfg->temperature, cfg->seed);
    status = 0;
done:
    if (log && (ferror(log) | fclose(log)) && status == 0) {
        gfn_error_set(err, "%s: error writing the log (disk full?)", cfg->log_path);
        status = 1;
    }
    free(inputs); free(targets); free(token_bytes);
    adamw_free(&opt);
    if (model) gpt_free(model);
    data_split_free(&split);
    free(stream.tokens);
    free(cache_path); free(state_path);
    tokenizer_free(tok);
    return status;
}

// ==============================================================================================
// The corpus recipe (`gfn corpus`): the pretraining text, built deterministically from the shared
// data folder. Documents end with "\n<|endoftext|>\n" (the separator `gfn pretrain` splits at).
// What goes in, and what is held out for evaluation:
//   corpora/brown.txt              all; its tokenised spacing undone (" ," -> ","), 50 lines a doc
//   corpora/tinyshakespeare.txt    all; paragraphs gathered into documents of >= 2000 bytes
//   stories/tinystories_excerpt    all; a document starts at each "Once upon a time" paragraph
//   stories/roc_valid.json         rows 100..4999, one story a document; rows 0..99 are held out
//                                  (the infilling evaluation stories, as in the paper's split)
//   stories/storycloze_val_5sent   none: it is the bits/byte evaluation set
//   openwebtext/prompts.txt        lines 1000..9999, one prompt a document, except those equal
//                                  to one of the first 1000 (the continuation task's train/val)
//   subj/train.jsonl               the "text" of every row, 20 a document (never test.jsonl)
//   arithmetic                     CORPUS_ARITHMETIC questions from our seeded generator, 10 a
//                                  document: 2, 3 or 4 one-digit operands (40/40/20%), + and -,
//                                  worked in the paper's format ("Question: 9 + 4 - 7 = ? Answer:
//                                  9 + 4 = 13, 13 - 7 = 6. The answer is 6."), never a question of
//                                  a test file. Chains teach the format, the calculator call and
//                                  that the answer is the rationale's last value, so the reward
//                                  prefers correct rationales (single steps alone did not: the
//                                  answer could be read off the question). Chains of 3 steps are
//                                  there, rarer, because a model that never saw one finds the
//                                  3rd step as unlikely as a wrong answer: its reward did not
//                                  prefer a correct 4-operand rationale to one cut a step short.
//                                  Never 5 operands: the out-of-distribution test.

#define CORPUS_ROC_HELD_OUT 100
#define CORPUS_OWT_HELD_OUT 1000
#define CORPUS_ARITHMETIC 30000

typedef struct { char *data; size_t len, cap; } TextBuf;

static void text_append(TextBuf *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        while (t->len + n + 1 > t->cap) t->cap = t->cap ? 2 * t->cap : 1 << 16;
        char *grown = realloc(t->data, t->cap);
        if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        t->data = grown;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = 0;
}
static void text_puts(TextBuf *t, const char *s) { text_append(t, s, strlen(s)); }
static void text_end_doc(TextBuf *t) {
    if (t->len && t->data[t->len - 1] != '\n') text_puts(t, "\n");
    text_puts(t, DOC_SEPARATOR "\n");
}

// A set of 64-bit string hashes (open addressing): which lines are held out.
typedef struct { uint64_t *slots; size_t cap, count; } HashSet;
static void hashset_add(HashSet *set, const char *s, size_t n);
static int hashset_has(const HashSet *set, const char *s, size_t n) {
    if (!set->cap) return 0;
    uint64_t h = fnv1a64(s, n, FNV_OFFSET) | 1;   // 0 marks an empty slot
    for (size_t i = h & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (set->slots[i] == h) return 1;
        if (!set->slots[i]) return 0;
    }
}
static void hashset_add(HashSet *set, const char *s, size_t n) {
    if (2 * (set->count + 1) > set->cap) {   // grow: rehash into twice the slots
        HashSet bigger = { gfn_calloc(set->cap ? 2 * set->cap : 1024, sizeof(uint64_t)), set->cap ? 2 * set->cap : 1024, 0 };
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i]) {
                size_t j = set->slots[i] & (bigger.cap - 1);
                while (bigger.slots[j]) j = (j + 1) & (bigger.cap - 1);
                bigger.slots[j] = set->slots[i];
                bigger.count++;
            }
        free(set->slots);
        *set = bigger;
    }
    uint64_t h = fnv1a64(s, n, FNV_OFFSET) | 1;
    size_t i = h & (set->cap - 1);
    while (set->slots[i] && set->slots[i] != h) i = (i + 1) & (set->cap - 1);
    if (!set->slots[i]) { set->slots[i] = h; set->count++; }
}

// Reads DIR/NAME; NULL with err set when it is missing.
static char *corpus_read(const char *dir, const char *name, size_t *len, GfnError *err) {
    char *path = gfn_malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    char *text = (char *)read_file(path, len, err);
    free(path);
    return text;
}

// The next line of text[*pos..len) without its '\n' (and trailing spaces); 0 at the end.
static int next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *line_len) {
    if (*pos >= len) return 0;
    size_t start = *pos, end = start;
    while (end < len && text[end] != '\n') end++;
    *pos = end + 1;
    while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\r' || text[end - 1] == '\t')) end--;
    *line = text + start;
    *line_len = end - start;
    return 1;
}

// Brown's tokens are space-separated ("said , `` no evidence '' that"); this joins punctuation
// back to its word and turns `` and '' into quotes, so the text reads like ordinary prose.
static void brown_detokenize(TextBuf *out, const char *line, size_t n) {
    static const char *const attach_left[] = { ",", ".", ";", ":", "?", "!", ")", "'s", "n't", "'re", "'ll", "'ve", "'m", "'d", "''", "'" };
    int glue_next = 1;   // no space before the first word, nor after an opening quote or '('
    int words = 0;

    size_t i = 0;
    while (i < n) {
        while (i < n && line[i] == ' ') i++;
        size_t start = i;
        while (i < n && line[i] != ' ') i++;
        if (i == start) break;
        const char *w = line + start;
        size_t wn = i - start;
        int glue = glue_next;
        glue_next = 0;
        for (size_t k = 0; k < sizeof attach_left / sizeof *attach_left; k++)
            if (strlen(attach_left[k]) == wn && !memcmp(w, attach_left[k], wn)) glue = 1;
        if (wn == 2 && !memcmp(w, "``", 2)) { w = "\""; wn = 1; glue_next = 1; glue = words == 0; }
        else if (wn == 2 && !memcmp(w, "''", 2)) { w = "\""; wn = 1; }
        else if (wn == 1 && *w == '(') glue_next = 1;
        if (!glue) text_puts(out, " ");
        text_append(out, w, wn);
        words++;
    }
    text_puts(out, "\n");
}

static int corpus_brown(TextBuf *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "corpora/brown.txt", &len, err);
    if (!text) return 1;
    const char *line;
    int lines = 0;
    while (next_line(text, len, &pos, &line, &n)) {
        if (!n) continue;
        brown_detokenize(out, line, n);
        if (++lines % 50 == 0) text_end_doc(out);
    }
    if (lines % 50) text_end_doc(out);
    free(text);
    return 0;
}

// Paragraphs (separated by blank lines) gathered into documents of at least min_bytes, or cut
// before each paragraph that starts with `new_doc_at` when that is given.
static int corpus_paragraphs(TextBuf *out, const char *dir, const char *name, size_t min_bytes,
                             const char *new_doc_at, GfnError *err) {
    size_t len, pos = 0, n, doc_bytes = 0;
    char *text = corpus_read(dir, name, &len, err);
    if (!text) return 1;
    const char *line;
    int in_paragraph = 0;
    while (next_line(text, len, &pos, &line, &n)) {
        if (!n) { in_paragraph = 0; continue; }
        if (!in_paragraph && doc_bytes) {   // a paragraph begins: a new document, or a blank line
            int cut = new_doc_at ? (n >= strlen(new_doc_at) && !memcmp(line, new_doc_at, strlen(new_doc_at)))
                                 : doc_bytes >= min_bytes;
            if (cut) { text_end_doc(out); doc_bytes = 0; }
            else text_puts(out, "\n");
        }
        in_paragraph = 1;
        text_append(out, line, n);
        text_puts(out, "\n");
        doc_bytes += n + 1;
    }
    if (doc_bytes) text_end_doc(out);
    free(text);
    return 0;
}

static int corpus_roc(TextBuf *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "stories/roc_valid.json", &len, err);
    if (!text) return 1;
    const char *line;
    int row = 0, status = 0;
    while (status == 0 && next_line(text, len, &pos, &line, &n)) {
        if (!n) continue;
        if (row++ < CORPUS_ROC_HELD_OUT) continue;
        Json *story = json_parse(line, n, "stories/roc_valid.json", err);
        if (!story || story->type != JSON_ARRAY) {
            if (story) gfn_error_set(err, "%s/stories/roc_valid.json: row %d is not a JSON array", dir, row - 1);
            status = 1;
        } else {
            for (Json *s = story->child; s; s = s->next)
                if (s->type == JSON_STRING) {
                    if (s != story->child) text_puts(out, " ");
                    text_append(out, s->string, s->len);
                }
            text_end_doc(out);
        }
        json_free(story);
    }
    free(text);
    return status;
}

static int corpus_openwebtext(TextBuf *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "openwebtext/prompts.txt", &len, err);
    if (!text) return 1;
    const char *line;
    HashSet held_out = {0};
    for (int row = 0; next_line(text, len, &pos, &line, &n); row++) {
        if (row < CORPUS_OWT_HELD_OUT) { hashset_add(&held_out, line, n); continue; }
        if (!n || hashset_has(&held_out, line, n)) continue;
        text_append(out, line, n);
        text_puts(out, "\n");
        text_end_doc(out);
    }
    free(held_out.slots);
    free(text);
    return 0;
}

static int corpus_subj(TextBuf *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "subj/train.jsonl", &len, err);
    if (!text) return 1;
    const char *line;
    int rows = 0, status = 0;
    while (status == 0 && next_line(text, len, &pos, &line, &n)) {
        if (!n) continue;
        Json *row = json_parse(line, n, "subj/train.jsonl", err);
        Json *t = row ? json_get(row, "text") : NULL;
        if (!t || t->type != JSON_STRING) {
            if (row) gfn_error_set(err, "%s/subj/train.jsonl: row %d has no \"text\" string", dir, rows);
            status = 1;
        } else {
            text_append(out, t->string, t->len);
            text_puts(out, "\n");
            if (++rows % 20 == 0) text_end_doc(out);
        }
        json_free(row);
    }
    if (status == 0 && rows % 20) text_end_doc(out);
    free(text);
    return status;
}

// One worked question, written by the arithmetic task's own formatter (tasks/arithmetic.c).
// The draws (the operand count, then per operand its digit and an operator, the first one unused)
// fix the corpus bytes of a seed. *query_len gets the length of the part the test files hold,
// "Question: ... Answer:".
static size_t arithmetic_question(Rng *rng, char *buf, size_t cap, size_t *query_len) {
    static const int operands[5] = { 2, 2, 3, 3, 4 };   // 40% 2, 40% 3, 20% 4 operands
    ArithQuestion q = { .n = operands[rng_below(rng, 5)] };
    for (int i = 0; i < q.n; i++) {
        q.operand[i] = rng_below(rng, 10);
        char op = rng_below(rng, 2) ? '+' : '-';
        if (i > 0) q.op[i - 1] = op;
    }
    arith_text(&q, ARITH_QUERY, buf, cap);
    *query_len = strlen(buf);
    arith_text(&q, ARITH_WORKED, buf, cap);
    return strlen(buf);
}

static int corpus_arithmetic(TextBuf *out, const char *dir, uint64_t seed, GfnError *err) {
    static const char *const tests[] = { "arithmetic/1digit_3_op+-_test.json", "arithmetic/1digit_4_op+-_test.json",
                                         "arithmetic/1digit_5_op+-_test.json", "arithmetic/1digit_34_op+-_test.json" };
    HashSet held_out = {0};
    for (size_t k = 0; k < sizeof tests / sizeof *tests; k++) {
        size_t len;
        char *text = corpus_read(dir, tests[k], &len, err);
        if (!text) { free(held_out.slots); return 1; }
        Json *root = json_parse(text, len, tests[k], err);
        free(text);
        if (!root) { free(held_out.slots); return 1; }
        if (root->type != JSON_ARRAY) {   // else its questions would silently not be held out
            gfn_error_set(err, "%s/%s: expected a JSON array of questions", dir, tests[k]);
            json_free(root); free(held_out.slots); return 1;
        }
        for (Json *q = root->child; q; q = q->next) {
            Json *s = json_get(q, "str_query");
            if (s && s->type == JSON_STRING) hashset_add(&held_out, s->string, s->len);
        }
        json_free(root);
    }
    Rng rng;
    rng_seed(&rng, seed);
    int written = 0;
    while (written < CORPUS_ARITHMETIC) {
        char q[256];
        size_t query_len, n = arithmetic_question(&rng, q, sizeof q, &query_len);
        if (hashset_has(&held_out, q, query_len)) continue;
        text_append(out, q, n);
        text_puts(out, "\n");
        if (++written % 10 == 0) text_end_doc(out);
    }
    free(held_out.slots);
    return 0;
}

int corpus_build(const char *data_dir, const char *out_path, uint64_t seed, size_t *bytes, GfnError *err) {
    TextBuf out = {0};
    int failed = corpus_brown(&out, data_dir, err) ||
                 corpus_paragraphs(&out, data_dir, "corpora/tinyshakespeare.txt", 2000, NULL, err) ||
                 corpus_paragraphs(&out, data_dir, "stories/tinystories_excerpt.txt", 0, "Once upon a time", err) ||
                 corpus_roc(&out, data_dir, err) ||
                 corpus_openwebtext(&out, data_dir, err) ||
                 corpus_subj(&out, data_dir, err) ||
                 corpus_arithmetic(&out, data_dir, seed, err) ||
                 write_file_atomic(out_path, out.data, out.len, err);
    if (bytes) *bytes = out.len;
    free(out.data);
    return failed;
}

#ifndef GFN_NO_MAIN

// ----------------------------------------------------------------------------------------------
// gfn pretrain: flags into a PretrainConfig, then pretrain_run.

static void pretrain_usage(FILE *out) {
    PretrainConfig d;
    pretrain_config_default(&d);
    fprintf(out,
        "usage: gfn pretrain -t TOKENIZER -i FILE... -o OUT [options]\n"
        "Trains a GPT-2 from scratch on the files (documents split at \"<|endoftext|>\"). Writes OUT (a model\n"
        "checkpoint for gpt_load), OUT.state (the training state, for --resume) and OUT.tokens (the\n"
        "token cache), each atomically.\n"
        "  --layers N         layers (%d)\n"
        "  --heads N          attention heads (%d)\n"
        "  --dim N            embedding width (%d)\n"
        "  --ctx N            context length (%d)\n"
        "  --batch N          sequences per step (%d)\n"
        "  --steps N          optimizer steps (%d)\n"
        "  --lr X             peak learning rate (%g)\n"
        "  --warmup N         linear warm-up steps (%d), then cosine decay to --min-lr\n"
        "  --min-lr X         final learning rate (%g)\n"
        "  --weight-decay X   AdamW decoupled weight decay (%g)\n"
        "  --clip X           global gradient-norm clip (%g; 0: none)\n"
        "  --val-frac X       held-out fraction of the ctx+1-token chunks (%g)\n"
        "  --eval-every N     validation loss every N steps (%d; 0: only at the end)\n"
        "  --eval-chunks N    validation chunks used then (%d; 0: all); the end uses all\n"
        "  --save-every N     write OUT and OUT.state every N steps (%d)\n"
        "  --stop-after N     stop after step N with the state saved (resume later)\n"
        "  --resume STATE     continue a run from its OUT.state, to the same bits\n"
        "  --seed N           model init and training windows (%llu)\n"
        "  --threads N        OpenMP threads (default: OpenMP's)\n"
        "  --log FILE         JSONL log, appended: one line per step and per evaluation\n"
        "  --eval-file FILE   a held-out text whose bits/byte is printed at the end\n"
        "  --tokens PATH      the token cache (OUT.tokens)\n"
        "  --state PATH       the training state written (OUT.state)\n"
        "  --samples N        samples printed at the end (%d)\n"
        "  --sample-len N     their length in tokens (%d)\n"
        "  --temperature X    their temperature (%g; 0: greedy)\n"
        "  --quiet            no progress lines\n",
        d.n_layer, d.n_head, d.n_embd, d.ctx, d.batch, d.steps, (double)d.lr, d.warmup, (double)d.min_lr,
        (double)d.weight_decay, (double)d.clip, (double)d.val_frac, d.eval_every, d.eval_chunks, d.save_every,
        (unsigned long long)d.seed, d.samples, d.sample_len, (double)d.temperature);
}

// Parse a flag's value, the whole string, into its allowed range; 0 on success, else a message
// naming the flag and the range. Every numeric flag goes through one of these, so no value that
// is out of range, not finite or too big for its type reaches a conversion.
static int parse_long(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < lo || v > hi) { fprintf(stderr, "gfn: %s wants an integer in [%lld, %lld], got '%s'\n", flag, lo, hi, s); return 1; }
    *out = v;
    return 0;
}
static int parse_real(const char *flag, const char *s, double lo, double hi, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || !(v >= lo && v <= hi)) {
        fprintf(stderr, "gfn: %s wants a finite number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return 1;
    }
    *out = (float)v;
    return 0;
}
// A whole number written as an integer or a float ("1e3"), as `gfn train` has always taken them.
static int parse_count(const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi) || v != floor(v)) {
        fprintf(stderr, "gfn: %s wants a whole number in [%d, %d], got '%s'\n", flag, lo, hi, s);
        return 1;
    }
    *out = (int)v;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// gfn corpus

static int cmd_corpus(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    long long seed = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) { if (parse_long("--seed", argv[++i], 0, 0x7FFFFFFFFFFFFFFFll, &seed)) return 1; }
        else { dir = out = NULL; break; }
    }
    if (!dir || !out) {
        fprintf(stderr, "usage: gfn corpus -d DATA_DIR -o OUT.txt [--seed N (1)]\n"
                        "Builds the pretraining text from the shared data; what is held out is listed in gfn.c.\n");
        return 1;
    }
    GfnError err = {{0}};
    size_t bytes;
    if (corpus_build(dir, out, (uint64_t)seed, &bytes, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
    printf("%s: %zu bytes\n", out, bytes);
    return 0;
}

static int cmd_pretrain(int argc, char **argv) {
    PretrainConfig cfg;
    pretrain_config_default(&cfg);
    const char **inputs = gfn_calloc((size_t)argc, sizeof *inputs);
    int n_in = 0, bad = 0;
    struct { const char *flag; int *dst; long long lo, hi; } ints[] = {
        {"--layers", &cfg.n_layer, 1, 1024}, {"--heads", &cfg.n_head, 1, 1024}, {"--dim", &cfg.n_embd, 1, 32768},
        {"--ctx", &cfg.ctx, 2, 65536}, {"--batch", &cfg.batch, 1, 4096}, {"--steps", &cfg.steps, 0, 1 << 30},
        {"--warmup", &cfg.warmup, 0, 1 << 30}, {"--eval-every", &cfg.eval_every, 0, 1 << 30},
        {"--eval-chunks", &cfg.eval_chunks, 0, 1 << 30}, {"--save-every", &cfg.save_every, 0, 1 << 30},
        {"--stop-after", &cfg.stop_after, 0, 1 << 30}, {"--threads", &cfg.threads, 0, 4096},
        {"--samples", &cfg.samples, 0, 1024}, {"--sample-len", &cfg.sample_len, 0, 1 << 20},
    };
    struct { const char *flag; float *dst; double lo, hi; } floats[] = {
        {"--lr", &cfg.lr, 0, 10}, {"--min-lr", &cfg.min_lr, 0, 10}, {"--weight-decay", &cfg.weight_decay, 0, 10},
        {"--clip", &cfg.clip, 0, 1e6}, {"--val-frac", &cfg.val_frac, 1e-6, 0.999999}, {"--temperature", &cfg.temperature, 0, 100},
    };
    struct { const char *flag; const char **dst; } strs[] = {
        {"-t", &cfg.tokenizer_path}, {"-o", &cfg.out_path}, {"--log", &cfg.log_path}, {"--resume", &cfg.resume_path},
        {"--tokens", &cfg.cache_path}, {"--state", &cfg.state_path}, {"--eval-file", &cfg.eval_file},
    };
    for (int i = 2; i < argc && !bad; i++) {
        const char *a = argv[i];
        int known = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { pretrain_usage(stdout); free(inputs); return 0; }
        if (!strcmp(a, "--quiet")) { cfg.verbose = 0; continue; }
        if (!strcmp(a, "-i")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') inputs[n_in++] = argv[++i];
            continue;
        }
        if (i + 1 >= argc) { fprintf(stderr, "gfn: %s: missing value (or unknown flag)\n", a); bad = 1; break; }
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !known; k++)
            if (!strcmp(a, ints[k].flag)) {
                long long v;
                known = 1;
                if (parse_long(a, argv[++i], ints[k].lo, ints[k].hi, &v)) bad = 1; else *ints[k].dst = (int)v;
            }
        for (size_t k = 0; k < sizeof floats / sizeof *floats && !known; k++)
            if (!strcmp(a, floats[k].flag)) { known = 1; bad |= parse_real(a, argv[++i], floats[k].lo, floats[k].hi, floats[k].dst); }
        for (size_t k = 0; k < sizeof strs / sizeof *strs && !known; k++)
            if (!strcmp(a, strs[k].flag)) { known = 1; *strs[k].dst = argv[++i]; }
        if (!known && !strcmp(a, "--seed")) {
            long long v;
            known = 1;
            if (parse_long(a, argv[++i], 0, 0x7FFFFFFFFFFFFFFFll, &v)) bad = 1; else cfg.seed = (uint64_t)v;
        }
        if (!known) { fprintf(stderr, "gfn: pretrain: unknown flag '%s'\n", a); bad = 1; }
    }
    if (bad) { pretrain_usage(stderr); free(inputs); return 1; }
    // Consistent with each other, and no allocation beyond what a run on one machine can hold.
    double block_params = 12.0 * cfg.n_layer * cfg.n_embd * cfg.n_embd + (double)cfg.ctx * cfg.n_embd;
    const char *clash = cfg.min_lr > cfg.lr ? "--min-lr must be at most --lr"
                      : (long long)cfg.batch * cfg.ctx > (1 << 22) ? "--batch x --ctx must be at most 4194304 tokens a step"
                      : block_params > 4e9 ? "--layers x --dim^2 x 12 must be at most 4e9 parameters" : NULL;
    if (clash) { fprintf(stderr, "gfn pretrain: %s\n", clash); free(inputs); return 1; }
    cfg.inputs = inputs;
    cfg.num_inputs = n_in;
    GfnError err = {{0}};
    PretrainResult result;
    int status = pretrain_run(&cfg, &result, &err);
    if (status) fprintf(stderr, "gfn: %s\n", err.msg);
    free(inputs);
    return status ? 1 : 0;
}
static void usage(FILE *out) {
    fprintf(out,
        "usage: gfn COMMAND [options]   (gfn COMMAND --help for each)\n"
        "commands:\n"
        "  train TASK   fine-tune a LoRA policy on a task as a GFlowNet (or SFT / REINFORCE)\n"
        "  sample       generate from a model (+ adapter) for a prompt, or from a task's policy\n"
        "  tasks        list the tasks\n"
        "  score        log-probabilities of token-id sequences under a model (and adapter)\n"
        "  convert      a model between our checkpoint (f32 / f16) and a Hugging Face directory\n"
        "  pretrain     train a GPT-2 from scratch on a text corpus\n"
        "  corpus       build the pretraining text from the shared data\n"
        "  report arithmetic DIR OUT   OUT.md and OUT.svg from the result files in DIR (make reproduce)\n"
        "  tokenize     encode standard input line by line with a tokenizer (or --decode ids)\n"
        "  tokenizer    tokenizer train: learn a byte-level BPE vocabulary from text files\n"
        "  score        log-probabilities of token-id sequences under a model (and adapter)\n"
        "  convert      a model between our checkpoint (f32 / f16) and a Hugging Face directory\n");
}

static void train_usage(FILE *out) {
    fprintf(out,
        "usage: gfn train TASK [options]\n"
        "  --loss L            subtb | tb | db | vargrad | sft | reinforce (default subtb)\n"
        "  --steps N           optimizer steps (200); 0 evaluates the untuned base model\n"
        "  --batch N           trajectories per micro-batch (16)\n"
        "  --k N               trajectories per query in a batch (16)\n"
        "  --accum N           micro-batches per step, gradients averaged (1)\n"
        "  --lr F              LoRA peak learning rate (1e-4); --lr-min F its cosine floor (0)\n"
        "  --lr-logz F         log Z learning rate (0.1)\n"
        "  --warmup N          warm-up steps (20)\n"
        "  --clip F            gradient norm clip, 0 = off (1)\n"
        "  --rank N --alpha F  LoRA rank and alpha (64, 16)\n"
        "  --targets LIST      comma list of c_attn,attn.c_proj,c_fc,mlp.c_proj (all)\n"
        "  --on-policy F --tempered F   behaviour fractions; the rest replays (0.25, 0.5)\n"
        "  --temp-lo F --temp-hi F      tempered sampling range (0.5, 2)\n"
        "  --reward-temp A,B,H reward temperature A -> B over H steps (1,1,1)\n"
        "  --replay N          replay buffer size per query (50)\n"
        "  --lambda F          SubTB lambda (1)\n"
        "  -m PATH -t PATH --data PATH  base model, tokenizer, data (task-specific)\n"
        "  --stop eot|newline  rng with -m: the terminator (eot)\n"
        "  --prompt question|fewshot  arithmetic: the policy's prompt (question; the base: fewshot)\n"
        "  --seed-answers 1    rng: seed the replay buffer with the 101 valid answers (0)\n"
        "  -s SEED             seed (1)\n"
        "  --eval-n N          test questions per evaluated set (task default)\n"
        "  --log FILE          JSONL log, one line per step\n"
        "  --save PATH         adapter file (saved atomically at the end)\n"
        "  --save-every N      also every N steps\n"
        "  -q                  no progress line\n");
}

static int parse_targets(const char *list, int targeted[LORA_NUM_TARGETS]) {
    for (int t = 0; t < LORA_NUM_TARGETS; t++) targeted[t] = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (!strcmp(tok, lora_target_names[t])) { targeted[t] = 1; found = 1; }
        if (!found) { fprintf(stderr, "gfn: unknown LoRA target '%s'\n", tok); return 1; }
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
        train_usage(argc < 3 ? stderr : stdout);
        if (argc >= 3) for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++) printf("  task %-6s %s\n", tasks[i]->name, tasks[i]->help);
        return argc < 3 ? 1 : 0;
    }
    Task *task = task_find(argv[2]);
    if (!task) { fprintf(stderr, "gfn: unknown task '%s' (gfn tasks lists them)\n", argv[2]); return 1; }
    TrainConfig cfg;
    train_config_default(&cfg);
    TaskOptions topt = { "", "", "", 1, -13.815511f, 0, 0, NULL, NULL, 0 };
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-q")) { cfg.quiet = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn train: option %s needs a value\n", a); return 1; }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "--loss")) {
            int found = 0;
            for (int l = 0; l <= LOSS_REINFORCE; l++) if (!strcmp(v, loss_names[l])) { cfg.loss = (LossKind)l; found = 1; }
            if (!found) { fprintf(stderr, "gfn train: unknown loss '%s'\n", v); return 1; }
        } else if (!strcmp(a, "-m")) topt.model_path = v;
        else if (!strcmp(a, "-t")) topt.tokenizer_path = v;
        else if (!strcmp(a, "--data")) topt.data_path = v;
        else if (!strcmp(a, "--stop")) topt.stop = v;
        else if (!strcmp(a, "--prompt")) topt.prompt = v;
        else if (!strcmp(a, "--log")) cfg.log_path = v;
        else if (!strcmp(a, "--save")) cfg.save_path = v;
        else if (!strcmp(a, "--targets")) { if (parse_targets(v, cfg.lora_targets)) return 1; }
        else if (!strcmp(a, "--reward-temp")) {   // START,END,HORIZON
            char part[3][64] = { "", "", "" };
            const char *p = v;
            int parts = 0;
            for (; parts < 3; parts++) {
                size_t n = strcspn(p, ",");
                if (n >= sizeof part[0]) break;
                memcpy(part[parts], p, n);
                p += n;
                if (*p != ',') { parts++; break; }
                p++;
            }
            if (parts != 3 || *p) { fprintf(stderr, "gfn train: --reward-temp wants START,END,HORIZON, got '%s'\n", v); return 1; }
            bad = parse_real("--reward-temp START", part[0], 1e-3, 1e6, &cfg.reward_temp_start) ||
                  parse_real("--reward-temp END", part[1], 1e-3, 1e6, &cfg.reward_temp_end) ||
                  parse_count("--reward-temp HORIZON", part[2], 1, 10000000, &cfg.reward_temp_horizon);
        }
        else if (!strcmp(a, "--steps")) bad = parse_count(a, v, 0, 10000000, &cfg.steps);
        else if (!strcmp(a, "--batch")) bad = parse_count(a, v, 1, 4096, &cfg.batch);
        else if (!strcmp(a, "--k")) bad = parse_count(a, v, 1, 4096, &cfg.samples_per_query);
        else if (!strcmp(a, "--accum")) bad = parse_count(a, v, 1, 1024, &cfg.accum);
        else if (!strcmp(a, "--lr")) bad = parse_real(a, v, 0, 10, &cfg.lr);
        else if (!strcmp(a, "--lr-min")) bad = parse_real(a, v, 0, 10, &cfg.lr_min);
        else if (!strcmp(a, "--lr-logz")) bad = parse_real(a, v, 0, 100, &cfg.lr_log_z);
        else if (!strcmp(a, "--warmup")) bad = parse_count(a, v, 0, 10000000, &cfg.warmup);
        else if (!strcmp(a, "--clip")) bad = parse_real(a, v, 0, 1e6, &cfg.clip);
        else if (!strcmp(a, "--rank")) bad = parse_count(a, v, 1, 1024, &cfg.lora_rank);
        else if (!strcmp(a, "--alpha")) bad = parse_real(a, v, 1e-6, LORA_ALPHA_MAX, &cfg.lora_alpha);
        else if (!strcmp(a, "--on-policy")) bad = parse_real(a, v, 0, 1, &cfg.frac_on_policy);
        else if (!strcmp(a, "--tempered")) bad = parse_real(a, v, 0, 1, &cfg.frac_tempered);
        else if (!strcmp(a, "--temp-lo")) bad = parse_real(a, v, 1e-3, 1000, &cfg.temp_lo);
        else if (!strcmp(a, "--temp-hi")) bad = parse_real(a, v, 1e-3, 1000, &cfg.temp_hi);
        else if (!strcmp(a, "--replay")) bad = parse_count(a, v, 1, 100000, &cfg.replay_capacity);
        else if (!strcmp(a, "--lambda")) bad = parse_real(a, v, 1e-6, 1e3, &cfg.lambda);
        else if (!strcmp(a, "--save-every")) bad = parse_count(a, v, 0, 10000000, &cfg.save_every);
        else if (!strcmp(a, "--eval-n")) bad = parse_count(a, v, 0, 1000000, &topt.eval_n);
        else if (!strcmp(a, "--seed-answers")) bad = parse_count(a, v, 0, 1, &topt.seed_answers);
        else if (!strcmp(a, "--reward-floor")) {   // a probability; the task takes its log
            float floor_r;
            bad = parse_real(a, v, 1e-30, 1, &floor_r);
            topt.reward_floor = logf(floor_r);
        } else if (!strcmp(a, "-s")) {
            long long seed;
            bad = parse_long(a, v, 0, 0x7FFFFFFFFFFFFFFFll, &seed);
            cfg.seed = topt.seed = (uint64_t)seed;
        }
        else { fprintf(stderr, "gfn train: unknown option %s\n", a); return 1; }
        if (bad) return 1;
    }
    const char *clash = cfg.samples_per_query > cfg.batch ? "--k must be at most --batch"
                      : cfg.lr_min > cfg.lr ? "--lr-min must be at most --lr"
                      : cfg.temp_lo > cfg.temp_hi ? "--temp-lo must be at most --temp-hi"
                      : cfg.frac_on_policy + cfg.frac_tempered > 1 ? "--on-policy + --tempered must be at most 1" : NULL;
    if (clash) {
        fprintf(stderr, "gfn train: %s (--batch %d --k %d, --lr %g --lr-min %g, --temp-lo %g --temp-hi %g, --on-policy %g "
                "--tempered %g)\n", clash, cfg.batch, cfg.samples_per_query, (double)cfg.lr,
                (double)cfg.lr_min, (double)cfg.temp_lo, (double)cfg.temp_hi, (double)cfg.frac_on_policy,
                (double)cfg.frac_tempered);
        return 1;
    }
    GfnError out_err;
    struct stat save_st;   // --save DIR or DIR/ is a PEFT directory; a file must be one we may replace
    int save_is_dir = cfg.save_path && cfg.save_path[0] && (cfg.save_path[strlen(cfg.save_path) - 1] == '/' ||
                                        (stat(cfg.save_path, &save_st) == 0 && S_ISDIR(save_st.st_mode)));
    if (cfg.save_path && !save_is_dir && output_path_check(cfg.save_path, &out_err)) {
        fprintf(stderr, "gfn train: %s\n", out_err.msg);
        return 1;
    }
    if (cfg.loss == LOSS_SFT && !task->demonstration) {
        fprintf(stderr, "gfn train: task %s has no given Z to imitate (--loss sft)\n", task->name);
        return 1;
    }
    GfnError err = { { 0 } };
    if (task->setup(task, &topt, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
    GPT *policy = copy_model(task->base);
    float *log_z = gfn_calloc((size_t)task->num_train, sizeof(float));
    int status = cfg.steps > 0 ? gfn_train(task, policy, &cfg, log_z, &err) : 0;   // 0: the base itself
    if (status) fprintf(stderr, "gfn: %s\n", err.msg);
    else task->evaluate(task, policy, cfg.loss == LOSS_TB ? log_z : NULL, stdout, cfg.seed);
    free(log_z);
    gpt_free(policy);
    task->cleanup(task);
    return status;
}

// ----------------------------------------------------------------------------------------------
// Tokenizer commands

// Reads one line of f (without its '\n') into a growing buffer; returns 0 at end of input.
static int read_line(FILE *f, char **buf, size_t *cap, size_t *len) {
    size_t n = 0;
    int c = EOF;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n + 1 >= *cap) {
            *cap = *cap ? 2 * *cap : 4096;
            char *grown = realloc(*buf, *cap);
            if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
            *buf = grown;
        }
        (*buf)[n++] = (char)c;
    }
    *len = n;
    return !(c == EOF && n == 0);
}

static int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL;
    int decode = 0, special = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { tok_path = NULL; decode = -1; break; }
        else { fprintf(stderr, "gfn tokenize: unknown option '%s' (see gfn tokenize --help)\n", argv[i]); return 1; }
    }
    if (!tok_path) {
        fprintf(decode < 0 ? stdout : stderr,
            "usage: gfn tokenize -t TOKENIZER [--decode] [--special] < input\n"
            "  Encodes each line of standard input (without its newline) and prints its ids,\n"
            "  space-separated, one line per input line.\n"
            "  -t PATH     our tokenizer file, or a directory with GPT-2's encoder.json + vocab.bpe\n"
            "              (or vocab.json + merges.txt)\n"
            "  --decode    the reverse: each input line of ids becomes its text line\n"
            "  --special   encode the text <|endoftext|> as the special token\n");
        return decode < 0 ? 0 : 1;
    }
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_load(tok_path, &err);
    if (!tok) { fprintf(stderr, "gfn tokenize: %s\n", err.msg); return 1; }
    char *line = NULL;
    size_t cap = 0, len, line_no = 0;
    int status = 0;
    int *ids = NULL;
    size_t ids_cap = 0;
    while (status == 0 && read_line(stdin, &line, &cap, &len)) {
        line_no++;
        if (!decode) {
            size_t n;
            int *out = tokenizer_encode(tok, line ? line : "", len, special, &n);
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", out[i]);
            putchar('\n');
            free(out);
            continue;
        }
        size_t n = 0;
        for (size_t i = 0; i < len && status == 0;) {
            if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') { i++; continue; }
            long v = 0;
            size_t j = i;
            while (j < len && line[j] >= '0' && line[j] <= '9' && v <= 100000000) v = v * 10 + (line[j++] - '0');
            if (j == i || (j < len && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') || v >= tokenizer_vocab_size(tok)) {
                fprintf(stderr, "gfn tokenize: standard input line %zu: '%.*s' is not a token id in [0, %d)\n",
                        line_no, (int)(j > i ? j - i : 1), line + i, tokenizer_vocab_size(tok));
                status = 1;
                break;
            }
            if (n == ids_cap) {
                ids_cap = ids_cap ? 2 * ids_cap : 256;
                int *grown = realloc(ids, ids_cap * sizeof(int));
                if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
                ids = grown;
            }
            ids[n++] = (int)v;
            i = j;
        }
        if (status) break;
        size_t text_len;
        char *text = tokenizer_decode(tok, ids, n, &text_len, &err);
        if (!text) { fprintf(stderr, "gfn tokenize: standard input line %zu: %s\n", line_no, err.msg); status = 1; break; }
        fwrite(text, 1, text_len, stdout);
        putchar('\n');
        free(text);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) { fprintf(stderr, "gfn tokenize: error writing standard output\n"); status = 1; }
    free(line); free(ids);
    tokenizer_free(tok);
    return status;
}

static int cmd_tokenizer(int argc, char **argv) {
    const char *out_path = NULL;
    const char **inputs = gfn_calloc((size_t)argc, sizeof(char *));
    int num_inputs = 0, vocab_size = 0, help = argc < 3 || strcmp(argv[2], "train") != 0;
    for (int i = 3; i < argc && !help; i++) {
        if (!strcmp(argv[i], "-i")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') inputs[num_inputs++] = argv[++i];
        } else if (!strcmp(argv[i], "-V") && i + 1 < argc) {
            long long v;
            if (parse_long("-V", argv[++i], 257, 1 << 24, &v)) { free(inputs); return 1; }
            vocab_size = (int)v;
        }
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) help = 2;
        else { fprintf(stderr, "gfn tokenizer train: unknown option '%s' (see gfn tokenizer --help)\n", argv[i]); free(inputs); return 1; }
    }
    if (help || !out_path || num_inputs == 0 || vocab_size == 0) {
        int asked = help == 2 || (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")));
        fprintf(asked ? stdout : stderr,
            "usage: gfn tokenizer train -i FILE... -V SIZE -o OUT\n"
            "  Learns a byte-level BPE vocabulary of SIZE ids (256 bytes + SIZE - 257 merges +\n"
            "  <|endoftext|>) from the text files, with GPT-2's pre-tokenisation; ties go to the\n"
            "  smallest (left id, right id), so the same files give the same OUT byte for byte.\n"
            "  OUT is written atomically (OUT.tmp, then renamed).\n");
        free(inputs);
        return asked ? 0 : 1;
    }
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_train(inputs, num_inputs, vocab_size, &err);
    free(inputs);
    if (!tok) { fprintf(stderr, "gfn tokenizer train: %s\n", err.msg); return 1; }
    int rc = tokenizer_save(tok, out_path, &err);
    if (rc) fprintf(stderr, "gfn tokenizer train: %s\n", err.msg);
    else printf("%s: %d ids (%d merges)\n", out_path, tokenizer_vocab_size(tok), tokenizer_vocab_size(tok) - 257);
    tokenizer_free(tok);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// gfn score: per-token log-probabilities, as HF's GPT2LMHeadModel computes them.

static void score_usage(FILE *out) {
    fprintf(out,
        "usage: gfn score -m MODEL [-a ADAPTER] --ids FILE\n"
        "       gfn score -m MODEL [-a ADAPTER] -t TOKENIZER --text FILE\n"
        "With --text: the whole file, tokenized, in windows of the model's context; prints\n"
        "  FILE: X nats/token, Y bits/byte   (bits/byte: total nats / ln 2 / the file's bytes)\n"
        "With --ids: scores each sequence of FILE under the model: for a line of T token ids it prints\n"
        "  loss X                      the mean of -log p(id[t+1] | id[0..t]) over t = 0..T-2\n"
        "  logprobs v1 ... v(T-1)      each log p(id[t+1] | id[0..t]), 9 significant digits\n"
        "options:\n"
        "  -m, --model MODEL      a gfn checkpoint file, or an HF GPT-2 directory\n"
        "                         (config.json + model.safetensors)\n"
        "  -a, --adapter ADAPTER  a LoRA adapter applied on top (our file, or a PEFT directory)\n"
        "  --ids FILE             one sequence per line: at least 2 whitespace-separated token ids,\n"
        "                         each in [0, vocab size), at most the model's context length;\n"
        "                         blank lines are skipped\n"
        "  -t TOKENIZER --text FILE   bits/byte of a text file (our tokenizer file or a GPT-2 vocab dir)\n"
        "  -h, --help             this help\n");
}

// A model and a tokenizer loaded together must agree: every id the tokenizer makes must index
// the model's embedding (a model may have more ids than the tokenizer, never fewer).
static int vocab_check(const GPT *model, const char *model_path, const Tokenizer *tok, const char *tok_path, const char *cmd) {
    int V = gpt_config(model).vocab_size, n = tokenizer_vocab_size(tok);
    if (n <= V) return 0;
    fprintf(stderr, "gfn %s: the tokenizer %s has %d ids but the model %s only %d: they do not belong together\n",
            cmd, tok_path, n, model_path, V);
    return 1;
}

// The lines of an ids file, parsed and checked against the model before anything is scored.
typedef struct { int *ids; int len; } IdLine;

static IdLine *read_id_lines(const char *path, GPTConfig config, int *count, GfnError *err) {
    size_t size;
    char *text = (char *)read_file(path, &size, err);
    if (!text) return NULL;
    IdLine *lines = NULL;
    int n = 0, cap = 0, line_no = 0, failed = 0;
    char *p = text, *end = text + size;
    while (p < end && !failed) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line_no++;
        int len = 0, ids_cap = 16;
        int *ids = gfn_malloc((size_t)ids_cap * sizeof(int));
        char *q = p;
        for (;;) {
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            if (q >= eol) break;
            char *tok_end = q;
            while (tok_end < eol && *tok_end != ' ' && *tok_end != '\t' && *tok_end != '\r') tok_end++;
            long v = 0;
            int digits = 0, overflow = 0;
            for (char *c = q; c < tok_end; c++) {
                if (*c < '0' || *c > '9') { digits = -1; break; }
                if (v > 100000000L) overflow = 1;   // stop growing: any id this long is out of range
                else v = v * 10 + (*c - '0');
                digits++;
            }
            if (digits <= 0) {
                gfn_error_set(err, "%s: line %d: '%.*s' is not a token id (a non-negative integer)", path, line_no,
                              (int)(tok_end - q > 40 ? 40 : tok_end - q), q);
                failed = 1; break;
            }
            if (overflow || v >= config.vocab_size) {
                gfn_error_set(err, "%s: line %d: token id %.*s is outside the vocabulary [0, %d)", path, line_no,
                              (int)(tok_end - q > 40 ? 40 : tok_end - q), q, config.vocab_size);
                failed = 1; break;
            }
            if (len == config.max_seq_len) {
                gfn_error_set(err, "%s: line %d: more than the model's context length of %d tokens", path,
                              line_no, config.max_seq_len);
                failed = 1; break;
            }
            if (len == ids_cap) { ids_cap *= 2; ids = realloc(ids, (size_t)ids_cap * sizeof(int)); if (!ids) { fprintf(stderr, "gfn: out of memory\n"); exit(1); } }
            ids[len++] = (int)v;
            q = tok_end;
        }
        if (!failed && len == 1) {
            gfn_error_set(err, "%s: line %d: one token id; scoring needs at least 2", path, line_no);
            failed = 1;
        }
        if (failed || len == 0) { free(ids); p = eol + 1; continue; }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            lines = realloc(lines, (size_t)cap * sizeof(IdLine));
            if (!lines) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        }
        lines[n].ids = ids;
        lines[n].len = len;
        n++;
        p = eol + 1;
    }
    free(text);
    if (!failed && n == 0) { gfn_error_set(err, "%s: no token ids in the file", path); failed = 1; }
    if (failed) {
        for (int i = 0; i < n; i++) free(lines[i].ids);
        free(lines);
        return NULL;
    }
    *count = n;
    return lines;
}

static int cmd_score(int argc, char **argv) {
    const char *model_path = NULL, *adapter_path = NULL, *ids_path = NULL, *tok_path = NULL, *text_path = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { score_usage(stdout); return 0; }
        const char **slot = !strcmp(a, "-m") || !strcmp(a, "--model") ? &model_path
                          : !strcmp(a, "-a") || !strcmp(a, "--adapter") ? &adapter_path
                          : !strcmp(a, "-t") ? &tok_path
                          : !strcmp(a, "--text") ? &text_path
                          : !strcmp(a, "--ids") ? &ids_path : NULL;
        if (!slot) { fprintf(stderr, "gfn score: unknown option '%s'\n", a); score_usage(stderr); return 1; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn score: %s needs a value\n", a); return 1; }
        *slot = argv[++i];
    }
    if (!model_path || (!ids_path == !text_path) || (text_path && !tok_path)) {
        fprintf(stderr, "gfn score: -m MODEL and either --ids FILE or -t TOKENIZER --text FILE are required\n");
        score_usage(stderr);
        return 1;
    }
    GfnError err;
    GPT *model = gpt_load(model_path, &err);
    if (!model) { fprintf(stderr, "gfn score: %s\n", err.msg); return 1; }
    if (adapter_path && lora_load(model, adapter_path, &err)) {
        fprintf(stderr, "gfn score: %s\n", err.msg);
        gpt_free(model);
        return 1;
    }
    if (text_path) {
        Tokenizer *tok = tokenizer_load(tok_path, &err);
        double bpb = 0, npt = 0;
        if (tok && vocab_check(model, model_path, tok, tok_path, "score")) { tokenizer_free(tok); gpt_free(model); return 1; }
        int failed = !tok || evaluate_file(model, tok, text_path, 8, gpt_config(model).max_seq_len, &bpb, &npt, &err);
        if (failed) fprintf(stderr, "gfn score: %s\n", err.msg);
        else printf("%s: %.4f nats/token, %.4f bits/byte\n", text_path, npt, bpb);
        tokenizer_free(tok);
        gpt_free(model);
        return failed;
    }
    int count = 0;
    IdLine *lines = read_id_lines(ids_path, gpt_config(model), &count, &err);
    if (!lines) { fprintf(stderr, "gfn score: %s\n", err.msg); gpt_free(model); return 1; }
    for (int i = 0; i < count; i++) {
        int T = lines[i].len;
        int *targets = gfn_malloc((size_t)T * sizeof(int));
        float *logprobs = gfn_malloc((size_t)T * sizeof(float));
        for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? lines[i].ids[t + 1] : -1;
        gpt_forward(model, lines[i].ids, 1, T);
        float loss = gpt_cross_entropy(model, targets, logprobs, NULL);
        printf("loss %.9g\nlogprobs", loss);
        for (int t = 0; t + 1 < T; t++) printf(" %.9g", logprobs[t]);
        printf("\n");
        free(targets);
        free(logprobs);
        free(lines[i].ids);
    }
    free(lines);
    gpt_free(model);
    return fflush(stdout) == 0 ? 0 : 1;
}

// ----------------------------------------------------------------------------------------------
// `gfn convert`: a model from one format to another (our checkpoint in f32 or f16, HF directory).

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int fp16 = 0, hf = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: gfn convert IN OUT [--fp16 | --hf]\n"
                   "  IN       a gfn checkpoint or a Hugging Face GPT-2 directory (config.json + model.safetensors)\n"
                   "  OUT      a gfn checkpoint (f32), written atomically\n"
                   "  --fp16   write the checkpoint with f16 tensors (half the size; loads as f32)\n"
                   "  --hf     write OUT as a Hugging Face directory instead (config.json + model.safetensors, F32)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--fp16")) fp16 = 1;
        else if (!strcmp(argv[i], "--hf")) hf = 1;
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else { fprintf(stderr, "gfn convert: unexpected argument '%s'\n", argv[i]); return 1; }
    }
    if (!in || !out || (fp16 && hf)) { fprintf(stderr, "usage: gfn convert IN OUT [--fp16 | --hf]\n"); return 1; }
    GfnError err;
    GPT *model = gpt_load(in, &err);
    if (!model) { fprintf(stderr, "gfn convert: %s\n", err.msg); return 1; }
    int rc = hf ? gpt_save_hf(model, out, &err) : fp16 ? gpt_save_f16(model, out, &err) : gpt_save(model, out, &err);
    if (rc) fprintf(stderr, "gfn convert: %s\n", err.msg);
    gpt_free(model);
    return rc ? 1 : 0;
}

// ----------------------------------------------------------------------------------------------
// `gfn sample`: generations of a model (with an adapter) for a prompt, or of a task's policy.
typedef struct { int *prompt; int prompt_len; Tokenizer *tok; } TextTask;

static const int *text_prompt(Task *task, int query, int *len) {
    (void)query;
    TextTask *tt = task->state;
    *len = tt->prompt_len;
    return tt->prompt;
}

static void text_render(Task *task, const Traj *t, char *buf, size_t cap) {
    TextTask *tt = task->state;
    size_t len = 0;
    GfnError err;
    char *text = tokenizer_decode(tt->tok, t->tokens, (size_t)t->ntok, &len, &err);
    snprintf(buf, cap, "%s", text ? text : err.msg);
    free(text);
}

static void sample_usage(FILE *out) {
    fprintf(out,
        "usage: gfn sample -m MODEL -t TOKENIZER -p PROMPT [options]\n"
        "       gfn sample --task NAME [-m MODEL -t TOKENIZER] [options]   (a task's prompt)\n"
        "  -a ADAPTER   LoRA adapter (ours or a PEFT directory)\n"
        "  -n N         samples (4)           -b B        batch size (N up to 64)\n"
        "  -T TEMP      temperature (1)       --top-k K   (0: off)     --top-p P (1: off)\n"
        "  -l LEN       most tokens (64)      -s SEED     (1)\n");
}

static int cmd_sample(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *adapter = NULL, *prompt = NULL, *task_name = NULL;
    int n = 4, batch = 0, max_len = 64;
    uint64_t seed = 1;
    SamplerConfig sc = { 1.0f, 0, 1.0f };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { sample_usage(stdout); return 0; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn sample: option %s needs a value\n", a); return 1; }
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-t")) tok_path = v;
        else if (!strcmp(a, "-a")) adapter = v;
        else if (!strcmp(a, "-p")) prompt = v;
        else if (!strcmp(a, "--task")) task_name = v;
        else if (!strcmp(a, "-n")) { if (parse_count(a, v, 1, 1000000, &n)) return 1; }
        else if (!strcmp(a, "-b")) { if (parse_count(a, v, 1, 4096, &batch)) return 1; }
        else if (!strcmp(a, "-l")) { if (parse_count(a, v, 1, 65536, &max_len)) return 1; }
        else if (!strcmp(a, "-T")) { if (parse_real(a, v, 1e-3, 1000, &sc.temperature)) return 1; }
        else if (!strcmp(a, "--top-k")) { if (parse_count(a, v, 0, 1 << 22, &sc.top_k)) return 1; }
        else if (!strcmp(a, "--top-p")) { if (parse_real(a, v, 1e-6, 1, &sc.top_p)) return 1; }
        else if (!strcmp(a, "-s")) {
            long long s;
            if (parse_long(a, v, 0, 0x7FFFFFFFFFFFFFFFll, &s)) return 1;
            seed = (uint64_t)s;
        }
        else { fprintf(stderr, "gfn sample: unknown option %s\n", a); sample_usage(stderr); return 1; }
    }
    if (batch < 1) batch = n < 64 ? n : 64;
    GfnError err = { { 0 } };
    Task text_task = { 0 }, *task = &text_task;
    TextTask tt = { 0 };
    if (task_name) {
        task = task_find(task_name);
        if (!task) { fprintf(stderr, "gfn sample: unknown task '%s'\n", task_name); return 1; }
        TaskOptions topt = { model_path ? model_path : "", tok_path ? tok_path : "", "", seed, -13.815511f, 1, 0, NULL, NULL, 0 };
        if (task->setup(task, &topt, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
    } else {
        if (!model_path || !tok_path || !prompt) { sample_usage(stderr); return 1; }
        text_task.base = gpt_load(model_path, &err);
        if (!text_task.base) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
        tt.tok = tokenizer_load(tok_path, &err);
        if (!tt.tok) { fprintf(stderr, "gfn: %s\n", err.msg); gpt_free(text_task.base); return 1; }
        if (vocab_check(text_task.base, model_path, tt.tok, tok_path, "sample")) {
            tokenizer_free(tt.tok); gpt_free(text_task.base); return 1;
        }
        size_t plen;
        tt.prompt = tokenizer_encode(tt.tok, prompt, strlen(prompt), 1, &plen);
        tt.prompt_len = (int)plen;
        int V = gpt_config(text_task.base).vocab_size, maxT = gpt_config(text_task.base).max_seq_len;
        if (tt.prompt_len + max_len > maxT) max_len = maxT - tt.prompt_len;
        if (tt.prompt_len < 1 || max_len < 1) {
            if (tt.prompt_len < 1) fprintf(stderr, "gfn sample: -p: empty prompt\n");
            else fprintf(stderr, "gfn sample: -p: the prompt (%d tokens) fills the model's context (%d)\n", tt.prompt_len, maxT);
            free(tt.prompt); tokenizer_free(tt.tok); gpt_free(text_task.base);
            return 1;
        }
        text_task.state = &tt;
        text_task.name = "text";
        text_task.terminator = tokenizer_eot_id(tt.tok);
        text_task.max_len = max_len;
        text_task.allowed = gfn_calloc((size_t)V, 1);
        for (int v = 0; v < V && v < tokenizer_vocab_size(tt.tok); v++) text_task.allowed[v] = 1;
        text_task.prompt = text_prompt;
        text_task.render = text_render;
    }
    GPT *policy = copy_model(task->base);
    int status = 0;
    if (adapter && lora_load(policy, adapter, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); status = 1; }
    if (!status && gpt_lora(policy)) gpt_lora_merge(policy);   // merged: plain, faster inference
    Rng rng;
    rng_seed(&rng, seed);
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)batch);
    int *queries = gfn_calloc((size_t)batch, sizeof(int));
    for (int i = 0; i < batch; i++) t[i] = traj_new(task->max_len);
    char *buf = gfn_malloc(1 << 16);
    for (int done = 0; !status && done < n; done += batch) {
        int m = n - done < batch ? n - done : batch;
        sample_trajectories(policy, task, queries, t, m, &sc, &rng);
        for (int i = 0; i < m; i++) {
            buf[0] = 0;
            if (task->render) task->render(task, t[i], buf, 1 << 16);
            else for (int j = 0; j < t[i]->ntok; j++) snprintf(buf + strlen(buf), 16, j ? " %d" : "%d", t[i]->tokens[j]);
            printf("%s\n", buf);
        }
    }
    free(buf);
    for (int i = 0; i < batch; i++) traj_free(t[i]);
    free(t); free(queries);
    gpt_free(policy);
    if (task_name) task->cleanup(task);
    else { gpt_free(text_task.base); tokenizer_free(tt.tok); free(tt.prompt); free(text_task.allowed); }
    return status;
}

static int run_command(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc, argv);
    if (!strcmp(argv[1], "sample")) return cmd_sample(argc, argv);
    if (!strcmp(argv[1], "tasks")) {
        for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++) printf("%-8s %s\n", tasks[i]->name, tasks[i]->help);
        return 0;
    }
    if (!strcmp(argv[1], "pretrain")) return cmd_pretrain(argc, argv);
    if (!strcmp(argv[1], "corpus")) return cmd_corpus(argc, argv);
    if (!strcmp(argv[1], "report") && argc == 5 && !strcmp(argv[2], "arithmetic")) {   // report arithmetic DIR OUT
        char md[4096], svg[4096];
        GfnError err = { { 0 } };
        snprintf(md, sizeof md, "%s.md", argv[4]);
        snprintf(svg, sizeof svg, "%s.svg", argv[4]);
        if (arith_report(argv[3], md, svg, &err)) { fprintf(stderr, "gfn report: %s\n", err.msg); return 1; }
        printf("wrote %s and %s\n", md, svg);
        return 0;
    }
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(argv[1], "tokenizer")) return cmd_tokenizer(argc, argv);
    if (!strcmp(argv[1], "score")) return cmd_score(argc, argv);
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    fprintf(stderr, "gfn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}

// Whatever the command, output that did not reach standard output (a full disk, /dev/full, a
// closed pipe) makes the exit status nonzero.
int main(int argc, char **argv) {
    int status = run_command(argc, argv);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "gfn: error writing standard output: %s\n", strerror(errno));
        return 1;
    }
    return status;
}
#endif
