// tasks/subj.c — subjectivity classification with a latent rationale (the paper's §4.3, Table 3):
// the E-step, the M-step, prediction by model averaging, and the baselines. One template for every
// method (the official baselines used another: defect 14):
//   X = end-of-text, "Classify this movie review as objective or subjective: \"{text}\" This review is"
//   Z = 1–5 tokens, ended by ⊤ = end-of-text (forced at 5)
//   Y = ", so it is objective." or ", so it is subjective."
// E-step (`gfn train subj`, the GFlowNet objective): q(Z | X) with
//   log R(z_≤i ⊤) = log p_base(z_1..z_i Y | X) − 50 · [p_base(Y' | X z_≤i) > p_base(Y | X z_≤i)]
// with Y the example's label and Y' the other one: a rationale after which the base prefers the
// wrong label is penalised. The policy sees X only: trained on labelled X (the label enters
// through R, so it learns q(Z | X, Y) for those), and sampled for unlabelled X at test time.
// M-step (in the evaluation, after the E-step): p(Y | X Z) fitted on Z sampled from the trained q
// for the labelled X. Data: subj/train.{10,20,50}.jsonl (--labelled N, the N labelled examples,
// queries 0..N-1) and all 2000 rows of subj/test.jsonl (queries N..N+1999).
#include "../gfn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SUBJ_MAX_LEN = 5, SUBJ_TEST = 2000, SUBJ_VOTES = 10 };
// The M-step's and SFT's classifier fit (subj_fit_classifier): a fresh LoRA (rank 16, alpha 16,
// every module, as the text tasks' policies) on the base, AdamW lr 5e-4 with 10 warm-up steps and
// cosine decay to 0, clip 1, SUBJ_FIT_STEPS steps of SUBJ_FIT_BATCH examples drawn uniformly from
// the training examples; the M-step's examples are SUBJ_M_SAMPLES Z per labelled X.
enum { SUBJ_FIT_STEPS = 50, SUBJ_FIT_BATCH = 8, SUBJ_FIT_RANK = 16, SUBJ_FIT_WARMUP = 10, SUBJ_M_SAMPLES = 10 };
static const float SUBJ_FIT_ALPHA = 16.0f, SUBJ_FIT_LR = 2e-3f;
static const float subj_wrong_label_penalty = 50.0f;
static const char *const subj_labels[2] = { ", so it is objective.", ", so it is subjective." };

typedef struct {
    Tokenizer *tok;
    int num_queries;
    int *label;                 // (num_queries) 0 objective, 1 subjective
    int **x, *x_len;            // (num_queries) the template with the review
    int *y[2], y_len[2];        // the two label sentences
    int eval_n, baselines;
    PrefixScorer scorer;
    int *demo_tokens;           // end-of-text and the few-shot blocks X_d Y_d "\n" in a seeded order
    int *fewshot_demos;         // (num_queries) the blocks in front of each X
    int *fewshot_len;           // (num_queries) their tokens, end-of-text included
    int **wishful_x, *wishful_len;   // (num_train) X " objective because it is" (resp. subjective): only during setup
    Traj **wishful;             // (num_demos) the replay buffer's seeds (--seed-answers 1), owned here
} SubjState;

static const int *subj_prompt(Task *task, int query, int *len) {
    SubjState *st = task->state;
    if (st->wishful_x) { *len = st->wishful_len[query]; return st->wishful_x[query]; }   // while setup builds the seeds
    *len = st->x_len[query];
    return st->x[query];
}

// Rows X Z Y_label (label: 0, 1, or -1 for each query's own label; -2 its other label).
static void subj_rows(Task *task, Traj *const *t, int n, int label, ScoredText *rows) {
    SubjState *st = task->state;
    for (int r = 0; r < n; r++) {
        int q = t[r]->query, l = label >= 0 ? label : label == -1 ? st->label[q] : 1 - st->label[q];
        rows[r] = (ScoredText){ st->x[q], st->x_len[q], t[r]->tokens, t[r]->ntok, st->y[l], st->y_len[l] };
    }
}

static void subj_log_reward(Task *task, Traj *const *t, int n) {
    SubjState *st = task->state;
    int stride = task->max_len + 1;
    ScoredText *rows = gfn_malloc(sizeof(ScoredText) * (size_t)n);
    float *wrong = gfn_malloc(sizeof(float) * (size_t)n * stride);   // (n, stride) log p(z_≤i Y' | X)
    subj_rows(task, t, n, -1, rows);
    text_log_reward(task->base, &st->scorer, rows, t, n, NULL);
    subj_rows(task, t, n, -2, rows);
    log_p_every_prefix(task->base, &st->scorer, rows, n, NULL, wrong, stride);
    for (int r = 0; r < n; r++)
        for (int i = 0; i <= t[r]->nact; i++)   // the Z part is common: compare the whole texts
            if (wrong[(size_t)r * stride + i] > t[r]->log_r[i]) t[r]->log_r[i] -= subj_wrong_label_penalty;
    free(rows); free(wrong);
}

// The label the base prefers after X Z of each trajectory (0 or 1) into out (n).
void subj_base_label(Task *task, Traj *const *t, int n, int *out) {
    ScoredText *rows = gfn_malloc(sizeof(ScoredText) * (size_t)n);
    float *lp = gfn_malloc(sizeof(float) * 2 * (size_t)n);   // (2, n)
    for (int l = 0; l < 2; l++) {
        subj_rows(task, t, n, l, rows);
        log_p_whole(task->base, rows, n, NULL, lp + (size_t)l * n);
    }
    for (int r = 0; r < n; r++) out[r] = lp[n + r] > lp[r];
    free(rows); free(lp);
}

int subj_label(Task *task, int query) { return ((SubjState *)task->state)->label[query]; }

static void subj_cleanup(Task *task);
static void subj_fewshot_setup(Task *task, uint64_t seed);
static void subj_wishful(Task *task, int quiet);

