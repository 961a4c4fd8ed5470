//! Whole-sequence LSTM and GRU directions as single custom ops.
//!
//! The caller computes the input projection of every time step at once (one gemm, candle's
//! matmul); the op adds the biases that sum into it (b_ih, and b_hh except GRU's b_hn) and runs the recurrence: per step
//! one gemm `h_{t-1} · W_hhᵀ` and one fused pass over the gates, keeping the activated gates
//! for the backward pass. The backward walks the sequence once in reverse: one fused pass and
//! one gemm `dA_t · W_hh` per step, then the weight gradient `Σ_t dA_tᵀ h_{t-1}` as one gemm.
//!
//! PyTorch's layout: LSTM gates i, f, g, o; GRU gates r, z, n with
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))` and `h' = (1 - z) ⊙ n + z ⊙ h`.
//!
//! Legend: T time, B batch, H hidden size, G gates (4 LSTM, 3 GRU).

use std::ops::Range;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::gemm::{matmul, matmul_new, Mat, MatMut, Par};
use super::{exp, f32_slice, fusable, simd_kernel, team, with_f32, CResult};

use crate::{Error, Result};

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

simd_kernel! {
    /// One batch row of the LSTM gate pass: pre-activations `g` (4H) plus the bias `b` (4H),
    /// activated in place to i, f, g, o; previous cell `cp` (H) → cell `c` and hidden `h` (H).
    fn lstm_fwd_row<'a>(
        g: &'a mut [f32],
        b: &'a [f32],
        cp: &'a [f32],
        c: &'a mut [f32],
        hv: &'a mut [f32],
    ) as LstmFwdRow {
        let h = cp.len();
        let (gi, rest) = g.split_at_mut(h);
        let (gf, rest) = rest.split_at_mut(h);
        let (gg, go) = rest.split_at_mut(h);
        let (go, c, hv) = (&mut go[..h], &mut c[..h], &mut hv[..h]);
        let (bi, bf, bg, bo) = (&b[..h], &b[h..2 * h], &b[2 * h..3 * h], &b[3 * h..4 * h]);
        for j in 0..h {
            let (i, f) = (sigmoid(gi[j] + bi[j]), sigmoid(gf[j] + bf[j]));
            let (n, o) = (tanh(gg[j] + bg[j]), sigmoid(go[j] + bo[j]));
            (gi[j], gf[j], gg[j], go[j]) = (i, f, n, o);
            c[j] = f * cp[j] + i * n;
            hv[j] = o * tanh(c[j]);
        }
    }
}

simd_kernel! {
    /// One batch row of the LSTM backward gate pass: activated gates `g` (4H), cell `c` and
    /// previous cell `cp`, incoming gradients of h and c; updates the carried `dh`/`dc` (in: from
    /// step t+1, out: dc for step t-1; dh is overwritten by the caller's gemm) and writes dA (4H).
    fn lstm_bwd_row<'a>(
        g: &'a [f32],
        c: &'a [f32],
        cp: &'a [f32],
        gh: &'a [f32],
        gc: &'a [f32],
        dh: &'a mut [f32],
        dc: &'a mut [f32],
        da: &'a mut [f32],
    ) as LstmBwdRow {
        let h = c.len();
        let (gi, gf, gg, go) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h], &g[3 * h..4 * h]);
        let (cp, gh, gc, dh, dc) = (&cp[..h], &gh[..h], &gc[..h], &mut dh[..h], &mut dc[..h]);
        let (dai, rest) = da.split_at_mut(h);
        let (daf, rest) = rest.split_at_mut(h);
        let (dag, dao) = rest.split_at_mut(h);
        let dao = &mut dao[..h];
        for j in 0..h {
            let (i, f, n, o) = (gi[j], gf[j], gg[j], go[j]);
            let tc = tanh(c[j]);
            let d_h = gh[j] + dh[j];
            let d_c = gc[j] + dc[j] + d_h * o * (1.0 - tc * tc);
            dai[j] = d_c * n * i * (1.0 - i);
            daf[j] = d_c * cp[j] * f * (1.0 - f);
            dag[j] = d_c * i * (1.0 - n * n);
            dao[j] = d_h * tc * o * (1.0 - o);
            dc[j] = d_c * f;
        }
    }
}

