//! SVC and SVR: the common-check suite, bad hyperparameters, determinism across thread
//! counts, bounded cache, iteration limits, probabilities and the scaling warning.

use kiln_classical::svm::{
    scaling_warning, ClassWeight, DecisionShape, Gamma, Kernel, SvcParams, SvrParams,
};
use kiln_core::{checks::check_estimator, Dataset, Error, Fit, Persist, Predict};
use ndarray::{Array1, Array2};
use rand::Rng;

fn iris() -> Dataset {
    let path = format!(
        "{}/tests/fixtures/svm/iris.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(f["x_train"].clone()).unwrap();
    let y: Vec<f64> = serde_json::from_value(f["y_train"].clone()).unwrap();
    let classes: Vec<String> = serde_json::from_value(f["classes"].clone()).unwrap();
    let x = Array2::from_shape_vec((rows.len(), 4), rows.concat()).unwrap();
    Dataset::classification(
        x,
        Array1::from(y),
        Dataset::default_feature_names(4),
        "species",
        classes,
    )
    .unwrap()
}

/// Two noisy Gaussian blobs per class, `n × d`, `k` classes.
fn blobs(n: usize, d: usize, k: usize, seed: u64) -> Dataset {
    let mut rng = kiln_core::rng(seed);
    let mut x = Array2::zeros((n, d));
    let mut y = Array1::zeros(n);
    for i in 0..n {
        let c = i % k;
        y[i] = c as f64;
        for j in 0..d {
            let centre = if j % k == c { 1.0 } else { 0.0 };
            x[[i, j]] = centre + rng.random_range(-1.2..1.2);
        }
    }
    let classes = (0..k).map(|c| format!("c{c}")).collect();
    Dataset::classification(x, y, Dataset::default_feature_names(d), "y", classes).unwrap()
}

fn regression(n: usize, seed: u64) -> Dataset {
    let mut rng = kiln_core::rng(seed);
    let x: Array2<f64> = Array2::from_shape_fn((n, 3), |_| rng.random_range(-2.0..2.0));
    let y = x
        .rows()
        .into_iter()
        .map(|r| r[0].sin() + 0.5 * r[1])
        .collect();
    Dataset::regression(x, y, Dataset::default_feature_names(3), "y").unwrap()
}

#[test]
fn common_checks() {
    let data = iris();
    check_estimator(&SvcParams::default(), &data);
    check_estimator(
        &SvcParams {
            probability: true,
            ..SvcParams::default()
        },
        &data,
    );
    let mut linear = SvcParams::default();
    linear.kernel.kernel = Kernel::Linear;
    check_estimator(&linear, &blobs(90, 3, 2, 1));
    check_estimator(&SvrParams::default(), &regression(80, 2));
}

fn param_error<T: std::fmt::Debug>(r: kiln_core::Result<T>, name: &str) {
    match r {
        Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected an error naming {name}, got {other:?}"),
    }
}

#[test]
fn bad_hyperparameters_are_named() {
    let data = iris();
    let svc = |f: fn(&mut SvcParams)| {
        let mut p = SvcParams::default();
        f(&mut p);
        p.fit(&data)
    };
    param_error(svc(|p| p.c = 0.0), "C");
    param_error(svc(|p| p.c = -1.0), "C");
    param_error(svc(|p| p.kernel.gamma = Gamma::Value(-0.5)), "gamma");
    param_error(svc(|p| p.kernel.degree = -1), "degree");
    param_error(svc(|p| p.solver.tol = 0.0), "tol");
    param_error(svc(|p| p.solver.cache_size = 0.0), "cache_size");
    param_error(svc(|p| p.solver.max_iter = 0), "max_iter");
    param_error(svc(|p| p.predict_from_proba = true), "predict_from_proba");
    param_error(
        svc(|p| {
            p.break_ties = true;
            p.decision_function_shape = DecisionShape::Ovo;
        }),
        "break_ties",
    );
    param_error(
        svc(|p| p.class_weight = Some("setosa:2,dandelion:3".parse().unwrap())),
        "class_weight",
    );
    param_error(
        svc(|p| p.class_weight = Some("setosa:-2".parse().unwrap())),
        "class_weight[setosa]",
    );
    param_error("gaussian".parse::<Kernel>(), "kernel");
    param_error("-1".parse::<Gamma>(), "gamma");
    param_error("wide".parse::<Gamma>(), "gamma");
    param_error("setosa=2".parse::<ClassWeight>(), "class_weight");
    param_error(
        "diagonal".parse::<DecisionShape>(),
        "decision_function_shape",
    );

    let reg = regression(30, 0);
    let svr = |f: fn(&mut SvrParams)| {
        let mut p = SvrParams::default();
        f(&mut p);
        p.fit(&reg)
    };
    param_error(svr(|p| p.epsilon = -0.1), "epsilon");
    param_error(svr(|p| p.c = f64::NAN), "C");
    param_error(svr(|p| p.kernel.coef0 = f64::INFINITY), "coef0");
}

#[test]
fn bad_data_is_a_clear_error() {
    let data = iris();
    // A single class in y.
    let one = data.select(
        &(0..data.n_samples())
            .filter(|&i| data.y[i] == 0.0)
            .collect::<Vec<_>>(),
    );
    let e = SvcParams::default().fit(&one).unwrap_err().to_string();
    assert!(e.contains("at least 2 classes, got 1"), "{e}");
    // A declared class with no samples.
    let two = data.select(
        &(0..data.n_samples())
            .filter(|&i| data.y[i] != 2.0)
            .collect::<Vec<_>>(),
    );
    let e = SvcParams::default().fit(&two).unwrap_err().to_string();
    assert!(e.contains("class virginica has no samples"), "{e}");
    // Wrong task.
    let reg = regression(20, 0);
    let e = SvcParams::default().fit(&reg).unwrap_err().to_string();
    assert!(e.contains("classification dataset"), "{e}");
    let e = SvrParams::default().fit(&data).unwrap_err().to_string();
    assert!(e.contains("regression dataset"), "{e}");
    // Probabilities of a model fitted without them.
    let m = SvcParams::default().fit(&data).unwrap();
    assert!(m.predict_proba(data.x.view()).unwrap().is_none());
}

#[test]
fn same_model_for_any_thread_count_and_cache_size() {
    // Pairs of 1000 samples × 20 features: long enough rows (n·d >= 16384) for the parallel
    // kernel path.
    let data = blobs(1500, 20, 3, 7);
    let fit = |threads: usize, cache: f64, shrinking: bool| {
        let mut p = SvcParams::default();
        p.solver.threads = threads;
        p.solver.cache_size = cache;
        p.solver.shrinking = shrinking;
        p.fit(&data).unwrap()
    };
    let one = fit(1, 200.0, true);
    let two = fit(2, 200.0, true);
    assert_eq!(
        one.dual_coef(),
        two.dual_coef(),
        "thread count changed the model"
    );
    assert_eq!(one.intercept(), two.intercept());
    assert_eq!(one.n_iter(), two.n_iter());
    // A cache of a few rows (the floor is two full rows) evicts constantly and still gives
    // the same model.
    let tiny = fit(2, 0.01, true);
    assert_eq!(
        one.dual_coef(),
        tiny.dual_coef(),
        "cache size changed the model"
    );
    // Without shrinking the path differs but the optimum is the same.
    let plain = fit(2, 200.0, false);
    assert_eq!(one.support(), plain.support());
    let diff = (&one.dual_coef() - &plain.dual_coef()).mapv(f64::abs);
    assert!(
        diff.iter().all(|&d| d < 1e-2),
        "max diff {:?}",
        diff.iter().cloned().fold(0.0, f64::max)
    );
}

#[test]
fn iteration_limit_is_reported() {
    let data = blobs(300, 5, 2, 3);
    let mut p = SvcParams::default();
    p.solver.max_iter = 5;
    let m = p.fit(&data).unwrap();
    assert!(!m.converged());
    assert_eq!(m.n_iter(), &[5]);
    assert!(m.warnings()[0].contains("max_iter=5"), "{:?}", m.warnings());
    assert!(SvcParams::default().fit(&data).unwrap().converged());
    let mut r = SvrParams::default();
    r.solver.max_iter = 3;
    let m = r.fit(&regression(100, 1)).unwrap();
    assert!(!m.converged() && m.n_iter() == 3);
}

#[test]
fn probabilities_are_seeded_and_can_drive_predict() {
    let data = blobs(150, 4, 3, 5);
    let p = SvcParams {
        probability: true,
        seed: 11,
        ..SvcParams::default()
    };
    let a = p.fit(&data).unwrap();
    let b = p.fit(&data).unwrap();
    assert_eq!(a.prob_a(), b.prob_a(), "same seed, same Platt fit");
    assert_eq!(a.prob_a().len(), 3);
    let other = SvcParams {
        seed: 12,
        ..p.clone()
    }
    .fit(&data)
    .unwrap();
    assert_ne!(
        a.prob_a(),
        other.prob_a(),
        "the seed drives the internal folds"
    );

    let agree = SvcParams {
        predict_from_proba: true,
        ..p.clone()
    }
    .fit(&data)
    .unwrap();
    let proba = agree.predict_proba(data.x.view()).unwrap().unwrap();
    let pred = agree.predict(data.x.view()).unwrap();
    for (r, row) in proba.rows().into_iter().enumerate() {
        let best = (0..3).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        assert_eq!(pred[r], best as f64, "row {r}: {row:?}");
    }
}

#[test]
fn decision_function_shapes() {
    let data = blobs(120, 4, 3, 9);
    let ovr = SvcParams::default().fit(&data).unwrap();
    let ovo = SvcParams {
        decision_function_shape: DecisionShape::Ovo,
        ..SvcParams::default()
    }
    .fit(&data)
    .unwrap();
    let x = data.x.view();
    assert_eq!(ovr.decision_function(x).unwrap().dim(), (120, 3));
    assert_eq!(ovo.decision_function(x).unwrap().dim(), (120, 3)); // 3 pairs
                                                                   // The ovr column with the most votes is the predicted class (no ties among 3 classes
                                                                   // unless all three win once; break_ties resolves those by the same columns).
    let bt = SvcParams {
        break_ties: true,
        ..SvcParams::default()
    }
    .fit(&data)
    .unwrap();
    let df = bt.decision_function(x).unwrap();
    let pred = bt.predict(x).unwrap();
    for (r, row) in df.rows().into_iter().enumerate() {
        let best = (0..3).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        assert_eq!(pred[r], best as f64);
    }
    // Binary: one column, positive for class 1.
    let bin = blobs(60, 3, 2, 2);
    let m = SvcParams::default().fit(&bin).unwrap();
    let df = m.decision_function(bin.x.view()).unwrap();
    let pred = m.predict(bin.x.view()).unwrap();
    assert_eq!(df.ncols(), 1);
    for r in 0..60 {
        assert_eq!(pred[r], if df[[r, 0]] > 0.0 { 1.0 } else { 0.0 });
    }
}

#[test]
fn class_weight_moves_the_boundary() {
    let data = blobs(200, 2, 2, 4);
    let plain = SvcParams::default().fit(&data).unwrap();
    let heavy = SvcParams {
        class_weight: Some("c1:20".parse().unwrap()),
        ..SvcParams::default()
    }
    .fit(&data)
    .unwrap();
    let count = |m: &kiln_classical::svm::Svc| {
        m.predict(data.x.view())
            .unwrap()
            .iter()
            .filter(|&&p| p == 1.0)
            .count()
    };
    assert!(
        count(&heavy) > count(&plain),
        "{} vs {}",
        count(&heavy),
        count(&plain)
    );
    let bal = SvcParams {
        class_weight: Some(ClassWeight::Balanced),
        ..SvcParams::default()
    };
    assert!(bal.fit(&data).is_ok());
}

#[test]
fn reload_rejects_inconsistent_folders() {
    let m = SvcParams::default().fit(&iris()).unwrap();
    let (mut json, tensors) = m.to_parts().unwrap();
    json["n_support"] = serde_json::json!([1, 2]);
    let e = kiln_classical::svm::Svc::from_parts(&json, &tensors).unwrap_err();
    assert!(e.to_string().contains("n_support"), "{e}");
}

#[test]
fn scaling_warning_flags_unscaled_features() {
    let data = blobs(100, 3, 2, 0);
    let names = data.feature_names.clone();
    assert_eq!(scaling_warning(data.x.view(), &names), None);
    let mut x = data.x.clone();
    x.column_mut(1).mapv_inplace(|v| 5000.0 * v + 10000.0);
    let w = scaling_warning(x.view(), &names).expect("a warning");
    assert!(
        w.contains("x1") && w.contains("very different scales"),
        "{w}"
    );
}

#[test]
fn svr_fits_a_smooth_function() {
    let data = regression(200, 3);
    let p = SvrParams {
        c: 10.0,
        epsilon: 0.05,
        ..SvrParams::default()
    };
    let m = p.fit(&data).unwrap();
    let pred = m.predict(data.x.view()).unwrap();
    let mse = kiln_core::metrics::mse(data.y.as_slice().unwrap(), pred.as_slice().unwrap());
    assert!(mse < 0.01, "mse {mse}");
    assert!(m.n_support() < 200);
}
