// pretrain.c — the base model's training (`gfn pretrain`): the token cache, the validation split
// and training windows, the validation loss, the training-state file, samples and the loop; then
// the corpus recipe (`gfn corpus`). Depends on util.c, model.c, tokenizer.c, gfn.c (sample_token
// for the samples) and, for arithmetic text, the formatter tasks/arithmetic.c exports for it
// (arith_text). Read top to bottom.
#include "gfn.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif


// ==============================================================================================
// Pretraining (`gfn pretrain`): a small GPT-2 trained from scratch on a text corpus with AdamW,
// warm-up + cosine learning rate and global-norm clipping. The pieces, in the order they run:
// the token cache, the validation split and the training windows, the validation loss, the
// training-state file (resume to the same bits), the samples, and the loop that ties them.

typedef struct { int *data; size_t len, cap; } IntVec;
static void intvec_push(IntVec *v, int x) {
    if (v->len == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        int *grown = realloc(v->data, v->cap * sizeof *grown);
        if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        v->data = grown;
    }
    v->data[v->len++] = x;
}

// The tokenizer, as this section uses it: encode appends ids ("<|endoftext|>" stays plain text:
// documents are split before encoding).
static int tok_encode_append(const Tokenizer *tok, const char *text, size_t len, IntVec *out) {
    size_t n;
    int *ids = tokenizer_encode(tok, text, len, 0, &n);
    if (!ids) return 1;
    for (size_t i = 0; i < n; i++) intvec_push(out, ids[i]);
    free(ids);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// The token cache. Tokenizing a large corpus takes a while, so the stream is kept in a file and
// reused while the tokenizer and the inputs are byte-identical to those it was made from.
// File layout (little-endian):
//   "GFNTOK01"                         8 bytes
//   u32 version = 1, u32 vocab_size    (at most 65536: ids are stored in 16 bits)
//   u64 FNV-1a 64 of the tokenizer file (of a GPT-2 directory: its vocabulary files in turn)
//   u32 number of input files F, then F × { u64 size in bytes, u64 FNV-1a 64 of the bytes }
//   u64 number of tokens N, then N × u16 token ids
//   u64 FNV-1a 64 of everything before it
// Any mismatch or damage means "rebuild", never an error: the cache is derived data.

#define DOC_SEPARATOR "<|endoftext|>"

// The header that a cache made from these inputs must start with (up to and excluding N).
static unsigned char *token_cache_header(int vocab_size, uint64_t tokenizer_hash, const size_t *sizes,
                                         const uint64_t *hashes, int num_inputs, size_t *header_len) {
    size_t len = 8 + 4 + 4 + 8 + 4 + 16 * (size_t)num_inputs;
    unsigned char *h = gfn_malloc(len), *p = h;
    memcpy(p, "GFNTOK01", 8); p += 8;
    put_le_u32(p, 1); p += 4;
    put_le_u32(p, (uint32_t)vocab_size); p += 4;
    put_le_u64(p, tokenizer_hash); p += 8;
    put_le_u32(p, (uint32_t)num_inputs); p += 4;
    for (int i = 0; i < num_inputs; i++) {
        put_le_u64(p, (uint64_t)sizes[i]); p += 8;
        put_le_u64(p, hashes[i]); p += 8;
    }
    *header_len = len;
    return h;
}

// The cached ids when the file at path matches `header`; NULL (with the reason in *why) when it
// is absent, stale or damaged.
static int *token_cache_read(const char *path, const unsigned char *header, size_t header_len,
                             int vocab_size, size_t *num_tokens, const char **why) {
    GfnError err;
    size_t len;
    unsigned char *file = read_file(path, &len, &err);
    if (!file) { *why = "no cache yet"; return NULL; }
    int *tokens = NULL;
    *why = NULL;
    if (len < header_len + 16 || memcmp(file, header, header_len) != 0) *why = "the tokenizer or an input changed";
    else {
        uint64_t n = le_u64(file + header_len);
        if (n > (len - header_len - 16) / 2 || header_len + 8 + 2 * n + 8 != len) *why = "its size does not match its header";
        else if (fnv1a64(file, len - 8, FNV_OFFSET) != le_u64(file + len - 8)) *why = "its checksum does not match";
        else {
            tokens = gfn_malloc((size_t)n * sizeof *tokens);
            const unsigned char *p = file + header_len + 8;
            for (size_t i = 0; i < n && tokens; i++) {
                tokens[i] = le_u16(p + 2 * i);
                if (tokens[i] >= vocab_size) { free(tokens); tokens = NULL; *why = "a token id is out of range"; }
            }
            *num_tokens = (size_t)n;
        }
    }
    free(file);
    return tokens;
}

// Encodes one input file: documents split at DOC_SEPARATOR (a newline right after it belongs to
// the separator), each followed by the end-of-text token; empty documents are skipped.
static int encode_corpus_file(const Tokenizer *tok, const char *text, size_t len, IntVec *out,
                              const char *path, GfnError *err) {
    const size_t sep_len = strlen(DOC_SEPARATOR);
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && !(end + sep_len <= len && !memcmp(text + end, DOC_SEPARATOR, sep_len))) end++;
        if (end > pos) {
            if (tok_encode_append(tok, text + pos, end - pos, out)) {
                gfn_error_set(err, "%s: cannot encode bytes %zu..%zu", path, pos, end);
                return 1;
            }
            intvec_push(out, tokenizer_eot_id(tok));
        }
        pos = end + sep_len;
        if (pos < len && text[pos] == '\n') pos++;
    }
    return 0;
}

// The tokenizer's identity: the hash of its file, or of the vocabulary files of a GPT-2 directory.
static int tokenizer_identity(const char *path, uint64_t *hash, GfnError *err) {
    static const char *const dir_files[] = { "encoder.json", "vocab.bpe", "vocab.json", "merges.txt" };
    struct stat st;
    *hash = FNV_OFFSET;
    if (stat(path, &st) != 0) { gfn_error_set(err, "%s: cannot stat the tokenizer", path); return 1; }
    int is_dir = S_ISDIR(st.st_mode), found = 0;
    for (size_t i = 0; i < (is_dir ? sizeof dir_files / sizeof *dir_files : 1); i++) {
        char *file = is_dir ? gfn_malloc(strlen(path) + strlen(dir_files[i]) + 2) : NULL;
        if (file) sprintf(file, "%s/%s", path, dir_files[i]);
        size_t len;
        GfnError ignored;
        unsigned char *bytes = read_file(file ? file : path, &len, is_dir ? &ignored : err);
        free(file);
        if (!bytes) { if (is_dir) continue; return 1; }
        *hash = fnv1a64(bytes, len, *hash);
        found++;
        free(bytes);
    }
    if (!found) { gfn_error_set(err, "%s: no tokenizer files in this directory", path); return 1; }
    return 0;
}

typedef struct {
    int *tokens;            // (N,)  the whole corpus, documents separated by end-of-text
    size_t num_tokens;      // N
    uint64_t hash;          // FNV-1a 64 of the ids (as LE u16): the identity of the data
} TokenStream;

