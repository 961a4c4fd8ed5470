//! Progress reporting. The trainer calls an [`Observer`]; it never prints. [`Progress`] writes
//! either a one-line bar redrawn in place (for a terminal) or plain periodic lines (for logs)
//! to any writer — the CLI hands it stderr, or uses [`Silent`] for `--quiet`.

use std::io::Write;
use std::time::Instant;

use crate::history::Record;

/// Hooks the trainer calls as it goes. Every method has an empty default.
pub trait Observer {
    /// Before the first step (after `config.json` is written): steps already done, total.
    fn on_start(&mut self, _start_step: usize, _total_steps: usize) {}
    /// After each optimizer step, with its loss.
    fn on_step(&mut self, _step: usize, _loss: f64) {}
    /// After each history record (training or evaluation).
    fn on_record(&mut self, _record: &Record) {}
    /// After the last step.
    fn on_end(&mut self) {}
}

/// Reports nothing.
pub struct Silent;

impl Observer for Silent {}

/// Loss, metric, samples/s and ETA on a writer: a bar redrawn in place when `bar` is true,
/// one line per training record otherwise.
pub struct Progress<W: Write> {
    out: W,
    bar: bool,
    start: Option<(Instant, usize)>,
    total: usize,
    loss: Option<f64>,
    metric: Option<String>,
    rate: Option<f64>,
    last_draw: Option<Instant>,
}

impl<W: Write> Progress<W> {
    /// Report to `out`, as a bar when `bar` (stderr is a terminal).
    pub fn new(out: W, bar: bool) -> Self {
        Self {
            out,
            bar,
            start: None,
            total: 0,
            loss: None,
            metric: None,
            rate: None,
            last_draw: None,
        }
    }

    fn line(&self, step: usize) -> String {
        let eta = match self.start {
            Some((t0, s0)) if step > s0 => {
                let per = t0.elapsed().as_secs_f64() / (step - s0) as f64;
                let secs = (per * (self.total.saturating_sub(step)) as f64) as u64;
                format!("{}:{:02}", secs / 60, secs % 60)
            }
            _ => "?".to_string(),
        };
        let mut s = format!("step {step}/{}", self.total);
        if let Some(l) = self.loss {
            s.push_str(&format!(" loss {l:.4}"));
        }
        if let Some(m) = &self.metric {
            s.push(' ');
            s.push_str(m);
        }
        if let Some(r) = self.rate {
            s.push_str(&format!(" {r:.0} samples/s"));
        }
        s.push_str(&format!(" ETA {eta}"));
        s
    }
}

impl<W: Write> Observer for Progress<W> {
    fn on_start(&mut self, start_step: usize, total_steps: usize) {
        self.start = Some((Instant::now(), start_step));
        self.total = total_steps;
    }

    fn on_step(&mut self, step: usize, loss: f64) {
        // redraw at most ten times a second (and always on the last step)
        let due = self
            .last_draw
            .is_none_or(|t| t.elapsed().as_millis() >= 100)
            || step == self.total;
        if self.bar && due {
            self.last_draw = Some(Instant::now());
            self.loss = Some(loss);
            let width = 30;
            let filled = (width * step) / self.total.max(1);
            let bar = format!(
                "[{}{}]",
                "#".repeat(filled),
                ".".repeat(width - filled.min(width))
            );
            let _ = write!(self.out, "\r{bar} {}\x1b[K", self.line(step));
            let _ = self.out.flush();
        }
    }

    fn on_record(&mut self, r: &Record) {
        if r.kind == "eval" {
            self.metric = Some(match r.accuracy {
                Some(a) => format!("val_loss {:.4} val_acc {:.4}", r.loss, a),
                None => format!("val_loss {:.4}", r.loss),
            });
            if !self.bar {
                let _ = writeln!(
                    self.out,
                    "eval step {}: {}",
                    r.step,
                    self.metric.as_deref().unwrap_or("")
                );
            }
        } else {
            self.loss = Some(r.loss);
            self.rate = r.samples_per_sec;
            if !self.bar {
                let _ = writeln!(self.out, "{}", self.line(r.step));
            }
        }
    }

    fn on_end(&mut self) {
        if self.bar {
            let _ = writeln!(self.out);
        }
    }
}
