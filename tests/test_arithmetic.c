// tests/test_arithmetic.c — the arithmetic task: the calculator, the generator, forced tokens, replay,
// the per-prefix reward against a plain forward, and a short fine-tuning run. The base model is
// made here: a BPE tokenizer trained on generated worked questions and a tiny GPT pretrained on
// them for a few seconds (never the test questions).
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ARITH_CORPUS test_path("arith_corpus.txt")
#define ARITH_TOK test_path("arith_tok.bin")
#define ARITH_MODEL test_path("arith_model.ckpt")

static void test_calculator(void) {
    static const struct { const char *text; int ok; long long value; } cases[] = {
        { "6 - 0 =", 1, 6 }, { " 6 + 3 =", 1, 9 }, { " -6 - 7 =", 1, -13 }, { "-4 + 9 =", 1, 5 },
        { "2 - -3 =", 1, 5 }, { "2 + -3 =", 1, -1 }, { "-2 - -3 =", 1, 1 }, { "-5 + -5 =", 1, -10 },
        { "2--3=", 1, 5 }, { "2-3=", 1, -1 }, { "0 - 0 =", 1, 0 }, { " 9 + 4 = 13, 13 - 8 =", 1, 5 },
        { " 5 - 9 = -4, -4 - 3 =", 1, -7 }, { "x, 123456789 + 1 =", 1, 123456790 },
        { "999999999 - -999999999 =", 1, 1999999998LL },
        { "1 + 2 + 3 =", 0, 0 }, { "- 6 - 7 =", 0, 0 }, { "=", 0, 0 }, { "6 =", 0, 0 }, { "6 * 2 =", 0, 0 },
        { "1 + 2", 0, 0 }, { "1234567890 + 1 =", 0, 0 }, { "6 - 0 = 6 =", 0, 0 }, { "1 + =", 0, 0 },
        { "+1 + 2 =", 0, 0 }, { "1 +- 2 =", 0, 0 }, { "--1 + 2 =", 0, 0 }, { "", 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long long v = 424242;
        int ok = arith_calculator(cases[i].text, strlen(cases[i].text), &v);
        CHECK(ok == cases[i].ok && (!ok || v == cases[i].value), "calculator(\"%s\") = %d, %lld; want %d, %lld",
              cases[i].text, ok, v, cases[i].ok, cases[i].value);
    }
    static const struct { const char *text; int ok; long long value; } last[] = {
        { " 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6", 1, -6 }, { " 9 + 4 = 13", 1, 13 }, { "2-8", 1, 8 },
        { " 1 +", 1, 1 }, { " , -", 0, 0 }, { "", 0, 0 }, { "-7", 1, -7 },
    };
    for (size_t i = 0; i < sizeof last / sizeof *last; i++) {
        long long v = 0;
        int ok = arith_last_number(last[i].text, strlen(last[i].text), &v);
        CHECK(ok == last[i].ok && (!ok || v == last[i].value), "last_number(\"%s\") = %d, %lld", last[i].text, ok, v);
    }
}

static void test_generator(void) {
    enum { N = 400 };
    ArithQuestion a[N], b[N], excl[N], c[N];
    CHECK(arith_generate(11, 3, 4, N, NULL, 0, a) == N, "made fewer than %d", N);
    CHECK(arith_generate(11, 3, 4, N, NULL, 0, b) == N && !memcmp(a, b, sizeof a), "same seed, different questions");
    int ops[9] = { 0 }, plus = 0, minus = 0, digit[10] = { 0 };
    char text[256];
    for (int i = 0; i < N; i++) {
        ops[a[i].n]++;
        for (int k = 0; k < a[i].n; k++) { digit[a[i].operand[k]]++; if (k) { plus += a[i].op[k - 1] == '+'; minus += a[i].op[k - 1] == '-'; } }
        ArithQuestion back;
        arith_text(&a[i], ARITH_QUERY, text, sizeof text);
        CHECK(arith_parse_query(text, &back) == 0 && back.n == a[i].n && !memcmp(back.operand, a[i].operand, sizeof(int) * (size_t)a[i].n)
              && !memcmp(back.op, a[i].op, (size_t)a[i].n - 1), "parse(text) != q for %s", text);
        for (int j = 0; j < i; j++)
            if (a[j].n == a[i].n && !memcmp(a[j].operand, a[i].operand, sizeof(int) * (size_t)a[i].n) && !memcmp(a[j].op, a[i].op, (size_t)a[i].n - 1))
                CHECK(0, "duplicate question %d and %d", j, i);
    }
    CHECK(ops[3] > 150 && ops[4] > 150 && ops[3] + ops[4] == N, "operand counts 3: %d, 4: %d", ops[3], ops[4]);
    CHECK(plus > 400 && minus > 400, "operators + %d, - %d", plus, minus);
    for (int d = 0; d < 10; d++) CHECK(digit[d] > 70, "digit %d drawn %d times", d, digit[d]);
    // Excluding a set: the same seed with the first half of `a` excluded never makes them.
    memcpy(excl, a, sizeof(ArithQuestion) * (N / 2));
    int made = arith_generate(11, 3, 4, N, excl, N / 2, c), hits = 0;
    for (int i = 0; i < made; i++)
        for (int j = 0; j < N / 2; j++)
            hits += c[i].n == excl[j].n && !memcmp(c[i].operand, excl[j].operand, sizeof(int) * (size_t)c[i].n) && !memcmp(c[i].op, excl[j].op, (size_t)c[i].n - 1);
    CHECK(made == N && hits == 0, "made %d, %d excluded questions produced", made, hits);
    // The space of 2-operand questions is 200: asking for more stops there; excluding all of it gives none.
    static ArithQuestion all[300];
    CHECK(arith_generate(3, 2, 2, 300, NULL, 0, all) == 200, "2-operand space is not 200");
    CHECK(arith_generate(4, 2, 2, 10, all, 200, c) == 0, "made a question from an excluded space");
    // The texts of the paper's example.
    ArithQuestion q = { 4, { 6, 0, 4, 8 }, { '-', '-', '-' } };
    arith_text(&q, ARITH_QUERY, text, sizeof text);
    CHECK(!strcmp(text, "Question: 6 - 0 - 4 - 8 = ? Answer:"), "X = '%s'", text);
    arith_text(&q, ARITH_RATIONALE, text, sizeof text);
    CHECK(!strcmp(text, "6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6"), "rationale = '%s'", text);
    arith_text(&q, ARITH_SOLUTION, text, sizeof text);
    CHECK(!strcmp(text, ". The answer is -6."), "Y = '%s'", text);
    arith_text(&q, ARITH_WORKED, text, sizeof text);
    CHECK(!strcmp(text, "Question: 6 - 0 - 4 - 8 = ? Answer: 6 - 0 = 6, 6 - 4 = 2, 2 - 8 = -6. The answer is -6."), "worked = '%s'", text);
    // Generated tests are fixed and disjoint from nothing else we rely on: determinism only.
    ArithQuestion t1[50], t2[50];
    CHECK(arith_test_questions(5, 50, t1) == 50 && arith_test_questions(5, 50, t2) == 50 && !memcmp(t1, t2, sizeof t1) && t1[0].n == 5,
          "generated test set not deterministic");
}

// A tokenizer and a tiny GPT pretrained on generated worked questions (the test sets excluded).
static int make_base_model(void) {
    enum { LINES = 3000 };
    ArithQuestion excl[1500], *qs = gfn_calloc(LINES, sizeof(ArithQuestion));
    int ne = 0;
    for (int n = 3; n <= 5; n++) ne += arith_test_questions(n, 500, excl + ne);
    int made = arith_generate(99, 2, 5, LINES, excl, ne, qs);
    FILE *f = fopen(ARITH_CORPUS, "w");
    if (!f) { free(qs); return 1; }
    char line[256];
    for (int i = 0; i < made; i++) { arith_text(&qs[i], ARITH_WORKED, line, sizeof line); fprintf(f, "%s\n", line); }
    fclose(f);
    free(qs);
    GfnError err = { { 0 } };
    const char *paths[1] = { ARITH_CORPUS };
    Tokenizer *tok = tokenizer_train(paths, 1, 300, &err);
    if (!tok || tokenizer_save(tok, ARITH_TOK, &err)) { printf("tokenizer: %s\n", err.msg); return 1; }
    size_t len, n;
    unsigned char *text = read_file(ARITH_CORPUS, &len, &err);
    int *ids = tokenizer_encode(tok, (const char *)text, len, 0, &n);
    free(text);
    GPTConfig config = { tokenizer_vocab_size(tok), 256, 2, 2, 48 };
    tokenizer_free(tok);
    GPT *model = gpt_new_random(config, 5);
    enum { B = 8, T = 64, STEPS = 200 };
    int inputs[B * T], targets[B * T];
    AdamW opt;
    adamw_init(&opt, gpt_num_parameters(model), 3e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    Rng rng;
    rng_seed(&rng, 6);
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < B; b++) {
            int at = rng_below(&rng, (int)(n - T - 1));
            for (int t = 0; t < T; t++) { inputs[b * T + t] = ids[at + t]; targets[b * T + t] = ids[at + t + 1]; }
        }
        gpt_train_step(model, &opt, inputs, targets, B, T, lr_schedule(step, 20, STEPS, 3e-3f, 3e-4f), INFINITY, NULL);
    }
    adamw_free(&opt);
    free(ids);
    int rc = gpt_save(model, ARITH_MODEL, &err);
    if (rc) printf("model: %s\n", err.msg);
    gpt_free(model);
    return rc;
}

