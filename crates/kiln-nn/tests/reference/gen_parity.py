"""Generate PyTorch reference fixtures for kiln-nn's parity tests.

Run from this folder:  python gen_parity.py
Writes parity_*.json beside this script. Each fixture holds its inputs, parameters, the
random weights R of the scalar loss sum(out * R) (so every output element gets a distinct
gradient), the outputs and the gradients of the inputs and of every parameter.
Tensors are stored as {"shape": [...], "data": [flat, row-major]} in float32 precision.
"""
import json
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)


def t(x):
    x = x.detach().to(torch.float32).contiguous()
    return {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1).tolist()]}


def write(name, obj):
    with open(f"parity_{name}.json", "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def module_case(mod, x, extra_inputs=(), train=True, loss_extra=None):
    """Forward mod(x), loss sum(out*R), backward; returns dict."""
    mod.train(train)
    params = {k: v.detach().clone() for k, v in mod.state_dict().items()}
    x = x.clone().requires_grad_(True)
    out = mod(x, *extra_inputs) if extra_inputs else mod(x)
    rest = None
    if isinstance(out, tuple):
        out, rest = out
    r = torch.randn_like(out)
    loss = (out * r).sum()
    case = {"input": t(x), "params": {k: t(v) for k, v in params.items()}, "r": t(r), "output": t(out)}
    if loss_extra is not None:
        loss = loss + loss_extra(rest, case)
    loss.backward()
    case["grad_input"] = t(x.grad)
    case["grad_params"] = {k: t(p.grad) for k, p in mod.named_parameters() if p.grad is not None}
    return case


# ---------------------------------------------------------------- layers
cases = {}
cases["linear"] = module_case(nn.Linear(4, 3), torch.randn(2, 4))
conv = nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1)
cases["conv2d"] = module_case(conv, torch.randn(2, 2, 7, 7))
cases["conv2d"]["config"] = {"in": 2, "out": 3, "kernel": 3, "stride": 2, "padding": 1}
conv1 = nn.Conv2d(1, 2, kernel_size=5, stride=1, padding=2)
cases["conv2d_lenet"] = module_case(conv1, torch.randn(2, 1, 8, 8))
cases["conv2d_lenet"]["config"] = {"in": 1, "out": 2, "kernel": 5, "stride": 1, "padding": 2}
for name, mod, cfg in [
    ("maxpool_k3s2p1", nn.MaxPool2d(3, 2, 1), (3, 2, 1)),
    ("maxpool_k2s2", nn.MaxPool2d(2, 2), (2, 2, 0)),
    ("maxpool_k3s1", nn.MaxPool2d(3, 1), (3, 1, 0)),
    ("avgpool_k3s2p1", nn.AvgPool2d(3, 2, 1), (3, 2, 1)),
    ("avgpool_k2s2", nn.AvgPool2d(2, 2), (2, 2, 0)),
    ("avgpool_k3s1", nn.AvgPool2d(3, 1), (3, 1, 0)),
]:
    cases[name] = module_case(mod, torch.randn(2, 2, 7, 7))
    cases[name]["config"] = {"kernel": cfg[0], "stride": cfg[1], "padding": cfg[2]}

bn = nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.copy_(torch.randn(3))
    bn.bias.copy_(torch.randn(3))
    bn.running_mean.copy_(torch.randn(3))
    bn.running_var.copy_(torch.rand(3) + 0.5)
x = torch.randn(4, 3, 3, 3) * 2 + 1
c = module_case(bn, x, train=True)
c["running_mean_after"] = t(bn.running_mean)
c["running_var_after"] = t(bn.running_var)
del c["params"]["num_batches_tracked"]
cases["batchnorm2d_train"] = c
bn2 = nn.BatchNorm2d(3)
with torch.no_grad():
    bn2.weight.copy_(torch.randn(3))
    bn2.bias.copy_(torch.randn(3))
    bn2.running_mean.copy_(torch.randn(3))
    bn2.running_var.copy_(torch.rand(3) + 0.5)
c = module_case(bn2, torch.randn(4, 3, 3, 3), train=False)
del c["params"]["num_batches_tracked"]
cases["batchnorm2d_eval"] = c
bn1 = nn.BatchNorm1d(5)
c = module_case(bn1, torch.randn(6, 5), train=True)
c["running_mean_after"] = t(bn1.running_mean)
c["running_var_after"] = t(bn1.running_var)
del c["params"]["num_batches_tracked"]
cases["batchnorm1d_train"] = c
cases["dropout_eval"] = module_case(nn.Dropout(0.5), torch.randn(3, 4), train=False)
ln = nn.LayerNorm(5)
with torch.no_grad():
    ln.weight.copy_(torch.randn(5))
    ln.bias.copy_(torch.randn(5))
cases["layernorm"] = module_case(ln, torch.randn(2, 3, 5))
rms = nn.RMSNorm(5, eps=1e-6)
with torch.no_grad():
    rms.weight.copy_(torch.randn(5))
cases["rmsnorm"] = module_case(rms, torch.randn(2, 3, 5))
cases["softmax"] = module_case(nn.Softmax(dim=-1), torch.randn(3, 6))
write("layers", cases)

