// tests/test_decode.c — the decoding strategies: beam search against brute-force enumeration,
// diverse beam search against beam search, greedy against argmax by plain forwards, every method
// within the task's mask, lengths, terminator and tool hook, and batched against one prompt at a
// time.
#include "test.h"

#include <stdlib.h>
#include <string.h>

// A tiny task: a random GPT over 10 tokens with large weights (a peaked, far from uniform q),
// four prompts of 1..4 tokens, actions 0..3, ⊤ = 9. With the tool, action 2 makes it insert 7.
enum { DV = 10, DTERM = 9, DQUERIES = 4 };
static const int d_prompts[DQUERIES][4] = { { 5 }, { 6, 4 }, { 4, 8, 5 }, { 8, 6, 6, 4 } };
static const int d_prompt_len[DQUERIES] = { 1, 2, 3, 4 };
static unsigned char d_allowed[DV] = { 1, 1, 1, 1, 0, 0, 0, 0, 0, 1 };

static const int *d_prompt(Task *task, int query, int *len) {
    (void)task;
    *len = d_prompt_len[query];
    return d_prompts[query];
}

static int d_tool(Task *task, int query, const int *tokens, int ntok, int *forced, int max_forced) {
    (void)task; (void)query;
    if (tokens[ntok - 1] != 2 || max_forced < 1) return 0;
    forced[0] = 7;
    return 1;
}

static Task d_task(GPT *model, int with_tool, int min_len, int max_len) {
    Task task = { 0 };
    task.name = "decode-test";
    task.base = model;
    task.num_train = DQUERIES;
    task.terminator = DTERM;
    task.min_len = min_len;
    task.max_len = max_len;
    task.allowed = d_allowed;
    task.prompt = d_prompt;
    task.tool = with_tool ? d_tool : NULL;
    return task;
}

static GPT *d_model(uint64_t seed) {
    GPTConfig config = { DV, 16, 2, 2, 16 };
    GPT *model = gpt_new_random(config, seed);
    float *p = gpt_params_memory(model);
    for (size_t i = 0; i < gpt_num_parameters(model); i++) p[i] *= 6.0f;
    GPTParams *w = gpt_params(model);
    for (int i = 0; i < 2 * 16; i++) { w->ln1w[i] = 1; w->ln2w[i] = 1; }
    for (int i = 0; i < 16; i++) w->lnfw[i] = 1;
    return model;
}

static Traj **trajs_new(int n, int max_len) {
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)n);
    for (int i = 0; i < n; i++) t[i] = traj_new(max_len);
    return t;
}

static void trajs_free(Traj **t, int n) {
    for (int i = 0; i < n; i++) traj_free(t[i]);
    free(t);
}

static int same_tokens(const Traj *a, const Traj *b) {
    return a->ntok == b->ntok && a->nact == b->nact && !memcmp(a->tokens, b->tokens, sizeof(int) * (size_t)a->ntok) &&
           !memcmp(a->forced, b->forced, (size_t)a->ntok);
}

