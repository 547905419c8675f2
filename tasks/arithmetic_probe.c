// tasks/arithmetic_probe.c — probes of the base model's arithmetic (`gfn probe arithmetic`), on the
// test questions of 3, 4 and 5 operands, using the task's public API only (the task's reward
// context and Y, its calculator through arith_rebuild, its evaluation) so that every figure is
// about the reward and the model the experiments use.
//
// 1. Reward discrimination: log R(Z) = log p_base(Z Y | 3-shot prompt, X), the task's reward of a
//    finished Z, for the full correct chain against two wrong ones:
//      truncated: the first n − 2 steps of the chain (the last step cut);
//      corrupted: the running value copied into step `at` (2 ≤ at ≤ n − 1, drawn with the seed)
//                 off by `delta` (±1, drawn), the calculator computing that step and every later
//                 one from it, so the error propagates to the end (a copying error — the kind the
//                 base makes — and a chain the policy can actually write: the calculator never
//                 writes a wrong result, so "a result off by one, not propagated" is unreachable).
//    Y twice: (a) the question's answer, as the task's log_reward computes it (the reward training
//    sees); (b) the chain's own last value, which asks whether the base model knows that the chain
//    itself is incomplete or wrong rather than that its last value is not the answer. And with Y
//    = the answer, the empty rationale (⊤ at once: the task's minimum length is 0, as in the
//    official code), which a policy finds in one token — where the GFlowNet objectives ended on
//    the rebuilt base (results/arithmetic/NOTES.md).
// 2. Next-step accuracy with the gold prefix: for step k (a op b = v) of the gold chain, the
//    context is the reward's context + the gold Z up to the end of step k − 1 (calculator outputs
//    as the tool inserts them); greedy decoding over the task's allowed tokens (⊤ included) until
//    a token ending in '=' (the calculator's trigger), ⊤, or 16 tokens. Correct iff the text
//    written is exactly the step's action text, " a op b =" for step 1 and ", a op b =" after:
//    the running value copied, the right operator and the next operand, in the task's format.
// 3. Base accuracy: the task's own evaluation of the untuned base (as `gfn train arithmetic
//    --steps 0 [--prompt question] -s SEED --eval-n N`), 3-shot and question alone.
#include "../gfn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// The steps of a chain: step k (1-based) is a[k] op[k] b[k] = v[k]. Returns the number of steps.
static int chain_steps(const ArithQuestion *q, ArithChain kind, int at, int delta, int *a, char *op, int *b, int *v) {
    int steps = q->n - 1, run = q->operand[0];
    if (kind == ARITH_CHAIN_TRUNCATED) steps--;
    for (int k = 1; k <= steps; k++) {
        a[k] = run + (kind == ARITH_CHAIN_CORRUPTED && k == at ? delta : 0);
        op[k] = q->op[k - 1];
        b[k] = q->operand[k];
        v[k] = op[k] == '+' ? a[k] + b[k] : a[k] - b[k];
        run = v[k];
    }
    return steps;
}

// The action text of step k: " a op b =" for the first step, ", a op b =" after.
static void step_text(int k, int a, char op, int b, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%d %c %d =", k > 1 ? ", " : " ", a, op, b);
}

int arith_chain_text(const ArithQuestion *q, ArithChain kind, int at, int delta, char *buf, size_t cap) {
    int a[ARITH_MAX_OPERANDS], b[ARITH_MAX_OPERANDS], v[ARITH_MAX_OPERANDS];
    char op[ARITH_MAX_OPERANDS], piece[64];
    int steps = chain_steps(q, kind, at, delta, a, op, b, v);
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (int k = 1; k <= steps; k++) {
        step_text(k, a[k], op[k], b[k], piece, sizeof piece);
        len += (size_t)snprintf(buf + (len < cap ? len : cap), len < cap ? cap - len : 0, "%s %d", k == 1 ? piece + 1 : piece, v[k]);
    }
    return steps ? v[steps] : q->operand[0];
}