// Appends the rows of one jsonl file ({"text", "label"} per line) as queries.
static int subj_read(Task *task, const char *path, int want, GfnError *err) {
    SubjState *st = task->state;
    size_t len;
    char *text = (char *)read_file(path, &len, err);
    if (!text) return 1;
    int got = 0, status = 0;
    char buf[8192];
    for (size_t pos = 0; pos < len && status == 0;) {
        char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        if (n == 0) continue;
        Json *row = json_parse(line, n, path, err);
        Json *t = row ? json_get(row, "text") : NULL, *l = row ? json_get(row, "label") : NULL;
        if (!row) status = 1;
        else if (!t || t->type != JSON_STRING || !l || l->type != JSON_NUMBER || (l->number != 0 && l->number != 1)) {
            gfn_error_set(err, "%s: row %d: want {\"text\": string, \"label\": 0 or 1}", path, got);
            status = 1;
        } else {
            int q = st->num_queries++;
            st->x = realloc(st->x, sizeof(int *) * (size_t)st->num_queries);
            st->x_len = realloc(st->x_len, sizeof(int) * (size_t)st->num_queries);
            st->label = realloc(st->label, sizeof(int) * (size_t)st->num_queries);
            if (!st->x || !st->x_len || !st->label) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
            snprintf(buf, sizeof buf, "Classify this movie review as objective or subjective: \"%s\" This review is", t->string);
            st->x[q] = text_encode(st->tok, buf, 1, &st->x_len[q]);
            st->label[q] = (int)l->number;
            int need = st->x_len[q] + SUBJ_MAX_LEN + (st->y_len[0] > st->y_len[1] ? st->y_len[0] : st->y_len[1]);
            if (need > gpt_config(task->base).max_seq_len) {
                gfn_error_set(err, "%s: row %d: %d tokens with Z and Y, more than the model's %d", path, got, need, gpt_config(task->base).max_seq_len);
                status = 1;
            }
            got++;
        }
        json_free(row);
    }
    free(text);
    if (!status && got != want) { gfn_error_set(err, "%s: %d rows, want %d", path, got, want); status = 1; }
    return status;
}

static int subj_setup(Task *task, const TaskOptions *opt, GfnError *err) {
    SubjState *st = gfn_calloc(1, sizeof(SubjState));
    task->state = st;
    int N = opt->num_labelled ? opt->num_labelled : 10;
    if (N != 10 && N != 20 && N != 50) { gfn_error_set(err, "subj: --labelled %d: want 10, 20 or 50", N); subj_cleanup(task); return 1; }
    if (text_task_load(task, opt, &st->tok, err)) { subj_cleanup(task); return 1; }
    const char *dir = text_task_data_dir(opt, "subj", err);
    if (!dir) { subj_cleanup(task); return 1; }
    for (int l = 0; l < 2; l++) st->y[l] = text_encode(st->tok, subj_labels[l], 0, &st->y_len[l]);
    char path[4096];
    snprintf(path, sizeof path, "%s/subj/train.%d.jsonl", dir, N);
    if (subj_read(task, path, N, err)) { subj_cleanup(task); return 1; }
    snprintf(path, sizeof path, "%s/subj/test.jsonl", dir);
    if (subj_read(task, path, SUBJ_TEST, err)) { subj_cleanup(task); return 1; }
    task->num_train = N;
    task->num_test = SUBJ_TEST;
    task->terminator = tokenizer_eot_id(st->tok);
    task->allowed = text_allowed_mask(st->tok, gpt_config(task->base).vocab_size, "", task->terminator);
    task->min_len = 1;
    task->max_len = SUBJ_MAX_LEN;
    st->eval_n = opt->eval_n > 0 && opt->eval_n < SUBJ_TEST ? opt->eval_n : SUBJ_TEST;
    st->baselines = opt->baselines;
    subj_fewshot_setup(task, opt->seed);
    if (opt->seed_answers) subj_wishful(task, opt->quiet);
    return 0;
}

// --seed-answers 1: the replay buffer starts with "wishful" rationales (TASKS.md): for each
// labelled X, the base's greedy continuation of X + " objective because it is" (resp.
// " subjective because it is"), at most 5 tokens, cut before its first token that is not a word
// (letters after an optional leading space); an X whose continuation starts with none seeds nothing.
static void subj_wishful(Task *task, int quiet) {
    SubjState *st = task->state;
    int N = task->num_train, *queries = gfn_malloc(sizeof(int) * (size_t)N);
    st->wishful_x = gfn_malloc(sizeof(int *) * (size_t)N);
    st->wishful_len = gfn_malloc(sizeof(int) * (size_t)N);
    for (int q = 0; q < N; q++) {
        int because_len, *because = text_encode(st->tok, st->label[q] ? " subjective because it is" : " objective because it is", 0, &because_len);
        st->wishful_len[q] = st->x_len[q] + because_len;
        st->wishful_x[q] = gfn_malloc(sizeof(int) * (size_t)st->wishful_len[q]);
        memcpy(st->wishful_x[q], st->x[q], sizeof(int) * (size_t)st->x_len[q]);
        memcpy(st->wishful_x[q] + st->x_len[q], because, sizeof(int) * (size_t)because_len);
        free(because);
        queries[q] = q;
    }
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)N);
    for (int q = 0; q < N; q++) t[q] = traj_new(task->max_len);
    SamplerConfig greedy = { 0.0f, 0, 1.0f, 0 };
    Rng rng;
    rng_seed(&rng, 1);
    sample_trajectories(task->base, task, queries, t, N, &greedy, &rng);
    for (int q = 0; q < N; q++) free(st->wishful_x[q]);
    free(st->wishful_x); free(st->wishful_len);
    st->wishful_x = NULL;
    st->wishful = gfn_malloc(sizeof(Traj *) * (size_t)N);
    task->demos = gfn_malloc(sizeof(Traj *) * (size_t)N);
    for (int q = 0; q < N; q++) {
        int words = 0;
        for (; words < t[q]->ntok; words++) {
            size_t bl;
            const unsigned char *b = tokenizer_token_bytes(st->tok, t[q]->tokens[words], &bl);
            size_t j = bl > 0 && b[0] == ' ';
            int word = j < bl;
            for (; j < bl && word; j++) word = (b[j] >= 'a' && b[j] <= 'z') || (b[j] >= 'A' && b[j] <= 'Z');
            if (!word) break;
        }
        if (words == 0) { traj_free(t[q]); continue; }
        t[q]->ntok = t[q]->nact = words;
        st->wishful[task->num_demos] = task->demos[task->num_demos] = t[q];
        task->num_demos++;
    }
    if (task->num_demos) subj_log_reward(task, task->demos, task->num_demos);
    for (int d = 0; d < task->num_demos && d < 3 && !quiet; d++) {
        char z[128];
        text_of_tokens(st->tok, task->demos[d]->tokens, task->demos[d]->ntok, z, sizeof z);
        fprintf(stderr, "subj: wishful rationale of labelled example %d (%s): \"%s\"\n", task->demos[d]->query,
                st->label[task->demos[d]->query] ? "subjective" : "objective", z);
    }
    if (!quiet) fprintf(stderr, "subj: %d wishful rationales seed the replay buffer (of %d labelled examples)\n", task->num_demos, N);
    free(t); free(queries);
}

