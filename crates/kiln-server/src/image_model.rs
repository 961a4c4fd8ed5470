//! kiln's text-to-image models ([`kiln_models::text2image::ImageModel`]) as
//! [`ImageGenerator`]s: prompt → PNG pictures, with the model's sampling defaults and its
//! reranker when it has one.

use std::io::Cursor;
use std::path::Path;

use kiln_models::text2image::{self, ImageModel, ImageSampling, IMAGE_MODEL_KIND};

use crate::error::{LoadError, ModelError};
use crate::image::ImageGenerator;
use crate::text::CancelFlag;

/// Id under which `kiln serve` offers the embedded default image model.
pub const DEFAULT_IMAGE_ID: &str = "kiln-shapes-dalle";

/// Candidates drawn per picture when the model has a reranker (the best one is kept).
const RERANK: usize = 4;

/// A text-to-image model behind the server's image endpoint.
pub struct KilnImageGenerator {
    model: ImageModel,
}

impl KilnImageGenerator {
    /// Load the model folder `dir` (`kiln train dalle` writes one).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let model = ImageModel::load(dir).map_err(|e| LoadError::Model {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self { model })
    }

    /// kiln's embedded default shapes model.
    pub fn embedded() -> Result<Self, LoadError> {
        let model = text2image::embedded().map_err(|e| LoadError::Model {
            path: "<embedded default image model>".into(),
            message: e.to_string(),
        })?;
        Ok(Self { model })
    }
}

impl ImageGenerator for KilnImageGenerator {
    fn kind(&self) -> &str {
        IMAGE_MODEL_KIND
    }

    fn size(&self) -> (u32, u32) {
        let side = kiln_data::shapes::IMAGE_SIZE as u32;
        (side, side)
    }

    fn generate(
        &self,
        prompt: &str,
        n: usize,
        seed: u64,
        cancel: &CancelFlag,
    ) -> Result<Vec<Vec<u8>>, ModelError> {
        // Unknown words are the client's mistake: say which, before any work.
        self.model
            .encode_prompt(prompt)
            .map_err(|e| ModelError::input("prompt", e.to_string()))?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if cancel.is_cancelled() {
                return Err(ModelError::Internal("cancelled".into()));
            }
            let s = ImageSampling {
                n: 1,
                seed: seed.wrapping_add(i as u64),
                rerank: if self.model.has_reranker() { RERANK } else { 1 },
                ..self.model.sampling().clone()
            };
            let pictures = self
                .model
                .generate(prompt, &s)
                .map_err(|e| ModelError::Internal(e.to_string()))?;
            for rgb in pictures {
                out.push(png(&rgb)?);
            }
        }
        Ok(out)
    }
}

/// One 32×32 RGB picture (channels last) as PNG bytes.
fn png(rgb: &[u8]) -> Result<Vec<u8>, ModelError> {
    let side = kiln_data::shapes::IMAGE_SIZE as u32;
    let img = image::RgbImage::from_raw(side, side, rgb.to_vec()).ok_or_else(|| {
        ModelError::Internal(format!(
            "the model drew {} bytes, expected {side}×{side}×3",
            rgb.len()
        ))
    })?;
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| ModelError::Internal(format!("PNG encoding: {e}")))?;
    Ok(bytes)
}

/// True when `kind` is a text-to-image model folder's.
pub fn is_image_kind(kind: &str) -> bool {
    kind == IMAGE_MODEL_KIND
}
