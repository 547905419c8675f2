// tests/test_badinput.c — bad input through the real ./gfn binary (built by `make test` first):
// files with bad contents and command lines with bad values. Each case must exit nonzero, say
// what is wrong with which file or flag (substrings of its message), and leave every file in the
// work directory as it was: nothing created, nothing changed, nothing removed.
#define _POSIX_C_SOURCE 200809L   // lstat, symlink, opendir
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// A directory's state as text: every entry (recursively) with its kind, and for regular files
// their size and an FNV-1a hash of their bytes; symlinks with their target.
static void snapshot(const char *dir, char **text, size_t *len, size_t *cap) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char *names[256];
    int n = 0;
    while ((e = readdir(d)) && n < 256)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)   // readdir's order is not fixed: sort the names
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
    for (int i = 0; i < n; i++) {
        char path[1024], line[1400], target[512] = "";
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        unsigned long long hash = 1469598103934665603ull;
        char kind = '?';
        if (lstat(path, &st) == 0) {
            kind = S_ISLNK(st.st_mode) ? 'l' : S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 'o';
            if (kind == 'l') { ssize_t k = readlink(path, target, sizeof target - 1); target[k > 0 ? k : 0] = 0; }
            if (kind == 'f') {
                FILE *f = fopen(path, "rb");
                int c;
                while (f && (c = getc(f)) != EOF) hash = (hash ^ (unsigned char)c) * 1099511628211ull;
                if (f) fclose(f);
            }
        }
        int m = snprintf(line, sizeof line, "%c %s %lld %llx %s\n", kind, path, (long long)st.st_size, hash, target);
        if (*len + (size_t)m + 1 > *cap) { *cap = 2 * (*len + (size_t)m + 1); *text = realloc(*text, *cap); }
        memcpy(*text + *len, line, (size_t)m + 1);
        *len += (size_t)m;
        if (kind == 'd') snapshot(path, text, len, cap);
        free(names[i]);
    }
}

static char *dir_state(const char *dir) {
    char *text = calloc(1, 1);
    size_t len = 0, cap = 1;
    snapshot(dir, &text, &len, &cap);
    return text;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    int ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) != 0) || !ok;
}
static int write_str(const char *path, const char *text) { return write_bytes(path, text, strlen(text)); }

// Overwrites 4 bytes at offset with a little-endian float (NaN or an infinity).
static int poke_f32(const char *path, long offset, float v) {
    unsigned char b[4];
    put_le_f32(b, v);
    FILE *f = fopen(path, "r+b");
    if (!f) return 1;
    int ok = fseek(f, offset, SEEK_SET) == 0 && fwrite(b, 1, 4, f) == 4;
    return (fclose(f) != 0) || !ok;
}

// The first data byte of a safetensors file: 8 + its header length.
static long safetensors_data_offset(const char *path) {
    unsigned char b[8] = { 0 };
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(b, 1, 8, f);
    fclose(f);
    return got == 8 ? 8 + (long)le_u32(b) : -1;
}

static int replace_in_file(const char *path, const char *from, const char *to) {
    size_t len;
    GfnError err;
    char *text = (char *)read_file(path, &len, &err);
    char *at = text ? strstr(text, from) : NULL;
    if (!at) { free(text); return 1; }
    size_t head = (size_t)(at - text), from_len = strlen(from), to_len = strlen(to);
    char *out = malloc(len - from_len + to_len + 1);
    memcpy(out, text, head);
    memcpy(out + head, to, to_len);
    memcpy(out + head + to_len, at + from_len, len - head - from_len);
    int rc = write_bytes(path, out, len - from_len + to_len);
    free(out);
    free(text);
    return rc;
}