int arith_chain_traj(Task *task, const Tokenizer *tok, const ArithQuestion *q, ArithChain kind, int at, int delta, Traj *t) {
    int a[ARITH_MAX_OPERANDS], b[ARITH_MAX_OPERANDS], v[ARITH_MAX_OPERANDS];
    char op[ARITH_MAX_OPERANDS], piece[64];
    int steps = chain_steps(q, kind, at, delta, a, op, b, v);
    int *actions = gfn_malloc(sizeof(int) * (size_t)(task->max_len + 64)), na = 0, ok = 1;   // (max_len + 64)
    for (int k = 1; k <= steps && ok; k++) {
        step_text(k, a[k], op[k], b[k], piece, sizeof piece);
        size_t m;
        int *ids = tokenizer_encode(tok, piece, strlen(piece), 0, &m);
        for (size_t j = 0; j < m && ok; j++) {
            ok = task->allowed[ids[j]] && ids[j] != task->terminator && na < task->max_len;
            if (ok) actions[na++] = ids[j];
        }
        free(ids);
    }
    if (ok) arith_rebuild(task, t, actions, na);
    ok = ok && t->nact == na;
    free(actions);
    return !ok;
}

double arith_probe_log_r(GPT *base, const int *ctx, int ctx_len, const int *z, int z_len, const int *y, int y_len) {
    int T = ctx_len + z_len + y_len;
    int *row = gfn_malloc(sizeof(int) * (size_t)T), *targets = gfn_malloc(sizeof(int) * (size_t)T);   // (T) each
    float *logp = gfn_malloc(sizeof(float) * (size_t)T);                                             // (T)
    memcpy(row, ctx, sizeof(int) * (size_t)ctx_len);
    memcpy(row + ctx_len, z, sizeof(int) * (size_t)z_len);
    memcpy(row + ctx_len + z_len, y, sizeof(int) * (size_t)y_len);
    for (int j = 0; j < T; j++) targets[j] = j + 1 >= ctx_len && j + 1 < T ? row[j + 1] : -1;   // score Z and Y only
    gpt_forward(base, row, 1, T);
    gpt_cross_entropy(base, targets, logp, NULL);
    double sum = 0;
    for (int j = 0; j < T; j++) sum += logp[j];
    free(row); free(targets); free(logp);
    return sum;
}

int arith_step_check(const Tokenizer *tok, const int *written, int n, const char *expected) {
    size_t len = 0, want = strlen(expected);
    for (int i = 0; i < n; i++) {
        size_t bl;
        const unsigned char *bytes = tokenizer_token_bytes(tok, written[i], &bl);
        if (len + bl > want || memcmp(expected + len, bytes, bl)) return 0;
        len += bl;
    }
    return len == want;
}

// ----------------------------------------------------------------------------------------------
// The probe run

enum { PROBE_SETS = 3, PROBE_MAX_WRITE = 16, PROBE_EXAMPLES = 2 };   // examples: wrong steps shown per set
static const int probe_ops[PROBE_SETS] = { 3, 4, 5 };

// The question of a test query, read back from the end of its reward context.
static int query_question(Task *task, const Tokenizer *tok, int query, ArithQuestion *q) {
    int clen, ylen;
    const int *y, *ctx = arith_reward_context(task, query, &clen, &y, &ylen);
    size_t len;
    GfnError err = { { 0 } };
    char *text = tokenizer_decode(tok, ctx, (size_t)clen, &len, &err);
    if (!text) return 1;
    char *x = text, *hit;
    while ((hit = strstr(x + 1, "Question:"))) x = hit;
    int bad = arith_parse_query(x, q);
    free(text);
    return bad;
}

// The argmax of one logits row over the allowed tokens (ties to the smaller id).
static int greedy_token(const float *logits, const unsigned char *allowed, int V) {
    int best = -1;
    for (int v = 0; v < V; v++) if (allowed[v] && (best < 0 || logits[v] > logits[best])) best = v;
    return best;
}

