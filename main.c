// main.c — the command line: the task registry, each command's usage text, flag parsing and glue,
// and main(). Depends on every other file; nothing depends on it (tests and bench link without it).
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


// ----------------------------------------------------------------------------------------------
// The task registry: a new task adds its line here (and its file in tasks/).

static Task *const tasks[] = { &task_toy, &task_rng, &task_arithmetic, &task_continuation, &task_infill, &task_subj };

Task *task_find(const char *name) {
    for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++)
        if (!strcmp(tasks[i]->name, name)) return tasks[i];
    return NULL;
}


// ----------------------------------------------------------------------------------------------
// gfn pretrain: flags into a PretrainConfig, then pretrain_run.

static void pretrain_usage(FILE *out) {
    PretrainConfig d;
    pretrain_config_default(&d);
    fprintf(out,
        "usage: gfn pretrain -t TOKENIZER -i FILE... -o OUT [options]\n"
        "Trains a GPT-2 from scratch on the files (documents split at \"<|endoftext|>\"). Writes OUT (a model\n"
        "checkpoint for gpt_load), OUT.state (the training state, for --resume) and OUT.tokens (the\n"
        "token cache), each atomically.\n"
        "  --layers N         layers (%d)\n"
        "  --heads N          attention heads (%d)\n"
        "  --dim N            embedding width (%d)\n"
        "  --ctx N            context length (%d)\n"
        "  --batch N          sequences per step (%d)\n"
        "  --steps N          optimizer steps (%d)\n"
        "  --lr X             peak learning rate (%g)\n"
        "  --warmup N         linear warm-up steps (%d), then cosine decay to --min-lr\n"
        "  --min-lr X         final learning rate (%g)\n"
        "  --weight-decay X   AdamW decoupled weight decay (%g)\n"
        "  --clip X           global gradient-norm clip (%g; 0: none)\n"
        "  --val-frac X       held-out fraction of the ctx+1-token chunks (%g)\n"
        "  --eval-every N     validation loss every N steps (%d; 0: only at the end)\n"
        "  --eval-chunks N    validation chunks used then (%d; 0: all); the end uses all\n"
        "  --save-every N     write OUT and OUT.state every N steps (%d)\n"
        "  --stop-after N     stop after step N with the state saved (resume later)\n"
        "  --resume STATE     continue a run from its OUT.state, to the same bits\n"
        "  --seed N           model init and training windows (%llu)\n"
        "  --threads N        OpenMP threads (default: OpenMP's)\n"
        "  --log FILE         JSONL log, appended: one line per step and per evaluation\n"
        "  --eval-file FILE   a held-out text whose bits/byte is printed at the end\n"
        "  --tokens PATH      the token cache (OUT.tokens)\n"
        "  --state PATH       the training state written (OUT.state)\n"
        "  --samples N        samples printed at the end (%d)\n"
        "  --sample-len N     their length in tokens (%d)\n"
        "  --temperature X    their temperature (%g; 0: greedy)\n"
        "  --quiet            no progress lines\n",
        d.n_layer, d.n_head, d.n_embd, d.ctx, d.batch, d.steps, (double)d.lr, d.warmup, (double)d.min_lr,
        (double)d.weight_decay, (double)d.clip, (double)d.val_frac, d.eval_every, d.eval_chunks, d.save_every,
        (unsigned long long)d.seed, d.samples, d.sample_len, (double)d.temperature);
}

// Parse a flag's value, the whole string, into its allowed range; 0 on success, else a message
// naming the flag and the range. Every numeric flag goes through one of these, so no value that
// is out of range, not finite or too big for its type reaches a conversion.
static int parse_long(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < lo || v > hi) { fprintf(stderr, "gfn: %s wants an integer in [%lld, %lld], got '%s'\n", flag, lo, hi, s); return 1; }
    *out = v;
    return 0;
}
static int parse_real(const char *flag, const char *s, double lo, double hi, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || !(v >= lo && v <= hi)) {
        fprintf(stderr, "gfn: %s wants a finite number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return 1;
    }
    *out = (float)v;
    return 0;
}
// A whole number written as an integer or a float ("1e3"), as `gfn train` has always taken them.
static int parse_count(const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi) || v != floor(v)) {
        fprintf(stderr, "gfn: %s wants a whole number in [%d, %d], got '%s'\n", flag, lo, hi, s);
        return 1;
    }
    *out = (int)v;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// gfn corpus