static void subj_cleanup(Task *task) {
    SubjState *st = task->state;
    if (st) {
        for (int q = 0; q < st->num_queries; q++) free(st->x[q]);
        free(st->x); free(st->x_len); free(st->label); free(st->y[0]); free(st->y[1]);
        free(st->demo_tokens); free(st->fewshot_demos); free(st->fewshot_len);
        for (int d = 0; d < task->num_demos; d++) traj_free(st->wishful[d]);   // the demos array itself: text_task_release
        free(st->wishful);
        prefix_scorer_free(&st->scorer);
        if (st->tok) tokenizer_free(st->tok);
        free(st);
    }
    task->state = NULL;
    text_task_release(task);
}

static void subj_render(Task *task, const Traj *t, char *buf, size_t cap) {
    SubjState *st = task->state;
    text_of_tokens(st->tok, t->tokens, t->ntok, buf, cap);
}

// ----------------------------------------------------------------------------------------------
// The classifier p(Y | C): the two label sentences Y_0, Y_1 scored after a context C (X Z, X, or
// few-shot demonstrations then X), under the full softmax. Its decision is the sign of the margin
// log p(Y_1 | C) − log p(Y_0 | C) (> 0: subjective); the labels share ", so it is", whose terms
// cancel there.

// log p(y | the row's tokens before `start`) from one row's logits (T, V): position start - 1 + j
// predicts y[j].
static double label_log_p(const float *row_logits, int start, const int *y, int y_len, int V) {
    double sum = 0;
    for (int j = 0; j < y_len; j++) {
        const float *lg = row_logits + (size_t)(start - 1 + j) * V;
        sum += lg[y[j]] - logits_normaliser(lg, NULL, V);
    }
    return sum;
}

// The M-step's (and SFT's) loss, TASKS.md's: L = mean over the n examples of
//   −log softmax(s_0, s_1)[label],  s_l = log p(Y_l | C Z),
// the two-way softmax over the full-sequence log-probabilities of the two label strings. Its
// gradient reaches the logits of the label tokens only: dL/ds_l = (σ_l − [l = label]) / n and
// ds_l / dlogit_v = [v = y_t] − p_v at each position t that predicts a token y_t of Y_l.
float subj_pair_loss(GPT *model, const ScoredText *rows, const int *const y[2], const int y_len[2], const int *label, int n,
                     float *scores, int backward) {
    int V = gpt_config(model).vocab_size, T = 1;
    for (int i = 0; i < n; i++) {
        int len = rows[i].ctx_len + rows[i].z_len + (y_len[0] > y_len[1] ? y_len[0] : y_len[1]);
        if (len > T) T = len;
    }
    int *inputs = gfn_calloc((size_t)2 * n * T, sizeof(int));   // (2n, T) row 2i + l = C_i Z_i Y_l, right-padded
    for (int i = 0; i < n; i++)
        for (int l = 0; l < 2; l++) {
            int *row = inputs + (size_t)(2 * i + l) * T;
            memcpy(row, rows[i].ctx, sizeof(int) * (size_t)rows[i].ctx_len);
            if (rows[i].z_len) memcpy(row + rows[i].ctx_len, rows[i].z, sizeof(int) * (size_t)rows[i].z_len);   // z: NULL when empty
            memcpy(row + rows[i].ctx_len + rows[i].z_len, y[l], sizeof(int) * (size_t)y_len[l]);
        }
    float *logits = gpt_forward(model, inputs, 2 * n, T);   // (2n, T, V)
    double *s = gfn_malloc(sizeof(double) * 2 * (size_t)n), loss = 0;   // (n, 2)
    for (int i = 0; i < n; i++)
        for (int l = 0; l < 2; l++) {
            s[2 * i + l] = label_log_p(logits + (size_t)(2 * i + l) * T * V, rows[i].ctx_len + rows[i].z_len, y[l], y_len[l], V);
            if (scores) scores[2 * i + l] = (float)s[2 * i + l];
        }
    for (int i = 0; label && i < n; i++) {
        double top = s[2 * i] > s[2 * i + 1] ? s[2 * i] : s[2 * i + 1];
        loss += (top + log(exp(s[2 * i] - top) + exp(s[2 * i + 1] - top)) - s[2 * i + label[i]]) / n;
    }
    if (label && backward) {   // dlogits in place of the logits
        for (int i = 0; i < n; i++) {
            double sigma1 = 1 / (1 + exp(s[2 * i] - s[2 * i + 1]));
            int start = rows[i].ctx_len + rows[i].z_len;
            for (int l = 0; l < 2; l++) {
                double g = ((l ? sigma1 : 1 - sigma1) - (label[i] == l)) / n;   // dL/ds_l
                float *row = logits + (size_t)(2 * i + l) * T * V;
                for (int t = 0; t < T; t++) {
                    float *lg = row + (size_t)t * V;
                    int j = t - (start - 1);   // the Y token this position predicts
                    if (j < 0 || j >= y_len[l]) { memset(lg, 0, sizeof(float) * (size_t)V); continue; }
                    double norm = logits_normaliser(lg, NULL, V);
                    for (int v = 0; v < V; v++) lg[v] = (float)(-g * exp(lg[v] - norm));
                    lg[y[l][j]] += (float)g;
                }
            }
        }
        gpt_backward(model, logits);
    }
    free(inputs); free(s);
    return (float)loss;
}

