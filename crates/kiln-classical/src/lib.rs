//! placeholder

pub mod svm;
