// tasks/arithmetic.c — integer arithmetic with a calculator (the paper's §4.3 task).
//
//   X = "Question: 6 - 0 - 4 - 8 = ? Answer:"
//   Z = " 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6"      (the policy writes it; the calculator fills " v")
//   Y = ". The answer is -6."
//   log R(z_≤i ⊤) = log p_base(z_≤i Y | few-shot prompt, X)
// The reward is p(prompt X Z Y) without the factor p(prompt X), which is the same for every Z of
// a query (it cancels in SubTB and only shifts TB's log Z). Z contains the calculator's outputs as
// text, so their base-model probabilities are part of the reward; they are never actions.
//
// Choices (documented once, here):
// - ⊤ is the token "." — Y begins with it, so the stop decision is Y's first token and the
//   paper's "." needs no second meaning. Actions: every token whose bytes are only digits and
//   " +-=," (no "." so a Z cannot end early by accident; a '=' only as the token's last byte, so
//   the calculator always fires right after it).
// - The calculator reads the text after the last ',' (or the start of Z) up to the '=' just
//   written and accepts exactly  int op int  with op '+' or '-', spaces anywhere between, and an
//   int an optional '-' glued to 1–9 digits: "-6 - 7 =" gives " -13", "2 - -3 =" gives " 5",
//   "2--3=" gives " 5". Anything else ("1 + 2 + 3 =", "- 6 - 7 =", "=") inserts nothing: no
//   silently wrong value as in the official code, where longer chains were misread.
// - The policy q(Z | X) is prompted with X only (as in the paper); the few-shot prompt is used by
//   the reward and by the untuned base model's evaluation (a policy without LoRA, i.e.
//   `--steps 0`), which is the paper's prompted-base baseline.
// - Data: the paper's files when present (hw = 1000 question/answer pairs for training, less the
//   135 that are test questions; the first 10 worked rationales that are not test questions for
//   SFT and replay seeding, the first 3 of those as the few-shot prompt; tests of 3, 4 and 5
//   operands); otherwise the same distribution
//   from arith_generate with fixed seeds, the training questions excluding every test question
//   (`--data none` forces the generator).
#include "../gfn.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ----------------------------------------------------------------------------------------------
// Questions: generation, text, parsing

int arith_answer(const ArithQuestion *q) {
    int v = q->operand[0];
    for (int k = 1; k < q->n; k++) v = q->op[k - 1] == '+' ? v + q->operand[k] : v - q->operand[k];
    return v;
}

// Appends formatted text to buf (always NUL-terminated, truncated at cap).
static void append(char *buf, size_t cap, size_t *len, const char *s) {
    for (; *s && *len + 1 < cap; s++) buf[(*len)++] = *s;
    if (cap) buf[*len < cap ? *len : cap - 1] = 0;
}

void arith_text(const ArithQuestion *q, ArithPart part, char *buf, size_t cap) {
    char num[32];
    size_t len = 0;
    if (cap) buf[0] = 0;
    if (part == ARITH_QUERY || part == ARITH_WORKED) {
        append(buf, cap, &len, "Question:");
        for (int k = 0; k < q->n; k++) {
            if (k) { snprintf(num, sizeof num, " %c", q->op[k - 1]); append(buf, cap, &len, num); }
            snprintf(num, sizeof num, " %d", q->operand[k]);
            append(buf, cap, &len, num);
        }
        append(buf, cap, &len, " = ? Answer:");
    }
    if (part == ARITH_RATIONALE || part == ARITH_WORKED) {   // " a op b = v," chained
        int v = q->operand[0];
        for (int k = 1; k < q->n; k++) {
            int next = q->op[k - 1] == '+' ? v + q->operand[k] : v - q->operand[k];
            snprintf(num, sizeof num, "%s%d %c %d = %d", k > 1 ? ", " : (part == ARITH_WORKED ? " " : ""),
                     v, q->op[k - 1], q->operand[k], next);
            append(buf, cap, &len, num);
            v = next;
        }
    }
    if (part == ARITH_SOLUTION || part == ARITH_WORKED) {
        snprintf(num, sizeof num, ". The answer is %d.", arith_answer(q));
        append(buf, cap, &len, num);
    }
}

int arith_parse_query(const char *text, ArithQuestion *q) {
    const char *p = text;
    if (strncmp(p, "Question: ", 10)) return 1;
    p += 10;
    q->n = 0;
    for (;;) {
        if (*p < '0' || *p > '9' || q->n == ARITH_MAX_OPERANDS) return 1;
        q->operand[q->n++] = *p++ - '0';
        if (!strcmp(p, " = ? Answer:")) return 0;
        if (p[0] != ' ' || (p[1] != '+' && p[1] != '-') || p[2] != ' ') return 1;
        if (q->n == ARITH_MAX_OPERANDS) return 1;
        q->op[q->n - 1] = p[1];
        p += 3;
    }
}

static int same_question(const ArithQuestion *a, const ArithQuestion *b) {
    if (a->n != b->n) return 0;
    for (int k = 0; k < a->n; k++) if (a->operand[k] != b->operand[k] || (k && a->op[k - 1] != b->op[k - 1])) return 0;
    return 1;
}

static int contains(const ArithQuestion *set, int n, const ArithQuestion *q) {
    for (int i = 0; i < n; i++) if (same_question(&set[i], q)) return 1;
    return 0;
}

// Operand count uniform in [min_ops, max_ops], operands uniform in 0..9, operators + or − with
// probability ½ each (the paper's distribution); distinct questions, none in `exclude`. Gives up
// (returns fewer) when 100·count draws in a row fail, i.e. the space is exhausted.
int arith_generate(uint64_t seed, int min_ops, int max_ops, int count, const ArithQuestion *exclude,
                   int num_exclude, ArithQuestion *out) {
    Rng rng;
    rng_seed(&rng, seed);
    if (min_ops < 2) min_ops = 2;
    if (max_ops > ARITH_MAX_OPERANDS) max_ops = ARITH_MAX_OPERANDS;
    int made = 0;
    for (long misses = 0; made < count && misses < 100L * count + 1000;) {
        ArithQuestion q;
        memset(&q, 0, sizeof q);
        q.n = min_ops + rng_below(&rng, max_ops - min_ops + 1);
        for (int k = 0; k < q.n; k++) {
            q.operand[k] = rng_below(&rng, 10);
            if (k) q.op[k - 1] = rng_below(&rng, 2) ? '-' : '+';
        }
        if (contains(exclude, num_exclude, &q) || contains(out, made, &q)) { misses++; continue; }
        out[made++] = q;
        misses = 0;
    }
    return made;
}

// Our own test sets when the paper's files are absent: fixed seeds, 500 distinct questions each.
enum { ARITH_TEST_SEED = 5000, ARITH_TRAIN_SEED = 7000, ARITH_TEST_SIZE = 500 };
int arith_test_questions(int num_operands, int count, ArithQuestion *out) {
    return arith_generate(ARITH_TEST_SEED + (uint64_t)num_operands, num_operands, num_operands, count, NULL, 0, out);
}

// ----------------------------------------------------------------------------------------------
// The calculator

// Skips spaces, then reads an int: an optional '-' glued to 1..9 digits.
static int read_int(const char **p, const char *end, long long *v) {
    while (*p < end && **p == ' ') (*p)++;
    int neg = 0, digits = 0;
    if (*p < end && **p == '-') { neg = 1; (*p)++; }
    *v = 0;
    while (*p < end && **p >= '0' && **p <= '9' && digits < 10) { *v = *v * 10 + (**p - '0'); (*p)++; digits++; }
    if (digits == 0 || digits > 9) return 0;
    if (neg) *v = -*v;
    return 1;
}

int arith_calculator(const char *text, size_t len, long long *value) {
    if (len == 0 || text[len - 1] != '=') return 0;
    size_t start = len - 1;
    while (start > 0 && text[start - 1] != ',') start--;
    const char *p = text + start, *end = text + len - 1;
    long long a, b;
    if (!read_int(&p, end, &a)) return 0;
    while (p < end && *p == ' ') p++;
    if (p >= end || (*p != '+' && *p != '-')) return 0;
    char op = *p++;
    if (!read_int(&p, end, &b)) return 0;
    while (p < end && *p == ' ') p++;
    if (p != end) return 0;
    *value = op == '+' ? a + b : a - b;
    return 1;
}

// ----------------------------------------------------------------------------------------------
// The task's state

enum { ARITH_NUM_DEMOS = 10, ARITH_SHOTS = 3, ARITH_MAX_LEN = 40, ARITH_SAMPLES = 10, ARITH_CHUNK = 32 };
static const int arith_test_ops[3] = { 3, 4, 5 };

// The reward's model and scratch, kept between calls. ARITH_SCORERS of them, so that as many
// rewards may run at once (gfn_train's pipeline scores two micro-batches side by side): scorer 0
// reads through task->base, scorer 1 through a view of it (the same weights, its own activations).
enum { ARITH_SCORERS = 2 };
typedef struct {
    GPT *base;
    KVCache *cache;
    int cache_rows, cache_len;
    int prefix_rows;              // rows [0, prefix_rows) of the cache hold the 3-shot prompt's keys
                                  // and values at positions [0, F) (the shared path; the base is frozen)
    float *logits;                // (cache_rows, V)
    float *logp;                  // (V)
} ArithScorer;

