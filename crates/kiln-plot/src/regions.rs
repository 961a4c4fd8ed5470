//! A classifier's decision regions over two features, with contour lines of its decision value.

use std::path::Path;

use plotters::prelude::*;

use crate::contour::{join_segments, marching_squares};
use crate::render::{
    check_range, class_color, draw_legend, finite, legend_width, non_empty, same_len, tint,
    write_png, LegendEntry, Marker,
};
use crate::xy::axes;
use crate::PlotError;

/// What a classifier predicts over a rectangle of two features, plus the data.
///
/// The rectangle `x_range` x `y_range` is cut into `grid.len()` rows (along y, row 0 at the
/// bottom) of `grid[0].len()` cells (along x, column 0 at the left).
#[derive(Clone, Debug, Default)]
pub struct DecisionRegions {
    /// Chart title.
    pub title: String,
    /// Label of the x axis (the first feature).
    pub x_label: String,
    /// Label of the y axis (the second feature).
    pub y_label: String,
    /// Class names, in index order; they colour the regions and points and fill the legend.
    pub classes: Vec<String>,
    /// `(low, high)` of the x axis.
    pub x_range: (f64, f64),
    /// `(low, high)` of the y axis.
    pub y_range: (f64, f64),
    /// `grid[row][col]`: predicted class of each cell; rows along y from the bottom.
    pub grid: Vec<Vec<usize>>,
    /// Optional decision value per cell (same shape as `grid`), e.g. a binary SVM's; contour
    /// lines are drawn at 0 (solid) and at -1 and +1 (dashed margins).
    pub decision: Option<Vec<Vec<f64>>>,
    /// x of the data points.
    pub points_x: Vec<f64>,
    /// y of the data points.
    pub points_y: Vec<f64>,
    /// Class of each data point.
    pub point_class: Vec<usize>,
    /// Points to circle (e.g. support vectors): empty for none, or one flag per point.
    pub highlight: Vec<bool>,
    /// Legend entry of the circled points (e.g. "support vectors"); empty: "highlighted".
    pub highlight_label: String,
}

/// Checks the grid is non-empty and rectangular; returns its (rows, columns).
fn grid_shape<T>(what: &str, grid: &[Vec<T>]) -> Result<(usize, usize), PlotError> {
    non_empty(what, grid)?;
    let cols = grid[0].len();
    non_empty(&format!("{what}[0]"), &grid[0])?;
    for (i, row) in grid.iter().enumerate() {
        same_len(
            &format!("{what}[{i}]"),
            row,
            &format!("{what}[0]"),
            &grid[0],
        )?;
    }
    Ok((grid.len(), cols))
}

/// Errors on the first class index that is not below `n`.
fn check_classes<'a>(
    what: &str,
    classes: impl Iterator<Item = &'a usize>,
    n: usize,
) -> Result<(), PlotError> {
    if let Some((i, c)) = classes.enumerate().find(|(_, &c)| c >= n) {
        return Err(PlotError::Invalid {
            what: format!("{what} (element {i})"),
            expected: format!("a class index below {n} (the number of classes)"),
            got: c.to_string(),
        });
    }
    Ok(())
}

