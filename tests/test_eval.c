// tests/test_eval.c — eval.c. The text metrics: TASKS.md's BLEU-4 / GLEU test vectors, nltk 3.8's
// values on 52 pairs (tests/fixtures/metrics_nltk.txt, written by scripts/gen_metric_fixture.py),
// sacrebleu's published chrF values, hand-computed BLEU / GLEU / chrF / distinct-n / self-BLEU /
// TF-IDF cases, the BERTScore stand-in against a brute-force computation on a tiny model, and the
// output of `./gfn metrics`. The report pieces against hand-written bytes and values: the Markdown
// table header, mean and sample standard deviation, the growing text buffer, the sorted listing of
// a results folder (.txt only; a missing folder is an error naming it), and the SVG line plot's
// coordinates (ends of the axis, the y flip, ± std bars clamped to 0..100 %). The arithmetic
// report, built from these, is checked byte for byte in test_arithmetic.c.
#define _POSIX_C_SOURCE 200809L   // popen under -std=c11
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_NEAR(got, want, tol, what) \
    CHECK(fabs((got) - (want)) <= (tol), "%s: got %.9f, want %.9f", what, (double)(got), (double)(want))

static void test_task_vectors(void) {
    // TASKS.md "Metric definitions": reference | hypothesis -> BLEU-4, GLEU (6 decimals given).
    static const struct { const char *ref, *hyp; double bleu, gleu; } v[] = {
        { "He went to the park with his dog", "He went to the store.", 0.367012, 0.384615 },
        { "The cat sat on the mat", "the the the the the the the", 0.033032, 0.045455 },
        { "Tom decided to buy a new car", "Tom bought", 0.012275, 0.045455 },
        { "Tom decided to buy a new car", "a b c", 0.029950, 0.045455 },
        { "She was very happy", "She was very happy", 1.0, 1.0 },
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        CHECK_NEAR(bleu4(v[i].ref, v[i].hyp), v[i].bleu, 1e-6, v[i].hyp);
        CHECK_NEAR(gleu(v[i].ref, v[i].hyp), v[i].gleu, 1e-6, v[i].hyp);
    }
}

static void test_nltk_fixture(void) {
    GfnError err;
    size_t len = 0;
    char *text = (char *)read_file("tests/fixtures/metrics_nltk.txt", &len, &err);
    if (!text) { test_skip("nltk fixture", "tests/fixtures/metrics_nltk.txt missing (run from the repository root)"); return; }
    int pairs = 0, worst_line = 0;
    double worst = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        // BLEU \t GLEU \t reference \t hypothesis (the hypothesis may be empty or spaces)
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        char *tab3 = tab2 ? strchr(tab2 + 1, '\t') : NULL;
        if (!CHECK(tab3 != NULL, "fixture line %d has 4 tab-separated fields", pairs + 1)) break;
        *tab3 = 0;
        double want_bleu = strtod(line, NULL), want_gleu = strtod(tab1 + 1, NULL);
        double got_bleu = bleu4(tab2 + 1, tab3 + 1), got_gleu = gleu(tab2 + 1, tab3 + 1);
        pairs++;
        // the fixture prints 9 decimals: agreement to 1e-8
        CHECK(fabs(got_bleu - want_bleu) <= 1e-8, "pair %d '%s' | '%s': BLEU-4 %.9f, nltk %.9f", pairs, tab2 + 1,
              tab3 + 1, got_bleu, want_bleu);
        CHECK(fabs(got_gleu - want_gleu) <= 1e-8, "pair %d '%s' | '%s': GLEU %.9f, nltk %.9f", pairs, tab2 + 1,
              tab3 + 1, got_gleu, want_gleu);
        double d = larger(fabs(got_bleu - want_bleu), fabs(got_gleu - want_gleu));
        if (d > worst) { worst = d; worst_line = pairs; }
        if (!end) break;
        line = end + 1;
    }
    CHECK(pairs == 52, "fixture pairs: %d", pairs);
    printf("   nltk fixture: %d pairs, largest difference %.2g (pair %d)\n", pairs, worst, worst_line);
    free(text);
}

