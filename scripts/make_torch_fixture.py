#!/usr/bin/python3
"""Independent reference for gfn.c's GPT-2, LoRA and importers (dev-only; not run by make or CI).

GPT-2 is written here in plain PyTorch (float64) straight from FORMATS.md, with LoRA applied as
PEFT defines it: W_eff = W + s·(B·A) in nn.Linear orientation [out, in], added transposed to the
Conv1D weight [in, out]. Nothing here comes from gfn.c's code. The script builds a tiny model
from a fixed seed and writes, under tests/fixtures/:

  tiny_hf/           config.json + model.safetensors, F32, "transformer."-prefixed names
  tiny_hf_f16/       the same weights rounded to F16, bare hub names, with the attn.bias /
                     attn.masked_bias buffers and a (tied) lm_head.weight the importer must skip
  tiny_lora/         PEFT adapter: all four modules, r 4, alpha 8, target_modules as a list
  tiny_lora_rs/      PEFT adapter: rsLoRA, attn.c_attn and mlp.c_proj, target_modules as a regex
  tiny_parity.safetensors   input_ids (B, T) and the expected numbers:
      logits (B, T, V) and loss (HF's labels = input_ids) of the F32 model, logits_f16 of the F16
      copy, grad.<name> d loss / d every parameter tensor (per-layer tensors stacked (L, ...),
      Conv1D [in, out] layout), and for each adapter X in lora, lora_rs: X.logits, X.loss,
      X.grad_A.<module> (L, in, r) and X.grad_B.<module> (L, r, out) (gfn's orientation: the
      transposes of PEFT's lora_A [r, in] and lora_B [out, r]).

Run: /usr/bin/python3 scripts/make_torch_fixture.py   (torch and numpy only)
"""
import json
import math
import os
import struct

import numpy as np
import torch

V, MAXT, L, NH, C = 64, 16, 2, 2, 16
B, T = 2, 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
LAYER_NAMES = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
               "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
               "mlp.c_proj.weight", "mlp.c_proj.bias"]
MODULES = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}


def write_safetensors(path, tensors):
    """tensors: list of (name, numpy array of float32 or float16). Little-endian, C order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[a.dtype]
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def make_weights(rng):
    """HF names (no prefix) -> float32 arrays in Conv1D layout. Larger than GPT-2's init so that
    attention is far from uniform and every path matters in the comparison."""
    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)
    w = {"wte.weight": normal((V, C), 0.3), "wpe.weight": normal((MAXT, C), 0.3)}
    for i in range(L):
        p = "h.%d." % i
        w[p + "ln_1.weight"] = 1 + normal((C,), 0.2)
        w[p + "ln_1.bias"] = normal((C,), 0.1)
        w[p + "attn.c_attn.weight"] = normal((C, 3 * C), 0.35)
        w[p + "attn.c_attn.bias"] = normal((3 * C,), 0.1)
        w[p + "attn.c_proj.weight"] = normal((C, C), 0.2)
        w[p + "attn.c_proj.bias"] = normal((C,), 0.1)
        w[p + "ln_2.weight"] = 1 + normal((C,), 0.2)
        w[p + "ln_2.bias"] = normal((C,), 0.1)
        w[p + "mlp.c_fc.weight"] = normal((C, 4 * C), 0.3)
        w[p + "mlp.c_fc.bias"] = normal((4 * C,), 0.1)
        w[p + "mlp.c_proj.weight"] = normal((4 * C, C), 0.15)
        w[p + "mlp.c_proj.bias"] = normal((C,), 0.1)
    w["ln_f.weight"] = 1 + normal((C,), 0.2)
    w["ln_f.bias"] = normal((C,), 0.1)
    return w


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)   # biased variance, as torch's LayerNorm
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gpt2(params, ids, lora=None):
    """params: HF name -> float64 tensor; lora: None or (scale, {module path with layer: (A [r, in],
    B [out, r])}). Returns logits (B, T, V)."""
    def conv1d(x, name):
        weight = params[name + ".weight"]
        if lora is not None and name in lora[1]:
            A, Bm = lora[1][name]
            weight = weight + (lora[0] * (Bm @ A)).T   # W_eff = W + s·B·A (Linear), as Conv1D
        return x @ weight + params[name + ".bias"]

    nb, nt = ids.shape
    hs = C // NH
    x = params["wte.weight"][ids] + params["wpe.weight"][torch.arange(nt)]
    mask = torch.tril(torch.ones(nt, nt, dtype=torch.bool))
    for i in range(L):
        p = "h.%d." % i
        h = layer_norm(x, params[p + "ln_1.weight"], params[p + "ln_1.bias"])
        q, k, v = conv1d(h, p + "attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(nb, nt, NH, hs).transpose(1, 2) for t in (q, k, v))   # (B, NH, T, hs)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        scores = scores.masked_fill(~mask, float("-inf"))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(nb, nt, C)
        x = x + conv1d(y, p + "attn.c_proj")
        h = layer_norm(x, params[p + "ln_2.weight"], params[p + "ln_2.bias"])
        x = x + conv1d(gelu_new(conv1d(h, p + "mlp.c_fc")), p + "mlp.c_proj")
    x = layer_norm(x, params["ln_f.weight"], params["ln_f.bias"])
    return x @ params["wte.weight"].T   # tied head


def hf_loss(logits, ids):
    """HF GPT2LMHeadModel with labels = input_ids: mean over t < T-1 of -log p(ids[t+1])."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))


