//! The SMO solver of libsvm (Chang and Lin), written afresh in Rust: second-order working-set
//! selection (Fan, Chen and Lin, 2005), shrinking with gradient reconstruction, and an LRU
//! cache of kernel rows bounded in bytes.
//!
//! It solves
//!
//! ```text
//! min_a  ½ aᵀQa + pᵀa   subject to  yᵀa = const,  0 <= a_i <= C_i,
//! ```
//!
//! where `y_i = ±1` and `Q_ij = y_i y_j K(x_i, x_j)` (C-SVC) or the `2l × 2l` matrix of
//! epsilon-SVR. Nothing `n × n` is ever allocated: rows of `Q` are computed on demand and kept
//! in the [`Cache`] while they fit in `cache_size`.
//!
//! Like libsvm, shrinking physically swaps variables so that the active ones come first; the
//! kernel data, the cached rows and every per-variable array are permuted together, and the
//! solution is put back in the original order at the end.

use super::kernel::KernelRows;
use kiln_core::team;

/// Floor of a non-positive curvature (libsvm's `TAU`).
const TAU: f64 = 1e-12;

/// An LRU cache of rows of a symmetric matrix, each row cached up to some length, holding at
/// most `budget` values in all.
///
/// Values are stored as `f32`, libsvm's `Qfloat`: this halves the memory per row (twice the
/// rows fit in `cache_size`) and keeps kiln's solution within 1e-3 of libsvm's. With `f64`
/// rows, small dual coefficients of three of the 27 parity fixtures differed from
/// scikit-learn's by up to 3.3e-3 relative (the float rounding of libsvm's kernel moves its
/// optimum by that much); the gradient and every accumulation stay `f64`.
#[derive(Debug)]
pub struct Cache {
    rows: Vec<Vec<f32>>,
    prev: Vec<usize>,
    next: Vec<usize>,
    free: usize,
}

impl Cache {
    /// A cache for `l` rows within `bytes` bytes (never less than two full rows, so the two
    /// rows of one SMO step always fit together).
    pub fn new(l: usize, bytes: f64) -> Self {
        let budget = (bytes / std::mem::size_of::<f32>() as f64) as usize;
        let budget = budget.max(2 * l);
        // Node `l` is the sentinel of the circular LRU list; the least recently used row
        // follows it.
        Cache {
            rows: vec![Vec::new(); l],
            prev: vec![l; l + 1],
            next: vec![l; l + 1],
            free: budget,
        }
    }

