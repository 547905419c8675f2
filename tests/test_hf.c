// tests/test_hf.c — interchange formats: safetensors, HF GPT-2 directories, LoRA adapters (ours
// and PEFT), and parity with an independent PyTorch implementation of GPT-2 and PEFT's LoRA
// (scripts/make_torch_fixture.py wrote tests/fixtures/tiny*; this test only compares).
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>   // rmdir

#define FIXTURES "tests/fixtures/"

// Largest |got - want| relative to the largest |want| (how gradients are compared).
static double rel_to_max(const float *got, const float *want, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= diff)) diff = d;   // NaN propagates
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return diff / (scale > 0 ? scale : 1);
}

// Largest |got - want| / max(|want|, 1): relative for large values, absolute near zero.
static double rel_err(const float *got, const float *want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / larger(fabs(want[i]), 1.0);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

// A fixture tensor as floats, checked to hold n of them; NULL (and a failed check) otherwise.
static float *fixture(const SafeTensors *fx, const char *name, size_t n) {
    GfnError err;
    const SafeTensor *t = safetensors_find(fx, name);
    CHECK(t && t->numel == n, "fixture tensor %s missing or not %zu values", name, n);
    if (!t || t->numel != n) return NULL;
    float *out = malloc(n * sizeof(float));
    if (safetensors_to_f32(fx, t, out, &err)) { CHECK(0, "%s", err.msg); free(out); return NULL; }
    return out;
}

typedef struct { double logits, loss, grads; } Worst;   // the largest errors seen, for the report
static Worst worst;

// Forward on the fixture's inputs; compares logits and HF's loss (labels = input_ids).
static void compare_forward(GPT *model, const SafeTensors *fx, const char *prefix, const char *logits_name) {
    GPTConfig c = gpt_config(model);
    size_t BT = 0;
    const SafeTensor *ids_t = safetensors_find(fx, "input_ids");
    if (!ids_t || ids_t->ndim != 2) { CHECK(0, "fixture input_ids missing"); return; }
    int B = (int)ids_t->shape[0], T = (int)ids_t->shape[1];
    BT = (size_t)B * T;
    float *idsf = fixture(fx, "input_ids", BT);
    int *ids = malloc(BT * sizeof(int)), *targets = malloc(BT * sizeof(int));
    for (size_t i = 0; i < BT; i++) ids[i] = (int)idsf[i];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -1;
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, logits_name);
    float *want_logits = fixture(fx, name, BT * (size_t)c.vocab_size);
    snprintf(name, sizeof name, "%sloss", prefix);
    float *want_loss = fixture(fx, name, 1);
    float *logits = gpt_forward(model, ids, B, T);
    if (want_logits) {
        double e = rel_err(logits, want_logits, BT * (size_t)c.vocab_size);
        CHECK(e <= 1e-4, "%s%s: relative error %.3g", prefix, logits_name, e);
        if (!strcmp(logits_name, "logits") && e > worst.logits) worst.logits = e;
    }
    float *dlogits = malloc(BT * (size_t)c.vocab_size * sizeof(float));
    float loss = gpt_cross_entropy(model, targets, NULL, dlogits);
    if (want_loss && !strcmp(logits_name, "logits")) {
        double e = fabs(loss - want_loss[0]) / fabs(want_loss[0]);
        CHECK(e <= 1e-4, "%sloss %.7f, expected %.7f", prefix, loss, want_loss[0]);
        if (e > worst.loss) worst.loss = e;
    }
    gpt_zero_grad(model);
    gpt_backward(model, dlogits);
    free(dlogits); free(want_logits); free(want_loss); free(idsf); free(ids); free(targets);
}

static void compare_grad(const float *got, const SafeTensors *fx, const char *name, size_t n) {
    float *want = fixture(fx, name, n);
    if (!want) return;
    double e = rel_to_max(got, want, n);
    CHECK(e <= 1e-3, "%s: error %.3g relative to the tensor's max", name, e);
    if (e > worst.grads) worst.grads = e;
    free(want);
}