static void test_bleu_gleu_by_hand(void) {
    // Empty hypothesis, no overlap, identical strings.
    CHECK(bleu4("She was very happy", "") == 0 && gleu("She was very happy", "") == 0, "empty hypothesis: 0");
    CHECK(bleu4("", "") == 0 && gleu("", "") == 0, "both empty: 0 (nltk)");
    CHECK(bleu4("The cat sat", "A dog ran") == 0 && gleu("The cat sat", "A dog ran") == 0, "no overlap: 0");
    CHECK(bleu4("The Cat", "the cat") == 0, "case kept");
    CHECK_NEAR(bleu4("a b c d e f", "a b c d e f"), 1.0, 1e-12, "identical");
    CHECK_NEAR(gleu("a b c d e f", "a  b\tc d e f"), 1.0, 1e-12, "identical up to whitespace");
    // ref "a b c d e", hyp "a b x d": p1 = 3/4, p2 = 1/3, p3 = 0.1/2 and p4 = 0.1/1 (method1 over the
    // unreduced denominators), BP = exp(1 − 5/4).
    CHECK_NEAR(bleu4("a b c d e", "a b x d"), exp(-0.25) * pow(0.75 / 3 * 0.05 * 0.1, 0.25), 1e-12, "hand BLEU");
    // GLEU: hyp 4+3+2+1 = 10 n-grams, ref 5+4+3+2 = 14, matches 3 + 1 = 4.
    CHECK_NEAR(gleu("a b c d e", "a b x d"), 4.0 / 14.0, 1e-12, "hand GLEU");
    // One token, matched: p1 = 1, p2..p4 = 0.1 / max(1, 0).
    CHECK_NEAR(bleu4("a", "a"), pow(0.1, 0.75), 1e-12, "one token");
    // Clipping: 7 × "the" against one "the": p1 = 1/7.
    CHECK_NEAR(bleu4("the cat", "the the the the the the the"),
               pow(1.0 / 7 * 0.1 / 6 * 0.1 / 5 * 0.1 / 4, 0.25), 1e-12, "clipped unigrams");
}

static void test_chrf(void) {
    // sacrebleu's published sentence value (HF datasets' chrF metric card: 61.576379378113785).
    CHECK_NEAR(chrf("The ties between Obama and Netanyahu are not particularly friendly.",
                    "The relationship between Obama and Netanyahu is not exactly friendly."),
               0.61576379378113785, 1e-12, "sacrebleu example");
    // sacrebleu's tests (effective-order mode, cases where P = R so β does not matter).
    CHECK_NEAR(chrf("ab", "aa"), 0.25, 1e-12, "aa | ab");        // orders 1, 2: P = R = (1/2 + 0) / 2
    CHECK_NEAR(chrf("abc", "a b c"), 1.0, 1e-12, "whitespace removed");
    CHECK(chrf("c", "") == 0, "empty hypothesis");
    CHECK(chrf("hijklmnop", "abcdefg") == 0, "no common character");
    CHECK_NEAR(chrf("Niemand hat die Absicht", "Niemand hat die Absicht"), 1.0, 1e-12, "identical");
    // By hand, β = 2: ref "ab", hyp "abc": order 1 P = 2/3, R = 1; order 2 P = 1/2, R = 1; order 3
    // has no reference 3-gram (not effective). P = 7/12, R = 1: F = 5 P R / (4 P + R) = 7/8.
    CHECK_NEAR(chrf("ab", "abc"), 0.875, 1e-12, "hand chrF, beta 2");
    // Characters are code points: "éa" | "éb": order 1 P = R = 1/2, order 2 P = R = 0 -> 1/4
    // (bytes would give 7/18).
    CHECK_NEAR(chrf("\xc3\xa9" "a", "\xc3\xa9" "b"), 0.25, 1e-12, "code points, not bytes");
    CHECK_NEAR(chrf("a\xc2\xa0" "b", "ab"), 1.0, 1e-12, "U+00A0 is whitespace (str.split)");
}

