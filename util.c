// util.c — the generic utilities every other file uses: errors and allocation, the seeded RNG,
// threads on a busy machine, little-endian bytes and half floats, files, and a small JSON reader.
// Depends on libc only.
#define _POSIX_C_SOURCE 200809L   // setenv, execv: gfn_threads_init
#include "gfn.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

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
// Threads on a busy machine
//
// An OpenMP runtime left to its defaults lets a thread that reaches the end of a parallel region
// spin for its peers (libgomp: ~300k spins, about a millisecond) before it sleeps. On a machine
// whose cores are all busy with other processes those spins take the core from the very thread
// that is still working: measured on 2 cores under load, an arithmetic training step took 6x as
// long with 2 threads as with 1. With OMP_WAIT_POLICY=passive a waiting thread sleeps at once,
// and 2 threads were as fast as 1 there. The runtime reads the variable when it starts, before
// main(), so the program sets it and runs itself again; a user's own OMP_WAIT_POLICY is kept.
void gfn_threads_init(char **argv) {
#if defined(_OPENMP) && defined(__linux__)
    if (getenv("OMP_WAIT_POLICY") || !argv || !argv[0]) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1)) return;
    execv("/proc/self/exe", argv);   // returns only on failure: then carry on as we are
#else
    (void)argv;
#endif
}

// ----------------------------------------------------------------------------------------------
// A growing text buffer: the JSON and reports we write, the pretraining corpus.

void text_append(Text *t, const char *bytes, size_t n) {
    if (t->len + n + 1 > t->cap) {
        while (t->len + n + 1 > t->cap) t->cap = t->cap ? 2 * t->cap : 1 << 12;
        char *grown = realloc(t->s, t->cap);
        if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        t->s = grown;
    }
    memcpy(t->s + t->len, bytes, n);
    t->len += n;
    t->s[t->len] = 0;
}

void text_appendf(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)need + 1 > t->cap) {
        t->cap = 2 * (t->len + (size_t)need + 1);
        char *grown = realloc(t->s, t->cap);
        if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        t->s = grown;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)need;
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

// Atomic writes come in two halves so that big files can be streamed (a checkpoint is too large
// to build in memory a second time): atomic_begin creates PATH.tmp; atomic_finish flushes, closes
// and renames it over PATH, or removes it when the writer reports a failure (ok == 0).
// An output may be a new name or a regular file; a device node, a directory or a symlink is
// refused, since the rename would replace the node (or the link) rather than write through it.
int output_path_check(const char *path, GfnError *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;   // a new file
    if (S_ISLNK(st.st_mode)) { gfn_error_set(err, "%s: is a symbolic link; refusing to replace it (give the target's path)", path); return 1; }
    if (!S_ISREG(st.st_mode)) { gfn_error_set(err, "%s: exists and is not a regular file; refusing to replace it", path); return 1; }
    return 0;
}

FILE *atomic_begin(const char *path, char **tmp, GfnError *err) {
    if (output_path_check(path, err)) { *tmp = NULL; return NULL; }
    size_t plen = strlen(path);
    *tmp = gfn_malloc(plen + 5);
    memcpy(*tmp, path, plen);
    memcpy(*tmp + plen, ".tmp", 5);
    if (output_path_check(*tmp, err)) { free(*tmp); *tmp = NULL; return NULL; }
    FILE *f = fopen(*tmp, "wb");
    if (!f) { gfn_error_set(err, "%s: cannot create: %s", *tmp, strerror(errno)); free(*tmp); *tmp = NULL; }
    return f;
}

int atomic_finish(FILE *f, char *tmp, const char *path, int ok, GfnError *err) {
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

int write_file_atomic(const char *path, const void *data, size_t len, GfnError *err) {
    char *tmp;
    FILE *f = atomic_begin(path, &tmp, err);
    if (!f) return 1;
    return atomic_finish(f, tmp, path, fwrite(data, 1, len, f) == len, err);
}

// FNV-1a, 64 bits: identifies files and token streams and checks saved states (not a
// cryptographic hash; it only has to notice that an input changed or a file was damaged).
uint64_t fnv1a64(const void *data, size_t len, uint64_t hash) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

char *path_with_suffix(const char *path, const char *suffix) {
    size_t a = strlen(path), b = strlen(suffix);
    char *s = gfn_malloc(a + b + 1);
    memcpy(s, path, a);
    memcpy(s + a, suffix, b + 1);
    return s;
}

// A kill during an atomic write leaves PATH.tmp behind (possibly truncated); a run removes it
// before anything else, so no stale temp file outlives a run. Only regular files are removed.
int remove_stale_temp(const char *path) {
    char *tmp = path_with_suffix(path, ".tmp");
    struct stat st;
    int removed = lstat(tmp, &st) == 0 && S_ISREG(st.st_mode) && remove(tmp) == 0;
    free(tmp);
    return removed;
}

// Every value of a tensor read from a file must be finite: a NaN or an infinity would flow
// silently into every loss and sample.
int check_finite(const float *x, size_t n, const char *path, const char *tensor, GfnError *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            gfn_error_set(err, "%s: tensor %s holds a non-finite value (%g at index %zu)", path, tensor, (double)x[i], i);
            return 1;
        }
    return 0;
}

// The shared datasets folder: $GFN_DATA, ./data (made by `make data`) or ../shared/data, the
// first that is a directory; NULL when none is (a fresh clone elsewhere).
const char *gfn_data_dir(void) {
    const char *candidates[] = { getenv("GFN_DATA"), "data", "../shared/data" };
    struct stat st;
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++)
        if (candidates[i] && stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode)) return candidates[i];
    return NULL;
}

// Wall-clock seconds, for progress lines and throughput figures.
double gfn_wall_seconds(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
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
