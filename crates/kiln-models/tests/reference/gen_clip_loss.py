"""Reference for kiln's CLIP loss: PyTorch's symmetric InfoNCE on fixed embeddings.

Writes ../fixtures/clip_loss.json: raw (unnormalised) picture features (B, D), caption
features (M, D) (M = B: plain CLIP; M = 2B: the extra B rows are hard-negative captions that
only add columns to the picture->caption side, as NegCLIP), the logit scale parameter, and for
each case the loss and the gradients of the loss with respect to the raw features and the
logit scale parameter (the features are L2-normalised inside, `F.normalize`).

    pip install torch
    python crates/kiln-models/tests/reference/gen_clip_loss.py
"""

import json
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def clip_loss(img, txt, logit_scale):
    b = img.shape[0]
    img = F.normalize(img, dim=-1)
    txt = F.normalize(txt, dim=-1)
    scale = logit_scale.clamp(max=torch.log(torch.tensor(100.0))).exp()
    per_image = scale * img @ txt.t()  # (B, M)
    per_text = scale * txt[:b] @ img.t()  # (B, B)
    target = torch.arange(b)
    return 0.5 * (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target))


def case(b, m, d, seed, logit_scale):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=g, dtype=torch.float64).requires_grad_()
    txt = torch.randn(m, d, generator=g, dtype=torch.float64).requires_grad_()
    ls = torch.tensor(logit_scale, dtype=torch.float64, requires_grad=True)
    loss = clip_loss(img, txt, ls)
    loss.backward()
    return {
        "images": img.detach().tolist(),
        "texts": txt.detach().tolist(),
        "logit_scale": logit_scale,
        "loss": loss.item(),
        "grad_images": img.grad.tolist(),
        "grad_texts": txt.grad.tolist(),
        "grad_logit_scale": ls.grad.item(),
    }


def main():
    cases = [
        case(5, 5, 8, 0, 2.6592600369262695),  # ln(1/0.07): CLIP's initial scale
        case(4, 8, 6, 1, 1.0),  # hard negatives: 4 extra caption rows
        case(3, 3, 4, 2, 5.0),  # above ln 100: clamped, no gradient to the scale
    ]
    out = os.path.join(HERE, "..", "fixtures", "clip_loss.json")
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
