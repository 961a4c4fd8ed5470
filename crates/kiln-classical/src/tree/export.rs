//! Reading a fitted tree: scikit-learn's `export_text` and `export_graphviz` layouts, and the
//! per-node boxes of a `plot_tree`-style diagram (drawn by kiln-plot).

use std::fmt::Write;

use super::model::{DecisionTreeClassifier, DecisionTreeRegressor};
use super::tree::TreeArrays;

/// Options of [`DecisionTreeClassifier::export_text`], scikit-learn's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextOptions {
    /// Deeper branches print as "truncated branch of depth N". Default 10.
    pub max_depth: usize,
    /// Width of one indentation level. Default 3.
    pub spacing: usize,
    /// Decimals of thresholds and values. Default 2.
    pub decimals: usize,
    /// Print the weighted class counts of each leaf (classifier). Default false.
    pub show_weights: bool,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            max_depth: 10,
            spacing: 3,
            decimals: 2,
            show_weights: false,
        }
    }
}

/// Options of the Graphviz export (scikit-learn's `export_graphviz`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DotOptions {
    /// Deeper nodes print as "(...)"; `None` shows all. Default `None`.
    pub max_depth: Option<usize>,
    /// Colour nodes by majority class and purity (or by value for regression). Default true.
    pub filled: bool,
    /// Name the majority class in each node (classifier). Default true.
    pub class_names: bool,
    /// Print the impurity. Default true.
    pub impurity: bool,
    /// Rounded boxes. Default false.
    pub rounded: bool,
    /// Digits of thresholds, impurities and values. Default 3.
    pub precision: usize,
}

impl Default for DotOptions {
    fn default() -> Self {
        DotOptions {
            max_depth: None,
            filled: true,
            class_names: true,
            impurity: true,
            rounded: false,
            precision: 3,
        }
    }
}

/// One box of a tree diagram: its text lines, its children (indices into the returned list),
/// the class whose colour fills it (`None`: regression, or a truncated branch) and how strongly
/// (`purity` in `[0, 1]`, scikit-learn's fill alpha).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagramBox {
    /// Text lines: split rule, impurity, samples, value, class.
    pub lines: Vec<String>,
    /// Left and right child boxes.
    pub children: Option<(usize, usize)>,
    /// Majority class (classifier).
    pub color_class: Option<usize>,
    /// Fill strength in `[0, 1]`.
    pub purity: f64,
}

/// What the exporters need from either estimator.
struct View<'a> {
    tree: &'a TreeArrays,
    features: &'a [String],
    classes: Option<&'a [String]>,
    criterion: String,
}

