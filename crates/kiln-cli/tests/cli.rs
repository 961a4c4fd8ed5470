//! Integration tests: the real `kiln` binary in a temporary folder.

mod common;

use std::path::Path;

use common::{fails, json, kiln, run_ok};
use serde_json::Value;

/// Runs a command that must succeed; returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(run_ok(dir, args).stdout).expect("utf-8 stdout")
}

#[test]
fn datasets_list_and_export() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(t.path(), &["datasets", "list"]);
    for name in ["iris", "wine", "breast_cancer", "diabetes", "digits"] {
        assert!(out.contains(name), "{out}");
    }
    ok(
        t.path(),
        &["datasets", "export", "iris", "--out", "iris.csv"],
    );
    let text = std::fs::read_to_string(t.path().join("iris.csv")).unwrap();
    assert_eq!(text.lines().count(), 151);
    assert!(text.starts_with("sepal length (cm),"), "{}", &text[..60]);
}

#[test]
fn fit_json_has_the_documented_keys() {
    let t = tempfile::tempdir().unwrap();
    let v = json(
        t.path(),
        &["fit", "linear", "--dataset", "diabetes", "--json"],
    );
    for key in [
        "model",
        "params",
        "features",
        "target",
        "n_train",
        "n_test",
        "fit_seconds",
        "train_metrics",
        "test_metrics",
        "model_info",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["model"], "linear");
    assert_eq!(
        v["n_train"].as_u64().unwrap() + v["n_test"].as_u64().unwrap(),
        442
    );
    assert_eq!(v["n_test"], 89); // ceil(0.2 * 442)
    for key in ["mse", "rmse", "mae", "r2"] {
        assert!(v["test_metrics"][key].is_number(), "{key}");
    }
    let r2 = v["test_metrics"]["r2"].as_f64().unwrap();
    assert!((0.3..0.7).contains(&r2), "diabetes OLS test r2 {r2}");
    assert_eq!(v["model_info"]["coef"].as_array().unwrap().len(), 10);
    assert!(v["model_info"]["intercept"].is_number());
}

#[test]
fn save_predict_eval_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["datasets", "export", "diabetes", "--out", "all.csv"]);
    // A separate test file: the last 42 rows.
    let text = std::fs::read_to_string(d.join("all.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(d.join("train.csv"), lines[..401].join("\n")).unwrap();
    let test: Vec<&str> = std::iter::once(lines[0])
        .chain(lines[401..].iter().copied())
        .collect();
    std::fs::write(d.join("test.csv"), test.join("\n")).unwrap();

    let fit = json(
        d,
        &[
            "fit",
            "ridge",
            "--alpha",
            "0.5",
            "--data",
            "train.csv",
            "--test",
            "test.csv",
            "--scale",
            "standard",
            "--save",
            "m",
            "--json",
        ],
    );
    assert_eq!(fit["n_test"], 42);
    assert!(d.join("m/config.json").is_file() && d.join("m/model.safetensors").is_file());
    let eval = json(d, &["eval", "--model", "m", "--data", "test.csv", "--json"]);
    for key in ["mse", "rmse", "mae", "r2"] {
        let (a, b) = (
            fit["test_metrics"][key].as_f64().unwrap(),
            eval[key].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-12 * a.abs().max(1.0),
            "{key}: fit {a} vs eval {b}"
        );
    }
    let pred = ok(d, &["predict", "--model", "m", "--data", "test.csv"]);
    let rows: Vec<&str> = pred.lines().collect();
    assert_eq!(rows[0], "prediction");
    assert_eq!(rows.len(), 43);
    ok(
        d,
        &[
            "predict", "--model", "m", "--data", "test.csv", "--out", "p.csv",
        ],
    );
    assert_eq!(std::fs::read_to_string(d.join("p.csv")).unwrap(), pred);
}

#[test]
fn cross_validation_prints_each_fold() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(
        t.path(),
        &["fit", "linear", "--dataset", "diabetes", "--cv", "5"],
    );
    for i in 1..=5 {
        assert!(out.contains(&format!("cv fold {i}:")), "{out}");
    }
    assert!(out.contains("cv r2:") && out.contains('±'), "{out}");
    let v = json(
        t.path(),
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--cv",
            "3",
            "--json",
        ],
    );
    assert_eq!(v["cv"]["folds"].as_array().unwrap().len(), 3);
}