// The fixtures: a tokenizer of 300 ids, models that fit it (and one that does not), adapters,
// an HF and a PEFT directory, then each broken in one way. '@' in a case stands for the work dir.
static int make_fixtures(const char *w) {
    char p[1024], q[1024];
    GfnError err;
    snprintf(p, sizeof p, "%s/corpus.txt", w);
    const char *text = "the cat sat on the mat. the dog sat on the log.\n<|endoftext|>\nonce upon a time there was a cat.\n";
    if (write_str(p, text)) return 1;
    const char *inputs[1] = { p };
    Tokenizer *tok = tokenizer_train(inputs, 1, 300, &err);
    if (!tok) { printf("tokenizer_train: %s\n", err.msg); return 1; }
    snprintf(q, sizeof q, "%s/tok300.bin", w);
    int rc = tokenizer_save(tok, q, &err);
    tokenizer_free(tok);
    if (rc) return 1;
    struct { const char *name; GPTConfig c; } models[] = {
        { "m300.ckpt", { 300, 16, 1, 2, 8 } },    // fits tok300, context 16
        { "m260.ckpt", { 260, 16, 1, 2, 8 } },    // fewer ids than tok300
        { "m300_256.ckpt", { 300, 256, 1, 2, 8 } },   // room for the rng task's prompt
    };
    for (int i = 0; i < 3; i++) {
        GPT *m = gpt_new_random(models[i].c, 1);
        snprintf(p, sizeof p, "%s/%s", w, models[i].name);
        rc = !m || gpt_save(m, p, &err);
        if (!rc && i == 0) {
            snprintf(p, sizeof p, "%s/nan.ckpt", w);           // wte[0] NaN
            snprintf(q, sizeof q, "%s/inf.ckpt", w);           // the last value (ln_f.bias) +inf
            rc = gpt_save(m, p, &err) || poke_f32(p, 64, NAN) || gpt_save(m, q, &err) ||
                 poke_f32(q, 64 + 4 * ((long)gpt_num_parameters(m) - 1), INFINITY);
            snprintf(p, sizeof p, "%s/hf", w);
            rc = rc || gpt_save_hf(m, p, &err);
            snprintf(p, sizeof p, "%s/hf_nan", w);
            snprintf(q, sizeof q, "%s/hf_nan/model.safetensors", w);
            rc = rc || gpt_save_hf(m, p, &err) || poke_f32(q, safetensors_data_offset(q) + 4, NAN);
            snprintf(p, sizeof p, "%s/hf_huge", w);
            snprintf(q, sizeof q, "%s/hf_huge/config.json", w);
            rc = rc || gpt_save_hf(m, p, &err) || replace_in_file(q, "\"n_layer\": 1", "\"n_layer\": 1000") ||
                 replace_in_file(q, "\"n_embd\": 8", "\"n_embd\": 16384");
            int all[LORA_NUM_TARGETS] = { 1, 1, 1, 1 };
            gpt_lora_attach(m, 2, 4, 0, all, 7);
            const float *lora_b = NULL;   // B starts at zero: make it nonzero, like a trained adapter
            for (size_t k = 0; k < gpt_lora(m)->num_parameters; k++) gpt_lora(m)->memory[k] += 0.01f;
            (void)lora_b;
            snprintf(p, sizeof p, "%s/a.lora", w);
            snprintf(q, sizeof q, "%s/nan.lora", w);
            rc = rc || lora_save(m, p, &err) || lora_save(m, q, &err) || poke_f32(q, 64, NAN);
            snprintf(q, sizeof q, "%s/alpha.lora", w);
            rc = rc || lora_save(m, q, &err) || poke_f32(q, 16, INFINITY);
            snprintf(p, sizeof p, "%s/peft_nan/", w);
            snprintf(q, sizeof q, "%s/peft_nan/adapter_model.safetensors", w);
            rc = rc || lora_save(m, p, &err) || poke_f32(q, safetensors_data_offset(q), NAN);
            snprintf(p, sizeof p, "%s/peft_alpha/", w);
            snprintf(q, sizeof q, "%s/peft_alpha/adapter_config.json", w);
            rc = rc || lora_save(m, p, &err) || replace_in_file(q, "\"lora_alpha\": 4", "\"lora_alpha\": 1e39");
        }
        gpt_free(m);
        if (rc) { printf("fixtures: %s\n", err.msg); return 1; }
    }
    // Text files: ids, a prompt, an arithmetic data folder with a num_sol no int can hold.
    static const struct { const char *name, *text; } files[] = {
        { "ids_ok.txt", "1 2 3\n" },
        { "ids_huge.txt", "1 12345678901234567890123\n" },
        { "ids_neg.txt", "1 -3\n" },
        { "ids_one.txt", "5\n" },
        { "ids_empty.txt", "\n\n" },
        { "ids_long.txt", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18\n" },
        { "ids_vocab.txt", "1 300\n" },
        { "garbage.bin", "this is not a checkpoint, a tokenizer or anything else we read........................\n" },
        { "arith/1digit_34_op+-_hw.json", "[{\"str_query\": \"Question: 1 + 2 = ? Answer:\", \"num_sol\": 1e300}]" },
        { "arith_obj/1digit_34_op+-_hw.json", "{\"str_query\": \"Question: 1 + 2 = ? Answer:\", \"num_sol\": 3}" },
        { "hf_badjson/config.json", "{\"vocab_size\": 300, \"n_positions\": 16, " },
        { "hf_badjson/model.safetensors", "" },
        { "out.ckpt", "previous contents, to be kept\n" },
        { "target.txt", "the file a symlink points at\n" },
    };
    snprintf(p, sizeof p, "%s/arith", w);
    snprintf(q, sizeof q, "%s/arith_obj", w);
    if (mkdir(p, 0755) || mkdir(q, 0755)) return 1;
    snprintf(p, sizeof p, "%s/hf_badjson", w);
    if (mkdir(p, 0755)) return 1;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", w, files[i].name);
        if (write_str(p, files[i].text)) return 1;
    }
    snprintf(p, sizeof p, "%s/link.ckpt", w);
    snprintf(q, sizeof q, "target.txt");
    if (symlink(q, p)) return 1;
    snprintf(p, sizeof p, "%s/adir", w);
    return mkdir(p, 0755);
}

