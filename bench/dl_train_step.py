"""Training-step speed: kiln (candle) vs PyTorch on the same shapes, one run, ratio printed.

  python bench/dl_train_step.py [steps]

(`bench/kernel_speed.py` imports the PyTorch side from here and adds fixed threads, kiln's fused
kernels against plain candle, and a GFLOP/s table.)

Models (the issue's benchmark shapes): LeNet-5 with batch 64 on 1×28×28 inputs and
cross-entropy; 2-layer LSTM and GRU with input 64, hidden 256, sequence 100, batch 32 and a
mean-of-squares loss. Each step is forward + backward + Adam update, on random data, after two
warm-up steps. Both sides use every core the machine offers (set the thread count with
RAYON_NUM_THREADS / torch.set_num_threads to compare at fixed threads).
"""
import json
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 20


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def torch_ms(model, steps=None):
    """PyTorch milliseconds per training step (forward, backward, Adam) on the model's shapes."""
    steps = steps or STEPS
    torch.manual_seed(0)
    if model == "lenet":
        net = LeNet5()
        x, y = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
        loss_fn = lambda: F.cross_entropy(net(x), y)
    else:
        cls = nn.LSTM if model == "lstm" else nn.GRU
        net = cls(64, 256, num_layers=2, batch_first=True)
        x = torch.randn(32, 100, 64)
        loss_fn = lambda: net(x)[0].pow(2).mean()
    opt = torch.optim.Adam(net.parameters())

    def run(n):
        t0 = time.perf_counter()
        for _ in range(n):
            opt.zero_grad()
            loss_fn().backward()
            opt.step()
        return time.perf_counter() - t0

    run(2)
    return 1000 * run(steps) / steps


def kiln_ms(model):
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "kiln-models", "--example",
         "train_step_bench", "--", model, str(STEPS)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["ms_per_step"]


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {STEPS} steps")
    print(f"{'model':<8}{'kiln ms/step':>14}{'torch ms/step':>15}{'kiln/torch':>12}")
    for model in ["lenet", "lstm", "gru"]:
        k, t = kiln_ms(model), torch_ms(model)
        print(f"{model:<8}{k:>14.2f}{t:>15.2f}{k / t:>12.2f}")


if __name__ == "__main__":
    main()