// Loads the stream from the cache when it is current, else tokenizes the inputs and writes it.
static int token_stream_prepare(const PretrainConfig *cfg, const Tokenizer *tok, const char *cache_path,
                                TokenStream *stream, int *rebuilt, GfnError *err) {
    int n_in = cfg->num_inputs, vocab_size = tokenizer_vocab_size(tok);
    if (vocab_size > 65536) { gfn_error_set(err, "%s: vocabulary of %d ids does not fit the token cache's 16 bits", cfg->tokenizer_path, vocab_size); return 1; }
    uint64_t tokenizer_hash;
    if (tokenizer_identity(cfg->tokenizer_path, &tokenizer_hash, err)) return 1;
    unsigned char **texts = gfn_calloc((size_t)n_in, sizeof *texts);
    size_t *sizes = gfn_calloc((size_t)n_in, sizeof *sizes);
    uint64_t *hashes = gfn_calloc((size_t)n_in, sizeof *hashes);
    int status = 1;
    for (int i = 0; i < n_in; i++) {
        texts[i] = read_file(cfg->inputs[i], &sizes[i], err);
        if (!texts[i]) goto done;
        hashes[i] = fnv1a64(texts[i], sizes[i], FNV_OFFSET);
    }
    size_t header_len;
    unsigned char *header = token_cache_header(vocab_size, tokenizer_hash, sizes, hashes, n_in, &header_len);
    const char *why;
    stream->tokens = token_cache_read(cache_path, header, header_len, vocab_size, &stream->num_tokens, &why);
    *rebuilt = stream->tokens == NULL;
    if (*rebuilt) {
        if (cfg->verbose) { printf("token cache %s: rebuilding (%s)\n", cache_path, why); fflush(stdout); }
        double t0 = gfn_wall_seconds();
        IntVec ids = {0};
        for (int i = 0; i < n_in; i++)
            if (encode_corpus_file(tok, (const char *)texts[i], sizes[i], &ids, cfg->inputs[i], err)) { free(ids.data); free(header); goto done; }
        size_t file_len = header_len + 8 + 2 * ids.len + 8;
        unsigned char *file = gfn_malloc(file_len);
        memcpy(file, header, header_len);
        put_le_u64(file + header_len, ids.len);
        for (size_t t = 0; t < ids.len; t++) {
            file[header_len + 8 + 2 * t] = (unsigned char)ids.data[t];
            file[header_len + 8 + 2 * t + 1] = (unsigned char)(ids.data[t] >> 8);
        }
        put_le_u64(file + file_len - 8, fnv1a64(file, file_len - 8, FNV_OFFSET));
        int failed = write_file_atomic(cache_path, file, file_len, err);
        free(file);
        if (failed) { free(ids.data); free(header); goto done; }
        stream->tokens = ids.data;
        stream->num_tokens = ids.len;
        if (cfg->verbose) printf("token cache %s: %zu tokens from %d files in %.1f s\n", cache_path, ids.len, n_in, gfn_wall_seconds() - t0);
    }
    free(header);
    // The identity of the data for the training state: the ids as LE u16, hashed.
    stream->hash = FNV_OFFSET;
    for (size_t t = 0; t < stream->num_tokens; t++) {
        unsigned char b[2] = { (unsigned char)stream->tokens[t], (unsigned char)(stream->tokens[t] >> 8) };
        stream->hash = fnv1a64(b, 2, stream->hash);
    }
    status = 0;
done:
    for (int i = 0; i < n_in; i++) free(texts[i]);
    free(texts); free(sizes); free(hashes);
    return status;
}

// ----------------------------------------------------------------------------------------------
// The validation split and the training windows. The stream is cut into chunks of ctx+1 tokens;
// chunk c is held out when floor((c+1)·f) > floor(c·f), which spreads a fraction f of the chunks
// evenly over the corpus (every 20th chunk for f = 0.05). A held-out chunk scores its last ctx
// tokens, each given the tokens before it in the chunk. Training windows (ctx+1 tokens at any
// offset) are drawn uniformly from the stretches between held-out chunks, never overlapping one.

typedef struct {
    const int *tokens;
    int chunk_len;              // ctx + 1
    size_t *val_chunks;         // (num_val,)  indices of the held-out chunks
    size_t num_val;
    size_t *segment_start;      // (num_segments,)  first token of each training stretch
    uint64_t *starts_before;    // (num_segments + 1,)  window starts in the stretches before it
    size_t num_segments;
} DataSplit;

static int chunk_is_held_out(size_t c, double frac) {
    return floor((double)(c + 1) * frac) > floor((double)c * frac);
}

static void data_split_init(DataSplit *split, const TokenStream *stream, int ctx, double val_frac) {
    memset(split, 0, sizeof *split);
    split->tokens = stream->tokens;
    split->chunk_len = ctx + 1;
    size_t chunk = (size_t)split->chunk_len, num_chunks = stream->num_tokens / chunk;
    split->val_chunks = gfn_malloc((num_chunks + 1) * sizeof *split->val_chunks);
    split->segment_start = gfn_malloc((num_chunks + 2) * sizeof *split->segment_start);
    split->starts_before = gfn_malloc((num_chunks + 3) * sizeof *split->starts_before);
    split->starts_before[0] = 0;
    size_t open = 0;   // first token of the stretch being walked
    for (size_t c = 0; c <= num_chunks; c++) {
        int held_out = c < num_chunks && chunk_is_held_out(c, val_frac);
        if (c < num_chunks && !held_out) continue;
        size_t end = c < num_chunks ? c * chunk : stream->num_tokens;
        if (end >= open + chunk) {   // room for at least one window
            split->segment_start[split->num_segments] = open;
            split->starts_before[split->num_segments + 1] =
                split->starts_before[split->num_segments] + (uint64_t)(end - open - chunk + 1);
            split->num_segments++;
        }
        if (held_out) split->val_chunks[split->num_val++] = c;
        open = (c + 1) * chunk;
    }
}

static void data_split_free(DataSplit *split) {
    free(split->val_chunks); free(split->segment_start); free(split->starts_before);
}

static uint64_t data_split_num_windows(const DataSplit *split) { return split->starts_before[split->num_segments]; }

// One training window: inputs (T,) and the next tokens as targets (T,), T = ctx.
static void sample_window(const DataSplit *split, Rng *rng, int *inputs, int *targets) {
    uint64_t k = rng_u64(rng) % data_split_num_windows(split);   // bias < 2^-40: irrelevant
    size_t lo = 0, hi = split->num_segments - 1;                  // find the stretch holding k
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (split->starts_before[mid] <= k) lo = mid; else hi = mid - 1;
    }
    const int *w = split->tokens + split->segment_start[lo] + (k - split->starts_before[lo]);
    int T = split->chunk_len - 1;
    memcpy(inputs, w, (size_t)T * sizeof *inputs);
    memcpy(targets, w + 1, (size_t)T * sizeof *targets);
}

// ----------------------------------------------------------------------------------------------
// Validation loss over the first max_chunks held-out chunks (0: all), in batches of B: the sums
// of −log p over the scored tokens, their count, and the bytes they decode to (for bits/byte).
typedef struct { double nats; long long tokens, bytes; } EvalSums;

