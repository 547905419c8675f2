// eval.c — evaluation that several tasks share: text metrics (BLEU-4, GLEU, chrF, distinct-n,
// self-BLEU, TF-IDF cosine diversity, a BERTScore stand-in on the base model's hidden states),
// and the pieces of every report (Markdown tables, SVG plots). Every metric is a pure function of
// its texts (and, for the BERTScore stand-in, of a fixed encoder), written once so that every
// task and `gfn metrics` score the same way. Depends on util.c and model.c (the encoder).
#include "gfn.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// --- Text metrics
//
// Texts are UTF-8. "Whitespace" is what Python's str.split() splits on (ASCII whitespace,
// \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), so
// that tokens are those of `text.split()` in the nltk / sacrebleu reference implementations.
// Units (word tokens or characters) become integer ids so that n-grams are int sequences; all
// n-gram counting sorts n-grams so that equal ones are adjacent (O(n log n), no hashing, exact).

// One UTF-8 code point from s[*i..len), advancing *i; an invalid byte is one unit of its own
// (0x110000 + byte) so that any byte string can be scored.
static uint32_t utf8_next(const unsigned char *s, size_t len, size_t *i) {
    unsigned char b = s[*i];
    int extra = b < 0x80 ? 0 : (b & 0xE0) == 0xC0 ? 1 : (b & 0xF0) == 0xE0 ? 2 : (b & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0 || (extra > 0 && *i + (size_t)extra >= len)) { (*i)++; return 0x110000u + b; }
    uint32_t cp = extra == 0 ? b : extra == 1 ? (b & 0x1Fu) : extra == 2 ? (b & 0x0Fu) : (b & 0x07u);
    for (int k = 1; k <= extra; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) { (*i)++; return 0x110000u + b; }
        cp = (cp << 6) | (s[*i + k] & 0x3Fu);
    }
    *i += (size_t)extra + 1;
    return cp;
}

static int is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// A stable bottom-up merge sort of the indices idx[0..n) by cmp(ctx, a, b); tmp holds n ints.
typedef int (*IndexCompare)(const void *ctx, int a, int b);
static void merge_sort(int *idx, int *tmp, int n, IndexCompare cmp, const void *ctx) {
    int *src = idx, *dst = tmp;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int a = lo, b = mid, o = lo;
            while (a < mid && b < hi) dst[o++] = cmp(ctx, src[b], src[a]) < 0 ? src[b++] : src[a++];
            while (a < mid) dst[o++] = src[a++];
            while (b < hi) dst[o++] = src[b++];
        }
        int *swap = src; src = dst; dst = swap;
    }
    if (src != idx) memcpy(idx, src, (size_t)n * sizeof(int));
}

// An array of n elements of `size` bytes (n may be 0).
static void *array_new(size_t n, size_t size) { return gfn_malloc((n > 0 ? n : 1) * size); }

// ---- Words

typedef struct { const char *s; int len; } Span;   // one word: bytes s[0..len)

static int span_compare(const void *ctx, int a, int b) {
    const Span *w = ctx;
    int n = w[a].len < w[b].len ? w[a].len : w[b].len, c = memcmp(w[a].s, w[b].s, (size_t)n);
    return c ? c : (w[a].len > w[b].len) - (w[a].len < w[b].len);
}

// How a text is cut into words: at whitespace (BLEU, GLEU, distinct-n, self-BLEU: tokens as
// nltk gets them from str.split()), or into maximal runs of ASCII letters and digits and non-ASCII
// bytes (TF-IDF: "store." and "store" are the same word there).
typedef enum { WORDS_WHITESPACE, WORDS_ALNUM } WordSplit;

// The words of text into out (may be NULL: count only); returns how many.
static int split_words(const char *text, WordSplit how, Span *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), i = 0;
    int count = 0;
    while (i < len) {
        size_t start = i, end;
        if (how == WORDS_WHITESPACE) {
            uint32_t cp = utf8_next(s, len, &i);
            if (is_space(cp)) continue;
            end = i;
            for (size_t j = i; j < len;) {
                if (is_space(utf8_next(s, len, &j))) break;
                end = j;
            }
        } else {
            unsigned char c = s[i++];
            if (!(c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) continue;
            end = i;
            while (end < len && (s[end] >= 0x80 || (s[end] >= '0' && s[end] <= '9') ||
                                 ((s[end] | 0x20) >= 'a' && (s[end] | 0x20) <= 'z'))) end++;
        }
        if (out) { out[count].s = text + start; out[count].len = (int)(end - start); }
        count++;
        i = end;
    }
    return count;
}