static void test_parity(void) {
    GfnError err;
    SafeTensors fx;
    if (safetensors_open(&fx, FIXTURES "tiny_parity.safetensors", &err)) { CHECK(0, "%s", err.msg); return; }
    // The script wrote the same weights as our checkpoint and as an HF directory: the importer
    // must give exactly the checkpoint's parameters.
    GPT *model = gpt_load(FIXTURES "tiny.ckpt", &err);
    CHECK(model != NULL, "%s", err.msg);
    GPT *hf = gpt_load(FIXTURES "tiny_hf", &err);
    CHECK(hf != NULL, "%s", err.msg);
    if (!model || !hf) { gpt_free(model); gpt_free(hf); safetensors_close(&fx); return; }
    GPTConfig c = gpt_config(model), c_hf = gpt_config(hf);
    CHECK(c.vocab_size == 64 && c.max_seq_len == 16 && c.n_layer == 2 && c.n_head == 2 && c.n_embd == 16, "tiny config");
    CHECK(!memcmp(&c, &c_hf, sizeof c) && gpt_num_parameters(model) == gpt_num_parameters(hf) &&
          !memcmp(gpt_params_memory(model), gpt_params_memory(hf), gpt_num_parameters(model) * sizeof(float)),
          "HF directory and checkpoint of the same model differ");
    gpt_free(hf);

    // The base model: logits, loss and the gradient of every tensor.
    gpt_freeze_all(model, 0);
    compare_forward(model, &fx, "", "logits");
    float **grads = (float **)gpt_grads(model);
    size_t V = 64, maxT = 16, L = 2, C = 16;
    size_t sizes[GPT_NUM_TENSORS] = { V * C, maxT * C, L * C, L * C, L * C * 3 * C, L * 3 * C, L * C * C, L * C,
                                      L * C, L * C, L * C * 4 * C, L * 4 * C, L * 4 * C * C, L * C, C, C };
    for (int k = 0; k < GPT_NUM_TENSORS; k++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", gpt_tensor_names[k]);
        compare_grad(grads[k], &fx, name, sizes[k]);
    }

    // LoRA from the PEFT directories: logits, loss, gradients of A and B (base frozen).
    static const char *const modules[LORA_NUM_TARGETS] = { "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj" };
    const char *dirs[2] = { FIXTURES "tiny_lora", FIXTURES "tiny_lora_rs/" }, *keys[2] = { "lora.", "lora_rs." };
    for (int a = 0; a < 2; a++) {
        int rc = lora_load(model, dirs[a], &err);
        CHECK(rc == 0, "%s", err.msg);
        LoRA *lora = gpt_lora(model);
        if (rc || !lora) continue;
        CHECK(lora->rank == 4 && lora->alpha == 8.0f && lora->use_rslora == a, "%s: settings", dirs[a]);
        CHECK(fabsf(lora->scale - (a ? 4.0f : 2.0f)) < 1e-6f, "%s: scale %g", dirs[a], lora->scale);
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            CHECK(lora->targeted[t] == (a == 0 || t == LORA_ATTN_QKV || t == LORA_MLP_PROJ), "%s: targets", dirs[a]);
        gpt_freeze_all(model, 1);
        compare_forward(model, &fx, keys[a], "logits");
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora->targeted[t]) continue;
            int in = (t == LORA_MLP_PROJ ? 4 : 1) * c.n_embd, out = (t == LORA_ATTN_QKV ? 3 : t == LORA_MLP_FC ? 4 : 1) * c.n_embd;
            char name[96];
            snprintf(name, sizeof name, "%sgrad_A.%s", keys[a], modules[t]);
            compare_grad(lora->grad_A[t], &fx, name, (size_t)c.n_layer * in * 4);
            snprintf(name, sizeof name, "%sgrad_B.%s", keys[a], modules[t]);
            compare_grad(lora->grad_B[t], &fx, name, (size_t)c.n_layer * 4 * out);
        }
    }
    gpt_free(model);

    // The F16 copy with bare names, mask buffers and a tied lm_head: its own logits exactly,
    // and the F32 model's within F16 rounding.
    model = gpt_load_hf(FIXTURES "tiny_hf_f16", &err);
    CHECK(model != NULL, "%s", err.msg);
    if (model) {
        compare_forward(model, &fx, "", "logits_f16");
        size_t n = 2 * 8 * 64;
        float *want = fixture(&fx, "logits", n), *got = fixture(&fx, "logits_f16", n);
        if (want && got) {
            double e = rel_to_max(got, want, n);
            CHECK(e > 0 && e < 1e-2, "F16 logits vs F32: %.3g relative to max (F16 rounding, not zero)", e);
        }
        free(want); free(got);
        gpt_free(model);
    }
    safetensors_close(&fx);
    printf("   parity vs PyTorch: logits %.2g (rel, floor 1), loss %.2g (rel), gradients %.2g (rel to max)\n",
           worst.logits, worst.loss, worst.grads);
}

