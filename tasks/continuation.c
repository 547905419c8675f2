// tasks/continuation.c — next-sentence continuation (the paper's §4.1, Figure 3).
//
//   X = one of the first 1000 OpenWebText prompts (0–949 train, 950–999 validation), its
//       trailing space stripped (the official prompts keep it, so every sampled sentence began
//       without its space: defect 1), after an end-of-text token (our base model's corpus starts
//       every document there);
//   Z = 1–30 tokens of one sentence, ended by ⊤ = the "." token (forced at 30 tokens);
//   log R(z_≤i ⊤) = log p_base(z_1..z_i "." | X), tempered by the training loop's annealed T.
// Tokens that would end or break a sentence inside Z — any token whose bytes hold ".", "!", "?",
// a newline, a double quote, and end-of-text — are disallowed everywhere: in sampling, in log q
// and in log R, whose softmax is renormalised over the allowed tokens (⊤ among them). The
// untempered final log R is therefore the evaluation's log P = log p(Z "." | X) over that set.
// Every prefix's reward comes from one forward of X Z per trajectory (log_p_every_prefix).
#include "../gfn.h"

#include <stdlib.h>
#include <string.h>

enum { CONT_PROMPTS = 1000, CONT_TRAIN = 950, CONT_MAX_LEN = 30, CONT_EVAL_SAMPLES = 8 };
static const char cont_banned[] = ".!?\n\r\"";

typedef struct {
    Tokenizer *tok;
    int **x, *x_len;        // (CONT_PROMPTS) end-of-text + the prompt
    int eval_n;             // validation prompts evaluated
    PrefixScorer scorer;
} ContState;

static const int *cont_prompt(Task *task, int query, int *len) {
    ContState *st = task->state;
    *len = st->x_len[query];
    return st->x[query];
}

static void cont_rows(Task *task, Traj *const *t, int n, ScoredText *rows) {
    ContState *st = task->state;
    for (int r = 0; r < n; r++)
        rows[r] = (ScoredText){ st->x[t[r]->query], st->x_len[t[r]->query], t[r]->tokens, t[r]->ntok, &task->terminator, 1 };
}

static void cont_log_reward(Task *task, Traj *const *t, int n) {
    ContState *st = task->state;
    ScoredText *rows = gfn_malloc(sizeof(ScoredText) * (size_t)n);
    cont_rows(task, t, n, rows);
    text_log_reward(task->base, &st->scorer, rows, t, n, task->allowed);
    free(rows);
}

void continuation_log_p(Task *task, Traj *const *t, int n, float *out) {
    ScoredText *rows = gfn_malloc(sizeof(ScoredText) * (size_t)n);
    cont_rows(task, t, n, rows);
    log_p_whole(task->base, rows, n, task->allowed, out);
    free(rows);
}

static void cont_cleanup(Task *task);