// Beam search with n >= the number of Z equals brute force: every Z of the enumeration scored by
// teacher forcing (policy_exact_logq), sorted. (4 prompts × n >= 84 rows: beam_search splits
// them into batches of at most 256 rows.) Scores agree to 1e-4 (KV-cache decode against one
// full forward, float); the order agrees wherever neighbouring reference scores are 1e-4 apart.
static void test_beam_exhaustive(void) {
    GPT *model = d_model(3);
    Task task = d_task(model, 0, 1, 3);
    int count = enumerate_z(&task, NULL, NULL, 0);
    CHECK(count == 4 + 16 + 64, "enumerated %d", count);
    int *z = gfn_malloc(sizeof(int) * (size_t)count * task.max_len), *len = gfn_malloc(sizeof(int) * (size_t)count);
    enumerate_z(&task, z, len, count);
    float *ref = gfn_malloc(sizeof(float) * (size_t)count);
    int *order = gfn_malloc(sizeof(int) * (size_t)count);
    int queries[DQUERIES] = { 0, 1, 2, 3 };
    for (int extra = 0; extra <= 16; extra += 16) {   // n = count, and n beyond it
        BeamConfig bc = { count + extra, 1, 0.0f };
        int n = bc.beams, found[DQUERIES];
        Traj **out = trajs_new(DQUERIES * n, task.max_len);
        float *score = gfn_malloc(sizeof(float) * (size_t)DQUERIES * n);
        beam_search(model, &task, queries, DQUERIES, &bc, out, score, found);
        for (int q = 0; q < DQUERIES; q++) {
            CHECK(found[q] == count, "n=%d query %d: %d hypotheses, %d exist", n, q, found[q], count);
            policy_exact_logq(model, &task, q, z, len, count, ref);
            for (int i = 0; i < count; i++) order[i] = i;
            for (int i = 1; i < count; i++)   // insertion sort, best first
                for (int j = i; j > 0 && ref[order[j - 1]] < ref[order[j]]; j--) { int s = order[j]; order[j] = order[j - 1]; order[j - 1] = s; }
            int bad_score = 0, bad_order = 0, ties = 0;
            for (int i = 0; i < found[q] && i < count; i++) {
                const Traj *t = out[q * n + i];
                int k = order[i];
                int near_tie = (i > 0 && ref[order[i - 1]] - ref[k] < 1e-4f) || (i + 1 < count && ref[k] - ref[order[i + 1]] < 1e-4f);
                ties += near_tie;
                if (fabsf(score[q * n + i] - ref[k]) > 1e-4f) bad_score++;
                if (!near_tie && (t->nact != len[k] || memcmp(t->tokens, z + (size_t)k * task.max_len, sizeof(int) * (size_t)len[k]))) bad_order++;
                if (i > 0 && score[q * n + i] > score[q * n + i - 1]) bad_order++;
            }
            CHECK(bad_score == 0 && bad_order == 0, "n=%d query %d: %d scores and %d places differ from brute force (%d near ties)",
                  n, q, bad_score, bad_order, ties);
        }
        trajs_free(out, DQUERIES * n);
        free(score);
    }
    free(z); free(len); free(ref); free(order);
    gpt_free(model);
}

// Diverse beam search: with λ = 0 its G groups are G copies of beam search with n / G beams (as
// in HF's group beam search: nothing tells the groups apart), so G = 1 is beam search itself; with
// a large λ and one beam per group, the groups' first actions all differ.
static void test_diverse_beam(void) {
    GPT *model = d_model(4);
    Task task = d_task(model, 1, 1, 4);
    int queries[DQUERIES] = { 0, 1, 2, 3 }, found[DQUERIES], found_ref[DQUERIES];
    enum { N = 6, G = 3 };
    Traj **out = trajs_new(DQUERIES * N, task.max_len), **ref = trajs_new(DQUERIES * N, task.max_len);
    float score[DQUERIES * N], score_ref[DQUERIES * N];
    BeamConfig diverse = { N, G, 0.0f }, plain = { N / G, 1, 0.0f };
    beam_search(model, &task, queries, DQUERIES, &diverse, out, score, found);
    beam_search(model, &task, queries, DQUERIES, &plain, ref, score_ref, found_ref);
    int bad = 0;
    for (int q = 0; q < DQUERIES; q++) {
        bad += found[q] != G * found_ref[q];
        for (int g = 0; g < G; g++)
            for (int i = 0; i < found_ref[q] && g * found_ref[q] + i < found[q]; i++) {
                int a = q * N + g * found_ref[q] + i, b = q * (N / G) + i;
                bad += !same_tokens(out[a], ref[b]) || score[a] != score_ref[b];
            }
    }
    CHECK(bad == 0, "diverse beam with lambda = 0: %d hypotheses differ from beam search with n / G beams", bad);
    // G = 1: beam search itself, whatever λ
    BeamConfig one_group = { N, 1, 5.0f }, beam_n = { N, 1, 0.0f };
    beam_search(model, &task, queries, DQUERIES, &one_group, out, score, found);
    beam_search(model, &task, queries, DQUERIES, &beam_n, ref, score_ref, found_ref);
    bad = 0;
    for (int q = 0; q < DQUERIES; q++)
        for (int i = 0; i < found[q]; i++) bad += found[q] != found_ref[q] || !same_tokens(out[q * N + i], ref[q * N + i]) || score[q * N + i] != score_ref[q * N + i];
    CHECK(bad == 0, "diverse beam with one group: %d hypotheses differ from beam search", bad);
    // λ large, 4 groups of one beam, 4 actions: each group's beam starts with a token of its own
    // (min_len 1: every hypothesis has a first action), and each score is its plain log q.
    BeamConfig spread = { 4, 4, 1000.0f };
    beam_search(model, &task, queries, DQUERIES, &spread, out, score, found);
    int repeats = 0, bad_score = 0;
    for (int q = 0; q < DQUERIES; q++) {
        Traj **hyp = out + q * 4;
        CHECK(found[q] == 4, "query %d: %d hypotheses", q, found[q]);
        for (int i = 0; i < found[q]; i++)
            for (int j = 0; j < i; j++) repeats += hyp[i]->tokens[0] == hyp[j]->tokens[0];
        float lq[4];
        policy_sequence_logq(model, &task, hyp, found[q], lq);
        for (int i = 0; i < found[q]; i++) bad_score += fabsf(lq[i] - score[q * 4 + i]) > 1e-4f;
    }
    CHECK(repeats == 0, "diverse beam with lambda = 1000: %d groups repeat an earlier group's first action", repeats);
    CHECK(bad_score == 0, "diverse beam: %d scores are not the unpenalised log q", bad_score);
    trajs_free(out, DQUERIES * N);
    trajs_free(ref, DQUERIES * N);
    gpt_free(model);
}

