//! Synthetic generators: reproducibility, exact structure, statistical properties, and the
//! stream-independent quantities scikit-learn computes (fixture: `reference/reference.json`).

use kiln_data::synthetic::{
    make_blobs, make_classification, make_regression, BlobsParams, Centers, ClassificationParams,
    OneOrEach, RegressionParams, SampleCount,
};
use ndarray::{s, Array1, Array2, Axis};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/reference.json")).unwrap()
}

fn counts_of(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as usize)
        .collect()
}

fn max_abs_diff(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    (a - b).iter().fold(0.0, |m, d| m.max(d.abs()))
}

// ---------------------------------------------------------------------------------- regression

#[test]
fn regression_same_seed_same_data_other_seed_other_data() {
    let p = RegressionParams {
        n_samples: 3000,
        n_features: 7,
        n_informative: 3,
        noise: 0.5,
        ..Default::default()
    };
    let a = make_regression(&p, 1).unwrap();
    assert_eq!(a, make_regression(&p, 1).unwrap());
    let b = make_regression(&p, 2).unwrap();
    assert_ne!(a.data.x, b.data.x);
    assert_ne!(a.coef, b.coef);
}

#[test]
fn regression_without_noise_is_exactly_linear() {
    for shuffle in [false, true] {
        let p = RegressionParams {
            n_samples: 500,
            n_features: 12,
            n_informative: 4,
            bias: 3.25,
            shuffle,
            ..Default::default()
        };
        let r = make_regression(&p, 11).unwrap();
        assert_eq!(r.data.x.dim(), (500, 12));
        assert_eq!(r.data.feature_names[11], "x11");
        let y = r.data.x.dot(&r.coef) + p.bias;
        assert!(max_abs_diff(&y, &r.data.y) < 1e-9);
        let nonzero: Vec<usize> = (0..12).filter(|&j| r.coef[j] != 0.0).collect();
        assert_eq!(nonzero.len(), 4);
        assert!(r.coef.iter().all(|&c| (0.0..100.0).contains(&c)));
        if shuffle {
            assert_ne!(nonzero, [0, 1, 2, 3], "features were not shuffled");
        } else {
            assert_eq!(nonzero, [0, 1, 2, 3]);
        }
    }
}

#[test]
fn regression_features_are_standard_normal_and_noise_has_its_scale() {
    let p = RegressionParams {
        n_samples: 20_000,
        n_features: 3,
        n_informative: 3,
        noise: 2.0,
        ..Default::default()
    };
    let r = make_regression(&p, 5).unwrap();
    for col in r.data.x.columns() {
        let mean = col.mean().unwrap();
        let sd = col.std(0.0);
        assert!(mean.abs() < 0.05 && (sd - 1.0).abs() < 0.05, "{mean} {sd}");
    }
    let residual = &r.data.y - &r.data.x.dot(&r.coef);
    let sd = residual.std(0.0);
    assert!((sd - 2.0).abs() < 0.06, "noise sd {sd}");
    assert!(residual.mean().unwrap().abs() < 0.05);
}

#[test]
fn regression_with_several_targets() {
    let p = RegressionParams {
        n_samples: 200,
        n_features: 6,
        n_informative: 2,
        n_targets: 3,
        bias: -1.0,
        ..Default::default()
    };
    let r = make_regression(&p, 4).unwrap();
    assert_eq!(r.targets.dim(), (200, 3));
    assert_eq!(r.coefs.dim(), (6, 3));
    assert_eq!(r.targets.column(0), r.data.y);
    assert_eq!(r.coefs.column(0), r.coef);
    let y = r.data.x.dot(&r.coefs) - 1.0;
    assert!((&y - &r.targets).iter().all(|d| d.abs() < 1e-9));
}

#[test]
fn low_rank_features_have_scikit_learns_singular_profile() {
    let r = reference();
    for case in r["low_rank"].as_array().unwrap() {
        let p = RegressionParams {
            n_samples: case["n_samples"].as_u64().unwrap() as usize,
            n_features: case["n_features"].as_u64().unwrap() as usize,
            n_informative: 5,
            effective_rank: Some(case["effective_rank"].as_u64().unwrap() as usize),
            tail_strength: case["tail_strength"].as_f64().unwrap(),
            ..Default::default()
        };
        let m = make_regression(&p, 3).unwrap();
        let x = &m.data.x;
        // ||X||_F^2 = sum s^2 and ||X^T X||_F^2 = sum s^4 depend on the singular values only.
        let fro2: f64 = x.iter().map(|v| v * v).sum();
        let gram = x.t().dot(x);
        let gram_fro2: f64 = gram.iter().map(|v| v * v).sum();
        let want = case["fro2"].as_f64().unwrap();
        let want_gram = case["gram_fro2"].as_f64().unwrap();
        assert!((fro2 - want).abs() < 1e-9 * want, "{fro2} vs {want}");
        assert!(
            (gram_fro2 - want_gram).abs() < 1e-9 * want_gram,
            "{gram_fro2} vs {want_gram}"
        );
        let y = x.dot(&m.coef);
        assert!(max_abs_diff(&y, &m.data.y) < 1e-9);
    }
}

