#!/usr/bin/env python3
"""llama.cpp's own `gguf` package (PyPI) as the reference for tess's GGUF reader
and `tess convert gguf`.

  quants OUT_DIR      write quants.gguf (small random tensors of every type tess
                      dequantises, quantised by gguf.quants.quantize, plus
                      metadata of every value type) and quants_expected.safetensors
                      (gguf.quants.dequantize of the same bytes), and
                      unsupported.gguf (one Q6_K tensor); committed under
                      tests/data/gguf/, regenerate with this command
  tiny OUT_DIR        a tiny random HF Llama (GQA, untied head, byte-level BPE
                      vocabulary of 300 tokens, weights exactly representable in
                      f16) saved with save_pretrained to OUT_DIR/hf, HF's logits for
                      fixed ids in OUT_DIR/hf_logits.safetensors (ids, logits), and
                      the same model written the way llama.cpp's convert_hf_to_gguf
                      does (Q/K rows permuted, norms F32) as OUT_DIR/<TYPE>.gguf
                      with 2-D weights of TYPE f32, f16 and q8_0, or iq4_nl (F32 but
                      blk.1.ffn_down.weight in IQ4_NL, which tess cannot decode; the f16 file
                      says tokenizer.ggml.pre "llama-bpe", the others "smollm")
  check OUT_DIR       for every OUT_DIR/<TYPE> model directory that tess converted
                      from OUT_DIR/<TYPE>.gguf: transformers' logits for the same ids
                      (OUT_DIR/<TYPE>/hf_logits.safetensors), and the tokenizer
                      transformers builds from the GGUF itself (gguf_file=) against
                      the one it loads from the directory: same ids and decoding on
                      varied text, same special tokens and chat template; prints
                      "tokenizers agree" per type or exits 1 naming the difference
  logits MODEL_DIR IDS_CSV OUT [GGUF_FILE]
                      HF logits of MODEL_DIR (or of GGUF_FILE inside it, loaded by
                      transformers' GGUF support) for IDS, as tensor "logits" in OUT
  tokenizer GGUF_FILE MODEL_DIR
                      the tokenizer comparison of `check` alone (e.g. for a real model)

Test-only: tess never needs Python to train.
"""
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