// The n trajectories' queries with their Z as rows (X, Z) of the classifier.
static void subj_examples(Task *task, Traj *const *t, int n, ScoredText *rows, int *label) {
    SubjState *st = task->state;
    for (int i = 0; i < n; i++) {
        int q = t[i]->query;
        rows[i] = (ScoredText){ st->x[q], st->x_len[q], t[i]->tokens, t[i]->ntok, NULL, 0 };
        if (label) label[i] = st->label[q];
    }
}

void subj_fit_classifier(Task *task, GPT *model, Traj *const *examples, int n, int steps, uint64_t seed) {
    SubjState *st = task->state;
    static const int all_modules[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    LoRA *lora = gpt_lora_attach(model, SUBJ_FIT_RANK, SUBJ_FIT_ALPHA, 0, all_modules, seed);
    AdamW opt;
    adamw_init(&opt, lora->num_parameters, SUBJ_FIT_LR, 0.9f, 0.999f, 1e-8f, 0);
    Rng rng;
    rng_seed(&rng, seed * 6364136223846793005ull + 11);
    Traj *batch[SUBJ_FIT_BATCH];
    ScoredText rows[SUBJ_FIT_BATCH];
    int label[SUBJ_FIT_BATCH];
    const int *y[2] = { st->y[0], st->y[1] };
    for (int step = 0; step < steps; step++) {
        for (int b = 0; b < SUBJ_FIT_BATCH; b++) batch[b] = examples[rng_below(&rng, n)];
        subj_examples(task, batch, SUBJ_FIT_BATCH, rows, label);
        gpt_zero_grad(model);
        subj_pair_loss(model, rows, y, st->y_len, label, SUBJ_FIT_BATCH, NULL, 1);
        clip_grad_norm(lora->grad_memory, lora->num_parameters, 1.0f);
        adamw_update(&opt, lora->memory, lora->grad_memory, lr_schedule(step, SUBJ_FIT_WARMUP, steps, SUBJ_FIT_LR, 0));
    }
    adamw_free(&opt);
    gpt_lora_merge(model);   // prediction runs the merged weights
}

void subj_margins(Task *task, GPT *model, Traj *const *z, int count, int k, float *margin) {
    SubjState *st = task->state;
    int V = gpt_config(model).vocab_size, longest_y = st->y_len[0] > st->y_len[1] ? st->y_len[0] : st->y_len[1];
    int T = 1 + task->max_len + longest_y;
    int *inputs = gfn_malloc(sizeof(int) * (size_t)2 * k * T);   // (2k, T) row 2j + l = x_last Z_j Y_l
    for (int q = 0; q < count; q++) {
        Traj *const *zq = z + (size_t)q * k;
        const int *x = st->x[zq[0]->query];
        int x_len = st->x_len[zq[0]->query];
        for (int j = 1; j < k; j++)
            if (zq[j]->query != zq[0]->query) { fprintf(stderr, "gfn: subj_margins: row %d mixes queries\n", q); exit(1); }
        memset(inputs, 0, sizeof(int) * (size_t)2 * k * T);
        for (int j = 0; j < k; j++)
            for (int l = 0; l < 2; l++) {
                int *row = inputs + (size_t)(2 * j + l) * T;
                row[0] = x[x_len - 1];
                memcpy(row + 1, zq[j]->tokens, sizeof(int) * (size_t)zq[j]->ntok);
                memcpy(row + 1 + zq[j]->ntok, st->y[l], sizeof(int) * (size_t)st->y_len[l]);
            }
        // X but its last token runs once, shared by the 2k rows.
        const float *logits = gpt_forward_shared(model, x, x_len - 1, inputs, 2 * k, T);   // (2k, T, V)
        for (int j = 0; j < k; j++) {
            int start = 1 + zq[j]->ntok;
            margin[(size_t)q * k + j] = (float)(label_log_p(logits + (size_t)(2 * j + 1) * T * V, start, st->y[1], st->y_len[1], V) -
                                                label_log_p(logits + (size_t)(2 * j) * T * V, start, st->y[0], st->y_len[0], V));
        }
    }
    free(inputs);
}

int subj_vote(const float *margin, int k) {
    int subjective = 0;
    double sum = 0;
    for (int j = 0; j < k; j++) { subjective += margin[j] > 0; sum += margin[j]; }
    return 2 * subjective == k ? sum > 0 : 2 * subjective > k;
}

// ----------------------------------------------------------------------------------------------
// Few-shot prompting: end-of-text, then demonstration blocks "X_d Y_d\n" (the labelled examples in
// a seed's order, as tokens: X without its end-of-text, the label sentence, a newline), then the
// test X. Each test X gets as many blocks as fit with it and the longer label in the model's
// context (maxT = 256 tokens); blocks are whole, in that fixed order, so every prompt's
// demonstrations are a prefix of the first one's and share one KV cache row.

int subj_fewshot_prompt(Task *task, int query, int *out, int cap, int *num_demos) {
    SubjState *st = task->state;
    int *x = st->x[query], x_len = st->x_len[query], demos = st->fewshot_demos[query];
    int len = st->fewshot_len[query] + x_len - 1;
    if (len > cap) { fprintf(stderr, "gfn: subj_fewshot_prompt: %d tokens, room for %d\n", len, cap); exit(1); }
    if (st->fewshot_len[query]) memcpy(out, st->demo_tokens, sizeof(int) * (size_t)st->fewshot_len[query]);
    memcpy(out + st->fewshot_len[query], x + 1, sizeof(int) * (size_t)(x_len - 1));
    if (num_demos) *num_demos = demos;
    return len;
}

// The demonstration blocks (seeded order) and each query's share of them; called by setup.
static void subj_fewshot_setup(Task *task, uint64_t seed) {
    SubjState *st = task->state;
    int N = task->num_train, maxT = gpt_config(task->base).max_seq_len, longest_y = st->y_len[0] > st->y_len[1] ? st->y_len[0] : st->y_len[1];
    int nl_len, *nl = text_encode(st->tok, "\n", 0, &nl_len);
    int *order = gfn_malloc(sizeof(int) * (size_t)N);
    for (int d = 0; d < N; d++) order[d] = d;
    Rng rng;
    rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + 5);
    for (int d = N - 1; d > 0; d--) { int e = rng_below(&rng, d + 1), tmp = order[d]; order[d] = order[e]; order[e] = tmp; }
    int *block_end = gfn_malloc(sizeof(int) * (size_t)(N + 1));   // (N + 1) length after d blocks
    st->demo_tokens = gfn_malloc(sizeof(int) * (size_t)(1 + N * (maxT + nl_len)));
    st->demo_tokens[0] = tokenizer_eot_id(st->tok);
    block_end[0] = 1;
    for (int d = 0; d < N; d++) {
        int q = order[d], *p = st->demo_tokens + block_end[d];
        memcpy(p, st->x[q] + 1, sizeof(int) * (size_t)(st->x_len[q] - 1));
        p += st->x_len[q] - 1;
        memcpy(p, st->y[st->label[q]], sizeof(int) * (size_t)st->y_len[st->label[q]]);
        p += st->y_len[st->label[q]];
        memcpy(p, nl, sizeof(int) * (size_t)nl_len);
        block_end[d + 1] = block_end[d] + st->x_len[q] - 1 + st->y_len[st->label[q]] + nl_len;
    }
    st->fewshot_demos = gfn_malloc(sizeof(int) * (size_t)st->num_queries);
    st->fewshot_len = gfn_malloc(sizeof(int) * (size_t)st->num_queries);
    for (int q = 0; q < st->num_queries; q++) {
        int d = 0;
        while (d < N && block_end[d + 1] + st->x_len[q] - 1 + longest_y <= maxT) d++;
        st->fewshot_demos[q] = d;
        st->fewshot_len[q] = block_end[d];
    }
    free(nl); free(order); free(block_end);
}

