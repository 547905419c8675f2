// tests/bench_gfn.c — the GFlowNet core's targets (issue 4): the `toy` task's distance to its exact
// posterior for each objective, and the `rng` task's validity and KL to uniform for the base, the
// reward maximiser and the GFlowNets, each with its wall time. Runs the `./gfn train` commands a
// user would (the README's examples), so `make bench` builds ./gfn first.
#define _POSIX_C_SOURCE 200809L   // popen, clock_gettime under -std=c11
#include "../gfn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { MAX_METRICS = 16 };
typedef struct { char name[MAX_METRICS][64]; double value[MAX_METRICS]; int count; double seconds; } Metrics;

// Runs `./gfn train ARGS` and collects its `name value` lines. Missing metrics read as NaN.
static int run_train(const char *args, Metrics *m) {
    char command[1024];
    snprintf(command, sizeof command, "./gfn train %s -q 2>/dev/null", args);
    memset(m, 0, sizeof *m);
    double t0 = wall_seconds();
    FILE *p = popen(command, "r");
    if (!p) { printf("  could not run: %s\n", command); return 1; }
    char line[4096];
    while (fgets(line, sizeof line, p)) {
        char name[64];
        double value;
        if (m->count < MAX_METRICS && sscanf(line, "%63s %lf", name, &value) == 2) {
            snprintf(m->name[m->count], sizeof m->name[0], "%s", name);
            m->value[m->count++] = value;
        }
    }
    int status = pclose(p);
    m->seconds = wall_seconds() - t0;
    if (status != 0) { printf("  failed (status %d): %s\n", status, command); return 1; }
    return 0;
}

static double metric(const Metrics *m, const char *name) {
    for (int i = 0; i < m->count; i++) if (!strcmp(m->name[i], name)) return m->value[i];
    return NAN;
}

#define TOY_FLAGS "--rank 8 --alpha 16 --warmup 10 --on-policy 0.5 --tempered 0.25 --temp-lo 0.8 --temp-hi 1.5 --lr 1e-2"
#define RNG_FLAGS "--batch 32 --rank 8 --alpha 16 --warmup 10 --lr 5e-3 --on-policy 0.5 --tempered 0.25 --temp-lo 0.8 --temp-hi 1.5"

void bench_gfn(void) {
    static const struct { const char *loss, *args; } toy[] = {
        { "subtb",   "--loss subtb --steps 2500 --batch 32" },
        { "tb",      "--loss tb --steps 2500 --batch 64" },
        { "db",      "--loss db --steps 2500 --batch 32" },
        { "vargrad", "--loss vargrad --steps 2500 --batch 32" },
    };
    printf("toy: L1 and KL(p||q) to the exact posterior (1555 Z), from the untuned base's; target L1 <= 0.02,\n"
           "TB |log Z learned - log Z true| <= 0.05, each in <= 3 minutes (flags: " TOY_FLAGS ")\n");
    printf("  %-8s %-40s %9s %9s %9s %10s %10s %8s\n", "loss", "run", "L1 start", "L1", "KL", "logZ true", "logZ TB", "wall s");
    for (size_t i = 0; i < sizeof toy / sizeof *toy; i++) {
        char args[512];
        snprintf(args, sizeof args, "toy %s " TOY_FLAGS, toy[i].args);
        Metrics m;
        if (run_train(args, &m)) continue;
        printf("  %-8s %-40s %9.4f %9.4f %9.5f %10.4f %10.4f %8.1f\n", toy[i].loss, toy[i].args, metric(&m, "l1_base"),
               metric(&m, "l1"), metric(&m, "kl"), metric(&m, "logz_true"), metric(&m, "logz_learned"), m.seconds);
        printf("bench toy_%s_l1 %.4f\n", toy[i].loss, metric(&m, "l1"));
        if (!strcmp(toy[i].loss, "tb")) printf("bench toy_tb_logz_error %.4f\n", fabs(metric(&m, "logz_learned") - metric(&m, "logz_true")));
        printf("bench toy_%s_seconds %.1f\n", toy[i].loss, m.seconds);
        fflush(stdout);
    }

    static const struct { const char *method, *args; } rng[] = {
        { "base",      "--steps 0" },
        { "reinforce", "--loss reinforce --steps 400" },
        { "tb",        "--loss tb --steps 3000" },
        { "subtb",     "--loss subtb --steps 3000" },
    };
    printf("rng (built-in character-level base): valid fraction and KL to uniform over 0-100, sampled (10000)\n"
           "and exact; target: GFlowNet >= 99%% valid, KL <= 0.05 (flags: " RNG_FLAGS ")\n");
    printf("  %-10s %-32s %8s %10s %10s %8s\n", "method", "run", "valid", "KL", "KL exact", "wall s");
    for (size_t i = 0; i < sizeof rng / sizeof *rng; i++) {
        char args[512];
        snprintf(args, sizeof args, "rng %s " RNG_FLAGS, rng[i].args);
        Metrics m;
        if (run_train(args, &m)) continue;
        printf("  %-10s %-32s %8.4f %10.4f %10.4f %8.1f\n", rng[i].method, rng[i].args, metric(&m, "valid"),
               metric(&m, "kl_uniform"), metric(&m, "kl_uniform_exact"), m.seconds);
        printf("bench rng_%s_valid %.4f\nbench rng_%s_kl %.4f\n", rng[i].method, metric(&m, "valid"), rng[i].method,
               metric(&m, "kl_uniform"));
        fflush(stdout);
    }
}
