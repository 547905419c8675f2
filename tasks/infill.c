// tasks/infill.c — story infilling (the paper's §4.2, Table 2).
//
// Stories: stories/roc_valid.json, one JSON array holding one story string per line; a story is
// split into sentences after ". ", "! " or "? " followed by an upper-case letter or a double
// quote, and only stories of exactly five sentences are kept: rows 100–999 train (884 stories),
// rows 0–99 are evaluated (99). X = s1 s2 s3, Y = s5, Z = the 4th sentence.
//   policy prompt:  end-of-text, "Beginning: {s1} {s2} {s3}\nEnding: {s5}\nMiddle:"
//   Z:              5–25 tokens, ended by ⊤ = "\n" (forced at 25)
//   log R(z_≤i ⊤) = log p_base(z_1..z_i " {s5}" | end-of-text "{s1} {s2} {s3}")
// Choices:
// - ⊤ is the newline token: the template writes one field per line, so "Middle: Z" ends where a
//   line does, a Z may end in "!" or "?" as true 4th sentences do (31 of the 983), and the true
//   s4 is a trajectory as it stands (its tokens, then ⊤) for SFT and for seeding the buffer. Z's
//   actions are every token but end-of-text and those holding a newline.
// - The reward scores the story as our base model's corpus writes it: after an end-of-text token,
//   sentences joined by one space. Z comes after "Middle:", so its first token carries the space
//   that separates it from s3; s5 keeps its own leading space (the official code glued s5 to Z:
//   defect 7). log p(end-of-text s1 s2 s3) is the same for every Z of a story and is left out,
//   as the arithmetic task leaves out its prompt's: it cancels in SubTB and only shifts log Z.
// - R depends on s5 after Z, so each prefix needs s5 scored after it: one forward of
//   "s1 s2 s3" Z per trajectory gives every prefix's Z part and s5's first token, then each
//   prefix decodes the rest of s5 from a copy of that forward's KV cache (log_p_every_prefix).
#include "../gfn.h"

#include <stdlib.h>
#include <string.h>

enum { INFILL_ROWS = 1000, INFILL_EVAL_ROWS = 100, INFILL_MIN_LEN = 5, INFILL_MAX_LEN = 25, INFILL_EVAL_SAMPLES = 25 };
static const char infill_banned[] = "\n\r";

typedef struct {
    Tokenizer *tok;
    int num_queries;            // train stories, then the evaluated ones
    char *(*sent)[5];           // (num_queries, 5) the sentences
    int **prompt, *prompt_len;  // (num_queries) the policy's template
    int **ctx, *ctx_len;        // (num_queries) end-of-text "s1 s2 s3"
    int **y, *y_len;            // (num_queries) " s5"
    Traj **gold;                // (num_queries) the true " s4" as a trajectory, NULL when it does not fit
    int num_gold;
    int eval_n;
    PrefixScorer scorer;
} InfillState;

// Splits a story into at most `max` sentences in place (NUL-terminating each); returns how many
// it has (counting past max).
static int split_sentences(char *story, char **out, int max) {
    int count = 0;
    char *start = story;
    for (char *p = story; *p; p++) {
        if ((p[0] == '.' || p[0] == '!' || p[0] == '?') && p[1] == ' ' && ((p[2] >= 'A' && p[2] <= 'Z') || p[2] == '"')) {
            if (count < max) out[count] = start;
            count++;
            p[1] = 0;
            start = p + 2;
            p++;
        }
    }
    if (count < max) out[count] = start;
    return count + 1;
}

static const int *infill_prompt(Task *task, int query, int *len) {
    InfillState *st = task->state;
    *len = st->prompt_len[query];
    return st->prompt[query];
}

void infill_reward_text(Task *task, int query, const int **ctx, int *ctx_len, const int **y, int *y_len) {
    InfillState *st = task->state;
    *ctx = st->ctx[query]; *ctx_len = st->ctx_len[query];
    *y = st->y[query]; *y_len = st->y_len[query];
}

