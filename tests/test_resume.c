// tests/test_resume.c — `gfn train --resume`. A run of N steps and the same run stopped at step
// k1 (adapter and training state saved), resumed and stopped at k2, then resumed to N, must end
// with the same bits: the adapter file, the final training state, the learned log Z and the JSONL
// log's lines (all but their wall-clock throughput). On the toy task with many queries (SubTB with
// a learned root flow, replay, an annealed reward temperature; TB with gradient accumulation and a
// tool that inserts tokens) and on rng's built-in base (TB, the buffer seeded with the 101 valid
// answers). Then damaged, truncated and mismatched states must be refused with a message naming
// the file and the problem, and no change to a valid state's bytes may make the loader misbehave.
#include "test.h"

#include <stdlib.h>
#include <string.h>

// Whole file, or NULL (and *len 0) when it cannot be read.
static unsigned char *slurp(const char *path, size_t *len) {
    GfnError err;
    unsigned char *bytes = read_file(path, len, &err);
    if (!bytes) *len = 0;
    return bytes;
}

static int same_bytes(const char *a, const char *b) {
    size_t la, lb;
    unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y && la == lb && !memcmp(x, y, la);
    free(x); free(y);
    return same;
}

// The JSONL log without its throughput field ("tokens_per_s": X, ), the one wall-clock figure.
static char *log_without_speed(const char *path) {
    size_t len;
    char *text = (char *)slurp(path, &len);
    if (!text) return NULL;
    const char *key = "\"tokens_per_s\": ";
    char *at;
    while ((at = strstr(text, key))) {
        char *end = strstr(at, ", ");
        if (!end) break;
        memmove(at, end + 2, strlen(end + 2) + 1);
    }
    return text;
}

// After action token 0 the tool inserts token 1 (context, not an action): states whose tokens
// and actions differ, so the replay entries' forced flags are saved and restored too.
static int tool_after_zero(Task *task, int query, const int *tokens, int ntok, int *forced, int max_forced) {
    (void)task; (void)query;
    if (tokens[ntok - 1] != 0 || max_forced < 1) return 0;
    forced[0] = 1;
    return 1;
}

// One training run on a fresh copy of the base; log_z (num_train) starts at 0.
static int train_run(Task *task, const TrainConfig *base_cfg, const char *save, const char *log, const char *resume,
                     int stop_after, float *log_z, GfnError *err) {
    TrainConfig cfg = *base_cfg;
    cfg.save_path = save;
    cfg.log_path = log;
    cfg.resume_path = resume;
    cfg.stop_after = stop_after;
    cfg.quiet = 1;
    memset(log_z, 0, sizeof(float) * (size_t)task->num_train);
    GPT *policy = copy_model(task->base);
    int rc = gfn_train(task, policy, &cfg, log_z, err);
    gpt_free(policy);
    return rc;
}

// N steps straight, and k1, k2, N with two resumes: the same adapter, state, log Z and log.
static void check_resume(const char *name, Task *task, const TrainConfig *cfg, int k1, int k2) {
    GfnError err = { { 0 } };
    size_t Q = (size_t)task->num_train;
    float *z_full = calloc(Q, sizeof(float)), *z_part = calloc(Q, sizeof(float));
    const char *full = test_path("resume_full.lora"), *full_state = test_path("resume_full.lora.state");
    const char *part = test_path("resume_part.lora"), *part_state = test_path("resume_part.lora.state");
    const char *full_log = test_path("resume_full.jsonl"), *part_log = test_path("resume_part.jsonl");
    int rc = train_run(task, cfg, full, full_log, NULL, 0, z_full, &err);
    if (!CHECK(rc == 0, "%s: the uninterrupted run: %s", name, err.msg)) goto done;
    rc = train_run(task, cfg, part, part_log, NULL, k1, z_part, &err);
    if (!CHECK(rc == 0, "%s: the run stopped at %d: %s", name, k1, err.msg)) goto done;
    CHECK(!same_bytes(part, full), "%s: the adapter at step %d already equals the last one (a test that cannot fail)", name, k1);
    rc = train_run(task, cfg, part, part_log, part_state, k2, z_part, &err);
    if (!CHECK(rc == 0, "%s: resumed at %d, stopped at %d: %s", name, k1, k2, err.msg)) goto done;
    rc = train_run(task, cfg, part, part_log, part_state, 0, z_part, &err);
    if (!CHECK(rc == 0, "%s: resumed at %d to the end: %s", name, k2, err.msg)) goto done;
    CHECK(same_bytes(full, part), "%s: the resumed adapter differs from the uninterrupted run's", name);
    CHECK(same_bytes(full_state, part_state), "%s: the resumed training state differs from the uninterrupted run's", name);
    CHECK(!memcmp(z_full, z_part, sizeof(float) * Q), "%s: the resumed log Z differs", name);
    char *a = log_without_speed(full_log), *b = log_without_speed(part_log);
    int lines = 0;
    for (const char *c = a; c && *c; c++) lines += *c == '\n';
    CHECK(a && b && !strcmp(a, b) && lines == cfg->steps, "%s: the resumed log differs (%d lines, want %d):\n%s\nvs\n%s",
          name, lines, cfg->steps, a ? a : "", b ? b : "");
    free(a); free(b);
    // A kill between the two renames leaves the adapter ahead of its state; the resume writes it
    // again from the state at once (here: a resume of the finished run over a wrong adapter).
    const char *wrong = "not the adapter of this state";
    CHECK(write_file_atomic(part, wrong, strlen(wrong), &err) == 0, "could not replace %s", part);
    rc = train_run(task, cfg, part, NULL, part_state, 0, z_part, &err);
    CHECK(rc == 0 && same_bytes(full, part), "%s: a resume at the last step does not restore the adapter: %s", name, err.msg);
done:
    free(z_full); free(z_part);
}

