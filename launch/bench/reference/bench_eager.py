#!/usr/bin/env python3
"""The training step of `tess bench train`, written in plain eager PyTorch.

Same shapes as the C++ case (Llama decoder: RMSNorm, RoPE, GQA through
scaled_dot_product_attention, SwiGLU; untied LM head), same stage logic
(ar: causal LM loss; adaptation/instruction: the simplex diffusion loss with
the noisy rows materialised as [span rows, V], self-conditioning on every
other step, cross-entropy on span rows), torch.optim.AdamW, same thread
count. Prints one JSON object: seconds per step and tokens per second.
Used by `tess bench train` to report tess / eager (docs/performance.md).
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Layer(nn.Module):
    def __init__(self, h, heads, kv_heads, inter):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, h // heads
        self.q_proj = nn.Linear(h, heads * self.hd, bias=False)
        self.k_proj = nn.Linear(h, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(h, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(heads * self.hd, h, bias=False)
        self.gate_proj = nn.Linear(h, inter, bias=False)
        self.up_proj = nn.Linear(h, inter, bias=False)
        self.down_proj = nn.Linear(inter, h, bias=False)
        self.n1, self.n2 = RMSNorm(h), RMSNorm(h)

    def forward(self, x, cos, sin, causal):
        b, l, _ = x.shape
        y = self.n1(x)
        q = self.q_proj(y).view(b, l, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(y).view(b, l, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(y).view(b, l, self.kv_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, l, -1))
        y = self.n2(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden"]
        self.embed = nn.Embedding(c["vocab"], h)
        self.layers = nn.ModuleList(
            Layer(h, c["heads"], c["kv_heads"], c["intermediate"]) for _ in range(c["layers"]))
        self.norm = RMSNorm(h)
        self.lm_head = nn.Linear(h, c["vocab"], bias=False)
        self.time_embed = nn.Linear(1, h, bias=False)
        hd = h // c["heads"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(c["seq_len"]).float(), inv)
        ang = torch.cat((ang, ang), -1)
        self.register_buffer("cos", ang.cos()[None, None], persistent=False)
        self.register_buffer("sin", ang.sin()[None, None], persistent=False)

    def hidden(self, x, causal):
        l = x.shape[1]
        cos, sin = self.cos[:, :, :l], self.sin[:, :, :l]
        for layer in self.layers:
            x = layer(x, cos, sin, causal)
        return self.norm(x)


def cosine_abar(T):
    f = lambda s: math.cos(((s + 1e-4) / (1 + 1e-4)) * math.pi / 2) ** 2
    return torch.tensor([f(i / T) / f(0) for i in range(T)], dtype=torch.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", required=True, help="JSON: hidden layers heads kv_heads intermediate vocab batch seq_len")
    p.add_argument("--stage", choices=["ar", "adaptation", "instruction"], required=True)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--span-tokens", type=int, default=0, help="noised positions per batch (diffusion)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    c = json.loads(a.shape)
    torch.manual_seed(0)
    model = Model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    b, l, v, h = c["batch"], c["seq_len"], c["vocab"], c["hidden"]
    k, T = 5.0, 5000
    abar = cosine_abar(T)
    span = max(1, min(a.span_tokens or b * l // 2, b * l))
    per_row = span // b
    mask = torch.zeros(b, l, dtype=torch.bool)
    mask[:, l - per_row:] = True  # the span rows the C++ case had, as a suffix of each row
    flat = mask.reshape(-1).nonzero().squeeze(1)
    rows_b, rows_pos = flat // l, flat % l
    source = rows_b * l + (rows_pos - 1).clamp_min(0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")

    def diffusion_logits(ids, t, prev):
        labels = ids.reshape(-1)[flat]
        ab = abar[t][rows_b].unsqueeze(1)
        z = torch.randn(flat.numel(), v)
        x = z * ((1 - ab).sqrt() * k) - ab.sqrt() * k
        x = x.scatter_add(1, labels.unsqueeze(1), ab.sqrt() * (2 * k))
        probs = torch.softmax(x, -1)
        q = torch.softmax(prev, -1) if prev is not None else torch.full_like(probs, 1.0 / v)
        probs = (probs + q) * 0.5
        e = model.embed.weight.detach()
        span_emb = probs @ e + model.time_embed((t.float() / T)[rows_b].unsqueeze(1))
        emb = model.embed(ids).reshape(b * l, h).index_copy(0, flat, span_emb.to(e.dtype)).view(b, l, h)
        hs = model.hidden(emb, causal=False).reshape(b * l, h)
        return model.lm_head(hs[source]) * (rows_pos > 0).unsqueeze(1), labels

    def step(i):
        ids = torch.randint(0, v, (b, l))
        with autocast:
            if a.stage == "ar":
                hs = model.hidden(model.embed(ids[:, :-1]), causal=True)
                logits = model.lm_head(hs)
                loss = F.cross_entropy(logits.reshape(-1, v).float(), ids[:, 1:].reshape(-1))
            else:
                t = torch.randint(0, T, (b,))
                prev = None
                if i % 2 == 0:  # self-conditioning on half of the steps
                    with torch.no_grad():
                        prev, _ = diffusion_logits(ids, (t + 1).clamp_max(T - 1), None)
                        prev = prev.float()
                logits, labels = diffusion_logits(ids, t, prev)
                loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(a.warmup):
        step(i)
    start = time.perf_counter()
    for i in range(a.steps):
        step(i)
    sec = (time.perf_counter() - start) / a.steps
    print(json.dumps({"step_s": sec, "tokens_per_s": b * l / sec, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "span_tokens": per_row * b if a.stage != "ar" else 0}))


if __name__ == "__main__":
    main()