// A training state of a 2-step rng run, made through the binary (so its task options are the
// command line's), and copies of it damaged: cut in half, one bit flipped, empty.
#define RNG_RUN "train rng -m @/m300_256.ckpt -t @/tok300.bin --stop newline --steps 2 --batch 2 --k 1 --rank 2 -q"
static int make_state_fixtures(const char *gfn, const char *w) {
    char cmd[4096], p[1024], q[1024];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s train rng -m %s/m300_256.ckpt -t %s/tok300.bin --stop newline --steps 2 "
             "--batch 2 --k 1 --rank 2 -q --save %s/st.lora > /dev/null 2>&1", gfn, w, w, w);
    if (system(cmd) != 0) return 1;
    snprintf(p, sizeof p, "%s/st.lora.state", w);
    size_t len;
    GfnError err;
    unsigned char *state = read_file(p, &len, &err);
    int rc = !state || len < 100;
    snprintf(q, sizeof q, "%s/st_half.state", w);
    rc = rc || write_bytes(q, state, len / 2);
    snprintf(q, sizeof q, "%s/st_empty.state", w);
    rc = rc || write_bytes(q, state, 0);
    if (!rc) state[len / 2] ^= 1;
    snprintf(q, sizeof q, "%s/st_flip.state", w);
    rc = rc || write_bytes(q, state, len);
    free(state);
    return rc;
}

// One case: shell prefix (limits), the arguments of ./gfn, where standard output goes (NULL: a
// capture file), and two substrings its message must contain (NULL: none).
typedef struct { const char *pre, *args, *out, *want1, *want2; } BadCase;