typedef struct {
    Tokenizer *tok;
    int num_queries;              // train, then the three test sets
    ArithQuestion *questions;     // (num_queries)
    int **x, *x_len;              // policy prompt X of each query
    int **fx, *fx_len;            // few-shot prompt + X (the base model's evaluation prompt)
    int **y, *y_len;              // Y of each query
    int *fewshot, fewshot_len;    // the 3 worked examples alone
    int test_start[3], test_count[3];
    int use_fewshot;              // prompt() returns fx instead of x
    int policy_fewshot;           // --prompt fewshot: the policy sees fx in training and evaluation
    int base_fewshot;             // the untuned base is evaluated with fx (default) or x
    int eval_n;
    int quiet;                    // no evaluation progress line
    ArithScorer scorer[ARITH_SCORERS];
} ArithState;

static const int *arith_prompt(Task *task, int query, int *len) {
    ArithState *st = task->state;
    if (st->use_fewshot) { *len = st->fx_len[query]; return st->fx[query]; }
    *len = st->x_len[query];
    return st->x[query];
}

const int *arith_reward_context(Task *task, int query, int *len, const int **answer, int *answer_len) {
    ArithState *st = task->state;
    *len = st->fx_len[query];
    *answer = st->y[query];
    *answer_len = st->y_len[query];
    return st->fx[query];
}

static int *encode(ArithState *st, const char *text, int *len) {
    size_t n;
    int *ids = tokenizer_encode(st->tok, text, strlen(text), 0, &n);
    *len = (int)n;
    return ids;
}

// The text of tokens[0..n) into buf (NUL-terminated, truncated at cap); returns its length.
static size_t tokens_text(ArithState *st, const int *tokens, int n, char *buf, size_t cap) {
    size_t len = 0;
    for (int k = 0; k < n; k++) {
        size_t bl;
        const unsigned char *b = tokenizer_token_bytes(st->tok, tokens[k], &bl);
        for (size_t j = 0; j < bl && len + 1 < cap; j++) buf[len++] = (char)b[j];
    }
    buf[len] = 0;
    return len;
}

// The tool hook: after an action ending in '=', the calculator's " v" as tokens.
static int arith_tool(Task *task, int query, const int *tokens, int ntok, int *forced, int max_forced) {
    (void)query;
    ArithState *st = task->state;
    size_t bl;
    const unsigned char *last = tokenizer_token_bytes(st->tok, tokens[ntok - 1], &bl);
    if (bl == 0 || last[bl - 1] != '=') return 0;
    char text[1024];
    size_t len = tokens_text(st, tokens, ntok, text, sizeof text);
    long long v;
    if (!arith_calculator(text, len, &v)) return 0;
    char out[32];
    snprintf(out, sizeof out, " %lld", v);
    int n;
    int *ids = encode(st, out, &n);
    if (n > max_forced) n = 0;   // no room: insert nothing rather than a truncated number
    memcpy(forced, ids, sizeof(int) * (size_t)n);
    free(ids);
    return n;
}

void arith_rebuild(Task *task, Traj *t, const int *actions, int nact) {
    t->ntok = t->nact = 0;
    int forced[ARITH_MAX_LEN];
    for (int k = 0; k < nact && t->ntok < task->max_len; k++) {
        t->tokens[t->ntok] = actions[k];
        t->forced[t->ntok++] = 0;
        t->nact++;
        if (t->ntok >= task->max_len) break;
        int m = arith_tool(task, t->query, t->tokens, t->ntok, forced, task->max_len - t->ntok);
        for (int i = 0; i < m; i++) { t->tokens[t->ntok] = forced[i]; t->forced[t->ntok++] = 1; }
    }
}

// ----------------------------------------------------------------------------------------------
// The reward of every prefix, reusing the KV cache of the shared context.
//
// Rows 0..n-1 of one cache hold few-shot prompt + X + Z of each trajectory (the prompt prefilled
// once into row 0 and copied); decoding them gives log p of every Z token and of Y's first token
// after every state. Then each state (r, i) gets a scratch row: a copy of row r's first
// (context + ntok_at[i]) positions, fed Y_1..Y_{m-1} to score Y_2..Y_m. The cost is one decode per
// context token plus (m − 1) per state, against (context + n + m) per state for separate forwards:
// for 16 sampled trajectories of the test's tiny model, 240 states, about 1.5k decoded tokens
// against 31.6k (5x faster there). With the plain matmul every decoded token streams all the
// weights once, so a trajectory of n actions costs about |X| + |Z| + (n + 1)(|Y| − 1) passes.

// Tokens after the prompt at each state i = 0..nact (state i = action i and its inserted tokens).
static void arith_states(const Traj *t, int *ntok_at) {
    int k = 0;
    ntok_at[0] = 0;
    for (int j = 0; j < t->ntok; j++) {
        if (!t->forced[j]) k++;
        if (j + 1 == t->ntok || !t->forced[j + 1]) ntok_at[k] = j + 1;
    }
}

static float log_softmax_at(const float *logits, int V, int token, float *logp) {
    (void)logp;
    float max = -INFINITY;
    for (int v = 0; v < V; v++) if (logits[v] > max) max = logits[v];
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)logits[v] - max);
    return logits[token] - max - (float)log(sum);
}

static void arith_log_reward_decode(Task *task, ArithScorer *sc, Traj *const *t, int n) {
    ArithState *st = task->state;
    GPT *base = sc->base;
    int V = gpt_config(base).vocab_size, F = st->fewshot_len;
    int max_ctx = 0;
    for (int r = 0; r < n; r++) {
        int q = t[r]->query, len = st->fx_len[q] + t[r]->ntok + st->y_len[q];
        if (len > max_ctx) max_ctx = len;
    }
    if (max_ctx > gpt_config(base).max_seq_len) {
        fprintf(stderr, "gfn: arithmetic: a reward context of %d tokens exceeds the model's %d\n", max_ctx, gpt_config(base).max_seq_len);
        exit(1);
    }
    if (!sc->cache || sc->cache_rows < n + ARITH_CHUNK || sc->cache_len < max_ctx) {
        kv_cache_free(sc->cache);
        free(sc->logits);
        sc->cache_rows = n + ARITH_CHUNK;
        sc->cache_len = max_ctx > sc->cache_len ? max_ctx + 16 : sc->cache_len;
        sc->cache = kv_cache_new(base, sc->cache_rows, sc->cache_len);
        sc->logits = gfn_malloc(sizeof(float) * (size_t)sc->cache_rows * V);   // (rows, V)
    }
    KVCache *cache = sc->cache;
    sc->prefix_rows = 0;   // this path writes every row from position 0
    int R = sc->cache_rows;
    int *feed = gfn_malloc(sizeof(int) * (size_t)R), *pos = gfn_malloc(sizeof(int) * (size_t)R);   // (R)
    int stride = task->max_len + 1;
    int *ntok_at = gfn_malloc(sizeof(int) * (size_t)n * stride);         // (n, nact+1)
    int *state_of = gfn_malloc(sizeof(int) * (size_t)n * stride);        // (n, ntok+1) state ending there, or −1
    double *lp_z = gfn_calloc((size_t)n * stride, sizeof(double));       // (n, ntok) log p(z_j | context)
    double *lp_y = gfn_calloc((size_t)n * stride, sizeof(double));       // (n, nact+1) log p(Y | state)

    gpt_prefill(base, cache, st->fewshot, 1, F);
    for (int r = 1; r < n; r++) kv_cache_copy_row(cache, r, 0, F);
    int longest = 0;
    for (int r = 0; r < n; r++) {
        arith_states(t[r], ntok_at + (size_t)r * stride);
        int *so = state_of + (size_t)r * stride;
        for (int j = 0; j <= t[r]->ntok; j++) so[j] = -1;
        for (int i = 0; i <= t[r]->nact; i++) so[ntok_at[(size_t)r * stride + i]] = i;
        int len = st->fx_len[t[r]->query] + t[r]->ntok;
        if (len > longest) longest = len;
    }
    // Decode position p of each row: the prompt tail (X), then Z; read the logits from X's last token on.
    for (int p = F; p < longest; p++) {
        for (int b = 0; b < R; b++) feed[b] = -1;
        for (int r = 0; r < n; r++) {
            int q = t[r]->query, P0 = st->fx_len[q];
            if (p >= P0 + t[r]->ntok) continue;
            feed[r] = p < P0 ? st->fx[q][p] : t[r]->tokens[p - P0];
            pos[r] = p;
        }
        gpt_decode_step(base, cache, feed, pos, sc->logits);
        for (int r = 0; r < n; r++) {
            if (feed[r] < 0) continue;
            int q = t[r]->query, j = p - st->fx_len[q] + 1;   // tokens of Z before position p + 1
            if (j < 0) continue;
            const float *lg = sc->logits + (size_t)r * V;
            if (j < t[r]->ntok) lp_z[(size_t)r * stride + j] = log_softmax_at(lg, V, t[r]->tokens[j], sc->logp);
            int i = state_of[(size_t)r * stride + j];
            if (i >= 0) lp_y[(size_t)r * stride + i] = log_softmax_at(lg, V, st->y[q][0], sc->logp);
        }
    }
    // Y_2..Y_m after every state, ARITH_CHUNK states at a time in rows n..n+CHUNK-1.
    int total = 0;
    for (int r = 0; r < n; r++) total += t[r]->nact + 1;
    int *who = gfn_malloc(sizeof(int) * 2 * (size_t)total);   // (total, 2) trajectory and state
    for (int r = 0, s = 0; r < n; r++) for (int i = 0; i <= t[r]->nact; i++) { who[2 * s] = r; who[2 * s + 1] = i; s++; }
    for (int start = 0; start < total; start += ARITH_CHUNK) {
        int m = total - start < ARITH_CHUNK ? total - start : ARITH_CHUNK, longest_y = 0;
        for (int c = 0; c < m; c++) {
            int r = who[2 * (start + c)], i = who[2 * (start + c) + 1];
            int q = t[r]->query;
            kv_cache_copy_row(cache, n + c, r, st->fx_len[q] + ntok_at[(size_t)r * stride + i]);
            if (st->y_len[q] > longest_y) longest_y = st->y_len[q];
        }
        for (int k = 0; k + 1 < longest_y; k++) {   // feed Y_{k+1}, score Y_{k+2}
            for (int b = 0; b < R; b++) feed[b] = -1;
            for (int c = 0; c < m; c++) {
                int r = who[2 * (start + c)], i = who[2 * (start + c) + 1], q = t[r]->query;
                if (k + 1 >= st->y_len[q]) continue;
                feed[n + c] = st->y[q][k];
                pos[n + c] = st->fx_len[q] + ntok_at[(size_t)r * stride + i] + k;
            }
            gpt_decode_step(base, cache, feed, pos, sc->logits);
            for (int c = 0; c < m; c++) {
                if (feed[n + c] < 0) continue;
                int r = who[2 * (start + c)], i = who[2 * (start + c) + 1], q = t[r]->query;
                lp_y[(size_t)r * stride + i] += log_softmax_at(sc->logits + (size_t)(n + c) * V, V, st->y[q][k + 1], sc->logp);
            }
        }
    }
    for (int r = 0; r < n; r++) {
        double prefix = 0;
        int j = 0;
        for (int i = 0; i <= t[r]->nact; i++) {
            for (; j < ntok_at[(size_t)r * stride + i]; j++) prefix += lp_z[(size_t)r * stride + j];
            t[r]->log_r[i] = (float)(prefix + lp_y[(size_t)r * stride + i]);
        }
    }
    free(feed); free(pos); free(ntok_at); free(state_of); free(lp_z); free(lp_y); free(who);
}