const int *infill_true_middle(Task *task, int query, int *len) {
    InfillState *st = task->state;
    Traj *g = st->gold[query];
    *len = g ? g->ntok : 0;
    return g ? g->tokens : NULL;
}

static void infill_rows(Task *task, Traj *const *t, int n, ScoredText *rows) {
    InfillState *st = task->state;
    for (int r = 0; r < n; r++) {
        int q = t[r]->query;
        rows[r] = (ScoredText){ st->ctx[q], st->ctx_len[q], t[r]->tokens, t[r]->ntok, st->y[q], st->y_len[q] };
    }
}

static void infill_log_reward(Task *task, Traj *const *t, int n) {
    InfillState *st = task->state;
    ScoredText *rows = gfn_malloc(sizeof(ScoredText) * (size_t)n);
    infill_rows(task, t, n, rows);
    text_log_reward(task->base, &st->scorer, rows, t, n, NULL);
    free(rows);
}

void infill_log_p(Task *task, Traj *const *t, int n, float *out) {
    ScoredText *rows = gfn_malloc(sizeof(ScoredText) * (size_t)n);
    infill_rows(task, t, n, rows);
    log_p_whole(task->base, rows, n, NULL, out);
    free(rows);
}

static void infill_cleanup(Task *task);

// The stories of rows [lo, hi) that have exactly five sentences, appended to st.
static int infill_read(InfillState *st, Json **rows, int lo, int hi) {
    for (int r = lo; r < hi; r++) {
        char *story = NULL;
        size_t len = 0;
        for (Json *s = rows[r]->child; s; s = s->next) {   // one string per row; several are joined
            if (s->type != JSON_STRING) continue;
            story = realloc(story, len + s->len + 2);
            if (!story) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
            if (len) story[len++] = ' ';
            memcpy(story + len, s->string, s->len);
            len += s->len;
            story[len] = 0;
        }
        char *parts[5];
        if (!story || split_sentences(story, parts, 5) != 5) { free(story); continue; }
        int q = st->num_queries++;
        for (int k = 0; k < 5; k++) {
            st->sent[q][k] = gfn_malloc(strlen(parts[k]) + 1);
            strcpy(st->sent[q][k], parts[k]);
        }
        free(story);
    }
    return st->num_queries;
}

