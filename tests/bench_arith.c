// tests/bench_arith.c — the main job's speed target (issue 6): `make run` (GFlowNet fine-tuning on
// arithmetic from the shipped weights, then base vs fine-tuned accuracy) in at most 10 minutes.
// Runs `make -s run` itself, so the figure is the README's command, and prints the accuracies
// that run wrote to results/run/. Needs weights/ (shipped in the repository).
#define _POSIX_C_SOURCE 200809L   // popen, clock_gettime under -std=c11
#include "../gfn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

// The value of the line "name value" in a result file, or NaN.
static double result_value(const char *path, const char *name) {
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    char line[4096], key[64];
    double value, found = NAN;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %lf", key, &value) == 2 && !strcmp(key, name)) found = value;
    fclose(f);
    return found;
}

void bench_arith(void) {
    printf("make run: GFlowNet (modified SubTB, and VarGrad with a minimum length) on arithmetic from the shipped weights; target <= 600 s wall\n");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    FILE *p = popen("make -s run 2>&1", "r");
    if (!p) { printf("  could not run make run\n"); return; }
    char line[4096];
    while (fgets(line, sizeof line, p)) {}   // the run's own table is read back from its files
    int status = pclose(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (status != 0) { printf("  make run failed (status %d)\n", status); return; }
    static const char *const runs[2][2] = { { "base", "results/run/base_s1.txt" }, { "subtb", "results/run/subtb_s1.txt" } };
    printf("  %-8s %8s %8s %8s %10s\n", "method", "acc 3", "acc 4", "acc 5", "questions");
    for (int r = 0; r < 2; r++)
        printf("  %-8s %8.3f %8.3f %8.3f %10.0f\n", runs[r][0], result_value(runs[r][1], "acc_3"), result_value(runs[r][1], "acc_4"),
               result_value(runs[r][1], "acc_5"), result_value(runs[r][1], "n_3"));
    printf("  wall time %.1f s (target <= 600)\n", seconds);
    printf("bench make_run_seconds %.1f\n", seconds);
    printf("bench make_run_subtb_acc_5 %.3f\n", result_value(runs[1][1], "acc_5"));
}
