//! Decision-tree diagrams in the style of scikit-learn's `plot_tree`.
//!
//! The layout is tidy and top-down: leaves sit in equally spaced slots from left to right (in
//! the order a left-first walk meets them), every parent is centred over its two children, all
//! nodes of one depth share a row, and the slot width is the smallest that keeps every pair of
//! neighbouring boxes in a row apart.

use std::path::Path;

use plotters::prelude::*;

use crate::render::{centered_text, non_empty, text_size, tint, write_png};
use crate::PlotError;

/// One box of a [`TreeDiagram`].
#[derive(Clone, Debug, Default)]
pub struct DiagramNode {
    /// Text lines, top to bottom, e.g. `"petal length (cm) <= 2.45"`, `"gini = 0.667"`,
    /// `"samples = 120"`, `"value = [40, 41, 39]"`, `"class = versicolor"`.
    pub lines: Vec<String>,
    /// Indices of the (left, right) children, or `None` for a leaf. The left child is where the
    /// split's test is true.
    pub children: Option<(usize, usize)>,
    /// The node's majority class, picking its colour; `None` (regression) uses one colour.
    pub color_class: Option<usize>,
    /// How strongly to shade the box, 0 (white) to 1 (the full class colour).
    pub purity: f64,
}

/// A binary tree to draw; node 0 is the root.
#[derive(Clone, Debug, Default)]
pub struct TreeDiagram {
    /// The nodes; every node except the root is the child of exactly one node.
    pub nodes: Vec<DiagramNode>,
    /// Number of class colours (the number of classes); `color_class` must be below it.
    pub n_colors: usize,
    /// Chart title (may be empty).
    pub title: String,
}

/// scikit-learn's `_color_brew`: `n` colours of equally spaced hue (saturation 0.75, value 0.9),
/// starting at orange, so kiln's tree pictures colour classes as scikit-learn does.
pub(crate) fn color_brew(n: usize) -> Vec<RGBColor> {
    let (s, l) = (0.75, 0.9);
    let c = s * l;
    let m = l - c;
    let step = 360.0 / n.max(1) as f64;
    (0..n)
        .map(|i| {
            // numpy: np.arange(25, 385, 360 / n).astype(int)
            let h = (25.0 + i as f64 * step).trunc();
            let h_bar = h / 60.0;
            let x = c * (1.0 - ((h_bar % 2.0) - 1.0).abs());
            let (r, g, b) = match h_bar as u32 {
                0 | 6 => (c, x, 0.0),
                1 => (x, c, 0.0),
                2 => (0.0, c, x),
                3 => (0.0, x, c),
                4 => (x, 0.0, c),
                _ => (c, 0.0, x),
            };
            let to = |v: f64| (255.0 * (v + m)) as u8;
            RGBColor(to(r), to(g), to(b))
        })
        .collect()
}

/// Where a box goes: its left, top, width and height in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Placed {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Placed {
    fn centre_x(&self) -> f64 {
        self.x + self.w / 2.0
    }
}

/// Positions of every box and the size of the whole picture.
#[derive(Clone, Debug)]
pub(crate) struct TreeLayout {
    pub boxes: Vec<Placed>,
    pub width: f64,
    pub height: f64,
}

