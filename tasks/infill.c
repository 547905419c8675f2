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
    int baselines;              // --baselines: 0 the policy, 1 and the prompting baselines, 2 those only
    int beginning_only;         // 1 while the beginning-only baseline samples: the prompt is ctx
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
    *len = st->beginning_only ? st->ctx_len[query] : st->prompt_len[query];
    return st->beginning_only ? st->ctx[query] : st->prompt[query];
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
    st->baselines = opt->baselines;
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

// ----------------------------------------------------------------------------------------------
// Evaluation (the paper's Table 2): 25 Z per evaluated story at T = 0.9 for each method, scored
// against the true 4th sentence with BLEU-4, GLEU, chrF and the BERTScore stand-in (F1 on the
// base model's last hidden layer, rescaled by the mean F1 of 1000 random pairs (seed 1) of the
// evaluated stories' true 4th sentences). Each metric is averaged over a story's 25 samples, then
// over stories (= over all samples: every story has 25), with a 95 % bootstrap interval over
// stories (1000 resamples, seed 1). Methods:
//   policy            the policy (the trained one; the base itself at --steps 0) on the template
//   prompt-template   (--baselines) the base on the template: prompting
//   prompt-beginning  (--baselines) the base continuing "s1 s2 s3" (after end-of-text, as the
//                     reward scores it) with no template; its Z is cut after its first ".", "!"
//                     or "?" (and a closing quote), since nothing there tells it to stop at one
//                     sentence; the sampler's ⊤ "\n" and 5..25 tokens still apply
// SFT is the policy line of a `--loss sft` run (the template -> true s4 demonstrations).

static void sentence_cut(char *s) {
    for (char *p = s; *p; p++)
        if (*p == '.' || *p == '!' || *p == '?') {
            p += p[1] == '"';
            p[1] = 0;
            return;
        }
}

void infill_metrics(Task *task, Traj *const *t, int count, int k, int cut, double *per_story) {
    InfillState *st = task->state;
    int n = count * k, C = gpt_config(task->base).n_embd, first = task->num_train;
    char **hyp = gfn_malloc(sizeof(char *) * (size_t)n);   // (n) the samples' texts, no leading space
    const char **ref = gfn_malloc(sizeof(char *) * (size_t)count);   // (count) true 4th sentences
    for (int i = 0; i < n; i++) {
        char buf[1024];
        text_of_tokens(st->tok, t[i]->tokens, t[i]->ntok, buf, sizeof buf);
        if (cut) sentence_cut(buf);
        const char *b = buf[0] == ' ' ? buf + 1 : buf;
        hyp[i] = gfn_malloc(strlen(b) + 1);
        strcpy(hyp[i], b);
    }
    for (int q = 0; q < count; q++) ref[q] = st->sent[t[q * k]->query][3];
    float **hemb = gfn_malloc(sizeof(float *) * (size_t)n), **remb = gfn_malloc(sizeof(float *) * (size_t)count);
    int *hlen = gfn_malloc(sizeof(int) * (size_t)n), *rlen = gfn_malloc(sizeof(int) * (size_t)count);
    bertscore_embed_texts(task->base, st->tok, (const char *const *)hyp, n, hemb, hlen);
    bertscore_embed_texts(task->base, st->tok, ref, count, remb, rlen);
    // The baseline comes from the evaluated stories' own true 4th sentences (all of them, whatever
    // subset of queries t holds, so that it does not change with the method).
    int all = task->num_test < st->num_queries - first ? task->num_test : st->num_queries - first;
    const char **all_ref = gfn_malloc(sizeof(char *) * (size_t)all);
    float **aemb = gfn_malloc(sizeof(float *) * (size_t)all);
    int *alen = gfn_malloc(sizeof(int) * (size_t)all);
    for (int q = 0; q < all; q++) all_ref[q] = st->sent[first + q][3];
    bertscore_embed_texts(task->base, st->tok, all_ref, all, aemb, alen);
    double baseline = bertscore_baseline(aemb, alen, all, C, 1000, 1);
    for (int q = 0; q < count; q++) {
        double sum[4] = { 0, 0, 0, 0 };
        for (int j = 0; j < k; j++) {
            int i = q * k + j;
            sum[0] += bleu4(ref[q], hyp[i]);
            sum[1] += gleu(ref[q], hyp[i]);
            sum[2] += chrf(ref[q], hyp[i]);
            sum[3] += bertscore_rescale(bertscore_f1(hemb[i], hlen[i], remb[q], rlen[q], C, NULL, NULL), baseline);
        }
        for (int m = 0; m < 4; m++) per_story[m * count + q] = sum[m] / k;
    }
    for (int i = 0; i < n; i++) { free(hyp[i]); free(hemb[i]); }
    for (int q = 0; q < count; q++) free(remb[q]);
    for (int q = 0; q < all; q++) free(aemb[q]);
    free(hyp); free(ref); free(hemb); free(remb); free(hlen); free(rlen); free(all_ref); free(aemb); free(alen);
}