simd_kernel! {
    /// One batch row of the GRU gate pass: projections `x3` and `h3` (3H), `b_hn`, previous `hp`
    /// → new `hv` (H), and saved r, z, n, W_hn h + b_hn (4H).
    fn gru_fwd_row<'a>(
        x3: &'a [f32],
        h3: &'a [f32],
        b_hn: &'a [f32],
        hp: &'a [f32],
        hv: &'a mut [f32],
        s4: &'a mut [f32],
    ) as GruFwdRow {
        let h = hp.len();
        let (xr, xz, xn) = (&x3[..h], &x3[h..2 * h], &x3[2 * h..3 * h]);
        let (hr, hz, hnn) = (&h3[..h], &h3[h..2 * h], &h3[2 * h..3 * h]);
        let (b_hn, hv) = (&b_hn[..h], &mut hv[..h]);
        let (sr, rest) = s4.split_at_mut(h);
        let (sz, rest) = rest.split_at_mut(h);
        let (sn, shn) = rest.split_at_mut(h);
        let shn = &mut shn[..h];
        for j in 0..h {
            let r = sigmoid(xr[j] + hr[j]);
            let z = sigmoid(xz[j] + hz[j]);
            let hn = hnn[j] + b_hn[j];
            let n = tanh(xn[j] + r * hn);
            hv[j] = n + z * (hp[j] - n);
            (sr[j], sz[j], sn[j], shn[j]) = (r, z, n, hn);
        }
    }
}

simd_kernel! {
    /// One batch row of the GRU backward gate pass.
    fn gru_bwd_row<'a>(
        s4: &'a [f32],
        gr: &'a [f32],
        dh_next: &'a [f32],
        hp: &'a [f32],
        dx: &'a mut [f32],
        dhh: &'a mut [f32],
        dh: &'a mut [f32],
    ) as GruBwdRow {
        let h = hp.len();
        let (sr, sz, sn, shn) = (
            &s4[..h],
            &s4[h..2 * h],
            &s4[2 * h..3 * h],
            &s4[3 * h..4 * h],
        );
        let (gr, dh_next, dh) = (&gr[..h], &dh_next[..h], &mut dh[..h]);
        let (dxr, rest) = dx.split_at_mut(h);
        let (dxz, dxn) = rest.split_at_mut(h);
        let dxn = &mut dxn[..h];
        let (dhr, rest) = dhh.split_at_mut(h);
        let (dhz, dhn) = rest.split_at_mut(h);
        let dhn = &mut dhn[..h];
        for j in 0..h {
            let (r, z, n, hn) = (sr[j], sz[j], sn[j], shn[j]);
            let d = gr[j] + dh_next[j];
            let dan = d * (1.0 - z) * (1.0 - n * n);
            let dar = dan * hn * r * (1.0 - r);
            let daz = d * (hp[j] - n) * z * (1.0 - z);
            (dxr[j], dxz[j], dxn[j]) = (dar, daz, dan);
            (dhr[j], dhz[j], dhn[j]) = (dar, daz, dan * r);
            dh[j] = d * z;
        }
    }
}

/// The (cols, rows) transpose of a row-major (rows, cols) matrix. The step gemm reads W_hhᵀ
/// (H, G·H) row-major so that gemm finds its left operand column-major and does not repack
/// W_hh at every time step.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for (i, row) in x.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

/// Every row of `x` (rows × bias.len()) plus `bias`, in a new buffer.
fn add_rows(x: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    out
}

/// `out = Σ_rows x` for x (rows × out.len()).
fn sum_rows(x: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in x.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
    }
}

/// Batch rows per time step below which a step runs on one thread (gemm's own threads then
/// split the product).
const MIN_SPLIT_WORK: usize = 1 << 18;

/// The batch rows of one time step split into one contiguous block per team member, when a
/// step holds enough work (`b · h · gh` multiply-adds) to pay for the hand-off; each block
/// runs its part of the step gemm and of the gate pass, which only touch its own rows.
fn row_blocks(b: usize, h: usize, gh: usize) -> Vec<Range<usize>> {
    let parts = team().size().min(b);
    let parts = if b * h * gh < MIN_SPLIT_WORK {
        1
    } else {
        parts.max(1)
    };
    (0..parts)
        .map(|k| b * k / parts..b * (k + 1) / parts)
        .collect()
}

/// The step gemm's threading: gemm's own when the step is one block, none inside a block.
fn block_par(blocks: &[Range<usize>]) -> Par {
    if blocks.len() == 1 {
        Par::Auto
    } else {
        Par::Seq
    }
}

/// `x` (rows of `width` values) cut into the given blocks of rows, which must cover a prefix
/// of `x` in order.
fn split_rows<'a>(x: &'a mut [f32], width: usize, blocks: &[Range<usize>]) -> Vec<&'a mut [f32]> {
    let cuts = blocks.iter().skip(1).map(|r| r.start * width);
    kiln_core::team::cut(x, cuts)
}

/// Time index of step `s` (reverse directions walk the sequence backwards).
fn order(s: usize, t_len: usize, reverse: bool) -> usize {
    if reverse {
        t_len - 1 - s
    } else {
        s
    }
}

