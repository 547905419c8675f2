// tests/test_pretrain.c — pretraining from scratch (pretrain.c's pretrain_run): a tiny model learns
// (validation loss falls from ln V), a resumed run ends with the same bits as an uninterrupted
// one, a damaged training state is a clean error, and the token cache follows its inputs.
// Then the corpus recipe (corpus_build): deterministic, and its held-out sets stay out.
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TMP(suffix) test_path("pretrain" suffix)   // in this run's scratch directory

// A small corpus with structure to learn: sentences from a toy grammar, documents separated by
// "<|endoftext|>" lines.
static char *toy_corpus(uint64_t seed, int num_docs, size_t *len) {
    static const char *const subjects[] = { "the cat", "a dog", "the old man", "my sister", "a small bird" };
    static const char *const verbs[] = { "sees", "likes", "finds", "follows" };
    static const char *const objects[] = { "the red ball", "a green apple", "the river", "her friend" };
    Rng rng;
    rng_seed(&rng, seed);
    size_t cap = (size_t)num_docs * 400 + 64, n = 0;
    char *text = gfn_malloc(cap);
    for (int d = 0; d < num_docs; d++) {
        int sentences = 2 + rng_below(&rng, 3);
        for (int s = 0; s < sentences; s++)
            n += (size_t)snprintf(text + n, cap - n, "%s %s %s. ", subjects[rng_below(&rng, 5)],
                                  verbs[rng_below(&rng, 4)], objects[rng_below(&rng, 4)]);
        n += (size_t)snprintf(text + n, cap - n, "\n<|endoftext|>\n");
    }
    *len = n;
    return text;
}

static int write_text(const char *path, const char *text, size_t len) {
    GfnError err;
    return write_file_atomic(path, text, len, &err);
}

static int files_equal(const char *a, const char *b) {
    GfnError err;
    size_t la, lb;
    unsigned char *x = read_file(a, &la, &err), *y = read_file(b, &lb, &err);
    int same = x && y && la == lb && !memcmp(x, y, la);
    free(x); free(y);
    return same;
}

static void tiny_config(PretrainConfig *c, const char *const *inputs, const char *out) {
    pretrain_config_default(c);
    c->tokenizer_path = TMP(".tok");
    c->inputs = inputs;
    c->num_inputs = 1;
    c->out_path = out;
    c->cache_path = TMP(".tokens");
    c->n_layer = 2; c->n_head = 2; c->n_embd = 32; c->ctx = 32;
    c->batch = 8; c->steps = 40; c->warmup = 4;
    c->lr = 3e-3f; c->min_lr = 3e-4f; c->val_frac = 0.1f;
    c->eval_every = 0; c->eval_chunks = 0; c->save_every = 15;
    c->seed = 7; c->samples = 0; c->verbose = 0;
}