// The same rewards from batched forwards over the cache (gpt_forward_cached) instead of decode
// steps: the few-shot prompt is prefilled once into row 0; one forward of the n rows X + Z
// (positions F..) reading it gives log p of every Z token and of Y_1 after every state, and
// stores each row's keys and values in its cache row (the prompt's copied beside them); then
// forwards of Y_1..Y_{m-1} for every state at once, each reading its trajectory's row up to the
// state, give Y_2..Y_m. Every context token is computed once per trajectory, every Y token once
// per state, all as matrix products over many rows instead of one row per decode step.
enum { ARITH_STATES_PER_FORWARD = 128 };
static void arith_log_reward_shared(Task *task, ArithScorer *sc, Traj *const *t, int n) {
    ArithState *st = task->state;
    GPT *base = sc->base;
    int V = gpt_config(base).vocab_size, F = st->fewshot_len, stride = task->max_len + 1;
    int T1 = 1, T2 = 0, longest_ctx = 0;   // T1: X + Z after the prompt; T2: Y_1..Y_{m-1}
    for (int r = 0; r < n; r++) {
        int q = t[r]->query;
        if (st->x_len[q] + t[r]->ntok > T1) T1 = st->x_len[q] + t[r]->ntok;
        if (st->y_len[q] - 1 > T2) T2 = st->y_len[q] - 1;
        if (st->fx_len[q] + t[r]->ntok > longest_ctx) longest_ctx = st->fx_len[q] + t[r]->ntok;
    }
    int cache_len = F + T1 > longest_ctx + T2 ? F + T1 : longest_ctx + T2;
    if (cache_len + 1 > gpt_config(base).max_seq_len) {
        fprintf(stderr, "gfn: arithmetic: a reward context of %d tokens exceeds the model's %d\n", cache_len + 1, gpt_config(base).max_seq_len);
        exit(1);
    }
    if (!sc->cache || sc->cache_rows < n || sc->cache_len < cache_len) {
        kv_cache_free(sc->cache);
        free(sc->logits);
        sc->cache_rows = n > sc->cache_rows ? n + ARITH_CHUNK : sc->cache_rows;
        sc->cache_len = cache_len > sc->cache_len ? cache_len + 16 : sc->cache_len;
        sc->cache = kv_cache_new(base, sc->cache_rows, sc->cache_len);
        sc->logits = gfn_malloc(sizeof(float) * (size_t)sc->cache_rows * V);
        sc->prefix_rows = 0;
    }
    KVCache *cache = sc->cache;
    int states = 0, last_only = task->final_reward_only;   // last_only: the states forwarded are the last ones
    for (int r = 0; r < n; r++) states += last_only ? 1 : t[r]->nact + 1;
    int rows_max = n > ARITH_STATES_PER_FORWARD ? n : ARITH_STATES_PER_FORWARD;
    int *rows = gfn_malloc(sizeof(int) * (size_t)rows_max), *lens = gfn_malloc(sizeof(int) * (size_t)rows_max);   // (rows)
    int *store = gfn_malloc(sizeof(int) * (size_t)n);                                     // (n)
    int *inputs = gfn_malloc(sizeof(int) * (size_t)rows_max * (T1 > T2 ? T1 : T2));          // (rows, T)
    int *ntok_at = gfn_malloc(sizeof(int) * (size_t)n * stride);                           // (n, nact+1)
    double *lp_y = gfn_calloc((size_t)n * stride, sizeof(double));                         // (n, nact+1) log p(Y | state)
    int *who = gfn_malloc(sizeof(int) * 2 * (size_t)states);                              // (states, 2) trajectory, state

    // The 3-shot prompt's keys and values are the same in every call (a frozen base), and the rows
    // keep them: the forwards below write positions F and later, or nothing. So they are computed
    // once and copied once into each row, not once per call.
    if (sc->prefix_rows == 0) { gpt_prefill(base, cache, st->fewshot, 1, F); sc->prefix_rows = 1; }
    for (int r = 0; r < n; r++) {
        int q = t[r]->query, *row = inputs + (size_t)r * T1;
        rows[r] = 0; lens[r] = F; store[r] = r;
        for (int j = 0; j < T1; j++) row[j] = task->terminator;
        memcpy(row, st->x[q], sizeof(int) * (size_t)st->x_len[q]);
        memcpy(row + st->x_len[q], t[r]->tokens, sizeof(int) * (size_t)t[r]->ntok);
        arith_states(t[r], ntok_at + (size_t)r * stride);
    }
    float *logits = gpt_forward_cached(base, cache, rows, lens, inputs, n, T1, store);   // (n, T1, V)
    for (; sc->prefix_rows < n; sc->prefix_rows++) kv_cache_copy_row(cache, sc->prefix_rows, 0, F);
    for (int r = 0, s = 0; r < n; r++) {
        int q = t[r]->query, X = st->x_len[q];
        const float *lg = logits + (size_t)r * T1 * V;   // row j predicts the token after position F + j
        double prefix = 0;
        for (int i = 0, j = 0; i <= t[r]->nact; i++) {
            int at = ntok_at[(size_t)r * stride + i];
            for (; j < at; j++) prefix += log_softmax_at(lg + (size_t)(X + j - 1) * V, V, t[r]->tokens[j], sc->logp);
            t[r]->log_r[i] = (float)prefix;   // log p(Z up to state i); Y's terms follow
            lp_y[(size_t)r * stride + i] = log_softmax_at(lg + (size_t)(X + at - 1) * V, V, st->y[q][0], sc->logp);
            if (!last_only || i == t[r]->nact) { who[2 * s] = r; who[2 * s + 1] = i; s++; }
        }
    }
    for (int start = 0; T2 > 0 && start < states; start += ARITH_STATES_PER_FORWARD) {
        int m = states - start < ARITH_STATES_PER_FORWARD ? states - start : ARITH_STATES_PER_FORWARD;
        for (int c = 0; c < m; c++) {
            int r = who[2 * (start + c)], i = who[2 * (start + c) + 1], q = t[r]->query, *row = inputs + (size_t)c * T2;
            rows[c] = r;
            lens[c] = st->fx_len[q] + ntok_at[(size_t)r * stride + i];
            for (int k = 0; k < T2; k++) row[k] = k + 1 < st->y_len[q] ? st->y[q][k] : task->terminator;
        }
        logits = gpt_forward_cached(base, cache, rows, lens, inputs, m, T2, NULL);   // (m, T2, V)
        for (int c = 0; c < m; c++) {
            int r = who[2 * (start + c)], i = who[2 * (start + c) + 1], q = t[r]->query;
            for (int k = 0; k + 1 < st->y_len[q]; k++)   // fed Y_{k+1}, scores Y_{k+2}
                lp_y[(size_t)r * stride + i] += log_softmax_at(logits + ((size_t)c * T2 + k) * V, V, st->y[q][k + 1], sc->logp);
        }
    }
    for (int r = 0; r < n; r++)
        for (int i = 0; i <= t[r]->nact; i++)
            t[r]->log_r[i] = last_only && i < t[r]->nact ? -INFINITY : (float)((double)t[r]->log_r[i] + lp_y[(size_t)r * stride + i]);
    free(rows); free(lens); free(store); free(inputs); free(ntok_at); free(lp_y); free(who);
}

