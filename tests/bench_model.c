// tests/bench_model.c — speed of the matmul and of whole training steps, and the peak memory of
// a 124M training process. Times are the best of several runs after a warm-up, on a monotonic
// clock (the machine may be shared: the best run is the one least disturbed by others).
#define _POSIX_C_SOURCE 200809L   // clock_gettime, fork, pipe under -std=c11
#include "../gfn.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Thread counts to measure: 1 and 2 with OpenMP, only 1 without.
#ifdef _OPENMP
static const int thread_counts[] = { 1, 2 };
static void set_threads(int n) { omp_set_num_threads(n); }
#else
static const int thread_counts[] = { 1 };
static void set_threads(int n) { (void)n; }
#endif
#define NUM_THREAD_COUNTS ((int)(sizeof thread_counts / sizeof *thread_counts))
#define MOST_THREADS (thread_counts[NUM_THREAD_COUNTS - 1])

// Best time of fn(arg) over enough runs to fill ~`budget` seconds (at least 3, at most 30),
// after one warm-up run.
static double best_time(void (*fn)(void *), void *arg, double budget) {
    double t0 = now_seconds();
    fn(arg);
    double first = now_seconds() - t0, best = first;
    int reps = first > 0 ? (int)(budget / first) : 30;
    reps = reps < 3 ? 3 : reps > 30 ? 30 : reps;
    for (int r = 0; r < reps; r++) {
        t0 = now_seconds();
        fn(arg);
        double t = now_seconds() - t0;
        if (t < best) best = t;
    }
    return best;
}

static float *random_floats(Rng *rng, size_t n, float scale) {
    float *x = gfn_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * rng_uniform(rng) - 1.0f);
    return x;
}

// ----------------------------------------------------------------------------------------------
// matmul: GFLOP/s (2·M·K·N per product) of each direction at GPT-2-small shapes, M = B·T = 256

typedef struct {
    int M, K, N, transposed;   // transposed: the _nt variants (weight [N, K]), the tied LM head
    float *inp, *weight, *bias, *out, *dout, *dinp, *dweight;
} MatmulRun;

static void run_forward(void *p) {
    MatmulRun *r = p;
    if (r->transposed) matmul_forward_nt(r->out, r->inp, r->weight, r->M, r->K, r->N);
    else matmul_forward(r->out, r->inp, r->weight, r->bias, r->M, r->K, r->N);
}
static void run_backward_input(void *p) {
    MatmulRun *r = p;
    if (r->transposed) matmul_backward_nt(r->dinp, NULL, r->dout, r->inp, r->weight, r->M, r->K, r->N);
    else matmul_backward(r->dinp, NULL, NULL, r->dout, r->inp, r->weight, r->M, r->K, r->N);
}
static void run_backward_weight(void *p) {
    MatmulRun *r = p;
    if (r->transposed) matmul_backward_nt(NULL, r->dweight, r->dout, r->inp, r->weight, r->M, r->K, r->N);
    else matmul_backward(NULL, r->dweight, NULL, r->dout, r->inp, r->weight, r->M, r->K, r->N);
}

