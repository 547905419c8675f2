// tests/test_matmul.c — the four matmuls of model.c against a naive double-precision reference,
// on shapes that hit every edge of the blocking (1x1x1, primes, just below / at / above the
// register tile 6x16, the 256-deep K slices and the 264-row A blocks), plus their contract:
// backward accumulates (+=), NULL outputs are skipped, bias may be NULL, results are bit-identical
// between runs and between thread counts.
#include "test.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// Tolerance. Every output element is a sum of K products (plus, for backward, its initial
// value). Whatever the order of the additions (blocked, FMA or not), the float result of such a
// sum differs from the exact one by at most γ(K+1)·(Σ|a_k b_k| + |initial|), γ(n) = n·u/(1 − n·u),
// u = 2⁻²⁴ (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). So we allow
// (K + 2)·u times that magnitude: a correct matmul can never exceed it, while a wrong index or a
// missed term is off by the size of a whole product, far above it.
static int close_enough(double got, double want, double magnitude, int k) {
    double tol = (k + 2) * (1.0 / 16777216.0) * magnitude * 1.0001 + 1e-30;
    return fabs(got - want) <= tol;
}

static float *random_floats(Rng *rng, size_t n) {
    float *x = gfn_malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * rng_uniform(rng) - 1.0f;
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = gfn_malloc(sizeof(float) * (n ? n : 1));
    if (n) memcpy(y, x, sizeof(float) * n);
    return y;
}

// Compares got against init + Σ_p a(i, p)·b(p, j) for an (m, n) result with inner size k, where
// a(i, p) = A[i*ars + p*acs] and b(p, j) = B[p*brs + j*bcs] (strides pick out the transposes).
// init may be NULL (forward overwrites). Returns the number of bad elements (prints the first).
static int check_product(const char *what, const float *got, const float *init, const float *A, long ars, long acs,
                         const float *B, long brs, long bcs, int m, int n, int k) {
    int bad = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double want = init ? init[(long)i * n + j] : 0.0, magnitude = init ? fabs(init[(long)i * n + j]) : 0.0;
            for (int p = 0; p < k; p++) {
                double prod = (double)A[i * ars + p * acs] * B[p * brs + j * bcs];
                want += prod;
                magnitude += fabs(prod);
            }
            double g = got[(long)i * n + j];
            if (!close_enough(g, want, magnitude, k)) {
                if (!bad) printf("   %s (%d, %d) [k=%d]: got %.9g want %.9g\n", what, i, j, k, g, want);
                bad++;
            }
        }
    return bad;
}

typedef struct { int M, K, N; } Shape;

