//! Renders one example of every chart into a folder (default `/tmp/plots`):
//! `cargo run -p kiln-plot --example gallery -- /tmp/plots`.

use std::path::PathBuf;

use kiln_plot::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/plots".into()),
    );
    std::fs::create_dir_all(&dir)?;

    // A deterministic wobble instead of random noise, so the example needs no RNG.
    let noise = |i: usize| ((i as f64 * 12.9898).sin() * 43758.5453).rem_euclid(1.0) - 0.5;

    let x: Vec<f64> = (0..60).map(|i| i as f64 / 6.0).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| 2.0 * v + 1.0 + 3.0 * noise(i))
        .collect();
    fitted_line(
        dir.join("fitted_line.png"),
        &FittedLine {
            title: "Ordinary least squares: y = 2.0 x + 1.0".into(),
            x_label: "x (feature)".into(),
            y_label: "y (target)".into(),
            x: x.clone(),
            y: y.clone(),
            line_x: vec![0.0, 10.0],
            line_y: vec![1.0, 21.0],
        },
    )?;

    let actual: Vec<f64> = (0..150).map(|i| 5.0 + 30.0 * (i as f64 / 150.0)).collect();
    let predicted: Vec<f64> = actual
        .iter()
        .enumerate()
        .map(|(i, &a)| a + 4.0 * noise(i + 100))
        .collect();
    predicted_vs_actual(
        dir.join("predicted_vs_actual.png"),
        &PredictedVsActual {
            title: "Ridge on diabetes: predicted vs actual".into(),
            actual,
            predicted,
        },
    )?;

    let epochs: Vec<f64> = (1..=40).map(f64::from).collect();
    let train: Vec<f64> = epochs
        .iter()
        .map(|e| 2.3 * (-e / 8.0).exp() + 0.02)
        .collect();
    let val: Vec<f64> = epochs
        .iter()
        .map(|e| 2.3 * (-e / 9.0).exp() + 0.08 + 0.01 * (e / 3.0).sin())
        .collect();
    curves(
        dir.join("curves.png"),
        &Curves {
            title: "Loss per epoch".into(),
            x_label: "epoch".into(),
            y_label: "cross-entropy loss".into(),
            series: vec![
                Series {
                    name: "train loss".into(),
                    x: epochs.clone(),
                    y: train,
                },
                Series {
                    name: "validation loss".into(),
                    x: epochs.clone(),
                    y: val,
                },
            ],
            log_y: true,
        },
    )?;
    confusion_matrix(
        dir.join("confusion_matrix.png"),
        &ConfusionMatrixPlot {
            title: "Decision tree on iris (test set)".into(),
            classes: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
            matrix: vec![vec![10, 0, 0], vec![0, 8, 1], vec![0, 2, 9]],
        },
    )?;
    confusion_matrix(
        dir.join("confusion_matrix_mnist.png"),
        &ConfusionMatrixPlot {
            title: "LeNet on MNIST".into(),
            classes: (0..10).map(|d| format!("digit {d}")).collect(),
            matrix: (0..10)
                .map(|t| {
                    (0..10)
                        .map(|p| {
                            if t == p {
                                950 + t * 3
                            } else {
                                (t * 7 + p * 3) % 9
                            }
                        })
                        .collect()
                })
                .collect(),
        },
    )?;
    // Two blobs and an RBF-like decision function f = exp(-|p - a|^2) - exp(-|p - b|^2), scaled.
    let (a, b) = ((-1.0, 0.5), (1.2, -0.4));
    let f = |x: f64, y: f64| {
        let da = (x - a.0).powi(2) + (y - a.1).powi(2);
        let db = (x - b.0).powi(2) + (y - b.1).powi(2);
        3.0 * ((-da / 2.0).exp() - (-db / 2.0).exp())
    };
    let (nx, ny) = (120, 100);
    let (xr, yr) = ((-3.0, 3.0), (-2.5, 2.5));
    let centre = |j: usize, i: usize| {
        (
            xr.0 + (j as f64 + 0.5) * (xr.1 - xr.0) / nx as f64,
            yr.0 + (i as f64 + 0.5) * (yr.1 - yr.0) / ny as f64,
        )
    };
    let decision: Vec<Vec<f64>> = (0..ny)
        .map(|i| {
            (0..nx)
                .map(|j| {
                    let (x, y) = centre(j, i);
                    f(x, y)
                })
                .collect()
        })
        .collect();
    let grid: Vec<Vec<usize>> = decision
        .iter()
        .map(|row| row.iter().map(|&v| usize::from(v < 0.0)).collect())
        .collect();
    let mut px = Vec::new();
    let mut py = Vec::new();
    let mut pc = Vec::new();
    for i in 0..40 {
        let c = i % 2;
        let (cx, cy) = if c == 0 { a } else { b };
        px.push(cx + 2.8 * noise(3 * i));
        py.push(cy + 2.4 * noise(3 * i + 1));
        pc.push(c);
    }
    let highlight: Vec<bool> = px
        .iter()
        .zip(&py)
        .map(|(&x, &y)| f(x, y).abs() <= 1.0)
        .collect();
    decision_regions(
        dir.join("decision_regions.png"),
        &DecisionRegions {
            title: "SVM (RBF kernel): decision regions and margins".into(),
            x_label: "feature 1".into(),
            y_label: "feature 2".into(),
            classes: vec!["class A".into(), "class B".into()],
            x_range: xr,
            y_range: yr,
            grid,
            decision: Some(decision),
            points_x: px,
            points_y: py,
            point_class: pc,
            highlight,
            highlight_label: "support vectors".into(),
        },
    )?;
    // The iris tree scikit-learn grows with max_depth=3, random_state=0 (numbers copied from
    // its tree_), drawn as plot_tree would.
    // (children, split feature, threshold, gini, value)
    type Row = (Option<(usize, usize)>, &'static str, f64, f64, [usize; 3]);
    let iris: [Row; 9] = [
        (Some((1, 2)), "petal width (cm)", 0.8, 0.667, [50, 50, 50]),
        (None, "", 0.0, 0.0, [50, 0, 0]),
        (Some((3, 6)), "petal width (cm)", 1.75, 0.5, [0, 50, 50]),
        (Some((4, 5)), "petal length (cm)", 4.95, 0.168, [0, 49, 5]),
        (None, "", 0.0, 0.041, [0, 47, 1]),
        (None, "", 0.0, 0.444, [0, 2, 4]),
        (Some((7, 8)), "petal length (cm)", 4.85, 0.043, [0, 1, 45]),
        (None, "", 0.0, 0.444, [0, 1, 2]),
        (None, "", 0.0, 0.0, [0, 0, 43]),
    ];
    let names = ["setosa", "versicolor", "virginica"];
    let nodes = iris
        .iter()
        .map(|&(children, feature, threshold, gini, value)| {
            node(children, feature, threshold, gini, &value, &names)
        })
        .collect();
    tree_diagram(
        dir.join("tree_iris.png"),
        &TreeDiagram {
            nodes,
            n_colors: 3,
            title: "Decision tree on iris (max_depth = 3)".into(),
        },
    )?;

    // A full depth-5 tree (32 leaves), the largest the diagram promises to keep readable.
    let n = 63;
    let features = [
        "petal length (cm)",
        "petal width (cm)",
        "sepal length (cm)",
        "sepal width (cm)",
    ];
    let nodes = (0..n)
        .map(|i| {
            let children = (2 * i + 2 < n).then_some((2 * i + 1, 2 * i + 2));
            let a = 3 + (i * 7) % 40;
            let b = (i * 5) % 17;
            let c = (i * 3) % 11;
            node(
                children,
                features[i % 4],
                1.0 + (i % 9) as f64 * 0.55,
                0.1 + (i % 6) as f64 * 0.1,
                &[a, b, c],
                &names,
            )
        })
        .collect();
    tree_diagram(
        dir.join("tree_depth5.png"),
        &TreeDiagram {
            nodes,
            n_colors: 3,
            title: "A full tree of depth 5".into(),
        },
    )?;

    // Digit-like blobs and coloured squares with captions of various lengths.
    let mut images = Vec::new();
    let mut captions = Vec::new();
    for k in 0..10 {
        let (w, h) = (28, 28);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f64 - 14.0, y as f64 - 14.0);
                let r = (dx * dx / (20.0 + k as f64 * 4.0) + dy * dy / 60.0).sqrt();
                let ring = (1.0 - (r - 1.5).abs()).clamp(0.0, 1.0);
                let v = (255.0 * ring) as u8;
                if k < 5 {
                    pixels.extend([v, v, v]);
                } else {
                    pixels.extend([v, (x * 9) as u8, (y * 9) as u8]);
                }
            }
        }
        images.push(RgbImage {
            width: w,
            height: h,
            pixels,
        });
        captions.push(if k % 3 == 0 {
            format!("label {k}")
        } else {
            format!("sample {k}: a small red circle above a blue square")
        });
    }
    image_grid(
        dir.join("image_grid.png"),
        &ImageGrid {
            images,
            captions,
            columns: 5,
            scale: 4,
        },
    )?;
    println!("wrote charts to {}", dir.display());
    Ok(())
}

