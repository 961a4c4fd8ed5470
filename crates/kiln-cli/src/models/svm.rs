//! Support vector machines in the CLI: `kiln fit svc` and `kiln fit svr`.

use std::path::Path;

use anyhow::Result;
use kiln_classical::svm::{Svc, Svr};
use kiln_core::folder::ModelMeta;
use kiln_core::Predict;
use ndarray::{Array2, Axis};
use serde_json::{json, Value};

use super::{num, save_persist, CliModel, PlotContext};

/// Grid cells per side of the decision-region picture.
const GRID: usize = 200;

impl CliModel for Svc {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({
            "kernel": self.kernel().kernel,
            "gamma": self.kernel().gamma,
            "n_support": self.n_support(),
            "support": self.support(),
            "intercept": self.intercept().to_vec(),
            "n_iter": self.n_iter(),
            "probability": !self.prob_a().is_empty(),
        })
    }

    fn summary(&self, meta: &ModelMeta) -> Vec<(String, String)> {
        let k = self.kernel();
        let classes = meta.classes.clone().unwrap_or_default();
        let per_class: Vec<String> = classes
            .iter()
            .zip(self.n_support())
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        vec![
            (
                "kernel".to_string(),
                format!("{} (gamma {})", k.kernel, num(k.gamma)),
            ),
            (
                "support vectors".to_string(),
                format!("{} ({})", self.support().len(), per_class.join(", ")),
            ),
            (
                "intercepts".to_string(),
                self.intercept()
                    .iter()
                    .map(|&b| num(b))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "solver iterations".to_string(),
                self.n_iter().iter().sum::<usize>().to_string(),
            ),
        ]
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        save_persist(self, dir, meta)
    }

    fn warnings(&self) -> Vec<String> {
        Svc::warnings(self).to_vec()
    }

    fn plot(&self, path: &Path, ctx: &PlotContext<'_>) -> Option<Result<()>> {
        (self.n_features() == 2).then(|| decision_regions(self, path, ctx))
    }
}

/// Decision regions over the test points and support vectors (two features), with the margins
/// of a binary problem and the support vectors circled.
fn decision_regions(model: &Svc, path: &Path, ctx: &PlotContext<'_>) -> Result<()> {
    let sv = model.support_vectors();
    let points = ndarray::concatenate(Axis(0), &[ctx.x_test.view(), sv.view()])?;
    let range = |j: usize| {
        let (lo, hi) = points
            .column(j)
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let pad = 0.1 * (hi - lo).max(1e-9);
        (lo - pad, hi + pad)
    };
    let (xr, yr) = (range(0), range(1));
    let mut grid = Array2::<f64>::zeros((GRID * GRID, 2));
    for r in 0..GRID {
        for c in 0..GRID {
            grid[[r * GRID + c, 0]] = xr.0 + (xr.1 - xr.0) * (c as f64 + 0.5) / GRID as f64;
            grid[[r * GRID + c, 1]] = yr.0 + (yr.1 - yr.0) * (r as f64 + 0.5) / GRID as f64;
        }
    }
    let pred = model.predict(grid.view())?;
    let cells: Vec<Vec<usize>> = (0..GRID)
        .map(|r| (0..GRID).map(|c| pred[r * GRID + c] as usize).collect())
        .collect();
    let decision = if model.n_classes() == 2 {
        let d = model.decision_function(grid.view())?;
        Some(
            (0..GRID)
                .map(|r| (0..GRID).map(|c| d[[r * GRID + c, 0]]).collect())
                .collect(),
        )
    } else {
        None
    };
    // Support vectors are stored class by class (libsvm's order).
    let mut sv_class = Vec::with_capacity(sv.nrows());
    for (k, &n) in model.n_support().iter().enumerate() {
        sv_class.extend(std::iter::repeat_n(k, n));
    }
    let mut point_class: Vec<usize> = ctx.y_test.iter().map(|&v| v as usize).collect();
    point_class.extend(sv_class);
    let mut highlight = vec![false; ctx.x_test.nrows()];
    highlight.extend(std::iter::repeat_n(true, sv.nrows()));
    let scaled = if ctx.meta.preprocessing.is_some() {
        " (scaled)"
    } else {
        ""
    };
    kiln_plot::decision_regions(
        path,
        &kiln_plot::DecisionRegions {
            title: format!(
                "SVC decision regions: test points and {} support vectors (circled)",
                sv.nrows()
            ),
            x_label: format!("{}{scaled}", ctx.meta.features[0]),
            y_label: format!("{}{scaled}", ctx.meta.features[1]),
            classes: ctx.meta.classes.clone().unwrap_or_default(),
            x_range: xr,
            y_range: yr,
            grid: cells,
            decision,
            points_x: points.column(0).to_vec(),
            points_y: points.column(1).to_vec(),
            point_class,
            highlight,
            highlight_label: "support vectors".into(),
        },
    )?;
    Ok(())
}

impl CliModel for Svr {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({
            "kernel": self.kernel().kernel,
            "gamma": self.kernel().gamma,
            "n_support": [self.n_support()],
            "support": self.support(),
            "intercept": [self.intercept()],
            "n_iter": [self.n_iter()],
        })
    }

    fn summary(&self, _meta: &ModelMeta) -> Vec<(String, String)> {
        let k = self.kernel();
        vec![
            (
                "kernel".to_string(),
                format!("{} (gamma {})", k.kernel, num(k.gamma)),
            ),
            ("support vectors".to_string(), self.n_support().to_string()),
            ("intercept".to_string(), num(self.intercept())),
            ("solver iterations".to_string(), self.n_iter().to_string()),
        ]
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        save_persist(self, dir, meta)
    }

    fn warnings(&self) -> Vec<String> {
        Svr::warnings(self).to_vec()
    }
}
