#!/usr/bin/env bash
# The README's first command: set-up, build, then the quickstart recipe on
# this machine's CPU cores: prepare a real English corpus and chat tasks,
# train a tokenizer, pretrain a tiny AR model, adapt it to diffusion (stage 1),
# instruction-tune it (stage 2), and instruction-tune a same-shape model from
# scratch for comparison. `--tiny` runs the same pipeline with minimal sizes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TINY=0
for arg in "$@"; do
  case "$arg" in
    --tiny) TINY=1 ;;
    *) echo "usage: scripts/quickstart.sh [--tiny]" >&2; exit 2 ;;
  esac
done

"$ROOT/scripts/setup.sh"
tess_configure_and_build
TESS="$BUILD_DIR/launch/tess"
cd "$ROOT"
OUT=runs/quickstart
DATA=$OUT/data
mkdir -p "$DATA"

if [ "$TINY" = 1 ]; then
  DOCS=2000; TRAIN=600; TEST=60; PREFS=100; VOCAB=1000; STEPS=20
else
  DOCS=0; TRAIN=6000; TEST=300; PREFS=2000; VOCAB=4000; STEPS=600
fi
STEP_SET=(--set "train.max_steps=$STEPS")

echo "== tess: $("$TESS" --version | head -1)"
echo "== 1/6 data: English corpus (fortunes + WordNet glosses) and chat tasks"
"$TESS" tokenize english-corpus --output "$DATA/corpus.txt" --max-documents "$DOCS"
"$TESS" tokenize synthetic --output "$DATA" --seed 1234 --train "$TRAIN" --test "$TEST" --preferences "$PREFS"

echo "== 2/6 tokenizer (SentencePiece, vocab $VOCAB) and token shards"
"$TESS" tokenize train-spm --input "$DATA/corpus.txt" --output "$DATA/tokenizer" --vocab-size "$VOCAB" --threads 2
"$TESS" tokenize corpus --tokenizer "$DATA/tokenizer" --input "$DATA/corpus.txt" --output "$DATA/corpus" \
  --validation-fraction 0.02 --overwrite

echo "== 3/6 pretrain a tiny AR model"
"$TESS" train configs/quickstart/ar.yaml "${STEP_SET[@]}" --set checkpoint.resume=none
echo "== 4/6 stage 1: adapt it to a simplex diffusion LM"
"$TESS" train configs/quickstart/adaptation.yaml "${STEP_SET[@]}" --set checkpoint.resume=none
echo "== 5/6 stage 2: instruction-tune the adapted model"
"$TESS" train configs/quickstart/instruction.yaml "${STEP_SET[@]}" --set checkpoint.resume=none
echo "== 6/6 comparison: instruction-tune a same-shape model from scratch"
"$TESS" train configs/quickstart/instruction_scratch.yaml "${STEP_SET[@]}" --set checkpoint.resume=none

summary() {  # last training loss and validation loss of a run
  python3 - "$1" <<'PY' 2>/dev/null || tail -n 1 "$1/metrics.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if l.strip()]
train = [r for r in rows if "loss" in r]
val = [r for r in rows if "validation_loss" in r]
print(f"steps {train[-1]['step']:>5}  train loss {train[-1]['loss']:.4f}" +
      (f"  validation loss {val[-1]['validation_loss']:.4f}" if val else ""))
PY
}
echo
echo "== Summary (configs/quickstart/*.yaml, $STEPS steps each, seed 1234)"
for run in ar adaptation instruction instruction_scratch; do
  printf '%-22s %s\n' "$run" "$(summary "$OUT/$run")"
done
cat <<'MSG'

Models: runs/quickstart/{ar,adaptation,instruction,instruction_scratch}/final (HF layout).
Not there yet in this version of tess: sampling answers for the held-out prompts
(tess generate), the evaluation table with exact match per task, step-count
sweeps and reward guidance (tess eval), and the reward model (stage reward).
MSG
