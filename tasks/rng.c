// tasks/rng.c — the random-integer task of the paper (§2). The prompt asks for a random integer
// between 0 and 100; R(Z) = 1 when Z is such an integer (no sign, no leading zero, optionally
// one leading space) followed by ⊤, and a small floor (1e-6, --reward-floor) otherwise. A
// GFlowNet learns the uniform distribution over the 101 answers; a reward maximiser collapses.
//
// Two setups:
//  - with -m MODEL -t TOKENIZER: any GPT-2 style base model; the prompt is the paper's text,
//    ⊤ is <|endoftext|> (or "\n" with --stop newline). The policy writes only tokens made of
//    digits, at most 3 of them, and an answer is valid only as the tokenizer spells it (so each
//    integer is one Z). Why: with every token allowed and up to 6 of them, invalid strings hold
//    about V^6 · 1e-6 of the reward against 101 for the valid ones (5·10^15 for our V = 4096),
//    and the GFlowNet's target itself is then almost never valid. Here the invalid strings
//    number about 21^3 + 21^2 + 21 + 1 ≈ 9.7k (21 digit tokens in ours), 1e-2 of reward mass
//    against 101: the target is 99.99 % valid and uniform over the integers, as in the paper.
//  - without them (the default, for tests and benchmarks before pretrained weights exist): a
//    tiny GPT over a fixed 16-symbol vocabulary, digits 0-9 (ids 0..9), ⊤ (10), and
//    ' ', 'a', 'b', ',', '-' (11..15), briefly pretrained (rng_char_model) to answer the
//    prompt "ab 0-100, " with skewed, sometimes invalid numbers; Z at most 4 symbols.
//    Its exact distribution over the 101 valid answers is computed by teacher forcing them.
#include "../gfn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { RNG_CHAR_V = 16, RNG_CHAR_TERM = 10 };
#ifndef RNG_EMBED_SCALE
#define RNG_EMBED_SCALE 30.0f
#endif
static const char rng_chars[RNG_CHAR_V + 1] = "0123456789\n ab,-";
static const char *const rng_prompt_text = "The following is a random integer drawn uniformly between 0 and 100: ";

typedef struct {
    Tokenizer *tok;          // NULL in the built-in setup
    int *prompt, prompt_len;
    float floor;             // log R of an invalid answer
} RngState;

// The text of tokens[0..n) into buf (NUL-terminated).
static void rng_text(const RngState *st, const int *tokens, int n, char *buf, size_t cap) {
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        const unsigned char *bytes;
        size_t blen = 1;
        if (st->tok) bytes = tokenizer_token_bytes(st->tok, tokens[i], &blen);
        else bytes = (const unsigned char *)&rng_chars[tokens[i]];
        for (size_t j = 0; j < blen && len + 1 < cap; j++) buf[len++] = (char)bytes[j];
    }
    buf[len] = 0;
}

// The integer 0..100 a text names (one optional leading space, no leading zero), or -1.
static int rng_parse(const char *s) {
    if (*s == ' ') s++;
    size_t n = strlen(s);
    if (n == 0 || n > 3) return -1;
    for (size_t i = 0; i < n; i++) if (s[i] < '0' || s[i] > '9') return -1;
    if (n > 1 && s[0] == '0') return -1;
    int v = atoi(s);
    return v <= 100 ? v : -1;
}

static const int *rng_prompt(Task *task, int query, int *len) {
    (void)query;
    RngState *st = task->state;
    *len = st->prompt_len;
    return st->prompt;
}

// With a tokenizer: 1 when tokens[0..n) are how the tokenizer spells their text.
static int rng_canonical(const RngState *st, const int *tokens, int n, const char *text) {
    if (!st->tok) return 1;
    size_t m;
    int *ids = tokenizer_encode(st->tok, text, strlen(text), 0, &m);
    int same = (int)m == n && !memcmp(ids, tokens, sizeof(int) * (size_t)n);
    free(ids);
    return same;
}

static void rng_log_reward(Task *task, Traj *const *t, int n) {
    RngState *st = task->state;
    char buf[256];
    for (int i = 0; i < n; i++)
        for (int k = 0; k <= t[i]->nact; k++) {   // no tool: action k ends at token k
            rng_text(st, t[i]->tokens, k, buf, sizeof buf);
            int valid = rng_parse(buf) >= 0 && rng_canonical(st, t[i]->tokens, k, buf);
            t[i]->log_r[k] = valid ? 0.0f : st->floor;
        }
}