static EvalSums evaluate(GPT *model, const DataSplit *split, const int *token_bytes, int B, size_t max_chunks) {
    int T = split->chunk_len - 1;
    size_t n = split->num_val;
    if (max_chunks && max_chunks < n) n = max_chunks;
    int *inputs = gfn_malloc((size_t)B * T * sizeof *inputs);       // (B, T)
    int *targets = gfn_malloc((size_t)B * T * sizeof *targets);     // (B, T)
    float *logprobs = gfn_malloc((size_t)B * T * sizeof *logprobs); // (B, T)
    EvalSums sums = {0, 0, 0};
    for (size_t first = 0; first < n; first += (size_t)B) {
        int rows = (int)(n - first < (size_t)B ? n - first : (size_t)B);
        for (int b = 0; b < rows; b++) {
            const int *w = split->tokens + split->val_chunks[first + (size_t)b] * (size_t)split->chunk_len;
            memcpy(inputs + (size_t)b * T, w, (size_t)T * sizeof *inputs);
            memcpy(targets + (size_t)b * T, w + 1, (size_t)T * sizeof *targets);
        }
        gpt_forward(model, inputs, rows, T);
        gpt_cross_entropy(model, targets, logprobs, NULL);
        for (int i = 0; i < rows * T; i++) {
            sums.nats -= logprobs[i];
            sums.bytes += token_bytes[targets[i]];
        }
        sums.tokens += (long long)rows * T;
    }
    free(inputs); free(targets); free(logprobs);
    return sums;
}

// Bits per byte of a whole text file: the stream [end-of-text] + encode(file) is cut into windows
// of T tokens; window w feeds tokens [wT, wT + T) and scores the next ones, so every token of the
// file is scored once, seeing at most T tokens before it. Short last windows are padded with
// ignored targets (-1).
int evaluate_file(GPT *model, const Tokenizer *tok, const char *path, int B, int T, double *bits_per_byte,
                         double *nats_per_token, GfnError *err) {
    size_t len, n;
    char *text = (char *)read_file(path, &len, err);
    if (!text) return 1;
    int *ids = tokenizer_encode(tok, text, len, 0, &n);
    free(text);
    if (!ids || n == 0 || len == 0) { free(ids); gfn_error_set(err, "%s: nothing to evaluate", path); return 1; }
    int *stream = gfn_malloc((n + 1) * sizeof *stream);               // (n + 1,)
    stream[0] = tokenizer_eot_id(tok);
    memcpy(stream + 1, ids, n * sizeof *ids);
    free(ids);
    int *inputs = gfn_malloc((size_t)B * T * sizeof *inputs);        // (B, T)
    int *targets = gfn_malloc((size_t)B * T * sizeof *targets);      // (B, T)
    float *logprobs = gfn_malloc((size_t)B * T * sizeof *logprobs);  // (B, T)
    size_t windows = (n + (size_t)T - 1) / (size_t)T;
    double nats = 0;
    for (size_t first = 0; first < windows; first += (size_t)B) {
        int rows = (int)(windows - first < (size_t)B ? windows - first : (size_t)B);
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < T; t++) {
                size_t i = (first + (size_t)b) * (size_t)T + (size_t)t;   // input position in stream
                int scored = i < n;                                         // target i + 1 exists
                inputs[b * T + t] = scored ? stream[i] : 0;
                targets[b * T + t] = scored ? stream[i + 1] : -1;
            }
        gpt_forward(model, inputs, rows, T);
        gpt_cross_entropy(model, targets, logprobs, NULL);
        for (int i = 0; i < rows * T; i++) nats -= logprobs[i];
    }
    *bits_per_byte = nats / 0.69314718055994530942 / (double)len;
    *nats_per_token = nats / (double)n;
    free(stream); free(inputs); free(targets); free(logprobs);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// The training-state file: everything the rest of a run depends on, so that a resumed run ends
// with the same bits as an uninterrupted one. Layout (little-endian):
//   "GFNSTATE"                                      8 bytes
//   u32 version = 1
//   u32 vocab_size, ctx, n_layer, n_head, n_embd     the model's shape
//   u32 batch, steps, warmup                         the schedule ...
//   f32 lr, min_lr, weight_decay, clip, val_frac     ... and the optimisation
//   u64 seed, u64 FNV-1a 64 of the token stream       the data
//   u32 completed steps, 4 × u64 RNG state            where the run is
//   u32 AdamW step, f32 beta1, beta2, eps
//   u64 number of parameters P
//   P × f32 parameters, P × f32 AdamW m, P × f32 AdamW v
//   u64 FNV-1a 64 of everything before it
// The fields before "completed steps" must match the resuming run's; a mismatch is an error
// naming the field, since continuing under other settings could not give the same bits.

#define STATE_FIXED_BYTES (8 + 4 + 8 * 4 + 5 * 4 + 8 + 8 + 4 + 32 + 4 + 12 + 8 + 8)   // all but the arrays

typedef struct {
    const PretrainConfig *cfg;
    int vocab_size;
    uint64_t data_hash;
} RunIdentity;

static unsigned char *put_identity(unsigned char *p, const RunIdentity *id) {
    const PretrainConfig *c = id->cfg;
    memcpy(p, "GFNSTATE", 8); p += 8;
    put_le_u32(p, 1); p += 4;
    uint32_t shape[8] = { (uint32_t)id->vocab_size, (uint32_t)c->ctx, (uint32_t)c->n_layer, (uint32_t)c->n_head,
                          (uint32_t)c->n_embd, (uint32_t)c->batch, (uint32_t)c->steps, (uint32_t)c->warmup };
    for (int i = 0; i < 8; i++) { put_le_u32(p, shape[i]); p += 4; }
    float opt[5] = { c->lr, c->min_lr, c->weight_decay, c->clip, c->val_frac };
    for (int i = 0; i < 5; i++) { put_le_f32(p, opt[i]); p += 4; }
    put_le_u64(p, c->seed); p += 8;
    put_le_u64(p, id->data_hash); p += 8;
    return p;
}

static int state_save(const char *path, const RunIdentity *id, int step, const Rng *rng, const AdamW *opt,
                      const float *params, size_t n, GfnError *err) {
    size_t len = STATE_FIXED_BYTES + 12 * n;
    unsigned char *buf = gfn_malloc(len), *p = put_identity(buf, id);
    put_le_u32(p, (uint32_t)step); p += 4;
    for (int i = 0; i < 4; i++) { put_le_u64(p, rng->s[i]); p += 8; }
    put_le_u32(p, (uint32_t)opt->step); p += 4;
    put_le_f32(p, opt->beta1); put_le_f32(p + 4, opt->beta2); put_le_f32(p + 8, opt->eps); p += 12;
    put_le_u64(p, n); p += 8;
    const float *arrays[3] = { params, opt->m, opt->v };
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < n; i++) { put_le_f32(p, arrays[a][i]); p += 4; }
    put_le_u64(p, fnv1a64(buf, len - 8, FNV_OFFSET));
    int status = write_file_atomic(path, buf, len, err);
    free(buf);
    return status;
}