static int cmd_corpus(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    long long seed = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) { if (parse_long("--seed", argv[++i], 0, 0x7FFFFFFFFFFFFFFFll, &seed)) return 1; }
        else { dir = out = NULL; break; }
    }
    if (!dir || !out) {
        fprintf(stderr, "usage: gfn corpus -d DATA_DIR -o OUT.txt [--seed N (1)]\n"
                        "Builds the pretraining text from the shared data; what is held out is listed in pretrain.c.\n");
        return 1;
    }
    GfnError err = {{0}};
    size_t bytes;
    if (corpus_build(dir, out, (uint64_t)seed, &bytes, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
    printf("%s: %zu bytes\n", out, bytes);
    return 0;
}

static int cmd_pretrain(int argc, char **argv) {
    PretrainConfig cfg;
    pretrain_config_default(&cfg);
    const char **inputs = gfn_calloc((size_t)argc, sizeof *inputs);
    int n_in = 0, bad = 0;
    struct { const char *flag; int *dst; long long lo, hi; } ints[] = {
        {"--layers", &cfg.n_layer, 1, 1024}, {"--heads", &cfg.n_head, 1, 1024}, {"--dim", &cfg.n_embd, 1, 32768},
        {"--ctx", &cfg.ctx, 2, 65536}, {"--batch", &cfg.batch, 1, 4096}, {"--steps", &cfg.steps, 0, 1 << 30},
        {"--warmup", &cfg.warmup, 0, 1 << 30}, {"--eval-every", &cfg.eval_every, 0, 1 << 30},
        {"--eval-chunks", &cfg.eval_chunks, 0, 1 << 30}, {"--save-every", &cfg.save_every, 0, 1 << 30},
        {"--stop-after", &cfg.stop_after, 0, 1 << 30}, {"--threads", &cfg.threads, 0, 4096},
        {"--samples", &cfg.samples, 0, 1024}, {"--sample-len", &cfg.sample_len, 0, 1 << 20},
    };
    struct { const char *flag; float *dst; double lo, hi; } floats[] = {
        {"--lr", &cfg.lr, 0, 10}, {"--min-lr", &cfg.min_lr, 0, 10}, {"--weight-decay", &cfg.weight_decay, 0, 10},
        {"--clip", &cfg.clip, 0, 1e6}, {"--val-frac", &cfg.val_frac, 1e-6, 0.999999}, {"--temperature", &cfg.temperature, 0, 100},
    };
    struct { const char *flag; const char **dst; } strs[] = {
        {"-t", &cfg.tokenizer_path}, {"-o", &cfg.out_path}, {"--log", &cfg.log_path}, {"--resume", &cfg.resume_path},
        {"--tokens", &cfg.cache_path}, {"--state", &cfg.state_path}, {"--eval-file", &cfg.eval_file},
    };
    for (int i = 2; i < argc && !bad; i++) {
        const char *a = argv[i];
        int known = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { pretrain_usage(stdout); free(inputs); return 0; }
        if (!strcmp(a, "--quiet")) { cfg.verbose = 0; continue; }
        if (!strcmp(a, "-i")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') inputs[n_in++] = argv[++i];
            continue;
        }
        if (i + 1 >= argc) { fprintf(stderr, "gfn: %s: missing value (or unknown flag)\n", a); bad = 1; break; }
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !known; k++)
            if (!strcmp(a, ints[k].flag)) {
                long long v;
                known = 1;
                if (parse_long(a, argv[++i], ints[k].lo, ints[k].hi, &v)) bad = 1; else *ints[k].dst = (int)v;
            }
        for (size_t k = 0; k < sizeof floats / sizeof *floats && !known; k++)
            if (!strcmp(a, floats[k].flag)) { known = 1; bad |= parse_real(a, argv[++i], floats[k].lo, floats[k].hi, floats[k].dst); }
        for (size_t k = 0; k < sizeof strs / sizeof *strs && !known; k++)
            if (!strcmp(a, strs[k].flag)) { known = 1; *strs[k].dst = argv[++i]; }
        if (!known && !strcmp(a, "--seed")) {
            long long v;
            known = 1;
            if (parse_long(a, argv[++i], 0, 0x7FFFFFFFFFFFFFFFll, &v)) bad = 1; else cfg.seed = (uint64_t)v;
        }
        if (!known) { fprintf(stderr, "gfn: pretrain: unknown flag '%s'\n", a); bad = 1; }
    }
    if (bad) { pretrain_usage(stderr); free(inputs); return 1; }
    // Consistent with each other, and no allocation beyond what a run on one machine can hold.
    double block_params = 12.0 * cfg.n_layer * cfg.n_embd * cfg.n_embd + (double)cfg.ctx * cfg.n_embd;
    const char *clash = cfg.min_lr > cfg.lr ? "--min-lr must be at most --lr"
                      : (long long)cfg.batch * cfg.ctx > (1 << 22) ? "--batch x --ctx must be at most 4194304 tokens a step"
                      : block_params > 4e9 ? "--layers x --dim^2 x 12 must be at most 4e9 parameters" : NULL;
    if (clash) { fprintf(stderr, "gfn pretrain: %s\n", clash); free(inputs); return 1; }
    cfg.inputs = inputs;
    cfg.num_inputs = n_in;
    GfnError err = {{0}};
    PretrainResult result;
    int status = pretrain_run(&cfg, &result, &err);
    if (status) fprintf(stderr, "gfn: %s\n", err.msg);
    free(inputs);
    return status ? 1 : 0;
}
static void usage(FILE *out) {
    fprintf(out,
        "usage: gfn COMMAND [options]   (gfn COMMAND --help for each)\n"
        "commands:\n"
        "  train TASK   fine-tune a LoRA policy on a task as a GFlowNet (or SFT / REINFORCE)\n"
        "  sample       generate from a model (+ adapter) for a prompt, or from a task's policy\n"
        "  tasks        list the tasks\n"
        "  score        log-probabilities of token-id sequences under a model (and adapter)\n"
        "  convert      a model between our checkpoint (f32 / f16) and a Hugging Face directory\n"
        "  pretrain     train a GPT-2 from scratch on a text corpus\n"
        "  corpus       build the pretraining text from the shared data\n"
        "  metrics      BLEU-4, GLEU, chrF (and a BERTScore stand-in) of line-aligned text files\n"
        "  report arithmetic DIR OUT   OUT.md and OUT.svg from the result files in DIR (make reproduce-arithmetic)\n"
        "  probe arithmetic   the base model's probes: reward discrimination, next-step accuracy, base accuracy\n"
        "  report continuation DIR OUT OUT.md and OUT.svg (log P vs diversity) (make reproduce-continuation)\n"
        "  report infill DIR OUT       OUT.md (make reproduce-infill)\n"
        "  report subj DIR OUT         OUT.md and OUT.svg (accuracy vs N) (make reproduce-subj)\n"
        "  tokenize     encode standard input line by line with a tokenizer (or --decode ids)\n"
        "  tokenizer    tokenizer train: learn a byte-level BPE vocabulary from text files\n");
}

static void train_usage(FILE *out) {
    fprintf(out,
        "usage: gfn train TASK [options]\n"
        "  --loss L            subtb | tb | db | vargrad | sft | reinforce (default subtb)\n"
        "  --steps N           optimizer steps (200); 0 evaluates the untuned base model\n"
        "  --batch N           trajectories per micro-batch (16)\n"
        "  --k N               trajectories per query in a batch (16)\n"
        "  --accum N           micro-batches per step, gradients averaged (1)\n"
        "  --lr F              LoRA peak learning rate (subtb, db 2e-4; others 5e-4); --lr-min F its cosine floor (0)\n"
        "  --lr-logz F         log Z learning rate (0.1)\n"
        "  --warmup N          warm-up steps (20)\n"
        "  --clip F            gradient norm clip, 0 = off (1)\n"
        "  --rank N --alpha F  LoRA rank and alpha (64, 16)\n"
        "  --targets LIST      comma list of c_attn,attn.c_proj,c_fc,mlp.c_proj (all)\n"
        "  --on-policy F --tempered F   behaviour fractions; the rest replays (0.25, 0.5)\n"
        "  --temp-lo F --temp-hi F      tempered sampling range (0.5, 2)\n"
        "  --explore F         epsilon-uniform exploration: in the tempered rows each action is drawn\n"
        "                      uniformly among the allowed tokens with probability F (0)\n"
        "  --reward-temp A,B,H reward temperature A -> B over H steps (1,1,1)\n"
        "  --replay N          replay buffer size per query (50)\n"
        "  --gold-replay F     subtb/tb/db: the fraction of micro-batches that train on one given Z\n"
        "                      (arithmetic: one of the 10 worked rationales) instead of the behaviour's (0)\n"
        "  --eval-every N      learning curve: test accuracy at step 0, every N steps and at the end,\n"
        "                      as lines \"curve STEP name value ...\" on stdout and in the log (0: none)\n"
        "  --curve-n N         the curve's test questions per set, the first N of each (20)\n"
        "  --lambda F          SubTB lambda (1)\n"
        "  --min-len N         actions before ⊤ may be written (default: the task's own)\n"
        "  --short-states S    subtb/db, prefixes shorter than the minimum: learned (a learned root\n"
        "                      flow log F(s0) per query) | floor (the official lr = -99) | batch (log F(s0)\n"
        "                      of each micro-batch's queries from its own rows, as VarGrad's log Z) (learned)\n"
        "  -m PATH -t PATH --data PATH  base model, tokenizer, data (task-specific)\n"
        "  --stop eot|newline  rng with -m: the terminator (eot)\n"
        "  --prompt question|fewshot  arithmetic: the policy's prompt (question; the base: fewshot)\n"
        "  --seed-answers 1    rng: seed the replay buffer with the 101 valid answers; infill: with\n"
        "                      the true 4th sentences; subj: with the base's \"wishful\" rationales (0)\n"
        "  --labelled N        subj: labelled examples, 10, 20 or 50 (10)\n"
        "  --baselines N       continuation, infill, subj: 1 also evaluates the decoding / prompting\n"
        "                      baselines on the base model (subj: zero-/few-shot, SFT), 2 only those (0)\n"
        "  -s SEED             seed (1)\n"
        "  --eval-n N          test questions per evaluated set (task default)\n"
        "  --log FILE          JSONL log, one line per step\n"
        "  --save PATH         adapter file (saved atomically at the end), and its training state PATH.state\n"
        "  --save-every N      also every N steps\n"
        "  --resume STATE      continue a run from its PATH.state (the same flags), to the same bits\n"
        "  --stop-after N      stop after step N with adapter and state saved (resume later)\n"
        "  -q                  no progress line\n"
        "Threads: OMP_NUM_THREADS (default: every core). With 2 or more, a step's micro-batches run as a\n"
        "pipeline (one thread samples while the others score and learn); the results are the same bits as\n"
        "on one thread. GFN_NO_PIPELINE=1 runs them in order with the threads inside each product.\n");
}

