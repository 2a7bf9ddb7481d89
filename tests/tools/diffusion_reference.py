#!/usr/bin/env python3
"""Independent reference numbers for tess's diffusion core (test-only).

  golden OUT_DIR   writes
    schedule.json            abar of the three schedules at several i for T = 5000 and
                             T = 100, from the formulas (the cosine one in Python floats,
                             the beta schedules as diffusers builds them: float64 here)
    model/                   a tiny Mistral diffusion model: HF's own model and
                             safetensors writer, plus timestep_embed.weight [H, 1] and
                             config.json "is_causal": false, "self_condition": "logits_mean"
    forward.safetensors      one training example replayed through the TESS 2 model
                             mixin's arithmetic written out in PyTorch on HF's decoder:
                             ids, span_mask, t, z, previous logits -> logits, loss
Run from the repository root: python3 tests/tools/diffusion_reference.py golden tests/data/diffusion
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def cosine_f(s):
    return math.cos((s + 1e-4) / (1 + 1e-4) * math.pi / 2) ** 2


def schedules(T):
    improved = [cosine_f(i / T) / cosine_f(0.0) for i in range(T)]
    betas_lin = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    linear = torch.cumprod(1 - betas_lin, 0).tolist()
    betas_cap = [min(1 - cosine_f((i + 1) / T) / cosine_f(i / T), 0.999) for i in range(T)]
    capped = torch.cumprod(1 - torch.tensor(betas_cap, dtype=torch.float64), 0).tolist()
    return {"cosine_improved": improved, "linear": linear, "cosine_capped": capped}


def golden(out):
    os.makedirs(out, exist_ok=True)
    picks = {}
    for T, idx in [(5000, [0, 1, 2, 10, 100, 1000, 2500, 4000, 4999]), (100, [0, 1, 5, 50, 98, 99])]:
        s = schedules(T)
        picks[str(T)] = {k: {str(i): v[i] for i in idx} for k, v in s.items()}
    with open(os.path.join(out, "schedule.json"), "w") as f:
        json.dump(picks, f, indent=1)

    from transformers import MistralConfig, MistralForCausalLM
    torch.manual_seed(7)
    cfg = MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        bos_token_id=1, eos_token_id=2, sliding_window=None, attn_implementation="eager",
                        tie_word_embeddings=False)
    model = MistralForCausalLM(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    W_t = torch.randn(cfg.hidden_size, 1) * 0.5
    mdir = os.path.join(out, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    weights = load_file(os.path.join(mdir, "model.safetensors"))
    weights["timestep_embed.weight"] = W_t
    save_file(weights, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(mdir, "config.json")) as f:
        c = json.load(f)
    c["is_causal"] = False
    c["self_condition"] = "logits_mean"
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)

    # One example: a clean prefix, a span, a clean token, a span again.
    ids = torch.tensor([[1, 17, 5, 33, 9, 40, 2, 12, 60, 8]])
    span = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    k, T, t = 5.0, 5000, 1234
    V = cfg.vocab_size
    z = torch.randn(1, ids.shape[1], V)
    prev = torch.randn(1, ids.shape[1], V) * 3
    abar = cosine_f(t / T) / cosine_f(0.0)
    simplex = 2 * k * F.one_hot(ids, V).float() - k
    x = math.sqrt(abar) * simplex + math.sqrt(1 - abar) * k * z
    E = model.get_input_embeddings().weight.data
    with torch.no_grad():
        results = {}
        for name, previous in [("noprev", torch.zeros_like(prev)), ("prev", prev)]:
            probs = (F.softmax(x, -1) + F.softmax(previous, -1)) / 2  # logits_mean on probabilities
            emb = F.linear(probs, E.T)
            tt = torch.where(span, torch.full(ids.shape, t / T), torch.zeros(ids.shape))
            emb = emb + F.linear(tt.unsqueeze(-1), W_t)
            emb = torch.where(span.unsqueeze(-1), emb, E[ids])
            L = ids.shape[1]
            h = model.model(inputs_embeds=emb, attention_mask=torch.zeros(1, 1, L, L)).last_hidden_state
            logits = model.lm_head(h)
            labels = torch.where(span, ids, -100)[:, 1:]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels.reshape(-1))
            shifted = torch.cat([torch.zeros_like(logits[:, :1]), logits[:, :-1]], 1)
            results["logits_" + name] = shifted.contiguous()
            results["loss_" + name] = loss.reshape(())
    save_file({"ids": ids.float(), "span_mask": span.float(), "timestep": torch.tensor(float(t)),
               "noise": z.contiguous(), "previous_logits": prev.contiguous(), **results},
              os.path.join(out, "forward.safetensors"))
    print("written", out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "golden":
        golden(sys.argv[2])
    else:
        sys.exit(__doc__)
