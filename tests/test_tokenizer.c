// tests/test_tokenizer.c — byte-level BPE: GPT-2 ids against the reference encoder (a committed
// fixture from npm gpt-3-encoder), byte round trips, training against a naive recount trainer,
// determinism, the special token, and bad tokenizer files.
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_DIR test_path("tokenizer")   // in this run's scratch directory
#define FIXTURE "tests/tokenizer_gpt2_ref.txt"

static char *tmp_path(const char *name) {
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", TMP_DIR, name);
    return p;
}

static int write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) != 0 || !ok);
}

static Tokenizer *load_gpt2(void) {
    const char *dir = test_data_dir();
    if (!dir) return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/gpt2", dir);
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    GfnError err;
    Tokenizer *tok = tokenizer_load(path, &err);
    CHECK(tok != NULL, "loading GPT-2's vocabulary: %s", tok ? "" : err.msg);
    return tok;
}

// Encodes text and checks that decoding gives the same bytes back; returns the ids' count.
static size_t check_round_trip(const Tokenizer *tok, const char *text, size_t len, int allow_special, const char *what) {
    size_t n, back_len;
    GfnError err;
    int *ids = tokenizer_encode(tok, text, len, allow_special, &n);
    char *back = tokenizer_decode(tok, ids, n, &back_len, &err);
    int ok = back && back_len == len && !memcmp(back, text, len);
    if (!ok) CHECK(ok, "%s: %zu bytes do not round-trip", what, len);
    free(ids);
    free(back);
    return ok;
}

// ----------------------------------------------------------------------------------------------
// GPT-2 against the reference encoder

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

typedef struct { char name[128]; char *text; size_t len; char **line; size_t *line_len; size_t num_lines; } DataFile;

