//! Integration tests of `kiln train` and of `kiln eval` / `kiln predict` on its run folders:
//! the real binary in a temporary folder, tiny networks, a few dozen steps.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{fails, json, run_ok as ok};
use serde_json::Value;

/// Training losses of `history.jsonl`, in order.
fn train_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "train")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect()
}

const IRIS: &[&str] = &[
    "train",
    "mlp",
    "--dataset",
    "iris",
    "--hidden",
    "16",
    "--batch-size",
    "16",
    "--lr",
    "0.01",
    "--quiet",
    "--json",
];

fn args<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn mlp_on_iris_learns_and_writes_the_run_folder() {
    let t = tempfile::tempdir().unwrap();
    let v = json(t.path(), &args(IRIS, &["--steps", "80", "--out", "run"]));
    assert_eq!(v["steps"], 80);
    for key in ["wall_seconds", "samples_per_second"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert_eq!(v["run_dir"], "run");
    let val_acc = v["validation"]["accuracy"].as_f64().unwrap();
    assert!(val_acc >= 0.8, "validation accuracy {val_acc}");
    assert!(v["train"]["loss"].as_f64().unwrap() < 0.6, "{v}");
    assert_eq!(v["train"]["examples"], 120);
    assert_eq!(v["validation"]["examples"], 30);
    let run = t.path().join("run");
    for f in [
        "config.json",
        "history.jsonl",
        "checkpoints/latest.json",
        "model/config.json",
        "model/model.safetensors",
        "curves.png",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let losses = train_losses(&run);
    assert_eq!(losses.len(), 8);
    assert!(
        losses[7] < 0.5 * losses[0],
        "the training loss did not fall: {losses:?}"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["mlp"]["hidden"], serde_json::json!([16]));
    assert_eq!(config["optimizer"]["kind"], "adam");
}

#[test]
fn eval_and_predict_read_the_run_folder() {
    let t = tempfile::tempdir().unwrap();
    let v = json(t.path(), &args(IRIS, &["--steps", "80", "--out", "run"]));
    let e = json(
        t.path(),
        &["eval", "--model", "run", "--dataset", "iris", "--json"],
    );
    let acc = e["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.85, "eval accuracy {acc}");
    // eval over all 150 rows sits between the train (120) and validation (30) accuracies
    let (tr, va) = (
        v["train"]["accuracy"].as_f64().unwrap(),
        v["validation"]["accuracy"].as_f64().unwrap(),
    );
    let expect = (120.0 * tr + 30.0 * va) / 150.0;
    assert!(
        (acc - expect).abs() < 1e-9,
        "eval {acc} vs train/validation {expect}"
    );

    let out = ok(
        t.path(),
        &["predict", "--model", "run", "--dataset", "iris"],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 151);
    assert_eq!(
        lines[0],
        "prediction,proba_setosa,proba_versicolor,proba_virginica"
    );
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[0], "setosa");
    let p: f64 = first[1..].iter().map(|s| s.parse::<f64>().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-6, "probabilities sum to {p}");

    // the model folder inside the run folder loads as well
    ok(
        t.path(),
        &["eval", "--model", "run/model", "--dataset", "iris"],
    );
}

#[test]
fn resume_continues_exactly_and_same_seed_same_run() {
    let t = tempfile::tempdir().unwrap();
    let full = json(t.path(), &args(IRIS, &["--steps", "40", "--out", "full"]));
    let again = json(t.path(), &args(IRIS, &["--steps", "40", "--out", "again"]));
    assert_eq!(full["validation"], again["validation"]);
    assert_eq!(full["train"], again["train"]);

    let half = json(t.path(), &args(IRIS, &["--steps", "20", "--out", "half"]));
    assert_eq!(half["steps"], 20);
    let resumed = json(
        t.path(),
        &args(IRIS, &["--steps", "40", "--out", "half", "--resume"]),
    );
    assert_eq!(resumed["start_step"], 20);
    assert_eq!(resumed["steps"], 40);
    assert_eq!(resumed["validation"], full["validation"]);
    assert_eq!(resumed["train"], full["train"]);
    assert_eq!(train_losses(&t.path().join("half")).len(), 4);

    // another seed is another run
    let other = json(
        t.path(),
        &args(IRIS, &["--steps", "40", "--out", "other", "--seed", "7"]),
    );
    assert_ne!(other["train"], full["train"]);
}

#[test]
fn mlp_regression_on_diabetes_loss_falls() {
    let t = tempfile::tempdir().unwrap();
    let v = json(
        t.path(),
        &[
            "train",
            "mlp",
            "--dataset",
            "diabetes",
            "--hidden",
            "32,16",
            "--lr",
            "0.05",
            "--optimizer",
            "adamw",
            "--weight-decay",
            "0.01",
            "--schedule",
            "cosine",
            "--epochs",
            "20",
            "--out",
            "run",
            "--quiet",
            "--json",
        ],
    );
    assert!(v["train"].get("accuracy").is_none(), "{v}");
    let losses = train_losses(&t.path().join("run"));
    assert!(
        losses.last().unwrap() < &(0.3 * losses[0]),
        "the training loss did not fall: {losses:?}"
    );
    let e = json(
        t.path(),
        &["eval", "--model", "run", "--dataset", "diabetes", "--json"],
    );
    assert!(e["r2"].as_f64().unwrap() > 0.2, "{e}");
}

#[test]
fn progress_goes_to_stderr_unless_quiet() {
    let t = tempfile::tempdir().unwrap();
    let base = [
        "train",
        "mlp",
        "--dataset",
        "iris",
        "--hidden",
        "8",
        "--steps",
        "20",
    ];
    let out = ok(t.path(), &args(&base, &["--out", "a"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("step 10/20 loss"), "{err}");
    assert!(err.contains("eval step 20: val_loss"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("validation  loss"), "{text}");
    let out = ok(t.path(), &args(&base, &["--out", "b", "--quiet"]));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_and_exits_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args(IRIS, &["--steps", "10000000", "--out", "run"]))
        .current_dir(t.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let history = t.path().join("run/history.jsonl");
    let t0 = std::time::Instant::now();
    while !history.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(history.exists(), "training did not start");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interrupted"], true);
    let steps = v["steps"].as_u64().unwrap();
    assert!(steps > 0 && steps < 10_000_000, "{v}");
    let latest: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("run/checkpoints/latest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(latest["step"].as_u64(), Some(steps));
    // and the run continues from there
    let more = steps as usize + 5;
    let r = json(
        t.path(),
        &args(
            IRIS,
            &["--steps", &more.to_string(), "--out", "run", "--resume"],
        ),
    );
    assert_eq!(r["start_step"].as_u64(), Some(steps));
    assert_eq!(r["steps"].as_u64(), Some(steps + 5));
}

#[test]
fn bad_flags_and_data_give_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let tiny = ["--steps", "2"];
    let base = ["train", "mlp", "--dataset", "iris", "--hidden", "8"];
    let err = fails(p, &args(&base, &args(&tiny, &["--dropout", "1.5"])));
    assert!(err.contains("dropout") && err.contains("1.5"), "{err}");
    let err = fails(p, &args(&base[..4], &args(&tiny, &["--hidden", "8,0"])));
    assert!(err.contains("hidden[1] = 0"), "{err}");
    let err = fails(p, &args(&base, &args(&tiny, &["--lr", "-1"])));
    assert!(err.contains("lr"), "{err}");
    let err = fails(p, &args(&base, &args(&tiny, &["--batch-size", "0"])));
    assert!(err.contains("batch_size"), "{err}");
    let err = fails(p, &args(&base, &args(&tiny, &["--test-size", "1.5"])));
    assert!(err.contains("test_size"), "{err}");
    let err = fails(p, &args(&base, &args(&tiny, &["--activation", "swish"])));
    assert!(err.contains("swish"), "{err}");
    let err = fails(p, &args(&base, &args(&tiny, &["--optimizer", "lbfgs"])));
    assert!(err.contains("lbfgs"), "{err}");
    let err = fails(
        p,
        &["train", "mlp", "--data", "missing.csv", "--steps", "2"],
    );
    assert!(err.contains("missing.csv"), "{err}");
    let err = fails(
        p,
        &args(&base, &args(&tiny, &["--out", "nothing", "--resume"])),
    );
    assert!(err.contains("holds no run"), "{err}");
    // a finished run is not overwritten
    ok(p, &args(&base, &args(&tiny, &["--out", "run"])));
    let err = fails(p, &args(&base, &args(&tiny, &["--out", "run"])));
    assert!(err.contains("already holds a run"), "{err}");
    // resuming with other settings is refused
    let err = fails(
        p,
        &args(
            &base,
            &args(&tiny, &["--out", "run", "--resume", "--lr", "0.5"]),
        ),
    );
    assert!(err.contains("different configuration"), "{err}");
    // eval on a table without the model's features
    let err = fails(p, &["eval", "--model", "run", "--dataset", "diabetes"]);
    assert!(err.contains("sepal"), "{err}");
}

#[test]
fn cnn_on_digits_learns_and_eval_predict_read_it() {
    let t = tempfile::tempdir().unwrap();
    let v = json(
        t.path(),
        &[
            "train",
            "cnn",
            "--dataset",
            "digits",
            "--channels",
            "8,16",
            "--hidden",
            "32",
            "--lr",
            "0.01",
            "--steps",
            "100",
            "--out",
            "run",
            "--quiet",
            "--json",
        ],
    );
    assert_eq!(v["steps"], 100);
    let val_acc = v["validation"]["accuracy"].as_f64().unwrap();
    assert!(val_acc >= 0.9, "validation accuracy {val_acc}");
    let losses = train_losses(&t.path().join("run"));
    assert!(
        losses.last().unwrap() < &(0.5 * losses[0]),
        "the training loss did not fall: {losses:?}"
    );
    let model: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("run/model/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(model["kind"], "conv_stack");
    assert_eq!(model["model"]["image_size"], serde_json::json!([8, 8]));
    let e = json(
        t.path(),
        &["eval", "--model", "run", "--dataset", "digits", "--json"],
    );
    assert!(e["accuracy"].as_f64().unwrap() >= 0.8, "{e}");
    let out = ok(
        t.path(),
        &["predict", "--model", "run", "--dataset", "digits"],
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1798);
}

#[test]
fn cnn_rejects_tables_that_are_not_images() {
    let t = tempfile::tempdir().unwrap();
    let err = fails(
        t.path(),
        &["train", "cnn", "--dataset", "wine", "--steps", "2"],
    );
    assert!(
        err.contains("13 feature columns") && err.contains("--image-size"),
        "{err}"
    );
    let err = fails(
        t.path(),
        &[
            "train",
            "cnn",
            "--dataset",
            "digits",
            "--image-size",
            "4x4",
            "--steps",
            "2",
        ],
    );
    assert!(
        err.contains("16 pixel columns") && err.contains("64"),
        "{err}"
    );
    let err = fails(
        t.path(),
        &[
            "train",
            "cnn",
            "--dataset",
            "digits",
            "--image-size",
            "eight",
            "--steps",
            "2",
        ],
    );
    assert!(err.contains("HEIGHTxWIDTH"), "{err}");
    // three 2×2 pools shrink 8×8 to 1×1; a fourth has nothing left to pool
    let err = fails(
        t.path(),
        &[
            "train",
            "cnn",
            "--dataset",
            "digits",
            "--channels",
            "4,4,4,4",
            "--steps",
            "2",
        ],
    );
    assert!(err.contains("invalid CNN settings"), "{err}");
}

/// A small corpus of short words, the same every time.
fn corpus() -> String {
    let words = [
        "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "hat",
    ];
    let mut state = 12345u64;
    let mut out = Vec::new();
    for _ in 0..1500 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push(words[(state >> 33) as usize % words.len()]);
    }
    out.join(" ")
}

#[test]
fn char_lm_learns_and_generates_reproducibly() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("words.txt"), corpus()).unwrap();
    for (cell, out) in [("gru", "g"), ("lstm", "l")] {
        let v = json(
            t.path(),
            &[
                "train",
                cell,
                "--text",
                "words.txt",
                "--seq-len",
                "32",
                "--hidden-size",
                "48",
                "--embed-dim",
                "16",
                "--lr",
                "0.01",
                "--batch-size",
                "16",
                "--steps",
                "80",
                "--out",
                out,
                "--quiet",
                "--json",
            ],
        );
        assert_eq!(v["steps"], 80);
        let losses = train_losses(&t.path().join(out));
        assert!(
            losses.last().unwrap() < &(0.5 * losses[0]),
            "{cell}: the training loss did not fall: {losses:?}"
        );
    }
    let gen = |seed: &str| {
        let out = ok(
            t.path(),
            &[
                "generate",
                "text",
                "--model",
                "l",
                "--prompt",
                "the ",
                "--max-new-tokens",
                "40",
                "--temperature",
                "0.8",
                "--top-k",
                "5",
                "--seed",
                seed,
            ],
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let a = gen("1");
    assert!(a.starts_with("the "), "{a}");
    assert_eq!(a.trim_end_matches('\n').chars().count(), 44, "{a}");
    assert_eq!(a, gen("1"));
    assert_ne!(a, gen("2"));
    // only characters of the corpus come out
    assert!(
        a.trim_end()
            .chars()
            .all(|c| c == ' ' || c.is_ascii_lowercase()),
        "{a}"
    );
}

#[test]
fn char_lm_bad_input_gives_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    std::fs::write(p.join("words.txt"), corpus()).unwrap();
    std::fs::write(p.join("short.txt"), "tiny text").unwrap();
    let err = fails(p, &["train", "lstm", "--text", "short.txt", "--steps", "2"]);
    assert!(err.contains("too few for --seq-len 64"), "{err}");
    let err = fails(
        p,
        &["train", "lstm", "--text", "absent.txt", "--steps", "2"],
    );
    assert!(err.contains("absent.txt"), "{err}");
    let err = fails(
        p,
        &[
            "train",
            "rnn",
            "--text",
            "words.txt",
            "--hidden-size",
            "0",
            "--steps",
            "2",
        ],
    );
    assert!(err.contains("hidden_size"), "{err}");
    ok(
        p,
        &[
            "train",
            "rnn",
            "--text",
            "words.txt",
            "--hidden-size",
            "8",
            "--steps",
            "2",
            "--out",
            "lm",
            "--quiet",
        ],
    );
    let gen = |extra: &[&str]| {
        let mut a = vec!["generate", "text", "--model", "lm"];
        a.extend_from_slice(extra);
        fails(p, &a)
    };
    let err = gen(&["--prompt", "Zebra"]);
    assert!(err.contains("'Z'") && err.contains("vocabulary"), "{err}");
    let err = gen(&["--prompt", "the", "--temperature", "-1"]);
    assert!(err.contains("temperature"), "{err}");
    let err = gen(&["--prompt", ""]);
    assert!(err.contains("prompt"), "{err}");
    // an MLP run folder is not a language model
    ok(
        p,
        &[
            "train",
            "mlp",
            "--dataset",
            "iris",
            "--steps",
            "2",
            "--out",
            "mlp",
            "--quiet",
        ],
    );
    let err = fails(
        p,
        &["generate", "text", "--model", "mlp", "--prompt", "the"],
    );
    assert!(err.contains("char_lm"), "{err}");
}

/// The repository's MNIST copy (`data/mnist`).
fn mnist_dir() -> String {
    format!("{}/../../data/mnist", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn lenet5_on_mnist_learns() {
    let t = tempfile::tempdir().unwrap();
    let dir = mnist_dir();
    let v = json(
        t.path(),
        &[
            "train", "cnn", "--arch", "lenet5", "--mnist", &dir, "--limit", "600", "--lr", "0.003",
            "--steps", "40", "--out", "run", "--quiet", "--json",
        ],
    );
    assert_eq!(v["steps"], 40);
    let acc = v["validation"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.6, "validation accuracy {acc}");
    let losses = train_losses(&t.path().join("run"));
    assert!(
        losses.last().unwrap() < &(0.5 * losses[0]),
        "the training loss did not fall: {losses:?}"
    );
    let model: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("run/model/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(model["kind"], "lenet5");
    assert_eq!(model["features"].as_array().unwrap().len(), 784);
    // pixels 0..255 are divided by 255 before the network, as in training
    assert_eq!(model["preprocessing"]["scale"][0], 255.0);
    // The MNIST recipe fills the flags left out; --lr was given.
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("run/config.json")).unwrap())
            .unwrap();
    assert_eq!(run["batch_size"], 64);
    assert_eq!(run["schedule"]["kind"], "cosine");
    assert_eq!(run["optimizer"]["lr"], 0.003);
    // A 56×56 image is shrunk to 28×28 and mapped to 0..255, MNIST's range.
    image::GrayImage::from_fn(56, 56, |x, y| {
        image::Luma([if (20..36).contains(&x) && y > 8 && y < 48 {
            255
        } else {
            0
        }])
    })
    .save(t.path().join("one.png"))
    .unwrap();
    let p = json(
        t.path(),
        &["predict", "--model", "run", "--image", "one.png", "--json"],
    );
    assert_eq!(p["pixel_max"], 255.0);
    assert_eq!(p["input"]["width"], 28);
    assert_eq!(p["inverted"], false);
    assert_eq!(p["probabilities"].as_array().unwrap().len(), 10);
}

#[test]
fn lenet5_needs_28_or_32_pixel_images() {
    let t = tempfile::tempdir().unwrap();
    let err = fails(
        t.path(),
        &[
            "train",
            "cnn",
            "--arch",
            "lenet5",
            "--dataset",
            "digits",
            "--steps",
            "2",
        ],
    );
    assert!(err.contains("8×8") && err.contains("28 or 32"), "{err}");
    let err = fails(
        t.path(),
        &["train", "cnn", "--mnist", "no-such-folder", "--steps", "2"],
    );
    assert!(err.contains("no-such-folder"), "{err}");
    let err = fails(
        t.path(),
        &[
            "train",
            "cnn",
            "--mnist",
            "no-such-folder",
            "--stratify",
            "--steps",
            "2",
        ],
    );
    assert!(err.contains("do not apply"), "{err}");
    let err = fails(t.path(), &["train", "cnn", "--steps", "2"]);
    assert!(err.contains("--data"), "{err}");
}

#[test]
fn mlp_trains_on_a_csv_file() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    ok(p, &["datasets", "export", "diabetes", "--out", "d.csv"]);
    // a CSV's target is read as class labels unless --task regression
    let err = fails(
        p,
        &[
            "train", "mlp", "--data", "d.csv", "--steps", "2", "--out", "c",
        ],
    );
    assert!(
        err.contains("--task regression") && err.contains("distinct values"),
        "{err}"
    );
    let v = json(
        p,
        &[
            "train",
            "mlp",
            "--data",
            "d.csv",
            "--task",
            "regression",
            "--hidden",
            "16",
            "--lr",
            "0.05",
            "--epochs",
            "10",
            "--out",
            "run",
            "--quiet",
            "--json",
        ],
    );
    assert!(v["validation"].get("accuracy").is_none(), "{v}");
    let losses = train_losses(&p.join("run"));
    assert!(losses.last().unwrap() < &(0.5 * losses[0]), "{losses:?}");
    let out = ok(p, &["predict", "--model", "run", "--data", "d.csv"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().next(), Some("prediction"));
    assert_eq!(text.lines().count(), 443);
}
