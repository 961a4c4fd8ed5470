//! Decision trees: common checks, known answers, bad input, reproducibility, persistence.

use std::collections::BTreeMap;

use kiln_classical::tree::{
    ClassCriterion, ClassWeight, DecisionTreeClassifier, DecisionTreeClassifierParams,
    DecisionTreeRegressorParams, MaxFeatures, RegCriterion, SampleCount, SplitterKind,
    TreeSettings,
};
use kiln_core::checks::check_estimator;
use kiln_core::folder::ModelMeta;
use kiln_core::{Dataset, Error, Fit, ModelFolder, Predict};
use ndarray::{Array1, Array2};
use rand::Rng;

/// Three Gaussian-ish blobs in 4 features, labels by blob (seeded).
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = kiln_core::rng(seed);
    let mut x = Array2::zeros((n, 4));
    let mut y = Array1::zeros(n);
    for i in 0..n {
        let c = i % 3;
        for j in 0..4 {
            x[[i, j]] = c as f64 * 1.5 + rng.random::<f64>() * 2.0 + j as f64 * 0.1;
        }
        y[i] = c as f64;
    }
    Dataset::classification(
        x,
        y,
        Dataset::default_feature_names(4),
        "class",
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap()
}

fn regression(n: usize, seed: u64) -> Dataset {
    let mut rng = kiln_core::rng(seed);
    let x = Array2::from_shape_fn((n, 3), |_| rng.random::<f64>() * 4.0 - 2.0);
    let y = x
        .rows()
        .into_iter()
        .map(|r| r[0].sin() * 3.0 + r[1] * r[1] - 0.5 * r[2])
        .collect();
    Dataset::regression(x, y, Dataset::default_feature_names(3), "y").unwrap()
}

#[test]
fn common_checks() {
    check_estimator(&DecisionTreeClassifierParams::default(), &blobs(90, 1));
    let random = DecisionTreeClassifierParams {
        criterion: ClassCriterion::Entropy,
        tree: TreeSettings {
            splitter: SplitterKind::Random,
            max_features: MaxFeatures::Sqrt,
            seed: 9,
            ..TreeSettings::default()
        },
        ..Default::default()
    };
    check_estimator(&random, &blobs(90, 2));
    check_estimator(&DecisionTreeRegressorParams::default(), &regression(80, 3));
    let pruned = DecisionTreeRegressorParams {
        tree: TreeSettings {
            max_leaf_nodes: Some(6),
            ccp_alpha: 0.01,
            ..TreeSettings::default()
        },
        ..Default::default()
    };
    check_estimator(&pruned, &regression(80, 4));
    // absolute_error rejects NaN at fit (like scikit-learn) but, like every tree, routes NaN
    // at predict time, so it sits outside the suite's NaN check; its parity is in tree_parity.
}

#[test]
fn separable_data_is_fitted_perfectly() {
    let data = blobs(150, 7);
    let model = DecisionTreeClassifierParams::default().fit(&data).unwrap();
    let pred = model.predict(data.x.view()).unwrap();
    assert_eq!(
        pred, data.y,
        "an unlimited tree reproduces its distinct training points"
    );
    for leaf in 0..model.node_count() {
        if model.tree().is_leaf(leaf) {
            assert!(
                model.tree().impurity[leaf] <= f64::EPSILON,
                "leaf {leaf} impure"
            );
        }
    }
    let reg = regression(100, 8);
    let m = DecisionTreeRegressorParams::default().fit(&reg).unwrap();
    let p = m.predict(reg.x.view()).unwrap();
    for (a, b) in p.iter().zip(reg.y.iter()) {
        assert!((a - b).abs() < 1e-12);
    }
    assert_eq!(m.n_leaves(), 100);
}

#[test]
fn same_seed_same_tree_other_seed_other_tree() {
    let data = blobs(120, 11);
    let params = |seed| DecisionTreeClassifierParams {
        tree: TreeSettings {
            splitter: SplitterKind::Random,
            max_features: MaxFeatures::Sqrt,
            seed,
            ..TreeSettings::default()
        },
        ..Default::default()
    };
    let a = params(5).fit(&data).unwrap();
    let b = params(5).fit(&data).unwrap();
    let c = params(6).fit(&data).unwrap();
    assert_eq!(a.tree(), b.tree());
    assert_ne!(a.tree(), c.tree());
}

