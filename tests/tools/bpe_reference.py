#!/usr/bin/env python3
"""HF `tokenizers` as an independent reference for tess's byte-level BPE.

  golden OUT_DIR   train three small byte-level BPE tokenizers with HF
                   `tokenizers` (deterministic) and write, under OUT_DIR
                   (committed as tests/data/bpe/, regenerate with this command):
                     gpt2/    ByteLevel pre-tokenizer (GPT-2 regex), merges as
                              "a b" strings, <|endoftext|>
                     smollm/  Sequence[Digits(individual), ByteLevel] as in
                              SmolLM2, merges as ["a", "b"] lists, <|im_start|>-
                              style specials, tokenizer_config.json
                     llama3/  the gpt2 vocabulary behind Sequence[Split(Llama-3
                              regex, Isolated), ByteLevel(use_regex=false)],
                              ignore_merges, and added tokens with the lstrip,
                              rstrip, single_word and non-special flags
                     golden.jsonl.gz  one line per test string:
                              {"text", "<name>": ids, "<name>_decoded": text}
                              (the decode, skip_special_tokens=True, only where
                              it differs from the text)
  encode DIR TEXTS_JSONL   load DIR with transformers.AutoTokenizer and print
                   one JSON line per input line ({"text": ...}):
                   {"ids": [...]} (add_special_tokens=False); the first line
                   printed is {"bos","eos","pad","unk"} (ids or null).

Test-only: tess never needs Python to train.
"""
import gzip
import json
import os
import random
import sys
import unicodedata

# ---- test strings ---------------------------------------------------------------

FORTUNES = "/usr/share/games/fortunes"

WORDS = ("the of and to in is that for it as with was on be by this are from at or an have not "
         "which but they you all one had were there can their more has what when will would if "
         "about so no out some time only into other could than then these two may first new "
         "data model token tokenizer merge byte level unicode regex split digit emoji").split()

SCRIPTS = {
    "cjk": [(0x4E00, 0x4FFF), (0x3041, 0x3096), (0x30A1, 0x30FA), (0xAC00, 0xAD00)],
    "arabic": [(0x0621, 0x064A)],
    "devanagari": [(0x0905, 0x0939), (0x093E, 0x094D)],
    "cyrillic": [(0x0430, 0x044F), (0x0410, 0x042F)],
    "greek": [(0x03B1, 0x03C9)],
    "hebrew": [(0x05D0, 0x05EA)],
    "thai": [(0x0E01, 0x0E30)],
}
SAMPLES = [
    "日本語のテキストです。東京は大きい都市です。", "中文文本测试，你好世界！", "한국어 텍스트입니다",
    "مرحبا بالعالم، هذا نص عربي.", "नमस्ते दुनिया, यह हिंदी पाठ है।", "Привет, мир! Это тест.",
    "Καλημέρα κόσμε", "שלום עולם", "สวัสดีชาวโลก", "Tiếng Việt có dấu: Trường Đại học",
    "naïve café résumé coöperate", "e\u0301 a\u0300 o\u0302 n\u0303 u\u0308", "Z\u0351\u036b\u0343a\u0310\u0300l\u0352g\u030co",
    "\u1100\u1161\u11a8", "ﬁ ﬂ ﬀ", "Ⅻ ½ ² ³ ٣٤٥ ０１２ ۱۲۳", "x² + y² = z²",
]
EMOJI = ["😀", "🎉", "👍", "👍🏽", "❤️", "🇫🇷", "🇯🇵", "👩‍👩‍👧", "👨‍💻", "🏳️‍🌈", "1️⃣", "#️⃣",
         "🧑🏾‍🚀", "🐈‍⬛", "☕", "✨", "🤖"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000",
          "\u2028", "\u2003", "\u180e", "\u200b", "\u0085", "\x0b", "\x0c"]
