#!/usr/bin/env bash
# fuzz/make_seeds.sh — writes the committed seed corpus fuzz/corpus/TARGET/ from the test
# fixtures and ./gfn (run from the repository root after `make`). Two-file formats are stored as
# the first file, a NUL byte, then the second (the split fuzz/fuzz.c makes).
set -euo pipefail
c=fuzz/corpus
rm -rf "$c" && mkdir -p "$c"/{json,checkpoint,hf,peft,tokenizer,gpt2_vocab,ids}
printf '{"a": [1, 2.5e-3, true, null, "x\\u00e9\\n"], "b": {}}' > "$c/json/object"
printf '[{"str_query": "Question: 1 + 2 = ? Answer:", "num_sol": 3}]' > "$c/json/questions"
cp tests/fixtures/tiny_hf/config.json "$c/json/config"
cp tests/fixtures/tiny.ckpt "$c/checkpoint/tiny.ckpt"
./gfn convert --fp16 tests/fixtures/tiny.ckpt "$c/checkpoint/tiny_f16.ckpt" > /dev/null
pair() { cat "$1"; printf '\0'; cat "$2"; }
pair tests/fixtures/tiny_hf/config.json tests/fixtures/tiny_hf/model.safetensors > "$c/hf/tiny_hf"
pair tests/fixtures/tiny_hf_f16/config.json tests/fixtures/tiny_hf_f16/model.safetensors > "$c/hf/tiny_hf_f16"
pair tests/fixtures/tiny_lora/adapter_config.json tests/fixtures/tiny_lora/adapter_model.safetensors > "$c/peft/tiny_lora"
pair tests/fixtures/tiny_lora_rs/adapter_config.json tests/fixtures/tiny_lora_rs/adapter_model.safetensors > "$c/peft/tiny_lora_rs"
tmp=$(mktemp -d)
printf 'the cat sat on the mat. the dog sat on the log.\n<|endoftext|>\nonce upon a time.\n' > "$tmp/text"
./gfn tokenizer train -i "$tmp/text" -V 280 -o "$c/tokenizer/small.bin" > /dev/null
python3 - "$tmp" <<'PY'
import json, sys
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
enc = {chr(c): b for b, c in zip(bs, cs)}
enc["ab"] = 256; enc["<|endoftext|>"] = 257
open(sys.argv[1] + "/encoder.json", "w").write(json.dumps(enc))
open(sys.argv[1] + "/vocab.bpe", "w").write("#version: 0.2\na b\n")
PY
pair "$tmp/encoder.json" "$tmp/vocab.bpe" > "$c/gpt2_vocab/tiny"
printf '1 2 3\n\n4 5 6 7\n' > "$c/ids/ok"
printf '1 99999999999999999999999\n' > "$c/ids/huge"
rm -rf "$tmp"
du -sh "$c"