static int parse_targets(const char *list, int targeted[LORA_NUM_TARGETS]) {
    for (int t = 0; t < LORA_NUM_TARGETS; t++) targeted[t] = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (!strcmp(tok, lora_target_names[t])) { targeted[t] = 1; found = 1; }
        if (!found) { fprintf(stderr, "gfn: unknown LoRA target '%s'\n", tok); return 1; }
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
        train_usage(argc < 3 ? stderr : stdout);
        if (argc >= 3) for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++) printf("  task %-6s %s\n", tasks[i]->name, tasks[i]->help);
        return argc < 3 ? 1 : 0;
    }
    Task *task = task_find(argv[2]);
    if (!task) { fprintf(stderr, "gfn: unknown task '%s' (gfn tasks lists them)\n", argv[2]); return 1; }
    TrainConfig cfg;
    train_config_default(&cfg);
    TaskOptions topt = { .model_path = "", .tokenizer_path = "", .data_path = "", .seed = 1, .reward_floor = -13.815511f };
    int lr_given = 0, min_len = -1;   // -1: the task's own minimum length
    cfg.curve_out = stdout;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-q")) { cfg.quiet = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn train: option %s needs a value\n", a); return 1; }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "--loss")) {
            int found = 0;
            for (int l = 0; l <= LOSS_REINFORCE; l++) if (!strcmp(v, loss_names[l])) { cfg.loss = (LossKind)l; found = 1; }
            if (!found) { fprintf(stderr, "gfn train: unknown loss '%s'\n", v); return 1; }
        } else if (!strcmp(a, "-m")) topt.model_path = v;
        else if (!strcmp(a, "-t")) topt.tokenizer_path = v;
        else if (!strcmp(a, "--data")) topt.data_path = v;
        else if (!strcmp(a, "--stop")) topt.stop = v;
        else if (!strcmp(a, "--prompt")) topt.prompt = v;
        else if (!strcmp(a, "--short-states")) {
            if (!strcmp(v, short_state_names[SHORT_LEARNED])) cfg.short_states = SHORT_LEARNED;
            else if (!strcmp(v, short_state_names[SHORT_FLOOR])) cfg.short_states = SHORT_FLOOR;
            else if (!strcmp(v, short_state_names[SHORT_BATCH])) cfg.short_states = SHORT_BATCH;
            else { fprintf(stderr, "gfn train: --short-states wants learned, floor or batch, not '%s'\n", v); return 1; }
        }
        else if (!strcmp(a, "--log")) cfg.log_path = v;
        else if (!strcmp(a, "--save")) cfg.save_path = v;
        else if (!strcmp(a, "--resume")) cfg.resume_path = v;
        else if (!strcmp(a, "--targets")) { if (parse_targets(v, cfg.lora_targets)) return 1; }
        else if (!strcmp(a, "--reward-temp")) {   // START,END,HORIZON
            char part[3][64] = { "", "", "" };
            const char *p = v;
            int parts = 0;
            for (; parts < 3; parts++) {
                size_t n = strcspn(p, ",");
                if (n >= sizeof part[0]) break;
                memcpy(part[parts], p, n);
                p += n;
                if (*p != ',') { parts++; break; }
                p++;
            }
            if (parts != 3 || *p) { fprintf(stderr, "gfn train: --reward-temp wants START,END,HORIZON, got '%s'\n", v); return 1; }
            bad = parse_real("--reward-temp START", part[0], 1e-3, 1e6, &cfg.reward_temp_start) ||
                  parse_real("--reward-temp END", part[1], 1e-3, 1e6, &cfg.reward_temp_end) ||
                  parse_count("--reward-temp HORIZON", part[2], 1, 10000000, &cfg.reward_temp_horizon);
        }
        else if (!strcmp(a, "--steps")) bad = parse_count(a, v, 0, 10000000, &cfg.steps);
        else if (!strcmp(a, "--batch")) bad = parse_count(a, v, 1, 4096, &cfg.batch);
        else if (!strcmp(a, "--k")) bad = parse_count(a, v, 1, 4096, &cfg.samples_per_query);
        else if (!strcmp(a, "--accum")) bad = parse_count(a, v, 1, 1024, &cfg.accum);
        else if (!strcmp(a, "--lr")) { bad = parse_real(a, v, 0, 10, &cfg.lr); lr_given = 1; }
        else if (!strcmp(a, "--lr-min")) bad = parse_real(a, v, 0, 10, &cfg.lr_min);
        else if (!strcmp(a, "--lr-logz")) bad = parse_real(a, v, 0, 100, &cfg.lr_log_z);
        else if (!strcmp(a, "--warmup")) bad = parse_count(a, v, 0, 10000000, &cfg.warmup);
        else if (!strcmp(a, "--clip")) bad = parse_real(a, v, 0, 1e6, &cfg.clip);
        else if (!strcmp(a, "--rank")) bad = parse_count(a, v, 1, 1024, &cfg.lora_rank);
        else if (!strcmp(a, "--alpha")) bad = parse_real(a, v, 1e-6, LORA_ALPHA_MAX, &cfg.lora_alpha);
        else if (!strcmp(a, "--on-policy")) bad = parse_real(a, v, 0, 1, &cfg.frac_on_policy);
        else if (!strcmp(a, "--tempered")) bad = parse_real(a, v, 0, 1, &cfg.frac_tempered);
        else if (!strcmp(a, "--temp-lo")) bad = parse_real(a, v, 1e-3, 1000, &cfg.temp_lo);
        else if (!strcmp(a, "--temp-hi")) bad = parse_real(a, v, 1e-3, 1000, &cfg.temp_hi);
        else if (!strcmp(a, "--explore")) bad = parse_real(a, v, 0, 1, &cfg.explore);
        else if (!strcmp(a, "--replay")) bad = parse_count(a, v, 1, 100000, &cfg.replay_capacity);
        else if (!strcmp(a, "--min-len")) bad = parse_count(a, v, 0, 100000, &min_len);
        else if (!strcmp(a, "--gold-replay")) bad = parse_real(a, v, 0, 1, &cfg.frac_gold);
        else if (!strcmp(a, "--eval-every")) bad = parse_count(a, v, 0, 10000000, &cfg.eval_every);
        else if (!strcmp(a, "--curve-n")) bad = parse_count(a, v, 1, 1000000, &cfg.curve_n);
        else if (!strcmp(a, "--lambda")) bad = parse_real(a, v, 1e-6, 1e3, &cfg.lambda);
        else if (!strcmp(a, "--save-every")) bad = parse_count(a, v, 0, 10000000, &cfg.save_every);
        else if (!strcmp(a, "--stop-after")) bad = parse_count(a, v, 0, 10000000, &cfg.stop_after);
        else if (!strcmp(a, "--eval-n")) bad = parse_count(a, v, 0, 1000000, &topt.eval_n);
        else if (!strcmp(a, "--seed-answers")) bad = parse_count(a, v, 0, 1, &topt.seed_answers);
        else if (!strcmp(a, "--labelled")) bad = parse_count(a, v, 1, 100000, &topt.num_labelled);
        else if (!strcmp(a, "--baselines")) bad = parse_count(a, v, 0, 2, &topt.baselines);
        else if (!strcmp(a, "--reward-floor")) {   // a probability; the task takes its log
            float floor_r;
            bad = parse_real(a, v, 1e-30, 1, &floor_r);
            topt.reward_floor = logf(floor_r);
        } else if (!strcmp(a, "-s")) {
            long long seed;
            bad = parse_long(a, v, 0, 0x7FFFFFFFFFFFFFFFll, &seed);
            cfg.seed = topt.seed = (uint64_t)seed;
        }
        else { fprintf(stderr, "gfn train: unknown option %s\n", a); return 1; }
        if (bad) return 1;
    }
    const char *clash = cfg.samples_per_query > cfg.batch ? "--k must be at most --batch"
                      : cfg.lr_min > cfg.lr ? "--lr-min must be at most --lr"
                      : cfg.temp_lo > cfg.temp_hi ? "--temp-lo must be at most --temp-hi"
                      : cfg.frac_on_policy + cfg.frac_tempered > 1 ? "--on-policy + --tempered must be at most 1"
                      : cfg.frac_gold > 0 && cfg.loss != LOSS_SUBTB && cfg.loss != LOSS_TB && cfg.loss != LOSS_DB
                        ? "--gold-replay needs an off-policy objective whose loss averages over rows: subtb, tb or db"
                      : cfg.stop_after > cfg.steps ? "--stop-after must be at most --steps"
                      : cfg.resume_path && cfg.steps == 0 ? "--resume needs the run's --steps (> 0)" : NULL;
    if (clash) {
        fprintf(stderr, "gfn train: %s (--batch %d --k %d, --lr %g --lr-min %g, --temp-lo %g --temp-hi %g, --on-policy %g "
                "--tempered %g, --steps %d --stop-after %d)\n", clash, cfg.batch, cfg.samples_per_query, (double)cfg.lr,
                (double)cfg.lr_min, (double)cfg.temp_lo, (double)cfg.temp_hi, (double)cfg.frac_on_policy,
                (double)cfg.frac_tempered, cfg.steps, cfg.stop_after);
        return 1;
    }
    GfnError out_err;
    struct stat save_st;   // --save DIR or DIR/ is a PEFT directory; a file must be one we may replace
    int save_is_dir = cfg.save_path && cfg.save_path[0] && (cfg.save_path[strlen(cfg.save_path) - 1] == '/' ||
                                        (stat(cfg.save_path, &save_st) == 0 && S_ISDIR(save_st.st_mode)));
    if (cfg.save_path && !save_is_dir && output_path_check(cfg.save_path, &out_err)) {
        fprintf(stderr, "gfn train: %s\n", out_err.msg);
        return 1;
    }
    if (!lr_given) cfg.lr = loss_default_lr(cfg.loss);
    char task_options[512];   // the options that change the task's rewards, checked at a resume
    snprintf(task_options, sizeof task_options, "--reward-floor %.9g --stop %s --prompt %s --seed-answers %d --labelled %d --min-len %d",
             (double)topt.reward_floor, topt.stop ? topt.stop : "eot", topt.prompt ? topt.prompt : "(default)",
             topt.seed_answers, topt.num_labelled, min_len);
    cfg.task_options = task_options;
    char explore_note[48] = "";   // printed only when on, so that earlier runs' outputs stay the same
    if (cfg.explore > 0) snprintf(explore_note, sizeof explore_note, ", explore %g", (double)cfg.explore);
    fprintf(stderr, "gfn train %s: loss %s, lr %g%s, lr-logz %g, steps %d, batch %d, k %d, accum %d, clip %g, rank %d, alpha %g, "
            "on-policy %g, tempered %g (T %g-%g%s), replay %g, short states %s\n", task->name, loss_names[cfg.loss], cfg.lr,
            lr_given ? "" : " (the loss's default)", cfg.lr_log_z, cfg.steps, cfg.batch, cfg.samples_per_query, cfg.accum,
            cfg.clip, cfg.lora_rank, cfg.lora_alpha, cfg.frac_on_policy, cfg.frac_tempered, cfg.temp_lo, cfg.temp_hi,
            explore_note, 1 - cfg.frac_on_policy - cfg.frac_tempered, short_state_names[cfg.short_states]);
    if ((cfg.loss == LOSS_SFT || cfg.frac_gold > 0) && !task->demonstration) {
        fprintf(stderr, "gfn train: task %s has no given Z to imitate (--loss sft, --gold-replay)\n", task->name);
        return 1;
    }
    GfnError err = { { 0 } };
    if (task->setup(task, &topt, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
    if (min_len >= 0) {   // a minimum length changes the task: the sampler masks ⊤ before it
        const char *why = min_len >= task->max_len ? "is not below the task's maximum length" : NULL;
        for (int d = 0; !why && d < task->num_demos && (cfg.loss == LOSS_SFT || cfg.frac_gold > 0); d++)
            if (task->demos[d]->nact < min_len) why = "is longer than one of the task's given Z (--loss sft, --gold-replay)";
        if (why) {
            fprintf(stderr, "gfn train: --min-len %d %s (%s: %d tokens at most)\n", min_len, why, task->name, task->max_len);
            task->cleanup(task);
            return 1;
        }
        task->min_len = min_len;
    }
    // The policy is the frozen base plus an adapter: a view of the base's weights (not a copy), so
    // the sampler, the reward and the learner read one copy of them (half the cache traffic).
    GPT *policy = gpt_view(task->base);
    float *log_z = gfn_calloc((size_t)task->num_train, sizeof(float));
    int status = cfg.steps > 0 ? gfn_train(task, policy, &cfg, log_z, &err) : 0;   // 0: the base itself
    if (status) fprintf(stderr, "gfn: %s\n", err.msg);
    else task->evaluate(task, policy, cfg.loss == LOSS_TB ? log_z : NULL, stdout, cfg.seed);
    free(log_z);
    gpt_free(policy);
    task->cleanup(task);
    return status;
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
        } else if (!strcmp(argv[i], "-V") && i + 1 < argc) {
            long long v;
            if (parse_long("-V", argv[++i], 257, 1 << 24, &v)) { free(inputs); return 1; }
            vocab_size = (int)v;
        }
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
        "       gfn score -m MODEL [-a ADAPTER] -t TOKENIZER --text FILE\n"
        "With --text: the whole file, tokenized, in windows of the model's context; prints\n"
        "  FILE: X nats/token, Y bits/byte   (bits/byte: total nats / ln 2 / the file's bytes)\n"
        "With --ids: scores each sequence of FILE under the model: for a line of T token ids it prints\n"
        "  loss X                      the mean of -log p(id[t+1] | id[0..t]) over t = 0..T-2\n"
        "  logprobs v1 ... v(T-1)      each log p(id[t+1] | id[0..t]), 9 significant digits\n"
        "options:\n"
        "  -m, --model MODEL      a gfn checkpoint file, or an HF GPT-2 directory\n"
        "                         (config.json + model.safetensors)\n"
        "  -a, --adapter ADAPTER  a LoRA adapter applied on top (our file, or a PEFT directory)\n"
        "  --ids FILE             one sequence per line: at least 2 whitespace-separated token ids,\n"
        "                         each in [0, vocab size), at most the model's context length;\n"
        "                         blank lines are skipped\n"
        "  -t TOKENIZER --text FILE   bits/byte of a text file (our tokenizer file or a GPT-2 vocab dir)\n"
        "  -h, --help             this help\n");
}