CODE = [
    "int main(int argc, char** argv) {\n\treturn 0;\n}",
    "def f(x):\n    return x ** 2  # square\n",
    "for (size_t i = 0; i < n; ++i) sum += a[i] * b[i];",
    "if (x != nullptr && x->next) { x = x->next; }",
    "const auto& [key, value] = *it;  // C++17",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<div class=\"main\"><p>Hello &amp; welcome</p></div>",
    "{\"a\": [1, 2, 3], \"b\": null, \"c\": \"x\\ny\"}",
    "    if err != nil {\n        return fmt.Errorf(\"failed: %w\", err)\n    }",
    "x = [i**2 for i in range(100) if i % 3 == 0]",
    "#include <vector>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "$ ls -la /usr/bin | grep -E '^-rwx' > out.txt 2>&1",
]
CONTRACTIONS = ["don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "DON'T", "I'M", "They'Re",
                "WE'VE", "can’t", "rock 'n' roll", "'s", "''", "'"]
SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "smollm": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>"],
    "llama3": ["<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<think>", "<mask>", "<R>", "<L>", "<W>"],
}
ALL_SPECIALS = sorted({s for v in SPECIALS.values() for s in v})


def fortune_lines():
    lines = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line and line != "%" and "\ufffd" not in line:
                    lines.append(line)
    return lines


def assigned_char(rng):
    while True:
        cp = rng.choice([rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x10000), rng.randrange(0x10000, 0x30000)])
        if 0xD800 <= cp < 0xE000:
            continue
        if unicodedata.category(chr(cp)) in ("Cn", "Cs", "Co"):
            continue
        return chr(cp)


def script_text(rng, script):
    ranges = SCRIPTS[script]
    out = []
    for _ in range(rng.randrange(1, 6)):
        lo, hi = rng.choice(ranges)
        out.append("".join(chr(rng.randrange(lo, hi + 1)) for _ in range(rng.randrange(1, 7))))
    sep = "" if script in ("cjk", "thai") and rng.random() < 0.5 else " "
    return sep.join(out)


def digits(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 15)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(0, 6)}f}"
    if kind == 2:
        return f"{rng.randrange(1, 10**7):,}"
    if kind == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if kind == 4:
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(20, 60)))
    return f"v{rng.randrange(10)}.{rng.randrange(100)}.{rng.randrange(1000)}"


def piece(rng, prose, specials):
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(prose)
    if kind == 1:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 12)))
    if kind == 2:
        return rng.choice(CODE)
    if kind == 3:
        return script_text(rng, rng.choice(sorted(SCRIPTS)))
    if kind == 4:
        return rng.choice(SAMPLES)
    if kind == 5:
        return "".join(rng.choice(SPACES) for _ in range(rng.randrange(1, 5)))
    if kind == 6:
        return digits(rng)
    if kind == 7:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 4)))
    if kind == 8:
        return rng.choice(CONTRACTIONS)
    if kind == 9 and specials:
        s = rng.choice(specials)
        r = rng.random()
        return s if r < 0.6 else (s[: rng.randrange(1, len(s))] if r < 0.8 else s + s)
    if kind == 10:
        return "".join(assigned_char(rng) for _ in range(rng.randrange(1, 8)))
    return rng.choice(WORDS).upper() if rng.random() < 0.5 else rng.choice(WORDS).capitalize()


def make_text(rng, prose, specials, max_pieces=6):
    parts = [piece(rng, prose, specials) for _ in range(rng.randrange(1, max_pieces + 1))]
    out = parts[0]
    for p in parts[1:]:
        out += rng.choice(["", " ", " ", "\n", "  ", "\t", ", "]) + p
    r = rng.random()
    if r < 0.1:
        out += " " * rng.randrange(1, 4)
    elif r < 0.15:
        out = rng.choice(SPACES) + out
    return out


