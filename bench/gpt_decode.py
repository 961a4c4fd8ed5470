"""GPT-2 small decoding and prefill speed: kiln vs transformers + PyTorch, same threads, one run.

  python bench/gpt_decode.py [threads] [dtypes]     (default 2, f32,bf16,q8)

Makes a GPT-2-small-shaped model (124M parameters, random weights, torch seed 0) and saves it
as a Hugging Face folder in a temporary directory; then, each side in its own process with the
same thread count:
  decode:  new tokens/s generating 128 tokens (greedy, no EOS stop) after a 16-token prompt,
           measured over the whole generate call (best of 2, after a warm-up);
  prefill: prompt tokens/s for one 512-token forward pass with a KV cache, logits of the last
           position only (best of 5 on both sides: a process's first prefills also fault in
           its buffers, and one run on a shared 2-core machine is noisy);
  peak memory: the process's max RSS (includes loading the weights), also as a multiple of
           the f32 weights' size (the file's 124M parameters x 4 bytes).
kiln runs once per weight dtype (--dtype f32, bf16, q8); transformers runs in f32. Prints the
figures and the ratios kiln / transformers. Then the quality cost of bf16 and q8 against f32
(example gpt_quality): perplexity of kiln's embedded Shakespeare GPT on its held-out text and
logit differences, there and on the random GPT-2 small. The machine may be shared: rerun when
other work is running and report the spread; user CPU seconds are printed beside the rates.
"""
import json
import os
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
    for _ in range(5):
        t = time.perf_counter()
        m(ids(512), use_cache=True, logits_to_keep=1).logits.sum().item()
        pre = min(pre, time.perf_counter() - t)
print(json.dumps({"decode_tokens": out.shape[1] - 16, "decode_s": dec, "prefill_tokens": 512, "prefill_s": pre}))
"""


def child(cmd, env):
    """Run one side in its own process (through /usr/bin/time for its own peak RSS and CPU)."""
    timed = ["/usr/bin/time", "-f", "TIME %M %U"] if os.path.exists("/usr/bin/time") else []
    proc = subprocess.run(timed + cmd, env=env, check=True, capture_output=True, text=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["peak_rss_mib"] = float("nan")
    res["user_s"] = float("nan")
    for line in proc.stderr.splitlines():
        if line.startswith("TIME "):
            _, kib, user = line.split()
            res["peak_rss_mib"], res["user_s"] = int(kib) / 1024, float(user)
    return res


def main():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    dtypes = (sys.argv[2] if len(sys.argv) > 2 else "f32,bf16,q8").split(",")
    if not os.environ.get("KILN_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-models", "--example", "gpt_decode",
                        "--example", "gpt_quality"], cwd=ROOT, check=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d, safe_serialization=True)
        with open(os.path.join(ROOT, "crates/kiln-models/assets/gpt2/tokenizer.json")) as f:
            open(os.path.join(d, "tokenizer.json"), "w").write(f.read())
        weights_mib = os.path.getsize(os.path.join(d, "model.safetensors")) / 2**20
        exe = os.path.join(ROOT, "target/release/examples/gpt_decode")
        kiln = {dt: child([exe, d, "16", "128", "512", dt, "5"], env) for dt in dtypes}
        hf = child([sys.executable, "-c", TORCH_SIDE, d, str(THREADS)], env)
        quality = subprocess.run([os.path.join(ROOT, "target/release/examples/gpt_quality"), "400", d],
                                 env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    for dt, r in kiln.items():
        print(f"kiln {dt}:", json.dumps(r))
    print("transformers:", json.dumps(hf))
    rate = lambda r, k: r[k + "_tokens"] / r[k + "_s"]
    print(f"\nGPT-2 small (124M, random weights), {THREADS} threads, {os.cpu_count()} cores (shared machine: noisy)")
    print(f"{'':24} {'kiln':>9} {'transformers':>13} {'kiln/hf':>8}")
    for dt, r in kiln.items():
        for k, what in [("decode", "decode tok/s (16+128)"), ("prefill", "prefill tok/s (512)")]:
            a, b = rate(r, k), rate(hf, k)
            print(f"{dt + ' ' + what:24} {a:9.1f} {b:13.1f} {a / b:8.2f}x")
        print(f"{dt + ' peak RSS MiB':24} {r['peak_rss_mib']:9.0f} {hf['peak_rss_mib']:13.0f} "
              f"{r['peak_rss_mib'] / hf['peak_rss_mib']:8.2f}x   "
              f"({r['peak_rss_mib'] / weights_mib:.2f}x the f32 weights' {weights_mib:.0f} MiB; "
              f"weights held {r['weight_bytes'] / 2**20:.0f} MiB)")
        print(f"{dt + ' user CPU s':24} {r['user_s']:9.1f} {hf['user_s']:13.1f}")
    print("\nquality against f32:")
    for line in quality.strip().splitlines():
        q = json.loads(line)
        if "perplexity" in q:
            print(f"  embedded Shakespeare GPT, {q['dtype']:>4}: held-out perplexity {q['perplexity']:.4f} "
                  f"({q['held_out_chars']} chars), max |dlogit| {q['max_abs_logit_diff']:.4f}, "
                  f"mean {q['mean_abs_logit_diff']:.5f}, same argmax {100 * q['argmax_agreement']:.2f}%")
        else:
            print(f"  random GPT-2 small,       {q['dtype']:>4}: max |dlogit| / std {q['max_abs_logit_diff_over_std']:.4f}, "
                  f"mean {q['mean_abs_logit_diff_over_std']:.5f}, same argmax {100 * q['argmax_agreement']:.2f}%")


if __name__ == "__main__":
    main()
