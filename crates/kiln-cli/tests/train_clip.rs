//! `kiln train clip`: a tiny run end to end (retrieval and hard-negative figures, a model
//! folder that loads), resume, clear errors.

mod common;
use common::{fails, json};

/// A tiny CLIP on a few pictures, quick to train.
const TINY: [&str; 18] = [
    "--train-size",
    "16",
    "--val-size",
    "12",
    "--text-width",
    "16",
    "--text-layers",
    "1",
    "--text-heads",
    "2",
    "--channels",
    "4",
    "--image-hidden",
    "8",
    "--embed-dim",
    "8",
    "--batch-size",
    "8",
];

#[test]
fn clip_trains_reports_retrieval_and_hard_negatives_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ["train", "clip"].to_vec();
    args.extend(TINY);
    args.extend([
        "--retrieval-batch",
        "4",
        "--hard-negatives",
        "--quiet",
        "--json",
        "--out",
        "run",
    ]);
    let mut a = args.clone();
    a.extend(["--steps", "2"]);
    let v = json(dir.path(), &a);
    let r = &v["validation"]["retrieval"];
    assert_eq!(
        (r["pictures"].as_u64(), r["batch"].as_u64()),
        (Some(12), Some(4))
    );
    for k in ["image_to_text", "text_to_image", "image_to_text_exact"] {
        let x = r[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{k}: {x}");
    }
    for key in ["hard_negatives", "hard_negatives_held_out"] {
        let h = v["validation"][key].as_array().unwrap();
        let names: Vec<&str> = h.iter().map(|x| x["attribute"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["colour", "shape", "size", "position", "swap"],
            "{key}"
        );
    }
    assert_eq!(v["validation"]["hard_negatives"][0]["pairs"], 12);
    assert_eq!(v["validation"]["hard_negatives_held_out"][0]["pairs"], 256);
    // the model folder loads and scores
    let clip = kiln_models::clip::Clip::load(&dir.path().join("run/model")).unwrap();
    let s = clip.score("a red circle", &[0u8; 2 * 3072], 2).unwrap();
    assert_eq!(s.len(), 2);

    let mut b = args.clone();
    b.extend(["--steps", "3", "--resume"]);
    let v = json(dir.path(), &b);
    assert_eq!(
        (v["start_step"].as_u64(), v["steps"].as_u64()),
        (Some(2), Some(3))
    );

    let e = fails(
        dir.path(),
        &["train", "clip", "--dataset", "digits", "--out", "d"],
    );
    assert!(e.contains("--dataset digits needs --mnist DIR"), "{e}");
    let e = fails(
        dir.path(),
        &["train", "clip", "--text-heads", "5", "--out", "h"],
    );
    assert!(e.contains("text_heads"), "{e}");
    let e = fails(
        dir.path(),
        &[
            "train",
            "clip",
            "--dataset",
            "digits",
            "--mnist",
            "x",
            "--hard-negatives",
            "--out",
            "n",
        ],
    );
    assert!(e.contains("--hard-negatives needs --dataset shapes"), "{e}");
}

#[test]
fn a_where_what_clip_trains_on_object_captions_and_bad_shares_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ["train", "clip"].to_vec();
    args.extend(TINY);
    args.extend([
        "--image-head",
        "where-what",
        "--object-captions",
        "1",
        "--hard-negatives",
        "--steps",
        "2",
        "--quiet",
        "--json",
        "--out",
        "run",
    ]);
    let v = json(dir.path(), &args);
    assert_eq!(v["steps"].as_u64(), Some(2));
    let clip = kiln_models::clip::Clip::load(&dir.path().join("run/model")).unwrap();
    assert_eq!(
        clip.config().image_head,
        kiln_models::clip::ImageHead::WhereWhat
    );
    let s = clip
        .score(
            "a small red circle in the top left and a large blue star in the center",
            &[0u8; 2 * 3072],
            2,
        )
        .unwrap();
    assert!(s.iter().all(|x| (-1.0..=1.0).contains(x)), "{s:?}");
    for share in ["--object-captions=1.5", "--object-captions=-0.1"] {
        let e = fails(dir.path(), &["train", "clip", share, "--out", "o"]);
        assert!(
            e.contains("--object-captions: expected a share in [0, 1], got"),
            "{e}"
        );
    }
}
