"""kiln LinearRegression vs scikit-learn on make_regression(1_000_000 x 50): fit time and
coefficients.

    python3 bench/linear.py [--n-samples N] [--n-features D] [--repeats R]

Makes the data with scikit-learn, writes it as raw binary to a temporary folder (u64 n, u64 d,
x row-major f64 little-endian, then y), times `LinearRegression().fit` (best of R), runs
`cargo run --release -p kiln-classical --example bench_linear -- FILE R` (which times kiln's
fit the same way and prints JSON), and prints both times, the ratio and the largest relative
coefficient difference. Goal: kiln at least 3x faster, coefficients within 1e-6 relative.
"""

import os

# A current NumPy/OpenBLAS is slowed by these when set (they pin an old kernel set); they must
# be gone before numpy loads its BLAS.
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    if var in os.environ:
        print(f"unsetting {var}={os.environ[var]}")
        del os.environ[var]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import make_regression  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=1_000_000)
    ap.add_argument("--n-features", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    for lib in threadpool_info():
        if lib["user_api"] == "blas":
            print(
                f"numpy/scipy BLAS: {lib['internal_api']} {lib['version']} "
                f"({lib['prefix']}, {lib['num_threads']} threads, {lib.get('architecture')})"
            )
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, cpus {os.cpu_count()}")

    x, y = make_regression(
        n_samples=args.n_samples, n_features=args.n_features, noise=1.0, random_state=0
    )
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "regression.bin")
        with open(path, "wb") as f:
            f.write(np.array([x.shape[0], x.shape[1]], dtype="<u8").tobytes())
            f.write(x.astype("<f8").tobytes())
            f.write(y.astype("<f8").tobytes())

        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model = LinearRegression().fit(x, y)
            times.append(time.perf_counter() - t)
        sk_time = min(times)
        print(f"scikit-learn fit: best {sk_time:.3f} s of {[round(t, 3) for t in times]}")

        # Build first so that compilation is not part of anything timed.
        subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "kiln-classical", "--example", "bench_linear"],
            cwd=ROOT,
            check=True,
        )
        out = subprocess.run(
            ["cargo", "run", "--release", "-q", "-p", "kiln-classical", "--example", "bench_linear",
             "--", path, str(args.repeats)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    kiln = json.loads(out)
    kiln_time = kiln["fit_seconds"]
    print(
        f"kiln fit:         best {kiln_time:.3f} s of {[round(t, 3) for t in kiln['fit_seconds_all']]}"
        f" ({kiln['threads']} threads)"
    )

    coef = np.array(kiln["coef"])
    rel = np.abs(coef - model.coef_) / np.maximum(np.abs(model.coef_), 1e-300)
    scale = np.abs(model.coef_).max()
    rel_scaled = np.abs(coef - model.coef_).max() / scale
    icpt = abs(kiln["intercept"] - model.intercept_)
    print(f"speed-up (scikit-learn / kiln): {sk_time / kiln_time:.2f}x  (goal >= 3x)")
    print(
        f"max relative coef difference: {rel.max():.3e} per coefficient, "
        f"{rel_scaled:.3e} relative to the largest  (goal <= 1e-6)"
    )
    print(f"intercept: kiln {kiln['intercept']:.12g}, scikit-learn {model.intercept_:.12g}, diff {icpt:.3e}")


if __name__ == "__main__":
    main()