// A model and a tokenizer loaded together must agree: every id the tokenizer makes must index
// the model's embedding (a model may have more ids than the tokenizer, never fewer).
static int vocab_check(const GPT *model, const char *model_path, const Tokenizer *tok, const char *tok_path, const char *cmd) {
    int V = gpt_config(model).vocab_size, n = tokenizer_vocab_size(tok);
    if (n <= V) return 0;
    fprintf(stderr, "gfn %s: the tokenizer %s has %d ids but the model %s only %d: they do not belong together\n",
            cmd, tok_path, n, model_path, V);
    return 1;
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
                if (v > 100000000L) overflow = 1;   // stop growing: any id this long is out of range
                else v = v * 10 + (*c - '0');
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
    const char *model_path = NULL, *adapter_path = NULL, *ids_path = NULL, *tok_path = NULL, *text_path = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { score_usage(stdout); return 0; }
        const char **slot = !strcmp(a, "-m") || !strcmp(a, "--model") ? &model_path
                          : !strcmp(a, "-a") || !strcmp(a, "--adapter") ? &adapter_path
                          : !strcmp(a, "-t") ? &tok_path
                          : !strcmp(a, "--text") ? &text_path
                          : !strcmp(a, "--ids") ? &ids_path : NULL;
        if (!slot) { fprintf(stderr, "gfn score: unknown option '%s'\n", a); score_usage(stderr); return 1; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn score: %s needs a value\n", a); return 1; }
        *slot = argv[++i];
    }
    if (!model_path || (!ids_path == !text_path) || (text_path && !tok_path)) {
        fprintf(stderr, "gfn score: -m MODEL and either --ids FILE or -t TOKENIZER --text FILE are required\n");
        score_usage(stderr);
        return 1;
    }
    GfnError err;
    GPT *model = gpt_load(model_path, &err);
    if (!model) { fprintf(stderr, "gfn score: %s\n", err.msg); return 1; }
    if (adapter_path && lora_load(model, adapter_path, &err)) {
        fprintf(stderr, "gfn score: %s\n", err.msg);
        gpt_free(model);
        return 1;
    }
    if (text_path) {
        Tokenizer *tok = tokenizer_load(tok_path, &err);
        double bpb = 0, npt = 0;
        if (tok && vocab_check(model, model_path, tok, tok_path, "score")) { tokenizer_free(tok); gpt_free(model); return 1; }
        int failed = !tok || evaluate_file(model, tok, text_path, 8, gpt_config(model).max_seq_len, &bpb, &npt, &err);
        if (failed) fprintf(stderr, "gfn score: %s\n", err.msg);
        else printf("%s: %.4f nats/token, %.4f bits/byte\n", text_path, npt, bpb);
        tokenizer_free(tok);
        gpt_free(model);
        return failed;
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

// ----------------------------------------------------------------------------------------------
// `gfn convert`: a model from one format to another (our checkpoint in f32 or f16, HF directory).

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int fp16 = 0, hf = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: gfn convert IN OUT [--fp16 | --hf]\n"
                   "  IN       a gfn checkpoint or a Hugging Face GPT-2 directory (config.json + model.safetensors)\n"
                   "  OUT      a gfn checkpoint (f32), written atomically\n"
                   "  --fp16   write the checkpoint with f16 tensors (half the size; loads as f32)\n"
                   "  --hf     write OUT as a Hugging Face directory instead (config.json + model.safetensors, F32)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--fp16")) fp16 = 1;
        else if (!strcmp(argv[i], "--hf")) hf = 1;
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else { fprintf(stderr, "gfn convert: unexpected argument '%s'\n", argv[i]); return 1; }
    }
    if (!in || !out || (fp16 && hf)) { fprintf(stderr, "usage: gfn convert IN OUT [--fp16 | --hf]\n"); return 1; }
    GfnError err;
    GPT *model = gpt_load(in, &err);
    if (!model) { fprintf(stderr, "gfn convert: %s\n", err.msg); return 1; }
    int rc = hf ? gpt_save_hf(model, out, &err) : fp16 ? gpt_save_f16(model, out, &err) : gpt_save(model, out, &err);
    if (rc) fprintf(stderr, "gfn convert: %s\n", err.msg);
    gpt_free(model);
    return rc ? 1 : 0;
}

