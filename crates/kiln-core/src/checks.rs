//! The common-check suite: invariants every kiln estimator must keep.
//!
//! An estimator joins with one line in its crate's tests:
//!
//! ```ignore
//! kiln_core::checks::check_estimator(&RidgeParams::default(), &data);
//! ```
//!
//! The checks (scikit-learn's estimator checks, in spirit): the default parameters validate;
//! fitting works and predicts one value per row; a wrong feature count is an error; NaN input is
//! an error unless the estimator accepts NaN; the same parameters (and seed) fit the same model;
//! predictions of a classifier are valid class indices; probabilities, when present, are
//! rows summing to one; saving to a model folder and loading predicts identically.
//! Each failed check panics with a message that names the check.

use ndarray::{Array2, Axis};

use crate::folder::{ModelFolder, ModelMeta};
use crate::{Dataset, Error, Fit, Persist, Predict, Task};

/// Run every common check of `params` on `data`; panics naming the first failed check.
pub fn check_estimator<F>(params: &F, data: &Dataset)
where
    F: Fit,
    F::Model: Persist,
{
    let name = std::any::type_name::<F>();
    let fail =
        |check: &str, detail: String| -> ! { panic!("{name}: check `{check}` failed: {detail}") };

    if let Err(e) = params.validate() {
        fail("params validate", e.to_string());
    }
    let model = params
        .fit(data)
        .unwrap_or_else(|e| fail("fit", e.to_string()));
    if model.n_features() != data.n_features() {
        fail(
            "n_features",
            format!("{} != {}", model.n_features(), data.n_features()),
        );
    }
    let pred = model
        .predict(data.x.view())
        .unwrap_or_else(|e| fail("predict", e.to_string()));
    if pred.len() != data.n_samples() {
        fail(
            "prediction length",
            format!("{} predictions for {} rows", pred.len(), data.n_samples()),
        );
    }
    if data.task() == Task::Classification {
        let k = data.n_classes() as f64;
        if let Some(bad) = pred
            .iter()
            .find(|&&p| !(p >= 0.0 && p < k && p.fract() == 0.0))
        {
            fail(
                "class predictions",
                format!("{bad} is not a class index below {k}"),
            );
        }
    }
    if let Some(p) = model
        .predict_proba(data.x.view())
        .unwrap_or_else(|e| fail("predict_proba", e.to_string()))
    {
        if p.nrows() != data.n_samples() {
            fail(
                "predict_proba rows",
                format!("{} rows for {}", p.nrows(), data.n_samples()),
            );
        }
        for (i, row) in p.axis_iter(Axis(0)).enumerate() {
            let s: f64 = row.sum();
            if (s - 1.0).abs() > 1e-6 || row.iter().any(|&v| !(-1e-12..=1.0 + 1e-12).contains(&v)) {
                fail("predict_proba rows sum to 1", format!("row {i}: {row:?}"));
            }
        }
    }

    // Wrong feature count.
    let wider = ndarray::concatenate(
        Axis(1),
        &[data.x.view(), data.x.column(0).insert_axis(Axis(1))],
    )
    .unwrap_or_else(|e| fail("wrong feature count", e.to_string()));
    match model.predict(wider.view()) {
        Err(Error::FeatureMismatch { expected, got })
            if expected == data.n_features() && got == expected + 1 => {}
        other => fail(
            "wrong feature count",
            format!("expected FeatureMismatch, got {other:?}"),
        ),
    }

    // NaN handling.
    let mut with_nan: Array2<f64> = data.x.clone();
    with_nan[[0, 0]] = f64::NAN;
    let nan_pred = model.predict(with_nan.view());
    let mut nan_data = data.clone();
    nan_data.x = with_nan;
    let nan_fit = params.fit(&nan_data);
    if params.allows_nan() {
        if let Err(e) = nan_pred {
            fail("NaN accepted at predict", e.to_string());
        }
        if let Err(e) = nan_fit {
            fail("NaN accepted at fit", e.to_string());
        }
    } else {
        if !matches!(nan_pred, Err(Error::NonFinite { .. })) {
            fail(
                "NaN rejected at predict",
                format!("{:?}", nan_pred.map(|_| ())),
            );
        }
        if !matches!(nan_fit, Err(Error::NonFinite { .. })) {
            fail("NaN rejected at fit", format!("{:?}", nan_fit.map(|_| ())));
        }
    }

    // Same parameters, same model.
    let again = params
        .fit(data)
        .unwrap_or_else(|e| fail("refit", e.to_string()));
    let pred2 = again
        .predict(data.x.view())
        .unwrap_or_else(|e| fail("refit predict", e.to_string()));
    if pred != pred2 {
        fail(
            "same seed same model",
            "two fits predict differently".into(),
        );
    }

    // Save and reload.
    let dir = std::env::temp_dir().join(format!(
        "kiln-check-{}-{}",
        std::process::id(),
        name.replace([':', '<', '>', ' ', ','], "_")
    ));
    let meta = ModelMeta {
        features: data.feature_names.clone(),
        target: data.target_name.clone(),
        classes: data.classes.clone(),
        preprocessing: None,
    };
    ModelFolder::save(&dir, &meta, &model).unwrap_or_else(|e| fail("save", e.to_string()));
    let (meta2, loaded): (ModelMeta, F::Model) =
        ModelFolder::load(&dir).unwrap_or_else(|e| fail("load", e.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    if meta2 != meta {
        fail("save and reload", "metadata changed".into());
    }
    let pred3 = loaded
        .predict(data.x.view())
        .unwrap_or_else(|e| fail("reloaded predict", e.to_string()));
    if pred != pred3 {
        fail(
            "save and reload predicts identically",
            "predictions differ".into(),
        );
    }
    let p1 = model.predict_proba(data.x.view()).ok().flatten();
    let p2 = loaded.predict_proba(data.x.view()).ok().flatten();
    if p1 != p2 {
        fail(
            "save and reload predicts identically",
            "probabilities differ".into(),
        );
    }
}