/// Lays out a validated tree (see [`check_tree`]) whose node `i` has box size `sizes[i]`
/// (width, height), `gap` pixels apart horizontally and vertically, `margin` pixels from the
/// picture's edge (and `top` pixels from its top).
pub(crate) fn tidy_layout(
    children: &[Option<(usize, usize)>],
    sizes: &[(f64, f64)],
    (h_gap, v_gap): (f64, f64),
    margin: f64,
    top: f64,
) -> TreeLayout {
    let n = children.len();
    // Pre-order walk, left child first: depths, and leaf slots in left-to-right order.
    let mut depth = vec![0usize; n];
    let mut slot = vec![0.0f64; n];
    let mut preorder = Vec::with_capacity(n);
    let mut stack = vec![0usize];
    let mut next_leaf = 0.0;
    while let Some(v) = stack.pop() {
        preorder.push(v);
        match children[v] {
            Some((l, r)) => {
                depth[l] = depth[v] + 1;
                depth[r] = depth[v] + 1;
                stack.push(r);
                stack.push(l);
            }
            None => {
                slot[v] = next_leaf;
                next_leaf += 1.0;
            }
        }
    }
    // Parents centred over children: children come after their parent in pre-order.
    for &v in preorder.iter().rev() {
        if let Some((l, r)) = children[v] {
            slot[v] = (slot[l] + slot[r]) / 2.0;
        }
    }
    let max_depth = depth.iter().copied().max().unwrap_or(0);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); max_depth + 1];
    for &v in &preorder {
        rows[depth[v]].push(v);
    }
    // Slot width: neighbours in a row must be at least h_gap apart. Neighbouring nodes of a row
    // are at least half a slot apart, so the division is safe.
    let mut slot_w: f64 = 1.0;
    for row in &mut rows {
        row.sort_by(|&a, &b| slot[a].total_cmp(&slot[b]));
        for pair in row.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let need = (sizes[a].0 + sizes[b].0) / 2.0 + h_gap;
            slot_w = slot_w.max(need / (slot[b] - slot[a]));
        }
    }
    let row_h: Vec<f64> = rows
        .iter()
        .map(|row| row.iter().map(|&v| sizes[v].1).fold(0.0, f64::max))
        .collect();
    let mut row_top = Vec::with_capacity(rows.len());
    let mut y = top;
    for h in &row_h {
        row_top.push(y);
        y += h + v_gap;
    }
    let height = y - v_gap + margin;
    let left = (0..n)
        .map(|v| slot[v] * slot_w - sizes[v].0 / 2.0)
        .fold(f64::INFINITY, f64::min);
    let shift = margin - left;
    let boxes: Vec<Placed> = (0..n)
        .map(|v| Placed {
            x: slot[v] * slot_w - sizes[v].0 / 2.0 + shift,
            y: row_top[depth[v]],
            w: sizes[v].0,
            h: sizes[v].1,
        })
        .collect();
    let width = boxes.iter().map(|b| b.x + b.w).fold(0.0, f64::max) + margin;
    TreeLayout {
        boxes,
        width,
        height,
    }
}

/// Centre of the "True" (`left`) or "False" label of the edge from `parent` to `child`: on the
/// outer side of the edge, as close to the parent as it can be without touching its box.
fn edge_label_at(parent: &Placed, child: &Placed, text_w: u32, left: bool) -> (f64, f64) {
    let from = (parent.centre_x(), parent.y + parent.h);
    let to = (child.centre_x(), child.y);
    let (ux, uy) = (to.0 - from.0, to.1 - from.1);
    let len = (ux * ux + uy * uy).sqrt().max(1.0);
    let (ux, uy) = (ux / len, uy / len);
    // Outward normal: up-left of a left edge, up-right of a right edge.
    let (nx, ny) = if left { (-uy, ux) } else { (uy, -ux) };
    let (nx, ny) = if ny > 0.0 { (-nx, -ny) } else { (nx, ny) };
    let (hw, hh) = (
        f64::from(text_w) / 2.0 + 3.0,
        f64::from(FONT_SIZE) / 2.0 + 3.0,
    );
    let d = nx.abs() * hw + ny.abs() * hh;
    let clear_of_parent = |(cx, cy): (f64, f64)| {
        cx + hw < parent.x || cx - hw > parent.x + parent.w || cy - hh > parent.y + parent.h
    };
    let mut at = (from.0 + nx * d, from.1 + ny * d);
    let mut s = 0.0;
    while s < 0.6 * len && !clear_of_parent(at) {
        s += 2.0;
        at = (from.0 + ux * s + nx * d, from.1 + uy * s + ny * d);
    }
    at
}