#[test]
fn threads_do_not_change_the_tree() {
    // Large enough for the parallel search and partition paths; with missing values, the
    // random splitter, best-first growth and absolute error too.
    let mut data = blobs(6000, 12);
    for i in (0..6000).step_by(11) {
        data.x[[i, i % 4]] = f64::NAN;
    }
    let reg = regression(5000, 13);
    let variants: Vec<TreeSettings> = vec![
        TreeSettings::default(),
        TreeSettings {
            splitter: SplitterKind::Random,
            max_features: MaxFeatures::Count(2),
            seed: 3,
            ..TreeSettings::default()
        },
        TreeSettings {
            max_leaf_nodes: Some(40),
            ..TreeSettings::default()
        },
    ];
    for base in variants {
        let fit = |threads| {
            let s = TreeSettings {
                threads,
                ..base.clone()
            };
            let c = DecisionTreeClassifierParams {
                tree: s.clone(),
                ..Default::default()
            }
            .fit(&data)
            .unwrap();
            let r = DecisionTreeRegressorParams {
                tree: s,
                ..Default::default()
            }
            .fit(&reg)
            .unwrap();
            (c.tree().clone(), r.tree().clone())
        };
        let one = fit(1);
        assert_eq!(one, fit(0), "{base:?}");
        assert_eq!(one, fit(3), "{base:?}");
    }
    let mae = |threads| {
        DecisionTreeRegressorParams {
            criterion: RegCriterion::AbsoluteError,
            tree: TreeSettings {
                max_depth: Some(4),
                threads,
                ..TreeSettings::default()
            },
        }
        .fit(&reg)
        .unwrap()
        .tree()
        .clone()
    };
    assert_eq!(mae(1), mae(2));
}

#[test]
fn fitted_accessors() {
    let data = blobs(90, 14);
    let params = DecisionTreeClassifierParams {
        tree: TreeSettings {
            max_depth: Some(2),
            ..TreeSettings::default()
        },
        ..Default::default()
    };
    let m = params.fit(&data).unwrap();
    assert_eq!(m.depth(), 2);
    assert!(m.n_leaves() <= 4 && m.n_leaves() >= 2);
    assert_eq!(m.node_count(), 2 * m.n_leaves() - 1);
    let imp = m.feature_importances();
    assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let leaves = m.apply(data.x.view()).unwrap();
    assert!(leaves.iter().all(|&k| m.tree().is_leaf(k)));
    let path = params.cost_complexity_pruning_path(&data, None).unwrap();
    assert_eq!(path.ccp_alphas[0], 0.0);
    assert!(path.ccp_alphas.windows(2).all(|w| w[0] <= w[1]));
    // The last alpha prunes to the root: the root's impurity.
    assert!((path.impurities.last().unwrap() - m.tree().impurity[0]).abs() < 1e-12);
    // Pruning with a large alpha leaves the root alone.
    let root_only = DecisionTreeClassifierParams {
        tree: TreeSettings {
            ccp_alpha: 10.0,
            ..TreeSettings::default()
        },
        ..Default::default()
    }
    .fit(&data)
    .unwrap();
    assert_eq!(root_only.node_count(), 1);
}

#[test]
fn diagram_boxes() {
    let data = blobs(90, 15);
    let m = DecisionTreeClassifierParams::default().fit(&data).unwrap();
    let boxes = m.diagram(Some(1));
    // Root, two children, and "(...)" boxes for what lies deeper.
    assert!(boxes[0].lines[0].contains(" <= "), "{:?}", boxes[0].lines);
    assert!(boxes[0].lines.iter().any(|l| l.starts_with("samples = 90")));
    assert!(boxes[0].lines.iter().any(|l| l.starts_with("class = ")));
    let (l, r) = boxes[0].children.unwrap();
    assert!(l == 1 && r > l);
    for b in &boxes {
        if let Some((l, r)) = b.children {
            assert!(l < boxes.len() && r < boxes.len());
        }
        assert!((0.0..=1.0).contains(&b.purity));
    }
    assert!(boxes.iter().any(|b| b.lines == ["(...)"]));
    let full = m.diagram(None);
    assert_eq!(full.len(), m.node_count());
}