typedef struct {
    int questions;
    int full_over_trunc[2], full_over_corr[2], full_over_both[2];   // [0]: Y = answer, [1]: Y = own last value
    int full_over_empty;                                           // Y = answer
    int trunc_differs, full_over_trunc_differs;   // truncated chains whose last value is not the answer; of
                                                  // them, those the full chain beats (Y = answer)
    double sum_full, sum_trunc[2], sum_corr[2], sum_empty;
    int step_right[ARITH_MAX_OPERANDS], step_count[ARITH_MAX_OPERANDS], all_right;
} ProbeCounts;

// Probes 1 and 2 for one test question.
static int probe_question(Task *task, const Tokenizer *tok, int query, const ArithQuestion *q, Rng *rng, KVCache *cache,
                          float *logits, ProbeCounts *pc, Text *examples, int *num_examples, GfnError *err) {
    GPT *base = task->base;
    int V = gpt_config(base).vocab_size, maxT = gpt_config(base).max_seq_len;
    int clen, ylen;
    const int *y, *ctx = arith_reward_context(task, query, &clen, &y, &ylen);
    int at = 2 + rng_below(rng, q->n - 2), delta = rng_below(rng, 2) ? 1 : -1;
    Traj *t[3];
    static const ArithChain kinds[3] = { ARITH_CHAIN_FULL, ARITH_CHAIN_TRUNCATED, ARITH_CHAIN_CORRUPTED };
    int last[3], status = 0;
    for (int c = 0; c < 3; c++) {
        char text[256];
        t[c] = traj_new(task->max_len);
        t[c]->query = query;
        last[c] = arith_chain_text(q, kinds[c], at, delta, text, sizeof text);
        if (arith_chain_traj(task, tok, q, kinds[c], at, delta, t[c]) || clen + t[c]->ntok + 16 > maxT) {
            gfn_error_set(err, "probe: the chain \"%s\" does not fit the task's actions or the model's context", text);
            status = 1;
        }
    }
    if (status) { for (int c = 0; c < 3; c++) traj_free(t[c]); return 1; }

    // 1. log R of the three chains; Y = the answer (the task's), or the chain's own last value.
    double full = arith_probe_log_r(base, ctx, clen, t[0]->tokens, t[0]->ntok, y, ylen), wrong[2][2];
    for (int c = 1; c < 3; c++) {
        ArithQuestion own = { 1, { last[c] }, { 0 } };   // one operand: its answer is last[c]
        char text[64];
        arith_text(&own, ARITH_SOLUTION, text, sizeof text);
        size_t m;
        int *own_y = tokenizer_encode(tok, text, strlen(text), 0, &m);
        wrong[c - 1][0] = arith_probe_log_r(base, ctx, clen, t[c]->tokens, t[c]->ntok, y, ylen);
        wrong[c - 1][1] = arith_probe_log_r(base, ctx, clen, t[c]->tokens, t[c]->ntok, own_y, (int)m);
        free(own_y);
    }
    // The empty rationale: ⊤ at once, Y straight after X (min_len is 0, as in the official code).
    double empty = arith_probe_log_r(base, ctx, clen, t[0]->tokens, 0, y, ylen);   // no token of Z
    pc->questions++;
    // A chain cut before its last step already ends at the answer when that step adds or takes 0:
    // then the reward has no reason to prefer the full chain, so these are counted apart.
    int differs = last[1] != arith_answer(q);
    pc->trunc_differs += differs;
    pc->full_over_trunc_differs += differs && full > wrong[0][0];
    pc->sum_full += full;
    pc->full_over_empty += full > empty;
    pc->sum_empty += empty;
    for (int w = 0; w < 2; w++) {
        pc->full_over_trunc[w] += full > wrong[0][w];
        pc->full_over_corr[w] += full > wrong[1][w];
        pc->full_over_both[w] += full > wrong[0][w] && full > wrong[1][w];
        pc->sum_trunc[w] += wrong[0][w];
        pc->sum_corr[w] += wrong[1][w];
    }

    // 2. Next step with the gold prefix: the gold chain prefilled once into row 0; row k − 1 takes
    // its first (context + tokens before step k) positions and decodes greedily from there.
    const Traj *gold = t[0];
    int steps = q->n - 1, start[ARITH_MAX_OPERANDS], ns = 0;
    for (int j = 0; j < gold->ntok; j++)
        if (!gold->forced[j] && (j == 0 || gold->forced[j - 1]) && ns < ARITH_MAX_OPERANDS) start[ns++] = j;
    if (ns != steps) { gfn_error_set(err, "probe: the gold chain of query %d has %d steps, not %d", query, ns, steps); traj_free(t[0]); traj_free(t[1]); traj_free(t[2]); return 1; }
    int T = clen + gold->ntok;
    int *row = gfn_malloc(sizeof(int) * (size_t)T);   // (T)
    memcpy(row, ctx, sizeof(int) * (size_t)clen);
    memcpy(row + clen, gold->tokens, sizeof(int) * (size_t)gold->ntok);
    const float *prefill = gpt_prefill(base, cache, row, 1, T);   // (1, T, V)
    int written[ARITH_MAX_OPERANDS][PROBE_MAX_WRITE], nw[ARITH_MAX_OPERANDS], done[ARITH_MAX_OPERANDS];
    int feed[ARITH_MAX_OPERANDS], pos[ARITH_MAX_OPERANDS];
    for (int s = 0; s < steps; s++) {
        int p = clen + start[s];   // the first position the step writes
        written[s][0] = greedy_token(prefill + (size_t)(p - 1) * V, task->allowed, V);
        nw[s] = 1;
    }
    for (int s = 0; s < steps; s++) kv_cache_copy_row(cache, s, 0, clen + start[s]);   // row 0 last: its source
    for (int any = 1; any;) {
        any = 0;
        for (int s = 0; s < steps; s++) {
            size_t bl;
            const unsigned char *b = tokenizer_token_bytes(tok, written[s][nw[s] - 1], &bl);
            done[s] = written[s][nw[s] - 1] == task->terminator || (bl && b[bl - 1] == '=') || nw[s] == PROBE_MAX_WRITE ||
                      clen + start[s] + nw[s] >= maxT;
            feed[s] = done[s] ? -1 : written[s][nw[s] - 1];
            pos[s] = clen + start[s] + nw[s] - 1;
            any |= !done[s];
        }
        for (int s = steps; s < ARITH_MAX_OPERANDS; s++) feed[s] = -1;
        if (!any) break;
        gpt_decode_step(base, cache, feed, pos, logits);
        for (int s = 0; s < steps; s++)
            if (feed[s] >= 0) written[s][nw[s]++] = greedy_token(logits + (size_t)s * V, task->allowed, V);
    }
    int a[ARITH_MAX_OPERANDS], b[ARITH_MAX_OPERANDS], v[ARITH_MAX_OPERANDS], all = 1;
    char op[ARITH_MAX_OPERANDS];
    chain_steps(q, ARITH_CHAIN_FULL, 0, 0, a, op, b, v);
    for (int s = 0; s < steps; s++) {
        char expected[64];
        step_text(s + 1, a[s + 1], op[s + 1], b[s + 1], expected, sizeof expected);
        int ok = arith_step_check(tok, written[s], nw[s], expected);
        pc->step_right[s] += ok;
        pc->step_count[s]++;
        all &= ok;
        if (!ok && *num_examples < PROBE_EXAMPLES) {
            size_t len;
            char *got = tokenizer_decode(tok, written[s], (size_t)nw[s], &len, err);
            char x[128], gold_text[256];
            arith_text(q, ARITH_QUERY, x, sizeof x);
            arith_text(q, ARITH_RATIONALE, gold_text, sizeof gold_text);
            text_appendf(examples, "- `%s %s` step %d: wrote `%s`, want `%s`\n", x, gold_text, s + 1, got ? got : "?", expected);
            free(got);
            (*num_examples)++;
        }
    }
    pc->all_right += all;
    free(row);
    for (int c = 0; c < 3; c++) traj_free(t[c]);
    return 0;
}

