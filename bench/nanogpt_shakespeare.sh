#!/usr/bin/env bash
# nanoGPT's CPU recipe for character-level Shakespeare, run by kiln:
#   4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iterations, AdamW (betas 0.9/0.99,
#   weight decay 0.1 on weight matrices and embeddings only, as nanoGPT), lr 1e-3 with 100
#   warm-up steps then cosine to 1e-4, gradient clipping at 1.0, dropout 0. nanoGPT's README
#   gives validation loss 1.88 for it (on its 1 MB tiny-shakespeare; the corpus here is the
#   complete works, data/text/shakespeare.txt, 5 MB, last 10% held out).
# Prints kiln's validation loss, perplexity and wall time, and checks loss <= 1.88.
# The trained run folder (its model/ is a Hugging Face GPT-2 folder) is left in $OUT.
#
#   bash bench/nanogpt_shakespeare.sh                 # release build, under nice -n ${NICE:-10}
#   KILN=target/debug/kiln THREADS=1 bash bench/nanogpt_shakespeare.sh
#   PEER=1 bash bench/nanogpt_shakespeare.sh   # also the PyTorch peer (needs torch, transformers)
#   DECAY_ALL=1 ...                            # decay every parameter (kiln and the peer)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-target/release/kiln}
OUT=${OUT:-runs/nanogpt-shakespeare}
THREADS=${THREADS:-}
if [ ! -x "$KILN" ]; then cargo build --release -p kiln-cli; fi
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
NICE=${NICE:-10}
env ${THREADS:+RAYON_NUM_THREADS=$THREADS} nice -n "$NICE" "$KILN" train gpt \
  --text data/text/shakespeare.txt --tokenizer char --val-fraction 0.1 \
  --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --dropout 0 \
  --batch-size 12 --steps 2000 --optimizer adamw --lr 1e-3 --min-lr 1e-4 \
  --schedule warmup-cosine --warmup-steps 100 --beta2 0.99 --weight-decay 0.1 \
  --clip-grad-norm 1 --eval-every 1000 --seed 1337 ${DECAY_ALL:+--decay-all} \
  --out "$OUT" --quiet --json > "$OUT.json"
python3 - "$OUT.json" "$OUT/history.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v = r["validation"]
# Time in the training steps alone (the run's wall time also holds the evaluations).
recs = [json.loads(l) for l in open(sys.argv[2])]
train = [x for x in recs if x["kind"] == "train"]
steps_secs, prev = 0.0, 0
for x in train:
    steps_secs += (x["step"] - prev) * 12 / x["samples_per_sec"]
    prev = x["step"]
open(sys.argv[1] + ".steps_secs", "w").write(str(steps_secs))
print(f"kiln: training steps took {steps_secs:.1f} s")
print(f"kiln: validation loss {v['loss']:.4f} (perplexity {v['perplexity']:.3f}) over "
      f"{v['examples']} windows of 64; train loss {r['train']['loss']:.4f}; "
      f"{r['steps']} steps in {r['wall_seconds']:.1f} s")
print(f"nanoGPT's published validation loss 1.88: {'met' if v['loss'] <= 1.88 else 'NOT met'}")
PY
if [ "${PEER:-0}" = 1 ]; then
  peer=$(nice -n "$NICE" python3 bench/nanogpt_shakespeare_peer.py --threads "${THREADS:-1}" \
    ${DECAY_ALL:+--decay-all})
  echo "peer: $peer"
  python3 - "$peer" "$(cat "$OUT.json.steps_secs")" <<'PY'
import json, sys
p, k = json.loads(sys.argv[1]), float(sys.argv[2])
print(f"PyTorch: validation loss {p['validation_loss']:.4f}, training steps {p['train_seconds']:.1f} s")
print(f"time ratio kiln / PyTorch: {k / p['train_seconds']:.2f}")
PY
fi
# INSTALL_DEFAULT=1: make this run's model kiln's embedded default GPT.
if [ "${INSTALL_DEFAULT:-0}" = 1 ]; then
  cp "$OUT"/model/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json,generation_config.json} \
    crates/kiln-models/assets/default-gpt/
  echo "copied $OUT/model into crates/kiln-models/assets/default-gpt/"
fi