void bench_matmul(void) {
    static const struct { const char *name; int K, N, transposed; } shapes[] = {
        { "attn c_attn  768 -> 2304", 768, 2304, 0 },
        { "attn c_proj  768 -> 768", 768, 768, 0 },
        { "mlp c_fc     768 -> 3072", 768, 3072, 0 },
        { "mlp c_proj  3072 -> 768", 3072, 768, 0 },
        { "lm head (nt) 768 -> 50257", 768, 50257, 1 },
    };
    enum { NUM_SHAPES = sizeof shapes / sizeof *shapes, MAIN_SHAPE = 2, HEAD_SHAPE = 4 };
    double gflops[NUM_SHAPES][2][3];   // [shape][threads index][fwd, bwd input, bwd weight]
    const int M = 256;
    Rng rng;
    rng_seed(&rng, 1);
    printf("matmul GFLOP/s, M = B*T = %d (best of 3-30 runs)\n", M);
    printf("  %-27s %7s %9s %9s %9s\n", "shape (K -> N)", "threads", "fwd", "bwd_inp", "bwd_wt");
    for (int s = 0; s < NUM_SHAPES; s++) {
        MatmulRun r = { M, shapes[s].K, shapes[s].N, shapes[s].transposed, 0, 0, 0, 0, 0, 0, 0 };
        size_t mk = (size_t)M * r.K, kn = (size_t)r.K * r.N, mn = (size_t)M * r.N;
        r.inp = random_floats(&rng, mk, 1.0f);
        r.weight = random_floats(&rng, kn, 0.02f);
        r.bias = random_floats(&rng, r.N, 0.02f);
        r.dout = random_floats(&rng, mn, 1e-3f);
        r.out = gfn_calloc(mn, sizeof(float));
        r.dinp = gfn_calloc(mk, sizeof(float));
        r.dweight = gfn_calloc(kn, sizeof(float));
        double flops = 2.0 * M * r.K * r.N, budget = 0.3;
        for (int ti = 0; ti < NUM_THREAD_COUNTS; ti++) {
            set_threads(thread_counts[ti]);
            double *g = gflops[s][ti];
            g[0] = flops / best_time(run_forward, &r, budget) / 1e9;
            g[1] = flops / best_time(run_backward_input, &r, budget) / 1e9;
            g[2] = flops / best_time(run_backward_weight, &r, budget) / 1e9;
            printf("  %-27s %7d %9.1f %9.1f %9.1f\n", shapes[s].name, thread_counts[ti], g[0], g[1], g[2]);
            fflush(stdout);
        }
        free(r.inp); free(r.weight); free(r.bias); free(r.dout); free(r.out); free(r.dinp); free(r.dweight);
    }
    set_threads(MOST_THREADS);
    int ti = NUM_THREAD_COUNTS - 1;
    printf("bench matmul_fwd_gflops %.1f\n", gflops[MAIN_SHAPE][ti][0]);
    printf("bench matmul_bwd_input_gflops %.1f\n", gflops[MAIN_SHAPE][ti][1]);
    printf("bench matmul_bwd_weight_gflops %.1f\n", gflops[MAIN_SHAPE][ti][2]);
    printf("bench matmul_lm_head_fwd_gflops %.1f\n", gflops[HEAD_SHAPE][ti][0]);
    printf("bench matmul_lm_head_bwd_input_gflops %.1f\n", gflops[HEAD_SHAPE][ti][1]);
    printf("bench matmul_lm_head_bwd_weight_gflops %.1f\n", gflops[HEAD_SHAPE][ti][2]);
}

// ----------------------------------------------------------------------------------------------
// model: tokens/s of a training step (forward, cross-entropy, backward, gradient clipping,
// AdamW) and of a forward. Targets (for 124M): peak RSS of the full step <= 2300 MB; the LoRA
// step (r = 64 on all four modules, base frozen) clearly faster and far smaller.

static const GPTConfig gpt2_124m = { 50257, 1024, 12, 12, 768 };
static const GPTConfig small_config = { 512, 256, 4, 4, 128 };
static const int all_targets[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };

typedef struct {
    GPT *model;
    AdamW opt;
    float *params, *grads;   // what AdamW updates: the whole model, or only the LoRA adapters
    int B, T;
    int *inputs, *targets;   // (B, T)
} Trainer;