static void test_diversity(void) {
    // distinct-n: "a b a b" + "a c": unigrams a b a b a c (3 distinct of 6); bigrams "a b" "b a" "a b"
    // "a c" (3 of 4: n-grams never span two samples).
    const char *s[] = { "a b a b", "a c" };
    CHECK_NEAR(distinct_n(s, 2, 1), 0.5, 1e-12, "distinct-1");
    CHECK_NEAR(distinct_n(s, 2, 2), 0.75, 1e-12, "distinct-2");
    CHECK(distinct_n(s, 2, 5) == 0, "no 5-grams: 0");
    // self-BLEU-4 over ordered pairs: "x" | "x" twice (0.1^(3/4) each), the 4 pairs with "y" are 0.
    const char *x[] = { "x", "x", "y" };
    CHECK_NEAR(self_bleu4(x, 3), 2 * pow(0.1, 0.75) / 6, 1e-12, "self-BLEU");
    const char *same[] = { "a b c d", "a b c d" }, *apart[] = { "a b c d", "e f g h" };
    CHECK_NEAR(self_bleu4(same, 2), 1.0, 1e-12, "self-BLEU of copies");
    CHECK(self_bleu4(apart, 2) == 0 && self_bleu4(same, 1) == 0, "self-BLEU of disjoint / single samples");

    // TF-IDF with the corpus {"the cat", "the dog", "a bird"}: N = 3, df(the) = 2, df(cat) = 1.
    const char *corpus[] = { "the cat", "The dog!", "a bird" };
    TfIdf *t = tfidf_new(corpus, 3);
    double idf_the = log(4.0 / 3.0) + 1, idf_cat = log(2.0) + 1, idf_new = log(4.0) + 1;
    CHECK_NEAR(tfidf_idf(t, "the", 3), idf_the, 1e-12, "idf(the)");
    CHECK_NEAR(tfidf_idf(t, "dog", 3), idf_cat, 1e-12, "idf(dog), lower-cased and without '!'");
    CHECK_NEAR(tfidf_idf(t, "zebra", 5), idf_new, 1e-12, "idf of an unseen word");
    // "The cat." = (the, cat), "the DOG" = (the, dog): cos = idf_the² / (idf_the² + idf_cat²).
    double want = idf_the * idf_the / (idf_the * idf_the + idf_cat * idf_cat);
    CHECK_NEAR(tfidf_cosine(t, "The cat.", "the DOG"), want, 1e-12, "hand cosine");
    // tf: "cat cat the" = (idf_the, 2 idf_cat) against "the cat" = (idf_the, idf_cat).
    double a0 = idf_the, a1 = 2 * idf_cat, b0 = idf_the, b1 = idf_cat;
    CHECK_NEAR(tfidf_cosine(t, "cat cat the", "the cat"), (a0 * b0 + a1 * b1) / sqrt((a0 * a0 + a1 * a1) * (b0 * b0 + b1 * b1)),
               1e-12, "term counts");
    CHECK(tfidf_cosine(t, "...", "the cat") == 0, "a text without words: cosine 0");
    const char *three[] = { "the cat", "the dog", "zebra" };
    CHECK_NEAR(tfidf_diversity(t, three, 3), 1.0 - want / 3.0, 1e-12, "diversity = 1 - mean pairwise cosine");
    const char *twins[] = { "the cat", "THE CAT" };
    CHECK_NEAR(tfidf_diversity(t, twins, 2), 0.0, 1e-12, "identical samples: diversity 0");
    tfidf_free(t);
}

// The BERTScore stand-in on a tiny random model.
static const GPTConfig tiny = { 23, 16, 2, 2, 8 };   // V, maxT, L, NH, C