// The built-in base LM: a tiny GPT pretrained for a few seconds on the prompt followed by
// "answers" from a fixed skewed distribution, so that like a real LM it answers with a number
// most of the time, but not uniformly and not always validly: 55 % numbers 0..100 with
// p(v) ∝ 1/(v + 3), 30 % numbers 101..999, 15 % 1..4 random symbols; then ⊤.
static GPT *rng_char_model(const RngState *st, uint64_t seed) {
    GPTConfig config = { RNG_CHAR_V, 32, 2, 4, 64 };
    GPT *model = gpt_new_random(config, seed);
    // The head is tied (logits = ln_f(x) · wteᵀ with ln_f normalised), so the logit gaps a
    // policy can reach are bounded by the embedding norms; GPT-2's 0.02 init leaves a tiny
    // model unable to reach the e^-14 probabilities that R = 1e-6 asks for. A wider init fixes it.
    GPTParams *w = gpt_params(model);
    for (size_t i = 0; i < (size_t)RNG_CHAR_V * config.n_embd; i++) w->wte[i] *= RNG_EMBED_SCALE;
    Rng rng;
    rng_seed(&rng, seed + 1);
    double zipf[101], total = 0;
    for (int v = 0; v <= 100; v++) total += zipf[v] = 1.0 / (v + 3);
    enum { B = 16, STEPS = 300, T = 16 };
    int inputs[B * T], targets[B * T];
    AdamW opt;
    adamw_init(&opt, gpt_num_parameters(model), 3e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < B; b++) {
            int seq[T + 1], n = 0;
            for (int i = 0; i < st->prompt_len; i++) seq[n++] = st->prompt[i];
            char answer[16];
            float u = rng_uniform(&rng);
            if (u < 0.55f) {
                double r = rng_uniform(&rng) * total;
                int v = 0;
                while (v < 100 && (r -= zipf[v]) > 0) v++;
                snprintf(answer, sizeof answer, "%d", v);
            } else if (u < 0.85f) snprintf(answer, sizeof answer, "%d", 101 + rng_below(&rng, 899));
            else {
                int len = 1 + rng_below(&rng, 4);
                for (int i = 0; i < len; i++) {
                    int id = rng_below(&rng, RNG_CHAR_V - 1);
                    answer[i] = rng_chars[id >= RNG_CHAR_TERM ? id + 1 : id];
                }
                answer[len] = 0;
            }
            for (const char *c = answer; *c; c++) seq[n++] = (int)(strchr(rng_chars, *c) - rng_chars);
            seq[n++] = RNG_CHAR_TERM;
            for (int t = 0; t < T; t++) {
                inputs[b * T + t] = t < n ? seq[t] : RNG_CHAR_TERM;
                targets[b * T + t] = (t >= st->prompt_len - 1 && t + 1 < n) ? seq[t + 1] : -1;
            }
        }
        gpt_train_step(model, &opt, inputs, targets, B, T, lr_schedule(step, 20, STEPS, 3e-3f, 3e-4f), INFINITY, NULL);
    }
    adamw_free(&opt);
    return model;
}

// The answer v as a trajectory, spelt as the tokenizer (or the symbols) spell it.
static void rng_answer(Task *task, int query, int v, Traj *out) {
    RngState *st = task->state;
    char text[8];
    snprintf(text, sizeof text, "%d", v);
    out->query = query;
    if (st->tok) {
        size_t n;
        int *ids = tokenizer_encode(st->tok, text, strlen(text), 0, &n);
        out->ntok = (int)n < task->max_len ? (int)n : task->max_len;
        memcpy(out->tokens, ids, sizeof(int) * (size_t)out->ntok);
        free(ids);
    } else {
        out->ntok = (int)strlen(text);
        for (int k = 0; k < out->ntok; k++) out->tokens[k] = text[k] - '0';
    }
    out->nact = out->ntok;
    memset(out->forced, 0, (size_t)out->ntok);
}

