//! Every chart writes a real PNG of a sensible size, refuses bad input with the right error, and
//! writes atomically.

use std::path::{Path, PathBuf};

use kiln_plot::*;

fn decode(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable PNG: {e}", path.display()))
        .to_rgb8()
}

/// Fraction of pixels that are not white.
fn ink(img: &image::RgbImage) -> f64 {
    let n = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    n as f64 / (img.width() * img.height()) as f64
}

/// Number of distinct colours (a blank or single-colour picture has one or two).
fn colours(img: &image::RgbImage) -> usize {
    let mut set = std::collections::HashSet::new();
    for p in img.pixels() {
        set.insert(p.0);
    }
    set.len()
}

/// Decodes `path`, checks its size lies in the given ranges and that it has content.
fn check_png(path: &Path, w: (u32, u32), h: (u32, u32)) -> image::RgbImage {
    let img = decode(path);
    assert!(
        (w.0..=w.1).contains(&img.width()) && (h.0..=h.1).contains(&img.height()),
        "{}: {}x{}",
        path.display(),
        img.width(),
        img.height()
    );
    assert!(ink(&img) > 0.02, "{} is almost blank", path.display());
    assert!(colours(&img) > 20, "{} has too few colours", path.display());
    img
}

/// The folder's files, to check no temporary file was left behind.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn fitted() -> FittedLine {
    let x: Vec<f64> = (0..30).map(f64::from).collect();
    FittedLine {
        title: "fit".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        y: x.iter().map(|v| 3.0 * v - 2.0 + (v * 1.7).sin()).collect(),
        x,
        line_x: vec![0.0, 29.0],
        line_y: vec![-2.0, 85.0],
    }
}

#[test]
fn fitted_line_writes_a_png_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fit.png");
    fitted_line(&path, &fitted()).unwrap();
    let img = check_png(&path, (600, 1200), (400, 900));
    // The fitted line is drawn in tab10 red.
    assert!(
        img.pixels().any(|p| p.0 == [214, 39, 40]),
        "no fitted-line pixels"
    );
    assert_eq!(files(dir.path()), vec![path.clone()]);
    // Writing again replaces the file.
    fitted_line(&path, &fitted()).unwrap();
    assert_eq!(files(dir.path()), vec![path]);
}