// "x/y (p %)" into a table cell.
static void cell(Text *md, int x, int y) {
    if (y) text_appendf(md, " %d/%d (%.0f %%) |", x, y, 100.0 * x / y);
    else text_appendf(md, " — |");
}

// The task's evaluation of the untuned base with one prompt: acc_3, acc_4, acc_5 into acc.
static int base_accuracy(Task *task, const TaskOptions *opt, const char *prompt, uint64_t seed, double *acc, GfnError *err) {
    TaskOptions o = *opt;
    o.prompt = prompt;
    if (task->setup(task, &o, err)) return 1;
    FILE *f = tmpfile();
    if (!f) { gfn_error_set(err, "probe: cannot open a temporary file"); task->cleanup(task); return 1; }
    task->evaluate(task, task->base, NULL, f, seed);
    rewind(f);
    char line[512];
    for (int s = 0; s < PROBE_SETS; s++) acc[s] = NAN;
    while (fgets(line, sizeof line, f)) {
        int ops;
        double value;
        if (sscanf(line, "acc_%d %lf", &ops, &value) == 2 && ops >= 3 && ops <= 5) acc[ops - 3] = value;
    }
    fclose(f);
    task->cleanup(task);
    return 0;
}

int arith_probe(Task *task, const TaskOptions *opt, int per_set, uint64_t seed, int with_accuracy, Text *md, GfnError *err) {
    const char *tok_path = opt->tokenizer_path && *opt->tokenizer_path ? opt->tokenizer_path : "weights/tokenizer.bin";
    Tokenizer *tok = tokenizer_load(tok_path, err);
    if (!tok) return 1;
    if (task->setup(task, opt, err)) { tokenizer_free(tok); return 1; }
    GPT *base = task->base;
    int V = gpt_config(base).vocab_size;
    KVCache *cache = kv_cache_new(base, ARITH_MAX_OPERANDS, gpt_config(base).max_seq_len);
    float *logits = gfn_malloc(sizeof(float) * ARITH_MAX_OPERANDS * (size_t)V);   // (rows, V)
    ProbeCounts pc[PROBE_SETS];
    memset(pc, 0, sizeof pc);
    Text examples = { NULL, 0, 0 };
    int num_examples[PROBE_SETS] = { 0, 0, 0 }, status = 0;
    Rng rng;
    rng_seed(&rng, seed);
    double t0 = gfn_wall_seconds();
    for (int query = task->num_train; query < task->num_train + task->num_test && !status; query++) {
        ArithQuestion q;
        if (query_question(task, tok, query, &q)) { gfn_error_set(err, "probe: test query %d has no question in its context", query); status = 1; break; }
        if (q.n < 3 || q.n > 5 || pc[q.n - 3].questions >= per_set) continue;
        status = probe_question(task, tok, query, &q, &rng, cache, logits, &pc[q.n - 3], &examples, &num_examples[q.n - 3], err);
    }
    double probe_s = gfn_wall_seconds() - t0;
    kv_cache_free(cache);
    free(logits);
    task->cleanup(task);
    tokenizer_free(tok);
    if (status) { free(examples.s); return 1; }

    text_appendf(md, "## 1. Reward discrimination\n\n"
                     "log R(Z) = log p_base(Z Y | 3-shot prompt, X), the task's reward of a finished Z. Full: the gold chain;\n"
                     "truncated: its first n − 2 steps; corrupted: the running value copied into one step (drawn among steps\n"
                     "2..n−1) off by ±1 (drawn), the calculator computing the rest from it (the error propagates to the end).\n"
                     "Y = answer: the question's answer, as the task's reward (training's reward). Y = own: the chain's own\n"
                     "last value (does the model see that the chain itself is short or wrong?). Empty: no rationale at all,\n"
                     "Y right after X (Y = answer). Cells: questions where the full chain's log R is higher. The last column\n"
                     "leaves out the questions whose last operand is 0, where the truncated chain already ends at the answer.\n\n");
    static const char *const c1[] = { "operands", "questions", "full > truncated (Y = answer)", "full > corrupted (Y = answer)",
                                       "full > both (Y = answer)", "full > truncated (Y = own)", "full > corrupted (Y = own)",
                                       "full > both (Y = own)", "mean log R full / trunc. / corr. (Y = answer)",
                                       "mean log R trunc. / corr. (Y = own)", "full > empty (Y = answer)", "mean log R empty",
                                       "full > truncated, its last value not the answer (Y = answer)" };
    md_table_header(md, c1, 13);
    for (int s = 0; s < PROBE_SETS; s++) {
        ProbeCounts *p = &pc[s];
        int n = p->questions ? p->questions : 1;
        text_appendf(md, "| %d | %d |", probe_ops[s], p->questions);
        for (int w = 0; w < 2; w++) { cell(md, p->full_over_trunc[w], p->questions); cell(md, p->full_over_corr[w], p->questions); cell(md, p->full_over_both[w], p->questions); }
        text_appendf(md, " %.2f / %.2f / %.2f | %.2f / %.2f |", p->sum_full / n, p->sum_trunc[0] / n, p->sum_corr[0] / n,
                     p->sum_trunc[1] / n, p->sum_corr[1] / n);
        cell(md, p->full_over_empty, p->questions);
        text_appendf(md, " %.2f |", p->sum_empty / n);
        cell(md, p->full_over_trunc_differs, p->trunc_differs);
        text_appendf(md, "\n");
    }
    text_appendf(md, "\n## 2. Next-step accuracy with the gold prefix\n\n"
                     "Context: the reward's context (3-shot prompt + X) and the gold Z up to the end of step k − 1 (calculator\n"
                     "outputs as the tool inserts them). Greedy decoding over the task's allowed tokens (⊤ included) until a\n"
                     "token ending in '=', ⊤, or %d tokens; right iff the text written is exactly the step's action text\n"
                     "(\" a op b =\" for step 1, \", a op b =\" after: running value, operator and next operand).\n\n", PROBE_MAX_WRITE);
    static const char *const c2[] = { "operands", "questions", "step 1", "step 2", "step 3", "step 4", "every step right" };
    md_table_header(md, c2, 7);
    for (int s = 0; s < PROBE_SETS; s++) {
        ProbeCounts *p = &pc[s];
        text_appendf(md, "| %d | %d |", probe_ops[s], p->questions);
        for (int k = 0; k < 4; k++) cell(md, p->step_right[k], p->step_count[k]);
        cell(md, p->all_right, p->questions);
        text_appendf(md, "\n");
    }
    if (examples.len) text_appendf(md, "\nThe first %d wrong steps of each set:\n\n%s", PROBE_EXAMPLES, examples.s);
    free(examples.s);
    text_appendf(md, "\n(probes 1 and 2: %.0f s)\n", probe_s);

    text_appendf(md, "\n## 3. Base accuracy (the task's evaluation, untuned base)\n\n"
                     "10 samples at T = 0.1 with the calculator, majority vote, first %d questions per set; the same as\n"
                     "`./gfn train arithmetic -m M -t T --steps 0 --eval-n %d -s %llu` and the same with `--prompt question`.\n\n",
                 per_set, per_set, (unsigned long long)seed);
    if (!with_accuracy) { text_appendf(md, "(not computed: --no-accuracy)\n"); return 0; }
    static const char *const c3[] = { "prompt", "3 operands", "4 operands", "5 operands" };
    md_table_header(md, c3, 4);
    static const char *const prompts[2] = { "fewshot", "question" };
    for (int i = 0; i < 2; i++) {
        double acc[PROBE_SETS];
        TaskOptions o = *opt;
        o.eval_n = per_set;
        if (base_accuracy(task, &o, prompts[i], seed, acc, err)) return 1;
        text_appendf(md, "| %s |", i ? "question alone" : "3-shot");
        for (int s = 0; s < PROBE_SETS; s++) text_appendf(md, " %.1f %% |", 100 * acc[s]);
        text_appendf(md, "\n");
    }
    return 0;
}