// The policy's log q of a trajectory from one plain forward, summed over action positions only.
static double direct_log_q(GPT *policy, Task *task, const Traj *t) {
    int plen, V = gpt_config(policy).vocab_size;
    const int *prompt = task->prompt(task, t->query, &plen);
    int T = plen + t->ntok;
    int *row = gfn_malloc(sizeof(int) * (size_t)T);
    memcpy(row, prompt, sizeof(int) * (size_t)plen);
    memcpy(row + plen, t->tokens, sizeof(int) * (size_t)t->ntok);
    float *logits = gpt_forward(policy, row, 1, T);
    float *logp = gfn_malloc(sizeof(float) * (size_t)V);
    unsigned char *mask = gfn_malloc((size_t)V);
    double s = 0;
    for (int j = 0; j <= t->ntok; j++) {
        if (j < t->ntok && t->forced[j]) continue;   // inserted by the calculator: context only
        memcpy(mask, task->allowed, (size_t)V);      // the training mask: ⊤ allowed (min_len 0)
        if (j >= task->max_len) { memset(mask, 0, (size_t)V); mask[task->terminator] = 1; }
        masked_log_softmax(logits + (size_t)(plen + j - 1) * V, mask, V, logp);
        s += logp[j < t->ntok ? t->tokens[j] : task->terminator];
    }
    free(row); free(logp); free(mask);
    return s;
}

