// tests/test_texttasks.c — the text tasks (continuation, infill, subj) on the shipped base model and the
// shared data: the data splits and prompt texts against values counted independently (a one-off
// python count over the same files, quoted below), the allowed-token masks, sampling never
// writes a disallowed token, and every per-prefix reward equals a plain forward of that prefix's
// whole text.
#include "test.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

// The data folder, or NULL after a SKIP line naming what is missing.
static const char *inputs_or_skip(const char *name) {
    const char *data = test_data_dir();
    if (!data) { test_skip(name, "no shared data (../shared/data or $GFN_DATA)"); return NULL; }
    if (!exists("weights/base.ckpt") || !exists("weights/tokenizer.bin")) { test_skip(name, "no weights/base.ckpt or weights/tokenizer.bin"); return NULL; }
    return data;
}

// log p(Z Y | C) of one text from a plain forward of the whole of it: Z and Y_1 under the mask
// (softmax renormalised over it; NULL: all tokens), the rest of Y under the full softmax.
static double direct_log_p(GPT *base, const int *ctx, int clen, const int *z, int zlen, const int *y, int ylen,
                           const unsigned char *mask) {
    int T = clen + zlen + ylen, V = gpt_config(base).vocab_size;
    int *row = gfn_malloc(sizeof(int) * (size_t)T);
    if (clen) memcpy(row, ctx, sizeof(int) * (size_t)clen);   // z may be NULL when empty (memcpy forbids it)
    if (zlen) memcpy(row + clen, z, sizeof(int) * (size_t)zlen);
    if (ylen) memcpy(row + clen + zlen, y, sizeof(int) * (size_t)ylen);
    const float *logits = gpt_forward(base, row, 1, T);
    double total = 0;
    for (int j = clen; j < T; j++) {
        const float *lg = logits + (size_t)(j - 1) * V;
        int masked = mask && j <= clen + zlen;
        double max = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) if ((!masked || mask[v]) && lg[v] > max) max = lg[v];
        for (int v = 0; v < V; v++) if (!masked || mask[v]) sum += exp(lg[v] - max);
        total += lg[row[j]] - max - log(sum);
    }
    free(row);
    return total;
}

static char *copy_text(const char *s) {
    char *c = gfn_malloc(strlen(s) + 1);
    strcpy(c, s);
    return c;
}

static char *decode(Tokenizer *tok, const int *ids, int n) {
    size_t len;
    GfnError err;
    char *s = tokenizer_decode(tok, ids, (size_t)n, &len, &err);
    return s ? s : copy_text("?");
}

static int single_token(Tokenizer *tok, const char *text) {
    size_t n;
    int *ids = tokenizer_encode(tok, text, strlen(text), 0, &n), id = n == 1 ? ids[0] : -1;
    free(ids);
    return id;
}

// Every allowed token but ⊤ is free of the banned bytes and end-of-text, and every other token
// is allowed (the rule written out again here, byte by byte).
static void check_mask(Task *task, Tokenizer *tok, const char *banned, int min_multi, const char *name) {
    int V = gpt_config(task->base).vocab_size, wrong = 0, multi_banned = 0;
    for (int v = 0; v < V; v++) {
        if (v == task->terminator) continue;
        size_t bl;
        const unsigned char *b = tokenizer_token_bytes(tok, v, &bl);
        int has = v == tokenizer_eot_id(tok);
        for (size_t j = 0; j < bl; j++) for (const char *c = banned; *c; c++) has |= b[j] == (unsigned char)*c;
        wrong += task->allowed[v] == has;
        multi_banned += has && bl > 1;
    }
    CHECK(wrong == 0, "%s: %d tokens allowed against the rule", name, wrong);
    CHECK(multi_banned >= min_multi, "%s: only %d multi-byte tokens hold a banned byte", name, multi_banned);
}

// Samples k per query from the base at temperature temp and checks every token and the lengths.
static Traj **sample_checked(Task *task, int first, int count, int k, float temp, const char *name) {
    SamplerConfig sc = { temp, 0, 1.0f, 0 };
    Traj **t = text_sample_queries(task, task->base, first, count, k, &sc, 5);
    int bad_token = 0, bad_len = 0;
    for (int i = 0; i < count * k; i++) {
        for (int j = 0; j < t[i]->ntok; j++) bad_token += !task->allowed[t[i]->tokens[j]] || t[i]->tokens[j] == task->terminator;
        bad_len += t[i]->ntok < task->min_len || t[i]->ntok > task->max_len || t[i]->nact != t[i]->ntok || t[i]->query != first + i / k;
    }
    CHECK(bad_token == 0 && bad_len == 0, "%s at T %.1f: %d disallowed tokens, %d bad lengths or queries", name, temp, bad_token, bad_len);
    return t;
}