/// Sizes (T, B, H) of a sequence op, checked against its inputs.
fn dims(xw: &Layout, w_hh: &Layout, g: usize, op: &str) -> CResult<(usize, usize, usize)> {
    let (&[t, b, gh], &[gh2, h]) = (xw.dims(), w_hh.dims()) else {
        candle_core::bail!(
            "{op}: expected projections (T, B, {g}·H) and W_hh ({g}·H, H), got {:?} and {:?}",
            xw.dims(),
            w_hh.dims()
        );
    };
    if gh != g * h || gh2 != g * h {
        candle_core::bail!(
            "{op}: projections {:?} and W_hh {:?} do not agree on {g}·H",
            xw.dims(),
            w_hh.dims()
        );
    }
    Ok((t, b, h))
}

/// Sizes (T, B, I, H) of a sequence op on x (T, B, I) and [W_ih | W_hh] (G·H, I + H).
fn dims_x(x: &Layout, w: &Layout, g: usize, op: &str) -> CResult<(usize, usize, usize, usize)> {
    let (&[t, b, i], &[gh, cols]) = (x.dims(), w.dims()) else {
        candle_core::bail!(
            "{op}: expected x (T, B, I) and [W_ih | W_hh] ({g}·H, I + H), got {:?} and {:?}",
            x.dims(),
            w.dims()
        );
    };
    if cols < i || gh != g * (cols - i) {
        candle_core::bail!(
            "{op}: x {:?} and [W_ih | W_hh] {:?} do not agree on I and {g}·H",
            x.dims(),
            w.dims()
        );
    }
    Ok((t, b, i, cols - i))
}

