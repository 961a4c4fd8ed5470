//! # kiln-train: the training loop
//!
//! [`trainer::train`] drives any [`kiln_nn::TrainStep`] over any [`data::BatchSource`]; it
//! knows no architecture. A run is an artifact: [`TrainConfig`] is written to `config.json`
//! before the first step; `history.jsonl` gets one record per logged step and per evaluation;
//! checkpoints (weights, optimizer state, trainer state) are saved every N steps and at the end,
//! and `resume` continues exactly. Evaluation every N steps or each epoch keeps the best model;
//! early stopping, learning-rate [`schedule`]s, gradient clipping and a stop flag (Ctrl-C) are
//! built in. Progress goes to an [`progress::Observer`]; the library never prints.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use kiln_nn::{init::SeededVarMap, layers, loss, EvalSums, Mode, TrainStep};
//! use kiln_train::{data::TensorData, progress::Silent, trainer, RunOptions, TrainConfig};
//!
//! struct Line(candle_nn::Linear);
//! impl TrainStep for Line {
//!     type Batch = (Tensor, Tensor);
//!     fn loss(&self, (x, y): &Self::Batch, _: &Mode) -> kiln_nn::Result<Tensor> {
//!         loss::mse(&layers::apply(&self.0, x)?, y)
//!     }
//!     fn evaluate(&self, b: &Self::Batch) -> kiln_nn::Result<EvalSums> {
//!         let l = self.loss(b, &Mode::eval())?.to_scalar::<f32>()? as f64;
//!         Ok(EvalSums { loss_sum: l * b.0.dim(0)? as f64, count: b.0.dim(0)?, correct: None })
//!     }
//! }
//! let x = Tensor::arange(0f32, 8., &Device::Cpu).unwrap().reshape((8, 1)).unwrap();
//! let y = ((&x * 2.0).unwrap() + 1.0).unwrap();
//! let vars = SeededVarMap::new(0);
//! let model = Line(layers::linear(1, 1, vars.var_builder()).unwrap());
//! let data = TensorData::new(x, y).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let config = TrainConfig { batch_size: 4, steps: Some(20), ..Default::default() };
//! let report = trainer::train(&model, vars.var_map(), &data, None, &config,
//!     &RunOptions::new(dir.path()), &mut Silent).unwrap();
//! assert_eq!(report.steps, 20);
//! assert!(dir.path().join("config.json").exists());
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod data;
pub mod history;
pub mod progress;
pub mod schedule;
pub mod trainer;

pub use config::{EarlyStopping, Metric, TrainConfig};
pub use schedule::Schedule;
pub use trainer::{RunOptions, TrainReport};