// A state file that must be refused: gfn_train fails, naming the file and `want`.
static void check_refused(const char *what, Task *task, const TrainConfig *cfg, const char *path, const char *want) {
    GfnError err = { { 0 } };
    float *log_z = calloc((size_t)task->num_train, sizeof(float));
    int rc = train_run(task, cfg, NULL, NULL, path, 0, log_z, &err);
    CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, want), "%s: rc %d, message '%s' (want the file and '%s')",
          what, rc, err.msg, want);
    free(log_z);
}

static int write_bytes(const char *path, const unsigned char *bytes, size_t len) {
    GfnError err;
    return write_file_atomic(path, bytes, len, &err);
}

// Damaged states, states of other runs, and every byte of a valid state changed with its checksum
// made valid again (only the loader's own checks stand between such a file and the run).
static void check_bad_states(Task *task, const TrainConfig *cfg) {
    const char *good = test_path("resume_full.lora.state"), *bad = test_path("resume_bad.state");
    size_t len;
    unsigned char *state = slurp(good, &len);
    if (!CHECK(state && len > 100, "no valid state to damage")) { free(state); return; }
    size_t cuts[] = { 0, 7, 12, 19, 20, 60, len / 3, len / 2, len - 9, len - 8, len - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[i], len);
        write_bytes(bad, state, cuts[i]);
        check_refused(what, task, cfg, bad, cuts[i] < 20 ? "too short" : "checksum");
    }
    unsigned char *copy = malloc(len + 8);
    memcpy(copy, state, len);
    copy[len / 2] ^= 0x10;
    write_bytes(bad, copy, len);
    check_refused("one bit flipped", task, cfg, bad, "checksum");
    memcpy(copy, state, len - 8);   // 4 zero bytes before the checksum, which is made valid
    memset(copy + len - 8, 0, 4);
    put_le_u64(copy + len - 4, fnv1a64(copy, len - 4, FNV_OFFSET));
    write_bytes(bad, copy, len + 4);
    check_refused("4 bytes too many", task, cfg, bad, "after the replay buffer");

    // Bytes of the state changed one at a time with the checksum fixed (every byte of the header,
    // identity and sizes and of the end of the replay buffer, one in 200 or so of the arrays in
    // between): each resume either refuses the file, naming it, or runs (the change was in a value,
    // such as a weight); none may crash or read out of bounds (make sanitize).
    int refused = 0, ran = 0, other = 0;
    Rng rng;
    rng_seed(&rng, 3);
    for (size_t at = 8; at + 8 < len; at += at < 400 || at + 600 > len ? 1 : 1 + (size_t)rng_below(&rng, 400)) {
        memcpy(copy, state, len);
        copy[at] ^= (unsigned char)(1 + rng_below(&rng, 255));
        put_le_u64(copy + len - 8, fnv1a64(copy, len - 8, FNV_OFFSET));
        write_bytes(bad, copy, len);
        GfnError err = { { 0 } };
        float *log_z = calloc((size_t)task->num_train, sizeof(float));
        int rc = train_run(task, cfg, NULL, NULL, bad, 0, log_z, &err);
        free(log_z);
        if (rc == 0) ran++;
        else if (strstr(err.msg, bad)) refused++;
        else { other++; printf("   byte %zu changed: '%s'\n", at, err.msg); }
    }
    CHECK(other == 0 && refused > 0, "changed bytes: %d refused naming the file, %d ran, %d failed otherwise", refused, ran, other);
    printf("   states with one byte changed (checksum fixed): %d refused, %d resumed\n", refused, ran);

    // Another run's flags, another task's queries or options: refused, naming the mismatch.
    TrainConfig other_cfg = *cfg;
    other_cfg.lr *= 2;
    check_refused("another --lr", task, &other_cfg, good, "--lr");
    other_cfg = *cfg;
    other_cfg.lora_rank = cfg->lora_rank + 1;
    check_refused("another --rank", task, &other_cfg, good, "--rank");
    other_cfg = *cfg;
    other_cfg.seed = cfg->seed + 1;
    check_refused("another seed", task, &other_cfg, good, "seed");
    other_cfg = *cfg;
    other_cfg.loss = cfg->loss == LOSS_TB ? LOSS_SUBTB : LOSS_TB;
    check_refused("another --loss", task, &other_cfg, good, "--loss");
    other_cfg = *cfg;
    other_cfg.steps = cfg->steps + 1;
    check_refused("another --steps", task, &other_cfg, good, "--steps");
    other_cfg = *cfg;
    other_cfg.task_options = "--reward-floor 0.5";
    check_refused("other task options", task, &other_cfg, good, "task options");
    int num_train = task->num_train;
    task->num_train = num_train - 1;
    check_refused("fewer queries", task, cfg, good, "training queries");
    task->num_train = num_train;
    task->allowed[0] = !task->allowed[0];
    check_refused("other allowed tokens", task, cfg, good, "fingerprint");
    task->allowed[0] = !task->allowed[0];
    check_refused("a missing file", task, cfg, test_path("resume_missing.state"), "cannot open");
    free(copy);
    free(state);
}