void test_pretrain(void) {
    // The tokenizer: a small BPE trained on the corpus itself.
    size_t len;
    char *text = toy_corpus(1, 120, &len);
    GfnError err = {{0}};
    const char *input = TMP(".txt");
    const char *const inputs[1] = { input };
    CHECK(!write_text(input, text, len), "cannot write %s", input);
    Tokenizer *tok = tokenizer_train(inputs, 1, 300, &err);
    if (!CHECK(tok != NULL, "tokenizer_train: %s", err.msg)) { free(text); return; }
    int V = tokenizer_vocab_size(tok);
    CHECK(!tokenizer_save(tok, TMP(".tok"), &err), "tokenizer_save: %s", err.msg);
    tokenizer_free(tok);

    // 1. An uninterrupted run: the validation loss starts near ln V (a fresh model is nearly
    //    uniform) and falls well below it.
    PretrainConfig c;
    PretrainResult full, part, resumed, r;
    size_t eval_len;
    char *eval_text = toy_corpus(3, 12, &eval_len);
    CHECK(!write_text(TMP("_eval.txt"), eval_text, eval_len), "cannot write the eval file");
    tiny_config(&c, inputs, TMP("_full.bin"));
    c.eval_file = TMP("_eval.txt");
    c.log_path = TMP("_log.jsonl");
    remove(c.log_path);
    int rc = pretrain_run(&c, &full, &err);
    CHECK(rc == 0, "pretrain_run: %s", err.msg);
    CHECK(full.cache_rebuilt == 1, "a first run builds the token cache");
    CHECK(full.steps_done == 40, "steps done %d", full.steps_done);
    CHECK(fabsf(full.initial_val_loss - logf((float)V)) < 0.3f, "initial val loss %.4f vs ln V = %.4f",
          (double)full.initial_val_loss, log((double)V));
    CHECK(full.val_loss < full.initial_val_loss - 1.0f, "val loss %.4f after 40 steps, %.4f at the start",
          (double)full.val_loss, (double)full.initial_val_loss);
    CHECK(full.num_val_tokens > 0 && full.num_val_bytes >= full.num_val_tokens, "val tokens %lld, bytes %lld",
          full.num_val_tokens, full.num_val_bytes);
    long long held_out = 0;   // chunks of 33 tokens; chunk c held out when floor((c+1)f) > floor(cf)
    for (long long ch = 0; ch < full.num_tokens / 33; ch++)
        held_out += floor((double)(ch + 1) * (double)0.1f) > floor((double)ch * (double)0.1f);
    CHECK(full.num_val_tokens == 32 * held_out && held_out >= full.num_tokens / 33 / 10,
          "%lld validation tokens, expected 32 x %lld held-out chunks", full.num_val_tokens, held_out);
    double bpb = (double)full.val_loss * (double)full.num_val_tokens / log(2.0) / (double)full.num_val_bytes;
    CHECK(fabs(full.val_bits_per_byte - bpb) < 1e-4 * bpb, "bits/byte %.6f, expected %.6f", (double)full.val_bits_per_byte, bpb);
    // The JSONL log: every line parses; one line per step; the last ones carry the final numbers.
    size_t log_len;
    char *log_text = (char *)read_file(TMP("_log.jsonl"), &log_len, &err);
    int log_lines = 0, step_lines = 0, bad_lines = 0;
    double logged_val = NAN;
    for (size_t pos = 0; log_text && pos < log_len;) {
        size_t l = strcspn(log_text + pos, "\n");
        Json *j = json_parse(log_text + pos, l, "log", &err);
        log_lines++;
        if (!j) bad_lines++;
        else {
            step_lines += json_get(j, "loss") != NULL;
            Json *v = json_get(j, "final_val_loss");
            if (v) logged_val = v->number;
        }
        json_free(j);
        pos += l + 1;
    }
    CHECK(log_text && bad_lines == 0 && step_lines == 40, "log: %d lines, %d unparsable, %d step lines", log_lines, bad_lines, step_lines);
    CHECK(fabs(logged_val - full.val_loss) < 1e-5, "logged final val loss %.6f vs %.6f", logged_val, (double)full.val_loss);
    free(log_text);
    GPT *loaded = gpt_load(TMP("_full.bin"), &err);
    CHECK(loaded != NULL, "the final model loads with gpt_load: %s", err.msg);
    if (loaded) {
        GPTConfig mc = gpt_config(loaded);
        CHECK(mc.vocab_size == V && mc.n_layer == 2 && mc.n_embd == 32 && mc.max_seq_len == 32, "loaded config");
        // The eval file's bits/byte, recomputed window by window (one row, no padding) with our
        // own log-softmax: [EOT] + tokens, windows of 32 inputs, every token scored once.
        Tokenizer *t2 = tokenizer_load(TMP(".tok"), &err);
        size_t n;
        int *ids = t2 ? tokenizer_encode(t2, eval_text, eval_len, 0, &n) : NULL;
        if (CHECK(ids != NULL, "encode the eval file: %s", err.msg)) {
            int *stream = gfn_malloc((n + 1) * sizeof *stream);
            stream[0] = tokenizer_eot_id(t2);
            memcpy(stream + 1, ids, n * sizeof *ids);
            double nats = 0;
            for (size_t start = 0; start < n; start += 32) {
                int T = (int)(n - start < 32 ? n - start : 32);
                const float *logits = gpt_forward(loaded, stream + start, 1, T);
                for (int i = 0; i < T; i++) {
                    const float *row = logits + (size_t)i * V;
                    double mx = row[0], s = 0;
                    for (int v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
                    for (int v = 0; v < V; v++) s += exp(row[v] - mx);
                    nats -= row[stream[start + (size_t)i + 1]] - mx - log(s);
                }
            }
            double expect = nats / log(2.0) / (double)eval_len;
            CHECK(fabs(full.eval_file_bits_per_byte - expect) < 1e-4 * expect, "eval file: %.6f bits/byte, recomputed %.6f",
                  (double)full.eval_file_bits_per_byte, expect);
            free(stream);
        }
        free(ids);
        if (t2) tokenizer_free(t2);
        gpt_free(loaded);
    }

    // 2. Interrupted at step 20 (not a save_every multiple), then resumed: the same bits.
    tiny_config(&c, inputs, TMP("_part.bin"));
    c.stop_after = 20;
    rc = pretrain_run(&c, &part, &err);
    CHECK(rc == 0 && part.steps_done == 20, "interrupted run: rc %d, steps %d: %s", rc, part.steps_done, err.msg);
    CHECK(part.cache_rebuilt == 0, "the second run reuses the token cache");
    tiny_config(&c, inputs, TMP("_resumed.bin"));
    c.resume_path = TMP("_part.bin.state");
    rc = pretrain_run(&c, &resumed, &err);
    CHECK(rc == 0 && resumed.steps_done == 40, "resumed run: rc %d, steps %d: %s", rc, resumed.steps_done, err.msg);
    CHECK(isnan(resumed.initial_val_loss), "a resumed run does not report an initial loss");
    CHECK(files_equal(TMP("_full.bin"), TMP("_resumed.bin")), "resumed model differs from the uninterrupted one");
    CHECK(files_equal(TMP("_full.bin.state"), TMP("_resumed.bin.state")), "resumed training state differs");
    CHECK(!files_equal(TMP("_full.bin.state"), TMP("_part.bin.state")), "the mid-run state equals the final one");
    CHECK(resumed.val_loss == full.val_loss, "val loss %.8f vs %.8f", (double)resumed.val_loss, (double)full.val_loss);

    // 2b. A save killed between its two renames leaves the checkpoint one save ahead of its state
    //     (here: the final model beside the step-20 state), and killed writes leave PATH.tmp files.
    //     Resuming in place removes the temp files, rewrites the checkpoint from the state (it
    //     equals the step-20 checkpoint again before any step runs) and ends with the same bits.
    size_t ck_len, st_len;
    unsigned char *ck20 = read_file(TMP("_part.bin"), &ck_len, &err), *st20 = read_file(TMP("_part.bin.state"), &st_len, &err);
    size_t ck40_len;
    unsigned char *ck40 = read_file(TMP("_full.bin"), &ck40_len, &err);
    if (CHECK(ck20 && st20 && ck40, "read the step-20 pair and the final model: %s", err.msg)) {
        CHECK(!write_file_atomic(TMP("_pair.bin"), ck40, ck40_len, &err) && !write_file_atomic(TMP("_pair.bin.state"), st20, st_len, &err) &&
              !write_text(TMP("_pair.bin.tmp"), "trunc", 5) && !write_text(TMP("_pair.bin.state.tmp"), "trunc", 5), "write the torn pair");
        tiny_config(&c, inputs, TMP("_pair.bin"));
        c.resume_path = TMP("_pair.bin.state");
        c.stop_after = 20;   // no step: only the checks at the start run
        rc = pretrain_run(&c, &r, &err);
        size_t now_len;
        unsigned char *now = read_file(TMP("_pair.bin"), &now_len, &err);
        CHECK(rc == 0 && now && now_len == ck_len && !memcmp(now, ck20, ck_len), "torn pair: rc %d, checkpoint %s: %s", rc,
              now && now_len == ck_len && !memcmp(now, ck20, ck_len) ? "repaired" : "not the state's", err.msg);
        free(now);
        FILE *stale = fopen(TMP("_pair.bin.tmp"), "rb"), *stale_state = fopen(TMP("_pair.bin.state.tmp"), "rb");
        CHECK(!stale && !stale_state, "stale temp files removed at the start: %s %s", stale ? "OUT.tmp left" : "", stale_state ? "OUT.state.tmp left" : "");
        if (stale) fclose(stale);
        if (stale_state) fclose(stale_state);
        c.stop_after = 0;
        rc = pretrain_run(&c, &r, &err);
        CHECK(rc == 0 && files_equal(TMP("_full.bin"), TMP("_pair.bin")) && files_equal(TMP("_full.bin.state"), TMP("_pair.bin.state")),
              "resumed torn pair ends as the uninterrupted run: rc %d: %s", rc, err.msg);
    }
    free(ck20); free(st20); free(ck40);

    // 3. Damaged or mismatched training states are clean errors naming the file.
    size_t slen;
    unsigned char *state = read_file(TMP("_part.bin.state"), &slen, &err);
    if (CHECK(state != NULL, "read state: %s", err.msg)) {
        const char *bad = TMP("_bad.state");
        struct { const char *what; size_t len; size_t flip; const char *expect; } cases[] = {
            { "a flipped parameter byte", slen, slen / 2, "checksum" },
            { "a truncated file", slen - 100, 0, "bytes" },
            { "a short header", 40, 0, "truncated" },
            { "a bad magic", slen, 1, "magic" },
        };
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
            unsigned char *copy = gfn_malloc(slen);
            memcpy(copy, state, slen);
            if (cases[k].flip) copy[cases[k].flip] ^= 0x10;
            write_text(bad, (const char *)copy, cases[k].len);
            free(copy);
            tiny_config(&c, inputs, TMP("_bad.bin"));
            c.resume_path = bad;
            err.msg[0] = 0;
            rc = pretrain_run(&c, &r, &err);
            CHECK(rc != 0 && strstr(err.msg, bad) && strstr(err.msg, cases[k].expect),
                  "%s: rc %d, message '%s'", cases[k].what, rc, err.msg);
        }
        tiny_config(&c, inputs, TMP("_bad.bin"));
        c.resume_path = TMP("_part.bin.state");
        c.lr = 1e-3f;
        rc = pretrain_run(&c, &r, &err);
        CHECK(rc != 0 && strstr(err.msg, "lr"), "resume with another lr: rc %d, '%s'", rc, err.msg);
        remove(bad);
        free(state);
    }

    // 4. The token cache follows its input: a changed file rebuilds it, an unchanged one does
    //    not, a damaged cache is rebuilt; the old state no longer matches the new stream.
    size_t len2;
    char *text2 = toy_corpus(2, 130, &len2);
    CHECK(!write_text(input, text2, len2), "cannot rewrite %s", input);
    tiny_config(&c, inputs, TMP("_bad.bin"));
    c.steps = 0;
    rc = pretrain_run(&c, &r, &err);
    CHECK(rc == 0 && r.cache_rebuilt == 1 && r.num_tokens != full.num_tokens, "changed input: rc %d, rebuilt %d, %lld tokens (was %lld): %s",
          rc, r.cache_rebuilt, r.num_tokens, full.num_tokens, err.msg);
    long long tokens2 = r.num_tokens;
    rc = pretrain_run(&c, &r, &err);
    CHECK(rc == 0 && r.cache_rebuilt == 0 && r.num_tokens == tokens2, "unchanged input: rebuilt %d, %lld tokens", r.cache_rebuilt, r.num_tokens);
    size_t clen;
    unsigned char *cache = read_file(TMP(".tokens"), &clen, &err);
    if (CHECK(cache != NULL, "read cache: %s", err.msg)) {
        cache[clen - 20] ^= 1;
        write_text(TMP(".tokens"), (const char *)cache, clen);
        free(cache);
        rc = pretrain_run(&c, &r, &err);
        CHECK(rc == 0 && r.cache_rebuilt == 1 && r.num_tokens == tokens2, "damaged cache: rebuilt %d", r.cache_rebuilt);
    }
    tiny_config(&c, inputs, TMP("_bad.bin"));
    c.resume_path = TMP("_part.bin.state");
    rc = pretrain_run(&c, &r, &err);
    CHECK(rc != 0 && strstr(err.msg, "token stream"), "resume on other data: rc %d, '%s'", rc, err.msg);

    free(text); free(text2); free(eval_text);
    const char *junk[] = { TMP("_log.jsonl"), TMP("_eval.txt"), TMP(".tok"), TMP(".txt"), TMP(".tokens"), TMP("_full.bin"), TMP("_full.bin.state"),
                           TMP("_part.bin"), TMP("_part.bin.state"), TMP("_resumed.bin"), TMP("_resumed.bin.state"),
                           TMP("_bad.bin"), TMP("_bad.bin.state"), TMP("_pair.bin"), TMP("_pair.bin.state") };
    for (size_t k = 0; k < sizeof junk / sizeof *junk; k++) remove(junk[k]);
}