#[test]
fn fitted_line_rejects_bad_input_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fit.png");
    std::fs::write(&path, b"old").unwrap();
    let mut c = fitted();
    c.y.pop();
    assert!(matches!(
        fitted_line(&path, &c),
        Err(PlotError::LengthMismatch {
            left_len: 30,
            right_len: 29,
            ..
        })
    ));
    let mut c = fitted();
    c.x[3] = f64::NAN;
    let err = fitted_line(&path, &c).unwrap_err();
    assert!(
        matches!(err, PlotError::NonFinite { index: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("x[3]"), "{err}");
    let mut c = fitted();
    c.line_y[1] = f64::INFINITY;
    assert!(matches!(
        fitted_line(&path, &c),
        Err(PlotError::NonFinite { .. })
    ));
    let mut c = fitted();
    c.x.clear();
    c.y.clear();
    assert!(matches!(
        fitted_line(&path, &c),
        Err(PlotError::Empty { .. })
    ));
    let mut c = fitted();
    c.line_x.clear();
    c.line_y.clear();
    assert!(matches!(
        fitted_line(&path, &c),
        Err(PlotError::Empty { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(files(dir.path()), vec![path]);
}

#[test]
fn missing_folder_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/fit.png");
    assert!(matches!(
        fitted_line(&path, &fitted()),
        Err(PlotError::Io { .. })
    ));
}

#[test]
fn constant_data_still_draws() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.png");
    let c = FittedLine {
        x: vec![1.0; 5],
        y: vec![2.0; 5],
        line_x: vec![1.0],
        line_y: vec![2.0],
        ..Default::default()
    };
    fitted_line(&path, &c).unwrap();
    check_png(&path, (600, 1200), (400, 900));
}

#[test]
fn predicted_vs_actual_writes_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pva.png");
    let actual: Vec<f64> = (0..50).map(|i| f64::from(i) * 0.5).collect();
    let predicted: Vec<f64> = actual.iter().map(|a| a * 0.9 + 1.0).collect();
    let chart = PredictedVsActual {
        title: "pva".into(),
        actual: actual.clone(),
        predicted: predicted.clone(),
    };
    predicted_vs_actual(&path, &chart).unwrap();
    check_png(&path, (600, 1200), (400, 900));
    let short = PredictedVsActual {
        predicted: predicted[..10].to_vec(),
        ..chart.clone()
    };
    assert!(matches!(
        predicted_vs_actual(&path, &short),
        Err(PlotError::LengthMismatch { .. })
    ));
    let mut nan = chart.clone();
    nan.predicted[0] = f64::NAN;
    assert!(matches!(
        predicted_vs_actual(&path, &nan),
        Err(PlotError::NonFinite { .. })
    ));
    assert!(matches!(
        predicted_vs_actual(&path, &PredictedVsActual::default()),
        Err(PlotError::Empty { .. })
    ));
}

fn loss_curves(log_y: bool) -> Curves {
    let x: Vec<f64> = (1..=20).map(f64::from).collect();
    Curves {
        title: "loss".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: vec![
            Series {
                name: "train".into(),
                y: x.iter().map(|e| (-e / 4.0).exp()).collect(),
                x: x.clone(),
            },
            Series {
                name: "validation".into(),
                y: x.iter().map(|e| (-e / 5.0).exp() + 0.01).collect(),
                x,
            },
            Series {
                name: "single point".into(),
                x: vec![10.0],
                y: vec![0.5],
            },
        ],
        log_y,
    }
}

#[test]
fn curves_linear_and_log() {
    let dir = tempfile::tempdir().unwrap();
    for log_y in [false, true] {
        let path = dir.path().join(format!("curves_{log_y}.png"));
        curves(&path, &loss_curves(log_y)).unwrap();
        let img = check_png(&path, (600, 1200), (400, 900));
        // Series colours: tab10 blue and orange lines.
        assert!(img.pixels().any(|p| p.0 == [31, 119, 180]));
        assert!(img.pixels().any(|p| p.0 == [255, 127, 14]));
    }
}

#[test]
fn curves_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.png");
    let no_series = Curves::default();
    assert!(matches!(
        curves(&path, &no_series),
        Err(PlotError::Empty { .. })
    ));
    let mut c = loss_curves(false);
    c.series[1].y.pop();
    let err = curves(&path, &c).unwrap_err();
    assert!(err.to_string().contains("series[1]"), "{err}");
    let mut c = loss_curves(true);
    c.series[0].y[4] = 0.0;
    let err = curves(&path, &c).unwrap_err();
    assert!(matches!(err, PlotError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("series[0].y[4]"), "{err}");
    let mut c = loss_curves(false);
    c.series[2].x.clear();
    c.series[2].y.clear();
    assert!(matches!(curves(&path, &c), Err(PlotError::Empty { .. })));
    let mut c = loss_curves(false);
    c.series[0].x[0] = f64::NEG_INFINITY;
    assert!(matches!(
        curves(&path, &c),
        Err(PlotError::NonFinite { .. })
    ));
    assert!(files(dir.path()).is_empty());
}

fn confusion() -> ConfusionMatrixPlot {
    ConfusionMatrixPlot {
        title: "iris".into(),
        classes: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
        matrix: vec![vec![10, 0, 0], vec![0, 8, 1], vec![0, 2, 9]],
    }
}

#[test]
fn confusion_matrix_writes_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cm.png");
    confusion_matrix(&path, &confusion()).unwrap();
    let img = check_png(&path, (300, 1000), (300, 1000));
    // The largest count's cell is the darkest blue of the colour map.
    assert!(img.pixels().filter(|p| p.0 == [8, 48, 107]).count() > 1000);
    // Long class names are turned vertical, and many classes grow the picture.
    let many = ConfusionMatrixPlot {
        title: "many".into(),
        classes: (0..12)
            .map(|i| format!("a rather long class name {i}"))
            .collect(),
        matrix: (0..12).map(|i| (0..12).map(|j| i * j).collect()).collect(),
    };
    confusion_matrix(&path, &many).unwrap();
    check_png(&path, (800, 4000), (800, 4000));
    // All-zero matrix is still a picture.
    let zeros = ConfusionMatrixPlot {
        matrix: vec![vec![0; 3]; 3],
        ..confusion()
    };
    confusion_matrix(&path, &zeros).unwrap();

    let mut bad = confusion();
    bad.matrix.pop();
    assert!(matches!(
        confusion_matrix(&path, &bad),
        Err(PlotError::LengthMismatch { .. })
    ));
    let mut bad = confusion();
    bad.matrix[1].push(3);
    let err = confusion_matrix(&path, &bad).unwrap_err();
    assert!(err.to_string().contains("matrix[1]"), "{err}");
    assert!(matches!(
        confusion_matrix(&path, &ConfusionMatrixPlot::default()),
        Err(PlotError::Empty { .. })
    ));
}

fn regions() -> DecisionRegions {
    let (nx, ny) = (40, 30);
    let decision: Vec<Vec<f64>> = (0..ny)
        .map(|i| {
            (0..nx)
                .map(|j| (j as f64 - 20.0) / 5.0 + (i as f64 - 15.0) / 10.0)
                .collect()
        })
        .collect();
    let grid = decision
        .iter()
        .map(|r| r.iter().map(|&v| usize::from(v > 0.0)).collect())
        .collect();
    DecisionRegions {
        title: "svm".into(),
        x_label: "x1".into(),
        y_label: "x2".into(),
        classes: vec!["no".into(), "yes".into()],
        x_range: (0.0, 4.0),
        y_range: (-1.0, 2.0),
        grid,
        decision: Some(decision),
        points_x: vec![0.5, 1.0, 3.0, 3.5],
        points_y: vec![0.0, 1.0, 0.5, 1.5],
        point_class: vec![0, 0, 1, 1],
        highlight: vec![false, true, true, false],
        highlight_label: "support vectors".into(),
    }
}

#[test]
fn decision_regions_writes_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dr.png");
    decision_regions(&path, &regions()).unwrap();
    let img = check_png(&path, (700, 1400), (500, 1000));
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    // Both regions, in tab10 blue and orange mixed 28% with white, cover large areas.
    assert!(count([192, 217, 234]) > 50_000, "class 0 region");
    assert!(count([255, 219, 188]) > 50_000, "class 1 region");
    // Points in full class colour, and the black decision line and rings.
    assert!(count([31, 119, 180]) > 20 && count([255, 127, 14]) > 20);
    assert!(count([0, 0, 0]) > 300);
    let plain = DecisionRegions {
        decision: None,
        highlight: Vec::new(),
        ..regions()
    };
    decision_regions(&path, &plain).unwrap();

    let bad = |f: &dyn Fn(&mut DecisionRegions)| {
        let mut r = regions();
        f(&mut r);
        decision_regions(&path, &r).unwrap_err()
    };
    assert!(matches!(
        bad(&|r| r.grid[3][4] = 2),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|r| r.point_class[0] = 7),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|r| r.grid[2].pop().map(drop).unwrap_or(())),
        PlotError::LengthMismatch { .. }
    ));
    assert!(matches!(bad(&|r| r.grid.clear()), PlotError::Empty { .. }));
    assert!(matches!(
        bad(&|r| r.classes.clear()),
        PlotError::Empty { .. }
    ));
    assert!(matches!(
        bad(&|r| r.x_range = (1.0, 1.0)),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|r| r.y_range = (0.0, f64::NAN)),
        PlotError::NonFinite { .. }
    ));
    assert!(matches!(
        bad(&|r| {
            if let Some(d) = r.decision.as_mut() {
                d.pop();
            }
        }),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|r| {
            if let Some(d) = r.decision.as_mut() {
                d[0][0] = f64::NAN;
            }
        }),
        PlotError::NonFinite { .. }
    ));
    assert!(matches!(
        bad(&|r| r.points_y.pop().map(drop).unwrap_or(())),
        PlotError::LengthMismatch { .. }
    ));
    assert!(matches!(
        bad(&|r| r.point_class.push(0)),
        PlotError::LengthMismatch { .. }
    ));
    assert!(matches!(
        bad(&|r| r.highlight.push(true)),
        PlotError::LengthMismatch { .. }
    ));
    assert!(matches!(
        bad(&|r| r.points_x[1] = f64::INFINITY),
        PlotError::NonFinite { .. }
    ));
}

