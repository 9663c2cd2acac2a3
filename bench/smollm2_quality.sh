#!/usr/bin/env bash
# Model-quality benchmark, offline: SmolLM2-135M-Instruct (the embedded GGUF) against its own
# LoRA fine-tune on a simulated therapy corpus, compared by `rapport eval` on held-out scenarios
# with SmolLM2 itself as the judge, one call per criterion (the report says why that is a weak
# judge). CPU: about 10 min to train and export, ~1.5 min per judged conversation, on 2 cores.
#   bench/smollm2_quality.sh [REPORT_DIR] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/smollm2_eval}
N=${2:-6}
RAPPORT=${RAPPORT:-.venv/bin/rapport}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

$RAPPORT generate --db "$WORK/corpus.duckdb" --count 300 --turns 4 --backend simulated --quiet
$RAPPORT judge --db "$WORK/corpus.duckdb" --judge simulated:quality=0.97
$RAPPORT dataset build --db "$WORK/corpus.duckdb" --out "$WORK/data" --max-tokens 512
cat > "$WORK/train.yaml" <<'YAML'
learning_rate: 0.0005
batch_size: 2
gradient_accumulation: 1
max_length: 512
lora: {rank: 16, alpha: 32, dropout: 0.0}
YAML
$RAPPORT train --config "$WORK/train.yaml" --base gguf:embedded --dataset "$WORK/data" \
    --output "$WORK/adapter" --max-steps 30
$RAPPORT export --base gguf:embedded --adapter "$WORK/adapter" \
    --out "$WORK/smollm2-therapy-lora.gguf" --quant q4_k_m
cat > "$WORK/run.yaml" <<'YAML'
judges:
  - id: smollm2
    backend: {provider: llamacpp}
    max_tokens: 200
YAML
$RAPPORT eval --db "$WORK/corpus.duckdb" --scenarios "$N" --turns 2 --quiet \
    --baseline gguf:embedded --candidate "gguf:$WORK/smollm2-therapy-lora.gguf" \
    --user-backend simulated --config "$WORK/run.yaml" --out "$OUT"
cp "$WORK/adapter/loss.json" "$OUT/train_loss.json"