/// A scikit-learn-style node: split line (for inner nodes), gini, samples, value, class; its
/// colour is the majority class, shaded as plot_tree does: (first - second) / (1 - second) of
/// the class proportions.
fn node(
    children: Option<(usize, usize)>,
    feature: &str,
    threshold: f64,
    gini: f64,
    value: &[usize],
    names: &[&str],
) -> DiagramNode {
    let samples: usize = value.iter().sum();
    let mut p: Vec<f64> = value
        .iter()
        .map(|&v| v as f64 / samples.max(1) as f64)
        .collect();
    let majority = (0..value.len())
        .max_by_key(|&k| (value[k], usize::MAX - k))
        .unwrap_or(0);
    p.sort_by(|a, b| b.total_cmp(a));
    let purity = if p.len() > 1 && p[1] < 1.0 {
        (p[0] - p[1]) / (1.0 - p[1])
    } else {
        1.0
    };
    let mut lines = Vec::new();
    if children.is_some() {
        lines.push(format!("{feature} <= {threshold:.2}"));
    }
    lines.push(format!("gini = {gini:.3}"));
    lines.push(format!("samples = {samples}"));
    lines.push(format!("value = {value:?}"));
    lines.push(format!("class = {}", names[majority]));
    DiagramNode {
        lines,
        children,
        color_class: Some(majority),
        purity,
    }
}