fn leaf(purity: f64, class: usize) -> DiagramNode {
    DiagramNode {
        lines: vec![
            "gini = 0.0".into(),
            "samples = 10".into(),
            format!("class = {class}"),
        ],
        children: None,
        color_class: Some(class),
        purity,
    }
}

fn small_tree() -> TreeDiagram {
    TreeDiagram {
        nodes: vec![
            DiagramNode {
                lines: vec!["petal length (cm) <= 2.45".into(), "gini = 0.667".into()],
                children: Some((1, 2)),
                color_class: Some(0),
                purity: 0.0,
            },
            leaf(1.0, 0),
            DiagramNode {
                lines: vec!["petal width (cm) <= 1.75".into(), "gini = 0.5".into()],
                children: Some((3, 4)),
                color_class: Some(1),
                purity: 0.1,
            },
            leaf(0.9, 1),
            leaf(0.95, 2),
        ],
        n_colors: 3,
        title: "tree".into(),
    }
}

#[test]
fn tree_diagram_writes_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.png");
    tree_diagram(&path, &small_tree()).unwrap();
    let img = check_png(&path, (300, 1200), (250, 800));
    // The pure setosa leaf is filled with scikit-learn's first class colour.
    assert!(img.pixels().filter(|p| p.0 == [229, 129, 57]).count() > 1000);

    // A full depth-5 tree (32 leaves) fits under the size limit and grows with the leaves.
    let n = 63;
    let big = TreeDiagram {
        nodes: (0..n)
            .map(|i| DiagramNode {
                lines: vec![
                    format!("feature {} <= {}.5", i % 4, i),
                    "samples = 100".into(),
                ],
                children: (2 * i + 2 < n).then_some((2 * i + 1, 2 * i + 2)),
                color_class: None,
                purity: (i as f64 / n as f64),
            })
            .collect(),
        n_colors: 0,
        title: String::new(),
    };
    tree_diagram(&path, &big).unwrap();
    let img = check_png(&path, (32 * 100, 10_000), (6 * 60, 1500));
    assert!(img.width() > 3 * img.height());

    let bad = |f: &dyn Fn(&mut TreeDiagram)| {
        let mut t = small_tree();
        f(&mut t);
        tree_diagram(&path, &t).unwrap_err()
    };
    assert!(matches!(bad(&|t| t.nodes.clear()), PlotError::Empty { .. }));
    assert!(matches!(
        bad(&|t| t.nodes[2].children = Some((3, 9))),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|t| t.nodes[2].children = Some((1, 4))),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|t| t.nodes[2].children = Some((0, 4))),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|t| t.nodes[2].children = None),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|t| t.nodes[1].color_class = Some(3)),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|t| t.nodes[1].purity = 1.5),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|t| t.nodes[1].purity = f64::NAN),
        PlotError::Invalid { .. }
    ));
}