static void test_continuation(void) {
    const char *data = inputs_or_skip("continuation");
    if (!data) return;
    Task *task = &task_continuation;
    if (!CHECK(task == &task_continuation, "continuation is not in the registry")) return;
    TaskOptions opt = { .data_path = data, .seed = 1, .quiet = 1 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    CHECK(task->num_train == 950 && task->num_test == 50, "train %d, test %d", task->num_train, task->num_test);
    // Prompts: end-of-text, then the line without its trailing space (all 1000 lines end in one).
    static const struct { int query; const char *text; } prompts[] = {
        { 0, "She questions the suspension and the timing." },
        { 950, "The Rolling Stones in Concert has since been released solely by ABKCO Records. The band would remain "
               "incensed with Klein for decades for that act. Klein died in 2009." },
    };
    for (size_t i = 0; i < sizeof prompts / sizeof *prompts; i++) {
        int len;
        const int *x = task->prompt(task, prompts[i].query, &len);
        char *s = decode(tok, x + 1, len - 1);
        CHECK(x[0] == tokenizer_eot_id(tok) && !strcmp(s, prompts[i].text), "prompt %d: '%s'", prompts[i].query, s);
        free(s);
    }
    int trailing = 0;
    for (int q = 0; q < 1000; q++) {
        int len;
        const int *x = task->prompt(task, q, &len);
        char *s = decode(tok, x, len);
        trailing += s[strlen(s) - 1] == ' ';
        free(s);
    }
    CHECK(trailing == 0, "%d prompts keep a trailing space", trailing);
    // The mask: ⊤ = "."; end-of-text, "\n", "!", "?", '"' and ".\n"-like tokens out; words in.
    size_t bl;
    const unsigned char *tb = tokenizer_token_bytes(tok, task->terminator, &bl);
    CHECK(bl == 1 && tb[0] == '.' && task->allowed[task->terminator], "terminator is not an allowed '.'");
    CHECK(task->min_len == 1 && task->max_len == 30, "lengths %d..%d", task->min_len, task->max_len);
    const char *out[] = { "\n", "!", "?", "\"" }, *in[] = { " the", " Mr", ",", " said" };
    for (int i = 0; i < 4; i++) {
        int o = single_token(tok, out[i]), n = single_token(tok, in[i]);
        CHECK(o >= 0 && !task->allowed[o], "'%s' (%d) allowed", out[i], o);
        CHECK(n >= 0 && task->allowed[n], "'%s' (%d) not allowed", in[i], n);
    }
    CHECK(!task->allowed[tokenizer_eot_id(tok)], "end-of-text allowed");
    check_mask(task, tok, ".!?\n\r\"", 10, "continuation");
    // Sampling never writes a disallowed token, at T = 1 and at a flat T = 3.
    Traj **t1 = sample_checked(task, 950, 4, 8, 1.0f, "continuation");
    Traj **t = sample_checked(task, 960, 2, 8, 3.0f, "continuation");
    // Every prefix's reward against a plain forward of X z_≤i "." (3 trajectories, every state).
    traj_copy(t[2], t1[0]);
    text_free_trajectories(t1, 32);
    task->log_reward(task, t, 3);
    float whole[3];
    continuation_log_p(task, t, 3, whole);
    int states = 0;
    for (int i = 0; i < 3; i++) {
        int xlen;
        const int *x = task->prompt(task, t[i]->query, &xlen);
        for (int k = 0; k <= t[i]->nact; k++, states++) {
            double want = direct_log_p(task->base, x, xlen, t[i]->tokens, k, &task->terminator, 1, task->allowed);
            CHECK(fabs(t[i]->log_r[k] - want) < 2e-3 * (1 + fabs(want)), "traj %d state %d: log R %.5f, direct %.5f", i, k, t[i]->log_r[k], want);
        }
        CHECK(fabs(whole[i] - t[i]->log_r[t[i]->nact]) < 2e-3 * (1 + fabs(whole[i])), "traj %d: whole %.5f, last state %.5f",
              i, whole[i], t[i]->log_r[t[i]->nact]);
    }
    CHECK(states > 20, "only %d states compared", states);
    text_free_trajectories(t, 16);
    tokenizer_free(tok);
    task->cleanup(task);
}

static void test_infill(void) {
    const char *data = inputs_or_skip("infill");
    if (!data) return;
    Task *task = &task_infill;
    if (!CHECK(task == &task_infill, "infill is not in the registry")) return;
    TaskOptions opt = { .data_path = data, .seed = 1, .quiet = 1 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    // Of rows 100–999, 884 split into exactly five sentences (13 into four, 3 into three, 1 into
    // one among rows 0–999); of rows 0–99, 99. Train stories first, then the evaluated ones.
    CHECK(task->num_train == 884 && task->num_test == 99, "train %d, test %d", task->num_train, task->num_test);
    int eot = tokenizer_eot_id(tok), len, ylen;
    const int *p = task->prompt(task, 884, &len), *y;   // row 0
    char *s = decode(tok, p + 1, len - 1);
    CHECK(p[0] == eot && !strcmp(s, "Beginning: The dog jumped up on the bed. I told her to go underneath it like she usually does. "
                                     "She refused to budge from her spot.\nEnding: I gave up and let her sleep partly on top of me.\nMiddle:"),
          "prompt of row 0: '%s'", s);
    free(s);
    infill_reward_text(task, 884, &p, &len, &y, &ylen);
    s = decode(tok, p + 1, len - 1);
    char *ys = decode(tok, y, ylen);
    CHECK(p[0] == eot && !strcmp(s, "The dog jumped up on the bed. I told her to go underneath it like she usually does. She refused to budge from her spot.")
          && !strcmp(ys, " I gave up and let her sleep partly on top of me."), "reward text of row 0: '%s' + Z + '%s'", s, ys);
    free(s); free(ys);
    static const struct { int query; const char *s4; } middles[] = {
        { 0, " The old man showed her many tricks." },                // row 100
        { 883, " Two nights a week she worked hard in class." },      // row 999
        { 982, " Tom was such a great employee in every other regard." },   // row 99
    };
    for (int i = 0; i < 3; i++) {
        const int *m = infill_true_middle(task, middles[i].query, &len);
        s = m ? decode(tok, m, len) : copy_text("(none)");
        CHECK(!strcmp(s, middles[i].s4), "true middle of query %d: '%s'", middles[i].query, s);
        free(s);
    }
    Traj *demo = traj_new(task->max_len);
    Rng rng;
    rng_seed(&rng, 1);
    task->demonstration(task, 0, demo, &rng);
    s = decode(tok, demo->tokens, demo->ntok);
    CHECK(demo->query == 0 && demo->nact == demo->ntok && !strcmp(s, middles[0].s4), "demonstration of query 0: '%s'", s);
    free(s);
    // The mask: ⊤ = "\n"; end-of-text and other newline tokens out; sentence punctuation in.
    CHECK(task->terminator == single_token(tok, "\n") && task->min_len == 5 && task->max_len == 25, "terminator %d, lengths %d..%d",
          task->terminator, task->min_len, task->max_len);
    const char *in[] = { ".", "!", "?", " the" };
    for (int i = 0; i < 4; i++) CHECK(task->allowed[single_token(tok, in[i])], "'%s' not allowed", in[i]);
    CHECK(!task->allowed[eot], "end-of-text allowed");
    check_mask(task, tok, "\n\r", 1, "infill");
    Traj **t = sample_checked(task, 884, 2, 4, 1.0f, "infill");
    // Every prefix's reward against a plain forward of end-of-text "s1 s2 s3" z_≤i " s5"; the
    // true middle too (the demonstration).
    task->log_reward(task, t, 2);
    task->log_reward(task, &demo, 1);
    Traj *check[3] = { t[0], t[1], demo };
    float whole[3];
    infill_log_p(task, check, 3, whole);
    int states = 0;
    for (int i = 0; i < 3; i++) {
        const int *ctx;
        int clen;
        infill_reward_text(task, check[i]->query, &ctx, &clen, &y, &ylen);
        for (int k = 0; k <= check[i]->nact; k++, states++) {
            double want = direct_log_p(task->base, ctx, clen, check[i]->tokens, k, y, ylen, NULL);
            CHECK(fabs(check[i]->log_r[k] - want) < 2e-3 * (1 + fabs(want)), "traj %d state %d: log R %.5f, direct %.5f",
                  i, k, check[i]->log_r[k], want);
        }
        CHECK(fabs(whole[i] - check[i]->log_r[check[i]->nact]) < 2e-3 * (1 + fabs(whole[i])), "traj %d: whole %.5f, last state %.5f",
              i, whole[i], check[i]->log_r[check[i]->nact]);
    }
    CHECK(states > 20, "only %d states compared", states);
    text_free_trajectories(t, 8);
    traj_free(demo);
    tokenizer_free(tok);
    task->cleanup(task);
}

static void test_subj(void) {
    const char *data = inputs_or_skip("subj");
    if (!data) return;
    Task *task = &task_subj;
    if (!CHECK(task == &task_subj, "subj is not in the registry")) return;
    TaskOptions opt = { .data_path = data, .seed = 1, .quiet = 1, .num_labelled = 20, .seed_answers = 1 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    // The wishful seeds: at most one per labelled X, 1..5 word tokens (letters after an optional
    // space), their final log R that of a plain forward of X Z Y (minus 50 where Y' wins).
    int seen[20] = { 0 };
    for (int d = 0; d < task->num_demos; d++) {
        Traj *w = task->demos[d];
        int q = w->query, words = w->ntok >= 1 && w->ntok <= 5 && w->nact == w->ntok && q >= 0 && q < 20 && !seen[q]++;
        for (int j = 0; j < w->ntok && words; j++) {
            size_t bl;
            const unsigned char *b = tokenizer_token_bytes(tok, w->tokens[j], &bl);
            for (size_t i = b[0] == ' '; i < bl && words; i++) words = isalpha(b[i]);
        }
        int ylen[2];
        int *yl[2];
        for (int l = 0; l < 2; l++) yl[l] = text_encode(tok, l ? ", so it is subjective." : ", so it is objective.", 0, &ylen[l]);
        int xlen, label = subj_label(task, q);
        const int *xq = task->prompt(task, q, &xlen);
        double right = direct_log_p(task->base, xq, xlen, w->tokens, w->ntok, yl[label], ylen[label], NULL);
        double wrong = direct_log_p(task->base, xq, xlen, w->tokens, w->ntok, yl[1 - label], ylen[1 - label], NULL);
        double want = right - (wrong > right ? 50 : 0);
        CHECK(words && fabs(w->log_r[w->nact] - want) < 2e-3 * (1 + fabs(want)), "wishful seed %d (query %d, %d tokens): log R %.4f, plain %.4f",
              d, q, w->ntok, w->log_r[w->nact], want);
        free(yl[0]); free(yl[1]);
    }
    CHECK(task->num_demos >= 10, "only %d wishful seeds of 20", task->num_demos);
    // train.20.jsonl: 20 rows, 7 subjective; test.jsonl: 2000 rows, 967 subjective (python count).
    int subjective[2] = { 0, 0 };
    for (int q = 0; q < task->num_train + task->num_test; q++) subjective[q >= task->num_train] += subj_label(task, q);
    CHECK(task->num_train == 20 && task->num_test == 2000 && subjective[0] == 7 && subjective[1] == 967,
          "train %d (%d subjective), test %d (%d subjective)", task->num_train, subjective[0], task->num_test, subjective[1]);
    int len;
    const int *x = task->prompt(task, 20, &len);
    char *s = decode(tok, x + 1, len - 1);
    CHECK(x[0] == tokenizer_eot_id(tok) && !strcmp(s, "Classify this movie review as objective or subjective: \"pirates of the caribbean is a "
          "sweeping action-adventure story set in an era when villainous pirates scavenged the caribbean seas .\" This review is") && subj_label(task, 20) == 0,
          "test row 0: '%s'", s);
    free(s);
    CHECK(task->terminator == tokenizer_eot_id(tok) && task->min_len == 1 && task->max_len == 5, "terminator %d, lengths %d..%d",
          task->terminator, task->min_len, task->max_len);
    check_mask(task, tok, "", 0, "subj");
    // Every prefix's reward against plain forwards of X z_≤i Y and X z_≤i Y' (penalty when Y' wins).
    Traj **t = sample_checked(task, 0, 4, 2, 2.0f, "subj");
    task->log_reward(task, t, 8);
    int y_ids[2][16], y_len[2], states = 0, penalised = 0;
    for (int l = 0; l < 2; l++) {
        size_t n;
        int *ids = tokenizer_encode(tok, l ? ", so it is subjective." : ", so it is objective.", l ? 22 : 21, 0, &n);
        y_len[l] = (int)n;
        memcpy(y_ids[l], ids, sizeof(int) * n);
        free(ids);
    }
    for (int i = 0; i < 8; i++) {
        x = task->prompt(task, t[i]->query, &len);
        int label = subj_label(task, t[i]->query), pred;
        for (int k = 0; k <= t[i]->nact; k++, states++) {
            double right = direct_log_p(task->base, x, len, t[i]->tokens, k, y_ids[label], y_len[label], NULL);
            double wrong = direct_log_p(task->base, x, len, t[i]->tokens, k, y_ids[1 - label], y_len[1 - label], NULL);
            double want = right - (wrong > right ? 50 : 0);
            penalised += wrong > right;
            CHECK(fabs(t[i]->log_r[k] - want) < 2e-3 * (1 + fabs(want)), "traj %d state %d: log R %.5f, direct %.5f", i, k, t[i]->log_r[k], want);
            if (k == t[i]->nact) {
                subj_base_label(task, &t[i], 1, &pred);
                CHECK(pred == (wrong > right ? 1 - label : label), "traj %d: base label %d", i, pred);
            }
        }
    }
    printf("   subj: %d states compared, %d penalised\n", states, penalised);
    text_free_trajectories(t, 8);
    tokenizer_free(tok);
    task->cleanup(task);
    opt.num_labelled = 30;
    CHECK(task->setup(task, &opt, &err) != 0 && strstr(err.msg, "30"), "--labelled 30: %s", err.msg);
}

// ----------------------------------------------------------------------------------------------
// The evaluations of continuation and infill on hand-made trajectories, against numbers computed
// here another way; the bootstrap interval; the report writers on a hand-made results folder.

static Traj *hand_traj(Tokenizer *tok, int query, const char *text, int max_len) {
    int n, *ids = text_encode(tok, text, 0, &n);
    Traj *t = traj_new(max_len);
    t->query = query;
    t->ntok = t->nact = n;
    memcpy(t->tokens, ids, sizeof(int) * (size_t)n);
    free(ids);
    return t;
}

// Every token allowed and not ⊤, lengths within the task's, queries as laid out (k per query).
static int decoded_badly(Task *task, Traj *const *t, int n, int k, int first) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < t[i]->ntok; j++) bad += !task->allowed[t[i]->tokens[j]] || t[i]->tokens[j] == task->terminator;
        bad += t[i]->ntok < task->min_len || t[i]->ntok > task->max_len || t[i]->query != first + i / k;
    }
    return bad;
}

