//! Linear models in the CLI: `kiln fit linear` and `kiln fit ridge`.

use std::path::Path;

use kiln_classical::linear::{LinearRegression, Ridge};
use kiln_core::folder::ModelMeta;
use serde_json::{json, Value};

use super::{num, save_persist, CliModel};

fn coef_summary(intercept: f64, coef: &[f64], meta: &ModelMeta) -> Vec<(String, String)> {
    let mut lines = vec![("intercept".to_string(), num(intercept))];
    for (name, c) in meta.features.iter().zip(coef) {
        lines.push((format!("coef[{name}]"), num(*c)));
    }
    lines
}

impl CliModel for LinearRegression {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({ "intercept": self.intercept, "coef": self.coef.to_vec() })
    }

    fn summary(&self, meta: &ModelMeta) -> Vec<(String, String)> {
        coef_summary(self.intercept, &self.coef.to_vec(), meta)
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        save_persist(self, dir, meta)
    }
}

impl CliModel for Ridge {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({ "intercept": self.intercept, "coef": self.coef.to_vec() })
    }

    fn summary(&self, meta: &ModelMeta) -> Vec<(String, String)> {
        coef_summary(self.intercept, &self.coef.to_vec(), meta)
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        save_persist(self, dir, meta)
    }
}