/// Draws the regions in light class colours, the decision contours if given, the points in
/// their class colours with a black edge, circles around highlighted points, and a legend.
///
/// # Errors
/// No classes; an empty, ragged or out-of-range grid; a decision grid of another shape or with
/// non-finite values; bad ranges; point vectors of different lengths, non-finite or with class
/// indices out of range; or a failed write.
pub fn decision_regions(path: impl AsRef<Path>, chart: &DecisionRegions) -> Result<(), PlotError> {
    non_empty("classes", &chart.classes)?;
    let k = chart.classes.len();
    check_range("x_range", chart.x_range)?;
    check_range("y_range", chart.y_range)?;
    let (rows, cols) = grid_shape("grid", &chart.grid)?;
    check_classes("grid", chart.grid.iter().flatten(), k)?;
    if let Some(d) = &chart.decision {
        let shape = grid_shape("decision", d)?;
        if shape != (rows, cols) {
            return Err(PlotError::Invalid {
                what: "decision".into(),
                expected: format!("the shape of grid, {rows} rows x {cols} columns"),
                got: format!("{} rows x {} columns", shape.0, shape.1),
            });
        }
        for (i, row) in d.iter().enumerate() {
            finite(&format!("decision[{i}]"), row)?;
        }
    }
    same_len("points_x", &chart.points_x, "points_y", &chart.points_y)?;
    same_len(
        "points_x",
        &chart.points_x,
        "point_class",
        &chart.point_class,
    )?;
    if !chart.highlight.is_empty() {
        same_len("highlight", &chart.highlight, "points_x", &chart.points_x)?;
    }
    finite("points_x", &chart.points_x)?;
    finite("points_y", &chart.points_y)?;
    check_classes("point_class", chart.point_class.iter(), k)?;

    let mut legend: Vec<LegendEntry> = chart
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| LegendEntry {
            label: c.clone(),
            color: class_color(i),
            marker: Marker::Dot,
        })
        .collect();
    if chart.decision.is_some() {
        legend.push(LegendEntry {
            label: "decision = 0".into(),
            color: BLACK,
            marker: Marker::Line,
        });
        legend.push(LegendEntry {
            label: "decision = ±1".into(),
            color: BLACK,
            marker: Marker::Dashed,
        });
    }
    if chart.highlight.iter().any(|&h| h) {
        legend.push(LegendEntry {
            label: if chart.highlight_label.is_empty() {
                "highlighted".into()
            } else {
                chart.highlight_label.clone()
            },
            color: BLACK,
            marker: Marker::Ring,
        });
    }
    let lw = legend_width(&legend)?;
    let (x0, x1) = chart.x_range;
    let (y0, y1) = chart.y_range;
    let (dx, dy) = ((x1 - x0) / cols as f64, (y1 - y0) / rows as f64);

    write_png(path.as_ref(), 820 + u64::from(lw), 760, |root| {
        let (w, _) = root.dim_in_pixel();
        let (plot, side) = root.split_horizontally(w - lw);
        draw_legend(&side, &legend, (0, 60))?;
        let mut c = axes(
            &plot,
            &chart.title,
            &chart.x_label,
            &chart.y_label,
            chart.x_range,
            y0..y1,
            None,
            false,
        )?;

        let fills: Vec<RGBColor> = (0..k).map(|i| tint(class_color(i), 0.28)).collect();
        c.draw_series(chart.grid.iter().enumerate().flat_map(|(i, row)| {
            let fills = &fills;
            row.iter().enumerate().map(move |(j, &cls)| {
                let (xa, ya) = (x0 + j as f64 * dx, y0 + i as f64 * dy);
                Rectangle::new([(xa, ya), (xa + dx, ya + dy)], fills[cls].filled())
            })
        }))?;

        if let Some(d) = &chart.decision {
            let to_data = |p: (f64, f64)| (x0 + (p.0 + 0.5) * dx, y0 + (p.1 + 0.5) * dy);
            for level in [-1.0, 0.0, 1.0] {
                for line in join_segments(&marching_squares(d, level)) {
                    let pts: Vec<(f64, f64)> = line.into_iter().map(to_data).collect();
                    if level == 0.0 {
                        c.draw_series(LineSeries::new(pts, BLACK.stroke_width(2)))?;
                    } else {
                        c.draw_series(DashedLineSeries::new(
                            pts,
                            8,
                            5,
                            RGBColor(40, 40, 40).stroke_width(1),
                        ))?;
                    }
                }
            }
        }

        let pts = || {
            chart
                .points_x
                .iter()
                .zip(&chart.points_y)
                .zip(&chart.point_class)
        };
        c.draw_series(
            pts().map(|((&x, &y), &cls)| Circle::new((x, y), 5, class_color(cls).filled())),
        )?;
        c.draw_series(pts().map(|((&x, &y), _)| Circle::new((x, y), 5, BLACK.stroke_width(1))))?;
        c.draw_series(
            pts()
                .zip(chart.highlight.iter().chain(std::iter::repeat(&false)))
                .filter(|(_, &h)| h)
                .map(|(((&x, &y), _), _)| Circle::new((x, y), 10, BLACK.stroke_width(2))),
        )?;
        Ok(())
    })
}
