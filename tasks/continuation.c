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
    int baselines;          // --baselines: 0 the policy, 1 and the decoding baselines, 2 those only
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
    st->baselines = opt->baselines;
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

// ----------------------------------------------------------------------------------------------
// Evaluation (the paper's Figure 3): 8 Z per validation prompt from the trained policy at T = 1
// and, with --baselines, from every decoding baseline on the base model, all under the task's
// mask, lengths and ⊤. Per method: log P = log p(Z "." | X) under the base (the untempered final
// log R), its mean and max over a prompt's 8 averaged over prompts; diversity = 1 − mean pairwise
// TF-IDF cosine of the 8 sentences (IDF from the 950 training prompts), distinct-2 and self-BLEU-4,
// each per prompt and averaged over prompts.
//   greedy        the most likely allowed token at each step (8 copies: diversity 0)
//   beam8         beam search, 8 beams, the 8 finished hypotheses
//   beam40        beam search, 40 beams ("5x the compute"), the 8 best of its 40
//   diverse-beam  4 groups of 2 beams, Hamming penalty λ = 1, the 8 hypotheses
//   nucleus       top-p 0.95;  sample-t1  T = 1;  tempered-T  T = each T_end of the paper's sweep

static const float cont_t_end[] = { 0.8f, 0.85f, 0.9f, 0.95f };

void continuation_metrics(Task *task, const TfIdf *idf, Traj *const *t, int count, int k, ContMetrics *m) {
    ContState *st = task->state;
    float *logp = gfn_malloc(sizeof(float) * (size_t)count * k);   // (count, k)
    for (int i = 0; i < count * k; i += 64) continuation_log_p(task, t + i, count * k - i < 64 ? count * k - i : 64, logp + i);
    per_query_mean_max(logp, count, k, &m->logp_mean, &m->logp_max);
    free(logp);
    char **texts = gfn_malloc(sizeof(char *) * (size_t)k);   // (k) one prompt's sentences
    for (int j = 0; j < k; j++) texts[j] = gfn_malloc(1024);
    m->diversity = m->distinct2 = m->self_bleu = m->mean_tokens = 0;
    for (int q = 0; q < count; q++) {
        for (int j = 0; j < k; j++) {
            text_of_tokens(st->tok, t[q * k + j]->tokens, t[q * k + j]->ntok, texts[j], 1024);
            m->mean_tokens += (double)t[q * k + j]->ntok / (count * k);
        }
        const char *const *tx = (const char *const *)texts;
        m->diversity += tfidf_diversity(idf, tx, k) / count;
        m->distinct2 += distinct_n(tx, k, 2) / count;
        m->self_bleu += self_bleu4(tx, k) / count;
    }
    for (int j = 0; j < k; j++) free(texts[j]);
    free(texts);
}

TfIdf *continuation_idf(Task *task) {
    ContState *st = task->state;
    char **corpus = gfn_malloc(sizeof(char *) * (size_t)task->num_train);   // (num_train) the prompts' texts
    for (int q = 0; q < task->num_train; q++) {
        corpus[q] = gfn_malloc(4096);
        text_of_tokens(st->tok, st->x[q] + 1, st->x_len[q] - 1, corpus[q], 4096);
    }
    TfIdf *idf = tfidf_new((const char *const *)corpus, task->num_train);
    for (int q = 0; q < task->num_train; q++) free(corpus[q]);
    free(corpus);
    return idf;
}

static void cont_method_line(Task *task, const TfIdf *idf, const char *name, Traj **t, int count, int k, FILE *out) {
    ContMetrics m;
    continuation_metrics(task, idf, t, count, k, &m);
    fprintf(out, "method %s logp_mean %.4f logp_max %.4f diversity %.4f distinct2 %.4f self_bleu %.4f mean_tokens %.2f\n", name,
            m.logp_mean, m.logp_max, m.diversity, m.distinct2, m.self_bleu, m.mean_tokens);
    fflush(out);
}