// Whole-word, case-insensitive occurrences of a lower-case word in a text (letters and digits
// make words), counted byte by byte.
static int has_word(const char *text, const char *word) {
    size_t wl = strlen(word);
    for (const char *p = text; *p; p++) {
        int start = p == text || !isalnum((unsigned char)p[-1]);
        size_t j = 0;
        while (start && j < wl && tolower((unsigned char)p[j]) == word[j]) j++;
        if (j == wl && !isalnum((unsigned char)p[wl])) return 1;
    }
    return 0;
}

static void test_continuation_eval(void) {
    const char *data = inputs_or_skip("continuation evaluation");
    if (!data) return;
    Task *task = &task_continuation;
    TaskOptions opt = { .data_path = data, .seed = 1, .quiet = 1 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    // 2 prompts x 3 hand sentences: log P by plain forwards, the diversity figures by eval.c on
    // the same texts.
    static const char *const texts[6] = { " The cat sat on the mat", " A dog ran home", " The cat ran home",
                                          " It was", " It was", " Nobody knew why" };
    Traj *t[6];
    for (int i = 0; i < 6; i++) t[i] = hand_traj(tok, 950 + i / 3, texts[i], task->max_len);
    TfIdf *idf = continuation_idf(task);
    ContMetrics m;
    continuation_metrics(task, idf, t, 2, 3, &m);
    double mean = 0, max = 0, div = 0, d2 = 0, sb = 0, tokens = 0;
    for (int q = 0; q < 2; q++) {
        int xlen;
        const int *x = task->prompt(task, 950 + q, &xlen);
        double best = -INFINITY;
        for (int j = 0; j < 3; j++) {
            double v = direct_log_p(task->base, x, xlen, t[q * 3 + j]->tokens, t[q * 3 + j]->ntok, &task->terminator, 1, task->allowed);
            mean += v / 6;
            best = v > best ? v : best;
            tokens += t[q * 3 + j]->ntok / 6.0;
        }
        max += best / 2;
        div += tfidf_diversity(idf, texts + 3 * q, 3) / 2;
        d2 += distinct_n(texts + 3 * q, 3, 2) / 2;
        sb += self_bleu4(texts + 3 * q, 3) / 2;
    }
    CHECK(fabs(m.logp_mean - mean) < 1e-3 * (1 + fabs(mean)) && fabs(m.logp_max - max) < 1e-3 * (1 + fabs(max)),
          "log P mean %.5f max %.5f, plain forwards %.5f %.5f", m.logp_mean, m.logp_max, mean, max);
    CHECK(fabs(m.diversity - div) < 1e-12 && fabs(m.distinct2 - d2) < 1e-12 && fabs(m.self_bleu - sb) < 1e-12 && fabs(m.mean_tokens - tokens) < 1e-12,
          "diversity %.6f distinct-2 %.6f self-BLEU %.6f tokens %.3f; want %.6f %.6f %.6f %.3f", m.diversity, m.distinct2, m.self_bleu,
          m.mean_tokens, div, d2, sb, tokens);
    CHECK(div > 0.2 && div < 1, "hand diversity %.4f is not between the extremes", div);
    // The IDF comes from the 950 training prompts: "cat" counted here word by word.
    int df = 0;
    for (int q = 0; q < task->num_train; q++) {
        int len;
        const int *x = task->prompt(task, q, &len);
        char *s = decode(tok, x + 1, len - 1);
        df += has_word(s, "cat");
        free(s);
    }
    double want_idf = log(951.0 / (1 + df)) + 1;
    CHECK(fabs(tfidf_idf(idf, "cat", 3) - want_idf) < 1e-12, "idf(cat) %.6f, want %.6f (df %d)", tfidf_idf(idf, "cat", 3), want_idf, df);
    tfidf_free(idf);
    for (int i = 0; i < 6; i++) traj_free(t[i]);
    // No decoding method writes a disallowed token (2 prompts): greedy, nucleus, tempered, beams.
    static const SamplerConfig samplers[3] = { { 0.0f, 0, 1.0f, 0 }, { 1.0f, 0, 0.95f, 0 }, { 0.8f, 0, 1.0f, 0 } };
    for (int s = 0; s < 3; s++) {
        Traj **d = text_sample_queries(task, task->base, 970, 2, 8, &samplers[s], 3);
        CHECK(decoded_badly(task, d, 16, 8, 970) == 0, "sampler %d writes a disallowed token or a bad length", s);
        text_free_trajectories(d, 16);
    }
    static const BeamConfig beams[3] = { { 8, 1, 0.0f }, { 40, 1, 0.0f }, { 8, 4, 1.0f } };
    for (int b = 0; b < 3; b++) {
        int n = beams[b].beams, found, query = 970 + b;
        Traj **d = gfn_malloc(sizeof(Traj *) * (size_t)n);
        float *lq = gfn_malloc(sizeof(float) * (size_t)n);
        for (int i = 0; i < n; i++) d[i] = traj_new(task->max_len);
        beam_search(task->base, task, &query, 1, &beams[b], d, lq, &found);
        CHECK(found == n && decoded_badly(task, d, found, n, query) == 0, "beams %d groups %d: %d found, or a disallowed token",
              n, beams[b].groups, found);
        text_free_trajectories(d, n);
        free(lq);
    }
    tokenizer_free(tok);
    task->cleanup(task);
}

static void test_infill_eval(void) {
    const char *data = inputs_or_skip("infill evaluation");
    if (!data) return;
    Task *task = &task_infill;
    TaskOptions opt = { .data_path = data, .seed = 1, .quiet = 1 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    // Two stories with a true s4; per story the true s4 itself and a hand sentence that runs on.
    // (BLEU-4 of a sentence with itself is below 1 when it has fewer than 4 words: nltk's method1.)
    int q[2], found = 0, len;
    for (int s = task->num_train; s < task->num_train + task->num_test && found < 2; s++) if (infill_true_middle(task, s, &len)) q[found++] = s;
    if (!CHECK(found == 2, "fewer than 2 evaluated stories with a true 4th sentence")) { tokenizer_free(tok); task->cleanup(task); return; }
    Traj *t[4];
    char *ref[2];
    for (int i = 0; i < 2; i++) {
        const int *mid = infill_true_middle(task, q[i], &len);
        char *s = decode(tok, mid, len);
        ref[i] = copy_text(s + 1);   // " s4" -> "s4"
        free(s);
        t[2 * i] = traj_new(task->max_len);
        t[2 * i]->query = q[i];
        t[2 * i]->ntok = t[2 * i]->nact = len;
        memcpy(t[2 * i]->tokens, mid, sizeof(int) * (size_t)len);
        t[2 * i + 1] = hand_traj(tok, q[i], " He left the house. Then he came back", task->max_len);
    }
    // Stories must be consecutive queries for the (count, k) layout: evaluate each alone.
    for (int cut = 0; cut <= 1; cut++) {
        const char *hand = cut ? "He left the house." : "He left the house. Then he came back";
        for (int i = 0; i < 2; i++) {
            double per_story[4];
            infill_metrics(task, t + 2 * i, 1, 2, cut, per_story);
            double want[3] = { (bleu4(ref[i], ref[i]) + bleu4(ref[i], hand)) / 2, (1 + gleu(ref[i], hand)) / 2, (1 + chrf(ref[i], hand)) / 2 };
            CHECK(fabs(per_story[0] - want[0]) < 1e-12 && fabs(per_story[1] - want[1]) < 1e-12 && fabs(per_story[2] - want[2]) < 1e-12,
                  "story %d cut %d: BLEU %.6f GLEU %.6f chrF %.6f, want %.6f %.6f %.6f", q[i], cut, per_story[0], per_story[1],
                  per_story[2], want[0], want[1], want[2]);
            CHECK(per_story[3] > 0 && per_story[3] < 1, "story %d: BERTScore %.4f (one identical sample of two)", q[i], per_story[3]);
        }
    }
    double same[4];
    Traj *gold2[2] = { t[0], t[0] };
    infill_metrics(task, gold2, 1, 2, 0, same);
    CHECK(fabs(same[0] - bleu4(ref[0], ref[0])) < 1e-12 && fabs(same[1] - 1) < 1e-12 && fabs(same[2] - 1) < 1e-12 && fabs(same[3] - 1) < 1e-4,
          "the true sentence itself: %.6f %.6f %.6f %.6f, want BLEU-4 of itself (short ones < 1), then 1", same[0], same[1], same[2], same[3]);
    for (int i = 0; i < 4; i++) traj_free(t[i]);
    free(ref[0]); free(ref[1]);
    tokenizer_free(tok);
    task->cleanup(task);
}

static void test_bootstrap(void) {
    static const double x[6] = { 1, 2, 3, 4, 10, 0.5 };
    double lo, hi, lo2, hi2;
    bootstrap_ci(x, 6, 1000, 7, &lo, &hi);
    bootstrap_ci(x, 6, 1000, 7, &lo2, &hi2);
    CHECK(lo == lo2 && hi == hi2, "not deterministic: [%g, %g] then [%g, %g]", lo, hi, lo2, hi2);
    // The definition again: 1000 resampled means with the same draws, the 25th and the 974th.
    Rng rng;
    rng_seed(&rng, 7);
    double means[1000];
    for (int r = 0; r < 1000; r++) {
        double sum = 0;
        for (int i = 0; i < 6; i++) sum += x[rng_below(&rng, 6)];
        means[r] = sum / 6;
    }
    for (int i = 1; i < 1000; i++)
        for (int j = i; j > 0 && means[j - 1] > means[j]; j--) { double a = means[j]; means[j] = means[j - 1]; means[j - 1] = a; }
    CHECK(lo == means[25] && hi == means[974], "[%g, %g], want [%g, %g]", lo, hi, means[25], means[974]);
    double mean = (1 + 2 + 3 + 4 + 10 + 0.5) / 6.0;
    CHECK(lo < mean && mean < hi && lo >= 0.5 && hi <= 10, "[%g, %g] does not hold the mean %g", lo, hi, mean);
    static const double c[3] = { 2.5, 2.5, 2.5 };
    bootstrap_ci(c, 3, 1000, 1, &lo, &hi);
    CHECK(lo == 2.5 && hi == 2.5, "constant values: [%g, %g]", lo, hi);
}

static void write_text_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    size_t len;
    GfnError err;
    unsigned char *b = read_file(path, &len, &err);
    return b ? (char *)b : copy_text("");
}

static void test_text_reports(void) {
    const char *dir = "tests_tmp_texteval";
    mkdir(dir, 0755);
    static const char base_common[] =
        "method greedy logp_mean -10 logp_max -10 diversity 0 distinct2 0.1 self_bleu 1\n"
        "method sample-t1 logp_mean -80 logp_max -30 diversity 0.93 distinct2 0.95 self_bleu 0.01\n"
        "method tempered-0.80 logp_mean -50 logp_max -20 diversity 0.8 distinct2 0.9 self_bleu 0.02\n"
        "method beam8 logp_mean -8 logp_max -6 diversity 0.5 distinct2 0.9 self_bleu 0.05\n"
        "method beam40 logp_mean -7 logp_max -6 diversity 0.55 distinct2 0.9 self_bleu 0.05\n"
        "method diverse-beam logp_mean -9 logp_max -6 diversity 0.6 distinct2 0.9 self_bleu 0.05\n"
        "wall_s 100\n";
    char text[2048];
    for (int s = 1; s <= 2; s++) {
        snprintf(text, sizeof text, "method base\nseed %d\nprompts 50\nmethod nucleus logp_mean %d logp_max -20 diversity 0.9 distinct2 0.9 "
                 "self_bleu 0.01\n%scommand ./gfn train continuation --steps 0 --baselines 2 -s %d\n", s, s == 1 ? -60 : -62, base_common, s);
        char name[32];
        snprintf(name, sizeof name, "base_s%d.txt", s);
        write_text_file(dir, name, text);
        snprintf(text, sizeof text, "method subtb-0.80\nseed %d\nmethod policy logp_mean %d logp_max -15 diversity %s distinct2 0.8 self_bleu 0.02\n"
                 "sample x ||| y.\nwall_s 300\ncommand ./gfn train continuation -s %d\n", s, s == 1 ? -40 : -42, s == 1 ? "0.9" : "0.88", s);
        snprintf(name, sizeof name, "subtb-0.80_s%d.txt", s);
        write_text_file(dir, name, text);
    }
    write_text_file(dir, "subtb-0.95_s1.txt", "method subtb-0.95\nseed 1\nmethod policy logp_mean -5 logp_max -3 diversity 0.7 distinct2 0.5 self_bleu 0.1\nwall_s 50\n");
    write_text_file(dir, "NOTES.md", "We tried a hand-made folder.\n");
    GfnError err = { { 0 } };
    int failed = continuation_report(dir, "tests_tmp_texteval_c.md", "tests_tmp_texteval_c.svg", &err);
    CHECK(!failed, "continuation report: %s", err.msg);
    char *md = read_text("tests_tmp_texteval_c.md"), *svg = read_text("tests_tmp_texteval_c.svg");
    static const char *const want[] = {
        ("| method | runs | log P mean | log P max | diversity | distinct-2 | self-BLEU-4 |\n|---|---|---|---|---|---|---|\n"
         "| nucleus | 2 | -61.00 ± 1.41 | -20.00 ± 0.00 | 0.900 ± 0.000 | 0.900 ± 0.000 | 0.010 ± 0.000 |\n"
         "| greedy | 2 | -10.00 ± 0.00 | -10.00 ± 0.00 | 0.000 ± 0.000 | 0.100 ± 0.000 | 1.000 ± 0.000 |\n"),
        ("| subtb-0.80 | 2 | -41.00 ± 1.41 | -15.00 ± 0.00 | 0.890 ± 0.014 | 0.800 ± 0.000 | 0.020 ± 0.000 |\n"
         "| subtb-0.95 | 1 | -5.00 ± 0.00 | -3.00 ± 0.00 | 0.700 ± 0.000 | 0.500 ± 0.000 | 0.100 ± 0.000 |\n"),
        "diversity — **met**; GFlowNet lies above beam search (8 and 40 beams) and diverse beam search — **met**.\n",
        " subtb-0.95: no tempered-0.95 row;",
        "## What was tried\n\nWe tried a hand-made folder.\n",
        "## Runs (measured wall time; 850 s in all)\n",
        "| base | 2 | 100 | `./gfn train continuation --steps 0 --baselines 2 -s 2` |\n",
        "![log P against diversity](tests_tmp_texteval_c.svg)\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) CHECK(strstr(md, want[i]), "continuation report lacks:\n%s\n--- it reads:\n%s", want[i], md);
    int circles = 0;
    for (const char *p = svg; (p = strstr(p, "<circle")) != NULL; p++) circles++;
    CHECK(!strncmp(svg, "<svg", 4) && circles == 18 && strstr(svg, ">subtb-0.95</text>"), "plot: %d dots (want 9 points + 9 legend dots)", circles);
    failed = continuation_report(dir, "tests_tmp_texteval_c.md", "tests_tmp_texteval_c.svg", &err);
    char *md2 = read_text("tests_tmp_texteval_c.md");
    CHECK(!failed && !strcmp(md, md2), "the same folder gives another report");
    free(md); free(md2); free(svg);
    // A beam point beyond every GFlowNet point: not met.
    write_text_file(dir, "subtb-0.95_s1.txt", "method subtb-0.95\nseed 1\nmethod policy logp_mean -20 logp_max -3 diversity 0.52 distinct2 0.5 self_bleu 0.1\nwall_s 50\n");
    failed = continuation_report(dir, "tests_tmp_texteval_c.md", "tests_tmp_texteval_c.svg", &err);
    md = read_text("tests_tmp_texteval_c.md");
    CHECK(!failed && strstr(md, "beam8 (log P -8.00, diversity 0.500): GFlowNet not above;") && strstr(md, "diverse beam search — **not met**."),
          "beams not met:\n%s", md);
    free(md);
    static const char *const cfiles[] = { "base_s1.txt", "base_s2.txt", "subtb-0.80_s1.txt", "subtb-0.80_s2.txt", "subtb-0.95_s1.txt" };
    for (size_t i = 0; i < sizeof cfiles / sizeof *cfiles; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, cfiles[i]);
        remove(path);
    }
    // Infill: one seed of each method.
    write_text_file(dir, "prompt_s1.txt", "method prompt\nseed 1\nstories 99\n"
        "method prompt-template bleu4 0.01 bleu4_lo 0.005 bleu4_hi 0.015 gleu 0.02 gleu_lo 0.01 gleu_hi 0.03 chrf 0.1 chrf_lo 0.09 chrf_hi 0.11 "
        "bertscore 0 bertscore_lo -0.05 bertscore_hi 0.05 mean_tokens 12\n"
        "method prompt-beginning bleu4 0.01 bleu4_lo 0.005 bleu4_hi 0.015 gleu 0.02 gleu_lo 0.01 gleu_hi 0.03 chrf 0.1 chrf_lo 0.09 chrf_hi 0.11 "
        "bertscore 0 bertscore_lo -0.05 bertscore_hi 0.05 mean_tokens 12\nwall_s 40\n");
    write_text_file(dir, "sft_s1.txt", "method sft\nseed 1\nmethod policy bleu4 0.012 bleu4_lo 0.01 bleu4_hi 0.014 gleu 0.025 gleu_lo 0.02 gleu_hi 0.03 "
        "chrf 0.12 chrf_lo 0.11 chrf_hi 0.13 bertscore 0.02 bertscore_lo 0.01 bertscore_hi 0.03\nwall_s 60\n");
    write_text_file(dir, "subtb_s1.txt", "method subtb\nseed 1\nmethod policy bleu4 0.019 bleu4_lo 0.01 bleu4_hi 0.03 gleu 0.05 gleu_lo 0.04 gleu_hi 0.06 "
        "chrf 0.15 chrf_lo 0.14 chrf_hi 0.16 bertscore 0.1 bertscore_lo 0.06 bertscore_hi 0.14\nwall_s 70\n");
    failed = infill_report(dir, "tests_tmp_texteval_i.md", &err);
    CHECK(!failed, "infill report: %s", err.msg);
    md = read_text("tests_tmp_texteval_i.md");
    static const char *const iwant[] = {
        "| prompt-template | 1 | 0.0100 ± 0.0000 [0.0050, 0.0150] | 0.0200 ± 0.0000 [0.0100, 0.0300] | 0.1000 ± 0.0000 [0.0900, 0.1100] | "
        "0.0000 ± 0.0000 [-0.0500, 0.0500] | 0.010 / 0.022 / 0.005 |\n",
        "| subtb | 1 | 0.0190 ± 0.0000 [0.0100, 0.0300] | 0.0500 ± 0.0000 [0.0400, 0.0600] | 0.1500 ± 0.0000 [0.1400, 0.1600] | "
        "0.1000 ± 0.0000 [0.0600, 0.1400] | 0.019 / 0.031 / 0.102 |\n",
        "| prompt-beginning | 1 |",
        "subtb: gleu GFlowNet 0.0500 vs SFT 0.0250 vs prompting 0.0200 (in order), intervals apart;",
        "with intervals apart from prompting's — **met**.\n",
        "## Runs (measured wall time; 170 s in all)\n",
    };
    for (size_t i = 0; i < sizeof iwant / sizeof *iwant; i++) CHECK(strstr(md, iwant[i]), "infill report lacks:\n%s\n--- it reads:\n%s", iwant[i], md);
    free(md);
    static const char *const ifiles[] = { "prompt_s1.txt", "sft_s1.txt", "subtb_s1.txt", "NOTES.md" };
    for (size_t i = 0; i < sizeof ifiles / sizeof *ifiles; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, ifiles[i]);
        remove(path);
    }
    remove(dir);
    remove("tests_tmp_texteval_c.md"); remove("tests_tmp_texteval_c.svg"); remove("tests_tmp_texteval_i.md");
}


