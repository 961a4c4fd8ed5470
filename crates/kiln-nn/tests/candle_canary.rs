//! Canaries: the candle 0.11 behaviours that made kiln write its own ops. If one of these
//! starts failing, candle has fixed the problem and kiln's replacement can be reconsidered.
//! (Measured here, not taken on trust.)

use candle_core::{Device, Tensor, Var, D};

fn x() -> Var {
    let v: Vec<f32> = (0..16).map(|i| ((i * 7) % 16) as f32 * 0.1).collect();
    Var::from_tensor(&Tensor::from_vec(v, (1, 1, 4, 4), &Device::Cpu).unwrap()).unwrap()
}

#[test]
fn candle_fused_softmax_layer_norm_rms_norm_have_no_backward() {
    let v = x();
    let t = v.as_tensor().reshape((4, 4)).unwrap();
    let w = Tensor::ones(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    let r = Tensor::arange(0f32, 16., &Device::Cpu)
        .unwrap()
        .reshape((4, 4))
        .unwrap();
    for (name, y) in [
        (
            "softmax_last_dim",
            candle_nn::ops::softmax_last_dim(&t).unwrap(),
        ),
        (
            "layer_norm",
            candle_nn::ops::layer_norm(&t, &w, &b, 1e-5).unwrap(),
        ),
        ("rms_norm", candle_nn::ops::rms_norm(&t, &w, 1e-5).unwrap()),
    ] {
        let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(
            g.get(v.as_tensor()).is_none(),
            "candle's {name} now has a backward pass"
        );
    }
    // kiln's versions do propagate
    let y = kiln_nn::ops::softmax_last_dim(&t).unwrap();
    let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(v.as_tensor()).is_some());
    let _ = D::Minus1;
}

#[test]
fn candle_max_pool_gradient_is_scaled_and_overlapping_windows_fail() {
    let v = x();
    let y = v.as_tensor().max_pool2d(2).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let total = g
        .get(v.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // 4 windows, each passes gradient 1 to its maximum: the true total is 4
    assert!(
        (total - 1.0).abs() < 1e-6,
        "candle's max-pool gradient total is now {total}"
    );
    let kiln =
        kiln_nn::ops::max_pool2d(v.as_tensor(), kiln_nn::ops::Pool2d::square(2, 2, 0)).unwrap();
    let g = kiln.sum_all().unwrap().backward().unwrap();
    let total = g
        .get(v.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(total, 4.0);
    // kernel 3, stride 1: candle's backward is an error
    let y = v.as_tensor().max_pool2d_with_stride(3, 1).unwrap();
    assert!(
        y.sum_all().unwrap().backward().is_err(),
        "candle now supports kernel != stride"
    );
}