    fn unlink(&mut self, h: usize) {
        let (p, n) = (self.prev[h], self.next[h]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn push_back(&mut self, h: usize) {
        let s = self.rows.len();
        let last = self.prev[s];
        self.next[last] = h;
        self.prev[h] = last;
        self.next[h] = s;
        self.prev[s] = h;
    }

    fn evict(&mut self, h: usize) {
        self.unlink(h);
        self.free += self.rows[h].len();
        self.rows[h] = Vec::new();
    }

    /// Make row `i` at least `len` long and most recently used. Returns the row and the
    /// position from which the caller must fill it.
    pub fn get(&mut self, i: usize, len: usize) -> (&mut [f32], usize) {
        let have = self.rows[i].len();
        if have > 0 {
            self.unlink(i);
        }
        let mut start = have;
        if len > have {
            let more = len - have;
            let sentinel = self.rows.len();
            while self.free < more {
                let old = self.next[sentinel];
                debug_assert!(old != sentinel, "cache budget below one row");
                self.evict(old);
            }
            if have == 0 {
                // A new row of zeros is allocated zeroed (calloc): no fill pass here, and its
                // fresh pages are first touched by the kernel row's computation, in parallel
                // when the row is long.
                self.rows[i] = vec![0.0; len];
            } else {
                // Exact: a doubling growth would hold up to twice the budget.
                self.rows[i].reserve_exact(more);
                self.rows[i].resize(len, 0.0);
            }
            self.free -= more;
            start = have;
        } else {
            start = start.max(len);
        }
        self.push_back(i);
        (&mut self.rows[i][..], start)
    }

    /// Row `i` as cached.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.rows[i]
    }

    /// [`Cache::swap_index`] for each pair in turn, with the same result, but visiting each
    /// cached row once for all the pairs (a shrinking pass swaps many pairs; row by row the
    /// swaps stay in the processor's cache instead of touching every row once per pair).
    pub fn swap_many(&mut self, pairs: &[(usize, usize)]) {
        if pairs.is_empty() {
            return;
        }
        // Move whole rows first; a row's entries are then permuted wherever it now lives.
        for &(i, j) in pairs {
            if i == j {
                continue;
            }
            let (li, lj) = (self.rows[i].len(), self.rows[j].len());
            if li > 0 {
                self.unlink(i);
            }
            if lj > 0 {
                self.unlink(j);
            }
            self.rows.swap(i, j);
            if lj > 0 {
                self.push_back(i);
            }
            if li > 0 {
                self.push_back(j);
            }
        }
        // Then every cached row's entries, the rows split across the team by count (each
        // row is independent; a row too short for some pair is evicted afterwards).
        let mut cached: Vec<usize> = (0..self.rows.len())
            .filter(|&h| !self.rows[h].is_empty())
            .collect();
        cached.sort_unstable();
        let parts = team::size().min(cached.len() / 64).max(1);
        let cuts: Vec<usize> = (1..parts)
            .map(|k| cached[cached.len() * k / parts])
            .collect();
        let firsts = std::iter::once(0).chain(cuts.iter().copied());
        let items: Vec<_> = firsts
            .zip(team::cut(&mut self.rows, cuts.iter().copied()))
            .collect();
        let evict = team::map(items, |(first, rows)| {
            let mut evict = Vec::new();
            for (h, row) in rows.iter_mut().enumerate() {
                let len = row.len();
                if len == 0 {
                    continue;
                }
                for &(i, j) in pairs {
                    let (lo, hi) = if i < j { (i, j) } else { (j, i) };
                    if lo == hi || len <= lo {
                        continue;
                    }
                    if len > hi {
                        row.swap(lo, hi);
                    } else {
                        evict.push(first + h);
                        break;
                    }
                }
            }
            evict
        });
        for h in evict.into_iter().flatten() {
            self.evict(h);
        }
    }

    /// Swap the roles of indices `i` and `j` in every cached row (rows too short to hold both
    /// are dropped, as libsvm does).
    pub fn swap_index(&mut self, i: usize, j: usize) {
        if i == j {
            return;
        }
        let (li, lj) = (self.rows[i].len(), self.rows[j].len());
        if li > 0 {
            self.unlink(i);
        }
        if lj > 0 {
            self.unlink(j);
        }
        self.rows.swap(i, j);
        if lj > 0 {
            self.push_back(i);
        }
        if li > 0 {
            self.push_back(j);
        }
        let (lo, hi) = if i < j { (i, j) } else { (j, i) };
        let sentinel = self.rows.len();
        let mut h = self.next[sentinel];
        while h != sentinel {
            let nx = self.next[h];
            let len = self.rows[h].len();
            if len > lo {
                if len > hi {
                    self.rows[h].swap(lo, hi);
                } else {
                    self.evict(h);
                }
            }
            h = nx;
        }
    }
}

/// The matrix `Q` as the solver sees it: two row slots, the diagonal, and index swaps.
pub trait QMatrix {
    /// Put the first `len` entries of row `i` in slot `slot` (0 or 1).
    fn load(&mut self, slot: usize, i: usize, len: usize);
    /// The row in slot `slot` (at least as long as requested).
    fn row(&self, slot: usize) -> &[f32];
    /// The diagonal `Q_ii`.
    fn qd(&self) -> &[f64];
    /// Swap variables `i` and `j`.
    fn swap_index(&mut self, i: usize, j: usize);
}

/// `Q_ij = y_i y_j K(x_i, x_j)` of C-SVC.
#[derive(Debug)]
pub struct SvcQ {
    k: KernelRows,
    y: Vec<f64>,
    qd: Vec<f64>,
    cache: Cache,
    slots: [usize; 2],
    /// Swaps not yet applied to the cached rows (applied together before the next load).
    pending: Vec<(usize, usize)>,
}

impl SvcQ {
    /// Over samples `k` with labels `y` (±1), caching within `cache_bytes`.
    pub fn new(k: KernelRows, y: &[f64], cache_bytes: f64) -> Self {
        let l = k.len();
        let qd = (0..l).map(|i| k.eval(i, i)).collect();
        SvcQ {
            cache: Cache::new(l, cache_bytes),
            k,
            y: y.to_vec(),
            qd,
            slots: [0, 0],
            pending: Vec::new(),
        }
    }
}

impl QMatrix for SvcQ {
    fn load(&mut self, slot: usize, i: usize, len: usize) {
        if !self.pending.is_empty() {
            self.cache.swap_many(&self.pending);
            self.pending.clear();
        }
        let (row, start) = self.cache.get(i, len);
        if start < len {
            let y = &self.y;
            let yi = y[i];
            self.k
                .fill_row(i, start, &mut row[start..len], |j, v| yi * y[j] * v);
        }
        self.slots[slot] = i;
    }

    fn row(&self, slot: usize) -> &[f32] {
        self.cache.row(self.slots[slot])
    }

    fn qd(&self) -> &[f64] {
        &self.qd
    }