static void trainer_init(Trainer *tr, GPTConfig config, int B, int T, int lora) {
    tr->model = gpt_new_random(config, 1234);
    if (!tr->model) exit(1);
    tr->B = B;
    tr->T = T;
    tr->inputs = gfn_malloc(sizeof(int) * B * T);
    tr->targets = gfn_malloc(sizeof(int) * B * T);
    Rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < B * T; i++) tr->inputs[i] = rng_below(&rng, config.vocab_size);
    for (int i = 0; i < B * T; i++) tr->targets[i] = i % T + 1 < T ? tr->inputs[i + 1] : -1;   // next token
    size_t n;
    if (lora) {   // the base frozen; rank 64, alpha 16 on all four targets
        gpt_freeze_all(tr->model, 1);
        LoRA *adapter = gpt_lora_attach(tr->model, 64, 16.0f, 0, all_targets, 5);
        tr->params = adapter->memory;
        tr->grads = adapter->grad_memory;
        n = adapter->num_parameters;
    } else {
        tr->params = gpt_params_memory(tr->model);
        tr->grads = gpt_grads_memory(tr->model);
        n = gpt_num_parameters(tr->model);
    }
    adamw_init(&tr->opt, n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f);
}

static void trainer_free(Trainer *tr) {
    adamw_free(&tr->opt);
    gpt_free(tr->model);
    free(tr->inputs);
    free(tr->targets);
}

static void train_step(void *p) {
    Trainer *tr = p;
    gpt_train_step(tr->model, &tr->opt, tr->inputs, tr->targets, tr->B, tr->T, 1e-4f, 1.0f, NULL);
}

static void forward_pass(void *p) {
    Trainer *tr = p;
    gpt_forward(tr->model, tr->inputs, tr->B, tr->T);
}

// Peak resident memory (MB) of a separate process that only builds the 124M model and runs
// two training steps (full, or LoRA). The child re-executes this program (fork alone is not
// enough: libgomp's thread pool does not survive a fork, so OpenMP in a forked child hangs once
// the parent has used it), finds GFN_BENCH_PEAK=mode,fd in its environment, does the work and
// writes its own ru_maxrss into the pipe. Linux: /proc/self/exe, ru_maxrss in kilobytes.
static void peak_child(const char *spec) {
    int lora = 0, fd = -1;
    if (sscanf(spec, "%d,%d", &lora, &fd) != 2) _exit(2);
    set_threads(MOST_THREADS);
    Trainer tr;
    trainer_init(&tr, gpt2_124m, 4, 64, lora);
    for (int i = 0; i < 2; i++) train_step(&tr);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double mb = (double)usage.ru_maxrss / 1024.0;
    _exit(write(fd, &mb, sizeof mb) == (ssize_t)sizeof mb ? 0 : 1);
}

static double training_process_peak_mb(int lora) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        char spec[64];
        snprintf(spec, sizeof spec, "%d,%d", lora, fds[1]);
        setenv("GFN_BENCH_PEAK", spec, 1);
        execl("/proc/self/exe", "bench", "model", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    double mb = -1;
    if (read(fds[0], &mb, sizeof mb) != (ssize_t)sizeof mb) mb = -1;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return mb;
}

