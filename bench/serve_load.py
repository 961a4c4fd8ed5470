"""Bounded load test of `kiln serve` on loopback (not in CI): C concurrent clients stream
completions from a character LSTM for D seconds, then stop. Clients refused with 429 (the
queue bound, set low on purpose with --max-queue) wait 50 ms and try again; every other
failure counts as an error. Prints request counts, latency percentiles (whole stream and
first token), generated tokens per second and the server's resident memory over the run.

    pip install openai
    cargo build -p kiln-cli
    python3 bench/serve_load.py --clients 32 --seconds 60
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time

import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import kiln_binary, models, rss_kib, start_server  # noqa: E402


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def client(cid, api, model, args, end, stats):
    rng = random.Random(cid)
    while time.monotonic() < end:
        t0 = time.monotonic()
        first = None
        tokens = 0
        finished = False
        try:
            stream = await api.completions.create(
                model=model, prompt="ROMEO:", max_tokens=args.max_tokens, temperature=0.8,
                seed=rng.randrange(1 << 31), stream=True)
            async for chunk in stream:
                if chunk.choices[0].text:
                    tokens += 1
                    if first is None:
                        first = time.monotonic() - t0
                if chunk.choices[0].finish_reason:
                    finished = True
        except openai.RateLimitError:
            stats["429"] += 1
            await asyncio.sleep(0.05)
            continue
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            stats["errors"].append(f"{type(e).__name__}: {e}")
            continue
        if not finished:
            stats["errors"].append("stream ended without a finish_reason")
            continue
        stats["latency"].append(time.monotonic() - t0)
        stats["ttft"].append(first if first is not None else float("nan"))
        stats["tokens"] += tokens
        stats["ok"] += 1


async def sample_memory(pid, end, out):
    while time.monotonic() < end:
        out.append((time.monotonic(), rss_kib(pid)))
        await asyncio.sleep(1)


async def main_async(args, base, pid, model):
    stats = {"ok": 0, "429": 0, "errors": [], "latency": [], "ttft": [], "tokens": 0}
    mem = []
    api = openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120)
    t0 = time.monotonic()
    end = t0 + args.seconds
    await asyncio.gather(sample_memory(pid, end, mem),
                         *(client(i, api, model, args, end, stats) for i in range(args.clients)))
    wall = time.monotonic() - t0
    with urllib.request.urlopen(base + "/metrics") as r:
        metrics = r.read().decode()
    return stats, mem, wall, metrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--work", default="/tmp/kiln-serve-e2e")
    args = ap.parse_args()
    kiln = kiln_binary()
    lm, _ = models(args.work, kiln)
    proc, base = start_server(kiln, [lm], ["--max-concurrent", str(args.max_concurrent),
                                           "--max-queue", str(args.max_queue)])
    try:
        stats, mem, wall, metrics = asyncio.run(main_async(args, base, proc.pid, os.path.basename(lm)))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lat, ttft = stats["latency"], [x for x in stats["ttft"] if x == x]
    print(f"kiln serve load test: {args.clients} streaming clients for {args.seconds:.0f} s, "
          f"max_tokens {args.max_tokens}, --max-concurrent {args.max_concurrent}, --max-queue {args.max_queue}")
    print(f"binary: {kiln}")
    print(f"completed streams: {stats['ok']}   deliberate 429s: {stats['429']}   other errors: {len(stats['errors'])}")
    for e in stats["errors"][:5]:
        print("   error:", e)
    print(f"stream latency p50 {pct(lat, 50):.3f} s  p99 {pct(lat, 99):.3f} s  max {max(lat, default=float('nan')):.3f} s")
    print(f"first token   p50 {pct(ttft, 50):.3f} s  p99 {pct(ttft, 99):.3f} s")
    print(f"tokens generated {stats['tokens']} in {wall:.1f} s = {stats['tokens'] / wall:.0f} tokens/s")
    if mem:
        r = [m for _, m in mem]
        q = max(1, len(r) // 4)
        print(f"server RSS MiB: start {r[0] / 1024:.1f}  first-quarter mean {statistics.mean(r[:q]) / 1024:.1f}  "
              f"last-quarter mean {statistics.mean(r[-q:]) / 1024:.1f}  max {max(r) / 1024:.1f}")
    for line in metrics.splitlines():
        if line.startswith(("kiln_tokens_generated_total", "kiln_rejected_total", "kiln_requests_total")):
            print("metrics:", line)
    sys.exit(1 if stats["errors"] else 0)


if __name__ == "__main__":
    main()