// log p(Z_≤i Y | few-shot prompt X) from one forward of the whole text, no cache.
static double direct_log_r(GPT *base, Task *task, const Traj *t, int ntok) {
    int clen, ylen, V = gpt_config(base).vocab_size;
    const int *y, *ctx = arith_reward_context(task, t->query, &clen, &y, &ylen);
    int T = clen + ntok + ylen;
    int *row = gfn_malloc(sizeof(int) * (size_t)T), *tg = gfn_malloc(sizeof(int) * (size_t)T);
    float *lp = gfn_malloc(sizeof(float) * (size_t)T);
    memcpy(row, ctx, sizeof(int) * (size_t)clen);
    memcpy(row + clen, t->tokens, sizeof(int) * (size_t)ntok);
    memcpy(row + clen + ntok, y, sizeof(int) * (size_t)ylen);
    for (int j = 0; j < T; j++) tg[j] = j >= clen - 1 && j + 1 < T ? row[j + 1] : -1;
    gpt_forward(base, row, 1, T);
    gpt_cross_entropy(base, tg, lp, NULL);
    (void)V;
    double s = 0;
    for (int j = 0; j < T; j++) s += lp[j];
    free(row); free(tg); free(lp);
    return s;
}

static double mean_sampled_log_r(GPT *policy, Task *task, int n, uint64_t seed) {
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)n);
    int *queries = gfn_malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) { t[i] = traj_new(task->max_len); queries[i] = i % 8; }
    Rng rng;
    rng_seed(&rng, seed);
    SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
    sample_trajectories(policy, task, queries, t, n, &sc, &rng);
    task->log_reward(task, t, n);
    double s = 0;
    for (int i = 0; i < n; i++) { s += t[i]->log_r[t[i]->nact] / n; traj_free(t[i]); }
    free(t); free(queries);
    return s;
}

