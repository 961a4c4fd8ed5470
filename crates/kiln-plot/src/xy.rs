//! Charts on x/y axes: a fitted line over its data, predicted against actual, and curves.

use std::path::Path;

use plotters::coord::ranged1d::{
    AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged, ValueFormatter,
};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::render::{
    centered_text, class_color, draw_legend, finite, legend_width, non_empty, padded_range,
    same_len, text_style, vertical_text, write_png, Area, LegendEntry, Marker,
};
use crate::PlotError;

const WIDTH: u64 = 900;
const HEIGHT: u64 = 600;

/// Data points and a fitted line through them: the classic regression picture.
#[derive(Clone, Debug, Default)]
pub struct FittedLine {
    /// Chart title.
    pub title: String,
    /// Label of the x axis (the feature).
    pub x_label: String,
    /// Label of the y axis (the target).
    pub y_label: String,
    /// x of the data points.
    pub x: Vec<f64>,
    /// y of the data points; same length as `x`.
    pub y: Vec<f64>,
    /// x of points on the fitted line (drawn in order of x).
    pub line_x: Vec<f64>,
    /// y of points on the fitted line; same length as `line_x`.
    pub line_y: Vec<f64>,
}

/// Model predictions against the true targets, with the line y = x.
#[derive(Clone, Debug, Default)]
pub struct PredictedVsActual {
    /// Chart title.
    pub title: String,
    /// True targets (x axis).
    pub actual: Vec<f64>,
    /// Predictions (y axis); same length as `actual`.
    pub predicted: Vec<f64>,
}

/// One named curve of [`Curves`].
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend label, e.g. `"train loss"`.
    pub name: String,
    /// x values, e.g. epochs.
    pub x: Vec<f64>,
    /// y values; same length as `x`.
    pub y: Vec<f64>,
}

/// Several curves on shared axes, e.g. training and validation loss per epoch.
#[derive(Clone, Debug, Default)]
pub struct Curves {
    /// Chart title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The curves, one colour each.
    pub series: Vec<Series>,
    /// Logarithmic y axis; every y must then be positive.
    pub log_y: bool,
}

/// Checks a pair of coordinate vectors: non-empty, equal length, finite.
fn check_xy(x_name: &str, x: &[f64], y_name: &str, y: &[f64]) -> Result<(), PlotError> {
    non_empty(x_name, x)?;
    same_len(x_name, x, y_name, y)?;
    finite(x_name, x)?;
    finite(y_name, y)
}

/// Splits `root` into the plotting part and a legend panel on the right, draws the legend.
fn with_legend<'a>(root: &Area<'a>, entries: &[LegendEntry]) -> Result<Area<'a>, PlotError> {
    let lw = legend_width(entries)?;
    let (w, _) = root.dim_in_pixel();
    let (plot, side) = root.split_horizontally(w.saturating_sub(lw));
    draw_legend(&side, entries, (0, 60))?;
    Ok(plot)
}

/// Builds the axes, grid (unless `grid` is false), title and axis names shared by every x/y
/// chart, and returns the chart to draw the data on.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn axes<'a, 'b, Y>(
    area: &'a Area<'b>,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_range: (f64, f64),
    y_spec: Y,
    y_format: Option<&dyn Fn(&f64) -> String>,
    grid: bool,
) -> Result<
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y::CoordDescType>>,
    PlotError,
>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .margin_top(62)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(x_range.0..x_range.1, y_spec)?;
    let mut mesh = chart.configure_mesh();
    if let Some(f) = y_format {
        mesh.y_label_formatter(f);
    }
    if !grid {
        mesh.disable_mesh();
    }
    mesh.label_style(text_style(14))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    // Title and axis names, placed around the plotting area (in `area`'s pixels).
    let (ax, ay) = area.get_pixel_range();
    let (px, py) = chart.plotting_area().get_pixel_range();
    let mid_x = (px.start + px.end) / 2 - ax.start;
    let mid_y = (py.start + py.end) / 2 - ay.start;
    centered_text(area, title, TITLE, BLACK, (mid_x, 30))?;
    centered_text(area, x_label, AXIS, BLACK, (mid_x, ay.end - ay.start - 30))?;
    vertical_text(area, y_label, AXIS, BLACK, (32, mid_y))?;
    Ok(chart)
}

const TITLE: u32 = 22;
const AXIS: u32 = 17;