// ----------------------------------------------------------------------------------------------
// subj's classifier, M-step and few-shot prompts.

// The M-step's loss −log softmax(s_0, s_1)[label], s_l = log p(Y_l | C Z): its scores against plain
// forwards, its value against the formula, and its LoRA gradient against central differences.
static void test_subj_pair_loss(void) {
    GPTConfig cfg = { 61, 32, 2, 2, 16 };
    GPT *model = gpt_new_random(cfg, 5);
    static const int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
    LoRA *lora = gpt_lora_attach(model, 2, 4.0f, 0, all, 6);
    Rng rng;
    rng_seed(&rng, 7);
    for (size_t i = 0; i < lora->num_parameters; i++) lora->memory[i] = 0.3f * rng_normal(&rng);   // B too: not at the zero start
    int ctx[3][8], z[3][4], y0[3] = { 5, 9, 2 }, y1[2] = { 5, 11 }, label[3] = { 1, 0, 1 };
    const int *y[2] = { y0, y1 };
    int y_len[2] = { 3, 2 }, ctx_len[3] = { 8, 5, 6 }, z_len[3] = { 4, 0, 2 };
    ScoredText rows[3];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 8; j++) ctx[i][j] = rng_below(&rng, 61);
        for (int j = 0; j < 4; j++) z[i][j] = rng_below(&rng, 61);
        rows[i] = (ScoredText){ ctx[i], ctx_len[i], z[i], z_len[i], NULL, 0 };
    }
    float scores[6];
    gpt_zero_grad(model);
    double loss = subj_pair_loss(model, rows, y, y_len, label, 3, scores, 1), want = 0;
    for (int i = 0; i < 3; i++) {
        double s[2];
        for (int l = 0; l < 2; l++) {
            int cz[12];   // C Z as the context: log p(Y_l | C Z)
            memcpy(cz, ctx[i], sizeof(int) * (size_t)ctx_len[i]);
            memcpy(cz + ctx_len[i], z[i], sizeof(int) * (size_t)z_len[i]);
            s[l] = direct_log_p(model, cz, ctx_len[i] + z_len[i], NULL, 0, y[l], y_len[l], NULL);
            CHECK(fabs(s[l] - scores[2 * i + l]) < 1e-4 * (1 + fabs(s[l])), "row %d label %d: score %.6f, plain forward %.6f", i, l, scores[2 * i + l], s[l]);
        }
        want += (log(exp(s[0]) + exp(s[1])) - s[label[i]]) / 3;
    }
    CHECK(fabs(loss - want) < 1e-5 * (1 + want), "loss %.7f, formula %.7f", loss, want);
    int checked = 0, bad = 0;
    for (size_t i = 0; i < lora->num_parameters; i += lora->num_parameters / 23) {
        float keep = lora->memory[i], eps = 1e-2f;
        lora->memory[i] = keep + eps;
        double up = subj_pair_loss(model, rows, y, y_len, label, 3, NULL, 0);
        lora->memory[i] = keep - eps;
        double down = subj_pair_loss(model, rows, y, y_len, label, 3, NULL, 0);
        lora->memory[i] = keep;
        double fd = (up - down) / (2 * eps), g = lora->grad_memory[i];
        bad += !CHECK(fabs(fd - g) < 2e-3 + 2e-2 * fabs(fd), "LoRA parameter %zu: gradient %.6f, finite difference %.6f", i, g, fd);
        checked++;
    }
    printf("   subj pair loss: %d LoRA gradients against finite differences, %d off\n", checked, bad);
    gpt_free(model);
}

