"""kiln's SVC against scikit-learn's SVC (libsvm), RBF kernel, default hyperparameters.

Run from the repository root:

    python3 bench/svm.py                 # 10,000 x 20 and 50,000 x 20, then 100,000 x 20 kiln-only
    python3 bench/svm.py --sizes 10000   # a quicker run

For each size: sklearn make_classification(n + n_test, 20, random_state=0), StandardScaler
fitted on the training part, scikit-learn's SVC(kernel='rbf') fitted in a child process and
kiln's `bench_svm` example with 1 and 2 threads, each in its own process. Prints fit time,
held-out accuracy, support-vector count and peak resident memory (VmHWM of the process,
which includes the data), and the ratios. This is a benchmark, not a test: timings depend on
the machine and on whatever else runs.
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
N_TEST = 2000
D = 20


def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def make_data(n, seed=0):
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=n + N_TEST, n_features=D, n_informative=10,
                               n_redundant=5, random_state=seed)
    xtr, ytr, xte, yte = x[:n], y[:n], x[n:], y[n:]
    sc = StandardScaler().fit(xtr)
    return sc.transform(xtr), ytr.astype(float), sc.transform(xte), yte.astype(float)


def write_bin(path, x, y):
    with open(path, "wb") as f:
        f.write(struct.pack("<QQ", x.shape[0], x.shape[1]))
        f.write(np.ascontiguousarray(x, dtype="<f8").tobytes())
        f.write(np.ascontiguousarray(y, dtype="<f8").tobytes())


def sklearn_child(train, test):
    """Runs in a child process: fit scikit-learn's SVC, print JSON like bench_svm."""
    from sklearn.svm import SVC

    def read(p):
        with open(p, "rb") as f:
            n, d = struct.unpack("<QQ", f.read(16))
            v = np.frombuffer(f.read(), dtype="<f8")
        return v[: n * d].reshape(n, d), v[n * d:]

    x, y = read(train)
    xt, yt = read(test)
    t0, c0 = time.perf_counter(), time.process_time()
    m = SVC(kernel="rbf").fit(x, y)
    fit_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    acc = float((m.predict(xt) == yt).mean())
    print(json.dumps({"fit_s": fit_s, "cpu_s": cpu_s, "accuracy": acc, "n_sv": int(m.support_.size),
                      "n_iter": int(np.sum(m.n_iter_)), "peak_rss": peak_rss()}))


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[10000, 50000])
    ap.add_argument("--big", type=int, default=100000, help="kiln-only size (0 to skip)")
    ap.add_argument("--sklearn-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sklearn_child:
        sklearn_child(*args.sklearn_child)
        return

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-classical",
                    "--example", "bench_svm"], check=True, cwd=ROOT)
    exe = os.path.join(ROOT, "target", "release", "examples", "bench_svm")
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            xtr, ytr, xte, yte = make_data(n)
            tr, te = os.path.join(tmp, "train.bin"), os.path.join(tmp, "test.bin")
            write_bin(tr, xtr, ytr)
            write_bin(te, xte, yte)
            sk = run([sys.executable, __file__, "--sklearn-child", tr, te])
            k1 = run([exe, tr, te, "1"])
            k2 = run([exe, tr, te, "2"])
            print(f"\n== {n} x {D} (test {N_TEST}) ==")
            print(f"{'':15}{'fit s':>8}{'CPU s':>8}{'accuracy':>10}{'n_SV':>8}{'n_iter':>9}"
                  f"{'peak MB':>9}")
            for name, r in [("scikit-learn", sk), ("kiln 1 thread", k1), ("kiln 2 threads", k2)]:
                print(f"{name:15}{r['fit_s']:8.2f}{r['cpu_s']:8.2f}{100 * r['accuracy']:9.2f}%"
                      f"{r['n_sv']:8d}{r['n_iter']:9d}{r['peak_rss'] / mb:9.0f}")
            print(f"fit-time speed-up vs scikit-learn: 1 thread {sk['fit_s'] / k1['fit_s']:.2f}x "
                  f"(CPU time {sk['cpu_s'] / max(k1['cpu_s'], 1e-9):.2f}x), 2 threads "
                  f"{sk['fit_s'] / k2['fit_s']:.2f}x; accuracy difference "
                  f"{100 * (k1['accuracy'] - sk['accuracy']):+.2f} points; peak memory ratio "
                  f"{sk['peak_rss'] / k1['peak_rss']:.2f}x")
        if args.big:
            xtr, ytr, xte, yte = make_data(args.big)
            tr, te = os.path.join(tmp, "train.bin"), os.path.join(tmp, "test.bin")
            write_bin(tr, xtr, ytr)
            write_bin(te, xte, yte)
            k2 = run([exe, tr, te, "2"])
            print(f"\n== {args.big} x {D}, kiln only (2 threads) ==")
            print(f"fit {k2['fit_s']:.1f} s, accuracy {100 * k2['accuracy']:.2f}%, "
                  f"n_SV {k2['n_sv']}, peak memory {k2['peak_rss'] / mb:.0f} MB "
                  f"({'under' if k2['peak_rss'] < 1024 * mb else 'OVER'} 1 GB)")


if __name__ == "__main__":
    main()