static void test_bertscore(void) {
    GPT *model = gpt_new_random(tiny, 7);
    Rng rng;
    rng_seed(&rng, 8);
    float *p = gpt_params_memory(model);   // larger weights than GPT-2's init: distinct states
    for (size_t i = 0; i < gpt_num_parameters(model); i++) p[i] = 0.5f * rng_normal(&rng);
    int C = tiny.n_embd, V = tiny.vocab_size;

    // gpt_hidden is ln_f's output: the logits are hidden · wteᵀ.
    int seq[6] = { 3, 9, 1, 17, 9, 4 };
    const float *logits = gpt_forward(model, seq, 1, 6), *hidden = gpt_hidden(model);
    const float *wte = gpt_params(model)->wte;
    double max_err = 0;
    for (int t = 0; t < 6; t++)
        for (int v = 0; v < V; v++) {
            double dot = 0;
            for (int c = 0; c < C; c++) dot += (double)hidden[t * C + c] * wte[v * C + c];
            max_err = larger(max_err, fabs(dot - logits[t * V + v]));
        }
    CHECK(max_err < 1e-4, "logits = gpt_hidden · wte^T: max error %g", max_err);

    // Brute force: the states of [bos] + ids from a plain forward, cosines in double, every
    // hypothesis token's best reference token and every reference token's best hypothesis token.
    const int bos = 22, hyp[4] = { 5, 6, 5, 7 }, ref[3] = { 6, 5, 11 };
    float *he = bertscore_embed_ids(model, bos, hyp, 4), *re = bertscore_embed_ids(model, bos, ref, 3);
    double prec, rec, f1 = bertscore_f1(he, 4, re, 3, C, &prec, &rec);
    float hs[4][8], rs[3][8];
    int hin[5] = { bos, 5, 6, 5, 7 }, rin[4] = { bos, 6, 5, 11 };
    gpt_forward(model, hin, 1, 5);
    memcpy(hs, gpt_hidden(model) + C, sizeof hs);
    gpt_forward(model, rin, 1, 4);
    memcpy(rs, gpt_hidden(model) + C, sizeof rs);
    double cos[4][3];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) {
            double d = 0, a = 0, b = 0;
            for (int c = 0; c < C; c++) { d += (double)hs[i][c] * rs[j][c]; a += (double)hs[i][c] * hs[i][c]; b += (double)rs[j][c] * rs[j][c]; }
            cos[i][j] = d / sqrt(a * b);
        }
    double want_p = 0, want_r = 0;
    for (int i = 0; i < 4; i++) want_p += larger(cos[i][0], larger(cos[i][1], cos[i][2])) / 4;
    for (int j = 0; j < 3; j++) want_r += larger(larger(cos[0][j], cos[1][j]), larger(cos[2][j], cos[3][j])) / 3;
    CHECK_NEAR(prec, want_p, 1e-5, "precision = mean max cosine");
    CHECK_NEAR(rec, want_r, 1e-5, "recall = mean max cosine");
    CHECK_NEAR(f1, 2 * want_p * want_r / (want_p + want_r), 1e-5, "F1");
    CHECK(f1 < 0.999, "different sentences: F1 %f below 1", f1);

    // Identical sentences: F1 = 1 before rescaling, and stay 1 after it.
    float *he2 = bertscore_embed_ids(model, bos, hyp, 4);
    double same = bertscore_f1(he, 4, he2, 4, C, NULL, NULL);
    CHECK_NEAR(same, 1.0, 1e-6, "identical sentences");
    CHECK_NEAR(bertscore_rescale(same, 0.7), 1.0, 1e-5, "rescaled identical sentences");
    CHECK_NEAR(bertscore_rescale(0.7, 0.7), 0.0, 1e-12, "F = b rescales to 0");

    // Greedy many-to-one matching by hand (C = 2): hyp {e1, e2}, ref {e1}: P = (1 + 0)/2, R = 1.
    const float e12[4] = { 1, 0, 0, 1 };
    double hp, hr, hf = bertscore_f1(e12, 2, e12, 1, 2, &hp, &hr);
    CHECK(hp == 0.5 && hr == 1.0, "hand P, R: %f %f", hp, hr);
    CHECK_NEAR(hf, 2.0 / 3.0, 1e-12, "hand F1");
    CHECK(bertscore_f1(NULL, 0, e12, 1, 2, NULL, NULL) == 0, "empty hypothesis: 0");

    // Batched embedding (16 rows a forward, padded) equals one sentence at a time: 18 sentences of
    // 0..20 tokens, across a batch boundary, the longest cut at maxT − 1 = 15.
    enum { NS = 18 };
    int ids[NS][20], n[NS], got_len[NS];
    const int *rows[NS];
    float *batch[NS];
    for (int i = 0; i < NS; i++) {
        n[i] = i == 5 ? 20 : i == 9 ? 0 : 1 + rng_below(&rng, 8);
        for (int t = 0; t < n[i]; t++) ids[i][t] = rng_below(&rng, V);
        rows[i] = ids[i];
    }
    bertscore_embed_batch(model, bos, rows, n, NS, batch, got_len);
    double batch_err = 0;
    int lengths_ok = 1;
    for (int i = 0; i < NS; i++) {
        float *single = bertscore_embed_ids(model, bos, ids[i], n[i]);
        lengths_ok &= got_len[i] == (n[i] < 15 ? n[i] : 15) && (batch[i] == NULL) == (n[i] == 0) && (single == NULL) == (n[i] == 0);
        for (int k = 0; k < got_len[i] * C; k++) batch_err = larger(batch_err, fabs(batch[i][k] - single[k]));
        free(single);
        free(batch[i]);
    }
    CHECK(lengths_ok, "batched lengths: cut at maxT - 1, NULL for no tokens");
    CHECK(batch_err < 1e-5, "batched embedding = one at a time: max difference %g", batch_err);

    // The baseline over 2 references: every random pair is (0, 1) or (1, 0), and F1 is symmetric.
    float *emb[2] = { he, re };
    int len[2] = { 4, 3 };
    double b = bertscore_baseline(emb, len, 2, C, 50, 3);
    CHECK_NEAR(b, f1, 1e-12, "baseline of two references");
    CHECK(bertscore_baseline(emb, len, 2, C, 50, 3) == b, "baseline deterministic for a seed");
    free(he);
    free(he2);
    free(re);
    gpt_free(model);
}

