//! Integration tests of `kiln predict --image` and `kiln eval --plot` on trained networks:
//! PNG files drawn here from the built-in digits, the real binary in a temporary folder.

mod common;

use std::path::Path;

use common::{fails, json, run_ok};

/// Train a small CNN (`cnn`) and an MLP (`mlp`) on all of the digits, quickly.
fn train_nets(d: &Path) {
    let common = ["--test-size", "0.1", "--quiet", "--json", "--seed", "3"];
    let cnn = [
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
        "150",
        "--out",
        "cnn",
    ];
    let v = json(d, &[&cnn[..], &common].concat());
    assert!(v["validation"]["accuracy"].as_f64().unwrap() >= 0.9, "{v}");
    let mlp = [
        "train",
        "mlp",
        "--dataset",
        "digits",
        "--hidden",
        "64",
        "--lr",
        "0.01",
        "--steps",
        "150",
        "--out",
        "mlp",
    ];
    let v = json(d, &[&mlp[..], &common].concat());
    assert!(v["validation"]["accuracy"].as_f64().unwrap() >= 0.9, "{v}");
}

/// Digit images of the built-in dataset: (label, 8×8 pixels 0..16) for the first `n` rows.
fn digits(n: usize) -> Vec<(usize, Vec<f64>)> {
    let ds = kiln_data::builtin::load("digits").unwrap();
    let labels = ds.labels();
    (0..n).map(|i| (labels[i], ds.x.row(i).to_vec())).collect()
}

/// Write `pixels` (8×8, 0..16, light on dark) as a `scale`-times larger gray PNG; with
/// `paper`, as dark ink on white paper.
fn write_png(path: &Path, pixels: &[f64], scale: u32, paper: bool) {
    let img = image::GrayImage::from_fn(8 * scale, 8 * scale, |x, y| {
        let v = pixels[((y / scale) * 8 + x / scale) as usize] / 16.0 * 255.0;
        image::Luma([if paper { 255.0 - v } else { v }.round() as u8])
    });
    img.save(path).unwrap();
}

#[test]
fn predict_image_classifies_drawn_digits() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    train_nets(d);
    let rows = digits(20);
    for model in ["cnn", "mlp"] {
        let mut right = [0usize; 2];
        for (i, (label, px)) in rows.iter().enumerate() {
            // The same digit as an exact 8×8 light-on-dark image and as a 40×40 dark-on-white
            // one: the second needs the resize and the automatic inversion.
            let small = format!("d{i}.png");
            let big = format!("d{i}_paper.png");
            write_png(&d.join(&small), px, 1, false);
            write_png(&d.join(&big), px, 5, true);
            for (k, file) in [small, big].iter().enumerate() {
                let v = json(d, &["predict", "--model", model, "--image", file, "--json"]);
                assert_eq!(v["inverted"], k == 1, "{v}");
                assert_eq!(v["pixel_max"], 16.0);
                assert_eq!(v["input"]["height"], 8);
                let p: Vec<f64> = v["probabilities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                assert_eq!(p.len(), 10);
                assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{v}");
                let best = v["class_index"].as_u64().unwrap() as usize;
                assert!(p.iter().all(|&q| q <= p[best]), "{v}");
                assert_eq!(v["class"], best.to_string());
                right[k] += usize::from(best == *label);
            }
        }
        // Mostly training images: the network knows them; the drawn copy must agree.
        assert!(right[0] >= 18, "{model}: {right:?} of 20");
        // Shrinking 5×5 blocks by area averaging gives back the 8×8 image.
        assert_eq!(right[1], right[0], "{model}");
    }
    // --invert no reads a dark-on-white image as it is.
    let v = json(
        d,
        &[
            "predict",
            "--model",
            "cnn",
            "--image",
            "d0_paper.png",
            "--invert",
            "no",
            "--json",
        ],
    );
    assert_eq!(v["inverted"], false);
    // Text output names the class and every probability.
    let out = run_ok(d, &["predict", "--model", "cnn", "--image", "d0.png"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("class {}", rows[0].0)) && text.contains("p(9)"),
        "{text}"
    );
}