void test_resume(void) {
    GfnError err = { { 0 } };
    // The toy task under 12 query indices (the same X and Y each), a minimum length of 1, so SubTB
    // learns a root flow per query; half the batches replayed; the reward temperature annealed.
    Task toy = task_toy;
    TaskOptions opt = { "", "", "", 1, -13.8f, 1, 0, NULL, NULL, 0, 0, 0 };
    if (!CHECK(toy.setup(&toy, &opt, &err) == 0, "toy setup: %s", err.msg)) return;
    toy.num_train = 12;
    toy.min_len = 1;
    TrainConfig cfg;
    train_config_default(&cfg);
    cfg.loss = LOSS_SUBTB; cfg.steps = 10; cfg.batch = 8; cfg.samples_per_query = 4; cfg.lr = 1e-2f; cfg.warmup = 2;
    cfg.lora_rank = 2; cfg.frac_on_policy = 0.25f; cfg.frac_tempered = 0.25f; cfg.save_every = 3;
    cfg.reward_temp_start = 2; cfg.reward_temp_end = 1; cfg.reward_temp_horizon = 6;
    check_resume("toy, SubTB with a learned root flow", &toy, &cfg, 4, 7);
    check_bad_states(&toy, &cfg);
    // TB, two micro-batches a step, a tool inserting tokens.
    toy.min_len = 0;
    toy.tool = tool_after_zero;
    train_config_default(&cfg);
    cfg.loss = LOSS_TB; cfg.steps = 8; cfg.batch = 8; cfg.samples_per_query = 2; cfg.accum = 2; cfg.lr = 1e-2f;
    cfg.lora_rank = 2; cfg.warmup = 1; cfg.frac_on_policy = 0.4f; cfg.frac_tempered = 0.2f;
    check_resume("toy, TB with a tool and accumulation", &toy, &cfg, 3, 5);
    toy.cleanup(&toy);

    // rng's built-in base, TB, the buffer seeded with the 101 valid answers (capacity grown to 101).
    Task rng = task_rng;
    opt.seed_answers = 1;
    if (!CHECK(rng.setup(&rng, &opt, &err) == 0, "rng setup: %s", err.msg)) return;
    train_config_default(&cfg);
    cfg.loss = LOSS_TB; cfg.steps = 8; cfg.batch = 8; cfg.samples_per_query = 4; cfg.lr = 5e-3f; cfg.lora_rank = 2;
    cfg.warmup = 2; cfg.frac_on_policy = 0.25f; cfg.frac_tempered = 0.25f;
    check_resume("rng, TB, seeded replay", &rng, &cfg, 2, 5);
    rng.cleanup(&rng);
}