// ----------------------------------------------------------------------------------------------
// The corpus recipe: deterministic per seed, and nothing held out for evaluation leaks into it.

typedef struct { const char **lines; size_t n; } LineSet;

static int cmp_lines(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strcspn(x, "\n"), ly = strcspn(y, "\n"), l = lx < ly ? lx : ly;
    int c = memcmp(x, y, l);
    return c ? c : (lx > ly) - (lx < ly);
}

// The lines of text (each ends at '\n'), sorted for bsearch.
static LineSet line_set(const char *text, size_t len) {
    LineSet s = {0};
    size_t cap = 1024;
    s.lines = gfn_malloc(cap * sizeof *s.lines);
    for (size_t pos = 0; pos < len;) {
        if (s.n == cap) { cap *= 2; s.lines = realloc(s.lines, cap * sizeof *s.lines); }
        s.lines[s.n++] = text + pos;
        const char *nl = memchr(text + pos, '\n', len - pos);
        pos = nl ? (size_t)(nl - text) + 1 : len;
    }
    qsort(s.lines, s.n, sizeof *s.lines, cmp_lines);
    return s;
}

// Is `line` (n bytes, no newline) one of the set's lines?
static int line_in(const LineSet *s, const char *line, size_t n) {
    char *key = gfn_malloc(n + 2);
    memcpy(key, line, n);
    key[n] = '\n'; key[n + 1] = 0;
    const char *k = key;
    int found = bsearch(&k, s->lines, s->n, sizeof *s->lines, cmp_lines) != NULL;
    free(key);
    return found;
}