def fixed_texts():
    """Edge cases every tokenizer must get right, besides the random strings."""
    texts = ["", " ", "  ", "\n", "\t", "a", " a", "a ", "Hello world", " Hello world", "Hello  world",
             "hello   \n\n  world  ", "trailing   ", "   leading", "\t\tindented\n\t\tcode\n",
             "1234567890", "3.14159", "12 345 6789", "a1b2c3", "٣٤٥ ۱۲۳ ０１２ ½ ² Ⅻ", "1️⃣2️⃣",
             "👩‍👩‍👧‍👦 family", "🏳️‍🌈🇫🇷", "e\u0301", "\u0301start", "Z\u0351\u036b\u0343a\u0310\u0300l\u0352g\u030co",
             "don't DON'T Don'T", "I'll've", "\u180e\u200b\u2060", "\u00a0\u00a0x", "x\u3000y", "a\u2028b\u2029c",
             "\r\n\r\n", "x\x0by\x0cz\x85w", "\U0001fae8 \U00031350", "<|endoftext|>",
             "<|endoftext|><|endoftext|>", "x<|endoftext|>y", " <|endoftext|> ", "<|endoftext|",
             "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|im_start|><|im_end|>",
             "a <mask> b", "a<mask>b", "a   <mask>   b", "x <R>  y", "x<R>y", "<L> <W> w<W>w", " <W> ",
             "<think>reason</think>", "<|begin_of_text|>Hi<|eot_id|>", "$$$ ### ... !!! ???", "~~~~~~~~~~~~~~~~",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             " " * 40 + "x", "\n" * 10, "=" * 100]
    return texts


def test_texts(n):
    rng = random.Random(20240611)
    prose = fortune_lines()
    texts = fixed_texts()
    while len(texts) < n:
        texts.append(make_text(rng, prose, ALL_SPECIALS, max_pieces=4))
    return texts


def training_texts():
    rng = random.Random(7)
    prose = fortune_lines()
    texts = list(prose)
    for _ in range(20000):
        texts.append(make_text(rng, prose, None, max_pieces=3))
    return texts


# ---- tokenizers -----------------------------------------------------------------

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def train(pre_tokenizer, specials, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(), trainer)
    return tok


def golden(out):
    from tokenizers import AddedToken, Regex, Tokenizer, pre_tokenizers
    os.makedirs(out, exist_ok=True)
    toks = {}

    gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False), SPECIALS["gpt2"], 1200)
    toks["gpt2"] = gpt2

    smol = train(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                          pre_tokenizers.ByteLevel(add_prefix_space=False)]),
                 SPECIALS["smollm"], 1500)
    toks["smollm"] = smol

    # The gpt2 vocabulary behind a Llama-3 style Split, with ignore_merges and
    # added tokens exercising the flags HF honours.
    j = json.loads(gpt2.to_str())
    j["model"]["ignore_merges"] = True
    llama3 = Tokenizer.from_str(json.dumps(j))
    llama3.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    llama3.add_special_tokens([AddedToken("<|begin_of_text|>", special=True, normalized=False),
                               AddedToken("<|eot_id|>", special=True, normalized=False),
                               AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    llama3.add_tokens([AddedToken("<think>", special=False, normalized=False),
                       AddedToken("<R>", special=False, rstrip=True, normalized=False),
                       AddedToken("<L>", special=False, lstrip=True, rstrip=True, normalized=True),
                       AddedToken("<W>", special=False, single_word=True, normalized=False)])
    toks["llama3"] = llama3

    for name, tok in toks.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        j = json.loads(tok.to_str())
        if name == "gpt2":  # the older merges spelling ("a b" strings)
            j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
            f.write("\n")
    # SmolLM2-Instruct's special-token choices.
    with open(os.path.join(out, "smollm", "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                   "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
                   "model_max_length": 8192}, f, indent=2)
        f.write("\n")

    # Reload from the written files so the goldens describe exactly them.
    toks = {name: Tokenizer.from_file(os.path.join(out, name, "tokenizer.json")) for name in toks}
    with gzip.GzipFile(os.path.join(out, "golden.jsonl.gz"), "wb", mtime=0) as g:
        for text in test_texts(3000):
            rec = {"text": text}
            for name, tok in toks.items():
                ids = tok.encode(text, add_special_tokens=False).ids
                rec[name] = ids
                dec = tok.decode(ids, skip_special_tokens=True)
                if dec != text:
                    rec[name + "_decoded"] = dec
            g.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))


def encode_cmd(model_dir, texts_file):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    print(json.dumps({"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id,
                      "unk": tok.unk_token_id, "size": len(tok)}))
    with open(texts_file, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            print(json.dumps({"ids": tok.encode(text, add_special_tokens=False)}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "golden":
        golden(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "encode":
        encode_cmd(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
