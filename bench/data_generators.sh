#!/usr/bin/env bash
# Synthetic data generators: kiln vs scikit-learn on the same sizes, in one run.
# Usage: bench/data_generators.sh [n_samples] [n_features]   (default 1000000 50)
# Prints, per generator, the best-of-3 seconds of each and the ratio sklearn / kiln.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
F=${2:-50}
cargo build --release -q -p kiln-data --example bench_generators
KILN=$(target/release/examples/bench_generators "$N" "$F")
SK=$(python3 - "$N" "$F" <<'PY'
import sys, time
from sklearn.datasets import make_regression, make_classification, make_blobs
n, f = int(sys.argv[1]), int(sys.argv[2])
def best(fn):
    b = float("inf")
    for _ in range(3):
        t = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t)
    return b
print("make_regression", best(lambda: make_regression(n_samples=n, n_features=f, n_informative=min(10, f), noise=1.0, random_state=0)))
print("make_classification", best(lambda: make_classification(n_samples=n, n_features=f, n_informative=min(10, f), n_redundant=0, n_classes=3, random_state=0)))
print("make_blobs", best(lambda: make_blobs(n_samples=n, n_features=f, centers=5, random_state=0)))
PY
)
echo "generator            kiln_s   sklearn_s  sklearn/kiln   (n_samples=$N, n_features=$F, $(nproc) cores)"
join <(echo "$KILN" | sort) <(echo "$SK" | sort) | while read -r name k s; do
  printf "%-20s %7.3f  %9.3f  %8.2fx\n" "$name" "$k" "$s" "$(echo "$s / $k" | bc -l)"
done