    fn swap_index(&mut self, i: usize, j: usize) {
        self.pending.push((i, j));
        self.k.swap(i, j);
        self.y.swap(i, j);
        self.qd.swap(i, j);
    }
}

/// The `2l × 2l` matrix of epsilon-SVR: variable `t` stands for sample `t mod l` with sign
/// `+1` (`t < l`) or `-1`; kernel rows of the `l` samples are cached.
#[derive(Debug)]
pub struct SvrQ {
    k: KernelRows,
    sign: Vec<f64>,
    index: Vec<usize>,
    qd: Vec<f64>,
    cache: Cache,
    buf: [Vec<f32>; 2],
}

impl SvrQ {
    /// Over samples `k`, caching within `cache_bytes`.
    pub fn new(k: KernelRows, cache_bytes: f64) -> Self {
        let l = k.len();
        let diag: Vec<f64> = (0..l).map(|i| k.eval(i, i)).collect();
        SvrQ {
            cache: Cache::new(l, cache_bytes),
            sign: (0..2 * l).map(|t| if t < l { 1.0 } else { -1.0 }).collect(),
            index: (0..2 * l).map(|t| t % l).collect(),
            qd: (0..2 * l).map(|t| diag[t % l]).collect(),
            k,
            buf: [vec![0.0f32; 2 * l], vec![0.0f32; 2 * l]],
        }
    }
}

impl QMatrix for SvrQ {
    fn load(&mut self, slot: usize, i: usize, len: usize) {
        let l = self.k.len();
        let real = self.index[i];
        let (row, start) = self.cache.get(real, l);
        if start < l {
            self.k.fill_row(real, start, &mut row[start..l], |_, v| v);
        }
        let row = self.cache.row(real);
        let si = self.sign[i] as f32;
        let buf = &mut self.buf[slot];
        for t in 0..len {
            buf[t] = si * self.sign[t] as f32 * row[self.index[t]];
        }
    }

    fn row(&self, slot: usize) -> &[f32] {
        &self.buf[slot]
    }

    fn qd(&self) -> &[f64] {
        &self.qd
    }

    fn swap_index(&mut self, i: usize, j: usize) {
        self.sign.swap(i, j);
        self.index.swap(i, j);
        self.qd.swap(i, j);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Lower,
    Upper,
    Free,
}

/// What the solver returns.
#[derive(Debug, Clone)]
pub struct Solution {
    /// The optimal `a`, in the original variable order.
    pub alpha: Vec<f64>,
    /// The offset `rho` (decision value `Σ y_i a_i K(x_i, x) - rho`).
    pub rho: f64,
    /// Objective value.
    pub obj: f64,
    /// SMO iterations.
    pub n_iter: usize,
    /// Whether the iteration limit stopped the solver before the tolerance was met.
    pub hit_max_iter: bool,
}

/// The problem handed to [`solve`].
#[derive(Debug, Clone)]
pub struct Problem {
    /// Linear term `p`.
    pub p: Vec<f64>,
    /// Labels, ±1.
    pub y: Vec<f64>,
    /// Upper bound of each variable.
    pub c: Vec<f64>,
    /// Starting point (feasible).
    pub alpha: Vec<f64>,
    /// Stopping tolerance on the maximal violation.
    pub eps: f64,
    /// Shrinking heuristic.
    pub shrinking: bool,
    /// Iteration limit.
    pub max_iter: Option<usize>,
}

/// Active sets at least this long are split across the pool's threads, one contiguous part per
/// thread (a per-iteration pass over fewer is cheaper than waking another thread).
const PAR_MIN: usize = 4096;
/// Part boundaries are multiples of this (whole cache lines of every array).
const PART_ALIGN: usize = 64;
/// Entries per block of the fused gradient update and scan (updated, then scanned while in
/// the processor's cache).
const FUSE_BLOCK: usize = 512;

/// The best candidate of a scan: its value and index, a later index winning ties (libsvm's
/// `>=` in a forward loop).
#[derive(Debug, Clone, Copy)]
struct Best {
    val: f64,
    idx: Option<usize>,
}

impl Best {
    fn none() -> Self {
        Best {
            val: f64::NEG_INFINITY,
            idx: None,
        }
    }

    #[cfg(test)]
    fn offer(&mut self, v: f64, t: usize) {
        if v >= self.val {
            self.val = v;
            self.idx = Some(t);
        }
    }

