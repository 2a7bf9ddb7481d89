#!/usr/bin/env python3
"""Prints the quickstart's summary table from the `tess eval` reports in
RUN_DIR/eval: exact match overall and per task for (a) the adapted +
instruction-tuned diffusion model at each step count and with reward guidance,
(b) the diffusion model instruction-tuned from scratch, (c) the AR model tuned
on the same data, plus the mean reward-model score and the training losses."""
import json
import sys
from pathlib import Path


def reports(path):
    doc = json.loads(path.read_text())
    return doc["reports"] if "reports" in doc else [doc]


def final_loss(run):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [r["loss"] for r in rows if "loss" in r]
    val = [r["validation_loss"] for r in rows if "validation_loss" in r]
    return (train[-1] if train else None, val[-1] if val else None)


def main(out):
    out = Path(out)
    ev = out / "eval"
    rows = []
    for label, file in [("(a) adapted + tuned", "adapted.json"), ("(a) + reward guidance", "adapted_guided.json"),
                        ("(b) tuned from scratch", "scratch.json"), ("(c) AR tuned", "ar.json")]:
        for r in reports(ev / file):
            s, m = r["settings"], r["metrics"]
            steps = str(s["steps"]) if "steps" in s else "AR"
            rows.append((label, steps, m))
    tasks = sorted({t for _, _, m in rows for t in m.get("exact_match_by_task", {})})
    head = ["model", "steps", "exact", *tasks, "reward", "dist-2", "tok/s"]
    table = [head]
    for label, steps, m in rows:
        per = m.get("exact_match_by_task", {})
        table.append([label, steps, f"{m['exact_match']:.3f}",
                      *[f"{per[t]['exact_match']:.2f}" if t in per else "-" for t in tasks],
                      f"{m['reward']:+.3f}" if "reward" in m else "-",
                      f"{m['dist_2']:.3f}" if "dist_2" in m else "-",
                      f"{m['tokens_per_s']:.0f}" if "tokens_per_s" in m else "-"])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    n = rows[0][2].get("exact_match_n", "?")
    print(f"\n{n} held-out prompts; exact = the whole answer string must match.")
    print("\nfinal training / validation loss")
    for run in ["ar", "adaptation", "instruction", "instruction_scratch", "ar_instruction", "reward"]:
        t, v = final_loss(out / run)
        print(f"  {run:<20} {t:.4f}" + (f" / {v:.4f}" if v is not None else ""))


if __name__ == "__main__":
    main(sys.argv[1])