static int cont_setup(Task *task, const TaskOptions *opt, GfnError *err) {
    ContState *st = gfn_calloc(1, sizeof(ContState));
    task->state = st;
    if (text_task_load(task, opt, &st->tok, err)) { cont_cleanup(task); return 1; }
    const char *dir = text_task_data_dir(opt, "continuation", err);
    if (!dir) { cont_cleanup(task); return 1; }
    char path[4096];
    snprintf(path, sizeof path, "%s/openwebtext/prompts.txt", dir);
    size_t len;
    char *text = (char *)read_file(path, &len, err);
    if (!text) { cont_cleanup(task); return 1; }
    st->x = gfn_calloc(CONT_PROMPTS, sizeof(int *));
    st->x_len = gfn_calloc(CONT_PROMPTS, sizeof(int));
    int maxT = gpt_config(task->base).max_seq_len, q = 0, bad = 0;
    for (size_t pos = 0; q < CONT_PROMPTS && pos < len; q++) {
        char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        while (n > 0 && line[n - 1] == ' ') n--;   // defect 1: the trailing space goes
        line[n] = 0;
        if (n == 0) { gfn_error_set(err, "%s: line %d is empty", path, q + 1); bad = 1; break; }
        st->x[q] = text_encode(st->tok, line, 1, &st->x_len[q]);
        if (st->x_len[q] + CONT_MAX_LEN + 1 > maxT) {
            gfn_error_set(err, "%s: line %d: %d tokens leave no room for a %d-token sentence in the model's %d", path, q + 1,
                          st->x_len[q], CONT_MAX_LEN, maxT);
            bad = 1;
            break;
        }
    }
    free(text);
    if (q < CONT_PROMPTS && !bad) gfn_error_set(err, "%s: %d prompts, want at least %d", path, q, CONT_PROMPTS);
    if (q < CONT_PROMPTS) { cont_cleanup(task); return 1; }
    task->num_train = CONT_TRAIN;
    task->num_test = CONT_PROMPTS - CONT_TRAIN;
    int n, *dot = text_encode(st->tok, ".", 0, &n);
    task->terminator = dot[0];
    free(dot);
    task->allowed = text_allowed_mask(st->tok, gpt_config(task->base).vocab_size, cont_banned, task->terminator);
    task->min_len = 1;
    task->max_len = CONT_MAX_LEN;
    st->eval_n = opt->eval_n > 0 && opt->eval_n < task->num_test ? opt->eval_n : task->num_test;
    return 0;
}

static void cont_cleanup(Task *task) {
    ContState *st = task->state;
    if (st) {
        for (int q = 0; st->x && q < CONT_PROMPTS; q++) free(st->x[q]);
        free(st->x); free(st->x_len);
        prefix_scorer_free(&st->scorer);
        if (st->tok) tokenizer_free(st->tok);
        free(st);
    }
    task->state = NULL;
    text_task_release(task);
}

static void cont_render(Task *task, const Traj *t, char *buf, size_t cap) {
    ContState *st = task->state;
    text_of_tokens(st->tok, t->tokens, t->ntok, buf, cap);
}

// What needs no text metric: 8 samples at T = 1 per validation prompt, log P = log p(Z "." | X)
// under the base, its mean and max over the 8 averaged over prompts, and a few samples.
static void cont_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    ContState *st = task->state;
    int k = CONT_EVAL_SAMPLES, count = st->eval_n;
    SamplerConfig sc = { 1.0f, 0, 1.0f };
    Traj **t = text_sample_queries(task, policy, task->num_train, count, k, &sc, seed * 7919 + 29);
    float *logp = gfn_malloc(sizeof(float) * (size_t)count * k);   // (count, k)
    for (int i = 0; i < count * k; i += 64) continuation_log_p(task, t + i, count * k - i < 64 ? count * k - i : 64, logp + i);
    double mean, max, tokens = 0;
    per_query_mean_max(logp, count, k, &mean, &max);
    for (int i = 0; i < count * k; i++) tokens += t[i]->ntok;
    fprintf(out, "prompts %d\nsamples_per_prompt %d\nlogp_mean %.4f\nlogp_max %.4f\nmean_tokens %.2f\n", count, k, mean, max,
            tokens / (count * k));
    char prompt[2048], z[512];
    for (int q = 0; q < 3 && q < count; q++) {
        text_of_tokens(st->tok, st->x[task->num_train + q] + 1, st->x_len[task->num_train + q] - 1, prompt, sizeof prompt);
        text_of_tokens(st->tok, t[q * k]->tokens, t[q * k]->ntok, z, sizeof z);
        fprintf(out, "sample %s ||| %s. (log P %.2f)\n", prompt, z, logp[q * k]);
    }
    free(logp);
    text_free_trajectories(t, count * k);
}

Task task_continuation = {
    .name = "continuation",
    .help = "next-sentence continuation (paper §4.1): Z = a sentence ended by \".\", R = p(Z \".\" | X)",
    .setup = cont_setup,
    .cleanup = cont_cleanup,
    .prompt = cont_prompt,
    .log_reward = cont_log_reward,
    .evaluate = cont_evaluate,
    .render = cont_render,
};
