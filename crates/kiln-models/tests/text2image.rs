//! The DALL-E prior and the text-to-image model folder: a tiny prior overfits a handful of
//! captions and draws their codes back, KV-cached sampling equals full recomputation, guidance
//! 1 is the conditional model, seeds, reranking, save/load and clear errors.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use kiln_core::folder::{ModelMeta, Tensors};
use kiln_core::ModelFolder;
use kiln_data::shapes::{generate, ShapesParams, Vocabulary};
use kiln_models::folder::var_tensors;
use kiln_models::text2image::*;
use kiln_models::vqvae::{VqVae, VqVaeConfig};
use kiln_nn::init::SeededVarMap;
use kiln_nn::optim::{AdamConfig, Optimizer, OptimizerConfig, Params};
use kiln_nn::{Mode, TrainStep};

const PICTURES: usize = 4;

fn tiny_config() -> PriorConfig {
    PriorConfig {
        text_vocab: Vocabulary::shapes().len(),
        caption_len: 17,
        codebook_size: 16,
        grid: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        dropout: 0.0,
        cond_drop: 0.1,
        colour_codes: 0,
        colour_given_pattern: false,
        image_positions: ImagePositions::Absolute,
        relative_attention: false,
    }
}

/// Four shapes captions, each with its own random code grid (K = 16, 8×8).
fn handful() -> (Vec<String>, Vec<Vec<u32>>) {
    let samples = generate(
        &ShapesParams {
            n: PICTURES,
            ..Default::default()
        },
        3,
    )
    .unwrap();
    let captions: Vec<String> = samples.iter().map(|s| s.caption.clone()).collect();
    let mut rng = kiln_core::rng(11);
    let codes = (0..PICTURES)
        .map(|_| {
            (0..64)
                .map(|_| rand::Rng::random_range(&mut rng, 0..16u32))
                .collect()
        })
        .collect();
    (captions, codes)
}

fn caption_ids(captions: &[String]) -> Vec<Vec<u32>> {
    let v = Vocabulary::shapes();
    captions
        .iter()
        .map(|c| v.encode_padded(c, 17).unwrap())
        .collect()
}

/// The prior trained (once per test binary) until it knows the handful by heart.
fn overfit() -> &'static (Prior, Tensors) {
    static TRAINED: OnceLock<(Prior, Tensors)> = OnceLock::new();
    TRAINED.get_or_init(|| train_on_handful(tiny_config()))
}

/// A prior of `cfg` trained until it knows the handful by heart.
fn train_on_handful(cfg: PriorConfig) -> (Prior, Tensors) {
    {
        let (captions, codes) = handful();
        let ids = caption_ids(&captions);
        let x = Tensor::from_vec(ids.concat(), (PICTURES, 17), &Device::Cpu).unwrap();
        let y = Tensor::from_vec(codes.concat(), (PICTURES, 64), &Device::Cpu).unwrap();
        let vars = SeededVarMap::new(5);
        let prior = Prior::new(cfg, vars.var_builder()).unwrap();
        let mut opt = Optimizer::new(
            OptimizerConfig::Adam(AdamConfig {
                lr: 1e-2,
                ..Default::default()
            }),
            Params::from_var_map(vars.var_map()).unwrap(),
        )
        .unwrap();
        let batch = (x, y);
        for step in 0..150 {
            let l = prior.loss(&batch, &Mode::train(step)).unwrap();
            opt.step(&l.backward().unwrap()).unwrap();
        }
        let sums = prior.evaluate(&batch).unwrap();
        assert!(
            sums.accuracy().unwrap() == 1.0,
            "teacher-forced accuracy {:?}, loss {}",
            sums.accuracy(),
            sums.loss()
        );
        let tensors = var_tensors(vars.var_map()).unwrap();
        (prior, tensors)
    }
}

