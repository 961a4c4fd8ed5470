//! The CLIP reranker: the loss against PyTorch, word order, learning, reproducibility,
//! save/load, hard negatives, clear errors.

use candle_core::{DType, Device, Tensor, Var};
use kiln_data::shapes::{
    caption, generate, is_held_out, Cell, Colour, ShapeKind, ShapeObject, ShapesParams, Size,
};
use kiln_models::clip::measure::{
    hard_negative, hard_negatives, prompt_fits, retrieval, template_of, Attribute,
};
use kiln_models::clip::*;
use kiln_models::vqvae::images_to_tensor;
use kiln_nn::init::SeededVarMap;
use kiln_nn::optim::{AdamConfig, OptimizerConfig};
use kiln_nn::{Mode, TrainStep};
use kiln_train::data::TensorData;
use kiln_train::progress::Silent;
use kiln_train::{trainer, RunOptions, TrainConfig};
use serde_json::Value;

fn tiny() -> ClipConfig {
    ClipConfig {
        text_width: 32,
        text_layers: 1,
        text_heads: 2,
        channels: 8,
        image_hidden: 32,
        embed_dim: 16,
        ..Default::default()
    }
}

fn where_what() -> ClipConfig {
    ClipConfig {
        image_head: ImageHead::WhereWhat,
        ..tiny()
    }
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let (n, d) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn the_loss_and_its_gradients_match_pytorch() {
    let text = include_str!("fixtures/clip_loss.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    for (k, case) in fixture["cases"].as_array().unwrap().iter().enumerate() {
        let img = Var::from_tensor(&matrix(&case["images"])).unwrap();
        let txt = Var::from_tensor(&matrix(&case["texts"])).unwrap();
        let ls = Var::from_tensor(
            &Tensor::new(case["logit_scale"].as_f64().unwrap() as f32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let scale = ls
            .as_tensor()
            .clamp(f32::MIN, MAX_LOGIT_SCALE as f32)
            .unwrap()
            .exp()
            .unwrap();
        let loss = clip_loss(
            &normalize(img.as_tensor()).unwrap(),
            &normalize(txt.as_tensor()).unwrap(),
            &scale,
        )
        .unwrap();
        let got = loss.to_scalar::<f32>().unwrap();
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!((got - want).abs() < 1e-5, "case {k}: loss {got} vs {want}");
        let grads = loss.backward().unwrap();
        let gi = grads.get(img.as_tensor()).unwrap();
        let gt = grads.get(txt.as_tensor()).unwrap();
        let (di, dt) = (
            max_abs_diff(gi, &matrix(&case["grad_images"])),
            max_abs_diff(gt, &matrix(&case["grad_texts"])),
        );
        // Relative to the gradients' size: at the clamped scale (100) the logits reach 100 and
        // the fused softmax-cross-entropy sums in another order than PyTorch (an f32 ulp or so).
        let size = |m: &Value| {
            m.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap().abs())
                })
                .fold(1.0f64, f64::max) as f32
        };
        let (si, st) = (size(&case["grad_images"]), size(&case["grad_texts"]));
        assert!(
            di < 1e-5 * si,
            "case {k}: picture gradients differ by {di} (size {si})"
        );
        assert!(
            dt < 1e-5 * st,
            "case {k}: caption gradients differ by {dt} (size {st})"
        );
        let gl = grads
            .get(ls.as_tensor())
            .map(|g| g.to_scalar::<f32>().unwrap())
            .unwrap_or(0.0);
        let want = case["grad_logit_scale"].as_f64().unwrap() as f32;
        assert!((gl - want).abs() < 1e-5, "case {k}: {gl} vs {want}");
    }
}

/// Pictures (n, 3, 32, 32) and caption ids (n, T) of `n` generated samples.
fn batch(clip: &Clip, n: usize, seed: u64) -> (Tensor, Tensor, Vec<String>, Vec<u8>) {
    batch_of(clip, n, seed, ShapesParams::default().two_object_fraction)
}