#[test]
fn regression_parameters_are_validated() {
    let bad = |p: RegressionParams, words: &[&str]| {
        let e = make_regression(&p, 0).unwrap_err().to_string();
        for w in words {
            assert!(e.contains(w), "{e:?} lacks {w:?}");
        }
    };
    let d = RegressionParams::default;
    bad(
        RegressionParams {
            n_features: 5,
            n_informative: 8,
            ..d()
        },
        &["n_informative = 8", "n_features = 5"],
    );
    bad(
        RegressionParams {
            n_samples: 0,
            ..d()
        },
        &["n_samples = 0", "at least 1"],
    );
    bad(
        RegressionParams {
            n_features: 0,
            n_informative: 0,
            ..d()
        },
        &["n_features = 0"],
    );
    bad(
        RegressionParams {
            n_targets: 0,
            ..d()
        },
        &["n_targets"],
    );
    bad(RegressionParams { noise: -1.0, ..d() }, &["noise = -1"]);
    bad(
        RegressionParams {
            bias: f64::NAN,
            ..d()
        },
        &["bias"],
    );
    bad(
        RegressionParams {
            tail_strength: 1.5,
            ..d()
        },
        &["tail_strength = 1.5", "[0, 1]"],
    );
    bad(
        RegressionParams {
            effective_rank: Some(0),
            ..d()
        },
        &["effective_rank = 0"],
    );
    bad(
        RegressionParams {
            n_samples: usize::MAX / 2,
            ..d()
        },
        &["n_samples * n_features"],
    );
    assert!(RegressionParams::default().validate().is_ok());
}

// ------------------------------------------------------------------------------ classification

#[test]
fn classification_same_seed_same_data_other_seed_other_data() {
    let p = ClassificationParams {
        n_samples: 2500,
        ..Default::default()
    };
    let a = make_classification(&p, 8).unwrap();
    assert_eq!(a, make_classification(&p, 8).unwrap());
    let b = make_classification(&p, 9).unwrap();
    assert_ne!(a.x, b.x);
    assert_eq!(a.x.dim(), (2500, 20));
    assert_eq!(a.classes.as_deref().unwrap(), ["0", "1"]);
}

#[test]
fn class_counts_follow_weights_as_in_scikit_learn() {
    let r = reference();
    for case in r["classification_counts"].as_array().unwrap() {
        let weights = case["weights"]
            .as_array()
            .map(|w| w.iter().map(|v| v.as_f64().unwrap()).collect());
        let p = ClassificationParams {
            n_samples: case["n_samples"].as_u64().unwrap() as usize,
            n_features: 6,
            n_informative: 3,
            n_classes: case["n_classes"].as_u64().unwrap() as usize,
            n_clusters_per_class: case["n_clusters_per_class"].as_u64().unwrap() as usize,
            weights,
            flip_y: 0.0,
            ..Default::default()
        };
        let d = make_classification(&p, 0).unwrap();
        assert_eq!(d.class_counts(), counts_of(&case["counts"]), "{case}");
    }
}