// Restores step, RNG, AdamW and parameters from path; every field is checked first.
static int state_load(const char *path, const RunIdentity *id, int *step, Rng *rng, AdamW *opt,
                      float *params, size_t n, GfnError *err) {
    size_t len;
    unsigned char *buf = read_file(path, &len, err);
    if (!buf) return 1;
    int status = 1;
    unsigned char expect[STATE_FIXED_BYTES];
    size_t id_len = (size_t)(put_identity(expect, id) - expect);
    if (len < 12 || memcmp(buf, "GFNSTATE", 8) != 0) { gfn_error_set(err, "%s: not a training-state file (bad magic)", path); goto done; }
    if (le_u32(buf + 8) != 1) { gfn_error_set(err, "%s: unsupported training-state version %u", path, le_u32(buf + 8)); goto done; }
    if (len < STATE_FIXED_BYTES) { gfn_error_set(err, "%s: truncated (%zu bytes, the header alone is %d)", path, len, STATE_FIXED_BYTES); goto done; }
    uint64_t stored_n = le_u64(buf + STATE_FIXED_BYTES - 16);
    if (stored_n != n || len != STATE_FIXED_BYTES + 12 * n) {
        gfn_error_set(err, "%s: %zu bytes for %llu parameters; this model has %zu parameters (%zu bytes expected)",
                      path, len, (unsigned long long)stored_n, n, (size_t)STATE_FIXED_BYTES + 12 * n);
        goto done;
    }
    if (fnv1a64(buf, len - 8, FNV_OFFSET) != le_u64(buf + len - 8)) { gfn_error_set(err, "%s: checksum mismatch: the file is damaged", path); goto done; }
    static const char *const fields[] = { "vocab_size", "ctx", "n_layer", "n_head", "n_embd", "batch", "steps",
                                          "warmup", "lr", "min_lr", "weight_decay", "clip", "val_frac" };
    for (int i = 0; i < 13; i++)
        if (memcmp(buf + 12 + 4 * i, expect + 12 + 4 * i, 4) != 0) {
            if (i < 8) gfn_error_set(err, "%s: written with %s %u, this run has %u", path, fields[i], le_u32(buf + 12 + 4 * i), le_u32(expect + 12 + 4 * i));
            else gfn_error_set(err, "%s: written with %s %g, this run has %g", path, fields[i], (double)le_f32(buf + 12 + 4 * i), (double)le_f32(expect + 12 + 4 * i));
            goto done;
        }
    if (memcmp(buf + 64, expect + 64, 8) != 0) { gfn_error_set(err, "%s: written with seed %llu, this run has %llu", path, (unsigned long long)le_u64(buf + 64), (unsigned long long)le_u64(expect + 64)); goto done; }
    if (memcmp(buf + 72, expect + 72, 8) != 0) { gfn_error_set(err, "%s: trained on another token stream (the tokenizer or the inputs changed)", path); goto done; }
    const unsigned char *p = buf + id_len;
    uint32_t stored_step = le_u32(p); p += 4;
    if (stored_step > (uint32_t)id->cfg->steps) { gfn_error_set(err, "%s: step %u is past the run's %d steps", path, stored_step, id->cfg->steps); goto done; }
    *step = (int)stored_step;
    for (int i = 0; i < 4; i++) { rng->s[i] = le_u64(p); p += 8; }
    opt->step = (int)le_u32(p); p += 4;
    opt->beta1 = le_f32(p); opt->beta2 = le_f32(p + 4); opt->eps = le_f32(p + 8); p += 12 + 8;
    float *arrays[3] = { params, opt->m, opt->v };
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < n; i++) { arrays[a][i] = le_f32(p); p += 4; }
    status = 0;
done:
    free(buf);
    return status;
}

// ----------------------------------------------------------------------------------------------
// Samples: rows start from end-of-text and draw tokens through the KV cache until end-of-text
// or `len` tokens; temperature 0 is greedy.

static void print_samples(GPT *model, const Tokenizer *tok, int rows, int len, float temperature, uint64_t seed) {
    GPTConfig mc = gpt_config(model);
    if (len > mc.max_seq_len - 1) len = mc.max_seq_len - 1;
    int V = mc.vocab_size, eot = tokenizer_eot_id(tok);
    Rng rng;
    rng_seed(&rng, seed ^ 0x53414D504C455321ull);   // its own stream: samples never move training
    KVCache *cache = kv_cache_new(model, rows, len + 1);
    int *tokens = gfn_malloc((size_t)rows * sizeof *tokens), *pos = gfn_malloc((size_t)rows * sizeof *pos);
    int *out = gfn_malloc((size_t)rows * (size_t)len * sizeof *out);   // (rows, len)
    int *out_len = gfn_calloc((size_t)rows, sizeof *out_len);
    float *logits = gfn_malloc((size_t)rows * V * sizeof *logits);    // (rows, V)
    float *pairs = gfn_malloc(2 * (size_t)V * sizeof *pairs);           // (V, 2) sampler scratch
    unsigned char *every_token = gfn_malloc((size_t)V);                 // (V) no mask
    memset(every_token, 1, (size_t)V);
    SamplerConfig sampler = { temperature, 0, 1.0f, 0 };
    for (int b = 0; b < rows; b++) { tokens[b] = eot; pos[b] = 0; }
    for (int t = 0; t < len; t++) {
        gpt_decode_step(model, cache, tokens, pos, logits);
        int live = 0;
        for (int b = 0; b < rows; b++) {
            if (tokens[b] < 0) continue;
            int next = sample_token(logits + (size_t)b * V, every_token, V, &sampler, pairs, &rng);
            if (next == eot) { tokens[b] = -1; continue; }
            out[(size_t)b * len + out_len[b]++] = next;
            tokens[b] = next;
            pos[b]++;
            live++;
        }
        if (!live) break;
    }
    for (int b = 0; b < rows; b++) {
        size_t text_len;
        GfnError err;
        char *text = tokenizer_decode(tok, out + (size_t)b * len, (size_t)out_len[b], &text_len, &err);
        if (!text) { printf("--- sample %d: %s\n", b + 1, err.msg); continue; }
        printf("--- sample %d (%d tokens, temperature %.2f)\n%.*s\n", b + 1, out_len[b], (double)temperature, (int)text_len, text);
        free(text);
    }
    kv_cache_free(cache);
    free(tokens); free(pos); free(out); free(out_len); free(logits); free(pairs); free(every_token);
}

// ----------------------------------------------------------------------------------------------
// The run.

void pretrain_config_default(PretrainConfig *c) {
    memset(c, 0, sizeof *c);
    c->n_layer = 4; c->n_head = 4; c->n_embd = 256; c->ctx = 128;
    c->batch = 16; c->steps = 5000; c->warmup = 100;
    c->lr = 1e-3f; c->min_lr = 1e-4f; c->weight_decay = 0.1f; c->clip = 1.0f; c->val_frac = 0.05f;
    c->eval_every = 250; c->eval_chunks = 64; c->save_every = 500;
    c->seed = 1337;
    c->samples = 3; c->sample_len = 64; c->temperature = 0.8f;
    c->verbose = 1;
}