// ----------------------------------------------------------------------------------------------
// `gfn metrics`: the text metrics of eval.c for line-aligned reference and hypothesis files.

static void metrics_usage(FILE *out) {
    fprintf(out,
        "usage: gfn metrics --ref REF --hyp HYP [-m MODEL -t TOKENIZER]\n"
        "Scores line i of HYP against line i of REF (UTF-8 text, one sentence per line, the same number\n"
        "of lines; a last line without a newline counts). Prints a '#' header, then one line per pair:\n"
        "  BLEU-4 GLEU chrF [BERT-F1 BERT-F1-rescaled]     6 decimals each, on a 0..1 scale\n"
        "and a last line '# mean ...'. BLEU-4: nltk's sentence_bleu with smoothing method1; GLEU: nltk's\n"
        "sentence_gleu; chrF: sacrebleu's default chrF / 100; tokens: whitespace-separated, case kept.\n"
        "With -m MODEL -t TOKENIZER: the BERTScore stand-in (greedy max-cosine matching on the model's\n"
        "last hidden layer), rescaled by b = the mean F1 of 1000 random pairs of REF lines (seed 1).\n");
}

// The lines of a text file ('\n' ends a line, a '\r' before it is dropped): an array of *count
// NUL-terminated lines inside one buffer, *buffer; free() both.
static char **read_lines(const char *path, char **buffer, int *count, GfnError *err) {
    size_t len = 0;
    char *text = (char *)read_file(path, &len, err);   // NUL-terminated by read_file
    if (!text) return NULL;
    if (memchr(text, 0, len)) { gfn_error_set(err, "%s: holds a NUL byte (not a text file)", path); free(text); return NULL; }
    int n = 0;
    for (size_t i = 0; i < len; i++) n += text[i] == '\n';
    n += len > 0 && text[len - 1] != '\n';
    char **lines = gfn_malloc((size_t)(n > 0 ? n : 1) * sizeof(char *));
    char *p = text;
    for (int k = 0; k < n; k++) {
        lines[k] = p;
        char *end = strchr(p, '\n');
        if (!end) end = text + len;
        p = *end ? end + 1 : end;
        if (end > lines[k] && end[-1] == '\r') end--;
        *end = 0;
    }
    *buffer = text;
    *count = n;
    return lines;
}