/// [`batch`] with a share `two` of two-object pictures.
fn batch_of(clip: &Clip, n: usize, seed: u64, two: f64) -> (Tensor, Tensor, Vec<String>, Vec<u8>) {
    let s = generate(
        &ShapesParams {
            n,
            two_object_fraction: two,
            ..Default::default()
        },
        seed,
    )
    .unwrap();
    let bytes: Vec<u8> = s.iter().flat_map(|x| x.image.iter().copied()).collect();
    let caps: Vec<String> = s.iter().map(|x| x.caption.clone()).collect();
    let x = images_to_tensor(&bytes, n, 3, 32).unwrap();
    (x, clip.tokenize(&caps).unwrap(), caps, bytes)
}

#[test]
fn the_model_loss_is_the_clip_loss_of_its_embeddings() {
    let vars = SeededVarMap::new(0);
    let clip = Clip::new(tiny(), &vars).unwrap();
    let (x, y, _, _) = batch(&clip, 6, 1);
    let got = clip
        .loss(&(x.clone(), y.clone()), &Mode::eval())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // the reference with plain candle ops: logits, log-softmax by hand, both directions
    let img = clip.encode_images(&x).unwrap();
    let txt = clip.encode_text(&y, &Mode::eval()).unwrap();
    let s = clip.scale().unwrap() as f64;
    let logits = (img.matmul(&txt.t().unwrap()).unwrap() * s).unwrap();
    let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    let ce = |m: &dyn Fn(usize, usize) -> f32| -> f32 {
        (0..6)
            .map(|i| {
                let lse = (0..6).map(|j| m(i, j).exp()).sum::<f32>().ln();
                lse - m(i, i)
            })
            .sum::<f32>()
            / 6.0
    };
    let want = 0.5 * (ce(&|i, j| rows[i][j]) + ce(&|i, j| rows[j][i]));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // with hard negatives (B, 2, T) the loss is the same function with M = 2B captions
    let flipped = y.flip(&[0]).unwrap();
    let y2 = Tensor::stack(&[&y, &flipped], 1).unwrap();
    let with = clip
        .loss(&(x.clone(), y2.clone()), &Mode::eval())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let rows2 = Tensor::cat(&[&y, &flipped], 0).unwrap();
    let txt2 = clip.encode_text(&rows2, &Mode::eval()).unwrap();
    let scale = Tensor::new(clip.scale().unwrap(), &Device::Cpu).unwrap();
    let want2 = clip_loss(&img, &txt2, &scale)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        (with - want2).abs() < 1e-6 && with > got,
        "{with} {want2} {got}"
    );
    assert!(got.is_finite() && got > 0.0, "{got}");
}

#[test]
fn the_text_encoder_sees_word_order_and_ignores_padding() {
    let vars = SeededVarMap::new(3);
    let clip = Clip::new(tiny(), &vars).unwrap();
    let a = "a red circle and a blue square";
    let b = "a blue circle and a red square";
    let e = clip.embed_captions(&[a, b]).unwrap();
    let d = max_abs_diff(&e.narrow(0, 0, 1).unwrap(), &e.narrow(0, 1, 1).unwrap());
    assert!(d > 1e-3, "same embedding for swapped colours ({d})");
    // a short caption alone and padded beside a long one: the same embedding
    let short = "a red circle";
    let long = "top left: a blue square, small and bottom right: a yellow triangle, large";
    let alone = clip.embed_captions(&[short]).unwrap();
    let padded = clip.embed_captions(&[long, short]).unwrap();
    let d = max_abs_diff(&alone, &padded.narrow(0, 1, 1).unwrap());
    assert!(d < 1e-5, "{d}");
    // unit length
    let norms: Vec<f32> = padded
        .sqr()
        .unwrap()
        .sum(1)
        .unwrap()
        .sqrt()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
}

/// Train `clip` (whose weights are `vars`) for `steps` on `n` pictures of `seed`.
fn train(clip: &Clip, vars: &SeededVarMap, n: usize, steps: usize, seed: u64) {
    train_on(clip, vars, batch(clip, n, seed), steps, seed)
}

/// Train `clip` for `steps` on the batch `b`.
fn train_on(
    clip: &Clip,
    vars: &SeededVarMap,
    b: (Tensor, Tensor, Vec<String>, Vec<u8>),
    steps: usize,
    seed: u64,
) {
    let (x, y, _, _) = b;
    let n = x.dim(0).unwrap();
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            ..Default::default()
        }),
        batch_size: n,
        steps: Some(steps),
        seed,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    trainer::train(
        clip,
        vars.var_map(),
        &TensorData::new(x, y).unwrap(),
        None,
        &cfg,
        &RunOptions::new(dir.path()),
        &mut Silent,
    )
    .unwrap();
}