#[test]
fn factorized_codes_score_a_pattern_plus_a_colour_and_still_learn() {
    // K = 16 codes: 4 patterns × 4 colours
    let cfg = PriorConfig {
        colour_codes: 4,
        ..tiny_config()
    };
    let vars = SeededVarMap::new(2);
    let fresh = Prior::new(cfg.clone(), vars.var_builder()).unwrap();
    let names: Vec<(String, Vec<usize>)> = {
        let data = vars.var_map().data().lock().unwrap();
        let mut v: Vec<_> = data
            .iter()
            .filter(|(k, _)| k.starts_with("code_") || k.starts_with("wte"))
            .map(|(k, t)| (k.clone(), t.as_tensor().dims().to_vec()))
            .collect();
        v.sort();
        v
    };
    let words = Vocabulary::shapes().len();
    assert_eq!(
        names,
        [
            ("code_colour.weight".to_string(), vec![4, 32]),
            ("code_pattern.weight".to_string(), vec![4, 32]),
            ("wte.weight".to_string(), vec![words + 1, 32]),
        ]
    );
    let (_, _, logits) = handful_logits(&fresh); // logits (4, 64, 16)
    assert_eq!(logits.dims(), &[4, 64, 16]);
    // logit(p, c) = a_p + b_c: every 2×2 interaction vanishes
    let rows: Vec<Vec<f32>> = logits.reshape((4 * 64, 16)).unwrap().to_vec2().unwrap();
    let mut widest = 0f32;
    for row in &rows {
        let l = |p: usize, c: usize| row[p * 4 + c];
        for (p, q, c, d) in [(0, 1, 0, 1), (2, 3, 1, 3), (0, 3, 2, 0)] {
            let interaction = l(p, c) - l(p, d) - l(q, c) + l(q, d);
            assert!(interaction.abs() < 1e-5, "{interaction}");
        }
        widest = widest.max(row.iter().fold(0f32, |m, &v| m.max(v.abs())));
    }
    assert!(widest > 1e-3, "logits all zero");
    // it still learns the handful, and the KV cache changes nothing
    learns_the_handful_and_caches_exactly(cfg);
}

#[test]
fn factorized_positions_place_codes_by_row_and_column() {
    let cfg = PriorConfig {
        image_positions: ImagePositions::Factorized,
        ..tiny_config()
    };
    let vars = SeededVarMap::new(4);
    let prior = Prior::new(cfg.clone(), vars.var_builder()).unwrap();
    let var = |name: &str| vars.var_map().data().lock().unwrap()[name].clone();
    assert_eq!(var("image_row.weight").dims(), &[8, 32]);
    assert_eq!(var("image_col.weight").dims(), &[8, 32]);
    let (_, _, before) = handful_logits(&prior); // (4, 64, 16)
                                                 // wpe's image rows (17..81) are not used; its caption rows are
    let wpe = var("wpe.weight");
    let original = wpe.as_tensor().copy().unwrap();
    let noise = |rows: usize| Tensor::randn(0f32, 1.0, (rows, 32), &Device::Cpu).unwrap();
    let text = original.narrow(0, 0, 17).unwrap();
    wpe.set(&Tensor::cat(&[&text, &noise(64)], 0).unwrap())
        .unwrap();
    let (_, _, same) = handful_logits(&prior);
    assert_eq!(
        diff(&before, &same),
        0.0,
        "wpe's image rows changed the logits"
    );
    wpe.set(&Tensor::cat(&[&noise(17), &original.narrow(0, 17, 64).unwrap()], 0).unwrap())
        .unwrap();
    let (_, _, moved) = handful_logits(&prior);
    assert!(diff(&before, &moved) > 1e-3, "wpe's caption rows are used");
    wpe.set(&original).unwrap();
    // one row vector moves the codes of that grid row (r = 5: codes 40..48) and the ones
    // after it, never the ones before
    let rows = var("image_row.weight");
    let r = rows.as_tensor().copy().unwrap();
    let bumped = Tensor::cat(
        &[
            &r.narrow(0, 0, 5).unwrap(),
            &noise(1),
            &r.narrow(0, 6, 2).unwrap(),
        ],
        0,
    )
    .unwrap();
    rows.set(&bumped).unwrap();
    let (_, _, after) = handful_logits(&prior);
    assert_eq!(
        diff(
            &before.narrow(1, 0, 40).unwrap(),
            &after.narrow(1, 0, 40).unwrap()
        ),
        0.0
    );
    for i in [40, 47] {
        let (a, b) = (
            before.narrow(1, i, 1).unwrap(),
            after.narrow(1, i, 1).unwrap(),
        );
        assert!(diff(&a, &b) > 1e-3, "code {i} ignored its row vector");
    }
    // it learns the handful and the KV cache changes nothing, with plain and layered codes
    learns_the_handful_and_caches_exactly(cfg.clone());
    learns_the_handful_and_caches_exactly(PriorConfig {
        colour_codes: 4,
        ..cfg
    });
    // a config saved before the option existed reads as absolute positions
    let mut old = serde_json::to_value(tiny_config()).unwrap();
    old.as_object_mut().unwrap().remove("image_positions");
    let read: PriorConfig = serde_json::from_value(old).unwrap();
    assert_eq!(read.image_positions, ImagePositions::Absolute);
    let bad = serde_json::json!({ "image_positions": "diagonal" });
    let e = serde_json::from_value::<PriorConfig>(bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("diagonal") && e.contains("factorized"), "{e}");
}

