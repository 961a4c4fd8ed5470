//! Growing a CART tree: presorted columns, the split search and the two growth orders.
//!
//! The rules are scikit-learn's (`_splitter.pyx`, `_partitioner.pyx`, `_criterion.pyx`,
//! `_tree.pyx` of 1.9.1), so that a tree grown here has the same nodes:
//!
//! * features are rounded to `f32` as scikit-learn does, thresholds are `f64` midpoints of
//!   adjacent distinct `f32` values (`a/2 + b/2`, the lower value if that rounds up to the
//!   upper), values closer than `FEATURE_THRESHOLD = 1e-7` (in `f32`) count as ties;
//! * features are visited in scikit-learn's Fisher–Yates order with the same random numbers,
//!   features found constant are remembered for the subtree (depth-first growth);
//! * NaN goes to the side that gives the better split (both tried, plus "only NaN on the right"),
//!   or to the child with more samples when the node saw no NaN;
//! * targets are summed in scikit-learn's order: its `samples` array (sorted by the last
//!   feature it sorted, then partitioned in place) and its forward-or-backward criterion
//!   updates are replayed, so sums round alike and even exact ties break alike;
//! * depth-first growth pushes right then left, so nodes are numbered in preorder; best-first
//!   growth (`max_leaf_nodes`) uses a max-heap on the improvement with the C++ standard
//!   library's heap order, so ties break alike.
//!
//! Speed comes from sorting each column once: every node owns the same range `[start, end)` of
//! every presorted column, and splitting a node partitions each column stably, so no node sorts
//! again. Large nodes search their features and partition their columns on rayon threads; the
//! per-feature results are reduced in visit order, so the tree does not depend on the threads.

use rayon::prelude::*;

use super::rng::RandR;
use super::tree::TreeArrays;

/// Feature values closer than this (in `f32`) are treated as equal.
const FEATURE_THRESHOLD: f32 = 1e-7;
/// Impurity and improvement tolerance (`np.finfo('double').eps`).
const EPSILON: f64 = f64::EPSILON;
/// Nodes with at least this many samples use rayon threads.
const PARALLEL_MIN_SAMPLES: usize = 2048;

/// One presorted entry: the feature value (as `f32`, NaN last) and the sample index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    v: f32,
    i: u32,
}

/// Which impurity the tree minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crit {
    Gini,
    Entropy,
    Mse,
    Mae,
}

/// The target as the builder sees it.
pub(crate) enum Target<'a> {
    /// Class indices and the number of classes.
    Class { y: &'a [u32], n_classes: usize },
    /// Real values.
    Reg { y: &'a [f64] },
}

/// Everything the builder needs besides the data.
pub(crate) struct BuildConfig {
    pub crit: Crit,
    pub random_splitter: bool,
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub min_weight_leaf: f64,
    pub max_features: usize,
    pub max_leaf_nodes: Option<usize>,
    pub min_impurity_decrease: f64,
    pub seed: u32,
    pub parallel: bool,
}

/// Summary statistics of a node's samples.
#[derive(Debug, Clone)]
struct Stats {
    n: usize,
    w: f64,
    /// Weighted class counts (classification), or `[Σ w y, Σ w y²]` (regression).
    sums: Vec<f64>,
}

/// A candidate split of one feature.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    proxy: f64,
    feature: usize,
    threshold: f64,
    missing_left: bool,
}

/// The chosen split of a node.
#[derive(Debug, Clone, Copy)]
struct Split {
    feature: usize,
    threshold: f64,
    missing_left: bool,
    /// Samples going left (`start + n_left` is the children's boundary).
    n_left: usize,
    impurity_left: f64,
    impurity_right: f64,
    improvement: f64,
}

/// What a feature draw produced: a feature to evaluate, with the random threshold and NaN
/// direction when the splitter is random.
#[derive(Debug, Clone, Copy)]
struct Draw {
    feature: usize,
    random: Option<(f64, bool)>,
}

struct Builder<'a> {
    cfg: &'a BuildConfig,
    target: &'a Target<'a>,
    weights: Option<&'a [f64]>,
    /// Presorted columns; a node owns `[start, end)` of each.
    cols: Vec<Vec<Entry>>,
    /// The `f32` feature columns, by sample.
    x: &'a [Vec<f32>],
    /// scikit-learn's `samples` array (only `i` is used): the order in which it sums a node's
    /// targets, reproduced so that sums round alike and near-ties break alike.
    order: Vec<Entry>,
    /// `side[i]`: sample `i` goes left in the split being applied.
    side: Vec<bool>,
    features: Vec<usize>,
    constant_features: Vec<usize>,
    rng: RandR,
    weighted_n_samples: f64,
    tree: TreeArrays,
}