    /// The result of scanning `self`'s range and then `later`'s: exactly the sequential one.
    fn merge(self, later: Best) -> Best {
        if later.idx.is_some() && later.val >= self.val {
            later
        } else {
            self
        }
    }
}

/// How many parts a pass over `n` entries is split into: one per team member when `n` is
/// long.
fn parts(n: usize) -> usize {
    let threads = team::size();
    if threads == 1 || n < PAR_MIN {
        1
    } else {
        threads.min(n / (PAR_MIN / 2))
    }
}

/// The boundaries of `parts` contiguous parts of `lo..hi` (multiples of [`PART_ALIGN`] from
/// `lo`), `parts + 1` of them.
fn bounds(lo: usize, hi: usize, parts: usize) -> Vec<usize> {
    let mut b: Vec<usize> = (0..parts)
        .map(|k| (lo + ((hi - lo) * k / parts).next_multiple_of(PART_ALIGN)).min(hi))
        .collect();
    b.push(hi);
    b
}

/// `scan` over `lo..hi` split into `parts` contiguous ranges run by the team, the results
/// merged left to right (so the result does not depend on the split).
fn split_scan<T: Send>(
    lo: usize,
    hi: usize,
    parts: usize,
    scan: &(impl Fn(std::ops::Range<usize>) -> T + Sync),
    merge: &(impl Fn(T, T) -> T + Sync),
) -> T {
    if parts <= 1 {
        return scan(lo..hi);
    }
    let b = bounds(lo, hi, parts);
    let ranges: Vec<_> = b.windows(2).map(|w| w[0]..w[1]).collect();
    let mut out = team::map(ranges, scan).into_iter();
    let first = out.next().unwrap_or_else(|| scan(lo..lo));
    out.fold(first, merge)
}

/// `scan` over `0..n`, split across the team when `n` is long, the parts merged left to right
/// (so the result does not depend on the thread count).
fn chunked<T: Send>(
    n: usize,
    scan: impl Fn(std::ops::Range<usize>) -> T + Sync,
    init: T,
    merge: impl Fn(T, T) -> T + Sync,
) -> T {
    let r = split_scan(0, n, parts(n), &scan, &merge);
    merge(init, r)
}

/// `f(part, first)` over contiguous parts of `g` (`first` the index of `part[0]`), split
/// across the team like [`chunked`], the results merged left to right.
fn split_mut<T: Send>(
    g: &mut [f64],
    first: usize,
    parts: usize,
    f: &(impl Fn(&mut [f64], usize) -> T + Sync),
    merge: &(impl Fn(T, T) -> T + Sync),
) -> T {
    if parts <= 1 {
        return f(g, first);
    }
    let b = bounds(0, g.len(), parts);
    let starts = b.iter().map(|&s| first + s);
    let items: Vec<_> = team::cut(g, b[1..parts].iter().copied())
        .into_iter()
        .zip(starts)
        .collect();
    let mut out = team::map(items, |(part, at)| f(part, at)).into_iter();
    let head = out.next().unwrap_or_else(|| f(&mut [], first));
    out.fold(head, merge)
}

/// The candidate for `i` of the working set among `t` in `r`: the maximal violation
/// `-y_t G_t` over `I_up` (the last one among equals).
#[inline(always)]
fn scan_up(y: &[f64], g: &[f64], status: &[Bound], r: std::ops::Range<usize>) -> Best {
    // Branch-free selects (the signs and bounds follow no pattern a branch predictor learns);
    // the comparisons are libsvm's, so the winner is the same.
    let (mut bv, mut bi) = (f64::NEG_INFINITY, usize::MAX);
    for t in r {
        let pos = y[t] > 0.0;
        let v = if pos { -g[t] } else { g[t] };
        let ok = status[t] != if pos { Bound::Upper } else { Bound::Lower };
        let take = ok & (v >= bv);
        bv = if take { v } else { bv };
        bi = if take { t } else { bi };
    }
    Best {
        val: bv,
        idx: (bi != usize::MAX).then_some(bi),
    }
}

struct Solver<'a, Q: QMatrix> {
    q: &'a mut Q,
    l: usize,
    active_size: usize,
    y: Vec<f64>,
    g: Vec<f64>,
    g_bar: Vec<f64>,
    alpha: Vec<f64>,
    status: Vec<Bound>,
    p: Vec<f64>,
    c: Vec<f64>,
    active_set: Vec<usize>,
    eps: f64,
    unshrink: bool,
    /// The `i` candidate of the next working set, found by the last step's gradient update
    /// over the current active set (`None` when it must be scanned afresh).
    next_up: Option<Best>,
}

/// Solve `problem` over `q` with SMO, its passes split across a [`team`] of the current rayon
/// pool's size.
pub fn solve<Q: QMatrix>(q: &mut Q, problem: Problem) -> Solution {
    team::scope(rayon::current_num_threads(), || solve_here(q, problem))
}

fn solve_here<Q: QMatrix>(q: &mut Q, problem: Problem) -> Solution {
    let l = problem.p.len();
    let mut s = Solver {
        q,
        l,
        active_size: l,
        y: problem.y,
        g: problem.p.clone(),
        g_bar: vec![0.0; l],
        alpha: problem.alpha,
        status: vec![Bound::Lower; l],
        p: problem.p,
        c: problem.c,
        active_set: (0..l).collect(),
        eps: problem.eps,
        unshrink: false,
        next_up: None,
    };
    for i in 0..l {
        s.update_status(i);
    }
    s.init_gradient();

    let mut iter = 0usize;
    let mut counter = l.min(1000) + 1;
    let mut hit_max_iter = false;
    loop {
        if problem.max_iter.is_some_and(|m| iter >= m) {
            hit_max_iter = true;
            break;
        }
        counter -= 1;
        if counter == 0 {
            counter = l.min(1000);
            s.next_up = None;
            if problem.shrinking {
                s.do_shrinking();
            }
        }
        let (i, j) = match s.select_working_set() {
            Some(ij) => ij,
            None => {
                s.reconstruct_gradient();
                s.active_size = l;
                s.next_up = None;
                match s.select_working_set() {
                    Some(ij) => {
                        counter = 1;
                        ij
                    }
                    None => break,
                }
            }
        };
        iter += 1;
        s.step(i, j);
    }
    if hit_max_iter && s.active_size < l {
        s.reconstruct_gradient();
        s.active_size = l;
    }
    let rho = s.calculate_rho();
    let obj = (0..l).map(|i| s.alpha[i] * (s.g[i] + s.p[i])).sum::<f64>() / 2.0;
    let mut alpha = vec![0.0; l];
    for i in 0..l {
        alpha[s.active_set[i]] = s.alpha[i];
    }
    Solution {
        alpha,
        rho,
        obj,
        n_iter: iter,
        hit_max_iter,
    }
}

impl<Q: QMatrix> Solver<'_, Q> {
    fn update_status(&mut self, i: usize) {
        self.status[i] = if self.alpha[i] >= self.c[i] {
            Bound::Upper
        } else if self.alpha[i] <= 0.0 {
            Bound::Lower
        } else {
            Bound::Free
        };
    }