// ---- safetensors

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, len, f); fclose(f); }
}

// A safetensors file from a header string (padded to 8) and `data_len` bytes of data.
static void write_raw_safetensors(const char *path, const char *header, const unsigned char *data, size_t data_len) {
    size_t h = strlen(header), padded = (h + 7) / 8 * 8;
    unsigned char *buf = calloc(8 + padded + data_len + 1, 1);
    put_le_u64(buf, padded);
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', padded - h);
    if (data_len) memcpy(buf + 8 + padded, data, data_len);
    write_bytes(path, buf, 8 + padded + data_len);
    free(buf);
}

static void test_safetensors(void) {
    GfnError err;
    const char *path = test_path("st.safetensors");
    // Round trip of F32 tensors: a scalar, a matrix with awkward values, a 3-d tensor, an empty one.
    float scalar = -0.0f, matrix[6] = { 1.0f, -2.5f, 1e-38f, 3.4e38f, 1.0f / 3.0f, 0 }, cube[24], none[1] = { 0 };
    Rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < 24; i++) cube[i] = rng_normal(&rng);
    SafeTensorWrite w[4] = {
        { "scalar", 0, { 0 }, &scalar }, { "m\"quoted\"", 2, { 2, 3 }, matrix }, { "cube", 3, { 2, 3, 4 }, cube }, { "empty", 1, { 0 }, none },
    };
    CHECK(safetensors_write(path, w, 4, &err) == 0, "write: %s", err.msg);
    size_t len;
    unsigned char *raw = read_file(path, &len, &err);
    if (raw) {
        CHECK(le_u64(raw) % 8 == 0, "header padded to 8 bytes");
        CHECK(strstr((char *)raw + 8, "\"__metadata__\":{\"format\":\"pt\"}") != NULL, "metadata format pt");
        free(raw);
    }
    SafeTensors st;
    if (safetensors_open(&st, path, &err) == 0) {
        CHECK(st.n == 4, "4 tensors, got %d", st.n);
        for (int i = 0; i < 4; i++) {
            const SafeTensor *t = safetensors_find(&st, w[i].name);
            CHECK(t && t->ndim == w[i].ndim && !strcmp(t->dtype, "F32"), "%s found with its rank", w[i].name);
            if (!t) continue;
            size_t numel = 1;
            for (int d = 0; d < w[i].ndim; d++) { numel *= w[i].shape[d]; CHECK(t->shape[d] == w[i].shape[d], "%s shape", w[i].name); }
            CHECK(t->numel == numel, "%s numel", w[i].name);
            float back[24];
            CHECK(safetensors_to_f32(&st, t, back, &err) == 0 && !memcmp(back, w[i].data, numel * sizeof(float)),
                  "%s not bit-exact", w[i].name);
        }
        CHECK(safetensors_find(&st, "nope") == NULL && safetensors_find(&st, "__metadata__") == NULL, "find");
        safetensors_close(&st);
    } else CHECK(0, "%s", err.msg);

    // F16 and BF16: every non-NaN bit pattern, little-endian, decodes as half_to_float /
    // bfloat16_to_float; a few values known independently.
    unsigned char *halves = malloc(2 * 2 * 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        halves[2 * h] = (unsigned char)h; halves[2 * h + 1] = (unsigned char)(h >> 8);
        halves[131072 + 2 * h] = (unsigned char)h; halves[131072 + 2 * h + 1] = (unsigned char)(h >> 8);
    }
    write_raw_safetensors(path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[256,256],\"data_offsets\":[0,131072]},"
                          "\"b\":{\"dtype\":\"BF16\",\"shape\":[65536],\"data_offsets\":[131072,262144]}}", halves, 262144);
    free(halves);
    if (safetensors_open(&st, path, &err) == 0) {
        float *h = malloc(65536 * sizeof(float)), *b = malloc(65536 * sizeof(float));
        int ok = !safetensors_to_f32(&st, safetensors_find(&st, "h"), h, &err) && !safetensors_to_f32(&st, safetensors_find(&st, "b"), b, &err);
        int same_h = ok, same_b = ok;
        for (uint32_t i = 0; ok && i < 65536; i++) {
            float fh = half_to_float((uint16_t)i), fb = bfloat16_to_float((uint16_t)i);
            if ((i & 0x7C00) != 0x7C00 || !(i & 0x3FF)) same_h &= !memcmp(&h[i], &fh, 4);
            if ((i & 0x7F80) != 0x7F80 || !(i & 0x7F)) same_b &= !memcmp(&b[i], &fb, 4);
        }
        CHECK(same_h && same_b, "F16/BF16 decoding differs from half_to_float / bfloat16_to_float");
        CHECK(ok && h[0x3C00] == 1.0f && h[0xC000] == -2.0f && h[0x7BFF] == 65504.0f && b[0x3F80] == 1.0f && b[0xC0A0] == -5.0f,
              "known F16/BF16 values");
        free(h); free(b);
        safetensors_close(&st);
    } else CHECK(0, "%s", err.msg);

    // Malformed files: each is refused with a message naming the file and the problem.
    unsigned char data[16] = { 0 };
    struct { const char *header; size_t data_len; const char *expect; } bad[] = {
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, "offset" },
        { "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets" },
        { "[1, 2]", 0, "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_raw_safetensors(path, bad[i].header, data, bad[i].data_len);
        int rc = safetensors_open(&st, path, &err);
        CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, bad[i].expect), "malformed %zu: %s", i, rc ? err.msg : "accepted");
        if (!rc) safetensors_close(&st);
    }
    unsigned char header_past_eof[16] = { 0xE8, 0x03 };   // says 1000 header bytes; the file has 8 more
    write_bytes(path, header_past_eof, sizeof header_past_eof);
    CHECK(safetensors_open(&st, path, &err) != 0 && strstr(err.msg, path) && strstr(err.msg, "header length"), "header past EOF: %s", err.msg);
    write_bytes(path, header_past_eof, 5);
    CHECK(safetensors_open(&st, path, &err) != 0 && strstr(err.msg, "too short"), "5-byte file: %s", err.msg);
    // A dtype we can describe but not convert is an error when converted, naming the tensor.
    write_raw_safetensors(path, "{\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8);
    if (safetensors_open(&st, path, &err) == 0) {
        float out[2];
        CHECK(safetensors_to_f32(&st, &st.tensors[0], out, &err) != 0 && strstr(err.msg, "ids") && strstr(err.msg, "I32") && strstr(err.msg, path),
              "I32 conversion: %s", err.msg);
        safetensors_close(&st);
    } else CHECK(0, "%s", err.msg);
    remove(path);
}