static int pretrain_check_config(const PretrainConfig *c, GfnError *err) {
    const char *bad = NULL;
    if (!c->tokenizer_path) bad = "a tokenizer (-t) is required";
    else if (c->num_inputs < 1) bad = "at least one input file (-i) is required";
    else if (!c->out_path) bad = "an output path (-o) is required";
    else if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head) bad = "need layers >= 1, heads >= 1 and dim a multiple of heads";
    else if (c->ctx < 2) bad = "ctx must be at least 2";
    else if (c->batch < 1 || c->steps < 0 || c->warmup < 0) bad = "need batch >= 1, steps >= 0, warmup >= 0";
    else if (!(c->lr >= 0) || !(c->min_lr >= 0) || !(c->weight_decay >= 0) || !(c->clip >= 0)) bad = "lr, min-lr, weight-decay and clip must be >= 0";
    else if (!(c->val_frac > 0 && c->val_frac < 1)) bad = "val-frac must be in (0, 1)";
    else if (c->eval_every < 0 || c->eval_chunks < 0 || c->save_every < 0 || c->stop_after < 0) bad = "eval-every, eval-chunks, save-every and stop-after must be >= 0";
    else if (c->samples < 0 || c->sample_len < 0 || !(c->temperature >= 0)) bad = "samples, their length and temperature must be >= 0";
    if (bad) { gfn_error_set(err, "pretrain: %s", bad); return 1; }
    // Files read at the end are checked now, before hours of training; outputs before writing.
    FILE *f = c->eval_file ? fopen(c->eval_file, "rb") : NULL;
    if (c->eval_file && !f) { gfn_error_set(err, "%s: cannot open the --eval-file: %s", c->eval_file, strerror(errno)); return 1; }
    if (f) fclose(f);
    return output_path_check(c->out_path, err);
}