#[test]
fn plots_are_written() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(
        d,
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--features",
            "bmi",
            "--plot",
            "one.png",
        ],
    );
    ok(
        d,
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--plot",
            "many.png",
        ],
    );
    for f in ["one.png", "many.png"] {
        let bytes = std::fs::read(d.join(f)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{f}");
    }
}

#[test]
fn tour_writes_report_and_plot() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(t.path(), &["tour", "--out", "tour"]);
    assert!(
        out.contains("intercept") && out.contains("coefficient"),
        "{out}"
    );
    assert!(
        out.contains("test accuracy") && out.contains("|--- petal"),
        "{out}"
    );
    let html = std::fs::read_to_string(t.path().join("tour/index.html")).unwrap();
    assert!(
        html.contains("linear.png") && html.contains("test MSE"),
        "{html}"
    );
    assert!(t.path().join("tour/linear.png").is_file());
    assert!(t.path().join("tour/tree.png").is_file() && html.contains("tree.png"));
    assert!(t.path().join("tour/svm.png").is_file() && html.contains("svm.png"));
    // The deep-learning chapters: a CNN on the digits, a character GRU with its sample.
    let cnn = &out[out.find("A small CNN").unwrap()..];
    let cnn_acc: f64 = cnn
        .lines()
        .find(|l| l.starts_with("test accuracy"))
        .unwrap()[14..]
        .trim()
        .parse()
        .unwrap();
    assert!(cnn_acc >= 0.95, "{out}");
    let gru = &out[out.find("A character GRU").unwrap()..];
    let valid: f64 = gru
        .lines()
        .find(|l| l.starts_with("validation loss"))
        .unwrap()[16..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(valid < 2.6, "validation loss {valid} nats/char:\n{gru}");
    assert!(gru.contains("HAMLET.\n"), "{gru}");
    for f in [
        "digits_cnn_confusion.png",
        "digits-cnn/curves.png",
        "hamlet-gru/curves.png",
    ] {
        assert!(
            t.path().join("tour").join(f).is_file() && html.contains(f),
            "{f}"
        );
    }
    // The saved networks work with the other commands.
    let e = json(
        t.path(),
        &[
            "eval",
            "--model",
            "tour/digits-cnn",
            "--dataset",
            "digits",
            "--json",
        ],
    );
    assert!(e["accuracy"].as_f64().unwrap() >= 0.95, "{e}");
    ok(
        t.path(),
        &[
            "generate",
            "text",
            "--model",
            "tour/hamlet-gru",
            "--prompt",
            "Ham",
        ],
    );
    // The GPT chapter: the embedded model continues the sentence and reports its speed.
    let gpt = &out[out.find("A small GPT continues").unwrap()..];
    assert!(
        gpt.contains("In the future, artificial intelligence will") && gpt.contains("tokens/s"),
        "{gpt}"
    );
    // The text-to-image chapter: a judged picture per prompt, seen and held-out ones.
    let t2i = &out[out.find("Pictures from sentences").unwrap()..];
    assert_eq!(t2i.matches("judge sees").count(), 8, "{t2i}");
    assert_eq!(t2i.matches("(held out)").count(), 4, "{t2i}");
    assert!(
        t.path().join("tour/text-to-image.png").is_file() && html.contains("text-to-image.png"),
        "{html}"
    );
    // Same seed, same tour, into the folder of the first run (speeds aside: they are timings).
    let without_speeds = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("tokens/s") && !l.contains("pictures/s"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_speeds(&ok(t.path(), &["tour", "--out", "tour"])),
        without_speeds(&out)
    );
}

