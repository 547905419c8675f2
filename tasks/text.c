// tasks/text.c — what the text tasks (continuation, infill, subj) share: the base model and its
// tokenizer, text to tokens and back, the allowed-token mask of a sentence, the base model's
// log-likelihood of context + Z + suffix for every prefix of Z (the per-prefix reward), and the
// evaluation's sampling of k trajectories per query.
#include "../gfn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int text_task_load(Task *task, const TaskOptions *opt, Tokenizer **tok, GfnError *err) {
    const char *model_path = opt->model_path && *opt->model_path ? opt->model_path : "weights/base.ckpt";
    const char *tok_path = opt->tokenizer_path && *opt->tokenizer_path ? opt->tokenizer_path : "weights/tokenizer.bin";
    *tok = tokenizer_load(tok_path, err);
    if (!*tok) return 1;
    task->base = gpt_load(model_path, err);
    if (!task->base) return 1;
    if (tokenizer_vocab_size(*tok) > gpt_config(task->base).vocab_size) {
        gfn_error_set(err, "%s: %d token ids, more than the %d of the model %s", tok_path, tokenizer_vocab_size(*tok),
                      gpt_config(task->base).vocab_size, model_path);
        return 1;
    }
    return 0;
}

void text_task_release(Task *task) {
    free(task->demos);
    task->demos = NULL;
    task->num_demos = 0;
    free(task->allowed);
    task->allowed = NULL;
    if (task->base) gpt_free(task->base);
    task->base = NULL;
}

const char *text_task_data_dir(const TaskOptions *opt, const char *task_name, GfnError *err) {
    if (opt->data_path && *opt->data_path) return opt->data_path;
    const char *dir = gfn_data_dir();
    if (!dir) gfn_error_set(err, "%s: no data folder (--data DIR, $GFN_DATA, ./data or ../shared/data)", task_name);
    return dir;
}

int *text_encode(const Tokenizer *tok, const char *text, int after_eot, int *len) {
    size_t n;
    int *ids = tokenizer_encode(tok, text, strlen(text), 0, &n);
    if (!after_eot) { *len = (int)n; return ids; }
    int *out = gfn_malloc(sizeof(int) * (n + 1));   // (1 + n): end-of-text, then the text
    out[0] = tokenizer_eot_id(tok);
    memcpy(out + 1, ids, sizeof(int) * n);
    free(ids);
    *len = (int)n + 1;
    return out;
}

size_t text_of_tokens(const Tokenizer *tok, const int *tokens, int n, char *buf, size_t cap) {
    size_t len = 0;
    if (cap == 0) return 0;
    for (int k = 0; k < n; k++) {
        size_t bl;
        const unsigned char *b = tokenizer_token_bytes(tok, tokens[k], &bl);
        for (size_t j = 0; j < bl && len + 1 < cap; j++) buf[len++] = (char)b[j];
    }
    buf[len] = 0;
    return len;
}

unsigned char *text_allowed_mask(const Tokenizer *tok, int V, const char *banned, int terminator) {
    unsigned char *allowed = gfn_calloc((size_t)V, 1);   // (V)
    int eot = tokenizer_eot_id(tok);
    for (int v = 0; v < V && v < tokenizer_vocab_size(tok); v++) {
        size_t bl;
        const unsigned char *b = tokenizer_token_bytes(tok, v, &bl);
        int ok = bl > 0 && v != eot;
        for (size_t j = 0; j < bl && ok; j++) ok = b[j] == 0 || !strchr(banned, b[j]);
        allowed[v] = (unsigned char)ok;
    }
    allowed[terminator] = 1;
    return allowed;
}

// ----------------------------------------------------------------------------------------------
// The base model's log-likelihood of every prefix of Z followed by the suffix.
//
// Row r is C Z Y (context, Z, suffix). In one forward of C Z, the logits at C's last token and at
// each Z token give log p(z_k | C z_<k) and log p(Y_1 | C z_≤i) for every state i at once. When Y
// has more tokens (infilling's " s5"), each state i then gets a scratch row of the KV cache
// holding a copy of row r's first |C| + i positions, and is fed Y_1..Y_{m-1} to score Y_2..Y_m:
// one decode per Y token per state instead of a forward of the whole text per state.

enum { SCORER_CHUNK = 64 };   // states whose suffix is scored together (scratch rows)