static char *data_file(const char *dir, const char *name, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    GfnError err;
    return (char *)read_file(path, len, &err);
}

// The corpus builder refuses an arithmetic test file that is not a JSON array (an object's
// questions would silently not be held out). A fake data folder holds every file corpus_build
// reads, each tiny: whole, it builds; with one test file a JSON object, it fails naming that file
// and writes nothing.
static void test_corpus_test_file_object(void) {
    const char *dir = test_path("corpus_fake"), *out = TMP("_fake_corpus.txt");
    static const char *const folders[] = { "", "/corpora", "/stories", "/openwebtext", "/subj", "/arithmetic" };
    static const struct { const char *name, *text; } files[] = {
        { "corpora/brown.txt", "The jury said , `` no evidence '' .\n" },
        { "corpora/tinyshakespeare.txt", "First Citizen:\nBefore we proceed any further, hear me speak.\n" },
        { "stories/tinystories_excerpt.txt", "Once upon a time there was a cat.\n" },
        { "stories/roc_valid.json", "[\"One.\", \"Two.\"]\n" },
        { "openwebtext/prompts.txt", "A prompt.\n" },
        { "subj/train.jsonl", "{\"text\": \"a sentence\", \"label\": 0}\n" },
        { "arithmetic/1digit_3_op+-_test.json", "[{\"str_query\": \"Question: 1 + 2 - 3 = ? Answer:\"}]" },
        { "arithmetic/1digit_4_op+-_test.json", "[]" },
        { "arithmetic/1digit_5_op+-_test.json", "[]" },
        { "arithmetic/1digit_34_op+-_test.json", "[]" },
    };
    GfnError err = {{0}};
    char path[1024];
    int ok = 1;
    for (size_t i = 0; i < sizeof folders / sizeof *folders; i++) {
        snprintf(path, sizeof path, "%s%s", dir, folders[i]);
        ok &= mkdir(path, 0755) == 0;
    }
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        ok &= write_file_atomic(path, files[i].text, strlen(files[i].text), &err) == 0;
    }
    if (!CHECK(ok, "could not write the fake data folder %s", dir)) return;
    size_t bytes;
    CHECK(corpus_build(dir, out, 1, &bytes, &err) == 0 && bytes > 0, "the fake data folder builds: %s", err.msg);
    remove(out);
    snprintf(path, sizeof path, "%s/arithmetic/1digit_4_op+-_test.json", dir);
    const char *object = "{\"str_query\": \"Question: 1 + 2 - 3 - 4 = ? Answer:\", \"num_sol\": -4}";
    write_file_atomic(path, object, strlen(object), &err);
    err.msg[0] = 0;
    int rc = corpus_build(dir, out, 1, NULL, &err);
    FILE *f = fopen(out, "rb");
    CHECK(rc != 0 && strstr(err.msg, "1digit_4_op+-_test.json") && strstr(err.msg, "JSON array") && !f,
          "a test file that is a JSON object: rc %d, '%s', output %s", rc, err.msg, f ? "written" : "absent");
    if (f) fclose(f);
}