/// Columns `i..i + h` of a row-major matrix with `i + h` columns, as a contiguous matrix.
fn columns(w: &[f32], i: usize, h: usize) -> Vec<f32> {
    w.chunks_exact(i + h)
        .flat_map(|r| &r[i..])
        .copied()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// LSTM

/// (x (T, B, I), [W_ih | W_hh] (4H, I + H), state (2·B·H + 4H) = [h0, c0, b_ih + b_hh])
/// → (2, T, B, H) = [h_t, c_t]. The input projection x W_ihᵀ for every step is one gemm
/// inside the op, and its gradients (dx, dW_ih) are computed in the backward: kept out of
/// candle's graph, the (T, B, 4H) projection costs no zero-filled gradient buffer and no
/// accumulation pass of its own (measured: 15% of a training step went to candle's gradient
/// bookkeeping).
struct LstmSeq {
    reverse: bool,
    /// Activated gates i, f, g, o of every step (T, B, 4H), kept for the backward pass.
    gates: Mutex<Vec<f32>>,
}

impl CustomOp3 for LstmSeq {
    fn name(&self) -> &'static str {
        "kiln-lstm-seq"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (t_len, b, i, h) = dims_x(l1, l2, 4, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let st = f32_slice(s3, l3, self.name())?;
        let bh = b * h;
        if st.len() != 2 * bh + 4 * h {
            candle_core::bail!(
                "{}: expected h0, c0 and the bias, {} values",
                self.name(),
                2 * bh + 4 * h
            );
        }
        // pre-activations x W_ihᵀ, written once by the gemm (the bias joins in the gate pass),
        // activated in place
        let mut gates = matmul_new(
            Mat::rows(x, t_len * b, i),
            Mat::strided(w, 4 * h, i, i + h, 1).t(),
            Par::Auto,
        );
        let bias = &st[2 * bh..];
        let mut out = vec![0f32; 2 * t_len * bh];
        let w_t = transpose(&columns(w, i, h), 4 * h, h);
        let (mut hp, mut cp) = (st[..bh].to_vec(), st[bh..2 * bh].to_vec());
        let blocks = row_blocks(b, h, 4 * h);
        let par = block_par(&blocks);
        for s in 0..t_len {
            let t = order(s, t_len, self.reverse);
            let gt = &mut gates[t * 4 * bh..(t + 1) * 4 * bh];
            let (oh, oc) = out.split_at_mut(t_len * bh);
            let (oh, oc) = (&mut oh[t * bh..(t + 1) * bh], &mut oc[t * bh..(t + 1) * bh]);
            let items: Vec<_> = blocks
                .iter()
                .cloned()
                .zip(split_rows(gt, 4 * h, &blocks))
                .zip(
                    split_rows(oh, h, &blocks)
                        .into_iter()
                        .zip(split_rows(oc, h, &blocks)),
                )
                .collect();
            let (hp_, cp_, w_t) = (&hp, &cp, &w_t);
            team().map(items, |((rows, g), (oh, oc))| {
                let m = rows.len();
                // (m, H) · (H, 4H) → (m, 4H), added to the input projection
                matmul(
                    MatMut::rows(g, m, 4 * h),
                    Mat::rows(&hp_[rows.start * h..rows.end * h], m, h),
                    Mat::rows(w_t, h, 4 * h),
                    true,
                    par,
                );
                for (k, r) in rows.enumerate() {
                    let (loc, glob) = (k * h..(k + 1) * h, r * h..(r + 1) * h);
                    let gk = &mut g[4 * loc.start..4 * loc.end];
                    let row = LstmFwdRow(gk, bias, &cp_[glob], &mut oc[loc.clone()], &mut oh[loc]);
                    pulp::Arch::new().dispatch(row);
                }
            });
            hp.copy_from_slice(oh);
            cp.copy_from_slice(oc);
        }
        *self.gates.lock().map_err(|_| poisoned(self.name()))? = gates;
        Ok((CpuStorage::F32(out), Shape::from((2, t_len, b, h))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w_cat: &Tensor,
        state: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let (t_len, b, i, h) = dims_x(x.layout(), w_cat.layout(), 4, name)?;
        let (h4, bh) = (4 * h, b * h);
        let gates = self.gates.lock().map_err(|_| poisoned(name))?;
        let mut da = vec![0f32; t_len * 4 * bh];
        let mut dw = vec![0f32; 4 * h * h];
        let mut dst = vec![0f32; 2 * bh + h4];
        let mut dx = vec![0f32; t_len * b * i];
        let mut dw_cat = vec![0f32; h4 * (i + h)];
        with_f32(w_cat, name, |w_cat| {
            let w = &columns(w_cat, i, h);
            with_f32(state, name, |st| {
                with_f32(res, name, |out| {
                    with_f32(grad, name, |gr| {
                        let (hs, cs) = out.split_at(t_len * bh);
                        let (gh, gc) = gr.split_at(t_len * bh);
                        let (h0, c0) = (&st[..bh], &st[bh..2 * bh]);
                        let (mut dh_next, mut dc_next) = (vec![0f32; bh], vec![0f32; bh]);
                        let blocks = row_blocks(b, h, h4);
                        let par = block_par(&blocks);
                        for s in (0..t_len).rev() {
                            let t = order(s, t_len, self.reverse);
                            let prev = (s > 0).then(|| order(s - 1, t_len, self.reverse));
                            let c_prev = match prev {
                                Some(p) => &cs[p * bh..(p + 1) * bh],
                                None => c0,
                            };
                            let g = &gates[t * 4 * bh..(t + 1) * 4 * bh];
                            let dat = &mut da[t * 4 * bh..(t + 1) * 4 * bh];
                            let at = t * bh;
                            let items: Vec<_> = blocks
                                .iter()
                                .cloned()
                                .zip(split_rows(dat, h4, &blocks))
                                .zip(
                                    split_rows(&mut dh_next, h, &blocks)
                                        .into_iter()
                                        .zip(split_rows(&mut dc_next, h, &blocks)),
                                )
                                .collect();
                            team().map(items, |((rows, dak), (dhk, dck))| {
                                let m = rows.len();
                                for (k, r) in rows.enumerate() {
                                    let loc = k * h..(k + 1) * h;
                                    let glob = r * h..(r + 1) * h;
                                    let tk = at + glob.start..at + glob.end;
                                    let row = LstmBwdRow(
                                        &g[4 * glob.start..4 * glob.end],
                                        &cs[tk.clone()],
                                        &c_prev[glob],
                                        &gh[tk.clone()],
                                        &gc[tk],
                                        &mut dhk[loc.clone()],
                                        &mut dck[loc.clone()],
                                        &mut dak[4 * loc.start..4 * loc.end],
                                    );
                                    pulp::Arch::new().dispatch(row);
                                }
                                // dh_{t-1} = dA_t (m, 4H) · W_hh (4H, H)
                                matmul(
                                    MatMut::rows(dhk, m, h),
                                    Mat::rows(dak, m, h4),
                                    Mat::rows(w, h4, h),
                                    false,
                                    par,
                                );
                            });
                        }
                        weight_grad(&mut dw, &da, hs, h0, t_len, b, h, 4, self.reverse);
                        dst[..bh].copy_from_slice(&dh_next);
                        dst[bh..2 * bh].copy_from_slice(&dc_next);
                        sum_rows(&da, &mut dst[2 * bh..]);
                        Ok(())
                    })
                })
            })?;
            // the input projection's gradients: dx = dA · W_ih, dW_ih = dAᵀ · x
            let da_m = Mat::rows(&da, t_len * b, h4);
            matmul(
                MatMut::rows(&mut dx, t_len * b, i),
                da_m,
                Mat::strided(w_cat, h4, i, i + h, 1),
                false,
                Par::Auto,
            );
            with_f32(x, name, |xs| {
                matmul(
                    MatMut::strided(&mut dw_cat, h4, i, i + h, 1),
                    da_m.t(),
                    Mat::rows(xs, t_len * b, i),
                    false,
                    Par::Auto,
                );
                Ok(())
            })
        })?;
        for (row, dwr) in dw_cat.chunks_exact_mut(i + h).zip(dw.chunks_exact(h)) {
            row[i..].copy_from_slice(dwr);
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (t_len, b, i), dev)?),
            Some(Tensor::from_vec(dw_cat, (h4, i + h), dev)?),
            Some(Tensor::from_vec(dst, 2 * bh + h4, dev)?),
        ))
    }
}

