// tests/test_util.c — the utilities of util.c: JSON reader, RNG, bytes and half floats, files.
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void test_json(void) {
    GfnError err;
    const char *text = " {\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\n\\u00e9\\ud83d\\ude00\\\"\","
                       " \"o\": {\"k\": {}}, \"e\": []} ";
    Json *root = json_parse(text, strlen(text), "inline", &err);
    CHECK(root != NULL, "parse failed: %s", root ? "" : err.msg);
    if (!root) return;
    Json *a = json_get(root, "a");
    CHECK(a && a->type == JSON_ARRAY && a->len == 5, "array a");
    CHECK(json_at(a, 1) && json_at(a, 1)->number == -2500.0, "number -2.5e3");
    CHECK(json_at(a, 2)->type == JSON_BOOL && json_at(a, 2)->number == 1, "true");
    CHECK(json_at(a, 4)->type == JSON_NULL && json_at(a, 5) == NULL, "null and past the end");
    Json *s = json_get(root, "s");
    // x, newline, e-acute (2 bytes), U+1F600 from a surrogate pair (4 bytes), quote
    CHECK(s && s->len == 9 && !memcmp(s->string, "x\n\xc3\xa9\xf0\x9f\x98\x80\"", 9), "escapes decoded");
    CHECK(json_get(json_get(root, "o"), "k")->type == JSON_OBJECT, "nested object");
    CHECK(json_get(root, "e")->len == 0 && json_get(root, "missing") == NULL, "empty array, missing key");
    json_free(root);

    const char *bad[] = { "", "{", "[1,]", "{\"a\" 1}", "\"abc", "[1] x", "{\"a\":tru}", "\"\\q\"", "[01x]" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Json *r = json_parse(bad[i], strlen(bad[i]), "bad.json", &err);
        CHECK(r == NULL && strstr(err.msg, "bad.json: offset") != NULL, "bad JSON %zu accepted or unnamed: %s", i, err.msg);
        json_free(r);
    }
}

static void test_rng(void) {
    Rng a, b;
    rng_seed(&a, 1234);
    rng_seed(&b, 1234);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= rng_u64(&a) == rng_u64(&b);
    CHECK(same, "same seed, different streams");
    // Uniform floats in [0,1) with the right mean; normals with mean 0 and variance 1.
    double sum = 0, sum_n = 0, sum_n2 = 0;
    int n = 200000, in_range = 1, counts[10] = {0};
    for (int i = 0; i < n; i++) {
        float u = rng_uniform(&a);
        in_range &= u >= 0.0f && u < 1.0f;
        sum += u;
        float z = rng_normal(&a);
        sum_n += z; sum_n2 += (double)z * z;
        counts[rng_below(&a, 10)]++;
    }
    CHECK(in_range, "uniform out of [0,1)");
    CHECK(fabs(sum / n - 0.5) < 0.005, "uniform mean %f", sum / n);
    CHECK(fabs(sum_n / n) < 0.01 && fabs(sum_n2 / n - 1.0) < 0.02, "normal moments %f %f", sum_n / n, sum_n2 / n);
    int flat = 1;
    for (int i = 0; i < 10; i++) flat &= abs(counts[i] - n / 10) < n / 100;
    CHECK(flat, "rng_below not uniform");
}

static void test_bytes(void) {
    unsigned char buf[8];
    put_le_u64(buf, 0x0102030405060708ull);
    CHECK(buf[0] == 8 && buf[7] == 1 && le_u64(buf) == 0x0102030405060708ull, "u64 little-endian");
    put_le_f32(buf, -1.5f);
    CHECK(le_f32(buf) == -1.5f && buf[3] == 0xBF, "f32 little-endian");
    // Every finite half survives half -> float -> half; a few known values decode exactly.
    int roundtrip = 1;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;  // inf / nan
        roundtrip &= float_to_half(half_to_float((uint16_t)h)) == h;
    }
    CHECK(roundtrip, "half round trip");
    CHECK(half_to_float(0x3C00) == 1.0f && half_to_float(0xC000) == -2.0f && half_to_float(0x0001) == ldexpf(1, -24),
          "known halves");
    CHECK(float_to_half(1.0f + ldexpf(1, -11)) == 0x3C00, "ties round to even");
    CHECK(float_to_half(70000.0f) == 0x7C00, "overflow to inf");
    CHECK(bfloat16_to_float(0x3F80) == 1.0f, "bfloat16 one");
}

static void test_files(void) {
    GfnError err;
    const char *path = test_path("file.bin");
    CHECK(write_file_atomic(path, "hello", 5, &err) == 0, "write: %s", err.msg);
    size_t len = 0;
    unsigned char *data = read_file(path, &len, &err);
    CHECK(data && len == 5 && !memcmp(data, "hello", 5), "read back");
    free(data);
    remove(path);
    CHECK(read_file("no/such/file", &len, &err) == NULL && strstr(err.msg, "no/such/file"), "missing file named: %s", err.msg);
    CHECK(write_file_atomic("no/such/dir/x", "a", 1, &err) != 0 && strstr(err.msg, "no/such/dir/x"), "bad dir named");
}

void test_util(void) {
    test_json();
    test_rng();
    test_bytes();
    test_files();
}