// A tiny subj set-up: a random 1-layer model over the shipped tokenizer, reviews whose label is a
// word ("great" subjective, "table" objective). Returns 0, or 1 after a SKIP.
static int subj_tiny_task(Task *task, int max_seq_len) {
    if (!exists("weights/tokenizer.bin")) { test_skip("subj tiny", "no weights/tokenizer.bin"); return 1; }
    static const char *const words[2] = { "table", "great" }, *const fill[4] = { "the", "film", "is", "a" };
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s", test_path("subj_tiny"));
    snprintf(path, sizeof path, "%s/subj", dir);
    mkdir(dir, 0700);
    mkdir(path, 0700);
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof path, "%s/subj/%s", dir, f ? "test.jsonl" : "train.10.jsonl");
        FILE *out = fopen(path, "w");
        if (!CHECK(out != NULL, "cannot write %s", path)) return 1;
        for (int r = 0; r < (f ? 2000 : 10); r++) {
            int l = r % 2;
            fprintf(out, "{\"text\": \"%s %s %s", fill[r % 4], words[l], fill[(r / 2) % 4]);
            for (int k = 0; k < r % 3; k++) fprintf(out, " %s", fill[(r + k) % 4]);   // X of different lengths
            fprintf(out, " .\", \"label\": %d}\n", l);
        }
        fclose(out);
    }
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    if (!CHECK(tok != NULL, "%s", err.msg)) return 1;
    GPTConfig cfg = { tokenizer_vocab_size(tok), max_seq_len, 1, 2, 32 };
    tokenizer_free(tok);
    GPT *model = gpt_new_random(cfg, 3);
    const char *ckpt = test_path("subj_tiny.ckpt");
    int saved = gpt_save(model, ckpt, &err);
    gpt_free(model);
    if (!CHECK(saved == 0, "%s", err.msg)) return 1;
    TaskOptions opt = { .model_path = ckpt, .tokenizer_path = "weights/tokenizer.bin", .data_path = dir, .seed = 2, .quiet = 1, .num_labelled = 10 };
    return !CHECK(task_subj.setup(task, &opt, &err) == 0, "setup: %s", err.msg);
}

