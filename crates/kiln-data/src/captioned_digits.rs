//! Captioned digits: MNIST pictures with captions ("a handwritten seven", "the digit 7"), for
//! text-to-image models on digits.
//!
//! [`caption_digit`] writes a caption for a digit with one of [`DIGIT_TEMPLATES`] templates;
//! [`captioned`] captions a whole [`Mnist`] split (seeded template choice);
//! [`parse_digit_prompt`] reads the digit back out of a caption; [`digits_vocabulary`] holds
//! every word; [`to_rgb32`] pads a 28×28 grey digit to a 32×32 RGB picture like the shapes.
//!
//! ```
//! use kiln_data::captioned_digits::{caption_digit, parse_digit_prompt, digits_vocabulary};
//! assert_eq!(caption_digit(7, 0), "a handwritten seven");
//! assert_eq!(caption_digit(7, 1), "the digit 7");
//! assert_eq!(parse_digit_prompt("the number seven")?, 7);
//! assert!(digits_vocabulary().encode("a handwritten twelve").is_err());
//! # Ok::<(), kiln_core::Error>(())
//! ```

use kiln_core::{Error, Result};
use rand::Rng as _;

use crate::idx::Mnist;
use crate::shapes::{Vocabulary, IMAGE_SIZE};

/// The digits' names, zero to nine.
pub const DIGIT_NAMES: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Number of caption templates.
pub const DIGIT_TEMPLATES: usize = 4;

/// The caption of `digit` (0..=9; larger values are read modulo 10) with template `template`
/// (modulo [`DIGIT_TEMPLATES`]): "a handwritten seven", "the digit 7", "the number seven",
/// "a handwritten 7".
pub fn caption_digit(digit: u8, template: usize) -> String {
    let d = (digit % 10) as usize;
    match template % DIGIT_TEMPLATES {
        0 => format!("a handwritten {}", DIGIT_NAMES[d]),
        1 => format!("the digit {d}"),
        2 => format!("the number {}", DIGIT_NAMES[d]),
        _ => format!("a handwritten {d}"),
    }
}

/// Every word of the digit captions.
pub fn digits_vocabulary() -> Vocabulary {
    let mut words: Vec<String> = ["a", "the", "handwritten", "digit", "number"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    words.extend(DIGIT_NAMES.iter().map(|s| s.to_string()));
    words.extend((0..10).map(|d| d.to_string()));
    Vocabulary::new(&words)
}

/// The digit a caption asks for; an error for unknown words or a caption naming no digit or
/// two different digits.
pub fn parse_digit_prompt(text: &str) -> Result<u8> {
    digits_vocabulary().encode(text)?;
    let mut found: Option<u8> = None;
    for w in Vocabulary::split(text) {
        let d = DIGIT_NAMES
            .iter()
            .position(|n| *n == w)
            .or_else(|| w.parse::<usize>().ok().filter(|&d| d < 10));
        if let Some(d) = d {
            if found.is_some_and(|f| f as usize != d) {
                return Err(Error::InvalidData(format!(
                    "{text:?} names two different digits; expected one"
                )));
            }
            found = Some(d as u8);
        }
    }
    found.ok_or_else(|| {
        Error::InvalidData(format!(
            "{text:?} names no digit; expected e.g. \"a handwritten seven\" or \"the digit 7\""
        ))
    })
}

/// One captioned MNIST picture.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionedDigit {
    /// Index of the picture in the MNIST split.
    pub index: usize,
    /// The digit (the ground truth).
    pub digit: u8,
    /// The caption.
    pub caption: String,
}

/// Caption every picture of `mnist`, each with a template drawn from `seed`.
pub fn captioned(mnist: &Mnist, seed: u64) -> Vec<CaptionedDigit> {
    let mut rng = kiln_core::rng(seed);
    mnist
        .labels
        .iter()
        .enumerate()
        .map(|(index, &digit)| CaptionedDigit {
            index,
            digit,
            caption: caption_digit(digit, rng.random_range(0..DIGIT_TEMPLATES)),
        })
        .collect()
}

/// A grey `rows × cols` picture (at most 32×32) centred on a black 32×32 canvas, the grey
/// value copied into red, green and blue: `32 · 32 · 3` bytes like a shapes picture.
pub fn to_rgb32(pixels: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    if rows > IMAGE_SIZE || cols > IMAGE_SIZE || pixels.len() != rows * cols {
        return Err(Error::InvalidData(format!(
            "expected a grey picture of at most {IMAGE_SIZE}×{IMAGE_SIZE} with rows·cols pixels, \
             got {rows}×{cols} with {} pixels",
            pixels.len()
        )));
    }
    let (top, left) = ((IMAGE_SIZE - rows) / 2, (IMAGE_SIZE - cols) / 2);
    let mut out = vec![0u8; IMAGE_SIZE * IMAGE_SIZE * 3];
    for r in 0..rows {
        for c in 0..cols {
            let v = pixels[r * cols + c];
            let i = ((r + top) * IMAGE_SIZE + c + left) * 3;
            out[i..i + 3].fill(v);
        }
    }
    Ok(out)
}