/// Checks the tree's shape: node 0 is the root, child indices exist, no node is its own
/// descendant or has two parents, and every node hangs below the root.
pub(crate) fn check_tree(children: &[Option<(usize, usize)>]) -> Result<(), PlotError> {
    let n = children.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    for (v, ch) in children.iter().enumerate() {
        let Some((l, r)) = *ch else { continue };
        for c in [l, r] {
            if c >= n {
                return Err(PlotError::Invalid {
                    what: format!("nodes[{v}].children"),
                    expected: format!("node indices below {n}"),
                    got: format!("({l}, {r})"),
                });
            }
            if c == 0 {
                return Err(PlotError::Invalid {
                    what: format!("nodes[{v}].children"),
                    expected: "children other than node 0, the root".into(),
                    got: format!("({l}, {r})"),
                });
            }
            if let Some(p) = parent[c] {
                return Err(PlotError::Invalid {
                    what: format!("nodes[{c}]"),
                    expected: "exactly one parent".into(),
                    got: format!("parents {p} and {v}"),
                });
            }
            parent[c] = Some(v);
        }
    }
    // With one parent each, every node reachable from the root is visited once.
    let mut seen = vec![false; n];
    let mut stack = vec![0usize];
    while let Some(v) = stack.pop() {
        seen[v] = true;
        if let Some((l, r)) = children[v] {
            stack.push(l);
            stack.push(r);
        }
    }
    if let Some(v) = seen.iter().position(|&s| !s) {
        return Err(PlotError::Invalid {
            what: format!("nodes[{v}]"),
            expected: "a node below the root (node 0)".into(),
            got: "a node not reachable from the root".into(),
        });
    }
    Ok(())
}

const FONT_SIZE: u32 = 14;
const LINE_H: f64 = 18.0;
const PAD_X: f64 = 10.0;
const PAD_Y: f64 = 7.0;
const TITLE: u32 = 22;