static int rng_setup(Task *task, const TaskOptions *opt, GfnError *err) {
    RngState *st = gfn_calloc(1, sizeof(RngState));
    st->floor = opt->reward_floor;
    task->state = st;
    task->num_train = 1;
    task->num_test = 0;
    task->min_len = 0;
    if (opt->model_path && opt->model_path[0]) {
        if (!opt->tokenizer_path || !opt->tokenizer_path[0]) {
            gfn_error_set(err, "rng: -m %s needs a tokenizer (-t)", opt->model_path);
            return 1;
        }
        task->base = gpt_load(opt->model_path, err);
        if (!task->base) return 1;
        st->tok = tokenizer_load(opt->tokenizer_path, err);
        if (!st->tok) return 1;
        int V = gpt_config(task->base).vocab_size;
        if (tokenizer_vocab_size(st->tok) > V) {
            gfn_error_set(err, "%s: %d tokens, more than the model's %d", opt->tokenizer_path, tokenizer_vocab_size(st->tok), V);
            return 1;
        }
        size_t n;
        st->prompt = tokenizer_encode(st->tok, rng_prompt_text, strlen(rng_prompt_text), 0, &n);
        st->prompt_len = (int)n;
        // ⊤: end-of-text as in the paper (GPT-2 ends documents there), or "\n" for a model whose
        // corpus puts a short answer at the end of a line rather than of a document (ours).
        if (!opt->stop || !strcmp(opt->stop, "eot")) task->terminator = tokenizer_eot_id(st->tok);
        else if (!strcmp(opt->stop, "newline")) {
            int *ids = tokenizer_encode(st->tok, "\n", 1, 0, &n);
            task->terminator = n == 1 ? ids[0] : -1;
            free(ids);
        } else {
            gfn_error_set(err, "rng: --stop %s: want eot or newline", opt->stop);
            return 1;
        }
        if (task->terminator < 0 || task->terminator >= V) {
            gfn_error_set(err, "%s: no single token for the terminator %s", opt->tokenizer_path, opt->stop ? opt->stop : "eot");
            return 1;
        }
        task->max_len = 3;   // "100" and every shorter integer fit in 3 digit tokens
        if (st->prompt_len + task->max_len > gpt_config(task->base).max_seq_len) {
            gfn_error_set(err, "%s: a context of %d tokens is too short for the prompt (%d tokens) and an answer (%d)",
                          opt->model_path, gpt_config(task->base).max_seq_len, st->prompt_len, task->max_len);
            return 1;
        }
        task->allowed = gfn_calloc((size_t)V, 1);
        for (int v = 0; v < tokenizer_vocab_size(st->tok); v++) {   // tokens made only of digits
            size_t blen;
            const unsigned char *bytes = tokenizer_token_bytes(st->tok, v, &blen);
            int digits = blen > 0;
            for (size_t j = 0; j < blen; j++) digits &= bytes[j] >= '0' && bytes[j] <= '9';
            task->allowed[v] = (unsigned char)digits;
        }
        task->allowed[task->terminator] = 1;
    } else {
        const char *prompt = "ab 0-100, ";
        st->prompt_len = (int)strlen(prompt);
        st->prompt = gfn_malloc(sizeof(int) * (size_t)st->prompt_len);
        for (int i = 0; i < st->prompt_len; i++) st->prompt[i] = (int)(strchr(rng_chars, prompt[i]) - rng_chars);
        task->terminator = RNG_CHAR_TERM;
        task->max_len = 4;
        task->allowed = gfn_malloc(RNG_CHAR_V);
        memset(task->allowed, 1, RNG_CHAR_V);
        task->base = rng_char_model(st, opt->seed ? opt->seed : 1);
    }
    if (opt->seed_answers) {   // --seed-answers: the 101 valid answers seed the replay buffer
        task->demos = gfn_calloc(101, sizeof(Traj *));
        for (int v = 0; v <= 100; v++) {
            task->demos[v] = traj_new(task->max_len);
            rng_answer(task, 0, v, task->demos[v]);
        }
        task->num_demos = 101;
        rng_log_reward(task, task->demos, task->num_demos);
    }
    return 0;
}

static void rng_cleanup(Task *task) {
    RngState *st = task->state;
    if (st) {
        if (st->tok) tokenizer_free(st->tok);
        free(st->prompt);
        free(st);
    }
    task->state = NULL;
    free(task->allowed);
    task->allowed = NULL;
    for (int d = 0; d < task->num_demos; d++) traj_free(task->demos[d]);
    free(task->demos);
    task->demos = NULL;
    task->num_demos = 0;
    if (task->base) gpt_free(task->base);
    task->base = NULL;
}

