//! Probabilities from decision values, as libsvm computes them: Platt's sigmoid fitted by
//! Newton's method with backtracking (Lin, Lin and Weng, 2007), and pairwise coupling of the
//! one-vs-one probabilities (Wu, Lin and Weng, 2004, method 2).

/// Fit `P(positive | f) = 1 / (1 + exp(A f + B))` to decision values `dec` with labels
/// `positive`, with Platt's regularised targets. Returns `(A, B)`.
pub fn sigmoid_train(dec: &[f64], positive: &[bool]) -> (f64, f64) {
    let prior1 = positive.iter().filter(|&&p| p).count() as f64;
    let prior0 = positive.len() as f64 - prior1;
    let max_iter = 100;
    let min_step = 1e-10;
    let sigma = 1e-12;
    let eps = 1e-5;
    let hi = (prior1 + 1.0) / (prior1 + 2.0);
    let lo = 1.0 / (prior0 + 2.0);
    let t: Vec<f64> = positive.iter().map(|&p| if p { hi } else { lo }).collect();
    let objective = |a: f64, b: f64| -> f64 {
        dec.iter()
            .zip(&t)
            .map(|(&f, &ti)| {
                let z = f * a + b;
                if z >= 0.0 {
                    ti * z + (-z).exp().ln_1p()
                } else {
                    (ti - 1.0) * z + z.exp().ln_1p()
                }
            })
            .sum()
    };
    let mut a = 0.0;
    let mut b = ((prior0 + 1.0) / (prior1 + 1.0)).ln();
    let mut fval = objective(a, b);
    for _ in 0..max_iter {
        // Gradient and Hessian (plus sigma on the diagonal).
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (sigma, sigma, 0.0, 0.0, 0.0);
        for (&f, &ti) in dec.iter().zip(&t) {
            let z = f * a + b;
            let (p, q) = if z >= 0.0 {
                let e = (-z).exp();
                (e / (1.0 + e), 1.0 / (1.0 + e))
            } else {
                let e = z.exp();
                (1.0 / (1.0 + e), e / (1.0 + e))
            };
            let d2 = p * q;
            h11 += f * f * d2;
            h22 += d2;
            h21 += f * d2;
            let d1 = ti - p;
            g1 += f * d1;
            g2 += d1;
        }
        if g1.abs() < eps && g2.abs() < eps {
            break;
        }
        let det = h11 * h22 - h21 * h21;
        let da = -(h22 * g1 - h21 * g2) / det;
        let db = -(-h21 * g1 + h11 * g2) / det;
        let gd = g1 * da + g2 * db;
        let mut step = 1.0;
        while step >= min_step {
            let (na, nb) = (a + step * da, b + step * db);
            let nf = objective(na, nb);
            if nf < fval + 1e-4 * step * gd {
                a = na;
                b = nb;
                fval = nf;
                break;
            }
            step /= 2.0;
        }
        if step < min_step {
            break; // line search failed, keep the last point (as libsvm)
        }
    }
    (a, b)
}

/// `1 / (1 + exp(A f + B))`, computed without overflow.
pub fn sigmoid_predict(f: f64, a: f64, b: f64) -> f64 {
    let z = f * a + b;
    if z >= 0.0 {
        let e = (-z).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + z.exp())
    }
}

/// Class probabilities from pairwise probabilities `r[i][j] = P(i | i or j)` for `k`
/// classes, by libsvm's fixed-point iteration.
pub fn multiclass_probability(k: usize, r: &[Vec<f64>]) -> Vec<f64> {
    let max_iter = 100.max(k);
    let eps = 0.005 / k as f64;
    let mut q = vec![vec![0.0; k]; k];
    let mut p = vec![1.0 / k as f64; k];
    for t in 0..k {
        for j in 0..k {
            if j == t {
                continue;
            }
            q[t][t] += r[j][t] * r[j][t];
            q[t][j] = -r[j][t] * r[t][j];
        }
    }
    let mut qp = vec![0.0; k];
    for _ in 0..max_iter {
        let mut pqp = 0.0;
        for t in 0..k {
            qp[t] = (0..k).map(|j| q[t][j] * p[j]).sum();
            pqp += p[t] * qp[t];
        }
        let max_error = (0..k).map(|t| (qp[t] - pqp).abs()).fold(0.0, f64::max);
        if max_error < eps {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t][t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t][t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t][j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_separates_and_coupling_sums_to_one() {
        let dec = [-2.0, -1.5, -1.0, -0.2, 0.3, 1.0, 1.2, 2.0];
        let pos = [false, false, false, true, false, true, true, true];
        let (a, b) = sigmoid_train(&dec, &pos);
        assert!(a < 0.0, "A = {a}");
        assert!(sigmoid_predict(2.0, a, b) > 0.8);
        assert!(sigmoid_predict(-2.0, a, b) < 0.2);
        let r = vec![
            vec![0.0, 0.7, 0.8],
            vec![0.3, 0.0, 0.6],
            vec![0.2, 0.4, 0.0],
        ];
        let p = multiclass_probability(3, &r);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(p[0] > p[1] && p[1] > p[2], "{p:?}");
        // Two classes: coupling returns the pairwise probability itself.
        let p = multiclass_probability(2, &[vec![0.0, 0.9], vec![0.1, 0.0]]);
        assert!((p[0] - 0.9).abs() < 1e-3, "{p:?}");
    }
}