/// dW_hh (G·H, H) = Σ_t dA_tᵀ (G·H, B) · h_{t-1} (B, H), with h_{-1} = h0: two gemms, one over
/// every step whose previous state is an output, one for the first step.
#[allow(clippy::too_many_arguments)]
fn weight_grad(
    dw: &mut [f32],
    da: &[f32],
    hs: &[f32],
    h0: &[f32],
    t_len: usize,
    b: usize,
    h: usize,
    g: usize,
    reverse: bool,
) {
    let (bh, gh) = (b * h, g * h);
    let rows = (t_len - 1) * b;
    // forward: steps 1.. pair with outputs 0..T-1; reverse: steps 0..T-1 with outputs 1..
    let (da_rest, hs_rest, first) = if reverse {
        (&da[..rows * gh], &hs[bh..], t_len - 1)
    } else {
        (&da[b * gh..], &hs[..rows * h], 0)
    };
    matmul(
        MatMut::rows(dw, gh, h),
        Mat::rows(da_rest, rows, gh).t(),
        Mat::rows(hs_rest, rows, h),
        false,
        Par::Auto,
    );
    matmul(
        MatMut::rows(dw, gh, h),
        Mat::rows(&da[first * b * gh..(first + 1) * b * gh], b, gh).t(),
        Mat::rows(h0, b, h),
        true,
        Par::Auto,
    );
}

fn poisoned(op: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: saved gates unavailable (a thread panicked)"))
}

/// Check the shapes shared by both cells: x (T, B, I), W_ih (G·H, I), W_hh (G·H, H), h0 (B, H).
fn check(
    x: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    h0: &Tensor,
    g: usize,
    what: &str,
) -> Result<()> {
    let ok = x.rank() == 3
        && w_ih.rank() == 2
        && w_hh.rank() == 2
        && w_hh.dim(0)? == g * w_hh.dim(1)?
        && w_ih.dim(0)? == w_hh.dim(0)?
        && w_ih.dim(1)? == x.dim(2)?
        && h0.dims() == [x.dim(1)?, w_hh.dim(1)?];
    if !ok {
        return Err(Error::shape(format!(
            "{what}: expected x (T, B, I), W_ih ({g}·H, I), W_hh ({g}·H, H), h0 (B, H); got {:?}, \
             {:?}, {:?}, {:?}",
            x.dims(),
            w_ih.dims(),
            w_hh.dims(),
            h0.dims()
        )));
    }
    Ok(())
}

/// Weights of one direction of a recurrent layer, PyTorch's layout.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// Input weights (G·H, I).
    pub w_ih: &'a Tensor,
    /// Recurrent weights (G·H, H).
    pub w_hh: &'a Tensor,
    /// Input bias (G·H).
    pub b_ih: Option<&'a Tensor>,
    /// Recurrent bias (G·H).
    pub b_hh: Option<&'a Tensor>,
}

impl Weights<'_> {
    fn all_fusable(&self, others: &[&Tensor]) -> bool {
        [self.w_ih, self.w_hh]
            .into_iter()
            .chain(self.b_ih)
            .chain(self.b_hh)
            .chain(others.iter().copied())
            .all(fusable)
    }

    /// x (T, B, I) · W_ihᵀ + biases → (T, B, G·H).
    fn project(&self, x: &Tensor, bias: Option<Tensor>) -> Result<Tensor> {
        let (t, b, i) = x.dims3()?;
        let mut xw = x.reshape((t * b, i))?.matmul(&self.w_ih.t()?)?; // (T·B, G·H)
        if let Some(bias) = bias {
            xw = xw.broadcast_add(&bias)?;
        }
        Ok(xw.reshape((t, b, ()))?)
    }
}

