//! Support vector machines in the CLI: `kiln fit svc` and `kiln fit svr`.

use std::path::Path;

use kiln_classical::svm::{Svc, Svr};
use kiln_core::folder::ModelMeta;
use serde_json::{json, Value};

use super::{num, save_persist, CliModel};

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
        let mut lines = vec![
            ("kernel".to_string(), k.kernel.to_string()),
            ("gamma".to_string(), num(k.gamma)),
            (
                "support vectors".to_string(),
                self.support().len().to_string(),
            ),
        ];
        let names = meta.classes.clone().unwrap_or_default();
        for (c, n) in self.n_support().iter().enumerate() {
            let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
            lines.push((format!("support vectors[{name}]"), n.to_string()));
        }
        lines.push((
            "iterations".to_string(),
            self.n_iter().iter().sum::<usize>().to_string(),
        ));
        lines
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        save_persist(self, dir, meta)
    }

    fn warnings(&self) -> Vec<String> {
        Svc::warnings(self).to_vec()
    }
}

impl CliModel for Svr {
    fn info(&self, _meta: &ModelMeta) -> Value {
        json!({
            "kernel": self.kernel().kernel,
            "gamma": self.kernel().gamma,
            "n_support": self.n_support(),
            "support": self.support(),
            "intercept": self.intercept(),
            "n_iter": self.n_iter(),
        })
    }

    fn summary(&self, _meta: &ModelMeta) -> Vec<(String, String)> {
        let k = self.kernel();
        vec![
            ("kernel".to_string(), k.kernel.to_string()),
            ("gamma".to_string(), num(k.gamma)),
            ("support vectors".to_string(), self.n_support().to_string()),
            ("intercept".to_string(), num(self.intercept())),
            ("iterations".to_string(), self.n_iter().to_string()),
        ]
    }

    fn save(&self, dir: &Path, meta: &ModelMeta) -> kiln_core::Result<()> {
        save_persist(self, dir, meta)
    }

    fn warnings(&self) -> Vec<String> {
        Svr::warnings(self).to_vec()
    }
}