static DataFile *data_file(DataFile *files, int *num_files, const char *dir, const char *name) {
    for (int i = 0; i < *num_files; i++) if (!strcmp(files[i].name, name)) return files[i].text ? &files[i] : NULL;
    DataFile *f = &files[(*num_files)++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    GfnError err;
    f->text = (char *)read_file(path, &f->len, &err);
    if (!f->text) return NULL;
    size_t cap = 1024;
    f->line = malloc(cap * sizeof(char *));
    f->line_len = malloc(cap * sizeof(size_t));
    for (size_t pos = 0;;) {  // lines split at '\n' exactly as the node script's split('\n')
        char *nl = memchr(f->text + pos, '\n', f->len - pos);
        size_t end = nl ? (size_t)(nl - f->text) : f->len;
        if (f->num_lines == cap) {
            cap *= 2;
            f->line = realloc(f->line, cap * sizeof(char *));
            f->line_len = realloc(f->line_len, cap * sizeof(size_t));
        }
        f->line[f->num_lines] = f->text + pos;
        f->line_len[f->num_lines++] = end - pos;
        if (!nl) break;
        pos = end + 1;
    }
    return f;
}

static void test_gpt2_reference(void) {
    Tokenizer *tok = load_gpt2();
    if (!tok) { test_skip("tokenizer gpt2 reference", "no GPT-2 vocabulary (data dir gpt2/ absent)"); return; }
    size_t fixture_len;
    GfnError err;
    char *fixture = (char *)read_file(FIXTURE, &fixture_len, &err);
    CHECK(fixture != NULL, "fixture: %s", fixture ? "" : err.msg);
    if (!fixture) { tokenizer_free(tok); return; }
    const char *dir = test_data_dir();
    DataFile files[16];
    int num_files = 0;
    size_t compared_data = 0, compared_generated = 0, mismatches = 0, missing = 0, round_trip_failures = 0;
    char *text = malloc(fixture_len + 1);
    int *want = malloc((fixture_len + 1) * sizeof(int));
    size_t line_no = 0;
    for (char *line = fixture; line < fixture + fixture_len;) {
        char *end = memchr(line, '\n', (size_t)(fixture + fixture_len - line));
        if (!end) end = fixture + fixture_len;
        *end = 0;
        line_no++;
        char *cur = line;
        line = end + 1;
        if (cur[0] == '#' || cur[0] == 0) continue;
        char *colon = strstr(cur, " : ");
        if (!colon) colon = strstr(cur, " :");
        if (!CHECK(colon && (cur[0] == 'F' || cur[0] == 'H'), "fixture line %zu malformed", line_no)) break;
        // Expected ids.
        size_t num_want = 0;
        for (char *p = colon + 2; *p;) {
            while (*p == ' ') p++;
            if (!*p) break;
            want[num_want++] = (int)strtol(p, &p, 10);
        }
        // The text: hex here, or a line of a data file.
        size_t len = 0;
        const char *t = text;
        if (cur[0] == 'H') {
            for (char *p = cur + 2; p + 1 < colon; p += 2) text[len++] = (char)(hex_value(p[0]) * 16 + hex_value(p[1]));
            compared_generated++;
        } else {
            char name[128];
            size_t number;
            if (!CHECK(sscanf(cur + 2, "%127s %zu", name, &number) == 2, "fixture line %zu malformed", line_no)) break;
            DataFile *f = data_file(files, &num_files, dir, name);
            if (!f || number < 1 || number > f->num_lines) { missing++; continue; }
            t = f->line[number - 1];
            len = f->line_len[number - 1];
            compared_data++;
        }
        size_t n;
        int *ids = tokenizer_encode(tok, t, len, 0, &n);
        int same = n == num_want && !memcmp(ids, want, n * sizeof(int));
        if (!same && mismatches++ < 5)
            printf("   mismatch at fixture line %zu (%zu ids, want %zu): %.60s\n", line_no, n, num_want, cur);
        free(ids);
        if (!check_round_trip(tok, t, len, 0, "GPT-2 fixture line")) round_trip_failures++;
    }
    printf("   GPT-2 vs npm gpt-3-encoder: %zu lines compared (%zu from data files, %zu generated), %zu mismatches\n",
           compared_data + compared_generated, compared_data, compared_generated, mismatches);
    CHECK(mismatches == 0, "%zu of %zu lines differ from the reference encoder", mismatches, compared_data + compared_generated);
    CHECK(compared_generated >= 4000, "only %zu generated lines in the fixture", compared_generated);
    CHECK(round_trip_failures == 0, "%zu fixture lines failed to round-trip", round_trip_failures);
    if (missing) {
        char why[160];
        snprintf(why, sizeof why, "%zu fixture lines name data files missing from %s", missing, dir);
        test_skip("tokenizer gpt2 reference (data-file lines)", why);
    }
    for (int i = 0; i < num_files; i++) { free(files[i].text); free(files[i].line); free(files[i].line_len); }
    free(text); free(want); free(fixture);
    tokenizer_free(tok);
}

// ----------------------------------------------------------------------------------------------
// Random byte strings round-trip (invalid UTF-8, NUL, CR LF, tabs, emoji, CJK, long runs)

static size_t random_bytes(Rng *rng, char *out) {
    static const char *const pieces[] = { "\xF0\x9F\x98\x80", "\xE6\x97\xA5\xE6\x9C\xAC", "\xC3\xA9", "\r\n", "\t",
        "\0", " ", "  ", "'s", "'LL", "<|endoftext|>", "<|endoftext", "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80",
        "\xE2\x80\xA8", "\xC2\xA0", "\xEF\xBB\xBF", "\xE3\x80\x80", "123", "word", " The", "\xF0\x9F", "\x80" };
    size_t n = 0;
    int kind = rng_below(rng, 4), parts = 1 + rng_below(rng, 40);
    for (int i = 0; i < parts; i++) {
        int r = rng_below(rng, 10);
        if (kind == 0 || r < 2) {                       // raw random bytes
            for (int k = rng_below(rng, 8); k >= 0; k--) out[n++] = (char)rng_below(rng, 256);
        } else if (r < 6) {                             // a piece
            const char *p = pieces[rng_below(rng, (int)(sizeof pieces / sizeof *pieces))];
            size_t len = p[0] ? strlen(p) : 1;
            memcpy(out + n, p, len);
            n += len;
        } else if (r < 8) {                             // ASCII letters
            for (int k = rng_below(rng, 10); k >= 0; k--) out[n++] = (char)('a' + rng_below(rng, 26));
        } else {                                        // a run of spaces or digits
            char c = rng_below(rng, 2) ? ' ' : (char)('0' + rng_below(rng, 10));
            for (int k = rng_below(rng, kind == 3 ? 300 : 20); k >= 0; k--) out[n++] = c;
        }
    }
    return n;
}

static void round_trip_many(const Tokenizer *tok, const char *what, int count, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    char *buf = malloc(40 * 400);
    int failures = 0;
    for (int i = 0; i < count; i++) {
        size_t n = random_bytes(&rng, buf);
        failures += !check_round_trip(tok, buf, n, i & 1, what);
        if (failures > 5) break;
    }
    CHECK(failures == 0, "%s: %d random byte strings failed to round-trip", what, failures);
    free(buf);
}

// ----------------------------------------------------------------------------------------------
// Training against a naive trainer: full recount of every pair per merge, all occurrences kept
// separately (no word counts), same tie rule (highest count, then smallest (left, right)).
// The corpus has lowercase words over a small alphabet separated by single spaces, so its
// pre-tokens are known without the pre-tokeniser: "w0", " w1", " w2", ...

typedef struct { int *sym; int len; } NaiveWord;

static int naive_train(NaiveWord *words, int num_words, int num_merges, int (*merges)[2]) {
    static int64_t counts[512][512];   // ids stay below 512 in this test
    for (int m = 0; m < num_merges; m++) {
        memset(counts, 0, sizeof counts);
        for (int w = 0; w < num_words; w++)
            for (int i = 0; i + 1 < words[w].len; i++) counts[words[w].sym[i]][words[w].sym[i + 1]]++;
        int64_t best = 0;
        int a = -1, b = -1;
        for (int l = 0; l < 512; l++)
            for (int r = 0; r < 512; r++)
                if (counts[l][r] > best) { best = counts[l][r]; a = l; b = r; }
        if (best == 0) return m;
        merges[m][0] = a; merges[m][1] = b;
        for (int w = 0; w < num_words; w++) {
            int k = 0;
            for (int i = 0; i < words[w].len; i++) {
                if (i + 1 < words[w].len && words[w].sym[i] == a && words[w].sym[i + 1] == b) { words[w].sym[k++] = 256 + m; i++; }
                else words[w].sym[k++] = words[w].sym[i];
            }
            words[w].len = k;
        }
    }
    return num_merges;
}

// GPT-2's encode loop, naively: merge every occurrence of the lowest-ranked pair, repeat.
static int naive_encode(const int (*merges)[2], int num_merges, const unsigned char *s, int n, int *out) {
    for (int i = 0; i < n; i++) out[i] = s[i];
    for (;;) {
        int best = num_merges;
        for (int i = 0; i + 1 < n; i++)
            for (int m = 0; m < best; m++)
                if (merges[m][0] == out[i] && merges[m][1] == out[i + 1]) { best = m; break; }
        if (best == num_merges) return n;
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (i + 1 < n && out[i] == merges[best][0] && out[i + 1] == merges[best][1]) { out[k++] = 256 + best; i++; }
            else out[k++] = out[i];
        }
        n = k;
    }
}