#[test]
fn classification_structure_without_shuffle() {
    // 2 informative, 2 redundant, 2 repeated, 2 noise features; one cluster per class.
    let p = ClassificationParams {
        n_samples: 8000,
        n_features: 8,
        n_informative: 2,
        n_redundant: 2,
        n_repeated: 2,
        n_classes: 4,
        n_clusters_per_class: 1,
        flip_y: 0.0,
        class_sep: 2.0,
        shuffle: false,
        ..Default::default()
    };
    let d = make_classification(&p, 21).unwrap();
    let x = &d.x;
    // Samples come cluster by cluster: 2000 per class, in order.
    for c in 0..4 {
        assert!(d
            .y
            .slice(s![c * 2000..(c + 1) * 2000])
            .iter()
            .all(|&v| v == c as f64));
    }
    // Cluster means sit on distinct vertices of the square [-2, 2]^2.
    let mut vertices = Vec::new();
    for c in 0..4 {
        let block = x.slice(s![c * 2000..(c + 1) * 2000, 0..2]);
        let mean = block.mean_axis(Axis(0)).unwrap();
        for &m in &mean {
            assert!((m.abs() - 2.0).abs() < 0.2, "cluster {c} mean {mean}");
        }
        vertices.push((mean[0] > 0.0, mean[1] > 0.0));
    }
    vertices.sort();
    vertices.dedup();
    assert_eq!(vertices.len(), 4);
    // Redundant features are exact linear combinations of the informative ones.
    let inf = x.slice(s![.., 0..2]).to_owned();
    for j in 2..4 {
        let target = x.column(j).to_owned();
        let b = least_squares_2(&inf, &target);
        let fit = inf.dot(&b);
        assert!(max_abs_diff(&fit, &target) < 1e-8, "column {j}");
    }
    // Repeated features copy one of the first four columns.
    for j in 4..6 {
        assert!((0..4).any(|k| x.column(j) == x.column(k)), "column {j}");
    }
    // Noise features are standard normal and unrelated to the class.
    for j in 6..8 {
        let col = x.column(j);
        assert!(col.mean().unwrap().abs() < 0.05 && (col.std(0.0) - 1.0).abs() < 0.05);
    }
}

/// Solve min ||a b - t|| for two columns by the normal equations.
fn least_squares_2(a: &Array2<f64>, t: &Array1<f64>) -> Array1<f64> {
    let g = a.t().dot(a);
    let r = a.t().dot(t);
    let det = g[[0, 0]] * g[[1, 1]] - g[[0, 1]] * g[[1, 0]];
    Array1::from(vec![
        (g[[1, 1]] * r[0] - g[[0, 1]] * r[1]) / det,
        (g[[0, 0]] * r[1] - g[[1, 0]] * r[0]) / det,
    ])
}

#[test]
fn flip_y_replaces_that_share_of_labels_at_random() {
    let base = ClassificationParams {
        n_samples: 20_000,
        n_classes: 2,
        flip_y: 0.0,
        shuffle: false,
        ..Default::default()
    };
    let clean = make_classification(&base, 3).unwrap();
    let flipped = make_classification(
        &ClassificationParams {
            flip_y: 0.3,
            ..base
        },
        3,
    )
    .unwrap();
    assert_eq!(clean.x, flipped.x);
    let changed = clean
        .y
        .iter()
        .zip(&flipped.y)
        .filter(|(a, b)| a != b)
        .count() as f64
        / 20_000.0;
    // A flipped label gets a random class, so about 0.3 * (1 - 1/2) change.
    assert!((changed - 0.15).abs() < 0.015, "{changed}");
}

#[test]
fn shift_and_scale_apply_per_feature() {
    let base = ClassificationParams {
        n_samples: 50,
        n_features: 4,
        n_informative: 2,
        n_redundant: 1,
        shuffle: false,
        ..Default::default()
    };
    let plain = make_classification(&base, 6).unwrap();
    let shift = vec![1.0, -2.0, 0.5, 10.0];
    let scale = vec![2.0, 0.5, 1.0, 3.0];
    let moved = make_classification(
        &ClassificationParams {
            shift: Some(OneOrEach::Each(shift.clone())),
            scale: Some(OneOrEach::Each(scale.clone())),
            ..base.clone()
        },
        6,
    )
    .unwrap();
    let want = (&plain.x + &Array1::from(shift)) * &Array1::from(scale);
    assert!((&want - &moved.x).iter().all(|d| d.abs() < 1e-12));
    // Random shift and scale (scikit-learn's None): scales lie in [1, 101].
    let random = make_classification(
        &ClassificationParams {
            n_samples: 4000,
            shift: None,
            scale: None,
            ..base.clone()
        },
        6,
    )
    .unwrap();
    let noise_sd = random.x.column(3).std(0.0);
    assert!((0.9..=105.0).contains(&noise_sd), "{noise_sd}");
    // Centres off the hypercube still give a valid dataset.
    let polytope = make_classification(
        &ClassificationParams {
            hypercube: false,
            ..base
        },
        6,
    )
    .unwrap();
    assert_eq!(polytope.x.dim(), (50, 4));
    assert_ne!(polytope.x, plain.x);
}