// margin[q] for the few-shot prompts of queries first..first+count-1: the longest demonstration
// prefix runs once into a KV cache; each test X's two rows X Y_l continue it from its own prompt's
// length (one forward per X: padding to another X's length could run past the context).
void subj_fewshot_margins(Task *task, int first, int count, float *margin) {
    SubjState *st = task->state;
    GPT *base = task->base;
    int V = gpt_config(base).vocab_size, maxT = gpt_config(base).max_seq_len, longest = 0;
    int longest_y = st->y_len[0] > st->y_len[1] ? st->y_len[0] : st->y_len[1];
    for (int q = first; q < first + count; q++) if (st->fewshot_len[q] > longest) longest = st->fewshot_len[q];
    KVCache *cache = kv_cache_new(base, 1, maxT);
    gpt_prefill(base, cache, st->demo_tokens, 1, longest);
    int *inputs = gfn_malloc(sizeof(int) * (size_t)2 * maxT), rows[2] = { 0, 0 };   // (2, T) X Y_l after the demonstrations
    for (int q = first; q < first + count; q++) {
        int start = st->x_len[q] - 1, T = start + longest_y, lens[2] = { st->fewshot_len[q], st->fewshot_len[q] };
        memset(inputs, 0, sizeof(int) * (size_t)2 * T);
        for (int l = 0; l < 2; l++) {
            memcpy(inputs + (size_t)l * T, st->x[q] + 1, sizeof(int) * (size_t)start);
            memcpy(inputs + (size_t)l * T + start, st->y[l], sizeof(int) * (size_t)st->y_len[l]);
        }
        const float *logits = gpt_forward_cached(base, cache, rows, lens, inputs, 2, T, NULL);   // (2, T, V)
        margin[q - first] = (float)(label_log_p(logits + (size_t)T * V, start, st->y[1], st->y_len[1], V) -
                                    label_log_p(logits, start, st->y[0], st->y_len[0], V));
    }
    free(inputs);
    kv_cache_free(cache);
}

// ----------------------------------------------------------------------------------------------
// Evaluation (the paper's Table 3) on the first eval_n test rows (all 2000 by default). Methods,
// each printed as "method NAME/N acc A train_acc B" (N the labelled examples; train_acc on them):
//   e-vote, e-greedy    E alone: 10 Z from q(Z | X) at T = 1 (the greedy Z), the base as p(Y | X Z),
//                       majority vote (a tie goes to the larger summed margin)
//   em-vote, em-greedy  E + M: the same Z, the M-step's p(Y | X Z) — a fresh LoRA on the base fitted
//                       (subj_fit_classifier) on SUBJ_M_SAMPLES = 10 Z per labelled example sampled
//                       from the trained q(Z | X, Y) at T = 1. One E-step (the training run) then one
//                       M-step: TASKS.md does not say that they alternate.
//   zero-shot           (--baselines) the base after X alone
//   few-shot            (--baselines) the base after the few-shot prompt (the number of
//                       demonstrations that fit is printed)
//   sft                 (--baselines) p(Y | X) fitted the same way as the M-step on the N labelled X
//                       with no Z (same loss, steps, batch, optimizer)
// The E-alone and E + M evaluations read the same sampled Z.