// The words of `count` texts as ids shared by all of them (equal words, equal ids): units holds
// every text's ids one after the other, text k's at units + start[k], len[k] of them. Ids follow
// the sorted order of the words (memcmp); vocab holds one Span per id, pointing into the texts.
typedef struct {
    int *units;      // (total words)
    int *start;      // (count)
    int *len;        // (count)
    Span *vocab;     // (ids) one spelling per id
    int num_ids;
} WordIds;

static void word_ids(const char *const *texts, int count, WordSplit how, WordIds *out) {
    out->start = array_new((size_t)count, sizeof(int));
    out->len = array_new((size_t)count, sizeof(int));
    int total = 0;
    for (int k = 0; k < count; k++) {
        out->start[k] = total;
        out->len[k] = split_words(texts[k], how, NULL);
        total += out->len[k];
    }
    Span *words = array_new((size_t)total, sizeof(Span));
    for (int k = 0; k < count; k++) split_words(texts[k], how, words + out->start[k]);
    int *order = array_new((size_t)total, sizeof(int));
    int *tmp = array_new((size_t)total, sizeof(int));
    for (int i = 0; i < total; i++) order[i] = i;
    merge_sort(order, tmp, total, span_compare, words);
    out->units = array_new((size_t)total, sizeof(int));
    out->vocab = array_new((size_t)total, sizeof(Span));
    int ids = 0;
    for (int i = 0; i < total; i++) {
        if (i == 0 || span_compare(words, order[i - 1], order[i]) != 0) out->vocab[ids++] = words[order[i]];
        out->units[order[i]] = ids - 1;
    }
    out->num_ids = ids;
    free(words);
    free(order);
    free(tmp);
}

static void word_ids_free(WordIds *w) {
    free(w->units);
    free(w->start);
    free(w->len);
    free(w->vocab);
}

