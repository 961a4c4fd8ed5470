//! Built-in datasets against the values scikit-learn's loaders return
//! (fixture: `tests/reference/gen_reference.py` -> `reference.json`).

use kiln_data::builtin;
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/reference.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

#[test]
fn documented_shapes_and_class_counts() {
    let iris = builtin::load("iris").unwrap();
    assert_eq!(iris.x.dim(), (150, 4));
    assert_eq!(iris.class_counts(), vec![50, 50, 50]);
    assert_eq!(
        iris.classes.as_deref().unwrap(),
        ["setosa", "versicolor", "virginica"]
    );
    let wine = builtin::load("wine").unwrap();
    assert_eq!(wine.x.dim(), (178, 13));
    assert_eq!(wine.class_counts(), vec![59, 71, 48]);
    assert_eq!(
        wine.classes.as_deref().unwrap(),
        ["class_0", "class_1", "class_2"]
    );
    let bc = builtin::load("breast_cancer").unwrap();
    assert_eq!(bc.x.dim(), (569, 30));
    assert_eq!(bc.class_counts(), vec![212, 357]);
    assert_eq!(bc.classes.as_deref().unwrap(), ["malignant", "benign"]);
    let diabetes = builtin::load("diabetes").unwrap();
    assert_eq!(diabetes.x.dim(), (442, 10));
    assert_eq!(diabetes.classes, None);
    let digits = builtin::load("digits").unwrap();
    assert_eq!(digits.x.dim(), (1797, 64));
    assert_eq!(digits.n_classes(), 10);
    assert_eq!(digits.classes.as_deref().unwrap()[9], "9");
    assert!(digits.x.iter().all(|&p| (0.0..=16.0).contains(&p)));
}

#[test]
fn values_match_scikit_learn_loaders() {
    let r = reference();
    for info in builtin::list() {
        let want = &r["builtin"][info.name];
        let d = builtin::load(info.name).unwrap();
        let shape = floats(&want["shape"]);
        assert_eq!(
            (d.n_samples() as f64, d.n_features() as f64),
            (shape[0], shape[1])
        );
        let names: Vec<&str> = want["feature_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(d.feature_names, names, "{}", info.name);
        for (got, want) in
            d.x.sum_axis(ndarray::Axis(0))
                .iter()
                .zip(floats(&want["x_column_sums"]))
        {
            assert!(
                close(*got, want),
                "{}: column sum {got} vs {want}",
                info.name
            );
        }
        assert_eq!(
            d.x.row(0).to_vec(),
            floats(&want["first_row"]),
            "{}",
            info.name
        );
        assert_eq!(
            d.x.row(d.n_samples() - 1).to_vec(),
            floats(&want["last_row"]),
            "{}",
            info.name
        );
        assert!(
            close(d.y.sum(), want["y_sum"].as_f64().unwrap()),
            "{}",
            info.name
        );
        assert_eq!(d.y[0], want["first_y"].as_f64().unwrap());
        assert_eq!(d.y[d.n_samples() - 1], want["last_y"].as_f64().unwrap());
        if let Some(counts) = want.get("class_counts") {
            let counts: Vec<usize> = floats(counts).iter().map(|&c| c as usize).collect();
            assert_eq!(d.class_counts(), counts, "{}", info.name);
            let target_names: Vec<&str> = want["target_names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(d.classes.as_deref().unwrap(), target_names, "{}", info.name);
        }
    }
}

#[test]
fn written_builtins_read_back_with_the_same_rows_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["breast_cancer", "iris", "diabetes"] {
        let d = builtin::load(name).unwrap();
        let path = dir.path().join(format!("{name}.csv"));
        kiln_data::write_csv(&path, &d).unwrap();
        let opts = kiln_data::CsvOptions {
            task: builtin::list()
                .into_iter()
                .find(|i| i.name == name)
                .unwrap()
                .task,
            ..Default::default()
        };
        let back = kiln_data::read_csv(&path, &opts).unwrap();
        assert_eq!(back.x, d.x, "{name}");
        assert_eq!(back.feature_names, d.feature_names);
        match (&d.classes, &back.classes) {
            (Some(a), Some(b)) => {
                // Same label per row, whatever the class order.
                for (i, j) in d.labels().into_iter().zip(back.labels()) {
                    assert_eq!(a[i], b[j], "{name}");
                }
            }
            (None, None) => assert_eq!(back.y, d.y),
            _ => panic!("{name}: task changed"),
        }
    }
    let bc = kiln_data::read_csv(
        &dir.path().join("breast_cancer.csv"),
        &kiln_data::CsvOptions {
            task: kiln_data::TaskHint::Classification,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bc.classes.as_deref().unwrap(), ["benign", "malignant"]);
    assert_eq!(bc.class_counts(), vec![357, 212]);
}