fn rgb(width: usize, height: usize, colour: [u8; 3]) -> RgbImage {
    RgbImage {
        width,
        height,
        pixels: colour.repeat(width * height),
    }
}

#[test]
fn image_grid_upscales_with_nearest_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    // A 2x2 image with four distinct colours, plus two plain ones.
    let quad = RgbImage {
        width: 2,
        height: 2,
        pixels: vec![250, 0, 0, 0, 250, 0, 0, 0, 250, 250, 250, 0],
    };
    let scale = 7;
    let grid = ImageGrid {
        images: vec![quad, rgb(3, 2, [10, 20, 30]), rgb(1, 1, [200, 100, 50])],
        captions: vec![
            "four".into(),
            "a longer caption that wraps".into(),
            "one".into(),
        ],
        columns: 2,
        scale,
    };
    image_grid(&path, &grid).unwrap();
    let img = decode(&path);
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    // Each source pixel becomes exactly scale x scale output pixels.
    for c in [
        [250, 0, 0],
        [0, 250, 0],
        [0, 0, 250],
        [250, 250, 0],
        [200, 100, 50],
    ] {
        assert_eq!(count(c), scale * scale, "colour {c:?}");
    }
    assert_eq!(count([10, 20, 30]), 6 * scale * scale);
    assert!(img.width() >= 2 * 3 * scale as u32 && img.height() >= 2 * 2 * scale as u32);
    // Captions add ink below the images.
    assert!(ink(&img) > 0.02);
    // No captions at all is fine too.
    let bare = ImageGrid {
        captions: Vec::new(),
        ..grid.clone()
    };
    image_grid(&path, &bare).unwrap();

    let bad = |f: &dyn Fn(&mut ImageGrid)| {
        let mut g = grid.clone();
        f(&mut g);
        image_grid(&path, &g).unwrap_err()
    };
    assert!(matches!(
        bad(&|g| g.images.clear()),
        PlotError::Empty { .. }
    ));
    assert!(matches!(bad(&|g| g.columns = 0), PlotError::Invalid { .. }));
    assert!(matches!(bad(&|g| g.scale = 0), PlotError::Invalid { .. }));
    assert!(matches!(bad(&|g| g.scale = 65), PlotError::Invalid { .. }));
    assert!(matches!(
        bad(&|g| g.images[1].pixels.pop().map(drop).unwrap_or(())),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|g| g.images[2].width = 0),
        PlotError::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|g| g.captions.pop().map(drop).unwrap_or(())),
        PlotError::LengthMismatch { .. }
    ));
    assert!(matches!(
        bad(&|g| g.images[0] = rgb(2000, 1, [0, 0, 0])),
        PlotError::TooLarge { .. }
    ));
}

#[test]
fn charts_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
    tree_diagram(&a, &small_tree()).unwrap();
    tree_diagram(&b, &small_tree()).unwrap();
    assert_eq!(decode(&a).into_raw(), decode(&b).into_raw());
}

#[test]
fn extreme_but_finite_values_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extreme.png");
    for (lo, hi) in [(-1e308, 1e308), (1e-300, 2e-300), (0.0, 1e300)] {
        let c = FittedLine {
            x: vec![lo, hi],
            y: vec![hi, lo],
            line_x: vec![lo, hi],
            line_y: vec![lo, hi],
            ..Default::default()
        };
        // A picture, or for a span f64 cannot hold an error; never a panic or a hang.
        let result = fitted_line(&path, &c);
        if hi - lo == f64::INFINITY {
            assert!(
                matches!(result, Err(PlotError::Invalid { .. })),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "{result:?}");
        }
        let curves_chart = Curves {
            series: vec![Series {
                name: "s".into(),
                x: vec![lo, hi],
                y: vec![hi.abs().max(1e-300), lo.abs().max(1e-300)],
            }],
            log_y: true,
            ..Default::default()
        };
        let _ = curves(&path, &curves_chart);
    }
}
