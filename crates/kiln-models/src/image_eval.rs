//! The prompt-fidelity benchmark of text-to-image models: do the pictures show what the prompt
//! asked for?
//!
//! A model is anything that implements [`ImageSource`] (it draws `n` pictures for a prompt).
//! Its pictures are read by a judge trained on ground-truth renders, never on generated
//! pictures: for shapes, the [`Judge`] (per grid cell: an object or not, its shape, colour and
//! size; [`embedded_shapes_judge`]); for digits, LeNet-5 trained on MNIST
//! ([`embedded_digits_judge`]), which reads a generated 32×32 RGB digit after
//! [`digit_from_rgb32`] (the exact inverse of kiln-data's `captioned_digits::to_rgb32`).
//! The command is `kiln eval image-model --model DIR [--prompts seen|held-out|FILE]`.
//!
//! ## Prompt sets
//! * [`seen_prompts`]: a fixed seeded list of 24 one-object and 24 two-object prompts whose
//!   objects use no held-out combination (captions in every template).
//! * [`held_out_prompt_set`]: the 32 one-object prompts of kiln-data's `held_out_prompts()`
//!   and 32 two-object prompts, each pairing one of those held-out objects with a seen object
//!   (fully specified templates, so the held-out shape–cell pairs are stated).
//! * [`parse_prompt_lines`]: a file of prompts, one per line (blank lines and lines starting
//!   with `#` skipped); a prompt is held out when an object uses a held-out shape–colour pair,
//!   or a held-out shape–cell pair with its cell stated ([`prompt_is_held_out`]).
//! * Digits ([`digit_prompts`]): the ten digits with each caption template (40 prompts).
//!
//! ## Scoring a shapes picture ([`score_picture`])
//! For each object the prompt asks for:
//! * with a stated cell, the judge's reading of that cell is the object: **position** is right
//!   when the judge sees an object there; **shape**, **colour** and (if the prompt states it)
//!   **size** are right when the object read in that cell has them (all wrong when the cell is
//!   empty);
//! * without a stated cell, the object is matched to an occupied cell no other requested object
//!   claims, choosing the assignment that agrees with the most requested attributes (ties: the
//!   lowest cells); position is not scored; shape, colour and size are scored on the matched
//!   cell (all wrong when none is left).
//!
//! A picture is **all-correct** when every requested attribute of every object is right and
//! the judge sees no other object (occupied cells = requested objects). Accuracies are counted
//! over objects: shape and colour over every requested object, size over objects whose size
//! was stated, position over objects whose cell was stated; all-correct over pictures.
//! Results are reported for one-object and two-object prompts, seen and held-out, with and
//! without reranking, as a [`ShapesReport`]. Digits: the fraction of pictures the classifier
//! reads as the requested digit ([`DigitsReport`]).
//!
//! ```
//! use kiln_models::image_eval::{score_picture, seen_prompts, prompt_is_held_out};
//! use kiln_models::judge::CellReading;
//! let prompts = seen_prompts();
//! assert!(prompts.iter().all(|p| !prompt_is_held_out(p)));
//! // a judge reading that sees exactly the first prompt's objects
//! let mut cells = [CellReading { present: false, shape: 0, colour: 0, size: 0 }; 9];
//! let p = &prompts[0];
//! let o = p.objects[0];
//! let cell = o.cell.map_or(0, |c| c.index());
//! cells[cell] = CellReading { present: true, shape: o.shape.index(), colour: o.colour.index(),
//!                             size: o.size.map_or(0, |s| s.index()) };
//! assert!(score_picture(&p.objects, &cells).all_correct);
//! ```

use candle_core::Tensor;
use kiln_data::captioned_digits::{caption_digit, parse_digit_prompt, DIGIT_TEMPLATES};
use kiln_data::shapes::{
    caption, held_out_prompts, is_held_out, parse_prompt, Cell, Colour, ObjectSpec, Prompt,
    ShapeKind, ShapeObject, Size, HELD_OUT_SHAPE_CELL, HELD_OUT_SHAPE_COLOUR, IMAGE_SIZE,
};
use kiln_nn::{Error, Mode, Result};
use rand::Rng as _;

use crate::cnn::{LeNet5, LeNetConfig};
use crate::judge::{CellReading, Judge, JudgeConfig, CELLS};
use crate::vqvae::images_to_tensor;

/// A text-to-image model as the benchmark sees it.
pub trait ImageSource {
    /// The captions it was trained on: `"shapes"` or `"digits"`.
    fn dataset(&self) -> &str;

    /// `n` pictures for `prompt`, each `32 · 32 · 3` bytes (rows top to bottom, RGB per
    /// pixel), drawn from `seed`; with `rerank`, the model keeps its best candidates.
    fn draw(&self, prompt: &str, n: usize, seed: u64, rerank: bool) -> Result<Vec<Vec<u8>>>;
}