static void arith_log_reward_on(Task *task, int scorer, Traj *const *t, int n) {
    if (n < 1) return;
    ArithScorer *sc = &((ArithState *)task->state)->scorer[scorer];
    if (gfn_prefix_sharing_enabled()) arith_log_reward_shared(task, sc, t, n);
    else arith_log_reward_decode(task, sc, t, n);
}

static void arith_log_reward(Task *task, Traj *const *t, int n) { arith_log_reward_on(task, 0, t, n); }

// ----------------------------------------------------------------------------------------------
// Setup: data files or generated questions, tokens, the allowed set, the demonstrations

// Reads one of the paper's files into questions (checking num_sol and the texts against ours).
static int read_questions(const char *path, ArithQuestion **out, int *count, char ***rationales, GfnError *err) {
    size_t len;
    unsigned char *text = read_file(path, &len, err);
    if (!text) return 1;
    Json *root = json_parse((const char *)text, len, path, err);
    free(text);
    if (!root) return 1;
    if (root->type != JSON_ARRAY || root->len == 0) { gfn_error_set(err, "%s: expected a non-empty JSON array", path); json_free(root); return 1; }
    *count = (int)root->len;
    *out = gfn_calloc(root->len, sizeof(ArithQuestion));
    if (rationales) *rationales = gfn_calloc(root->len, sizeof(char *));
    int i = 0;
    for (Json *e = root->child; e; e = e->next, i++) {
        Json *qs = json_get(e, "str_query"), *sol = json_get(e, "num_sol"), *rat = json_get(e, "str_rationale");
        char buf[256];
        if (!qs || qs->type != JSON_STRING || arith_parse_query(qs->string, &(*out)[i])) {
            gfn_error_set(err, "%s: entry %d: no str_query of the form \"Question: a op b ... = ? Answer:\"", path, i);
            goto fail;
        }
        if (!sol || sol->type != JSON_NUMBER || sol->number != (double)arith_answer(&(*out)[i])) {   // no int cast: 1e300
            gfn_error_set(err, "%s: entry %d: num_sol missing or not the value of \"%s\"", path, i, qs->string);
            goto fail;
        }
        if (rationales) {
            arith_text(&(*out)[i], ARITH_RATIONALE, buf, sizeof buf);
            if (!rat || rat->type != JSON_STRING || strcmp(rat->string, buf)) {
                gfn_error_set(err, "%s: entry %d: str_rationale is not \"%s\"", path, i, buf);
                goto fail;
            }
        }
    }
    json_free(root);
    return 0;
fail:   // nothing of a bad file is kept
    json_free(root);
    free(*out); *out = NULL;
    if (rationales) { for (int k = 0; k < *count; k++) free((*rationales)[k]); free(*rationales); *rationales = NULL; }
    return 1;
}

static int file_exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

// The questions: train (0..num_train-1; demonstrations not among them appended), then tests.
// Returns the demonstrations' indices in demo[0..ARITH_NUM_DEMOS).
static int arith_questions(Task *task, ArithState *st, const char *data_path, int *demo, GfnError *err) {
    const char *dir = NULL;
    char path[4096];
    if (data_path && !strcmp(data_path, "none")) dir = NULL;   // force the generator
    else if (data_path && *data_path) dir = data_path;
    else if (file_exists("../shared/data/arithmetic/1digit_34_op+-_hw.json")) dir = "../shared/data/arithmetic";
    else if (file_exists("data/arithmetic/1digit_34_op+-_hw.json")) dir = "data/arithmetic";
    ArithQuestion *train = NULL, *demos = NULL, *tests[3] = { NULL, NULL, NULL };
    int num_train = 0, num_demos = 0, num_tests[3] = { 0, 0, 0 };
    if (dir) {
        snprintf(path, sizeof path, "%s/1digit_34_op+-_hw.json", dir);
        if (read_questions(path, &train, &num_train, NULL, err)) return 1;
        snprintf(path, sizeof path, "%s/1digit_34_op+-_train_50_rationales.json", dir);
        char **unused = NULL;
        if (read_questions(path, &demos, &num_demos, &unused, err)) { free(train); return 1; }
        free(unused);
        for (int s = 0; s < 3; s++) {
            snprintf(path, sizeof path, "%s/1digit_%d_op+-_test.json", dir, arith_test_ops[s]);
            if (read_questions(path, &tests[s], &num_tests[s], NULL, err)) {
                free(train); free(demos); for (int u = 0; u < s; u++) free(tests[u]);
                return 1;
            }
        }
    } else {
        for (int s = 0; s < 3; s++) {
            tests[s] = gfn_calloc(ARITH_TEST_SIZE, sizeof(ArithQuestion));
            num_tests[s] = arith_test_questions(arith_test_ops[s], ARITH_TEST_SIZE, tests[s]);
        }
        int num_excl = num_tests[0] + num_tests[1] + num_tests[2];
        ArithQuestion *excl = gfn_calloc((size_t)num_excl, sizeof(ArithQuestion));
        memcpy(excl, tests[0], sizeof(ArithQuestion) * (size_t)num_tests[0]);
        memcpy(excl + num_tests[0], tests[1], sizeof(ArithQuestion) * (size_t)num_tests[1]);
        memcpy(excl + num_tests[0] + num_tests[1], tests[2], sizeof(ArithQuestion) * (size_t)num_tests[2]);
        train = gfn_calloc(1000, sizeof(ArithQuestion));
        num_train = arith_generate(ARITH_TRAIN_SEED, 3, 4, 1000, excl, num_excl, train);
        free(excl);
        num_demos = ARITH_NUM_DEMOS;
        demos = gfn_calloc(ARITH_NUM_DEMOS, sizeof(ArithQuestion));
        memcpy(demos, train, sizeof(ArithQuestion) * ARITH_NUM_DEMOS);
    }
    // No test question is trained on: the paper's hw file shares 135 questions with the 3- and
    // 4-operand test files, and a reward-trained policy would see their answers (the base and SFT
    // would not). The generated list excludes the tests already; this filter covers both.
    int kept = 0;
    for (int i = 0; i < num_train; i++) {
        int in_test = 0;
        for (int s = 0; s < 3; s++) in_test |= contains(tests[s], num_tests[s], &train[i]);
        if (!in_test) train[kept++] = train[i];
    }
    if (!st->quiet) fprintf(stderr, "arithmetic: %d of %d training questions are test questions; dropped\n", num_train - kept, num_train);
    num_train = kept;
    // Demonstrations: the first ARITH_NUM_DEMOS that are no test question; appended to train if new.
    ArithQuestion *chosen = gfn_calloc(ARITH_NUM_DEMOS, sizeof(ArithQuestion));
    int num_chosen = 0;
    for (int i = 0; i < num_demos && num_chosen < ARITH_NUM_DEMOS; i++) {
        int in_test = 0;
        for (int s = 0; s < 3; s++) in_test |= contains(tests[s], num_tests[s], &demos[i]);
        if (!in_test) chosen[num_chosen++] = demos[i];
    }
    if (num_chosen < ARITH_SHOTS) {
        gfn_error_set(err, "%s: fewer than %d worked rationales outside the test sets", dir ? dir : "generator", ARITH_SHOTS);
        return 1;
    }
    st->num_queries = num_train + num_chosen + num_tests[0] + num_tests[1] + num_tests[2];
    st->questions = gfn_calloc((size_t)st->num_queries, sizeof(ArithQuestion));
    memcpy(st->questions, train, sizeof(ArithQuestion) * (size_t)num_train);
    int nq = num_train;
    for (int d = 0; d < num_chosen; d++) {
        int at = -1;
        for (int i = 0; i < num_train; i++) if (same_question(&train[i], &chosen[d])) { at = i; break; }
        if (at < 0) { st->questions[nq] = chosen[d]; at = nq++; }
        demo[d] = at;
    }
    for (int d = num_chosen; d < ARITH_NUM_DEMOS; d++) demo[d] = -1;
    task->num_train = nq;
    for (int s = 0; s < 3; s++) {
        st->test_start[s] = nq;
        st->test_count[s] = num_tests[s];
        memcpy(st->questions + nq, tests[s], sizeof(ArithQuestion) * (size_t)num_tests[s]);
        nq += num_tests[s];
        free(tests[s]);
    }
    st->num_queries = nq;
    task->num_test = nq - task->num_train;
    free(train); free(demos); free(chosen);
    return 0;
}

static void arith_cleanup(Task *task);