/// One LSTM direction over x (T, B, I) from (h0, c0) (B, H): outputs (T, B, H) and the final
/// (h, c). Fused on the CPU for f32, [`lstm_plain`] elsewhere.
pub fn lstm(
    x: &Tensor,
    p: Weights,
    h0: &Tensor,
    c0: &Tensor,
    reverse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    check(x, p.w_ih, p.w_hh, h0, 4, "LSTM")?;
    if !p.all_fusable(&[x, h0, c0]) {
        return lstm_plain(x, p, h0, c0, reverse);
    }
    let bias = match (p.b_ih, p.b_hh) {
        (Some(a), Some(b)) => Some((a + b)?),
        (a, b) => a.or(b).cloned(),
    };
    let bias = match bias {
        Some(b) => b,
        None => Tensor::zeros(p.w_hh.dim(0)?, x.dtype(), x.device())?,
    };
    let state = Tensor::cat(&[&h0.flatten_all()?, &c0.flatten_all()?, &bias], 0)?; // 2·B·H + 4H
    let w_cat = Tensor::cat(&[p.w_ih, p.w_hh], 1)?; // (4H, I + H)
    let op = LstmSeq {
        reverse,
        gates: Mutex::new(Vec::new()),
    };
    let out = x.contiguous()?.apply_op3(&w_cat, &state, op)?; // (2, T, B, H)
    let (hs, cs) = (out.get(0)?, out.get(1)?);
    let last = if reverse { 0 } else { x.dim(0)? - 1 };
    Ok((hs.clone(), hs.get(last)?, cs.get(last)?))
}

/// The reference LSTM direction: candle ops, one step at a time.
pub fn lstm_plain(
    x: &Tensor,
    p: Weights,
    h0: &Tensor,
    c0: &Tensor,
    reverse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let hs = p.w_hh.dim(1)?;
    let (mut h, mut c) = (h0.clone(), c0.clone());
    let xw = split_time(&p.project(x, p.b_ih.cloned())?)?;
    let w_hh_t = p.w_hh.t()?;
    let mut outs = Vec::with_capacity(xw.len());
    for step in 0..xw.len() {
        let t = order(step, xw.len(), reverse);
        let mut hw = h.matmul(&w_hh_t)?; // (B, 4H)
        if let Some(bh) = p.b_hh {
            hw = hw.broadcast_add(bh)?;
        }
        let gates = (&xw[t] + hw)?; // i, f, g, o
        let sig = candle_nn::ops::sigmoid(&gates)?;
        let i = sig.narrow(1, 0, hs)?;
        let f = sig.narrow(1, hs, hs)?;
        let g = gates.narrow(1, 2 * hs, hs)?.tanh()?;
        let o = sig.narrow(1, 3 * hs, hs)?;
        c = ((f * &c)? + (i * g)?)?;
        h = (o * c.tanh()?)?;
        outs.push(h.clone());
    }
    if reverse {
        outs.reverse();
    }
    Ok((Tensor::stack(&outs, 0)?, h, c))
}

// ---------------------------------------------------------------------------------------------
// GRU

/// (xw (T, B, 3H) = x W_ihᵀ, W_hh (3H, H), aux (B·H + 4H) = [h0, b_hn, b_ih + (b_hr, b_hz, 0)])
/// → (T, B, H).
struct GruSeq {
    reverse: bool,
    /// r, z, n and W_hn h + b_hn of every step (T, B, 4H), kept for the backward pass.
    saved: Mutex<Vec<f32>>,
}

