// model.c — utilities, then the GPT-2 model: forward and backward, the matmul, LoRA, AdamW,
// checkpoints and Hugging Face import. Read top to bottom.
#include "gfn.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------------------------
// Errors and allocation

void gfn_error_set(GfnError *err, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

void *gfn_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "gfn: out of memory allocating %zu bytes\n", n); exit(1); }
    return p;
}

void *gfn_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) { fprintf(stderr, "gfn: out of memory allocating %zu x %zu bytes\n", count, size); exit(1); }
    return p;
}

// ----------------------------------------------------------------------------------------------
// RNG: xoshiro256** seeded through splitmix64. Integer arithmetic only, so every platform draws
// the same bits; floats are made from the top 24 bits, exactly representable.

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_seed(Rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_u64(Rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

float rng_uniform(Rng *rng) { return (float)(rng_u64(rng) >> 40) * (1.0f / 16777216.0f); }

float rng_normal(Rng *rng) {
    // Box-Muller with u1 in (0, 1] so the log is finite.
    float u1 = 1.0f - rng_uniform(rng), u2 = rng_uniform(rng);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

int rng_below(Rng *rng, int n) {
    // Lemire's multiply-shift on 32 random bits; the bias is below 2^-32 * n, and it is
    // deterministic, which is what matters here.
    return (int)(((rng_u64(rng) >> 32) * (uint64_t)n) >> 32);
}

// ----------------------------------------------------------------------------------------------
// Little-endian bytes and half-precision floats

uint16_t le_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t le_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
uint64_t le_u64(const unsigned char *p) { return (uint64_t)le_u32(p) | ((uint64_t)le_u32(p + 4) << 32); }
float le_f32(const unsigned char *p) {
    uint32_t u = le_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
void put_le_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
void put_le_u64(unsigned char *p, uint64_t v) { put_le_u32(p, (uint32_t)v); put_le_u32(p + 4, (uint32_t)(v >> 32)); }
void put_le_f32(unsigned char *p, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_le_u32(p, u);
}

float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exponent = (h >> 10) & 31, mantissa = h & 1023, bits;
    if (exponent == 0) {
        if (mantissa == 0) bits = sign;
        else {  // subnormal: normalise
            int e = -1;
            do { e++; mantissa <<= 1; } while (!(mantissa & 1024));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mantissa & 1023) << 13);
        }
    } else if (exponent == 31) bits = sign | 0x7F800000u | (mantissa << 13);
    else bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float bfloat16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, abs = x & 0x7FFFFFFF;
    if (abs >= 0x7F800000) return (uint16_t)(sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0));  // inf/nan
    if (abs >= 0x477FF000) return (uint16_t)(sign | 0x7C00);           // rounds to overflow
    if (abs < 0x38800000) {                                            // subnormal or zero
        if (abs < 0x33000000) return (uint16_t)sign;
        uint32_t e = abs >> 23, m = (abs & 0x7FFFFF) | 0x800000;
        int shift = 126 - (int)e;                                      // 14..24
        uint32_t half_m = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (half_m & 1))) half_m++;
        return (uint16_t)(sign | half_m);
    }
    uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
    uint32_t rem = abs & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

// ----------------------------------------------------------------------------------------------
// Files

unsigned char *read_file(const char *path, size_t *len, GfnError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) { gfn_error_set(err, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = gfn_malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            unsigned char *grown = realloc(buf, cap + 1);
            if (!grown) { free(buf); fclose(f); gfn_error_set(err, "%s: out of memory", path); return NULL; }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) { free(buf); gfn_error_set(err, "%s: read error", path); return NULL; }
    buf[n] = 0;  // convenient for text; not counted in len
    *len = n;
    return buf;
}