// One shape through all four functions, outputs starting from random nonzero values.
static void check_shape(Shape s, Rng *rng) {
    int M = s.M, K = s.K, N = s.N;
    size_t mk = (size_t)M * K, kn = (size_t)K * N, mn = (size_t)M * N;
    float *inp = random_floats(rng, mk), *w = random_floats(rng, kn), *bias = random_floats(rng, N);
    float *dout = random_floats(rng, mn);
    float *out = random_floats(rng, mn);   // garbage the forward must overwrite
    char what[96];

    // forward, with and without bias: the bias is the initial value of the sum (magnitude |b|)
    matmul_forward(out, inp, w, bias, M, K, N);
    float *bias_rows = gfn_malloc(sizeof(float) * (mn ? mn : 1));
    for (size_t i = 0; i < mn; i++) bias_rows[i] = bias[i % N];
    snprintf(what, sizeof what, "forward %dx%dx%d", M, K, N);
    CHECK(check_product(what, out, bias_rows, inp, K, 1, w, N, 1, M, N, K) == 0, "%s", what);
    matmul_forward(out, inp, w, NULL, M, K, N);
    snprintf(what, sizeof what, "forward no bias %dx%dx%d", M, K, N);
    CHECK(check_product(what, out, NULL, inp, K, 1, w, N, 1, M, N, K) == 0, "%s", what);

    // backward: each output accumulates onto its random initial value
    float *dinp0 = random_floats(rng, mk), *dw0 = random_floats(rng, kn), *db0 = random_floats(rng, N);
    float *dinp = copy_floats(dinp0, mk), *dw = copy_floats(dw0, kn), *db = copy_floats(db0, N);
    matmul_backward(dinp, dw, db, dout, inp, w, M, K, N);
    snprintf(what, sizeof what, "backward dinp %dx%dx%d", M, K, N);      // dout (M,N) · wᵀ
    CHECK(check_product(what, dinp, dinp0, dout, N, 1, w, 1, N, M, K, N) == 0, "%s", what);
    snprintf(what, sizeof what, "backward dweight %dx%dx%d", M, K, N);   // inpᵀ · dout (M,N)
    CHECK(check_product(what, dw, dw0, inp, 1, K, dout, N, 1, K, N, M) == 0, "%s", what);
    float *ones = gfn_malloc(sizeof(float) * (M ? M : 1));
    for (int i = 0; i < M; i++) ones[i] = 1.0f;
    snprintf(what, sizeof what, "backward dbias %dx%dx%d", M, K, N);     // 1ᵀ · dout
    CHECK(check_product(what, db, db0, ones, 0, 1, dout, N, 1, 1, N, M) == 0, "%s", what);

    // NULL outputs are skipped, and each output alone is bitwise what it is with the others
    float *dinp_alone = copy_floats(dinp0, mk), *dw_alone = copy_floats(dw0, kn), *db_alone = copy_floats(db0, N);
    matmul_backward(dinp_alone, NULL, NULL, dout, inp, w, M, K, N);
    matmul_backward(NULL, dw_alone, NULL, dout, inp, w, M, K, N);
    matmul_backward(NULL, NULL, db_alone, dout, inp, w, M, K, N);
    matmul_backward(NULL, NULL, NULL, dout, inp, w, M, K, N);
    CHECK(!memcmp(dinp_alone, dinp, sizeof(float) * mk) && !memcmp(dw_alone, dw, sizeof(float) * kn) &&
          !memcmp(db_alone, db, sizeof(float) * N), "backward %dx%dx%d: NULL outputs change the others", M, K, N);

    // _nt: the weight is [N, K]; reuse w's memory read as (N, K)
    const float *wnt = w;
    matmul_forward_nt(out, inp, wnt, M, K, N);
    snprintf(what, sizeof what, "forward_nt %dx%dx%d", M, K, N);         // inp · wntᵀ
    CHECK(check_product(what, out, NULL, inp, K, 1, wnt, 1, K, M, N, K) == 0, "%s", what);
    memcpy(dinp, dinp0, sizeof(float) * mk);
    memcpy(dw, dw0, sizeof(float) * kn);
    matmul_backward_nt(dinp, dw, dout, inp, wnt, M, K, N);
    snprintf(what, sizeof what, "backward_nt dinp %dx%dx%d", M, K, N);   // dout · wnt (N,K)
    CHECK(check_product(what, dinp, dinp0, dout, N, 1, wnt, K, 1, M, K, N) == 0, "%s", what);
    snprintf(what, sizeof what, "backward_nt dweight %dx%dx%d", M, K, N); // doutᵀ (N,M) · inp
    CHECK(check_product(what, dw, dw0, dout, 1, N, inp, K, 1, N, K, M) == 0, "%s", what);
    memcpy(dinp_alone, dinp0, sizeof(float) * mk);
    memcpy(dw_alone, dw0, sizeof(float) * kn);
    matmul_backward_nt(dinp_alone, NULL, dout, inp, wnt, M, K, N);
    matmul_backward_nt(NULL, dw_alone, dout, inp, wnt, M, K, N);
    matmul_backward_nt(NULL, NULL, dout, inp, wnt, M, K, N);
    CHECK(!memcmp(dinp_alone, dinp, sizeof(float) * mk) && !memcmp(dw_alone, dw, sizeof(float) * kn),
          "backward_nt %dx%dx%d: NULL outputs change the others", M, K, N);

    free(inp); free(w); free(bias); free(dout); free(out); free(bias_rows); free(ones);
    free(dinp0); free(dw0); free(db0); free(dinp); free(dw); free(db);
    free(dinp_alone); free(dw_alone); free(db_alone);
}

// All six products of one shape into one buffer, outputs starting from fixed values.
static float *all_products(const float *inp, const float *w, const float *bias, const float *dout, int M, int K, int N) {
    size_t mk = (size_t)M * K, kn = (size_t)K * N, mn = (size_t)M * N;
    float *r = gfn_calloc(2 * mn + 2 * mk + 2 * kn + N, sizeof(float));
    float *out = r, *out_nt = out + mn, *dinp = out_nt + mn, *dinp_nt = dinp + mk;
    float *dw = dinp_nt + mk, *dw_nt = dw + kn, *db = dw_nt + kn;
    for (size_t i = 0; i < mk; i++) dinp[i] = dinp_nt[i] = 0.5f;
    matmul_forward(out, inp, w, bias, M, K, N);
    matmul_forward_nt(out_nt, inp, w, M, K, N);
    matmul_backward(dinp, dw, db, dout, inp, w, M, K, N);
    matmul_backward_nt(dinp_nt, dw_nt, dout, inp, w, M, K, N);
    return r;
}

