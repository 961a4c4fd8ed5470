//! [`ImageModel`]: a text-to-image model folder and its prompt → pictures API.
//!
//! ```text
//! DIR/config.json     kind "text-to-image": dataset, caption length, vocabulary, sampling defaults
//! DIR/vqvae/          the VQ-VAE folder as `kiln train vqvae` writes it (kind "vqvae")
//! DIR/prior/          the prior (kind "text-to-image-prior": PriorConfig + GPT-2 tensors)
//! DIR/clip/           optional: the CLIP reranker (kind "clip"), loaded with the model
//! ```
//!
//! Every part is a kiln model folder (`config.json` + `model.safetensors` with size and
//! checksum); loading checks that the parts agree (codebook size, grid, vocabulary, caption
//! length) and names the part and the mismatch when they do not.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use kiln_core::folder::{FolderConfig, ModelMeta, Tensors, CONFIG_FILE, FORMAT_VERSION};
use kiln_core::ModelFolder;
use kiln_data::shapes::{Vocabulary, IMAGE_SIZE};
use kiln_nn::{Error, Result};

use super::{CodeSampling, Prior, PriorConfig};
use crate::folder::var_builder;
use crate::vqvae::{tensor_to_images, VqVae, VqVaeConfig};

/// `kind` of the model folder's `config.json`.
pub const IMAGE_MODEL_KIND: &str = "text-to-image";
/// `kind` of `prior/config.json`.
pub const PRIOR_KIND: &str = "text-to-image-prior";
/// `kind` of `vqvae/config.json` (what `kiln train vqvae` writes).
pub const VQVAE_KIND: &str = "vqvae";
/// Pictures decoded per pass of the prior (each with its unconditional twin when guided).
const CHUNK: usize = 32;

/// How [`ImageModel::generate`] draws pictures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ImageSampling {
    /// Pictures returned, ≥ 1 (default 1).
    pub n: usize,
    /// Classifier-free guidance scale g ≥ 0: 1 is the conditional model alone, larger follows
    /// the caption more closely (default 3).
    pub guidance: f64,
    /// Softmax temperature ≥ 0; 0 always takes the most likely code (default 1).
    pub temperature: f64,
    /// Draw each code among the k most likely only; 0 draws among all (default 0).
    pub top_k: usize,
    /// Seed: the same seed and settings give the same pictures; picture i does not depend on
    /// `n` (default 0).
    pub seed: u64,
    /// Candidates drawn per kept picture, ≥ 1; above 1 a [`Reranker`] keeps the best of each
    /// group (default 1: no reranking).
    pub rerank: usize,
    /// Compose a shapes prompt of several fully described objects ("a small red circle in the
    /// top left and a large blue square in the center") from its objects' partial captions
    /// ([`crate::text2image::Prior::sample_composed`]), each object guided by its own caption
    /// (default false). Other prompts are drawn from the whole caption. Only for a prior
    /// trained with partial captions (`kiln train dalle --partial-captions`).
    pub compose: bool,
    /// Guidance scale of each object of a composed prompt, ≥ 0 (default `None`: `guidance`).
    /// Composition adds one guided term per object, so a composed prompt can want a smaller
    /// scale than a prompt drawn from one caption.
    pub compose_guidance: Option<f64>,
}

impl Default for ImageSampling {
    fn default() -> Self {
        Self {
            n: 1,
            guidance: 3.0,
            temperature: 1.0,
            top_k: 0,
            seed: 0,
            rerank: 1,
            compose: false,
            compose_guidance: None,
        }
    }
}

impl ImageSampling {
    /// Check every option, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::param("n", 0, "≥ 1"));
        }
        if self.rerank == 0 {
            return Err(Error::param("rerank", 0, "≥ 1 (1: no reranking)"));
        }
        for (name, v) in [
            ("guidance", self.guidance),
            ("temperature", self.temperature),
            ("compose_guidance", self.compose_guidance.unwrap_or(0.0)),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(name, v, "a finite number ≥ 0"));
            }
        }
        Ok(())
    }
}

/// Scores how well pictures match a caption (a CLIP-style model), to keep the best of several
/// candidates.
pub trait Reranker: Send + Sync {
    /// One score per picture, higher = better match. `images`: `n` pictures of 32·32·3 bytes,
    /// channels last (as kiln-data's `ShapesSample::image`).
    fn score(&self, caption: &str, images: &[u8], n: usize) -> Result<Vec<f32>>;

