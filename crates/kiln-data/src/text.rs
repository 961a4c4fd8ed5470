//! Plain-text corpora and a character vocabulary for character-level language models.
//!
//! ```
//! use kiln_data::text::CharVocab;
//! let v = CharVocab::from_text("hello");
//! assert_eq!(v.len(), 4); // e h l o
//! let ids = v.encode("hole").unwrap();
//! assert_eq!(v.decode(&ids).unwrap(), "hole");
//! ```

use std::collections::HashMap;
use std::path::Path;

use kiln_core::{Error, Result};

/// Read a UTF-8 text file.
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Error::InvalidData(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The distinct characters of a corpus, sorted by code point; id = position.
/// Serialised as its list of characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<char>", into = "Vec<char>")]
pub struct CharVocab {
    chars: Vec<char>,
    index: HashMap<char, u32>,
}

impl From<Vec<char>> for CharVocab {
    fn from(chars: Vec<char>) -> Self {
        Self::from_chars(chars)
    }
}

impl From<CharVocab> for Vec<char> {
    fn from(v: CharVocab) -> Self {
        v.chars
    }
}

impl CharVocab {
    /// The vocabulary of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_chars(chars)
    }

    /// A vocabulary from its characters in id order (e.g. read back from `config.json`);
    /// duplicates are dropped.
    pub fn from_chars(chars: Vec<char>) -> Self {
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(chars.len());
        for c in chars {
            if let std::collections::hash_map::Entry::Vacant(e) = seen.entry(c) {
                e.insert(out.len() as u32);
                out.push(c);
            }
        }
        Self {
            chars: out,
            index: seen,
        }
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    fn lookup(&self, c: char) -> Option<u32> {
        self.index.get(&c).copied()
    }

    /// Ids of the characters of `text`; a character outside the vocabulary is an error naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                self.lookup(c).ok_or_else(|| {
                    Error::InvalidData(format!(
                        "character {c:?} at position {i} is not in the vocabulary of {} characters",
                        self.len()
                    ))
                })
            })
            .collect()
    }

    /// The text of `ids`; an id ≥ `len()` is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        ids.iter()
            .map(|&i| {
                self.chars.get(i as usize).copied().ok_or_else(|| {
                    Error::InvalidData(format!(
                        "token id {i} out of range for {} characters",
                        self.len()
                    ))
                })
            })
            .collect()
    }
}

/// Split a token sequence into training and validation parts: the last `val_fraction` of the
/// tokens (in (0, 1)) is the validation part.
pub fn split_tokens(tokens: &[u32], val_fraction: f64) -> Result<(&[u32], &[u32])> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(Error::param("val_fraction", val_fraction, "in (0, 1)"));
    }
    let n_val = ((tokens.len() as f64) * val_fraction).round() as usize;
    let cut = tokens.len() - n_val.min(tokens.len());
    Ok(tokens.split_at(cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_round_trips_and_names_unknown_characters() {
        let v = CharVocab::from_text("ba\nab 诗");
        assert_eq!(v.chars(), &['\n', ' ', 'a', 'b', '诗']);
        assert_eq!(v.encode("ab诗").unwrap(), [2, 3, 4]);
        assert_eq!(v.decode(&[4, 1, 0]).unwrap(), "诗 \n");
        let e = v.encode("abc").unwrap_err().to_string();
        assert!(e.contains("'c' at position 2"), "{e}");
        assert!(v
            .decode(&[5])
            .unwrap_err()
            .to_string()
            .contains("token id 5"));
        let json = serde_json::to_string(&v).unwrap();
        let back: CharVocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back.encode("ab诗").unwrap(), [2, 3, 4]);
    }

    #[test]
    fn splits_tokens_and_rejects_bad_fractions() {
        let t: Vec<u32> = (0..10).collect();
        let (a, b) = split_tokens(&t, 0.2).unwrap();
        assert_eq!((a.len(), b), (8, &[8u32, 9][..]));
        assert!(split_tokens(&t, 1.0)
            .unwrap_err()
            .to_string()
            .contains("val_fraction = 1"));
    }

    #[test]
    fn reads_the_repository_corpora() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/text");
        let zh = read_text(root.join("chinese_classics_zh.txt")).unwrap();
        assert_eq!(zh.chars().count(), 96_428);
        assert_eq!(CharVocab::from_text(&zh).len(), 3_976);
        let e = read_text(root.join("nope.txt")).unwrap_err().to_string();
        assert!(e.contains("nope.txt"), "{e}");
    }
}
