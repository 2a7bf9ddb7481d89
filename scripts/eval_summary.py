#!/usr/bin/env python3
"""Prints an example's summary table from the `tess eval` reports in
RUN_DIR/eval: exact match overall and per task for (a) the adapted +
instruction-tuned diffusion model at each step count (and with reward
guidance or the fast sampler), (b) the diffusion model instruction-tuned from
scratch, (c) the AR model (and (d) for SmolLM2: the AR model tuned on the same
data), plus the mean reward-model score, speed and the training losses with
their validation curves.

    eval_summary.py RUN_DIR [--example quickstart|smollm2] [--markdown]
"""
import argparse
import json
import re
from pathlib import Path

# Per example: (label, report file) rows and the training runs whose losses are listed.
EXAMPLES = {
    "quickstart": ([("(a) adapted + tuned", "adapted.json"), ("(a) + reward guidance", "adapted_guided.json"),
                    ("(a) adaptive stop + prompt cache", "adapted_adaptive.json"),
                    ("(b) tuned from scratch", "scratch.json"), ("(c) AR tuned", "ar.json")],
                   ["ar", "adaptation", "instruction", "instruction_scratch", "ar_instruction", "reward"]),
    "smollm2": ([("(a) SmolLM2 adapted + tuned", "adapted.json"),
                 ("(a) adaptive stop", "adapted_adaptive.json"),
                 ("(a) adaptive stop + prompt cache", "adapted_adaptive_cache.json"),
                 ("(b) same shape, tuned from scratch", "scratch.json"),
                 ("(c) SmolLM2-Instruct (AR)", "ar.json"),
                 ("(d) SmolLM2 kept AR, tuned", "ar_tuned.json")],
                ["adaptation", "instruction", "instruction_scratch", "ar_instruction"]),
}


def reports(path):
    doc = json.loads(path.read_text())
    return doc["reports"] if "reports" in doc else [doc]


def contains_rate(samples, steps):
    """Share of outputs that contain the reference answer as a whole word
    sequence (case and whitespace ignored): a lenient view next to exact match
    for models that answer in full sentences. None without the samples file."""
    if not samples.exists():
        return None
    norm = lambda text: " ".join(text.lower().split())
    hits = n = 0
    for line in samples.read_text().splitlines():
        r = json.loads(line)
        if steps is not None and r.get("steps") != steps:
            continue
        n += 1
        hits += re.search(r"(?<!\w)" + re.escape(norm(r["answer"])) + r"(?!\w)", norm(r["output"])) is not None
    return hits / n if n else None


def losses(run):
    """(last training loss, [(step, validation loss), ...]) from a run's metrics.jsonl."""
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [r["loss"] for r in rows if "loss" in r]
    val = [(r.get("step"), r["validation_loss"]) for r in rows if "validation_loss" in r]
    return (train[-1] if train else None, val)


def main(out, example, markdown):
    out = Path(out)
    ev = out / "eval"
    models, runs = EXAMPLES[example]
    rows = []
    for label, file in models:
        if not (ev / file).exists():
            print(f"(no {ev / file}: row {label!r} left out)")
            continue
        for r in reports(ev / file):
            s, m = r["settings"], r["metrics"]
            steps = str(s["steps"]) if s.get("kind") != "ar" and "steps" in s else "AR"
            if "adaptive" in s and "mean_steps" in m:  # a budget: show the steps taken
                steps = f"<={s['steps']} (mean {m['mean_steps']:.1f})"
            m = dict(m)
            m["contains"] = contains_rate(ev / file.replace(".json", "_samples.jsonl"),
                                          None if steps == "AR" or "adaptive" in s else s["steps"])
            rows.append((label, steps, m))
    tasks = sorted({t for _, _, m in rows for t in m.get("exact_match_by_task", {})})
    head = ["model", "steps", "exact", *tasks, "contains", "reward", "dist-2", "tok/s"]
    table = [head]
    for label, steps, m in rows:
        per = m.get("exact_match_by_task", {})
        table.append([label, steps, f"{m['exact_match']:.3f}",
                      *[f"{per[t]['exact_match']:.2f}" if t in per else "-" for t in tasks],
                      f"{m['contains']:.3f}" if m.get("contains") is not None else "-",
                      f"{m['reward']:+.3f}" if "reward" in m else "-",
                      f"{m['dist_2']:.3f}" if "dist_2" in m else "-",
                      f"{m['tokens_per_s']:.0f}" if "tokens_per_s" in m else "-"])
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
        for r in table[1:]:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        for r in table:
            print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    n = rows[0][2].get("exact_match_n", "?")
    print(f"\n{n} held-out prompts; exact = the whole answer string must match; contains = the answer appears "
          "in the output as whole words (from the samples).")
    print("\nfinal training / validation loss, then the validation curve (step: loss)")
    for run in runs:
        if not (out / run / "metrics.jsonl").exists():
            continue
        t, val = losses(out / run)
        print(f"  {run:<20} {t:.4f}" + (f" / {val[-1][1]:.4f}" if val else ""))
        if len(val) > 1:
            print("    " + "  ".join(f"{step}: {v:.3f}" for step, v in val))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--example", choices=sorted(EXAMPLES), default="quickstart")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown (as the docs hold it)")
    a = p.parse_args()
    main(a.run_dir, a.example, a.markdown)
