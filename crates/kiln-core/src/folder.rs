//! Model folders: `config.json` + `model.safetensors`, the one file layout for every kiln model.
//!
//! `config.json` holds the model kind, the format version, the feature, target and class names,
//! the preprocessing, and the model's own hyperparameters (under `"model"`);
//! `model.safetensors` holds the learned arrays. Writes are atomic: each file goes to a
//! temporary name in the same folder and is renamed into place, the tensors first and the
//! config (which records the tensors' size and checksum) last, so a crash never leaves a
//! folder that loads as something it is not. Loading checks everything and says what it
//! expected and what it found.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::scale::Scaler;
use crate::{Error, Result};

/// The newest model-folder format this build reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the config.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the tensors.
pub const TENSORS_FILE: &str = "model.safetensors";

/// Values of one named array.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit signed integers (indices, counts).
    I64(Vec<i64>),
}

impl TensorData {
    fn len(&self) -> usize {
        match self {
            TensorData::F64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    fn dtype_name(&self) -> &'static str {
        match self {
            TensorData::F64(_) => "F64",
            TensorData::F32(_) => "F32",
            TensorData::I64(_) => "I64",
        }
    }
}

/// A named array: shape and values (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub data: TensorData,
}

/// The learned arrays of a model, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensors {
    map: BTreeMap<String, Tensor>,
}

impl Tensors {
    /// No tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names present, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Add an `f64` array.
    pub fn insert_f64(&mut self, name: &str, shape: &[usize], data: Vec<f64>) {
        self.insert(name, shape, TensorData::F64(data));
    }

    /// Add an `f32` array.
    pub fn insert_f32(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        self.insert(name, shape, TensorData::F32(data));
    }

    /// Add an `i64` array.
    pub fn insert_i64(&mut self, name: &str, shape: &[usize], data: Vec<i64>) {
        self.insert(name, shape, TensorData::I64(data));
    }

    fn insert(&mut self, name: &str, shape: &[usize], data: TensorData) {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        self.map.insert(
            name.to_string(),
            Tensor {
                shape: shape.to_vec(),
                data,
            },
        );
    }

    /// The tensor `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| {
            Error::folder(
                TENSORS_FILE,
                format!(
                    "missing tensor {name:?} (present: {})",
                    self.map.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    fn check_shape(name: &str, t: &Tensor, shape: Option<&[usize]>) -> Result<()> {
        if let Some(s) = shape {
            if t.shape != s {
                return Err(Error::folder(
                    TENSORS_FILE,
                    format!("tensor {name:?} has shape {:?}, expected {s:?}", t.shape),
                ));
            }
        }
        Ok(())
    }

    fn dtype_error(name: &str, t: &Tensor, want: &str) -> Error {
        Error::folder(
            TENSORS_FILE,
            format!(
                "tensor {name:?} has dtype {}, expected {want}",
                t.data.dtype_name()
            ),
        )
    }

    /// The `f64` values of `name`, checking the shape when `shape` is given.
    pub fn f64s(&self, name: &str, shape: Option<&[usize]>) -> Result<&[f64]> {
        let t = self.get(name)?;
        Self::check_shape(name, t, shape)?;
        match &t.data {
            TensorData::F64(v) => Ok(v),
            _ => Err(Self::dtype_error(name, t, "F64")),
        }
    }

    /// The `f32` values of `name`, checking the shape when `shape` is given.
    pub fn f32s(&self, name: &str, shape: Option<&[usize]>) -> Result<&[f32]> {
        let t = self.get(name)?;
        Self::check_shape(name, t, shape)?;
        match &t.data {
            TensorData::F32(v) => Ok(v),
            _ => Err(Self::dtype_error(name, t, "F32")),
        }
    }

    /// The `i64` values of `name`, checking the shape when `shape` is given.
    pub fn i64s(&self, name: &str, shape: Option<&[usize]>) -> Result<&[i64]> {
        let t = self.get(name)?;
        Self::check_shape(name, t, shape)?;
        match &t.data {
            TensorData::I64(v) => Ok(v),
            _ => Err(Self::dtype_error(name, t, "I64")),
        }
    }

    /// Serialise to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .map
            .iter()
            .map(|(name, t)| {
                let (dtype, raw) = match &t.data {
                    TensorData::F64(v) => {
                        (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                    }
                    TensorData::F32(v) => {
                        (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                    }
                    TensorData::I64(v) => {
                        (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                    }
                };
                (name.clone(), dtype, t.shape.clone(), raw)
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, dtype, shape, raw)| {
                TensorView::new(*dtype, shape.clone(), raw)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::folder(TENSORS_FILE, format!("tensor {name:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, None)
            .map_err(|e| Error::folder(TENSORS_FILE, format!("cannot serialise: {e}")))
    }

    /// Parse safetensors bytes (F64, F32 and I64 tensors).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::folder(
                TENSORS_FILE,
                format!("not a valid safetensors file ({e}); it may be truncated or corrupt"),
            )
        })?;
        let mut out = Tensors::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let shape = view.shape().to_vec();
            let data = match view.dtype() {
                Dtype::F64 => TensorData::F64(
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                ),
                Dtype::F32 => TensorData::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                        .collect(),
                ),
                Dtype::I64 => TensorData::I64(
                    raw.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                ),
                other => {
                    return Err(Error::folder(
                        TENSORS_FILE,
                        format!("tensor {name:?} has unsupported dtype {other:?}"),
                    ))
                }
            };
            out.insert(&name, &shape, data);
        }
        Ok(out)
    }
}

/// What every model folder records besides the model itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Feature names in column order.
    pub features: Vec<String>,
    /// Target column name.
    pub target: String,
    /// Class names for classifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Scaler applied to features before the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Scaler>,
}

/// The whole `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderConfig {
    /// Model kind, e.g. `"linear_regression"`.
    pub kind: String,
    /// Folder format version.
    pub format_version: u32,
    /// kiln version that wrote the folder.
    #[serde(default)]
    pub kiln_version: String,
    /// Names and preprocessing.
    #[serde(flatten)]
    pub meta: ModelMeta,
    /// The model's hyperparameters and scalar state.
    pub model: serde_json::Value,
    /// Byte length of `model.safetensors` when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors_bytes: Option<u64>,
    /// FNV-1a 64 checksum of `model.safetensors`, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors_checksum: Option<String>,
}

