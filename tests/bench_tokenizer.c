// tests/bench_tokenizer.c — tokenizer speed on this machine: GPT-2 encode throughput (one thread)
// and the time to train a 4096-id vocabulary, both on the Brown corpus from the data dir.
#include "../gfn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


void bench_tokenizer(void) {
    const char *dir = gfn_data_dir();
    char corpus[512], vocab[512];
    struct stat st;
    snprintf(corpus, sizeof corpus, "%s/corpora/brown.txt", dir ? dir : ".");
    snprintf(vocab, sizeof vocab, "%s/gpt2", dir ? dir : ".");
    if (!dir || stat(corpus, &st) != 0 || stat(vocab, &st) != 0) {
        printf("tokenizer: skipped (no corpora/brown.txt or gpt2/ in the data dir; set GFN_DATA)\n");
        return;
    }
    GfnError err;
    size_t len;
    char *text = (char *)read_file(corpus, &len, &err);
    if (!text) { printf("tokenizer: skipped: %s\n", err.msg); return; }
    double mb = (double)len / 1e6;
    printf("tokenizer: GPT-2 vocabulary, %s (%.1f MB), one thread, best of 3\n", corpus, mb);
    // Cold: a freshly loaded tokenizer, its pre-token cache empty; warm: the same text again.
    // Wall time is the figure; process CPU time (clock) is shown too, since on a shared machine
    // the wall time also counts the time other processes held the core.
    double cold = 1e30, warm = 1e30, load = 1e30, cold_cpu = 1e30, t0;
    size_t n = 0;
    for (int rep = 0; rep < 3; rep++) {
        t0 = now_seconds();
        Tokenizer *tok = tokenizer_load(vocab, &err);
        if (!tok) { printf("tokenizer: skipped: %s\n", err.msg); free(text); return; }
        double t1 = now_seconds();
        clock_t c1 = clock();
        int *ids = tokenizer_encode(tok, text, len, 0, &n);
        double t2 = now_seconds(), cpu = (double)(clock() - c1) / CLOCKS_PER_SEC;
        if (cpu < cold_cpu) cold_cpu = cpu;
        free(ids);
        ids = tokenizer_encode(tok, text, len, 0, &n);
        double t3 = now_seconds();
        free(ids);
        tokenizer_free(tok);
        if (t1 - t0 < load) load = t1 - t0;
        if (t2 - t1 < cold) cold = t2 - t1;
        if (t3 - t2 < warm) warm = t3 - t2;
    }
    printf("  %-26s %8.3f s\n", "load GPT-2 vocabulary", load);
    printf("  %-26s %8.1f MB/s  %10.0f tokens/s  (%zu tokens)\n", "encode, cold cache", mb / cold, (double)n / cold, n);
    printf("  %-26s %8.1f MB/s  %10.0f tokens/s\n", "encode, warm cache", mb / warm, (double)n / warm);
    printf("  %-26s %8.1f MB/s  (process CPU time)\n", "encode, cold cache", mb / cold_cpu);
    free(text);

    t0 = now_seconds();
    const char *paths[1] = { corpus };
    Tokenizer *trained = tokenizer_train(paths, 1, 4096, &err);
    double train = now_seconds() - t0;
    if (trained) printf("  %-26s %8.2f s\n", "train 4096 ids", train);
    else printf("  train 4096 ids: failed: %s\n", err.msg);
    tokenizer_free(trained);
    printf("bench tokenizer_encode_mb_s %.2f\n", mb / cold);
    printf("bench tokenizer_encode_tokens_s %.0f\n", (double)n / cold);
    if (trained) printf("bench tokenizer_train_4096_s %.3f\n", train);
}