static int infill_setup(Task *task, const TaskOptions *opt, GfnError *err) {
    InfillState *st = gfn_calloc(1, sizeof(InfillState));
    task->state = st;
    if (text_task_load(task, opt, &st->tok, err)) { infill_cleanup(task); return 1; }
    const char *dir = text_task_data_dir(opt, "infill", err);
    if (!dir) { infill_cleanup(task); return 1; }
    char path[4096];
    snprintf(path, sizeof path, "%s/stories/roc_valid.json", dir);
    size_t len;
    char *text = (char *)read_file(path, &len, err);
    if (!text) { infill_cleanup(task); return 1; }
    Json *rows[INFILL_ROWS] = { NULL };
    int num_rows = 0, bad = 0;
    for (size_t pos = 0; num_rows < INFILL_ROWS && pos < len && !bad;) {
        char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        if (n == 0) continue;
        rows[num_rows] = json_parse(line, n, path, err);
        if (!rows[num_rows]) bad = 1;
        else if (rows[num_rows]->type != JSON_ARRAY) {
            gfn_error_set(err, "%s: row %d is not a JSON array of story strings", path, num_rows);
            bad = 1;
        }
        num_rows++;
    }
    free(text);
    if (!bad && num_rows < INFILL_ROWS) { gfn_error_set(err, "%s: %d stories, want at least %d", path, num_rows, INFILL_ROWS); bad = 1; }
    if (!bad) {
        st->sent = gfn_calloc(INFILL_ROWS, sizeof *st->sent);
        task->num_train = infill_read(st, rows, INFILL_EVAL_ROWS, INFILL_ROWS);
        task->num_test = infill_read(st, rows, 0, INFILL_EVAL_ROWS) - task->num_train;
    }
    for (int r = 0; r < num_rows; r++) json_free(rows[r]);
    if (bad) { infill_cleanup(task); return 1; }

    int n, *nl = text_encode(st->tok, "\n", 0, &n), V = gpt_config(task->base).vocab_size;
    task->terminator = nl[0];
    free(nl);
    if (n != 1) { gfn_error_set(err, "%s: \"\\n\" is not one token", opt->tokenizer_path); infill_cleanup(task); return 1; }
    task->allowed = text_allowed_mask(st->tok, V, infill_banned, task->terminator);
    task->min_len = INFILL_MIN_LEN;
    task->max_len = INFILL_MAX_LEN;
    int Q = st->num_queries, maxT = gpt_config(task->base).max_seq_len;
    st->prompt = gfn_calloc((size_t)Q, sizeof(int *)); st->prompt_len = gfn_calloc((size_t)Q, sizeof(int));
    st->ctx = gfn_calloc((size_t)Q, sizeof(int *)); st->ctx_len = gfn_calloc((size_t)Q, sizeof(int));
    st->y = gfn_calloc((size_t)Q, sizeof(int *)); st->y_len = gfn_calloc((size_t)Q, sizeof(int));
    st->gold = gfn_calloc((size_t)Q, sizeof(Traj *));
    char buf[4096];
    for (int q = 0; q < Q; q++) {
        char *const *s = st->sent[q];
        snprintf(buf, sizeof buf, "Beginning: %s %s %s\nEnding: %s\nMiddle:", s[0], s[1], s[2], s[4]);
        st->prompt[q] = text_encode(st->tok, buf, 1, &st->prompt_len[q]);
        snprintf(buf, sizeof buf, "%s %s %s", s[0], s[1], s[2]);
        st->ctx[q] = text_encode(st->tok, buf, 1, &st->ctx_len[q]);
        snprintf(buf, sizeof buf, " %s", s[4]);
        st->y[q] = text_encode(st->tok, buf, 0, &st->y_len[q]);
        if (st->prompt_len[q] + INFILL_MAX_LEN + 1 > maxT || st->ctx_len[q] + INFILL_MAX_LEN + st->y_len[q] > maxT) {
            gfn_error_set(err, "%s: story %d is too long for the model's %d positions", path, q, maxT);
            infill_cleanup(task);
            return 1;
        }
        snprintf(buf, sizeof buf, " %s", s[3]);
        int m, *mid = text_encode(st->tok, buf, 0, &m), fits = m >= INFILL_MIN_LEN && m <= INFILL_MAX_LEN;
        for (int j = 0; j < m && fits; j++) fits = task->allowed[mid[j]] && mid[j] != task->terminator;
        if (fits) {
            Traj *g = st->gold[q] = traj_new(INFILL_MAX_LEN);
            g->query = q;
            g->ntok = g->nact = m;
            memcpy(g->tokens, mid, sizeof(int) * (size_t)m);
            st->num_gold += q < task->num_train;
        }
        free(mid);
    }
    if (st->num_gold == 0) { gfn_error_set(err, "%s: no train story has a 4th sentence of %d-%d tokens", path, INFILL_MIN_LEN, INFILL_MAX_LEN); infill_cleanup(task); return 1; }
    st->eval_n = opt->eval_n > 0 && opt->eval_n < task->num_test ? opt->eval_n : task->num_test;
    if (opt->seed_answers) {   // --seed-answers 1: the true 4th sentences of the train stories seed the buffer
        task->demos = gfn_malloc(sizeof(Traj *) * (size_t)st->num_gold);
        for (int q = 0; q < task->num_train; q++) if (st->gold[q]) task->demos[task->num_demos++] = st->gold[q];
        for (int d = 0; d < task->num_demos; d += 64)
            infill_log_reward(task, task->demos + d, task->num_demos - d < 64 ? task->num_demos - d : 64);
    }
    return 0;
}