static void log_json(FILE *log, const char *fmt, ...) {
    if (!log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fputc('\n', log);
    fflush(log);
}

static void format_duration(char *out, size_t cap, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, cap, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else snprintf(out, cap, "%ldm%02lds", s / 60, s % 60);
}

// One save point is a pair: the checkpoint OUT and the training state OUT.state, each written to
// PATH.tmp and renamed over PATH. The checkpoint goes first and the state last, so a kill at any
// moment leaves each file whole (the old or the new version) and the state never ahead of the
// checkpoint: a checkpoint newer than its state is the only torn pair, and resuming repairs it
// (pair_repair). The state holds the weights too, so the resumed run loses nothing.
static int save_point(const char *state_path, const char *out_path, const RunIdentity *id, int step,
                      const Rng *rng, const AdamW *opt, GPT *model, GfnError *err) {
    if (gpt_save(model, out_path, err)) return 1;
    return state_save(state_path, id, step, rng, opt, gpt_params_memory(model), gpt_num_parameters(model), err);
}

// When a run resumes from its own state file, the checkpoint beside it must hold the state's
// weights. It does not when a save was killed between its two renames (the checkpoint is then one
// save ahead) or when the checkpoint is missing or damaged: the state is the authority, so the
// checkpoint is rewritten from it and the pair is consistent again before training goes on.
static int pair_repair(const char *state_path, const char *resume_path, const char *out_path, GPT *model, int step,
                       GfnError *err) {
    struct stat a, b;
    if (stat(state_path, &a) != 0 || stat(resume_path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return 0;   // resuming into another output: that run writes its own pair
    GfnError ignored;
    GPT *on_disk = gpt_load(out_path, &ignored);
    size_t P = gpt_num_parameters(model);
    GPTConfig want = gpt_config(model), have = on_disk ? gpt_config(on_disk) : want;
    int matches = on_disk && !memcmp(&want, &have, sizeof want) && gpt_num_parameters(on_disk) == P &&
                  !memcmp(gpt_params_memory(on_disk), gpt_params_memory(model), P * sizeof(float));
    if (on_disk) gpt_free(on_disk);
    if (matches) return 0;
    fprintf(stderr, "pretrain: %s does not hold the weights of %s (step %d): %s; rewriting it from the state\n",
            out_path, state_path, step, on_disk ? "a save was interrupted between its two files" : ignored.msg);
    return gpt_save(model, out_path, err);
}

int pretrain_run(const PretrainConfig *cfg, PretrainResult *result, GfnError *err) {
    PretrainResult local;
    if (!result) result = &local;
    memset(result, 0, sizeof *result);
    result->initial_val_loss = result->val_loss = result->val_bits_per_byte = result->eval_file_bits_per_byte = NAN;
    if (pretrain_check_config(cfg, err)) return 1;
#ifdef _OPENMP
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
#endif
    Tokenizer *tok = tokenizer_load(cfg->tokenizer_path, err);
    if (!tok) return 1;
    int status = 1, V = tokenizer_vocab_size(tok);
    char *cache_path = path_with_suffix(cfg->cache_path ? cfg->cache_path : cfg->out_path, cfg->cache_path ? "" : ".tokens");
    char *state_path = path_with_suffix(cfg->state_path ? cfg->state_path : cfg->out_path, cfg->state_path ? "" : ".state");
    const char *written[3] = { cfg->out_path, state_path, cache_path };
    for (int i = 0; i < 3; i++)   // a kill during a save leaves PATH.tmp behind: removed before anything else
        if (remove_stale_temp(written[i]) && cfg->verbose) printf("pretrain: removed %s.tmp, left by an interrupted save\n", written[i]);
    TokenStream stream = {0};
    DataSplit split = {0};
    GPT *model = NULL;
    AdamW opt = {0};
    FILE *log = NULL;
    int *token_bytes = NULL, *inputs = NULL, *targets = NULL;
    if (token_stream_prepare(cfg, tok, cache_path, &stream, &result->cache_rebuilt, err)) goto done;
    result->num_tokens = (long long)stream.num_tokens;
    data_split_init(&split, &stream, cfg->ctx, cfg->val_frac);
    if (split.num_val == 0 || split.num_segments == 0) {
        gfn_error_set(err, "%s: %zu tokens are too few for a validation chunk and a training window of %d tokens "
                      "(val-frac %g)", cfg->inputs[0], stream.num_tokens, cfg->ctx + 1, (double)cfg->val_frac);
        goto done;
    }
    // Bytes each token decodes to, for bits per byte.
    token_bytes = gfn_malloc((size_t)V * sizeof *token_bytes);
    for (int i = 0; i < V; i++) {
        size_t n;
        tokenizer_token_bytes(tok, i, &n);
        token_bytes[i] = (int)n;
    }

    GPTConfig mc = { V, cfg->ctx, cfg->n_layer, cfg->n_head, cfg->n_embd };
    model = gpt_new_random(mc, cfg->seed);
    size_t P = gpt_num_parameters(model);
    float *params = gpt_params_memory(model);
    // AdamW with β = (0.9, 0.95), ε = 1e-8; the decay applies to every parameter (one block).
    adamw_init(&opt, P, cfg->lr, 0.9f, 0.95f, 1e-8f, cfg->weight_decay);
    Rng rng;
    rng_seed(&rng, cfg->seed);
    RunIdentity id = { cfg, V, stream.hash };
    int step = 0;
    if (cfg->resume_path) {
        if (state_load(cfg->resume_path, &id, &step, &rng, &opt, params, P, err)) goto done;
        if (pair_repair(state_path, cfg->resume_path, cfg->out_path, model, step, err)) goto done;
    }
    if (cfg->log_path && !(log = fopen(cfg->log_path, "a"))) { gfn_error_set(err, "%s: cannot open for appending", cfg->log_path); goto done; }
    int B = cfg->batch, T = cfg->ctx;
    if (cfg->verbose) {
        printf("pretrain: %zu parameters (L=%d, H=%d, C=%d, V=%d, ctx %d); %zu tokens, %zu validation chunks, "
               "%llu training windows; batch %d; %s at step %d of %d\n",
               P, cfg->n_layer, cfg->n_head, cfg->n_embd, V, T, stream.num_tokens, split.num_val,
               (unsigned long long)data_split_num_windows(&split), B, cfg->resume_path ? "resumed" : "starting", step, cfg->steps);
        fflush(stdout);
    }
    if (step == 0) {
        EvalSums e = evaluate(model, &split, token_bytes, B, (size_t)cfg->eval_chunks);
        result->initial_val_loss = (float)(e.nats / (double)e.tokens);
        if (cfg->verbose) printf("step %d: val loss %.4f\n", step, (double)result->initial_val_loss);
        log_json(log, "{\"step\":0,\"val_loss\":%.6f}", (double)result->initial_val_loss);
    }

    inputs = gfn_malloc((size_t)B * T * sizeof *inputs);     // (B, T)
    targets = gfn_malloc((size_t)B * T * sizeof *targets);   // (B, T)
    int first_step = step, print_every = cfg->steps >= 100 ? 10 : 1;
    double t_start = gfn_wall_seconds(), t_last = t_start;
    int last_printed = step;
    double train_seconds = 0;   // time in the steps themselves, for the throughput figure
    while (step < cfg->steps && !(cfg->stop_after && step >= cfg->stop_after)) {
        double t_step = gfn_wall_seconds();
        for (int b = 0; b < B; b++) sample_window(&split, &rng, inputs + (size_t)b * T, targets + (size_t)b * T);
        float lr = lr_schedule(step, cfg->warmup, cfg->steps, cfg->lr, cfg->min_lr), norm;
        float loss = gpt_train_step(model, &opt, inputs, targets, B, T, lr, cfg->clip > 0 ? cfg->clip : INFINITY, &norm);
        step++;
        if (!isfinite(loss) || !isfinite(norm)) {   // the files on disk stay those of the last save
            gfn_error_set(err, "pretrain: step %d: the loss (%g) or the gradient norm (%g) is not finite; stopped, "
                          "%s keeps the last save (try a lower --lr)", step, (double)loss, (double)norm, cfg->out_path);
            goto done;
        }
        double now = gfn_wall_seconds();
        train_seconds += now - t_step;

        log_json(log, "{\"step\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6g,\"time\":%.3f}", step, (double)loss,
                 (double)lr, (double)norm, now - t_start);
        if (cfg->verbose && (step % print_every == 0 || step == cfg->steps || step - first_step <= 3)) {
            char eta[32];
            double tps = (double)(step - last_printed) * B * T / (now - t_last + 1e-9);
            format_duration(eta, sizeof eta, (now - t_start) / (step - first_step) * (cfg->steps - step));
            printf("step %d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | ETA %s\n", step, cfg->steps,
                   (double)loss, (double)lr, (double)norm, tps, eta);
            fflush(stdout);
            t_last = now;
            last_printed = step;
        }
        if (cfg->eval_every && step % cfg->eval_every == 0 && step < cfg->steps) {
            EvalSums e = evaluate(model, &split, token_bytes, B, (size_t)cfg->eval_chunks);
            double vl = e.nats / (double)e.tokens;
            if (cfg->verbose) printf("step %d: val loss %.4f (%lld tokens)\n", step, vl, e.tokens);
            log_json(log, "{\"step\":%d,\"val_loss\":%.6f}", step, vl);
        }
        int stopping = cfg->stop_after && step >= cfg->stop_after;
        if ((cfg->save_every && step % cfg->save_every == 0) || step == cfg->steps || stopping)
            if (save_point(state_path, cfg->out_path, &id, step, &rng, &opt, model, err)) goto done;
    }
    result->steps_done = step;
    if (step > first_step) result->tokens_per_second = (double)(step - first_step) * B * T / train_seconds;
    if (step == first_step && step == cfg->steps)   // nothing trained here: still leave the model
        if (save_point(state_path, cfg->out_path, &id, step, &rng, &opt, model, err)) goto done;

    EvalSums e = evaluate(model, &split, token_bytes, B, 0);
    result->num_val_tokens = e.tokens;
    result->num_val_bytes = e.bytes;
    result->val_loss = (float)(e.nats / (double)e.tokens);
    result->val_bits_per_byte = (float)(e.nats / 0.69314718055994530942 / (double)e.bytes);
    if (cfg->verbose) {
        printf("validation at step %d: %.4f nats/token, %.4f bits/byte (%lld tokens, %lld bytes)\n", step,
               (double)result->val_loss, (double)result->val_bits_per_byte, e.tokens, e.bytes);
        if (step > first_step) printf("training throughput: %.0f tokens/s\n", result->tokens_per_second);
        fflush(stdout);
    }
    log_json(log, "{\"step\":%d,\"final_val_loss\":%.6f,\"val_bits_per_byte\":%.6f,\"val_tokens\":%lld,\"val_bytes\":%lld}",
             step, (double)result->val_loss, (double)result->val_bits_per_byte, e.tokens, e.bytes);
    if (cfg->eval_file) {
        double bpb, npt;
        if (evaluate_file(model, tok, cfg->eval_file, B, T, &bpb, &npt, err)) goto done;
        result->eval_file_bits_per_byte = (float)bpb;
        if (cfg->verbose) printf("%s: %.4f nats/token, %.4f bits/byte\n", cfg->eval_file, npt, bpb);
        log_json(log, "{\"step\":%d,\"eval_file_nats_per_token\":%.6f,\"eval_file_bits_per_byte\":%.6f}", step, npt, bpb);
    }
    if (cfg->samples > 0 && cfg->sample_len > 0) print_samples(model, tok, cfg->samples, cfg->sample_len, cfg->temperature, cfg->seed);
    status = 0;
done:
    if (log && (ferror(log) | fclose(log)) && status == 0) {
        gfn_error_set(err, "%s: error writing the log (disk full?)", cfg->log_path);
        status = 1;
    }
    free(inputs); free(targets); free(token_bytes);
    adamw_free(&opt);
    if (model) gpt_free(model);
    data_split_free(&split);
    free(stream.tokens);
    free(cache_path); free(state_path);
    tokenizer_free(tok);
    return status;
}

// ==============================================================================================
// The corpus recipe (`gfn corpus`): the pretraining text, built deterministically from the shared
// data folder. Documents end with "\n<|endoftext|>\n" (the separator `gfn pretrain` splits at).
// What goes in, and what is held out for evaluation:
//   corpora/brown.txt              all; its tokenised spacing undone (" ," -> ","), 50 lines a doc
//   corpora/tinyshakespeare.txt    all; paragraphs gathered into documents of >= 2000 bytes
//   stories/tinystories_excerpt    all; a document starts at each "Once upon a time" paragraph
//   stories/roc_valid.json         rows 100..4999, one story a document; rows 0..99 are held out
//                                  (the infilling evaluation stories, as in the paper's split)
//   stories/storycloze_val_5sent   none: it is the bits/byte evaluation set
//   openwebtext/prompts.txt        lines 1000..9999, one prompt a document, except those equal
//                                  to one of the first 1000 (the continuation task's train/val)
//   subj/train.jsonl               the "text" of every row, 20 a document (never test.jsonl)
//   arithmetic                     CORPUS_ARITHMETIC worked chains from our seeded generator, 10 a
//                                  document: 2 to 7 one-digit operands (10/20/20/20/15/15 %), + and
//                                  -, each worked step by step in one of four surface forms, a
//                                  quarter each, none of them the task's ("Question: 9 + 4 - 7 = ?
//                                  Answer: 9 + 4 = 13, 13 - 7 = 6. The answer is 6." never occurs):
//                                    Work out 9 + 4 - 7. Steps: 9 + 4 = 13, 13 - 7 = 6. Result: 6.
//                                    Q: What is 9 + 4 - 7? A: 9 + 4 = 13, 13 - 7 = 6, so it is 6.
//                                    Problem: 9 + 4 - 7 = ? Work: 9 + 4 = 13, 13 - 7 = 6. Total: 6.
//                                    Compute 9 + 4 - 7.      (then one step a line)
//                                    9 + 4 = 13
//                                    13 - 7 = 6
//                                    So 9 + 4 - 7 = 6.
//                                  The skills are the task's (one-step sums, carrying the running
//                                  value, copying the next operand, knowing that the result is the
//                                  last value and that a chain ends when the operands do), the
//                                  wrappers are not, so fine-tuning still has the format to learn
//                                  (issue 12 item 8). Chains run to 7 operands so that the reward
//                                  knows a 5-operand chain is not finished after 3 steps. A first
//                                  attempt with five forms and a sixth of the chains per form
//                                  learned none of them (results/arithmetic/CORPUS_ATTEMPT.md): a
//                                  4M-parameter model needs about 10,000 chains of a form. No
//                                  chain is a question of a test file (5 operands included).

#define CORPUS_ROC_HELD_OUT 100
#define CORPUS_OWT_HELD_OUT 1000
#define CORPUS_ARITHMETIC 40000

static void text_puts(Text *t, const char *s) { text_append(t, s, strlen(s)); }
static void text_end_doc(Text *t) {
    if (t->len && t->s[t->len - 1] != '\n') text_puts(t, "\n");
    text_puts(t, DOC_SEPARATOR "\n");
}

// A set of 64-bit string hashes (open addressing): which lines are held out.
typedef struct { uint64_t *slots; size_t cap, count; } HashSet;
static void hashset_add(HashSet *set, const char *s, size_t n);
static int hashset_has(const HashSet *set, const char *s, size_t n) {
    if (!set->cap) return 0;
    uint64_t h = fnv1a64(s, n, FNV_OFFSET) | 1;   // 0 marks an empty slot
    for (size_t i = h & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (set->slots[i] == h) return 1;
        if (!set->slots[i]) return 0;
    }
}
static void hashset_add(HashSet *set, const char *s, size_t n) {
    if (2 * (set->count + 1) > set->cap) {   // grow: rehash into twice the slots
        HashSet bigger = { gfn_calloc(set->cap ? 2 * set->cap : 1024, sizeof(uint64_t)), set->cap ? 2 * set->cap : 1024, 0 };
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i]) {
                size_t j = set->slots[i] & (bigger.cap - 1);
                while (bigger.slots[j]) j = (j + 1) & (bigger.cap - 1);
                bigger.slots[j] = set->slots[i];
                bigger.count++;
            }
        free(set->slots);
        *set = bigger;
    }
    uint64_t h = fnv1a64(s, n, FNV_OFFSET) | 1;
    size_t i = h & (set->cap - 1);
    while (set->slots[i] && set->slots[i] != h) i = (i + 1) & (set->cap - 1);
    if (!set->slots[i]) { set->slots[i] = h; set->count++; }
}

// Reads DIR/NAME; NULL with err set when it is missing.
static char *corpus_read(const char *dir, const char *name, size_t *len, GfnError *err) {
    char *path = gfn_malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    char *text = (char *)read_file(path, len, err);
    free(path);
    return text;
}

// The next line of text[*pos..len) without its '\n' (and trailing spaces); 0 at the end.
static int next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *line_len) {
    if (*pos >= len) return 0;
    size_t start = *pos, end = start;
    while (end < len && text[end] != '\n') end++;
    *pos = end + 1;
    while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\r' || text[end - 1] == '\t')) end--;
    *line = text + start;
    *line_len = end - start;
    return 1;
}

