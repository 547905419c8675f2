// tests/test_texttasks.c — the text tasks (continuation, infill, subj) on the shipped base model and the
// shared data: the data splits and prompt texts against values counted independently (a one-off
// python count over the same files, quoted below), the allowed-token masks, sampling never
// writes a disallowed token, and every per-prefix reward equals a plain forward of that prefix's
// whole text.
#include "test.h"

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
    memcpy(row, ctx, sizeof(int) * (size_t)clen);
    memcpy(row + clen, z, sizeof(int) * (size_t)zlen);
    memcpy(row + clen + zlen, y, sizeof(int) * (size_t)ylen);
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
    SamplerConfig sc = { temp, 0, 1.0f };
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
    TaskOptions opt = { .data_path = data, .seed = 1, .quiet = 1, .num_labelled = 20 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
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

void test_texttasks(void) {
    test_continuation();
    test_infill();
    test_subj();
}