static size_t make_corpus(char *text, int num_words, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    size_t n = 0;
    for (int w = 0; w < num_words; w++) {
        if (w) text[n++] = ' ';
        int len = 1 + rng_below(&rng, 7);
        for (int i = 0; i < len; i++) text[n++] = (char)('a' + rng_below(&rng, i < 2 ? 3 : 6));  // skewed: many ties and repeats
    }
    text[n] = 0;
    return n;
}

static void test_training(void) {
    enum { NUM_WORDS = 4000, VOCAB = 480, MERGES = VOCAB - 257 };
    char *text = malloc(NUM_WORDS * 9 + 1);
    size_t len = make_corpus(text, NUM_WORDS, 7);
    const char *corpus = tmp_path("corpus.txt");
    CHECK(write_bytes(corpus, text, len) == 0, "cannot write %s", corpus);
    GfnError err;
    const char *paths[2] = { corpus, corpus };
    Tokenizer *tok = tokenizer_train(paths, 1, VOCAB, &err);
    if (!CHECK(tok != NULL, "training failed: %s", tok ? "" : err.msg)) { free(text); return; }
    CHECK(tokenizer_vocab_size(tok) == VOCAB && tokenizer_eot_id(tok) == VOCAB - 1, "vocab %d eot %d",
          tokenizer_vocab_size(tok), tokenizer_eot_id(tok));

    // The saved file's merges against the naive trainer's.
    const char *saved1 = tmp_path("a.tok"), *saved2 = tmp_path("b.tok"), *saved3 = tmp_path("c.tok");
    CHECK(tokenizer_save(tok, saved1, &err) == 0, "save: %s", err.msg);
    size_t file_len;
    unsigned char *file = read_file(saved1, &file_len, &err);
    CHECK(file && file_len == 24 + 8 * (size_t)MERGES, "saved file size %zu", file ? file_len : 0);
    NaiveWord *words = malloc(NUM_WORDS * sizeof(NaiveWord));
    int num_words = 0;
    for (size_t i = 0; i < len;) {  // "w0", " w1", " w2", ...
        size_t j = i + 1;
        while (j < len && text[j] != ' ') j++;
        words[num_words].sym = malloc((j - i) * sizeof(int));
        words[num_words].len = (int)(j - i);
        for (size_t k = i; k < j; k++) words[num_words].sym[k - i] = (unsigned char)text[k];
        num_words++;
        i = j;
    }
    static int merges[MERGES][2];
    int num_naive = naive_train(words, num_words, MERGES, merges);
    CHECK(num_naive == MERGES, "the naive trainer ran out of pairs after %d merges", num_naive);
    int first_diff = -1;
    for (int m = 0; file && m < num_naive && first_diff < 0; m++)
        if ((int)le_u32(file + 24 + 8 * m) != merges[m][0] || (int)le_u32(file + 28 + 8 * m) != merges[m][1]) first_diff = m;
    CHECK(first_diff < 0, "merge %d differs from the naive trainer's (%d, %d)", first_diff,
          first_diff < 0 ? 0 : merges[first_diff][0], first_diff < 0 ? 0 : merges[first_diff][1]);
    // Token bytes of a merge = its parts' bytes.
    size_t la, lb, lz;
    const unsigned char *a = tokenizer_token_bytes(tok, merges[0][0], &la), *b = tokenizer_token_bytes(tok, merges[0][1], &lb);
    const unsigned char *z = tokenizer_token_bytes(tok, 256, &lz);
    CHECK(lz == la + lb && !memcmp(z, a, la) && !memcmp(z + la, b, lb), "token 256's bytes");

    // Encoding with the heap BPE = the naive GPT-2 loop, pre-token by pre-token.
    int enc_mismatch = 0;
    int *naive_ids = malloc(len * sizeof(int));
    size_t naive_n = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && text[j] != ' ') j++;
        naive_n += (size_t)naive_encode((const int (*)[2])merges, num_naive, (const unsigned char *)text + i, (int)(j - i), naive_ids + naive_n);
        i = j;
    }
    size_t n;
    int *ids = tokenizer_encode(tok, text, len, 0, &n);
    enc_mismatch = n != naive_n || memcmp(ids, naive_ids, n * sizeof(int)) != 0;
    CHECK(!enc_mismatch, "encoding the corpus: %zu ids, the naive loop gives %zu (or they differ)", n, naive_n);
    free(ids); free(naive_ids);
    for (int w = 0; w < num_words; w++) free(words[w].sym);
    free(words);

    // Determinism: the same text trains the same bytes; the text twice (all counts doubled) too.
    Tokenizer *again = tokenizer_train(paths, 1, VOCAB, &err), *twice = tokenizer_train(paths, 2, VOCAB, &err);
    CHECK(again && twice, "retraining failed: %s", err.msg);
    if (again && twice) {
        tokenizer_save(again, saved2, &err);
        tokenizer_save(twice, saved3, &err);
        size_t l2, l3;
        unsigned char *f2 = read_file(saved2, &l2, &err), *f3 = read_file(saved3, &l3, &err);
        CHECK(file && f2 && l2 == file_len && !memcmp(f2, file, l2), "training twice gave different files");
        CHECK(file && f3 && l3 == file_len && !memcmp(f3, file, l3), "doubling every count changed the merges");
        free(f2); free(f3);
    }
    tokenizer_free(again); tokenizer_free(twice);

    // Reloaded, it encodes the same.
    Tokenizer *loaded = tokenizer_load(saved1, &err);
    CHECK(loaded != NULL, "reload: %s", loaded ? "" : err.msg);
    if (loaded) {
        size_t n1, n2;
        int *i1 = tokenizer_encode(tok, text, len, 0, &n1), *i2 = tokenizer_encode(loaded, text, len, 0, &n2);
        CHECK(n1 == n2 && !memcmp(i1, i2, n1 * sizeof(int)), "reloaded tokenizer encodes differently");
        free(i1); free(i2);
        round_trip_many(loaded, "trained tokenizer", 6000, 11);
    }
    // Asking for more merges than the text has pairs stops early, with a consistent vocabulary.
    const char *tiny = tmp_path("tiny.txt");
    write_bytes(tiny, "abab", 4);
    Tokenizer *small = tokenizer_train(&tiny, 1, 1000, &err);
    CHECK(small && tokenizer_vocab_size(small) == 259 && tokenizer_eot_id(small) == 258, "tiny text: vocab %d",
          small ? tokenizer_vocab_size(small) : -1);
    tokenizer_free(small);
    CHECK(tokenizer_train(&tiny, 1, 100, &err) == NULL && strstr(err.msg, "at least 257"), "vocab 100 accepted: %s", err.msg);
    const char *nowhere = tmp_path("missing.txt");
    CHECK(tokenizer_train(&nowhere, 1, 300, &err) == NULL && strstr(err.msg, nowhere), "missing input: %s", err.msg);

    tokenizer_free(loaded);
    tokenizer_free(tok);
    free(file);
    free(text);
}