#[test]
fn relative_attention_biases_heads_by_grid_offset() {
    for positions in [ImagePositions::Absolute, ImagePositions::Factorized] {
        let plain_cfg = PriorConfig {
            image_positions: positions,
            ..tiny_config()
        };
        let cfg = PriorConfig {
            relative_attention: true,
            ..plain_cfg.clone()
        };
        // the table starts at 0: the same weights give the same logits as without it
        let vars = SeededVarMap::new(6);
        let prior = Prior::new(cfg.clone(), vars.var_builder()).unwrap();
        let table = vars.var_map().data().lock().unwrap()["image_rel_bias.weight"].clone();
        assert_eq!(table.dims(), &[2, 8 * 15]);
        let plain = Prior::new(plain_cfg, vars.var_builder()).unwrap();
        let (_, _, before) = handful_logits(&prior);
        let (_, _, without) = handful_logits(&plain);
        assert!(
            diff(&before, &without) < 1e-5,
            "{}",
            diff(&before, &without)
        );
        // a bias on "one row up, same column" (dr = 1, dc = 0: column 1·15 + 7) moves no code
        // of the first grid row, whose keys are all in its own row, and moves code 8, whose key
        // code 0 sits right above it
        let mut t = vec![0f32; 2 * 120];
        t[15 + 7] = 5.0;
        t[120 + 15 + 7] = -5.0;
        table
            .set(&Tensor::from_vec(t, (2, 120), &Device::Cpu).unwrap())
            .unwrap();
        let (_, _, after) = handful_logits(&prior);
        let first_row = |x: &Tensor| x.narrow(1, 0, 8).unwrap();
        assert_eq!(diff(&first_row(&before), &first_row(&after)), 0.0);
        let code = |x: &Tensor, i| x.narrow(1, i, 1).unwrap();
        assert!(diff(&code(&before, 8), &code(&after, 8)) > 1e-4);
        // it learns the handful, and the KV cache changes nothing
        learns_the_handful_and_caches_exactly(cfg);
    }
}

/// A prior of `cfg` trained on the handful draws its codes back, and KV-cached sampling
/// equals full recomputation.
fn learns_the_handful_and_caches_exactly(cfg: PriorConfig) {
    let (prior, _) = train_on_handful(cfg);
    let (captions, codes) = handful();
    let ids = caption_ids(&captions);
    let got = prior
        .sample(&ids, &greedy(1.0), &mut rngs(PICTURES, 0))
        .unwrap();
    assert_eq!(got, codes);
    let s = CodeSampling {
        guidance: 2.0,
        temperature: 1.5,
        top_k: 3,
    };
    let cached = prior.sample(&ids, &s, &mut rngs(PICTURES, 1)).unwrap();
    let full = prior
        .sample_uncached(&ids, &s, &mut rngs(PICTURES, 1))
        .unwrap();
    assert_eq!(cached, full);
}

