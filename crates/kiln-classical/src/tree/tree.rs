//! The fitted tree as flat arrays, like scikit-learn's `tree_`: traversal, feature importances
//! and minimal cost-complexity pruning.

use kiln_core::{Error, Result, Tensors};
use ndarray::ArrayView2;

/// Child index of a leaf (scikit-learn's `TREE_LEAF`).
pub const TREE_LEAF: i64 = -1;
/// Feature and threshold of a leaf (scikit-learn's `TREE_UNDEFINED`).
pub const TREE_UNDEFINED: i64 = -2;

/// The node arrays of a fitted tree, one entry per node, nodes numbered in scikit-learn's order
/// (root 0). Internal node `k` sends a sample left when `x[feature[k]] as f32 <= threshold[k]`,
/// and a NaN left when `missing_go_to_left[k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeArrays {
    /// Number of features the tree was grown on.
    pub n_features: usize,
    /// Values per node: the number of classes, or 1 for regression.
    pub n_values: usize,
    /// Left child, or -1 for a leaf.
    pub children_left: Vec<i64>,
    /// Right child, or -1 for a leaf.
    pub children_right: Vec<i64>,
    /// Split feature, or -2 for a leaf.
    pub feature: Vec<i64>,
    /// Split threshold, or -2 for a leaf.
    pub threshold: Vec<f64>,
    /// Where NaN goes at each internal node (false for leaves).
    pub missing_go_to_left: Vec<bool>,
    /// Node impurity.
    pub impurity: Vec<f64>,
    /// Training samples reaching the node.
    pub n_node_samples: Vec<usize>,
    /// Their total weight.
    pub weighted_n_node_samples: Vec<f64>,
    /// `n_nodes × n_values`, row-major: class fractions (classifier) or the prediction
    /// (regressor: mean, or median for `absolute_error`).
    pub value: Vec<f64>,
}

/// The minimal cost-complexity pruning path (scikit-learn's `cost_complexity_pruning_path`).
#[derive(Debug, Clone, PartialEq)]
pub struct PruningPath {
    /// Effective alphas, increasing.
    pub ccp_alphas: Vec<f64>,
    /// Total leaf impurity (weighted by sample fraction) of the subtree at each alpha.
    pub impurities: Vec<f64>,
}