static int arith_setup(Task *task, const TaskOptions *opt, GfnError *err) {
    const char *model_path = opt->model_path && *opt->model_path ? opt->model_path : "weights/base.ckpt";
    const char *tok_path = opt->tokenizer_path && *opt->tokenizer_path ? opt->tokenizer_path : "weights/tokenizer.bin";
    ArithState *st = gfn_calloc(1, sizeof(ArithState));
    task->state = st;
    st->eval_n = opt->eval_n > 0 ? opt->eval_n : 100;
    st->quiet = opt->quiet;
    st->base_fewshot = 1;
    if (opt->prompt) {
        if (strcmp(opt->prompt, "question") && strcmp(opt->prompt, "fewshot")) {
            gfn_error_set(err, "arithmetic: --prompt '%s': want question or fewshot", opt->prompt);
            arith_cleanup(task); return 1;
        }
        st->policy_fewshot = st->base_fewshot = !strcmp(opt->prompt, "fewshot");
    }
    st->use_fewshot = st->policy_fewshot;
    st->tok = tokenizer_load(tok_path, err);
    if (!st->tok) { arith_cleanup(task); return 1; }
    task->base = gpt_load(model_path, err);
    if (!task->base) { arith_cleanup(task); return 1; }
    int V = gpt_config(task->base).vocab_size;
    if (tokenizer_vocab_size(st->tok) > V) {
        gfn_error_set(err, "%s: %d token ids, more than the %d of the model %s", tok_path, tokenizer_vocab_size(st->tok), V, model_path);
        arith_cleanup(task); return 1;
    }
    int demo[ARITH_NUM_DEMOS];
    if (arith_questions(task, st, opt->data_path, demo, err)) { arith_cleanup(task); return 1; }

    // ⊤ = ".", and the allowed actions
    int n;
    int *dot = encode(st, ".", &n);
    task->terminator = dot[0];
    free(dot);
    task->allowed = gfn_calloc((size_t)V, 1);
    for (int v = 0; v < tokenizer_vocab_size(st->tok); v++) {
        size_t bl;
        const unsigned char *b = tokenizer_token_bytes(st->tok, v, &bl);
        int ok = bl > 0 && v != tokenizer_eot_id(st->tok);
        for (size_t j = 0; j < bl && ok; j++)
            ok = (b[j] >= '0' && b[j] <= '9') || b[j] == ' ' || b[j] == '+' || b[j] == '-' || b[j] == ',' ||
                 (b[j] == '=' && j + 1 == bl);
        task->allowed[v] = (unsigned char)ok;
    }
    task->allowed[task->terminator] = 1;
    task->min_len = 0;
    task->max_len = ARITH_MAX_LEN;

    // Token sequences: few-shot prompt, and per query X, few-shot + X, Y.
    char text[4096], line[512];
    size_t tl = 0;
    text[0] = 0;
    for (int s = 0; s < ARITH_SHOTS; s++) {
        arith_text(&st->questions[demo[s]], ARITH_WORKED, line, sizeof line);
        append(text, sizeof text, &tl, line);
        append(text, sizeof text, &tl, "\n");
    }
    st->fewshot = encode(st, text, &st->fewshot_len);
    int Q = st->num_queries;
    st->x = gfn_calloc((size_t)Q, sizeof(int *)); st->x_len = gfn_calloc((size_t)Q, sizeof(int));
    st->fx = gfn_calloc((size_t)Q, sizeof(int *)); st->fx_len = gfn_calloc((size_t)Q, sizeof(int));
    st->y = gfn_calloc((size_t)Q, sizeof(int *)); st->y_len = gfn_calloc((size_t)Q, sizeof(int));
    for (int q = 0; q < Q; q++) {
        arith_text(&st->questions[q], ARITH_QUERY, line, sizeof line);
        st->x[q] = encode(st, line, &st->x_len[q]);
        st->fx_len[q] = st->fewshot_len + st->x_len[q];
        st->fx[q] = gfn_malloc(sizeof(int) * (size_t)st->fx_len[q]);
        memcpy(st->fx[q], st->fewshot, sizeof(int) * (size_t)st->fewshot_len);
        memcpy(st->fx[q] + st->fewshot_len, st->x[q], sizeof(int) * (size_t)st->x_len[q]);
        arith_text(&st->questions[q], ARITH_SOLUTION, line, sizeof line);
        st->y[q] = encode(st, line, &st->y_len[q]);
    }
    for (int c = 0; c < ARITH_SCORERS; c++) {
        st->scorer[c].base = c == 0 ? task->base : gpt_view(task->base);
        st->scorer[c].logp = gfn_malloc(sizeof(float) * (size_t)V);
    }

    // Demonstrations as trajectories: each step " a op b =" (", a op b =" after the first) as
    // actions, the calculator filling in the value — the same path a sampled Z takes.
    task->demos = gfn_calloc(ARITH_NUM_DEMOS, sizeof(Traj *));
    task->num_demos = 0;
    for (int d = 0; d < ARITH_NUM_DEMOS && demo[d] >= 0; d++) {
        const ArithQuestion *q = &st->questions[demo[d]];
        int actions[ARITH_MAX_LEN * 2], na = 0, ok = 1, v = q->operand[0];
        for (int k = 1; k < q->n && ok; k++) {
            snprintf(line, sizeof line, "%s%d %c %d =", k > 1 ? ", " : " ", v, q->op[k - 1], q->operand[k]);
            v = q->op[k - 1] == '+' ? v + q->operand[k] : v - q->operand[k];
            int m, *ids = encode(st, line, &m);
            for (int j = 0; j < m && ok; j++) {
                ok = task->allowed[ids[j]] && ids[j] != task->terminator && na < ARITH_MAX_LEN;
                if (ok) actions[na++] = ids[j];
            }
            free(ids);
        }
        Traj *t = traj_new(task->max_len);
        t->query = demo[d];
        arith_rebuild(task, t, actions, na);
        tokens_text(st, t->tokens, t->ntok, text, sizeof text);
        arith_text(q, ARITH_RATIONALE, line, sizeof line);
        if (!ok || t->nact != na || text[0] != ' ' || strcmp(text + 1, line)) {
            if (!opt->quiet) fprintf(stderr, "gfn: arithmetic: worked rationale %d does not fit the vocabulary or length; skipped\n", d);
            traj_free(t);
            continue;
        }
        task->demos[task->num_demos++] = t;
    }
    if (task->num_demos) task->log_reward(task, task->demos, task->num_demos);
    return 0;
}

static void arith_cleanup(Task *task) {
    ArithState *st = task->state;
    if (st) {
        for (int q = 0; q < st->num_queries; q++) {
            if (st->x) free(st->x[q]);
            if (st->fx) free(st->fx[q]);
            if (st->y) free(st->y[q]);
        }
        free(st->x); free(st->x_len); free(st->fx); free(st->fx_len); free(st->y); free(st->y_len);
        free(st->fewshot); free(st->questions);
        for (int c = 0; c < ARITH_SCORERS; c++) {
            ArithScorer *sc = &st->scorer[c];
            kv_cache_free(sc->cache);
            free(sc->logits); free(sc->logp);
            if (sc->base && sc->base != task->base) gpt_free(sc->base);   // a view: before the base
        }
        if (st->tok) tokenizer_free(st->tok);
        free(st);
    }
    task->state = NULL;
    for (int d = 0; d < task->num_demos; d++) traj_free(task->demos[d]);
    text_task_release(task);   // the base model, the allowed mask and the demos array (tasks/text.c)
}

// SFT's data: one of the 10 worked rationales, whichever query was asked (SFT learns from those
// ten only, as in the paper; the trajectory keeps its own query).
static void arith_demonstration(Task *task, int query, Traj *out, Rng *rng) {
    (void)query;
    traj_copy(out, task->demos[rng_below(rng, task->num_demos)]);
}

// ----------------------------------------------------------------------------------------------
// Evaluation: 10 samples at T = 0.1 with the calculator, majority vote on the last number of Z.

// The last integer of the text (a '-' counts as its sign unless a digit precedes it); 0 if none.
int arith_last_number(const char *text, size_t len, long long *value) {
    size_t end = len;
    while (end > 0 && (text[end - 1] < '0' || text[end - 1] > '9')) end--;
    if (end == 0) return 0;
    size_t start = end;
    while (start > 0 && text[start - 1] >= '0' && text[start - 1] <= '9' && end - start < 9) start--;
    long long v = 0;
    for (size_t i = start; i < end; i++) v = v * 10 + (text[i] - '0');
    if (start > 0 && text[start - 1] == '-' && !(start > 1 && text[start - 2] >= '0' && text[start - 2] <= '9')) v = -v;
    *value = v;
    return 1;
}

static void arith_render(Task *task, const Traj *t, char *buf, size_t cap) {
    tokens_text(task->state, t->tokens, t->ntok, buf, cap);
}

