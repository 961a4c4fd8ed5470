//! `kiln train vqvae` and `kiln train judge`: tiny runs end to end, resume, clear errors.

mod common;
use common::{fails, json, run_ok};

#[test]
fn vqvae_trains_reports_reconstruction_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "vqvae",
        "--train-size",
        "16",
        "--val-size",
        "8",
        "--hidden",
        "8",
        "--embed-dim",
        "4",
        "--codebook-size",
        "8",
        "--batch-size",
        "8",
        "--quiet",
        "--json",
        "--out",
        "run",
    ];
    let mut a = args.to_vec();
    a.extend(["--steps", "2"]);
    let v = json(dir.path(), &a);
    let r = &v["validation"]["reconstruction"];
    assert_eq!(r["codebook_size"], 8);
    assert!(
        r["psnr"].as_f64().unwrap() > 0.0 && r["mse"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert!(dir.path().join("run/model/model.safetensors").is_file());
    let mut b = args.to_vec();
    b.extend(["--steps", "3", "--resume"]);
    let v = json(dir.path(), &b);
    assert_eq!(
        (v["start_step"].as_u64(), v["steps"].as_u64()),
        (Some(2), Some(3))
    );
    let e = fails(
        dir.path(),
        &["train", "vqvae", "--dataset", "digits", "--out", "d"],
    );
    assert!(e.contains("--dataset digits needs --mnist DIR"), "{e}");
    let e = fails(
        dir.path(),
        &["train", "vqvae", "--codebook-size", "1", "--out", "c"],
    );
    assert!(e.contains("codebook_size"), "{e}");
}

#[test]
fn judge_trains_and_reports_attribute_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let v = json(
        dir.path(),
        &[
            "train",
            "judge",
            "--train-size",
            "16",
            "--val-size",
            "8",
            "--channels",
            "4",
            "--hidden",
            "8",
            "--batch-size",
            "8",
            "--steps",
            "2",
            "--jitter",
            "2",
            "--small-jitter",
            "1",
            "--quiet",
            "--json",
            "--out",
            "run",
        ],
    );
    let j = &v["validation"]["judge"];
    for k in ["presence", "shape", "colour", "size", "pictures_all_right"] {
        let a = j[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{k}: {a}");
    }
    assert_eq!(j["counts"]["cells"], 72);
    let out = run_ok(dir.path(), &["train", "judge", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--two-object-fraction"));
    // the placement is recorded with the run, and an impossible one named
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (&run["model"]["jitter"], &run["model"]["small_jitter"]),
        (&serde_json::json!(2.0), &serde_json::json!(1.0)),
        "{run}"
    );
    let e = fails(
        dir.path(),
        &["train", "judge", "--jitter", "2.5", "--out", "bad"],
    );
    assert!(e.contains("jitter") && e.contains("[0, 2]"), "{e}");
}
