"""Generate the SVC / SVR parity fixtures in tests/fixtures/svm/ with scikit-learn.

Run from crates/kiln-classical:   python3 tests/reference/gen_svm.py
(scikit-learn 1.9.1, numpy 2.x). Each fixture file holds one dataset (train and test rows,
so the Rust tests never read anything outside the repo) and one entry per model: the
parameters, then scikit-learn's support_, n_support_, dual_coef_, intercept_, the test
predictions and decision values (and probabilities where probability=True).

Fixture settings: tol=1e-6 (not the default 1e-3) so that both solvers stop close to the
exact optimum and the dual coefficients can be compared within 1e-3 relative; every other
setting is scikit-learn's default unless the entry says otherwise. Sigmoid kernels use a
small gamma (0.05 / 0.01) so the kernel stays close to positive semi-definite: with a strongly
indefinite kernel the SMO result depends on the iteration path, and libsvm's float32 kernel
cache makes that path differ from kiln's float64 one.
"""

import json
import os

import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris, make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "svm")
TOL = 1e-6


def lst(a):
    return np.asarray(a).tolist()


def svc_entry(xtr, ytr, xte, **params):
    params.setdefault("tol", TOL)
    m = SVC(**params).fit(xtr, ytr)
    m_ovo = SVC(**{**params, "decision_function_shape": "ovo"}).fit(xtr, ytr)
    e = {
        "params": {k: v for k, v in params.items()},
        "gamma_value": float(m._gamma),
        "support": lst(m.support_),
        "n_support": lst(m.n_support_),
        "dual_coef": lst(m.dual_coef_),
        "intercept": lst(m.intercept_),
        "n_iter": lst(m.n_iter_),
        "predict": lst(m.predict(xte)),
        "decision_function": lst(m.decision_function(xte).reshape(len(xte), -1)),
        "decision_ovo": lst(m_ovo.decision_function(xte).reshape(len(xte), -1)),
    }
    if params.get("probability"):
        e["prob_a"] = lst(m.probA_)
        e["prob_b"] = lst(m.probB_)
        e["predict_proba"] = lst(m.predict_proba(xte))
    return e


def svr_entry(xtr, ytr, xte, **params):
    params.setdefault("tol", TOL)
    m = SVR(**params).fit(xtr, ytr)
    return {
        "params": params,
        "gamma_value": float(m._gamma),
        "support": lst(m.support_),
        "dual_coef": lst(m.dual_coef_),
        "intercept": lst(m.intercept_),
        "n_iter": lst(m.n_iter_),
        "predict": lst(m.predict(xte)),
    }


KERNELS = [
    {"kernel": "linear"},
    {"kernel": "rbf"},
    {"kernel": "poly"},
    {"kernel": "sigmoid", "gamma": 0.05},
]


def write(name, xtr, ytr, xte, yte, classes, models):
    doc = {
        "name": name,
        "classes": classes,
        "x_train": lst(xtr),
        "y_train": lst(ytr),
        "x_test": lst(xte),
        "y_test": lst(yte),
        "models": models,
    }
    path = os.path.join(OUT, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"{path}: {os.path.getsize(path)} bytes, {len(models)} models")


def classification(name, x, y, classes, extra):
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    models = [svc_entry(xtr, ytr, xte, **k) for k in KERNELS]
    models += [svc_entry(xtr, ytr, xte, **k) for k in extra]
    write(name, xtr, ytr, xte, yte, classes, models)


def main():
    os.makedirs(OUT, exist_ok=True)

    iris = load_iris()
    classification(
        "iris",
        iris.data,
        iris.target,
        [str(c) for c in iris.target_names],
        [
            {"kernel": "rbf", "C": 10.0, "gamma": "auto"},
            {"kernel": "rbf", "class_weight": "balanced", "C": 3.0},
            {"kernel": "rbf", "probability": True},
        ],
    )

    bc = load_breast_cancer()
    xb = StandardScaler().fit_transform(bc.data)
    classification(
        "breast_cancer",
        xb,
        bc.target,
        [str(c) for c in bc.target_names],
        [
            {"kernel": "poly", "degree": 2, "coef0": 1.0, "C": 0.5},
            {"kernel": "rbf", "class_weight": {0: 2.0}},
            {"kernel": "rbf", "probability": True},
        ],
    )

    xs, ys = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_redundant=1, n_classes=3,
        n_clusters_per_class=1, random_state=0,
    )
    xs = StandardScaler().fit_transform(xs)
    classification(
        "synthetic3",
        xs,
        ys,
        ["c0", "c1", "c2"],
        [
            {"kernel": "rbf", "C": 5.0, "gamma": 0.3},
            {"kernel": "linear", "C": 0.1, "shrinking": False},
        ],
    )

    rng = np.random.RandomState(0)
    xr = rng.uniform(-2, 2, size=(260, 5))
    yr = np.sin(xr[:, 0]) + 0.5 * xr[:, 1] ** 2 - 0.3 * xr[:, 2] + 0.1 * rng.randn(260)
    xr = StandardScaler().fit_transform(xr)
    xtr, xte, ytr, yte = train_test_split(xr, yr, test_size=0.3, random_state=0)
    models = [svr_entry(xtr, ytr, xte, **{**k, "gamma": 0.01} if k["kernel"] == "sigmoid" else k)
              for k in KERNELS]
    models += [
        svr_entry(xtr, ytr, xte, kernel="rbf", C=10.0, epsilon=0.05),
        svr_entry(xtr, ytr, xte, kernel="rbf", epsilon=0.0, C=0.5, shrinking=False),
    ]
    write("regression", xtr, ytr, xte, yte, None, models)


if __name__ == "__main__":
    main()
