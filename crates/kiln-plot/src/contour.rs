//! Contour lines of a sampled function by marching squares.
//!
//! The function is sampled on a grid: `values[i][j]` is its value at the point (x = j, y = i).
//! Each grid cell (the square between four neighbouring samples) contributes at most two
//! segments of the level line, found by linear interpolation along the cell's edges; the
//! segments are then chained into polylines.

use std::collections::HashMap;

/// A point in grid coordinates: `(x, y)` = (column, row), fractional along edges.
pub(crate) type Point = (f64, f64);

/// Where the level line crosses the edge between samples `a` and `b` (given in a fixed order so
/// two cells sharing the edge compute bit-identical points).
fn crossing(a: Point, va: f64, b: Point, vb: f64, level: f64) -> Point {
    let t = (level - va) / (vb - va);
    (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
}

/// Segments of the line `f = level`, where `values` samples `f` on a rectangular grid.
///
/// A sample counts as "above" when `value >= level`. Ambiguous saddle cells (opposite corners
/// above) are resolved with the cell's mean: corners on the other side of the mean from the
/// centre are cut off individually.
pub(crate) fn marching_squares(values: &[Vec<f64>], level: f64) -> Vec<[Point; 2]> {
    let mut segments = Vec::new();
    for i in 0..values.len().saturating_sub(1) {
        let (row0, row1) = (&values[i], &values[i + 1]);
        for j in 0..row0.len().min(row1.len()).saturating_sub(1) {
            // Corners counter-clockwise from bottom-left: (j,i) (j+1,i) (j+1,i+1) (j,i+1).
            let (x0, x1, y0, y1) = (j as f64, (j + 1) as f64, i as f64, (i + 1) as f64);
            let v = [row0[j], row0[j + 1], row1[j + 1], row1[j]];
            let above = v.map(|x| x >= level);
            // Edge k joins corner k and corner k+1 (bottom, right, top, left); each crossing is
            // computed from the lower-left end of its edge.
            let edge = |k: usize| -> Option<Point> {
                let (a, b) = (k, (k + 1) % 4);
                if above[a] == above[b] {
                    return None;
                }
                Some(match k {
                    0 => crossing((x0, y0), v[0], (x1, y0), v[1], level),
                    1 => crossing((x1, y0), v[1], (x1, y1), v[2], level),
                    2 => crossing((x0, y1), v[3], (x1, y1), v[2], level),
                    _ => crossing((x0, y0), v[0], (x0, y1), v[3], level),
                })
            };
            let crossings: Vec<(usize, Point)> =
                (0..4).filter_map(|k| edge(k).map(|p| (k, p))).collect();
            match crossings.len() {
                2 => segments.push([crossings[0].1, crossings[1].1]),
                4 => {
                    // Saddle: cut off each corner whose side differs from the centre's; corner
                    // c touches edges c (leaving it) and c-1 (arriving at it).
                    let centre_above = (v[0] + v[1] + v[2] + v[3]) / 4.0 >= level;
                    for (c, &corner_above) in above.iter().enumerate() {
                        if corner_above != centre_above {
                            let (a, b) = ((c + 3) % 4, c);
                            segments.push([crossings[a].1, crossings[b].1]);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    segments
}

/// Chains segments that share end points into polylines. A closed loop ends where it starts.
pub(crate) fn join_segments(segments: &[[Point; 2]]) -> Vec<Vec<Point>> {
    let key = |p: Point| (p.0.to_bits(), p.1.to_bits());
    let mut at: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (s, seg) in segments.iter().enumerate() {
        for &p in seg {
            at.entry(key(p)).or_default().push(s);
        }
    }
    let mut used = vec![false; segments.len()];
    // The unused segment touching `p`, if any, and its other end.
    let next = |p: Point, used: &mut Vec<bool>| -> Option<Point> {
        let s = *at.get(&key(p))?.iter().find(|&&s| !used[s])?;
        used[s] = true;
        let [a, b] = segments[s];
        Some(if key(a) == key(p) { b } else { a })
    };
    let mut lines = Vec::new();
    for s in 0..segments.len() {
        if used[s] {
            continue;
        }
        used[s] = true;
        let [a, b] = segments[s];
        let mut forward = vec![a, b];
        while let Some(p) = next(*forward.last().unwrap_or(&b), &mut used) {
            forward.push(p);
        }
        let mut backward = Vec::new();
        let mut cur = a;
        while let Some(p) = next(cur, &mut used) {
            backward.push(p);
            cur = p;
        }
        backward.reverse();
        backward.extend(forward);
        lines.push(backward);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: usize, cols: usize, f: impl Fn(f64, f64) -> f64) -> Vec<Vec<f64>> {
        (0..rows)
            .map(|i| (0..cols).map(|j| f(j as f64, i as f64)).collect())
            .collect()
    }

    #[test]
    fn vertical_line_on_a_ramp() {
        // f = x, level 1.5: the line x = 1.5 from y = 0 to y = 3, one segment per cell row.
        let g = grid(4, 4, |x, _| x);
        let segs = marching_squares(&g, 1.5);
        assert_eq!(segs.len(), 3);
        for s in &segs {
            for p in s {
                assert!((p.0 - 1.5).abs() < 1e-12, "{segs:?}");
            }
        }
        let lines = join_segments(&segs);
        assert_eq!(lines.len(), 1);
        let ys: Vec<f64> = lines[0].iter().map(|p| p.1).collect();
        assert_eq!(lines[0].len(), 4);
        let (lo, hi) = (ys[0].min(ys[3]), ys[0].max(ys[3]));
        assert_eq!((lo, hi), (0.0, 3.0), "{ys:?}");
    }

    #[test]
    fn interpolates_along_edges() {
        // Single cell with values 0 (left) and 4 (right): level 1 crosses at x = 0.25.
        let g = vec![vec![0.0, 4.0], vec![0.0, 4.0]];
        let segs = marching_squares(&g, 1.0);
        assert_eq!(segs.len(), 1);
        for p in segs[0] {
            assert!((p.0 - 0.25).abs() < 1e-12);
        }
    }

    #[test]
    fn circle_is_one_closed_loop_at_the_right_radius() {
        let g = grid(21, 21, |x, y| {
            ((x - 10.0).powi(2) + (y - 10.0).powi(2)).sqrt()
        });
        let lines = join_segments(&marching_squares(&g, 6.0));
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line.first(), line.last(), "closed");
        for p in line {
            let r = ((p.0 - 10.0).powi(2) + (p.1 - 10.0).powi(2)).sqrt();
            assert!((r - 6.0).abs() < 0.15, "point {p:?} at radius {r}");
        }
    }

    #[test]
    fn no_line_when_level_is_outside_the_values() {
        let g = grid(5, 5, |x, y| x + y);
        assert!(marching_squares(&g, 100.0).is_empty());
        assert!(marching_squares(&g, -1.0).is_empty());
    }

    #[test]
    fn saddle_is_resolved_by_the_cell_mean() {
        // Bottom-left and top-right above: 1 0 / 0 1 (rows from the bottom).
        let high_centre = vec![vec![1.0, 0.2], vec![0.2, 1.0]]; // mean 0.6 >= 0.5: joined diagonal
        let segs = marching_squares(&high_centre, 0.5);
        assert_eq!(segs.len(), 2);
        // The low corners (1,0) and (0,1) are cut off: each segment stays near one of them.
        // A segment cutting off corner c has both ends on the two edges that meet at c.
        let near = |s: &[Point; 2], c: Point| s.iter().all(|p| p.0 == c.0 || p.1 == c.1);
        assert!(segs.iter().any(|s| near(s, (1.0, 0.0))));
        assert!(segs.iter().any(|s| near(s, (0.0, 1.0))));
        let low_centre = vec![vec![0.6, 0.0], vec![0.0, 0.6]]; // mean 0.3 < 0.5: cut the high ones
        let segs = marching_squares(&low_centre, 0.5);
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().any(|s| near(s, (0.0, 0.0))));
        assert!(segs.iter().any(|s| near(s, (1.0, 1.0))));
    }
}
