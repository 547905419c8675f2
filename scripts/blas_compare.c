// scripts/blas_compare.c — dev only: our matmul against OpenBLAS's sgemm at the bench's shapes
// (M = 256 rows, GPT-2 small's layers), the three products of a linear layer, 1 and 2 threads.
// Built and run by scripts/blas_compare.sh, one library per process (so that one library's
// thread pool never competes with the other's). Never part of the build or the tests.
//
//   ./blas_compare ours|openblas THREADS
//
// Each figure is the best of repeated runs within a time budget, 2·M·K·N flops per product, as in
// tests/bench_model.c. The layouts are ours: W is (K, N) row-major; the LM head's is (N, K).
//   forward:      out (M, N)  = inp (M, K) · W          sgemm(N, N)  [head: sgemm(N, T)]
//   input grad:   dinp (M, K) = dout (M, N) · Wᵀ        sgemm(N, T)  [head: sgemm(N, N)]
//   weight grad:  dW (K, N)  += inpᵀ · dout             sgemm(T, N)  [head: dW (N, K) += doutᵀ · inp]
#include "../gfn.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// OpenBLAS's C interface, declared here (its values are CBLAS's) so that no header outside libc is read.
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
void openblas_set_num_threads(int);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct { int M, K, N, head, use_blas; float *inp, *w, *out, *dout, *dinp, *dw; } Run;

static void product(Run *r, int which) {
    int M = r->M, K = r->K, N = r->N;
    if (!r->use_blas) {
        if (which == 0) r->head ? matmul_forward_nt(r->out, r->inp, r->w, M, K, N) : matmul_forward(r->out, r->inp, r->w, NULL, M, K, N);
        if (which == 1) r->head ? matmul_backward_nt(r->dinp, NULL, r->dout, r->inp, r->w, M, K, N)
                                : matmul_backward(r->dinp, NULL, NULL, r->dout, r->inp, r->w, M, K, N);
        if (which == 2) r->head ? matmul_backward_nt(NULL, r->dw, r->dout, r->inp, r->w, M, K, N)
                                : matmul_backward(NULL, r->dw, NULL, r->dout, r->inp, r->w, M, K, N);
        return;
    }
    if (which == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, r->head ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, r->inp, K, r->w,
                    r->head ? K : N, 0.0f, r->out, N);
    if (which == 1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, r->head ? CblasNoTrans : CblasTrans, M, K, N, 1.0f, r->dout, N, r->w,
                    r->head ? K : N, 0.0f, r->dinp, K);
    if (which == 2) {
        if (r->head) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, r->dout, N, r->inp, K, 1.0f, r->dw, K);
        else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, r->inp, K, r->dout, N, 1.0f, r->dw, N);
    }
}

static double best_gflops(Run *r, int which) {
    double flops = 2.0 * r->M * r->K * r->N, best = 1e30, start = now();
    product(r, which);   // warm-up (packing buffers, thread pool)
    for (int rep = 0; rep < 30 && (rep < 3 || now() - start < 0.6); rep++) {
        double t0 = now();
        product(r, which);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return flops / best / 1e9;
}

static float *random_floats(Rng *rng, size_t n, float scale) {
    float *x = gfn_malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * rng_uniform(rng) - 1.0f);
    return x;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "ours") && strcmp(argv[1], "openblas"))) {
        fprintf(stderr, "usage: %s ours|openblas THREADS\n", argv[0]);
        return 1;
    }
    int use_blas = !strcmp(argv[1], "openblas"), threads = atoi(argv[2]);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    static const struct { const char *name; int K, N, head; } shapes[] = {
        { "c_attn:768x2304", 768, 2304, 0 }, { "attn.c_proj:768x768", 768, 768, 0 }, { "c_fc:768x3072", 768, 3072, 0 },
        { "mlp.c_proj:3072x768", 3072, 768, 0 }, { "lm_head(nt):768x50257", 768, 50257, 1 },
    };
    Rng rng;
    rng_seed(&rng, 1);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        Run r = { 256, shapes[s].K, shapes[s].N, shapes[s].head, use_blas, 0, 0, 0, 0, 0, 0 };
        size_t mk = (size_t)r.M * r.K, kn = (size_t)r.K * r.N, mn = (size_t)r.M * r.N;
        r.inp = random_floats(&rng, mk, 1.0f);
        r.w = random_floats(&rng, kn, 0.02f);
        r.dout = random_floats(&rng, mn, 1e-3f);
        r.out = gfn_calloc(mn, sizeof(float));
        r.dinp = gfn_calloc(mk, sizeof(float));
        r.dw = gfn_calloc(kn, sizeof(float));
        printf("%s %d %s %.1f %.1f %.1f\n", argv[1], threads, shapes[s].name, best_gflops(&r, 0), best_gflops(&r, 1),
               best_gflops(&r, 2));
        fflush(stdout);
        free(r.inp); free(r.w); free(r.dout); free(r.out); free(r.dinp); free(r.dw);
    }
    return 0;
}