// Brown's tokens are space-separated ("said , `` no evidence '' that"); this joins punctuation
// back to its word and turns `` and '' into quotes, so the text reads like ordinary prose.
static void brown_detokenize(Text *out, const char *line, size_t n) {
    static const char *const attach_left[] = { ",", ".", ";", ":", "?", "!", ")", "'s", "n't", "'re", "'ll", "'ve", "'m", "'d", "''", "'" };
    int glue_next = 1;   // no space before the first word, nor after an opening quote or '('
    int words = 0;

    size_t i = 0;
    while (i < n) {
        while (i < n && line[i] == ' ') i++;
        size_t start = i;
        while (i < n && line[i] != ' ') i++;
        if (i == start) break;
        const char *w = line + start;
        size_t wn = i - start;
        int glue = glue_next;
        glue_next = 0;
        for (size_t k = 0; k < sizeof attach_left / sizeof *attach_left; k++)
            if (strlen(attach_left[k]) == wn && !memcmp(w, attach_left[k], wn)) glue = 1;
        if (wn == 2 && !memcmp(w, "``", 2)) { w = "\""; wn = 1; glue_next = 1; glue = words == 0; }
        else if (wn == 2 && !memcmp(w, "''", 2)) { w = "\""; wn = 1; }
        else if (wn == 1 && *w == '(') glue_next = 1;
        if (!glue) text_puts(out, " ");
        text_append(out, w, wn);
        words++;
    }
    text_puts(out, "\n");
}

static int corpus_brown(Text *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "corpora/brown.txt", &len, err);
    if (!text) return 1;
    const char *line;
    int lines = 0;
    while (next_line(text, len, &pos, &line, &n)) {
        if (!n) continue;
        brown_detokenize(out, line, n);
        if (++lines % 50 == 0) text_end_doc(out);
    }
    if (lines % 50) text_end_doc(out);
    free(text);
    return 0;
}

// Paragraphs (separated by blank lines) gathered into documents of at least min_bytes, or cut
// before each paragraph that starts with `new_doc_at` when that is given.
static int corpus_paragraphs(Text *out, const char *dir, const char *name, size_t min_bytes,
                             const char *new_doc_at, GfnError *err) {
    size_t len, pos = 0, n, doc_bytes = 0;
    char *text = corpus_read(dir, name, &len, err);
    if (!text) return 1;
    const char *line;
    int in_paragraph = 0;
    while (next_line(text, len, &pos, &line, &n)) {
        if (!n) { in_paragraph = 0; continue; }
        if (!in_paragraph && doc_bytes) {   // a paragraph begins: a new document, or a blank line
            int cut = new_doc_at ? (n >= strlen(new_doc_at) && !memcmp(line, new_doc_at, strlen(new_doc_at)))
                                 : doc_bytes >= min_bytes;
            if (cut) { text_end_doc(out); doc_bytes = 0; }
            else text_puts(out, "\n");
        }
        in_paragraph = 1;
        text_append(out, line, n);
        text_puts(out, "\n");
        doc_bytes += n + 1;
    }
    if (doc_bytes) text_end_doc(out);
    free(text);
    return 0;
}

