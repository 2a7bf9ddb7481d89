#!/usr/bin/env python3
"""Speed against quality, one point per sampler setting, as an SVG scatter:
x = answer tokens per second (tokens before the first EOS; log scale),
y = exact match. Reads `tess eval --output` reports (one report or a
`--sweep`'s) and `tess bench sample --config ... --output` grids.

    speed_quality_plot.py OUT.svg REPORT.json [REPORT.json ...] [--title T]

Points from a bench grid are labelled "b<batch> <setting>" and coloured by
batch size; points from eval reports by their settings ("AR", "fixed 32",
"adaptive <=32 (6.2) + cache r=4") and coloured by file.
"""
import argparse
import html
import json
import math
import os
import sys

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def eval_label(settings, metrics):
    if settings.get("kind") == "ar":
        return "AR"
    steps = settings.get("steps", "?")
    if settings.get("adaptive"):
        label = f"adaptive <={steps}"
        if "mean_steps" in metrics:
            label += f" ({metrics['mean_steps']:.1f})"
    else:
        label = f"fixed {steps}"
    if settings.get("cache_refresh"):
        label += f" + cache r={settings['cache_refresh']}"
    return label


def points(path):
    """[(label, colour key, tokens/s, exact match)] of one JSON file."""
    with open(path) as f:
        doc = json.load(f)
    out = []
    if "rows" in doc:  # tess bench sample --config
        for r in doc["rows"]:
            out.append((f"b{r['batch']} {r['setting']}", f"batch {r['batch']}", r["answer_tokens_per_s"],
                        r["exact_match"]))
    else:  # tess eval --output: one report or a sweep's
        for r in doc.get("reports", [doc]):
            s, m = r["settings"], r["metrics"]
            if "answer_tokens_per_s" not in m or "exact_match" not in m:
                continue
            out.append((eval_label(s, m), os.path.basename(path), m["answer_tokens_per_s"], m["exact_match"]))
    return out


def svg(pts, title):
    w, h, left, right, top, bottom = 800, 480, 70, 250, 40, 50
    xs = [math.log10(max(p[2], 1e-9)) for p in pts]
    lo, hi = math.floor(min(xs)), math.ceil(max(xs))
    if hi == lo:
        hi = lo + 1
    ymax = max(0.05, max(p[3] for p in pts)) * 1.1
    px = lambda x: left + (math.log10(max(x, 1e-9)) - lo) / (hi - lo) * (w - left - right)
    py = lambda y: h - bottom - y / ymax * (h - top - bottom)
    e = html.escape
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{left}" y="22" font-size="14">{e(title)}</text>',
         f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
         f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
         f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">answer tokens/s (log scale)</text>',
         f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" '
         'text-anchor="middle">exact match</text>']
    for d in range(lo, hi + 1):
        x = px(10 ** d)
        o.append(f'<line x1="{x}" y1="{h - bottom}" x2="{x}" y2="{h - bottom + 5}" stroke="black"/>')
        o.append(f'<text x="{x}" y="{h - bottom + 18}" text-anchor="middle">{10 ** d:g}</text>')
    for i in range(6):
        y = ymax * i / 5
        o.append(f'<line x1="{left - 5}" y1="{py(y)}" x2="{left}" y2="{py(y)}" stroke="black"/>')
        o.append(f'<text x="{left - 8}" y="{py(y) + 4}" text-anchor="end">{y:.2f}</text>')
    keys = list(dict.fromkeys(p[1] for p in pts))
    for label, key, x, y in pts:
        colour = COLOURS[keys.index(key) % len(COLOURS)]
        o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}"><title>{e(label)}: '
                 f'{x:.1f} tok/s, exact {y:.3f}</title></circle>')
        o.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 5:.1f}" fill="{colour}">{e(label)}</text>')
    for i, key in enumerate(keys):
        y = top + 16 * i
        o.append(f'<circle cx="{w - right + 20}" cy="{y}" r="4" fill="{COLOURS[i % len(COLOURS)]}"/>')
        o.append(f'<text x="{w - right + 30}" y="{y + 4}">{e(str(key))}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("reports", nargs="+")
    p.add_argument("--title", default="speed vs exact match, one point per sampler setting")
    a = p.parse_args()
    pts = []
    for path in a.reports:
        try:
            pts += points(path)
        except (OSError, ValueError, KeyError) as err:
            sys.exit(f"{path}: not a tess eval report or bench sample grid ({err!r})")
    if not pts:
        sys.exit("no point to plot: the reports hold no exact_match with answer_tokens_per_s "
                 "(run tess eval with --metrics exact_match,speed)")
    with open(a.output, "w") as f:
        f.write(svg(pts, a.title))
    print(f"wrote {a.output}: {len(pts)} points")


if __name__ == "__main__":
    main()
