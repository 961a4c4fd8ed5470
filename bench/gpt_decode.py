"""GPT-2 small decoding and prefill speed: kiln vs transformers + PyTorch, same threads, one run.

  python bench/gpt_decode.py [threads]        (default 2)

Makes a GPT-2-small-shaped model (124M parameters, random weights, torch seed 0) and saves it
as a Hugging Face folder in a temporary directory; then, each side in its own process with the
same thread count:
  decode:  new tokens/s generating 128 tokens (greedy, no EOS stop) after a 16-token prompt,
           measured over the whole generate call (best of 2, after a warm-up);
  prefill: prompt tokens/s for one 512-token forward pass with a KV cache, logits of the last
           position only (best of 2);
  peak memory: the process's max RSS (includes loading the weights).
Prints the figures and the ratios kiln / transformers. The machine may be shared: rerun when
other work is running and report the spread.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2

TORCH_SIDE = r"""
import json, sys, time, torch
from transformers import GPT2LMHeadModel
torch.set_num_threads(int(sys.argv[2]))
m = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
V = m.config.vocab_size
ids = lambda n: torch.tensor([[(i * 7919 + 13) % V for i in range(n)]])
with torch.inference_mode():
    m.generate(ids(4), do_sample=False, max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
    dec = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        out = m.generate(ids(16), do_sample=False, max_new_tokens=128, min_new_tokens=128, pad_token_id=0)
        dec = min(dec, time.perf_counter() - t)
    pre = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        m(ids(512), use_cache=True, logits_to_keep=1).logits.sum().item()
        pre = min(pre, time.perf_counter() - t)
print(json.dumps({"decode_tokens": out.shape[1] - 16, "decode_s": dec, "prefill_tokens": 512, "prefill_s": pre}))
"""


def child(cmd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over children so far
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mib"] = peak / 1024 if peak > before else float("nan")
    return res


def main():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-models", "--example", "gpt_decode"],
                   cwd=ROOT, check=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d, safe_serialization=True)
        with open(os.path.join(ROOT, "crates/kiln-models/assets/gpt2/tokenizer.json")) as f:
            open(os.path.join(d, "tokenizer.json"), "w").write(f.read())
        # kiln first: its peak is then not hidden by the larger torch process
        kiln = child([os.path.join(ROOT, "target/release/examples/gpt_decode"), d], env)
        hf = child([sys.executable, "-c", TORCH_SIDE, d, str(THREADS)], env)
    print("kiln:", json.dumps(kiln))
    print("transformers:", json.dumps(hf))
    rate = lambda r, k: r[k + "_tokens"] / r[k + "_s"]
    print(f"GPT-2 small (124M, random weights), {THREADS} threads, {os.cpu_count()} cores (shared machine: noisy)")
    print(f"{'':22} {'kiln':>10} {'transformers':>13} {'kiln/hf':>8}")
    for k, what in [("decode", "decode tok/s (16+128)"), ("prefill", "prefill tok/s (512)")]:
        a, b = rate(kiln, k), rate(hf, k)
        print(f"{what:22} {a:10.1f} {b:13.1f} {a / b:8.2f}x")
    print(f"{'peak RSS MiB':22} {kiln['peak_rss_mib']:10.0f} {hf['peak_rss_mib']:13.0f} "
          f"{kiln['peak_rss_mib'] / hf['peak_rss_mib']:8.2f}x")


if __name__ == "__main__":
    main()