    fn is_upper(&self, i: usize) -> bool {
        self.status[i] == Bound::Upper
    }

    fn is_lower(&self, i: usize) -> bool {
        self.status[i] == Bound::Lower
    }

    fn is_free(&self, i: usize) -> bool {
        self.status[i] == Bound::Free
    }

    fn init_gradient(&mut self) {
        let l = self.l;
        for i in 0..l {
            if self.is_lower(i) {
                continue;
            }
            self.q.load(0, i, l);
            let qi = self.q.row(0);
            let ai = self.alpha[i];
            for (g, &v) in self.g.iter_mut().zip(&qi[..l]) {
                *g += ai * v as f64;
            }
            if self.status[i] == Bound::Upper {
                let ci = self.c[i];
                for (gb, &v) in self.g_bar.iter_mut().zip(&qi[..l]) {
                    *gb += ci * v as f64;
                }
            }
        }
    }

    fn swap_index(&mut self, i: usize, j: usize) {
        self.q.swap_index(i, j);
        self.y.swap(i, j);
        self.g.swap(i, j);
        self.status.swap(i, j);
        self.alpha.swap(i, j);
        self.p.swap(i, j);
        self.active_set.swap(i, j);
        self.g_bar.swap(i, j);
        self.c.swap(i, j);
    }