#[test]
fn missing_values_at_fit_and_predict() {
    let mut data = blobs(90, 16);
    for i in (0..90).step_by(7) {
        data.x[[i, 1]] = f64::NAN;
    }
    let m = DecisionTreeClassifierParams::default().fit(&data).unwrap();
    let mut x = data.x.clone();
    x[[0, 0]] = f64::NAN;
    x[[1, 2]] = f64::NAN;
    let p = m.predict(x.view()).unwrap();
    assert_eq!(p.len(), 90);
    // Infinity is not a missing value: an error naming the place.
    x[[3, 2]] = f64::INFINITY;
    let e = m.predict(x.view()).unwrap_err();
    assert!(matches!(e, Error::NonFinite { row: 4, col: 3, .. }), "{e}");
    data.x[[5, 0]] = f64::NEG_INFINITY;
    assert!(matches!(
        DecisionTreeClassifierParams::default().fit(&data),
        Err(Error::NonFinite { row: 6, col: 1, .. })
    ));
    // absolute_error has no missing-value support, as in scikit-learn.
    let mut reg = regression(30, 17);
    reg.x[[2, 1]] = f64::NAN;
    let mae = DecisionTreeRegressorParams {
        criterion: RegCriterion::AbsoluteError,
        ..Default::default()
    };
    let e = mae.fit(&reg).unwrap_err().to_string();
    assert!(e.contains("absolute_error") && e.contains("row 3"), "{e}");
}

