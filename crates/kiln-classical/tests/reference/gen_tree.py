"""Write the scikit-learn reference fixtures for kiln's decision trees.

Run from the repository root (scikit-learn 1.9.1, numpy):

    python crates/kiln-classical/tests/reference/gen_tree.py

Each case is one JSON file in crates/kiln-classical/tests/fixtures/tree/ holding the training
and test data, scikit-learn's parameters, its full `tree_` arrays, test predictions (and
probabilities), feature importances and the cost-complexity pruning path. NaN is written as
null and +inf as the string "inf".
"""

import json
import os

import numpy as np
import sklearn
from sklearn.datasets import load_iris, load_wine, make_classification, make_regression
from sklearn.model_selection import train_test_split
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    export_graphviz,
    export_text,
)

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tree")


def enc(a):
    """Floats to JSON: NaN -> null, inf -> "inf"."""
    a = np.asarray(a, dtype=float)
    if a.ndim > 1:
        return [enc(r) for r in a]
    out = []
    for v in a.tolist():
        if np.isnan(v):
            out.append(None)
        elif np.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(v)
    return out


def f32(x):
    """Round to float32 values (what scikit-learn fits on) so the JSON text is exact."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def dump(name, kind, params, X, y, Xt, feature_names, classes=None, sample_weight=None, note=""):
    est = (DecisionTreeClassifier if kind == "classifier" else DecisionTreeRegressor)(**params)
    est.fit(X, y, sample_weight=sample_weight)
    t = est.tree_
    unpruned = dict(params, ccp_alpha=0.0)
    path = (DecisionTreeClassifier if kind == "classifier" else DecisionTreeRegressor)(
        **unpruned
    ).cost_complexity_pruning_path(X, y, sample_weight=sample_weight)
    doc = {
        "name": name,
        "note": note,
        "sklearn_version": sklearn.__version__,
        "kind": kind,
        "params": params,
        "feature_names": feature_names,
        "classes": classes,
        "x": enc(X),
        "y": enc(y),
        "sample_weight": None if sample_weight is None else enc(sample_weight),
        "x_test": enc(Xt),
        "tree": {
            "children_left": t.children_left.tolist(),
            "children_right": t.children_right.tolist(),
            "feature": t.feature.tolist(),
            "threshold": enc(t.threshold),
            "missing_go_to_left": t.missing_go_to_left.astype(int).tolist(),
            "impurity": enc(t.impurity),
            "n_node_samples": t.n_node_samples.tolist(),
            "weighted_n_node_samples": enc(t.weighted_n_node_samples),
            "value": enc(t.value.reshape(t.node_count, -1)),
            "max_depth": int(t.max_depth),
            "n_leaves": int(t.n_leaves),
        },
        "predict": enc(est.predict(Xt)),
        "apply": est.apply(Xt).tolist(),
        "feature_importances": enc(est.feature_importances_),
        "ccp_alphas": enc(path.ccp_alphas),
        "ccp_impurities": enc(path.impurities),
    }
    if kind == "classifier":
        doc["predict_proba"] = enc(est.predict_proba(Xt))
    doc["export_text"] = export_text(est, feature_names=feature_names, class_names=classes)
    doc["export_text_weights"] = export_text(
        est, feature_names=feature_names, class_names=classes, show_weights=True, max_depth=2
    )
    doc["export_graphviz"] = export_graphviz(
        est, out_file=None, feature_names=feature_names, class_names=classes, filled=True
    )
    with open(os.path.join(OUT, name + ".json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    print(f"{name}: {t.node_count} nodes, depth {t.max_depth}")


def clf_data(X, y, target_names, seed):
    X = f32(X)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    return Xtr, Xte, ytr.astype(float), [str(c) for c in target_names]


def main():
    os.makedirs(OUT, exist_ok=True)

    iris = load_iris()
    Xtr, Xte, ytr, names = clf_data(iris.data, iris.target, iris.target_names, 0)
    fn = list(iris.feature_names)
    dump("iris_gini_d3", "classifier", dict(max_depth=3, random_state=0), Xtr, ytr, Xte, fn, names)
    dump("iris_entropy_full", "classifier", dict(criterion="entropy", random_state=3), Xtr, ytr, Xte, fn, names)
    dump("iris_random_splitter", "classifier", dict(splitter="random", random_state=5), Xtr, ytr, Xte, fn, names)

    wine = load_wine()
    Xtr, Xte, ytr, names = clf_data(wine.data, wine.target, wine.target_names, 1)
    fn = list(wine.feature_names)
    dump("wine_gini_d3", "classifier", dict(max_depth=3, random_state=0), Xtr, ytr, Xte, fn, names)
    dump("wine_sqrt_full", "classifier", dict(max_features="sqrt", random_state=7), Xtr, ytr, Xte, fn, names)
    dump("wine_ccp", "classifier", dict(ccp_alpha=0.02, random_state=0), Xtr, ytr, Xte, fn, names)
    dump(
        "wine_balanced_log_loss",
        "classifier",
        dict(criterion="log_loss", class_weight="balanced", min_samples_leaf=3, random_state=2),
        Xtr, ytr, Xte, fn, names,
    )

    # Synthetic classification: continuous features, no tied values.
    X, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_redundant=1, n_classes=3,
        random_state=11,
    )
    Xtr, Xte, ytr, names = clf_data(X, y, ["a", "b", "c"], 2)
    fn = [f"f{i}" for i in range(X.shape[1])]
    assert all(len(np.unique(Xtr[:, j])) == len(Xtr) for j in range(Xtr.shape[1]))
    dump("synth_gini_d3", "classifier", dict(max_depth=3, random_state=0), Xtr, ytr, Xte, fn, names)
    dump("synth_gini_full", "classifier", dict(random_state=0), Xtr, ytr, Xte, fn, names)
    dump("synth_best_first", "classifier", dict(max_leaf_nodes=9, random_state=0), Xtr, ytr, Xte, fn, names)
    dump(
        "synth_limits",
        "classifier",
        dict(min_samples_split=10, min_weight_fraction_leaf=0.02, min_impurity_decrease=0.002,
             max_features=4, random_state=4),
        Xtr, ytr, Xte, fn, names,
    )
    dump(
        "synth_fractions",
        "classifier",
        dict(criterion="entropy", min_samples_split=0.05, min_samples_leaf=0.01, random_state=1),
        Xtr, ytr, Xte, fn, names,
    )
    rng = np.random.RandomState(5)
    w = rng.randint(0, 4, size=len(ytr)).astype(float)
    dump(
        "synth_weighted",
        "classifier",
        dict(max_depth=5, random_state=0),
        Xtr, ytr, Xte, fn, names, sample_weight=w,
    )

    # Missing values in training and test data.
    Xm = Xtr.copy()
    Xm[rng.rand(*Xm.shape) < 0.15] = np.nan
    Xmt = Xte.copy()
    Xmt[rng.rand(*Xmt.shape) < 0.15] = np.nan
    Xm[:, 5] = Xtr[:, 5]  # one feature without NaN in training, NaN at test time
    dump("missing_clf_full", "classifier", dict(random_state=0), Xm, ytr, Xmt, fn, names)
    dump("missing_clf_d3", "classifier", dict(max_depth=3, random_state=0), Xm, ytr, Xmt, fn, names)
    dump("missing_clf_random", "classifier", dict(splitter="random", max_depth=6, random_state=3), Xm, ytr, Xmt, fn, names)

    # Regression.
    X, y = make_regression(n_samples=300, n_features=5, n_informative=4, noise=5.0, random_state=3)
    X = f32(X)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    fn = [f"r{i}" for i in range(X.shape[1])]
    dump("reg_mse_d3", "regressor", dict(max_depth=3, random_state=0), Xtr, ytr, Xte, fn)
    dump("reg_mse_full", "regressor", dict(random_state=0), Xtr, ytr, Xte, fn)
    dump("reg_mae_d3", "regressor", dict(criterion="absolute_error", max_depth=3, random_state=0), Xtr, ytr, Xte, fn)
    dump("reg_ccp", "regressor", dict(ccp_alpha=20.0, random_state=0), Xtr, ytr, Xte, fn)
    dump("reg_best_first", "regressor", dict(max_leaf_nodes=12, min_samples_leaf=4, random_state=0), Xtr, ytr, Xte, fn)
    Xm = Xtr.copy()
    Xm[rng.rand(*Xm.shape) < 0.1] = np.nan
    Xmt = Xte.copy()
    Xmt[rng.rand(*Xmt.shape) < 0.1] = np.nan
    dump("missing_reg_full", "regressor", dict(random_state=0), Xm, ytr, Xmt, fn)


if __name__ == "__main__":
    main()