#[test]
fn classification_parameters_are_validated() {
    let bad = |p: ClassificationParams, words: &[&str]| {
        let e = make_classification(&p, 0).unwrap_err().to_string();
        for w in words {
            assert!(e.contains(w), "{e:?} lacks {w:?}");
        }
    };
    let d = ClassificationParams::default;
    bad(
        ClassificationParams {
            n_features: 3,
            ..d()
        },
        &["n_features = 3", "2 + 2 + 0 = 4"],
    );
    bad(
        ClassificationParams {
            n_classes: 3,
            n_clusters_per_class: 2,
            ..d()
        },
        &["3 * 2 = 6", "2**n_informative"],
    );
    bad(
        ClassificationParams {
            weights: Some(vec![0.5; 3]),
            ..d()
        },
        &["weights", "n_classes = 2"],
    );
    bad(
        ClassificationParams {
            weights: Some(vec![0.9, 0.9]),
            ..d()
        },
        &["weights", "at most 1"],
    );
    bad(
        ClassificationParams {
            weights: Some(vec![-0.1]),
            ..d()
        },
        &["weights = -0.1"],
    );
    bad(ClassificationParams { flip_y: 2.0, ..d() }, &["flip_y = 2"]);
    bad(
        ClassificationParams {
            class_sep: 0.0,
            ..d()
        },
        &["class_sep = 0"],
    );
    bad(
        ClassificationParams {
            n_informative: 0,
            ..d()
        },
        &["n_informative = 0"],
    );
    bad(
        ClassificationParams {
            scale: Some(OneOrEach::One(-1.0)),
            ..d()
        },
        &["scale = -1", "> 0"],
    );
    bad(
        ClassificationParams {
            shift: Some(OneOrEach::Each(vec![0.0; 3])),
            ..d()
        },
        &["shift", "list of 20"],
    );
    bad(
        ClassificationParams {
            n_redundant: usize::MAX,
            ..d()
        },
        &["n_features = 20"],
    );
    bad(
        ClassificationParams {
            n_samples: usize::MAX,
            ..d()
        },
        &["n_samples * n_features"],
    );
    assert!(ClassificationParams::default().validate().is_ok());
}

// ----------------------------------------------------------------------------------------- blobs

#[test]
fn blobs_same_seed_same_data_other_seed_other_data() {
    let p = BlobsParams::default();
    let a = make_blobs(&p, 1).unwrap();
    assert_eq!(a, make_blobs(&p, 1).unwrap());
    let b = make_blobs(&p, 2).unwrap();
    assert_ne!(a.data.x, b.data.x);
    assert_ne!(a.centers, b.centers);
    assert_eq!(a.data.x.dim(), (100, 2));
    assert_eq!(a.data.classes.as_deref().unwrap(), ["0", "1", "2"]);
}

#[test]
fn blob_counts_match_scikit_learn() {
    let r = reference();
    for case in r["blobs_counts"].as_array().unwrap() {
        let p = match &case["n_samples"] {
            Value::Array(v) => BlobsParams {
                n_samples: SampleCount::PerCenter(
                    v.iter().map(|c| c.as_u64().unwrap() as usize).collect(),
                ),
                ..Default::default()
            },
            n => BlobsParams {
                n_samples: SampleCount::Total(n.as_u64().unwrap() as usize),
                centers: Some(Centers::Count(case["centers"].as_u64().unwrap() as usize)),
                ..Default::default()
            },
        };
        let b = make_blobs(&p, 0).unwrap();
        assert_eq!(b.data.class_counts(), counts_of(&case["counts"]), "{case}");
    }
}

#[test]
fn blob_means_and_spreads_match_the_centres() {
    let p = BlobsParams {
        n_samples: SampleCount::Total(9000),
        n_features: 3,
        centers: Some(Centers::Count(3)),
        cluster_std: OneOrEach::Each(vec![0.5, 1.0, 2.0]),
        center_box: (-5.0, 5.0),
        ..Default::default()
    };
    let b = make_blobs(&p, 17).unwrap();
    assert_eq!(b.centers.dim(), (3, 3));
    assert!(b.centers.iter().all(|c| (-5.0..=5.0).contains(c)));
    for (c, want_sd) in [0.5, 1.0, 2.0].into_iter().enumerate() {
        let rows: Vec<usize> = (0..9000).filter(|&i| b.data.y[i] == c as f64).collect();
        assert_eq!(rows.len(), 3000);
        let block = b.data.x.select(Axis(0), &rows);
        let mean = block.mean_axis(Axis(0)).unwrap();
        for j in 0..3 {
            assert!(
                (mean[j] - b.centers[[c, j]]).abs() < 0.15,
                "blob {c}: {mean} vs centre"
            );
            let sd = block.column(j).std(0.0);
            assert!((sd - want_sd).abs() < 0.06 * want_sd, "blob {c}: sd {sd}");
        }
    }
    // Shuffled: the labels are not in blob order.
    assert!(b.data.y.windows(2).into_iter().any(|w| w[0] > w[1]));
}