/// The handful's captions (4, 17) and codes (4, 64), and `prior`'s logits for them
/// (4, 64, K).
fn handful_logits(prior: &Prior) -> (Tensor, Tensor, Tensor) {
    let (captions, codes) = handful();
    let x = Tensor::from_vec(
        caption_ids(&captions).concat(),
        (PICTURES, 17),
        &Device::Cpu,
    )
    .unwrap();
    let y = Tensor::from_vec(codes.concat(), (PICTURES, 64), &Device::Cpu).unwrap();
    let logits = prior.code_logits(&x, &y, &Mode::eval()).unwrap();
    (x, y, logits)
}

/// The largest absolute difference between two tensors of one shape.
fn diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn rngs(n: usize, seed: u64) -> Vec<kiln_core::Rng> {
    (0..n).map(|i| kiln_core::rng(seed + i as u64)).collect()
}

fn greedy(guidance: f64) -> CodeSampling {
    CodeSampling {
        guidance,
        temperature: 0.0,
        top_k: 0,
    }
}

#[test]
fn an_overfitted_prior_draws_the_codes_of_each_caption() {
    let (prior, _) = overfit();
    let (captions, codes) = handful();
    let ids = caption_ids(&captions);
    // (guidance 1: the unconditional half of this tiny prior saw too few empty captions for
    // g > 1 to be exact)
    let got = prior
        .sample(&ids, &greedy(1.0), &mut rngs(PICTURES, 0))
        .unwrap();
    assert_eq!(got, codes);
    // low temperature sampling draws them too
    let s = CodeSampling {
        guidance: 1.0,
        temperature: 0.3,
        top_k: 4,
    };
    assert_eq!(
        prior.sample(&ids, &s, &mut rngs(PICTURES, 9)).unwrap(),
        codes
    );
}

#[test]
fn kv_cached_sampling_equals_full_recomputation() {
    let (prior, _) = overfit();
    let (captions, _) = handful();
    let ids = caption_ids(&captions);
    for s in [
        CodeSampling {
            guidance: 2.0,
            temperature: 1.5,
            top_k: 0,
        },
        CodeSampling {
            guidance: 1.0,
            temperature: 2.0,
            top_k: 5,
        },
    ] {
        let cached = prior.sample(&ids, &s, &mut rngs(PICTURES, 1)).unwrap();
        let full = prior
            .sample_uncached(&ids, &s, &mut rngs(PICTURES, 1))
            .unwrap();
        assert_eq!(cached, full, "{s:?}");
    }
    // and for a fresh (untrained) prior, greedy
    let fresh = Prior::new(tiny_config(), SeededVarMap::new(1).var_builder()).unwrap();
    let cached = fresh
        .sample(&ids, &greedy(3.0), &mut rngs(PICTURES, 1))
        .unwrap();
    let full = fresh
        .sample_uncached(&ids, &greedy(3.0), &mut rngs(PICTURES, 1))
        .unwrap();
    assert_eq!(cached, full);
}

#[test]
fn guidance_one_is_the_conditional_model() {
    let (prior, _) = overfit();
    let (captions, _) = handful();
    let ids = caption_ids(&captions);
    let s = |guidance| CodeSampling {
        guidance,
        temperature: 1.5,
        top_k: 0,
    };
    // 1 runs the conditional rows alone; 1 + 1e-12 runs them beside the unconditional ones
    // and mixes u + g·(c − u)
    let alone = prior.sample(&ids, &s(1.0), &mut rngs(PICTURES, 4)).unwrap();
    let mixed = prior
        .sample(&ids, &s(1.0 + 1e-12), &mut rngs(PICTURES, 4))
        .unwrap();
    assert_eq!(alone, mixed);
    // guidance 0 is the unconditional model: the same pictures whatever the caption
    let uncond = prior
        .sample(&ids, &greedy(0.0), &mut rngs(PICTURES, 4))
        .unwrap();
    assert!(uncond.iter().all(|c| c == &uncond[0]));
}

