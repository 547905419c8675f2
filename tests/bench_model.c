// tests/bench_model.c — one training step of GPT-2 124M (random weights) at B=4, T=64: a full
// step (all tensors trained, AdamW over 124M parameters) against a LoRA step (r=8 on all four
// modules, base frozen). Each runs in its own child process so that its peak RSS is its own.
// Targets: peak RSS of the full step <= 2300 MB; the LoRA step >= 1.4x faster and <= 40% of the
// full step's memory.
#include "../gfn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static double wall_seconds(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

// Runs 1 warm-up and 2 timed steps; writes "seconds_per_step peak_rss_mb" to fd.
static void run_steps(int use_lora, int fd) {
    GPTConfig config = { 50257, 1024, 12, 12, 768 };
    enum { B = 4, T = 64, STEPS = 3 };
    GPT *model = gpt_new_random(config, 1);
    int inputs[B * T], targets[B * T];
    Rng rng;
    rng_seed(&rng, 2);
    for (int i = 0; i < B * T; i++) inputs[i] = rng_below(&rng, config.vocab_size);
    for (int i = 0; i < B * T; i++) targets[i] = i % T + 1 < T ? inputs[i + 1] : -1;
    float *params, *grads;
    size_t n;
    if (use_lora) {
        int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
        LoRA *lora = gpt_lora_attach(model, 8, 16.0f, 0, all, 3);
        gpt_freeze_all(model, 1);
        params = lora->memory; grads = lora->grad_memory; n = lora->num_parameters;
    } else {
        params = gpt_params_memory(model); grads = gpt_grads_memory(model); n = gpt_num_parameters(model);
    }
    AdamW opt;
    adamw_init(&opt, n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f);
    double timed = 0;
    for (int s = 0; s < STEPS; s++) {
        double t0 = wall_seconds();
        gpt_zero_grad(model);
        float *logits = gpt_forward(model, inputs, B, T);
        gpt_cross_entropy(model, targets, NULL, logits);
        gpt_backward(model, logits);
        clip_grad_norm(grads, n, 1.0f);
        adamw_update(&opt, params, grads, 1e-4f);
        if (s > 0) timed += wall_seconds() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char line[128];
    int len = snprintf(line, sizeof line, "%.6f %.1f\n", timed / (STEPS - 1), (double)ru.ru_maxrss / 1024.0);
    if (write(fd, line, (size_t)len) != len) _exit(1);
    adamw_free(&opt);
    gpt_free(model);
}

// Forks a child for one kind of step; returns 0 and its figures, or 1.
static int measure(int use_lora, double *seconds, double *rss_mb) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) { close(fds[0]); run_steps(use_lora, fds[1]); _exit(0); }
    close(fds[1]);
    char buf[128] = { 0 };
    ssize_t got = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return got <= 0 || sscanf(buf, "%lf %lf", seconds, rss_mb) != 2;
}

void bench_model(void) {
    double full_s, full_mb, lora_s, lora_mb;
    if (measure(0, &full_s, &full_mb) || measure(1, &lora_s, &lora_mb)) {
        printf("bench model: a child process failed\n");
        return;
    }
    printf("GPT-2 124M training step, B=4 T=64      seconds/step   peak RSS (MB)\n");
    printf("  full (all tensors, AdamW)              %10.3f   %12.0f\n", full_s, full_mb);
    printf("  LoRA r=8, 4 targets, frozen base       %10.3f   %12.0f\n", lora_s, lora_mb);
    printf("  LoRA speed-up %.2fx (target >= 1.4), memory %.0f%% of full (target <= 40%%)\n",
           full_s / lora_s, 100.0 * lora_mb / full_mb);
    printf("bench model_full_step_s %.6f\n", full_s);
    printf("bench model_full_peak_rss_mb %.1f\n", full_mb);
    printf("bench model_lora_step_s %.6f\n", lora_s);
    printf("bench model_lora_peak_rss_mb %.1f\n", lora_mb);
    printf("bench model_lora_speedup %.3f\n", full_s / lora_s);
}
