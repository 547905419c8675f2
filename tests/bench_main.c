// tests/bench_main.c — `make bench`: prints each bench's table of this machine's figures, then
// one machine-readable line per figure, `bench NAME VALUE`. Speed targets live here, never in
// tests. `tests/bench NAME...` runs only the named benches.
#include "../gfn.h"

#include <string.h>

// Benches: each tests/bench_*.c file defines `void bench_NAME(void)` and adds a line here.
#define BENCHES(X) \
    X(matmul) \
    X(model) \
    X(pretrain) \
    X(tokenizer) \
    X(gfn) \
    X(finetune) \
    X(arith)

#define DECLARE(name) void bench_##name(void);
BENCHES(DECLARE)

typedef struct { const char *name; void (*fn)(void); } Bench;
#define ENTRY(name) { #name, bench_##name },
static const Bench benches[] = { BENCHES(ENTRY) { NULL, NULL } };

int main(int argc, char **argv) {
    gfn_threads_init(argv);
    for (const Bench *b = benches; b->name; b++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++) wanted |= !strcmp(argv[a], b->name);
        if (wanted) { b->fn(); fflush(stdout); }
    }
    return 0;
}