void prefix_scorer_free(PrefixScorer *s) {
    kv_cache_free(s->cache);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

double logits_normaliser(const float *logits, const unsigned char *mask, int V) {
    float max = -INFINITY;
    for (int v = 0; v < V; v++) if ((!mask || mask[v]) && logits[v] > max) max = logits[v];
    double sum = 0;
    for (int v = 0; v < V; v++) if (!mask || mask[v]) sum += exp((double)logits[v] - max);
    return max + log(sum);
}

static double masked_logp(const float *logits, const unsigned char *mask, int token, double norm) {
    return mask && !mask[token] ? -INFINITY : logits[token] - norm;
}

// The padded batch C Z (with Y too when with_y) of every row: inputs (n, T), T in *T_out.
static int *score_inputs(const ScoredText *rows, int n, int with_y, int *T_out) {
    int T = 1;
    for (int r = 0; r < n; r++) {
        int len = rows[r].ctx_len + rows[r].z_len + (with_y ? rows[r].y_len : 0);
        if (len > T) T = len;
    }
    int *inputs = gfn_calloc((size_t)n * T, sizeof(int));   // (n, T) right-padded with id 0
    for (int r = 0; r < n; r++) {
        int *row = inputs + (size_t)r * T;
        memcpy(row, rows[r].ctx, sizeof(int) * (size_t)rows[r].ctx_len);
        memcpy(row + rows[r].ctx_len, rows[r].z, sizeof(int) * (size_t)rows[r].z_len);
        if (with_y) memcpy(row + rows[r].ctx_len + rows[r].z_len, rows[r].y, sizeof(int) * (size_t)rows[r].y_len);
    }
    *T_out = T;
    return inputs;
}

static void check_context(GPT *base, const ScoredText *rows, int n) {
    for (int r = 0; r < n; r++) {
        int len = rows[r].ctx_len + rows[r].z_len + rows[r].y_len;
        if (rows[r].ctx_len < 1 || rows[r].y_len < 1 || len > gpt_config(base).max_seq_len) {
            fprintf(stderr, "gfn: a scored text of %d + %d + %d tokens: want a context and a suffix, at most %d in all\n",
                    rows[r].ctx_len, rows[r].z_len, rows[r].y_len, gpt_config(base).max_seq_len);
            exit(1);
        }
    }
}

void log_p_every_prefix(GPT *base, PrefixScorer *s, const ScoredText *rows, int n, const unsigned char *mask,
                        float *out, int stride) {
    check_context(base, rows, n);
    int V = gpt_config(base).vocab_size, longest_y = 1, T;
    for (int r = 0; r < n; r++) if (rows[r].y_len > longest_y) longest_y = rows[r].y_len;
    int *inputs = score_inputs(rows, n, 0, &T);
    const float *logits;
    if (longest_y == 1) logits = gpt_forward(base, inputs, n, T);   // no suffix pass: no cache needed
    else {
        int need_len = T + longest_y, maxT = gpt_config(base).max_seq_len;
        if (need_len > maxT) need_len = maxT;   // every row fits (check_context); kv_cache_new caps there too
        if (!s->cache || s->rows < n + SCORER_CHUNK || s->len < need_len) {
            prefix_scorer_free(s);
            s->rows = n + SCORER_CHUNK;
            s->len = need_len;
            s->cache = kv_cache_new(base, s->rows, s->len);
            s->logits = gfn_malloc(sizeof(float) * (size_t)s->rows * V);   // (rows, V)
        }
        logits = gpt_prefill(base, s->cache, inputs, n, T);
    }
    // Pass 1: Z and Y_1 from the one forward.
    for (int r = 0; r < n; r++) {
        const ScoredText *x = &rows[r];
        double prefix = 0;
        for (int i = 0; i <= x->z_len; i++) {
            const float *lg = logits + ((size_t)r * T + x->ctx_len + i - 1) * V;   // state i: C z_≤i
            double norm = logits_normaliser(lg, mask, V);
            out[(size_t)r * stride + i] = (float)(prefix + masked_logp(lg, mask, x->y[0], norm));
            if (i < x->z_len) prefix += masked_logp(lg, mask, x->z[i], norm);
        }
    }
    free(inputs);
    if (longest_y == 1) return;
    // Pass 2: Y_2..Y_m after every state, SCORER_CHUNK states at a time in rows n.. of the cache.
    int total = 0;
    for (int r = 0; r < n; r++) total += rows[r].z_len + 1;
    int *who = gfn_malloc(sizeof(int) * 2 * (size_t)total);   // (total, 2) row and state
    for (int r = 0, k = 0; r < n; r++) for (int i = 0; i <= rows[r].z_len; i++, k++) { who[2 * k] = r; who[2 * k + 1] = i; }
    int *feed = gfn_malloc(sizeof(int) * (size_t)s->rows), *pos = gfn_malloc(sizeof(int) * (size_t)s->rows);   // (rows)
    double *suffix = gfn_malloc(sizeof(double) * SCORER_CHUNK);   // (chunk) log p(Y_2..Y_m | C z_≤i Y_1)
    for (int start = 0; start < total; start += SCORER_CHUNK) {
        int m = total - start < SCORER_CHUNK ? total - start : SCORER_CHUNK;
        for (int c = 0; c < m; c++) {
            const ScoredText *x = &rows[who[2 * (start + c)]];
            kv_cache_copy_row(s->cache, n + c, who[2 * (start + c)], x->ctx_len + who[2 * (start + c) + 1]);
            suffix[c] = 0;
        }
        for (int k = 0; k + 1 < longest_y; k++) {   // feed Y_{k+1}, score Y_{k+2}
            for (int b = 0; b < s->rows; b++) feed[b] = -1;
            for (int c = 0; c < m; c++) {
                const ScoredText *x = &rows[who[2 * (start + c)]];
                if (k + 1 >= x->y_len) continue;
                feed[n + c] = x->y[k];
                pos[n + c] = x->ctx_len + who[2 * (start + c) + 1] + k;
            }
            gpt_decode_step(base, s->cache, feed, pos, s->logits);
            for (int c = 0; c < m; c++) {
                if (feed[n + c] < 0) continue;
                const float *lg = s->logits + (size_t)(n + c) * V;
                suffix[c] += lg[rows[who[2 * (start + c)]].y[k + 1]] - logits_normaliser(lg, NULL, V);
            }
        }
        for (int c = 0; c < m; c++) {
            float *o = &out[(size_t)who[2 * (start + c)] * stride + who[2 * (start + c) + 1]];
            *o = (float)(*o + suffix[c]);
        }
    }
    free(who); free(feed); free(pos); free(suffix);
}

void text_log_reward(GPT *base, PrefixScorer *s, const ScoredText *rows, Traj *const *t, int n, const unsigned char *mask) {
    int stride = 1;
    for (int r = 0; r < n; r++) if (t[r]->nact + 1 > stride) stride = t[r]->nact + 1;
    float *out = gfn_malloc(sizeof(float) * (size_t)n * stride);   // (n, stride)
    log_p_every_prefix(base, s, rows, n, mask, out, stride);
    for (int r = 0; r < n; r++) memcpy(t[r]->log_r, out + (size_t)r * stride, sizeof(float) * (size_t)(t[r]->nact + 1));
    free(out);
}

void log_p_whole(GPT *base, const ScoredText *rows, int n, const unsigned char *mask, float *out) {
    check_context(base, rows, n);
    int V = gpt_config(base).vocab_size, T;
    int *inputs = score_inputs(rows, n, 1, &T);
    const float *logits = gpt_forward(base, inputs, n, T);
    for (int r = 0; r < n; r++) {
        const ScoredText *x = &rows[r];
        double sum = 0;
        for (int j = 0; j < x->z_len + x->y_len; j++) {   // token j of Z Y, read at the position before it
            const float *lg = logits + ((size_t)r * T + x->ctx_len + j - 1) * V;
            const unsigned char *mk = j <= x->z_len ? mask : NULL;   // Z and Y_1 under the mask
            int token = j < x->z_len ? x->z[j] : x->y[j - x->z_len];
            sum += masked_logp(lg, mk, token, logits_normaliser(lg, mk, V));
        }
        out[r] = (float)sum;
    }
    free(inputs);
}

// ----------------------------------------------------------------------------------------------
// Evaluation: k samples per query, in batches of whole queries.

Traj **text_sample_queries(Task *task, GPT *policy, int first, int count, int k, const SamplerConfig *sc, uint64_t seed) {
    int per_batch = 64 / k > 0 ? 64 / k : 1;   // queries per sampler batch
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)count * k);   // (count, k)
    int *queries = gfn_malloc(sizeof(int) * (size_t)per_batch * k);
    for (int i = 0; i < count * k; i++) t[i] = traj_new(task->max_len);
    Rng rng;
    rng_seed(&rng, seed);
    for (int q0 = 0; q0 < count; q0 += per_batch) {
        int nq = count - q0 < per_batch ? count - q0 : per_batch;
        for (int i = 0; i < nq * k; i++) queries[i] = first + q0 + i / k;
        sample_trajectories(policy, task, queries, t + (size_t)q0 * k, nq * k, sc, &rng);
    }
    free(queries);
    return t;
}

