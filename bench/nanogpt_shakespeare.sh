#!/usr/bin/env bash
# nanoGPT's CPU recipe for character-level Shakespeare, run by kiln:
#   4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iterations, AdamW (betas 0.9/0.99,
#   weight decay 0.1), lr 1e-3 with 100 warm-up steps then cosine to 1e-4, gradient clipping
#   at 1.0, dropout 0. nanoGPT's README gives validation loss 1.88 for it (on its 1 MB
#   tiny-shakespeare; the corpus here is the complete works, data/text/shakespeare.txt, 5 MB,
#   last 10% held out).
# Prints kiln's validation loss, perplexity and wall time, and checks loss <= 1.88.
# The trained run folder (its model/ is a Hugging Face GPT-2 folder) is left in $OUT.
#
#   bash bench/nanogpt_shakespeare.sh                 # release build, under nice -n 10
#   KILN=target/debug/kiln THREADS=1 bash bench/nanogpt_shakespeare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-target/release/kiln}
OUT=${OUT:-runs/nanogpt-shakespeare}
THREADS=${THREADS:-}
if [ ! -x "$KILN" ]; then cargo build --release -p kiln-cli; fi
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
env ${THREADS:+RAYON_NUM_THREADS=$THREADS} nice -n 10 "$KILN" train gpt \
  --text data/text/shakespeare.txt --tokenizer char --val-fraction 0.1 \
  --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --dropout 0 \
  --batch-size 12 --steps 2000 --optimizer adamw --lr 1e-3 --min-lr 1e-4 \
  --schedule warmup-cosine --warmup-steps 100 --beta2 0.99 --weight-decay 0.1 \
  --clip-grad-norm 1 --eval-every 1000 --seed 1337 --out "$OUT" --quiet --json > "$OUT.json"
python3 - "$OUT.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v = r["validation"]
print(f"kiln: validation loss {v['loss']:.4f} (perplexity {v['perplexity']:.3f}) over "
      f"{v['examples']} windows of 64; train loss {r['train']['loss']:.4f}; "
      f"{r['steps']} steps in {r['wall_seconds']:.1f} s")
print(f"nanoGPT's published validation loss 1.88: {'met' if v['loss'] <= 1.88 else 'NOT met'}")
PY
