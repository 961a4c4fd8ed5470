//! A confusion matrix as a heatmap with the counts written in the cells.

use std::path::Path;

use plotters::prelude::*;

use crate::render::{centered_text, non_empty, text_size, truncate, vertical_text, write_png};
use crate::PlotError;

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, Default)]
pub struct ConfusionMatrixPlot {
    /// Chart title.
    pub title: String,
    /// Class names, in index order (names longer than 30 characters are shortened).
    pub classes: Vec<String>,
    /// `matrix[t][p]`: how many samples of true class `t` were predicted as class `p`; a square
    /// matrix with one row and column per class.
    pub matrix: Vec<Vec<usize>>,
}

const TITLE: u32 = 22;
const LABEL: u32 = 15;
const COUNT: u32 = 16;
const AXIS: u32 = 17;

/// matplotlib's "Blues" colormap, end points and middle, interpolated linearly.
fn blues(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 3] = [
        (247.0, 251.0, 255.0),
        (107.0, 174.0, 214.0),
        (8.0, 48.0, 107.0),
    ];
    let t = t.clamp(0.0, 1.0) * 2.0;
    let (a, b, f) = if t <= 1.0 {
        (STOPS[0], STOPS[1], t)
    } else {
        (STOPS[1], STOPS[2], t - 1.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Draws the matrix as a heatmap: rows are true classes (labelled on the left, axis "true"),
/// columns predicted classes (labelled below, axis "predicted"), darker cells hold more samples,
/// each cell shows its count, and a colour bar on the right gives the scale.
///
/// # Errors
/// No classes, a matrix that is not square with one row and column per class, or a failed write.
pub fn confusion_matrix(
    path: impl AsRef<Path>,
    chart: &ConfusionMatrixPlot,
) -> Result<(), PlotError> {
    non_empty("classes", &chart.classes)?;
    let k = chart.classes.len();
    if chart.matrix.len() != k {
        return Err(PlotError::LengthMismatch {
            left: "matrix".into(),
            left_len: chart.matrix.len(),
            right: "classes".into(),
            right_len: k,
        });
    }
    for (i, row) in chart.matrix.iter().enumerate() {
        if row.len() != k {
            return Err(PlotError::LengthMismatch {
                left: format!("matrix[{i}]"),
                left_len: row.len(),
                right: "classes".into(),
                right_len: k,
            });
        }
    }
    let names: Vec<String> = chart.classes.iter().map(|c| truncate(c, 30)).collect();
    let max_count = chart.matrix.iter().flatten().copied().max().unwrap_or(0);

    // Sizes, all from measured text.
    let mut name_w = 0;
    for n in &names {
        name_w = name_w.max(text_size(n, LABEL)?.0);
    }
    let count_w = text_size(&max_count.to_string(), COUNT)?.0;
    let cell = (count_w + 20)
        .max(56)
        .max(360 / k as u32)
        .min(140.max(count_w + 20));
    let rotate_cols = name_w + 8 > cell;
    let col_label_h = if rotate_cols { name_w } else { LABEL };
    let title_w = text_size(&chart.title, TITLE)?.0;

    let left = 20 + AXIS + 14 + name_w + 12;
    let top = 20 + TITLE + 24;
    let grid = cell * k as u32;
    let bar_x = left + grid + 30;
    let bar_w = 18;
    let right = bar_x + bar_w + 8 + count_w.max(text_size("0", LABEL)?.0) + 20;
    let width = u64::from(right.max(title_w + 40));
    let height = u64::from(top + grid + 10 + col_label_h + 16 + AXIS + 20);

    write_png(path.as_ref(), width, height, |root| {
        let (l, t, c) = (left as i32, top as i32, cell as i32);
        centered_text(
            root,
            &chart.title,
            TITLE,
            BLACK,
            (width as i32 / 2, 20 + TITLE as i32 / 2),
        )?;
        for (ti, row) in chart.matrix.iter().enumerate() {
            for (pi, &n) in row.iter().enumerate() {
                let frac = if max_count == 0 {
                    0.0
                } else {
                    n as f64 / max_count as f64
                };
                let (x0, y0) = (l + pi as i32 * c, t + ti as i32 * c);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + c, y0 + c)],
                    blues(frac).filled(),
                ))?;
                let ink = if frac > 0.5 { WHITE } else { BLACK };
                centered_text(root, &n.to_string(), COUNT, ink, (x0 + c / 2, y0 + c / 2))?;
            }
        }
        let g = grid as i32;
        root.draw(&Rectangle::new(
            [(l, t), (l + g, t + g)],
            BLACK.stroke_width(1),
        ))?;
        for (i, n) in names.iter().enumerate() {
            // Row labels, right-aligned against the matrix.
            let w = text_size(n, LABEL)?.0 as i32;
            centered_text(
                root,
                n,
                LABEL,
                BLACK,
                (l - 10 - w / 2, t + i as i32 * c + c / 2),
            )?;
            let cx = l + i as i32 * c + c / 2;
            if rotate_cols {
                vertical_text(root, n, LABEL, BLACK, (cx, t + g + 10 + w / 2))?;
            } else {
                centered_text(root, n, LABEL, BLACK, (cx, t + g + 10 + LABEL as i32 / 2))?;
            }
        }
        let below = t + g + 10 + col_label_h as i32 + 16 + AXIS as i32 / 2;
        centered_text(root, "predicted", AXIS, BLACK, (l + g / 2, below))?;
        vertical_text(root, "true", AXIS, BLACK, (20 + AXIS as i32 / 2, t + g / 2))?;

        // Colour bar: 0 at the bottom, the largest count at the top.
        let bx = bar_x as i32;
        for y in 0..g {
            let frac = 1.0 - f64::from(y) / f64::from((g - 1).max(1));
            root.draw(&PathElement::new(
                vec![(bx, t + y), (bx + bar_w as i32, t + y)],
                blues(frac).stroke_width(1),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bx, t), (bx + bar_w as i32, t + g)],
            BLACK.stroke_width(1),
        ))?;
        let tx = bx + bar_w as i32 + 8;
        let max_s = max_count.to_string();
        let mw = text_size(&max_s, LABEL)?.0 as i32;
        centered_text(root, &max_s, LABEL, BLACK, (tx + mw / 2, t + 6))?;
        let zw = text_size("0", LABEL)?.0 as i32;
        centered_text(root, "0", LABEL, BLACK, (tx + zw / 2, t + g - 6))?;
        Ok(())
    })
}