// The sampler's state mask, written again from the task's definition: ⊤ masked before min_len,
// the only choice at max_len.
static void plain_mask(const Task *task, int ntok, unsigned char *mask) {
    for (int v = 0; v < DV; v++) mask[v] = ntok >= task->max_len ? v == task->terminator : task->allowed[v];
    if (ntok < task->min_len) mask[task->terminator] = 0;
}

// Greedy (T = 0) is the argmax of plain full forwards, state by state; beam search with n = 1 is
// the best ⊤-exit along that same path (it keeps the first finished hypothesis until an open beam
// beats it). Cases with a near tie (< 1e-3 between the two best) are not judged.
static void test_greedy(void) {
    int judged = 0, bad_greedy = 0, bad_beam = 0;
    for (uint64_t seed = 10; seed < 16; seed++) {
        GPT *model = d_model(seed);
        Task task = d_task(model, 0, 1, 5);
        int queries[DQUERIES] = { 0, 1, 2, 3 }, found[DQUERIES];
        Traj **greedy = trajs_new(DQUERIES, task.max_len), **beam = trajs_new(DQUERIES, task.max_len);
        float score[DQUERIES];
        Rng rng;
        rng_seed(&rng, seed);
        SamplerConfig sc = { 0.0f, 0, 1.0f, 0 };
        sample_trajectories(model, &task, queries, greedy, DQUERIES, &sc, &rng);
        BeamConfig bc = { 1, 1, 0.0f };
        beam_search(model, &task, queries, DQUERIES, &bc, beam, score, found);
        for (int q = 0; q < DQUERIES; q++) {
            int row[32], plen, n = 0, path[8], steps = 0, tie = 0, best_exit = -1;
            const int *prompt = d_prompt(&task, q, &plen);
            for (int j = 0; j < plen; j++) row[n++] = prompt[j];
            double sum = 0, best = -INFINITY;
            for (;;) {
                float *logits = gpt_forward(model, row, 1, n), logp[DV];
                unsigned char mask[DV];
                plain_mask(&task, steps, mask);
                masked_log_softmax(logits + (size_t)(n - 1) * DV, mask, DV, logp);
                int a = -1, b = -1;   // the two best
                for (int v = 0; v < DV; v++) {
                    if (!mask[v]) continue;
                    if (a < 0 || logp[v] > logp[a]) { b = a; a = v; } else if (b < 0 || logp[v] > logp[b]) b = v;
                }
                if (b >= 0 && logp[a] - logp[b] < 1e-3f) tie = 1;
                if (mask[DTERM] && sum + logp[DTERM] > best) { best = sum + logp[DTERM]; best_exit = steps; }
                if (a == DTERM) break;
                sum += logp[a];
                path[steps++] = a;
                row[n++] = a;
            }
            if (tie) continue;
            judged++;
            bad_greedy += greedy[q]->nact != steps || memcmp(greedy[q]->tokens, path, sizeof(int) * (size_t)steps);
            bad_beam += found[q] != 1 || beam[q]->nact != best_exit || memcmp(beam[q]->tokens, path, sizeof(int) * (size_t)best_exit) ||
                        fabs(score[q] - best) > 1e-4;
        }
        trajs_free(greedy, DQUERIES);
        trajs_free(beam, DQUERIES);
        gpt_free(model);
    }
    CHECK(judged >= 12, "only %d of 24 greedy cases free of near ties", judged);
    CHECK(bad_greedy == 0, "greedy differs from the argmax of plain forwards in %d of %d cases", bad_greedy, judged);
    CHECK(bad_beam == 0, "beam n = 1 is not the best exit of the greedy path in %d of %d cases", bad_beam, judged);
}