    /// Write the reranker as a model folder into `dir`, which [`ImageModel::load`] reads back
    /// from a model's `clip/`; `false` (and nothing written) for a reranker that has no
    /// folder form, such as a stand-in in a test.
    fn save(&self, _dir: &Path) -> Result<bool> {
        Ok(false)
    }
}

/// What the top `config.json` records under `"model"`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Settings {
    /// `"shapes"` or `"digits"`.
    dataset: String,
    /// Caption length L.
    caption_len: usize,
    /// The caption vocabulary, `<pad>` first.
    vocabulary: Vec<String>,
    /// Sampling defaults.
    #[serde(default)]
    sampling: ImageSampling,
}

/// One part (vqvae or prior) as read: its config and tensors, kept to save the folder again.
struct Part {
    config: FolderConfig,
    tensors: Tensors,
}

/// A text-to-image model: caption vocabulary, prior and VQ-VAE.
pub struct ImageModel {
    settings: Settings,
    vocabulary: Vocabulary,
    prior: Prior,
    vqvae: VqVae,
    parts: [Part; 2], // vqvae, prior
    reranker: Option<Box<dyn Reranker>>,
}

fn folder_err(path: &Path, message: impl Into<String>) -> Error {
    kiln_core::Error::folder(path, message).into()
}

fn no_meta() -> ModelMeta {
    ModelMeta {
        features: Vec::new(),
        target: "picture".into(),
        classes: None,
        preprocessing: None,
    }
}

impl ImageModel {
    /// Assemble a model from a VQ-VAE folder's parts (as `ModelFolder::load_parts` reads
    /// them) and a prior's config and tensors (what training produced), checking that they fit.
    pub fn new(
        dataset: &str,
        vocabulary: Vocabulary,
        sampling: ImageSampling,
        vqvae: (FolderConfig, Tensors),
        prior: (PriorConfig, Tensors),
    ) -> Result<Self> {
        let settings = Settings {
            dataset: dataset.to_string(),
            caption_len: prior.0.caption_len,
            vocabulary: vocabulary.words().to_vec(),
            sampling,
        };
        let prior_part = Part {
            config: FolderConfig {
                kind: PRIOR_KIND.into(),
                format_version: FORMAT_VERSION,
                kiln_version: env!("CARGO_PKG_VERSION").into(),
                meta: no_meta(),
                model: serde_json::to_value(&prior.0)
                    .map_err(|e| Error::shape(format!("serialising the prior config: {e}")))?,
                tensors_bytes: None,
                tensors_checksum: None,
            },
            tensors: prior.1,
        };
        let vq_part = Part {
            config: vqvae.0,
            tensors: vqvae.1,
        };
        Self::assemble(Path::new("(new model)"), settings, vq_part, prior_part)
    }

