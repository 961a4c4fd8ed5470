#!/usr/bin/env bash
# Train kiln's default text-to-image model (crates/kiln-models/assets/default-image) from
# scratch on two cores, the way it was made, and time it:
#   1. the VQ-VAE tokenizer, on both threads;
#   2. the prior over the tokenizer's codes and the CLIP reranker side by side, one thread
#      each (the prior's small matrices gain next to nothing from a second thread);
#   3. assemble the model folder ($OUT/model: vqvae/, prior/, clip/) and run the
#      prompt-fidelity benchmark on it.
# Prints each stage's wall time and the total. Takes about 52 minutes on a 2-core machine
# (tokenizer 8, prior 44 with the reranker's 13 beside it).
#
#   bash bench/train_default_image.sh             # release build, runs under $OUT (runs/default-image)
#   OUT=/tmp/img bash bench/train_default_image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-target/release/kiln}
OUT=${OUT:-runs/default-image}
if [ ! -x "$KILN" ]; then cargo build --release -p kiln-cli; fi
rm -rf "$OUT"
mkdir -p "$OUT"
t0=$(date +%s)

RAYON_NUM_THREADS=2 "$KILN" train vqvae --dataset shapes --train-size 20000 --val-size 1000 \
  --codebook-size 1024 --colour-codes 32 --edge-weight 4 --jitter 1.5 \
  --upsample pixel-shuffle --lr 0.001 --schedule warmup-cosine --warmup-steps 200 \
  --batch-size 16 --steps 16000 --eval-every 2000 --checkpoint-every 2000 --seed 1 \
  --out "$OUT/vqvae" --quiet > "$OUT/vqvae.log" 2>&1
t1=$(date +%s)
echo "tokenizer: $((t1 - t0)) s"

RAYON_NUM_THREADS=1 "$KILN" train clip --dataset shapes --train-size 40000 --val-size 2000 \
  --hard-negatives --jitter 1 --batch-size 64 --lr 0.0007 --schedule warmup-cosine \
  --warmup-steps 100 --steps 4800 --eval-every 1200 --checkpoint-every 300 --seed 0 \
  --out "$OUT/clip" --quiet > "$OUT/clip.log" 2>&1 &
clip=$!
RAYON_NUM_THREADS=1 "$KILN" train dalle --vqvae "$OUT/vqvae" --dataset shapes \
  --train-size 40000 --val-size 500 --jitter 2 --small-jitter 1 --pair-jitter 1 --partial-captions 1 \
  --compose --image-positions factorized \
  --colour-given-pattern --n-layer 4 --n-head 4 \
  --n-embd 128 --batch-size 16 --steps 16000 --optimizer adamw --lr 1e-3 --min-lr 1e-4 \
  --schedule warmup-cosine --warmup-steps 200 --weight-decay 0.1 --clip-grad-norm 1 \
  --eval-every 1000 --checkpoint-every 500 --guidance 1.5 --temperature 0.5 --seed 0 \
  --out "$OUT/prior" --quiet > "$OUT/prior.log" 2>&1
wait "$clip"
t2=$(date +%s)
echo "prior and reranker, side by side: $((t2 - t1)) s"
echo "total training: $((t2 - t0)) s"

cp -r "$OUT/prior/model" "$OUT/model"
cp -r "$OUT/clip/model" "$OUT/model/clip"
"$KILN" eval image-model --model "$OUT/model" --prompts held-out --samples 4