QUANT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def quants(out_dir):
    from safetensors.numpy import save_file

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(os.path.join(out_dir, "quants.gguf"), arch="test")
    # One key of every value type, arrays (including nested ones) too.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float32("test.f32", 0.25)
    w.add_float64("test.f64", -1.0e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo wörld")
    w.add_array("test.int_array", [3, -1, 4])
    w.add_array("test.string_array", ["a", "", "ç"])
    w.add_key_value("test.nested", [[1, 2], [3]], V.ARRAY, V.ARRAY)
    expected = {}
    for k, name in enumerate(QUANT_TYPES):
        qtype = Q[name]
        shape = (2, 3, 64) if name == "Q4_1" else (4, 64) if k % 2 else (96,)
        x = (rng.standard_normal(shape) * rng.uniform(0.1, 3.0)).astype(np.float32)
        x.flat[5] = 0.0
        if name == "F16":  # subnormals and infinities survive an f16 round trip
            x.flat[7], x.flat[8] = 3.0e-6, np.inf
        data = gguf.quants.quantize(x, qtype)
        if name in ("F32", "F16"):
            w.add_tensor(name.lower(), data)
        else:
            w.add_tensor(name.lower(), data, raw_dtype=qtype)
        deq = data.astype(np.float32) if name in ("F32", "F16") else gguf.quants.dequantize(data, qtype)
        expected[name.lower()] = np.ascontiguousarray(deq.reshape(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, os.path.join(out_dir, "quants_expected.safetensors"))

    w = gguf.GGUFWriter(os.path.join(out_dir, "unsupported.gguf"), arch="test")
    w.add_tensor("blk.0.attn_q.weight", rng.integers(0, 255, size=(2, 210), dtype=np.uint8), raw_dtype=Q.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- tiny Llama ---------------------------------------------------------------

CORPUS = (
    "the quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs!\n"
    "Hello world, hello there: 12345 + 678 = 13023. Ünïcödé ✓ and emoji 😀 too.\n"
    "    indented code:\tdef f(x):\n        return x * 2  # twice\n"
) * 3
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_level_vocab(n_merges=40):
    """256 byte tokens + `n_merges` merges learned greedily on CORPUS."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    import regex

    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    words = {}
    for piece in pat.findall(CORPUS):
        sym = tuple(b2u[b] for b in piece.encode("utf-8"))
        words[sym] = words.get(sym, 0) + 1
    tokens = list(SPECIALS) + [b2u[b] for b in range(256)]
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for sym, n in words.items():
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        new = {}
        for sym, n in words.items():
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + n
        words = new
    tokens.append("<think>")  # a USER_DEFINED token
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS) - 1) + [4]
    return tokens, types, merges


def llama_permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (n_head = the kv heads for K)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


IDS = [5, 17, 42, 3, 288, 61, 9, 9, 230, 70, 1, 33]


def tiny(out_dir):
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens, types, merges = byte_level_vocab()
    torch.manual_seed(11)
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                # Weights exactly representable in f16, so the F16 GGUF holds the same model.
                p.copy_(p.half().float())
    model.save_pretrained(os.path.join(out_dir, "hf"), safe_serialization=True)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([IDS])).logits.float().contiguous()
    # ids as F32: tess's safetensors reader takes F32/BF16/F16 only.
    save_file({"ids": torch.tensor([IDS], dtype=torch.float32), "logits": logits},
              os.path.join(out_dir, "hf_logits.safetensors"))

    for qtype_name in GGUF_TYPES:
        write_tiny_gguf(model, cfg, tokens, types, merges, os.path.join(out_dir, qtype_name + ".gguf"),
                        GGUF_TYPES[qtype_name], "llama-bpe" if qtype_name == "f16" else "smollm")


GGUF_TYPES = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0, "iq4_nl": Q.IQ4_NL}


def write_tiny_gguf(model, cfg, tokens, types, merges, path, qtype, pre):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    block = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, p in model.state_dict().items():
        x = p.float().numpy()
        if name in names:
            gname = names[name]
        else:
            parts = name.split(".")  # model.layers.N.<module...>.weight
            gname = f"blk.{parts[2]}.{block['.'.join(parts[3:-1])]}.weight"
        if name.endswith("q_proj.weight"):
            x = llama_permute(x, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            x = llama_permute(x, cfg.num_key_value_heads)
        if x.ndim == 1 or qtype == Q.F32:
            w.add_tensor(gname, np.ascontiguousarray(x))
        elif qtype == Q.F16:
            w.add_tensor(gname, x.astype(np.float16))
        elif qtype == Q.IQ4_NL:  # tess has no IQ4_NL decoder: one tensor of that type, the rest F32
            if gname == "blk.1.ffn_down.weight":
                w.add_tensor(gname, np.zeros((x.shape[0], x.shape[1] // 32 * 18), np.uint8), raw_dtype=qtype)
            else:
                w.add_tensor(gname, np.ascontiguousarray(x))
        else:
            w.add_tensor(gname, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- checks against transformers -------------------------------------------------

TEXTS = [
    "Hello world!", " Hello world", "the quick brown fox", "  two  spaces\tand\ttabs\n\nnewlines\r\n",
    "12345 678 9", "Ünïcödé ✓ 😀 日本語", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<think>reasoning</think> done", "<|endoftext|>", "", " ", "a" * 50, "don't I'll we've",
    "def f(x):\n    return x * 2  # twice", "mixed<|im_end|>special", "\u00a0nbsp and \u200bzero width",
]


def check(out_dir):
    ids = ",".join(str(i) for i in IDS)
    for name in GGUF_TYPES:
        model_dir = os.path.join(out_dir, name)
        if not os.path.isdir(model_dir):
            continue
        logits(model_dir, ids, os.path.join(model_dir, "hf_logits.safetensors"))
        tokenizer(os.path.join(out_dir, name + ".gguf"), model_dir, f"{name}: ")


def tokenizer(gguf_file, model_dir, prefix=""):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf_file)),
                                        gguf_file=os.path.basename(gguf_file))
    got = AutoTokenizer.from_pretrained(model_dir)
    from gguf import GGUFReader
    field = GGUFReader(gguf_file).fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode() if field else ""
    if pre == "smollm":
        # SmolLM2's released tokenizer splits digits one by one before
        # ByteLevel; transformers' GGUF loader does not know "smollm" and
        # leaves the split out, so the reference gets it back here.
        from tokenizers import pre_tokenizers
        ref.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    texts = list(TEXTS)
    rng = np.random.default_rng(3)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABC,.!?'\n\t0123456789éü😀✓") + ["<|im_start|>", "<|im_end|>"]
    for _ in range(200):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.integers(1, 40))))
    for t in texts:
        a, b = ref(t)["input_ids"], got(t)["input_ids"]
        if a != b:
            print(f"ids differ for {t!r}: transformers(gguf) {a}, converted {b}", file=sys.stderr)
            sys.exit(1)
        da, db = ref.decode(a), got.decode(b)
        if da != db:
            print(f"decoding differs for {t!r}: {da!r} vs {db!r}", file=sys.stderr)
            sys.exit(1)
    for attr in ["bos_token", "eos_token", "unk_token", "pad_token"]:
        if getattr(ref, attr) != getattr(got, attr):
            print(f"{attr} differs: {getattr(ref, attr)!r} vs {getattr(got, attr)!r}", file=sys.stderr)
            sys.exit(1)
    if ref.chat_template and got.chat_template != ref.chat_template:
        print("chat_template differs", file=sys.stderr)
        sys.exit(1)
    print(f"{prefix}tokenizers agree on {len(texts)} texts (vocab {len(got)})")


def logits(model_dir, ids_csv, out, gguf_file=None):
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs).eval()
    ids = [int(x) for x in ids_csv.split(",")]
    with torch.no_grad():
        out_logits = model(input_ids=torch.tensor([ids])).logits.float().contiguous()
    save_file({"logits": out_logits}, out)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "quants":
        quants(*args)
    elif cmd == "tiny":
        tiny(*args)
    elif cmd == "check":
        check(*args)
    elif cmd == "tokenizer":
        tokenizer(*args)
    elif cmd == "logits":
        logits(*args)
    else:
        sys.exit(__doc__)