// Beam search written plainly, one prompt, no tool: every open prefix scored by a full forward of
// prompt + prefix; the n best extensions stay open unless they cannot beat the n-th finished
// hypothesis; every ⊤ is offered to the finished list (best first, an earlier equal one first).
// hyp: (n, 8) tokens, hyp_len (n), hyp_score (n); returns how many finished.
static int plain_beam(GPT *model, const Task *task, int query, int n, int (*hyp)[8], int *hyp_len, double *hyp_score) {
    enum { MAXN = 16 };
    int open[MAXN][8], open_len[MAXN], m = 1, found = 0;
    double open_score[MAXN];
    open_len[0] = 0;
    open_score[0] = 0;
    for (;;) {
        double cand_score[MAXN * DV];
        int cand_parent[MAXN * DV], cand_token[MAXN * DV], c = 0;
        for (int i = 0; i < m; i++) {
            int row[16], plen, len = 0;
            const int *prompt = d_prompt(NULL, query, &plen);
            for (int j = 0; j < plen; j++) row[len++] = prompt[j];
            for (int j = 0; j < open_len[i]; j++) row[len++] = open[i][j];
            float *logits = gpt_forward(model, row, 1, len), logp[DV];
            unsigned char mask[DV];
            plain_mask(task, open_len[i], mask);
            masked_log_softmax(logits + (size_t)(len - 1) * DV, mask, DV, logp);
            if (mask[DTERM]) {   // insertion into the sorted finished list
                double s = open_score[i] + logp[DTERM];
                int at = found;
                while (at > 0 && hyp_score[at - 1] < s) at--;
                if (at < n) {
                    if (found < n) found++;
                    for (int k = found - 1; k > at; k--) { memcpy(hyp[k], hyp[k - 1], sizeof hyp[k]); hyp_len[k] = hyp_len[k - 1]; hyp_score[k] = hyp_score[k - 1]; }
                    memcpy(hyp[at], open[i], sizeof hyp[at]);
                    hyp_len[at] = open_len[i];
                    hyp_score[at] = s;
                }
            }
            for (int v = 0; v < DV; v++)
                if (mask[v] && v != DTERM) { cand_score[c] = open_score[i] + logp[v]; cand_parent[c] = i; cand_token[c++] = v; }
        }
        int taken[MAXN * DV] = { 0 }, next[MAXN][8], next_len[MAXN], k = 0;
        double next_score[MAXN];
        while (k < n) {   // selection of the best remaining candidate, n times
            int best = -1;
            for (int i = 0; i < c; i++) if (!taken[i] && (best < 0 || cand_score[i] > cand_score[best])) best = i;
            if (best < 0 || (found == n && cand_score[best] <= hyp_score[n - 1])) break;
            taken[best] = 1;
            memcpy(next[k], open[cand_parent[best]], sizeof next[k]);
            next_len[k] = open_len[cand_parent[best]] + 1;
            next[k][next_len[k] - 1] = cand_token[best];
            next_score[k++] = cand_score[best];
        }
        if (k == 0) return found;
        memcpy(open, next, sizeof next);
        memcpy(open_len, next_len, sizeof next_len);
        memcpy(open_score, next_score, sizeof next_score);
        m = k;
    }
}

