"""Reference values for kiln-data's tests, computed with scikit-learn (1.9.1).

Run from the repository root:  python crates/kiln-data/tests/reference/gen_reference.py
Writes crates/kiln-data/tests/reference/reference.json. Tests read only that JSON.

Only quantities that do not depend on the random stream are recorded (kiln's generators
draw from ChaCha8, scikit-learn from NumPy's MT19937):
  * built-in datasets: shapes, class counts, column sums, first and last rows, names;
  * make_classification with flip_y=0: samples per class (set by n_samples and weights);
  * make_blobs: samples per blob;
  * make_regression with effective_rank: ||X||_F^2 and ||X^T X||_F^2, which depend only
    on the singular-value profile (sum s^2 and sum s^4).
"""
import json
import os

import numpy as np
import sklearn
from sklearn import datasets

out = {"sklearn_version": sklearn.__version__, "builtin": {}, "classification_counts": [],
       "blobs_counts": [], "low_rank": []}

loaders = {
    "iris": lambda: datasets.load_iris(),
    "wine": lambda: datasets.load_wine(),
    "breast_cancer": lambda: datasets.load_breast_cancer(),
    "diabetes": lambda: datasets.load_diabetes(scaled=False),
    "digits": lambda: datasets.load_digits(),
}
for name, load in loaders.items():
    b = load()
    X, y = b.data, b.target
    entry = {
        "shape": list(X.shape),
        "feature_names": [str(f) for f in b.feature_names],
        "x_column_sums": X.sum(axis=0).tolist(),
        "y_sum": float(y.sum()),
        "first_row": X[0].tolist(),
        "last_row": X[-1].tolist(),
        "first_y": float(y[0]),
        "last_y": float(y[-1]),
    }
    if name != "diabetes":
        entry["class_counts"] = np.bincount(y).tolist()
        entry["target_names"] = [str(t) for t in b.target_names]
    out["builtin"][name] = entry

for cfg in [
    dict(n_samples=100, n_classes=2, n_clusters_per_class=2, weights=None),
    dict(n_samples=1000, n_classes=3, n_clusters_per_class=1, weights=[0.1, 0.3, 0.6]),
    dict(n_samples=997, n_classes=3, n_clusters_per_class=2, weights=[0.5, 0.2]),
    dict(n_samples=101, n_classes=4, n_clusters_per_class=1, weights=[0.25, 0.25, 0.2, 0.2]),
    dict(n_samples=50, n_classes=1, n_clusters_per_class=1, weights=None),
]:
    X, y = datasets.make_classification(n_features=6, n_informative=3, flip_y=0.0,
                                        random_state=0, **cfg)
    out["classification_counts"].append(
        {**cfg, "counts": np.bincount(y, minlength=cfg["n_classes"]).tolist()})

for cfg in [dict(n_samples=100, centers=3), dict(n_samples=10, centers=4),
            dict(n_samples=7, centers=7), dict(n_samples=[5, 0, 12], centers=None)]:
    X, y = datasets.make_blobs(random_state=0, **cfg)
    k = cfg["centers"] if cfg["centers"] is not None else len(cfg["n_samples"])
    out["blobs_counts"].append({**cfg, "counts": np.bincount(y, minlength=k).tolist()})

for cfg in [dict(n_samples=60, n_features=20, effective_rank=3, tail_strength=0.5),
            dict(n_samples=15, n_features=40, effective_rank=5, tail_strength=0.1),
            dict(n_samples=30, n_features=30, effective_rank=1, tail_strength=1.0)]:
    X, y = datasets.make_regression(random_state=0, **cfg)
    s = np.linalg.svd(X, compute_uv=False)
    out["low_rank"].append({**cfg, "fro2": float((X ** 2).sum()),
                            "gram_fro2": float((X.T @ X * (X.T @ X)).sum()),
                            "singular_values": s.tolist()})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", path, os.path.getsize(path), "bytes")