// ----------------------------------------------------------------------------------------------
// The special token

static void check_special(const Tokenizer *tok, const char *what) {
    int eot = tokenizer_eot_id(tok);
    const char *text = "a<|endoftext|>b<|endoftext|><|endoftext|> <|endoftext";
    size_t n, len = strlen(text);
    int *ids = tokenizer_encode(tok, text, len, 1, &n);
    int eots = 0;
    for (size_t i = 0; i < n; i++) eots += ids[i] == eot;
    CHECK(eots == 3, "%s: %d EOT ids with special tokens allowed, want 3", what, eots);
    free(ids);
    ids = tokenizer_encode(tok, text, len, 0, &n);
    eots = 0;
    for (size_t i = 0; i < n; i++) eots += ids[i] == eot;
    CHECK(eots == 0, "%s: EOT produced from plain text", what);
    free(ids);
    check_round_trip(tok, text, len, 1, what);
    check_round_trip(tok, text, len, 0, what);
    size_t eot_len;
    const unsigned char *bytes = tokenizer_token_bytes(tok, eot, &eot_len);
    CHECK(bytes && eot_len == 13 && !memcmp(bytes, "<|endoftext|>", 13), "%s: EOT's bytes", what);
    CHECK(tokenizer_token_bytes(tok, tokenizer_vocab_size(tok), &eot_len) == NULL && eot_len == 0, "%s: id V has bytes", what);
    CHECK(tokenizer_token_bytes(tok, -1, &eot_len) == NULL, "%s: id -1 has bytes", what);
    GfnError err;
    int bad[2] = { 0, tokenizer_vocab_size(tok) };
    CHECK(tokenizer_decode(tok, bad, 2, &eot_len, &err) == NULL && strstr(err.msg, "outside the vocabulary"),
          "%s: decoding id V: %s", what, err.msg);
}

