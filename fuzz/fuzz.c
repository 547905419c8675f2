// fuzz/fuzz.c — libFuzzer harnesses for every loader of outside files (make fuzz). One file, one
// target per build: -DFUZZ_JSON, -DFUZZ_CHECKPOINT, -DFUZZ_HF, -DFUZZ_PEFT, -DFUZZ_TOKENIZER,
// -DFUZZ_GPT2_VOCAB or -DFUZZ_IDS. Each writes the input where the loader expects a file (a
// directory for the two-file formats: the input split at its first NUL byte) and loads it; a
// clean error is a pass, a crash or a sanitizer finding is a failure.
#define _POSIX_C_SOURCE 200809L
#include "../gfn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char work[64];   // this process's scratch directory

#ifndef FUZZ_JSON
static void put(const char *name, const uint8_t *data, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", work, name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (size) fwrite(data, 1, size, f);
    fclose(f);
}

#if defined(FUZZ_CHECKPOINT) || defined(FUZZ_PEFT) || defined(FUZZ_TOKENIZER) || defined(FUZZ_IDS)
static const char *at(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", work, name);
    return path;
}
#endif

// A directory format: DIR/first gets the input before its first NUL byte, DIR/second the rest.
// Returns the directory's path.
#if defined(FUZZ_HF) || defined(FUZZ_PEFT) || defined(FUZZ_GPT2_VOCAB)
static const char *put_pair(const char *dir, const char *first, const char *second, const uint8_t *data, size_t size) {
    static char path[128], name[128];
    snprintf(path, sizeof path, "%s/%s", work, dir);
    mkdir(path, 0755);
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    snprintf(name, sizeof name, "%s/%s", dir, first);
    put(name, data, n);
    snprintf(name, sizeof name, "%s/%s", dir, second);
    put(name, nul ? nul + 1 : data + size, nul ? size - n - 1 : 0);
    return path;
}
#endif
#endif

#if defined(FUZZ_TOKENIZER) || defined(FUZZ_GPT2_VOCAB)
// A tokenizer that loaded must also encode and decode without harm; then it is freed.
static void exercise(Tokenizer *tok) {
    GfnError err;
    if (tok) {
        size_t n, len;
        int *ids = tokenizer_encode(tok, "Hello world <|endoftext|> 123", 29, 1, &n);
        free(tokenizer_decode(tok, ids, n, &len, &err));
        free(ids);
    }
    tokenizer_free(tok);
}
#endif

// The scratch files of every target, removed when the fuzzer exits.
static void remove_work(void) {
    static const char *const names[] = {
        "model.ckpt", "hf/config.json", "hf/model.safetensors", "hf", "peft/adapter_config.json",
        "peft/adapter_model.safetensors", "peft", "adapter.lora", "tokenizer.bin", "gpt2/encoder.json",
        "gpt2/vocab.bpe", "gpt2", "ids.txt", "ids_model.ckpt",
    };
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", work, names[i]);
        if (remove(path) != 0) rmdir(path);
    }
    rmdir(work);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    snprintf(work, sizeof work, "/tmp/gfn_fuzz_%ld", (long)getpid());
    mkdir(work, 0755);
    atexit(remove_work);
    return 0;
}

#ifdef FUZZ_IDS
int gfn_cli_main(int argc, char **argv);   // gfn.c's main(), renamed for this build
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GfnError err;
#if defined(FUZZ_JSON)
    json_free(json_parse((const char *)data, size, "fuzz", &err));
#elif defined(FUZZ_CHECKPOINT)
    put("model.ckpt", data, size);
    gpt_free(gpt_load(at("model.ckpt"), &err));
#elif defined(FUZZ_HF)
    gpt_free(gpt_load(put_pair("hf", "config.json", "model.safetensors", data, size), &err));
#elif defined(FUZZ_PEFT)
    static GPT *base;   // a tiny model the adapters are loaded onto
    if (!base) base = gpt_new_random((GPTConfig){ 64, 16, 2, 2, 16 }, 1);   // tests/fixtures/tiny_hf's shape
    lora_load(base, put_pair("peft", "adapter_config.json", "adapter_model.safetensors", data, size), &err);
    put("adapter.lora", data, size);   // and the same bytes as our own adapter file
    lora_load(base, at("adapter.lora"), &err);
    if (gpt_lora(base)) gpt_lora_detach(base);
#elif defined(FUZZ_TOKENIZER)
    put("tokenizer.bin", data, size);
    exercise(tokenizer_load(at("tokenizer.bin"), &err));
#elif defined(FUZZ_GPT2_VOCAB)
    exercise(tokenizer_load(put_pair("gpt2", "encoder.json", "vocab.bpe", data, size), &err));
#elif defined(FUZZ_IDS)
    static int ready;
    if (!ready) {   // a tiny model with 64 ids and a context of 8 (make fuzz discards gfn's output)
        GPT *m = gpt_new_random((GPTConfig){ 64, 8, 1, 2, 8 }, 1);
        gpt_save(m, at("ids_model.ckpt"), &err);
        gpt_free(m);
        ready = 1;
    }
    put("ids.txt", data, size);
    char model[128], ids[128];
    snprintf(model, sizeof model, "%s", at("ids_model.ckpt"));
    snprintf(ids, sizeof ids, "%s", at("ids.txt"));
    char *argv[] = { "gfn", "score", "-m", model, "--ids", ids, NULL };
    gfn_cli_main(6, argv);
#else
#error "define one FUZZ_ target"
#endif
    return 0;
}