#[test]
fn composed_sampling_mixes_each_caption_against_the_unconditional_rows() {
    let (prior, _) = overfit();
    let (captions, _) = handful();
    let ids = caption_ids(&captions);
    // one caption per picture is plain sampling
    let one: Vec<Vec<Vec<u32>>> = ids.iter().map(|c| vec![c.clone()]).collect();
    let s = CodeSampling {
        guidance: 1.5,
        temperature: 1.2,
        top_k: 0,
    };
    assert_eq!(
        prior.sample(&ids, &s, &mut rngs(PICTURES, 2)).unwrap(),
        prior
            .sample_composed(&one, &s, &mut rngs(PICTURES, 2))
            .unwrap()
    );
    // a caption twice at guidance g is u + 2g·(c − u): the caption once at guidance 2g
    let twice: Vec<Vec<Vec<u32>>> = ids.iter().map(|c| vec![c.clone(), c.clone()]).collect();
    for g in [0.5, 1.0, 1.5] {
        assert_eq!(
            prior
                .sample_composed(&twice, &greedy(g), &mut rngs(PICTURES, 3))
                .unwrap(),
            prior
                .sample(&ids, &greedy(2.0 * g), &mut rngs(PICTURES, 3))
                .unwrap(),
            "g = {g}"
        );
    }
    // pictures of different caption counts in one batch, cached as uncached
    let mixed: Vec<Vec<Vec<u32>>> = vec![
        vec![ids[0].clone(), ids[1].clone()],
        vec![ids[2].clone()],
        vec![ids[3].clone(), ids[0].clone(), ids[2].clone()],
    ];
    let cached = prior.sample_composed(&mixed, &s, &mut rngs(3, 7)).unwrap();
    let full = prior
        .sample_composed_uncached(&mixed, &s, &mut rngs(3, 7))
        .unwrap();
    assert_eq!(cached, full);
    assert!(cached.iter().all(|c| c.len() == 64));
    // a picture without captions is an error, not a panic
    let e = prior
        .sample_composed(&[vec![]], &s, &mut rngs(1, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("picture 0 has no caption"), "{e}");
}

#[test]
fn composition_splits_fully_described_objects_into_partial_captions() {
    let m = tiny_model();
    let v = Vocabulary::shapes();
    let words = |ids: &[u32]| v.decode(ids);
    let parts = m
        .caption_parts("a small red circle in the top left and top right: a blue star, large")
        .unwrap();
    let got: Vec<String> = parts.iter().map(|p| words(p)).collect();
    assert_eq!(
        got,
        [
            "and a small red circle in the top left",
            "and a large blue star in the top right"
        ]
    );
    // an object without size or place, one object, or no shapes grammar: the whole prompt
    for whole in [
        "a red circle and a blue star",
        "a small red circle in the top left",
        "red red red",
    ] {
        let parts = m.caption_parts(whole).unwrap();
        assert_eq!(parts.len(), 1, "{whole}");
        assert_eq!(words(&parts[0]), whole);
    }
    // unknown words are still named
    let e = m.caption_parts("a plaid circle").unwrap_err().to_string();
    assert!(e.contains("plaid"), "{e}");
    // the model draws with composition too, reproducibly
    let s = ImageSampling {
        n: 2,
        compose: true,
        ..Default::default()
    };
    let prompt = "a small red circle in the top left and a large blue star in the top right";
    let a = m.generate(prompt, &s).unwrap();
    assert_eq!(a, m.generate(prompt, &s).unwrap());
    assert_eq!(a.len(), 2);
    // compose_guidance guides each object of a composed prompt, and only those
    let at = |guidance: f64, compose_guidance: Option<f64>| ImageSampling {
        guidance,
        compose_guidance,
        temperature: 1.5,
        ..s.clone()
    };
    let composed = m.generate(prompt, &at(3.0, Some(0.5))).unwrap();
    assert_eq!(composed, m.generate(prompt, &at(0.5, None)).unwrap());
    assert_ne!(composed, m.generate(prompt, &at(3.0, None)).unwrap());
    let one = "a small red circle in the top left";
    assert_eq!(
        m.generate(one, &at(3.0, Some(0.5))).unwrap(),
        m.generate(one, &at(3.0, None)).unwrap()
    );
    let e = m
        .generate(prompt, &at(3.0, Some(f64::NAN)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("compose_guidance"), "{e}");
}

/// An image model over the overfitted prior and a fresh tiny VQ-VAE (K = 16).
fn tiny_model() -> ImageModel {
    let (_, prior_tensors) = overfit();
    let vq_cfg = VqVaeConfig {
        hidden: 8,
        embed_dim: 4,
        codebook_size: 16,
        ..Default::default()
    };
    ImageModel::new(
        "shapes",
        Vocabulary::shapes(),
        ImageSampling::default(),
        vqvae_parts(&vq_cfg),
        (tiny_config(), prior_tensors.clone()),
    )
    .unwrap()
}

fn vqvae_parts(cfg: &VqVaeConfig) -> (kiln_core::folder::FolderConfig, Tensors) {
    let vars = SeededVarMap::new(2);
    VqVae::new(cfg.clone(), vars.var_builder()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = ModelMeta {
        features: vec![],
        target: "picture".into(),
        classes: None,
        preprocessing: None,
    };
    kiln_models::folder::save(
        dir.path(),
        "vqvae",
        &meta,
        serde_json::to_value(cfg).unwrap(),
        vars.var_map(),
    )
    .unwrap();
    ModelFolder::load_parts(dir.path()).unwrap()
}

#[test]
fn the_model_draws_pictures_reproducibly() {
    let m = tiny_model();
    let (captions, codes) = handful();
    let s = ImageSampling {
        n: 3,
        seed: 5,
        ..Default::default()
    };
    let a = m.generate(&captions[0], &s).unwrap();
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|p| p.len() == 32 * 32 * 3));
    assert_eq!(a, m.generate(&captions[0], &s).unwrap(), "same seed");
    // picture i does not depend on how many are drawn beside it
    let one = m
        .generate(&captions[0], &ImageSampling { n: 1, ..s.clone() })
        .unwrap();
    assert_eq!(one[0], a[0]);
    // the pictures are the decoded codes of the caption
    let g = Tensor::from_vec(codes[0].clone(), (1, 8, 8), &Device::Cpu).unwrap();
    let want = kiln_models::vqvae::tensor_to_images(&m.vqvae().decode(&g).unwrap()).unwrap();
    let greedy = ImageSampling {
        temperature: 0.0,
        guidance: 1.0,
        ..s.clone()
    };
    assert_eq!(m.generate(&captions[0], &greedy).unwrap()[0], want);
    // at a high temperature another seed draws other pictures
    let hot = |seed| ImageSampling {
        temperature: 3.0,
        seed,
        ..s.clone()
    };
    assert_ne!(
        m.generate(&captions[0], &hot(1)).unwrap(),
        m.generate(&captions[0], &hot(2)).unwrap()
    );
}

#[test]
fn a_colour_head_draws_each_colour_given_its_pattern() {
    // K = 16 codes: 4 patterns × 4 colours
    let cfg = PriorConfig {
        colour_codes: 4,
        colour_given_pattern: true,
        ..tiny_config()
    };
    let fresh = Prior::new(cfg.clone(), SeededVarMap::new(2).var_builder()).unwrap();
    let (x, y, logits) = handful_logits(&fresh); // logits (4, 64, 16)
    let rows: Vec<Vec<f32>> = logits.reshape((4 * 64, 16)).unwrap().to_vec2().unwrap();
    let mut widest = 0f32;
    for row in &rows {
        // log-probabilities of the 16 codes: they sum to one
        let total: f32 = row.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        // the colour distribution depends on the pattern (the sum head's interactions are
        // all zero)
        let l = |p: usize, c: usize| row[p * 4 + c];
        widest = widest.max((l(0, 0) - l(0, 1) - l(1, 0) + l(1, 1)).abs());
    }
    assert!(widest > 1e-4, "colours independent of patterns: {widest}");
    // the training loss (true patterns only) is the cross-entropy of these log-probabilities
    let want = kiln_nn::loss::cross_entropy(&logits, &y)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let got = fresh
        .loss(&(x.clone(), y.clone()), &Mode::eval())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    // it learns the handful, and the KV cache changes nothing
    learns_the_handful_and_caches_exactly(cfg);
}

#[test]
fn a_layered_tokenizer_and_a_factorized_prior_make_a_model() {
    let vq_cfg = VqVaeConfig {
        hidden: 8,
        embed_dim: 4,
        codebook_size: 16,
        colour_codes: 4,
        ..Default::default()
    };
    let prior_cfg = PriorConfig {
        colour_codes: 4,
        ..tiny_config()
    };
    let vars = SeededVarMap::new(3);
    Prior::new(prior_cfg.clone(), vars.var_builder()).unwrap();
    let tensors = var_tensors(vars.var_map()).unwrap();
    let model = |vq: &VqVaeConfig| {
        ImageModel::new(
            "shapes",
            Vocabulary::shapes(),
            ImageSampling::default(),
            vqvae_parts(vq),
            (prior_cfg.clone(), tensors.clone()),
        )
    };
    let m = model(&vq_cfg).unwrap();
    let s = ImageSampling {
        n: 2,
        seed: 1,
        ..Default::default()
    };
    let a = m.generate("a red circle", &s).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a, m.generate("a red circle", &s).unwrap(), "same seed");
    // a factorized prior needs a tokenizer with the same colour codes
    let plain = VqVaeConfig {
        colour_codes: 0,
        ..vq_cfg
    };
    let e = model(&plain).err().unwrap().to_string();
    assert!(
        e.contains("factors codes into 4 colours, the VQ-VAE has 0 colour codes"),
        "{e}"
    );
}

