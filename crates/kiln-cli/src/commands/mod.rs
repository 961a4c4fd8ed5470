//! One file per command.

pub mod datasets;
pub mod eval;
pub mod eval_image;
pub mod fit;
pub mod generate;
pub mod generate_image;
pub mod predict;
pub mod serve;
pub mod show;
pub mod tour;
pub mod tour_dl;
pub mod tour_gpt;
pub mod tour_image;
pub mod train;
