"""Decision trees: kiln against scikit-learn on the same data, in one run (not a test).

    python bench/tree.py [--n 200000] [--threads 1 2] [--repeat 1]

Generates make_classification(n x 20, 10 informative) and make_regression(n x 20) with fixed
random_state, splits 80/20, writes them to a raw binary file, then runs (each in its own
process, so peak memory is comparable): scikit-learn's DecisionTreeClassifier/Regressor
(single-threaded, default parameters: unlimited depth) and kiln's example
`bench_tree --threads T` for each T. Prints fit and predict times, accuracy / R^2, node counts,
peak RSS of each process and the kiln / scikit-learn ratios. With --repeat R every fit runs R
times and the fastest time is kept (for noisy, shared machines).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def read_blocks(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    pos = 0
    blocks = []
    for _ in range(2):
        n, m, d, k = struct.unpack_from("<4Q", raw, pos)
        pos += 32

        def take(count):
            nonlocal pos
            a = np.frombuffer(raw, dtype="<f8", count=count, offset=pos)
            pos += 8 * count
            return a

        x = take(n * d).reshape(n, d)
        y = take(n)
        xt = take(m * d).reshape(m, d)
        yt = take(m)
        blocks.append((x, y, xt, yt, k))
    return blocks


def sklearn_child(path, repeat):
    """Run in a fresh process: fit and predict with scikit-learn, print JSON lines."""
    from sklearn.metrics import r2_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    for x, y, xt, yt, k in read_blocks(path):
        est = DecisionTreeClassifier(random_state=0) if k else DecisionTreeRegressor(random_state=0)
        fit_s = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            est.fit(x, y)
            fit_s = min(fit_s, time.perf_counter() - t)
        t = time.perf_counter()
        pred = est.predict(xt)
        predict_s = time.perf_counter() - t
        score = float(np.mean(pred == yt)) if k else float(r2_score(yt, pred))
        print(json.dumps({
            "task": "classification" if k else "regression",
            "fit_s": fit_s, "predict_s": predict_s, "score": score,
            "nodes": int(est.tree_.node_count), "depth": int(est.tree_.max_depth),
            "peak_rss_mib": peak_rss_mib(),
        }), flush=True)


def write_data(path, n):
    from sklearn.datasets import make_classification, make_regression

    n_train = int(n * 0.8)
    with open(path, "wb") as fh:
        xc, yc = make_classification(n_samples=n, n_features=20, n_informative=10, random_state=0)
        xr, yr = make_regression(n_samples=n, n_features=20, noise=10.0, random_state=0)
        for x, y, k in [(xc, yc.astype(float), 2), (xr, yr, 0)]:
            fh.write(struct.pack("<4Q", n_train, n - n_train, x.shape[1], k))
            for a in (x[:n_train], y[:n_train], x[n_train:], y[n_train:]):
                fh.write(np.ascontiguousarray(a, dtype="<f8").tobytes())


def run_lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return {r["task"]: r for r in (json.loads(l) for l in out.splitlines() if l.startswith("{"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sklearn-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sklearn_child:
        sklearn_child(args.sklearn_child, args.repeat)
        return

    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "kiln-classical", "--example", "bench_tree"],
        check=True, cwd=ROOT,
    )
    exe = os.path.join(ROOT, "target", "release", "examples", "bench_tree")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tree_bench.bin")
        write_data(path, args.n)
        rep = ["--repeat", str(args.repeat)]
        sk = run_lines([sys.executable, os.path.abspath(__file__), "--sklearn-child", path] + rep)
        kiln = {t: run_lines([exe, path, "--threads", str(t)] + rep) for t in args.threads}

    import sklearn
    print(f"data: {args.n} rows x 20 features, 80/20 split; scikit-learn {sklearn.__version__} "
          f"(one thread); kiln threads {args.threads}; {os.cpu_count()} CPUs; best of {args.repeat} fits; "
          f"load average {os.getloadavg()[0]:.1f}")
    head = f"{'task':<15}{'run':<12}{'fit s':>9}{'predict s':>11}{'score':>10}{'nodes':>9}{'depth':>7}{'peak MiB':>10}"
    print(head)
    for task in ("classification", "regression"):
        rows = [("sklearn", sk[task])] + [(f"kiln t={t}", kiln[t][task]) for t in args.threads]
        for name, r in rows:
            print(f"{task:<15}{name:<12}{r['fit_s']:>9.3f}{r['predict_s']:>11.4f}{r['score']:>10.4f}"
                  f"{r['nodes']:>9}{r['depth']:>7}{r['peak_rss_mib']:>10.1f}")
        for t in args.threads:
            r = kiln[t][task]
            metric = "accuracy" if task == "classification" else "R^2"
            print(f"  ratio sklearn/kiln t={t}: fit {sk[task]['fit_s'] / r['fit_s']:.2f}x faster, "
                  f"predict {sk[task]['predict_s'] / r['predict_s']:.2f}x; "
                  f"{metric} diff {100 * (r['score'] - sk[task]['score']):+.2f} points; "
                  f"peak memory {r['peak_rss_mib'] / sk[task]['peak_rss_mib']:.2f} of sklearn's")


if __name__ == "__main__":
    main()