static int corpus_roc(Text *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "stories/roc_valid.json", &len, err);
    if (!text) return 1;
    const char *line;
    int row = 0, status = 0;
    while (status == 0 && next_line(text, len, &pos, &line, &n)) {
        if (!n) continue;
        if (row++ < CORPUS_ROC_HELD_OUT) continue;
        Json *story = json_parse(line, n, "stories/roc_valid.json", err);
        if (!story || story->type != JSON_ARRAY) {
            if (story) gfn_error_set(err, "%s/stories/roc_valid.json: row %d is not a JSON array", dir, row - 1);
            status = 1;
        } else {
            for (Json *s = story->child; s; s = s->next)
                if (s->type == JSON_STRING) {
                    if (s != story->child) text_puts(out, " ");
                    text_append(out, s->string, s->len);
                }
            text_end_doc(out);
        }
        json_free(story);
    }
    free(text);
    return status;
}

static int corpus_openwebtext(Text *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "openwebtext/prompts.txt", &len, err);
    if (!text) return 1;
    const char *line;
    HashSet held_out = {0};
    for (int row = 0; next_line(text, len, &pos, &line, &n); row++) {
        if (row < CORPUS_OWT_HELD_OUT) { hashset_add(&held_out, line, n); continue; }
        if (!n || hashset_has(&held_out, line, n)) continue;
        text_append(out, line, n);
        text_puts(out, "\n");
        text_end_doc(out);
    }
    free(held_out.slots);
    free(text);
    return 0;
}

static int corpus_subj(Text *out, const char *dir, GfnError *err) {
    size_t len, pos = 0, n;
    char *text = corpus_read(dir, "subj/train.jsonl", &len, err);
    if (!text) return 1;
    const char *line;
    int rows = 0, status = 0;
    while (status == 0 && next_line(text, len, &pos, &line, &n)) {
        if (!n) continue;
        Json *row = json_parse(line, n, "subj/train.jsonl", err);
        Json *t = row ? json_get(row, "text") : NULL;
        if (!t || t->type != JSON_STRING) {
            if (row) gfn_error_set(err, "%s/subj/train.jsonl: row %d has no \"text\" string", dir, rows);
            status = 1;
        } else {
            text_append(out, t->string, t->len);
            text_puts(out, "\n");
            if (++rows % 20 == 0) text_end_doc(out);
        }
        json_free(row);
    }
    if (status == 0 && rows % 20) text_end_doc(out);
    free(text);
    return status;
}

// One worked chain in one of the four forms above. The draws (the operand count, then per operand
// its digit and an operator, the first one unused, then the form) fix the corpus bytes of a seed.
// *q gets the question (its task-format query is what the test files hold).
static size_t arithmetic_chain(Rng *rng, ArithQuestion *q, char *buf, size_t cap) {
    static const int operands[20] = { 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 7, 7, 7 };
    *q = (ArithQuestion){ .n = operands[rng_below(rng, 20)] };
    for (int i = 0; i < q->n; i++) {
        q->operand[i] = rng_below(rng, 10);
        char op = rng_below(rng, 2) ? '+' : '-';
        if (i > 0) q->op[i - 1] = op;
    }
    int form = rng_below(rng, 4);
    char expr[64], steps[512];
    size_t e = 0, s = 0, len = 0;
    e += (size_t)snprintf(expr, sizeof expr, "%d", q->operand[0]);
    for (int k = 1; k < q->n; k++) e += (size_t)snprintf(expr + e, sizeof expr - e, " %c %d", q->op[k - 1], q->operand[k]);
    const char *sep = form == 3 ? "\n" : ", ";   // the ledger puts one step on a line
    for (int k = 1, v = q->operand[0]; k < q->n; k++) {
        int next = q->op[k - 1] == '+' ? v + q->operand[k] : v - q->operand[k];
        s += (size_t)snprintf(steps + s, sizeof steps - s, "%s%d %c %d = %d", k > 1 ? sep : "", v, q->op[k - 1], q->operand[k], next);
        v = next;
    }
    int answer = arith_answer(q);
    switch (form) {
    case 0: len = (size_t)snprintf(buf, cap, "Work out %s. Steps: %s. Result: %d.", expr, steps, answer); break;
    case 1: len = (size_t)snprintf(buf, cap, "Q: What is %s? A: %s, so it is %d.", expr, steps, answer); break;
    case 2: len = (size_t)snprintf(buf, cap, "Problem: %s = ? Work: %s. Total: %d.", expr, steps, answer); break;
    default: len = (size_t)snprintf(buf, cap, "Compute %s.\n%s\nSo %s = %d.", expr, steps, expr, answer); break;
    }
    return len < cap ? len : cap - 1;
}

static int corpus_arithmetic(Text *out, const char *dir, uint64_t seed, GfnError *err) {
    static const char *const tests[] = { "arithmetic/1digit_3_op+-_test.json", "arithmetic/1digit_4_op+-_test.json",
                                         "arithmetic/1digit_5_op+-_test.json", "arithmetic/1digit_34_op+-_test.json" };
    HashSet held_out = {0};
    for (size_t k = 0; k < sizeof tests / sizeof *tests; k++) {
        size_t len;
        char *text = corpus_read(dir, tests[k], &len, err);
        if (!text) { free(held_out.slots); return 1; }
        Json *root = json_parse(text, len, tests[k], err);
        free(text);
        if (!root) { free(held_out.slots); return 1; }
        if (root->type != JSON_ARRAY) {   // else its questions would silently not be held out
            gfn_error_set(err, "%s/%s: expected a JSON array of questions", dir, tests[k]);
            json_free(root); free(held_out.slots); return 1;
        }
        for (Json *q = root->child; q; q = q->next) {
            Json *s = json_get(q, "str_query");
            if (s && s->type == JSON_STRING) hashset_add(&held_out, s->string, s->len);
        }
        json_free(root);
    }
    Rng rng;
    rng_seed(&rng, seed);
    int written = 0;
    while (written < CORPUS_ARITHMETIC) {
        char chain[512], query[128];
        ArithQuestion q;
        size_t n = arithmetic_chain(&rng, &q, chain, sizeof chain);
        arith_text(&q, ARITH_QUERY, query, sizeof query);
        if (hashset_has(&held_out, query, strlen(query))) continue;
        text_append(out, chain, n);
        text_puts(out, "\n");
        if (++written % 10 == 0) text_end_doc(out);
    }
    free(held_out.slots);
    return 0;
}

int corpus_build(const char *data_dir, const char *out_path, uint64_t seed, size_t *bytes, GfnError *err) {
    Text out = {0};
    int failed = corpus_brown(&out, data_dir, err) ||
                 corpus_paragraphs(&out, data_dir, "corpora/tinyshakespeare.txt", 2000, NULL, err) ||
                 corpus_paragraphs(&out, data_dir, "stories/tinystories_excerpt.txt", 0, "Once upon a time", err) ||
                 corpus_roc(&out, data_dir, err) ||
                 corpus_openwebtext(&out, data_dir, err) ||
                 corpus_subj(&out, data_dir, err) ||
                 corpus_arithmetic(&out, data_dir, seed, err) ||
                 write_file_atomic(out_path, out.s, out.len, err);
    if (bytes) *bytes = out.len;
    free(out.s);
    return failed;
}