    /// One SMO step on the pair `(i, j)`: solve the two-variable subproblem, then update the
    /// gradient, the bound flags and `G_bar`.
    fn step(&mut self, i: usize, j: usize) {
        let n = self.active_size;
        self.q.load(0, i, n);
        self.q.load(1, j, n);
        let (ci, cj) = (self.c[i], self.c[j]);
        let (old_ai, old_aj) = (self.alpha[i], self.alpha[j]);
        {
            let qd = self.q.qd();
            let qij = self.q.row(0)[j] as f64;
            let a = &mut self.alpha;
            let g = &self.g;
            if self.y[i] != self.y[j] {
                let mut quad = qd[i] + qd[j] + 2.0 * qij;
                if quad <= 0.0 {
                    quad = TAU;
                }
                let delta = (-g[i] - g[j]) / quad;
                let diff = a[i] - a[j];
                a[i] += delta;
                a[j] += delta;
                if diff > 0.0 {
                    if a[j] < 0.0 {
                        a[j] = 0.0;
                        a[i] = diff;
                    }
                } else if a[i] < 0.0 {
                    a[i] = 0.0;
                    a[j] = -diff;
                }
                if diff > ci - cj {
                    if a[i] > ci {
                        a[i] = ci;
                        a[j] = ci - diff;
                    }
                } else if a[j] > cj {
                    a[j] = cj;
                    a[i] = cj + diff;
                }
            } else {
                let mut quad = qd[i] + qd[j] - 2.0 * qij;
                if quad <= 0.0 {
                    quad = TAU;
                }
                let delta = (g[i] - g[j]) / quad;
                let sum = a[i] + a[j];
                a[i] -= delta;
                a[j] += delta;
                if sum > ci {
                    if a[i] > ci {
                        a[i] = ci;
                        a[j] = sum - ci;
                    }
                } else if a[j] < 0.0 {
                    a[j] = 0.0;
                    a[i] = sum;
                }
                if sum > cj {
                    if a[j] > cj {
                        a[j] = cj;
                        a[i] = sum - cj;
                    }
                } else if a[i] < 0.0 {
                    a[i] = 0.0;
                    a[j] = sum;
                }
            }
        }
        let dai = self.alpha[i] - old_ai;
        let daj = self.alpha[j] - old_aj;
        let ui = self.is_upper(i);
        let uj = self.is_upper(j);
        self.update_status(i);
        self.update_status(j);
        {
            // The gradient update, fused with the scan for the next step's `i` (the same
            // values as scanning afterwards, in one pass over the active set).
            let qi = &self.q.row(0)[..n];
            let qj = &self.q.row(1)[..n];
            let (y, status) = (&self.y[..n], &self.status[..n]);
            let body = |g: &mut [f64], first: usize| {
                let mut best = Best::none();
                for (b, gb) in g.chunks_mut(FUSE_BLOCK).enumerate() {
                    let lo = first + b * FUSE_BLOCK;
                    let hi = lo + gb.len();
                    for ((g, &a), &c) in gb.iter_mut().zip(&qi[lo..hi]).zip(&qj[lo..hi]) {
                        *g += a as f64 * dai + c as f64 * daj;
                    }
                    let found = scan_up(&y[lo..hi], gb, &status[lo..hi], 0..gb.len());
                    best = best.merge(Best {
                        val: found.val,
                        idx: found.idx.map(|t| t + lo),
                    });
                }
                best
            };
            let p = parts(n);
            self.next_up = Some(split_mut(&mut self.g[..n], 0, p, &body, &Best::merge));
        }
        let l = self.l;
        for (k, was_upper, ck) in [(i, ui, ci), (j, uj, cj)] {
            if was_upper != self.is_upper(k) {
                self.q.load(0, k, l);
                let qk = &self.q.row(0)[..l];
                let f = if was_upper { -ck } else { ck };
                for (gb, &v) in self.g_bar.iter_mut().zip(qk) {
                    *gb += f * v as f64;
                }
            }
        }
    }

    /// The pair of maximal second-order gain, or `None` when the maximal violation is below
    /// `eps` (optimal). Long active sets are scanned in parallel chunks whose results are
    /// merged in order, which picks the same pair as libsvm's sequential scan.
    fn select_working_set(&mut self) -> Option<(usize, usize)> {
        let n = self.active_size;
        let first = match self.next_up.take() {
            Some(b) => b,
            None => {
                let (y, g, status) = (&self.y[..n], &self.g[..n], &self.status[..n]);
                chunked(n, |r| scan_up(y, g, status, r), Best::none(), Best::merge)
            }
        };
        let gmax = first.val;
        let i = first.idx?;
        self.q.load(0, i, n);
        let qi = &self.q.row(0)[..n];
        let qd = self.q.qd();
        let (y, g, status) = (&self.y[..n], &self.g[..n], &self.status[..n]);
        let yi = y[i];
        let qdi = qd[i];
        // j: the largest gain (grad_diff² / quad) over I_low, and the maximal y_j G_j there;
        // branch-free like `scan_up`, with libsvm's arithmetic and comparisons (`a - b` and
        // `a + (-b)` are the same number).
        let scan_j = |r: std::ops::Range<usize>| {
            let mut gmax2 = f64::NEG_INFINITY;
            let (mut bv, mut bi) = (f64::NEG_INFINITY, usize::MAX);
            for j in r {
                let pos = y[j] > 0.0;
                let gj = g[j];
                let ok = status[j] != if pos { Bound::Lower } else { Bound::Upper };
                let v = if pos { gj } else { -gj };
                let w = 2.0 * yi * qi[j] as f64;
                let quad = qdi + qd[j] + if pos { -w } else { w };
                gmax2 = if ok & (v >= gmax2) { v } else { gmax2 };
                let grad_diff = gmax + v;
                let quad = if quad > 0.0 { quad } else { TAU };
                // libsvm minimises -(grad_diff²)/quad with `<=`; maximising its exact
                // negation with `>=` picks the same index.
                let gain = (grad_diff * grad_diff) / quad;
                let take = ok & (grad_diff > 0.0) & (gain >= bv);
                bv = if take { gain } else { bv };
                bi = if take { j } else { bi };
            }
            let best = Best {
                val: bv,
                idx: (bi != usize::MAX).then_some(bi),
            };
            (gmax2, best)
        };
        let (gmax2, second) = chunked(
            n,
            scan_j,
            (f64::NEG_INFINITY, Best::none()),
            |(a, x), (b, z)| (a.max(b), x.merge(z)),
        );
        if gmax + gmax2 < self.eps {
            return None;
        }
        second.idx.map(|j| (i, j))
    }