# ---------------------------------------------------------------- recurrent
rnn_cases = {}
T, B, I, H, L = 5, 2, 3, 4, 2
for kind, cls in [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)]:
    for batch_first in [False, True]:
        mod = cls(I, H, num_layers=L, bidirectional=True, batch_first=batch_first)
        mod.train(False)
        params = {k: v.detach().clone() for k, v in mod.state_dict().items()}
        x = (torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)).requires_grad_(True)
        h0 = torch.randn(L * 2, B, H).requires_grad_(True)
        c0 = torch.randn(L * 2, B, H).requires_grad_(True)
        if kind == "lstm":
            out, (hn, cn) = mod(x, (h0, c0))
        else:
            out, hn = mod(x, h0)
            cn = None
        r, rh = torch.randn_like(out), torch.randn_like(hn)
        loss = (out * r).sum() + (hn * rh).sum()
        case = {"input": t(x), "h0": t(h0), "params": {k: t(v) for k, v in params.items()},
                "r": t(r), "rh": t(rh), "output": t(out), "h_n": t(hn),
                "config": {"input_size": I, "hidden_size": H, "num_layers": L,
                           "bidirectional": True, "batch_first": batch_first}}
        if cn is not None:
            rc = torch.randn_like(cn)
            loss = loss + (cn * rc).sum()
            case["c0"] = t(c0)
            case["rc"] = t(rc)
            case["c_n"] = t(cn)
        loss.backward()
        case["grad_input"] = t(x.grad)
        case["grad_h0"] = t(h0.grad)
        if cn is not None:
            case["grad_c0"] = t(c0.grad)
        case["grad_params"] = {k: t(p.grad) for k, p in mod.named_parameters()}
        rnn_cases[f"{kind}{'_batch_first' if batch_first else ''}"] = case
write("rnn", rnn_cases)

# ---------------------------------------------------------------- losses
loss_cases = {}
logits = torch.randn(5, 4, requires_grad=True)
targets = torch.tensor([0, 3, 1, 1, 2])
ce = F.cross_entropy(logits, targets)
ce.backward()
loss_cases["cross_entropy"] = {"logits": t(logits), "targets": targets.tolist(), "loss": float(ce),
                               "grad_logits": t(logits.grad)}
pred = torch.randn(3, 2, requires_grad=True)
target = torch.randn(3, 2)
mse = F.mse_loss(pred, target)
mse.backward()
loss_cases["mse"] = {"pred": t(pred), "target": t(target), "loss": float(mse), "grad_pred": t(pred.grad)}
lg = torch.randn(4, 3, requires_grad=True)
tg = torch.randint(0, 2, (4, 3)).float()
bce = F.binary_cross_entropy_with_logits(lg, tg)
bce.backward()
loss_cases["bce_with_logits"] = {"logits": t(lg), "target": t(tg), "loss": float(bce), "grad_logits": t(lg.grad)}
write("losses", loss_cases)

# ---------------------------------------------------------------- optimizers
# Two parameters, three steps; the gradient at each step is the given tensor G_k (the Rust test
# gets it by back-propagating sum(p * G_k)).
p0 = {"w": torch.randn(3, 4), "b": torch.randn(4)}
grads = [{k: torch.randn_like(v) for k, v in p0.items()} for _ in range(3)]
opt_cases = {"initial": {k: t(v) for k, v in p0.items()},
             "grads": [{k: t(v) for k, v in g.items()} for g in grads], "runs": {}}
configs = {
    "sgd": (torch.optim.SGD, {"lr": 0.1}, {"kind": "sgd", "lr": 0.1}),
    "sgd_momentum_wd": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
                        {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    "sgd_nesterov": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
                     {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    "adam": (torch.optim.Adam, {"lr": 0.01}, {"kind": "adam", "lr": 0.01}),
    "adam_l2": (torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
                {"kind": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1}),
    "adamw": (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1},
              {"kind": "adamw", "lr": 0.01, "weight_decay": 0.1}),
    # nanoGPT's two parameter groups: decay on the matrix w, none on the bias b
    "adamw_matrices_only": (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1, "groups": True},
                            {"kind": "adamw", "lr": 0.01, "weight_decay": 0.1,
                             "decay_matrices_only": True}),
}
for name, (cls, kw, kiln_cfg) in configs.items():
    ps = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    kw = dict(kw)
    if kw.pop("groups", False):
        opt = cls([{"params": [ps["b"]], "weight_decay": 0.0}, {"params": [ps["w"]]}], **kw)
    else:
        opt = cls([ps["b"], ps["w"]], **kw)
    after = []
    for g in grads:
        opt.zero_grad()
        for k in ps:
            ps[k].grad = g[k].clone()
        opt.step()
        after.append({k: t(v) for k, v in ps.items()})
    opt_cases["runs"][name] = {"config": kiln_cfg, "after": after}
# Gradient clipping by global norm.
gc = {k: (v * 3).clone() for k, v in grads[0].items()}
ps = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
for k in ps:
    ps[k].grad = gc[k].clone()
norm = torch.nn.utils.clip_grad_norm_([ps["b"], ps["w"]], max_norm=1.0)
opt_cases["clip"] = {"grads": {k: t(v) for k, v in gc.items()}, "max_norm": 1.0, "norm": float(norm),
                     "clipped": {k: t(ps[k].grad) for k in ps}}
write("optim", opt_cases)
print("wrote parity_layers.json parity_rnn.json parity_losses.json parity_optim.json")