fn bad_classifier(p: DecisionTreeClassifierParams, data: &Dataset, name: &str) {
    match p.fit(data) {
        Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        other => panic!(
            "{name}: expected InvalidParameter, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[test]
fn bad_hyperparameters_are_named() {
    let data = blobs(30, 18);
    let with = |f: fn(&mut TreeSettings)| {
        let mut p = DecisionTreeClassifierParams::default();
        f(&mut p.tree);
        p
    };
    bad_classifier(with(|s| s.max_depth = Some(0)), &data, "max_depth");
    bad_classifier(
        with(|s| s.min_samples_split = SampleCount::Count(1)),
        &data,
        "min_samples_split",
    );
    bad_classifier(
        with(|s| s.min_samples_split = SampleCount::Fraction(1.5)),
        &data,
        "min_samples_split",
    );
    bad_classifier(
        with(|s| s.min_samples_leaf = SampleCount::Count(0)),
        &data,
        "min_samples_leaf",
    );
    bad_classifier(
        with(|s| s.min_samples_leaf = SampleCount::Fraction(1.0)),
        &data,
        "min_samples_leaf",
    );
    bad_classifier(
        with(|s| s.min_weight_fraction_leaf = 0.6),
        &data,
        "min_weight_fraction_leaf",
    );
    bad_classifier(
        with(|s| s.max_features = MaxFeatures::Count(0)),
        &data,
        "max_features",
    );
    bad_classifier(
        with(|s| s.max_features = MaxFeatures::Count(5)),
        &data,
        "max_features",
    );
    bad_classifier(
        with(|s| s.max_features = MaxFeatures::Fraction(1.5)),
        &data,
        "max_features",
    );
    bad_classifier(
        with(|s| s.max_features = MaxFeatures::Fraction(0.0)),
        &data,
        "max_features",
    );
    bad_classifier(
        with(|s| s.max_leaf_nodes = Some(1)),
        &data,
        "max_leaf_nodes",
    );
    bad_classifier(with(|s| s.ccp_alpha = -0.1), &data, "ccp_alpha");
    bad_classifier(
        with(|s| s.min_impurity_decrease = -1.0),
        &data,
        "min_impurity_decrease",
    );
    bad_classifier(with(|s| s.seed = 1 << 40), &data, "seed");
    let mut map = BTreeMap::new();
    map.insert("zebra".to_string(), 2.0);
    let p = DecisionTreeClassifierParams {
        class_weight: Some(ClassWeight::Map(map)),
        ..Default::default()
    };
    let e = p.fit(&data).unwrap_err().to_string();
    assert!(
        e.contains("class_weight") && e.contains("zebra") && e.contains("a, b, c"),
        "{e}"
    );
    // Text forms (CLI flags) and their errors.
    assert_eq!(
        "entropy".parse::<ClassCriterion>().unwrap(),
        ClassCriterion::Entropy
    );
    assert_eq!(
        "friedman_mse".parse::<RegCriterion>().unwrap(),
        RegCriterion::FriedmanMse
    );
    assert_eq!(
        "0.5".parse::<MaxFeatures>().unwrap(),
        MaxFeatures::Fraction(0.5)
    );
    assert_eq!("3".parse::<MaxFeatures>().unwrap(), MaxFeatures::Count(3));
    assert_eq!("sqrt".parse::<MaxFeatures>().unwrap(), MaxFeatures::Sqrt);
    assert_eq!(
        "0.05".parse::<SampleCount>().unwrap(),
        SampleCount::Fraction(0.05)
    );
    assert_eq!("7".parse::<SampleCount>().unwrap(), SampleCount::Count(7));
    assert!("seven".parse::<SampleCount>().is_err());
    for (bad, name) in [
        ("gain", "criterion"),
        ("mse", "criterion"),
        ("greedy", "splitter"),
    ] {
        let e = if name == "splitter" {
            bad.parse::<SplitterKind>().unwrap_err()
        } else if bad == "mse" {
            bad.parse::<RegCriterion>().unwrap_err()
        } else {
            bad.parse::<ClassCriterion>().unwrap_err()
        };
        assert!(
            matches!(&e, Error::InvalidParameter { name: n, .. } if n == name),
            "{e}"
        );
    }
    assert!("1.5".parse::<MaxFeatures>().is_err());
    assert!("0".parse::<MaxFeatures>().is_err());
    assert!("lots".parse::<MaxFeatures>().is_err());
    // Serde uses the same names.
    let json = serde_json::to_value(DecisionTreeRegressorParams::default()).unwrap();
    assert_eq!(json["criterion"], "squared_error");
    assert_eq!(json["splitter"], "best");
    assert_eq!(json["max_features"], "all");
    assert_eq!(json["min_samples_split"], 2);
    let back: DecisionTreeRegressorParams =
        serde_json::from_str(r#"{"min_samples_leaf": 0.1, "max_depth": 3}"#).unwrap();
    assert_eq!(back.tree.min_samples_leaf, SampleCount::Fraction(0.1));
    assert_eq!(back.tree.max_depth, Some(3));
}

#[test]
fn bad_data_and_weights() {
    let data = blobs(30, 19);
    let p = DecisionTreeClassifierParams::default();
    let e = p.fit_weighted(&data, &[1.0; 5]).unwrap_err().to_string();
    assert!(e.contains("5 values for 30 samples"), "{e}");
    let mut w = vec![1.0; 30];
    w[4] = -1.0;
    let e = p.fit_weighted(&data, &w).unwrap_err().to_string();
    assert!(e.contains("sample_weight[4] = -1"), "{e}");
    let e = p.fit_weighted(&data, &[0.0; 30]).unwrap_err().to_string();
    assert!(e.contains("sum to zero"), "{e}");
    let reg = regression(20, 20);
    assert!(matches!(p.fit(&reg), Err(Error::InvalidData(_))));
    let mut reg2 = reg.clone();
    reg2.y[3] = f64::NAN;
    let e = DecisionTreeRegressorParams::default()
        .fit(&reg2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 4"), "{e}");
    let m = p.fit(&data).unwrap();
    let e = m.predict(Array2::zeros((2, 3)).view()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "feature count mismatch: fitted with 4, got 3"
    );
}

#[test]
fn weights_match_repeated_rows() {
    // Integer weights behave like repeating rows (scikit-learn's definition).
    let data = blobs(60, 21);
    let w: Vec<f64> = (0..60).map(|i| (i % 3) as f64).collect();
    let rows: Vec<usize> = (0..60)
        .flat_map(|i| std::iter::repeat_n(i, i % 3))
        .collect();
    let p = DecisionTreeClassifierParams {
        tree: TreeSettings {
            max_depth: Some(3),
            ..TreeSettings::default()
        },
        ..Default::default()
    };
    let a = p.fit_weighted(&data, &w).unwrap();
    let b = p.fit(&data.select(&rows)).unwrap();
    assert_eq!(a.tree().feature, b.tree().feature);
    assert_eq!(a.tree().threshold, b.tree().threshold);
    assert_eq!(a.tree().value, b.tree().value);
}

#[test]
fn save_and_reload_keeps_every_array_and_rejects_corruption() {
    let data = blobs(60, 22);
    let m = DecisionTreeClassifierParams::default().fit(&data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = ModelMeta {
        features: data.feature_names.clone(),
        target: data.target_name.clone(),
        classes: data.classes.clone(),
        preprocessing: None,
    };
    ModelFolder::save(dir.path(), &meta, &m).unwrap();
    let (_, back): (ModelMeta, DecisionTreeClassifier) = ModelFolder::load(dir.path()).unwrap();
    assert_eq!(back, m);
    // A child pointing backwards would loop forever: rejected when loading.
    use kiln_core::Persist;
    let (json, mut t) = m.to_parts().unwrap();
    let mut left = t.i64s("children_left", None).unwrap().to_vec();
    left[0] = 0;
    let n = left.len();
    t.insert_i64("children_left", &[n], left);
    let e = DecisionTreeClassifier::from_parts(&json, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("node 0 is malformed"), "{e}");
}