static void test_special_and_round_trips(void) {
    const char *corpus = tmp_path("corpus.txt");  // written by test_training
    GfnError err;
    Tokenizer *trained = tokenizer_train(&corpus, 1, 300, &err);
    CHECK(trained != NULL, "training: %s", trained ? "" : err.msg);
    if (trained) { check_special(trained, "trained"); tokenizer_free(trained); }
    Tokenizer *gpt2 = load_gpt2();
    if (!gpt2) { test_skip("tokenizer gpt2 round trips", "no GPT-2 vocabulary (data dir gpt2/ absent)"); return; }
    check_special(gpt2, "GPT-2");
    CHECK(tokenizer_vocab_size(gpt2) == 50257 && tokenizer_eot_id(gpt2) == 50256, "GPT-2 sizes");
    size_t n;
    int *ids = tokenizer_encode(gpt2, "a<|endoftext|>b", 15, 1, &n);
    CHECK(n == 3 && ids[0] == 64 && ids[1] == 50256 && ids[2] == 65, "GPT-2 a<|endoftext|>b");
    free(ids);
    round_trip_many(gpt2, "GPT-2", 8000, 12);
    CHECK(tokenizer_save(gpt2, tmp_path("gpt2.tok"), &err) != 0 && strstr(err.msg, "GPT-2"), "saving GPT-2 in our format");
    tokenizer_free(gpt2);
}