static void test_task(void) {
       if (make_base_model()) { CHECK(0, "could not make the tiny base model"); return; }
    Task *task = &task_arithmetic;
    CHECK(task == &task_arithmetic, "arithmetic is not in the registry");
    TaskOptions opt = { .model_path = ARITH_MODEL, .tokenizer_path = ARITH_TOK, .data_path = "none", .seed = 1,
                        .reward_floor = -13.815511f, .quiet = 1, .eval_n = 4 };
    GfnError err = { { 0 } };
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) return;
    CHECK(task->num_train == 1000 && task->num_test == 1500, "train %d, test %d", task->num_train, task->num_test);
    CHECK(task->num_demos == 10, "%d demonstrations", task->num_demos);
    // Allowed actions: digits and " +-=," only, '=' last; ⊤ = ".".
    int V = gpt_config(task->base).vocab_size, num_allowed = 0;
    Tokenizer *tok = tokenizer_load(ARITH_TOK, &err);
    size_t bl;
    const unsigned char *tb = tokenizer_token_bytes(tok, task->terminator, &bl);
    CHECK(bl == 1 && tb[0] == '.', "terminator is not '.'");
    for (int v = 0; v < V; v++) {
        if (!task->allowed[v] || v == task->terminator) continue;
        num_allowed++;
        const unsigned char *b = tokenizer_token_bytes(tok, v, &bl);
        for (size_t j = 0; j < bl; j++)
            CHECK(strchr("0123456789 +-,", b[j]) || (b[j] == '=' && j + 1 == bl), "token %d '%.*s' allowed", v, (int)bl, b);
    }
    CHECK(num_allowed >= 15, "only %d allowed tokens", num_allowed);

    // Sample trajectories at a high temperature so the calculator fires on odd inputs too.
    enum { N = 12 };
    Traj *t[N];
    int queries[N];
    for (int i = 0; i < N; i++) { t[i] = traj_new(task->max_len); queries[i] = i % 4; }
    Rng rng;
    rng_seed(&rng, 3);
    SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
    sample_trajectories(task->base, task, queries, t, N, &sc, &rng);
    int fired = 0;
    for (int i = 0; i < N; i++) for (int j = 0; j < t[i]->ntok; j++) fired += t[i]->forced[j];
    CHECK(fired > 0, "the calculator never fired in %d samples", N);
    // Every forced run is the calculator's value of the text before it.
    char text[1024];
    for (int i = 0; i < N; i++) {
        int j = 0;
        while (j < t[i]->ntok) {
            if (!t[i]->forced[j]) { j++; continue; }
            int e = j;
            while (e < t[i]->ntok && t[i]->forced[e]) e++;
            size_t before = 0, all = 0;
            char *s = tokenizer_decode(tok, t[i]->tokens, (size_t)j, &before, &err);
            char *w = tokenizer_decode(tok, t[i]->tokens, (size_t)e, &all, &err);
            long long v;
            int ok = arith_calculator(s, before, &v);
            snprintf(text, sizeof text, " %lld", v);
            CHECK(ok && all - before == strlen(text) && !memcmp(w + before, text, strlen(text)), "forced '%s' after '%s'", w + before, s);
            free(s); free(w);
            j = e;
        }
    }
    // Replay: stored, sampled back, rebuilt from the actions alone -> same tokens and flags.
    ReplayBuffer *rb = replay_new(task->num_train, 50, task->max_len);
    for (int i = 0; i < N; i++) { task->log_reward(task, &t[i], 1); replay_add(rb, t[i]); }
    Traj *re = traj_new(task->max_len);
    for (int q = 0; q < 4; q++) {
        const Traj *r = replay_sample(rb, q, &rng);
        if (!CHECK(r != NULL, "nothing replayed for query %d", q)) continue;
        int actions[64], na = 0;
        for (int j = 0; j < r->ntok; j++) if (!r->forced[j]) actions[na++] = r->tokens[j];
        re->query = r->query;
        arith_rebuild(task, re, actions, na);
        CHECK(re->ntok == r->ntok && re->nact == r->nact && !memcmp(re->tokens, r->tokens, sizeof(int) * (size_t)r->ntok)
              && !memcmp(re->forced, r->forced, (size_t)r->ntok), "query %d: rebuilt trajectory differs", q);
    }
    traj_free(re);
    replay_free(rb);
    // The demonstrations are exactly the worked rationales, rebuilt through the calculator.
    for (int d = 0; d < task->num_demos; d++) {
        const Traj *dm = task->demos[d];
        size_t len;
        char *z = tokenizer_decode(tok, dm->tokens, (size_t)dm->ntok, &len, &err);
        char want[256];
        ArithQuestion q;
        int plen;
        const int *x = task->prompt(task, dm->query, &plen);
        char *xs = tokenizer_decode(tok, x, (size_t)plen, &len, &err);
        CHECK(arith_parse_query(xs, &q) == 0, "demo prompt '%s'", xs);
        arith_text(&q, ARITH_RATIONALE, want, sizeof want);
        CHECK(z[0] == ' ' && !strcmp(z + 1, want), "demo %d: '%s' vs ' %s'", d, z, want);
        int nf = 0;
        for (int j = 0; j < dm->ntok; j++) nf += dm->forced[j];
        CHECK(nf > 0 && dm->nact + nf == dm->ntok, "demo %d: %d forced tokens", d, nf);
        free(z); free(xs);
    }
    // Forced tokens are excluded from log q: the core's lf / lt against a plain forward.
    int stride = task->max_len + 1, T;
    float *lf = gfn_calloc((size_t)N * stride, sizeof(float)), *lt = gfn_calloc((size_t)N * stride, sizeof(float));
    policy_logprobs(task->base, task, t, N, stride, 1, lf, lt, &T);
    for (int i = 0; i < N; i++) {
        double core = lt[(size_t)i * stride + t[i]->nact];
        for (int k = 0; k < t[i]->nact; k++) core += lf[(size_t)i * stride + k];
        double direct = direct_log_q(task->base, task, t[i]);
        CHECK(fabs(core - direct) < 1e-3 * (1 + fabs(direct)), "traj %d: log q core %.6f, direct %.6f", i, core, direct);
    }
    free(lf); free(lt);
    // A minimum length counts actions, not tokens: the calculator's inserted tokens after a demo's
    // first "=" bring the token count to m while only m - 1 actions are taken, so with min_len m
    // that state must still not stop (lt = -inf), and the next one may.
    {
        const Traj *dm = task->demos[0];
        int first_forced = 0;
        while (first_forced < dm->ntok && !dm->forced[first_forced]) first_forced++;
        int m = first_forced + 1;   // tokens after the first inserted one; actions there: m - 1
        Traj *one[1] = { (Traj *)dm };
        float *dlf = gfn_calloc((size_t)stride, sizeof(float)), *dlt = gfn_calloc((size_t)stride, sizeof(float));
        task->min_len = m;
        policy_logprobs(task->base, task, one, 1, stride, 1, dlf, dlt, &T);   // logits: the model's buffer
        CHECK(first_forced >= 1 && dm->nact > m, "demo 0: first forced token at %d of %d", first_forced, dm->ntok);
        for (int i = 0; i <= dm->nact; i++)
            CHECK(i < m ? dlt[i] == -INFINITY : isfinite(dlt[i]), "min_len %d: state %d has log q(stop) %g", m, i, (double)dlt[i]);
        // And the sampler never stops before m actions (a sample may only end earlier at the
        // maximum length), at a temperature where stopping is common.
        enum { NS = 48 };
        Traj *s[NS];
        int sq[NS];
        for (int i = 0; i < NS; i++) { s[i] = traj_new(task->max_len); sq[i] = i % 4; }
        rng_seed(&rng, 11);
        SamplerConfig hot = { 2.0f, 0, 1.0f, 0 };
        sample_trajectories(task->base, task, sq, s, NS, &hot, &rng);
        for (int i = 0; i < NS; i++) {
            CHECK(s[i]->nact >= m || s[i]->ntok == task->max_len, "sample %d stopped after %d actions (min_len %d)", i, s[i]->nact, m);
            traj_free(s[i]);
        }
        task->min_len = 0;
        free(dlf); free(dlt);
    }
    // The per-prefix reward with KV reuse equals one plain forward of the whole text per prefix,
    // both with the shared forwards (gpt_forward_cached, the default) and with decode steps (the
    // earlier path, kept for GFN_NO_PREFIX_SHARE=1); the two agree within 1e-4.
    gfn_prefix_sharing = 0;
    task->log_reward(task, t, N);
    float decoded[N][64];
    for (int i = 0; i < N; i++) memcpy(decoded[i], t[i]->log_r, sizeof(float) * (size_t)(t[i]->nact + 1));
    gfn_prefix_sharing = 1;
    task->log_reward(task, t, N);
    double paths = 0;
    for (int i = 0; i < N; i++)
        for (int k = 0; k <= t[i]->nact; k++) paths = larger(paths, fabs(decoded[i][k] - t[i]->log_r[k]) / (1 + fabs(decoded[i][k])));
    CHECK(paths < 1e-4, "log R from shared forwards and from decode steps differ by %g", paths);
    // The same again (the 3-shot prompt's keys and values now kept from the call before), and on
    // the task's second scorer (a view of the base, a cache of its own): bit for bit.
    float shared[N][64];
    for (int i = 0; i < N; i++) memcpy(shared[i], t[i]->log_r, sizeof(float) * (size_t)(t[i]->nact + 1));
    int kept_same = 1, second_same = 1;
    task->log_reward(task, t, N);
    for (int i = 0; i < N; i++) kept_same &= !memcmp(shared[i], t[i]->log_r, sizeof(float) * (size_t)(t[i]->nact + 1));
    CHECK(task->concurrent_reward == 2 && task->log_reward_on, "arithmetic: %d scorers", task->concurrent_reward);
    if (task->log_reward_on) task->log_reward_on(task, 1, t, N);
    for (int i = 0; i < N; i++) second_same &= !memcmp(shared[i], t[i]->log_r, sizeof(float) * (size_t)(t[i]->nact + 1));
    CHECK(kept_same && second_same, "log R changed: with the kept prompt %s, on scorer 1 %s", kept_same ? "no" : "yes",
          second_same ? "no" : "yes");
    // When the objective reads only the last state's reward (task->final_reward_only, set by
    // gfn_train for TB, VarGrad, SFT, REINFORCE), that one is computed alone: bit for bit the
    // value of the full computation, every other state −∞.
    task->final_reward_only = 1;
    task->log_reward(task, t, N);
    int last_same = 1, others_skipped = 1;
    for (int i = 0; i < N; i++) {
        last_same &= !memcmp(&shared[i][t[i]->nact], &t[i]->log_r[t[i]->nact], sizeof(float));
        for (int k = 0; k < t[i]->nact; k++) others_skipped &= t[i]->log_r[k] == -INFINITY;
    }
    task->final_reward_only = 0;
    for (int i = 0; i < N; i++) memcpy(t[i]->log_r, shared[i], sizeof(float) * (size_t)(t[i]->nact + 1));
    CHECK(last_same && others_skipped, "final state only: last log R %s, other states %s", last_same ? "same" : "DIFFERS",
          others_skipped ? "skipped" : "computed");
    for (int i = 0; i < N; i++) {
        int at[64], states = 0;   // tokens after the prompt at each state: after each action and its inserted tokens
        at[states++] = 0;
        for (int j = 0; j < t[i]->ntok; j++) {
            if (t[i]->forced[j]) continue;
            int e = j + 1;
            while (e < t[i]->ntok && t[i]->forced[e]) e++;
            at[states++] = e;
        }
        CHECK(states == t[i]->nact + 1, "traj %d: %d states, %d actions", i, states, t[i]->nact);
        for (int k = 0; k < states; k++) {
            double want = direct_log_r(task->base, task, t[i], at[k]);
            CHECK(fabs(t[i]->log_r[k] - want) < 2e-3 * (1 + fabs(want)), "traj %d state %d: log R %.5f, direct %.5f",
                  i, k, t[i]->log_r[k], want);
        }
    }
    for (int i = 0; i < N; i++) traj_free(t[i]);
    tokenizer_free(tok);

    // A short GFlowNet run raises the mean log-reward of sampled rationales.
    GPT *policy = copy_model(task->base);
    double before = mean_sampled_log_r(policy, task, 32, 77);
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.steps = 30; cfg.batch = 8; cfg.samples_per_query = 4; cfg.lr = 3e-3f; cfg.warmup = 5;
    cfg.lora_rank = 4; cfg.quiet = 1;
    int saved = task->num_train;
    task->num_train = 8;   // the 8 queries measured
    float log_z[8] = { 0 };
    CHECK(gfn_train(task, policy, &cfg, log_z, &err) == 0, "train: %s", err.msg);
    task->num_train = saved;
    double after = mean_sampled_log_r(policy, task, 32, 77);
    CHECK(after > before + 1.0, "mean log R before %.3f, after %.3f", before, after);
    printf("   mean log R of samples: %.3f before, %.3f after 30 SubTB steps\n", before, after);
    gpt_free(policy);

    // The learning curve (--eval-every 2): JSONL points at steps 0, 2 and 4, the last one the
    // trained policy's own curve; training bit-identical to the same run without it (the curve
    // samples with its own generator).
    float *adapter[2] = { NULL, NULL };
    size_t adapter_len = 0;
    double last[3] = { NAN, NAN, NAN }, again[3];
    int points = 0, steps_ok = 1;
    for (int with_curve = 0; with_curve < 2; with_curve++) {
        GPT *p = copy_model(task->base);
        train_config_default(&cfg);
        cfg.steps = 4; cfg.batch = 4; cfg.samples_per_query = 4; cfg.accum = 2; cfg.lr = 3e-3f; cfg.warmup = 0;
        cfg.lora_rank = 2; cfg.quiet = 1;
        cfg.eval_every = with_curve ? 2 : 0; cfg.curve_n = 2;
        cfg.log_path = test_path("arith_curve.jsonl");
        task->num_train = 8;
        CHECK(gfn_train(task, p, &cfg, log_z, &err) == 0, "train: %s", err.msg);
        task->num_train = saved;
        adapter_len = gpt_lora(p)->num_parameters;
        adapter[with_curve] = malloc(sizeof(float) * adapter_len);
        memcpy(adapter[with_curve], gpt_lora(p)->memory, sizeof(float) * adapter_len);
        if (with_curve) {
            FILE *f = fopen(cfg.log_path, "r");
            char line[4096];
            while (f && fgets(line, sizeof line, f)) {
                int step;
                if (sscanf(line, "{\"curve_step\": %d, \"acc_3\": %lf, \"acc_4\": %lf, \"acc_5\": %lf}", &step, &last[0], &last[1], &last[2]) != 4) continue;
                steps_ok &= step == 2 * points++;
            }
            if (f) fclose(f);
            task->curve(task, p, 2, cfg.seed, again);
            CHECK(last[0] == again[0] && last[1] == again[1] && last[2] == again[2], "last curve point %g %g %g, the trained "
                  "policy's curve %g %g %g", last[0], last[1], last[2], again[0], again[1], again[2]);
        }
        gpt_free(p);
    }
    CHECK(points == 3 && steps_ok, "%d curve points in the log (want steps 0, 2, 4)", points);
    CHECK(!memcmp(adapter[0], adapter[1], sizeof(float) * adapter_len), "training with the curve differs from training without it");
    free(adapter[0]); free(adapter[1]);