void bench_model(void) {
    const char *peak_spec = getenv("GFN_BENCH_PEAK");
    if (peak_spec) peak_child(peak_spec);   // we are a re-executed child: never returns
    double peak_full = training_process_peak_mb(0), peak_lora = training_process_peak_mb(1);

    static const struct { const char *name; int big, B, T; } rows[] = {
        { "gpt2-124M B=4 T=64", 1, 4, 64 },
        { "small (L4 C128) B=8 T=256", 0, 8, 256 },
    };
    double train_tok_s[2][2], fwd_tok_s[2][2];
    printf("model tokens/s (best of 3+ steps)\n");
    printf("  %-27s %7s %12s %12s %12s\n", "model", "threads", "train tok/s", "fwd tok/s", "step ms");
    for (int m = 0; m < 2; m++) {
        Trainer tr;
        trainer_init(&tr, rows[m].big ? gpt2_124m : small_config, rows[m].B, rows[m].T, 0);
        double tokens = (double)rows[m].B * rows[m].T;
        for (int ti = 0; ti < NUM_THREAD_COUNTS; ti++) {
            set_threads(thread_counts[ti]);
            double step = best_time(train_step, &tr, rows[m].big ? 0.1 : 1.0);
            double fwd = best_time(forward_pass, &tr, rows[m].big ? 0.1 : 1.0);
            train_tok_s[m][ti] = tokens / step;
            fwd_tok_s[m][ti] = tokens / fwd;
            printf("  %-27s %7d %12.0f %12.0f %12.1f\n", rows[m].name, thread_counts[ti], train_tok_s[m][ti],
                   fwd_tok_s[m][ti], 1e3 * step);
            fflush(stdout);
        }
        trainer_free(&tr);
    }

    // LoRA fine-tuning step vs the full step, 124M at B=4, T=64, most threads.
    set_threads(MOST_THREADS);
    Trainer tr;
    trainer_init(&tr, gpt2_124m, 4, 64, 1);
    double lora_step = best_time(train_step, &tr, 0.1);
    trainer_free(&tr);
    int ti = NUM_THREAD_COUNTS - 1;
    double full_step = 4.0 * 64.0 / train_tok_s[0][ti];
    printf("  %-27s %7d %12.0f %12s %12.1f\n", "gpt2-124M LoRA r64 (4 tgts)", MOST_THREADS, 256.0 / lora_step, "",
           1e3 * lora_step);
    printf("  peak RSS of a 124M training process (B=4 T=64): full %.0f MB, LoRA %.0f MB\n", peak_full, peak_lora);

    printf("bench gpt2_124m_train_tok_s %.1f\n", train_tok_s[0][ti]);
    printf("bench gpt2_124m_fwd_tok_s %.1f\n", fwd_tok_s[0][ti]);
    printf("bench small_train_tok_s %.1f\n", train_tok_s[1][ti]);
    printf("bench small_fwd_tok_s %.1f\n", fwd_tok_s[1][ti]);
    printf("bench gpt2_124m_train_peak_mb %.0f\n", peak_full);
    printf("bench lora_step_speedup %.2f\n", full_step / lora_step);
    printf("bench lora_step_peak_mb %.0f\n", peak_lora);
}

// ----------------------------------------------------------------------------------------------
// pretrain: the shipped base model's training step (L6 NH8 C256 V4096, B=16 T=256: 4096 tokens),
// with wall time and this process's CPU time (user + system) per step, `./tests/bench pretrain`

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + 1e-6 * (double)usage.ru_utime.tv_usec +
           (double)usage.ru_stime.tv_sec + 1e-6 * (double)usage.ru_stime.tv_usec;
}

void bench_pretrain(void) {
    static const GPTConfig base_config = { 4096, 256, 4, 8, 256 };   // the shipped model (make weights)
    enum { B = 8, T = 256, STEPS = 3 };
    Trainer tr;
    trainer_init(&tr, base_config, B, T, 0);
    double tokens = (double)B * T, best_tok_s = 0.0;
    printf("pretrain config (L4 NH8 C256 V4096, as weights/base.ckpt) B=%d T=%d, best of %d steps after a warm-up\n", B, T, STEPS);
    printf("  %7s %12s %12s %14s\n", "threads", "train tok/s", "step ms", "cpu ms/step");
    for (int ti = 0; ti < NUM_THREAD_COUNTS; ti++) {
        set_threads(thread_counts[ti]);
        train_step(&tr);
        double best = 1e30, cpu0 = cpu_seconds();
        for (int s = 0; s < STEPS; s++) {
            double t0 = now_seconds();
            train_step(&tr);
            double t = now_seconds() - t0;
            if (t < best) best = t;
        }
        double cpu = (cpu_seconds() - cpu0) / STEPS;
        best_tok_s = tokens / best;
        printf("  %7d %12.0f %12.1f %14.1f\n", thread_counts[ti], best_tok_s, 1e3 * best, 1e3 * cpu);
        fflush(stdout);
    }
    set_threads(MOST_THREADS);
    trainer_free(&tr);
    printf("bench base_train_tok_s %.1f\n", best_tok_s);
}
