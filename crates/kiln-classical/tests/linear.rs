//! Linear models: scikit-learn parity on committed fixtures, known answers, the common checks
//! and bad input.
//!
//! The fixtures in `tests/reference/linear/` were written by `tests/reference/gen_linear.py`
//! (scikit-learn 1.9.1).

use kiln_classical::linear::{LinearRegression, LinearRegressionParams, Ridge, RidgeParams};
use kiln_core::folder::{ModelFolder, ModelMeta};
use kiln_core::{Dataset, Error, Fit, Predict};
use ndarray::{Array1, Array2};
use rand::Rng;
use serde_json::Value;

const FIXTURES: [(&str, &str); 5] = [
    (
        "well_conditioned",
        include_str!("reference/linear/well_conditioned.json"),
    ),
    (
        "ill_conditioned",
        include_str!("reference/linear/ill_conditioned.json"),
    ),
    (
        "rank_deficient",
        include_str!("reference/linear/rank_deficient.json"),
    ),
    (
        "one_feature",
        include_str!("reference/linear/one_feature.json"),
    ),
    ("wide", include_str!("reference/linear/wide.json")),
];

/// Relative tolerance for coefficients and intercepts against scikit-learn.
const RTOL: f64 = 1e-8;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn fixture_data(doc: &Value) -> Dataset {
    let rows: Vec<Vec<f64>> = doc["x"].as_array().unwrap().iter().map(floats).collect();
    let (n, d) = (rows.len(), rows[0].len());
    let x = Array2::from_shape_vec((n, d), rows.concat()).unwrap();
    let y = Array1::from(floats(&doc["y"]));
    Dataset::regression(x, y, Dataset::default_feature_names(d), "y").unwrap()
}

/// `|a − b| <= RTOL × scale`, per coefficient, with `scale = max(|b|, ‖b‖∞ × 1e-3)`: relative
/// per coefficient, except that coefficients a thousand times smaller than the largest (the
/// zeros of a minimum-norm solution) are held to the largest's scale × 1e-3.
fn assert_coef_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let big = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let scale = b.abs().max(big * 1e-3);
        assert!(
            (a - b).abs() <= RTOL * scale,
            "{what}: coef[{i}] = {a:e}, scikit-learn {b:e} (rel diff {:e})",
            (a - b).abs() / scale
        );
    }
}

/// Intercept check, relative to `max(|b|, |mean(y)|, 1)`: the intercept is
/// `mean(y) − mean(x)·coef`, so it can be near zero as a difference of large terms.
fn assert_intercept_close(what: &str, got: f64, want: f64, data: &Dataset) {
    let y_mean = data.y.mean().unwrap_or(0.0).abs();
    let scale = want.abs().max(y_mean).max(1.0);
    assert!(
        (got - want).abs() <= RTOL * scale,
        "{what}: intercept {got:e}, scikit-learn {want:e}"
    );
}

#[test]
fn matches_scikit_learn_fixtures() {
    let mut n_cases = 0;
    for (name, text) in FIXTURES {
        let doc: Value = serde_json::from_str(text).unwrap();
        let data = fixture_data(&doc);
        for case in doc["cases"].as_array().unwrap() {
            let params = &case["params"];
            let what = format!("{name} {} {params}", case["model"]);
            let want_coef = floats(&case["coef"]);
            let want_intercept = case["intercept"].as_f64().unwrap();
            match case["model"].as_str().unwrap() {
                "linear_regression" => {
                    let p: LinearRegressionParams = serde_json::from_value(params.clone()).unwrap();
                    let m = p.fit(&data).unwrap();
                    assert_coef_close(&what, m.coef.as_slice().unwrap(), &want_coef);
                    assert_intercept_close(&what, m.intercept, want_intercept, &data);
                    assert_eq!(
                        m.rank as u64,
                        case["rank"].as_u64().unwrap(),
                        "{what}: rank"
                    );
                    let want_s = floats(&case["singular_values"]);
                    let s_max = want_s[0];
                    for (a, b) in m.singular_values.iter().zip(&want_s) {
                        assert!(
                            (a - b).abs() <= 1e-12 * s_max,
                            "{what}: singular value {a:e} vs {b:e}"
                        );
                    }
                }
                "ridge" => {
                    let p: RidgeParams = serde_json::from_value(params.clone()).unwrap();
                    let m = p.fit(&data).unwrap();
                    assert_coef_close(&what, m.coef.as_slice().unwrap(), &want_coef);
                    assert_intercept_close(&what, m.intercept, want_intercept, &data);
                }
                other => panic!("unknown model {other}"),
            }
            n_cases += 1;
        }
    }
    assert_eq!(n_cases, 18);
}