// Copies of texts with ASCII letters lower-cased (TF-IDF's words).
static char **lowercase_copies(const char *const *texts, int count) {
    char **copies = array_new((size_t)count, sizeof(char *));
    for (int k = 0; k < count; k++) {
        size_t n = strlen(texts[k]);
        copies[k] = gfn_malloc(n + 1);
        for (size_t i = 0; i <= n; i++) {
            char c = texts[k][i];
            copies[k][i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
    }
    return copies;
}

static void free_copies(char **copies, int count) {
    for (int k = 0; k < count; k++) free(copies[k]);
    free(copies);
}

// ---- n-gram counts over int sequences

typedef struct { const int *units; int n; } NgramKey;   // n-gram at position p: units[p..p+n)

static int ngram_compare(const void *ctx, int a, int b) {
    const NgramKey *key = ctx;
    for (int k = 0; k < key->n; k++)
        if (key->units[a + k] != key->units[b + k]) return key->units[a + k] < key->units[b + k] ? -1 : 1;
    return 0;
}

// The n-grams of the sequences units[start[k] .. start[k]+len[k]), k < count, sorted so that equal
// n-grams are adjacent: positions into `units`, returned (free()), their number in *total.
static int *sorted_ngrams(const int *units, const int *start, const int *len, int count, int n, int *total) {
    int m = 0;
    for (int k = 0; k < count; k++) m += len[k] >= n ? len[k] - n + 1 : 0;
    int *pos = array_new((size_t)m, sizeof(int)), *tmp = array_new((size_t)m, sizeof(int));
    m = 0;
    for (int k = 0; k < count; k++)
        for (int i = 0; i + n <= len[k]; i++) pos[m++] = start[k] + i;
    NgramKey key = { units, n };
    merge_sort(pos, tmp, m, ngram_compare, &key);
    free(tmp);
    *total = m;
    return pos;
}

// Order-n counts of a hypothesis h (hn units) against a reference r (rn units): the clipped
// matches Σ_g min(count_h(g), count_r(g)) (the size of the multisets' intersection), and the
// n-gram totals of each.
typedef struct { long matches, hyp_total, ref_total; } NgramCounts;

static NgramCounts ngram_counts(const int *h, int hn, const int *r, int rn, int n) {
    int *units = array_new((size_t)(hn + rn), sizeof(int));
    if (hn) memcpy(units, h, (size_t)hn * sizeof(int));
    if (rn) memcpy(units + hn, r, (size_t)rn * sizeof(int));
    int start[2] = { 0, hn }, len[2] = { hn, rn }, total;
    int *pos = sorted_ngrams(units, start, len, 2, n, &total);
    NgramKey key = { units, n };
    NgramCounts c = { 0, 0, 0 };
    for (int i = 0; i < total;) {
        long in_h = 0, in_r = 0;
        int j = i;
        for (; j < total && ngram_compare(&key, pos[i], pos[j]) == 0; j++) *(pos[j] < hn ? &in_h : &in_r) += 1;
        c.matches += in_h < in_r ? in_h : in_r;
        c.hyp_total += in_h;
        c.ref_total += in_r;
        i = j;
    }
    free(pos);
    free(units);
    return c;
}

// ---- BLEU-4 and GLEU

// BLEU-4 of nltk 3.8's sentence_bleu(SmoothingFunction().method1), one reference:
// p_n = clipped matches / max(1, hypothesis n-grams); no unigram match → 0; a p_n with no match
// becomes 0.1 / its (unreduced) denominator; BP = 1 if c > r, else exp(1 − r/c) (0 when c = 0);
// BLEU = BP · exp(Σ_n ¼ ln p_n).
static double bleu4_units(const int *ref, int rn, const int *hyp, int hn) {
    double log_precision = 0;
    for (int n = 1; n <= 4; n++) {
        NgramCounts c = ngram_counts(hyp, hn, ref, rn, n);
        double denominator = c.hyp_total > 0 ? (double)c.hyp_total : 1.0;
        if (c.matches == 0 && n == 1) return 0;
        log_precision += 0.25 * log(c.matches > 0 ? (double)c.matches / denominator : 0.1 / denominator);
    }
    double brevity = hn > rn ? 1.0 : exp(1.0 - (double)rn / hn);   // hn > 0: it had a unigram match
    return brevity * exp(log_precision);
}

double bleu4(const char *reference, const char *hypothesis) {
    const char *texts[2] = { reference, hypothesis };
    WordIds w;
    word_ids(texts, 2, WORDS_WHITESPACE, &w);
    double score = bleu4_units(w.units + w.start[0], w.len[0], w.units + w.start[1], w.len[1]);
    word_ids_free(&w);
    return score;
}

// GLEU (Wu et al. 2016) of nltk's sentence_gleu, n = 1..4: over the multisets of all 1- to
// 4-grams, tp = the size of their intersection; GLEU = tp / max(hyp n-grams, ref n-grams), 0 when
// both texts are empty. (n-grams of different orders never match, so orders add up.)
double gleu(const char *reference, const char *hypothesis) {
    const char *texts[2] = { reference, hypothesis };
    WordIds w;
    word_ids(texts, 2, WORDS_WHITESPACE, &w);
    long tp = 0, hyp_total = 0, ref_total = 0;
    for (int n = 1; n <= 4; n++) {
        NgramCounts c = ngram_counts(w.units + w.start[1], w.len[1], w.units + w.start[0], w.len[0], n);
        tp += c.matches;
        hyp_total += c.hyp_total;
        ref_total += c.ref_total;
    }
    word_ids_free(&w);
    long all = hyp_total > ref_total ? hyp_total : ref_total;
    return all > 0 ? (double)tp / (double)all : 0.0;
}

// ---- chrF

// The code points of text without whitespace into a fresh array; count in *n.
static int *chars_without_space(const char *text, int *n) {
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), i = 0;
    int *out = array_new(len, sizeof(int)), count = 0;
    while (i < len) {
        uint32_t cp = utf8_next(s, len, &i);
        if (!is_space(cp)) out[count++] = (int)cp;
    }
    *n = count;
    return out;
}

// chrF as sacrebleu 2.x computes it by default (CHRF(): char_order 6, word_order 0, beta 2,
// whitespace removed, eps_smoothing False), on its 0..1 scale (sacrebleu prints 100×): for each
// order n = 1..6 with n-grams in BOTH texts ("effective orders"), precision P_n = matches / hyp
// n-grams and recall R_n = matches / ref n-grams; P and R are their means over the effective
// orders (0 when there is none); chrF = (1 + β²) P R / (β² P + R), 0 when P + R = 0. Characters
// are Unicode code points; whitespace as str.split() sees it.
double chrf(const char *reference, const char *hypothesis) {
    const double beta2 = 4.0;   // β = 2
    int rn, hn;
    int *r = chars_without_space(reference, &rn), *h = chars_without_space(hypothesis, &hn);
    double precision = 0, recall = 0;
    int effective = 0;
    for (int n = 1; n <= 6; n++) {
        NgramCounts c = ngram_counts(h, hn, r, rn, n);
        if (c.hyp_total == 0 || c.ref_total == 0) continue;
        precision += (double)c.matches / (double)c.hyp_total;
        recall += (double)c.matches / (double)c.ref_total;
        effective++;
    }
    free(r);
    free(h);
    if (effective == 0) return 0;
    precision /= effective;
    recall /= effective;
    if (precision + recall == 0) return 0;
    return (1 + beta2) * precision * recall / (beta2 * precision + recall);
}

// ---- Diversity of a set of samples

// distinct-n: the number of distinct n-grams / the number of n-grams, over all the samples'
// whitespace tokens together (case kept, as BLEU); 0 when there is no n-gram.
double distinct_n(const char *const *texts, int count, int n) {
    WordIds w;
    word_ids(texts, count, WORDS_WHITESPACE, &w);
    int total;
    int *pos = sorted_ngrams(w.units, w.start, w.len, count, n, &total);
    NgramKey key = { w.units, n };
    int distinct = 0;
    for (int i = 0; i < total; i++) distinct += i == 0 || ngram_compare(&key, pos[i - 1], pos[i]) != 0;
    free(pos);
    word_ids_free(&w);
    return total > 0 ? (double)distinct / total : 0.0;
}

// self-BLEU-4: the mean BLEU-4 (as bleu4) of each sample as hypothesis against each OTHER sample
// as its single reference, over all count·(count−1) ordered pairs; 0 for fewer than 2 samples.
// (Higher = less diverse.)
double self_bleu4(const char *const *texts, int count) {
    if (count < 2) return 0;
    WordIds w;
    word_ids(texts, count, WORDS_WHITESPACE, &w);
    double sum = 0;
    for (int i = 0; i < count; i++)
        for (int j = 0; j < count; j++)
            if (i != j) sum += bleu4_units(w.units + w.start[j], w.len[j], w.units + w.start[i], w.len[i]);
    word_ids_free(&w);
    return sum / ((double)count * (count - 1));
}

// TF-IDF: the document frequency of every lower-cased word (WORDS_ALNUM) of a fixed corpus. The
// tasks use their TRAINING prompts as the corpus (continuation: the 950 training OpenWebText
// prompts; infill: the training stories), so that the IDF does not depend on the model under test.
// Weight of word w in a text: tf · idf, tf = its count in the text, idf = ln((1 + N) / (1 + df(w)))
// + 1 (scikit-learn's smoothed idf; a word absent from the corpus has df = 0).
struct TfIdf {
    int num_docs;        // N
    int num_words;
    char *bytes;         // every word's bytes, sorted words one after the other
    int *offset;         // (num_words + 1) word k is bytes[offset[k] .. offset[k+1])
    int *df;             // (num_words)
};

TfIdf *tfidf_new(const char *const *corpus, int count) {
    char **lower = lowercase_copies(corpus, count);
    WordIds w;
    word_ids((const char *const *)lower, count, WORDS_ALNUM, &w);
    TfIdf *t = gfn_calloc(1, sizeof(TfIdf));
    t->num_docs = count;
    t->num_words = w.num_ids;
    t->offset = gfn_malloc((size_t)(w.num_ids + 1) * sizeof(int));
    t->df = gfn_calloc((size_t)w.num_ids + 1, sizeof(int));
    size_t bytes = 0;
    for (int k = 0; k < w.num_ids; k++) bytes += (size_t)w.vocab[k].len;
    t->bytes = array_new(bytes, 1);
    t->offset[0] = 0;
    for (int k = 0; k < w.num_ids; k++) {   // ids are in sorted word order
        memcpy(t->bytes + t->offset[k], w.vocab[k].s, (size_t)w.vocab[k].len);
        t->offset[k + 1] = t->offset[k] + w.vocab[k].len;
    }
    int *last_doc = array_new((size_t)w.num_ids, sizeof(int));   // (num_words) last document counted
    for (int k = 0; k < w.num_ids; k++) last_doc[k] = -1;
    for (int d = 0; d < count; d++)
        for (int i = 0; i < w.len[d]; i++) {
            int id = w.units[w.start[d] + i];
            if (last_doc[id] != d) { last_doc[id] = d; t->df[id]++; }
        }
    free(last_doc);
    word_ids_free(&w);
    free_copies(lower, count);
    return t;
}

void tfidf_free(TfIdf *t) {
    if (!t) return;
    free(t->bytes);
    free(t->offset);
    free(t->df);
    free(t);
}

double tfidf_idf(const TfIdf *t, const char *word, int len) {
    int lo = 0, hi = t->num_words;   // binary search over the sorted words
    while (lo < hi) {
        int mid = (lo + hi) / 2, mlen = t->offset[mid + 1] - t->offset[mid];
        int c = memcmp(t->bytes + t->offset[mid], word, (size_t)(mlen < len ? mlen : len));
        if (!c) c = (mlen > len) - (mlen < len);
        if (!c) return log((1.0 + t->num_docs) / (1.0 + t->df[mid])) + 1.0;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return log(1.0 + t->num_docs) + 1.0;
}

// TF-IDF vectors of the texts over the words they use: (count, num_ids), fresh; ids in *num_ids.
static double *tfidf_vectors(const TfIdf *t, const char *const *texts, int count, int *num_ids) {
    char **lower = lowercase_copies(texts, count);
    WordIds w;
    word_ids((const char *const *)lower, count, WORDS_ALNUM, &w);
    int V = w.num_ids;
    double *vec = gfn_calloc((size_t)count * V + 1, sizeof(double));   // (count, V)
    for (int k = 0; k < count; k++)
        for (int i = 0; i < w.len[k]; i++) vec[(size_t)k * V + w.units[w.start[k] + i]] += 1.0;
    for (int id = 0; id < V; id++) {
        double idf = tfidf_idf(t, w.vocab[id].s, w.vocab[id].len);
        for (int k = 0; k < count; k++) vec[(size_t)k * V + id] *= idf;
    }
    word_ids_free(&w);
    free_copies(lower, count);
    *num_ids = V;
    return vec;
}

static double cosine(const double *a, const double *b, int n) {
    double dot = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) { dot += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
    return aa > 0 && bb > 0 ? dot / sqrt(aa * bb) : 0.0;   // a text without words: cosine 0
}

double tfidf_cosine(const TfIdf *t, const char *a, const char *b) {
    const char *texts[2] = { a, b };
    int V;
    double *vec = tfidf_vectors(t, texts, 2, &V);
    double c = cosine(vec, vec + V, V);
    free(vec);
    return c;
}

// 1 − the mean cosine over the count·(count−1)/2 unordered pairs; 0 for fewer than 2 samples.
double tfidf_diversity(const TfIdf *t, const char *const *texts, int count) {
    if (count < 2) return 0;
    int V;
    double *vec = tfidf_vectors(t, texts, count, &V), sum = 0;
    for (int i = 0; i < count; i++)
        for (int j = i + 1; j < count; j++) sum += cosine(vec + (size_t)i * V, vec + (size_t)j * V, V);
    free(vec);
    return 1.0 - sum / (count * (count - 1) / 2.0);
}

// ---- The BERTScore stand-in
//
// BERTScore (Zhang et al. 2020) without idf weighting, with the shipped base model as the fixed
// encoder: a sentence's token vectors are the model's last hidden layer (after ln_f) at its
// tokens, the sentence fed after the end-of-text token (the context every pretraining document
// starts from; that position's own state is not a token of the sentence and is dropped). With
// unit-length vectors, precision P = mean over hypothesis tokens of the max cosine to any
// reference token, recall R = mean over reference tokens of the max cosine to any hypothesis
// token (greedy: many-to-one matches allowed), F1 = 2PR / (P + R).

// The rows hidden[0..n) scaled to unit length: a fresh (n, C) array.
static float *unit_rows(const float *hidden, int n, int C) {
    float *out = gfn_malloc((size_t)n * C * sizeof(float));
    for (int t = 0; t < n; t++) {
        const float *h = hidden + (size_t)t * C;
        double norm = 0;
        for (int i = 0; i < C; i++) norm += (double)h[i] * h[i];
        float scale = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
        for (int i = 0; i < C; i++) out[(size_t)t * C + i] = h[i] * scale;
    }
    return out;
}

float *bertscore_embed_ids(GPT *encoder, int bos, const int *ids, int n) {
    GPTConfig c = gpt_config(encoder);
    if (n <= 0) return NULL;
    if (n > c.max_seq_len - 1) n = c.max_seq_len - 1;   // longer sentences are cut at the context
    int *inputs = gfn_malloc((size_t)(n + 1) * sizeof(int));   // (n + 1) bos, then the tokens
    inputs[0] = bos;
    memcpy(inputs + 1, ids, (size_t)n * sizeof(int));
    gpt_forward(encoder, inputs, 1, n + 1);
    float *out = unit_rows(gpt_hidden(encoder) + c.n_embd, n, c.n_embd);   // position 0 (bos) dropped
    free(inputs);
    return out;
}

// Many sentences in forwards of up to 16 rows, each row bos + its tokens, padded with bos to the
// longest: the model is causal, so the padding after a sentence leaves its states unchanged (up
// to the summation order of a larger matmul) and one forward serves 16 sentences.
void bertscore_embed_batch(GPT *encoder, int bos, const int *const *ids, const int *n, int count, float **emb, int *len) {
    enum { ROWS = 16 };
    GPTConfig c = gpt_config(encoder);
    int C = c.n_embd, max_n = c.max_seq_len - 1;
    for (int first = 0; first < count; first += ROWS) {
        int B = count - first < ROWS ? count - first : ROWS, T = 1;
        for (int b = 0; b < B; b++) {
            len[first + b] = n[first + b] < max_n ? (n[first + b] > 0 ? n[first + b] : 0) : max_n;
            if (len[first + b] + 1 > T) T = len[first + b] + 1;
        }
        int *inputs = gfn_malloc((size_t)B * T * sizeof(int));   // (B, T) bos, tokens, bos padding
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) inputs[b * T + t] = t >= 1 && t <= len[first + b] ? ids[first + b][t - 1] : bos;
        gpt_forward(encoder, inputs, B, T);
        const float *hidden = gpt_hidden(encoder);               // (B, T, C)
        for (int b = 0; b < B; b++)
            emb[first + b] = len[first + b] > 0 ? unit_rows(hidden + ((size_t)b * T + 1) * C, len[first + b], C) : NULL;
        free(inputs);
    }
}

void bertscore_embed_texts(GPT *encoder, const Tokenizer *tok, const char *const *texts, int count, float **emb, int *len) {
    int **ids = array_new((size_t)count, sizeof(int *));
    int *n = array_new((size_t)count, sizeof(int));
    for (int i = 0; i < count; i++) {
        size_t num = 0;
        ids[i] = tokenizer_encode(tok, texts[i], strlen(texts[i]), 0, &num);
        n[i] = (int)num;
    }
    bertscore_embed_batch(encoder, tokenizer_eot_id(tok), (const int *const *)ids, n, count, emb, len);
    for (int i = 0; i < count; i++) free(ids[i]);
    free(ids);
    free(n);
}

double bertscore_f1(const float *hyp, int hn, const float *ref, int rn, int C, double *precision, double *recall) {
    double p = 0, r = 0;
    if (hn > 0 && rn > 0) {
        double *best_for_ref = gfn_malloc((size_t)rn * sizeof(double));   // (rn) max cosine to hyp
        for (int j = 0; j < rn; j++) best_for_ref[j] = -INFINITY;
        for (int i = 0; i < hn; i++) {
            double best = -INFINITY;
            for (int j = 0; j < rn; j++) {
                double dot = 0;
                for (int k = 0; k < C; k++) dot += (double)hyp[(size_t)i * C + k] * ref[(size_t)j * C + k];
                if (dot > best) best = dot;
                if (dot > best_for_ref[j]) best_for_ref[j] = dot;
            }
            p += best;
        }
        for (int j = 0; j < rn; j++) r += best_for_ref[j];
        free(best_for_ref);
        p /= hn;
        r /= rn;
    }
    if (precision) *precision = p;
    if (recall) *recall = r;
    return p + r > 0 ? 2 * p * r / (p + r) : 0.0;   // an empty side: 0 (as bert_score)
}

// The random-pair baseline b: the mean F1 of `pairs` pairs (reference i, another reference j ≠ i)
// with i and j drawn uniformly from the RNG seeded with `seed` — unrelated sentences of the same
// kind, as BERTScore's baselines use random pairs of its corpus. Rescaled score: (F − b) / (1 − b),
// so that identical sentences stay at 1 and an unrelated pair is 0 on average. 0 for count < 2.
double bertscore_baseline(float *const *emb, const int *len, int count, int C, int pairs, uint64_t seed) {
    if (count < 2 || pairs < 1) return 0;
    Rng rng;
    rng_seed(&rng, seed);
    double sum = 0;
    for (int k = 0; k < pairs; k++) {
        int i = rng_below(&rng, count), j = rng_below(&rng, count - 1);
        j += j >= i;
        sum += bertscore_f1(emb[j], len[j], emb[i], len[i], C, NULL, NULL);
    }
    return sum / pairs;
}

double bertscore_rescale(double f1, double baseline) { return (f1 - baseline) / (1.0 - baseline); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bootstrap_ci(const double *x, int n, int resamples, uint64_t seed, double *lo, double *hi) {
    if (n < 1 || resamples < 1) { *lo = *hi = n > 0 ? x[0] : 0; return; }
    double *means = gfn_malloc(sizeof(double) * (size_t)resamples);   // (resamples)
    Rng rng;
    rng_seed(&rng, seed);
    for (int r = 0; r < resamples; r++) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += x[rng_below(&rng, n)];
        means[r] = sum / n;
    }
    qsort(means, (size_t)resamples, sizeof(double), cmp_double);
    int i_lo = (int)floor(0.025 * resamples), i_hi = (int)ceil(0.975 * resamples) - 1;
    *lo = means[i_lo];
    *hi = means[i_hi < 0 ? 0 : i_hi];
    free(means);
}

// ----------------------------------------------------------------------------------------------
// --- Markdown tables and SVG plots
//
// A task's report (`gfn report TASK DIR OUT`) reads a folder of result files, one run each, and
// writes OUT.md (tables of mean ± std over seeds) and OUT.svg (a line plot). The pieces that do
// not depend on the task live here: the folder listing, the statistics, the text buffer, the
// Markdown table header and the plot.

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int report_list_files(const char *dir, char **paths, int max, GfnError *err) {
    DIR *d = opendir(dir);
    if (!d) { gfn_error_set(err, "%s: cannot open the results folder", dir); return -1; }
    int count = 0;
    struct dirent *e;
    for (errno = 0; count < max && (e = readdir(d)); errno = 0) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".txt")) {
            paths[count] = gfn_malloc(strlen(dir) + l + 2);
            sprintf(paths[count++], "%s/%s", dir, e->d_name);
        }
    }
    if (errno) {   // readdir's NULL is also how it fails: not an empty folder
        gfn_error_set(err, "%s: cannot read the results folder: %s", dir, strerror(errno));
        closedir(d);
        for (int i = 0; i < count; i++) free(paths[i]);
        return -1;
    }
    closedir(d);
    qsort(paths, (size_t)count, sizeof(char *), cmp_str);   // readdir's order is the file system's
    return count;
}