#[test]
fn given_centres_set_the_width() {
    let p = BlobsParams {
        n_samples: SampleCount::PerCenter(vec![10, 20]),
        centers: Some(Centers::Given(vec![
            vec![0.0, 0.0, 0.0],
            vec![100.0, 100.0, 100.0],
        ])),
        cluster_std: OneOrEach::One(0.0),
        shuffle: false,
        ..Default::default()
    };
    let b = make_blobs(&p, 0).unwrap();
    assert_eq!(b.data.x.dim(), (30, 3));
    assert!(b.data.x.slice(s![..10, ..]).iter().all(|&v| v == 0.0));
    assert!(b.data.x.slice(s![10.., ..]).iter().all(|&v| v == 100.0));
    assert_eq!(b.data.class_counts(), vec![10, 20]);
}

#[test]
fn blob_parameters_are_validated() {
    let bad = |p: BlobsParams, words: &[&str]| {
        let e = make_blobs(&p, 0).unwrap_err().to_string();
        for w in words {
            assert!(e.contains(w), "{e:?} lacks {w:?}");
        }
    };
    let d = BlobsParams::default;
    bad(
        BlobsParams {
            n_samples: SampleCount::Total(0),
            ..d()
        },
        &["n_samples = 0"],
    );
    bad(
        BlobsParams {
            n_features: 0,
            ..d()
        },
        &["n_features = 0"],
    );
    bad(
        BlobsParams {
            centers: Some(Centers::Count(0)),
            ..d()
        },
        &["centers = 0"],
    );
    bad(
        BlobsParams {
            centers: Some(Centers::Given(vec![vec![0.0], vec![1.0, 2.0]])),
            ..d()
        },
        &["centre 2 with 2 coordinates"],
    );
    bad(
        BlobsParams {
            n_samples: SampleCount::PerCenter(vec![1, 2]),
            centers: Some(Centers::Count(3)),
            ..d()
        },
        &["3 centres", "2 entries"],
    );
    bad(
        BlobsParams {
            cluster_std: OneOrEach::One(-1.0),
            ..d()
        },
        &["cluster_std = -1"],
    );
    bad(
        BlobsParams {
            cluster_std: OneOrEach::Each(vec![1.0]),
            ..d()
        },
        &["cluster_std", "list of 3"],
    );
    bad(
        BlobsParams {
            center_box: (1.0, -1.0),
            ..d()
        },
        &["center_box", "low <= high"],
    );
    bad(
        BlobsParams {
            n_samples: SampleCount::PerCenter(vec![usize::MAX, 1, 1]),
            ..d()
        },
        &["n_samples"],
    );
    bad(
        BlobsParams {
            n_samples: SampleCount::Total(usize::MAX / 4),
            ..d()
        },
        &["n_samples * n_features"],
    );
    assert!(BlobsParams::default().validate().is_ok());
}

#[test]
fn parameters_read_from_json_like_scikit_learn_arguments() {
    let p: BlobsParams =
        serde_json::from_str(r#"{"n_samples": [5, 7], "cluster_std": [0.5, 2.0]}"#).unwrap();
    assert_eq!(p.n_samples, SampleCount::PerCenter(vec![5, 7]));
    assert_eq!(p.cluster_std, OneOrEach::Each(vec![0.5, 2.0]));
    assert_eq!(p.center_box, (-10.0, 10.0));
    let c: ClassificationParams =
        serde_json::from_str(r#"{"weights": [0.9], "shift": null, "scale": 2.0}"#).unwrap();
    assert_eq!(c.scale, Some(OneOrEach::One(2.0)));
    assert_eq!(c.shift, None);
    assert_eq!(c.n_features, 20);
    let r: RegressionParams = serde_json::from_str(r#"{"effective_rank": 3}"#).unwrap();
    assert_eq!(r.effective_rank, Some(3));
    assert_eq!(r.n_informative, 10);
}

// ---------------------------------------------------------------------------------- threading

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let r = make_regression(
                    &RegressionParams {
                        n_samples: 3000,
                        n_features: 5,
                        noise: 1.0,
                        n_informative: 2,
                        ..Default::default()
                    },
                    4,
                )
                .unwrap();
                let c = make_classification(
                    &ClassificationParams {
                        n_samples: 3000,
                        ..Default::default()
                    },
                    4,
                )
                .unwrap();
                let b = make_blobs(
                    &BlobsParams {
                        n_samples: SampleCount::Total(3000),
                        ..Default::default()
                    },
                    4,
                )
                .unwrap();
                (r, c, b)
            })
    };
    assert_eq!(run(1), run(3));
}
