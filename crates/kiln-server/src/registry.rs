//! The models a server answers for, each under an id (`model` in requests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_core::folder::ModelFolder;

use crate::charlm::{CharLmGenerator, CHAR_LM_KIND};
use crate::error::LoadError;
use crate::gpt::{GptGenerator, GPT2_KIND};
use crate::image::ImageGenerator;
use crate::predict::{self, Predictor};
use crate::text::TextGenerator;

/// One served model.
#[derive(Clone)]
pub enum Model {
    /// Completions and chat.
    Text(Arc<dyn TextGenerator>),
    /// Image generations.
    Image(Arc<dyn ImageGenerator>),
    /// `/v1/predict`.
    Predict(Arc<dyn Predictor>),
}

impl Model {
    /// `text`, `image` or `predict`: what the model answers.
    pub fn task(&self) -> &'static str {
        match self {
            Model::Text(_) => "text",
            Model::Image(_) => "image",
            Model::Predict(_) => "predict",
        }
    }

    /// The folder kind.
    pub fn kind(&self) -> String {
        match self {
            Model::Text(m) => m.kind().to_string(),
            Model::Image(m) => m.kind().to_string(),
            Model::Predict(m) => m.info().kind.clone(),
        }
    }
}

/// The served models, in the order they were added.
#[derive(Clone, Default)]
pub struct Registry {
    models: Vec<(String, Model)>,
}

impl Registry {
    /// No models.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve `model` as `id`; an id already taken is an error.
    pub fn add(&mut self, id: impl Into<String>, model: Model) -> Result<(), LoadError> {
        let id = id.into();
        if self.get(&id).is_some() {
            return Err(LoadError::DuplicateId(id));
        }
        self.models.push((id, model));
        Ok(())
    }

    /// Load the model folder (or `kiln train` run folder) `dir` and serve it under its folder
    /// name (the run folder's name for a run folder). Returns the id.
    pub fn add_folder(&mut self, dir: &Path) -> Result<String, LoadError> {
        let (id, model) = load_folder(dir)?;
        self.add(id.clone(), model)?;
        Ok(id)
    }

    /// The model served as `id`.
    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|(i, _)| i == id).map(|(_, m)| m)
    }

    /// Every (id, model).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Model)> {
        self.models.iter().map(|(i, m)| (i.as_str(), m))
    }

    /// Every id.
    pub fn ids(&self) -> Vec<String> {
        self.models.iter().map(|(i, _)| i.clone()).collect()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// True when no model is served.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// The model folder of `dir`: `dir` itself, or `dir/model` for a `kiln train` run folder.
fn model_dir(dir: &Path) -> PathBuf {
    let inner = dir.join("model");
    if inner.join("config.json").is_file() && dir.join("history.jsonl").is_file() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Load any servable model folder, dispatching on its kind (a Hugging Face GPT-2 folder is
/// recognised by its `config.json`); returns its id and the model.
pub fn load_folder(dir: &Path) -> Result<(String, Model), LoadError> {
    let folder = model_dir(dir);
    let id = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    // Hugging Face GPT-2 folders (and `kiln train gpt` runs) have no kiln `kind`.
    if kiln_models::gpt2::load::is_hf_gpt2(&folder) {
        return Ok((id, Model::Text(Arc::new(GptGenerator::load(&folder)?))));
    }
    let config = ModelFolder::read_config(&folder)?;
    let model = if config.kind == CHAR_LM_KIND {
        Model::Text(Arc::new(CharLmGenerator::load(&folder)?))
    } else if crate::image_model::is_image_kind(&config.kind) {
        Model::Image(Arc::new(crate::image_model::KilnImageGenerator::load(
            &folder,
        )?))
    } else if predict::is_predictor_kind(&config.kind) {
        Model::Predict(Arc::new(predict::load(&folder, &config)?))
    } else {
        let mut known = vec![
            CHAR_LM_KIND,
            GPT2_KIND,
            kiln_models::text2image::IMAGE_MODEL_KIND,
        ];
        known.extend(predict::known_kinds());
        return Err(LoadError::UnknownKind {
            path: folder.display().to_string(),
            kind: config.kind,
            known: known.join(", "),
        });
    };
    Ok((id, model))
}
