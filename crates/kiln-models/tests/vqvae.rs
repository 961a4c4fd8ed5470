//! VQ-VAE: codebook lookup, straight-through and commitment gradients, finite differences,
//! EMA updates and dead-code restarts, training, reproducibility, save/load, bad input.

use candle_core::{DType, Device, Tensor, Var};
use kiln_core::folder::ModelMeta;
use kiln_data::shapes::{generate, ShapesParams, IMAGE_SIZE};
use kiln_models::folder;
use kiln_models::vqvae::*;
use kiln_nn::init::{sample, SeededVarMap};
use kiln_nn::layers::Mode;
use kiln_nn::optim::{AdamConfig, OptimizerConfig};
use kiln_nn::TrainStep;
use kiln_train::data::TensorData;
use kiln_train::progress::Silent;
use kiln_train::{trainer, RunOptions, TrainConfig};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let init = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: 1.0,
    };
    sample(init, &shape.into(), &mut kiln_core::rng(seed)).unwrap()
}

fn tiny() -> VqVaeConfig {
    VqVaeConfig {
        hidden: 16,
        embed_dim: 8,
        codebook_size: 32,
        ..Default::default()
    }
}

/// A layered tokenizer: 8 pattern codes × 4 colour codes.
fn layered() -> VqVaeConfig {
    VqVaeConfig {
        colour_codes: 4,
        ..tiny()
    }
}

fn shapes_tensor(n: usize, seed: u64) -> Tensor {
    let s = generate(
        &ShapesParams {
            n,
            ..Default::default()
        },
        seed,
    )
    .unwrap();
    let bytes: Vec<u8> = s.iter().flat_map(|x| x.image.iter().copied()).collect();
    images_to_tensor(&bytes, n, 3, IMAGE_SIZE).unwrap()
}

#[test]
fn codebook_lookup_picks_the_nearest_entry() {
    let book = randn(&[16, 4], 1);
    let q = Quantizer::from_codebook(&book).unwrap();
    let z = randn(&[50, 4], 2);
    let got: Vec<u32> = q.nearest(&z).unwrap().to_vec1().unwrap();
    let (b, zv) = (book.to_vec2::<f32>().unwrap(), z.to_vec2::<f32>().unwrap());
    for (i, row) in zv.iter().enumerate() {
        let d = |e: &Vec<f32>| row.iter().zip(e).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
        let best = (0..16)
            .min_by(|&x, &y| d(&b[x]).total_cmp(&d(&b[y])))
            .unwrap();
        assert_eq!(got[i] as usize, best, "row {i}");
    }
    // an entry is its own nearest code; lookup returns the entries
    let own: Vec<u32> = q.nearest(&book).unwrap().to_vec1().unwrap();
    assert_eq!(own, (0..16).collect::<Vec<u32>>());
    let codes = Tensor::new(&[[3u32, 0], [15, 7]], &Device::Cpu).unwrap();
    let e = q.lookup(&codes).unwrap();
    assert_eq!(e.dims(), &[2, 2, 4]);
    assert_eq!(
        e.get(1).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap(),
        b[15]
    );
    let e = q
        .lookup(&Tensor::new(&[16u32], &Device::Cpu).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("code 16 out of range for a codebook of 16"),
        "{e}"
    );
}