#ifdef _OPENMP
    // The pipeline on this task (two scorers, the tool, gold and replay micro-batches): the same
    // adapter and log Z as the plain order, at 2 threads.
    float z_plain[8], *plain = NULL;
    for (int piped = 0; piped < 2; piped++) {
        int threads = omp_get_max_threads();
        omp_set_num_threads(piped ? 2 : 1);
        gfn_pipeline = piped;
        long before = gfn_pipeline_steps;
        GPT *p = gpt_view(task->base);
        train_config_default(&cfg);
        cfg.loss = LOSS_TB; cfg.steps = 3; cfg.batch = 4; cfg.samples_per_query = 2; cfg.accum = 4; cfg.lr = 3e-3f;
        cfg.warmup = 0; cfg.lora_rank = 2; cfg.frac_gold = 0.25f; cfg.frac_on_policy = 0.25f; cfg.frac_tempered = 0.25f; cfg.quiet = 1;
        task->num_train = 8;
        memset(log_z, 0, sizeof log_z);
        CHECK(gfn_train(task, p, &cfg, log_z, &err) == 0, "train: %s", err.msg);
        task->num_train = saved;
        CHECK(gfn_pipeline_steps - before == (piped ? cfg.steps : 0), "%ld steps ran as a pipeline", gfn_pipeline_steps - before);
        size_t P = gpt_lora(p)->num_parameters;
        if (!piped) {
            plain = malloc(sizeof(float) * P);
            memcpy(plain, gpt_lora(p)->memory, sizeof(float) * P);
            memcpy(z_plain, log_z, sizeof log_z);
        } else {
            CHECK(!memcmp(plain, gpt_lora(p)->memory, sizeof(float) * P) && !memcmp(z_plain, log_z, sizeof log_z),
                  "the pipeline's adapter or log Z differs from the plain order's");
        }
        gpt_free(p);
        gfn_pipeline = 1;
        omp_set_num_threads(threads);
    }
    free(plain);
