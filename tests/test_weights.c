// tests/test_weights.c — the shipped files in weights/: each matches the checksum listed in
// weights/CHECKSUMS (FNV-1a, 64 bits, computed here independently of gfn.c's own hash), the
// tokenizer and the model load, fit together, and the model is a trained one (its loss on plain
// English is far below the uniform ln V).
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a_64(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void check_listed_files(void) {
    GfnError err;
    size_t len;
    char *list = (char *)read_file("weights/CHECKSUMS", &len, &err);
    CHECK(list != NULL, "weights/CHECKSUMS: %s", err.msg);
    if (!list) return;
    int files = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        char hex[17], name[256], path[300];
        if (sscanf(line, "%16s %255s", hex, name) != 2) continue;
        snprintf(path, sizeof path, "weights/%s", name);
        size_t n;
        unsigned char *data = read_file(path, &n, &err);
        CHECK(data != NULL, "%s", err.msg);
        if (!data) continue;
        char got[17];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)fnv1a_64(data, n));
        CHECK(!strcmp(got, hex), "%s: FNV-1a %s, CHECKSUMS lists %s", path, got, hex);
        free(data);
        files++;
    }
    CHECK(files >= 2, "weights/CHECKSUMS lists %d files (tokenizer and model expected)", files);
    free(list);
}

static void check_model_and_tokenizer(void) {
    GfnError err;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    CHECK(tok != NULL, "tokenizer: %s", tok ? "" : err.msg);
    GPT *model = gpt_load("weights/base.ckpt", &err);
    CHECK(model != NULL, "model: %s", model ? "" : err.msg);
    if (tok && model) {
        GPTConfig c = gpt_config(model);
        CHECK(c.vocab_size == tokenizer_vocab_size(tok), "model vocab %d, tokenizer %d", c.vocab_size,
              tokenizer_vocab_size(tok));
        const char *text = "Once upon a time, there was a little girl who lived with her mother in a small house.";
        size_t n = 0;
        int *ids = tokenizer_encode(tok, text, strlen(text), 0, &n);
        size_t back_len = 0;
        char *back = tokenizer_decode(tok, ids, n, &back_len, &err);
        CHECK(back && back_len == strlen(text) && !memcmp(back, text, back_len), "decode(encode(text)) != text");
        free(back);
        int T = (int)n;
        int *targets = gfn_malloc(sizeof(int) * (size_t)T);
        for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? ids[t + 1] : -1;
        gpt_forward(model, ids, 1, T);
        float loss = gpt_cross_entropy(model, targets, NULL, NULL);
        // Uniform guessing costs ln 4096 = 8.3 nats a token; a trained model does far better.
        CHECK(loss < 5.0f, "loss %.3f nats/token on plain English: the model looks untrained", (double)loss);
        free(targets);
        free(ids);
    }
    gpt_free(model);
    tokenizer_free(tok);
}

// rng on the shipped model (paper §2): the policy may write only tokens made of digits and ⊤, an
// integer is valid only as the tokenizer spells it, and so the GFlowNet's own target, q(Z) ∝ R(Z),
// is almost always valid: the invalid strings' reward mass (at most Σ_k A^k · floor for A
// allowed digit tokens) is below 1e-3 of the 101 valid answers'.
static void check_rng_shipped(void) {
    Task *task = &task_rng;
    TaskOptions opt = { .model_path = "weights/base.ckpt", .tokenizer_path = "weights/tokenizer.bin", .data_path = "",
                        .seed = 1, .reward_floor = -13.815511f, .quiet = 1, .stop = "newline" };
    GfnError err = { { 0 } };
    if (!CHECK(task && task->setup(task, &opt, &err) == 0, "rng -m weights/base.ckpt: %s", err.msg)) return;
    Tokenizer *tok = tokenizer_load("weights/tokenizer.bin", &err);
    int V = gpt_config(task->base).vocab_size, digit_tokens = 0, wrong = 0, allowed = 0;
    for (int v = 0; tok && v < V; v++) {
        size_t n = 0;
        const unsigned char *b = v < tokenizer_vocab_size(tok) ? tokenizer_token_bytes(tok, v, &n) : NULL;
        int digits = b && n > 0;
        for (size_t j = 0; digits && j < n; j++) digits = b[j] >= '0' && b[j] <= '9';
        digit_tokens += digits;
        allowed += v != task->terminator && task->allowed[v];
        wrong += v == task->terminator ? !task->allowed[v] : task->allowed[v] != digits;
    }
    CHECK(wrong == 0 && digit_tokens >= 10, "%d tokens allowed wrongly (%d digit tokens)", wrong, digit_tokens);
    double invalid_mass = 0;
    for (int k = 0; k <= task->max_len; k++) invalid_mass += pow(allowed, k) * exp(opt.reward_floor);
    CHECK(invalid_mass < 1e-3 * 101, "invalid strings hold %g of reward against 101 valid", invalid_mass);
    // "10" as one token is valid, as "1" "0" it is not (one Z per integer); "0" "7" is not either.
    size_t n;
    int *one_zero = tokenizer_encode(tok, "10", 2, 0, &n);
    int *one = tokenizer_encode(tok, "1", 1, 0, &n), *zero = tokenizer_encode(tok, "0", 1, 0, &n);
    int *seven = tokenizer_encode(tok, "7", 1, 0, &n);
    Traj *t[3];
    for (int i = 0; i < 3; i++) { t[i] = traj_new(task->max_len); t[i]->ntok = t[i]->nact = 2; }
    t[0]->ntok = t[0]->nact = 1;
    t[0]->tokens[0] = one_zero[0];
    t[1]->tokens[0] = one[0]; t[1]->tokens[1] = zero[0];
    t[2]->tokens[0] = zero[0]; t[2]->tokens[1] = seven[0];
    task->log_reward(task, t, 3);
    CHECK(t[0]->log_r[1] == 0 && t[1]->log_r[1] == 0 && t[1]->log_r[2] < -13 && t[2]->log_r[2] < -13,
          "log R: '10' %g, '1' %g, '1' '0' %g, '0' '7' %g", t[0]->log_r[1], t[1]->log_r[1], t[1]->log_r[2], t[2]->log_r[2]);
    for (int i = 0; i < 3; i++) traj_free(t[i]);
    free(one_zero); free(one); free(zero); free(seven);
    tokenizer_free(tok);
    task->cleanup(task);
}

void test_weights(void) {
    check_listed_files();
    check_model_and_tokenizer();
    check_rng_shipped();
}
