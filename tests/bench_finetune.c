// tests/bench_finetune.c — the speed of fine-tuning (issue 13), against the machine's own matmul
// rate measured in the same run: arithmetic fine-tuning (`make run`'s step shape) in seconds per
// step and trajectories per second, question-only and 3-shot prompts, on the first path (no prefix
// sharing, no pipeline), with prefix sharing alone and today's, 1 and 2 threads, and 2 threads beside a
// competing busy process; sampling tokens per second at batch 1, 16 and 64; the step's counted
// useful FLOPs over (step time x matmul rate); the matmul at M = 16, 64, 256 against its best.
// GFN_BENCH_STEPS (default 3) sets the training steps timed per configuration.
#define _POSIX_C_SOURCE 200809L   // fork, kill, waitpid, clock_gettime under -std=c11
#include "../gfn.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// Best GFLOP/s of out (M, N) = inp (M, K) · W (K, N) over a few repeats (operands in cache after
// the first).
static double matmul_gflops(int M, int K, int N) {
    float *a = gfn_malloc(sizeof(float) * (size_t)M * K), *w = gfn_malloc(sizeof(float) * (size_t)K * N);
    float *out = gfn_malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++) w[i] = (float)(i % 5) * 0.1f;
    double best = 0, flops = 2.0 * M * K * N;
    int reps = (int)(2e9 / flops) + 3;
    for (int r = 0; r < reps; r++) {
        double t0 = wall_seconds();
        matmul_forward(out, a, w, NULL, M, K, N);
        double dt = wall_seconds() - t0;
        if (dt > 0 && flops / dt / 1e9 > best) best = flops / dt / 1e9;
    }
    free(a); free(w); free(out);
    return best;
}

// A process that only burns a core, as other programs on a laptop do; returns its pid.
static pid_t busy_process(void) {
    pid_t pid = fork();
    if (pid == 0) { volatile unsigned long x = 0; for (;;) x++; }
    return pid;
}

// The step `make run` trains with: STEP_QUERIES micro-batches (gradient accumulation), each one
// question x STEP_K samples, LoRA rank 16, 1 micro-batch in 8 replaying a worked rationale.
enum { STEP_QUERIES = 4, STEP_K = 8, STEP_TRAJ = STEP_QUERIES * STEP_K };

// The paths compared: the first (no prefix sharing, a policy that copies the base's weights, the
// threads inside each product: GFN_NO_PREFIX_SHARE=1 GFN_NO_PIPELINE=1), prefix sharing alone
// (GFN_NO_PIPELINE=1), and today's (prefix sharing, the policy a view of the base, the pipeline).
enum { PATH_OLD, PATH_SHARED, PATH_NEW, PATHS };

// Seconds per step of `steps` arithmetic training steps with the `make run` flags.
static double train_seconds(Task *task, int steps, int path) {
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.steps = steps; cfg.batch = STEP_K; cfg.samples_per_query = STEP_K; cfg.accum = STEP_QUERIES;
    cfg.lora_rank = 16; cfg.lora_alpha = 16; cfg.warmup = 20; cfg.frac_gold = 0.125f;
    cfg.reward_temp_start = 1.1f; cfg.reward_temp_end = 0.5f; cfg.reward_temp_horizon = 150; cfg.quiet = 1;
    gfn_prefix_sharing = path != PATH_OLD;
    gfn_pipeline = path == PATH_NEW;
    GPT *policy = path == PATH_NEW ? gpt_view(task->base) : copy_model(task->base);
    float *log_z = gfn_calloc((size_t)task->num_train, sizeof(float));
    GfnError err = { { 0 } };
    double t0 = wall_seconds();
    if (gfn_train(task, policy, &cfg, log_z, &err)) printf("  training failed: %s\n", err.msg);
    double seconds = (wall_seconds() - t0) / steps;
    free(log_z);
    gpt_free(policy);
    gfn_prefix_sharing = gfn_pipeline = 1;
    return seconds;
}

// Useful forward FLOPs of one token: 2 per weight it multiplies (the layers and the tied head);
// attention's O(context) part is left out (about 7% at these lengths).
static double token_flops(GPTConfig c, int lora_rank) {
    double C = c.n_embd, L = c.n_layer;
    return 2.0 * (L * 12.0 * C * C + C * c.vocab_size) + 2.0 * L * lora_rank * (C + 3 * C + C + C + C + 4 * C + 4 * C + C);
}