#[test]
fn a_prior_without_weights_is_a_clear_error() {
    let vq = VqVaeConfig {
        hidden: 8,
        embed_dim: 4,
        codebook_size: 16,
        ..Default::default()
    };
    let empty = var_tensors(SeededVarMap::new(8).var_map()).unwrap();
    let e = ImageModel::new(
        "shapes",
        Vocabulary::shapes(),
        ImageSampling::default(),
        vqvae_parts(&vq),
        (tiny_config(), empty),
    )
    .err()
    .expect("a prior without weights")
    .to_string();
    assert!(e.contains("prior") && e.contains("does not fit"), "{e}");
}

#[test]
fn unknown_words_and_bad_settings_are_clear_errors() {
    let m = tiny_model();
    let e = m
        .generate("a plaid circle", &ImageSampling::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"plaid\"") && e.contains("vocabulary") && e.contains("circle"),
        "{e}"
    );
    let long =
        "a small red circle in the top left and a large blue square in the bottom right and a";
    let e = m
        .generate(long, &ImageSampling::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 17"), "{e}");
    for (s, what) in [
        (
            ImageSampling {
                n: 0,
                ..Default::default()
            },
            "n",
        ),
        (
            ImageSampling {
                guidance: -1.0,
                ..Default::default()
            },
            "guidance",
        ),
        (
            ImageSampling {
                temperature: f64::NAN,
                ..Default::default()
            },
            "temperature",
        ),
        (
            ImageSampling {
                rerank: 0,
                ..Default::default()
            },
            "rerank",
        ),
        (
            ImageSampling {
                rerank: 3,
                ..Default::default()
            },
            "reranker",
        ),
    ] {
        let e = m.generate("a red circle", &s).unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
    let bad = PriorConfig {
        cond_drop: 1.0,
        ..tiny_config()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("cond_drop"));
    let bad = PriorConfig {
        n_head: 3,
        ..tiny_config()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("n_head"));
    let bad = PriorConfig {
        colour_codes: 3,
        ..tiny_config()
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("colour_codes") && e.contains("codebook_size = 16"),
        "{e}"
    );
}

/// Scores a picture by its brightness.
struct Brightness;

impl Reranker for Brightness {
    fn score(&self, _caption: &str, images: &[u8], n: usize) -> kiln_nn::Result<Vec<f32>> {
        assert_eq!(images.len(), n * 32 * 32 * 3);
        Ok(images
            .chunks(32 * 32 * 3)
            .map(|p| p.iter().map(|&v| v as f32).sum())
            .collect())
    }
}

#[test]
fn reranking_keeps_the_best_candidate_of_each_group() {
    let mut m = tiny_model();
    m.set_reranker(Box::new(Brightness));
    let s = ImageSampling {
        n: 2,
        rerank: 3,
        temperature: 3.0,
        seed: 2,
        ..Default::default()
    };
    let kept = m.generate("a red circle", &s).unwrap();
    let all = m
        .generate(
            "a red circle",
            &ImageSampling {
                n: 6,
                rerank: 1,
                ..s.clone()
            },
        )
        .unwrap();
    let bright = |p: &Vec<u8>| p.iter().map(|&v| v as u64).sum::<u64>();
    for (g, k) in kept.iter().enumerate() {
        let best = all[g * 3..g * 3 + 3]
            .iter()
            .max_by_key(|p| bright(p))
            .unwrap();
        assert_eq!(k, best, "group {g}");
    }
}

fn load_err(dir: &Path) -> String {
    match ImageModel::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn save_and_load_round_trip_and_broken_folders_are_clear_errors() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("m");
    m.save(&d).unwrap();
    let back = ImageModel::load(&d).unwrap();
    assert_eq!(back.dataset(), "shapes");
    assert_eq!(back.vocabulary(), &Vocabulary::shapes());
    let s = ImageSampling {
        n: 2,
        seed: 3,
        ..Default::default()
    };
    assert_eq!(
        back.generate("a red circle", &s).unwrap(),
        m.generate("a red circle", &s).unwrap()
    );

    assert!(load_err(&dir.path().join("nothing")).contains("not a folder"));
    let copy = |name: &str| {
        let to = dir.path().join(name);
        copy_dir(&d, &to);
        to
    };
    let c = copy("no-prior");
    std::fs::remove_dir_all(c.join("prior")).unwrap();
    let e = load_err(&c);
    assert!(e.contains("prior") && e.contains("missing"), "{e}");

    let c = copy("corrupt");
    let f = c.join("prior/model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&f, bytes).unwrap();
    let e = load_err(&c);
    assert!(e.contains("checksum") && e.contains("prior"), "{e}");

    let c = copy("no-config");
    std::fs::remove_file(c.join("config.json")).unwrap();
    assert!(load_err(&c).contains("config.json"));

    // a VQ-VAE with another codebook size than the prior's
    let c = copy("mismatch");
    let other = vqvae_parts(&VqVaeConfig {
        hidden: 8,
        embed_dim: 4,
        codebook_size: 32,
        ..Default::default()
    });
    ModelFolder::save_parts(
        &c.join("vqvae"),
        "vqvae",
        &other.0.meta,
        other.0.model.clone(),
        &other.1,
    )
    .unwrap();
    let e = load_err(&c);
    assert!(
        e.contains("do not fit") && e.contains("codebook of 16") && e.contains("32"),
        "{e}"
    );

    // the prior folder in place of the VQ-VAE
    let c = copy("swapped");
    std::fs::remove_dir_all(c.join("vqvae")).unwrap();
    copy_dir(&c.join("prior"), &c.join("vqvae"));
    let e = load_err(&c);
    assert!(
        e.contains("vqvae") && e.contains("expected \"vqvae\""),
        "{e}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_saved_model_keeps_its_reranker() {
    let m = kiln_models::text2image::embedded().unwrap();
    assert!(m.has_reranker());
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    assert!(dir.path().join("clip/model.safetensors").is_file());
    let back = ImageModel::load(dir.path()).unwrap();
    assert!(back.has_reranker());
    let s = ImageSampling {
        n: 1,
        rerank: 3,
        seed: 5,
        ..back.sampling().clone()
    };
    assert_eq!(
        back.generate("a large red circle in the center", &s)
            .unwrap(),
        m.generate("a large red circle in the center", &s).unwrap()
    );
}
