//! IDX files (the MNIST format), plain or gzip-compressed, and the MNIST loader.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code (0x08 = unsigned byte),
//! the number of dimensions — then one u32 per dimension, then the data, row-major.
//!
//! ```no_run
//! use kiln_data::idx::{load_mnist, MnistSplit};
//! let test = load_mnist("data/mnist", MnistSplit::Test).unwrap();
//! assert_eq!((test.len(), test.rows, test.cols), (10_000, 28, 28));
//! ```

use std::io::Read;
use std::path::Path;

use kiln_core::{Error, Result};

/// An unsigned-byte IDX array: its dimensions and its data, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Parse IDX bytes (already decompressed). Only the unsigned-byte type (0x08) is supported.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::InvalidData(
            "not an IDX file: expected the magic number to start with two zero bytes".into(),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::InvalidData(format!(
            "IDX type code 0x{:02x} is not supported: expected 0x08 (unsigned byte)",
            bytes[2]
        )));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        return Err(Error::InvalidData(format!(
            "IDX header with {nd} dimensions needs {header} bytes, the file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() - header != n {
        return Err(Error::InvalidData(format!(
            "IDX dimensions {dims:?} need {n} data bytes, the file has {}",
            bytes.len() - header
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Read an IDX file, decompressing it if it is gzip (detected from its first bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io)?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|e| match e {
        Error::InvalidData(m) => Error::InvalidData(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Which half of MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistSplit {
    /// 60,000 training images (`train-*`).
    Train,
    /// 10,000 test images (`t10k-*`).
    Test,
}

/// MNIST images and labels.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// `len() · rows · cols` pixels, 0..=255, row-major.
    pub images: Vec<u8>,
    /// One digit 0..=9 per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Mnist {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels scaled to [0, 1] as f32, `len() · rows · cols` values.
    pub fn images_f32(&self) -> Vec<f32> {
        self.images.iter().map(|&p| p as f32 / 255.0).collect()
    }
}

/// Load an MNIST split from `dir`, which holds the standard file names
/// (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-...`).
pub fn load_mnist(dir: impl AsRef<Path>, split: MnistSplit) -> Result<Mnist> {
    let dir = dir.as_ref();
    let prefix = match split {
        MnistSplit::Train => "train",
        MnistSplit::Test => "t10k",
    };
    let find = |stem: String| {
        let gz = dir.join(format!("{stem}.gz"));
        if gz.exists() {
            gz
        } else {
            dir.join(stem)
        }
    };
    let images = read_idx(find(format!("{prefix}-images-idx3-ubyte")))?;
    let labels = read_idx(find(format!("{prefix}-labels-idx1-ubyte")))?;
    if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
        return Err(Error::InvalidData(format!(
            "MNIST in {}: images {:?} and labels {:?} do not match (expected [n, rows, cols] and [n])",
            dir.display(),
            images.dims,
            labels.dims
        )));
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        return Err(Error::InvalidData(format!(
            "MNIST label {bad} is not a digit 0..9"
        )));
    }
    Ok(Mnist {
        rows: images.dims[1],
        cols: images.dims[2],
        images: images.data,
        labels: labels.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_a_known_array_and_rejects_bad_headers() {
        let a = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(a.dims, [2, 3]);
        assert_eq!(a.data, [1, 2, 3, 4, 5, 6]);
        let e = parse_idx(&idx(&[2, 3], &[1, 2])).unwrap_err().to_string();
        assert!(e.contains("need 6 data bytes, the file has 2"), "{e}");
        let mut f = idx(&[1], &[0]);
        f[2] = 0x0d;
        assert!(parse_idx(&f).unwrap_err().to_string().contains("0x0d"));
        assert!(parse_idx(b"PK\x03\x04")
            .unwrap_err()
            .to_string()
            .contains("not an IDX file"));
    }

    #[test]
    fn reads_gzip_and_plain_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx(&[3], &[7, 8, 9]);
        std::fs::write(dir.path().join("plain"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).unwrap();
        std::fs::write(dir.path().join("packed.gz"), gz.finish().unwrap()).unwrap();
        assert_eq!(
            read_idx(dir.path().join("plain")).unwrap(),
            read_idx(dir.path().join("packed.gz")).unwrap()
        );
        let e = read_idx(dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn loads_the_repository_mnist_test_split() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
        let m = load_mnist(&dir, MnistSplit::Test).unwrap();
        assert_eq!((m.len(), m.rows, m.cols), (10_000, 28, 28));
        // the well-known first test labels: 7, 2, 1, 0, 4
        assert_eq!(&m.labels[..5], &[7, 2, 1, 0, 4]);
        let mut counts = [0usize; 10];
        for &l in &m.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<usize>(), 10_000);
        assert!(counts.iter().all(|&c| c > 800));
    }
}