impl TreeArrays {
    pub(crate) fn new(n_features: usize, n_values: usize) -> Self {
        TreeArrays {
            n_features,
            n_values,
            children_left: Vec::new(),
            children_right: Vec::new(),
            feature: Vec::new(),
            threshold: Vec::new(),
            missing_go_to_left: Vec::new(),
            impurity: Vec::new(),
            n_node_samples: Vec::new(),
            weighted_n_node_samples: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Append a node, registering it with its parent; `split` is `(feature, threshold,
    /// missing_go_to_left)` for an internal node.
    pub(crate) fn add_node(
        &mut self,
        parent: Option<(usize, bool)>,
        split: Option<(usize, f64, bool)>,
        impurity: f64,
        n: usize,
        w: f64,
        value: &[f64],
    ) -> usize {
        let id = self.children_left.len();
        if let Some((p, is_left)) = parent {
            if is_left {
                self.children_left[p] = id as i64;
            } else {
                self.children_right[p] = id as i64;
            }
        }
        self.children_left.push(TREE_LEAF);
        self.children_right.push(TREE_LEAF);
        match split {
            Some((f, t, m)) => {
                self.feature.push(f as i64);
                self.threshold.push(t);
                self.missing_go_to_left.push(m);
            }
            None => {
                self.feature.push(TREE_UNDEFINED);
                self.threshold.push(TREE_UNDEFINED as f64);
                self.missing_go_to_left.push(false);
            }
        }
        self.impurity.push(impurity);
        self.n_node_samples.push(n);
        self.weighted_n_node_samples.push(w);
        self.value.extend_from_slice(value);
        id
    }

    /// Turn node `id` into a leaf (best-first growth out of leaf budget).
    pub(crate) fn make_leaf(&mut self, id: usize) {
        self.children_left[id] = TREE_LEAF;
        self.children_right[id] = TREE_LEAF;
        self.feature[id] = TREE_UNDEFINED;
        self.threshold[id] = TREE_UNDEFINED as f64;
        self.missing_go_to_left[id] = false;
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.children_left.len()
    }

    /// Whether node `k` is a leaf.
    pub fn is_leaf(&self, k: usize) -> bool {
        self.children_left[k] == TREE_LEAF
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        (0..self.node_count()).filter(|&k| self.is_leaf(k)).count()
    }

    /// Depth of the deepest leaf (root alone: 0).
    pub fn max_depth(&self) -> usize {
        let mut depth = vec![0usize; self.node_count()];
        let mut max = 0;
        for k in 0..self.node_count() {
            if !self.is_leaf(k) {
                for c in [self.children_left[k], self.children_right[k]] {
                    depth[c as usize] = depth[k] + 1;
                    max = max.max(depth[k] + 1);
                }
            }
        }
        max
    }

    /// The values of node `k`.
    pub fn node_value(&self, k: usize) -> &[f64] {
        &self.value[k * self.n_values..(k + 1) * self.n_values]
    }

    /// Leaf reached by one row (values compared after rounding to `f32`, like scikit-learn).
    pub fn apply_row(&self, row: impl Fn(usize) -> f64) -> usize {
        let mut k = 0;
        while self.children_left[k] != TREE_LEAF {
            let v = row(self.feature[k] as usize) as f32;
            let left = if v.is_nan() {
                self.missing_go_to_left[k]
            } else {
                f64::from(v) <= self.threshold[k]
            };
            k = if left {
                self.children_left[k]
            } else {
                self.children_right[k]
            } as usize;
        }
        k
    }

    /// Leaf index of every row of `x` (caller checks the feature count).
    pub fn apply(&self, x: ArrayView2<'_, f64>) -> Vec<usize> {
        x.rows()
            .into_iter()
            .map(|r| self.apply_row(|f| r[f]))
            .collect()
    }

    /// Impurity-based feature importances, normalised to sum 1 (all zero for a lone leaf).
    pub fn feature_importances(&self) -> Vec<f64> {
        let mut imp = vec![0.0; self.n_features];
        for k in 0..self.node_count() {
            if self.is_leaf(k) {
                continue;
            }
            let (l, r) = (
                self.children_left[k] as usize,
                self.children_right[k] as usize,
            );
            imp[self.feature[k] as usize] += self.weighted_n_node_samples[k] * self.impurity[k]
                - self.weighted_n_node_samples[l] * self.impurity[l]
                - self.weighted_n_node_samples[r] * self.impurity[r];
        }
        let root = self.weighted_n_node_samples.first().copied().unwrap_or(1.0);
        for v in imp.iter_mut() {
            *v /= root;
        }
        let total: f64 = imp.iter().sum();
        if total > 0.0 {
            for v in imp.iter_mut() {
                *v /= total;
            }
        }
        imp
    }

    /// scikit-learn's `_cost_complexity_prune`: prune weakest links while their effective alpha
    /// is at most `stop_alpha` (`None`: prune to the root, recording the path). Returns which
    /// nodes stay leaves of the pruned subtree and the path.
    fn ccp(&self, stop_alpha: Option<f64>) -> (Vec<bool>, Vec<bool>, PruningPath) {
        let n = self.node_count();
        let mut parent = vec![usize::MAX; n];
        let mut leaves_in_subtree = vec![false; n];
        let mut r_node = vec![0.0; n];
        let total_w = self.weighted_n_node_samples[0];
        for k in 0..n {
            r_node[k] = self.weighted_n_node_samples[k] * self.impurity[k] / total_w;
            if self.is_leaf(k) {
                leaves_in_subtree[k] = true;
            } else {
                parent[self.children_left[k] as usize] = k;
                parent[self.children_right[k] as usize] = k;
            }
        }
        let mut r_branch = vec![0.0; n];
        let mut n_leaves = vec![0usize; n];
        for leaf in 0..n {
            if !leaves_in_subtree[leaf] {
                continue;
            }
            r_branch[leaf] = r_node[leaf];
            let current_r = r_node[leaf];
            let mut k = leaf;
            while k != 0 {
                let p = parent[k];
                r_branch[p] += current_r;
                n_leaves[p] += 1;
                k = p;
            }
        }
        let mut candidate: Vec<bool> = (0..n).map(|k| !self.is_leaf(k)).collect();
        let mut in_subtree = vec![true; n];
        let mut path = PruningPath {
            ccp_alphas: vec![0.0],
            impurities: vec![r_branch[0]],
        };
        while candidate[0] {
            let mut effective = f64::MAX;
            let mut pruned = 0;
            for k in 0..n {
                if !candidate[k] {
                    continue;
                }
                let a = (r_node[k] - r_branch[k]) / (n_leaves[k] as f64 - 1.0);
                if a < effective {
                    effective = a;
                    pruned = k;
                }
            }
            if stop_alpha.is_some_and(|s| s < effective) {
                break;
            }
            let mut stack = vec![pruned];
            while let Some(k) = stack.pop() {
                if !in_subtree[k] {
                    continue;
                }
                candidate[k] = false;
                leaves_in_subtree[k] = false;
                in_subtree[k] = false;
                if !self.is_leaf(k) {
                    stack.push(self.children_left[k] as usize);
                    stack.push(self.children_right[k] as usize);
                }
            }
            leaves_in_subtree[pruned] = true;
            in_subtree[pruned] = true;
            let n_pruned_leaves = n_leaves[pruned] - 1;
            n_leaves[pruned] = 0;
            let r_diff = r_node[pruned] - r_branch[pruned];
            r_branch[pruned] = r_node[pruned];
            let mut k = parent[pruned];
            while k != usize::MAX {
                n_leaves[k] -= n_pruned_leaves;
                r_branch[k] += r_diff;
                k = parent[k];
            }
            path.ccp_alphas.push(effective);
            path.impurities.push(r_branch[0]);
        }
        (leaves_in_subtree, in_subtree, path)
    }

    /// The pruning path of this tree.
    pub fn pruning_path(&self) -> PruningPath {
        self.ccp(None).2
    }

    /// The subtree of minimal cost complexity for `alpha`, renumbered in preorder.
    pub fn prune(&self, alpha: f64) -> TreeArrays {
        let (leaves, _, _) = self.ccp(Some(alpha));
        let mut out = TreeArrays::new(self.n_features, self.n_values);
        let mut stack: Vec<(usize, Option<(usize, bool)>)> = vec![(0, None)];
        while let Some((k, parent)) = stack.pop() {
            let split = if leaves[k] {
                None
            } else {
                Some((
                    self.feature[k] as usize,
                    self.threshold[k],
                    self.missing_go_to_left[k],
                ))
            };
            let id = out.add_node(
                parent,
                split,
                self.impurity[k],
                self.n_node_samples[k],
                self.weighted_n_node_samples[k],
                self.node_value(k),
            );
            if !leaves[k] {
                stack.push((self.children_right[k] as usize, Some((id, false))));
                stack.push((self.children_left[k] as usize, Some((id, true))));
            }
        }
        out
    }

    /// Store the arrays under scikit-learn's names.
    pub(crate) fn to_tensors(&self) -> Tensors {
        let n = self.node_count();
        let mut t = Tensors::new();
        t.insert_i64("children_left", &[n], self.children_left.clone());
        t.insert_i64("children_right", &[n], self.children_right.clone());
        t.insert_i64("feature", &[n], self.feature.clone());
        t.insert_f64("threshold", &[n], self.threshold.clone());
        t.insert_i64(
            "missing_go_to_left",
            &[n],
            self.missing_go_to_left
                .iter()
                .map(|&b| i64::from(b))
                .collect(),
        );
        t.insert_f64("impurity", &[n], self.impurity.clone());
        t.insert_i64(
            "n_node_samples",
            &[n],
            self.n_node_samples.iter().map(|&v| v as i64).collect(),
        );
        t.insert_f64(
            "weighted_n_node_samples",
            &[n],
            self.weighted_n_node_samples.clone(),
        );
        t.insert_f64("value", &[n, self.n_values], self.value.clone());
        t
    }

    /// Read and check the arrays written by [`TreeArrays::to_tensors`].
    pub(crate) fn from_tensors(t: &Tensors, n_features: usize, n_values: usize) -> Result<Self> {
        let n = t.i64s("children_left", None)?.len();
        let bad = |msg: String| Error::InvalidData(format!("model.safetensors: {msg}"));
        if n == 0 {
            return Err(bad("the tree has no nodes".into()));
        }
        let s = [n];
        let tree = TreeArrays {
            n_features,
            n_values,
            children_left: t.i64s("children_left", Some(&s))?.to_vec(),
            children_right: t.i64s("children_right", Some(&s))?.to_vec(),
            feature: t.i64s("feature", Some(&s))?.to_vec(),
            threshold: t.f64s("threshold", Some(&s))?.to_vec(),
            missing_go_to_left: t
                .i64s("missing_go_to_left", Some(&s))?
                .iter()
                .map(|&v| v != 0)
                .collect(),
            impurity: t.f64s("impurity", Some(&s))?.to_vec(),
            n_node_samples: t
                .i64s("n_node_samples", Some(&s))?
                .iter()
                .map(|&v| v.max(0) as usize)
                .collect(),
            weighted_n_node_samples: t.f64s("weighted_n_node_samples", Some(&s))?.to_vec(),
            value: t.f64s("value", Some(&[n, n_values]))?.to_vec(),
        };
        // Every child comes after its parent and inside the tree, so traversal terminates.
        for k in 0..n {
            let (l, r) = (tree.children_left[k], tree.children_right[k]);
            if l == TREE_LEAF && r == TREE_LEAF {
                continue;
            }
            let f = tree.feature[k];
            let in_tree = |c: i64| c > k as i64 && c < n as i64;
            if !in_tree(l) || !in_tree(r) || f < 0 || f as usize >= n_features {
                return Err(bad(format!(
                    "node {k} is malformed (children {l}, {r}, feature {f}; {n} nodes, {n_features} features)"
                )));
            }
        }
        Ok(tree)
    }
}