/// Reads shapes pictures cell by cell (the [`Judge`], or a stand-in in tests).
pub trait ShapesReader {
    /// What is in each of the 9 cells of each picture.
    fn read_pictures(&self, pictures: &[Vec<u8>]) -> Result<Vec<[CellReading; CELLS]>>;
}

/// Reads which digit each picture shows (LeNet-5, or a stand-in in tests).
pub trait DigitReader {
    /// The digit (0..=9) each 32×32 RGB picture shows.
    fn read_digits(&self, pictures: &[Vec<u8>]) -> Result<Vec<u8>>;
}

const PICTURE_BYTES: usize = IMAGE_SIZE * IMAGE_SIZE * 3;

/// Pictures as one tensor (B, 3, 32, 32) in [0, 1]; an error names a picture of the wrong size.
fn pictures_tensor(pictures: &[Vec<u8>]) -> Result<Tensor> {
    let mut bytes = Vec::with_capacity(pictures.len() * PICTURE_BYTES);
    for (i, p) in pictures.iter().enumerate() {
        if p.len() != PICTURE_BYTES {
            return Err(Error::shape(format!(
                "picture {i} has {} bytes, expected 32·32·3 = {PICTURE_BYTES}",
                p.len()
            )));
        }
        bytes.extend_from_slice(p);
    }
    images_to_tensor(&bytes, pictures.len(), 3, IMAGE_SIZE)
}

/// Pictures per forward pass of a judge.
const JUDGE_BATCH: usize = 256;

impl ShapesReader for Judge {
    fn read_pictures(&self, pictures: &[Vec<u8>]) -> Result<Vec<[CellReading; CELLS]>> {
        let mut out = Vec::with_capacity(pictures.len());
        for chunk in pictures.chunks(JUDGE_BATCH) {
            out.extend(self.read(&pictures_tensor(chunk)?)?);
        }
        Ok(out)
    }
}

/// The 28×28 grey digit inside a 32×32 RGB picture: the centre crop (2 pixels off each side),
/// each pixel the rounded mean of red, green and blue. The exact inverse of kiln-data's
/// `captioned_digits::to_rgb32` for a 28×28 digit (whose pixels have red = green = blue).
pub fn digit_from_rgb32(picture: &[u8]) -> Result<Vec<u8>> {
    if picture.len() != PICTURE_BYTES {
        return Err(Error::shape(format!(
            "a digit picture has 32·32·3 = {PICTURE_BYTES} bytes, got {}",
            picture.len()
        )));
    }
    let (side, off) = (28, (IMAGE_SIZE - 28) / 2);
    let mut out = Vec::with_capacity(side * side);
    for r in 0..side {
        for c in 0..side {
            let i = ((r + off) * IMAGE_SIZE + c + off) * 3;
            let sum: u32 = picture[i..i + 3].iter().map(|&v| u32::from(v)).sum();
            out.push(((sum + 1) / 3) as u8);
        }
    }
    Ok(out)
}

impl DigitReader for LeNet5 {
    fn read_digits(&self, pictures: &[Vec<u8>]) -> Result<Vec<u8>> {
        let cfg = self.config();
        if cfg.in_channels != 1 || cfg.image_size != 28 || cfg.num_classes != 10 {
            return Err(Error::shape(format!(
                "the digits judge is LeNet-5 on 28×28 grey MNIST with 10 classes, this one takes \
                 {} channel(s) of {}×{} with {} classes",
                cfg.in_channels, cfg.image_size, cfg.image_size, cfg.num_classes
            )));
        }
        let mut out = Vec::with_capacity(pictures.len());
        for chunk in pictures.chunks(JUDGE_BATCH) {
            let mut px = Vec::with_capacity(chunk.len() * 28 * 28);
            for p in chunk {
                px.extend(digit_from_rgb32(p)?.into_iter().map(|v| v as f32 / 255.0));
            }
            let x = Tensor::from_vec(px, (chunk.len(), 1, 28, 28), &candle_core::Device::Cpu)?; // (B, 1, 28, 28)
            let logits = self.forward(&x, &Mode::eval())?; // (B, 10)
            let d: Vec<u32> = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
            out.extend(d.into_iter().map(|v| v as u8));
        }
        Ok(out)
    }
}

/// The `kind` of the shapes judge's model folder (written by `kiln train judge`).
pub const SHAPES_JUDGE_KIND: &str = "shapes_judge";
/// The `kind` of the digits judge's model folder (written by `kiln train cnn --arch lenet5`).
pub const DIGITS_JUDGE_KIND: &str = "lenet5";

const SHAPES_JUDGE_CONFIG: &[u8] = include_bytes!("../assets/shapes-judge/config.json");
const SHAPES_JUDGE_TENSORS: &[u8] = include_bytes!("../assets/shapes-judge/model.safetensors");
const DIGITS_JUDGE_CONFIG: &[u8] = include_bytes!("../assets/digits-judge/config.json");
const DIGITS_JUDGE_TENSORS: &[u8] = include_bytes!("../assets/digits-judge/model.safetensors");