static Traj **subj_sample(Task *task, GPT *policy, int first, int count, int k, float temperature, uint64_t seed) {
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)count * k);   // (count, k)
    int *queries = gfn_malloc(sizeof(int) * (size_t)k);
    SamplerConfig sc = { temperature, 0, 1.0f, 0 };
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < count * k; i++) t[i] = traj_new(task->max_len);
    for (int q = 0; q < count; q++) {   // one X per batch: the sampler runs all of X once
        for (int j = 0; j < k; j++) queries[j] = first + q;
        sample_trajectories(policy, task, queries, t + (size_t)q * k, k, &sc, &rng);
    }
    free(queries);
    return t;
}

static double subj_accuracy(Task *task, const float *margin, int first, int count, int k, int offset, int stride, int vote) {
    int right = 0;
    for (int q = 0; q < count; q++) {
        const float *m = margin + (size_t)q * stride + offset;
        right += (vote ? subj_vote(m, k) : m[0] > 0) == subj_label(task, first + q);
    }
    return count ? (double)right / count : 0;
}

// Rows (count, k + 1) of queries first..: k sampled Z and the greedy one.
static Traj **subj_z_rows(Task *task, GPT *policy, int first, int count, int k, uint64_t seed) {
    Traj **sampled = subj_sample(task, policy, first, count, k, 1.0f, seed);
    Traj **greedy = subj_sample(task, policy, first, count, 1, 0.0f, 1);
    Traj **z = gfn_malloc(sizeof(Traj *) * (size_t)count * (k + 1));
    for (int q = 0; q < count; q++) {
        memcpy(z + (size_t)q * (k + 1), sampled + (size_t)q * k, sizeof(Traj *) * (size_t)k);
        z[(size_t)q * (k + 1) + k] = greedy[q];
    }
    free(sampled); free(greedy);
    return z;
}

static void subj_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    SubjState *st = task->state;
    int N = task->num_train, count = st->eval_n, first = N, k = SUBJ_VOTES, w = k + 1;
    fprintf(out, "labelled %d\ntest_rows %d\n", N, count);
    if (st->baselines != 2) {
        double t0 = gfn_wall_seconds(), c0 = (double)clock() / CLOCKS_PER_SEC;   // wall and CPU (all threads) seconds
        Traj **z = subj_z_rows(task, policy, first, count, k, seed * 7919 + 37);       // (count, w)
        Traj **zt = subj_z_rows(task, policy, 0, N, k, seed * 7919 + 41);              // (N, w) labelled X
        float *margin = gfn_malloc(sizeof(float) * (size_t)count * w), *mt = gfn_malloc(sizeof(float) * (size_t)N * w);
        subj_margins(task, task->base, z, count, w, margin);
        subj_margins(task, task->base, zt, N, w, mt);
        fprintf(out, "method e-vote/%d acc %.4f train_acc %.4f rows %d\n", N, subj_accuracy(task, margin, first, count, k, 0, w, 1),
                subj_accuracy(task, mt, 0, N, k, 0, w, 1), count);
        fprintf(out, "method e-greedy/%d acc %.4f train_acc %.4f rows %d\n", N, subj_accuracy(task, margin, first, count, 1, k, w, 0),
                subj_accuracy(task, mt, 0, N, 1, k, w, 0), count);
        double t1 = gfn_wall_seconds(), c1 = (double)clock() / CLOCKS_PER_SEC;
        // The M-step on Z sampled from the trained q(Z | X, Y) for the labelled X.
        Traj **pool = subj_sample(task, policy, 0, N, SUBJ_M_SAMPLES, 1.0f, seed * 7919 + 43);
        GPT *m_step = copy_model(task->base);
        subj_fit_classifier(task, m_step, pool, N * SUBJ_M_SAMPLES, SUBJ_FIT_STEPS, seed * 7919 + 47);
        double t2 = gfn_wall_seconds(), c2 = (double)clock() / CLOCKS_PER_SEC;
        subj_margins(task, m_step, z, count, w, margin);
        subj_margins(task, m_step, zt, N, w, mt);
        fprintf(out, "method em-vote/%d acc %.4f train_acc %.4f rows %d\n", N, subj_accuracy(task, margin, first, count, k, 0, w, 1),
                subj_accuracy(task, mt, 0, N, k, 0, w, 1), count);
        fprintf(out, "method em-greedy/%d acc %.4f train_acc %.4f rows %d\n", N, subj_accuracy(task, margin, first, count, 1, k, w, 0),
                subj_accuracy(task, mt, 0, N, 1, k, w, 0), count);
        fprintf(out, "seconds e_eval %.1f m_step %.1f em_eval %.1f\ncpu_seconds e_eval %.1f m_step %.1f em_eval %.1f\n", t1 - t0, t2 - t1,
                gfn_wall_seconds() - t2, c1 - c0, c2 - c1, (double)clock() / CLOCKS_PER_SEC - c2);
        char text[256];
        for (int q = 0; q < 3 && q < count; q++) {
            text_of_tokens(st->tok, z[(size_t)q * w]->tokens, z[(size_t)q * w]->ntok, text, sizeof text);
            for (char *c = text; *c; c++) if ((unsigned char)*c < ' ') *c = ' ';   // a sampled newline must not split the result line
            fprintf(out, "sample row %d (label %s): Z = \"%s\", then the M-step says %s\n", q, st->label[first + q] ? "subjective" : "objective",
                    text, margin[(size_t)q * w] > 0 ? "subjective" : "objective");
        }
        gpt_free(m_step);
        text_free_trajectories(pool, N * SUBJ_M_SAMPLES);
        text_free_trajectories(z, count * w);
        text_free_trajectories(zt, N * w);
        free(margin); free(mt);
    }
    if (st->baselines) {
        double t0 = gfn_wall_seconds(), c0 = (double)clock() / CLOCKS_PER_SEC;
        Traj **none = gfn_malloc(sizeof(Traj *) * (size_t)(count + N));   // no Z: rows X alone (labelled X last)
        for (int i = 0; i < count + N; i++) { none[i] = traj_new(task->max_len); none[i]->query = i < count ? first + i : i - count; }
        float *margin = gfn_malloc(sizeof(float) * (size_t)(count + N));
        subj_margins(task, task->base, none, count + N, 1, margin);
        fprintf(out, "method zero-shot/%d acc %.4f train_acc %.4f rows %d\n", N, subj_accuracy(task, margin, first, count, 1, 0, 1, 0),
                subj_accuracy(task, margin + count, 0, N, 1, 0, 1, 0), count);
        subj_fewshot_margins(task, first, count, margin);
        double demos = 0;
        int lo = N, hi = 0;
        for (int q = first; q < first + count; q++) {
            demos += st->fewshot_demos[q];
            if (st->fewshot_demos[q] < lo) lo = st->fewshot_demos[q];
            if (st->fewshot_demos[q] > hi) hi = st->fewshot_demos[q];
        }
        fprintf(out, "few-shot: %.2f demonstrations on average fit in front of a test X (min %d, max %d) in %d tokens\n",
                demos / count, lo, hi, gpt_config(task->base).max_seq_len);
        fprintf(out, "method few-shot/%d acc %.4f demos %.2f demos_min %d demos_max %d rows %d\n", N, subj_accuracy(task, margin, first, count, 1, 0, 1, 0),
                demos / count, lo, hi, count);
        double t1 = gfn_wall_seconds(), c1 = (double)clock() / CLOCKS_PER_SEC;
        GPT *sft = copy_model(task->base);
        subj_fit_classifier(task, sft, none + count, N, SUBJ_FIT_STEPS, seed * 7919 + 53);
        subj_margins(task, sft, none, count + N, 1, margin);
        fprintf(out, "method sft/%d acc %.4f train_acc %.4f rows %d\n", N, subj_accuracy(task, margin, first, count, 1, 0, 1, 0),
                subj_accuracy(task, margin + count, 0, N, 1, 0, 1, 0), count);
        fprintf(out, "seconds prompting %.1f sft %.1f\ncpu_seconds prompting %.1f sft %.1f\n", t1 - t0, gfn_wall_seconds() - t1, c1 - c0,
                (double)clock() / CLOCKS_PER_SEC - c1);
        gpt_free(sft);
        text_free_trajectories(none, count + N);
        free(margin);
    }
}