// Beam search with fewer beams than sequences equals the plain version above (scores to 1e-4, the
// tokens wherever no two candidates are within 1e-4 of each other — judged by the scores).
static void test_beam_plain(void) {
    int bad = 0, judged = 0;
    for (uint64_t seed = 40; seed < 43; seed++) {
        GPT *model = d_model(seed);
        Task task = d_task(model, 0, 1, 4);
        int queries[DQUERIES] = { 0, 1, 2, 3 }, found[DQUERIES];
        for (int n = 2; n <= 5; n += 3) {
            Traj **out = trajs_new(DQUERIES * n, task.max_len);
            float score[DQUERIES * 5];
            BeamConfig bc = { n, 1, 0.0f };
            beam_search(model, &task, queries, DQUERIES, &bc, out, score, found);
            for (int q = 0; q < DQUERIES; q++) {
                int hyp[5][8], hyp_len[5];
                double hyp_score[5];
                int ref_found = plain_beam(model, &task, q, n, hyp, hyp_len, hyp_score);
                bad += ref_found != found[q];
                for (int i = 0; i < found[q] && i < ref_found; i++, judged++) {
                    const Traj *t = out[q * n + i];
                    bad += fabs(score[q * n + i] - hyp_score[i]) > 1e-4;
                    int near_tie = (i > 0 && hyp_score[i - 1] - hyp_score[i] < 1e-4) || (i + 1 < ref_found && hyp_score[i] - hyp_score[i + 1] < 1e-4);
                    if (!near_tie) bad += t->nact != hyp_len[i] || memcmp(t->tokens, hyp[i], sizeof(int) * (size_t)hyp_len[i]);
                }
            }
            trajs_free(out, DQUERIES * n);
        }
        gpt_free(model);
    }
    CHECK(judged > 50 && bad == 0, "beam search (n = 2, 5) differs from the plain version in %d of %d hypotheses", bad, judged);
}

// Every method, over many prompts and seeds, with the tool: actions only from the allowed set
// (never ⊤), forced tokens exactly where the tool puts them, min_len <= tokens <= max_len (the
// lengths count forced tokens too); a beam hypothesis's score is its log q(Z ⊤) by teacher forcing (finite: ⊤ was allowed).
static int check_traj(const Task *task, const Traj *t, int query) {
    int bad = t->query != query || t->ntok > task->max_len || t->ntok < task->min_len, actions = 0;
    for (int j = 0; j < t->ntok; j++) {
        if (t->forced[j]) bad += t->tokens[j] != 7 || j == 0 || t->tokens[j - 1] != 2 || t->forced[j - 1];
        else {
            actions++;
            bad += t->tokens[j] < 0 || t->tokens[j] >= DV || !task->allowed[t->tokens[j]] || t->tokens[j] == task->terminator;
            bad += t->tokens[j] == 2 && j + 1 < task->max_len && (j + 1 >= t->ntok || !t->forced[j + 1]);   // the tool was called
        }
    }
    return bad + (actions != t->nact);
}