static const BadCase cases[] = {
    // ---- gfn train: every numeric flag's range, and values that must agree
    { 0, "train toy --steps 1e12", 0, "--steps", "[0, 10000000]" },
    { 0, "train toy --steps -1", 0, "--steps", "whole number" },
    { 0, "train toy --steps 2.5", 0, "--steps", "whole number" },
    { 0, "train toy --batch 1e12", 0, "--batch", "[1, 4096]" },
    { 0, "train toy --batch 1000000000", 0, "--batch", "[1, 4096]" },
    { 0, "train toy --rank 1e12", 0, "--rank", "[1, 1024]" },
    { 0, "train toy --rank 1e9", 0, "--rank", "[1, 1024]" },
    { 0, "train toy -s -1", 0, "-s", "integer" },
    { 0, "train toy -s 123456789012345678901234", 0, "-s", "integer" },
    { 0, "train toy --lr nan", 0, "--lr", "finite" },
    { 0, "train toy --lr inf", 0, "--lr", "finite" },
    { 0, "train toy --lr -1", 0, "--lr", "[0, 10]" },
    { 0, "train toy --lambda nan", 0, "--lambda", "finite" },
    { 0, "train toy --reward-temp 0,0,0", 0, "--reward-temp START", "finite" },
    { 0, "train toy --reward-temp 1,nan,10", 0, "--reward-temp END", "finite" },
    { 0, "train toy --reward-temp 1,1,1e12", 0, "--reward-temp HORIZON", "whole number" },
    { 0, "train toy --reward-temp 1,1", 0, "--reward-temp", "START,END,HORIZON" },
    { 0, "train toy --reward-floor -1", 0, "--reward-floor", "finite" },
    { 0, "train toy --reward-floor nan", 0, "--reward-floor", "finite" },
    { 0, "train toy --k 0", 0, "--k", "[1, 4096]" },
    { 0, "train toy --k 3 --batch 2", 0, "--k must be at most --batch", "--batch 2 --k 3" },
    { 0, "train toy --clip -1", 0, "--clip", "[0, 1e+06]" },
    { 0, "train toy --warmup -5", 0, "--warmup", "whole number" },
    { 0, "train toy --on-policy 2", 0, "--on-policy", "[0, 1]" },
    { 0, "train toy --on-policy 0.8 --tempered 0.5", 0, "--on-policy + --tempered", "at most 1" },
    { 0, "train toy --temp-lo 0 --temp-hi 0", 0, "--temp-lo", "finite" },
    { 0, "train toy --temp-lo 3 --temp-hi 2", 0, "--temp-lo must be at most --temp-hi", 0 },
    { 0, "train toy --explore 1.5", 0, "--explore", "finite number in [0, 1]" },
    { 0, "train toy --explore nan", 0, "--explore", "finite" },
    { 0, "train toy --lr 0.01 --lr-min 0.1", 0, "--lr-min must be at most --lr", 0 },
    { 0, "train toy --save-every -1", 0, "--save-every", "whole number" },
    { 0, "train toy --alpha 1e39", 0, "--alpha", "finite" },
    { 0, "train toy --accum 0", 0, "--accum", "[1, 1024]" },
    { 0, "train toy --gold-replay 1.5", 0, "--gold-replay", "[0, 1]" },
    { 0, "train toy --loss reinforce --gold-replay 0.2", 0, "--gold-replay needs an off-policy objective", "subtb, tb or db" },
    { 0, "train toy --eval-every -1", 0, "--eval-every", "whole number" },
    { 0, "train toy --curve-n 0", 0, "--curve-n", "[1, 1000000]" },
    { 0, "train toy --replay 1e9", 0, "--replay", "[1, 100000]" },
    { 0, "train toy --min-len -1", 0, "--min-len", "whole number" },
    { 0, "train toy --min-len 9", 0, "--min-len 9", "maximum length" },
    { 0, "train toy --short-states none", 0, "--short-states", "learned, floor or batch" },
    { 0, "train toy --eval-n -3", 0, "--eval-n", "whole number" },
    { 0, "train toy --seed-answers 2", 0, "--seed-answers", "[0, 1]" },
    { 0, "train toy --save @/link.ckpt", 0, "@/link.ckpt", "symbolic link" },
    { 0, "train arithmetic -m @/m300.ckpt -t @/tok300.bin --data @/arith", 0, "1digit_34_op+-_hw.json", "num_sol" },
    { 0, "train arithmetic -m @/m300.ckpt -t @/tok300.bin --data @/arith_obj", 0, "1digit_34_op+-_hw.json", "JSON array" },
    { 0, "train rng -m @/m260.ckpt -t @/tok300.bin", 0, "@/tok300.bin", "260" },
    { 0, "train rng -m @/m300.ckpt -t @/tok300.bin --stop newline", 0, "@/m300.ckpt: a context of 16 tokens", "too short" },
    { 0, "train rng -m @/m300_256.ckpt -t @/tok300.bin --stop newline --steps 1 --batch 2 --k 1 --rank 2 --log /dev/full -q", 0,
      "/dev/full", "error writing the log" },
    { "trap '' XFSZ; ulimit -f 1; ", "train rng -m @/m300_256.ckpt -t @/tok300.bin --stop newline --steps 1 --batch 2 --k 1 --rank 2 --save @/newdir/ -q",
      0, "@/newdir", "write failed" },
    // ---- gfn train --resume: damaged states, and states of another run
    { 0, RNG_RUN " --resume @/st_half.state", 0, "@/st_half.state", "checksum" },
    { 0, RNG_RUN " --resume @/st_flip.state", 0, "@/st_flip.state", "checksum" },
    { 0, RNG_RUN " --resume @/st_empty.state", 0, "@/st_empty.state", "too short" },
    { 0, RNG_RUN " --resume @/garbage.bin", 0, "@/garbage.bin", "not a gfn training state" },
    { 0, RNG_RUN " --resume @/missing.state", 0, "@/missing.state", "cannot open" },
    { 0, RNG_RUN " --resume @/st.lora.state --lr 0.01", 0, "@/st.lora.state", "written with --lr" },
    { 0, RNG_RUN " --resume @/st.lora.state --rank 4", 0, "@/st.lora.state", "written with --rank 2" },
    { 0, RNG_RUN " --resume @/st.lora.state -s 2", 0, "@/st.lora.state", "seed" },
    { 0, RNG_RUN " --resume @/st.lora.state --reward-floor 0.5", 0, "@/st.lora.state", "task options" },
    { 0, RNG_RUN " --resume @/st.lora.state --loss db", 0, "@/st.lora.state", "written with --loss subtb" },
    { 0, RNG_RUN " --resume @/st.lora.state --save @/st.lora --lr 0.02", 0, "@/st.lora.state", "--lr" },
    { 0, "train rng -m @/m300_256.ckpt -t @/tok300.bin --stop newline --steps 3 --batch 2 --k 1 --rank 2 -q --resume @/st.lora.state",
      0, "@/st.lora.state", "written with --steps 2" },
    { 0, "train rng -m @/m300_256.ckpt -t @/tok300.bin --steps 2 --batch 2 --k 1 --rank 2 -q --resume @/st.lora.state",
      0, "@/st.lora.state", "terminator" },
    { 0, "train rng --steps 0 --resume @/st.lora.state", 0, "--resume", "--steps" },
    { 0, "train rng --steps 2 --stop-after 3", 0, "--stop-after must be at most --steps", 0 },
    // ---- gfn sample
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi -T nan", 0, "-T", "finite" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi -T 0", 0, "-T", "finite" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi --top-k -1", 0, "--top-k", "whole number" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi --top-p nan", 0, "--top-p", "finite" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi -n 0", 0, "-n", "[1, 1000000]" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi -s -1", 0, "-s", "integer" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi -l 1e9", 0, "-l", "[1, 65536]" },
    { 0, "sample -m @/m260.ckpt -t @/tok300.bin -p hi", 0, "@/m260.ckpt only 260", "@/tok300.bin has" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p 'the cat sat on the mat the dog sat on the log the cat sat on the mat'", 0,
      "-p", "fills the model's context (16)" },
    { 0, "sample -m @/nan.ckpt -t @/tok300.bin -p hi", 0, "@/nan.ckpt", "wte.weight holds a non-finite" },
    { 0, "sample -m @/m300.ckpt -t @/tok300.bin -p hi -a @/nan.lora", 0, "@/nan.lora", "lora_A holds a non-finite" },
    // ---- gfn score: the id parser, every tensor finite, models and adapters from other tools
    { 0, "score -m @/m300.ckpt --ids @/ids_huge.txt", 0, "12345678901234567890123", "outside the vocabulary [0, 300)" },
    { 0, "score -m @/m300.ckpt --ids @/ids_neg.txt", 0, "@/ids_neg.txt: line 1", "not a token id" },
    { 0, "score -m @/m300.ckpt --ids @/ids_one.txt", 0, "@/ids_one.txt: line 1", "at least 2" },
    { 0, "score -m @/m300.ckpt --ids @/ids_empty.txt", 0, "@/ids_empty.txt", "no token ids" },
    { 0, "score -m @/m300.ckpt --ids @/ids_long.txt", 0, "@/ids_long.txt", "context length of 16" },
    { 0, "score -m @/m300.ckpt --ids @/ids_vocab.txt", 0, "token id 300", "[0, 300)" },
    { 0, "score -m @/nan.ckpt --ids @/ids_ok.txt", 0, "@/nan.ckpt: tensor wte.weight", "non-finite" },
    { 0, "score -m @/inf.ckpt --ids @/ids_ok.txt", 0, "@/inf.ckpt: tensor ln_f.bias", "non-finite value (inf" },
    { 0, "score -m @/hf_nan --ids @/ids_ok.txt", 0, "@/hf_nan/model.safetensors: tensor", "non-finite" },
    { 0, "score -m @/hf_huge --ids @/ids_ok.txt", 0, "@/hf_huge/config.json declares", "L=1000" },
    { 0, "score -m @/hf_badjson --ids @/ids_ok.txt", 0, "@/hf_badjson/config.json", 0 },
    { 0, "score -m @/m300.ckpt -a @/nan.lora --ids @/ids_ok.txt", 0, "@/nan.lora: tensor attn.c_attn.lora_A", "non-finite" },
    { 0, "score -m @/m300.ckpt -a @/alpha.lora --ids @/ids_ok.txt", 0, "@/alpha.lora", "alpha inf" },
    { 0, "score -m @/m300.ckpt -a @/peft_nan --ids @/ids_ok.txt", 0, "@/peft_nan/adapter_model.safetensors: tensor", "lora_" },
    { 0, "score -m @/m300.ckpt -a @/peft_alpha --ids @/ids_ok.txt", 0, "@/peft_alpha/adapter_config.json", "lora_alpha" },
    { 0, "score -m @/m260.ckpt -t @/tok300.bin --text @/corpus.txt", 0, "@/tok300.bin has", "only 260" },
    { 0, "score -m @/garbage.bin --ids @/ids_ok.txt", 0, "@/garbage.bin", "not a gfn checkpoint" },
    { 0, "score -m @/m300.ckpt -a @/garbage.bin --ids @/ids_ok.txt", 0, "@/garbage.bin", "not a gfn LoRA adapter" },
    // ---- outputs: never replace a symlink or a device; write errors are errors
    { 0, "convert @/m300.ckpt @/link.ckpt", 0, "@/link.ckpt", "symbolic link" },
    { 0, "convert @/m300.ckpt @/adir", 0, "@/adir", "not a regular file" },
    { 0, "convert @/m300.ckpt /dev/null", 0, "/dev/null", "not a regular file" },
    { 0, "convert @/nan.ckpt @/out.ckpt", 0, "@/nan.ckpt", "non-finite" },
    { "trap '' XFSZ; ulimit -f 1; ", "convert @/m300.ckpt @/out.ckpt", 0, "out.ckpt.tmp", "write failed" },
    { "trap '' XFSZ; ulimit -f 1; ", "convert --hf @/m300.ckpt @/hf_new", 0, "@/hf_new", "write failed" },
    { 0, "tasks", "/dev/full", "standard output", 0 },
    { 0, "score -m @/m300.ckpt --ids @/ids_ok.txt", "/dev/full", "standard output", 0 },
    { 0, "tokenizer train -i @/corpus.txt -V 99999999999999999999999 -o @/t.bin", 0, "-V", "[257, 16777216]" },
    { 0, "tokenizer train -i @/corpus.txt -V 10 -o @/t.bin", 0, "-V", "[257, 16777216]" },
    { 0, "tokenizer train -i @/corpus.txt -V 300 -o @/link.ckpt", 0, "@/link.ckpt", "symbolic link" },
    { 0, "tokenize -t @/garbage.bin", 0, "@/garbage.bin", 0 },
    // ---- gfn pretrain: flags, and the files it needs checked before it trains
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --lr nan", 0, "--lr", "finite" },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --batch 1e9", 0, "--batch", "[1, 4096]" },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --val-frac 0", 0, "--val-frac", "finite" },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --min-lr 0.1 --lr 0.01", 0, "--min-lr must be at most --lr", 0 },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --dim 100000", 0, "--dim", "[1, 32768]" },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --layers 1024 --dim 32768 --heads 8", 0, "--layers x --dim", 0 },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/p.ckpt --eval-file @/missing.txt", 0, "@/missing.txt", "--eval-file" },
    { 0, "pretrain -t @/tok300.bin -i @/corpus.txt -o @/link.ckpt", 0, "@/link.ckpt", "symbolic link" },
};