impl CustomOp3 for GruSeq {
    fn name(&self) -> &'static str {
        "kiln-gru-seq"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (t_len, b, h) = dims(l1, l2, 3, self.name())?;
        let xw = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let aux = f32_slice(s3, l3, self.name())?;
        let bh = b * h;
        if aux.len() != bh + 4 * h {
            candle_core::bail!(
                "{}: expected h0, b_hn and the bias, {} values",
                self.name(),
                bh + 4 * h
            );
        }
        let (mut hp, b_hn) = (aux[..bh].to_vec(), &aux[bh..bh + h]);
        let xw = add_rows(xw, &aux[bh + h..]);
        let mut saved = vec![0f32; t_len * 4 * bh];
        let mut out = vec![0f32; t_len * bh];
        let mut hw = vec![0f32; 3 * bh];
        let w_t = transpose(w, 3 * h, h);
        let blocks = row_blocks(b, h, 3 * h);
        let par = block_par(&blocks);
        for s in 0..t_len {
            let t = order(s, t_len, self.reverse);
            let xt = &xw[t * 3 * bh..(t + 1) * 3 * bh];
            let sv = &mut saved[t * 4 * bh..(t + 1) * 4 * bh];
            let ot = &mut out[t * bh..(t + 1) * bh];
            let items: Vec<_> = blocks
                .iter()
                .cloned()
                .zip(split_rows(&mut hw, 3 * h, &blocks))
                .zip(
                    split_rows(ot, h, &blocks)
                        .into_iter()
                        .zip(split_rows(sv, 4 * h, &blocks)),
                )
                .collect();
            let (hp_, w_t) = (&hp, &w_t);
            team().map(items, |((rows, hwk), (ok, svk))| {
                let m = rows.len();
                // (m, H) · (H, 3H) → (m, 3H)
                matmul(
                    MatMut::rows(hwk, m, 3 * h),
                    Mat::rows(&hp_[rows.start * h..rows.end * h], m, h),
                    Mat::rows(w_t, h, 3 * h),
                    false,
                    par,
                );
                for (k, r) in rows.enumerate() {
                    let (loc, glob) = (k * h..(k + 1) * h, r * h..(r + 1) * h);
                    let row = GruFwdRow(
                        &xt[3 * glob.start..3 * glob.end],
                        &hwk[3 * loc.start..3 * loc.end],
                        b_hn,
                        &hp_[glob],
                        &mut ok[loc.clone()],
                        &mut svk[4 * loc.start..4 * loc.end],
                    );
                    pulp::Arch::new().dispatch(row);
                }
            });
            hp.copy_from_slice(ot);
        }
        *self.saved.lock().map_err(|_| poisoned(self.name()))? = saved;
        Ok((CpuStorage::F32(out), Shape::from((t_len, b, h))))
    }

    fn bwd(
        &self,
        xw: &Tensor,
        w_hh: &Tensor,
        aux: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (t_len, b, h3) = xw.dims3()?;
        let (h, bh) = (h3 / 3, b * h3 / 3);
        let name = self.name();
        let saved = self.saved.lock().map_err(|_| poisoned(name))?;
        let mut dxw = vec![0f32; t_len * 3 * bh];
        let mut dhw = vec![0f32; t_len * 3 * bh];
        let mut dw = vec![0f32; 3 * h * h];
        let mut daux = vec![0f32; bh + 4 * h];
        with_f32(w_hh, name, |w| {
            with_f32(aux, name, |aux| {
                with_f32(res, name, |hs| {
                    with_f32(grad, name, |gr| {
                        let h0 = &aux[..bh];
                        let mut dh_next = vec![0f32; bh];
                        let mut dh = vec![0f32; bh];
                        let (dh0, rest) = daux.split_at_mut(bh);
                        let (db_hn, dbias) = rest.split_at_mut(h);
                        let blocks = row_blocks(b, h, h3);
                        let par = block_par(&blocks);
                        for s in (0..t_len).rev() {
                            let t = order(s, t_len, self.reverse);
                            let hprev = match (s > 0).then(|| order(s - 1, t_len, self.reverse)) {
                                Some(p) => &hs[p * bh..(p + 1) * bh],
                                None => h0,
                            };
                            let sv = &saved[t * 4 * bh..(t + 1) * 4 * bh];
                            let dx = &mut dxw[t * 3 * bh..(t + 1) * 3 * bh];
                            let dhh = &mut dhw[t * 3 * bh..(t + 1) * 3 * bh];
                            let at = t * bh;
                            let items: Vec<_> = blocks
                                .iter()
                                .cloned()
                                .zip(split_rows(dx, h3, &blocks))
                                .zip(
                                    split_rows(dhh, h3, &blocks)
                                        .into_iter()
                                        .zip(split_rows(&mut dh, h, &blocks)),
                                )
                                .collect();
                            let dh_next_ = &dh_next;
                            team().map(items, |((rows, dxk), (dhhk, dhk))| {
                                let m = rows.len();
                                for (k, r) in rows.enumerate() {
                                    let loc = k * h..(k + 1) * h;
                                    let glob = r * h..(r + 1) * h;
                                    let row = GruBwdRow(
                                        &sv[4 * glob.start..4 * glob.end],
                                        &gr[at + glob.start..at + glob.end],
                                        &dh_next_[glob.clone()],
                                        &hprev[glob],
                                        &mut dxk[3 * loc.start..3 * loc.end],
                                        &mut dhhk[3 * loc.start..3 * loc.end],
                                        &mut dhk[loc],
                                    );
                                    pulp::Arch::new().dispatch(row);
                                }
                                // dh_{t-1} = d ⊙ z + dHW_t (m, 3H) · W_hh (3H, H)
                                matmul(
                                    MatMut::rows(dhk, m, h),
                                    Mat::rows(dhhk, m, h3),
                                    Mat::rows(w, h3, h),
                                    true,
                                    par,
                                );
                            });
                            std::mem::swap(&mut dh, &mut dh_next);
                        }
                        weight_grad(&mut dw, &dhw, hs, h0, t_len, b, h, 3, self.reverse);
                        sum_rows(&dxw, dbias);
                        // b_hn sits inside r ⊙ (W_hn h + b_hn): its gradient is the sum of
                        // dHW's n part over every step and row.
                        let mut dhw_sum = vec![0f32; h3];
                        sum_rows(&dhw, &mut dhw_sum);
                        db_hn.copy_from_slice(&dhw_sum[2 * h..]);
                        dh0.copy_from_slice(&dh_next);
                        Ok(())
                    })
                })
            })
        })?;
        let dev = xw.device();
        Ok((
            Some(Tensor::from_vec(dxw, (t_len, b, h3), dev)?),
            Some(Tensor::from_vec(dw, (h3, h), dev)?),
            Some(Tensor::from_vec(daux, bh + 4 * h, dev)?),
        ))
    }
}