void test_corpus(void) {
    test_corpus_test_file_object();   // needs no shared data
    const char *dir = test_data_dir();
    if (!dir) { test_skip("corpus", "no shared data (set GFN_DATA or run make data)"); return; }
    GfnError err = {{0}};
    size_t bytes;
    int rc = corpus_build(dir, TMP("_corpus.txt"), 1, &bytes, &err);
    if (!CHECK(rc == 0, "corpus_build: %s", err.msg)) return;
    CHECK(!corpus_build(dir, TMP("_corpus2.txt"), 1, NULL, &err) && files_equal(TMP("_corpus.txt"), TMP("_corpus2.txt")),
          "the same seed gives the same corpus");
    CHECK(!corpus_build(dir, TMP("_corpus2.txt"), 2, NULL, &err) && !files_equal(TMP("_corpus.txt"), TMP("_corpus2.txt")),
          "another seed gives other arithmetic");
    size_t len, n;
    char *corpus = (char *)read_file(TMP("_corpus.txt"), &len, &err);
    if (!CHECK(corpus && len == bytes && bytes > 10000000, "corpus of %zu bytes", bytes)) { free(corpus); return; }
    LineSet lines = line_set(corpus, len);

    // Story Cloze: none of its 1571 stories.
    char *text = data_file(dir, "stories/storycloze_val_5sent.txt", &n);
    int leaked = 0, total = 0;
    for (size_t pos = 0; text && pos < n; total++) {
        size_t l = strcspn(text + pos, "\n");
        leaked += line_in(&lines, text + pos, l);
        pos += l + 1;
    }
    CHECK(text && total > 1500 && leaked == 0, "%d of %d Story Cloze stories in the corpus", leaked, total);
    free(text);

    // ROCStories: rows 0..99 held out, the others in (one story a line).
    text = data_file(dir, "stories/roc_valid.json", &n);
    int held = 0, kept = 0, row = 0;
    for (size_t pos = 0; text && pos < n; row++) {
        size_t l = strcspn(text + pos, "\n");
        Json *story = json_parse(text + pos, l, "roc", &err);
        Json *s = json_at(story, 0);
        if (s && story->len == 1) {
            int in = line_in(&lines, s->string, s->len);
            if (row < 100) held += !in; else kept += in;
        }
        json_free(story);
        pos += l + 1;
    }
    CHECK(held == 100 && kept == row - 100, "ROC: %d of rows 0-99 held out, %d of %d later rows kept", held, kept, row - 100);
    free(text);

    // OpenWebText: the first 1000 prompts held out (even where a later line repeats one).
    text = data_file(dir, "openwebtext/prompts.txt", &n);
    leaked = 0; kept = 0; row = 0;
    for (size_t pos = 0; text && pos < n; row++) {
        size_t l = strcspn(text + pos, "\n"), t = l;
        while (t && text[pos + t - 1] == ' ') t--;
        int in = line_in(&lines, text + pos, t);
        if (row < 1000) leaked += in; else kept += in;
        pos += l + 1;
    }
    CHECK(leaked == 0 && kept > 8900, "OpenWebText: %d of the first 1000 prompts leaked; %d later ones kept", leaked, kept);
    free(text);

    // SUBJ: nothing of test.jsonl; train.jsonl's texts are in.
    const char *subj[2] = { "subj/test.jsonl", "subj/train.jsonl" };
    int found[2] = {0, 0}, rows[2] = {0, 0};
    for (int f = 0; f < 2; f++) {
        text = data_file(dir, subj[f], &n);
        for (size_t pos = 0; text && pos < n;) {
            size_t l = strcspn(text + pos, "\n");
            Json *r = json_parse(text + pos, l, subj[f], &err);
            Json *s = json_get(r, "text");
            if (s) { found[f] += line_in(&lines, s->string, s->len); rows[f]++; }
            json_free(r);
            pos += l + 1;
        }
        free(text);
    }
    CHECK(rows[0] == 2000 && found[0] == 0, "SUBJ: %d of %d test sentences in the corpus", found[0], rows[0]);
    CHECK(rows[1] == 8000 && found[1] == 8000, "SUBJ: %d of %d train sentences in the corpus", found[1], rows[1]);

    // Arithmetic: 40000 worked chains of 2 to 7 operands in four surface forms, a quarter each (3
    // operands a little under their 20 %: many of them are test questions, held out),
    // every step and result right, never the task's own format, never a test question.
    const char *tests[4] = { "arithmetic/1digit_3_op+-_test.json", "arithmetic/1digit_4_op+-_test.json",
                             "arithmetic/1digit_5_op+-_test.json", "arithmetic/1digit_34_op+-_test.json" };
    LineSet test_exprs = {0};   // "9 + 4 - 7\n" of every test query "Question: 9 + 4 - 7 = ? Answer:"
    char *exprs = gfn_malloc(4 * 500 * 40);
    size_t elen = 0;
    for (int f = 0; f < 4; f++) {
        text = data_file(dir, tests[f], &n);
        Json *root = text ? json_parse(text, n, tests[f], &err) : NULL;
        for (size_t i = 0; root && i < root->len; i++) {
            Json *q = json_get(json_at(root, i), "str_query");
            if (q && q->len > 22 && q->len - 22 < 38 && !strncmp(q->string, "Question: ", 10)) {
                memcpy(exprs + elen, q->string + 10, q->len - 22);   // drop " = ? Answer:"
                elen += q->len - 22;
                exprs[elen++] = '\n';
            }
        }
        CHECK(root && root->len == 500, "%s: %zu questions", tests[f], root ? root->len : 0);
        json_free(root);
        free(text);
    }
    test_exprs = line_set(exprs, elen);
    CHECK(test_exprs.n == 2000, "%zu test expressions", test_exprs.n);

    static const char *const form_start[4] = { "Work out ", "Q: What is ", "Problem: ", "Compute " };
    static const char *const form_mid[4] = { ". Steps: ", "? A: ", " = ? Work: ", ".\n" };
    static const char *const form_end[4] = { ". Result: ", ", so it is ", ". Total: ", "\nSo " };
    int chains = 0, wrong = 0, by_form[4] = {0}, by_operands[9] = {0};
    leaked = 0;
    for (size_t pos = 0; pos < len;) {
        size_t l = strcspn(corpus + pos, "\n");
        const char *line = corpus + pos;
        pos += l + 1;
        int form = -1;
        for (int f = 0; f < 4; f++)
            if (!strncmp(line, form_start[f], strlen(form_start[f])) && line[strlen(form_start[f])] >= '0' &&
                line[strlen(form_start[f])] <= '9') form = f;
        if (form < 0) continue;
        // The expression: digits joined by " + " / " - ", evaluated left to right.
        const char *p = line + strlen(form_start[form]), *expr = p;
        int operand[16], n_ops = 0;
        char op[16];
        operand[n_ops++] = *p++ - '0';
        while (n_ops < 16 && p[0] == ' ' && (p[1] == '+' || p[1] == '-') && p[2] == ' ' && p[3] >= '0' && p[3] <= '9') {
            op[n_ops - 1] = p[1];
            operand[n_ops++] = p[3] - '0';
            p += 4;
        }
        size_t expr_len = (size_t)(p - expr);
        leaked += line_in(&test_exprs, expr, expr_len);
        int bad = strncmp(p, form_mid[form], strlen(form_mid[form])) != 0;
        p += strlen(form_mid[form]);
        // The steps "a op b = v", a the running value, b the next operand; ", " or a line apart.
        int value = operand[0];
        for (int k = 1; k < n_ops && !bad; k++) {
            char *end;
            long a = strtol(p, &end, 10);
            if (end == p || end[0] != ' ' || end[1] != op[k - 1] || end[2] != ' ') { bad = 1; break; }
            long b = strtol(end + 3, &end, 10);
            if (strncmp(end, " = ", 3)) { bad = 1; break; }
            long v = strtol(end + 3, &end, 10);
            int next = op[k - 1] == '+' ? value + operand[k] : value - operand[k];
            bad |= a != value || b != operand[k] || v != next;
            value = next;
            p = end;
            if (k + 1 < n_ops) {
                const char *sep = form == 3 ? "\n" : ", ";
                bad |= strncmp(p, sep, strlen(sep)) != 0;
                p += strlen(sep);
            }
        }
        // The result: restated (the ledger restates the expression too).
        if (!bad && strncmp(p, form_end[form], strlen(form_end[form]))) bad = 1;
        p += strlen(form_end[form]);
        if (!bad && form == 3) { bad = strncmp(p, expr, expr_len) || strncmp(p + expr_len, " = ", 3); p += expr_len + 3; }
        if (!bad) { char *end; bad = strtol(p, &end, 10) != value || strncmp(end, ".\n", 2); }
        chains++;
        wrong += bad;
        by_form[form]++;
        by_operands[n_ops < 9 ? n_ops : 8]++;
    }
    CHECK(chains == 40000 && wrong == 0, "%d arithmetic chains, %d malformed or with a wrong step or result", chains, wrong);
    CHECK(by_form[0] > 9000 && by_form[1] > 9000 && by_form[2] > 9000 && by_form[3] > 9000,
          "chains by form: %d %d %d %d", by_form[0], by_form[1], by_form[2], by_form[3]);
    CHECK(by_operands[2] > 3000 && by_operands[3] > 6000 && by_operands[4] > 7000 && by_operands[5] > 7000 &&
          by_operands[6] > 5000 && by_operands[7] > 5000 && by_operands[1] + by_operands[8] == 0,
          "chains by operand count 2..7: %d %d %d %d %d %d, other %d", by_operands[2], by_operands[3], by_operands[4],
          by_operands[5], by_operands[6], by_operands[7], by_operands[1] + by_operands[8]);
    CHECK(leaked == 0, "%d chains work a test question", leaked);
    int numeric_answers = 0;   // "The answer is" occurs in prose; never before a number
    for (const char *a = strstr(corpus, "The answer is "); a; a = strstr(a + 1, "The answer is "))
        numeric_answers += (a[14] >= '0' && a[14] <= '9') || (a[14] == '-' && a[15] >= '0' && a[15] <= '9');
    CHECK(!strstr(corpus, "= ? Answer:") && numeric_answers == 0,
          "the task's own format (\"Question: ... = ? Answer: ... The answer is N.\") is not in the corpus (%d numeric answers)",
          numeric_answers);
    free(test_exprs.lines);
    free(exprs);

    free(lines.lines);
    free(corpus);
    remove(TMP("_corpus.txt")); remove(TMP("_corpus2.txt"));
}