#[test]
fn a_tiny_model_learns_to_rank_each_pictures_own_caption_first() {
    learns_to_rank_own_captions_first(tiny(), ShapesParams::default().two_object_fraction, 100);
}

#[test]
fn a_tiny_where_what_model_learns_to_rank_each_pictures_own_caption_first() {
    // one object per picture: a where-what model scores two fully described objects one by
    // one, and learns one-object captions of two-object pictures from `--object-captions`
    learns_to_rank_own_captions_first(where_what(), 0.0, 200);
}

fn learns_to_rank_own_captions_first(config: ClipConfig, two: f64, steps: usize) {
    let vars = SeededVarMap::new(5);
    let clip = Clip::new(config, &vars).unwrap();
    let n = 8;
    let b = batch_of(&clip, n, 11, two);
    let (caps, bytes) = (b.2.clone(), b.3.clone());
    let ranked_first = |clip: &Clip| -> usize {
        (0..n)
            .filter(|&i| {
                let pic = &bytes[i * PICTURE_BYTES..(i + 1) * PICTURE_BYTES];
                let s: Vec<f32> = caps
                    .iter()
                    .map(|c| clip.score(c, pic, 1).unwrap()[0])
                    .collect();
                (0..n).all(|j| j == i || s[i] > s[j])
            })
            .count()
    };
    let before = ranked_first(&clip);
    train_on(&clip, &vars, b, steps, 11);
    let after = ranked_first(&clip);
    assert_eq!(
        after, n,
        "own caption first for {after}/{n} (before training {before})"
    );
    assert!(before < n);
}

#[test]
fn same_seed_same_model_and_save_load_gives_identical_scores() {
    for config in [tiny(), where_what()] {
        same_seed_same_model_and_round_trip(config);
    }
}

fn same_seed_same_model_and_round_trip(config: ClipConfig) {
    let (_, _, caps, bytes) = {
        let v = SeededVarMap::new(0);
        batch(&Clip::new(tiny(), &v).unwrap(), 4, 21)
    };
    let fresh = |seed: u64| {
        let vars = SeededVarMap::new(seed);
        let clip = Clip::new(config.clone(), &vars).unwrap();
        train(&clip, &vars, 4, 3, 21);
        clip
    };
    let (a, b, c) = (fresh(7), fresh(7), fresh(8));
    let sa = a.score(&caps[0], &bytes, 4).unwrap();
    assert_eq!(sa, b.score(&caps[0], &bytes, 4).unwrap());
    assert_ne!(sa, c.score(&caps[0], &bytes, 4).unwrap());
    assert_eq!(sa.len(), 4);
    assert!(sa.iter().all(|s| (-1.0..=1.0).contains(s)));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip");
    a.save(&path).unwrap();
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["kind"], "clip");
    assert_eq!(cfg["model"]["words"][0], "<pad>");
    let back = Clip::load(&path).unwrap();
    for cap in &caps {
        assert_eq!(
            a.score(cap, &bytes, 4).unwrap(),
            back.score(cap, &bytes, 4).unwrap()
        );
    }
    assert_eq!(a.scale().unwrap(), back.scale().unwrap());
    assert_eq!(back.config(), a.config());
    // saving the loaded model writes the same tensors
    back.save(&dir.path().join("again")).unwrap();
    assert_eq!(
        std::fs::read(path.join("model.safetensors")).unwrap(),
        std::fs::read(dir.path().join("again/model.safetensors")).unwrap()
    );
    assert!(a.score(&caps[0], &[], 0).unwrap().is_empty());
}

#[test]
fn a_folder_written_before_the_where_what_head_loads_as_flat() {
    let vars = SeededVarMap::new(1);
    let clip = Clip::new(tiny(), &vars).unwrap();
    let dir = tempfile::tempdir().unwrap();
    clip.save(dir.path()).unwrap();
    let path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(cfg["model"]["image_head"], "flat");
    cfg["model"].as_object_mut().unwrap().remove("image_head");
    std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(
        Clip::load(dir.path()).unwrap().config().image_head,
        ImageHead::Flat
    );
}