#endif
    task->cleanup(task);

    // --prompt: an unknown value is an error naming it; "fewshot" gives the policy the reward's
    // context (3 worked examples, then X) instead of X alone.
    opt.prompt = "bogus";
    CHECK(task->setup(task, &opt, &err) != 0 && strstr(err.msg, "bogus"), "--prompt bogus: %s", err.msg);
    opt.prompt = "fewshot";
    if (CHECK(task->setup(task, &opt, &err) == 0, "setup: %s", err.msg)) {
        int plen, clen, ylen;
        const int *y, *p = task->prompt(task, 5, &plen), *c = arith_reward_context(task, 5, &clen, &y, &ylen);
        CHECK(plen == clen && plen > 40 && !memcmp(p, c, sizeof(int) * (size_t)plen), "fewshot policy prompt: %d tokens, context %d", plen, clen);
        task->cleanup(task);
    }
}

static void test_report(void) {
    const char *dir = test_path("arith_results");
    char path[256];
    FILE *f;
    static const struct { const char *method; int seed; double a3, a4, a5; } runs[] = {
        { "subtb", 1, 0.9, 0.7, 0.4 }, { "subtb", 2, 0.8, 0.5, 0.2 }, { "base", 1, 0.1, 0.05, 0.0 }, { "sft", 1, 0.5, 0.25, 0.1 },
        { "base-question", 1, 0.95, 0.9, 0.8 },   // a second base row: the target compares with "base" only
        { "subtb-3shot", 1, 0.6, 0.3, 0.15 },     // a 3-shot-policy run: the secondary table, not the plot
    };
    mkdir(dir, 0755);
    remove(test_path("arith_results/broken.txt"));
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        snprintf(path, sizeof path, "%s/%s_%d.txt", dir, runs[i].method, runs[i].seed);
        f = fopen(path, "w");
        if (!f) { CHECK(0, "cannot write %s", path); return; }
        fprintf(f, "method %s\nseed %d\nprompt %s\n", runs[i].method, runs[i].seed, strstr(runs[i].method, "3shot") ? "3-shot" : "question");
        if (!strcmp(runs[i].method, "subtb"))   // learning curves: acc_5 0.1 then 0.3 (seed 1), 0.2 (seed 2)
            fprintf(f, "curve 0 acc_3 0.5 acc_4 0.2 acc_5 0.1000\ncurve 50 acc_3 0.9 acc_4 0.6 acc_5 %.4f\n", runs[i].seed == 1 ? 0.3 : 0.2);
        fprintf(f, "acc_3 %.4f\nn_3 100\nacc_4 %.4f\nn_4 100\nacc_5 %.4f\nn_5 100\nsample x\nwall_s 12\ncommand ./gfn train arithmetic --loss %s -s %d\n",
                runs[i].a3, runs[i].a4, runs[i].a5, runs[i].method, runs[i].seed);
        fclose(f);
    }
    for (int seed = 1; seed <= 2; seed++) {   // random-integer runs: a second table, not in the plot
        snprintf(path, sizeof path, "%s/rng-tb_%d.txt", dir, seed);
        f = fopen(path, "w");
        if (!f) { CHECK(0, "cannot write %s", path); return; }
        fprintf(f, "method rng-tb\nseed %d\nvalid %.4f\nkl_uniform %.4f\nwall_s 12\ncommand ./gfn train rng -s %d\n",
                seed, seed == 1 ? 0.99 : 0.97, seed == 1 ? 0.05 : 0.03, seed);
        fclose(f);
    }
    f = fopen(test_path("arith_results/notes.md"), "w");   // not a .txt: ignored
    if (f) { fputs("method bogus\n", f); fclose(f); }
    f = fopen(test_path("arith_results/NOTES.md"), "w");   // what was tried: copied into the report
    if (f) { fputs("## What was tried\n\nnotes-marker\n", f); fclose(f); }
    GfnError err = { { 0 } };
    CHECK(arith_report(dir, test_path("arith_report.md"), test_path("arith_report.svg"), &err) == 0, "report: %s", err.msg);
    size_t len;
    char *md = (char *)read_file(test_path("arith_report.md"), &len, &err), *svg = (char *)read_file(test_path("arith_report.svg"), &len, &err);
    if (CHECK(md && svg, "outputs missing: %s", err.msg)) {
        // subtb: mean 85.0 ± std 7.1 (sample std of 0.9, 0.8), 60.0 ± 14.1, 30.0 ± 14.1
        CHECK(strstr(md, "| GFlowNet, modified SubTB | question | 2 | 100 | 85.0 ± 7.1 | 60.0 ± 14.1 | 30.0 ± 14.1 | 95.2 / 75.4 / 40.7 | 12 |") != NULL, "subtb row:\n%s", md);
        CHECK(strstr(md, "| base model, no tuning (3-shot prompt) | question | 1 | 100 | 10.0 ± 0.0 | 5.0 ± 0.0 | 0.0 ± 0.0 |") != NULL, "base row:\n%s", md);
        // the 3-shot-policy run: in the secondary table only, after the main one
        char *second = strstr(md, "## Secondary"), *row3 = strstr(md, "| GFlowNet, modified SubTB | 3-shot | 1 | 100 | 60.0 ± 0.0 | 30.0 ± 0.0 | 15.0 ± 0.0 | — | 12 |");
        CHECK(second && row3 && row3 > second && strstr(md, "| GFlowNet, modified SubTB |") < second, "secondary table:\n%s", md);
        // the learning curve: subtb's acc_5 at steps 0 and 50, means over its 2 seeds, and its plot
        char *curve = strstr(md, "## Learning curve");
        CHECK(curve && strstr(curve, "| method | operands | 0 | 50 |") && strstr(curve, "| GFlowNet, modified SubTB | 5 | 10.0 | 25.0 |") &&
              strstr(curve, "| GFlowNet, modified SubTB | 3 | 50.0 | 90.0 |") && strstr(curve, "| GFlowNet, modified SubTB | 4 | 20.0 | 60.0 |") &&
              strstr(curve, "(arith_report_curve.svg)"), "learning curve:\n%s", md);
        char *curve_svg = (char *)read_file(test_path("arith_report_curve.svg"), &len, &err);
        int curve_lines = 0;
        for (char *p = curve_svg; p && (p = strstr(p, "<polyline")); p++) curve_lines++;
        CHECK(curve_svg && curve_lines == 1 && strstr(curve_svg, ">50</text>"), "curve svg: %d polylines", curve_lines);
        free(curve_svg);
        char *notes = strstr(md, "## What was tried\n\nnotes-marker\n"), *plot = strstr(md, "![accuracy");
        CHECK(notes && plot && notes < plot, "NOTES.md not copied before the plot:\n%s", md);
        CHECK(strstr(md, "bogus") == NULL && strstr(md, "`./gfn train arithmetic --loss sft -s 1`"), "commands:\n%s", md);
        // subtb 30% > sft 10% > (no reinforce run): the ordering cannot be judged without all three
        CHECK(strstr(md, "Target on 5 operands") == NULL, "target line without a reward maximiser:\n%s", md);
        // rng-tb: valid 98.00 ± 1.41 (sample std of 0.99, 0.97), KL 0.040 ± 0.014, after the arithmetic table
        char *rng_row = strstr(md, "| GFlowNet, TB | 2 | 98.00 ± 1.41 | 0.040 ± 0.014 | 12 |");
        CHECK(rng_row && rng_row > strstr(md, "## Random integer"), "rng row:\n%s", md);
        char *b = strstr(md, "base model, no tuning (3-shot prompt) |"), *bq = strstr(md, "base model, no tuning, question alone"),
             *s = strstr(md, "SFT on"), *g = strstr(md, "GFlowNet, modified");
        CHECK(b && bq && s && g && b < bq && bq < s && s < g, "method order");
        int polylines = 0;
        for (char *p = svg; (p = strstr(p, "<polyline")); p++) polylines++;
        CHECK(polylines == 4 && strstr(svg, "<svg") == svg && strstr(svg, "</svg>\n"), "svg: %d polylines", polylines);
    }
    free(md); free(svg);
    // With a reward maximiser run too, the report judges the target on its own numbers.
    f = fopen(test_path("arith_results/reinforce_1.txt"), "w");
    if (f) { fputs("method reinforce\nseed 1\nacc_3 0.2\nacc_4 0.1\nacc_5 0.05\nn_3 100\nwall_s 1\n", f); fclose(f); }
    CHECK(arith_report(dir, test_path("arith_report.md"), test_path("arith_report.svg"), &err) == 0, "report: %s", err.msg);
    md = (char *)read_file(test_path("arith_report.md"), &len, &err);
    CHECK(md && strstr(md, "30.0 vs 10.0 vs 5.0 — **met**; GFlowNet at least 2x SFT: **met**; GFlowNet above the untuned base (3-shot prompt) on 3, 4 and 5 operands: **met**"),
          "target line:\n%s", md ? md : err.msg);
    free(md);
    remove(test_path("arith_results/reinforce_1.txt"));
    // A result file without accuracies is an error naming it.
    f = fopen(test_path("arith_results/broken.txt"), "w");
    if (f) { fputs("method tb\nseed 1\n", f); fclose(f); }
    CHECK(arith_report(dir, test_path("arith_report.md"), test_path("arith_report.svg"), &err) != 0 && strstr(err.msg, "broken.txt"), "broken: %s", err.msg);
    CHECK(arith_report(test_path("arith_nowhere"), test_path("arith_report.md"), test_path("arith_report.svg"), &err) != 0 && strstr(err.msg, "nowhere"), "missing dir: %s", err.msg);
    remove(test_path("arith_results/broken.txt"));
}

