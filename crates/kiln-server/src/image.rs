//! Text-to-image generation: the [`ImageGenerator`] trait, implemented for kiln's
//! text-to-image models in [`crate::image_model`].

use crate::error::ModelError;
use crate::text::CancelFlag;

/// A model that draws images from a text prompt.
pub trait ImageGenerator: Send + Sync {
    /// The model's kind as written in its folder.
    fn kind(&self) -> &str;

    /// Width and height of the images it draws, in pixels.
    fn size(&self) -> (u32, u32);

    /// `n` images for `prompt`, each encoded as PNG; the same seed gives the same images.
    /// Runs on a blocking thread; stops early (with any error) when `cancel` is set.
    fn generate(
        &self,
        prompt: &str,
        n: usize,
        seed: u64,
        cancel: &CancelFlag,
    ) -> Result<Vec<Vec<u8>>, ModelError>;
}