// KL(p ‖ uniform over 0..100) of a distribution given as counts or probabilities.
static double kl_to_uniform(const double *p, double total) {
    double kl = 0;
    for (int v = 0; v <= 100; v++) if (p[v] > 0) kl += p[v] / total * log(p[v] / total * 101.0);
    return kl;
}

// Sampled metrics: fraction valid and KL of the valid answers to uniform, from n samples at T = 1.
static void rng_sampled(Task *task, GPT *model, int n, uint64_t seed, double *valid, double *kl) {
    RngState *st = task->state;
    enum { B = 250 };
    Traj *t[B];
    int queries[B] = { 0 };
    for (int i = 0; i < B; i++) t[i] = traj_new(task->max_len);
    double counts[101] = { 0 }, ok = 0;
    Rng rng;
    rng_seed(&rng, seed);
    SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
    char buf[256];
    for (int done = 0; done < n; done += B) {
        sample_trajectories(model, task, queries, t, B, &sc, &rng);
        for (int i = 0; i < B; i++) {
            rng_text(st, t[i]->tokens, t[i]->ntok, buf, sizeof buf);
            int v = rng_parse(buf);
            if (v >= 0) { counts[v]++; ok++; }
        }
    }
    *valid = ok / n;
    *kl = ok > 0 ? kl_to_uniform(counts, ok) : INFINITY;
    for (int i = 0; i < B; i++) traj_free(t[i]);
}

// Exact metrics (built-in setup): q of every spelling of each of the 101 answers, "N" and " N".
static void rng_exact(Task *task, GPT *model, double *valid, double *kl) {
    int z[202 * 4] = { 0 }, len[202];
    for (int v = 0; v <= 100; v++)
        for (int space = 0; space < 2; space++) {
            char s[8];
            snprintf(s, sizeof s, space ? " %d" : "%d", v);
            int i = 2 * v + space;
            len[i] = (int)strlen(s);
            for (int k = 0; k < len[i]; k++) z[i * task->max_len + k] = (int)(strchr(rng_chars, s[k]) - rng_chars);
        }
    float log_q[202];
    policy_exact_logq(model, task, 0, z, len, 202, log_q);
    double p[101], total = 0;
    for (int v = 0; v <= 100; v++) total += p[v] = exp(log_q[2 * v]) + exp(log_q[2 * v + 1]);
    *valid = total;
    *kl = kl_to_uniform(p, total);
}

static void rng_evaluate(Task *task, GPT *policy, const float *log_z, FILE *out, uint64_t seed) {
    (void)log_z;
    RngState *st = task->state;
    const int n = 10000;
    double valid, kl;
    rng_sampled(task, policy, n, seed + 1000, &valid, &kl);
    fprintf(out, "valid %.6f\nkl_uniform %.6f\n", valid, kl);
    if (!st->tok) { rng_exact(task, policy, &valid, &kl); fprintf(out, "valid_exact %.6f\nkl_uniform_exact %.6f\n", valid, kl); }
    rng_sampled(task, task->base, n, seed + 1000, &valid, &kl);
    fprintf(out, "base_valid %.6f\nbase_kl_uniform %.6f\n", valid, kl);
    if (!st->tok) { rng_exact(task, task->base, &valid, &kl); fprintf(out, "base_valid_exact %.6f\nbase_kl_uniform_exact %.6f\n", valid, kl); }
    fprintf(out, "samples %d\n", n);
}

// Given Z for SFT: a uniform integer 0..100.
static void rng_demonstration(Task *task, int query, Traj *out, Rng *rng) {
    rng_answer(task, query, rng_below(rng, 101), out);
}

static void rng_render(Task *task, const Traj *t, char *buf, size_t cap) {
    rng_text(task->state, t->tokens, t->ntok, buf, cap);
}

Task task_rng = {
    .name = "rng",
    .help = "a random integer 0..100 (paper §2); -m MODEL -t TOK, or a built-in tiny char-level GPT",
    .setup = rng_setup,
    .cleanup = rng_cleanup,
    .prompt = rng_prompt,
    .log_reward = rng_log_reward,
    // concurrent_reward 0: the reward and demonstration() both encode with the tokenizer
    .evaluate = rng_evaluate,
    .demonstration = rng_demonstration,
    .render = rng_render,
};
