// tests/test_probe.c — the arithmetic probes (tasks/arithmetic_probe.c): the wrong chains are the
// ones specified (hand-written strings), the probe's log R of a chain (one plain forward) equals the
// task's log_reward of the same trajectory (the KV-cache path), the next-step check accepts exactly
// the right continuation, and a whole probe run on a tiny model counts every question and step.
// The base model is a random tiny GPT with a BPE tokenizer trained on generated worked questions.
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Scratch files in this run's own folder (test_path), so two runs never collide.
#define probe_corpus test_path("probe_corpus.txt")
#define probe_tok test_path("probe_tok.bin")
#define probe_model test_path("probe_model.ckpt")

// The chains' texts, written by hand from their definitions.
static void test_chain_text(void) {
    static const struct { ArithQuestion q; ArithChain kind; int at, delta; const char *text; int last; } cases[] = {
        { { 4, { 6, 0, 4, 8 }, { '-', '-', '-' } }, ARITH_CHAIN_FULL, 0, 0, "6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6", -6 },
        { { 4, { 6, 0, 4, 8 }, { '-', '-', '-' } }, ARITH_CHAIN_TRUNCATED, 0, 0, "6 - 0 = 6, 6 - 4 = 2", 2 },
        { { 4, { 6, 0, 4, 8 }, { '-', '-', '-' } }, ARITH_CHAIN_CORRUPTED, 2, 1, "6 - 0 = 6, 7 - 4 = 3, 3 - 8 = -5", -5 },
        { { 4, { 6, 0, 4, 8 }, { '-', '-', '-' } }, ARITH_CHAIN_CORRUPTED, 3, -1, "6 - 0 = 6, 6 - 4 = 2, 1 - 8 = -7", -7 },
        { { 3, { 5, 9, 3 }, { '+', '-' } }, ARITH_CHAIN_TRUNCATED, 0, 0, "5 + 9 = 14", 14 },
        { { 3, { 5, 9, 3 }, { '+', '-' } }, ARITH_CHAIN_CORRUPTED, 2, -1, "5 + 9 = 14, 13 - 3 = 10", 10 },
        { { 3, { 0, 9, 7 }, { '-', '+' } }, ARITH_CHAIN_CORRUPTED, 2, 1, "0 - 9 = -9, -8 + 7 = -1", -1 },
        { { 5, { 1, 2, 3, 4, 5 }, { '+', '+', '-', '+' } }, ARITH_CHAIN_CORRUPTED, 3, 1, "1 + 2 = 3, 3 + 3 = 6, 7 - 4 = 3, 3 + 5 = 8", 8 },
        { { 5, { 1, 2, 3, 4, 5 }, { '+', '+', '-', '+' } }, ARITH_CHAIN_TRUNCATED, 0, 0, "1 + 2 = 3, 3 + 3 = 6, 6 - 4 = 2", 2 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[256];
        int last = arith_chain_text(&cases[i].q, cases[i].kind, cases[i].at, cases[i].delta, text, sizeof text);
        CHECK(!strcmp(text, cases[i].text) && last == cases[i].last, "chain %zu: '%s' (last %d), want '%s' (last %d)", i, text, last,
              cases[i].text, cases[i].last);
    }
    // The full chain is the task's own rationale.
    ArithQuestion q = { 5, { 9, 4, 8, 9, 2 }, { '+', '-', '+', '-' } };
    char ours[256], task_text[256];
    arith_chain_text(&q, ARITH_CHAIN_FULL, 0, 0, ours, sizeof ours);
    arith_text(&q, ARITH_RATIONALE, task_text, sizeof task_text);
    CHECK(!strcmp(ours, task_text), "full chain '%s' != rationale '%s'", ours, task_text);
}

static int make_probe_model(void) {
    enum { LINES = 1500 };
    ArithQuestion *qs = gfn_calloc(LINES, sizeof(ArithQuestion));
    Text corpus = { NULL, 0, 0 };
    char line[256];
    for (int i = 0, made = arith_generate(17, 2, 5, LINES, NULL, 0, qs); i < made; i++) {
        arith_text(&qs[i], ARITH_WORKED, line, sizeof line);
        text_appendf(&corpus, "%s\n", line);
    }
    free(qs);
    GfnError err = { { 0 } };
    int written = write_file_atomic(probe_corpus, corpus.s, corpus.len, &err);
    free(corpus.s);
    if (written) { printf("corpus: %s\n", err.msg); return 1; }
    const char *paths[1] = { probe_corpus };
    Tokenizer *tok = tokenizer_train(paths, 1, 300, &err);
    if (!tok || tokenizer_save(tok, probe_tok, &err)) { printf("tokenizer: %s\n", err.msg); if (tok) tokenizer_free(tok); return 1; }
    GPTConfig config = { tokenizer_vocab_size(tok), 256, 2, 2, 32 };
    tokenizer_free(tok);
    GPT *model = gpt_new_random(config, 23);   // random weights: the equalities below hold for any model
    int rc = gpt_save(model, probe_model, &err);
    if (rc) printf("model: %s\n", err.msg);
    gpt_free(model);
    return rc;
}

// The text of the tokens of t that are actions (forced == 0) or that the calculator inserted (1).
static void traj_part(const Tokenizer *tok, const Traj *t, int forced, char *buf, size_t cap) {
    size_t len = 0;
    for (int j = 0; j < t->ntok; j++) {
        if (t->forced[j] != forced) continue;
        size_t bl;
        const unsigned char *b = tokenizer_token_bytes(tok, t->tokens[j], &bl);
        for (size_t k = 0; k < bl && len + 1 < cap; k++) buf[len++] = (char)b[k];
    }
    buf[len] = 0;
}

static void test_step_check(const Tokenizer *tok) {
    // Encoded by the tokenizer, and spelled byte by byte (ids 0..255 are the bytes): both accepted.
    size_t n;
    int *ids = tokenizer_encode(tok, ", 2 - 8 =", 9, 0, &n);
    CHECK(arith_step_check(tok, ids, (int)n, ", 2 - 8 ="), "the encoded step is rejected");
    free(ids);
    const char *want = ", 2 - 8 =";
    int bytes[16];
    for (int i = 0; want[i]; i++) bytes[i] = (unsigned char)want[i];
    CHECK(arith_step_check(tok, bytes, 9, want), "the step spelled byte by byte is rejected");
    static const char *const wrong[] = { ", 2 - 8", ", 2 - 8 = -6", ",2 - 8 =", ", 2 - 9 =", ", 3 - 8 =", ", 2 + 8 =",
                                         " 2 - 8 =", ", 12 - 8 =", ", 2 - 8 =.", ", 2 - 8 = ", "", ", -2 - 8 =" };
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        int *w = tokenizer_encode(tok, wrong[i], strlen(wrong[i]), 0, &n);
        CHECK(!arith_step_check(tok, w, (int)n, want), "'%s' accepted for '%s'", wrong[i], want);
        free(w);
    }
    int *first = tokenizer_encode(tok, " 6 - 0 =", 8, 0, &n);
    CHECK(arith_step_check(tok, first, (int)n, " 6 - 0 =") && !arith_step_check(tok, first, (int)n, ", 6 - 0 ="),
          "the first step's text (no comma) is not told from a later step's");
    free(first);
}