void text_free_trajectories(Traj **t, int n) {
    for (int i = 0; i < n; i++) traj_free(t[i]);
    free(t);
}

void per_query_mean_max(const float *values, int count, int k, double *mean, double *max) {
    *mean = *max = 0;
    for (int q = 0; q < count; q++) {
        double s = 0, m = -INFINITY;
        for (int j = 0; j < k; j++) { s += values[q * k + j]; if (values[q * k + j] > m) m = values[q * k + j]; }
        *mean += s / k / count;
        *max += m / count;
    }
}

// ----------------------------------------------------------------------------------------------
// Reports: the result files of a folder gathered into rows (methods) and runs.

static int text_results_file(const char *path, const char *const *keys, int num_keys, TextResults *res, GfnError *err) {
    size_t len;
    char *text = (char *)read_file(path, &len, err);
    if (!text) return 1;
    ReportRun *run = NULL;
    int status = 0;
    for (char *line = text, *next; line && *line && !status; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char name[48], rest;
        int used = 0;
        if (sscanf(line, "method %47s%n", name, &used) == 1 && sscanf(line + used, " %c", &rest) != 1) {   // "method RUN"
            int r = 0;
            while (r < res->num_runs && strcmp(res->runs[r].name, name)) r++;
            if (r == TEXT_REPORT_MAX_ROWS) { gfn_error_set(err, "%s: more than %d runs", path, r); status = 1; break; }
            if (r == res->num_runs) { memset(&res->runs[r], 0, sizeof res->runs[r]); snprintf(res->runs[r].name, sizeof res->runs[r].name, "%s", name); res->num_runs++; }
            run = &res->runs[r];
            run->count++;
        } else if (used > 0) {   // "method NAME key value ..."
            if (!run) { gfn_error_set(err, "%s: an evaluation line before the \"method RUN\" line", path); status = 1; break; }
            const char *row_name = strcmp(name, "policy") ? name : run->name;
            int m = 0;
            while (m < res->num_rows && strcmp(res->rows[m].name, row_name)) m++;
            if (m == TEXT_REPORT_MAX_ROWS) { gfn_error_set(err, "%s: more than %d methods", path, m); status = 1; break; }
            if (m == res->num_rows) { memset(&res->rows[m], 0, sizeof res->rows[m]); snprintf(res->rows[m].name, sizeof res->rows[m].name, "%s", row_name); res->num_rows++; }
            ReportRow *row = &res->rows[m];
            if (row->count == TEXT_REPORT_MAX_SEEDS) { gfn_error_set(err, "%s: more than %d runs of %s", path, row->count, row_name); status = 1; break; }
            for (int k = 0; k < num_keys; k++) {
                row->value[k][row->count] = NAN;
                size_t kl = strlen(keys[k]);
                for (const char *p = line + used; (p = strstr(p, keys[k])) != NULL; p += kl)
                    if (p[-1] == ' ' && p[kl] == ' ') { row->value[k][row->count] = strtod(p + kl, NULL); break; }
            }
            row->count++;
        } else if (run && !strncmp(line, "wall_s ", 7)) run->wall += strtod(line + 7, NULL);
        else if (run && !strncmp(line, "command ", 8)) snprintf(run->command, sizeof run->command, "%s", line + 8);
    }
    free(text);
    return status;
}