/// The shapes judge shipped in the binary (`assets/shapes-judge/`; its README gives the
/// command that trained it and its accuracy on fresh renders).
pub fn embedded_shapes_judge() -> Result<Judge> {
    let (config, vb) =
        crate::folder::from_bytes(SHAPES_JUDGE_CONFIG, SHAPES_JUDGE_TENSORS, SHAPES_JUDGE_KIND)?;
    let jc: JudgeConfig = serde_json::from_value(config.model)
        .map_err(|e| Error::shape(format!("embedded shapes judge config.json: {e}")))?;
    Judge::new(jc, vb)
}

/// The digits judge shipped in the binary: LeNet-5 trained on MNIST (`assets/digits-judge/`;
/// its README gives the command and the test accuracy).
pub fn embedded_digits_judge() -> Result<LeNet5> {
    let (config, vb) =
        crate::folder::from_bytes(DIGITS_JUDGE_CONFIG, DIGITS_JUDGE_TENSORS, DIGITS_JUDGE_KIND)?;
    let lc: LeNetConfig = serde_json::from_value(config.model)
        .map_err(|e| Error::shape(format!("embedded digits judge config.json: {e}")))?;
    LeNet5::new(lc, vb)
}

// ---------------------------------------------------------------------------------------------
// Prompt sets

/// Seed of the fixed list of [`seen_prompts`].
pub const SEEN_PROMPTS_SEED: u64 = 0x5EE2;
/// Seed of the partners of the two-object prompts of [`held_out_prompt_set`].
pub const HELD_OUT_PROMPTS_SEED: u64 = 0x40E1D;
/// One-object (and two-object) prompts in [`seen_prompts`].
pub const SEEN_PER_COUNT: usize = 24;

/// True if an object the prompt asks for uses a held-out shape–colour pair, or a held-out
/// shape–cell pair with its cell stated.
pub fn prompt_is_held_out(p: &Prompt) -> bool {
    p.objects.iter().any(spec_is_held_out)
}

fn spec_is_held_out(o: &ObjectSpec) -> bool {
    HELD_OUT_SHAPE_COLOUR.contains(&(o.shape, o.colour))
        || o.cell
            .is_some_and(|c| HELD_OUT_SHAPE_CELL.contains(&(o.shape, c)))
}

fn pick<T: Copy>(items: &[T], rng: &mut kiln_core::Rng) -> T {
    items[rng.random_range(0..items.len())]
}

/// A random object with no held-out combination, in another cell and of another (shape,
/// colour) than each object of `taken`.
fn seen_object(rng: &mut kiln_core::Rng, taken: &[ShapeObject]) -> ShapeObject {
    loop {
        let o = ShapeObject {
            shape: pick(&ShapeKind::ALL, rng),
            colour: pick(&Colour::ALL, rng),
            size: pick(&Size::ALL, rng),
            cell: Cell(rng.random_range(0..9)),
        };
        let clash = taken
            .iter()
            .any(|t| t.cell == o.cell || (t.shape == o.shape && t.colour == o.colour));
        if !is_held_out(&o) && !clash {
            return o;
        }
    }
}

/// The fixed list of seen prompts: [`SEEN_PER_COUNT`] one-object prompts, then as many
/// two-object prompts, objects drawn from [`SEEN_PROMPTS_SEED`] with no held-out combination,
/// captions cycling through every template.
pub fn seen_prompts() -> Vec<Prompt> {
    let mut rng = kiln_core::rng(SEEN_PROMPTS_SEED);
    let mut out = Vec::with_capacity(2 * SEEN_PER_COUNT);
    for count in [1, 2] {
        for i in 0..SEEN_PER_COUNT {
            let mut objects = Vec::new();
            for _ in 0..count {
                let o = seen_object(&mut rng, &objects);
                objects.push(o);
            }
            out.push(caption(&objects, i));
        }
    }
    out
}

/// The held-out prompt set: kiln-data's `held_out_prompts()` (32 one-object prompts, each
/// using one held-out combination), then 32 two-object prompts, each pairing one of those
/// objects with a seen object drawn from [`HELD_OUT_PROMPTS_SEED`], the held-out object first
/// or second in turn, in the two fully specified two-object templates.
pub fn held_out_prompt_set() -> Vec<Prompt> {
    let one = held_out_prompts();
    let mut rng = kiln_core::rng(HELD_OUT_PROMPTS_SEED);
    let mut two = Vec::with_capacity(one.len());
    for (i, p) in one.iter().enumerate() {
        let s = p.objects[0];
        let held = ShapeObject {
            shape: s.shape,
            colour: s.colour,
            size: s.size.unwrap_or(Size::Small),
            cell: s.cell.unwrap_or(Cell(0)),
        };
        let partner = seen_object(&mut rng, &[held]);
        let objects = if i % 2 == 0 {
            [held, partner]
        } else {
            [partner, held]
        };
        two.push(caption(&objects, 1 + (i / 2) % 2));
    }
    one.into_iter().chain(two).collect()
}