// `./gfn metrics` (built by `make test` before the runner): columns and errors.
static void test_metrics_command(void) {
    FILE *probe = fopen("gfn", "rb");
    if (!probe) { test_skip("gfn metrics", "./gfn not built (make test builds it)"); return; }
    fclose(probe);
    const char *ref_path = test_path("eval_ref.txt"), *hyp_path = test_path("eval_hyp.txt"), *short_path = test_path("eval_short.txt");
    const char *missing_path = test_path("eval_missing.txt");
    char cmd[1024];
    const char *refs[3] = { "He went to the park with his dog", "The cat sat on the mat", "" };
    const char *hyps[3] = { "He went to the store.", "", "a b" };
    FILE *r = fopen(ref_path, "w"), *h = fopen(hyp_path, "w"), *s = fopen(short_path, "w");
    fprintf(r, "%s\r\n%s\n%s\n", refs[0], refs[1], refs[2]);   // a CRLF line too
    fprintf(h, "%s\n%s\n%s", hyps[0], hyps[1], hyps[2]);       // last line without '\n'
    fprintf(s, "one line\n");
    fclose(r); fclose(h); fclose(s);

    snprintf(cmd, sizeof cmd, "./gfn metrics --ref %s --hyp %s", ref_path, hyp_path);
    FILE *out = popen(cmd, "r");
    char line[512];
    int rows = 0, means = 0;
    while (out && fgets(line, sizeof line, out)) {
        if (line[0] == '#') { means += !strncmp(line, "# mean", 6); continue; }
        double b = -1, g = -1;
        char bs[32] = "", gs[32] = "";
        CHECK(sscanf(line, "%31s %31s", bs, gs) == 2, "two fields: %s", line);
        b = strtod(bs, NULL);
        g = strtod(gs, NULL);
        CHECK(strchr(bs, '.') && strlen(strchr(bs, '.')) == 7 && strlen(strchr(gs, '.')) == 7, "6 decimals: %s", line);
        if (rows < 3) {
            CHECK_NEAR(b, bleu4(refs[rows], hyps[rows]), 5e-7, "gfn metrics BLEU-4 column");
            CHECK_NEAR(g, gleu(refs[rows], hyps[rows]), 5e-7, "gfn metrics GLEU column");
        }
        rows++;
    }
    int status = out ? pclose(out) : -1;
    CHECK(status == 0 && rows == 3 && means == 1, "gfn metrics: exit %d, %d rows, %d mean lines", status, rows, means);

    snprintf(cmd, sizeof cmd, "./gfn metrics --ref %s --hyp %s 2>&1", ref_path, short_path);
    out = popen(cmd, "r");
    char all[1024] = "";
    size_t got = out ? fread(all, 1, sizeof all - 1, out) : 0;
    all[got] = 0;
    status = out ? pclose(out) : 0;
    CHECK(status != 0 && strstr(all, short_path), "line count mismatch fails naming the file: %s", all);
    snprintf(cmd, sizeof cmd, "./gfn metrics --ref %s --hyp %s 2>&1", missing_path, hyp_path);
    out = popen(cmd, "r");
    got = out ? fread(all, 1, sizeof all - 1, out) : 0;
    all[got] = 0;
    status = out ? pclose(out) : 0;
    CHECK(status != 0 && strstr(all, missing_path), "missing file fails naming it: %s", all);
    remove(ref_path);
    remove(hyp_path);
    remove(short_path);
}

