// gfn.c — GFlowNet objectives, sampler, training loop and the command line.
#include "gfn.h"

#include <stdlib.h>
#include <string.h>

#ifndef GFN_NO_MAIN
static void usage(FILE *out) {
    fprintf(out,
        "usage: gfn COMMAND [options]   (gfn COMMAND --help for each)\n"
        "commands:\n"
        "  tokenize      encode standard input line by line with a tokenizer (or --decode ids)\n"
        "  tokenizer     tokenizer train: learn a byte-level BPE vocabulary from text files\n"
        "  score   log-probabilities of token-id sequences under a model (and adapter)\n");
}

// ----------------------------------------------------------------------------------------------
// Tokenizer commands

// Reads one line of f (without its '\n') into a growing buffer; returns 0 at end of input.
static int read_line(FILE *f, char **buf, size_t *cap, size_t *len) {
    size_t n = 0;
    int c = EOF;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n + 1 >= *cap) {
            *cap = *cap ? 2 * *cap : 4096;
            char *grown = realloc(*buf, *cap);
            if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
            *buf = grown;
        }
        (*buf)[n++] = (char)c;
    }
    *len = n;
    return !(c == EOF && n == 0);
}

static int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL;
    int decode = 0, special = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { tok_path = NULL; decode = -1; break; }
        else { fprintf(stderr, "gfn tokenize: unknown option '%s' (see gfn tokenize --help)\n", argv[i]); return 1; }
    }
    if (!tok_path) {
        fprintf(decode < 0 ? stdout : stderr,
            "usage: gfn tokenize -t TOKENIZER [--decode] [--special] < input\n"
            "  Encodes each line of standard input (without its newline) and prints its ids,\n"
            "  space-separated, one line per input line.\n"
            "  -t PATH     our tokenizer file, or a directory with GPT-2's encoder.json + vocab.bpe\n"
            "              (or vocab.json + merges.txt)\n"
            "  --decode    the reverse: each input line of ids becomes its text line\n"
            "  --special   encode the text <|endoftext|> as the special token\n");
        return decode < 0 ? 0 : 1;
    }
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_load(tok_path, &err);
    if (!tok) { fprintf(stderr, "gfn tokenize: %s\n", err.msg); return 1; }
    char *line = NULL;
    size_t cap = 0, len, line_no = 0;
    int status = 0;
    int *ids = NULL;
    size_t ids_cap = 0;
    while (status == 0 && read_line(stdin, &line, &cap, &len)) {
        line_no++;
        if (!decode) {
            size_t n;
            int *out = tokenizer_encode(tok, line ? line : "", len, special, &n);
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", out[i]);
            putchar('\n');
            free(out);
            continue;
        }
        size_t n = 0;
        for (size_t i = 0; i < len && status == 0;) {
            if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') { i++; continue; }
            long v = 0;
            size_t j = i;
            while (j < len && line[j] >= '0' && line[j] <= '9' && v <= 100000000) v = v * 10 + (line[j++] - '0');
            if (j == i || (j < len && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') || v >= tokenizer_vocab_size(tok)) {
                fprintf(stderr, "gfn tokenize: standard input line %zu: '%.*s' is not a token id in [0, %d)\n",
                        line_no, (int)(j > i ? j - i : 1), line + i, tokenizer_vocab_size(tok));
                status = 1;
                break;
            }
            if (n == ids_cap) {
                ids_cap = ids_cap ? 2 * ids_cap : 256;
                int *grown = realloc(ids, ids_cap * sizeof(int));
                if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
                ids = grown;
            }
            ids[n++] = (int)v;
            i = j;
        }
        if (status) break;
        size_t text_len;
        char *text = tokenizer_decode(tok, ids, n, &text_len, &err);
        if (!text) { fprintf(stderr, "gfn tokenize: standard input line %zu: %s\n", line_no, err.msg); status = 1; break; }
        fwrite(text, 1, text_len, stdout);
        putchar('\n');
        free(text);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) { fprintf(stderr, "gfn tokenize: error writing standard output\n"); status = 1; }
    free(line); free(ids);
    tokenizer_free(tok);
    return status;
}

static int cmd_tokenizer(int argc, char **argv) {
    const char *out_path = NULL;
    const char **inputs = gfn_calloc((size_t)argc, sizeof(char *));
    int num_inputs = 0, vocab_size = 0, help = argc < 3 || strcmp(argv[2], "train") != 0;
    for (int i = 3; i < argc && !help; i++) {
        if (!strcmp(argv[i], "-i")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') inputs[num_inputs++] = argv[++i];
        } else if (!strcmp(argv[i], "-V") && i + 1 < argc) vocab_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) help = 2;
        else { fprintf(stderr, "gfn tokenizer train: unknown option '%s' (see gfn tokenizer --help)\n", argv[i]); free(inputs); return 1; }
    }
    if (help || !out_path || num_inputs == 0 || vocab_size == 0) {
        int asked = help == 2 || (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")));
        fprintf(asked ? stdout : stderr,
            "usage: gfn tokenizer train -i FILE... -V SIZE -o OUT\n"
            "  Learns a byte-level BPE vocabulary of SIZE ids (256 bytes + SIZE - 257 merges +\n"
            "  <|endoftext|>) from the text files, with GPT-2's pre-tokenisation; ties go to the\n"
            "  smallest (left id, right id), so the same files give the same OUT byte for byte.\n"
            "  OUT is written atomically (OUT.tmp, then renamed).\n");
        free(inputs);
        return asked ? 0 : 1;
    }
    GfnError err = { { 0 } };
    Tokenizer *tok = tokenizer_train(inputs, num_inputs, vocab_size, &err);
    free(inputs);
    if (!tok) { fprintf(stderr, "gfn tokenizer train: %s\n", err.msg); return 1; }
    int rc = tokenizer_save(tok, out_path, &err);
    if (rc) fprintf(stderr, "gfn tokenizer train: %s\n", err.msg);
    else printf("%s: %d ids (%d merges)\n", out_path, tokenizer_vocab_size(tok), tokenizer_vocab_size(tok) - 257);
    tokenizer_free(tok);
    return rc;
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
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(argv[1], "tokenizer")) return cmd_tokenizer(argc, argv);
    if (!strcmp(argv[1], "score")) return cmd_score(argc, argv);
    fprintf(stderr, "gfn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
#endif