/// The lines of a prompt file: trimmed, blank lines and `#` comments skipped; an error when
/// none is left.
fn prompt_lines(text: &str) -> Result<Vec<(usize, &str)>> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return Err(Error::Core(kiln_core::Error::InvalidData(
            "the prompt file holds no prompt: expected one prompt per line, e.g. \
             \"a small red circle in the top left\""
                .into(),
        )));
    }
    Ok(lines)
}

fn line_error(line: usize, text: &str, e: impl std::fmt::Display) -> Error {
    Error::Core(kiln_core::Error::InvalidData(format!(
        "prompt file line {line} ({text:?}): {e}"
    )))
}

/// Shapes prompts, one per line of `text` (blank lines and `#` comments skipped); an error
/// names the line and what is wrong (unknown words, no colour or shape, too many objects,
/// two objects in one cell).
pub fn parse_prompt_lines(text: &str) -> Result<Vec<Prompt>> {
    let mut out = Vec::new();
    for (n, line) in prompt_lines(text)? {
        let p = parse_prompt(line).map_err(|e| line_error(n, line, e))?;
        if p.objects.is_empty() {
            return Err(line_error(n, line, "asks for no object"));
        }
        if let [a, b] = p.objects.as_slice() {
            if a.cell.is_some() && a.cell == b.cell {
                return Err(line_error(n, line, "puts both objects in the same cell"));
            }
        }
        out.push(p);
    }
    Ok(out)
}

/// A digits prompt and the digit it asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DigitPrompt {
    /// The caption.
    pub text: String,
    /// The requested digit.
    pub digit: u8,
}

/// The ten digits with each caption template (template-major: 40 prompts).
pub fn digit_prompts() -> Vec<DigitPrompt> {
    (0..DIGIT_TEMPLATES)
        .flat_map(|t| {
            (0..10u8).map(move |d| DigitPrompt {
                text: caption_digit(d, t),
                digit: d,
            })
        })
        .collect()
}