/// A model that can be stored in a model folder.
pub trait Persist: Sized {
    /// The `kind` written to `config.json`.
    const KIND: &'static str;

    /// Hyperparameters and scalar state (JSON) and learned arrays.
    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)>;

    /// Rebuild from what [`Persist::to_parts`] wrote, checking every shape.
    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self>;
}

/// Reading and writing model folders.
pub struct ModelFolder;

impl ModelFolder {
    /// Save `model` with `meta` into `dir` (created if needed), atomically per file.
    pub fn save<M: Persist>(dir: &Path, meta: &ModelMeta, model: &M) -> Result<()> {
        let (params, tensors) = model.to_parts()?;
        Self::save_parts(dir, M::KIND, meta, params, &tensors)
    }

    /// Save already-split parts (for callers that dispatch on kind themselves).
    pub fn save_parts(
        dir: &Path,
        kind: &str,
        meta: &ModelMeta,
        params: serde_json::Value,
        tensors: &Tensors,
    ) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let bytes = tensors.to_bytes()?;
        let config = FolderConfig {
            kind: kind.to_string(),
            format_version: FORMAT_VERSION,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            meta: meta.clone(),
            model: params,
            tensors_bytes: Some(bytes.len() as u64),
            tensors_checksum: Some(checksum(&bytes)),
        };
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::folder(dir, format!("cannot encode config: {e}")))?;
        write_atomic(&dir.join(TENSORS_FILE), &bytes)?;
        write_atomic(&dir.join(CONFIG_FILE), &json)
    }

    /// Read and check `config.json` alone (to dispatch on its kind).
    pub fn read_config(dir: &Path) -> Result<FolderConfig> {
        let path = dir.join(CONFIG_FILE);
        if !dir.is_dir() {
            return Err(Error::folder(
                dir,
                "not a folder; a kiln model is a folder with config.json and model.safetensors",
            ));
        }
        let text = fs::read(&path).map_err(|e| io(&path, e))?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| Error::folder(&path, format!("not valid JSON: {e}")))?;
        let version = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        match version {
            None => return Err(Error::folder(&path, "no format_version: this is not a kiln model folder")),
            Some(v) if v > u64::from(FORMAT_VERSION) => {
                return Err(Error::folder(
                    &path,
                    format!("format_version {v} is newer than this kiln reads ({FORMAT_VERSION}); upgrade kiln"),
                ))
            }
            Some(_) => {}
        }
        serde_json::from_value(value)
            .map_err(|e| Error::folder(&path, format!("unexpected content: {e}")))
    }

    /// Read config and tensors, checking the tensors against the recorded size and checksum.
    pub fn load_parts(dir: &Path) -> Result<(FolderConfig, Tensors)> {
        let config = Self::read_config(dir)?;
        let path = dir.join(TENSORS_FILE);
        let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
        if let Some(n) = config.tensors_bytes {
            if bytes.len() as u64 != n {
                return Err(Error::folder(
                    &path,
                    format!("has {} bytes, config.json expects {n}: the file is truncated or was replaced", bytes.len()),
                ));
            }
        }
        if let Some(sum) = &config.tensors_checksum {
            let got = checksum(&bytes);
            if &got != sum {
                return Err(Error::folder(
                    &path,
                    format!(
                        "checksum {got} differs from {sum} in config.json: the file is corrupt"
                    ),
                ));
            }
        }
        let tensors = Tensors::from_bytes(&bytes).map_err(|e| match e {
            Error::ModelFolder { message, .. } => Error::folder(&path, message),
            other => other,
        })?;
        Ok((config, tensors))
    }

    /// Load a model of type `M`, checking the kind.
    pub fn load<M: Persist>(dir: &Path) -> Result<(ModelMeta, M)> {
        let (config, tensors) = Self::load_parts(dir)?;
        if config.kind != M::KIND {
            return Err(Error::folder(
                dir,
                format!("holds a {:?} model, expected {:?}", config.kind, M::KIND),
            ));
        }
        let model = M::from_parts(&config.model, &tensors).map_err(|e| match e {
            Error::ModelFolder { message, .. } => Error::folder(dir, message),
            other => other,
        })?;
        Ok((config.meta, model))
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

/// FNV-1a 64-bit checksum, hex.
fn checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Toy {
        w: Vec<f64>,
        idx: Vec<i64>,
    }

    impl Persist for Toy {
        const KIND: &'static str = "toy";
        fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
            let mut t = Tensors::new();
            t.insert_f64("w", &[self.w.len()], self.w.clone());
            t.insert_i64("idx", &[self.idx.len()], self.idx.clone());
            Ok((serde_json::json!({"n": self.w.len()}), t))
        }
        fn from_parts(model: &serde_json::Value, t: &Tensors) -> Result<Self> {
            let n = model["n"].as_u64().unwrap_or(0) as usize;
            Ok(Toy {
                w: t.f64s("w", Some(&[n]))?.to_vec(),
                idx: t.i64s("idx", Some(&[n]))?.to_vec(),
            })
        }
    }

    fn meta() -> ModelMeta {
        ModelMeta {
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            classes: None,
            preprocessing: None,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let toy = Toy {
            w: vec![1.5, -2.0],
            idx: vec![3, 4],
        };
        ModelFolder::save(dir.path(), &meta(), &toy).unwrap();
        let (m, back): (ModelMeta, Toy) = ModelFolder::load(dir.path()).unwrap();
        assert_eq!(back, toy);
        assert_eq!(m, meta());
        // No temporary files are left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn corrupt_truncated_and_newer_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let toy = Toy {
            w: vec![1.5, -2.0],
            idx: vec![3, 4],
        };
        ModelFolder::save(dir.path(), &meta(), &toy).unwrap();
        let st = dir.path().join(TENSORS_FILE);
        let bytes = fs::read(&st).unwrap();

        fs::write(&st, &bytes[..bytes.len() - 5]).unwrap();
        let e = ModelFolder::load::<Toy>(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&st, &flipped).unwrap();
        let e = ModelFolder::load::<Toy>(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt"), "{e}");

        fs::write(&st, &bytes).unwrap();
        let cfg = dir.path().join(CONFIG_FILE);
        let text = fs::read_to_string(&cfg).unwrap();
        fs::write(
            &cfg,
            text.replace("\"format_version\": 1", "\"format_version\": 9"),
        )
        .unwrap();
        let e = ModelFolder::load::<Toy>(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("newer"), "{e}");

        fs::write(
            &cfg,
            text.replace("\"kind\": \"toy\"", "\"kind\": \"other\""),
        )
        .unwrap();
        let e = ModelFolder::load::<Toy>(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected \"toy\""), "{e}");

        fs::write(&cfg, "{not json").unwrap();
        assert!(ModelFolder::load::<Toy>(dir.path()).is_err());
        assert!(ModelFolder::load::<Toy>(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn misshapen_and_missing_tensors_are_errors() {
        let mut t = Tensors::new();
        t.insert_f64("w", &[2], vec![1.0, 2.0]);
        let bytes = t.to_bytes().unwrap();
        let back = Tensors::from_bytes(&bytes).unwrap();
        assert!(back
            .f64s("w", Some(&[3]))
            .unwrap_err()
            .to_string()
            .contains("expected [3]"));
        assert!(back
            .f64s("v", None)
            .unwrap_err()
            .to_string()
            .contains("missing tensor \"v\""));
        assert!(back
            .i64s("w", None)
            .unwrap_err()
            .to_string()
            .contains("dtype F64"));
        assert!(Tensors::from_bytes(&bytes[..10]).is_err());
    }
}
