"""Write the scikit-learn reference fixtures for kiln's linear models.

Run from anywhere (needs numpy and scikit-learn; the fixtures were made with 1.9.1):

    python3 crates/kiln-classical/tests/reference/gen_linear.py

Each dataset becomes one JSON file in `linear/` next to this script, holding the input data
(`x` row-major, `y`) and a list of cases: the estimator (`linear_regression` or `ridge`), its
parameters, and the coefficients, intercept (and, for OLS, the rank and singular values) that
scikit-learn computed. kiln's tests (`tests/linear.rs`) compare against these.

scikit-learn 1.9's `LinearRegression` passes `tol` (default 1e-6) as the `cond` cutoff of
`scipy.linalg.lstsq` (LAPACK gelsd): singular values of the centered X below
`tol * largest` count as zero and the minimum-norm solution is returned. kiln's `tol` means
the same. So that the comparison is about the solver and not about which side of the cutoff a
singular value lands, the script checks that no singular value lies within a factor of 3 of
the cutoff of any case it writes.
"""

import json
import os

import numpy as np
import sklearn
from sklearn.linear_model import LinearRegression, Ridge

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "linear")


def centered_orthonormal(rng, n, k):
    """n x k matrix with orthonormal columns, each orthogonal to the ones vector."""
    a = rng.standard_normal((n, k))
    a -= a.mean(axis=0)
    q, _ = np.linalg.qr(a)
    return q


def singular_values(x, fit_intercept):
    xc = x - x.mean(axis=0) if fit_intercept else x
    return np.linalg.svd(xc, compute_uv=False)


def ols_case(x, y, fit_intercept=True, tol=1e-6):
    s = singular_values(x, fit_intercept)
    cutoff = tol * s[0]
    near = s[(s > cutoff / 3) & (s < cutoff * 3)]
    assert near.size == 0, f"singular values {near} too close to the cutoff {cutoff}"
    m = LinearRegression(fit_intercept=fit_intercept, tol=tol).fit(x, y)
    return {
        "model": "linear_regression",
        "params": {"fit_intercept": fit_intercept, "tol": tol},
        "coef": m.coef_.tolist(),
        "intercept": float(m.intercept_),
        "rank": int(m.rank_),
        "singular_values": m.singular_.tolist(),
    }


def ridge_case(x, y, alpha, fit_intercept=True):
    m = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(x, y)
    # The default solver (Cholesky of the normal equations here) against the SVD solver:
    # the reference itself must be accurate well below the tolerance kiln is held to.
    s = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd").fit(x, y)
    scale = np.abs(s.coef_).max()
    assert np.abs(m.coef_ - s.coef_).max() <= 1e-10 * scale, (m.coef_, s.coef_)
    return {
        "model": "ridge",
        "params": {"alpha": alpha, "fit_intercept": fit_intercept},
        "coef": s.coef_.tolist(),
        "intercept": float(s.intercept_),
    }


def write(name, description, x, y, cases):
    doc = {
        "name": name,
        "description": description,
        "sklearn_version": sklearn.__version__,
        "n_samples": x.shape[0],
        "n_features": x.shape[1],
        "x": x.tolist(),
        "y": y.tolist(),
        "cases": cases,
    }
    path = os.path.join(OUT, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=None)
        f.write("\n")
    print(f"{path}: {x.shape}, {len(cases)} cases, {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261128)

    # 1. Well conditioned: independent features with different means and scales.
    n, d = 200, 5
    x = rng.standard_normal((n, d)) * [1.0, 2.0, 0.5, 3.0, 1.5] + [5.0, -3.0, 0.0, 10.0, 1.0]
    w = np.array([1.5, -2.0, 0.25, 3.0, -0.7])
    y = x @ w + 4.0 + 0.1 * rng.standard_normal(n)
    write(
        "well_conditioned",
        "200 x 5, independent normal features with offsets, y = x w + 4 + N(0, 0.1^2)",
        x,
        y,
        [
            ols_case(x, y),
            ols_case(x, y, fit_intercept=False),
            ridge_case(x, y, 0.1),
            ridge_case(x, y, 10.0),
            ridge_case(x, y, 1.0, fit_intercept=False),
        ],
    )

    # 2. Ill conditioned: centered X = U diag(s) V^T with s from 1 down to 3e-7 (condition
    # number 3e6), plus column offsets. With the default tol = 1e-6 the smallest singular
    # value is cut off; with tol = 1e-10 nothing is and the full solution is compared.
    n, d = 300, 6
    s = np.array([1.0, 0.3, 1e-2, 1e-3, 2e-5, 3e-7]) * 30.0
    u = centered_orthonormal(rng, n, d)
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (u * s) @ v.T + [1.0, -2.0, 3.0, 0.5, 0.0, -1.0]
    w = rng.standard_normal(d)
    y = x @ w - 1.0 + 1e-6 * rng.standard_normal(n)
    write(
        "ill_conditioned",
        "300 x 6, centered X with singular values 30 x (1, 0.3, 1e-2, 1e-3, 2e-5, 3e-7), "
        "condition number 3e6, offsets; y = x w - 1 + N(0, 1e-12)",
        x,
        y,
        [
            ols_case(x, y),
            ols_case(x, y, tol=1e-10),
            ridge_case(x, y, 1e-3),
            ridge_case(x, y, 1.0),
        ],
    )

    # 3. Rank deficient: a duplicated column, a linear combination of two others and a constant
    # column. The minimum-norm solution splits weight between the collinear columns.
    n = 100
    base = rng.standard_normal((n, 4)) + [0.0, 1.0, -1.0, 2.0]
    x = np.column_stack(
        [base, base[:, 1], 2.0 * base[:, 0] - base[:, 2], np.full(n, 3.0)]
    )
    y = base @ np.array([1.0, -1.0, 2.0, 0.5]) + 0.5 + 0.05 * rng.standard_normal(n)
    write(
        "rank_deficient",
        "100 x 7: four normal columns, a copy of column 1, 2*col0 - col2, a constant 3; "
        "rank 4 after centering",
        x,
        y,
        [
            ols_case(x, y),
            ols_case(x, y, fit_intercept=False),
            ridge_case(x, y, 0.5),
        ],
    )

    # 4. One feature.
    n = 50
    x = rng.uniform(-3.0, 3.0, (n, 1))
    y = 2.5 * x[:, 0] - 1.0 + 0.2 * rng.standard_normal(n)
    write(
        "one_feature",
        "50 x 1 uniform on [-3, 3], y = 2.5 x - 1 + N(0, 0.04)",
        x,
        y,
        [ols_case(x, y), ols_case(x, y, fit_intercept=False), ridge_case(x, y, 2.0)],
    )

    # 5. Wide: fewer samples than features, so the minimum-norm solution is the answer.
    n, d = 6, 10
    x = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    write(
        "wide",
        "6 x 10 standard normal, y standard normal: more features than samples",
        x,
        y,
        [ols_case(x, y), ols_case(x, y, fit_intercept=False), ridge_case(x, y, 1.0)],
    )


if __name__ == "__main__":
    main()