/// Digits prompts, one per line of `text` (blank lines and `#` comments skipped); an error
/// names the line and what is wrong.
pub fn parse_digit_prompt_lines(text: &str) -> Result<Vec<DigitPrompt>> {
    prompt_lines(text)?
        .into_iter()
        .map(|(n, line)| {
            let digit = parse_digit_prompt(line).map_err(|e| line_error(n, line, e))?;
            Ok(DigitPrompt {
                text: line.to_string(),
                digit,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scoring

/// The verdict on one requested object of one picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ObjectVerdict {
    /// The cell the object was read in: the stated cell if the judge sees an object there, or
    /// the matched cell; `None` when there is none.
    pub cell: Option<usize>,
    /// An object in the stated cell (`None` when the prompt left the position open).
    pub position: Option<bool>,
    /// The shape read there is the requested one.
    pub shape: bool,
    /// The colour read there is the requested one.
    pub colour: bool,
    /// The size read there is the requested one (`None` when the prompt left it open).
    pub size: Option<bool>,
}

impl ObjectVerdict {
    /// Every requested attribute is right.
    pub fn all_right(&self) -> bool {
        self.cell.is_some()
            && self.position.unwrap_or(true)
            && self.shape
            && self.colour
            && self.size.unwrap_or(true)
    }
}

/// The verdict on one picture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PictureVerdict {
    /// One verdict per requested object, in the prompt's order.
    pub objects: Vec<ObjectVerdict>,
    /// Objects the judge sees beyond the requested ones.
    pub extra_objects: usize,
    /// Every requested attribute right and no extra object.
    pub all_correct: bool,
}

fn verdict(spec: &ObjectSpec, reading: &CellReading, cell: Option<usize>) -> ObjectVerdict {
    let seen = cell.is_some() && reading.present;
    ObjectVerdict {
        cell: if seen { cell } else { None },
        position: spec.cell.map(|_| seen),
        shape: seen && reading.shape == spec.shape.index(),
        colour: seen && reading.colour == spec.colour.index(),
        size: spec.size.map(|s| seen && reading.size == s.index()),
    }
}

/// Requested attributes that agree with a reading (shape, colour, size if stated).
fn agreement(spec: &ObjectSpec, r: &CellReading) -> usize {
    usize::from(r.shape == spec.shape.index())
        + usize::from(r.colour == spec.colour.index())
        + spec.size.map_or(0, |s| usize::from(r.size == s.index()))
}

/// Score one picture's judge reading against the objects a prompt asks for (see the module
/// documentation for the rules).
pub fn score_picture(specs: &[ObjectSpec], cells: &[CellReading; CELLS]) -> PictureVerdict {
    let empty = CellReading {
        present: false,
        shape: 0,
        colour: 0,
        size: 0,
    };
    let mut verdicts: Vec<Option<ObjectVerdict>> = vec![None; specs.len()];
    let mut claimed = [false; CELLS];
    for (v, s) in verdicts.iter_mut().zip(specs) {
        if let Some(c) = s.cell {
            let i = c.index();
            claimed[i] = true;
            *v = Some(verdict(s, &cells[i], Some(i)));
        }
    }
    // objects without a stated cell: the assignment to distinct free occupied cells that
    // agrees with the most requested attributes (first found wins ties: lowest cells)
    let open: Vec<usize> = (0..specs.len())
        .filter(|&k| specs[k].cell.is_none())
        .collect();
    let free: Vec<usize> = (0..CELLS)
        .filter(|&i| cells[i].present && !claimed[i])
        .collect();
    let mut best: (isize, Vec<Option<usize>>) = (-1, vec![None; open.len()]);
    let mut choice = vec![None; open.len()];
    assign(&open, &free, specs, cells, 0, &mut choice, &mut best);
    for (&k, &cell) in open.iter().zip(&best.1) {
        let r = cell.map_or(&empty, |i| &cells[i]);
        verdicts[k] = Some(verdict(&specs[k], r, cell));
    }
    let objects: Vec<ObjectVerdict> = verdicts.into_iter().flatten().collect();
    let found = objects.iter().filter(|o| o.cell.is_some()).count();
    let present = cells.iter().filter(|c| c.present).count();
    let extra_objects = present.saturating_sub(found);
    let all_correct = extra_objects == 0 && objects.iter().all(ObjectVerdict::all_right);
    PictureVerdict {
        objects,
        extra_objects,
        all_correct,
    }
}

/// Depth-first search over assignments of the objects `open[j..]` to distinct cells of `free`
/// or to none, keeping the one with the highest score: 10 per object given a cell (so as many
/// objects as possible get one) plus its agreement.
fn assign(
    open: &[usize],
    free: &[usize],
    specs: &[ObjectSpec],
    cells: &[CellReading; CELLS],
    j: usize,
    choice: &mut [Option<usize>],
    best: &mut (isize, Vec<Option<usize>>),
) {
    if j == open.len() {
        let score: isize = open
            .iter()
            .zip(choice.iter())
            .map(|(&k, c)| c.map_or(0, |i| 10 + agreement(&specs[k], &cells[i]) as isize))
            .sum();
        if score > best.0 {
            *best = (score, choice.to_vec());
        }
        return;
    }
    for &i in free {
        if !choice[..j].contains(&Some(i)) {
            choice[j] = Some(i);
            assign(open, free, specs, cells, j + 1, choice, best);
        }
    }
    choice[j] = None;
    assign(open, free, specs, cells, j + 1, choice, best);
}

// ---------------------------------------------------------------------------------------------
// Reports

/// Counts over a group of pictures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Prompts.
    pub prompts: usize,
    /// Pictures judged.
    pub pictures: usize,
    /// Pictures with every requested attribute right and no extra object.
    pub all_correct: usize,
    /// Requested objects (the denominator of shape and colour).
    pub objects: usize,
    /// Objects with the right shape.
    pub shape_right: usize,
    /// Objects with the right colour.
    pub colour_right: usize,
    /// Objects whose size was stated.
    pub sizes_asked: usize,
    /// Of those, with the right size.
    pub size_right: usize,
    /// Objects whose cell was stated.
    pub positions_asked: usize,
    /// Of those, with an object in the stated cell.
    pub position_right: usize,
}

impl Tally {
    /// Count one picture's verdict.
    pub fn add_picture(&mut self, v: &PictureVerdict) {
        self.pictures += 1;
        self.all_correct += usize::from(v.all_correct);
        for o in &v.objects {
            self.objects += 1;
            self.shape_right += usize::from(o.shape);
            self.colour_right += usize::from(o.colour);
            if let Some(s) = o.size {
                self.sizes_asked += 1;
                self.size_right += usize::from(s);
            }
            if let Some(p) = o.position {
                self.positions_asked += 1;
                self.position_right += usize::from(p);
            }
        }
    }

    /// Add another tally.
    pub fn add(&mut self, o: &Tally) {
        self.prompts += o.prompts;
        self.pictures += o.pictures;
        self.all_correct += o.all_correct;
        self.objects += o.objects;
        self.shape_right += o.shape_right;
        self.colour_right += o.colour_right;
        self.sizes_asked += o.sizes_asked;
        self.size_right += o.size_right;
        self.positions_asked += o.positions_asked;
        self.position_right += o.position_right;
    }

    /// The rates of this tally.
    pub fn rates(&self) -> Rates {
        let r = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        Rates {
            shape: r(self.shape_right, self.objects),
            colour: r(self.colour_right, self.objects),
            size: r(self.size_right, self.sizes_asked),
            position: r(self.position_right, self.positions_asked),
            all_correct: r(self.all_correct, self.pictures),
        }
    }
}

/// Accuracies of a [`Tally`] (`None` where nothing was asked).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rates {
    /// Shape accuracy over requested objects.
    pub shape: Option<f64>,
    /// Colour accuracy over requested objects.
    pub colour: Option<f64>,
    /// Size accuracy over objects whose size was stated.
    pub size: Option<f64>,
    /// Position accuracy over objects whose cell was stated.
    pub position: Option<f64>,
    /// All-correct rate over pictures.
    pub all_correct: Option<f64>,
}

/// Whether the prompts of a group use held-out combinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combinations {
    /// Only combinations the generator's training data holds.
    Seen,
    /// At least one held-out combination per prompt.
    HeldOut,
}