#[test]
fn predict_image_errors_are_clear() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    run_ok(
        d,
        &[
            "train",
            "mlp",
            "--dataset",
            "digits",
            "--hidden",
            "8",
            "--steps",
            "5",
            "--out",
            "mlp",
            "--quiet",
        ],
    );
    std::fs::write(d.join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    std::fs::write(d.join("text.png"), b"hello").unwrap();
    write_png(&d.join("ok.png"), &[8.0; 64], 1, false);
    for bad in ["corrupt.png", "text.png"] {
        let err = fails(d, &["predict", "--model", "mlp", "--image", bad]);
        assert!(
            err.contains("cannot decode the image") && err.contains(bad),
            "{err}"
        );
    }
    let err = fails(d, &["predict", "--model", "mlp", "--image", "missing.png"]);
    assert!(
        err.contains("cannot read the image") && err.contains("missing.png"),
        "{err}"
    );
    let err = fails(
        d,
        &[
            "predict",
            "--model",
            "mlp",
            "--image",
            "ok.png",
            "--pixel-max",
            "0",
        ],
    );
    assert!(err.contains("--pixel-max 0"), "{err}");
    // Models that do not read images.
    run_ok(
        d,
        &[
            "fit",
            "tree",
            "--dataset",
            "iris",
            "--save",
            "tree",
            "--json",
        ],
    );
    let err = fails(d, &["predict", "--model", "tree", "--image", "ok.png"]);
    assert!(
        err.contains("decision_tree") && err.contains("not an image classifier"),
        "{err}"
    );
    run_ok(
        d,
        &[
            "train",
            "mlp",
            "--dataset",
            "iris",
            "--hidden",
            "4",
            "--steps",
            "5",
            "--out",
            "iris",
            "--quiet",
        ],
    );
    let err = fails(d, &["predict", "--model", "iris", "--image", "ok.png"]);
    assert!(err.contains("not an image classifier"), "{err}");
    // --image replaces the table flags.
    let err = fails(
        d,
        &[
            "predict",
            "--model",
            "mlp",
            "--image",
            "ok.png",
            "--dataset",
            "digits",
        ],
    );
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn eval_plot_draws_the_confusion_matrix_of_a_network() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    run_ok(
        d,
        &[
            "train",
            "cnn",
            "--dataset",
            "digits",
            "--channels",
            "4",
            "--hidden",
            "16",
            "--steps",
            "30",
            "--lr",
            "0.01",
            "--out",
            "cnn",
            "--quiet",
        ],
    );
    let out = run_ok(
        d,
        &[
            "eval",
            "--model",
            "cnn",
            "--dataset",
            "digits",
            "--plot",
            "cm.png",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["accuracy"].as_f64().unwrap() > 0.5, "{v}");
    let img = image::open(d.join("cm.png")).unwrap();
    assert!(img.width() >= 300 && img.height() >= 300);
    // A 10×10 heatmap: dark (many) cells on the diagonal, so the picture is not blank.
    let gray = img.to_luma8();
    let dark = gray.pixels().filter(|p| p.0[0] < 100).count();
    assert!(dark > 1000, "{dark} dark pixels");
    // Regressors get predicted vs actual.
    run_ok(
        d,
        &[
            "fit",
            "linear",
            "--dataset",
            "diabetes",
            "--save",
            "lin",
            "--json",
        ],
    );
    run_ok(
        d,
        &[
            "eval",
            "--model",
            "lin",
            "--dataset",
            "diabetes",
            "--plot",
            "pva.png",
        ],
    );
    assert!(image::open(d.join("pva.png")).is_ok());
    let err = fails(
        d,
        &[
            "eval",
            "--model",
            "cnn",
            "--dataset",
            "digits",
            "--plot",
            "no/such/dir/cm.png",
        ],
    );
    assert!(err.contains("cannot draw"), "{err}");
}