/// Draws `data` as points and `line` (sorted by x) as a line through them.
///
/// ```no_run
/// # fn main() -> Result<(), kiln_plot::PlotError> {
/// kiln_plot::fitted_line("fit.png", &kiln_plot::FittedLine {
///     title: "y = 2x + 1".into(),
///     x_label: "x".into(),
///     y_label: "y".into(),
///     x: vec![0.0, 1.0, 2.0],
///     y: vec![1.1, 2.9, 5.0],
///     line_x: vec![0.0, 2.0],
///     line_y: vec![1.0, 5.0],
/// })
/// # }
/// ```
///
/// # Errors
/// Empty `x` or `line_x`, mismatched lengths, non-finite values, or a failed write.
pub fn fitted_line(path: impl AsRef<Path>, chart: &FittedLine) -> Result<(), PlotError> {
    check_xy("x", &chart.x, "y", &chart.y)?;
    check_xy("line_x", &chart.line_x, "line_y", &chart.line_y)?;
    let x_range = padded_range("x", chart.x.iter().chain(&chart.line_x).copied())?;
    let y_range = padded_range("y", chart.y.iter().chain(&chart.line_y).copied())?;
    let mut line: Vec<(f64, f64)> = chart
        .line_x
        .iter()
        .copied()
        .zip(chart.line_y.iter().copied())
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (dot, fit) = (class_color(0), class_color(3));
    let legend = [
        LegendEntry {
            label: "data".into(),
            color: dot,
            marker: Marker::Dot,
        },
        LegendEntry {
            label: "fitted line".into(),
            color: fit,
            marker: Marker::Line,
        },
    ];
    write_png(path.as_ref(), WIDTH, HEIGHT, |root| {
        let plot = with_legend(root, &legend)?;
        let mut c = axes(
            &plot,
            &chart.title,
            &chart.x_label,
            &chart.y_label,
            x_range,
            y_range.0..y_range.1,
            None,
            true,
        )?;
        c.draw_series(
            chart
                .x
                .iter()
                .zip(&chart.y)
                .map(|(&x, &y)| Circle::new((x, y), 4, dot.mix(0.75).filled())),
        )?;
        c.draw_series(LineSeries::new(line, fit.stroke_width(3)))?;
        Ok(())
    })
}

/// Draws each (actual, predicted) pair as a point, with the dashed line y = x where a perfect
/// model's points would lie. Both axes share one range.
///
/// # Errors
/// Empty inputs, mismatched lengths, non-finite values, or a failed write.
pub fn predicted_vs_actual(
    path: impl AsRef<Path>,
    chart: &PredictedVsActual,
) -> Result<(), PlotError> {
    check_xy("actual", &chart.actual, "predicted", &chart.predicted)?;
    let range = padded_range(
        "actual and predicted",
        chart.actual.iter().chain(&chart.predicted).copied(),
    )?;
    let dot = class_color(0);
    let ideal = RGBColor(80, 80, 80);
    let legend = [
        LegendEntry {
            label: "predictions".into(),
            color: dot,
            marker: Marker::Dot,
        },
        LegendEntry {
            label: "y = x".into(),
            color: ideal,
            marker: Marker::Dashed,
        },
    ];
    write_png(path.as_ref(), 860, 700, |root| {
        let plot = with_legend(root, &legend)?;
        let mut c = axes(
            &plot,
            &chart.title,
            "actual",
            "predicted",
            range,
            range.0..range.1,
            None,
            true,
        )?;
        c.draw_series(DashedLineSeries::new(
            [(range.0, range.0), (range.1, range.1)],
            10,
            6,
            ideal.stroke_width(2),
        ))?;
        c.draw_series(
            chart
                .actual
                .iter()
                .zip(&chart.predicted)
                .map(|(&x, &y)| Circle::new((x, y), 4, dot.mix(0.7).filled())),
        )?;
        Ok(())
    })
}

