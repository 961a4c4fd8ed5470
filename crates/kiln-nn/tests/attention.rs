//! The fused causal attention against its plain candle composition and finite differences, on
//! odd shapes: batch 1, one token, T not a multiple of the vector width or of the row block,
//! odd head sizes; and seeded determinism.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, check_grad, weighted_sum};
use kiln_nn::kernels::attention::{causal_attention, causal_attention_plain, causal_mask};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    kiln_nn::init::sample(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut kiln_core::rng(seed),
    )
    .unwrap()
}

/// (B, H, T, D): one token, batch 1, T below / across / beyond the 64-row block, odd D.
const SHAPES: [(usize, usize, usize, usize); 7] = [
    (1, 1, 1, 1),
    (1, 2, 1, 8),
    (2, 3, 5, 3),
    (1, 1, 17, 7),
    (3, 2, 64, 4),
    (1, 3, 65, 5),
    (2, 1, 130, 9),
];

type Attn = fn(&Tensor, &Tensor, &Tensor, f64) -> kiln_nn::Result<Tensor>;

/// Output and the gradients of sum(out ⊙ r) with respect to q, k, v.
fn run(f: Attn, qkv: &[Var], r: &Tensor, scale: f64) -> (Tensor, Vec<Tensor>) {
    let [q, k, v] = [0, 1, 2].map(|i| qkv[i].as_tensor());
    let y = f(q, k, v, scale).unwrap();
    let g = weighted_sum(&y, r).backward().unwrap();
    let grads = qkv
        .iter()
        .map(|x| g.get(x.as_tensor()).expect("a gradient").clone())
        .collect();
    (y, grads)
}

fn inputs(shape: (usize, usize, usize, usize), seed: u64) -> (Vec<Var>, Tensor) {
    let (b, h, t, d) = shape;
    let dims = [b, h, t, d];
    let qkv = (0..3)
        .map(|i| Var::from_tensor(&randn(&dims, seed * 10 + i)).unwrap())
        .collect();
    (qkv, randn(&dims, seed * 10 + 9))
}

#[test]
fn forward_and_gradients_match_the_plain_composition() {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let (qkv, r) = inputs(shape, i as u64);
        let scale = 1.0 / (shape.3 as f64).sqrt();
        let (ya, ga) = run(causal_attention, &qkv, &r, scale);
        let (ye, ge) = run(causal_attention_plain, &qkv, &r, scale);
        assert_close(&ya, &ye, 1e-5, &format!("{shape:?} output"));
        for (name, (a, e)) in ["dq", "dk", "dv"].iter().zip(ga.iter().zip(&ge)) {
            assert_close(a, e, 1e-4, &format!("{shape:?} {name}"));
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    for (i, &shape) in [(1, 1, 3, 2), (2, 1, 5, 3), (1, 2, 66, 1)]
        .iter()
        .enumerate()
    {
        let (qkv, r) = inputs(shape, 100 + i as u64);
        let [q, k, v] = [0, 1, 2].map(|j| qkv[j].as_tensor().clone());
        let scale = 0.7;
        let what = |n: &str| format!("{shape:?} {n}");
        let (eps, tol) = (1e-2, 3e-3);
        check_grad(
            |x| weighted_sum(&causal_attention(x, &k, &v, scale).unwrap(), &r),
            &q,
            eps,
            tol,
            &what("dq"),
        );
        check_grad(
            |x| weighted_sum(&causal_attention(&q, x, &v, scale).unwrap(), &r),
            &k,
            eps,
            tol,
            &what("dk"),
        );
        check_grad(
            |x| weighted_sum(&causal_attention(&q, &k, x, scale).unwrap(), &r),
            &v,
            eps,
            tol,
            &what("dv"),
        );
    }
}

#[test]
fn a_later_key_never_changes_an_earlier_output() {
    let (qkv, _) = inputs((1, 2, 70, 4), 7);
    let [q, k, v] = [0, 1, 2].map(|j| qkv[j].as_tensor().clone());
    let a = causal_attention(&q, &k, &v, 0.5).unwrap();
    // replace the keys and values of the last 3 positions
    let k2 = Tensor::cat(&[k.narrow(2, 0, 67).unwrap(), randn(&[1, 2, 3, 4], 8)], 2).unwrap();
    let v2 = Tensor::cat(&[v.narrow(2, 0, 67).unwrap(), randn(&[1, 2, 3, 4], 9)], 2).unwrap();
    let b = causal_attention(&q, &k2, &v2, 0.5).unwrap();
    assert_close(
        &a.narrow(2, 0, 67).unwrap(),
        &b.narrow(2, 0, 67).unwrap(),
        0.0,
        "earlier outputs",
    );
    let moved = (a.narrow(2, 67, 3).unwrap() - b.narrow(2, 67, 3).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 1e-3, "the last outputs should see the new keys");
}

#[test]
fn same_seed_same_output_and_gradients() {
    let shape = (3, 4, 33, 6);
    let (qkv, r) = inputs(shape, 42);
    let (y1, g1) = run(causal_attention, &qkv, &r, 0.4);
    let (qkv2, r2) = inputs(shape, 42);
    let (y2, g2) = run(causal_attention, &qkv2, &r2, 0.4);
    assert_close(&y1, &y2, 0.0, "output");
    for (a, b) in g1.iter().zip(&g2) {
        assert_close(a, b, 0.0, "gradient");
    }
}

#[test]
fn no_gradient_wanted_gives_the_same_output() {
    // plain tensors (no variables): the op keeps no softmax rows, one block at a time
    let [q, k, v] = [1, 2, 3].map(|s| randn(&[2, 2, 100, 8], s));
    let a = causal_attention(&q, &k, &v, 0.3).unwrap();
    let e = causal_attention_plain(&q, &k, &v, 0.3).unwrap();
    assert_close(&a, &e, 1e-5, "inference output");
}

#[test]
fn strided_inputs_are_accepted() {
    // q, k, v as the transposed views a model makes from (B, T, H, D)
    let [q, k, v] = [1, 2, 3].map(|s| randn(&[2, 9, 3, 5], s).transpose(1, 2).unwrap());
    let a = causal_attention(&q, &k, &v, 0.3).unwrap();
    let e = causal_attention_plain(&q, &k, &v, 0.3).unwrap();
    assert_close(&a, &e, 1e-5, "strided inputs");
}

#[test]
fn bad_shapes_and_scales_are_errors() {
    let q = randn(&[1, 2, 4, 3], 1);
    let e = causal_attention(&q, &randn(&[1, 2, 5, 3], 2), &q, 1.0).unwrap_err();
    assert!(e.to_string().contains("(B, H, T, D)"), "{e}");
    let e = causal_attention(&randn(&[2, 4, 3], 1), &q, &q, 1.0).unwrap_err();
    assert!(e.to_string().contains("[2, 4, 3]"), "{e}");
    let e = causal_attention(&q, &q, &q, f64::NAN).unwrap_err();
    assert!(e.to_string().contains("scale"), "{e}");
}

#[test]
fn the_mask_hides_exactly_the_future() {
    let m = causal_mask(3, DType::F32, &Device::Cpu).unwrap();
    let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let hidden: Vec<bool> = v.iter().map(|x| x.is_infinite()).collect();
    assert_eq!(
        hidden,
        [false, true, true, false, false, true, false, false, false]
    );
}