/// `n × d` features with different offsets and scales; `y = x w + b` exactly.
fn noiseless(n: usize, d: usize, intercept: f64, seed: u64) -> (Dataset, Vec<f64>) {
    let mut rng = kiln_core::rng(seed);
    let w: Vec<f64> = (0..d).map(|j| (j as f64 - 1.5) * 0.75 + 0.1).collect();
    let x = Array2::from_shape_fn((n, d), |(_, j)| {
        (rng.random::<f64>() - 0.5) * (1.0 + j as f64) + 2.0 * j as f64
    });
    let y = x.dot(&Array1::from(w.clone())) + intercept;
    let data = Dataset::regression(x, y, Dataset::default_feature_names(d), "y").unwrap();
    (data, w)
}

#[test]
fn ols_recovers_exact_coefficients_on_noiseless_data() {
    // 40 000 rows: several parallel groups of chunks, merged.
    for (n, d) in [(7, 3), (40_000, 5)] {
        let (data, w) = noiseless(n, d, -3.25, 11);
        let m = LinearRegressionParams::default().fit(&data).unwrap();
        for (a, b) in m.coef.iter().zip(&w) {
            assert!((a - b).abs() < 1e-10, "n = {n}: {a} vs {b}");
        }
        assert!((m.intercept + 3.25).abs() < 1e-10, "{}", m.intercept);
        assert_eq!(m.rank, d);
        let pred = m.predict(data.x.view()).unwrap();
        assert!(pred.iter().zip(&data.y).all(|(p, y)| (p - y).abs() < 1e-9));
    }
}

#[test]
fn no_intercept_recovers_coefficients_through_origin() {
    let (data, w) = noiseless(500, 4, 0.0, 12);
    let p = LinearRegressionParams {
        fit_intercept: false,
        ..Default::default()
    };
    let m = p.fit(&data).unwrap();
    assert_eq!(m.intercept, 0.0);
    for (a, b) in m.coef.iter().zip(&w) {
        assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }
}

#[test]
fn duplicated_column_splits_the_weight_equally() {
    // y = 2 x0 + x1 with x0 duplicated: the minimum-norm answer is (1, 1, 1), also for ridge
    // with alpha = 0, and ridge with alpha > 0 keeps the two copies equal.
    let (base, _) = noiseless(50, 2, 0.0, 13);
    let x = ndarray::concatenate(
        ndarray::Axis(1),
        &[
            base.x.view(),
            base.x.column(0).insert_axis(ndarray::Axis(1)),
        ],
    )
    .unwrap();
    let y = base.x.column(0).to_owned() * 2.0 + base.x.column(1);
    let data = Dataset::regression(x, y, Dataset::default_feature_names(3), "y").unwrap();
    let ols = LinearRegressionParams::default().fit(&data).unwrap();
    assert_eq!(ols.rank, 2);
    for (a, b) in ols.coef.iter().zip([1.0, 1.0, 1.0]) {
        assert!((a - b).abs() < 1e-10, "{:?}", ols.coef);
    }
    let r0 = RidgeParams {
        alpha: 0.0,
        ..Default::default()
    }
    .fit(&data)
    .unwrap();
    assert!(
        (&r0.coef - &ols.coef).iter().all(|v| v.abs() < 1e-10),
        "{:?}",
        r0.coef
    );
    let r = RidgeParams::default().fit(&data).unwrap();
    assert!((r.coef[0] - r.coef[2]).abs() < 1e-10, "{:?}", r.coef);
}

#[test]
fn ridge_shrinks_with_alpha_and_zero_alpha_is_ols() {
    let (data, _) = noiseless(200, 3, 1.0, 14);
    let ols = LinearRegressionParams::default().fit(&data).unwrap();
    let norm = |m: &Ridge| m.coef.dot(&m.coef).sqrt();
    let fit = |alpha: f64| {
        RidgeParams {
            alpha,
            ..Default::default()
        }
        .fit(&data)
        .unwrap()
    };
    let r0 = fit(0.0);
    assert!((&r0.coef - &ols.coef).iter().all(|v| v.abs() < 1e-10));
    assert!((r0.intercept - ols.intercept).abs() < 1e-9);
    let norms: Vec<f64> = [0.0, 1.0, 100.0, 1e6]
        .iter()
        .map(|&a| norm(&fit(a)))
        .collect();
    assert!(norms.windows(2).all(|w| w[1] < w[0]), "{norms:?}");
    // A huge penalty leaves the unpenalised intercept at mean(y).
    let big = fit(1e12);
    assert!((big.intercept - data.y.mean().unwrap()).abs() < 1e-6);
}

