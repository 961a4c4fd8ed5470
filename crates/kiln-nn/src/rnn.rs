//! Recurrent layers with PyTorch's options and parameter names: [`Rnn`] covers `torch.nn.RNN`
//! (tanh or ReLU), `torch.nn.LSTM` and `torch.nn.GRU` with `num_layers`, `bidirectional`,
//! dropout between layers, `batch_first` and `bias`.
//!
//! Parameters are named and laid out as PyTorch's state dict (`weight_ih_l0` (G·H, I),
//! `weight_hh_l0` (G·H, H), `bias_ih_l0`, `bias_hh_l0`, and `..._reverse` for the backward
//! direction, G = 1, 4, 3 gates for RNN, LSTM, GRU; LSTM gates in the order i, f, g, o, GRU
//! gates r, z, n), so a PyTorch state dict saved as safetensors loads directly. All parameters
//! are initialised uniform on `±1/sqrt(hidden_size)`, as PyTorch does.
//!
//! Legend: T time, B batch, I input features, H hidden size, D directions (1 or 2),
//! L layers, G gates.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use crate::init::uniform;
use crate::kernels::rnn as rk;
use crate::layers::{Dropout, Mode};
use crate::{Error, Result};

/// Which recurrence a [`Rnn`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN with tanh: h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
    RnnTanh,
    /// Elman RNN with ReLU.
    RnnRelu,
    /// Long short-term memory (gates i, f, g, o).
    Lstm,
    /// Gated recurrent unit (gates r, z, n).
    Gru,
}