int write_file_atomic(const char *path, const void *data, size_t len, GfnError *err) {
    size_t plen = strlen(path);
    char *tmp = gfn_malloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) { gfn_error_set(err, "%s: cannot create: %s", tmp, strerror(errno)); free(tmp); return 1; }
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fflush(f) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok) { gfn_error_set(err, "%s: write failed (disk full?)", tmp); remove(tmp); free(tmp); return 1; }
    if (rename(tmp, path) != 0) {
        gfn_error_set(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        remove(tmp); free(tmp); return 1;
    }
    free(tmp);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// JSON reader: recursive descent over the text, nodes allocated one by one and linked as a tree.

typedef struct { const char *text; size_t len, pos; const char *what; GfnError *err; int depth; } JsonParser;

static void json_skip_space(JsonParser *p) {
    while (p->pos < p->len && (p->text[p->pos] == ' ' || p->text[p->pos] == '\t' ||
                               p->text[p->pos] == '\n' || p->text[p->pos] == '\r')) p->pos++;
}

static int json_fail(JsonParser *p, const char *problem) {
    if (!p->err->msg[0]) gfn_error_set(p->err, "%s: offset %zu: %s", p->what, p->pos, problem);
    return 1;
}

static int json_hex4(JsonParser *p, unsigned *out) {
    if (p->pos + 4 > p->len) return json_fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->text[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return json_fail(p, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 63));
        out[2] = (char)(0x80 | (cp & 63)); return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 63));
    out[2] = (char)(0x80 | ((cp >> 6) & 63)); out[3] = (char)(0x80 | (cp & 63)); return 4;
}

// Parses a string at p->pos (which is at the opening quote) into a fresh buffer.
static int json_string(JsonParser *p, char **out, size_t *out_len) {
    p->pos++;  // opening quote
    size_t start = p->pos, n = 0;
    // The decoded string is never longer than the escaped one.
    while (p->pos < p->len && p->text[p->pos] != '"') p->pos += (p->text[p->pos] == '\\') ? 2 : 1;
    if (p->pos >= p->len) { p->pos = start; return json_fail(p, "unterminated string"); }
    size_t end = p->pos;
    char *s = gfn_malloc(end - start + 1);
    p->pos = start;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos++];
        if (c < 0x20) { free(s); return json_fail(p, "control character in string"); }
        if (c != '\\') { s[n++] = (char)c; continue; }
        char e = p->text[p->pos++];
        switch (e) {
            case '"': s[n++] = '"'; break;
            case '\\': s[n++] = '\\'; break;
            case '/': s[n++] = '/'; break;
            case 'b': s[n++] = '\b'; break;
            case 'f': s[n++] = '\f'; break;
            case 'n': s[n++] = '\n'; break;
            case 'r': s[n++] = '\r'; break;
            case 't': s[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (json_hex4(p, &cp)) { free(s); return 1; }
                if (cp >= 0xD800 && cp < 0xDC00 && p->pos + 6 <= end && p->text[p->pos] == '\\' &&
                    p->text[p->pos + 1] == 'u') {  // surrogate pair
                    size_t save = p->pos;
                    unsigned lo;
                    p->pos += 2;
                    if (json_hex4(p, &lo)) { free(s); return 1; }
                    if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    else p->pos = save;
                }
                n += utf8_put(s + n, cp);  // a lone surrogate is kept as its 3-byte form
                break;
            }
            default: free(s); p->pos--; return json_fail(p, "bad escape in string");
        }
    }
    p->pos = end + 1;
    s[n] = 0;
    *out = s;
    *out_len = n;
    return 0;
}

static Json *json_value(JsonParser *p);

static Json *json_node(JsonType type) {
    Json *node = gfn_calloc(1, sizeof(Json));
    node->type = type;
    return node;
}