static void infill_cleanup(Task *task) {
    InfillState *st = task->state;
    if (st) {
        for (int q = 0; q < st->num_queries; q++) {
            for (int k = 0; k < 5; k++) free(st->sent[q][k]);
            if (st->prompt) { free(st->prompt[q]); free(st->ctx[q]); free(st->y[q]); if (st->gold[q]) traj_free(st->gold[q]); }
        }
        free(st->sent); free(st->prompt); free(st->prompt_len); free(st->ctx); free(st->ctx_len);
        free(st->y); free(st->y_len); free(st->gold);
        prefix_scorer_free(&st->scorer);
        if (st->tok) tokenizer_free(st->tok);
        free(st);
    }
    task->state = NULL;
    text_task_release(task);   // the demonstrations were the state's gold trajectories, freed above
}

// SFT's data: the query's true 4th sentence; a story whose s4 does not fit 5–25 tokens lends
// another train story's (the trajectory keeps that story as its query).
static void infill_demonstration(Task *task, int query, Traj *out, Rng *rng) {
    InfillState *st = task->state;
    while (!st->gold[query]) query = rng_below(rng, task->num_train);
    traj_copy(out, st->gold[query]);
}

static void infill_render(Task *task, const Traj *t, char *buf, size_t cap) {
    InfillState *st = task->state;
    text_of_tokens(st->tok, t->tokens, t->ntok, buf, cap);
}

// What needs no text metric: 25 samples at T = 0.9 per evaluated story, the mean untempered
// log R of the samples (and of the true 4th sentences for scale), and a few rendered samples.
static void infill_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    InfillState *st = task->state;
    int k = INFILL_EVAL_SAMPLES, count = st->eval_n, first = task->num_train;
    SamplerConfig sc = { 0.9f, 0, 1.0f };
    Traj **t = text_sample_queries(task, policy, first, count, k, &sc, seed * 7919 + 31);
    float *logr = gfn_malloc(sizeof(float) * (size_t)count * k);   // (count, k)
    for (int i = 0; i < count * k; i += 64) infill_log_p(task, t + i, count * k - i < 64 ? count * k - i : 64, logr + i);
    double mean, max, tokens = 0, gold = 0;
    per_query_mean_max(logr, count, k, &mean, &max);
    for (int i = 0; i < count * k; i++) tokens += t[i]->ntok;
    int num_gold = 0;
    for (int q = first; q < first + count; q++) {
        if (!st->gold[q]) continue;
        float v;
        infill_log_p(task, &st->gold[q], 1, &v);
        gold += v;
        num_gold++;
    }
    fprintf(out, "stories %d\nsamples_per_story %d\nlogr_mean %.4f\nlogr_max %.4f\nlogr_true_middle %.4f\nmean_tokens %.2f\n",
            count, k, mean, max, num_gold ? gold / num_gold : 0.0, tokens / (count * k));
    char z[512];
    for (int q = 0; q < 3 && q < count; q++) {
        char *const *s = st->sent[first + q];
        text_of_tokens(st->tok, t[q * k]->tokens, t[q * k]->ntok, z, sizeof z);
        fprintf(out, "sample %s %s %s [%s] %s (true: %s; log R %.2f)\n", s[0], s[1], s[2], z[0] == ' ' ? z + 1 : z, s[4], s[3], logr[q * k]);
    }
    free(logr);
    text_free_trajectories(t, count * k);
}

Task task_infill = {
    .name = "infill",
    .help = "story infilling (paper §4.2): Z = the 4th sentence, R = p(s1 s2 s3 Z s5); --seed-answers 1 seeds the buffer with true ones",
    .setup = infill_setup,
    .cleanup = infill_cleanup,
    .prompt = infill_prompt,
    .log_reward = infill_log_reward,
    .evaluate = infill_evaluate,
    .demonstration = infill_demonstration,
    .render = infill_render,
};