#[test]
fn similarities_are_cosines_or_where_weighted_means_of_location_cosines() {
    for config in [tiny(), where_what()] {
        let head = config.image_head;
        let vars = SeededVarMap::new(2);
        let clip = Clip::new(config, &vars).unwrap();
        let n = 5;
        let (x, y, _, _) = batch(&clip, n, 3);
        let img = clip.encode_images(&x).unwrap();
        let txt = clip.encode_text(&y, &Mode::eval()).unwrap();
        let sim: Vec<Vec<f32>> = clip.similarity(&img, &txt).unwrap().to_vec2().unwrap();
        let t: Vec<Vec<f32>> = txt.to_vec2().unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        // the reference by hand, from the embeddings' definitions
        let want = |i: usize, j: usize| -> f32 {
            match head {
                ImageHead::Flat => dot(&img.to_vec2::<f32>().unwrap()[i], &t[j]),
                ImageHead::WhereWhat => {
                    let v: Vec<Vec<Vec<f32>>> = img.to_vec3().unwrap();
                    let (what, place) = t[j].split_at(16);
                    assert_eq!(place.len(), WHERE_LOCATIONS);
                    assert!((place.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                    assert!(place.iter().all(|&p| p > 0.0));
                    for loc in &v[i] {
                        assert!((dot(loc, loc) - 1.0).abs() < 1e-4);
                    }
                    (0..WHERE_LOCATIONS)
                        .map(|l| place[l] * dot(&v[i][l], what))
                        .sum()
                }
            }
        };
        let pair: Vec<f32> = clip.pair_similarity(&img, &txt).unwrap().to_vec1().unwrap();
        for (i, row) in sim.iter().enumerate() {
            for (j, &got) in row.iter().enumerate() {
                let w = want(i, j);
                assert!((got - w).abs() < 1e-5, "{head:?} ({i}, {j}): {got} vs {w}");
                assert!((-1.0..=1.0).contains(&got));
            }
            assert!((pair[i] - row[i]).abs() < 1e-5);
        }
        assert_eq!((sim.len(), sim[0].len()), (n, n));
        // the training loss is the CLIP loss of these similarities
        let scale = Tensor::new(clip.scale().unwrap(), &Device::Cpu).unwrap();
        let got = clip
            .loss(&(x, y), &Mode::eval())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = clip_loss_of_similarities(&clip.similarity(&img, &txt).unwrap(), &scale)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - want).abs() < 1e-6, "{head:?}: {got} vs {want}");
    }
}

#[test]
fn a_where_what_model_scores_a_caption_of_several_objects_object_by_object() {
    let vars = SeededVarMap::new(4);
    let clip = Clip::new(where_what(), &vars).unwrap();
    let (_, _, _, bytes) = batch(&clip, 6, 9);
    let objects = [
        ShapeObject {
            shape: ShapeKind::Square,
            colour: Colour::Blue,
            size: Size::Small,
            cell: Cell(0),
        },
        ShapeObject {
            shape: ShapeKind::Star,
            colour: Colour::Green,
            size: Size::Large,
            cell: Cell(8),
        },
    ];
    let one = |o: &ShapeObject| clip.score(&caption(&[*o], 0).text, &bytes, 6).unwrap();
    let (a, b) = (one(&objects[0]), one(&objects[1]));
    for template in [1, 2] {
        let whole = caption(&objects, template).text;
        let s = clip.score(&whole, &bytes, 6).unwrap();
        for k in 0..6 {
            assert!(
                (s[k] - (a[k] + b[k]) / 2.0).abs() < 1e-5,
                "{whole:?}: {s:?}"
            );
        }
    }
    // a caption that leaves sizes and places open is scored as a whole
    let open = caption(&objects, 0).text;
    let e = clip.embed_captions(&[open.as_str()]).unwrap();
    let v = clip.embed_pictures(&bytes, 6).unwrap();
    let whole: Vec<f32> = clip
        .similarity(&v, &e)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(clip.score(&open, &bytes, 6).unwrap(), whole);
    // unknown words are named, whatever the caption's form
    let err = clip
        .score(
            "a small plaid square in the top left and a large green star in the bottom right",
            &bytes,
            6,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"plaid\""), "{err}");
}

