#!/usr/bin/env python3
"""torch.optim.AdamW(fused=True) on the inputs of tests/train/test_adamw.cpp.

Reads IN.safetensors (w0, b0, and the gradients grad_w.K / grad_b.K of steps
K = 0..n-1), runs PyTorch's own fused AdamW (lr 1e-2, betas 0.9/0.95, eps
1e-8, weight decay 0.1 on w and 0 on b) with those gradients, and writes w,
b, w.exp_avg, w.exp_avg_sq to OUT.safetensors.

Usage: adamw_reference.py IN OUT
"""
import sys

import torch
from safetensors.torch import load_file, save_file


def main():
    t = load_file(sys.argv[1])
    w = t["w0"].clone().requires_grad_(True)
    b = t["b0"].clone().requires_grad_(True)
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8, fused=True)
    steps = sum(1 for k in t if k.startswith("grad_w."))
    for k in range(steps):
        w.grad = t[f"grad_w.{k}"].clone()
        b.grad = t[f"grad_b.{k}"].clone()
        opt.step()
    state = opt.state[w]
    save_file({"w": w.detach().contiguous(), "b": b.detach().contiguous(),
               "w.exp_avg": state["exp_avg"].contiguous(), "w.exp_avg_sq": state["exp_avg_sq"].contiguous()},
              sys.argv[2])


if __name__ == "__main__":
    main()