// ---- HF directories and adapters: round trips and refusals

static void remove_dir(const char *dir, const char *const files[], int n) {
    char path[256];
    for (int i = 0; i < n; i++) { snprintf(path, sizeof path, "%s/%s", dir, files[i]); remove(path); }
    rmdir(dir);
}

static int same_lora(const LoRA *a, const LoRA *b) {
    if (!a || !b || a->rank != b->rank || a->alpha != b->alpha || a->use_rslora != b->use_rslora ||
        a->num_parameters != b->num_parameters || memcmp(a->targeted, b->targeted, sizeof a->targeted)) return 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (a->targeted[t] && (a->A[t] - a->memory != b->A[t] - b->memory || a->B[t] - a->memory != b->B[t] - b->memory)) return 0;
    return !memcmp(a->memory, b->memory, a->num_parameters * sizeof(float));
}

static void test_round_trips(void) {
    GfnError err;
    const char *hf_files[] = { "config.json", "model.safetensors" }, *peft_files[] = { "adapter_config.json", "adapter_model.safetensors" };
    // gpt_save_hf -> gpt_load_hf and gpt_load of the directory: bit-exact.
    GPTConfig config = { 50, 12, 3, 4, 8 };
    GPT *model = gpt_new_random(config, 99);
    CHECK(gpt_save_hf(model, test_path("hf"), &err) == 0, "%s", err.msg);
    GPT *back = gpt_load_hf(test_path("hf"), &err), *back2 = gpt_load(test_path("hf/"), &err);
    CHECK(back && back2, "reload: %s", err.msg);
    if (back && back2) {
        GPTConfig c = gpt_config(back);
        CHECK(!memcmp(&c, &config, sizeof c), "config round trip");
        CHECK(gpt_num_parameters(back) == gpt_num_parameters(model) &&
              !memcmp(gpt_params_memory(back), gpt_params_memory(model), gpt_num_parameters(model) * sizeof(float)) &&
              !memcmp(gpt_params_memory(back2), gpt_params_memory(model), gpt_num_parameters(model) * sizeof(float)),
              "HF directory round trip not bit-exact");
    }
    gpt_free(back); gpt_free(back2);

    // Refusals: an epsilon we do not compute, a missing tensor, a wrong shape.
    const char *cfg = "{\"vocab_size\": 50, \"n_positions\": 12, \"n_embd\": 8, \"n_layer\": 3, \"n_head\": 4, \"layer_norm_epsilon\": 1e-6}";
    write_bytes(test_path("hf/config.json"), cfg, strlen(cfg));
    CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, test_path("hf/config.json")) && strstr(err.msg, "layer_norm_epsilon"), "eps: %s", err.msg);
    cfg = "{\"vocab_size\": 50, \"n_positions\": 12, \"n_embd\": 8, \"n_layer\": 4, \"n_head\": 4}";
    write_bytes(test_path("hf/config.json"), cfg, strlen(cfg));
    CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, "missing tensor transformer.h.3.ln_1.weight"), "missing: %s", err.msg);
    cfg = "{\"vocab_size\": 51, \"n_positions\": 12, \"n_embd\": 8, \"n_layer\": 3, \"n_head\": 4}";
    write_bytes(test_path("hf/config.json"), cfg, strlen(cfg));
    CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, "transformer.wte.weight") && strstr(err.msg, "shape"), "shape: %s", err.msg);
    cfg = "{\"vocab_size\": 50, \"n_positions\": 12, \"n_embd\": 8, \"n_layer\": 2, \"n_head\": 4}";
    write_bytes(test_path("hf/config.json"), cfg, strlen(cfg));
    CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, "unexpected tensor transformer.h.2"), "extra layer: %s", err.msg);
    cfg = "{\"vocab_size\": 50, \"n_positions\": 12, \"n_embd\": 8, \"n_layer\": 3, \"n_head\": 4, \"activation_function\": \"relu\"}";
    write_bytes(test_path("hf/config.json"), cfg, strlen(cfg));
    CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, "activation_function"), "relu: %s", err.msg);
    cfg = "{\"vocab_size\": 50, \"n_positions\": 12, \"n_embd\": 8, \"n_layer\": 3, \"n_head\": 4}";
    write_bytes(test_path("hf/config.json"), cfg, strlen(cfg));
    // An lm_head.weight is accepted when it is wte (tied), refused when it differs.
    SafeTensors st;
    if (safetensors_open(&st, test_path("hf/model.safetensors"), &err) == 0) {
        SafeTensorWrite *w = calloc((size_t)st.n + 1, sizeof *w);
        float *values = malloc((gpt_num_parameters(model) + 50 * 8) * sizeof(float)), *v = values;
        for (int i = 0; i < st.n; i++, v += st.tensors[i - 1].numel) {
            w[i].name = st.tensors[i].name;
            w[i].ndim = st.tensors[i].ndim;
            memcpy(w[i].shape, st.tensors[i].shape, sizeof w[i].shape);
            w[i].data = v;
            safetensors_to_f32(&st, &st.tensors[i], v, &err);
        }
        memcpy(v, gpt_params(model)->wte, 50 * 8 * sizeof(float));
        w[st.n] = (SafeTensorWrite){ "lm_head.weight", 2, { 50, 8 }, v };
        CHECK(safetensors_write(test_path("hf/model.safetensors"), w, st.n + 1, &err) == 0, "%s", err.msg);
        back = gpt_load_hf(test_path("hf"), &err);
        CHECK(back && !memcmp(gpt_params_memory(back), gpt_params_memory(model), gpt_num_parameters(model) * sizeof(float)), "tied lm_head: %s", err.msg);
        gpt_free(back);
        v[17] += 1.0f;
        CHECK(safetensors_write(test_path("hf/model.safetensors"), w, st.n + 1, &err) == 0, "%s", err.msg);
        CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, "lm_head.weight differs"), "untied lm_head: %s", err.msg);
        free(values); free(w);
        safetensors_close(&st);
    } else CHECK(0, "%s", err.msg);
    remove_dir(test_path("hf"), hf_files, 2);
    CHECK(gpt_load_hf(test_path("hf"), &err) == NULL && strstr(err.msg, test_path("hf/config.json")), "no dir: %s", err.msg);

    // Adapters: PEFT directory and our file, bit-exact, for both fixture adapters.
    GPT *tiny = gpt_load_hf(FIXTURES "tiny_hf", &err), *fresh = gpt_load_hf(FIXTURES "tiny_hf", &err);
    if (!tiny || !fresh) { CHECK(0, "%s", err.msg); gpt_free(model); gpt_free(tiny); gpt_free(fresh); return; }
    const char *adapters[2] = { FIXTURES "tiny_lora", FIXTURES "tiny_lora_rs" };
    const char *expect_modules[2] = { "[\"c_attn\", \"c_proj\", \"c_fc\"]", "[\"c_attn\", \"mlp.c_proj\"]" };
    for (int a = 0; a < 2; a++) {
        if (lora_load(tiny, adapters[a], &err)) { CHECK(0, "%s", err.msg); continue; }
        CHECK(lora_save(tiny, test_path("peft/"), &err) == 0, "%s", err.msg);
        CHECK(lora_load(fresh, test_path("peft"), &err) == 0 && same_lora(gpt_lora(tiny), gpt_lora(fresh)), "PEFT round trip: %s", err.msg);
        size_t len;
        char *text = (char *)read_file(test_path("peft/adapter_config.json"), &len, &err);
        CHECK(text && strstr(text, expect_modules[a]) && strstr(text, "\"fan_in_fan_out\": true"), "target_modules %s in %s", expect_modules[a], text ? text : err.msg);
        free(text);
        remove_dir(test_path("peft"), peft_files, 2);
        gpt_lora_detach(fresh);
        CHECK(lora_save(tiny, test_path("adapter.lora"), &err) == 0, "%s", err.msg);
        CHECK(lora_load(fresh, test_path("adapter.lora"), &err) == 0 && same_lora(gpt_lora(tiny), gpt_lora(fresh)), "adapter file round trip: %s", err.msg);
    }
    // PEFT configs we must refuse: a target list that disagrees with the tensors ("c_proj" selects
    // both projections, the weights hold only mlp.c_proj), other PEFT methods and options.
    CHECK(lora_load(tiny, FIXTURES "tiny_lora_rs", &err) == 0 && lora_save(tiny, test_path("peft/"), &err) == 0, "%s", err.msg);
    const char *configs[][2] = {
        { "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"c_attn\", \"c_proj\"]}", "attn.c_proj" },
        { "{\"peft_type\": \"PREFIX_TUNING\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"c_attn\"]}", "peft_type" },
        { "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_dora\": true, \"target_modules\": \".*\"}", "DoRA" },
        { "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 8, \"target_modules\": \".*\"}", "r = 2" },
        { "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"c_attn\", \"mlp.c_proj\"]", "offset" },
    };
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        write_bytes(test_path("peft/adapter_config.json"), configs[i][0], strlen(configs[i][0]));
        CHECK(lora_load(fresh, test_path("peft"), &err) != 0 && strstr(err.msg, test_path("peft/adapter_")) && strstr(err.msg, configs[i][1]),
              "PEFT config %zu: %s", i, err.msg);
    }
    remove_dir(test_path("peft"), peft_files, 2);
    // Loading over an attached adapter replaces it.
    CHECK(lora_load(fresh, FIXTURES "tiny_lora", &err) == 0 && lora_load(tiny, FIXTURES "tiny_lora", &err) == 0 &&
          same_lora(gpt_lora(tiny), gpt_lora(fresh)), "reload over an adapter");

    // Wrong model for the adapter: clean errors, the model untouched.
    CHECK(lora_load(model, FIXTURES "tiny_lora", &err) != 0 && strstr(err.msg, "tiny_lora") && gpt_lora(model) == NULL,
          "PEFT adapter on the wrong model: %s", err.msg);
    CHECK(lora_load(model, test_path("adapter.lora"), &err) != 0 && strstr(err.msg, test_path("adapter.lora")) && gpt_lora(model) == NULL,
          "adapter file on the wrong model: %s", err.msg);
    GPTConfig wide = { 64, 16, 2, 2, 32 };
    GPT *wide_model = gpt_new_random(wide, 1);
    CHECK(lora_load(wide_model, FIXTURES "tiny_lora_rs", &err) != 0 && strstr(err.msg, "shape") && gpt_lora(wide_model) == NULL,
          "PEFT adapter with the wrong width: %s", err.msg);
    CHECK(lora_load(wide_model, test_path("adapter.lora"), &err) != 0 && strstr(err.msg, "module") && gpt_lora(wide_model) == NULL,
          "adapter file with the wrong width: %s", err.msg);
    gpt_free(wide_model);
    // A truncated adapter file and a missing one.
    size_t len;
    unsigned char *bytes = read_file(test_path("adapter.lora"), &len, &err);
    if (bytes) { write_bytes(test_path("adapter.lora"), bytes, len - 4); free(bytes); }
    CHECK(lora_load(fresh, test_path("adapter.lora"), &err) != 0 && strstr(err.msg, "bytes"), "truncated adapter: %s", err.msg);
    remove(test_path("adapter.lora"));
    CHECK(lora_load(fresh, "tests_no_such.lora", &err) != 0 && strstr(err.msg, "tests_no_such.lora"), "missing adapter: %s", err.msg);
    CHECK(lora_save(model, test_path("adapter.lora"), &err) != 0 && strstr(err.msg, "no LoRA"), "saving without an adapter: %s", err.msg);
    gpt_free(model); gpt_free(tiny); gpt_free(fresh);
}

void test_hf(void) {
    test_safetensors();
    test_parity();
    test_round_trips();
}