static void infill_method_line(Task *task, const char *name, Traj **t, int count, int k, int cut, FILE *out) {
    static const char *const metric[4] = { "bleu4", "gleu", "chrf", "bertscore" };
    double *per_story = gfn_malloc(sizeof(double) * 4 * (size_t)count);   // (4, count)
    infill_metrics(task, t, count, k, cut, per_story);
    fprintf(out, "method %s", name);
    for (int m = 0; m < 4; m++) {
        double mean, std, lo, hi;
        mean_std(per_story + m * count, count, &mean, &std);
        bootstrap_ci(per_story + m * count, count, 1000, 1, &lo, &hi);
        fprintf(out, " %s %.4f %s_lo %.4f %s_hi %.4f", metric[m], mean, metric[m], lo, metric[m], hi);
    }
    double tokens = 0;
    for (int i = 0; i < count * k; i++) tokens += t[i]->ntok;
    fprintf(out, " mean_tokens %.2f\n", tokens / (count * k));
    fflush(out);
    free(per_story);
}

static void infill_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    InfillState *st = task->state;
    int k = INFILL_EVAL_SAMPLES, count = st->eval_n, first = task->num_train;
    SamplerConfig sc = { 0.9f, 0, 1.0f, 0 };
    fprintf(out, "stories %d\nsamples_per_story %d\n", count, k);
    if (st->baselines != 2) {
        Traj **t = text_sample_queries(task, policy, first, count, k, &sc, seed * 7919 + 31);
        infill_method_line(task, "policy", t, count, k, 0, out);
        char z[512];
        for (int q = 0; q < 3 && q < count; q++) {
            char *const *s = st->sent[first + q];
            text_of_tokens(st->tok, t[q * k]->tokens, t[q * k]->ntok, z, sizeof z);
            fprintf(out, "sample %s %s %s [%s] %s (true: %s)\n", s[0], s[1], s[2], z[0] == ' ' ? z + 1 : z, s[4], s[3]);
        }
        text_free_trajectories(t, count * k);
    }
    if (st->baselines) {
        Traj **t = text_sample_queries(task, task->base, first, count, k, &sc, seed * 7919 + 37);
        infill_method_line(task, "prompt-template", t, count, k, 0, out);
        text_free_trajectories(t, count * k);
        st->beginning_only = 1;   // infill_prompt gives end-of-text "s1 s2 s3"
        t = text_sample_queries(task, task->base, first, count, k, &sc, seed * 7919 + 41);
        st->beginning_only = 0;
        infill_method_line(task, "prompt-beginning", t, count, k, 1, out);
        text_free_trajectories(t, count * k);
    }
}

Task task_infill = {
    .name = "infill",
    .help = "story infilling (paper §4.2): Z = the 4th sentence, R = p(s1 s2 s3 Z s5); --seed-answers 1 seeds the buffer with true ones",
    .setup = infill_setup,
    .cleanup = infill_cleanup,
    .prompt = infill_prompt,
    .log_reward = infill_log_reward,
    .concurrent_reward = 1,   // the reward writes only its scorer and the base's activations; prompt() and demonstration() only read
    .evaluate = infill_evaluate,
    .demonstration = infill_demonstration,
    .render = infill_render,
};

// ----------------------------------------------------------------------------------------------
// The report (`gfn report infill DIR OUT`): Table 2's layout, our numbers beside the paper's, the
// claim judged on the table's numbers.

enum { IK_BLEU, IK_GLEU, IK_CHRF, IK_BERT, IK_NUM = 12 };   // then each metric's _lo and _hi
static const char *const infill_keys[IK_NUM] = { "bleu4", "gleu", "chrf", "bertscore", "bleu4_lo", "gleu_lo", "chrf_lo",
                                                  "bertscore_lo", "bleu4_hi", "gleu_hi", "chrf_hi", "bertscore_hi" };