/// Draws each series as a line in its own colour, with a legend of the series names.
/// With `log_y` the y axis is logarithmic (for losses spanning decades).
///
/// # Errors
/// No series, an empty series, mismatched lengths, non-finite values, a y <= 0 with `log_y`, or
/// a failed write.
pub fn curves(path: impl AsRef<Path>, chart: &Curves) -> Result<(), PlotError> {
    non_empty("series", &chart.series)?;
    for (i, s) in chart.series.iter().enumerate() {
        check_xy(
            &format!("series[{i}].x"),
            &s.x,
            &format!("series[{i}].y"),
            &s.y,
        )?;
        if chart.log_y {
            if let Some((j, &v)) = s.y.iter().enumerate().find(|(_, &v)| v <= 0.0) {
                return Err(PlotError::Invalid {
                    what: format!("series[{i}].y[{j}]"),
                    expected: "a positive value on a logarithmic axis".into(),
                    got: v.to_string(),
                });
            }
        }
    }
    let all = || chart.series.iter();
    let x_range = padded_range("series x", all().flat_map(|s| s.x.iter().copied()))?;
    let legend: Vec<LegendEntry> = all()
        .enumerate()
        .map(|(i, s)| LegendEntry {
            label: s.name.clone(),
            color: class_color(i),
            marker: Marker::Line,
        })
        .collect();
    write_png(path.as_ref(), WIDTH, HEIGHT, |root| {
        let plot = with_legend(root, &legend)?;
        if chart.log_y {
            // Draw log10(y) on a linear axis with ticks at 1, 2 and 5 times powers of ten.
            let (lo, hi) = all()
                .flat_map(|s| s.y.iter().copied())
                .fold((f64::INFINITY, 0.0_f64), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = (lo.log10(), hi.log10());
            let pad = ((hi - lo) * 0.05).max(0.05);
            let (lo, hi) = (lo - pad, hi + pad);
            let logged: Vec<Series> = all()
                .map(|s| Series {
                    name: s.name.clone(),
                    x: s.x.clone(),
                    y: s.y.iter().map(|v| v.log10()).collect(),
                })
                .collect();
            let format = |v: &f64| format_sig(10f64.powf(*v));
            let mut c = axes(
                &plot,
                &chart.title,
                &chart.x_label,
                &chart.y_label,
                x_range,
                LogAxis {
                    inner: (lo..hi).into(),
                    ticks: log_ticks(lo, hi),
                },
                Some(&format),
                true,
            )?;
            draw_lines(&mut c, &logged)
        } else {
            let y_range = padded_range("series y", all().flat_map(|s| s.y.iter().copied()))?;
            let mut c = axes(
                &plot,
                &chart.title,
                &chart.x_label,
                &chart.y_label,
                x_range,
                y_range.0..y_range.1,
                None,
                true,
            )?;
            draw_lines(&mut c, &chart.series)
        }
    })
}

/// Draws each series as a line (and a dot when it has a single point).
fn draw_lines<Y>(
    c: &mut ChartContext<BitMapBackend, Cartesian2d<RangedCoordf64, Y>>,
    series: &[Series],
) -> Result<(), PlotError>
where
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = class_color(i);
        let pts: Vec<(f64, f64)> = s.x.iter().copied().zip(s.y.iter().copied()).collect();
        if pts.len() == 1 {
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        } else {
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
        }
    }
    Ok(())
}

/// A linear axis over log10 values whose only ticks are `ticks` (no light grid lines); the
/// labels come from a formatter that undoes the log.
struct LogAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// Tick positions (as log10 values) for a log axis spanning `10^lo..10^hi`: 1, 2 and 5 times each
/// power of ten over up to four decades, else powers of ten (every k-th one, at most about ten).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.floor() as i32, hi.ceil() as i32);
    let mantissas: &[f64] = if hi - lo <= 4.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let step = ((last - first) / 10).max(1) as usize;
    let mut ticks = Vec::new();
    for d in (first..=last).step_by(step) {
        for m in mantissas {
            let t = (m * 10f64.powi(d)).log10();
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
    }
    ticks
}

/// A tick label with at most three significant digits and no float noise ("0.2", "5e-4").
fn format_sig(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-3..=5).contains(&mag) {
        let s = format!("{v:.2e}");
        // 5.00e-4 -> 5e-4
        return match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            None => s,
        };
    }
    let decimals = (2 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_cover_range_at_1_2_5() {
        let t: Vec<f64> = log_ticks(0.02f64.log10(), 3.0f64.log10())
            .iter()
            .map(|v| 10f64.powf(*v))
            .collect();
        let want = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        for (a, b) in t.iter().zip(want) {
            assert!((a - b).abs() < 1e-12 * b, "{t:?}");
        }
        // Many decades: powers of ten only, thinned to about ten.
        assert_eq!(log_ticks(-6.0, 2.0).len(), 9);
        let wide = log_ticks(-300.0, 300.0);
        assert!(wide.len() <= 11 && wide.len() >= 5, "{wide:?}");
    }

    #[test]
    fn format_sig_has_no_float_noise() {
        assert_eq!(format_sig(0.6000000000000001), "0.6");
        assert_eq!(format_sig(20.0), "20");
        assert_eq!(format_sig(0.05), "0.05");
        assert_eq!(format_sig(1234.0), "1234");
        assert_eq!(format_sig(5e-4), "5e-4");
        assert_eq!(format_sig(2e7), "2e7");
    }
}