#[test]
fn tour_does_not_delete_a_folder_that_is_not_its_run() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("tour/digits-cnn")).unwrap();
    std::fs::write(t.path().join("tour/digits-cnn/notes.txt"), "mine").unwrap();
    let err = fails(t.path(), &["tour", "--out", "tour"]);
    assert!(err.contains("is not a training run"), "{err}");
    assert!(t.path().join("tour/digits-cnn/notes.txt").is_file());
}

#[test]
fn bad_tables_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("bad.csv"), "a,b,y\n1,2,3\n4,oops,6\n").unwrap();
    let e = fails(d, &["fit", "linear", "--data", "bad.csv"]);
    assert!(
        e.contains("row 3") && e.contains("oops") && e.contains('b'),
        "{e}"
    );
    std::fs::write(d.join("ragged.csv"), "a,b,y\n1,2,3\n4,5\n").unwrap();
    let e = fails(d, &["fit", "linear", "--data", "ragged.csv"]);
    assert!(e.contains("row 3"), "{e}");
    std::fs::write(d.join("empty.csv"), "").unwrap();
    fails(d, &["fit", "linear", "--data", "empty.csv"]);
    std::fs::write(d.join("header.csv"), "a,b,y\n").unwrap();
    fails(d, &["fit", "linear", "--data", "header.csv"]);
    let e = fails(
        d,
        &["fit", "linear", "--dataset", "iris", "--target", "nope"],
    );
    assert!(e.contains("nope"), "{e}");
    let e = fails(d, &["fit", "linear", "--data", "missing.csv"]);
    assert!(e.contains("missing.csv"), "{e}");
    let e = fails(d, &["fit", "linear", "--dataset", "nosuch"]);
    assert!(e.contains("iris"), "lists the datasets: {e}");
}