static void check_determinism(Rng *rng) {
    int M = 70, K = 300, N = 50;   // several tiles, two K slices, edges everywhere
    size_t total = 2 * (size_t)M * N + 2 * (size_t)M * K + 2 * (size_t)K * N + N;
    float *inp = random_floats(rng, (size_t)M * K), *w = random_floats(rng, (size_t)K * N);
    float *bias = random_floats(rng, N), *dout = random_floats(rng, (size_t)M * N);
    float *first = all_products(inp, w, bias, dout, M, K, N);
    float *again = all_products(inp, w, bias, dout, M, K, N);
    CHECK(!memcmp(first, again, sizeof(float) * total), "two runs differ");
    free(again);
#ifdef _OPENMP
    // Each element of C is owned by one thread and summed in an order fixed by the blocking
    // alone, so 1, 2 and 3 threads give the same bits (a stronger promise than a tolerance).
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        float *r = all_products(inp, w, bias, dout, M, K, N);
        CHECK(!memcmp(first, r, sizeof(float) * total), "%d threads differ from %d", threads, saved);
        free(r);
    }
    omp_set_num_threads(saved);
#endif
    free(first); free(inp); free(w); free(bias); free(dout);
}

// The small-m paths against the packed blocked one: the first m rows of a 13-row product
// (three row panels: B packed) and the m-row product must be the same bits, for every m = 1..12
// (gcc: 1-5, and 7-8 with 32-column tiles, the few-rows path; the others, and every m with clang,
// the blocked path reading B's rows in place), with and without bias, B as given and transposed
// (_nt), over two K slices and a partial column strip. This is what makes a decode step give the
// full forward's bits.
static void check_few_rows_bits(Rng *rng) {
    enum { ROWS = 13, K = 300, N = 77 };
    float *inp = random_floats(rng, (size_t)ROWS * K), *w = random_floats(rng, (size_t)K * N), *bias = random_floats(rng, N);
    float *full = gfn_malloc(sizeof(float) * ROWS * N), *full_nt = gfn_malloc(sizeof(float) * ROWS * N);
    float *few = gfn_malloc(sizeof(float) * ROWS * N);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        matmul_forward(full, inp, w, with_bias ? bias : NULL, ROWS, K, N);
        matmul_forward_nt(full_nt, inp, w, ROWS, K, N);   // w read as (N, K)
        for (int m = 1; m <= 12; m++) {
            matmul_forward(few, inp, w, with_bias ? bias : NULL, m, K, N);
            CHECK(!memcmp(few, full, sizeof(float) * m * N), "few rows (m = %d%s) differ from the blocked product's rows",
                  m, with_bias ? ", bias" : "");
            matmul_forward_nt(few, inp, w, m, K, N);
            CHECK(!memcmp(few, full_nt, sizeof(float) * m * N), "few rows _nt (m = %d) differ from the blocked product's rows", m);
        }
    }
    free(inp); free(w); free(bias); free(full); free(full_nt); free(few);
}

void test_matmul(void) {
    Rng rng;
    rng_seed(&rng, 20240507);
    // MR = 6, NR = 16 (32 with AVX-512), KC = 256, MC = 264 in model.c: sizes around each, primes, and ones.
    static const Shape shapes[] = {
        {1, 1, 1}, {1, 1, 7}, {7, 1, 1}, {1, 9, 1}, {2, 3, 5}, {3, 5, 2}, {13, 17, 31},
        {5, 8, 15}, {6, 16, 16}, {7, 17, 17}, {12, 32, 32}, {11, 31, 33}, {37, 41, 43},
        {6, 255, 16}, {6, 256, 16}, {7, 257, 17}, {29, 513, 19},
        {263, 19, 23}, {264, 16, 16}, {265, 24, 17}, {530, 11, 18},
        {97, 300, 101}, {1, 768, 50}, {4, 64, 1},
        {1, 256, 768}, {5, 300, 1000}, {3, 1000, 700}, {2, 257, 65},   // the few-rows path, threaded too
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) check_shape(shapes[i], &rng);
    // K = 0: an empty sum. forward gives the bias, backward leaves dinp untouched.
    float out[6] = { 9, 9, 9, 9, 9, 9 }, bias[3] = { 1, 2, 3 }, dinp[2] = { 4, 5 }, dummy[1] = { 0 };
    matmul_forward(out, dummy, dummy, bias, 2, 0, 3);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 1 && out[5] == 3, "K=0 forward is not the bias");
    matmul_forward_nt(out, dummy, dummy, 2, 0, 3);
    CHECK(out[0] == 0 && out[5] == 0, "K=0 forward_nt is not zero");
    float dout[6] = { 1, 1, 1, 1, 1, 1 };
    matmul_backward(NULL, dinp, NULL, dout, dummy, dummy, 2, 0, 3);   // dweight (0, 3): nothing
    matmul_backward(dinp, NULL, NULL, dout, dummy, dummy, 2, 0, 3);   // dinp (2, 0): nothing
    CHECK(dinp[0] == 4 && dinp[1] == 5, "K=0 backward wrote outside its empty outputs");
    check_determinism(&rng);
    check_few_rows_bits(&rng);
}