static int cmd_metrics(int argc, char **argv) {
    const char *ref_path = NULL, *hyp_path = NULL, *model_path = NULL, *tok_path = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { metrics_usage(stdout); return 0; }
        const char **slot = !strcmp(a, "--ref") ? &ref_path : !strcmp(a, "--hyp") ? &hyp_path
                          : !strcmp(a, "-m") || !strcmp(a, "--model") ? &model_path
                          : !strcmp(a, "-t") || !strcmp(a, "--tokenizer") ? &tok_path : NULL;
        if (!slot) { fprintf(stderr, "gfn metrics: unknown option '%s'\n", a); metrics_usage(stderr); return 1; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn metrics: %s needs a value\n", a); return 1; }
        *slot = argv[++i];
    }
    if (!ref_path || !hyp_path || !model_path != !tok_path) {
        fprintf(stderr, "gfn metrics: --ref REF and --hyp HYP are required, and -m MODEL goes with -t TOKENIZER\n");
        metrics_usage(stderr);
        return 1;
    }
    GfnError err;
    char *ref_text = NULL, *hyp_text = NULL;
    int num_ref = 0, num_hyp = 0, status = 1;
    char **ref = read_lines(ref_path, &ref_text, &num_ref, &err), **hyp = NULL;
    if (ref) hyp = read_lines(hyp_path, &hyp_text, &num_hyp, &err);
    GPT *encoder = NULL;
    Tokenizer *tok = NULL;
    float **ref_emb = NULL, **hyp_emb = NULL;   // (num_ref) each (len[i], C) unit token vectors
    int *ref_len = NULL, *hyp_len = NULL, C = 0;
    if (!ref || !hyp) { fprintf(stderr, "gfn metrics: %s\n", err.msg); goto done; }
    if (num_ref != num_hyp) {
        fprintf(stderr, "gfn metrics: %s has %d lines but %s has %d: the files must be line-aligned\n", ref_path,
                num_ref, hyp_path, num_hyp);
        goto done;
    }
    if (num_ref == 0) { fprintf(stderr, "gfn metrics: %s: no lines to score\n", ref_path); goto done; }
    double baseline = 0;
    if (model_path) {
        if (!(encoder = gpt_load(model_path, &err)) || !(tok = tokenizer_load(tok_path, &err))) {
            fprintf(stderr, "gfn metrics: %s\n", err.msg);
            goto done;
        }
        C = gpt_config(encoder).n_embd;
        ref_emb = gfn_calloc((size_t)num_ref, sizeof(float *));
        ref_len = gfn_calloc((size_t)num_ref, sizeof(int));
        hyp_emb = gfn_calloc((size_t)num_ref, sizeof(float *));
        hyp_len = gfn_calloc((size_t)num_ref, sizeof(int));
        bertscore_embed_texts(encoder, tok, (const char *const *)ref, num_ref, ref_emb, ref_len);
        bertscore_embed_texts(encoder, tok, (const char *const *)hyp, num_ref, hyp_emb, hyp_len);
        baseline = bertscore_baseline(ref_emb, ref_len, num_ref, C, 1000, 1);
        printf("# BERTScore stand-in: encoder %s, baseline b = %.6f (1000 random pairs of %s lines, seed 1)\n",
               model_path, baseline, ref_path);
    }
    printf("# bleu4 gleu chrf%s\n", encoder ? " bert_f1 bert_f1_rescaled" : "");
    double sum[5] = { 0 };
    for (int i = 0; i < num_ref; i++) {
        double v[5] = { bleu4(ref[i], hyp[i]), gleu(ref[i], hyp[i]), chrf(ref[i], hyp[i]), 0, 0 };
        int columns = 3;
        if (encoder) {
            v[3] = bertscore_f1(hyp_emb[i], hyp_len[i], ref_emb[i], ref_len[i], C, NULL, NULL);
            v[4] = bertscore_rescale(v[3], baseline);
            columns = 5;
        }
        for (int k = 0; k < columns; k++) { printf(k ? " %.6f" : "%.6f", v[k]); sum[k] += v[k]; }
        printf("\n");
    }
    printf("# mean");
    for (int k = 0; k < (encoder ? 5 : 3); k++) printf(" %.6f", sum[k] / num_ref);
    printf("\n");
    status = fflush(stdout) == 0 ? 0 : 1;
done:
    for (int i = 0; ref_emb && i < num_ref; i++) { free(ref_emb[i]); free(hyp_emb[i]); }
    free(ref_emb);
    free(ref_len);
    free(hyp_emb);
    free(hyp_len);
    gpt_free(encoder);
    tokenizer_free(tok);
    free(ref);
    free(ref_text);
    free(hyp);
    free(hyp_text);
    return status;
}

// ----------------------------------------------------------------------------------------------
// `gfn sample`: generations of a model (with an adapter) for a prompt, or of a task's policy.
typedef struct { int *prompt; int prompt_len; Tokenizer *tok; } TextTask;

static const int *text_prompt(Task *task, int query, int *len) {
    (void)query;
    TextTask *tt = task->state;
    *len = tt->prompt_len;
    return tt->prompt;
}

static void text_render(Task *task, const Traj *t, char *buf, size_t cap) {
    TextTask *tt = task->state;
    size_t len = 0;
    GfnError err;
    char *text = tokenizer_decode(tt->tok, t->tokens, (size_t)t->ntok, &len, &err);
    snprintf(buf, cap, "%s", text ? text : err.msg);
    free(text);
}

