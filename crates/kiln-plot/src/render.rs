//! Shared machinery: the embedded font, atomic PNG writing, colours, text, legends and input checks.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::PlotError;

/// The largest width or height, in pixels, of any chart this crate writes.
pub const MAX_SIDE: u32 = 16_384;

/// The family name every text style uses; the embedded DejaVu Sans is registered under it.
pub(crate) const FONT: &str = "sans-serif";

/// DejaVu Sans (Bitstream Vera licence, see `assets/LICENSE-DejaVu.txt`), so charts render the
/// same on a machine without any system fonts.
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The drawing area every chart draws on.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers the embedded font with plotters once per process.
pub(crate) fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Draws a `width` x `height` PNG with `draw` and writes it to `path` atomically: the picture goes
/// to a temporary file in the same folder, which is renamed over `path` only once complete.
pub(crate) fn write_png(
    path: &Path,
    width: u64,
    height: u64,
    draw: impl FnOnce(&Area) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    if width == 0 || height == 0 || width > u64::from(MAX_SIDE) || height > u64::from(MAX_SIDE) {
        return Err(PlotError::TooLarge {
            width,
            height,
            max: MAX_SIDE,
        });
    }
    ensure_font()?;
    let file_name = path.file_name().ok_or_else(|| PlotError::Invalid {
        what: "path".into(),
        expected: "a path ending in a file name".into(),
        got: format!("{:?}", path.display().to_string()),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(PlotError::Io {
            path: dir,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "folder does not exist"),
        });
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The `.png` ending makes plotters (via `image`) encode PNG whatever `path` ends with.
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp.png",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    // On failure the backend still saves on drop; remove whatever it left.
    if let Err(e) = drawn {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        PlotError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Colours

/// matplotlib's "tab10" palette, used for points and lines.
const TAB10: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Colour of class or series `i`: tab10 for the first ten, then hues spaced by the golden angle.
pub(crate) fn class_color(i: usize) -> RGBColor {
    if let Some(&(r, g, b)) = TAB10.get(i) {
        return RGBColor(r, g, b);
    }
    let hue = ((i as f64) * 0.618_033_988_75).fract();
    hsv(hue * 360.0, 0.7, 0.8)
}

/// Mixes `c` with white: `amount` 0 gives white, 1 gives `c`.
pub(crate) fn tint(c: RGBColor, amount: f64) -> RGBColor {
    let a = amount.clamp(0.0, 1.0);
    let mix = |v: u8| (255.0 - (255.0 - f64::from(v)) * a).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// An HSV colour (hue in degrees, saturation and value in 0..1) as RGB.
pub(crate) fn hsv(h: f64, s: f64, v: f64) -> RGBColor {
    let c = v * s;
    let hp = (h.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - ((hp % 2.0) - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let to = |f: f64| ((f + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    RGBColor(to(r), to(g), to(b))
}

// ---------------------------------------------------------------------------------------------
// Text

/// A black text style of `size` pixels in the embedded font (for plotters' own tick labels).
pub(crate) fn text_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// The embedded font, parsed once, for the text this crate lays out itself.
///
/// plotters' ab_glyph text drops each glyph's left side bearing, which makes words look
/// unevenly spaced ("labe l"); all titles, axis names, legends and labels are therefore drawn
/// by [`draw_text`], and plotters only draws the numeric tick labels.
fn font() -> Result<&'static FontRef<'static>, PlotError> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
        .ok_or(PlotError::Font)
}

/// Width of `text` at `size` pixels, rounded up.
fn advance_width(font: &FontRef<'static>, text: &str, size: u32) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let mut width = 0.0;
    let mut prev = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    width
}

/// Width and height in pixels of `text` at `size` (the height is the font size).
pub(crate) fn text_size(text: &str, size: u32) -> Result<(u32, u32), PlotError> {
    Ok((advance_width(font()?, text, size).ceil() as u32, size))
}

/// Horizontal anchoring of [`draw_text`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Align {
    /// `x` is the left edge.
    Left,
    /// `x` is the middle.
    Center,
}

/// Draws `text` at `size` pixels in `color`, anchored at `(x, y)`: `y` is the vertical middle of
/// the line (between ascender and descender), `x` the left edge or middle per `align`. With
/// `vertical` the text is turned to read bottom-to-top and the anchor applies along its length.
pub(crate) fn draw_text(
    area: &Area,
    text: &str,
    size: u32,
    color: RGBColor,
    (x, y): (i32, i32),
    align: Align,
    vertical: bool,
) -> Result<(), PlotError> {
    let font = font()?;
    let scale = PxScale::from(size as f32);
    let scaled = font.as_scaled(scale);
    let width = advance_width(font, text, size);
    let baseline = (scaled.ascent() + scaled.descent()) / 2.0;
    let mut caret = match align {
        Align::Left => 0.0,
        Align::Center => -width / 2.0,
    };
    let mut prev = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(caret, baseline));
        if let Some(outline) = font.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            let mut result = Ok(());
            outline.draw(|gx, gy, coverage| {
                if coverage <= 0.0 || result.is_err() {
                    return;
                }
                // Glyph pixel in text coordinates: origin at the anchor, y down.
                let lx = (bounds.min.x + gx as f32).round() as i32;
                let ly = (bounds.min.y + gy as f32).round() as i32;
                let at = if vertical {
                    (x + ly, y - lx)
                } else {
                    (x + lx, y + ly)
                };
                result = area.draw_pixel(at, &color.mix(f64::from(coverage.min(1.0))));
            });
            result?;
        }
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok(())
}

/// Draws black-or-`color` `text` centred on `(x, y)`.
pub(crate) fn centered_text(
    area: &Area,
    text: &str,
    size: u32,
    color: RGBColor,
    at: (i32, i32),
) -> Result<(), PlotError> {
    draw_text(area, text, size, color, at, Align::Center, false)
}

/// Draws `text` with its left edge at `x` and middle at `y`.
pub(crate) fn left_text(
    area: &Area,
    text: &str,
    size: u32,
    color: RGBColor,
    at: (i32, i32),
) -> Result<(), PlotError> {
    draw_text(area, text, size, color, at, Align::Left, false)
}

/// Draws `text` reading bottom-to-top, centred on `(x, y)`.
pub(crate) fn vertical_text(
    area: &Area,
    text: &str,
    size: u32,
    color: RGBColor,
    at: (i32, i32),
) -> Result<(), PlotError> {
    draw_text(area, text, size, color, at, Align::Center, true)
}

/// `text` cut to at most `max_chars` characters, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    s.push('…');
    s
}

// ---------------------------------------------------------------------------------------------
// Legends

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Marker {
    /// A filled dot.
    Dot,
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
    /// An open circle.
    Ring,
}

/// One legend row.
pub(crate) struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    pub marker: Marker,
}

pub(crate) const LEGEND_FONT: u32 = 15;
const LEGEND_ROW: i32 = 24;
const LEGEND_SWATCH: i32 = 28;

/// Width of the side panel that holds `entries`.
pub(crate) fn legend_width(entries: &[LegendEntry]) -> Result<u32, PlotError> {
    let mut widest = 0;
    for e in entries {
        widest = widest.max(text_size(&e.label, LEGEND_FONT)?.0);
    }
    Ok(widest + LEGEND_SWATCH as u32 + 40)
}

/// Draws a framed legend with its top-left corner at `(x, y)` of `area`.
pub(crate) fn draw_legend(
    area: &Area,
    entries: &[LegendEntry],
    (x, y): (i32, i32),
) -> Result<(), PlotError> {
    if entries.is_empty() {
        return Ok(());
    }
    let w = legend_width(entries)? as i32 - 16;
    let h = LEGEND_ROW * entries.len() as i32 + 10;
    area.draw(&Rectangle::new([(x, y), (x + w, y + h)], WHITE.filled()))?;
    area.draw(&Rectangle::new(
        [(x, y), (x + w, y + h)],
        RGBColor(160, 160, 160).stroke_width(1),
    ))?;
    for (k, e) in entries.iter().enumerate() {
        let cy = y + 5 + LEGEND_ROW * k as i32 + LEGEND_ROW / 2;
        let sx = x + 8;
        let mid = sx + LEGEND_SWATCH / 2;
        match e.marker {
            Marker::Dot => {
                area.draw(&Circle::new((mid, cy), 5, e.color.filled()))?;
            }
            Marker::Ring => {
                area.draw(&Circle::new((mid, cy), 8, e.color.stroke_width(2)))?;
            }
            Marker::Line => {
                area.draw(&PathElement::new(
                    vec![(sx, cy), (sx + LEGEND_SWATCH, cy)],
                    e.color.stroke_width(2),
                ))?;
            }
            Marker::Dashed => {
                for k in 0..3 {
                    let a = sx + k * 11;
                    area.draw(&PathElement::new(
                        vec![(a, cy), (a + 6, cy)],
                        e.color.stroke_width(2),
                    ))?;
                }
            }
        }
        left_text(
            area,
            &e.label,
            LEGEND_FONT,
            BLACK,
            (sx + LEGEND_SWATCH + 8, cy),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Input checks

/// Errors unless `v` has at least one element.
pub(crate) fn non_empty<T>(what: &str, v: &[T]) -> Result<(), PlotError> {
    if v.is_empty() {
        return Err(PlotError::Empty { what: what.into() });
    }
    Ok(())
}

/// Errors unless `a` and `b` have the same length.
pub(crate) fn same_len<A, B>(
    a_name: &str,
    a: &[A],
    b_name: &str,
    b: &[B],
) -> Result<(), PlotError> {
    if a.len() != b.len() {
        return Err(PlotError::LengthMismatch {
            left: a_name.into(),
            left_len: a.len(),
            right: b_name.into(),
            right_len: b.len(),
        });
    }
    Ok(())
}

/// Errors on the first NaN or infinite value of `v`.
pub(crate) fn finite(what: &str, v: &[f64]) -> Result<(), PlotError> {
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(PlotError::NonFinite {
            what: what.into(),
            index,
            value,
        });
    }
    Ok(())
}

/// Checks a `(low, high)` axis range: both finite and `low < high`.
pub(crate) fn check_range(what: &str, (lo, hi): (f64, f64)) -> Result<(), PlotError> {
    finite(what, &[lo, hi])?;
    // plotters cannot lay ticks out on a span that overflows or vanishes next to the values.
    let span = hi - lo;
    if lo >= hi || !span.is_finite() || span <= 1e-12 * lo.abs().max(hi.abs()) {
        return Err(PlotError::Invalid {
            what: what.into(),
            expected: "low < high, with high - low finite and above 1e-12 of their size".into(),
            got: format!("({lo:?}, {hi:?})"),
        });
    }
    Ok(())
}

/// The smallest and largest of some finite values, padded by 5% (or widened around a constant),
/// as an axis range for the data named `what`.
///
/// # Errors
/// [`PlotError::Invalid`] when the padded range is wider than an `f64` can hold (values near
/// ±1.8e308), which plotters cannot lay ticks out on.
pub(crate) fn padded_range(
    what: &str,
    values: impl Iterator<Item = f64>,
) -> Result<(f64, f64), PlotError> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return Ok((0.0, 1.0));
    }
    let (min, max) = (lo, hi);
    let span = hi - lo;
    let (lo, hi) = if span <= 1e-12 * lo.abs().max(hi.abs()) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo - 0.05 * span, hi + 0.05 * span)
    };
    if !(hi - lo).is_finite() {
        return Err(PlotError::Invalid {
            what: what.into(),
            expected: "values spanning less than 1e308".into(),
            got: format!("values from {min:?} to {max:?}"),
        });
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tint_goes_from_white_to_colour() {
        let c = RGBColor(31, 119, 180);
        assert_eq!(tint(c, 0.0), RGBColor(255, 255, 255));
        assert_eq!(tint(c, 1.0), c);
        let half = tint(c, 0.5);
        assert!(half.0 > c.0 && half.0 < 255);
    }

    #[test]
    fn padded_range_handles_constants_and_spans() {
        let range = |v: &[f64]| padded_range("v", v.iter().copied());
        assert_eq!(range(&[2.0, 2.0]).unwrap(), (1.8, 2.2));
        assert_eq!(range(&[0.0]).unwrap(), (-1.0, 1.0));
        let (lo, hi) = range(&[0.0, 10.0]).unwrap();
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
        assert!(range(&[-1e308, 1e308]).is_err());
    }

    /// Bounding box (x0, y0, x1, y1) of the non-white pixels of `text` drawn on a white canvas.
    fn ink_box(text: &str, size: u32, at: (i32, i32), vertical: bool) -> (u32, u32, u32, u32) {
        let (w, h) = (400u32, 400u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let area = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_text(&area, text, size, BLACK, at, Align::Center, vertical).unwrap();
            area.present().unwrap();
        }
        let mut b = (u32::MAX, u32::MAX, 0, 0);
        for (i, px) in buf.chunks(3).enumerate() {
            if px != [255, 255, 255] {
                let (x, y) = (i as u32 % w, i as u32 / w);
                b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
            }
        }
        b
    }

    #[test]
    fn text_is_drawn_where_and_as_wide_as_measured() {
        let (tw, _) = text_size("Hello, kiln", 20).unwrap();
        assert!(tw > text_size("Hello", 20).unwrap().0);
        let (x0, y0, x1, y1) = ink_box("Hello, kiln", 20, (200, 100), false);
        // Centred on x = 200, within a couple of pixels of the measured width.
        assert!(
            (x1 - x0 + 1).abs_diff(tw) <= 4,
            "ink {}..{} vs width {tw}",
            x0,
            x1
        );
        assert!(((x0 + x1) as i32 / 2 - 200).abs() <= 2);
        // Centred on y = 100 and no taller than the font size.
        assert!(y1 - y0 < 20 && y0 >= 88 && y1 <= 112, "rows {y0}..{y1}");
        // Turned: the same extent, along y.
        let (vx0, vy0, vx1, vy1) = ink_box("Hello, kiln", 20, (100, 200), true);
        assert!((vy1 - vy0 + 1).abs_diff(tw) <= 4 && vx1 - vx0 < 20);
        assert!(((vy0 + vy1) as i32 / 2 - 200).abs() <= 2);
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("setosa", 10), "setosa");
        assert_eq!(truncate("versicolor", 5), "vers…");
    }

    #[test]
    fn class_colours_are_distinct() {
        let colours: Vec<_> = (0..20).map(class_color).collect();
        for i in 0..colours.len() {
            for j in 0..i {
                assert_ne!(colours[i], colours[j], "classes {i} and {j}");
            }
        }
    }
}