impl Combinations {
    fn of(p: &Prompt) -> Self {
        if prompt_is_held_out(p) {
            Combinations::HeldOut
        } else {
            Combinations::Seen
        }
    }

    fn name(self) -> &'static str {
        match self {
            Combinations::Seen => "seen",
            Combinations::HeldOut => "held-out",
        }
    }
}

/// One line of the report: a group of prompts (object count, seen or held-out) drawn with or
/// without reranking.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupScores {
    /// Objects per prompt (1 or 2).
    pub objects: usize,
    /// Seen or held-out combinations.
    pub combinations: Combinations,
    /// Drawn with reranking.
    pub rerank: bool,
    /// The counts.
    pub counts: Tally,
    /// The accuracies.
    pub rates: Rates,
}

/// One prompt's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PromptScores {
    /// The prompt.
    pub prompt: String,
    /// Seen or held-out combinations.
    pub combinations: Combinations,
    /// Drawn with reranking.
    pub rerank: bool,
    /// The counts over its pictures.
    pub counts: Tally,
    /// Each picture's verdict.
    pub pictures: Vec<PictureVerdict>,
}

/// The prompt-fidelity report on shapes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShapesReport {
    /// Pictures per prompt.
    pub samples: usize,
    /// The seed the pictures were drawn from.
    pub seed: u64,
    /// Per group (objects × combinations × rerank), in that order.
    pub groups: Vec<GroupScores>,
    /// Per prompt and rerank setting.
    pub prompts: Vec<PromptScores>,
}

/// Evaluation settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EvalSettings {
    /// Pictures drawn per prompt, ≥ 1 (default 8).
    pub samples: usize,
    /// Seed of the drawing: prompt `i` draws from `seed + i` (default 0).
    pub seed: u64,
    /// Rerank settings to evaluate, each a pass over every prompt (default `[false, true]`).
    pub rerank: Vec<bool>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            samples: 8,
            seed: 0,
            rerank: vec![false, true],
        }
    }
}

impl EvalSettings {
    /// Check every option.
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 {
            return Err(Error::param("samples", 0, "≥ 1"));
        }
        if self.rerank.is_empty() {
            return Err(Error::param("rerank", "[]", "at least one of false, true"));
        }
        Ok(())
    }
}

fn check_drawn(pictures: &[Vec<u8>], n: usize, prompt: &str) -> Result<()> {
    if pictures.len() != n {
        return Err(Error::shape(format!(
            "the model drew {} pictures for {prompt:?}, {n} were asked",
            pictures.len()
        )));
    }
    Ok(())
}

fn check_dataset(source: &dyn ImageSource, expected: &str) -> Result<()> {
    if source.dataset() != expected {
        return Err(Error::Core(kiln_core::Error::InvalidData(format!(
            "the model draws {:?} pictures, this benchmark needs a {expected:?} model",
            source.dataset()
        ))));
    }
    Ok(())
}

