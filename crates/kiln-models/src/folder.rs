//! Neural models as kiln model folders: `config.json` (kind, format version, hyperparameters)
//! and `model.safetensors` with the network's own (PyTorch-style) tensor names.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kiln_core::folder::{FolderConfig, ModelMeta, TensorData, Tensors};
use kiln_core::ModelFolder;
use kiln_nn::{Error, Result};

/// Save the variables of `vars` and the model's `config` under `kind` into `dir`.
pub fn save(
    dir: &Path,
    kind: &str,
    meta: &ModelMeta,
    config: serde_json::Value,
    vars: &VarMap,
) -> Result<()> {
    ModelFolder::save_parts(dir, kind, meta, config, &var_tensors(vars)?)?;
    Ok(())
}

/// The variables of `vars` as f32 tensors under their own names (what [`save`] writes).
pub fn var_tensors(vars: &VarMap) -> Result<Tensors> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::shape("variable map lock poisoned"))?;
    let mut tensors = Tensors::new();
    for (name, var) in data.iter() {
        let t = var.as_tensor();
        let values = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        tensors.insert_f32(name, t.dims(), values);
    }
    Ok(tensors)
}

/// Read the folder in `dir`, check it holds a `kind` model, and return its config and a
/// `VarBuilder` over its tensors.
pub fn load(dir: &Path, kind: &str) -> Result<(FolderConfig, VarBuilder<'static>)> {
    let (config, map) = load_tensors(dir, kind)?;
    Ok((
        config,
        VarBuilder::from_tensors(map, candle_core::DType::F32, &Device::Cpu),
    ))
}

/// Read the folder in `dir`, check it holds a `kind` model, and return its config and its
/// tensors by name (as f32).
pub fn load_tensors(dir: &Path, kind: &str) -> Result<(FolderConfig, HashMap<String, Tensor>)> {
    let (config, tensors) = ModelFolder::load_parts(dir)?;
    if config.kind != kind {
        return Err(kiln_core::Error::folder(
            dir,
            format!("holds a {:?} model, expected {kind:?}", config.kind),
        )
        .into());
    }
    Ok((config, tensor_map(&tensors)?))
}

/// A folder's two files as bytes (a model embedded in the binary with `include_bytes!`):
/// check `config.json` names a `kind` model and return its config and a `VarBuilder` over
/// the tensors of `model.safetensors`.
pub fn from_bytes(
    config_json: &[u8],
    tensors: &[u8],
    kind: &str,
) -> Result<(FolderConfig, VarBuilder<'static>)> {
    let config: FolderConfig = serde_json::from_slice(config_json)
        .map_err(|e| Error::shape(format!("embedded config.json: {e}")))?;
    if config.kind != kind {
        return Err(Error::shape(format!(
            "embedded config.json holds a {:?} model, expected {kind:?}",
            config.kind
        )));
    }
    Ok((config, var_builder(&Tensors::from_bytes(tensors)?)?))
}

/// A `VarBuilder` (f32, CPU) over the tensors of a model folder.
pub fn var_builder(tensors: &Tensors) -> Result<VarBuilder<'static>> {
    Ok(VarBuilder::from_tensors(
        tensor_map(tensors)?,
        candle_core::DType::F32,
        &Device::Cpu,
    ))
}

/// A folder's tensors by name, as f32 on the CPU.
pub fn tensor_map(tensors: &Tensors) -> Result<HashMap<String, Tensor>> {
    let mut map = HashMap::new();
    for name in tensors.names() {
        let t = tensors.get(name)?;
        let values: Vec<f32> = match &t.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        };
        map.insert(
            name.to_string(),
            Tensor::from_vec(values, t.shape.as_slice(), &Device::Cpu)?,
        );
    }
    Ok(map)
}
