"""Reference for kiln's GPT-2 training step: Hugging Face transformers' GPT2LMHeadModel and
torch.optim.AdamW on a tiny configuration.

Writes ../fixtures/gpt2_train.json: the configuration, the initial weights (Hugging Face names
without the `transformer.` prefix; Conv1D weights in their (in, out) layout; the LM head is
tied to wte), one fixed batch (input ids, target ids), the AdamW settings, and for steps
0..3 the cross-entropy loss before the step and the global gradient norm (clipped to
`clip_grad_norm`), plus the logits after the last step.

    pip install torch transformers
    python crates/kiln-models/tests/reference/gen_gpt2_train.py

With `--check-folder DIR --text FILE --val-fraction F`, it instead loads a folder written by
`kiln train gpt` with `GPT2LMHeadModel.from_pretrained` and `AutoTokenizer.from_pretrained`,
and prints the mean cross-entropy over the validation windows of FILE, cut as kiln cuts them
(the last F of the tokens, non-overlapping windows of block_size + 1 tokens advancing by
block_size; --block-size defaults to the model's n_positions), to compare with the validation loss `kiln train gpt --json` reports.
"""

import argparse
import json
import os

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))


def make_fixture():
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=13,
        n_positions=8,
        n_embd=16,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        activation_function="gelu_new",
    )
    model = GPT2LMHeadModel(cfg).float()
    model.train()  # dropout is 0, so train and eval agree
    # Give the LayerNorms and biases non-trivial values so they are exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))

    def weights():
        out = {}
        for name, p in model.state_dict().items():
            if name == "lm_head.weight" or name.endswith(".attn.bias") or name.endswith(".masked_bias"):
                continue
            key = name.removeprefix("transformer.")
            out[key] = {"shape": list(p.shape), "data": [round(float(v), 9) for v in p.flatten()]}
        return out

    initial = weights()
    B, T = 3, 8
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    x, y = ids[:, :T], ids[:, 1:]

    adamw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    opt = torch.optim.AdamW(model.parameters(), **adamw)
    clip = 1.0
    losses, norms = [], []
    for _ in range(3):
        logits = model(x).logits  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(float(loss))
        norms.append(float(norm))
    with torch.no_grad():
        logits = model(x).logits
        final_loss = float(F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1)))

    fixture = {
        "generator": "crates/kiln-models/tests/reference/gen_gpt2_train.py",
        "torch": torch.__version__,
        "config": {
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.n_positions,
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "layer_norm_epsilon": cfg.layer_norm_epsilon,
            "activation_function": cfg.activation_function,
        },
        "weights": initial,
        "input_ids": x.tolist(),
        "target_ids": y.tolist(),
        "adamw": {"lr": adamw["lr"], "beta1": 0.9, "beta2": 0.99, "eps": adamw["eps"],
                  "weight_decay": adamw["weight_decay"]},
        "clip_grad_norm": clip,
        "losses": losses,
        "grad_norms": norms,
        "final_loss": final_loss,
        "final_logits": [round(float(v), 7) for v in logits.flatten()],
    }
    path = os.path.join(HERE, "..", "fixtures", "gpt2_train.json")
    with open(path, "w") as f:
        json.dump(fixture, f)
    print(f"wrote {path}: losses {losses}, final {final_loss}")


def check_folder(folder, text_path, val_fraction, block_size):
    from transformers import AutoTokenizer

    model = GPT2LMHeadModel.from_pretrained(folder).float().eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ids = tok(text)["input_ids"]
    n_val = int(len(ids) * val_fraction + 0.5)  # as kiln (round half away from zero)
    val = ids[len(ids) - n_val:]
    block = block_size or model.config.n_positions
    n = (len(val) - 1) // block
    w = torch.tensor([val[i * block: i * block + block + 1] for i in range(n)])
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, 64):
            b = w[i: i + 64]
            logits = model(b[:, :-1]).logits
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           b[:, 1:].reshape(-1), reduction="sum"))
            count += b[:, 1:].numel()
    print(json.dumps({"tokens": len(ids), "validation_tokens": len(val), "windows": n,
                      "validation_loss": total / count}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-folder")
    ap.add_argument("--text")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--block-size", type=int, default=None)
    a = ap.parse_args()
    if a.check_folder:
        check_folder(a.check_folder, a.text, a.val_fraction, a.block_size)
    else:
        make_fixture()