/// Draws the tree like scikit-learn's `plot_tree`: a box per node holding its text lines, filled
/// with its class colour shaded by purity, edges from each parent to its children, and "True"
/// / "False" on the root's left / right edges. The picture grows with the number of leaves and
/// the depth so that boxes never overlap.
///
/// # Errors
/// No nodes, a malformed tree (see [`DiagramNode::children`]), a `color_class` not below
/// `n_colors`, a purity outside 0..=1, a picture over [`MAX_SIDE`](crate::MAX_SIDE), or a failed
/// write.
pub fn tree_diagram(path: impl AsRef<Path>, chart: &TreeDiagram) -> Result<(), PlotError> {
    non_empty("nodes", &chart.nodes)?;
    let children: Vec<_> = chart.nodes.iter().map(|n| n.children).collect();
    check_tree(&children)?;
    for (i, node) in chart.nodes.iter().enumerate() {
        if let Some(c) = node.color_class {
            if c >= chart.n_colors {
                return Err(PlotError::Invalid {
                    what: format!("nodes[{i}].color_class"),
                    expected: format!("a class below n_colors = {}", chart.n_colors),
                    got: c.to_string(),
                });
            }
        }
        if !(0.0..=1.0).contains(&node.purity) {
            return Err(PlotError::Invalid {
                what: format!("nodes[{i}].purity"),
                expected: "a number from 0 to 1".into(),
                got: node.purity.to_string(),
            });
        }
    }
    let mut sizes = Vec::with_capacity(chart.nodes.len());
    for node in &chart.nodes {
        let mut w: u32 = 0;
        for line in &node.lines {
            w = w.max(text_size(line, FONT_SIZE)?.0);
        }
        let lines = node.lines.len().max(1) as f64;
        sizes.push((f64::from(w) + 2.0 * PAD_X, lines * LINE_H + 2.0 * PAD_Y));
    }
    let top = if chart.title.is_empty() {
        20.0
    } else {
        20.0 + f64::from(TITLE) + 22.0
    };
    let layout = tidy_layout(&children, &sizes, (16.0, 48.0), 20.0, top);
    let title_w = f64::from(text_size(&chart.title, TITLE)?.0) + 40.0;
    let width = layout.width.max(title_w).ceil() as u64;
    let height = layout.height.ceil() as u64;
    // Centre the tree when the title is wider than it.
    let dx = ((width as f64 - layout.width) / 2.0).max(0.0);
    let colors = color_brew(chart.n_colors.max(1));
    let regression = color_brew(1)[0];

    write_png(path.as_ref(), width, height, |root| {
        if !chart.title.is_empty() {
            let at = (width as i32 / 2, 20 + TITLE as i32 / 2);
            centered_text(root, &chart.title, TITLE, BLACK, at)?;
        }
        let px = |v: f64| v.round() as i32;
        let edge = RGBColor(60, 60, 60);
        for (v, node) in chart.nodes.iter().enumerate() {
            let Some((l, r)) = node.children else {
                continue;
            };
            let p = layout.boxes[v];
            let from = (px(p.centre_x() + dx), px(p.y + p.h));
            for (k, c) in [l, r].into_iter().enumerate() {
                let b = layout.boxes[c];
                let to = (px(b.centre_x() + dx), px(b.y));
                root.draw(&PathElement::new(vec![from, to], edge.stroke_width(1)))?;
                if v == 0 {
                    let label = if k == 0 { "True" } else { "False" };
                    let at = edge_label_at(&p, &b, text_size(label, FONT_SIZE)?.0, k == 0);
                    let at = (px(at.0 + dx), px(at.1));
                    centered_text(root, label, FONT_SIZE, BLACK, at)?;
                }
            }
        }
        for (v, node) in chart.nodes.iter().enumerate() {
            let b = layout.boxes[v];
            let base = node.color_class.map_or(regression, |c| colors[c]);
            let fill = tint(base, node.purity);
            let (x0, y0) = (px(b.x + dx), px(b.y));
            let (x1, y1) = (px(b.x + dx + b.w), px(b.y + b.h));
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill.filled()))?;
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;
            let cx = px(b.centre_x() + dx);
            for (k, line) in node.lines.iter().enumerate() {
                let cy = px(b.y + PAD_Y + LINE_H * (k as f64 + 0.5));
                centered_text(root, line, FONT_SIZE, BLACK, (cx, cy))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full binary tree of the given depth in breadth-first numbering.
    fn full_tree(depth: u32) -> Vec<Option<(usize, usize)>> {
        let n = (1usize << (depth + 1)) - 1;
        (0..n)
            .map(|i| (2 * i + 2 < n).then_some((2 * i + 1, 2 * i + 2)))
            .collect()
    }

    fn overlap(a: &Placed, b: &Placed) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    fn check_layout(children: &[Option<(usize, usize)>], sizes: &[(f64, f64)]) -> TreeLayout {
        let lay = tidy_layout(children, sizes, (16.0, 40.0), 20.0, 20.0);
        let b = &lay.boxes;
        for i in 0..b.len() {
            assert!(b[i].x >= 20.0 - 1e-9 && b[i].x + b[i].w <= lay.width - 20.0 + 1e-9);
            assert!(b[i].y >= 20.0 && b[i].y + b[i].h <= lay.height - 20.0 + 1e-9);
            for j in 0..i {
                assert!(
                    !overlap(&b[i], &b[j]),
                    "boxes {i} and {j} overlap: {:?} {:?}",
                    b[i],
                    b[j]
                );
            }
            if let Some((l, r)) = children[i] {
                // Children below their parent, left child left of the right one, parent centred.
                assert!(b[l].y > b[i].y + b[i].h && b[r].y > b[i].y + b[i].h);
                assert!(b[l].centre_x() < b[r].centre_x());
                let mid = (b[l].centre_x() + b[r].centre_x()) / 2.0;
                assert!((b[i].centre_x() - mid).abs() < 1e-9, "node {i} not centred");
            }
        }
        lay
    }

    #[test]
    fn full_depth_5_tree_has_no_overlaps_and_even_leaves() {
        let children = full_tree(5);
        // Box widths vary as real node texts do.
        let sizes: Vec<(f64, f64)> = (0..children.len())
            .map(|i| {
                (
                    120.0 + (i * 37 % 90) as f64,
                    if children[i].is_some() { 100.0 } else { 82.0 },
                )
            })
            .collect();
        let lay = check_layout(&children, &sizes);
        let mut leaf_x: Vec<f64> = (0..children.len())
            .filter(|&i| children[i].is_none())
            .map(|i| lay.boxes[i].centre_x())
            .collect();
        assert_eq!(leaf_x.len(), 32);
        leaf_x.sort_by(f64::total_cmp);
        let step = leaf_x[1] - leaf_x[0];
        for w in leaf_x.windows(2) {
            assert!(
                (w[1] - w[0] - step).abs() < 1e-9,
                "leaves not evenly spread"
            );
        }
        // All depth-5 boxes share one row.
        let ys: Vec<f64> = (31..63).map(|i| lay.boxes[i].y).collect();
        assert!(ys.iter().all(|&y| y == ys[0]));
    }

    #[test]
    fn lopsided_tree_with_wide_inner_boxes_has_no_overlaps() {
        // A zig-zag chain whose inner nodes are far wider than the leaves: node d's children are
        // 2d+1 and 2d+2, and the chain continues alternately left and right.
        let depth = 6;
        let mut ch: Vec<Option<(usize, usize)>> = vec![None; 2 * depth + 1];
        let mut inner = 0;
        for d in 0..depth {
            let (l, r) = (2 * d + 1, 2 * d + 2);
            ch[inner] = Some((l, r));
            inner = if d % 2 == 0 { l } else { r };
        }
        let sizes: Vec<(f64, f64)> = (0..ch.len())
            .map(|i| {
                if ch[i].is_some() {
                    (300.0, 90.0)
                } else {
                    (60.0, 60.0)
                }
            })
            .collect();
        check_layout(&ch, &sizes);
    }

    #[test]
    fn single_node_tree() {
        let lay = check_layout(&[None], &[(100.0, 50.0)]);
        assert_eq!(lay.boxes[0].x, 20.0);
        assert_eq!(lay.width, 140.0);
    }

    #[test]
    fn malformed_trees_are_rejected() {
        assert!(check_tree(&full_tree(3)).is_ok());
        assert!(
            check_tree(&[Some((1, 5)), None, None]).is_err(),
            "child out of range"
        );
        assert!(
            check_tree(&[Some((1, 2)), Some((0, 2)), None]).is_err(),
            "root as child"
        );
        assert!(
            check_tree(&[Some((1, 2)), Some((3, 2)), None, None]).is_err(),
            "two parents"
        );
        assert!(
            check_tree(&[Some((1, 2)), None, None, None]).is_err(),
            "unreachable"
        );
        assert!(
            check_tree(&[None, Some((2, 3)), Some((1, 3)), None]).is_err(),
            "cycle"
        );
    }

    #[test]
    fn colours_match_scikit_learn() {
        // python -c "from sklearn.tree._export import _color_brew; print(_color_brew(3), _color_brew(10))"
        // (scikit-learn 1.9.1)
        let rgb = |v: Vec<RGBColor>| v.iter().map(|c| (c.0, c.1, c.2)).collect::<Vec<_>>();
        assert_eq!(
            rgb(color_brew(3)),
            [(229, 129, 57), (57, 229, 129), (129, 57, 229)]
        );
        assert_eq!(
            rgb(color_brew(10)),
            [
                (229, 129, 57),
                (226, 229, 57),
                (123, 229, 57),
                (57, 229, 94),
                (57, 229, 197),
                (57, 157, 229),
                (60, 57, 229),
                (163, 57, 229),
                (229, 57, 192),
                (229, 57, 88)
            ]
        );
    }
}
