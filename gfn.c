// gfn.c — GFlowNet objectives, sampler, training loop and the command line.
#include "gfn.h"

#include <stdlib.h>
#include <string.h>

#ifndef GFN_NO_MAIN
static void usage(FILE *out) {
    fprintf(out,
        "usage: gfn COMMAND [options]   (gfn COMMAND --help for each)\n"
        "commands:\n"
        "  score   log-probabilities of token-id sequences under a model (and adapter)\n");
}

// ----------------------------------------------------------------------------------------------
// gfn score: per-token log-probabilities, as HF's GPT2LMHeadModel computes them.

static void score_usage(FILE *out) {
    fprintf(out,
        "usage: gfn score -m MODEL [-a ADAPTER] --ids FILE\n"
        "Scores each sequence of FILE under the model: for a line of T token ids it prints\n"
        "  loss X                      the mean of -log p(id[t+1] | id[0..t]) over t = 0..T-2\n"
        "  logprobs v1 ... v(T-1)      each log p(id[t+1] | id[0..t]), 9 significant digits\n"
        "options:\n"
        "  -m, --model MODEL      a gfn checkpoint file, or an HF GPT-2 directory\n"
        "                         (config.json + model.safetensors)\n"
        "  -a, --adapter ADAPTER  a LoRA adapter applied on top (our file, or a PEFT directory)\n"
        "  --ids FILE             one sequence per line: at least 2 whitespace-separated token ids,\n"
        "                         each in [0, vocab size), at most the model's context length;\n"
        "                         blank lines are skipped\n"
        "  -h, --help             this help\n");
}

// The lines of an ids file, parsed and checked against the model before anything is scored.
typedef struct { int *ids; int len; } IdLine;

static IdLine *read_id_lines(const char *path, GPTConfig config, int *count, GfnError *err) {
    size_t size;
    char *text = (char *)read_file(path, &size, err);
    if (!text) return NULL;
    IdLine *lines = NULL;
    int n = 0, cap = 0, line_no = 0, failed = 0;
    char *p = text, *end = text + size;
    while (p < end && !failed) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line_no++;
        int len = 0, ids_cap = 16;
        int *ids = gfn_malloc((size_t)ids_cap * sizeof(int));
        char *q = p;
        for (;;) {
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            if (q >= eol) break;
            char *tok_end = q;
            while (tok_end < eol && *tok_end != ' ' && *tok_end != '\t' && *tok_end != '\r') tok_end++;
            long v = 0;
            int digits = 0, overflow = 0;
            for (char *c = q; c < tok_end; c++) {
                if (*c < '0' || *c > '9') { digits = -1; break; }
                v = v * 10 + (*c - '0');
                overflow |= v > 1000000000L;
                digits++;
            }
            if (digits <= 0) {
                gfn_error_set(err, "%s: line %d: '%.*s' is not a token id (a non-negative integer)", path, line_no,
                              (int)(tok_end - q > 40 ? 40 : tok_end - q), q);
                failed = 1; break;
            }
            if (overflow || v >= config.vocab_size) {
                gfn_error_set(err, "%s: line %d: token id %.*s is outside the vocabulary [0, %d)", path, line_no,
                              (int)(tok_end - q > 40 ? 40 : tok_end - q), q, config.vocab_size);
                failed = 1; break;
            }
            if (len == config.max_seq_len) {
                gfn_error_set(err, "%s: line %d: more than the model's context length of %d tokens", path,
                              line_no, config.max_seq_len);
                failed = 1; break;
            }
            if (len == ids_cap) { ids_cap *= 2; ids = realloc(ids, (size_t)ids_cap * sizeof(int)); if (!ids) { fprintf(stderr, "gfn: out of memory\n"); exit(1); } }
            ids[len++] = (int)v;
            q = tok_end;
        }
        if (!failed && len == 1) {
            gfn_error_set(err, "%s: line %d: one token id; scoring needs at least 2", path, line_no);
            failed = 1;
        }
        if (failed || len == 0) { free(ids); p = eol + 1; continue; }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            lines = realloc(lines, (size_t)cap * sizeof(IdLine));
            if (!lines) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        }
        lines[n].ids = ids;
        lines[n].len = len;
        n++;
        p = eol + 1;
    }
    free(text);
    if (!failed && n == 0) { gfn_error_set(err, "%s: no token ids in the file", path); failed = 1; }
    if (failed) {
        for (int i = 0; i < n; i++) free(lines[i].ids);
        free(lines);
        return NULL;
    }
    *count = n;
    return lines;
}

static int cmd_score(int argc, char **argv) {
    const char *model_path = NULL, *adapter_path = NULL, *ids_path = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { score_usage(stdout); return 0; }
        const char **slot = !strcmp(a, "-m") || !strcmp(a, "--model") ? &model_path
                          : !strcmp(a, "-a") || !strcmp(a, "--adapter") ? &adapter_path
                          : !strcmp(a, "--ids") ? &ids_path : NULL;
        if (!slot) { fprintf(stderr, "gfn score: unknown option '%s'\n", a); score_usage(stderr); return 1; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn score: %s needs a value\n", a); return 1; }
        *slot = argv[++i];
    }
    if (!model_path || !ids_path) { fprintf(stderr, "gfn score: -m MODEL and --ids FILE are required\n"); score_usage(stderr); return 1; }
    GfnError err;
    GPT *model = gpt_load(model_path, &err);
    if (!model) { fprintf(stderr, "gfn score: %s\n", err.msg); return 1; }
    if (adapter_path) {
#ifdef GFN_HAVE_LORA_IO   // TEMPORARY: lora_load comes with the adapter work; then drop this guard
        if (lora_load(model, adapter_path, &err)) { fprintf(stderr, "gfn score: %s\n", err.msg); gpt_free(model); return 1; }
#else
        fprintf(stderr, "gfn score: %s: adapter loading (lora_load) is not built into this binary\n", adapter_path);
        gpt_free(model);
        return 1;
#endif
    }
    int count = 0;
    IdLine *lines = read_id_lines(ids_path, gpt_config(model), &count, &err);
    if (!lines) { fprintf(stderr, "gfn score: %s\n", err.msg); gpt_free(model); return 1; }
    for (int i = 0; i < count; i++) {
        int T = lines[i].len;
        int *targets = gfn_malloc((size_t)T * sizeof(int));
        float *logprobs = gfn_malloc((size_t)T * sizeof(float));
        for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? lines[i].ids[t + 1] : -1;
        gpt_forward(model, lines[i].ids, 1, T);
        float loss = gpt_cross_entropy(model, targets, logprobs, NULL);
        printf("loss %.9g\nlogprobs", loss);
        for (int t = 0; t + 1 < T; t++) printf(" %.9g", logprobs[t]);
        printf("\n");
        free(targets);
        free(logprobs);
        free(lines[i].ids);
    }
    free(lines);
    gpt_free(model);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "score")) return cmd_score(argc, argv);
    fprintf(stderr, "gfn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
#endif