    fn be_shrunk(&self, i: usize, gmax1: f64, gmax2: f64) -> bool {
        match self.status[i] {
            Bound::Upper => {
                if self.y[i] > 0.0 {
                    -self.g[i] > gmax1
                } else {
                    -self.g[i] > gmax2
                }
            }
            Bound::Lower => {
                if self.y[i] > 0.0 {
                    self.g[i] > gmax2
                } else {
                    self.g[i] > gmax1
                }
            }
            Bound::Free => false,
        }
    }

    fn do_shrinking(&mut self) {
        let mut gmax1 = f64::NEG_INFINITY; // max { -y_i grad_i | i in I_up }
        let mut gmax2 = f64::NEG_INFINITY; // max { y_i grad_i | i in I_low }
        for i in 0..self.active_size {
            let g = self.g[i];
            if self.y[i] > 0.0 {
                if !self.is_upper(i) && -g >= gmax1 {
                    gmax1 = -g;
                }
                if !self.is_lower(i) && g >= gmax2 {
                    gmax2 = g;
                }
            } else {
                if !self.is_upper(i) && -g >= gmax2 {
                    gmax2 = -g;
                }
                if !self.is_lower(i) && g >= gmax1 {
                    gmax1 = g;
                }
            }
        }
        if !self.unshrink && gmax1 + gmax2 <= self.eps * 10.0 {
            self.unshrink = true;
            self.reconstruct_gradient();
            self.active_size = self.l;
        }
        let mut i = 0;
        while i < self.active_size {
            if self.be_shrunk(i, gmax1, gmax2) {
                self.active_size -= 1;
                while self.active_size > i {
                    if !self.be_shrunk(self.active_size, gmax1, gmax2) {
                        self.swap_index(i, self.active_size);
                        break;
                    }
                    self.active_size -= 1;
                }
            }
            i += 1;
        }
    }

    /// Recompute the gradient of the inactive variables from `G_bar` and the free ones.
    fn reconstruct_gradient(&mut self) {
        let (n, l) = (self.active_size, self.l);
        if n == l {
            return;
        }
        for j in n..l {
            self.g[j] = self.g_bar[j] + self.p[j];
        }
        let nr_free = (0..n).filter(|&j| self.is_free(j)).count();
        if nr_free * l > 2 * n * (l - n) {
            for i in n..l {
                self.q.load(0, i, n);
                let qi = self.q.row(0);
                let mut gi = self.g[i];
                for ((&st, &a), &q) in self.status[..n].iter().zip(&self.alpha[..n]).zip(&qi[..n]) {
                    if st == Bound::Free {
                        gi += a * q as f64;
                    }
                }
                self.g[i] = gi;
            }
        } else {
            for i in 0..n {
                if !self.is_free(i) {
                    continue;
                }
                self.q.load(0, i, l);
                let qi = self.q.row(0);
                let ai = self.alpha[i];
                for (g, &q) in self.g[n..l].iter_mut().zip(&qi[n..l]) {
                    *g += ai * q as f64;
                }
            }
        }
    }