// Accuracy on questions first..first+count-1 of test set `set`: ARITH_SAMPLES samples each at
// T = 0.1, batched QB questions at a time, majority vote on the last number of Z. When shown is
// given, the first question's first sample is written there. t: (QB ARITH_SAMPLES) scratch.
enum { QB = 8 };   // questions per sampler batch
static double arith_set_accuracy(Task *task, GPT *policy, int set, int count, Rng *rng, Traj **t, char *shown,
                                 size_t shown_cap, double t0, int done_before) {
    ArithState *st = task->state;
    SamplerConfig sc = { 0.1f, 0, 1.0f, 0 };
    int queries[QB * ARITH_SAMPLES], correct = 0;
    char text[512];
    for (int start = 0; start < count; start += QB) {
        int nq = count - start < QB ? count - start : QB;
        for (int i = 0; i < nq * ARITH_SAMPLES; i++) queries[i] = st->test_start[set] + start + i / ARITH_SAMPLES;
        if (!st->quiet && isatty(2) && t0 > 0) {
            double elapsed = gfn_wall_seconds() - t0;
            int done = done_before + start, total = 3 * count;   // sets of equal size
            fprintf(stderr, "\revaluating %d operands: %d/%d questions  ETA %.0fs   ", arith_test_ops[set], start, count,
                    done ? elapsed / done * (total - done) : 0.0);
        }
        sample_trajectories(policy, task, queries, t, nq * ARITH_SAMPLES, &sc, rng);
        for (int qi = 0; qi < nq; qi++) {
            long long votes[ARITH_SAMPLES];
            int nv = 0, best = -1, best_count = 0;
            for (int k = 0; k < ARITH_SAMPLES; k++) {
                Traj *tr = t[qi * ARITH_SAMPLES + k];
                size_t len = tokens_text(st, tr->tokens, tr->ntok, text, sizeof text);
                if (arith_last_number(text, len, &votes[nv])) nv++;
            }
            for (int a = 0; a < nv; a++) {   // the most frequent; ties to the first reached
                int c = 0;
                for (int b = 0; b < nv; b++) c += votes[b] == votes[a];
                if (c > best_count) { best_count = c; best = a; }
            }
            int q = queries[qi * ARITH_SAMPLES];
            correct += best >= 0 && votes[best] == arith_answer(&st->questions[q]);
            if (shown && start == 0 && qi == 0) {
                char question[256];
                arith_text(&st->questions[q], ARITH_QUERY, question, sizeof question);
                tokens_text(st, t[qi * ARITH_SAMPLES]->tokens, t[qi * ARITH_SAMPLES]->ntok, text, sizeof text);
                snprintf(shown, shown_cap, "%s%s. (vote %lld, answer %d)", question, text,
                         best >= 0 ? votes[best] : 0LL, arith_answer(&st->questions[q]));
            }
        }
    }
    if (!st->quiet && isatty(2) && t0 > 0) fprintf(stderr, "\r%60s\r", "");
    return count ? (double)correct / count : 0.0;
}

// The prompt a policy sees in evaluation: a LoRA-tuned policy the training's (--prompt), the
// untuned base the base's.
static int arith_eval_prompt(ArithState *st, GPT *policy) {
    return gpt_lora(policy) ? st->policy_fewshot : st->base_fewshot;
}

static void arith_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    ArithState *st = task->state;
    int prompted = arith_eval_prompt(st, policy);
    st->use_fewshot = prompted;
    Rng rng;
    rng_seed(&rng, seed * 7919 + 17);
    Traj *t[QB * ARITH_SAMPLES];
    for (int i = 0; i < QB * ARITH_SAMPLES; i++) t[i] = traj_new(task->max_len);
    char shown[3][1024] = { "", "", "" };
    fprintf(out, "prompt %s\n", prompted ? "3-shot" : "question");
    double t0 = gfn_wall_seconds();
    int done_before = 0;
    for (int s = 0; s < 3; s++) {
        int count = st->eval_n < st->test_count[s] ? st->eval_n : st->test_count[s];
        double acc = arith_set_accuracy(task, policy, s, count, &rng, t, shown[s], sizeof shown[s], t0, done_before);
        fprintf(out, "acc_%d %.4f\n", arith_test_ops[s], acc);
        fprintf(out, "n_%d %d\n", arith_test_ops[s], count);
        done_before += count;
    }
    for (int s = 0; s < 3; s++) if (shown[s][0]) fprintf(out, "sample %s\n", shown[s]);
    for (int i = 0; i < QB * ARITH_SAMPLES; i++) traj_free(t[i]);
    st->use_fewshot = st->policy_fewshot;
}

// The learning curve (--eval-every): accuracy on the first per_set questions of each test set,
// as the evaluation measures it, from an Rng of its own seeded alike at every point.
static const char *const arith_curve_names[3] = { "acc_3", "acc_4", "acc_5" };   // arith_test_ops
static void arith_curve(Task *task, GPT *policy, int per_set, uint64_t seed, double *values) {
    ArithState *st = task->state;
    st->use_fewshot = arith_eval_prompt(st, policy);
    Rng rng;
    rng_seed(&rng, seed * 7919 + 23);
    Traj *t[QB * ARITH_SAMPLES];
    for (int i = 0; i < QB * ARITH_SAMPLES; i++) t[i] = traj_new(task->max_len);
    for (int s = 0; s < 3; s++)
        values[s] = arith_set_accuracy(task, policy, s, per_set < st->test_count[s] ? per_set : st->test_count[s], &rng, t,
                                       NULL, 0, 0, 0);
    for (int i = 0; i < QB * ARITH_SAMPLES; i++) traj_free(t[i]);
    st->use_fewshot = st->policy_fewshot;
}

Task task_arithmetic = {
    .name = "arithmetic",
    .help = "integer arithmetic with a calculator: Z = worked steps, R = p(3-shot X Z Y); acc on 3/4/5 operands",
    .setup = arith_setup,
    .cleanup = arith_cleanup,
    .prompt = arith_prompt,
    .tool = arith_tool,
    .log_reward = arith_log_reward,
    // the reward reads the encoded prompts and answers and writes only its scorer's cache and
    // scratch; the tool (sampling) encodes with the tokenizer, which the reward never touches
    .concurrent_reward = ARITH_SCORERS,
    .log_reward_on = arith_log_reward_on,
    .evaluate = arith_evaluate,
    .demonstration = arith_demonstration,
    .render = arith_render,
    .num_curve = 3,
    .curve_names = arith_curve_names,
    .curve = arith_curve,
};

// ----------------------------------------------------------------------------------------------
// The report of `make reproduce-arithmetic`: every result file of a folder (one run each: lines "method M",
// "seed S", "acc_3 F", "acc_4 F", "acc_5 F", "n_3 N", "wall_s F", "command ...") becomes a
// Markdown table of mean ± std per method and an SVG of accuracy against the operand count.
// Runs whose policy saw the 3-shot prompt ("method M-3shot") make a secondary table; the main one
// holds the rest (the policy sees the question alone, as in the paper; the base rows are there).
// Lines "curve STEP acc_3 F acc_4 F acc_5 F" (--eval-every) make a learning curve: a table of
// accuracy on 5 operands against the step and OUT_curve.svg, means over seeds.
// Files of the random-integer task run on the same base model ("method rng-M", lines "valid F",
// "kl_uniform F") make a third table.

enum { REPORT_MAX_METHODS = 24, REPORT_MAX_RUNS = 64, REPORT_MAX_CURVE = 64 };
typedef struct {
    char name[32];
    int runs;
    double acc[3][REPORT_MAX_RUNS];
    double wall;
    int n_eval;
    int rng;                      // a random-integer run: acc[0] = valid fraction, acc[1] = KL to uniform
    char command[512];
    char prompt[16];              // the policy's prompt in evaluation: "3-shot" or "question"
    int curve_points;             // learning-curve points, at the same steps in every run
    int curve_step[REPORT_MAX_CURVE];
    int curve_runs;               // runs with a curve
    double curve_acc[3][REPORT_MAX_CURVE][REPORT_MAX_RUNS];   // accuracy per set, point and run
} MethodRuns;

static int secondary_method(const char *method) {   // a 3-shot-policy run
    size_t n = strlen(method);
    return n > 6 && !strcmp(method + n - 6, "-3shot");
}

static const char *const report_order[] = { "base", "base-question", "sft", "reinforce", "tb", "subtb", "vargrad-minlen",
                                            "sft-3shot", "reinforce-3shot", "tb-3shot", "subtb-3shot", "rng-base", "rng-reinforce", "rng-tb", "rng-tb-seeded", "rng-subtb" };
static const char *report_paper(const char *method) {   // PAPER.md, GPT-J 6B (secondary source)
    if (!strcmp(method, "subtb")) return "95.2 / 75.4 / 40.7";
    if (!strcmp(method, "sft")) return "72.1 / 19.6 / 12.8";
    if (!strcmp(method, "reinforce")) return "30.6 / 13.7 / 5.6 (PPO)";
    return "—";
}
static const char *report_label(const char *method) {
    if (!strcmp(method, "base")) return "base model, no tuning (3-shot prompt)";
    if (!strcmp(method, "base-question")) return "base model, no tuning, question alone";
    if (!strcmp(method, "sft")) return "SFT on 10 worked rationales";
    if (!strcmp(method, "reinforce")) return "reward maximiser (REINFORCE + baseline)";
    if (!strcmp(method, "tb")) return "GFlowNet, TB";
    if (!strcmp(method, "subtb")) return "GFlowNet, modified SubTB";
    if (!strcmp(method, "vargrad-minlen")) return "GFlowNet, VarGrad, on-policy, minimum length 4";
    if (!strcmp(method, "sft-3shot")) return "SFT on 10 worked rationales";
    if (!strcmp(method, "reinforce-3shot")) return "reward maximiser (REINFORCE + baseline)";
    if (!strcmp(method, "tb-3shot")) return "GFlowNet, TB";
    if (!strcmp(method, "subtb-3shot")) return "GFlowNet, modified SubTB";
    if (!strcmp(method, "rng-base")) return "base model";
    if (!strcmp(method, "rng-reinforce")) return "reward maximiser (REINFORCE + baseline)";
    if (!strcmp(method, "rng-tb")) return "GFlowNet, TB";
    if (!strcmp(method, "rng-tb-seeded")) return "GFlowNet, TB, replay seeded with the 101 answers";
    if (!strcmp(method, "rng-subtb")) return "GFlowNet, modified SubTB, replay seeded with the 101 answers";
    return method;
}