/// Python's `repr` of a float, for the common cases (`2.0`, `0.667`, `-0.0`).
fn py_repr(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Python's `round(x, digits)`.
fn py_round(x: f64, digits: usize) -> f64 {
    let s = format!("{x:.digits$}");
    s.parse().unwrap_or(x)
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (k, &p) in v.iter().enumerate() {
        if p > v[best] {
            best = k;
        }
    }
    best
}

/// scikit-learn's `_color_brew`: `n` evenly spaced hues.
pub fn color_brew(n: usize) -> Vec<[u8; 3]> {
    let (s, v) = (0.75, 0.9);
    let c = s * v;
    let m = v - c;
    (0..n)
        .map(|k| {
            // numpy: np.arange(25, 385, 360 / n).astype(int)
            let h = (25.0 + k as f64 * 360.0 / n as f64).trunc();
            let h_bar = h / 60.0;
            let x = c * (1.0 - ((h_bar % 2.0) - 1.0).abs());
            let (r, g, b) = match h_bar as usize {
                0 => (c, x, 0.0),
                1 => (x, c, 0.0),
                2 => (0.0, c, x),
                3 => (0.0, x, c),
                4 => (x, 0.0, c),
                5 => (c, 0.0, x),
                _ => (c, x, 0.0),
            };
            [
                (255.0 * (r + m)) as u8,
                (255.0 * (g + m)) as u8,
                (255.0 * (b + m)) as u8,
            ]
        })
        .collect()
}

impl View<'_> {
    fn is_classifier(&self) -> bool {
        self.classes.is_some()
    }

    /// Subtree depth with a leaf counting 1 (scikit-learn's `_compute_depth`).
    fn subtree_depth(&self, k: usize) -> usize {
        if self.tree.is_leaf(k) {
            1
        } else {
            1 + self
                .subtree_depth(self.tree.children_left[k] as usize)
                .max(self.subtree_depth(self.tree.children_right[k] as usize))
        }
    }

    fn text(&self, o: &TextOptions) -> String {
        let mut out = String::new();
        self.text_rec(&mut out, 0, 1, o);
        out
    }

    fn text_leaf(&self, out: &mut String, k: usize, indent: &str, o: &TextOptions) {
        let v = self.tree.node_value(k);
        let d = o.decimals;
        match self.classes {
            Some(classes) => {
                let name = classes.get(argmax(v)).map_or("?", String::as_str);
                if o.show_weights {
                    let w = self.tree.weighted_n_node_samples[k];
                    let vals: Vec<String> = v.iter().map(|p| format!("{:.d$}", p * w)).collect();
                    let _ = writeln!(out, "{indent} weights: [{}] class: {name}", vals.join(", "));
                } else {
                    let _ = writeln!(out, "{indent} class: {name}");
                }
            }
            None => {
                let vals: Vec<String> = v.iter().map(|p| format!("{p:.d$}")).collect();
                let _ = writeln!(out, "{indent} value: [{}]", vals.join(", "));
            }
        }
    }

    fn text_rec(&self, out: &mut String, k: usize, depth: usize, o: &TextOptions) {
        let unit = format!("|{}", " ".repeat(o.spacing));
        let mut indent = unit.repeat(depth);
        indent.truncate(indent.len() - o.spacing);
        indent.push_str(&"-".repeat(o.spacing));
        if depth <= o.max_depth + 1 {
            if self.tree.is_leaf(k) {
                self.text_leaf(out, k, &indent, o);
            } else {
                let name = &self.features[self.tree.feature[k] as usize];
                let t = format!("{:.*}", o.decimals, self.tree.threshold[k]);
                let _ = writeln!(out, "{indent} {name} <= {t}");
                self.text_rec(out, self.tree.children_left[k] as usize, depth + 1, o);
                let _ = writeln!(out, "{indent} {name} >  {t}");
                self.text_rec(out, self.tree.children_right[k] as usize, depth + 1, o);
            }
        } else {
            let sd = self.subtree_depth(k);
            if sd == 1 {
                self.text_leaf(out, k, &indent, o);
            } else {
                let _ = writeln!(out, "{indent} truncated branch of depth {sd}");
            }
        }
    }

    /// The lines of a node box (scikit-learn's `node_to_str` with `label="all"`).
    fn node_lines(
        &self,
        k: usize,
        precision: usize,
        impurity: bool,
        class_names: bool,
    ) -> Vec<String> {
        let t = self.tree;
        let mut lines = Vec::new();
        if !t.is_leaf(k) {
            let name = &self.features[t.feature[k] as usize];
            lines.push(format!(
                "{name} <= {}",
                py_repr(py_round(t.threshold[k], precision))
            ));
        }
        if impurity {
            lines.push(format!(
                "{} = {}",
                self.criterion,
                py_repr(py_round(t.impurity[k], precision))
            ));
        }
        lines.push(format!("samples = {}", t.n_node_samples[k]));
        let v = t.node_value(k);
        if self.is_classifier() {
            let w = t.weighted_n_node_samples[k];
            let counts: Vec<f64> = v.iter().map(|p| p * w).collect();
            let text: Vec<String> = if counts.iter().all(|c| c.fract() == 0.0) {
                counts.iter().map(|c| format!("{}", *c as i64)).collect()
            } else {
                counts
                    .iter()
                    .map(|c| py_repr(py_round(*c, precision)))
                    .collect()
            };
            lines.push(format!("value = [{}]", text.join(", ")));
            if class_names {
                if let Some(classes) = self.classes {
                    let name = classes.get(argmax(v)).map_or("?", String::as_str);
                    lines.push(format!("class = {name}"));
                }
            }
        } else {
            lines.push(format!("value = {}", py_repr(py_round(v[0], precision))));
        }
        lines
    }

    /// Majority class (or `None` for regression) and fill alpha of node `k`.
    fn fill(&self, k: usize) -> (Option<usize>, f64) {
        let v = self.tree.node_value(k);
        if self.is_classifier() {
            let mut sorted = v.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let alpha = if sorted.len() < 2 {
                0.0
            } else {
                (sorted[0] - sorted[1]) / (1.0 - sorted[1])
            };
            (Some(argmax(v)), if alpha.is_finite() { alpha } else { 1.0 })
        } else {
            let vals = &self.tree.value;
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let alpha = if hi > lo {
                (v[0] - lo) / (hi - lo)
            } else {
                0.0
            };
            (None, alpha)
        }
    }

    fn fill_hex(&self, k: usize) -> String {
        let (class, alpha) = self.fill(k);
        let rgb = match class {
            Some(c) => color_brew(self.tree.n_values)[c],
            None => color_brew(1)[0],
        };
        let ch = |c: u8| (alpha * f64::from(c) + (1.0 - alpha) * 255.0).round_ties_even() as u8;
        format!("#{:02x}{:02x}{:02x}", ch(rgb[0]), ch(rgb[1]), ch(rgb[2]))
    }

    fn dot(&self, o: &DotOptions) -> String {
        let mut out = String::from("digraph Tree {\nnode [shape=box");
        let mut style = Vec::new();
        if o.filled {
            style.push("filled");
        }
        if o.rounded {
            style.push("rounded");
        }
        if !style.is_empty() {
            let _ = write!(out, ", style=\"{}\", color=\"black\"", style.join(", "));
        }
        out.push_str(", fontname=\"helvetica\"] ;\n");
        if o.rounded {
            // scikit-learn writes no extra line for rounded boxes in DOT besides the style.
        }
        out.push_str("edge [fontname=\"helvetica\"] ;\n");
        self.dot_rec(&mut out, 0, None, 0, o);
        out.push('}');
        out
    }

    fn dot_rec(
        &self,
        out: &mut String,
        k: usize,
        parent: Option<usize>,
        depth: usize,
        o: &DotOptions,
    ) {
        if o.max_depth.is_none_or(|m| depth <= m) {
            let label = self
                .node_lines(k, o.precision, o.impurity, o.class_names)
                .join("\\n")
                .replace('"', "\\\"");
            let _ = write!(out, "{k} [label=\"{label}\"");
            if o.filled {
                let _ = write!(out, ", fillcolor=\"{}\"", self.fill_hex(k));
            }
            out.push_str("] ;\n");
            if let Some(p) = parent {
                let _ = write!(out, "{p} -> {k}");
                if p == 0 {
                    if k == 1 {
                        out.push_str(" [labeldistance=2.5, labelangle=45, headlabel=\"True\"]");
                    } else {
                        out.push_str(" [labeldistance=2.5, labelangle=-45, headlabel=\"False\"]");
                    }
                }
                out.push_str(" ;\n");
            }
            if !self.tree.is_leaf(k) {
                self.dot_rec(
                    out,
                    self.tree.children_left[k] as usize,
                    Some(k),
                    depth + 1,
                    o,
                );
                self.dot_rec(
                    out,
                    self.tree.children_right[k] as usize,
                    Some(k),
                    depth + 1,
                    o,
                );
            }
        } else {
            let _ = write!(out, "{k} [label=\"(...)\"");
            if o.filled {
                out.push_str(", fillcolor=\"#C0C0C0\"");
            }
            out.push_str("] ;\n");
            if let Some(p) = parent {
                let _ = writeln!(out, "{p} -> {k} ;");
            }
        }
    }

    fn diagram(&self, max_depth: Option<usize>) -> Vec<DiagramBox> {
        let mut out = Vec::new();
        self.diagram_rec(&mut out, 0, 0, max_depth);
        out
    }

    fn diagram_rec(
        &self,
        out: &mut Vec<DiagramBox>,
        k: usize,
        depth: usize,
        max_depth: Option<usize>,
    ) -> usize {
        let id = out.len();
        if max_depth.is_some_and(|m| depth > m) {
            out.push(DiagramBox {
                lines: vec!["(...)".into()],
                children: None,
                color_class: None,
                purity: 0.0,
            });
            return id;
        }
        let (color_class, purity) = self.fill(k);
        out.push(DiagramBox {
            lines: self.node_lines(k, 3, true, true),
            children: None,
            color_class,
            purity,
        });
        if !self.tree.is_leaf(k) {
            let l = self.diagram_rec(
                out,
                self.tree.children_left[k] as usize,
                depth + 1,
                max_depth,
            );
            let r = self.diagram_rec(
                out,
                self.tree.children_right[k] as usize,
                depth + 1,
                max_depth,
            );
            out[id].children = Some((l, r));
        }
        id
    }
}

macro_rules! exporters {
    ($t:ty) => {
        impl $t {
            fn view(&self) -> View<'_> {
                View {
                    tree: self.tree(),
                    features: self.feature_names(),
                    classes: self.class_names_opt(),
                    criterion: self.criterion_name(),
                }
            }
            /// The tree as text, laid out like scikit-learn's `export_text`.
            pub fn export_text(&self, options: &TextOptions) -> String {
                self.view().text(options)
            }
            /// The tree in Graphviz DOT, laid out like scikit-learn's `export_graphviz`.
            pub fn export_graphviz(&self, options: &DotOptions) -> String {
                self.view().dot(options)
            }
            /// The boxes of a `plot_tree`-style diagram in preorder (index 0 is the root); nodes
            /// deeper than `max_depth` become one "(...)" box.
            pub fn diagram(&self, max_depth: Option<usize>) -> Vec<DiagramBox> {
                self.view().diagram(max_depth)
            }
        }
    };
}

exporters!(DecisionTreeClassifier);
exporters!(DecisionTreeRegressor);