static double subj_train_accuracy(Task *task, GPT *classifier, Traj *const *z, int k) {
    float *margin = gfn_malloc(sizeof(float) * (size_t)task->num_train * k);
    subj_margins(task, classifier, z, task->num_train, k, margin);
    int right = 0;
    for (int q = 0; q < task->num_train; q++) right += subj_vote(margin + (size_t)q * k, k) == subj_label(task, q);
    free(margin);
    return (double)right / task->num_train;
}

// The E-step then the M-step on the tiny set-up raise the accuracy of the 10-Z vote on the
// labelled examples over the E-step alone (the base as p(Y | X Z)); the margins of the shared-X
// pass equal plain forwards.
static void test_subj_em(void) {
    Task *task = &task_subj;
    if (subj_tiny_task(task, 96)) return;
    GPT *policy = copy_model(task->base);
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.steps = 4; cfg.batch = 8; cfg.samples_per_query = 4; cfg.lora_rank = 4; cfg.lr = 1e-3f; cfg.warmup = 1; cfg.quiet = 1; cfg.seed = 1;
    float log_z[10] = { 0 };
    GfnError err = { { 0 } };
    CHECK(gfn_train(task, policy, &cfg, log_z, &err) == 0, "E-step: %s", err.msg);
    enum { K = 10 };
    Traj **z = text_sample_queries(task, policy, 0, task->num_train, K, &(SamplerConfig){ 1.0f, 0, 1.0f, 0 }, 3);
    // The shared-X margins against plain forwards of X Z Y_l.
    GfnError terr = { { 0 } };
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &terr);
    int *y[2], y_len[2];
    for (int l = 0; l < 2; l++) y[l] = text_encode(tok, l ? ", so it is subjective." : ", so it is objective.", 0, &y_len[l]);
    Traj *pair[2] = { z[0], z[K] };   // queries 0 and 1, their first Z
    float margin[2];
    subj_margins(task, task->base, pair, 2, 1, margin);
    for (int i = 0; i < 2; i++) {
        int len;
        const int *x = task->prompt(task, pair[i]->query, &len);
        double want = direct_log_p(task->base, x, len, pair[i]->tokens, pair[i]->ntok, y[1], y_len[1], NULL) -
                      direct_log_p(task->base, x, len, pair[i]->tokens, pair[i]->ntok, y[0], y_len[0], NULL);
        CHECK(fabs(margin[i] - want) < 1e-4 * (1 + fabs(want)), "query %d: margin %.6f, plain forwards %.6f", pair[i]->query, margin[i], want);
    }
    // Few-shot prompts: within the context with the longer label, their demonstrations a prefix of
    // the longest ones, some but not all of the 10 fitting; the cached margins equal plain forwards.
    int maxT = gpt_config(task->base).max_seq_len, longest_y = y_len[0] > y_len[1] ? y_len[0] : y_len[1];
    int *prompt = gfn_malloc(sizeof(int) * (size_t)maxT), *most = gfn_calloc((size_t)maxT, sizeof(int)), most_len = 0, most_demos = -1, lo = 99, hi = -1;
    int total = task->num_train + task->num_test, over = 0;
    for (int q = 0; q < total; q++) {
        int d, len = subj_fewshot_prompt(task, q, prompt, maxT, &d), x_len;
        task->prompt(task, q, &x_len);
        over += len + longest_y > maxT;
        if (d > most_demos) { most_demos = d; most_len = len - (x_len - 1); memcpy(most, prompt, sizeof(int) * (size_t)most_len); }
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    int not_prefix = 0;
    for (int q = 0; q < total; q++) {
        int d, len = subj_fewshot_prompt(task, q, prompt, maxT, &d), x_len;
        task->prompt(task, q, &x_len);
        not_prefix += memcmp(prompt, most, sizeof(int) * (size_t)(len - (x_len - 1))) != 0;
    }
    CHECK(over == 0 && not_prefix == 0 && lo >= 1 && hi < 10 && lo < hi, "few-shot: %d prompts too long, %d not a prefix, %d..%d demonstrations",
          over, not_prefix, lo, hi);
    float fm[3];
    subj_fewshot_margins(task, task->num_train, 3, fm);
    for (int i = 0; i < 3; i++) {
        int q = task->num_train + i, len = subj_fewshot_prompt(task, q, prompt, maxT, NULL);
        double want = direct_log_p(task->base, prompt, len, NULL, 0, y[1], y_len[1], NULL) - direct_log_p(task->base, prompt, len, NULL, 0, y[0], y_len[0], NULL);
        CHECK(fabs(fm[i] - want) < 1e-4 * (1 + fabs(want)), "few-shot query %d: margin %.6f, plain forwards %.6f", q, fm[i], want);
    }
    printf("   subj few-shot on the tiny set-up: %d..%d demonstrations fit in %d tokens\n", lo, hi, maxT);
    free(prompt); free(most); free(y[0]); free(y[1]);
    tokenizer_free(tok);
    double before = subj_train_accuracy(task, task->base, z, K);
    GPT *m_step = copy_model(task->base);
    Traj **pool = text_sample_queries(task, policy, 0, task->num_train, K, &(SamplerConfig){ 1.0f, 0, 1.0f, 0 }, 4);
    subj_fit_classifier(task, m_step, pool, task->num_train * K, 150, 5);
    double after = subj_train_accuracy(task, m_step, z, K);
    printf("   subj E then M on the tiny model: training accuracy %.2f (E alone) -> %.2f (E + M)\n", before, after);
    CHECK(after > before && after >= 0.9, "training accuracy %.2f -> %.2f", before, after);
    text_free_trajectories(z, task->num_train * K);
    text_free_trajectories(pool, task->num_train * K);
    gpt_free(m_step);
    gpt_free(policy);
    task->cleanup(task);
}