static int report_read(const char *path, MethodRuns *methods, int *num_methods, GfnError *err) {
    size_t len;
    unsigned char *text = read_file(path, &len, err);
    if (!text) return 1;
    char method[32] = "", command[512] = "", prompt[16] = "";
    double acc[3] = { NAN, NAN, NAN }, wall = 0, valid = NAN, kl = NAN;
    int n_eval = 0, curve_points = 0, curve_step[REPORT_MAX_CURVE];
    double curve_acc[3][REPORT_MAX_CURVE];
    for (char *line = (char *)text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        double v;
        int k;
        if (sscanf(line, "method %31s", method) == 1) continue;
        if (sscanf(line, "prompt %15s", prompt) == 1) continue;
        if (!strncmp(line, "command ", 8)) { snprintf(command, sizeof command, "%s", line + 8); continue; }
        if (sscanf(line, "wall_s %lf", &v) == 1) { wall = v; continue; }
        if (sscanf(line, "n_3 %d", &k) == 1) { n_eval = k; continue; }
        if (sscanf(line, "valid %lf", &v) == 1) { valid = v; continue; }
        if (sscanf(line, "kl_uniform %lf", &v) == 1) { kl = v; continue; }
        double a3, a4, a5;
        if (sscanf(line, "curve %d acc_3 %lf acc_4 %lf acc_5 %lf", &k, &a3, &a4, &a5) == 4) {
            if (curve_points == REPORT_MAX_CURVE) { free(text); gfn_error_set(err, "%s: more than %d curve lines", path, REPORT_MAX_CURVE); return 1; }
            curve_step[curve_points] = k;
            curve_acc[0][curve_points] = a3; curve_acc[1][curve_points] = a4; curve_acc[2][curve_points] = a5;
            curve_points++;
            continue;
        }
        for (int s = 0; s < 3; s++) {
            char key[16];
            snprintf(key, sizeof key, "acc_%d %%lf", arith_test_ops[s]);
            if (sscanf(line, key, &v) == 1) acc[s] = v;
        }
    }
    free(text);
    if (!method[0]) return 0;   // not a result file
    int rng = !strncmp(method, "rng-", 4);
    if (rng && isnan(valid)) { gfn_error_set(err, "%s: no valid line (did the run fail?)", path); return 1; }
    if (rng) { acc[0] = valid; acc[1] = kl; acc[2] = 0; }
    if (isnan(acc[0]) || isnan(acc[1]) || isnan(acc[2])) { gfn_error_set(err, "%s: no acc_3, acc_4 and acc_5 lines (did the run fail?)", path); return 1; }
    int m = 0;
    while (m < *num_methods && strcmp(methods[m].name, method)) m++;
    if (m == *num_methods) {
        if (m == REPORT_MAX_METHODS) { gfn_error_set(err, "%s: more than %d methods", path, REPORT_MAX_METHODS); return 1; }
        memset(&methods[m], 0, sizeof methods[m]);
        snprintf(methods[m].name, sizeof methods[m].name, "%s", method);
        (*num_methods)++;
    }
    MethodRuns *mr = &methods[m];
    mr->rng = rng;
    if (mr->runs == REPORT_MAX_RUNS) { gfn_error_set(err, "%s: more than %d runs of %s", path, REPORT_MAX_RUNS, method); return 1; }
    for (int s = 0; s < 3; s++) mr->acc[s][mr->runs] = acc[s];
    mr->wall += wall;
    mr->n_eval = n_eval;
    if (command[0]) snprintf(mr->command, sizeof mr->command, "%s", command);
    if (prompt[0]) snprintf(mr->prompt, sizeof mr->prompt, "%s", prompt);
    mr->runs++;
    if (curve_points) {   // every run of a method at the same steps, so that points can be averaged
        int same = mr->curve_runs == 0 || mr->curve_points == curve_points;
        for (int i = 0; same && mr->curve_runs && i < curve_points; i++) same = mr->curve_step[i] == curve_step[i];
        if (!same) { gfn_error_set(err, "%s: curve steps differ from the other runs of %s", path, method); return 1; }
        mr->curve_points = curve_points;
        memcpy(mr->curve_step, curve_step, sizeof(int) * (size_t)curve_points);
        for (int s = 0; s < 3; s++) for (int i = 0; i < curve_points; i++) mr->curve_acc[s][i][mr->curve_runs] = curve_acc[s][i];
        mr->curve_runs++;
    }
    return 0;
}

// The rows of the main table (secondary 0: every arithmetic method but the 3-shot-policy runs) or
// of the secondary one (secondary 1: those only), mean ± std over seeds.
static void report_table(Text *md, MethodRuns *methods, int nm, int secondary) {
    static const char *const columns[] = { "method", "prompt", "runs", "test questions per set", "3 operands", "4 operands",
                                           "5 operands", "paper 3 / 4 / 5", "wall time per run (s)" };
    md_table_header(md, columns, 9);
    for (int m = 0; m < nm; m++) {
        MethodRuns *mr = &methods[m];
        if (mr->rng || secondary_method(mr->name) != secondary) continue;
        text_appendf(md, "| %s | %s | %d | %d |", report_label(mr->name), mr->prompt[0] ? mr->prompt : "?", mr->runs, mr->n_eval);
        for (int s = 0; s < 3; s++) {
            double mean, std;
            mean_std(mr->acc[s], mr->runs, &mean, &std);
            text_appendf(md, " %.1f ± %.1f |", 100 * mean, 100 * std);
        }
        text_appendf(md, " %s | %.0f |\n", secondary ? "—" : report_paper(mr->name), mr->wall / mr->runs);
    }
}

// The learning curves of the main table's methods: a Markdown table of the accuracy on 3, 4 and 5
// operands (mean over the runs with a curve) at each step, and a line plot of the 5-operand one
// into svg. Methods whose steps differ from the first curve's are listed, not drawn. Returns the
// number drawn.
static int report_curves(Text *md, Text *svg, MethodRuns *methods, int nm) {
    int first = -1;
    for (int m = 0; m < nm && first < 0; m++)
        if (!methods[m].rng && !secondary_method(methods[m].name) && methods[m].curve_points >= 2) first = m;
    if (first < 0) return 0;
    const MethodRuns *grid = &methods[first];
    int P = grid->curve_points, drawn = 0;
    text_appendf(md, "\n## Learning curve\n\nTest accuracy (%%), mean over seeds, on the first questions of each set "
                     "(`--curve-n`, fixed before the runs) during training (`--eval-every`); step 0 is the untuned policy "
                     "under the training's prompt. The plot shows the 5-operand rows.\n\n| method | operands |");
    for (int i = 0; i < P; i++) text_appendf(md, " %d |", grid->curve_step[i]);
    text_appendf(md, "\n|---|---|");
    for (int i = 0; i < P; i++) text_appendf(md, "---|");
    text_appendf(md, "\n");
    static char labels[REPORT_MAX_CURVE][16];
    const char *x_labels[REPORT_MAX_CURVE];
    for (int i = 0; i < P; i++) { snprintf(labels[i], sizeof labels[i], "%d", grid->curve_step[i]); x_labels[i] = labels[i]; }
    PlotSeries series[REPORT_MAX_METHODS];
    static double mean[REPORT_MAX_METHODS][REPORT_MAX_CURVE], std[REPORT_MAX_METHODS][REPORT_MAX_CURVE];
    for (int m = 0; m < nm; m++) {
        MethodRuns *mr = &methods[m];
        if (mr->rng || secondary_method(mr->name) || mr->curve_runs == 0) continue;
        int same = mr->curve_points == P;
        for (int i = 0; same && i < P; i++) same = mr->curve_step[i] == grid->curve_step[i];
        if (!same) { text_appendf(md, "| %s | — | (other steps; not drawn) |\n", mr->name); continue; }
        for (int s = 0; s < 3; s++) {   // s = 2 last: its means stay in mean[drawn] for the plot
            text_appendf(md, "| %s | %d |", report_label(mr->name), arith_test_ops[s]);
            for (int i = 0; i < P; i++) {
                mean_std(mr->curve_acc[s][i], mr->curve_runs, &mean[drawn][i], &std[drawn][i]);
                text_appendf(md, " %.1f |", 100 * mean[drawn][i]);
            }
            text_appendf(md, "\n");
        }
        series[drawn] = (PlotSeries){ .name = mr->name, .slot = m, .mean = mean[drawn], .std = std[drawn] };
        drawn++;
    }
    const LinePlot plot = { .width = 640, .height = 360, .left = 60, .right = 200, .top = 20, .bottom = 50, .num_x = P,
                            .x_labels = x_labels, .x_title = "training step", .y_title = "test accuracy, 5 operands (%)" };
    svg_line_plot(svg, &plot, series, drawn);
    return drawn;
}