def to_params(weights, requires_grad=False):
    return {k: torch.tensor(v.astype(np.float64), requires_grad=requires_grad) for k, v in weights.items()}


def stacked(per_name, name):
    """Per-layer HF tensors h.i.NAME -> one (L, ...) array, as gfn stores them."""
    return np.stack([per_name["h.%d.%s" % (i, name)] for i in range(L)])


def main():
    rng = np.random.default_rng(20240611)
    weights = make_weights(rng)
    ids = torch.tensor(rng.integers(0, V, size=(B, T)))
    fixture = [("input_ids", ids.numpy().astype(np.float32))]

    # The F32 model: logits, loss, every gradient.
    params = to_params(weights, requires_grad=True)
    logits = gpt2(params, ids)
    loss = hf_loss(logits, ids)
    loss.backward()
    fixture += [("logits", logits.detach().numpy().astype(np.float32)),
                ("loss", np.array([loss.item()], dtype=np.float32))]
    grads = {k: p.grad.numpy() for k, p in params.items()}
    for name in ["wte.weight", "wpe.weight"] + LAYER_NAMES + ["ln_f.weight", "ln_f.bias"]:
        g = grads[name] if name in grads else stacked(grads, name)
        fixture.append(("grad." + name, g.astype(np.float32)))

    # The F16 copy: logits of exactly the F16-rounded weights.
    weights16 = {k: v.astype(np.float16) for k, v in weights.items()}
    with torch.no_grad():
        logits16 = gpt2(to_params({k: v.astype(np.float32) for k, v in weights16.items()}), ids)
    fixture.append(("logits_f16", logits16.numpy().astype(np.float32)))

    # Two adapters with nonzero A and B.
    adapters = [("lora", "tiny_lora", 4, 8.0, False, list(MODULES), ["c_attn", "c_proj", "c_fc"]),
                ("lora_rs", "tiny_lora_rs", 4, 8.0, True, ["attn.c_attn", "mlp.c_proj"],
                 r"transformer\.h\.\d+\.(attn\.c_attn|mlp\.c_proj)")]
    for key, dirname, r, alpha, rslora, modules, target_modules in adapters:
        scale = alpha / math.sqrt(r) if rslora else alpha / r
        peft = {}
        for i in range(L):
            for m in modules:
                fan_in, fan_out = MODULES[m]
                peft["h.%d.%s" % (i, m)] = (rng.standard_normal((r, fan_in)).astype(np.float32) * 0.3,
                                            rng.standard_normal((fan_out, r)).astype(np.float32) * 0.2)
        lora_t = {k: (torch.tensor(a.astype(np.float64), requires_grad=True),
                      torch.tensor(b.astype(np.float64), requires_grad=True)) for k, (a, b) in peft.items()}
        logits_l = gpt2(to_params(weights), ids, (scale, lora_t))
        loss_l = hf_loss(logits_l, ids)
        loss_l.backward()
        fixture += [(key + ".logits", logits_l.detach().numpy().astype(np.float32)),
                    (key + ".loss", np.array([loss_l.item()], dtype=np.float32))]
        for m in modules:   # gfn's orientation: A (L, in, r), B (L, r, out)
            gA = np.stack([lora_t["h.%d.%s" % (i, m)][0].grad.numpy().T for i in range(L)])
            gB = np.stack([lora_t["h.%d.%s" % (i, m)][1].grad.numpy().T for i in range(L)])
            fixture += [("%s.grad_A.%s" % (key, m), gA.astype(np.float32)),
                        ("%s.grad_B.%s" % (key, m), gB.astype(np.float32))]
        d = os.path.join(OUT, dirname)
        os.makedirs(d, exist_ok=True)
        tensors = []
        for i in range(L):
            for m in modules:
                a, b = peft["h.%d.%s" % (i, m)]
                base = "base_model.model.transformer.h.%d.%s" % (i, m)
                tensors += [(base + ".lora_A.weight", a), (base + ".lora_B.weight", b)]
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny_hf", "r": r,
                  "lora_alpha": alpha, "use_rslora": rslora, "target_modules": target_modules,
                  "fan_in_fan_out": True, "lora_dropout": 0.0, "bias": "none", "inference_mode": True,
                  "modules_to_save": None, "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}}
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(config, f, indent=2)

    # The HF directories.
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": MAXT,
              "n_ctx": MAXT, "n_embd": C, "n_layer": L, "n_head": NH, "n_inner": None,
              "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new", "tie_word_embeddings": True}
    for dirname, tensors in [
            ("tiny_hf", [("transformer." + k, v) for k, v in weights.items()]),
            ("tiny_hf_f16", list(weights16.items()) + [("lm_head.weight", weights16["wte.weight"])] +
             [("h.%d.attn.bias" % i, np.tril(np.ones((MAXT, MAXT), np.float32))[None, None]) for i in range(L)] +
             [("h.%d.attn.masked_bias" % i, np.array(-1e4, np.float32)) for i in range(L)])]:
        d = os.path.join(OUT, dirname)
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(dict(config, torch_dtype="float16" if "f16" in dirname else "float32"), f, indent=2)

    # The same weights as a gfn checkpoint (the format documented above gpt_save in model.c):
    # "GFNCKPT1", u32 version 1, u32 dtype 0 (f32), u32 V, maxT, L, NH, C, zeros to 64 bytes, then
    # the 16 tensors in gpt_tensor_names order, per-layer tensors stacked (L, ...), f32 LE.
    with open(os.path.join(OUT, "tiny.ckpt"), "wb") as f:
        f.write(b"GFNCKPT1" + struct.pack("<7I", 1, 0, V, MAXT, L, NH, C) + bytes(28))
        for name in ["wte.weight", "wpe.weight"] + LAYER_NAMES + ["ln_f.weight", "ln_f.bias"]:
            t = weights[name] if name in weights else stacked(weights, name)
            f.write(t.astype("<f4").tobytes())

    write_safetensors(os.path.join(OUT, "tiny_parity.safetensors"), fixture)
    print("loss %.6f, lora loss %s; wrote %s" % (loss.item(), [round(x[1][0].item(), 6) for x in fixture if x[0].endswith(".loss")], OUT))


if __name__ == "__main__":
    main()