int text_results_read(const char *dir, const char *const *keys, int num_keys, TextResults *res, GfnError *err) {
    char *names[1024];
    int n = report_list_files(dir, names, 1024, err), status = n < 0;
    res->num_rows = res->num_runs = 0;
    for (int i = 0; i < n; i++) {
        if (!status) status = text_results_file(names[i], keys, num_keys, res, err);
        free(names[i]);
    }
    if (!status && res->num_rows == 0) { gfn_error_set(err, "%s: no result files (*.txt with \"method\" lines)", dir); status = 1; }
    return status;
}

const ReportRow *text_results_row(const TextResults *res, const char *name) {
    for (int m = 0; m < res->num_rows; m++) if (!strcmp(res->rows[m].name, name)) return &res->rows[m];
    return NULL;
}

void report_row_stat(const ReportRow *row, int k, double *mean, double *std) { mean_std(row->value[k], row->count, mean, std); }

int text_report_tail(Text *md, const char *dir, const TextResults *res, GfnError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/NOTES.md", dir);
    FILE *f = fopen(path, "rb");
    text_appendf(md, "\n## What was tried\n\n");
    if (f) {
        fclose(f);
        size_t len;
        unsigned char *notes = read_file(path, &len, err);
        if (!notes) return 1;
        text_appendf(md, "%.*s", (int)len, (const char *)notes);
        if (len && notes[len - 1] != '\n') text_appendf(md, "\n");
        free(notes);
    } else text_appendf(md, "(no %s/NOTES.md yet)\n", dir);
    double total = 0;
    for (int r = 0; r < res->num_runs; r++) total += res->runs[r].wall;
    text_appendf(md, "\n## Runs (measured wall time; %.0f s in all)\n\n", total);
    static const char *const columns[] = { "run", "seeds", "wall time per run (s)", "command (last seed)" };
    md_table_header(md, columns, 4);
    for (int r = 0; r < res->num_runs; r++)
        text_appendf(md, "| %s | %d | %.0f | `%s` |\n", res->runs[r].name, res->runs[r].count, res->runs[r].wall / res->runs[r].count, res->runs[r].command);
    return 0;
}