#[test]
fn the_default_model_fits_in_three_megabytes() {
    let vars = SeededVarMap::new(0);
    let _clip = Clip::new(ClipConfig::default(), &vars).unwrap();
    let data = vars.var_map().data().lock().unwrap();
    let params: usize = data.values().map(|v| v.as_tensor().elem_count()).sum();
    assert!(params * 4 <= 3_000_000, "{params} parameters");
    assert!(data.contains_key("text.h.0.attn.c_attn.weight"));
    assert!(data.contains_key("logit_scale"));
}

#[test]
fn bad_folders_and_bad_input_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(0);
    let clip = Clip::new(tiny(), &vars).unwrap();
    let e = Clip::load(&dir.path().join("nowhere"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nowhere") && e.contains("not a folder"), "{e}");

    let good = dir.path().join("good");
    clip.save(&good).unwrap();
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(good.join(f), p.join(f)).unwrap();
        }
        p
    };
    // truncated
    let p = copy("truncated");
    let bytes = std::fs::read(p.join("model.safetensors")).unwrap();
    std::fs::write(p.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = Clip::load(&p).err().unwrap().to_string();
    assert!(e.contains("truncated"), "{e}");
    // corrupt (same length)
    let p = copy("corrupt");
    let mut bytes = std::fs::read(p.join("model.safetensors")).unwrap();
    let k = bytes.len() - 10;
    bytes[k] ^= 0xff;
    std::fs::write(p.join("model.safetensors"), &bytes).unwrap();
    let e = Clip::load(&p).err().unwrap().to_string();
    assert!(e.contains("corrupt"), "{e}");
    // another kind of model
    let p = copy("judge");
    let text = std::fs::read_to_string(p.join("config.json")).unwrap();
    std::fs::write(
        p.join("config.json"),
        text.replace("\"kind\": \"clip\"", "\"kind\": \"shapes_judge\""),
    )
    .unwrap();
    let e = Clip::load(&p).err().unwrap().to_string();
    assert!(
        e.contains("\"shapes_judge\"") && e.contains("expected \"clip\""),
        "{e}"
    );
    // a missing tensor
    let (cfg, mut tensors) = kiln_core::ModelFolder::load_parts(&good).unwrap();
    let mut kept = kiln_core::folder::Tensors::new();
    for name in tensors.names().map(str::to_string).collect::<Vec<_>>() {
        if name != "conv2.weight" {
            let t = tensors.get(&name).unwrap();
            let v = tensors.f32s(&name, None).unwrap().to_vec();
            let shape = t.shape.clone();
            kept.insert_f32(&name, &shape, v);
        }
    }
    tensors = kept;
    let p = dir.path().join("missing");
    kiln_core::ModelFolder::save_parts(&p, "clip", &cfg.meta, cfg.model.clone(), &tensors).unwrap();
    let e = Clip::load(&p).err().unwrap().to_string();
    assert!(e.contains("lacks the tensor(s) conv2.weight"), "{e}");
    // a tensor of the wrong shape (config says wider than the file)
    let mut model = cfg.model.clone();
    model["embed_dim"] = serde_json::json!(17);
    let p = dir.path().join("shape");
    let (_, t) = kiln_core::ModelFolder::load_parts(&good).unwrap();
    kiln_core::ModelFolder::save_parts(&p, "clip", &cfg.meta, model, &t).unwrap();
    let e = Clip::load(&p).err().unwrap().to_string();
    assert!(
        e.contains("does not fit config.json") && e.contains("shape"),
        "{e}"
    );

    // unknown words, wrong byte counts, over-long captions
    let pic = vec![0u8; PICTURE_BYTES * 2];
    let e = clip
        .score("a plaid circle", &pic, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("\"plaid\"") && e.contains("vocabulary"), "{e}");
    let e = clip
        .score("a red circle", &pic, 3)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("3 pictures") && e.contains(&format!("got {}", pic.len())),
        "{e}"
    );
    let long = vec!["a"; 40].join(" ");
    let e = clip.score(&long, &pic, 2).err().unwrap().to_string();
    assert!(e.contains("40 words") && e.contains("at most 32"), "{e}");
    let e = clip
        .encode_images(&Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("(batch, 3, 32, 32), got [1, 1, 28, 28]"), "{e}");
    // bad settings name the parameter
    let bad = ClipConfig {
        text_heads: 5,
        ..tiny()
    };
    let e = Clip::new(bad, &vars).err().unwrap().to_string();
    assert!(e.contains("text_heads") && e.contains("5"), "{e}");
    let bad = ClipConfig {
        init_logit_scale: 9.0,
        ..tiny()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("init_logit_scale"));
}

