"""The peer of bench/nanogpt_shakespeare.sh: the same recipe in PyTorch with transformers'
GPT2LMHeadModel on the same data cut the same way (character vocabulary, last 10% held out,
non-overlapping windows of 65 characters, a fresh shuffle of the windows each epoch, AdamW with
betas 0.9/0.99 and weight decay 0.1 on the parameters of two or more dimensions only (weights and
embeddings, not biases and LayerNorm: nanoGPT's two groups, as `kiln train gpt` does; `--decay-all`
decays every parameter, as `kiln train gpt --decay-all`), 100 warm-up steps then
cosine from 1e-3 to 1e-4, clipping at 1.0, batch 12). Prints validation loss over all validation
windows and the wall time of the training steps.

    python3 bench/nanogpt_shakespeare_peer.py [--steps 2000] [--threads 1]
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=2000)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--text", default="data/text/shakespeare.txt")
ap.add_argument("--decay-all", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1337)

text = open(a.text, encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
ids = np.array([stoi[c] for c in text], dtype=np.int64)
n_val = int(len(ids) * 0.1 + 0.5)
train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
T, B = 64, 12


def windows(t):
    n = (len(t) - 1) // T
    return np.stack([t[i * T: i * T + T + 1] for i in range(n)])


tw, vw = torch.from_numpy(windows(train)), torch.from_numpy(windows(val))
cfg = GPT2Config(vocab_size=len(chars), n_positions=T, n_embd=128, n_layer=4, n_head=4,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
                 eos_token_id=None)
model = GPT2LMHeadModel(cfg)
params = list(model.parameters())
if a.decay_all:
    groups = [{"params": params, "weight_decay": 0.1}]
else:
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))


def lr_at(step, total, base=1e-3, eta_min=1e-4, warmup=100):
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t)) / 2


rng = np.random.default_rng(1337)
order, pos = rng.permutation(len(tw)), 0
model.train()
t0 = time.time()
for step in range(a.steps):
    if pos + B > len(order):
        order, pos = rng.permutation(len(tw)), 0
    w = tw[order[pos: pos + B]]
    pos += B
    for g in opt.param_groups:
        g["lr"] = lr_at(step, a.steps)
    logits = model(w[:, :-1]).logits
    loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), w[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
train_secs = time.time() - t0
model.eval()
total, count = 0.0, 0
with torch.no_grad():
    for i in range(0, len(vw), 64):
        w = vw[i: i + 64]
        logits = model(w[:, :-1]).logits
        total += float(F.cross_entropy(logits.reshape(-1, cfg.vocab_size), w[:, 1:].reshape(-1),
                                       reduction="sum"))
        count += w[:, 1:].numel()
print(json.dumps({"peer": "pytorch+transformers", "steps": a.steps, "train_seconds": train_secs,
                  "validation_loss": total / count, "threads": a.threads,
                  "decay_all": a.decay_all}))