    /// Load the model folder `dir` (see the module docs for its layout).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(folder_err(
                dir,
                "not a folder; a text-to-image model is a folder with config.json, vqvae/ and prior/",
            ));
        }
        let top = ModelFolder::read_config(dir)?;
        let settings = settings_of(&dir.join(CONFIG_FILE), top)?;
        let part = |name: &str| -> Result<Part> {
            let sub = dir.join(name);
            if !sub.is_dir() {
                return Err(folder_err(
                    &sub,
                    format!(
                        "missing: a text-to-image model folder holds {name}/ beside config.json"
                    ),
                ));
            }
            let (config, tensors) = ModelFolder::load_parts(&sub)?;
            Ok(Part { config, tensors })
        };
        let mut model = Self::assemble(dir, settings, part("vqvae")?, part("prior")?)?;
        let clip = dir.join("clip");
        if clip.is_dir() {
            model.set_reranker(Box::new(crate::clip::Clip::load(&clip)?));
        }
        Ok(model)
    }

    /// Build from the bytes of the five files (for a model compiled into the binary); `name`
    /// labels errors.
    pub fn from_bytes(
        name: &str,
        config: &[u8],
        vqvae: (&[u8], &[u8]),
        prior: (&[u8], &[u8]),
    ) -> Result<Self> {
        let dir = PathBuf::from(name);
        let parse = |path: &Path, bytes: &[u8]| -> Result<FolderConfig> {
            serde_json::from_slice(bytes)
                .map_err(|e| folder_err(path, format!("not a kiln config.json: {e}")))
        };
        let settings = settings_of(&dir, parse(&dir, config)?)?;
        let part = |sub: &str, (c, t): (&[u8], &[u8])| -> Result<Part> {
            let path = dir.join(sub);
            Ok(Part {
                config: parse(&path, c)?,
                tensors: Tensors::from_bytes(t)
                    .map_err(|e| folder_err(&path, format!("model.safetensors: {e}")))?,
            })
        };
        Self::assemble(&dir, settings, part("vqvae", vqvae)?, part("prior", prior)?)
    }

    /// Check that the parts agree and build the networks.
    fn assemble(dir: &Path, settings: Settings, vq: Part, prior: Part) -> Result<Self> {
        let (vq_dir, prior_dir) = (dir.join("vqvae"), dir.join("prior"));
        if vq.config.kind != VQVAE_KIND {
            return Err(folder_err(
                &vq_dir,
                format!(
                    "holds a {:?} model, expected {VQVAE_KIND:?}",
                    vq.config.kind
                ),
            ));
        }
        if prior.config.kind != PRIOR_KIND {
            return Err(folder_err(
                &prior_dir,
                format!(
                    "holds a {:?} model, expected {PRIOR_KIND:?}",
                    prior.config.kind
                ),
            ));
        }
        let vq_cfg: VqVaeConfig = serde_json::from_value(vq.config.model.clone())
            .map_err(|e| folder_err(&vq_dir, format!("not a VQ-VAE config: {e}")))?;
        vq_cfg
            .validate()
            .map_err(|e| folder_err(&vq_dir, e.to_string()))?;
        let p_cfg: PriorConfig = serde_json::from_value(prior.config.model.clone())
            .map_err(|e| folder_err(&prior_dir, format!("not a prior config: {e}")))?;
        p_cfg
            .validate()
            .map_err(|e| folder_err(&prior_dir, e.to_string()))?;
        let vocabulary = Vocabulary::new(&settings.vocabulary);
        let checks = [
            (
                vq_cfg.in_channels == 3 && vq_cfg.image_size == IMAGE_SIZE,
                format!(
                    "the VQ-VAE draws {}×{} pictures with {} channels; expected {IMAGE_SIZE}×{IMAGE_SIZE} RGB",
                    vq_cfg.image_size, vq_cfg.image_size, vq_cfg.in_channels
                ),
            ),
            (
                vq_cfg.codebook_size == p_cfg.codebook_size,
                format!(
                    "the prior draws codes of a codebook of {}, the VQ-VAE has {}",
                    p_cfg.codebook_size, vq_cfg.codebook_size
                ),
            ),
            (
                p_cfg.colour_codes == 0 || p_cfg.colour_codes == vq_cfg.colour_codes,
                format!(
                    "the prior factors codes into {} colours, the VQ-VAE has {} colour codes",
                    p_cfg.colour_codes, vq_cfg.colour_codes
                ),
            ),
            (
                vq_cfg.grid() == p_cfg.grid,
                format!(
                    "the prior draws a {0}×{0} code grid, the VQ-VAE decodes {1}×{1}",
                    p_cfg.grid,
                    vq_cfg.grid()
                ),
            ),
            (
                vocabulary.len() == p_cfg.text_vocab && vocabulary.len() == settings.vocabulary.len(),
                format!(
                    "config.json lists {} caption words, the prior has a caption vocabulary of {}",
                    settings.vocabulary.len(),
                    p_cfg.text_vocab
                ),
            ),
            (
                settings.caption_len == p_cfg.caption_len,
                format!(
                    "config.json says captions of {} words, the prior reads {}",
                    settings.caption_len, p_cfg.caption_len
                ),
            ),
        ];
        if let Some((_, message)) = checks.into_iter().find(|(ok, _)| !ok) {
            return Err(folder_err(dir, format!("its parts do not fit: {message}")));
        }
        settings
            .sampling
            .validate()
            .map_err(|e| folder_err(&dir.join(CONFIG_FILE), format!("sampling defaults: {e}")))?;
        let vqvae = VqVae::new(vq_cfg, var_builder(&vq.tensors)?).map_err(|e| {
            folder_err(
                &vq_dir,
                format!("model.safetensors does not fit config.json: {e}"),
            )
        })?;
        let prior_net = Prior::new(p_cfg, var_builder(&prior.tensors)?).map_err(|e| {
            folder_err(
                &prior_dir,
                format!("model.safetensors does not fit config.json: {e}"),
            )
        })?;
        Ok(Self {
            settings,
            vocabulary,
            prior: prior_net,
            vqvae,
            parts: [vq, prior],
            reranker: None,
        })
    }

    /// Write the model folder into `dir` (created if missing): each file atomically, the
    /// reranker (if it has a folder form) into `clip/`, the top `config.json` last.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if let Some(r) = &self.reranker {
            r.save(&dir.join("clip"))?;
        }
        for (name, part) in ["vqvae", "prior"].iter().zip(&self.parts) {
            let c = &part.config;
            ModelFolder::save_parts(
                &dir.join(name),
                &c.kind,
                &c.meta,
                c.model.clone(),
                &part.tensors,
            )?;
        }
        let top = FolderConfig {
            kind: IMAGE_MODEL_KIND.into(),
            format_version: FORMAT_VERSION,
            kiln_version: env!("CARGO_PKG_VERSION").into(),
            meta: no_meta(),
            model: serde_json::to_value(&self.settings)
                .map_err(|e| Error::shape(format!("serialising config.json: {e}")))?,
            tensors_bytes: None,
            tensors_checksum: None,
        };
        let json = serde_json::to_vec_pretty(&top)
            .map_err(|e| Error::shape(format!("serialising config.json: {e}")))?;
        kiln_core::folder::write_atomic(&dir.join(CONFIG_FILE), &json)?;
        Ok(())
    }

    /// Use `r` for [`ImageSampling::rerank`] > 1.
    pub fn set_reranker(&mut self, r: Box<dyn Reranker>) {
        self.reranker = Some(r);
    }

    /// True when the model has a reranker (`rerank` > 1 is allowed).
    pub fn has_reranker(&self) -> bool {
        self.reranker.is_some()
    }

    /// The picture set the model was trained on: `"shapes"` or `"digits"`.
    pub fn dataset(&self) -> &str {
        &self.settings.dataset
    }

    /// The caption vocabulary (prompts may use these words only).
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The sampling defaults stored with the model.
    pub fn sampling(&self) -> &ImageSampling {
        &self.settings.sampling
    }

    /// Replace the sampling defaults (checked; `save` stores the new ones).
    pub fn set_sampling(&mut self, s: ImageSampling) -> Result<()> {
        s.validate()?;
        self.settings.sampling = s;
        Ok(())
    }

    /// The prior.
    pub fn prior(&self) -> &Prior {
        &self.prior
    }

    /// The VQ-VAE.
    pub fn vqvae(&self) -> &VqVae {
        &self.vqvae
    }

    /// Word ids of `prompt`, padded to the caption length; an error names unknown words (and
    /// lists the vocabulary) or a prompt too long.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        Ok(self
            .vocabulary
            .encode_padded(prompt, self.settings.caption_len)?)
    }

    /// The word ids of the captions [`ImageSampling::compose`] draws `prompt` from: one
    /// partial caption per object of a shapes prompt whose objects all name their size and
    /// cell (kiln-data's `partial_caption`, first template), else the prompt itself.
    pub fn caption_parts(&self, prompt: &str) -> Result<Vec<Vec<u32>>> {
        let whole = || Ok(vec![self.encode_prompt(prompt)?]);
        if self.settings.dataset != "shapes" {
            return whole();
        }
        let objects = kiln_data::shapes::parse_prompt(prompt)
            .ok()
            .and_then(|p| p.full_objects());
        match objects {
            Some(objects) if objects.len() > 1 => objects
                .iter()
                .map(|o| self.encode_prompt(&kiln_data::shapes::partial_caption(o, 0)))
                .collect(),
            _ => whole(),
        }
    }

    /// `s.n` pictures for `prompt`, each 32·32·3 bytes, channels last. With `s.rerank` > 1,
    /// `s.n · s.rerank` candidates are drawn and the reranker keeps the best of each group of
    /// `s.rerank`. Pictures are drawn 32 at a time (each caption row beside the picture's
    /// unconditional row, where guided or composed) through the prior's KV cache, then
    /// decoded together.
    pub fn generate(&self, prompt: &str, s: &ImageSampling) -> Result<Vec<Vec<u8>>> {
        s.validate()?;
        // the prompt's word ids first, so that unknown words are named before any other error
        let parts = match s.compose {
            true => self.caption_parts(prompt)?,
            false => vec![self.encode_prompt(prompt)?],
        };
        let reranker =
            match (s.rerank > 1, &self.reranker) {
                (false, _) => None,
                (true, Some(r)) => Some(r),
                (true, None) => return Err(Error::param(
                    "rerank",
                    s.rerank,
                    "1, since this model has no reranker (clip/ folder) to choose among candidates",
                )),
            };
        let total = s.n * s.rerank;
        let guidance = match parts.len() {
            1 => s.guidance,
            _ => s.compose_guidance.unwrap_or(s.guidance),
        };
        let code_sampling = CodeSampling {
            guidance,
            temperature: s.temperature,
            top_k: s.top_k,
        };
        let mut pictures: Vec<u8> = Vec::with_capacity(total * IMAGE_SIZE * IMAGE_SIZE * 3);
        let g = self.prior.config().grid;
        for start in (0..total).step_by(CHUNK) {
            let b = CHUNK.min(total - start);
            let mut rngs: Vec<kiln_core::Rng> = (start..start + b)
                .map(|i| kiln_core::rng(picture_seed(s.seed, i)))
                .collect();
            let captions = vec![parts.clone(); b];
            let codes = self
                .prior
                .sample_composed(&captions, &code_sampling, &mut rngs)?;
            let codes = Tensor::from_vec(codes.concat(), (b, g, g), &candle_core::Device::Cpu)?; // (B, G, G)
            pictures.extend(tensor_to_images(&self.vqvae.decode(&codes)?)?);
        }
        let size = IMAGE_SIZE * IMAGE_SIZE * 3;
        let mut out: Vec<Vec<u8>> = pictures.chunks(size).map(<[u8]>::to_vec).collect();
        if let Some(r) = reranker {
            let scores = r.score(prompt, &pictures, total)?;
            if scores.len() != total {
                return Err(Error::shape(format!(
                    "the reranker scored {} pictures, expected {total}",
                    scores.len()
                )));
            }
            let mut kept = Vec::with_capacity(s.n);
            for (group, sc) in scores.chunks(s.rerank).enumerate() {
                let best = sc
                    .iter()
                    .enumerate()
                    .fold(0, |b, (i, &v)| if v > sc[b] { i } else { b });
                kept.push(std::mem::take(&mut out[group * s.rerank + best]));
            }
            out = kept;
        }
        Ok(out)
    }
}

