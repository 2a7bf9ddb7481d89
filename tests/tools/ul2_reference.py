#!/usr/bin/env python3
"""Statistics of the TESS 2 reference's `ul2` span masks, re-stated in numpy.

The reference (hamishivi/tess-2, sdlm/data/data_collator.py and
sdlm/data/preprocessors.py) draws per batch one of three objective groups
with equal chance -- t5 {ratio 0.15: mean span 8 or 3}, prefix-LM, aggressive
t5 {ratio 0.5: mean span 8, 3 or 48} -- then a setting of the group
uniformly. Prefix-LM keeps the start token and a prefix of
randint(1, int((L-1)/2)) tokens clean (1 when L < 5). T5 masks have
int(L * ratio) noised tokens (clamped to [1, L-1]) in max(int(N / mean), 1)
spans; clean and noised segments (uniform random compositions, every part
>= 1) alternate, clean first, so a row ends noised.

Usage: ul2_reference.py LENGTH DRAWS SEED -> JSON on stdout:
  objective: {name: frequency}, noised: {count: frequency},
  prefix_clean: [min, max] clean tokens of prefix-LM rows.
"""
import json
import sys

import numpy as np

GROUPS = {
    "t5": [("t5_long", 0.15, 8), ("t5_short", 0.15, 3)],
    "prefix": [("prefix_lm", None, None)],
    "aggressive_t5": [("extreme_8", 0.5, 8), ("extreme_3", 0.5, 3), ("extreme_48", 0.5, 48)],
}


def composition(items, parts, rng):
    """Uniformly random lengths (each >= 1) of `parts` parts summing to `items`."""
    starts = np.zeros(items - 1, dtype=bool)
    starts[: parts - 1] = True
    rng.shuffle(starts)
    lengths = np.zeros(parts, dtype=int)
    lengths[0] = 1  # the first item always starts the first part
    segment = np.cumsum(starts)
    for k in range(items - 1):
        lengths[segment[k]] += 1
    return lengths


def t5_row(length, ratio, mean, rng):
    noised = min(max(int(length * ratio), 1), length - 1)
    spans = max(int(noised / mean), 1)
    noise_parts = composition(noised, spans, rng)
    clean_parts = composition(length - noised, spans, rng)
    row = []
    for c, s in zip(clean_parts, noise_parts):
        row += [0] * c + [1] * s
    return row


def prefix_row(length, rng):
    u = rng.integers(1, int((length - 1) / 2)) if length >= 5 else 1
    return [0] + [0] * u + [1] * (length - u - 1)


def main():
    length, draws, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    objective, noised, prefix_clean = {}, {}, []
    names = list(GROUPS)
    for _ in range(draws):
        group = names[rng.integers(0, len(names))]
        name, ratio, mean = GROUPS[group][rng.integers(0, len(GROUPS[group]))]
        row = prefix_row(length, rng) if ratio is None else t5_row(length, ratio, mean, rng)
        assert len(row) == length and row[0] == 0
        if ratio is None:
            prefix_clean.append(length - sum(row))
        objective[name] = objective.get(name, 0) + 1
        noised[sum(row)] = noised.get(sum(row), 0) + 1
    print(json.dumps({
        "objective": {k: v / draws for k, v in objective.items()},
        "noised": {str(k): v / draws for k, v in noised.items()},
        "prefix_clean": [min(prefix_clean), max(prefix_clean)],
    }))


if __name__ == "__main__":
    main()
