#!/usr/bin/env bash
# The README's first command: set-up, build, then the quickstart recipe.
# Today it shows what exists (the CLI and the configuration of each quickstart
# stage) and says plainly which steps of the recipe have not landed yet.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$ROOT/scripts/setup.sh"
tess_configure_and_build
TESS="$BUILD_DIR/launch/tess"
cd "$ROOT"

echo
"$TESS" --version
for stage in ar adaptation instruction instruction_scratch; do
  echo
  echo "== configs/quickstart/$stage.yaml (effective configuration) =="
  "$TESS" config dump "configs/quickstart/$stage.yaml" --origins | grep -E '^#|  # ' || true
done

cat <<'MSG'

Not there yet in this version of tess (the quickstart runs them as they land):
  - preparing the corpus and chat tasks, training the tokenizer   (tess tokenize)
  - AR pretraining, stage 1 adaptation, stage 2 instruction tuning, reward model (tess train)
  - sampling with reward guidance and the evaluation table        (tess generate, tess eval)
MSG