// `gfn report subj` on a hand-made folder: means ± std over seeds, the claim met (E + M beats SFT by
// 10 points at N = 10 and 20 with std 2 over 3 seeds: 2 standard errors = 2 sqrt(2 · 0.02² / 3) =
// 3.3 points; E + M >= E alone at every N), then not met when E + M falls below E alone at N = 50.
static void test_subj_report(void) {
    const char *dir = test_path("subj_report");
    mkdir(dir, 0755);
    char text[2048], name[64], md_path[256], svg_path[256];
    for (int seed = 1; seed <= 3; seed++) {
        double d = 0.02 * (seed - 2);   // -0.02, 0, +0.02: std 0.02
        int n = 0;
        n += snprintf(text + n, sizeof text - (size_t)n, "method gfn\nseed %d\n", seed);
        for (int c = 0; c < 3; c++) {
            int N = c == 0 ? 10 : c == 1 ? 20 : 50;
            n += snprintf(text + n, sizeof text - (size_t)n, "method e-vote/%d acc %.4f train_acc 0.6 rows 1000\nmethod em-vote/%d acc %.4f train_acc 1 rows 1000\n"
                          "method sft/%d acc %.4f train_acc 1 rows 1000\n", N, 0.60 + d, N, 0.72 + d, N, 0.62 + d);
        }
        n += snprintf(text + n, sizeof text - (size_t)n, "method few-shot/10 acc 0.55 demos 2.5 demos_min 2 demos_max 3 rows 1000\nwall_s 100\ncommand ./gfn train subj -s %d\n", seed);
        snprintf(name, sizeof name, "gfn_s%d.txt", seed);
        write_text_file(dir, name, text);
    }
    snprintf(md_path, sizeof md_path, "%s.md", dir);
    snprintf(svg_path, sizeof svg_path, "%s.svg", dir);
    GfnError err = { { 0 } };
    int failed = subj_report(dir, md_path, svg_path, &err);
    char *md = read_text(md_path), *svg = read_text(svg_path);
    static const char *const want[] = {
        "Test accuracy (%) on the first 1000 rows of subj/test.jsonl",
        "| sft | 62.0 ± 2.0 (3) | 62.0 ± 2.0 (3) | 62.0 ± 2.0 (3) | 64.3 |\n",
        "| em-vote | 72.0 ± 2.0 (3) | 72.0 ± 2.0 (3) | 72.0 ± 2.0 (3) | 71.4 (GFlowNet) |\n",
        "| zero-shot | — | — | — | — |\n",
        "| few-shot | 55.0 ± 0.0 (3) | — | — | — |\n",
        "N = 10: 2.50;",
        "N = 10: em-vote − sft = 10.0 points, 2 standard errors 3.3 (beats);",
        "N = 50: E + M 72.0 >= E alone 60.0;",
        "E + M >= E alone — **met**.\n",
        "## Runs (measured wall time; 300 s in all)\n",
    };
    CHECK(!failed, "subj report: %s", err.msg);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) CHECK(strstr(md, want[i]), "subj report lacks:\n%s\n--- it reads:\n%s", want[i], md);
    CHECK(!strncmp(svg, "<svg", 4) && strstr(svg, ">em-vote</text>") && !strstr(svg, ">few-shot</text>"), "plot: the complete series only");
    free(md); free(svg);
    write_text_file(dir, "gfn_s4.txt", "method gfn\nseed 4\nmethod em-vote/50 acc 0.10 rows 1000\nmethod e-vote/50 acc 0.60 rows 1000\nwall_s 1\n");
    failed = subj_report(dir, md_path, svg_path, &err);
    md = read_text(md_path);
    CHECK(!failed && strstr(md, "N = 50: E + M 56.5 < E alone 60.0;") && strstr(md, "— **not met**.\n"), "E + M below E alone:\n%s", md);
    free(md);
}

void test_texttasks(void) {
    test_continuation();
    test_infill();
    test_subj();
    test_subj_pair_loss();
    test_subj_em();
    test_subj_report();
    test_continuation_eval();
    test_infill_eval();
    test_bootstrap();
    test_text_reports();
}
