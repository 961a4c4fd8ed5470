//! placeholder

pub mod idx;
pub mod text;
