#!/usr/bin/env python3
"""HF transformers as an independent reference for tess's decoder.

  golden OUT_DIR [KIND...]   build tiny random Llama/Mistral/Qwen2 models with
                     HF, save them with HF's own save_pretrained (safetensors)
                     and record HF's logits in causal and bidirectional mode
                     and its rotary inverse frequencies (committed under
                     tests/data/hf_tiny/, regenerate with this command; KIND:
                     only those of llama, mistral, llama_tied, llama3, qwen2)
  logits MODEL_DIR IDS_CSV OUT   load MODEL_DIR with HF and write its logits
                     (causal, bidirectional) for IDS to OUT (safetensors)
  reward MODEL_DIR ROWS OUT   load a reward model with HF's
                     AutoModelForSequenceClassification and write the scores of
                     ROWS ("1,2,3;4,5" right-padded with the config's pad id)

Bidirectional = the same model with no causal mask: an all-zero additive 4D
mask on the eager attention path (HF returns a 4D mask unchanged).
Test-only: tess never needs Python to train.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file


KINDS = ["llama", "mistral", "llama_tied", "llama3", "qwen2"]


def build(kind):
    torch.manual_seed({"llama": 1, "mistral": 2, "llama_tied": 3, "llama3": 4, "qwen2": 5}[kind])
    common = dict(vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    if kind == "mistral":
        from transformers import MistralConfig, MistralForCausalLM
        cfg = MistralConfig(**common, sliding_window=5, rope_theta=10000.0, tie_word_embeddings=False)
        model = MistralForCausalLM(cfg)
    elif kind == "llama3":
        # Llama 3.1+ RoPE scaling. head_dim 16, theta 10000: wavelengths
        # 6.3, 20, 63, 199, 628, ... against original 256 / high 4 = 64 and
        # 256 / low 1 = 256, so three frequencies are kept, one is smoothed and
        # four are divided by the factor -- every branch of HF's function.
        from transformers import LlamaConfig, LlamaForCausalLM
        common.update(max_position_embeddings=2048)
        cfg = LlamaConfig(**common, tie_word_embeddings=False,
                          rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0,
                                               low_freq_factor=1.0, high_freq_factor=4.0,
                                               original_max_position_embeddings=256))
        model = LlamaForCausalLM(cfg)
    elif kind == "qwen2":
        # Qwen2.5's conventions: q/k/v biases, tied embeddings, theta 1e6, eps 1e-6.
        from transformers import Qwen2Config, Qwen2ForCausalLM
        common.update(rms_norm_eps=1e-6)
        cfg = Qwen2Config(**common, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
                          sliding_window=32, max_window_layers=2)
        model = Qwen2ForCausalLM(cfg)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(**common, rope_theta=500000.0, tie_word_embeddings=(kind == "llama_tied"))
        model = LlamaForCausalLM(cfg)
    # HF initialises norms to 1 and biases to 0; randomise them so that the test sees them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
    return model.eval()


def logits(model, ids):
    x = torch.tensor([ids])
    L = x.shape[1]
    with torch.no_grad():
        causal = model(input_ids=x).logits
        zeros = torch.zeros(1, 1, L, L, dtype=torch.float32)
        bidir = model(input_ids=x, attention_mask=zeros).logits
    return causal.float().contiguous(), bidir.float().contiguous()


def golden(out_dir, kinds):
    ids = [5, 17, 42, 3, 88, 61, 9, 9, 23, 70, 1, 33]
    for kind in kinds or KINDS:
        model = build(kind)
        d = os.path.join(out_dir, kind)
        model.save_pretrained(d, safe_serialization=True)
        causal, bidir = logits(model, ids)
        assert not torch.allclose(causal, bidir), "bidirectional must differ from causal"
        tensors = {"ids": torch.tensor([ids], dtype=torch.float32), "logits_causal": causal,
                   "logits_bidirectional": bidir}
        if kind in ("llama3", "qwen2"):  # the fixtures written before these lack it
            tensors["inv_freq"] = model.model.rotary_emb.inv_freq.float().contiguous()
        save_file(tensors, os.path.join(d, "golden.safetensors"))
        # Sharded copy of the llama weights: loading it must equal the single file.
        if kind == "llama":
            model.save_pretrained(os.path.join(out_dir, "llama_sharded"), safe_serialization=True,
                                  max_shard_size="40KB")
    print(json.dumps({"written": out_dir}))


def check_loaded(model, info, model_dir):
    """HF only warns about weights it had to initialise or could not place: an error here."""
    model.eval()
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        sys.exit(f"HF loading {model_dir} as {type(model).__name__}: {bad}")


def logits_cmd(model_dir, ids_csv, out):
    from transformers import AutoModelForCausalLM
    model, info = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager",
                                                       dtype=torch.float32, output_loading_info=True)
    check_loaded(model, info, model_dir)
    ids = [int(t) for t in ids_csv.split(",")]
    causal, bidir = logits(model, ids)
    save_file({"logits_causal": causal, "logits_bidirectional": bidir}, out)


def reward_cmd(model_dir, rows_csv, out):
    from transformers import AutoModelForSequenceClassification
    model, info = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager",
                                                                     dtype=torch.float32, output_loading_info=True)
    check_loaded(model, info, model_dir)
    rows = [[int(t) for t in r.split(",")] for r in rows_csv.split(";")]
    pad = model.config.pad_token_id
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    with torch.no_grad():
        scores = model(input_ids=ids).logits[:, 0].contiguous()
    save_file({"scores": scores}, out)


if __name__ == "__main__":
    if sys.argv[1] == "golden":
        golden(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "logits":
        logits_cmd(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "reward":
        reward_cmd(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