// OUT.svg -> OUT_curve.svg (or PATH_curve.svg when PATH has no .svg ending).
static void curve_svg_path(const char *svg_path, char *out, size_t cap) {
    size_t n = strlen(svg_path);
    if (n > 4 && !strcmp(svg_path + n - 4, ".svg")) snprintf(out, cap, "%.*s_curve.svg", (int)(n - 4), svg_path);
    else snprintf(out, cap, "%s_curve.svg", svg_path);
}

int arith_report(const char *dir, const char *md_path, const char *svg_path, GfnError *err) {
    char *names[1024];
    int num_names = report_list_files(dir, names, 1024, err);
    if (num_names < 0) return 1;
    MethodRuns *found = gfn_calloc(REPORT_MAX_METHODS, sizeof(MethodRuns)), *methods = gfn_calloc(REPORT_MAX_METHODS, sizeof(MethodRuns));
    int num_found = 0, status = 0;
    for (int i = 0; i < num_names; i++) {
        if (!status) status = report_read(names[i], found, &num_found, err);
        free(names[i]);
    }
    if (!status && num_found == 0) { gfn_error_set(err, "%s: no result files (*.txt with a \"method\" line)", dir); status = 1; }
    if (status) { free(found); free(methods); return 1; }
    int nm = 0;   // the known methods in their order, then the others as found
    for (size_t o = 0; o < sizeof report_order / sizeof *report_order; o++)
        for (int m = 0; m < num_found; m++) if (!strcmp(found[m].name, report_order[o])) methods[nm++] = found[m];
    for (int m = 0; m < num_found; m++) {
        int known = 0;
        for (size_t o = 0; o < sizeof report_order / sizeof *report_order; o++) known |= !strcmp(found[m].name, report_order[o]);
        if (!known) methods[nm++] = found[m];
    }
    free(found);

    Text md = { NULL, 0, 0 };
    text_appendf(&md, "# Integer arithmetic with a calculator\n\n"
                     "Test accuracy (%%), mean ± std over seeds; 10 samples at T = 0.1 with the calculator, majority vote on\n"
                     "the last number of Z. 3 and 4 operands are in distribution, 5 operands out of distribution.\n"
                     "The paper's figures are for GPT-J 6B (PAPER.md, secondary source); ours come from our own base model.\n\n");
    report_table(&md, methods, nm, 0);
    // The target, checked on the table's own numbers: on 5 operands (mean over seeds)
    // GFlowNet > SFT > reward maximiser with GFlowNet >= 2x SFT, and GFlowNet above the base on
    // every operand count.
    static const char *const target_methods[4] = { "base", "sft", "reinforce", "subtb" };
    double mean5[4] = { NAN, NAN, NAN, NAN }, base_mean[3] = { NAN, NAN, NAN }, gfn_mean[3] = { NAN, NAN, NAN };
    for (int m = 0; m < nm; m++)
        for (int o = 0; o < 4; o++)
            if (!strcmp(methods[m].name, target_methods[o])) {
                double sd;
                mean_std(methods[m].acc[2], methods[m].runs, &mean5[o], &sd);
                for (int k = 0; k < 3; k++) {
                    if (o == 0) mean_std(methods[m].acc[k], methods[m].runs, &base_mean[k], &sd);
                    if (o == 3) mean_std(methods[m].acc[k], methods[m].runs, &gfn_mean[k], &sd);
                }
            }
    if (!isnan(mean5[1]) && !isnan(mean5[2]) && !isnan(mean5[3])) {
        int order = mean5[3] > mean5[1] && mean5[1] > mean5[2], twice = mean5[3] >= 2 * mean5[1], above = 1;
        for (int k = 0; k < 3; k++) above &= !isnan(base_mean[k]) && gfn_mean[k] > base_mean[k];
        text_appendf(&md, "\nTarget on 5 operands (mean over seeds): GFlowNet (modified SubTB) > SFT > reward maximiser: "
                         "%.1f vs %.1f vs %.1f — **%s**; GFlowNet at least 2x SFT: **%s**; GFlowNet above the untuned base "
                         "(3-shot prompt) on 3, 4 and 5 operands: **%s**.\n", 100 * mean5[3], 100 * mean5[1], 100 * mean5[2],
                    order ? "met" : "not met", twice ? "met" : "not met", above ? "met" : "not met");
    }
    int secondary = 0;
    for (int m = 0; m < nm; m++) secondary |= !methods[m].rng && secondary_method(methods[m].name);
    if (secondary) {
        text_appendf(&md, "\n## Secondary: the policy sees the reward's 3-shot prompt\n\nThe same methods and protocol, but the policy "
                         "is prompted with the 3 worked examples before the question (`--prompt fewshot`), in training and evaluation.\n\n");
        report_table(&md, methods, nm, 1);
    }
    Text curve_svg = { NULL, 0, 0 };
    char curve_path[4096];
    curve_svg_path(svg_path, curve_path, sizeof curve_path);
    if (report_curves(&md, &curve_svg, methods, nm)) {
        const char *base_name = strrchr(curve_path, '/');
        text_appendf(&md, "\n![test accuracy on 5 operands against the training step](%s)\n", base_name ? base_name + 1 : curve_path);
    }
    // What was tried: the folder's NOTES.md (written by hand), verbatim.
    char notes_path[4096];
    snprintf(notes_path, sizeof notes_path, "%s/NOTES.md", dir);
    if (file_exists(notes_path)) {
        size_t notes_len;
        unsigned char *notes = read_file(notes_path, &notes_len, err);
        if (!notes) { free(md.s); free(methods); return 1; }
        text_appendf(&md, "\n%.*s", (int)notes_len, (const char *)notes);
        free(notes);
    }
    const char *svg_name = strrchr(svg_path, '/');
    text_appendf(&md, "\n![accuracy against the number of operands](%s)\n\n## Commands (one seed shown; the others differ only in -s)\n\n",
                 svg_name ? svg_name + 1 : svg_path);
    for (int m = 0; m < nm; m++) if (methods[m].command[0]) text_appendf(&md, "- %s: `%s`\n", methods[m].name, methods[m].command);
    int rng_runs = 0;
    for (int m = 0; m < nm; m++) rng_runs += methods[m].rng;
    if (rng_runs) {
        text_appendf(&md, "\n## Random integer (paper §2) on the same base model\n\n"
                         "Valid: the fraction of samples that are an integer 0–100 followed by the terminator; KL: KL(sampled ‖ uniform\n"
                         "over 0–100) in nats, from 10,000 samples (the paper: base GPT-2 50.5 %% valid, PPO 95.8 %% but far from uniform,\n"
                         "GFlowNet 100 %% valid with KL ≈ 1e-4). inf: some of the 101 integers never sampled.\n\n");
        static const char *const rng_columns[] = { "method", "runs", "valid %", "KL to uniform", "wall time per run (s)" };
        md_table_header(&md, rng_columns, 5);
        for (int m = 0; m < nm; m++) {
            MethodRuns *mr = &methods[m];
            if (!mr->rng) continue;
            double v, vs, k, ks;
            mean_std(mr->acc[0], mr->runs, &v, &vs);
            mean_std(mr->acc[1], mr->runs, &k, &ks);
            text_appendf(&md, "| %s | %d | %.2f ± %.2f | %.3f ± %.3f | %.0f |\n", report_label(mr->name), mr->runs, 100 * v, 100 * vs, k, ks, mr->wall / mr->runs);
        }
    }

    // The plot: x = 3, 4, 5 operands, y = accuracy 0..100 %, one polyline per method with ± std bars.
    static const char *const x_labels[3] = { "3", "4", "5" };   // arith_test_ops
    const LinePlot plot = { .width = 560, .height = 360, .left = 60, .right = 200, .top = 20, .bottom = 50, .num_x = 3,
                            .x_labels = x_labels, .x_title = "operands (5 = out of distribution)", .y_title = "test accuracy (%)" };
    PlotSeries series[REPORT_MAX_METHODS];
    double mean[REPORT_MAX_METHODS][3], std[REPORT_MAX_METHODS][3];
    int num_series = 0;
    for (int m = 0; m < nm; m++) {
        if (methods[m].rng || secondary_method(methods[m].name)) continue;   // the main table's
        for (int s = 0; s < 3; s++) mean_std(methods[m].acc[s], methods[m].runs, &mean[m][s], &std[m][s]);
        series[num_series++] = (PlotSeries){ .name = methods[m].name, .slot = m, .mean = mean[m], .std = std[m] };
    }
    Text svg = { NULL, 0, 0 };
    svg_line_plot(&svg, &plot, series, num_series);
    status = write_file_atomic(md_path, md.s, md.len, err) || write_file_atomic(svg_path, svg.s, svg.len, err) ||
             (curve_svg.len && write_file_atomic(curve_path, curve_svg.s, curve_svg.len, err));
    free(md.s); free(svg.s); free(curve_svg.s); free(methods);
    return status;
}