// Useful FLOPs of one training step (STEP_QUERIES micro-batches of one question x STEP_K rows,
// the rows sampled from the base): per micro-batch the decoding (the prompt once, then each
// row's Z), the reward (its context — the 3-shot prompt and the question — once, then each row's
// Z and the answer Y after every state), the teacher-forced forward (the prompt once, each row's
// Z) and its backward (the base is frozen: the input gradient through every layer, one forward's
// worth; the LoRA terms are in token_flops). A gold micro-batch samples nothing: counting it as
// sampled overstates the step's work by about 1/8 of the decoding.
static double step_flops(Task *task) {
    Traj *t[STEP_K];
    int queries[STEP_K];
    Rng rng;
    rng_seed(&rng, 5);
    SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
    double tokens = 0;
    for (int q = 0; q < STEP_QUERIES; q++) {
        for (int i = 0; i < STEP_K; i++) { t[i] = traj_new(task->max_len); queries[i] = q; }
        sample_trajectories(task->base, task, queries, t, STEP_K, &sc, &rng);
        int plen, clen, ylen;
        const int *ans;
        task->prompt(task, q, &plen);
        arith_reward_context(task, q, &clen, &ans, &ylen);
        double z = 0, y = 0;
        for (int i = 0; i < STEP_K; i++) { z += t[i]->ntok + 1; y += (double)(t[i]->nact + 1) * ylen; traj_free(t[i]); }
        tokens += (plen + z) + (clen + z + y) + 2.0 * (plen + z);   // decode, reward, forward + backward
    }
    return token_flops(gpt_config(task->base), 16) * tokens;
}