/// Draw `settings.samples` pictures for each prompt (once per rerank setting), read them with
/// `judge` and score them.
pub fn evaluate_shapes(
    source: &dyn ImageSource,
    judge: &dyn ShapesReader,
    prompts: &[Prompt],
    settings: &EvalSettings,
) -> Result<ShapesReport> {
    settings.validate()?;
    check_dataset(source, "shapes")?;
    let mut per_prompt = Vec::new();
    for &rerank in &settings.rerank {
        for (i, p) in prompts.iter().enumerate() {
            let seed = settings.seed.wrapping_add(i as u64);
            let pictures = source.draw(&p.text, settings.samples, seed, rerank)?;
            check_drawn(&pictures, settings.samples, &p.text)?;
            let readings = judge.read_pictures(&pictures)?;
            let mut counts = Tally {
                prompts: 1,
                ..Tally::default()
            };
            let verdicts: Vec<PictureVerdict> = readings
                .iter()
                .map(|r| score_picture(&p.objects, r))
                .collect();
            verdicts.iter().for_each(|v| counts.add_picture(v));
            per_prompt.push((
                p.objects.len(),
                Combinations::of(p),
                rerank,
                p,
                counts,
                verdicts,
            ));
        }
    }
    let mut groups = Vec::new();
    for objects in [1, 2] {
        for combinations in [Combinations::Seen, Combinations::HeldOut] {
            for &rerank in &settings.rerank {
                let mut counts = Tally::default();
                let mut any = false;
                for (o, c, r, _, t, _) in &per_prompt {
                    if (*o, *c, *r) == (objects, combinations, rerank) {
                        counts.add(t);
                        any = true;
                    }
                }
                if any {
                    groups.push(GroupScores {
                        objects,
                        combinations,
                        rerank,
                        counts,
                        rates: counts.rates(),
                    });
                }
            }
        }
    }
    let prompts = per_prompt
        .into_iter()
        .map(
            |(_, combinations, rerank, p, counts, pictures)| PromptScores {
                prompt: p.text.clone(),
                combinations,
                rerank,
                counts,
                pictures,
            },
        )
        .collect();
    Ok(ShapesReport {
        samples: settings.samples,
        seed: settings.seed,
        groups,
        prompts,
    })
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

impl ShapesReport {
    /// The groups as a readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<8} {:<9} {:<7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>11}\n",
            "objects",
            "combos",
            "rerank",
            "prompts",
            "pictures",
            "shape",
            "colour",
            "size",
            "position",
            "all-correct"
        );
        for g in &self.groups {
            s += &format!(
                "{:<8} {:<9} {:<7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>11}\n",
                g.objects,
                g.combinations.name(),
                if g.rerank { "yes" } else { "no" },
                g.counts.prompts,
                g.counts.pictures,
                pct(g.rates.shape),
                pct(g.rates.colour),
                pct(g.rates.size),
                pct(g.rates.position),
                pct(g.rates.all_correct)
            );
        }
        s
    }
}

/// One line of the digits report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DigitScores {
    /// Drawn with reranking.
    pub rerank: bool,
    /// Prompts.
    pub prompts: usize,
    /// Pictures judged.
    pub pictures: usize,
    /// Pictures read as the requested digit.
    pub right: usize,
    /// `right / pictures`.
    pub accuracy: f64,
}

/// One digits prompt's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DigitPromptScores {
    /// The prompt.
    pub prompt: String,
    /// The requested digit.
    pub digit: u8,
    /// Drawn with reranking.
    pub rerank: bool,
    /// The digit the judge reads in each picture.
    pub read: Vec<u8>,
    /// Pictures read as the requested digit.
    pub right: usize,
}

/// The prompt-fidelity report on digits.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DigitsReport {
    /// Pictures per prompt.
    pub samples: usize,
    /// The seed the pictures were drawn from.
    pub seed: u64,
    /// One line per rerank setting.
    pub groups: Vec<DigitScores>,
    /// Per prompt and rerank setting.
    pub prompts: Vec<DigitPromptScores>,
}

impl DigitsReport {
    /// The groups as a readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<7} {:>7} {:>8} {:>16}\n",
            "rerank", "prompts", "pictures", "requested digit"
        );
        for g in &self.groups {
            s += &format!(
                "{:<7} {:>7} {:>8} {:>16}\n",
                if g.rerank { "yes" } else { "no" },
                g.prompts,
                g.pictures,
                pct(Some(g.accuracy))
            );
        }
        s
    }
}

/// Draw `settings.samples` pictures for each digits prompt (once per rerank setting) and count
/// those `judge` reads as the requested digit.
pub fn evaluate_digits(
    source: &dyn ImageSource,
    judge: &dyn DigitReader,
    prompts: &[DigitPrompt],
    settings: &EvalSettings,
) -> Result<DigitsReport> {
    settings.validate()?;
    check_dataset(source, "digits")?;
    let mut groups = Vec::new();
    let mut per_prompt = Vec::new();
    for &rerank in &settings.rerank {
        let (mut pictures, mut right) = (0, 0);
        for (i, p) in prompts.iter().enumerate() {
            let seed = settings.seed.wrapping_add(i as u64);
            let drawn = source.draw(&p.text, settings.samples, seed, rerank)?;
            check_drawn(&drawn, settings.samples, &p.text)?;
            let read = judge.read_digits(&drawn)?;
            let r = read.iter().filter(|&&d| d == p.digit).count();
            pictures += read.len();
            right += r;
            per_prompt.push(DigitPromptScores {
                prompt: p.text.clone(),
                digit: p.digit,
                rerank,
                read,
                right: r,
            });
        }
        groups.push(DigitScores {
            rerank,
            prompts: prompts.len(),
            pictures,
            right,
            accuracy: right as f64 / pictures.max(1) as f64,
        });
    }
    Ok(DigitsReport {
        samples: settings.samples,
        seed: settings.seed,
        groups,
        prompts: per_prompt,
    })
}

/// Which prompts to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptChoice {
    /// [`seen_prompts`] (shapes) or [`digit_prompts`] (digits).
    Seen,
    /// [`held_out_prompt_set`] (shapes only: digits have no held-out combinations).
    HeldOut,
    /// The text of a prompt file, one prompt per line.
    Lines(String),
}