// Beam search over the evaluated prompts with cfg, keeping the best `keep` of each prompt's
// hypotheses (cfg->beams of them) in the (count, keep) layout; a prompt with fewer finished
// hypotheses repeats its last one (only when fewer than `keep` sentences exist at all).
static Traj **cont_beams(Task *task, GPT *base, int count, int keep, const BeamConfig *cfg) {
    int n = cfg->beams;
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)count * keep), **all = gfn_malloc(sizeof(Traj *) * (size_t)n);   // (count, keep), (n)
    float *log_q = gfn_malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) all[i] = traj_new(task->max_len);
    for (int q = 0; q < count; q++) {
        int query = task->num_train + q, found;
        beam_search(base, task, &query, 1, cfg, all, log_q, &found);
        for (int j = 0; j < keep; j++) {
            t[q * keep + j] = traj_new(task->max_len);
            if (found > 0) traj_copy(t[q * keep + j], all[j < found ? j : found - 1]);
            t[q * keep + j]->query = query;
        }
    }
    for (int i = 0; i < n; i++) traj_free(all[i]);
    free(all); free(log_q);
    return t;
}

static void cont_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    ContState *st = task->state;
    int k = CONT_EVAL_SAMPLES, count = st->eval_n, first = task->num_train;
    TfIdf *idf = continuation_idf(task);
    fprintf(out, "prompts %d\nsamples_per_prompt %d\n", count, k);
    if (st->baselines != 2) {   // the policy at T = 1, and a few of its sentences
        SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
        Traj **t = text_sample_queries(task, policy, first, count, k, &sc, seed * 7919 + 29);
        cont_method_line(task, idf, "policy", t, count, k, out);
        char prompt[2048], z[512];
        for (int q = 0; q < 3 && q < count; q++) {
            text_of_tokens(st->tok, st->x[first + q] + 1, st->x_len[first + q] - 1, prompt, sizeof prompt);
            text_of_tokens(st->tok, t[q * k]->tokens, t[q * k]->ntok, z, sizeof z);
            fprintf(out, "sample %s |||%s.\n", prompt, z);
        }
        text_free_trajectories(t, count * k);
    }
    if (st->baselines) {   // the decoding baselines on the base model
        static const struct { const char *name; SamplerConfig sc; } samplers[] = {
            { "greedy", { 0.0f, 0, 1.0f, 0 } }, { "nucleus", { 1.0f, 0, 0.95f, 0 } }, { "sample-t1", { 1.0f, 0, 1.0f, 0 } } };
        for (size_t s = 0; s < sizeof samplers / sizeof *samplers; s++) {
            Traj **t = text_sample_queries(task, task->base, first, count, k, &samplers[s].sc, seed * 7919 + 37 + s);
            cont_method_line(task, idf, samplers[s].name, t, count, k, out);
            text_free_trajectories(t, count * k);
        }
        for (size_t s = 0; s < sizeof cont_t_end / sizeof *cont_t_end; s++) {
            SamplerConfig sc = { cont_t_end[s], 0, 1.0f, 0 };
            char name[32];
            snprintf(name, sizeof name, "tempered-%.2f", (double)cont_t_end[s]);
            Traj **t = text_sample_queries(task, task->base, first, count, k, &sc, seed * 7919 + 41 + s);
            cont_method_line(task, idf, name, t, count, k, out);
            text_free_trajectories(t, count * k);
        }
        static const struct { const char *name; BeamConfig cfg; } beams[] = {
            { "beam8", { 8, 1, 0.0f } }, { "beam40", { 40, 1, 0.0f } }, { "diverse-beam", { 8, 4, 1.0f } } };
        for (size_t b = 0; b < sizeof beams / sizeof *beams; b++) {
            Traj **t = cont_beams(task, task->base, count, k, &beams[b].cfg);
            cont_method_line(task, idf, beams[b].name, t, count, k, out);
            text_free_trajectories(t, count * k);
        }
    }
    tfidf_free(idf);
}

Task task_continuation = {
    .name = "continuation",
    .help = "next-sentence continuation (paper §4.1): Z = a sentence ended by \".\", R = p(Z \".\" | X)",
    .setup = cont_setup,
    .cleanup = cont_cleanup,
    .prompt = cont_prompt,
    .log_reward = cont_log_reward,
    .concurrent_reward = 1,   // the reward writes only its scorer and the base's activations; prompt() only reads
    .evaluate = cont_evaluate,
    .render = cont_render,
};

// ----------------------------------------------------------------------------------------------
// The report (`gfn report continuation DIR OUT`): the table of every method over its seeds, the
// log P – diversity plot (the paper's Figure 3) and the claim judged on the table's numbers.