    fn calculate_rho(&self) -> f64 {
        let mut nr_free = 0usize;
        let (mut ub, mut lb, mut sum_free) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for i in 0..self.active_size {
            let yg = self.y[i] * self.g[i];
            match self.status[i] {
                Bound::Upper => {
                    if self.y[i] < 0.0 {
                        ub = ub.min(yg);
                    } else {
                        lb = lb.max(yg);
                    }
                }
                Bound::Lower => {
                    if self.y[i] > 0.0 {
                        ub = ub.min(yg);
                    } else {
                        lb = lb.max(yg);
                    }
                }
                Bound::Free => {
                    nr_free += 1;
                    sum_free += yg;
                }
            }
        }
        if nr_free > 0 {
            sum_free / nr_free as f64
        } else {
            (ub + lb) / 2.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(c: &mut Cache, i: usize, len: usize) {
        let (row, start) = c.get(i, len);
        for (t, v) in row.iter_mut().enumerate().take(len).skip(start) {
            *v = (100 * i + t) as f32;
        }
    }

    fn cached(c: &Cache) -> usize {
        c.rows.iter().map(Vec::len).sum()
    }

    #[test]
    fn cache_stays_within_budget_and_evicts_least_recently_used() {
        // Budget of 3 rows of 4 values (16 bytes per f32 row... 4 bytes per value).
        let mut c = Cache::new(4, 12.0 * 4.0);
        fill(&mut c, 0, 4);
        fill(&mut c, 1, 4);
        fill(&mut c, 2, 4);
        assert_eq!(cached(&c), 12);
        fill(&mut c, 0, 4); // touch 0: 1 is now the least recently used
        fill(&mut c, 3, 4);
        assert_eq!(cached(&c), 12);
        assert!(c.row(1).is_empty(), "row 1 should have been evicted");
        assert_eq!(c.row(0), &[0.0, 1.0, 2.0, 3.0]);
        // Extending a row only asks for the missing part.
        let mut c = Cache::new(4, 1e6);
        fill(&mut c, 2, 2);
        let (_, start) = c.get(2, 4);
        assert_eq!(start, 2);
        let (_, start) = c.get(2, 3);
        assert!(start >= 3, "nothing to fill");
    }

    #[test]
    fn parallel_scan_picks_the_sequential_winner() {
        // Many ties (values from a small set), so the tie rule decides.
        let n = 5 * PAR_MIN + 123;
        let vals: Vec<f64> = (0..n).map(|t| ((t * 7919) % 13) as f64).collect();
        let mut seq = Best::none();
        for (t, &v) in vals.iter().enumerate() {
            seq.offer(v, t);
        }
        let scan = |r: std::ops::Range<usize>| {
            let mut b = Best::none();
            for t in r {
                b.offer(vals[t], t);
            }
            b
        };
        let par = team::scope(3, || chunked(n, scan, Best::none(), Best::merge));
        assert_eq!((par.val, par.idx), (seq.val, seq.idx));
        assert_eq!(
            seq.idx,
            Some((0..n).rev().find(|&t| vals[t] == 12.0).unwrap())
        );
    }

    #[test]
    fn split_passes_give_the_single_thread_solution() {
        // Long enough (over 2 * PAR_MIN) for the split scans and the fused gradient update;
        // a bounded number of steps keeps the unoptimised test build fast.
        use super::super::kernel::KernelFn;
        use super::super::params::Kernel;
        let l = 2 * PAR_MIN + 777;
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let x: Vec<f64> = (0..l * 3).map(|_| next()).collect();
        let y: Vec<f64> = (0..l)
            .map(|t| {
                if x[3 * t] + 0.3 * next() > 0.0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let run = |threads: usize| {
            let k = KernelFn {
                kernel: Kernel::Rbf,
                gamma: 0.5,
                degree: 3,
                coef0: 0.0,
            };
            let mut q = SvcQ::new(KernelRows::new(x.clone(), 3, k), &y, 64e6);
            let problem = Problem {
                p: vec![-1.0; l],
                y: y.clone(),
                c: vec![1.0; l],
                alpha: vec![0.0; l],
                eps: 1e-3,
                shrinking: true,
                max_iter: Some(150),
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| solve(&mut q, problem))
        };
        let one = run(1);
        for threads in [2, 3] {
            let many = run(threads);
            assert_eq!(one.alpha, many.alpha, "{threads} threads");
            assert_eq!(one.rho, many.rho);
            assert_eq!(one.n_iter, many.n_iter);
        }
        assert_eq!(one.n_iter, 150);
        assert!(one.alpha.iter().any(|&a| a > 0.0));
    }

    #[test]
    fn swap_many_equals_one_swap_at_a_time() {
        let build = || {
            let mut c = Cache::new(9, 1e6);
            for (i, len) in [(0, 9), (3, 5), (5, 9), (7, 2), (8, 7)] {
                fill(&mut c, i, len);
            }
            c
        };
        let pairs = [(1, 8), (2, 6), (0, 4), (3, 3), (6, 1), (4, 7)];
        let mut one = build();
        for &(i, j) in &pairs {
            one.swap_index(i, j);
        }
        let mut many = build();
        many.swap_many(&pairs);
        assert_eq!(one.rows, many.rows);
        assert_eq!(one.free, many.free);
    }

    #[test]
    fn cache_swap_index_permutes_cached_rows() {
        let mut c = Cache::new(4, 1e6);
        fill(&mut c, 0, 4);
        fill(&mut c, 1, 2);
        c.swap_index(1, 3);
        // Row 0 is long enough: its entries 1 and 3 swap.
        assert_eq!(c.row(0), &[0.0, 3.0, 2.0, 1.0]);
        // Row 1 moved to index 3, and being too short to hold index 3 it was dropped.
        assert!(c.row(1).is_empty());
        assert!(c.row(3).is_empty());
        assert_eq!(cached(&c), 4);
    }
}
