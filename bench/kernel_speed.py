"""kiln's fused CPU kernels against PyTorch and plain candle, at fixed threads, one run.

  python bench/kernel_speed.py [steps] [threads]      (defaults: 20 steps, 2 threads)
  python bench/kernel_speed.py attention [steps] [threads]   (only the attention table)

For each workload of issue 6 (LeNet-5 training at batch 64 on 1x28x28; 2-layer LSTM and GRU,
input 64, hidden 256, sequence 100, batch 32, Adam) it prints samples/s for kiln with its fused
kernels, kiln with the plain candle compositions (`plain`: candle's conv2d, step-by-step
recurrences, composed cross-entropy; the same gemm), and PyTorch (torch.set_num_threads), the
ratios, and the achieved GFLOP/s against the machine's measured f32 gemm peak (1024^3 matmul
through candle, same threads). Then the same at one thread.

The attention table times causal self-attention alone, forward and backward of sum(out * r), on
GPT-shaped (B, H, T, D) inputs: kiln's fused op, kiln's plain composition (matmul, mask,
softmax, matmul) and torch.nn.functional.scaled_dot_product_attention(is_causal=True), with the
ratios. Kiln runs through
`cargo run --release -p kiln-nn --example kernels_bench`; timings are wall-clock, so a loaded
machine (check `uptime`) slows every column.
"""
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from dl_train_step import torch_ms  # noqa: E402

ONLY_ATTENTION = len(sys.argv) > 1 and sys.argv[1] == "attention"
ARGS = sys.argv[2:] if ONLY_ATTENTION else sys.argv[1:]
STEPS = int(ARGS[0]) if len(ARGS) > 0 else 20
THREADS = int(ARGS[1]) if len(ARGS) > 1 else 2
ATTN_SHAPES = [(12, 4, 64, 32), (1, 12, 512, 64)]
BATCH = {"lenet": 64, "lstm": 32, "gru": 32}


def cargo_example(name, args, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "kiln-nn", "--example", name, "--"]
        + [str(a) for a in args],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def train_flops(model):
    """Multiply-add FLOPs of one training step: forward, and twice that for the backward (the
    first convolution computes no input gradient)."""
    if model == "lenet":
        b = 64
        conv1 = 2 * b * 6 * 1 * 25 * 28 * 28
        conv2 = 2 * b * 16 * 6 * 25 * 10 * 10
        fc = 2 * b * (400 * 120 + 120 * 84 + 84 * 10)
        return 3 * (conv1 + conv2 + fc) - conv1
    t, b, h, g = 100, 32, 256, 4 if model == "lstm" else 3
    fwd = sum(2 * t * b * (i + h) * g * h for i in (64, h))
    return 3 * fwd


def table(threads):
    torch.set_num_threads(threads)
    peak = cargo_example("matmul_gflops", [1024, 10], threads)["gflops"]
    print(f"\n{threads} thread(s); f32 gemm peak (candle matmul 1024^3): {peak:.0f} GFLOP/s; "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads; {STEPS} steps")
    head = ["model", "kiln/s", "plain/s", "torch/s", "kiln/torch", "kiln/plain",
            "kiln GF/s", "% peak", "torch GF/s"]
    print("".join(f"{h:>11}" for h in head))
    for model in ["lenet", "lstm", "gru"]:
        k = cargo_example("kernels_bench", [model, STEPS], threads)
        p = cargo_example("kernels_bench", [model, STEPS, "plain"], threads)
        t = torch_ms(model, STEPS)
        per_s = lambda ms: 1000 * BATCH[model] / ms  # noqa: E731
        gf = lambda ms: train_flops(model) / ms / 1e6  # noqa: E731
        row = [model, per_s(k["ms_per_step"]), per_s(p["ms_per_step"]), per_s(t),
               t / k["ms_per_step"], p["ms_per_step"] / k["ms_per_step"],
               gf(k["ms_per_step"]), 100 * gf(k["ms_per_step"]) / peak, gf(t)]
        print(f"{row[0]:>11}" + "".join(f"{v:>11.1f}" if i < 3 else f"{v:>11.2f}"
                                        for i, v in enumerate(row[1:])))
        print(f"{'':>11}  kiln parts ms: forward {k['forward_ms']:.1f}, backward "
              f"{k['backward_ms']:.1f}, adam {k['adam_ms']:.1f}")


def torch_attention_ms(shape, steps):
    """PyTorch milliseconds for forward + backward of causal SDPA on (B, H, T, D)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    r = torch.randn(*shape)

    def run(n):
        t0 = time.perf_counter()
        for _ in range(n):
            for x in (q, k, v):
                x.grad = None
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            (y * r).sum().backward()
        return time.perf_counter() - t0

    run(2)
    return 1000 * run(steps) / steps


def attention_table(threads):
    torch.set_num_threads(threads)
    print(f"\ncausal attention forward+backward, {threads} thread(s), {STEPS} steps, ms per step")
    head = ["B,H,T,D", "fused ms", "plain ms", "torch ms", "fused/torch", "fused/plain"]
    print("".join(f"{h:>14}" for h in head))
    for shape in ATTN_SHAPES:
        k = cargo_example("kernels_bench", ["attn", STEPS, "fused", *shape], threads)
        p = cargo_example("kernels_bench", ["attn", STEPS, "plain", *shape], threads)
        t = torch_attention_ms(shape, STEPS)
        kf, pf = k["ms_per_step"], p["ms_per_step"]
        # ratios are speed-ups (> 1: the fused op is faster)
        print(f"{','.join(map(str, shape)):>14}{kf:>14.3f}{pf:>14.3f}{t:>14.3f}"
              f"{t / kf:>14.2f}{pf / kf:>14.2f}")
        print(f"{'':>14}  fused forward {k['forward_ms']:.3f} ms, backward {k['backward_ms']:.3f} ms;"
              f" plain forward {p['forward_ms']:.3f}, backward {p['backward_ms']:.3f}")


if __name__ == "__main__":
    print(f"load average: {os.getloadavg()}")
    if not ONLY_ATTENTION:
        table(THREADS)
        if THREADS != 1:
            table(1)
    attention_table(THREADS)
    if THREADS != 1:
        attention_table(1)