// Parses the elements of an array or the members of an object; p->pos is just past the bracket.
static int json_children(JsonParser *p, Json *parent, char close) {
    Json **tail = &parent->child;
    json_skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == close) { p->pos++; return 0; }
    for (;;) {
        char *key = NULL;
        size_t key_len = 0;
        json_skip_space(p);
        if (close == '}') {
            if (p->pos >= p->len || p->text[p->pos] != '"') return json_fail(p, "expected a member name");
            if (json_string(p, &key, &key_len)) return 1;
            json_skip_space(p);
            if (p->pos >= p->len || p->text[p->pos] != ':') { free(key); return json_fail(p, "expected ':'"); }
            p->pos++;
        }
        Json *child = json_value(p);
        if (!child) { free(key); return 1; }
        child->key = key;
        child->key_len = key_len;
        *tail = child;
        tail = &child->next;
        parent->len++;
        json_skip_space(p);
        if (p->pos >= p->len) return json_fail(p, "unexpected end of text");
        char c = p->text[p->pos++];
        if (c == close) return 0;
        if (c != ',') { p->pos--; return json_fail(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'"); }
    }
}

static Json *json_value(JsonParser *p) {
    json_skip_space(p);
    if (p->pos >= p->len) { json_fail(p, "unexpected end of text"); return NULL; }
    if (++p->depth > 512) { json_fail(p, "nesting too deep"); return NULL; }
    const char *t = p->text + p->pos;
    size_t left = p->len - p->pos;
    Json *node = NULL;
    if (*t == '{' || *t == '[') {
        node = json_node(*t == '{' ? JSON_OBJECT : JSON_ARRAY);
        p->pos++;
        if (json_children(p, node, *t == '{' ? '}' : ']')) { json_free(node); node = NULL; }
    } else if (*t == '"') {
        node = json_node(JSON_STRING);
        if (json_string(p, &node->string, &node->len)) { free(node); node = NULL; }
    } else if (left >= 4 && !memcmp(t, "true", 4)) {
        node = json_node(JSON_BOOL); node->number = 1; p->pos += 4;
    } else if (left >= 5 && !memcmp(t, "false", 5)) {
        node = json_node(JSON_BOOL); p->pos += 5;
    } else if (left >= 4 && !memcmp(t, "null", 4)) {
        node = json_node(JSON_NULL); p->pos += 4;
    } else if (*t == '-' || (*t >= '0' && *t <= '9')) {
        // Copy the number's characters so strtod never reads past the buffer.
        char buf[64];
        size_t n = 0;
        while (p->pos + n < p->len && n < sizeof buf - 1 && strchr("+-0123456789.eE", t[n])) { buf[n] = t[n]; n++; }
        buf[n] = 0;
        char *end;
        double v = strtod(buf, &end);
        if (end != buf + n || n == 0) { json_fail(p, "bad number"); return NULL; }
        node = json_node(JSON_NUMBER);
        node->number = v;
        p->pos += n;
    } else {
        json_fail(p, "unexpected character");
    }
    p->depth--;
    return node;
}

Json *json_parse(const char *text, size_t len, const char *what, GfnError *err) {
    GfnError local;
    JsonParser p = { text, len, 0, what, err ? err : &local, 0 };
    p.err->msg[0] = 0;
    Json *root = json_value(&p);
    if (!root) return NULL;
    json_skip_space(&p);
    if (p.pos != len) { json_fail(&p, "trailing characters after the value"); json_free(root); return NULL; }
    return root;
}

void json_free(Json *node) {
    while (node) {
        Json *next = node->next;
        json_free(node->child);
        free(node->string);
        free(node->key);
        free(node);
        node = next;
    }
}

Json *json_get(const Json *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (Json *c = object->child; c; c = c->next)
        if (c->key_len == n && !memcmp(c->key, key, n)) return c;
    return NULL;
}

Json *json_at(const Json *array, size_t index) {
    if (!array || array->type != JSON_ARRAY) return NULL;
    Json *c = array->child;
    while (c && index--) c = c->next;
    return c;
}

// ----------------------------------------------------------------------------------------------
// The model follows (engine work).

// ==== matmul (the hot path) ====
//
// Every product below is one routine, gemm: C (m, n) (+)= A (m, k) · B (k, n), where A and B are
// read through a row stride and a column stride. A transposed operand is then just a matrix with
// its strides swapped, so the four public functions (and their transposed products dinp = dout·Wᵀ,
// dW += inpᵀ·dout) all share one cache-blocked loop nest and one micro-kernel:
//
//   for pc over k in KC-deep slices              (KC: a B panel KC x NR fills half of L1)
//     for ic over m in MC-tall blocks            (MC: the packed A block MC x KC fits in L2)
//       pack A[ic.., pc..] into a_pack           (MR-row panels, column by column: contiguous)
//       for each (NR-wide column panel jr, MR-row panel ir), split statically across threads:
//         pack B[pc.., jr..] into this thread's b_pack  (once per jr; stays in L1)
//         micro-kernel: the MR x NR tile of C += a_pack panel · b_pack panel
//
// The micro-kernel keeps an MR x NR block of C in registers (6 x 16 floats = 12 AVX2 registers;
// the other 4 hold two B vectors and the broadcast A element) and for each of the KC steps
// does MR x NR multiply-adds from one contiguous 16-float row of B and MR contiguous A elements.
// Packing puts both operands in exactly that order, zero-padded to whole panels, so the kernel
// has no edge cases: partial tiles are computed in full and only the valid part is written.
//
// Determinism: every element of C is owned by one thread and summed in the same order
// (pc slice by slice, k in order within a slice) whatever the thread count, so results are
// bit-identical between runs and even between thread counts. No atomics, no reductions.

#ifdef _OPENMP
#include <omp.h>
#if defined(__clang__)
#define OMP_SIMD
#else
#define OMP_SIMD _Pragma("omp simd")
#endif
#else
#define OMP_SIMD
#endif

#ifndef MM_MR
#define MM_MR 6       // rows of the register tile
#endif
#ifndef MM_NR
#define MM_NR 16      // columns of the register tile (two 8-float AVX2 vectors)
#endif
#ifndef MM_KC
#define MM_KC 256     // depth of a slice: b_pack = KC x NR floats = 16 KB, half of L1
#endif
#ifndef MM_MC
#define MM_MC 264     // rows of a packed A block: MC x KC floats = 264 KB, half of L2
#endif

// a*b + c in one rounding where the hardware has FMA (C99's FP_FAST_FMAF says fmaf is as fast
// as a*b+c); a plain multiply-add otherwise, never a slow software fmaf.
#ifdef FP_FAST_FMAF
#define MADD(a, b, c) fmaf(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

// A strided read-only matrix: element (i, j) is at p[i * rs + j * cs].
typedef struct { const float *p; long rs, cs; } MatView;

// a_pack (mc rounded up to MR, kc): panel after panel of MR rows, each stored column by column,
// so the kernel reads MR consecutive floats per k step. Rows past m are zero.
static void pack_a_panel(float *dst, MatView a, int i0, int rows, int p0, int kc) {
    for (int p = 0; p < kc; p++) {
        const float *src = a.p + (long)i0 * a.rs + (long)(p0 + p) * a.cs;
        for (int i = 0; i < rows; i++) dst[p * MM_MR + i] = src[i * a.rs];
        for (int i = rows; i < MM_MR; i++) dst[p * MM_MR + i] = 0.0f;
    }
}

// b_pack (kc, NR): one column panel, row by row. Columns past n are zero. When B's rows are
// contiguous (cs == 1) each packed row is a copy; otherwise (Bᵀ) walk each column contiguously.
static void pack_b_panel(float *dst, MatView b, int p0, int kc, int j0, int cols) {
    if (b.cs == 1) {
        for (int p = 0; p < kc; p++) {
            const float *src = b.p + (long)(p0 + p) * b.rs + j0;
            for (int j = 0; j < cols; j++) dst[p * MM_NR + j] = src[j];
            for (int j = cols; j < MM_NR; j++) dst[p * MM_NR + j] = 0.0f;
        }
    } else {
        for (int j = 0; j < cols; j++) {
            const float *src = b.p + (long)(j0 + j) * b.cs + (long)p0 * b.rs;
            for (int p = 0; p < kc; p++) dst[p * MM_NR + j] = src[p * b.rs];
        }
        for (int j = cols; j < MM_NR; j++)
            for (int p = 0; p < kc; p++) dst[p * MM_NR + j] = 0.0f;
    }
}

// The register tile: acc (MR, NR) = a panel · b panel over kc steps, then the MR x NR tile of C
// gets acc (+ bias) when `store` (the first slice of a product that overwrites C), else C += acc.
// acc is only ever indexed by constants, so the compilers keep all of it in registers; partial
// tiles at the edges of C go through a small buffer instead (see write_edge_tile).
static void micro_kernel(int kc, const float *restrict a, const float *restrict b, float *restrict c,
                         long ldc, int store, const float *restrict bias) {
    float acc[MM_MR][MM_NR];
    for (int i = 0; i < MM_MR; i++)
        for (int j = 0; j < MM_NR; j++) acc[i][j] = 0.0f;
    _Pragma("GCC unroll 2")
    for (int p = 0; p < kc; p++) {
        const float *bp = b + p * MM_NR;
        const float *ap = a + p * MM_MR;
        _Pragma("GCC unroll 16")
        for (int i = 0; i < MM_MR; i++) {
            OMP_SIMD   // vectorise across the NR columns; without it gcc vectorises the wrong loop
            for (int j = 0; j < MM_NR; j++) acc[i][j] = MADD(ap[i], bp[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MM_MR; i++) {
        float *ci = c + i * ldc;
        if (store && bias) for (int j = 0; j < MM_NR; j++) ci[j] = acc[i][j] + bias[j];
        else if (store)    for (int j = 0; j < MM_NR; j++) ci[j] = acc[i][j];
        else               for (int j = 0; j < MM_NR; j++) ci[j] += acc[i][j];
    }
}

// The valid rows x cols corner of a full tile computed into `tile` (MR, NR), onto C.
static void write_edge_tile(const float *tile, float *c, long ldc, int rows, int cols, int store, const float *bias) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float v = tile[i * MM_NR + j];
            c[i * ldc + j] = store ? (bias ? v + bias[j] : v) : c[i * ldc + j] + v;
        }
}

// C (m, n), row stride ldc, (+)= A · B. With accumulate == 0, C = A·B + bias (bias may be NULL).
static void gemm(float *c, long ldc, MatView a, MatView b, const float *bias, int m, int n, int k, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   // an empty sum: C is untouched (+= 0) or becomes the bias
        if (!accumulate)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) c[i * ldc + j] = bias ? bias[j] : 0.0f;
        return;
    }
    // Blocks of balanced size, so that e.g. m = 300 is 2 x 150 rather than 264 + 36.
    int kc_count = (k + MM_KC - 1) / MM_KC, kc_max = (k + kc_count - 1) / kc_count;
    int mc_count = (m + MM_MC - 1) / MM_MC, mc_max = (m + mc_count - 1) / mc_count;
    mc_max = (mc_max + MM_MR - 1) / MM_MR * MM_MR;
    int n_panels = (n + MM_NR - 1) / MM_NR;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    // The only allocation: the shared A block and one B panel per thread (~300 KB in all).
    float *a_pack = gfn_malloc(sizeof(float) * ((size_t)mc_max * kc_max + (size_t)threads * kc_max * MM_NR));
    float *b_packs = a_pack + (size_t)mc_max * kc_max;

    // Threads only pay off above ~10 µs of work: a parallel region and its barriers cost a few
    // µs, and much more when the machine is busy and a team member waits for a time slice.
    #pragma omp parallel if ((double)m * n * k >= 262144.0)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *b_pack = b_packs + (size_t)tid * kc_max * MM_NR;
        for (int p0 = 0; p0 < k; p0 += kc_max) {
            int kc = k - p0 < kc_max ? k - p0 : kc_max;
            int store = !accumulate && p0 == 0;
            for (int i0 = 0; i0 < m; i0 += mc_max) {
                int mc = m - i0 < mc_max ? m - i0 : mc_max;
                int m_panels = (mc + MM_MR - 1) / MM_MR;
                #pragma omp for schedule(static)
                for (int ip = 0; ip < m_panels; ip++) {
                    int rows = mc - ip * MM_MR < MM_MR ? mc - ip * MM_MR : MM_MR;
                    pack_a_panel(a_pack + (size_t)ip * MM_MR * kc, a, i0 + ip * MM_MR, rows, p0, kc);
                }
                // Tiles in column-panel-major order: a thread's contiguous share walks along
                // one B panel (packed once) through all the row panels before moving on.
                long tiles = (long)n_panels * m_panels;
                int packed = -1;
                #pragma omp for schedule(static)
                for (long t = 0; t < tiles; t++) {
                    int jp = (int)(t / m_panels), ip = (int)(t % m_panels);
                    int j0 = jp * MM_NR, cols = n - j0 < MM_NR ? n - j0 : MM_NR;
                    if (jp != packed) { pack_b_panel(b_pack, b, p0, kc, j0, cols); packed = jp; }
                    int r0 = ip * MM_MR, rows = mc - r0 < MM_MR ? mc - r0 : MM_MR;
                    const float *a_panel = a_pack + (size_t)ip * MM_MR * kc;
                    float *c_tile = c + (long)(i0 + r0) * ldc + j0;
                    const float *bias_tile = bias ? bias + j0 : NULL;
                    if (rows == MM_MR && cols == MM_NR) {
                        micro_kernel(kc, a_panel, b_pack, c_tile, ldc, store, bias_tile);
                    } else {
                        float tile[MM_MR * MM_NR];
                        micro_kernel(kc, a_panel, b_pack, tile, MM_NR, 1, NULL);
                        write_edge_tile(tile, c_tile, ldc, rows, cols, store, bias_tile);
                    }
                }
            }
        }
    }
    free(a_pack);
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N) {
    // out (M, N) = inp (M, K) · weight (K, N) + bias
    MatView a = { inp, K, 1 }, b = { weight, N, 1 };
    gemm(out, N, a, b, bias, M, N, K, 0);
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int M, int K, int N) {
    if (dinp) {      // dinp (M, K) += dout (M, N) · weightᵀ (N, K)
        MatView a = { dout, N, 1 }, wt = { weight, 1, N };
        gemm(dinp, K, a, wt, NULL, M, K, N, 1);
    }
    if (dweight) {   // dweight (K, N) += inpᵀ (K, M) · dout (M, N): the sum over the M rows
        MatView inp_t = { inp, 1, K }, b = { dout, N, 1 };
        gemm(dweight, N, inp_t, b, NULL, K, N, M, 1);
    }
    if (dbias) {     // dbias (N) += Σ_rows dout: each thread owns a range of columns
        #pragma omp parallel for schedule(static) if ((double)M * N >= 262144.0)
        for (int j0 = 0; j0 < N; j0 += 64) {
            int j1 = N - j0 < 64 ? N : j0 + 64;
            for (int i = 0; i < M; i++)
                for (int j = j0; j < j1; j++) dbias[j] += dout[(long)i * N + j];
        }
    }
}

void matmul_forward_nt(float *out, const float *inp, const float *weight, int M, int K, int N) {
    // out (M, N) = inp (M, K) · weightᵀ, weight (N, K)
    MatView a = { inp, K, 1 }, wt = { weight, 1, K };
    gemm(out, N, a, wt, NULL, M, N, K, 0);
}

void matmul_backward_nt(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, int M, int K, int N) {
    if (dinp) {      // dinp (M, K) += dout (M, N) · weight (N, K)
        MatView a = { dout, N, 1 }, b = { weight, K, 1 };
        gemm(dinp, K, a, b, NULL, M, K, N, 1);
    }
    if (dweight) {   // dweight (N, K) += doutᵀ (N, M) · inp (M, K)
        MatView dout_t = { dout, 1, N }, b = { inp, K, 1 };
        gemm(dweight, K, dout_t, b, NULL, N, K, M, 1);
    }
}
// ==== end matmul ====