/// Grow a tree on `x_cols` (one `f32` column per feature, rows are samples).
pub(crate) fn build(
    x_cols: &[Vec<f32>],
    target: &Target<'_>,
    weights: Option<&[f64]>,
    cfg: &BuildConfig,
) -> TreeArrays {
    let n_total = x_cols.first().map_or(0, Vec::len);
    // Only positively weighted samples take part (scikit-learn's Splitter.init).
    let samples: Vec<u32> = (0..n_total)
        .filter(|&i| weights.is_none_or(|w| w[i] != 0.0))
        .map(|i| i as u32)
        .collect();
    let weighted_n_samples = weights.map_or(n_total as f64, |w| w.iter().sum());
    let sort_col = |col: &Vec<f32>| {
        let mut e: Vec<Entry> = samples
            .iter()
            .map(|&i| {
                let v = col[i as usize];
                Entry {
                    v: if v.is_nan() { f32::NAN } else { v },
                    i,
                }
            })
            .collect();
        e.sort_unstable_by(|a, b| a.v.total_cmp(&b.v));
        e
    };
    let cols: Vec<Vec<Entry>> = if cfg.parallel {
        x_cols.par_iter().map(sort_col).collect()
    } else {
        x_cols.iter().map(sort_col).collect()
    };
    let n_features = x_cols.len();
    let n_values = match target {
        Target::Class { n_classes, .. } => *n_classes,
        Target::Reg { .. } => 1,
    };
    let mut b = Builder {
        cfg,
        target,
        weights,
        cols,
        x: x_cols,
        order: samples.iter().map(|&i| Entry { v: 0.0, i }).collect(),
        side: vec![false; n_total],
        features: (0..n_features).collect(),
        constant_features: vec![0; n_features],
        rng: RandR::from_seed(cfg.seed),
        weighted_n_samples,
        tree: TreeArrays::new(n_features, n_values),
    };
    let n = samples.len();
    if cfg.max_leaf_nodes.is_some() {
        b.best_first(n);
    } else {
        b.depth_first(n);
    }
    b.tree
}

/// scikit-learn's in-place partition: left items stay in front, right ones are swapped to the
/// back. Returns the number of left items.
fn swap_partition(items: &mut [Entry], left: impl Fn(u32) -> bool) -> usize {
    let (mut ps, mut pe) = (0, items.len());
    while ps < pe {
        if left(items[ps].i) {
            ps += 1;
        } else {
            pe -= 1;
            items.swap(ps, pe);
        }
    }
    ps
}

/// `entries[..nnm]` are the non-missing values.
fn non_missing(entries: &[Entry]) -> usize {
    entries.partition_point(|e| !e.v.is_nan())
}

fn log2(x: f64) -> f64 {
    x.ln() / 2f64.ln()
}

/// Class impurity from weighted counts and their total.
fn class_impurity(crit: Crit, counts: &[f64], w: f64) -> f64 {
    match crit {
        Crit::Entropy => {
            let mut e = 0.0;
            for &c in counts {
                if c > 0.0 {
                    let p = c / w;
                    e -= p * log2(p);
                }
            }
            e
        }
        _ => {
            let sq: f64 = counts.iter().map(|c| c * c).sum();
            1.0 - sq / (w * w)
        }
    }
}

/// Weighted median and absolute error of a sample set, the way scikit-learn defines them
/// (midpoint when the cumulative weight hits exactly half).
pub(crate) fn weighted_median(yw: &mut [(f64, f64)]) -> (f64, f64) {
    yw.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = yw.iter().map(|p| p.1).sum();
    let half = 0.5 * total;
    let mut cum = 0.0;
    let mut median = yw.last().map_or(0.0, |p| p.0);
    for (k, &(y, w)) in yw.iter().enumerate() {
        let before = cum;
        cum += w;
        if cum > half {
            median = if before == half && k > 0 {
                (yw[k - 1].0 + y) / 2.0
            } else {
                y
            };
            break;
        }
    }
    let ae: f64 = yw.iter().map(|&(y, w)| w * (y - median).abs()).sum();
    (median, ae)
}

/// Fenwick tree over the target ranks of a node, for prefix weighted medians (MAE).
struct Fenwick {
    w: Vec<f64>,
    wy: Vec<f64>,
    top: usize,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        let top = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        Fenwick {
            w: vec![0.0; n + 1],
            wy: vec![0.0; n + 1],
            top,
        }
    }
    fn add(&mut self, rank: usize, w: f64, wy: f64) {
        let mut k = rank + 1;
        while k < self.w.len() {
            self.w[k] += w;
            self.wy[k] += wy;
            k += k & k.wrapping_neg();
        }
    }
    /// Smallest rank whose inclusive cumulative weight is `> half` (or `>= half` when
    /// `inclusive`), with the weight and weighted sum strictly below it.
    fn search(&self, half: f64, inclusive: bool) -> (usize, f64, f64) {
        let (mut pos, mut w, mut wy) = (0usize, 0.0, 0.0);
        let mut step = self.top;
        while step > 0 {
            let nxt = pos + step;
            if nxt < self.w.len() {
                let cw = w + self.w[nxt];
                let go = if inclusive { cw < half } else { cw <= half };
                if go {
                    pos = nxt;
                    w = cw;
                    wy += self.wy[nxt];
                }
            }
            step >>= 1;
        }
        (pos, w, wy)
    }
}

