//! Shared helpers for kiln-nn's tests: fixture tensors, variable maps, closeness checks and
//! finite differences.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde_json::Value;

pub fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// A VarMap holding the fixture's parameters (as variables), and a builder over it.
pub fn var_map(params: &Value) -> (VarMap, VarBuilder<'static>) {
    let map = VarMap::new();
    {
        let mut d = map.data().lock().unwrap();
        for (k, v) in params.as_object().unwrap() {
            d.insert(k.clone(), Var::from_tensor(&tensor(v)).unwrap());
        }
    }
    let vb = VarBuilder::from_varmap(&map, candle_core::DType::F32, &Device::Cpu);
    (map, vb)
}

pub fn vars(map: &VarMap) -> HashMap<String, Var> {
    map.data().lock().unwrap().clone()
}

/// |a - b| ≤ tol · max(1, |b|) element-wise.
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shape");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let err = (*x as f64 - *y as f64).abs();
        assert!(
            err <= tol * (y.abs() as f64).max(1.0),
            "{what}[{i}]: kiln {x} vs reference {y} (error {err:e})"
        );
    }
}

/// Check the gradient of scalar `f` at `x` against central finite differences.
pub fn check_grad(f: impl Fn(&Tensor) -> Tensor, x: &Tensor, eps: f64, tol: f64, what: &str) {
    let var = Var::from_tensor(x).unwrap();
    let y = f(var.as_tensor());
    let grads = y.backward().unwrap();
    let g = grads
        .get(var.as_tensor())
        .unwrap_or_else(|| panic!("{what}: no gradient reached the input"))
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let base = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for i in 0..base.len() {
        let eval = |d: f64| {
            let mut v = base.clone();
            v[i] = (v[i] as f64 + d) as f32;
            let t = Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap();
            f(&t)
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let num = (eval(eps) - eval(-eps)) / (2.0 * eps);
        let err = (num - g[i] as f64).abs();
        assert!(
            err <= tol * num.abs().max(1.0),
            "{what}: d/dx[{i}] analytic {} vs finite difference {num} (error {err:e})",
            g[i]
        );
    }
}

/// sum(out * r): a scalar whose gradient wrt out is r.
pub fn weighted_sum(out: &Tensor, r: &Tensor) -> Tensor {
    (out * r).unwrap().sum_all().unwrap()
}