enum { CK_LOGP_MEAN, CK_LOGP_MAX, CK_DIVERSITY, CK_DISTINCT2, CK_SELF_BLEU, CK_NUM };
static const char *const cont_keys[CK_NUM] = { "logp_mean", "logp_max", "diversity", "distinct2", "self_bleu" };

// GFlowNet rows are the runs named subtb*; g "beats" a sampler s at ≥ 95 % of its diversity.
static int cont_is_gfn(const char *name) { return !strncmp(name, "subtb", 5); }
// A point's colour: GFlowNet red, tempered orange, beams blue, reward maximiser purple, others green.
static int cont_slot(const char *name) {
    return cont_is_gfn(name) ? 2 : !strncmp(name, "tempered", 8) ? 5 : strstr(name, "beam") ? 1 : !strncmp(name, "reinforce", 9) ? 3 : 4;
}

// Whether the GFlowNet points (lp, dv), n of them sorted by lp, lie above the point (x, y): a
// point with log P ≥ x and diversity > y, or the segment between two neighbours spanning x
// passes above y there.
static int cont_above(const double *lp, const double *dv, int n, double x, double y) {
    for (int i = 0; i < n; i++) if (lp[i] >= x && dv[i] > y) return 1;
    for (int i = 0; i + 1 < n; i++)
        if (lp[i] <= x && x <= lp[i + 1] && lp[i + 1] > lp[i] && dv[i] + (dv[i + 1] - dv[i]) * (x - lp[i]) / (lp[i + 1] - lp[i]) > y) return 1;
    return 0;
}