/// A report of either benchmark.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "dataset", rename_all = "lowercase")]
pub enum ImageEvalReport {
    /// Shapes.
    Shapes(ShapesReport),
    /// Digits.
    Digits(DigitsReport),
}

impl ImageEvalReport {
    /// The report as a readable table.
    pub fn table(&self) -> String {
        match self {
            ImageEvalReport::Shapes(r) => r.table(),
            ImageEvalReport::Digits(r) => r.table(),
        }
    }
}

/// The benchmark of `source` with the embedded judge of its dataset.
pub fn evaluate(
    source: &dyn ImageSource,
    prompts: &PromptChoice,
    settings: &EvalSettings,
) -> Result<ImageEvalReport> {
    settings.validate()?;
    match source.dataset() {
        "shapes" => {
            let list = match prompts {
                PromptChoice::Seen => seen_prompts(),
                PromptChoice::HeldOut => held_out_prompt_set(),
                PromptChoice::Lines(text) => parse_prompt_lines(text)?,
            };
            let judge = embedded_shapes_judge()?;
            Ok(ImageEvalReport::Shapes(evaluate_shapes(
                source, &judge, &list, settings,
            )?))
        }
        "digits" => {
            let list = match prompts {
                PromptChoice::Seen => digit_prompts(),
                PromptChoice::HeldOut => {
                    return Err(Error::Core(kiln_core::Error::InvalidData(
                        "digits have no held-out combinations: use the seen prompts or a \
                         prompt file"
                            .into(),
                    )))
                }
                PromptChoice::Lines(text) => parse_digit_prompt_lines(text)?,
            };
            let judge = embedded_digits_judge()?;
            Ok(ImageEvalReport::Digits(evaluate_digits(
                source, &judge, &list, settings,
            )?))
        }
        other => Err(Error::Core(kiln_core::Error::InvalidData(format!(
            "the model draws {other:?} pictures; the benchmark knows \"shapes\" and \"digits\""
        )))),
    }
}

// ---------------------------------------------------------------------------------------------
// Ground truth

/// A stand-in model that draws exactly what each prompt asks for with kiln-data's
/// `render_prompt` (what the prompt leaves open, and the background, from the seed): the
/// benchmark's ceiling, and the check that the judge agrees with the generator's ground truth.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroundTruthShapes;

impl ImageSource for GroundTruthShapes {
    fn dataset(&self) -> &str {
        "shapes"
    }

    fn draw(&self, prompt: &str, n: usize, seed: u64, _rerank: bool) -> Result<Vec<Vec<u8>>> {
        let p = parse_prompt(prompt)?;
        (0..n as u64)
            .map(|k| {
                let s = seed.wrapping_mul(1_000_003).wrapping_add(k);
                Ok(kiln_data::shapes::render_prompt(&p, s)?.image)
            })
            .collect()
    }
}

/// The exact renders of [`GroundTruthShapes`] encoded and decoded by a VQ-VAE: the best a
/// prior over that tokenizer's codes could reach (a prior that always picked the codes of the
/// exact picture). Shapes only; reranking changes nothing.
pub struct TokenizerRoundTrip<'a> {
    /// The tokenizer.
    pub vqvae: &'a crate::vqvae::VqVae,
}

impl ImageSource for TokenizerRoundTrip<'_> {
    fn dataset(&self) -> &str {
        "shapes"
    }

    fn draw(&self, prompt: &str, n: usize, seed: u64, rerank: bool) -> Result<Vec<Vec<u8>>> {
        let exact = GroundTruthShapes.draw(prompt, n, seed, rerank)?;
        let x = pictures_tensor(&exact)?; // (n, 3, 32, 32)
        let codes = self.vqvae.encode(&x)?; // (n, G, G)
        let bytes = crate::vqvae::tensor_to_images(&self.vqvae.decode(&codes)?)?;
        Ok(bytes.chunks(PICTURE_BYTES).map(<[u8]>::to_vec).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// kiln's own text-to-image models

/// Candidates drawn per kept picture when the benchmark asks for reranking (a model whose
/// sampling defaults name more keeps its own number).
pub const RERANK_CANDIDATES: usize = 8;

impl ImageSource for crate::text2image::ImageModel {
    fn dataset(&self) -> &str {
        crate::text2image::ImageModel::dataset(self)
    }

    /// The model's own sampling defaults; with `rerank`, the best of
    /// the model's default candidates per picture, or [`RERANK_CANDIDATES`] where that is 1.
    fn draw(&self, prompt: &str, n: usize, seed: u64, rerank: bool) -> Result<Vec<Vec<u8>>> {
        let d = self.sampling();
        let s = crate::text2image::ImageSampling {
            n,
            seed,
            rerank: if rerank {
                if d.rerank > 1 {
                    d.rerank
                } else {
                    RERANK_CANDIDATES
                }
            } else {
                1
            },
            ..d.clone()
        };
        self.generate(prompt, &s)
    }
}
