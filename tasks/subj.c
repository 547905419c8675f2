// tasks/subj.c — subjectivity classification with a latent rationale (the paper's §4.3, Table 3):
// the E-step. One template for every method (the official baselines used another: defect 14):
//   X = end-of-text, "Classify this movie review as objective or subjective: \"{text}\" This review is"
//   Z = 1–5 tokens, ended by ⊤ = end-of-text (forced at 5)
//   Y = ", so it is objective." or ", so it is subjective."
//   log R(z_≤i ⊤) = log p_base(z_1..z_i Y | X) − 50 · [p_base(Y' | X z_≤i) > p_base(Y | X z_≤i)]
// with Y the example's label and Y' the other one: a rationale after which the base prefers the
// wrong label is penalised. The policy q(Z | X) sees X only: trained on labelled X (the label
// enters through R, so it learns q(Z | X, Y) for those), and sampled for unlabelled X at test
// time. Data: subj/train.{10,20,50}.jsonl (--labelled N, the N labelled examples, queries
// 0..N-1) and all 2000 rows of subj/test.jsonl (queries N..N+1999).
// Evaluation here (no M-step yet): for each test X, 10 Z from q(Z | X) at T = 1, the label the
// base prefers after X Z for each, the majority vote; the same with the greedy Z, and with no Z.
#include "../gfn.h"

#include <stdlib.h>
#include <string.h>

enum { SUBJ_MAX_LEN = 5, SUBJ_TEST = 2000, SUBJ_VOTES = 10, SUBJ_DEFAULT_EVAL = 200 };
static const float subj_wrong_label_penalty = 50.0f;
static const char *const subj_labels[2] = { ", so it is objective.", ", so it is subjective." };

typedef struct {
    Tokenizer *tok;
    int num_queries;
    int *label;                 // (num_queries) 0 objective, 1 subjective
    int **x, *x_len;            // (num_queries) the template with the review
    int *y[2], y_len[2];        // the two label sentences
    int eval_n;
    PrefixScorer scorer;
} SubjState;

static const int *subj_prompt(Task *task, int query, int *len) {
    SubjState *st = task->state;
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
    st->eval_n = opt->eval_n > 0 && opt->eval_n < SUBJ_TEST ? opt->eval_n : SUBJ_DEFAULT_EVAL;
    return 0;
}

static void subj_cleanup(Task *task) {
    SubjState *st = task->state;
    if (st) {
        for (int q = 0; q < st->num_queries; q++) free(st->x[q]);
        free(st->x); free(st->x_len); free(st->label); free(st->y[0]); free(st->y[1]);
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

// Accuracy on the first eval_n test rows: the vote of 10 sampled Z, the greedy Z, and no Z (the
// zero-shot prompt, the base's preference after X alone).
static void subj_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    SubjState *st = task->state;
    int count = st->eval_n, first = task->num_train, k = SUBJ_VOTES;
    SamplerConfig sampled = { 1.0f, 0, 1.0f }, greedy = { 0.0f, 0, 1.0f };
    Traj **t = text_sample_queries(task, policy, first, count, k, &sampled, seed * 7919 + 37);
    Traj **g = text_sample_queries(task, policy, first, count, 1, &greedy, 1);
    int *pred = gfn_malloc(sizeof(int) * (size_t)count * k);   // (count, k)
    for (int i = 0; i < count * k; i += 64) subj_base_label(task, t + i, count * k - i < 64 ? count * k - i : 64, pred + i);
    int vote_ok = 0, greedy_ok = 0, zero_ok = 0, one;
    for (int q = 0; q < count; q++) {
        int subjective = 0;
        for (int j = 0; j < k; j++) subjective += pred[q * k + j];
        int label = st->label[first + q];
        vote_ok += (2 * subjective > k) == label;   // a tie votes objective
        subj_base_label(task, &g[q], 1, &one);
        greedy_ok += one == label;
        g[q]->ntok = g[q]->nact = 0;                // no Z at all
        subj_base_label(task, &g[q], 1, &one);
        zero_ok += one == label;
    }
    fprintf(out, "test_rows %d\nacc_vote %.4f\nacc_greedy %.4f\nacc_zero_shot %.4f\n", count, (double)vote_ok / count,
            (double)greedy_ok / count, (double)zero_ok / count);
    char z[256];
    for (int q = 0; q < 3 && q < count; q++) {
        text_of_tokens(st->tok, t[q * k]->tokens, t[q * k]->ntok, z, sizeof z);
        fprintf(out, "sample row %d (label %s): Z = \"%s\", base then says %s\n", q, st->label[first + q] ? "subjective" : "objective", z,
                pred[q * k] ? "subjective" : "objective");
    }
    free(pred);
    text_free_trajectories(t, count * k);
    text_free_trajectories(g, count);
}

Task task_subj = {
    .name = "subj",
    .help = "subjectivity, E-step (paper §4.3): Z = a rationale, R = p(Z Y | X), -50 if the base then prefers the wrong label; --labelled 10|20|50",
    .setup = subj_setup,
    .cleanup = subj_cleanup,
    .prompt = subj_prompt,
    .log_reward = subj_log_reward,
    .evaluate = subj_evaluate,
    .render = subj_render,
};