// ----------------------------------------------------------------------------------------------
// Bad tokenizer files

static void expect_load_error(const char *path, const char *problem, const char *what) {
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_load(path, &err);
    CHECK(tok == NULL && strstr(err.msg, path) && strstr(err.msg, problem), "%s: want an error naming %s and '%s', got '%s'",
          what, path, problem, tok ? "(loaded)" : err.msg);
    tokenizer_free(tok);
}

// A tiny GPT-2 style directory: the 256 byte characters, "ab", "<|endoftext|>".
static void write_gpt2_dir(const char *dir, const char *merge_line, const char *json_tail) {
    mkdir(dir, 0755);
    char path[300], json[8192];
    size_t n = 0;
    n += (size_t)snprintf(json + n, sizeof json - n, "{");
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = printable ? (unsigned)b : (unsigned)(256 + next++);
        char ch[8];
        if (cp == '"' || cp == '\\') { ch[0] = '\\'; ch[1] = (char)cp; ch[2] = 0; }
        else if (cp < 0x80) { ch[0] = (char)cp; ch[1] = 0; }
        else { ch[0] = (char)(0xC0 | (cp >> 6)); ch[1] = (char)(0x80 | (cp & 63)); ch[2] = 0; }
        n += (size_t)snprintf(json + n, sizeof json - n, "\"%s\": %d, ", ch, b);
    }
    n += (size_t)snprintf(json + n, sizeof json - n, "\"ab\": 256, \"<|endoftext|>\": 257%s", json_tail);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    write_bytes(path, json, n);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    char bpe[128];
    snprintf(bpe, sizeof bpe, "#version: 0.2\n%s\n", merge_line);
    write_bytes(path, bpe, strlen(bpe));
}