impl Builder<'_> {
    fn weight(&self, i: u32) -> f64 {
        self.weights.map_or(1.0, |w| w[i as usize])
    }

    fn stats_of<'s>(&self, samples: impl Iterator<Item = &'s Entry>) -> Stats {
        let mut s = Stats {
            n: 0,
            w: 0.0,
            sums: match self.target {
                Target::Class { n_classes, .. } => vec![0.0; *n_classes],
                Target::Reg { .. } => vec![0.0; 2],
            },
        };
        for e in samples {
            let w = self.weight(e.i);
            s.n += 1;
            s.w += w;
            match self.target {
                Target::Class { y, .. } => s.sums[y[e.i as usize] as usize] += w,
                Target::Reg { y } => {
                    let v = y[e.i as usize];
                    s.sums[0] += w * v;
                    s.sums[1] += w * v * v;
                }
            }
        }
        s
    }

    fn mae_of<'s>(&self, samples: impl Iterator<Item = &'s Entry>) -> (f64, f64) {
        let Target::Reg { y } = self.target else {
            return (0.0, 0.0);
        };
        let mut yw: Vec<(f64, f64)> = samples
            .map(|e| (y[e.i as usize], self.weight(e.i)))
            .collect();
        weighted_median(&mut yw)
    }

    /// Impurity of a set with statistics `s` (the set itself is needed for MAE).
    fn impurity(&self, s: &Stats, entries: &[&Entry]) -> f64 {
        match self.cfg.crit {
            Crit::Gini | Crit::Entropy => class_impurity(self.cfg.crit, &s.sums, s.w),
            Crit::Mse => s.sums[1] / s.w - (s.sums[0] / s.w).powi(2),
            Crit::Mae => self.mae_of(entries.iter().copied()).1 / s.w,
        }
    }

    /// The stored value of a node: class fractions, mean, or weighted median.
    fn value(&self, s: &Stats, entries: &[Entry]) -> Vec<f64> {
        match self.cfg.crit {
            Crit::Gini | Crit::Entropy => s.sums.iter().map(|c| c / s.w).collect(),
            Crit::Mse => vec![s.sums[0] / s.w],
            Crit::Mae => vec![self.mae_of(entries.iter()).0],
        }
    }

    /// scikit-learn's impurity_improvement.
    fn improvement(&self, node: &Stats, wl: f64, wr: f64, imp: f64, il: f64, ir: f64) -> f64 {
        (node.w / self.weighted_n_samples) * (imp - wr / node.w * ir - wl / node.w * il)
    }

    fn depth_first(&mut self, n: usize) {
        struct Rec {
            start: usize,
            end: usize,
            depth: usize,
            parent: Option<(usize, bool)>,
            impurity: f64,
            n_constant: usize,
        }
        let mut stack = vec![Rec {
            start: 0,
            end: n,
            depth: 0,
            parent: None,
            impurity: f64::NAN,
            n_constant: 0,
        }];
        let mut first = true;
        while let Some(rec) = stack.pop() {
            let (start, end) = (rec.start, rec.end);
            let node_entries = &self.order[start..end];
            let stats = self.stats_of(node_entries.iter());
            let n_node = end - start;
            let cfg = self.cfg;
            let mut is_leaf = rec.depth >= cfg.max_depth
                || n_node < cfg.min_samples_split
                || n_node < 2 * cfg.min_samples_leaf
                || stats.w < 2.0 * cfg.min_weight_leaf;
            let impurity = if first {
                first = false;
                let refs: Vec<&Entry> = node_entries.iter().collect();
                self.impurity(&stats, &refs)
            } else {
                rec.impurity
            };
            is_leaf = is_leaf || impurity <= EPSILON;
            let mut n_constant = rec.n_constant;
            let mut split = None;
            if !is_leaf {
                split = self.node_split(start, end, impurity, &mut n_constant, &stats);
                is_leaf = match &split {
                    None => true,
                    Some(s) => s.improvement + EPSILON < cfg.min_impurity_decrease,
                };
            }
            let value = self.value(&stats, &self.order[start..end]);
            let node_split = if is_leaf { None } else { split };
            let id = self.tree.add_node(
                rec.parent,
                node_split.map(|s| (s.feature, s.threshold, s.missing_left)),
                impurity,
                n_node,
                stats.w,
                &value,
            );
            if let Some(s) = node_split {
                self.apply_split(start, end, &s);
                let mid = start + s.n_left;
                stack.push(Rec {
                    start: mid,
                    end,
                    depth: rec.depth + 1,
                    parent: Some((id, false)),
                    impurity: s.impurity_right,
                    n_constant,
                });
                stack.push(Rec {
                    start,
                    end: mid,
                    depth: rec.depth + 1,
                    parent: Some((id, true)),
                    impurity: s.impurity_left,
                    n_constant,
                });
            }
        }
    }

    fn best_first(&mut self, n: usize) {
        #[derive(Clone)]
        struct Rec {
            node: usize,
            start: usize,
            end: usize,
            pos: usize,
            depth: usize,
            is_leaf: bool,
            improvement: f64,
            impurity_left: f64,
            impurity_right: f64,
        }
        let less = |a: &Rec, b: &Rec| a.improvement < b.improvement;
        // libstdc++'s push_heap / pop_heap, so equal improvements pop in scikit-learn's order.
        fn push_up(
            v: &mut [Rec],
            mut hole: usize,
            top: usize,
            value: Rec,
            less: &dyn Fn(&Rec, &Rec) -> bool,
        ) {
            while hole > top {
                let parent = (hole - 1) / 2;
                if less(&v[parent], &value) {
                    v[hole] = v[parent].clone();
                    hole = parent;
                } else {
                    break;
                }
            }
            v[hole] = value;
        }
        fn pop(v: &mut Vec<Rec>, less: &dyn Fn(&Rec, &Rec) -> bool) -> Option<Rec> {
            let len = v.len();
            if len > 1 {
                let value = v[len - 1].clone();
                v[len - 1] = v[0].clone();
                // __adjust_heap(first, 0, len - 1, value)
                let n = len - 1;
                let mut hole = 0;
                let mut child = 0;
                while n > 0 && child < (n - 1) / 2 {
                    child = 2 * (child + 1);
                    if less(&v[child], &v[child - 1]) {
                        child -= 1;
                    }
                    v[hole] = v[child].clone();
                    hole = child;
                }
                if n & 1 == 0 && n >= 2 && child == (n - 2) / 2 {
                    child = 2 * (child + 1);
                    v[hole] = v[child - 1].clone();
                    hole = child - 1;
                }
                push_up(v, hole, 0, value, less);
            }
            v.pop()
        }

        let mut max_split_nodes = self.cfg.max_leaf_nodes.unwrap_or(2) - 1;
        let mut frontier: Vec<Rec> = Vec::new();
        let root = self.add_split_node(0, n, f64::NAN, None, 0);
        frontier.push(root_rec(root));
        fn root_rec(r: (usize, usize, usize, usize, usize, Option<Split>)) -> Rec {
            let (node, start, end, pos, depth, split) = r;
            Rec {
                node,
                start,
                end,
                pos,
                depth,
                is_leaf: split.is_none(),
                improvement: split.map_or(0.0, |s| s.improvement),
                impurity_left: split.map_or(0.0, |s| s.impurity_left),
                impurity_right: split.map_or(0.0, |s| s.impurity_right),
            }
        }
        while let Some(rec) = pop(&mut frontier, &less) {
            if rec.is_leaf || max_split_nodes == 0 {
                self.tree.make_leaf(rec.node);
                continue;
            }
            max_split_nodes -= 1;
            let l = self.add_split_node(
                rec.start,
                rec.pos,
                rec.impurity_left,
                Some((rec.node, true)),
                rec.depth + 1,
            );
            let r = self.add_split_node(
                rec.pos,
                rec.end,
                rec.impurity_right,
                Some((rec.node, false)),
                rec.depth + 1,
            );
            for r in [l, r] {
                frontier.push(root_rec(r));
                let last = frontier.len() - 1;
                let value = frontier[last].clone();
                push_up(&mut frontier, last, 0, value, &less);
            }
        }
    }

    /// Best-first: evaluate and add a node; returns (id, start, end, pos, depth, split).
    fn add_split_node(
        &mut self,
        start: usize,
        end: usize,
        impurity: f64,
        parent: Option<(usize, bool)>,
        depth: usize,
    ) -> (usize, usize, usize, usize, usize, Option<Split>) {
        let cfg = self.cfg;
        let node_entries = &self.order[start..end];
        let stats = self.stats_of(node_entries.iter());
        let impurity = if parent.is_none() {
            let refs: Vec<&Entry> = node_entries.iter().collect();
            self.impurity(&stats, &refs)
        } else {
            impurity
        };
        let n_node = end - start;
        let mut is_leaf = depth >= cfg.max_depth
            || n_node < cfg.min_samples_split
            || n_node < 2 * cfg.min_samples_leaf
            || stats.w < 2.0 * cfg.min_weight_leaf
            || impurity <= EPSILON;
        let mut split = None;
        if !is_leaf {
            let mut n_constant = 0;
            split = self.node_split(start, end, impurity, &mut n_constant, &stats);
            is_leaf = match &split {
                None => true,
                Some(s) => s.improvement + EPSILON < cfg.min_impurity_decrease,
            };
        }
        let value = self.value(&stats, &self.order[start..end]);
        let split = if is_leaf { None } else { split };
        let id = self.tree.add_node(
            parent,
            split.map(|s| (s.feature, s.threshold, s.missing_left)),
            impurity,
            n_node,
            stats.w,
            &value,
        );
        let mut pos = end;
        if let Some(s) = &split {
            self.apply_split(start, end, s);
            pos = start + s.n_left;
        }
        (id, start, end, pos, depth, split)
    }

    /// Draw features in scikit-learn's order, evaluate them, and return the best split.
    fn node_split(
        &mut self,
        start: usize,
        end: usize,
        impurity: f64,
        n_constant: &mut usize,
        stats: &Stats,
    ) -> Option<Split> {
        let n_features = self.features.len();
        let max_features = self.cfg.max_features;
        let mut f_i = n_features;
        let mut n_visited = 0;
        let mut n_found_constants = 0;
        let mut n_drawn_constants = 0;
        let n_known_constants = *n_constant;
        let mut n_total_constants = n_known_constants;
        let mut draws: Vec<Draw> = Vec::new();
        // Random splitter: candidates are evaluated as drawn (scikit-learn partitions its
        // samples for each one, which changes the order of the sums that follow).
        let mut random_results: Vec<Option<Candidate>> = Vec::new();
        // The last feature scikit-learn sorted (best splitter) or drew (random splitter), with
        // whether it was evaluated and its missing count in this node.
        let mut last: Option<(usize, bool, usize)> = None;

        while f_i > n_total_constants
            && (n_visited < max_features || n_visited <= n_found_constants + n_drawn_constants)
        {
            n_visited += 1;
            let mut f_j = self.rng.int(n_drawn_constants, f_i - n_found_constants);
            if f_j < n_known_constants {
                self.features.swap(n_drawn_constants, f_j);
                n_drawn_constants += 1;
                continue;
            }
            f_j += n_found_constants;
            let feature = self.features[f_j];
            let entries = &self.cols[feature][start..end];
            let nnm = non_missing(entries);
            let n_missing = entries.len() - nnm;
            let constant = nnm == 0
                || (n_missing == 0 && entries[nnm - 1].v <= entries[0].v + FEATURE_THRESHOLD);
            last = Some((feature, !constant, n_missing));
            if constant {
                self.features.swap(f_j, n_total_constants);
                n_found_constants += 1;
                n_total_constants += 1;
                continue;
            }
            f_i -= 1;
            self.features.swap(f_i, f_j);
            let random = if self.cfg.random_splitter {
                let (lo, hi) = (f64::from(entries[0].v), f64::from(entries[nnm - 1].v));
                let mut threshold = self.rng.uniform(lo, hi);
                let missing_left = n_missing > 0 && self.rng.int(0, 2) == 1;
                if threshold == hi {
                    threshold = lo;
                }
                Some((threshold, missing_left))
            } else {
                None
            };
            if let Some((threshold, missing_left)) = random {
                let c = self.eval_random(feature, threshold, missing_left, start, end, stats);
                random_results.push(c);
            } else {
                draws.push(Draw { feature, random });
            }
        }

        // Evaluate the drawn features (in parallel for large nodes), reduce in visit order.
        let eval = |d: &Draw| self.eval_feature(d, start, end, stats);
        let results: Vec<Option<Candidate>> = if self.cfg.random_splitter {
            random_results
        } else if self.cfg.parallel && end - start >= PARALLEL_MIN_SAMPLES && draws.len() > 1 {
            draws.par_iter().map(eval).collect()
        } else {
            draws.iter().map(eval).collect()
        };
        let mut best: Option<Candidate> = None;
        for c in results.into_iter().flatten() {
            if best.is_none_or(|b| c.proxy > b.proxy) {
                best = Some(c);
            }
        }

        // Restore the constant-feature invariant for siblings and children.
        self.features[..n_known_constants]
            .copy_from_slice(&self.constant_features[..n_known_constants]);
        self.constant_features[n_known_constants..n_known_constants + n_found_constants]
            .copy_from_slice(
                &self.features[n_known_constants..n_known_constants + n_found_constants],
            );
        *n_constant = n_total_constants;

        let best = best?;
        // scikit-learn's samples order: sorted by the last sorted feature (missing values
        // first if it searched with them on the left) ...
        if let (false, Some((f, evaluated, n_missing))) = (self.cfg.random_splitter, last) {
            let entries = &self.cols[f][start..end];
            let cut = if evaluated && n_missing > 0 {
                entries.len() - n_missing
            } else {
                0
            };
            let (head, tail) = entries.split_at(cut);
            for (slot, e) in self.order[start..end]
                .iter_mut()
                .zip(tail.iter().chain(head))
            {
                *slot = *e;
            }
        }
        // ... then partitioned in place by the chosen split, unless the random splitter's last
        // draw already did it.
        for e in &self.cols[best.feature][start..end] {
            self.side[e.i as usize] = Self::goes_left(e, best.threshold, best.missing_left);
        }
        if !(self.cfg.random_splitter && last.map(|l| l.0) == Some(best.feature)) {
            let side = &self.side;
            swap_partition(&mut self.order[start..end], |i| side[i as usize]);
        }
        Some(self.finish_split(best, start, end, impurity, stats))
    }

    /// scikit-learn's in-place partition of `samples[start..end]` (left ones stay in front,
    /// right ones are swapped to the back); returns the first right position.
    fn partition_order(
        &mut self,
        f: usize,
        threshold: f64,
        missing_left: bool,
        start: usize,
        end: usize,
    ) -> usize {
        let col = &self.x[f];
        swap_partition(&mut self.order[start..end], |i| {
            let v = col[i as usize];
            if v.is_nan() {
                missing_left
            } else {
                f64::from(v) <= threshold
            }
        }) + start
    }

    /// Sums of the first `q` of `ids` the way scikit-learn's `criterion.update(q)` reaches them
    /// from `pos`: adding forward, or (past the middle) subtracting from the node total
    /// backwards. `acc` holds the running sums (class counts or `[Σwy]`) and their weight.
    fn update_sums(
        &self,
        ids: &[Entry],
        total: &Stats,
        acc: &mut (Vec<f64>, f64),
        pos: &mut usize,
        q: usize,
    ) {
        let n = ids.len();
        let forward = q - *pos <= n - q;
        let range = if forward {
            &ids[*pos..q]
        } else {
            let k = acc.0.len();
            acc.0.copy_from_slice(&total.sums[..k]);
            acc.1 = total.w;
            &ids[q..]
        };
        let (sums, wsum) = (&mut acc.0, &mut acc.1);
        let w_of = |i: u32| self.weights.map_or(1.0, |w| w[i as usize]);
        match (self.target, forward) {
            (Target::Class { y, .. }, true) => {
                for e in range {
                    let w = w_of(e.i);
                    sums[y[e.i as usize] as usize] += w;
                    *wsum += w;
                }
            }
            (Target::Class { y, .. }, false) => {
                for e in range.iter().rev() {
                    let w = w_of(e.i);
                    sums[y[e.i as usize] as usize] -= w;
                    *wsum -= w;
                }
            }
            (Target::Reg { y }, true) => {
                for e in range {
                    let w = w_of(e.i);
                    sums[0] += w * y[e.i as usize];
                    *wsum += w;
                }
            }
            (Target::Reg { y }, false) => {
                for e in range.iter().rev() {
                    let w = w_of(e.i);
                    sums[0] -= w * y[e.i as usize];
                    *wsum -= w;
                }
            }
        }
        *pos = q;
    }

    /// Random splitter: partition the samples by the drawn threshold and score the split.
    fn eval_random(
        &mut self,
        feature: usize,
        threshold: f64,
        missing_left: bool,
        start: usize,
        end: usize,
        stats: &Stats,
    ) -> Option<Candidate> {
        let pos = self.partition_order(feature, threshold, missing_left, start, end);
        let n = end - start;
        let n_left = pos - start;
        let min_leaf = self.cfg.min_samples_leaf;
        if n_left < min_leaf || n - n_left < min_leaf {
            return None;
        }
        let ids = &self.order[start..end];
        let k = match self.target {
            Target::Class { n_classes, .. } => *n_classes,
            Target::Reg { .. } => 1,
        };
        let mut acc = (vec![0.0; k], 0.0);
        let mut p = 0;
        self.update_sums(ids, stats, &mut acc, &mut p, n_left);
        let (wl, wr) = (acc.1, stats.w - acc.1);
        if wl < self.cfg.min_weight_leaf || wr < self.cfg.min_weight_leaf {
            return None;
        }
        let proxy = match self.cfg.crit {
            Crit::Gini | Crit::Entropy => {
                let right: Vec<f64> = stats.sums.iter().zip(&acc.0).map(|(t, l)| t - l).collect();
                let il = class_impurity(self.cfg.crit, &acc.0, wl);
                let ir = class_impurity(self.cfg.crit, &right, wr);
                -wr * ir - wl * il
            }
            Crit::Mse => {
                let sum_r = stats.sums[0] - acc.0[0];
                acc.0[0] * acc.0[0] / wl + sum_r * sum_r / wr
            }
            Crit::Mae => {
                let il = self.mae_of(ids[..n_left].iter()).1 / wl;
                let ir = self.mae_of(ids[n_left..].iter()).1 / wr;
                -wr * ir - wl * il
            }
        };
        let n_missing = ids
            .iter()
            .filter(|e| self.x[feature][e.i as usize].is_nan())
            .count();
        Some(Candidate {
            proxy,
            feature,
            threshold,
            missing_left: if n_missing > 0 {
                missing_left
            } else {
                n_left > n - n_left
            },
        })
    }

    /// Goes-left rule of a split for one entry.
    fn goes_left(e: &Entry, threshold: f64, missing_left: bool) -> bool {
        if e.v.is_nan() {
            missing_left
        } else {
            f64::from(e.v) <= threshold
        }
    }

    /// Exact children impurities and improvement of the chosen split, summed in scikit-learn's
    /// order over the partitioned samples (sides already marked for [`Self::apply_split`]).
    fn finish_split(
        &mut self,
        c: Candidate,
        start: usize,
        end: usize,
        impurity: f64,
        stats: &Stats,
    ) -> Split {
        let n = end - start;
        let ids = &self.order[start..end];
        let n_left = ids.iter().take_while(|e| self.side[e.i as usize]).count();
        let k = match self.target {
            Target::Class { n_classes, .. } => *n_classes,
            Target::Reg { .. } => 1,
        };
        let mut acc = (vec![0.0; k], 0.0);
        let mut p = 0;
        self.update_sums(ids, stats, &mut acc, &mut p, n_left);
        let (wl, wr) = (acc.1, stats.w - acc.1);
        let (il, ir) = match (self.target, self.cfg.crit) {
            (_, Crit::Gini | Crit::Entropy) => {
                let right: Vec<f64> = stats.sums.iter().zip(&acc.0).map(|(t, l)| t - l).collect();
                (
                    class_impurity(self.cfg.crit, &acc.0, wl),
                    class_impurity(self.cfg.crit, &right, wr),
                )
            }
            (Target::Reg { y }, Crit::Mse) => {
                let mut sq_l = 0.0;
                for e in &ids[..n_left] {
                    let v = y[e.i as usize];
                    sq_l += self.weight(e.i) * v * v;
                }
                let (sum_l, sum_r) = (acc.0[0], stats.sums[0] - acc.0[0]);
                let sq_r = stats.sums[1] - sq_l;
                (
                    sq_l / wl - (sum_l / wl).powi(2),
                    sq_r / wr - (sum_r / wr).powi(2),
                )
            }
            _ => (
                self.mae_of(ids[..n_left].iter()).1 / wl,
                self.mae_of(ids[n_left..].iter()).1 / wr,
            ),
        };
        debug_assert!(n_left > 0 && n_left < n);
        Split {
            feature: c.feature,
            threshold: c.threshold,
            missing_left: c.missing_left,
            n_left,
            impurity_left: il,
            impurity_right: ir,
            improvement: self.improvement(stats, wl, wr, impurity, il, ir),
        }
    }

    /// Partition every column's `[start, end)` stably into left then right.
    fn apply_split(&mut self, start: usize, end: usize, _s: &Split) {
        let side = &self.side;
        let part = |col: &mut Vec<Entry>, tmp: &mut Vec<Entry>| {
            tmp.clear();
            let range = &mut col[start..end];
            let mut w = 0;
            for k in 0..range.len() {
                let e = range[k];
                if side[e.i as usize] {
                    range[w] = e;
                    w += 1;
                } else {
                    tmp.push(e);
                }
            }
            range[w..].copy_from_slice(tmp);
        };
        if self.cfg.parallel && end - start >= PARALLEL_MIN_SAMPLES {
            self.cols
                .par_iter_mut()
                .for_each_init(Vec::new, |tmp, col| part(col, tmp));
        } else {
            let mut tmp = Vec::new();
            for col in &mut self.cols {
                part(col, &mut tmp);
            }
        }
    }

    /// Best split of one feature (or the random threshold's split), scikit-learn's scan.
    fn eval_feature(&self, d: &Draw, start: usize, end: usize, stats: &Stats) -> Option<Candidate> {
        let entries = &self.cols[d.feature][start..end];
        let n = entries.len();
        let nnm = non_missing(entries);
        let n_missing = n - nnm;
        let min_leaf = self.cfg.min_samples_leaf;
        let min_wleaf = self.cfg.min_weight_leaf;

        if let Some((threshold, missing_left)) = d.random {
            let q = entries[..nnm].partition_point(|e| f64::from(e.v) <= threshold);
            let n_left = q + if missing_left { n_missing } else { 0 };
            let n_right = n - n_left;
            if n_left < min_leaf || n_right < min_leaf {
                return None;
            }
            let left: Vec<&Entry> = entries
                .iter()
                .filter(|e| Self::goes_left(e, threshold, missing_left))
                .collect();
            let sl = self.stats_of(left.iter().copied());
            let wr = stats.w - sl.w;
            if sl.w < min_wleaf || wr < min_wleaf {
                return None;
            }
            let proxy = self.proxy_of_set(&sl, stats, &left, entries, threshold, missing_left);
            let missing_left = if n_missing > 0 {
                missing_left
            } else {
                n_left > n_right
            };
            return Some(Candidate {
                proxy,
                feature: d.feature,
                threshold,
                missing_left,
            });
        }

        let mut best: Option<Candidate> = None;
        let mut consider = |proxy: f64, k: usize, q: usize, n_left: usize, mgl: bool| {
            if best.is_none_or(|b| proxy > b.proxy) {
                let threshold = if q == nnm {
                    f64::INFINITY
                } else {
                    let (a, b) = (f64::from(entries[k].v), f64::from(entries[q].v));
                    let t = a / 2.0 + b / 2.0;
                    if t == b || t.is_infinite() {
                        a
                    } else {
                        t
                    }
                };
                let missing_left = if n_missing == 0 {
                    n_left > n - n_left
                } else {
                    mgl
                };
                best = Some(Candidate {
                    proxy,
                    feature: d.feature,
                    threshold,
                    missing_left,
                });
            }
        };
        if n_missing == 0 && self.cfg.crit != Crit::Mae {
            // scikit-learn's order of sums: criterion.update moves forward from the last
            // candidate, or backward from the end once past the middle (`update_sums`, inlined
            // here for the common one-step forward move).
            let w_of = |i: u32| self.weights.map_or(1.0, |w| w[i as usize]);
            let first = min_leaf.max(1);
            let last = nnm.saturating_sub(min_leaf).min(nnm.saturating_sub(1));
            match self.target {
                Target::Reg { y } => {
                    let (mut sum_l, mut wl, mut pos) = (0.0, 0.0, 0);
                    for q in first..=last {
                        if q == 0 || entries[q].v <= entries[q - 1].v + FEATURE_THRESHOLD {
                            continue;
                        }
                        if q - pos <= n - q {
                            for e in &entries[pos..q] {
                                let w = w_of(e.i);
                                sum_l += w * y[e.i as usize];
                                wl += w;
                            }
                        } else {
                            sum_l = stats.sums[0];
                            wl = stats.w;
                            for e in entries[q..].iter().rev() {
                                let w = w_of(e.i);
                                sum_l -= w * y[e.i as usize];
                                wl -= w;
                            }
                        }
                        pos = q;
                        let wr = stats.w - wl;
                        if wl < min_wleaf || wr < min_wleaf {
                            continue;
                        }
                        let sum_r = stats.sums[0] - sum_l;
                        consider(sum_l * sum_l / wl + sum_r * sum_r / wr, q - 1, q, q, false);
                    }
                }
                Target::Class { y, n_classes } => {
                    let k = *n_classes;
                    let (mut left, mut right) = (vec![0.0; k], vec![0.0; k]);
                    let (mut wl, mut pos) = (0.0, 0);
                    let crit = self.cfg.crit;
                    for q in first..=last {
                        if q == 0 || entries[q].v <= entries[q - 1].v + FEATURE_THRESHOLD {
                            continue;
                        }
                        if q - pos <= n - q {
                            for e in &entries[pos..q] {
                                let w = w_of(e.i);
                                left[y[e.i as usize] as usize] += w;
                                wl += w;
                            }
                        } else {
                            left.copy_from_slice(&stats.sums);
                            wl = stats.w;
                            for e in entries[q..].iter().rev() {
                                let w = w_of(e.i);
                                left[y[e.i as usize] as usize] -= w;
                                wl -= w;
                            }
                        }
                        pos = q;
                        let wr = stats.w - wl;
                        if wl < min_wleaf || wr < min_wleaf {
                            continue;
                        }
                        for ((r, t), l) in right.iter_mut().zip(&stats.sums).zip(&left) {
                            *r = t - l;
                        }
                        let il = class_impurity(crit, &left, wl);
                        let ir = class_impurity(crit, &right, wr);
                        consider(-wr * ir - wl * il, q - 1, q, q, false);
                    }
                }
            }
            return best;
        }
        let passes = if n_missing > 0 { 2 } else { 1 };
        for pass in 0..passes {
            let mgl = pass == 1;
            let is_cand = |k: usize| -> bool {
                let q = k + 1;
                if q < nnm {
                    entries[q].v > entries[k].v + FEATURE_THRESHOLD
                } else {
                    !mgl && n_missing > 0
                }
            };
            let base = if mgl { n_missing } else { 0 };
            let ok_counts = |q: usize| {
                let n_left = q + base;
                n_left >= min_leaf && n - n_left >= min_leaf
            };
            match (self.target, self.cfg.crit) {
                (Target::Class { y, n_classes }, crit) => {
                    let mut left = vec![0.0; *n_classes];
                    let mut right = vec![0.0; *n_classes];
                    let mut wl = 0.0;
                    if mgl {
                        for e in &entries[nnm..] {
                            let w = self.weight(e.i);
                            left[y[e.i as usize] as usize] += w;
                            wl += w;
                        }
                    }
                    for (k, e) in entries[..nnm].iter().enumerate() {
                        let w = self.weight(e.i);
                        left[y[e.i as usize] as usize] += w;
                        wl += w;
                        if !is_cand(k) || !ok_counts(k + 1) {
                            continue;
                        }
                        let wr = stats.w - wl;
                        if wl < min_wleaf || wr < min_wleaf {
                            continue;
                        }
                        for c in 0..*n_classes {
                            right[c] = stats.sums[c] - left[c];
                        }
                        let il = class_impurity(crit, &left, wl);
                        let ir = class_impurity(crit, &right, wr);
                        let proxy = -wr * ir - wl * il;
                        consider(proxy, k, k + 1, k + 1 + base, mgl);
                    }
                }
                (Target::Reg { y }, Crit::Mae) => {
                    // MAE has no missing-value support; entries are all non-missing.
                    let (left_ae, right_ae) = self.mae_prefixes(entries, y);
                    let mut wl = 0.0;
                    for k in 0..nnm {
                        wl += self.weight(entries[k].i);
                        if !is_cand(k) || !ok_counts(k + 1) {
                            continue;
                        }
                        let wr = stats.w - wl;
                        if wl < min_wleaf || wr < min_wleaf {
                            continue;
                        }
                        let il = left_ae[k] / wl;
                        let ir = right_ae[k + 1] / wr;
                        let proxy = -wr * ir - wl * il;
                        consider(proxy, k, k + 1, k + 1 + base, mgl);
                    }
                }
                (Target::Reg { y }, _) => {
                    let mut sum_l = 0.0;
                    let mut wl = 0.0;
                    if mgl {
                        for e in &entries[nnm..] {
                            let w = self.weight(e.i);
                            sum_l += w * y[e.i as usize];
                            wl += w;
                        }
                    }
                    for (k, e) in entries[..nnm].iter().enumerate() {
                        let w = self.weight(e.i);
                        sum_l += w * y[e.i as usize];
                        wl += w;
                        if !is_cand(k) || !ok_counts(k + 1) {
                            continue;
                        }
                        let wr = stats.w - wl;
                        if wl < min_wleaf || wr < min_wleaf {
                            continue;
                        }
                        let sum_r = stats.sums[0] - sum_l;
                        let proxy = sum_l * sum_l / wl + sum_r * sum_r / wr;
                        consider(proxy, k, k + 1, k + 1 + base, mgl);
                    }
                }
            }
        }
        best
    }

    /// Proxy improvement of an explicit left set (random splitter).
    fn proxy_of_set(
        &self,
        sl: &Stats,
        stats: &Stats,
        left: &[&Entry],
        entries: &[Entry],
        threshold: f64,
        missing_left: bool,
    ) -> f64 {
        let (wl, wr) = (sl.w, stats.w - sl.w);
        match self.cfg.crit {
            Crit::Gini | Crit::Entropy => {
                let sr: Vec<f64> = stats
                    .sums
                    .iter()
                    .zip(&sl.sums)
                    .map(|(t, l)| t - l)
                    .collect();
                let il = class_impurity(self.cfg.crit, &sl.sums, wl);
                let ir = class_impurity(self.cfg.crit, &sr, wr);
                -wr * ir - wl * il
            }
            Crit::Mse => {
                let sum_r = stats.sums[0] - sl.sums[0];
                sl.sums[0] * sl.sums[0] / wl + sum_r * sum_r / wr
            }
            Crit::Mae => {
                let right = entries
                    .iter()
                    .filter(|e| !Self::goes_left(e, threshold, missing_left));
                let il = self.mae_of(left.iter().copied()).1 / wl;
                let ir = self.mae_of(right).1 / wr;
                -wr * ir - wl * il
            }
        }
    }

    /// Absolute errors about the weighted median of every prefix `entries[..=k]` and every
    /// suffix `entries[k..]`, in O(n log n) with a Fenwick tree over target ranks.
    fn mae_prefixes(&self, entries: &[Entry], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = entries.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| y[entries[a].i as usize].total_cmp(&y[entries[b].i as usize]));
        let mut rank = vec![0usize; n];
        let mut sorted_y = vec![0.0; n];
        for (r, &k) in order.iter().enumerate() {
            rank[k] = r;
            sorted_y[r] = y[entries[k].i as usize];
        }
        let pass = |ks: &mut dyn Iterator<Item = usize>, out: &mut Vec<f64>| {
            let mut fw = Fenwick::new(n);
            let (mut tw, mut twy) = (0.0, 0.0);
            for k in ks {
                let w = self.weight(entries[k].i);
                let r = rank[k];
                fw.add(r, w, w * sorted_y[r]);
                tw += w;
                twy += w * sorted_y[r];
                let half = 0.5 * tw;
                let (r1, w_left, wy_left) = fw.search(half, false);
                let (r0, _, _) = fw.search(half, true);
                let median = if r0 != r1 {
                    (sorted_y[r0] + sorted_y[r1]) / 2.0
                } else {
                    sorted_y[r1]
                };
                let ae = (twy - wy_left) - median * (tw - w_left) + (median * w_left - wy_left);
                out[k] = ae;
            }
        };
        let mut left = vec![0.0; n];
        let mut right = vec![0.0; n];
        pass(&mut (0..n), &mut left);
        pass(&mut (0..n).rev(), &mut right);
        (left, right)
    }
}
