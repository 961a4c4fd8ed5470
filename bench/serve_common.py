"""Shared helpers of bench/serve_e2e.py and bench/serve_load.py: build the small models the
server is tried with, start `kiln serve` on loopback, wait until it answers."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kiln_binary():
    if os.environ.get("KILN_BIN"):
        return os.environ["KILN_BIN"]
    for p in ("target/release/kiln", "target/debug/kiln"):
        full = os.path.join(ROOT, p)
        if os.path.exists(full):
            return full
    sys.exit("build kiln first: cargo build -p kiln-cli")


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def models(work, kiln):
    """A character LSTM on Shakespeare (a short run) and a decision tree on iris."""
    os.makedirs(work, exist_ok=True)
    lm = os.path.join(work, "shakespeare-lstm")
    if not os.path.exists(os.path.join(lm, "model", "config.json")):
        run([kiln, "train", "lstm", "--text", os.path.join(ROOT, "data/text/shakespeare.txt"),
             "--steps", "300", "--hidden-size", "128", "--seq-len", "64", "--seed", "0",
             "--out", lm])
    tree = os.path.join(work, "iris-tree")
    if not os.path.exists(os.path.join(tree, "config.json")):
        run([kiln, "fit", "tree", "--dataset", "iris", "--max-depth", "3", "--save", tree])
    return lm, tree


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kiln, model_dirs, extra=()):
    port = free_port()
    cmd = [kiln, "serve", "--port", str(port)] + list(extra)
    for d in model_dirs:
        cmd += ["--model", d]
    print("+", " ".join(cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                if json.load(r)["status"] == "ok":
                    return proc, base
        except OSError:
            if proc.poll() is not None:
                sys.exit("kiln serve exited: " + proc.stderr.read())
            time.sleep(0.1)
    proc.kill()
    sys.exit("kiln serve did not answer /health")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