#[test]
fn hard_negatives_change_one_attribute_and_are_measured() {
    let o = |shape, colour, size, cell| ShapeObject {
        shape,
        colour,
        size,
        cell: Cell(cell),
    };
    let two = [
        o(ShapeKind::Circle, Colour::Red, Size::Small, 0),
        o(ShapeKind::Square, Colour::Blue, Size::Large, 4),
    ];
    let open = caption(&two, 0); // "a red circle and a blue square": no size, no position
    let mut rng = kiln_core::rng(0);
    let swapped = hard_negative(&two, &open, Attribute::Swap, &mut rng).unwrap();
    assert_eq!(caption(&swapped, 0).text, "a blue circle and a red square");
    assert!(hard_negative(&two, &open, Attribute::Size, &mut rng).is_none());
    assert!(hard_negative(&two, &open, Attribute::Position, &mut rng).is_none());
    let full = caption(&two, 1);
    for attr in Attribute::ALL {
        for _ in 0..20 {
            let n = hard_negative(&two, &full, attr, &mut rng).unwrap();
            let changed: Vec<usize> = (0..2).filter(|&k| n[k] != two[k]).collect();
            assert!(!prompt_fits(&full, &n), "{attr:?}");
            assert!(n.iter().all(|x| !is_held_out(x)), "{n:?}");
            assert_ne!(n[0].cell, n[1].cell);
            if attr == Attribute::Swap {
                assert_eq!(changed.len(), 2);
            } else {
                assert_eq!(changed.len(), 1, "{attr:?}");
            }
        }
    }
    // one object: no swap
    let one = [two[0]];
    assert!(hard_negative(&one, &caption(&one, 2), Attribute::Swap, &mut rng).is_none());

    // the measures run on generated samples and give shares in [0, 1]
    let s = generate(
        &ShapesParams {
            n: 24,
            ..Default::default()
        },
        4,
    )
    .unwrap();
    assert!(s.iter().all(|x| template_of(x).is_some()));
    let vars = SeededVarMap::new(0);
    let clip = Clip::new(tiny(), &vars).unwrap();
    let scores = hard_negatives(&clip, &s, 9).unwrap();
    assert_eq!(scores.len(), 5);
    assert_eq!(scores[0].pairs, 24); // every picture has a colour negative
    for a in &scores {
        assert!(a.caption_right <= a.pairs && a.picture_right <= a.pairs);
    }
    let bytes: Vec<u8> = s.iter().flat_map(|x| x.image.iter().copied()).collect();
    let caps: Vec<String> = s.iter().map(|x| x.caption.clone()).collect();
    let r = retrieval(&clip, &bytes, &caps, 8, |i, j| {
        prompt_fits(&s[j].prompt, &s[i].objects)
    })
    .unwrap();
    assert_eq!((r.pictures, r.batch), (24, 8));
    assert!(r.image_to_text >= r.image_to_text_exact && r.image_to_text <= 1.0);
    // groups of one: every picture's only candidate is its own caption
    let r1 = retrieval(&clip, &bytes, &caps, 1, |i, j| i == j).unwrap();
    assert_eq!((r1.image_to_text, r1.text_to_image), (1.0, 1.0));
}

#[test]
fn the_shipped_reranker_loads_and_prefers_true_captions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default-image/clip");
    let clip = Clip::load(&dir).unwrap();
    assert!(
        std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len()
            <= 3_000_000
    );
    let s = generate(
        &ShapesParams {
            n: 40,
            ..Default::default()
        },
        987_654,
    )
    .unwrap();
    let scores = hard_negatives(&clip, &s, 1).unwrap();
    let colour = &scores[0];
    assert_eq!(colour.attribute, Attribute::Colour);
    assert!(colour.caption_accuracy >= 0.95, "{colour:?}");
    assert!(colour.picture_accuracy >= 0.95, "{colour:?}");
}