void test_probe(void) {
    test_chain_text();
    if (make_probe_model()) { CHECK(0, "could not make the tiny model"); return; }
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_load(probe_tok, &err);
    CHECK(tok != NULL, "tokenizer: %s", err.msg);
    if (!tok) return;
    test_step_check(tok);

    Task *task = &task_arithmetic;
    TaskOptions opt = { .model_path = probe_model, .tokenizer_path = probe_tok, .data_path = "none", .seed = 1,
                        .reward_floor = -13.815511f, .quiet = 1, .eval_n = 4 };
    if (task->setup(task, &opt, &err)) { CHECK(0, "setup: %s", err.msg); tokenizer_free(tok); return; }
    // The chains as trajectories: the actions spell the steps, the calculator's insertions the
    // values, and the probe's log R (a plain forward) equals the task's log_reward (the KV-cache path).
    static const struct { ArithChain kind; int at, delta; const char *actions, *inserted; } chains[] = {
        { ARITH_CHAIN_FULL, 0, 0, " 6 - 0 =, 6 - 4 =, 2 - 8 =", " 6 2 -6" },
        { ARITH_CHAIN_TRUNCATED, 0, 0, " 6 - 0 =, 6 - 4 =", " 6 2" },
        { ARITH_CHAIN_CORRUPTED, 2, 1, " 6 - 0 =, 7 - 4 =, 3 - 8 =", " 6 3 -5" },
        { ARITH_CHAIN_CORRUPTED, 3, -1, " 6 - 0 =, 6 - 4 =, 1 - 8 =", " 6 2 -7" },
    };
    ArithQuestion q = { 4, { 6, 0, 4, 8 }, { '-', '-', '-' } };
    int query = task->num_train;   // any query: the chain is scored in its reward context
    int clen, ylen;
    const int *y, *ctx = arith_reward_context(task, query, &clen, &y, &ylen);
    for (size_t c = 0; c < sizeof chains / sizeof *chains; c++) {
        Traj *t = traj_new(task->max_len);
        t->query = query;
        int bad = arith_chain_traj(task, tok, &q, chains[c].kind, chains[c].at, chains[c].delta, t);
        CHECK(!bad, "chain %zu does not fit", c);
        char acts[256], ins[256];
        traj_part(tok, t, 0, acts, sizeof acts);
        traj_part(tok, t, 1, ins, sizeof ins);
        CHECK(!strcmp(acts, chains[c].actions) && !strcmp(ins, chains[c].inserted), "chain %zu: actions '%s', inserted '%s'", c, acts, ins);
        task->log_reward(task, &t, 1);
        double ours = arith_probe_log_r(task->base, ctx, clen, t->tokens, t->ntok, y, ylen), theirs = t->log_r[t->nact];
        CHECK(fabs(ours - theirs) <= 1e-4 * (1 + fabs(theirs)), "chain %zu: probe log R %.6f, task log_reward %.6f", c, ours, theirs);
        // A prefix state too: state 1 (the first action and any insertion after it) against the
        // probe's log R of those tokens.
        int n1 = 1;
        while (n1 < t->ntok && t->forced[n1]) n1++;
        double one = arith_probe_log_r(task->base, ctx, clen, t->tokens, n1, y, ylen);
        CHECK(fabs(one - t->log_r[1]) <= 1e-4 * (1 + fabs(one)), "chain %zu state 1: probe %.6f, task %.6f", c, one, t->log_r[1]);
        // And the empty rationale (state 0, Y straight after X), the probe's "full > empty" column.
        double none = arith_probe_log_r(task->base, ctx, clen, t->tokens, 0, y, ylen);
        CHECK(fabs(none - t->log_r[0]) <= 1e-4 * (1 + fabs(none)), "chain %zu state 0: probe %.6f, task %.6f", c, none, t->log_r[0]);
        traj_free(t);
    }
    task->cleanup(task);

    // A whole run (probes 1 and 2) on 2 questions per set: every question and step counted.
    Text md = { NULL, 0, 0 };
    int rc = arith_probe(task, &opt, 2, 3, 0, &md, &err);
    CHECK(rc == 0, "arith_probe: %s", err.msg);
    if (rc == 0) {
        CHECK(strstr(md.s, "| 3 | 2 |") && strstr(md.s, "| 4 | 2 |") && strstr(md.s, "| 5 | 2 |"), "the tables do not count 2 questions per set:\n%s", md.s);
        const char *row = strstr(md.s, "| 3 | 2 |");   // part 1's row: 12 cells, the empty rationale's last
        int bars = 0;
        for (const char *c = row; c && *c && *c != '\n'; c++) bars += *c == '|';
        CHECK(bars == 14, "part 1's row has %d cells, want 13 (with full > empty, its mean log R, and full > truncated where "
              "truncating changes the value)", bars - 1);
        const char *steps = strstr(md.s, "## 2.");
        CHECK(steps && strstr(steps, "/2 (") && strstr(steps, "| — |"), "the step table lacks its cells:\n%s", md.s);
    }
    free(md.s);
    tokenizer_free(tok);
    remove(probe_corpus); remove(probe_tok); remove(probe_model);
}