/// The seed of picture (candidate) `i` of a call with seed `seed` (SplitMix64 of both), so a
/// picture does not depend on how many are drawn beside it.
fn picture_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The settings of a top `config.json`, checking its kind.
fn settings_of(path: &Path, top: FolderConfig) -> Result<Settings> {
    if top.kind != IMAGE_MODEL_KIND {
        return Err(folder_err(
            path,
            format!(
                "holds a {:?} model, expected {IMAGE_MODEL_KIND:?}",
                top.kind
            ),
        ));
    }
    serde_json::from_value(top.model).map_err(|e| {
        folder_err(
            path,
            format!("\"model\" is not a text-to-image description: {e}"),
        )
    })
}

impl Reranker for crate::clip::Clip {
    fn score(&self, caption: &str, images: &[u8], n: usize) -> Result<Vec<f32>> {
        crate::clip::Clip::score(self, caption, images, n)
    }

    fn save(&self, dir: &Path) -> Result<bool> {
        crate::clip::Clip::save(self, dir)?;
        Ok(true)
    }
}

/// The bytes of one embedded part: `config.json` and `model.safetensors`.
macro_rules! embedded_part {
    ($dir:literal) => {
        (
            include_bytes!(concat!("../../assets/default-image/", $dir, "/config.json")).as_slice(),
            include_bytes!(concat!(
                "../../assets/default-image/",
                $dir,
                "/model.safetensors"
            ))
            .as_slice(),
        )
    };
}

/// kiln's default shapes model, compiled into the binary (`assets/default-image`: VQ-VAE,
/// prior and CLIP reranker; its README gives the commands that trained it).
pub fn embedded() -> Result<ImageModel> {
    let mut model = ImageModel::from_bytes(
        "(embedded default-image)",
        include_bytes!("../../assets/default-image/config.json"),
        embedded_part!("vqvae"),
        embedded_part!("prior"),
    )?;
    let (config, tensors) = embedded_part!("clip");
    let clip = crate::clip::Clip::from_bytes("(embedded default-image)/clip", config, tensors)?;
    model.set_reranker(Box::new(clip));
    Ok(model)
}