static void test_constraints(void) {
    enum { N = 12, BEAMS = 6 };
    int bad = 0, bad_score = 0, checked = 0;
    for (uint64_t seed = 20; seed < 24; seed++) {
        GPT *model = d_model(seed);
        Task task = d_task(model, 1, 2, 5);
        int queries[N];
        for (int i = 0; i < N; i++) queries[i] = (int)((i + seed) % DQUERIES);
        Traj **t = trajs_new(N * BEAMS, task.max_len);
        const SamplerConfig samplers[5] = { { 1.0f, 0, 1.0f, 0 }, { 0.7f, 0, 1.0f, 0 }, { 1.0f, 2, 1.0f, 0 }, { 1.0f, 0, 0.8f, 0 }, { 0.0f, 0, 1.0f, 0 } };
        Rng rng;
        rng_seed(&rng, seed);
        for (int s = 0; s < 5; s++)
            for (int round = 0; round < 10; round++) {
                sample_trajectories(model, &task, queries, t, N, &samplers[s], &rng);
                for (int i = 0; i < N; i++, checked++) bad += check_traj(&task, t[i], queries[i]) != 0;
            }
        const BeamConfig beams[3] = { { BEAMS, 1, 0.0f }, { BEAMS, 3, 0.5f }, { BEAMS, 6, 2.0f } };
        float score[N * BEAMS], lq[BEAMS];
        int found[N];
        for (int b = 0; b < 3; b++) {
            beam_search(model, &task, queries, N, &beams[b], t, score, found);
            for (int i = 0; i < N; i++) {
                bad += found[i] != BEAMS;
                for (int k = 0; k < found[i]; k++, checked++) bad += check_traj(&task, t[i * BEAMS + k], queries[i]) != 0;
                policy_sequence_logq(model, &task, t + i * BEAMS, found[i], lq);
                for (int k = 0; k < found[i]; k++) bad_score += !(fabsf(lq[k] - score[i * BEAMS + k]) <= 1e-4f);
            }
        }
        trajs_free(t, N * BEAMS);
        gpt_free(model);
    }
    CHECK(bad == 0, "%d of %d decoded sequences break the task's mask, lengths or tool", bad, checked);
    CHECK(bad_score == 0, "%d beam scores differ from log q(Z T) by teacher forcing", bad_score);
}

// Several prompts in one batch equal each prompt alone: beam and diverse beam search bit-exactly
// (each row's decode arithmetic does not depend on the other rows); greedy sampling in its
// tokens (the sampler prefills a common prefix, so its logits may differ in the last bits).
static void test_batched(void) {
    GPT *model = d_model(31);
    Task task = d_task(model, 1, 1, 5);
    int queries[DQUERIES] = { 2, 0, 3, 1 }, found[DQUERIES], alone_found;
    enum { N = 6 };
    const BeamConfig configs[2] = { { N, 1, 0.0f }, { N, 3, 0.7f } };
    Traj **batch = trajs_new(DQUERIES * N, task.max_len), **alone = trajs_new(N, task.max_len);
    float score[DQUERIES * N], alone_score[N];
    int bad = 0;
    for (int c = 0; c < 2; c++) {
        beam_search(model, &task, queries, DQUERIES, &configs[c], batch, score, found);
        for (int q = 0; q < DQUERIES; q++) {
            beam_search(model, &task, &queries[q], 1, &configs[c], alone, alone_score, &alone_found);
            bad += alone_found != found[q];
            for (int i = 0; i < found[q] && i < alone_found; i++)
                bad += !same_tokens(batch[q * N + i], alone[i]) || score[q * N + i] != alone_score[i];
        }
    }
    CHECK(bad == 0, "beam search over 4 prompts differs from one prompt at a time in %d hypotheses", bad);
    SamplerConfig greedy = { 0.0f, 0, 1.0f, 0 };
    Rng rng;
    rng_seed(&rng, 1);
    sample_trajectories(model, &task, queries, batch, DQUERIES, &greedy, &rng);
    int bad_greedy = 0;
    for (int q = 0; q < DQUERIES; q++) {
        sample_trajectories(model, &task, &queries[q], alone, 1, &greedy, &rng);
        bad_greedy += !same_tokens(batch[q], alone[0]);
    }
    CHECK(bad_greedy == 0, "greedy over 4 prompts differs from one prompt at a time in %d", bad_greedy);
    trajs_free(batch, DQUERIES * N);
    trajs_free(alone, N);
    gpt_free(model);
}

void test_decode(void) {
    test_beam_exhaustive();
    test_beam_plain();
    test_diverse_beam();
    test_greedy();
    test_constraints();
    test_batched();
}
