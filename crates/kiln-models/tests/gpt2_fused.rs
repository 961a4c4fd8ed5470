//! GPT-2's training loss and every gradient are the same with the fused CPU kernels (causal
//! attention, softmax + cross-entropy) and with the plain candle compositions they replace.

use candle_core::{Device, Tensor};
use kiln_models::gpt2::{self, Gpt2Config};
use kiln_nn::{loss, Mode, TrainStep};

fn config(attn_pdrop: f64) -> Gpt2Config {
    Gpt2Config {
        vocab_size: 23,
        n_positions: 80,
        n_embd: 12,
        n_layer: 2,
        n_head: 3,
        resid_pdrop: 0.0,
        embd_pdrop: 0.0,
        attn_pdrop,
        bos_token_id: None,
        eos_token_id: None,
        ..Gpt2Config::default()
    }
}

/// Token ids (B, T) and next-token targets, from a simple seeded rule.
fn batch(b: usize, t: usize, seed: u32) -> (Tensor, Tensor) {
    let tok = |i: u32| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) % 23;
    let x: Vec<u32> = (0..(b * t) as u32).map(tok).collect();
    let y: Vec<u32> = (1..=(b * t) as u32).map(tok).collect();
    (
        Tensor::from_vec(x, (b, t), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, (b, t), &Device::Cpu).unwrap(),
    )
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn loss_and_gradients_agree_with_and_without_the_fused_kernels() {
    // T = 70 spans two 64-row blocks of the attention kernel; B = 1 and T = 1 are edge cases
    for (b, t) in [(3, 70), (1, 9), (2, 1)] {
        let (mut model, vars) = gpt2::train::fresh(&config(0.0), 5).unwrap();
        let xy = batch(b, t, 11);
        // fused: the model's own TrainStep loss (fused attention, fused cross-entropy)
        let fused = model.loss(&xy, &Mode::train(0)).unwrap();
        let gf = fused.backward().unwrap();
        // plain: candle ops with an explicit mask, composed cross-entropy
        model.set_fused_attention(false);
        let logits = model.forward_t(&xy.0, &Mode::train(0)).unwrap();
        let plain = loss::cross_entropy_plain(&logits, &xy.1).unwrap();
        let gp = plain.backward().unwrap();
        let (lf, lp) = (
            fused.to_scalar::<f32>().unwrap(),
            plain.to_scalar::<f32>().unwrap(),
        );
        assert!((lf - lp).abs() < 1e-5, "B={b} T={t}: loss {lf} vs {lp}");
        let data = vars.var_map().data().lock().unwrap();
        assert_eq!(data.len(), 2 * 12 + 4);
        for (name, var) in data.iter() {
            let a = gf.get(var.as_tensor()).expect("fused gradient");
            let e = gp.get(var.as_tensor()).expect("plain gradient");
            let d = max_rel_diff(a, e);
            assert!(d < 1e-4, "B={b} T={t} {name}: gradients differ by {d:e}");
        }
    }
}

#[test]
fn attention_dropout_in_training_takes_the_plain_path_and_repeats() {
    // with attn_pdrop > 0 a training step drops attention weights (the plain path); evaluation
    // equals the model without dropout, through the fused kernel
    let (model, _) = gpt2::train::fresh(&config(0.5), 3).unwrap();
    let (no_drop, _) = gpt2::train::fresh(&config(0.0), 3).unwrap();
    let (x, _) = batch(2, 10, 4);
    let a = model.forward_t(&x, &Mode::train(9)).unwrap();
    let b = model.forward_t(&x, &Mode::train(9)).unwrap();
    assert_eq!(max_rel_diff(&a, &b), 0.0, "same seed, same dropout masks");
    let e = model.forward_t(&x, &Mode::eval()).unwrap();
    assert!(
        max_rel_diff(&a, &e) > 1e-3,
        "dropout should change the logits"
    );
    let n = no_drop.forward_t(&x, &Mode::eval()).unwrap();
    assert_eq!(
        max_rel_diff(&e, &n),
        0.0,
        "evaluation ignores attention dropout"
    );
}
