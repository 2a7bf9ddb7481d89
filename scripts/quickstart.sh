#!/usr/bin/env bash
# The README's first command: set-up, build, then the whole recipe on this
# machine's CPU cores: prepare a real English corpus and chat tasks, train a
# tokenizer, pretrain a tiny AR model, adapt it to diffusion (stage 1),
# instruction-tune it (stage 2), and for comparison instruction-tune a
# same-shape diffusion model from scratch and the AR model itself; train a
# tiny reward model; answer the held-out prompts at several step counts, with
# and without reward guidance, and print one exact-match table.
#
#   --tiny         the same pipeline with minimal sizes (about a minute of runs)
#   --no-build     skip set-up and build; use $TESS or build/launch/tess
#   --workdir DIR  write runs/quickstart under DIR instead of the repository
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TINY=0; BUILD=1; WORKDIR="$ROOT"
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1 ;;
    --no-build) BUILD=0 ;;
    --workdir) WORKDIR="$2"; shift ;;
    *) echo "usage: scripts/quickstart.sh [--tiny] [--no-build] [--workdir DIR]" >&2; exit 2 ;;
  esac
  shift
done

TESS=$(tess_binary "$BUILD")
CONFIGS="$ROOT/configs/quickstart"
mkdir -p "$WORKDIR"
cd "$WORKDIR"
OUT=runs/quickstart
DATA=$OUT/data
EVAL=$OUT/eval
mkdir -p "$DATA" "$EVAL"

# Training steps per stage come from the configs (configs/quickstart/*.yaml);
# --tiny overrides them.
if [ "$TINY" = 1 ]; then
  DOCS=2000; TRAIN=600; TEST=12; PREFS=100; VOCAB=1000
  SWEEP=2,8; GUIDED_STEPS=8; ADAPTIVE_STEPS=8; SPAN=16
  EVAL_SET=(--length "$SPAN")
  STEP_SET=(--set train.max_steps=12 --set checkpoint.resume=none --set checkpoint.overwrite=true)
  REWARD_SET=(--set train.max_steps=6 --set checkpoint.resume=none --set checkpoint.overwrite=true)
else
  DOCS=0; TRAIN=6000; TEST=300; PREFS=2000; VOCAB=2000
  SWEEP=4,16,32; GUIDED_STEPS=16; ADAPTIVE_STEPS=32; SPAN=48  # SPAN as eval.span_length in _common.yaml
  EVAL_SET=()
  STEP_SET=(--set checkpoint.resume=none --set checkpoint.overwrite=true)
  REWARD_SET=(--set checkpoint.resume=none --set checkpoint.overwrite=true)
fi
GUIDANCE=1.0
T0=$(date +%s)

echo "== tess: $("$TESS" --version | head -1)"
echo "== 1/9 data: English corpus (fortunes + WordNet glosses) and chat tasks"
"$TESS" tokenize english-corpus --output "$DATA/corpus.txt" --max-documents "$DOCS"
"$TESS" tokenize synthetic --output "$DATA" --seed 1234 --train "$TRAIN" --test "$TEST" --preferences "$PREFS"

echo "== 2/9 tokenizer (SentencePiece, vocab $VOCAB) and token shards"
"$TESS" tokenize train-spm --input "$DATA/corpus.txt" --output "$DATA/tokenizer" --vocab-size "$VOCAB" --threads 2
"$TESS" tokenize corpus --tokenizer "$DATA/tokenizer" --input "$DATA/corpus.txt" --output "$DATA/corpus" \
  --validation-fraction 0.02 --overwrite

echo "== 3/9 pretrain a tiny AR model"
"$TESS" train "$CONFIGS/ar.yaml" "${STEP_SET[@]}"
echo "== 4/9 stage 1: adapt it to a simplex diffusion LM"
"$TESS" train "$CONFIGS/adaptation.yaml" "${STEP_SET[@]}"
echo "== 5/9 stage 2: instruction-tune the adapted model"
"$TESS" train "$CONFIGS/instruction.yaml" "${STEP_SET[@]}"
echo "== 6/9 comparison (b): instruction-tune a same-shape diffusion model from scratch"
"$TESS" train "$CONFIGS/instruction_scratch.yaml" "${STEP_SET[@]}"
echo "== 7/9 comparison (c): instruction-tune the AR model on the same data"
"$TESS" train "$CONFIGS/ar_instruction.yaml" "${STEP_SET[@]}"
echo "== 8/9 reward model on preference pairs"
"$TESS" train "$CONFIGS/reward.yaml" "${REWARD_SET[@]}"

echo "== 9/9 answer the $TEST held-out prompts per task and score them"
# Each run's config says how it is evaluated (eval.* in _common.yaml); its
# final model is the one evaluated.
"$TESS" eval "$CONFIGS/instruction.yaml" "${EVAL_SET[@]}" --sweep "steps=$SWEEP" \
  --output "$EVAL/adapted.json" --samples "$EVAL/adapted_samples.jsonl"
"$TESS" eval "$CONFIGS/instruction.yaml" "${EVAL_SET[@]}" --steps "$GUIDED_STEPS" --guidance-scale "$GUIDANCE" \
  --output "$EVAL/adapted_guided.json" --samples "$EVAL/adapted_guided_samples.jsonl"
# The fast sampler: adaptive stopping within the step budget (a row stops once its answer's argmax held
# for one step, no margin: measured in docs/performance.md), prompt cache refreshed every 4 steps.
"$TESS" eval "$CONFIGS/instruction.yaml" "${EVAL_SET[@]}" --steps "$ADAPTIVE_STEPS" --adaptive --stable-steps 1 \
  --margin 0 --cache-refresh 4 \
  --output "$EVAL/adapted_adaptive.json" --samples "$EVAL/adapted_adaptive_samples.jsonl"
"$TESS" eval "$CONFIGS/instruction_scratch.yaml" "${EVAL_SET[@]}" --sweep "steps=$SWEEP" --output "$EVAL/scratch.json"
"$TESS" eval "$CONFIGS/ar_instruction.yaml" "${EVAL_SET[@]}" --output "$EVAL/ar.json" \
  --samples "$EVAL/ar_samples.jsonl"

SECONDS_TOTAL=$(( $(date +%s) - T0 ))
echo
SIZE="training steps as in the configs"
[ "$TINY" = 1 ] && SIZE="--tiny: 12 training steps per stage"
echo "== Summary: exact match on held-out prompts (configs/quickstart/*.yaml, $SIZE,"
echo "   seed 1234, greedy token choice, span $SPAN, guidance scale $GUIDANCE; ${SECONDS_TOTAL}s of runs)"
python3 "$ROOT/scripts/eval_summary.py" "$OUT"
cat <<MSG

Models: $OUT/{ar,adaptation,instruction,instruction_scratch,ar_instruction,reward}/final (HF layout).
Reports: $EVAL/*.json (+ .svg plots of each metric against the step count), answers: $EVAL/*_samples.jsonl.

Try next: serve the instruction-tuned model over an OpenAI-compatible API with a live denoising page
(open http://127.0.0.1:8000/ in a browser; docs/serving.md):
  $TESS serve --model $OUT/instruction/final --reward-model $OUT/reward/final --steps 32 --max-tokens $SPAN --port 8000
MSG