int continuation_report(const char *dir, const char *md_path, const char *svg_path, GfnError *err) {
    TextResults *res = gfn_calloc(1, sizeof(TextResults));
    if (text_results_read(dir, cont_keys, CK_NUM, res, err)) { free(res); return 1; }
    Text md = { NULL, 0, 0 };
    text_appendf(&md, "# Next-sentence continuation (paper §4.1, Figure 3)\n\n"
                     "The validation prompts (OpenWebText lines 950–999; fewer with --eval-n), 8 sentences each, mean ± std over seeds. log P = log p(Z \".\" | X)\n"
                     "under the base model (the sentence mask's renormalised softmax): the mean and the max over a prompt's 8, averaged\n"
                     "over prompts. Diversity = 1 − mean pairwise cosine of TF-IDF word vectors (IDF from the 950 training prompts);\n"
                     "distinct-2 and self-BLEU-4 over a prompt's 8. subtb-T: GFlowNet (modified SubTB) trained with the reward\n"
                     "temperature annealed 1 → T; reinforce: a reward maximiser; the rest decode the base model (tasks/continuation.c).\n"
                     "The paper (GPT-2 XL, a sentence-transformer for diversity) gives this as a plot, not a table: its claim is judged below.\n\n");
    static const char *const columns[] = { "method", "runs", "log P mean", "log P max", "diversity", "distinct-2", "self-BLEU-4" };
    md_table_header(&md, columns, 7);
    ScatterPoint *pts = gfn_calloc(TEXT_REPORT_MAX_ROWS, sizeof(ScatterPoint));
    double lp[TEXT_REPORT_MAX_ROWS], dv[TEXT_REPORT_MAX_ROWS];
    int ng = 0;
    for (int m = 0; m < res->num_rows; m++) {
        const ReportRow *row = &res->rows[m];
        double mean[CK_NUM], std[CK_NUM];
        text_appendf(&md, "| %s | %d |", row->name, row->count);
        for (int k = 0; k < CK_NUM; k++) {
            report_row_stat(row, k, &mean[k], &std[k]);
            text_appendf(&md, k < CK_DIVERSITY ? " %.2f ± %.2f |" : " %.3f ± %.3f |", mean[k], std[k]);
        }
        text_appendf(&md, "\n");
        pts[m] = (ScatterPoint){ row->name, cont_slot(row->name),
                                 mean[CK_LOGP_MEAN], mean[CK_DIVERSITY], std[CK_LOGP_MEAN], std[CK_DIVERSITY] };
        if (cont_is_gfn(row->name)) { lp[ng] = mean[CK_LOGP_MEAN]; dv[ng] = mean[CK_DIVERSITY]; ng++; }
    }
    // The claim: at some T_end, GFlowNet's mean log P is higher than nucleus sampling's, sampling
    // at T = 1's and tempered sampling's at the same T_end, each with at least 95 % of that
    // sampler's diversity; and the GFlowNet points lie above the beam search points (beam8,
    // beam40 = 5x the beams, diverse-beam) on the log P – diversity plane.
    for (int i = 1; i < ng; i++)   // sort the GFlowNet points by log P (insertion)
        for (int j = i; j > 0 && lp[j - 1] > lp[j]; j--) {
            double a = lp[j]; lp[j] = lp[j - 1]; lp[j - 1] = a;
            a = dv[j]; dv[j] = dv[j - 1]; dv[j - 1] = a;
        }
    int samplers_met = 0, beams_met = ng > 0, beams_seen = 0;
    Text why = { NULL, 0, 0 };
    for (int m = 0; m < res->num_rows; m++) {
        const ReportRow *g = &res->rows[m];
        if (!cont_is_gfn(g->name)) continue;
        const char *t_end = strchr(g->name, '-');
        char tempered[48];
        snprintf(tempered, sizeof tempered, "tempered-%s", t_end ? t_end + 1 : "?");
        const char *rivals[3] = { "nucleus", "sample-t1", tempered };
        double gl, gd, sd;
        report_row_stat(g, CK_LOGP_MEAN, &gl, &sd);
        report_row_stat(g, CK_DIVERSITY, &gd, &sd);
        int all = 1;
        for (int r = 0; r < 3; r++) {
            const ReportRow *s = text_results_row(res, rivals[r]);
            double sl, sdv;
            if (!s) { all = 0; text_appendf(&why, " %s: no %s row;", g->name, rivals[r]); continue; }
            report_row_stat(s, CK_LOGP_MEAN, &sl, &sd);
            report_row_stat(s, CK_DIVERSITY, &sdv, &sd);
            int ok = gl > sl && gd >= 0.95 * sdv;
            all &= ok;
            text_appendf(&why, " %s vs %s: log P %.2f vs %.2f, diversity %.3f vs %.3f (%s);", g->name, rivals[r], gl, sl, gd, sdv, ok ? "better" : "not better");
        }
        samplers_met |= all;
    }
    static const char *const beam_rows[3] = { "beam8", "beam40", "diverse-beam" };
    for (int b = 0; b < 3; b++) {
        const ReportRow *s = text_results_row(res, beam_rows[b]);
        if (!s) continue;
        double bl, bd, sd;
        report_row_stat(s, CK_LOGP_MEAN, &bl, &sd);
        report_row_stat(s, CK_DIVERSITY, &bd, &sd);
        int ok = cont_above(lp, dv, ng, bl, bd);
        beams_seen++;
        beams_met &= ok;
        text_appendf(&why, " %s (log P %.2f, diversity %.3f): GFlowNet %s;", beam_rows[b], bl, bd, ok ? "above" : "not above");
    }
    beams_met &= beams_seen == 3;
    text_appendf(&md, "\nThe paper's claim, on the numbers above (mean over seeds):%s\n\n", why.s ? why.s : " no GFlowNet (subtb-*) rows;");
    text_appendf(&md, "Claim: at some T_end GFlowNet has a higher mean log P than nucleus, T = 1 and tempered sampling at ≥ 95 %% of their "
                     "diversity — **%s**; GFlowNet lies above beam search (8 and 40 beams) and diverse beam search — **%s**.\n",
                 samplers_met ? "met" : "not met", beams_met ? "met" : "not met");
    free(why.s);
    text_appendf(&md, "\n![log P against diversity](%s)\n", strrchr(svg_path, '/') ? strrchr(svg_path, '/') + 1 : svg_path);
    int status = text_report_tail(&md, dir, res, err);
    const ScatterPlot plot = { .width = 640, .height = 420, .left = 60, .right = 170, .top = 20, .bottom = 50,
                               .x_title = "mean log P (base model)", .y_title = "diversity (1 - mean TF-IDF cosine)" };
    Text svg = { NULL, 0, 0 };
    svg_scatter_plot(&svg, &plot, pts, res->num_rows);
    if (!status) status = write_file_atomic(md_path, md.s, md.len, err) || write_file_atomic(svg_path, svg.s, svg.len, err);
    free(md.s); free(svg.s); free(pts); free(res);
    return status;
}