void mean_std(const double *x, int n, double *mean, double *std) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = n ? s / n : 0;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *std = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

void md_table_header(Text *md, const char *const *columns, int num_columns) {
    text_appendf(md, "|");
    for (int c = 0; c < num_columns; c++) text_appendf(md, " %s |", columns[c]);
    text_appendf(md, "\n|");
    for (int c = 0; c < num_columns; c++) text_appendf(md, "---|");
    text_appendf(md, "\n");
}

void svg_line_plot(Text *svg, const LinePlot *p, const PlotSeries *series, int num_series) {
    static const char *const colors[] = { "#777777", "#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#e377c2" };
    const int W = p->width, H = p->height, left = p->left, right = p->right, top = p->top, bottom = p->bottom;
    text_appendf(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    text_appendf(svg, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    #define PX(s) (left + (s) * (W - left - right) / (double)(p->num_x - 1))
    #define PY(a) (top + (1.0 - (a)) * (H - top - bottom))
    for (int g = 0; g <= 100; g += 20) {
        text_appendf(svg, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", left, PY(g / 100.0), W - right, PY(g / 100.0));
        text_appendf(svg, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", left - 6, PY(g / 100.0) + 4, g);
    }
    for (int s = 0; s < p->num_x; s++)
        text_appendf(svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", PX(s), H - bottom + 18, p->x_labels[s]);
    text_appendf(svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", left + (W - left - right) / 2.0, H - 10, p->x_title);
    text_appendf(svg, "<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 %.1f)\" text-anchor=\"middle\">%s</text>\n", PY(0.5), PY(0.5), p->y_title);
    for (int i = 0; i < num_series; i++) {
        const PlotSeries *ps = &series[i];
        const char *c = colors[ps->slot % 8];
        const double *mean = ps->mean, *std = ps->std;
        text_appendf(svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        for (int s = 0; s < p->num_x; s++) text_appendf(svg, "%s%.1f,%.1f", s ? " " : "", PX(s), PY(mean[s]));
        text_appendf(svg, "\"/>\n");
        for (int s = 0; s < p->num_x; s++) {
            text_appendf(svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s), PY(mean[s]), c);
            if (std[s] > 0)
                text_appendf(svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
                            PX(s), PY(fmin(1, mean[s] + std[s])), PX(s), PY(fmax(0, mean[s] - std[s])), c);
        }
        text_appendf(svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
                         "<text x=\"%d\" y=\"%d\">%s</text>\n",
                    W - right + 12, top + 10 + 18 * ps->slot, W - right + 32, top + 10 + 18 * ps->slot, c, W - right + 38, top + 14 + 18 * ps->slot, ps->name);
    }
    #undef PX
    #undef PY
    text_appendf(svg, "</svg>\n");
}

// A scatter plot: each point a dot with ± std bars in x and y and a legend entry (its slot's
// colour, legend row i); axes span the points (and their bars) with 5 % margins, 5 ticks each.
void svg_scatter_plot(Text *svg, const ScatterPlot *p, const ScatterPoint *pts, int n) {
    static const char *const colors[] = { "#777777", "#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#e377c2" };
    const int W = p->width, H = p->height, left = p->left, right = p->right, top = p->top, bottom = p->bottom;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        x0 = fmin(x0, pts[i].x - pts[i].x_std); x1 = fmax(x1, pts[i].x + pts[i].x_std);
        y0 = fmin(y0, pts[i].y - pts[i].y_std); y1 = fmax(y1, pts[i].y + pts[i].y_std);
    }
    if (n == 0) { x0 = y0 = 0; x1 = y1 = 1; }
    if (x1 - x0 < 1e-9) { x0 -= 0.5; x1 += 0.5; }
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    double xm = 0.05 * (x1 - x0), ym = 0.05 * (y1 - y0);
    x0 -= xm; x1 += xm; y0 -= ym; y1 += ym;
    text_appendf(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    text_appendf(svg, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    #define PX(v) (left + ((v) - x0) / (x1 - x0) * (W - left - right))
    #define PY(v) (top + (y1 - (v)) / (y1 - y0) * (H - top - bottom))
    for (int g = 0; g <= 4; g++) {
        double xv = x0 + (x1 - x0) * g / 4, yv = y0 + (y1 - y0) * g / 4;
        text_appendf(svg, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", left, PY(yv), W - right, PY(yv));
        text_appendf(svg, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", left - 6, PY(yv) + 4, yv);
        text_appendf(svg, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#dddddd\"/>\n", PX(xv), top, PX(xv), H - bottom);
        text_appendf(svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n", PX(xv), H - bottom + 18, xv);
    }
    text_appendf(svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", left + (W - left - right) / 2.0, H - 10, p->x_title);
    text_appendf(svg, "<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 %.1f)\" text-anchor=\"middle\">%s</text>\n",
                 top + (H - top - bottom) / 2.0, top + (H - top - bottom) / 2.0, p->y_title);
    for (int i = 0; i < n; i++) {
        const ScatterPoint *q = &pts[i];
        const char *c = colors[q->slot % 8];
        if (q->x_std > 0)
            text_appendf(svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", PX(q->x - q->x_std), PY(q->y), PX(q->x + q->x_std), PY(q->y), c);
        if (q->y_std > 0)
            text_appendf(svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", PX(q->x), PY(q->y - q->y_std), PX(q->x), PY(q->y + q->y_std), c);
        text_appendf(svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", PX(q->x), PY(q->y), c);
        text_appendf(svg, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                     W - right + 18, top + 10 + 16 * i, c, W - right + 28, top + 14 + 16 * i, q->name);
    }
    #undef PX
    #undef PY
    text_appendf(svg, "</svg>\n");
}