static void sample_usage(FILE *out) {
    fprintf(out,
        "usage: gfn sample -m MODEL -t TOKENIZER -p PROMPT [options]\n"
        "       gfn sample --task NAME [-m MODEL -t TOKENIZER] [options]   (a task's prompt)\n"
        "  -a ADAPTER   LoRA adapter (ours or a PEFT directory)\n"
        "  -n N         samples (4)           -b B        batch size (N up to 64)\n"
        "  -T TEMP      temperature (1)       --top-k K   (0: off)     --top-p P (1: off)\n"
        "  -l LEN       most tokens (64)      -s SEED     (1)\n"
        "  --decode M   sample (default), greedy, nucleus (top-p 0.95 unless --top-p), beam, diverse\n"
        "  --beams N    beam / diverse: hypotheses (4)   --groups G  diverse: groups (2; N/G beams each)\n"
        "  --diversity L  diverse: Hamming penalty per earlier-group beam choosing a token (1)\n"
        "Each line: log q(Z ⊤) at T = 1 under the task's mask, a tab, the text (\\\\, \\n, \\t escaped).\n");
}

// Prints one decoded sequence on one line: its log q(Z ⊤), a tab, its text (or its token ids)
// with backslash, newline and tab written as \\, \n and \t.
static void print_decoded(Task *task, const Traj *t, float log_q, char *buf, size_t cap) {
    buf[0] = 0;
    if (task->render) task->render(task, t, buf, cap);
    else for (int j = 0; j < t->ntok; j++) snprintf(buf + strlen(buf), 16, j ? " %d" : "%d", t->tokens[j]);
    printf("%.4f\t", log_q);
    for (const char *c = buf; *c; c++) {
        if (*c == '\\') fputs("\\\\", stdout);
        else if (*c == '\n') fputs("\\n", stdout);
        else if (*c == '\t') fputs("\\t", stdout);
        else putchar(*c);
    }
    putchar('\n');
}

static int cmd_sample(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *adapter = NULL, *prompt = NULL, *task_name = NULL;
    int n = 4, batch = 0, max_len = 64;
    uint64_t seed = 1;
    SamplerConfig sc = { 1.0f, 0, 1.0f, 0 };
    const char *decode = "sample";
    BeamConfig bc = { 4, 0, 1.0f };   // groups 0: the method's default
    int top_p_given = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { sample_usage(stdout); return 0; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn sample: option %s needs a value\n", a); return 1; }
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-t")) tok_path = v;
        else if (!strcmp(a, "-a")) adapter = v;
        else if (!strcmp(a, "-p")) prompt = v;
        else if (!strcmp(a, "--task")) task_name = v;
        else if (!strcmp(a, "-n")) { if (parse_count(a, v, 1, 1000000, &n)) return 1; }
        else if (!strcmp(a, "-b")) { if (parse_count(a, v, 1, 4096, &batch)) return 1; }
        else if (!strcmp(a, "-l")) { if (parse_count(a, v, 1, 65536, &max_len)) return 1; }
        else if (!strcmp(a, "-T")) { if (parse_real(a, v, 1e-3, 1000, &sc.temperature)) return 1; }
        else if (!strcmp(a, "--top-k")) { if (parse_count(a, v, 0, 1 << 22, &sc.top_k)) return 1; }
        else if (!strcmp(a, "--top-p")) { if (parse_real(a, v, 1e-6, 1, &sc.top_p)) return 1; top_p_given = 1; }
        else if (!strcmp(a, "-s")) {
            long long s;
            if (parse_long(a, v, 0, 0x7FFFFFFFFFFFFFFFll, &s)) return 1;
            seed = (uint64_t)s;
        }
        else if (!strcmp(a, "--decode")) decode = v;
        else if (!strcmp(a, "--beams")) { if (parse_count(a, v, 1, 4096, &bc.beams)) return 1; }
        else if (!strcmp(a, "--groups")) { if (parse_count(a, v, 1, 4096, &bc.groups)) return 1; }
        else if (!strcmp(a, "--diversity")) { if (parse_real(a, v, 0, 1e6, &bc.diversity)) return 1; }
        else { fprintf(stderr, "gfn sample: unknown option %s\n", a); sample_usage(stderr); return 1; }
    }
    int beam = !strcmp(decode, "beam") || !strcmp(decode, "diverse");
    if (!beam && strcmp(decode, "sample") && strcmp(decode, "greedy") && strcmp(decode, "nucleus")) {
        fprintf(stderr, "gfn sample: --decode %s: not one of sample, greedy, nucleus, beam, diverse\n", decode);
        return 1;
    }
    if (!strcmp(decode, "nucleus") && !top_p_given) sc.top_p = 0.95f;
    if (bc.groups == 0) bc.groups = !strcmp(decode, "diverse") ? 2 : 1;
    if (!strcmp(decode, "beam")) bc.groups = 1;
    if (beam && (bc.beams < 1 || bc.groups < 1 || bc.beams % bc.groups || !(bc.diversity >= 0))) {
        fprintf(stderr, "gfn sample: --beams %d --groups %d --diversity %g: beams must be a positive multiple of "
                "groups, diversity >= 0\n", bc.beams, bc.groups, bc.diversity);
        return 1;
    }
    if (!strcmp(decode, "greedy")) { sc.temperature = 0; n = 1; }   // one answer: greedy is deterministic
    if (batch < 1) batch = n < 64 ? n : 64;
    GfnError err = { { 0 } };
    Task text_task = { 0 }, *task = &text_task;
    TextTask tt = { 0 };
    if (task_name) {
        task = task_find(task_name);
        if (!task) { fprintf(stderr, "gfn sample: unknown task '%s'\n", task_name); return 1; }
        TaskOptions topt = { model_path ? model_path : "", tok_path ? tok_path : "", "", seed, -13.815511f, 1, 0, NULL, NULL, 0, 0, 0 };
        if (task->setup(task, &topt, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
    } else {
        if (!model_path || !tok_path || !prompt) { sample_usage(stderr); return 1; }
        text_task.base = gpt_load(model_path, &err);
        if (!text_task.base) { fprintf(stderr, "gfn: %s\n", err.msg); return 1; }
        tt.tok = tokenizer_load(tok_path, &err);
        if (!tt.tok) { fprintf(stderr, "gfn: %s\n", err.msg); gpt_free(text_task.base); return 1; }
        if (vocab_check(text_task.base, model_path, tt.tok, tok_path, "sample")) {
            tokenizer_free(tt.tok); gpt_free(text_task.base); return 1;
        }
        size_t plen;
        tt.prompt = tokenizer_encode(tt.tok, prompt, strlen(prompt), 1, &plen);
        tt.prompt_len = (int)plen;
        int V = gpt_config(text_task.base).vocab_size, maxT = gpt_config(text_task.base).max_seq_len;
        if (tt.prompt_len + max_len > maxT) max_len = maxT - tt.prompt_len;
        if (tt.prompt_len < 1 || max_len < 1) {
            if (tt.prompt_len < 1) fprintf(stderr, "gfn sample: -p: empty prompt\n");
            else fprintf(stderr, "gfn sample: -p: the prompt (%d tokens) fills the model's context (%d)\n", tt.prompt_len, maxT);
            free(tt.prompt); tokenizer_free(tt.tok); gpt_free(text_task.base);
            return 1;
        }
        text_task.state = &tt;
        text_task.name = "text";
        text_task.terminator = tokenizer_eot_id(tt.tok);
        text_task.max_len = max_len;
        text_task.allowed = gfn_calloc((size_t)V, 1);
        for (int v = 0; v < V && v < tokenizer_vocab_size(tt.tok); v++) text_task.allowed[v] = 1;
        text_task.prompt = text_prompt;
        text_task.render = text_render;
    }
    GPT *policy = copy_model(task->base);
    int status = 0;
    if (adapter && lora_load(policy, adapter, &err)) { fprintf(stderr, "gfn: %s\n", err.msg); status = 1; }
    if (!status && gpt_lora(policy)) gpt_lora_merge(policy);   // merged: plain, faster inference
    Rng rng;
    rng_seed(&rng, seed);
    if (beam && bc.beams > batch) batch = bc.beams;
    Traj **t = gfn_malloc(sizeof(Traj *) * (size_t)batch);
    int *queries = gfn_calloc((size_t)batch, sizeof(int));
    float *log_q = gfn_malloc(sizeof(float) * (size_t)batch);   // (batch) score of each sequence
    for (int i = 0; i < batch; i++) t[i] = traj_new(task->max_len);
    char *buf = gfn_malloc(1 << 16);
    if (!status && beam) {
        int found;
        beam_search(policy, task, queries, 1, &bc, t, log_q, &found);
        for (int i = 0; i < found; i++) print_decoded(task, t[i], log_q[i], buf, 1 << 16);
    }
    for (int done = 0; !status && !beam && done < n; done += batch) {
        int m = n - done < batch ? n - done : batch;
        sample_trajectories(policy, task, queries, t, m, &sc, &rng);
        policy_sequence_logq(policy, task, t, m, log_q);
        for (int i = 0; i < m; i++) print_decoded(task, t[i], log_q[i], buf, 1 << 16);
    }
    free(buf); free(log_q);
    for (int i = 0; i < batch; i++) traj_free(t[i]);
    free(t); free(queries);
    gpt_free(policy);
    if (task_name) task->cleanup(task);
    else { gpt_free(text_task.base); tokenizer_free(tt.tok); free(tt.prompt); free(text_task.allowed); }
    return status;
}

// ----------------------------------------------------------------------------------------------
// gfn probe arithmetic: the base model's probes (tasks/arithmetic_probe.c), Markdown on stdout.

static int cmd_probe(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[2], "arithmetic")) {
        fprintf(argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) ? stdout : stderr,
                "usage: gfn probe arithmetic [-m MODEL] [-t TOKENIZER] [--data DIR|none] [-n N] [-s SEED] [--no-accuracy]\n"
                "  reward discrimination, next-step accuracy with the gold prefix and the untuned base's accuracy on\n"
                "  the first N (100) test questions of 3, 4 and 5 operands, as Markdown tables on stdout\n");
        return argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) ? 0 : 1;
    }
    TaskOptions topt = { "", "", "", 1, -13.815511f, 1, 0, NULL, NULL, 0, 0, 0 };
    long long per_set = 100, seed = 1;
    int with_accuracy = 1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--no-accuracy")) { with_accuracy = 0; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "gfn probe: option %s needs a value\n", a); return 1; }
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) topt.model_path = v;
        else if (!strcmp(a, "-t")) topt.tokenizer_path = v;
        else if (!strcmp(a, "--data")) topt.data_path = v;
        else if (!strcmp(a, "-n")) { if (parse_long(a, v, 1, 100000, &per_set)) return 1; }
        else if (!strcmp(a, "-s")) { if (parse_long(a, v, 0, 1LL << 62, &seed)) return 1; }
        else { fprintf(stderr, "gfn probe: unknown option %s\n", a); return 1; }
    }
    topt.seed = (uint64_t)seed;
    Text md = { NULL, 0, 0 };
    GfnError err = { { 0 } };
    if (arith_probe(&task_arithmetic, &topt, (int)per_set, (uint64_t)seed, with_accuracy, &md, &err)) {
        fprintf(stderr, "gfn probe: %s\n", err.msg);
        free(md.s);
        return 1;
    }
    fputs(md.s, stdout);
    free(md.s);
    return 0;
}