void bench_finetune(void) {
    int steps = getenv("GFN_BENCH_STEPS") ? atoi(getenv("GFN_BENCH_STEPS")) : 3;
    if (steps < 1) steps = 1;
#ifdef _OPENMP
    int max_threads = omp_get_max_threads() < 2 ? 2 : omp_get_max_threads();
#else
    int max_threads = 1;
#endif
    // The matmul's best in-cache figure: the largest of the shapes below (the model's own, and
    // GPT-2's 256x768x3072), each the best of a few repeats, on 1 thread and on all of them.
    set_threads(1);
    static const int ms[3] = { 16, 64, 256 };
    double g1[3], peak1 = matmul_gflops(256, 768, 3072), big1 = peak1;
    for (int i = 0; i < 3; i++) { g1[i] = matmul_gflops(ms[i], 256, 1024); if (g1[i] > peak1) peak1 = g1[i]; }
    printf("finetune: matmul (1 thread) against its best in-cache figure here, %.1f GFLOP/s (256x768x3072: %.1f)\n", peak1, big1);
    for (int i = 0; i < 3; i++) {
        printf("  M=%-4d K=256 N=1024  %7.1f GFLOP/s  %5.1f%% of best\n", ms[i], g1[i], 100 * g1[i] / peak1);
        printf("bench matmul_m%d_fraction %.3f\n", ms[i], g1[i] / peak1);
    }
    // Decode products (the sampler at batch 1-5: the few-rows path): a 768 x 3072 weight (9 MB,
    // out of cache) read once per product, so the figure that matters is its bytes per second.
    double gbs[5];
    for (int m = 1; m <= 5; m++) gbs[m - 1] = 2 * matmul_gflops(m, 768, 3072) / m;   // 4KN bytes / (2MKN / g)
    printf("  decode, K=768 N=3072 (1 thread), weight read at: M=1 %.1f, M=2 %.1f, M=3 %.1f, M=4 %.1f, M=5 %.1f GB/s\n",
           gbs[0], gbs[1], gbs[2], gbs[3], gbs[4]);
    for (int m = 1; m <= 5; m++) printf("bench decode_m%d_weight_gbs %.1f\n", m, gbs[m - 1]);
    set_threads(max_threads);
    double peak2 = matmul_gflops(256, 768, 3072), m256 = matmul_gflops(256, 256, 1024);
    if (m256 > peak2) peak2 = m256;
    printf("  best with %d threads: %.1f GFLOP/s\n", max_threads, peak2);

    static const char *const prompts[2] = { "question", "fewshot" };
    printf("arithmetic fine-tuning step (make run's: %d micro-batches of 1 question x %d, rank 16; %d steps each): old = "
           "GFN_NO_PREFIX_SHARE=1 GFN_NO_PIPELINE=1, shared = GFN_NO_PIPELINE=1, new = both on; the three interleaved\n",
           STEP_QUERIES, STEP_K, steps);
    printf("  %-9s %-14s %11s %11s %11s %8s %9s %10s\n", "prompt", "threads", "old s/step", "shared", "new s/step", "speedup", "traj/s",
           "efficiency");
    for (int pi = 0; pi < 2; pi++) {
        Task *task = &task_arithmetic;
        TaskOptions opt = { "weights/base.ckpt", "weights/tokenizer.bin", "", 1, -13.815511f, 1, 0, NULL, prompts[pi], 0, 0, 0 };
        GfnError err = { { 0 } };
        if (task->setup(task, &opt, &err)) { printf("  %s: %s\n", prompts[pi], err.msg); return; }
        set_threads(1);
        double flops = step_flops(task), one_thread[PATHS] = { 0, 0, 0 };
        static const struct { int threads, busy; const char *name; } runs[3] = {
            { 1, 0, "1" }, { 2, 0, "2" }, { 2, 1, "2 + busy proc" },
        };
        for (int r = 0; r < 3; r++) {
            if (runs[r].threads > max_threads) continue;
            set_threads(runs[r].threads);
            pid_t busy = runs[r].busy ? busy_process() : -1;
            double sec[PATHS];
            for (int p = 0; p < PATHS; p++) sec[p] = train_seconds(task, steps, p);
            if (busy > 0) { kill(busy, SIGKILL); waitpid(busy, NULL, 0); }
            if (r == 0) for (int p = 0; p < PATHS; p++) one_thread[p] = sec[p];
            double peak = runs[r].threads == 1 ? peak1 : peak2;
            double eff = flops / (sec[PATH_NEW] * peak * 1e9);
            printf("  %-9s %-14s %11.3f %11.3f %11.3f %7.2fx %9.1f %9.1f%%", prompts[pi], runs[r].name, sec[PATH_OLD], sec[PATH_SHARED],
                   sec[PATH_NEW], sec[PATH_OLD] / sec[PATH_NEW], STEP_TRAJ / sec[PATH_NEW], 100 * eff);
            if (r > 0) printf("   vs 1 thread: old %.2fx, new %.2fx", one_thread[PATH_OLD] / sec[PATH_OLD], one_thread[PATH_NEW] / sec[PATH_NEW]);
            printf("\n");
            const char *tag = runs[r].busy ? "_busy" : "";
            printf("bench finetune_%s_t%d%s_step_s %.3f\nbench finetune_%s_t%d%s_speedup %.2f\nbench finetune_%s_t%d%s_efficiency %.3f\n",
                   prompts[pi], runs[r].threads, tag, sec[PATH_NEW], prompts[pi], runs[r].threads, tag, sec[PATH_OLD] / sec[PATH_NEW],
                   prompts[pi], runs[r].threads, tag, eff);
            if (r > 0) printf("bench finetune_%s_t%d%s_vs_t1 %.2f\n", prompts[pi], runs[r].threads, tag, one_thread[PATH_NEW] / sec[PATH_NEW]);
            fflush(stdout);
        }
        if (pi == 1) {   // sampling speed with the 3-shot prompt (its common part prefilled once)
            printf("sampling (base model, 3-shot prompt, %d threads): tokens/s by batch, best of 3\n", max_threads);
            set_threads(max_threads);
            static const int batches[3] = { 1, 16, 64 };
            for (int b = 0; b < 3; b++) {
                int n = batches[b];
                Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)n);
                int *queries = gfn_malloc(sizeof(int) * (size_t)n);
                for (int i = 0; i < n; i++) { t[i] = traj_new(task->max_len); queries[i] = i % task->num_train; }
                SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
                int rounds = n == 1 ? 8 : 2;
                double best = 0;   // the best of 3 repeats (the same draws): single runs here swing 2x
                for (int repeat = 0; repeat < 3; repeat++) {
                    Rng rng;
                    rng_seed(&rng, 3);
                    double tokens = 0, t0 = wall_seconds();
                    for (int k = 0; k < rounds; k++) {
                        sample_trajectories(task->base, task, queries, t, n, &sc, &rng);
                        for (int i = 0; i < n; i++) tokens += t[i]->ntok + 1;
                    }
                    double rate = tokens / (wall_seconds() - t0);
                    if (rate > best) best = rate;
                }
                printf("  batch %-3d %9.1f tokens/s\n", n, best);
                printf("bench sample_b%d_tokens_per_s %.1f\n", n, best);
                for (int i = 0; i < n; i++) traj_free(t[i]);
                free(t); free(queries);
            }
        }
        task->cleanup(task);
    }
}
