//! GPT-2: the model ([`Gpt2`]), its Hugging Face config ([`Gpt2Config`]), text generation
//! ([`generate::generate`], [`GenerationConfig`]) and loading of Hugging Face folders
//! ([`load::load_folder`]).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use kiln_models::gpt2::{Gpt2, Gpt2Config};
//! use kiln_nn::init::SeededVarMap;
//! let cfg = Gpt2Config { vocab_size: 50, n_positions: 16, n_embd: 8, n_layer: 2, n_head: 2,
//!                        bos_token_id: None, eos_token_id: None, ..Default::default() };
//! let vars = SeededVarMap::new(0);
//! let model = Gpt2::new(&cfg, vars.var_builder()).unwrap();
//! let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
//! assert_eq!(model.forward(&ids, None, None).unwrap().dims(), &[1, 3, 50]);
//! ```

pub mod config;
pub mod embedded;
pub mod generate;
pub mod load;
pub mod model;
pub mod quant;
pub mod save;
pub mod train;

pub use config::Gpt2Config;
pub use generate::{generate, GenerationConfig, GenerationOutput};
pub use model::{Gpt2, KvCache};
pub use quant::WeightDtype;