static void test_bad_files(void) {
    GfnError err;
    const char *corpus = tmp_path("corpus.txt");
    Tokenizer *tok = tokenizer_train(&corpus, 1, 300, &err);
    if (!CHECK(tok != NULL, "training: %s", tok ? "" : err.msg)) return;
    const char *good = tmp_path("good.tok"), *bad = tmp_path("bad.tok");
    tokenizer_save(tok, good, &err);
    tokenizer_free(tok);
    size_t len;
    unsigned char *data = read_file(good, &len, &err);
    if (!CHECK(data != NULL, "%s", err.msg)) return;
    unsigned char *copy = malloc(len);

    write_bytes(bad, data, 30);
    expect_load_error(bad, "truncated", "truncated file");
    write_bytes(bad, data, 10);
    expect_load_error(bad, "too short", "file shorter than its header");
    memcpy(copy, data, len); copy[0] ^= 1; write_bytes(bad, copy, len);
    expect_load_error(bad, "bad magic", "wrong magic");
    memcpy(copy, data, len); put_le_u32(copy + 8, 2); write_bytes(bad, copy, len);
    expect_load_error(bad, "version 2", "wrong version");
    memcpy(copy, data, len); put_le_u32(copy + 12, 5000); write_bytes(bad, copy, len);
    expect_load_error(bad, "inconsistent counts", "vocab size disagreeing with the merges");
    memcpy(copy, data, len); put_le_u32(copy + 24 + 8 * 3 + 4, 9999); write_bytes(bad, copy, len);
    expect_load_error(bad, "merge 3", "merge id out of range");
    memcpy(copy, data, len); put_le_u32(copy + 24, 256); write_bytes(bad, copy, len);
    expect_load_error(bad, "merge 0", "merge naming itself");
    expect_load_error(tmp_path("nothing-here.tok"), "no such", "missing file");
    free(copy); free(data);

    // GPT-2 directories.
    const char *dir = tmp_path("gpt2_good");
    write_gpt2_dir(dir, "a b", "}");
    tok = tokenizer_load(dir, &err);
    CHECK(tok != NULL, "tiny GPT-2 dir: %s", tok ? "" : err.msg);
    if (tok) {
        size_t n;
        int *ids = tokenizer_encode(tok, "abab ab", 7, 0, &n);
        CHECK(n == 4 && ids[0] == 256 && ids[1] == 256 && ids[2] == ' ' && ids[3] == 256, "tiny GPT-2 encode");
        free(ids);
        tokenizer_free(tok);
    }
    const char *d1 = tmp_path("gpt2_garbled");
    write_gpt2_dir(d1, "a b", ", \"x\": }");
    expect_load_error(d1, "encoder.json: offset", "garbled encoder.json");
    const char *d2 = tmp_path("gpt2_badmerge");
    write_gpt2_dir(d2, "a zz", "}");
    expect_load_error(d2, "vocab.bpe: line 2", "merge naming an unknown token");
    const char *d3 = tmp_path("gpt2_badid");
    write_gpt2_dir(d3, "a b", ", \"zz\": 9999}");
    expect_load_error(d3, "id must be an integer", "id out of range");
    const char *d4 = tmp_path("gpt2_noencoder");
    write_gpt2_dir(d4, "a b", "}");
    char path[300];
    snprintf(path, sizeof path, "%s/encoder.json", d4);
    remove(path);
    expect_load_error(d4, "no encoder.json", "missing encoder.json");
}

static void remove_tmp_files(void) {
    static const char *const files[] = { "corpus.txt", "a.tok", "b.tok", "c.tok", "tiny.txt", "good.tok", "bad.tok" };
    static const char *const dirs[] = { "gpt2_good", "gpt2_garbled", "gpt2_badmerge", "gpt2_badid", "gpt2_noencoder" };
    char path[300];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) remove(tmp_path(files[i]));
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/encoder.json", tmp_path(dirs[i])); remove(path);
        snprintf(path, sizeof path, "%s/vocab.bpe", tmp_path(dirs[i])); remove(path);
        rmdir(tmp_path(dirs[i]));
    }
    rmdir(TMP_DIR);
}

void test_tokenizer(void) {
    mkdir(TMP_DIR, 0755);
    test_gpt2_reference();
    test_training();
    test_special_and_round_trips();
    test_bad_files();
    remove_tmp_files();
}