static void test_markdown(void) {
    Text md = { NULL, 0, 0 };
    static const char *const columns[] = { "method", "valid %", "KL" };
    md_table_header(&md, columns, 3);
    CHECK(md.s && !strcmp(md.s, "| method | valid % | KL |\n|---|---|---|\n") && md.len == strlen(md.s), "header: '%s'", md.s);
    free(md.s);

    // Growth past the first allocation keeps every byte.
    Text t = { NULL, 0, 0 };
    char expect[8000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        text_appendf(&t, "%d,", i);
        n += (size_t)sprintf(expect + n, "%d,", i);
    }
    CHECK(t.len == n && !strcmp(t.s, expect), "text buffer: %zu bytes, want %zu", t.len, n);
    free(t.s);

    double mean, std;
    const double x[4] = { 1, 2, 3, 4 };
    mean_std(x, 4, &mean, &std);   // mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    CHECK(mean == 2.5 && fabs(std - sqrt(5.0 / 3.0)) < 1e-12, "mean %g std %g", mean, std);
    mean_std(x, 1, &mean, &std);
    CHECK(mean == 1 && std == 0, "one value: mean %g std %g", mean, std);
    mean_std(x, 0, &mean, &std);
    CHECK(mean == 0 && std == 0, "no value: mean %g std %g", mean, std);
}

static void test_listing(void) {
    const char *dir = test_path("eval_results");
    char want[3][512];
    snprintf(want[0], sizeof want[0], "%s/a_s1.txt", dir);
    snprintf(want[1], sizeof want[1], "%s/a_s2.txt", dir);
    snprintf(want[2], sizeof want[2], "%s/b_s1.txt", dir);
    static const char *const files[] = { "b_s1.txt", "a_s2.txt", "notes.md", "a_s1.txt", ".txt" };
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        if (!f) { CHECK(0, "cannot write %s", path); return; }
        fputs("x\n", f);
        fclose(f);
    }
    char *paths[8];
    GfnError err = { { 0 } };
    int n = report_list_files(dir, paths, 8, &err);
    CHECK(n == 3 && !strcmp(paths[0], want[0]) && !strcmp(paths[1], want[1]) && !strcmp(paths[2], want[2]), "listing: %d files", n);
    for (int i = 0; i < n; i++) free(paths[i]);
    const char *nowhere = test_path("eval_nowhere");
    CHECK(report_list_files(nowhere, paths, 8, &err) == -1 && strstr(err.msg, nowhere), "missing folder: %s", err.msg);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
}

static void test_plot(void) {
    // 200 x 140 pixels, margins 20 / 80 / 10 / 30: x runs 20..120, y (fractions 1..0) runs 10..110.
    static const char *const labels[2] = { "lo", "hi" };
    const LinePlot plot = { .width = 200, .height = 140, .left = 20, .right = 80, .top = 10, .bottom = 30, .num_x = 2,
                            .x_labels = labels, .x_title = "X", .y_title = "Y" };
    const double mean[2] = { 0.25, 0.9 }, std[2] = { 0, 0.2 };
    const PlotSeries series = { .name = "m", .slot = 1, .mean = mean, .std = std };
    Text svg = { NULL, 0, 0 };
    svg_line_plot(&svg, &plot, &series, 1);
    CHECK(svg.s && strstr(svg.s, "<svg") == svg.s && strstr(svg.s, "</svg>\n") == svg.s + svg.len - 7, "svg frame");
    // 0.25 -> y = 10 + 0.75 * 100 = 85; 0.9 -> 20; the second point's bar ends at 1.0 (y 10), not 1.1.
    CHECK(strstr(svg.s, "points=\"20.0,85.0 120.0,20.0\"") != NULL, "polyline:\n%s", svg.s);
    CHECK(strstr(svg.s, "<line x1=\"120.0\" y1=\"10.0\" x2=\"120.0\" y2=\"40.0\" stroke=\"#1f77b4\"/>") != NULL, "std bar:\n%s", svg.s);
    CHECK(strstr(svg.s, "x1=\"20.0\" y1=\"85.0\" x2=\"20.0\"") == NULL, "a bar drawn for std 0");
    CHECK(strstr(svg.s, ">lo</text>") && strstr(svg.s, ">hi</text>") && strstr(svg.s, "<text x=\"70.0\" y=\"130\" text-anchor=\"middle\">X</text>"),
          "labels:\n%s", svg.s);
    // slot 1: the second colour, the second legend row (y = 10 + 10 + 18)
    CHECK(strstr(svg.s, "<line x1=\"132\" y1=\"38\" x2=\"152\" y2=\"38\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"158\" y=\"42\">m</text>") != NULL,
          "legend:\n%s", svg.s);
    free(svg.s);
}

static void test_report_pieces(void) {
    test_markdown();
    test_listing();
    test_plot();
}

void test_eval(void) {
    test_task_vectors();
    test_nltk_fixture();
    test_bleu_gleu_by_hand();
    test_chrf();
    test_diversity();
    test_bertscore();
    test_metrics_command();
    test_report_pieces();
}
