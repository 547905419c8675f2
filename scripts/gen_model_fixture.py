#!/usr/bin/env python3
"""Writes tests/fixtures/tiny_gpt2.ckpt and tests/fixtures/tiny_gpt2_expected.bin: a tiny random
GPT-2 in gfn's checkpoint format, and the logits, loss and gradients that an independent
implementation (the formulas of HF's GPT2LMHeadModel written out in torch, float64, autograd for
the gradients) gives for one batch, without and with a LoRA adapter in PEFT's orientation.
Dev-only: `make test` reads the committed files. Run: /usr/bin/python3 scripts/gen_model_fixture.py

expected.bin, little-endian: u32 B, T, rank; f32 alpha; i32 inputs[B*T]; i32 targets[B*T];
f32 loss; f32 logits[B*T*V]; f32 grads[num_parameters] (checkpoint order); f32 dinput[B*T*C];
then for each LoRA target (c_attn, attn.c_proj, c_fc, mlp.c_proj): f32 A[L*in*r] (gfn layout
[in, r], i.e. PEFT lora_A transposed), f32 B[L*r*out] (PEFT lora_B transposed); then f32
lora_loss, f32 lora_logits[B*T*V], and per target f32 grad_A, grad_B (gfn layout)."""
import math, os, struct
import torch

V, MAXT, L, NH, C = 37, 16, 2, 2, 16
B, T, RANK, ALPHA = 2, 7, 2, 4.0
HS = C // NH
here = os.path.dirname(os.path.abspath(__file__))
out_dir = os.path.join(here, "..", "tests", "fixtures")

g = torch.Generator().manual_seed(1234)
def randn(*shape, std=0.3):
    # rounded to float32 first: the checkpoint stores f32, and the reference computes on exactly those
    return (torch.randn(*shape, generator=g) * std).float().double()

names = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b",
         "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]
shapes = {"wte": (V, C), "wpe": (MAXT, C), "ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, C, 3 * C),
          "qkvb": (L, 3 * C), "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C),
          "fcw": (L, C, 4 * C), "fcb": (L, 4 * C), "fcprojw": (L, 4 * C, C), "fcprojb": (L, C),
          "lnfw": (C,), "lnfb": (C,)}
P = {}
for n in names:
    P[n] = randn(*shapes[n]) + (1.0 if n in ("ln1w", "ln2w", "lnfw") else 0.0)
    P[n] = P[n].float().double().requires_grad_(True)

targets_mod = [("c_attn", "qkvw", "qkvb", C, 3 * C), ("attn.c_proj", "attprojw", "attprojb", C, C),
               ("c_fc", "fcw", "fcb", C, 4 * C), ("mlp.c_proj", "fcprojw", "fcprojb", 4 * C, C)]
# PEFT orientation: lora_A [r, in], lora_B [out, r] per layer
lora = {}
for name, _, _, fin, fout in targets_mod:
    lora[name] = (randn(L, RANK, fin).requires_grad_(True), randn(L, fout, RANK).requires_grad_(True))
scale = ALPHA / RANK

def gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

def layernorm(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b

def linear(x, which, l, use_lora):
    name, wn, bn, _, _ = targets_mod[which]
    y = x @ P[wn][l] + P[bn][l]           # Conv1D: weight [in, out]
    if use_lora:                          # PEFT: + s · x · Aᵀ · Bᵀ
        A, Bm = lora[name]
        y = y + scale * (x @ A[l].t()) @ Bm[l].t()
    return y

def forward(ids, use_lora):
    emb = P["wte"][ids] + P["wpe"][: ids.shape[1]]
    emb.retain_grad()
    x = emb
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = layernorm(x, P["ln1w"][l], P["ln1b"][l])
        q, k, v = linear(h, 0, l, use_lora).split(C, dim=-1)
        q, k, v = [t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(y, 1, l, use_lora)
        h = layernorm(x, P["ln2w"][l], P["ln2b"][l])
        x = x + linear(gelu(linear(h, 2, l, use_lora)), 3, l, use_lora)
    x = layernorm(x, P["lnfw"], P["lnfb"])
    return x @ P["wte"].t(), emb

ids = torch.randint(0, V, (B, T), generator=g)
targets = torch.cat([ids[:, 1:], torch.full((B, 1), -1)], dim=1)
targets[0, 3] = -1   # an ignored position in the middle

def f32(t):
    return struct.pack("<%df" % t.numel(), *t.detach().reshape(-1).tolist())

logits, emb = forward(ids, False)
loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
loss.backward()
ckpt = b"GFNCKPT1" + struct.pack("<7I", 1, 0, V, MAXT, L, NH, C) + bytes(28)
ckpt += b"".join(f32(P[n]) for n in names)
exp = struct.pack("<3If", B, T, RANK, ALPHA)
exp += struct.pack("<%di" % (B * T), *ids.view(-1).tolist()) + struct.pack("<%di" % (B * T), *targets.view(-1).tolist())
exp += f32(loss) + f32(logits) + b"".join(f32(P[n].grad) for n in names) + f32(emb.grad)
for name, *_ in targets_mod:
    A, Bm = lora[name]
    exp += f32(A.transpose(1, 2)) + f32(Bm.transpose(1, 2))
logits, _ = forward(ids, True)
loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
loss.backward()
exp += f32(loss) + f32(logits)
for name, *_ in targets_mod:
    A, Bm = lora[name]
    exp += f32(A.grad.transpose(1, 2)) + f32(Bm.grad.transpose(1, 2))
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "tiny_gpt2.ckpt"), "wb") as f:
    f.write(ckpt)
with open(os.path.join(out_dir, "tiny_gpt2_expected.bin"), "wb") as f:
    f.write(exp)
print("wrote", len(ckpt), "and", len(exp), "bytes; loss", loss.item())
