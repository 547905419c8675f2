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

void test_weights(void) {
    check_listed_files();
    check_model_and_tokenizer();
}