/// One GRU direction over x (T, B, I) from h0 (B, H): outputs (T, B, H) and the final h.
/// Fused on the CPU for f32, [`gru_plain`] elsewhere.
pub fn gru(x: &Tensor, p: Weights, h0: &Tensor, reverse: bool) -> Result<(Tensor, Tensor)> {
    check(x, p.w_ih, p.w_hh, h0, 3, "GRU")?;
    if !p.all_fusable(&[x, h0]) {
        return gru_plain(x, p, h0, reverse);
    }
    let hs = p.w_hh.dim(1)?;
    // b_hr and b_hz add to the projection; b_hn sits inside r ⊙ (W_hn h + b_hn)
    let (bias, b_hn) = match p.b_hh {
        Some(bh) => {
            let rz = Tensor::cat(
                &[
                    &bh.narrow(0, 0, 2 * hs)?,
                    &Tensor::zeros(hs, bh.dtype(), bh.device())?,
                ],
                0,
            )?;
            let bias = match p.b_ih {
                Some(bi) => (bi + rz)?,
                None => rz,
            };
            (Some(bias), bh.narrow(0, 2 * hs, hs)?)
        }
        None => (p.b_ih.cloned(), Tensor::zeros(hs, x.dtype(), x.device())?),
    };
    let bias = match bias {
        Some(b) => b,
        None => Tensor::zeros(3 * hs, x.dtype(), x.device())?,
    };
    let xw = p.project(x, None)?.contiguous()?;
    let aux = Tensor::cat(&[&h0.flatten_all()?, &b_hn, &bias], 0)?; // B·H + H + 3H
    let op = GruSeq {
        reverse,
        saved: Mutex::new(Vec::new()),
    };
    let out = xw.apply_op3(&p.w_hh.contiguous()?, &aux, op)?; // (T, B, H)
    let last = if reverse { 0 } else { x.dim(0)? - 1 };
    let h_n = out.get(last)?;
    Ok((out, h_n))
}

/// The reference GRU direction: candle ops, one step at a time.
pub fn gru_plain(x: &Tensor, p: Weights, h0: &Tensor, reverse: bool) -> Result<(Tensor, Tensor)> {
    let hs = p.w_hh.dim(1)?;
    let mut h = h0.clone();
    let xw = split_time(&p.project(x, p.b_ih.cloned())?)?;
    let w_hh_t = p.w_hh.t()?;
    let mut outs = Vec::with_capacity(xw.len());
    for step in 0..xw.len() {
        let xt = &xw[order(step, xw.len(), reverse)];
        let mut hw = h.matmul(&w_hh_t)?; // (B, 3H)
        if let Some(bh) = p.b_hh {
            hw = hw.broadcast_add(bh)?;
        }
        let rz = candle_nn::ops::sigmoid(&(xt.narrow(1, 0, 2 * hs)? + hw.narrow(1, 0, 2 * hs)?)?)?;
        let r = rz.narrow(1, 0, hs)?;
        let z = rz.narrow(1, hs, hs)?;
        let n = (xt.narrow(1, 2 * hs, hs)? + (r * hw.narrow(1, 2 * hs, hs)?)?)?.tanh()?;
        h = (&n + (z * (&h - &n)?)?)?; // (1 - z) ⊙ n + z ⊙ h
        outs.push(h.clone());
    }
    if reverse {
        outs.reverse();
    }
    Ok((Tensor::stack(&outs, 0)?, h))
}

/// Split (T, ...) into T tensors (...) by recursive halving.
///
/// candle's backward of `narrow` pads the gradient back to the full tensor, so taking each of
/// T steps with its own `narrow`/`get` costs O(T · size) in the backward pass (quadratic in T).
/// Halving makes it O(size · log T).
pub(crate) fn split_time(xs: &Tensor) -> Result<Vec<Tensor>> {
    let t = xs.dim(0)?;
    if t == 1 {
        return Ok(vec![xs.squeeze(0)?]);
    }
    let mid = t / 2;
    let mut left = split_time(&xs.narrow(0, 0, mid)?)?;
    left.extend(split_time(&xs.narrow(0, mid, t - mid)?)?);
    Ok(left)
}
