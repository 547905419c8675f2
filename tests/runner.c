// tests/runner.c — the one test runner of `make test`. Runs every suite (or those named on the
// command line) and ends with the line "N passed, N failed, N skipped". Suites mirror the source
// files (tests/test_FILE.c); the runner links them without main.c.
#define _POSIX_C_SOURCE 200809L   // mkdtemp
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int tests_passed, tests_failed, tests_skipped;

int test_check(int ok, const char *cond, const char *file, int line, const char *fmt, ...) {
    if (ok) { tests_passed++; return 1; }
    tests_failed++;
    fprintf(stdout, "FAIL %s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

void test_skip(const char *name, const char *why) {
    tests_skipped++;
    printf("SKIP %s: %s\n", name, why);
}

const char *test_data_dir(void) { return gfn_data_dir(); }

// This run's scratch directory: made once with mkdtemp (so two runs in one folder never share a
// file) and removed with everything in it when the runner ends.
static char tmp_dir[64];
const char *test_tmp_dir(void) {
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "tests_tmp_XXXXXX");
        if (!mkdtemp(tmp_dir)) { perror("tests: mkdtemp"); exit(1); }
    }
    return tmp_dir;
}

// Each name gets one string for the whole run (the same pointer every time), freed at the end.
static char **tmp_paths;
static int num_tmp_paths;
const char *test_path(const char *name) {
    size_t dir_len = strlen(test_tmp_dir());
    for (int i = 0; i < num_tmp_paths; i++)
        if (!strcmp(tmp_paths[i] + dir_len + 1, name)) return tmp_paths[i];
    tmp_paths = realloc(tmp_paths, (size_t)(num_tmp_paths + 1) * sizeof *tmp_paths);
    char *p = malloc(dir_len + strlen(name) + 2);
    if (!tmp_paths || !p) { fprintf(stderr, "tests: out of memory\n"); exit(1); }
    sprintf(p, "%s/%s", tmp_dir, name);
    return tmp_paths[num_tmp_paths++] = p;
}

// Suites: each tests/test_*.c file adds its functions here.
#define SUITES(X) \
    X(util) \
    X(tokenizer) \
    X(model) \
    X(matmul) \
    X(hf) \
    X(pretrain) \
    X(corpus) \
    X(gfn) \
    X(resume) \
    X(decode) \
    X(eval) \
    X(arithmetic) \
    X(texttasks) \
    X(probe) \
    X(weights) \
    X(badinput)

#define DECLARE(name) void test_##name(void);
SUITES(DECLARE)

typedef struct { const char *name; void (*fn)(void); } Suite;
#define ENTRY(name) { #name, test_##name },
static const Suite suites[] = { SUITES(ENTRY) };

int main(int argc, char **argv) {
    gfn_threads_init(argv);
    for (size_t i = 0; i < sizeof suites / sizeof *suites; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++) wanted |= !strcmp(argv[a], suites[i].name);
        if (!wanted) continue;
        int before = tests_failed;
        printf("== %s\n", suites[i].name);
        fflush(stdout);
        suites[i].fn();
        printf("   %s: %s\n", suites[i].name, tests_failed == before ? "ok" : "FAILED");
        fflush(stdout);
    }
    if (tmp_dir[0]) {   // the scratch directory and all in it
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", tmp_dir);
        if (system(cmd) != 0) printf("tests: could not remove %s\n", tmp_dir);
    }
    for (int i = 0; i < num_tmp_paths; i++) free(tmp_paths[i]);
    free(tmp_paths);
    printf("%d passed, %d failed, %d skipped\n", tests_passed, tests_failed, tests_skipped);
    return tests_failed ? 1 : 0;
}