impl CellKind {
    /// Number of gates G (rows of `weight_ih` are G·H).
    pub fn gates(&self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// Options of a recurrent layer, with PyTorch's names and defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RnnConfig {
    /// Input features I (default 1).
    pub input_size: usize,
    /// Hidden size H (default 1).
    pub hidden_size: usize,
    /// Stacked layers L (default 1).
    pub num_layers: usize,
    /// Whether the cells have the bias vectors `bias_ih`, `bias_hh` (default true).
    pub bias: bool,
    /// Input and output are (B, T, ·) instead of (T, B, ·) (default false, as PyTorch).
    pub batch_first: bool,
    /// Dropout on the outputs of every layer except the last, in training (default 0).
    pub dropout: f64,
    /// Run a second, reversed direction and concatenate (default false).
    pub bidirectional: bool,
}

impl Default for RnnConfig {
    fn default() -> Self {
        Self {
            input_size: 1,
            hidden_size: 1,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
        }
    }
}

impl RnnConfig {
    /// A config with the given sizes and every other option at its default.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        Self {
            input_size,
            hidden_size,
            ..Self::default()
        }
    }

    /// Check every option: sizes ≥ 1, dropout in [0, 1).
    pub fn validate(&self) -> Result<()> {
        if self.input_size == 0 {
            return Err(Error::param("input_size", self.input_size, "≥ 1"));
        }
        if self.hidden_size == 0 {
            return Err(Error::param("hidden_size", self.hidden_size, "≥ 1"));
        }
        if self.num_layers == 0 {
            return Err(Error::param("num_layers", self.num_layers, "≥ 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::param("dropout", self.dropout, "in [0, 1)"));
        }
        Ok(())
    }

    /// Number of directions D.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}

/// Hidden state of a recurrent layer: `h` (L·D, B, H) and, for an LSTM, the cell state `c`
/// (L·D, B, H). Index `l·D + d` holds layer l, direction d, as in PyTorch.
#[derive(Debug, Clone)]
pub struct RnnState {
    /// Hidden state (L·D, B, H).
    pub h: Tensor,
    /// Cell state (L·D, B, H), LSTM only.
    pub c: Option<Tensor>,
}

struct Direction {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Option<Tensor>,
    b_hh: Option<Tensor>,
}

/// A multi-layer, optionally bidirectional RNN, LSTM or GRU.
pub struct Rnn {
    kind: CellKind,
    config: RnnConfig,
    /// layers[l][d]
    layers: Vec<Vec<Direction>>,
    dropout: Dropout,
    fused: bool,
}

impl Rnn {
    /// `torch.nn.RNN` with tanh.
    #[allow(clippy::self_named_constructors)]
    pub fn rnn(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(CellKind::RnnTanh, config, vb)
    }

    /// `torch.nn.RNN(nonlinearity='relu')`.
    pub fn rnn_relu(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(CellKind::RnnRelu, config, vb)
    }

    /// `torch.nn.LSTM`.
    pub fn lstm(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(CellKind::Lstm, config, vb)
    }

    /// `torch.nn.GRU`.
    pub fn gru(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(CellKind::Gru, config, vb)
    }

    /// A recurrent layer of the given kind; parameters come from `vb` under PyTorch's names.
    pub fn new(kind: CellKind, config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let (h, g, nd) = (config.hidden_size, kind.gates(), config.directions());
        let init = uniform(1.0 / (h as f64).sqrt());
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let in_dim = if l == 0 { config.input_size } else { h * nd };
            let mut dirs = Vec::with_capacity(nd);
            for d in 0..nd {
                let sfx = if d == 1 { "_reverse" } else { "" };
                let w_ih =
                    vb.get_with_hints((g * h, in_dim), &format!("weight_ih_l{l}{sfx}"), init)?;
                let w_hh = vb.get_with_hints((g * h, h), &format!("weight_hh_l{l}{sfx}"), init)?;
                let (b_ih, b_hh) = if config.bias {
                    (
                        Some(vb.get_with_hints(g * h, &format!("bias_ih_l{l}{sfx}"), init)?),
                        Some(vb.get_with_hints(g * h, &format!("bias_hh_l{l}{sfx}"), init)?),
                    )
                } else {
                    (None, None)
                };
                dirs.push(Direction {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                });
            }
            layers.push(dirs);
        }
        let dropout = Dropout::new(config.dropout)?;
        Ok(Self {
            kind,
            config,
            layers,
            dropout,
            fused: true,
        })
    }

    /// The options this layer was built with.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// The recurrence this layer runs.
    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// Run the sequence `xs` ((T, B, I), or (B, T, I) with `batch_first`) from the initial state
    /// `state` (zeros if `None`). Returns the top layer's outputs ((T, B, D·H) or (B, T, D·H))
    /// and the final state of every layer and direction.
    pub fn forward(
        &self,
        xs: &Tensor,
        state: Option<&RnnState>,
        mode: &Mode,
    ) -> Result<(Tensor, RnnState)> {
        let cfg = &self.config;
        let (h, nd) = (cfg.hidden_size, cfg.directions());
        if xs.rank() != 3 || xs.dim(2)? != cfg.input_size {
            let want = if cfg.batch_first {
                "(B, T, I)"
            } else {
                "(T, B, I)"
            };
            return Err(Error::shape(format!(
                "recurrent layer: expected input {want} with I = {}, got {:?}",
                cfg.input_size,
                xs.dims()
            )));
        }
        let mut x = if cfg.batch_first {
            xs.transpose(0, 1)?.contiguous()? // (B, T, I) -> (T, B, I)
        } else {
            xs.clone()
        };
        let (t_len, b) = (x.dim(0)?, x.dim(1)?);
        if t_len == 0 {
            return Err(Error::shape(
                "recurrent layer: the sequence is empty (T = 0)".to_string(),
            ));
        }
        let ld = cfg.num_layers * nd;
        let (h0, c0) = match state {
            Some(s) => {
                if s.h.dims() != [ld, b, h] {
                    return Err(Error::shape(format!(
                        "recurrent layer: initial h must be ({ld}, {b}, {h}), got {:?}",
                        s.h.dims()
                    )));
                }
                let c = match (self.kind, &s.c) {
                    (CellKind::Lstm, Some(c)) if c.dims() == [ld, b, h] => Some(c.clone()),
                    (CellKind::Lstm, _) => {
                        return Err(Error::shape(format!(
                            "LSTM: initial state needs c of shape ({ld}, {b}, {h})"
                        )))
                    }
                    _ => None,
                };
                (s.h.clone(), c)
            }
            None => {
                let z = Tensor::zeros((ld, b, h), x.dtype(), x.device())?;
                let c = (self.kind == CellKind::Lstm).then(|| z.clone());
                (z, c)
            }
        };
        let mut h_n = Vec::with_capacity(ld);
        let mut c_n = Vec::with_capacity(ld);
        for (l, dirs) in self.layers.iter().enumerate() {
            let mut outs = Vec::with_capacity(nd);
            for (d, p) in dirs.iter().enumerate() {
                let idx = l * nd + d;
                let h_init = h0.get(idx)?; // (B, H)
                let c_init = c0.as_ref().map(|c| c.get(idx)).transpose()?;
                let (out, hl, cl) = self.run_direction(p, &x, h_init, c_init, d == 1)?;
                outs.push(out);
                h_n.push(hl);
                if let Some(c) = cl {
                    c_n.push(c);
                }
            }
            x = if nd == 2 {
                Tensor::cat(&outs, D::Minus1)? // (T, B, 2H)
            } else {
                outs.remove(0)
            };
            if l + 1 < cfg.num_layers {
                x = self.dropout.forward(&x, mode)?;
            }
        }
        let out = if cfg.batch_first {
            x.transpose(0, 1)?.contiguous()? // (T, B, DH) -> (B, T, DH)
        } else {
            x
        };
        let h_n = Tensor::stack(&h_n, 0)?; // (L·D, B, H)
        let c_n = if c_n.is_empty() {
            None
        } else {
            Some(Tensor::stack(&c_n, 0)?)
        };
        Ok((out, RnnState { h: h_n, c: c_n }))
    }

    /// Use the fused whole-sequence kernels of [`crate::kernels::rnn`] for LSTM and GRU layers
    /// on the CPU (`true`, the default), or the plain step-by-step composition of candle ops
    /// (`false`: the reference the kernels are tested against).
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }

    /// One direction of one layer over x (T, B, In): outputs (T, B, H), final h and c (B, H).
    fn run_direction(
        &self,
        p: &Direction,
        x: &Tensor,
        mut h: Tensor,
        c: Option<Tensor>,
        reverse: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let w = rk::Weights {
            w_ih: &p.w_ih,
            w_hh: &p.w_hh,
            b_ih: p.b_ih.as_ref(),
            b_hh: p.b_hh.as_ref(),
        };
        let cell = || {
            c.as_ref()
                .ok_or_else(|| Error::shape("LSTM without cell state"))
        };
        match (self.kind, self.fused) {
            (CellKind::Lstm, true) => {
                let (out, h, c) = rk::lstm(x, w, &h, cell()?, reverse)?;
                return Ok((out, h, Some(c)));
            }
            (CellKind::Lstm, false) => {
                let (out, h, c) = rk::lstm_plain(x, w, &h, cell()?, reverse)?;
                return Ok((out, h, Some(c)));
            }
            (CellKind::Gru, true) => {
                let (out, h) = rk::gru(x, w, &h, reverse)?;
                return Ok((out, h, None));
            }
            (CellKind::Gru, false) => {
                let (out, h) = rk::gru_plain(x, w, &h, reverse)?;
                return Ok((out, h, None));
            }
            (CellKind::RnnTanh | CellKind::RnnRelu, _) => {}
        }
        let (t_len, b, in_dim) = x.dims3()?;
        // Input projections for all steps at once: (T·B, In) x (In, H) -> (T, B, H)
        let mut xw = x.reshape((t_len * b, in_dim))?.matmul(&p.w_ih.t()?)?;
        if let Some(bi) = &p.b_ih {
            xw = xw.broadcast_add(bi)?;
        }
        let xw = rk::split_time(&xw.reshape((t_len, b, ()))?)?; // T × (B, H)
        let w_hh_t = p.w_hh.t()?; // (H, H)
        let mut outs: Vec<Tensor> = Vec::with_capacity(t_len);
        for step in 0..t_len {
            let t = if reverse { t_len - 1 - step } else { step };
            let mut hw = h.matmul(&w_hh_t)?; // (B, H) x (H, H) -> (B, H)
            if let Some(bh) = &p.b_hh {
                hw = hw.broadcast_add(bh)?;
            }
            h = if self.kind == CellKind::RnnRelu {
                (&xw[t] + hw)?.relu()?
            } else {
                (&xw[t] + hw)?.tanh()?
            };
            outs.push(h.clone());
        }
        if reverse {
            outs.reverse();
        }
        let out = Tensor::stack(&outs, 0)?; // (T, B, H)
        Ok((out, h, c))
    }
}