static int run_command(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc, argv);
    if (!strcmp(argv[1], "sample")) return cmd_sample(argc, argv);
    if (!strcmp(argv[1], "tasks")) {
        for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++) printf("%-8s %s\n", tasks[i]->name, tasks[i]->help);
        return 0;
    }
    if (!strcmp(argv[1], "pretrain")) return cmd_pretrain(argc, argv);
    if (!strcmp(argv[1], "corpus")) return cmd_corpus(argc, argv);
    if (!strcmp(argv[1], "probe")) return cmd_probe(argc, argv);
    if (!strcmp(argv[1], "report") && argc == 5 && !strcmp(argv[2], "arithmetic")) {   // report arithmetic DIR OUT
        char md[4096], svg[4096];
        GfnError err = { { 0 } };
        snprintf(md, sizeof md, "%s.md", argv[4]);
        snprintf(svg, sizeof svg, "%s.svg", argv[4]);
        if (arith_report(argv[3], md, svg, &err)) { fprintf(stderr, "gfn report: %s\n", err.msg); return 1; }
        printf("wrote %s and %s\n", md, svg);
        return 0;
    }
    if (!strcmp(argv[1], "report") && argc == 5 && (!strcmp(argv[2], "continuation") || !strcmp(argv[2], "infill") || !strcmp(argv[2], "subj"))) {
        char md[4096], svg[4096];   // report continuation|infill|subj DIR OUT
        GfnError err = { { 0 } };
        snprintf(md, sizeof md, "%s.md", argv[4]);
        snprintf(svg, sizeof svg, "%s.svg", argv[4]);
        int infill = !strcmp(argv[2], "infill");
        if (infill ? infill_report(argv[3], md, &err) : !strcmp(argv[2], "subj") ? subj_report(argv[3], md, svg, &err)
                                                       : continuation_report(argv[3], md, svg, &err)) {
            fprintf(stderr, "gfn report: %s\n", err.msg);
            return 1;
        }
        printf(infill ? "wrote %s\n" : "wrote %s and %s\n", md, svg);
        return 0;
    }
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(argv[1], "tokenizer")) return cmd_tokenizer(argc, argv);
    if (!strcmp(argv[1], "score")) return cmd_score(argc, argv);
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    if (!strcmp(argv[1], "metrics")) return cmd_metrics(argc, argv);
    fprintf(stderr, "gfn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}

// Whatever the command, output that did not reach standard output (a full disk, /dev/full, a
// closed pipe) makes the exit status nonzero.
int main(int argc, char **argv) {
    gfn_threads_init(argv);   // before any parallel region: threads sleep when they wait (util.c)
    int status = run_command(argc, argv);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "gfn: error writing standard output: %s\n", strerror(errno));
        return 1;
    }
    return status;
}