fn check_data() -> Dataset {
    let (mut data, _) = noiseless(60, 3, 0.5, 15);
    let mut rng = kiln_core::rng(16);
    data.y.mapv_inplace(|v| v + rng.random::<f64>() - 0.5);
    data
}

#[test]
fn common_checks_linear_regression() {
    kiln_core::checks::check_estimator(&LinearRegressionParams::default(), &check_data());
}

#[test]
fn common_checks_ridge() {
    kiln_core::checks::check_estimator(&RidgeParams::default(), &check_data());
}

#[test]
fn params_defaults_and_serde() {
    let p = LinearRegressionParams::default();
    assert!(p.fit_intercept);
    assert_eq!(p.tol, 1e-6);
    let r = RidgeParams::default();
    assert!(r.fit_intercept);
    assert_eq!(r.alpha, 1.0);
    // Missing fields take their defaults; unknown fields are errors.
    let r2: RidgeParams = serde_json::from_str(r#"{"alpha": 3.0}"#).unwrap();
    assert_eq!(
        r2,
        RidgeParams {
            alpha: 3.0,
            fit_intercept: true
        }
    );
    assert!(serde_json::from_str::<RidgeParams>(r#"{"alpah": 3.0}"#).is_err());
    assert!(serde_json::from_str::<LinearRegressionParams>(r#"{"fit_intercept": 1}"#).is_err());
}

#[test]
fn bad_hyperparameters_are_named() {
    let data = check_data();
    for alpha in [-1.0, f64::NAN, f64::INFINITY] {
        let p = RidgeParams {
            alpha,
            ..Default::default()
        };
        let e = p.fit(&data).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParameter { name, .. } if name == "alpha"),
            "{e}"
        );
        assert!(e.to_string().contains(">= 0"), "{e}");
    }
    for tol in [-1e-3, 1.0, f64::NAN] {
        let p = LinearRegressionParams {
            tol,
            ..Default::default()
        };
        let e = p.validate().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParameter { name, .. } if name == "tol"),
            "{e}"
        );
        assert!(p.fit(&data).is_err());
    }
    let ok = LinearRegressionParams {
        tol: 0.0,
        ..Default::default()
    };
    assert!(ok.fit(&data).is_ok());
}

#[test]
fn bad_data_is_an_error_not_a_panic() {
    let data = check_data();
    let ols = LinearRegressionParams::default();
    let ridge = RidgeParams::default();

    // No samples, no features.
    let empty = Dataset::regression(
        Array2::zeros((0, 3)),
        Array1::zeros(0),
        Dataset::default_feature_names(3),
        "y",
    )
    .unwrap();
    for e in [ols.fit(&empty).unwrap_err(), ridge.fit(&empty).unwrap_err()] {
        assert!(e.to_string().contains("at least 1 row"), "{e}");
    }
    let no_features =
        Dataset::regression(Array2::zeros((4, 0)), Array1::zeros(4), vec![], "y").unwrap();
    let e = ols.fit(&no_features).unwrap_err();
    assert!(e.to_string().contains("at least 1 feature"), "{e}");

    // Non-finite features: the first one is named, row and column 1-based.
    let mut bad = data.clone();
    bad.x[[7, 2]] = f64::INFINITY;
    bad.x[[9, 0]] = f64::NAN;
    let e = ols.fit(&bad).unwrap_err();
    assert!(matches!(e, Error::NonFinite { row: 8, col: 3, .. }), "{e}");
    // Non-finite target.
    let mut bad = data.clone();
    bad.y[4] = f64::NAN;
    let e = ridge.fit(&bad).unwrap_err().to_string();
    assert!(e.contains("non-finite target value NaN at row 5"), "{e}");

    // Mismatched x and y (built by hand, bypassing Dataset's own check).
    let mut bad = data.clone();
    bad.y = Array1::zeros(3);
    assert!(matches!(ols.fit(&bad).unwrap_err(), Error::Shape(_)));

    // Predict: wrong feature count, NaN.
    let m = ols.fit(&data).unwrap();
    let e = m.predict(Array2::zeros((2, 4)).view()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "feature count mismatch: fitted with 3, got 4"
    );
    let mut x = Array2::zeros((2, 3));
    x[[1, 1]] = f64::NAN;
    assert!(matches!(
        m.predict(x.view()),
        Err(Error::NonFinite { row: 2, col: 2, .. })
    ));
}

#[test]
fn huge_values_give_an_answer_or_a_clear_error() {
    // Column sums overflow f64.
    let x = Array2::from_shape_vec((3, 1), vec![1e308, 1.7e308, 1.5e308]).unwrap();
    let data = Dataset::regression(
        x,
        Array1::from(vec![1.0, 2.0, 3.0]),
        Dataset::default_feature_names(1),
        "y",
    )
    .unwrap();
    let e = LinearRegressionParams::default()
        .fit(&data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflow"), "{e}");
    // Large but summable values: either finite coefficients or an error, never NaN.
    let x = Array2::from_shape_vec((3, 1), vec![1e200, 3e200, 2e200]).unwrap();
    let data = Dataset::regression(
        x,
        Array1::from(vec![1.0, 3.0, 2.0]),
        Dataset::default_feature_names(1),
        "y",
    )
    .unwrap();
    for fit in [
        LinearRegressionParams::default().fit(&data).map(|m| m.coef),
        RidgeParams::default().fit(&data).map(|m| m.coef),
    ] {
        match fit {
            Ok(coef) => assert!((coef[0] - 1e-200).abs() < 1e-210, "{coef:?}"),
            Err(e) => assert!(matches!(e, Error::Numerical(_)), "{e}"),
        }
    }
}

#[test]
fn one_sample_and_constant_features() {
    // One row: with an intercept the centered data are all zero, so coef = 0, intercept = y.
    let x = Array2::from_shape_vec((1, 2), vec![3.0, 4.0]).unwrap();
    let data = Dataset::regression(
        x,
        Array1::from(vec![5.0]),
        Dataset::default_feature_names(2),
        "y",
    )
    .unwrap();
    let m = LinearRegressionParams::default().fit(&data).unwrap();
    assert_eq!(m.coef.to_vec(), vec![0.0, 0.0]);
    assert_eq!(m.intercept, 5.0);
    assert_eq!(m.rank, 0);
    let r = RidgeParams {
        alpha: 0.0,
        ..Default::default()
    }
    .fit(&data)
    .unwrap();
    assert_eq!(r.intercept, 5.0);
    // A constant feature column gets a zero coefficient.
    let (mut data, _) = noiseless(30, 3, 2.0, 17);
    data.x.column_mut(1).fill(7.0);
    let m = LinearRegressionParams::default().fit(&data).unwrap();
    assert!(m.coef[1].abs() < 1e-12, "{:?}", m.coef);
}

fn meta(d: usize) -> ModelMeta {
    ModelMeta {
        features: Dataset::default_feature_names(d),
        target: "y".into(),
        classes: None,
        preprocessing: None,
    }
}

#[test]
fn model_folders_hold_params_and_reject_tampering() {
    let data = check_data();
    let dir = tempfile::tempdir().unwrap();
    let ridge = RidgeParams {
        alpha: 2.5,
        fit_intercept: false,
    }
    .fit(&data)
    .unwrap();
    ModelFolder::save(dir.path(), &meta(3), &ridge).unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["kind"], "ridge");
    assert_eq!(config["model"]["params"]["alpha"], 2.5);
    let (_, back): (ModelMeta, Ridge) = ModelFolder::load(dir.path()).unwrap();
    assert_eq!(back, ridge);
    // A ridge folder is not a linear regression.
    assert!(ModelFolder::load::<LinearRegression>(dir.path()).is_err());

    let ols = LinearRegressionParams::default().fit(&data).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    ModelFolder::save(dir2.path(), &meta(3), &ols).unwrap();
    let (_, back): (ModelMeta, LinearRegression) = ModelFolder::load(dir2.path()).unwrap();
    assert_eq!(back, ols);

    // Bad params in config.json (the checksum covers only the tensors).
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"alpha\": 2.5", "\"alpha\": -2.5")).unwrap();
    let e = ModelFolder::load::<Ridge>(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("alpha"), "{e}");
    std::fs::write(&cfg, text.replace("\"alpha\": 2.5", "\"alfa\": 2.5")).unwrap();
    let e = ModelFolder::load::<Ridge>(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("alfa"), "{e}");
}