#[test]
fn bad_parameters_and_models_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let e = fails(
        d,
        &["fit", "ridge", "--dataset", "diabetes", "--alpha", "-1"],
    );
    assert!(e.contains("alpha") && e.contains("-1"), "{e}");
    let e = fails(
        d,
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--test-size",
            "1.5",
        ],
    );
    assert!(e.contains("test_size"), "{e}");
    let e = fails(d, &["predict", "--model", "nowhere", "--dataset", "iris"]);
    assert!(e.contains("nowhere"), "{e}");

    ok(
        d,
        &["fit", "linear", "--dataset", "diabetes", "--save", "m"],
    );
    // The model's features are missing from the table.
    let e = fails(d, &["predict", "--model", "m", "--dataset", "iris"]);
    assert!(e.contains("age") && e.contains("sepal length"), "{e}");
    // A corrupt tensor file.
    let st = d.join("m/model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 3);
    std::fs::write(&st, &bytes).unwrap();
    let e = fails(d, &["predict", "--model", "m", "--dataset", "diabetes"]);
    assert!(e.contains("truncated"), "{e}");
    // An unknown kind.
    ok(
        d,
        &["fit", "linear", "--dataset", "diabetes", "--save", "m2"],
    );
    let cfg = d.join("m2/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("linear_regression", "quantum_forest")).unwrap();
    let e = fails(d, &["eval", "--model", "m2", "--dataset", "diabetes"]);
    assert!(e.contains("quantum_forest"), "{e}");
}

#[test]
fn tree_fit_show_and_plot() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = json(
        d,
        &[
            "fit",
            "tree",
            "--dataset",
            "iris",
            "--max-depth",
            "3",
            "--save",
            "t",
            "--plot",
            "t.png",
            "--json",
        ],
    );
    for key in ["n_nodes", "depth", "n_leaves", "feature_importances"] {
        assert!(v["model_info"].get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["model_info"]["depth"], 3);
    let imp: f64 = v["model_info"]["feature_importances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((imp - 1.0).abs() < 1e-12);
    assert_eq!(v["test_metrics"]["classes"][0], "setosa");
    assert!(v["test_metrics"]["accuracy"].as_f64().unwrap() > 0.8);
    assert_eq!(&std::fs::read(d.join("t.png")).unwrap()[1..4], b"PNG");

    let text = ok(d, &["show", "--model", "t"]);
    assert!(text.starts_with("|--- petal"), "{text}");
    assert!(text.contains("class: setosa"), "{text}");
    let dot = ok(d, &["show", "--model", "t", "--format", "dot"]);
    assert!(dot.starts_with("digraph Tree {"), "{dot}");
    ok(
        d,
        &[
            "show",
            "--model",
            "t",
            "--plot",
            "again.png",
            "--max-depth-shown",
            "2",
        ],
    );
    assert!(d.join("again.png").is_file());
    let eval = json(d, &["eval", "--model", "t", "--dataset", "iris", "--json"]);
    assert!(eval["accuracy"].as_f64().unwrap() > 0.9);

    let v = json(
        d,
        &[
            "fit",
            "tree-regressor",
            "--dataset",
            "diabetes",
            "--max-depth",
            "4",
            "--criterion",
            "friedman_mse",
            "--json",
        ],
    );
    assert_eq!(v["model"], "tree-regressor");
    assert!(v["test_metrics"]["r2"].is_number());
}

#[test]
fn trees_accept_missing_values_and_other_models_do_not() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut csv = String::from("a,b,label\n");
    for i in 0..40 {
        let a = if i % 7 == 0 {
            "nan".to_string()
        } else {
            (i % 10).to_string()
        };
        let label = if i % 10 < 5 { "low" } else { "high" };
        csv += &format!("{a},{},{label}\n", i % 3);
    }
    std::fs::write(d.join("m.csv"), csv).unwrap();
    let v = json(d, &["fit", "tree", "--data", "m.csv", "--json"]);
    assert_eq!(
        v["n_train"].as_u64().unwrap() + v["n_test"].as_u64().unwrap(),
        40
    );
    let e = fails(
        d,
        &[
            "fit",
            "linear",
            "--data",
            "m.csv",
            "--target",
            "b",
            "--features",
            "a",
        ],
    );
    assert!(e.contains("row 2") && e.contains("nan"), "{e}");
}

#[test]
fn tree_parameter_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let e = fails(
        d,
        &["fit", "tree", "--dataset", "iris", "--criterion", "bogus"],
    );
    assert!(e.contains("criterion") && e.contains("gini"), "{e}");
    let e = fails(d, &["fit", "tree", "--dataset", "iris", "--max-depth", "0"]);
    assert!(e.contains("max_depth"), "{e}");
    let e = fails(
        d,
        &[
            "fit",
            "tree",
            "--dataset",
            "iris",
            "--class-weight",
            "setosa=2,nosuch=1",
        ],
    );
    assert!(e.contains("nosuch") || e.contains("known classes"), "{e}");
    let e = fails(
        d,
        &["fit", "tree", "--dataset", "iris", "--ccp-alpha", "-1"],
    );
    assert!(e.contains("ccp_alpha"), "{e}");
    let e = fails(
        d,
        &[
            "fit",
            "tree-regressor",
            "--dataset",
            "diabetes",
            "--class-weight",
            "balanced",
        ],
    );
    assert!(e.contains("class-weight"), "{e}");
    ok(
        d,
        &["fit", "linear", "--dataset", "diabetes", "--save", "lin"],
    );
    let e = fails(d, &["show", "--model", "lin", "--plot", "x.png"]);
    assert!(e.contains("no diagram"), "{e}");
}