static void test_paper_files(void) {
    const char *data = test_data_dir();
    if (!data) { test_skip("arith paper files", "no shared data (set GFN_DATA)"); return; }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/arithmetic", data);
    TaskOptions opt = { .model_path = ARITH_MODEL, .tokenizer_path = ARITH_TOK, .data_path = dir, .seed = 1,
                        .reward_floor = -13.815511f, .quiet = 1, .eval_n = 4 };
    GfnError err = { { 0 } };
    Task *task = &task_arithmetic;
    if (!CHECK(task->setup(task, &opt, &err) == 0, "setup with %s: %s", dir, err.msg)) return;
    // hw's 1000 questions less the 135 that are in a test file (counted with Python's json from
    // the files: 85 three-operand, 50 four-operand), plus the 10 worked ones (not in hw), then 3 × 500 tests.
    CHECK(task->num_train == 1000 - 135 + 10 && task->num_test == 1500 && task->num_demos == 10, "train %d test %d demos %d",
          task->num_train, task->num_test, task->num_demos);
    // No training prompt is the prompt of a test question.
    int leaked = 0;
    for (int q = 0; q < task->num_train; q++) {
        int n, m;
        const int *a = task->prompt(task, q, &n);
        for (int t = task->num_train; t < task->num_train + task->num_test; t++) {
            const int *b = task->prompt(task, t, &m);
            if (n == m && !memcmp(a, b, sizeof(int) * (size_t)n)) { leaked++; break; }
        }
    }
    CHECK(leaked == 0, "%d training questions are test questions", leaked);
    task->cleanup(task);
    opt.data_path = test_path("arith_nowhere");
    CHECK(task->setup(task, &opt, &err) != 0 && strstr(err.msg, test_path("arith_nowhere")), "missing data: %s", err.msg);
}


void test_arithmetic(void) {
    test_calculator();
    test_generator();
    test_report();
    test_task();
    test_paper_files();
}