Task task_subj = {
    .name = "subj",
    .help = "subjectivity (paper §4.3): E-step Z = a rationale, R = p(Z Y | X), -50 if the base then prefers the wrong label; M-step and 10-Z vote in the evaluation; --labelled 10|20|50, --baselines 1|2 zero-/few-shot, SFT",
    .setup = subj_setup,
    .cleanup = subj_cleanup,
    .prompt = subj_prompt,
    .log_reward = subj_log_reward,
    .concurrent_reward = 1,   // the reward writes only its scorer and the base's activations; prompt() only reads
    .evaluate = subj_evaluate,
    .render = subj_render,
};

// ----------------------------------------------------------------------------------------------
// The report (`gfn report subj DIR OUT`): Table 3's layout (accuracy against N, mean ± std over
// seeds), the paper's numbers beside ours, the claim judged on our numbers; OUT.svg plots the
// accuracy against N per method.

enum { SK_ACC, SK_TRAIN_ACC, SK_DEMOS, SK_ROWS, SK_NUM };
static const char *const subj_keys[SK_NUM] = { "acc", "train_acc", "demos", "rows" };
static const int subj_n[3] = { 10, 20, 50 };
static const char *const subj_methods[] = { "zero-shot", "few-shot", "sft", "e-greedy", "e-vote", "em-greedy", "em-vote" };
enum { SUBJ_NUM_METHODS = sizeof subj_methods / sizeof *subj_methods };

// The paper's (GPT-J 6B, approximate, secondary source; TASKS.md): at N = 10 only.
static const char *subj_paper(const char *method) {
    if (!strcmp(method, "sft")) return "64.3";
    if (!strcmp(method, "em-vote")) return "71.4 (GFlowNet)";
    return "—";
}

static const ReportRow *subj_row(const TextResults *res, const char *method, int N) {
    char name[48];
    snprintf(name, sizeof name, "%s/%d", method, N);
    return text_results_row(res, name);
}

