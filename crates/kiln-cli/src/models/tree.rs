//! Decision trees in the CLI: `kiln fit tree`, `kiln fit tree-regressor`, `kiln show`.

use std::path::Path;

use anyhow::Result;
use kiln_classical::tree::{
    DecisionTreeClassifier, DecisionTreeRegressor, DiagramBox, DotOptions, TextOptions,
};
use kiln_core::folder::ModelMeta;
use serde_json::{json, Value};

use super::{num, save_persist, CliModel, PlotContext, ShowFormat};

/// Deepest level drawn by default: deeper trees become unreadable in one picture.
pub const DEFAULT_DEPTH_SHOWN: usize = 5;

fn info(n_nodes: usize, depth: usize, n_leaves: usize, importances: Vec<f64>) -> Value {
    json!({
        "n_nodes": n_nodes,
        "depth": depth,
        "n_leaves": n_leaves,
        "feature_importances": importances,
    })
}

fn summary(
    n_nodes: usize,
    depth: usize,
    n_leaves: usize,
    importances: &[f64],
    meta: &ModelMeta,
) -> Vec<(String, String)> {
    let mut lines = vec![(
        "tree".to_string(),
        format!("{n_nodes} nodes, depth {depth}, {n_leaves} leaves"),
    )];
    let mut ranked: Vec<(&String, f64)> = meta
        .features
        .iter()
        .zip(importances.iter().copied())
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, imp) in ranked.into_iter().take(5).filter(|(_, v)| *v > 0.0) {
        lines.push((format!("importance[{name}]"), num(imp)));
    }
    lines
}

fn draw(path: &Path, boxes: Vec<DiagramBox>, n_colors: usize, title: String) -> Result<()> {
    let nodes = boxes
        .into_iter()
        .map(|b| kiln_plot::DiagramNode {
            lines: b.lines,
            children: b.children,
            color_class: b.color_class,
            purity: b.purity,
        })
        .collect();
    kiln_plot::tree_diagram(
        path,
        &kiln_plot::TreeDiagram {
            nodes,
            n_colors,
            title,
        },
    )?;
    Ok(())
}

macro_rules! tree_cli {
    ($ty:ty, $label:literal, $n_colors:expr) => {
        impl CliModel for $ty {
            fn info(&self, _meta: &ModelMeta) -> Value {
                info(
                    self.node_count(),
                    self.depth(),
                    self.n_leaves(),
                    self.feature_importances(),
                )
            }

            fn summary(&self, meta: &ModelMeta) -> Vec<(String, String)> {
                summary(
                    self.node_count(),
                    self.depth(),
                    self.n_leaves(),
                    &self.feature_importances(),
                    meta,
                )
            }

            fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
                save_persist(self, dir, meta)
            }

            fn plot(&self, path: &Path, ctx: &PlotContext<'_>) -> Option<Result<()>> {
                let shown = ctx.max_depth_shown.unwrap_or(DEFAULT_DEPTH_SHOWN);
                let title = format!(
                    "{} ({} nodes, depth {}{})",
                    $label,
                    self.node_count(),
                    self.depth(),
                    if self.depth() > shown {
                        format!(", first {shown} levels shown")
                    } else {
                        String::new()
                    }
                );
                #[allow(clippy::redundant_closure_call)]
                let n_colors = ($n_colors)(self);
                Some(draw(path, self.diagram(Some(shown)), n_colors, title))
            }

            fn show(&self, format: ShowFormat, max_depth: Option<usize>) -> Option<String> {
                Some(match format {
                    ShowFormat::Text => self.export_text(&TextOptions {
                        max_depth: max_depth.unwrap_or(TextOptions::default().max_depth),
                        ..TextOptions::default()
                    }),
                    ShowFormat::Dot => self.export_graphviz(&DotOptions {
                        max_depth,
                        ..DotOptions::default()
                    }),
                })
            }
        }
    };
}

tree_cli!(
    DecisionTreeClassifier,
    "Decision tree classifier",
    |t: &DecisionTreeClassifier| t.classes().len()
);
tree_cli!(
    DecisionTreeRegressor,
    "Decision tree regressor",
    |_t: &DecisionTreeRegressor| 0
);