#[test]
fn straight_through_and_commitment_gradients_are_exact() {
    let book = randn(&[8, 3], 3);
    let q = Quantizer::from_codebook(&book).unwrap();
    let z = Var::from_tensor(&randn(&[2, 3, 2, 2], 4)).unwrap(); // (B, D, G, G)
    let w = randn(&[2, 3, 2, 2], 5);
    let out = q.forward(z.as_tensor(), &Mode::eval()).unwrap();
    // forward value: the codebook entries of the chosen codes
    let looked = q.lookup(&out.codes).unwrap().permute((0, 3, 1, 2)).unwrap();
    let diff = (&out.z_q - &looked)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    // straight through: d/dz sum(w · z_q) = w
    let g = (&out.z_q * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gz = g.get(z.as_tensor()).unwrap();
    assert_eq!(
        gz.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        w.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    // commitment: d/dz mean((z − sg(e))²) = 2 (z − e) / numel (numel = 24), and the codebook gets nothing
    let g = out.commitment.backward().unwrap();
    let want = ((z.as_tensor() - &looked).unwrap() * (2.0 / 24.0)).unwrap();
    let err = (g.get(z.as_tensor()).unwrap() - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(err.to_scalar::<f32>().unwrap() < 1e-6);
    assert!(g.get(q.codebook()).is_none());
}

/// Set one element of a variable in the map.
fn nudge(vars: &SeededVarMap, name: &str, i: usize, delta: f32) {
    let data = vars.var_map().data().lock().unwrap();
    let v = data.get(name).unwrap();
    let mut vals: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    vals[i] += delta;
    v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

#[test]
fn pixel_shuffle_moves_channels_to_sub_pixels_as_pytorch_does() {
    // PyTorch: out[b, c, 2h + i, 2w + j] = in[b, 4c + 2i + j, h, w]
    let (b, c, h, w) = (2, 3, 2, 3);
    let n = b * 4 * c * h * w;
    let x = Tensor::arange(0f32, n as f32, &Device::Cpu)
        .unwrap()
        .reshape((b, 4 * c, h, w))
        .unwrap();
    let y = pixel_shuffle(&x).unwrap();
    assert_eq!(y.dims(), [b, c, 2 * h, 2 * w]);
    let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let yv = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for bi in 0..b {
        for ci in 0..c {
            for r in 0..2 * h {
                for q in 0..2 * w {
                    let (hi, i, wi, j) = (r / 2, r % 2, q / 2, q % 2);
                    let src = ((bi * 4 * c + 4 * ci + 2 * i + j) * h + hi) * w + wi;
                    let dst = ((bi * c + ci) * 2 * h + r) * 2 * w + q;
                    assert_eq!(yv[dst], xv[src], "b{bi} c{ci} ({r}, {q})");
                }
            }
        }
    }
    let e = pixel_shuffle(&Tensor::zeros((1, 6, 2, 2), DType::F32, &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple of 4") && e.contains('6'), "{e}");
}

#[test]
fn configs_written_before_res_blocks_and_upsample_load_as_before() {
    let old = r#"{"in_channels":3,"image_size":32,"hidden":64,"embed_dim":32,
        "codebook_size":256,"beta":0.25,"decay":0.99,"dead_code_threshold":1.0}"#;
    let cfg: VqVaeConfig = serde_json::from_str(old).unwrap();
    assert_eq!(cfg.res_blocks, 0);
    assert_eq!(cfg.upsample, Upsample::Nearest);
    let new: VqVaeConfig =
        serde_json::from_str(r#"{"upsample":"pixel_shuffle","res_blocks":2}"#).unwrap();
    assert_eq!(new.upsample, Upsample::PixelShuffle);
    assert_eq!(new.res_blocks, 2);
    assert_eq!(VqVaeConfig::default().upsample, Upsample::PixelShuffle);
}

#[test]
fn decoder_and_encoder_gradients_match_finite_differences() {
    for cfg in [
        tiny(),
        VqVaeConfig {
            upsample: Upsample::Nearest,
            res_blocks: 1,
            ..tiny()
        },
        layered(),
    ] {
        gradients_match_finite_differences(cfg);
    }
}

fn gradients_match_finite_differences(cfg: VqVaeConfig) {
    let vars = SeededVarMap::new(6);
    let m = VqVae::new(cfg, vars.var_builder()).unwrap();
    let x = shapes_tensor(2, 1);
    // the reconstruction error summed (decoder weights) and the commitment summed (encoder
    // weights: the codes do not change under a small nudge, so this is differentiable)
    let f = |m: &VqVae| -> (Tensor, Tensor) {
        let out = m.forward(&x, &Mode::eval()).unwrap();
        let rec = (out.recon - &x).unwrap().sqr().unwrap();
        let rec = rec.to_dtype(DType::F64).unwrap().sum_all().unwrap();
        (rec, (out.commitment * 1000.0).unwrap())
    };
    let value = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    let (rec, com) = f(&m);
    let g_rec = rec.backward().unwrap();
    let g_com = com.backward().unwrap();
    let weight = |name: &str| {
        vars.var_map()
            .data()
            .lock()
            .unwrap()
            .get(name)
            .unwrap()
            .as_tensor()
            .clone()
    };
    let mut names = vec![
        ("decoder.out.weight", &g_rec, 0),
        ("decoder.conv1.weight", &g_rec, 0),
        ("encoder.conv1.weight", &g_com, 1),
        ("encoder.proj.bias", &g_com, 1),
    ];
    if m.config().layers().is_some() {
        names.push(("colour.conv1.weight", &g_rec, 0));
        names.push(("colour.conv2.bias", &g_rec, 0));
    }
    for (name, grads, which) in names {
        let g: Vec<f32> = grads
            .get(&weight(name))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for i in [0, 3, 7].into_iter().filter(|&i| i < g.len()) {
            let h = 1e-2f32;
            nudge(&vars, name, i, h);
            let up = f(&m);
            nudge(&vars, name, i, -2.0 * h);
            let down = f(&m);
            nudge(&vars, name, i, h);
            let pick = |p: &(Tensor, Tensor)| if which == 0 { value(&p.0) } else { value(&p.1) };
            let fd = (pick(&up) - pick(&down)) / (2.0 * h as f64);
            let tol = 0.03 * fd.abs().max(g[i].abs() as f64) + 1e-3;
            assert!(
                (fd - g[i] as f64).abs() < tol,
                "{name}[{i}]: autograd {} vs fd {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn ema_moves_codes_to_their_vectors_and_restarts_dead_ones() {
    let cfg = VqVaeConfig {
        embed_dim: 2,
        codebook_size: 4,
        decay: 0.5,
        ..tiny()
    };
    let vars = SeededVarMap::new(0);
    let q = Quantizer::new(&cfg, 4, vars.var_builder()).unwrap();
    // eight vectors all near (5, 5): in training one code follows them, the other three are
    // dead (usage 0.5 < 1) and restart on vectors of the batch
    let z: Vec<f32> = (0..8).flat_map(|i| [5.0 + i as f32 * 0.01, 5.0]).collect();
    let z = Tensor::from_vec(z, (2, 2, 2, 2), &Device::Cpu)
        .unwrap()
        .permute((0, 3, 1, 2))
        .unwrap();
    let before = q.codebook().to_vec2::<f32>().unwrap();
    q.forward(&z, &Mode::eval()).unwrap();
    assert_eq!(
        q.codebook().to_vec2::<f32>().unwrap(),
        before,
        "evaluation never updates"
    );
    q.forward(&z, &Mode::train(1)).unwrap();
    let after = q.codebook().to_vec2::<f32>().unwrap();
    for row in &after {
        assert!(
            (row[0] - 5.0).abs() < 3.0 && (row[1] - 5.0).abs() < 3.0,
            "{after:?}"
        );
    }
    // the variables in the map were updated in place (so checkpoints carry them)
    let map = vars.var_map().data().lock().unwrap();
    assert_eq!(
        map.get("embed")
            .unwrap()
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap(),
        after
    );
    let cs: Vec<f32> = map
        .get("cluster_size")
        .unwrap()
        .as_tensor()
        .to_vec1()
        .unwrap();
    assert!(cs.iter().all(|&c| c >= 1.0), "{cs:?}");
}

fn train_cfg(steps: usize) -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            ..Default::default()
        }),
        batch_size: 16,
        steps: Some(steps),
        log_every: 1,
        seed: 2,
        ..Default::default()
    }
}

fn train_tiny(seed: u64, steps: usize) -> (SeededVarMap, VqVae, Tensor) {
    train_config(tiny(), seed, steps)
}

fn train_config(cfg: VqVaeConfig, seed: u64, steps: usize) -> (SeededVarMap, VqVae, Tensor) {
    let vars = SeededVarMap::new(seed);
    let m = VqVae::new(cfg, vars.var_builder()).unwrap();
    let x = shapes_tensor(64, 3);
    let y = Tensor::zeros(64, DType::U32, &Device::Cpu).unwrap();
    let data = TensorData::new(x.clone(), y).unwrap();
    let dir = tempfile::tempdir().unwrap();
    trainer::train(
        &m,
        vars.var_map(),
        &data,
        None,
        &train_cfg(steps),
        &RunOptions::new(dir.path()),
        &mut Silent,
    )
    .unwrap();
    (vars, m, x)
}

#[test]
fn a_tiny_model_learns_uses_its_codebook_and_is_reproducible() {
    let vars0 = SeededVarMap::new(4);
    let m0 = VqVae::new(tiny(), vars0.var_builder()).unwrap();
    let x = shapes_tensor(64, 3);
    let y = Tensor::zeros(64, DType::U32, &Device::Cpu).unwrap();
    let before = m0.evaluate(&(x.clone(), y.clone())).unwrap().loss();
    let (_, m, _) = train_tiny(4, 60);
    let after = m.evaluate(&(x.clone(), y.clone())).unwrap().loss();
    assert!(after < 0.5 * before, "loss {before} -> {after}");
    let stats = reconstruction_stats(&m, &x, 32).unwrap();
    assert!(stats.codes_used >= 8, "{stats:?}");
    assert!(stats.psnr > 10.0 * (1.0 / before).log10(), "{stats:?}");
    // same seed, same model
    let (_, m, _) = train_tiny(4, 10);
    let (_, m2, _) = train_tiny(4, 10);
    let c1: Vec<u32> = m
        .encode(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let c2: Vec<u32> = m2
        .encode(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(c1, c2);
    assert_eq!(
        m.quantizer().codebook().to_vec2::<f32>().unwrap(),
        m2.quantizer().codebook().to_vec2::<f32>().unwrap()
    );
}

#[test]
fn a_layered_tokenizer_pairs_its_codes_and_keeps_each_colour_in_its_patch() {
    let cfg = layered();
    assert_eq!(cfg.layers(), Some((8, 4)));
    let vars = SeededVarMap::new(5);
    let m = VqVae::new(cfg, vars.var_builder()).unwrap();
    let x = shapes_tensor(4, 2);
    let codes = m.encode(&x).unwrap(); // (4, 8, 8)
    let out = m.forward(&x, &Mode::eval()).unwrap();
    let ids = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(ids(&codes), ids(&out.codes));
    assert!(ids(&codes).iter().all(|&c| c < 32));
    // decoding the codes paints what the forward pass painted
    let pic = m.decode(&codes).unwrap();
    let diff = (pic - out.recon.clamp(0f32, 1f32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "{diff}");
    // another colour code in patch (3, 4) changes that patch's 4×4 pixels and nothing else;
    // its pattern code is kept
    let mut grid = ids(&codes.get(0).unwrap());
    let j = 3 * 8 + 4;
    grid[j] = grid[j] / 4 * 4 + (grid[j] % 4 + 1) % 4;
    let other = Tensor::from_vec(grid, (1, 8, 8), &Device::Cpu).unwrap();
    let a = m.decode(&codes.narrow(0, 0, 1).unwrap()).unwrap();
    let b = m.decode(&other).unwrap();
    let d: Vec<f32> = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .sum(1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap(); // (32·32), channels summed
    let mut inside = 0f32;
    for (i, v) in d.iter().enumerate() {
        let (row, col) = (i / 32, i % 32);
        if (12..16).contains(&row) && (16..20).contains(&col) {
            inside += v;
        } else {
            assert_eq!(*v, 0.0, "pixel ({row}, {col}) changed");
        }
    }
    assert!(inside > 0.0);
    // a layered tokenizer learns as a plain one does
    let y = Tensor::zeros(64, DType::U32, &Device::Cpu).unwrap();
    let fresh_vars = SeededVarMap::new(4);
    let fresh = VqVae::new(layered(), fresh_vars.var_builder()).unwrap();
    let x = shapes_tensor(64, 3);
    let before = fresh.evaluate(&(x.clone(), y.clone())).unwrap().loss();
    let (_, m, _) = train_config(layered(), 4, 60);
    let after = m.evaluate(&(x.clone(), y)).unwrap().loss();
    assert!(after < 0.5 * before, "loss {before} -> {after}");
    let stats = reconstruction_stats(&m, &x, 32).unwrap();
    assert_eq!(stats.codebook_size, 32);
    assert!(stats.codes_used >= 8, "{stats:?}");
}

#[test]
fn save_load_encode_decode_round_trip() {
    let (vars, m, x) = train_tiny(5, 5);
    let dir = tempfile::tempdir().unwrap();
    let meta = ModelMeta {
        features: vec![],
        target: String::new(),
        classes: None,
        preprocessing: None,
    };
    folder::save(
        dir.path(),
        "vqvae",
        &meta,
        serde_json::to_value(m.config()).unwrap(),
        vars.var_map(),
    )
    .unwrap();
    let (fc, vb) = folder::load(dir.path(), "vqvae").unwrap();
    let m2 = VqVae::new(serde_json::from_value(fc.model).unwrap(), vb).unwrap();
    let codes = m.encode(&x).unwrap();
    assert_eq!(codes.dims(), &[64, 8, 8]);
    assert_eq!(
        codes.to_vec3::<u32>().unwrap(),
        m2.encode(&x).unwrap().to_vec3::<u32>().unwrap()
    );
    let img = m2.decode(&codes).unwrap();
    assert_eq!(img.dims(), &[64, 3, 32, 32]);
    assert_eq!(
        img.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        m.decode(&codes)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    assert_eq!(tensor_to_images(&x).unwrap().len(), 64 * 32 * 32 * 3);
}

#[test]
fn bad_input_is_a_clear_error() {
    let vars = SeededVarMap::new(0);
    let m = VqVae::new(tiny(), vars.var_builder()).unwrap();
    let e = m
        .encode(&randn(&[2, 3, 28, 28], 0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("expected images (batch, 3, 32, 32), got [2, 3, 28, 28]"),
        "{e}"
    );
    let e = m
        .decode(&Tensor::zeros((2, 7, 7), DType::U32, &Device::Cpu).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("expected codes (batch, 8, 8)"), "{e}");
    let e = m
        .decode(&Tensor::full(99u32, (1, 8, 8), &Device::Cpu).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
    for (cfg, name) in [
        (
            VqVaeConfig {
                image_size: 30,
                ..tiny()
            },
            "image_size",
        ),
        (
            VqVaeConfig {
                codebook_size: 1,
                ..tiny()
            },
            "codebook_size",
        ),
        (
            VqVaeConfig {
                decay: 1.0,
                ..tiny()
            },
            "decay",
        ),
        (
            VqVaeConfig {
                beta: -1.0,
                ..tiny()
            },
            "beta",
        ),
        (
            VqVaeConfig {
                dead_code_threshold: f64::NAN,
                ..tiny()
            },
            "dead_code_threshold",
        ),
        (
            VqVaeConfig {
                res_blocks: 17,
                ..tiny()
            },
            "res_blocks",
        ),
        (
            VqVaeConfig {
                colour_codes: 5,
                ..tiny()
            },
            "colour_codes",
        ),
        (
            VqVaeConfig {
                colour_codes: 32,
                ..tiny()
            },
            "colour_codes",
        ),
    ] {
        let e = VqVae::new(cfg, SeededVarMap::new(0).var_builder())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(name), "{e}");
    }
    assert!(images_to_tensor(&[0; 10], 1, 3, 32).is_err());
}