#[test]
fn svm_fit_save_eval_plot_and_scaling_warning() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Unscaled breast_cancer: the classic SVM mistake is called out on stderr.
    let out = kiln(d, &["fit", "svc", "--dataset", "breast_cancer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("very different scales"), "{err}");
    // Scaled: no warning, a good model, saved and reloaded with probabilities.
    let out = kiln(
        d,
        &[
            "fit",
            "svc",
            "--dataset",
            "breast_cancer",
            "--scale",
            "standard",
            "--probability",
            "--save",
            "m",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("very different scales"));
    let fit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fit["model"], "svc");
    assert!(
        fit["test_metrics"]["accuracy"].as_f64().unwrap() > 0.93,
        "{fit}"
    );
    assert_eq!(fit["model_info"]["n_support"].as_array().unwrap().len(), 2);
    for key in ["intercept", "n_iter"] {
        assert!(fit["model_info"].get(key).is_some(), "{key}");
    }
    let eval = json(
        d,
        &[
            "eval",
            "--model",
            "m",
            "--dataset",
            "breast_cancer",
            "--json",
        ],
    );
    assert!(eval["accuracy"].as_f64().unwrap() > 0.93, "{eval}");
    let pred = ok(
        d,
        &["predict", "--model", "m", "--dataset", "breast_cancer"],
    );
    assert!(
        pred.starts_with("prediction,proba_malignant,proba_benign\n"),
        "{}",
        &pred[..80]
    );
    // Two features: decision regions.
    ok(
        d,
        &[
            "fit",
            "svc",
            "--dataset",
            "iris",
            "--features",
            "petal length (cm),petal width (cm)",
            "--scale",
            "standard",
            "--plot",
            "r.png",
        ],
    );
    assert_eq!(&std::fs::read(d.join("r.png")).unwrap()[1..4], b"PNG");
    // Regression and bad parameters.
    let v = json(
        d,
        &[
            "fit",
            "svr",
            "--dataset",
            "diabetes",
            "--scale",
            "standard",
            "--c",
            "10",
            "--json",
        ],
    );
    assert_eq!(v["model"], "svr");
    assert!(v["test_metrics"]["r2"].as_f64().unwrap() > 0.0, "{v}");
    let e = fails(d, &["fit", "svc", "--dataset", "iris", "--c", "-1"]);
    assert!(e.contains('C') && e.contains("-1"), "{e}");
    let e = fails(
        d,
        &["fit", "svc", "--dataset", "iris", "--kernel", "gaussian"],
    );
    assert!(e.contains("gaussian"), "{e}");
}

#[test]
fn synthetic_data_is_seeded() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for kind in ["regression", "classification", "blobs"] {
        let args = |seed: &str, out: &str| {
            vec![
                "datasets",
                "make",
                kind,
                "--samples",
                "50",
                "--features",
                "3",
                "--seed",
                seed,
                "--out",
                out,
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        };
        for (seed, out) in [("7", "a.csv"), ("7", "b.csv"), ("8", "c.csv")] {
            let a = args(seed, out);
            ok(d, &a.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("a.csv"), read("b.csv"), "{kind}: same seed, same data");
        assert_ne!(
            read("a.csv"),
            read("c.csv"),
            "{kind}: another seed, other data"
        );
        assert_eq!(read("a.csv").lines().count(), 51, "{kind}");
    }
    // A generated table is a valid input for fit.
    ok(
        d,
        &[
            "datasets",
            "make",
            "classification",
            "--samples",
            "200",
            "--features",
            "4",
            "--seed",
            "1",
            "--out",
            "cls.csv",
        ],
    );
    let v = json(
        d,
        &["fit", "tree", "--data", "cls.csv", "--stratify", "--json"],
    );
    assert_eq!(v["n_test"], 40);
}

#[test]
fn same_seed_same_fit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let strip = |mut v: Value| {
        v["fit_seconds"] = Value::Null;
        v
    };
    for model in ["tree", "svc"] {
        let args = [
            "fit",
            model,
            "--dataset",
            "wine",
            "--scale",
            "minmax",
            "--seed",
            "5",
            "--json",
        ];
        let a = strip(json(d, &args));
        let b = strip(json(d, &args));
        assert_eq!(a, b, "{model}");
    }
    let a = json(
        d,
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--seed",
            "1",
            "--json",
        ],
    );
    let b = json(
        d,
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--seed",
            "2",
            "--json",
        ],
    );
    assert_ne!(
        a["test_metrics"], b["test_metrics"],
        "another split seed, another split"
    );
}