// Replaces each '@' of a case's text by the work directory.
static void expand(char *out, size_t cap, const char *text, const char *w) {
    size_t n = 0, wl = strlen(w);
    for (; *text && n + wl + 1 < cap; text++) {
        if (*text == '@') { memcpy(out + n, w, wl); n += wl; }
        else out[n++] = *text;
    }
    out[n] = 0;
}

void test_badinput(void) {
    const char *gfn = getenv("GFN_BIN") ? getenv("GFN_BIN") : "./gfn";   // make sanitize: ./gfn-san
    if (access(gfn, X_OK) != 0) { test_skip("badinput", "no ./gfn binary (make test builds it first)"); return; }
    const char *w = test_path("bad");
    char *capture = strdup(test_path("bad_output.txt"));
    if (mkdir(w, 0755) || make_fixtures(w) || make_state_fixtures(gfn, w)) { CHECK(0, "could not write the fixtures in %s", w); free(capture); return; }
    int n = (int)(sizeof cases / sizeof *cases);
    for (int i = 0; i < n; i++) {
        const BadCase *c = &cases[i];
        char args[2048], want1[1024] = "", want2[1024] = "", cmd[4096];
        expand(args, sizeof args, c->args, w);
        if (c->want1) expand(want1, sizeof want1, c->want1, w);
        if (c->want2) expand(want2, sizeof want2, c->want2, w);
        snprintf(cmd, sizeof cmd, "%s OMP_NUM_THREADS=1 %s %s > %s 2>> %s", c->pre ? c->pre : "", gfn, args,
                 c->out ? c->out : capture, capture);
        remove(capture);
        char *before = dir_state(w);
        int status = system(cmd);
        char *after = dir_state(w);
        size_t len = 0;
        GfnError err;
        char *msg = (char *)read_file(capture, &len, &err);
        int code = status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        CHECK(code != 0 && code < 128, "case %d: gfn %s: exit status %d (want a clean failure); said: %s", i, args, code, msg ? msg : "");
        CHECK(msg && strstr(msg, want1) && strstr(msg, want2), "case %d: gfn %s: message lacks '%s' / '%s': %s", i, args,
              want1, want2, msg ? msg : "(none)");
        CHECK(!msg || (!strstr(msg, "Sanitizer") && !strstr(msg, "runtime error")), "case %d: gfn %s: a sanitizer finding:\n%s", i, args, msg);
        CHECK(!strcmp(before, after), "case %d: gfn %s: the work directory changed:\nbefore\n%safter\n%s", i, args, before, after);
        free(msg); free(before); free(after);
    }
    printf("   badinput: %d cases\n", n);

    // A diverging pretraining run (weight decay 10 at lr 10 multiplies the weights by -99 a step)
    // stops with an error at the first non-finite loss or gradient norm, and the checkpoint it
    // saved last still loads: every value finite.
    GfnError err;
    char cmd[4096], corpus[600 * 24 + 1] = "";
    const char *words[8] = { "the", "cat", "sat", "on", "a", "mat", "dog", "log" };
    uint32_t lcg = 1;
    for (int i = 0; i < 600; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        strcat(corpus, words[lcg >> 29]);
        strcat(corpus, i % 12 == 11 ? "\n" : " ");
    }
    const char *corpus_path = test_path("bad_diverge.txt"), *ckpt = test_path("bad_diverge.ckpt");
    write_str(corpus_path, corpus);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s pretrain -t %s/tok300.bin -i %s -o %s --layers 1 --heads 2 --dim 16 --ctx 16 "
             "--batch 4 --steps 40 --lr 10 --weight-decay 10 --clip 0 --warmup 0 --save-every 2 --samples 0 --eval-every 0 "
             "--quiet > %s 2>&1", gfn, w, corpus_path, ckpt, capture);
    int status = system(cmd);
    size_t len;
    char *msg = (char *)read_file(capture, &len, &err);
    CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1 && msg && strstr(msg, "not finite") &&
          strstr(msg, ckpt), "diverging pretrain: status %d: %s", status, msg ? msg : "");
    GPT *last = gpt_load(ckpt, &err);
    CHECK(last != NULL, "the last checkpoint of a diverged run must load: %s", err.msg);
    gpt_free(last);
    free(msg);

    // tokenizer_train where a merge leaves no new pair ("aaaa": one merge, then nothing): it
    // once passed qsort a NULL array (UBSan: nonnull-attribute).
    const char *aa = test_path("bad_aaaa.txt");
    write_str(aa, "aaaa");
    const char *in[1] = { aa };
    Tokenizer *tok = tokenizer_train(in, 1, 259, &err);
    CHECK(tok != NULL, "tokenizer_train on aaaa: %s", err.msg);
    tokenizer_free(tok);
    remove(capture);
    free(capture);
}