// Table 2 (GPT-2 Large; BLEU-4 / GLEU-4 / BERTScore), by our method names; the paper's GFlowNet
// seeded its buffer with true 4th sentences.
static const char *infill_paper(const char *name) {
    if (!strcmp(name, "prompt-template")) return "0.010 / 0.022 / 0.005";
    if (!strcmp(name, "sft")) return "0.012 / 0.023 / 0.013";
    if (!strncmp(name, "subtb", 5)) return "0.019 / 0.031 / 0.102";
    return "—";
}

int infill_report(const char *dir, const char *md_path, GfnError *err) {
    TextResults *res = gfn_calloc(1, sizeof(TextResults));
    if (text_results_read(dir, infill_keys, IK_NUM, res, err)) { free(res); return 1; }
    Text md = { NULL, 0, 0 };
    text_appendf(&md, "# Story infilling (paper §4.2, Table 2)\n\n"
                     "The evaluated stories (the 99 of rows 0–99 of roc_valid.json with five sentences; fewer with --eval-n), 25 samples of the 4th sentence per story at\n"
                     "T = 0.9, each scored against the true one; averaged over all samples, then mean ± std over seeds, and in brackets\n"
                     "the 95 %% bootstrap interval over stories (1000 resamples, seed 1) averaged over seeds. BERTScore here is the\n"
                     "stand-in: BERTScore's F1 on our base model's last hidden layer, rescaled by 1000 random pairs of true 4th sentences\n"
                     "(the paper: deberta-xlarge-mnli). subtb: GFlowNet; subtb-seeded: its replay buffer seeded with the train stories' true\n"
                     "4th sentences (supervision; the paper's runs did this); sft: the template -> true s4; prompt-*: the untuned base.\n\n");
    static const char *const columns[] = { "method", "runs", "BLEU-4", "GLEU", "chrF", "BERTScore (stand-in)", "paper BLEU-4 / GLEU-4 / BERTScore" };
    md_table_header(&md, columns, 7);
    for (int m = 0; m < res->num_rows; m++) {
        const ReportRow *row = &res->rows[m];
        text_appendf(&md, "| %s | %d |", row->name, row->count);
        for (int k = IK_BLEU; k <= IK_BERT; k++) {
            double mean, std, lo, hi, sd;
            report_row_stat(row, k, &mean, &std);
            report_row_stat(row, k + 4, &lo, &sd);
            report_row_stat(row, k + 8, &hi, &sd);
            text_appendf(&md, " %.4f ± %.4f [%.4f, %.4f] |", mean, std, lo, hi);
        }
        text_appendf(&md, " %s |\n", infill_paper(row->name));
    }
    // The claim: GFlowNet > SFT > prompting (the template) on GLEU and on the BERTScore stand-in
    // (means over seeds), and GFlowNet's bootstrap interval lies wholly above prompting's.
    const ReportRow *sft = text_results_row(res, "sft"), *prompt = text_results_row(res, "prompt-template");
    static const char *const gfn_rows[2] = { "subtb", "subtb-seeded" };
    for (int g = 0; g < 2; g++) {
        const ReportRow *gr = text_results_row(res, gfn_rows[g]);
        if (!gr) continue;
        if (!sft || !prompt) { text_appendf(&md, "\n%s: no sft or prompt-template rows to judge against — **not met**.\n", gfn_rows[g]); continue; }
        int met = 1;
        text_appendf(&md, "\n%s:", gfn_rows[g]);
        static const int judged[2] = { IK_GLEU, IK_BERT };
        for (int j = 0; j < 2; j++) {
            int k = judged[j];
            double a, b, c, a_lo, c_hi, sd;
            report_row_stat(gr, k, &a, &sd);
            report_row_stat(sft, k, &b, &sd);
            report_row_stat(prompt, k, &c, &sd);
            report_row_stat(gr, k + 4, &a_lo, &sd);
            report_row_stat(prompt, k + 8, &c_hi, &sd);
            int order = a > b && b > c, apart = a_lo > c_hi;
            met &= order && apart;
            text_appendf(&md, " %s GFlowNet %.4f vs SFT %.4f vs prompting %.4f (%s), intervals %s;", infill_keys[k], a, b, c,
                         order ? "in order" : "not in order", apart ? "apart" : "overlapping");
        }
        text_appendf(&md, " GFlowNet > SFT > prompting on GLEU and BERTScore with intervals apart from prompting's — **%s**.\n",
                     met ? "met" : "not met");
    }
    int status = text_report_tail(&md, dir, res, err);
    if (!status) status = write_file_atomic(md_path, md.s, md.len, err);
    free(md.s); free(res);
    return status;
}
