//! A grid of small images, enlarged without smoothing, each with a caption.

use std::path::Path;

use plotters::prelude::*;

use crate::render::{centered_text, non_empty, text_size, write_png};
use crate::PlotError;

/// An 8-bit RGB image, rows top to bottom.
#[derive(Clone, Debug, Default)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes: red, green, blue for each pixel, row by row.
    pub pixels: Vec<u8>,
}

/// Images laid out in rows, e.g. MNIST digits or generated samples.
#[derive(Clone, Debug, Default)]
pub struct ImageGrid {
    /// The images, filling the grid row by row.
    pub images: Vec<RgbImage>,
    /// One caption per image (wrapped to the image's width, at most three lines), or none at all.
    pub captions: Vec<String>,
    /// Images per row (at least 1).
    pub columns: usize,
    /// Each image pixel becomes a `scale` x `scale` block (nearest neighbour), 1 to 64.
    pub scale: usize,
}

const CAPTION: u32 = 14;
const CAPTION_LINE: u32 = 17;
const MAX_LINES: usize = 3;
const GAP: u32 = 16;
const MIN_CELL_W: u32 = 80;

/// Splits `text` into lines no wider than `width` pixels, breaking at spaces (or inside a word
/// too long for a line), keeping at most [`MAX_LINES`] lines (the last shortened with "…").
fn wrap(text: &str, width: u32) -> Result<Vec<String>, PlotError> {
    let fits = |s: &str| -> Result<bool, PlotError> { Ok(text_size(s, CAPTION)?.0 <= width) };
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if fits(&candidate)? {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // Break a word that is too long on its own.
        for ch in word.chars() {
            line.push(ch);
            if !fits(&line)? && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::take(&mut line));
                line.push(ch);
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > MAX_LINES {
        lines.truncate(MAX_LINES);
        // Mark the cut with an ellipsis, dropping characters until it fits.
        let chars: Vec<char> = lines[MAX_LINES - 1].chars().collect();
        let mut keep = chars.len();
        loop {
            let s: String = chars[..keep].iter().chain(['…'].iter()).collect();
            if keep == 0 || fits(&s)? {
                lines[MAX_LINES - 1] = s;
                break;
            }
            keep -= 1;
        }
    }
    Ok(lines)
}

/// Draws the images in a grid, `columns` per row, each enlarged `scale` times (nearest
/// neighbour, so pixels stay crisp) inside a thin grey frame, with its caption centred below.
///
/// # Errors
/// No images, `columns` of 0, `scale` outside 1..=64, an image with a zero side or a pixel
/// buffer of the wrong length, captions neither empty nor one per image, a picture over
/// [`MAX_SIDE`](crate::MAX_SIDE), or a failed write.
pub fn image_grid(path: impl AsRef<Path>, chart: &ImageGrid) -> Result<(), PlotError> {
    non_empty("images", &chart.images)?;
    if chart.columns == 0 {
        return Err(PlotError::Invalid {
            what: "columns".into(),
            expected: "at least 1".into(),
            got: "0".into(),
        });
    }
    if !(1..=64).contains(&chart.scale) {
        return Err(PlotError::Invalid {
            what: "scale".into(),
            expected: "1 to 64".into(),
            got: chart.scale.to_string(),
        });
    }
    for (i, img) in chart.images.iter().enumerate() {
        if img.width == 0 || img.height == 0 {
            return Err(PlotError::Invalid {
                what: format!("images[{i}] size"),
                expected: "a width and height of at least 1".into(),
                got: format!("{}x{}", img.width, img.height),
            });
        }
        let want = img
            .width
            .checked_mul(img.height)
            .and_then(|p| p.checked_mul(3));
        if want != Some(img.pixels.len()) {
            return Err(PlotError::Invalid {
                what: format!("images[{i}].pixels"),
                expected: format!("{}x{}x3 bytes", img.width, img.height),
                got: format!("{} bytes", img.pixels.len()),
            });
        }
    }
    if !chart.captions.is_empty() && chart.captions.len() != chart.images.len() {
        return Err(PlotError::LengthMismatch {
            left: "captions".into(),
            left_len: chart.captions.len(),
            right: "images".into(),
            right_len: chart.images.len(),
        });
    }
    let scale = chart.scale as u64;
    let max_w = chart
        .images
        .iter()
        .map(|i| i.width as u64)
        .max()
        .unwrap_or(1)
        * scale;
    let max_h = chart
        .images
        .iter()
        .map(|i| i.height as u64)
        .max()
        .unwrap_or(1)
        * scale;
    // Refuse absurd sizes before measuring text (the final check is in write_png).
    let limit = u64::from(crate::MAX_SIDE);
    if max_w > limit || max_h > limit {
        return Err(PlotError::TooLarge {
            width: max_w,
            height: max_h,
            max: crate::MAX_SIDE,
        });
    }
    let cell_w = (max_w as u32).max(MIN_CELL_W);
    let mut wrapped = Vec::with_capacity(chart.captions.len());
    for c in &chart.captions {
        wrapped.push(wrap(c, cell_w)?);
    }
    let lines = wrapped.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let caption_h = if lines == 0 {
        0
    } else {
        6 + lines * CAPTION_LINE
    };
    let cell_h = max_h as u32 + caption_h;
    let n = chart.images.len();
    let cols = chart.columns.min(n) as u64;
    let rows = n.div_ceil(chart.columns) as u64;
    let width = cols * u64::from(cell_w + GAP) + u64::from(GAP);
    let height = rows * u64::from(cell_h + GAP) + u64::from(GAP);

    write_png(path.as_ref(), width, height, |root| {
        let frame = RGBColor(190, 190, 190);
        let s = chart.scale as i32;
        for (k, img) in chart.images.iter().enumerate() {
            let (col, row) = ((k % chart.columns) as i32, (k / chart.columns) as i32);
            let cell_x = GAP as i32 + col * (cell_w + GAP) as i32;
            let cell_y = GAP as i32 + row * (cell_h + GAP) as i32;
            let (w, h) = (img.width as i32 * s, img.height as i32 * s);
            let x0 = cell_x + (cell_w as i32 - w) / 2;
            let y0 = cell_y + (max_h as i32 - h) / 2;
            root.draw(&Rectangle::new(
                [(x0 - 1, y0 - 1), (x0 + w, y0 + h)],
                frame.stroke_width(1),
            ))?;
            for (p, rgb) in img.pixels.chunks_exact(3).enumerate() {
                let color = RGBColor(rgb[0], rgb[1], rgb[2]);
                let (px, py) = ((p % img.width) as i32 * s, (p / img.width) as i32 * s);
                for dy in 0..s {
                    for dx in 0..s {
                        root.draw_pixel((x0 + px + dx, y0 + py + dy), &color)?;
                    }
                }
            }
            if let Some(cap) = wrapped.get(k) {
                for (i, line) in cap.iter().enumerate() {
                    let cy = cell_y + max_h as i32 + 6 + (CAPTION_LINE as i32) * i as i32;
                    let at = (cell_x + cell_w as i32 / 2, cy + CAPTION_LINE as i32 / 2);
                    centered_text(root, line, CAPTION, BLACK, at)?;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_width() {
        let lines = wrap("a small red circle above a big blue square", 90).unwrap();
        assert!(lines.len() > 1 && lines.len() <= MAX_LINES, "{lines:?}");
        for l in &lines {
            assert!(text_size(l, CAPTION).unwrap().0 <= 90, "{l}");
        }
        assert_eq!(wrap("seven", 200).unwrap(), ["seven"]);
        assert!(wrap("", 200).unwrap().is_empty());
    }

    #[test]
    fn wrap_breaks_long_words_and_caps_lines() {
        let lines = wrap(&"x".repeat(200), 80).unwrap();
        assert_eq!(lines.len(), MAX_LINES);
        assert!(lines[MAX_LINES - 1].ends_with('…'));
        for l in &lines {
            assert!(text_size(l, CAPTION).unwrap().0 <= 80, "{l}");
        }
    }
}