int subj_report(const char *dir, const char *md_path, const char *svg_path, GfnError *err) {
    TextResults *res = gfn_calloc(1, sizeof(TextResults));
    if (text_results_read(dir, subj_keys, SK_NUM, res, err)) { free(res); return 1; }
    Text md = { NULL, 0, 0 };
    int lo = 1 << 30, hi = 0;   // the evaluated test rows (the first ones of test.jsonl) over every row of the table
    for (int m = 0; m < res->num_rows; m++)
        for (int i = 0; i < res->rows[m].count; i++) {
            double r = res->rows[m].value[SK_ROWS][i];
            if (r == r) { if (r < lo) lo = (int)r; if (r > hi) hi = (int)r; }
        }
    text_appendf(&md, "# Subjectivity with a latent rationale (paper §4.3, Table 3)\n\n");
    if (hi == 0) text_appendf(&md, "Test accuracy (%%) on the evaluated rows of subj/test.jsonl");
    else if (lo == hi && lo == SUBJ_TEST) text_appendf(&md, "Test accuracy (%%) on all %d rows of subj/test.jsonl", lo);
    else if (lo == hi) text_appendf(&md, "Test accuracy (%%) on the first %d rows of subj/test.jsonl", lo);
    else text_appendf(&md, "Test accuracy (%%) on the first %d to %d rows (they differ between runs) of subj/test.jsonl", lo, hi);
    text_appendf(&md,     " (majority class: 51.65 %% of all 2000, 53.9 %% of the first 1000)\n"
                      "against the number N of labelled examples, mean ± std over seeds (runs in brackets). One template for every\n"
                      "method. zero-shot / few-shot: the base prefers which label after X (after as many labelled examples as fit the\n"
                      "context); sft: p(Y | X) fitted on the N examples; e-*: E-step alone (Z from q(Z | X), the base as p(Y | X Z));\n"
                      "em-*: E + M (the same Z, the M-step's p(Y | X Z)); *-vote: majority vote of 10 sampled Z (model averaging),\n"
                      "*-greedy: the greedy Z. The paper's numbers (GPT-J 6B, N = 10, approximate) beside ours.\n\n");
    static const char *const columns[] = { "method", "N = 10", "N = 20", "N = 50", "paper, N = 10" };
    md_table_header(&md, columns, 5);
    double mean[SUBJ_NUM_METHODS][3], std[SUBJ_NUM_METHODS][3];
    int runs[SUBJ_NUM_METHODS][3];
    for (int m = 0; m < SUBJ_NUM_METHODS; m++) {
        text_appendf(&md, "| %s |", subj_methods[m]);
        for (int c = 0; c < 3; c++) {
            const ReportRow *row = subj_row(res, subj_methods[m], subj_n[c]);
            runs[m][c] = row ? row->count : 0;
            mean[m][c] = std[m][c] = NAN;
            if (row) report_row_stat(row, SK_ACC, &mean[m][c], &std[m][c]);
            if (row) text_appendf(&md, " %.1f ± %.1f (%d) |", 100 * mean[m][c], 100 * std[m][c], row->count);
            else text_appendf(&md, " — |");
        }
        text_appendf(&md, " %s |\n", subj_paper(subj_methods[m]));
    }
    text_appendf(&md, "\nFew-shot demonstrations that fit in front of a test X (mean over the evaluated rows, then over seeds):");
    for (int c = 0; c < 3; c++) {
        const ReportRow *row = subj_row(res, "few-shot", subj_n[c]);
        double d, sd;
        if (row) { report_row_stat(row, SK_DEMOS, &d, &sd); text_appendf(&md, " N = %d: %.2f;", subj_n[c], d); }
    }
    text_appendf(&md, "\n\nAccuracy on the N labelled examples themselves (train_acc, mean over seeds):");
    for (int m = 0; m < SUBJ_NUM_METHODS; m++) {
        if (!strcmp(subj_methods[m], "few-shot")) continue;
        text_appendf(&md, " %s", subj_methods[m]);
        for (int c = 0; c < 3; c++) {
            const ReportRow *row = subj_row(res, subj_methods[m], subj_n[c]);
            double a, sd;
            if (row) { report_row_stat(row, SK_TRAIN_ACC, &a, &sd); text_appendf(&md, " %.0f", 100 * a); }
            else text_appendf(&md, " —");
        }
        text_appendf(&md, ";");
    }
    // The claim: at N = 10 and 20 GFlowNet with model averaging (em-vote) beats SFT by more than two
    // standard errors of the difference of the seed means; E + M >= E alone (the votes) at every N.
    enum { SFT = 2, E_VOTE = 4, EM_VOTE = 6 };
    int met = 1;
    text_appendf(&md, "\n\nThe claim:");
    for (int c = 0; c < 2; c++) {
        double diff = mean[EM_VOTE][c] - mean[SFT][c];
        double se = runs[EM_VOTE][c] && runs[SFT][c] ? sqrt(std[EM_VOTE][c] * std[EM_VOTE][c] / runs[EM_VOTE][c] + std[SFT][c] * std[SFT][c] / runs[SFT][c]) : NAN;
        int seeds = runs[EM_VOTE][c] > 1 && runs[SFT][c] > 1, ok = seeds && diff > 2 * se;
        met &= ok;
        text_appendf(&md, " N = %d: em-vote − sft = %.1f points, 2 standard errors %.1f (%s);", subj_n[c], 100 * diff, 200 * se,
                     ok ? "beats" : seeds ? "does not beat" : "fewer than 2 seeds: not judged");
    }
    for (int c = 0; c < 3; c++) {
        if (!runs[EM_VOTE][c] || !runs[E_VOTE][c]) { met = 0; text_appendf(&md, " N = %d: no E / E + M rows;", subj_n[c]); continue; }
        int ok = mean[EM_VOTE][c] >= mean[E_VOTE][c];
        met &= ok;
        text_appendf(&md, " N = %d: E + M %.1f %s E alone %.1f;", subj_n[c], 100 * mean[EM_VOTE][c], ok ? ">=" : "<", 100 * mean[E_VOTE][c]);
    }
    text_appendf(&md, " at N = 10 and 20 GFlowNet with model averaging beats SFT by more than two standard errors, and E + M >= E alone — **%s**.\n",
                 met ? "met" : "not met");
    text_appendf(&md, "\n![accuracy against N](subj.svg)\n");
    int status = text_report_tail(&md, dir, res, err);
    if (!status) status = write_file_atomic(md_path, md.s, md.len, err);
    if (!status) {   // the plot: the methods with a number at every N
        static const char *const x_labels[3] = { "10", "20", "50" };
        LinePlot plot = { 760, 420, 60, 160, 20, 50, 3, x_labels, "labelled examples N", "test accuracy (%)" };
        PlotSeries series[SUBJ_NUM_METHODS];
        int num = 0;
        for (int m = 0; m < SUBJ_NUM_METHODS; m++)
            if (runs[m][0] && runs[m][1] && runs[m][2]) series[num++] = (PlotSeries){ subj_methods[m], m, mean[m], std[m] };
        Text svg = { NULL, 0, 0 };
        svg_line_plot(&svg, &plot, series, num);
        status = write_file_atomic(svg_path, svg.s, svg.len, err);
        free(svg.s);
    }
    free(md.s); free(res);
    return status;
}
