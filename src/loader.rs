//! Finding and loading a checkpoint: a folder, a GGUF file, a named model in gim's cache, or a
//! repo id in the local Hugging Face cache.

pub mod gguf;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::{GimError, Result};
use crate::model::weights::{load_weights, TensorSource};
use crate::model::{ModelConfig, Transformer};
use crate::tokenizer::Tok;

/// A model ready for analysis: transformer, tokenizer and where it came from.
pub struct LoadedModel {
    pub name: String,
    pub source: PathBuf,
    pub model: Transformer,
    pub tok: Tok,
}

/// Short provenance of a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub source: String,
    pub model_type: String,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub n_params: usize,
    pub dtype: String,
    pub device: String,
}

impl LoadedModel {
    pub fn info(&self) -> ModelInfo {
        let c = &self.model.cfg;
        ModelInfo {
            name: self.name.clone(),
            source: self.source.display().to_string(),
            model_type: c.model_type.clone(),
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            d_model: c.d_model,
            vocab_size: c.vocab_size,
            n_params: self.model.n_params(),
            dtype: format!("{:?}", self.model.dtype).to_lowercase(),
            device: device_name(&self.model.device),
        }
    }
}

pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

/// Parse `cpu`, `cuda`, `cuda:N`, `metal`.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    if let Some(rest) = s.strip_prefix("cuda") {
        let n: usize = match rest.strip_prefix(':') {
            Some(n) => n.parse().map_err(|_| {
                GimError::input(format!("bad device `{s}`: use cuda:N with N a number"))
            })?,
            None if rest.is_empty() => 0,
            None => {
                return Err(GimError::input(format!(
                    "bad device `{s}` (use cpu, cuda:N or metal)"
                )))
            }
        };
        return Device::new_cuda(n).map_err(|e| {
            GimError::input(format!(
                "cannot open cuda:{n} ({e}); build with `--features cuda` on a machine with an NVIDIA GPU, or use --device cpu"
            ))
        });
    }
    if s == "metal" {
        return Device::new_metal(0).map_err(|e| {
            GimError::input(format!("cannot open metal ({e}); build with `--features metal` on a Mac, or use --device cpu"))
        });
    }
    Err(GimError::input(format!(
        "unknown device `{s}` (use cpu, cuda:N or metal)"
    )))
}

/// Parse `f32`, `f16`, `bf16`, `f64`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    Ok(match s.trim() {
        "f32" | "float32" => DType::F32,
        "f16" | "float16" => DType::F16,
        "bf16" | "bfloat16" => DType::BF16,
        "f64" | "float64" => DType::F64,
        other => {
            return Err(GimError::input(format!(
                "unknown dtype `{other}` (use f32, bf16, f16 or f64)"
            )))
        }
    })
}

/// The Hugging Face hub cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("HF_HUB_CACHE") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    if let Ok(p) = std::env::var("HF_HOME") {
        if !p.is_empty() {
            return PathBuf::from(p).join("hub");
        }
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home)
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// Model repo ids found in the local cache (for completion and listing).
pub fn cached_repo_ids() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(hf_cache_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(rest) = name.strip_prefix("models--") {
                out.push(rest.replacen("--", "/", 1));
            }
        }
    }
    out.sort();
    out
}

/// Folder of the embedded toy models shipped with gim.
pub fn embedded_models_dir() -> PathBuf {
    if let Ok(p) = std::env::var("GIM_MODELS_DIR") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// gim's own cache of downloaded models: `$GIM_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/gim`.
pub fn gim_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(p) = var("GIM_CACHE") {
        return PathBuf::from(p);
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_else(|| ".".into())).join(".cache"));
    base.join("gim")
}

/// Real pretrained models known by a short name: the file each one is, inside [`gim_cache_dir`]
/// (`tools/fetch_model.sh` puts it there; `make model`).
pub const NAMED_MODELS: &[(&str, &str)] = &[(
    "smollm2-135m",
    "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
)];

/// Resolve a folder path, a GGUF file, an embedded toy name (`toy-ioi`), a named model
/// (`smollm2-135m`) or an HF repo id (`org/name[@rev]`) to a folder holding `config.json` or to
/// a GGUF file.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(GimError::input(
            "no model given: pass a folder, a .gguf file or a Hugging Face repo id",
        ));
    }
    let p = Path::new(spec);
    if p.is_dir() || p.is_file() {
        return Ok(p.to_path_buf());
    }
    if let Some(name) = spec.strip_prefix("toy-") {
        let dir = embedded_models_dir().join(format!("toy-{name}"));
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    if let Some((_, file)) = NAMED_MODELS.iter().find(|(n, _)| *n == spec) {
        let path = gim_cache_dir().join(file);
        if path.is_file() {
            return Ok(path);
        }
        return Err(GimError::Load(format!(
            "model `{spec}` is not downloaded: {} is missing; run `make model` (or tools/fetch_model.sh) to fetch it",
            path.display()
        )));
    }
    let looks_like_path =
        spec.starts_with('/') || spec.starts_with('.') || spec.starts_with('~') || p.exists();
    let parts: Vec<&str> = spec.split('@').collect();
    let (repo, rev) = match parts.as_slice() {
        [r] => (*r, "main"),
        [r, v] if !v.is_empty() => (*r, *v),
        _ => {
            return Err(GimError::input(format!(
                "bad model spec `{spec}` (use org/name or org/name@revision)"
            )))
        }
    };
    let is_repo_id = !looks_like_path && repo.split('/').count() == 2 && !repo.contains("..");
    if !is_repo_id {
        return Err(GimError::Load(format!(
            "model folder `{spec}` does not exist; pass a folder with config.json, a .gguf file, or a repo id like Qwen/Qwen2.5-1.5B"
        )));
    }
    let cache = hf_hub::Cache::new(hf_cache_dir());
    let repo_h = cache.repo(hf_hub::Repo::with_revision(
        repo.to_string(),
        hf_hub::RepoType::Model,
        rev.to_string(),
    ));
    let cfg = repo_h.get("config.json").or_else(|| {
        // A commit hash given directly: look in snapshots/<hash>.
        let dir = hf_cache_dir()
            .join(format!("models--{}", repo.replace('/', "--")))
            .join("snapshots")
            .join(rev)
            .join("config.json");
        dir.exists().then_some(dir)
    });
    match cfg.and_then(|c| c.parent().map(Path::to_path_buf)) {
        Some(dir) => Ok(dir),
        None => {
            let offline = std::env::var("HF_HUB_OFFLINE")
                .map(|v| v == "1")
                .unwrap_or(true);
            Err(GimError::Load(format!(
                "model `{repo}` (revision {rev}) is not in the local Hugging Face cache {}{}; download it where there is internet (`huggingface-cli download {repo}`) or pass a folder",
                hf_cache_dir().display(),
                if offline { " and gim never downloads" } else { "" }
            )))
        }
    }
}

/// Safetensors files (single or sharded) memory-mapped as a [`TensorSource`].
pub struct SafetensorsSource {
    st: MmapedSafetensors,
    names: HashSet<String>,
}

impl SafetensorsSource {
    pub fn open(dir: &Path) -> Result<Self> {
        let files = weight_files(dir)?;
        for f in &files {
            if !f.exists() {
                return Err(GimError::Load(format!(
                    "weight file {} listed in model.safetensors.index.json is missing",
                    f.display()
                )));
            }
        }
        // SAFETY: the files are opened read-only; the usual mmap caveat (the file must not be
        // truncated while mapped) is the same as in candle's VarBuilder.
        let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
            GimError::Load(format!(
                "cannot read the weights in {} ({}); the safetensors file is corrupt or truncated, download it again",
                dir.display(),
                first_line(&e.to_string())
            ))
        })?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(SafetensorsSource { st, names })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

impl TensorSource for SafetensorsSource {
    fn get(&self, name: &str) -> Result<Tensor> {
        if !self.names.contains(name) {
            return Err(GimError::Load(format!(
                "the checkpoint has no tensor `{name}`; it does not match its config.json model_type"
            )));
        }
        self.st.load(name, &Device::Cpu).map_err(|e| {
            GimError::Load(format!(
                "cannot read tensor `{name}`: {}",
                first_line(&e.to_string())
            ))
        })
    }
    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

/// `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| GimError::Load(format!("cannot read {}: {e}", index.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| GimError::Load(format!("{} is not valid JSON: {e}", index.display())))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| GimError::Load(format!("{} has no weight_map", index.display())))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| GimError::Load(format!("cannot list {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().map(|x| x == "safetensors").unwrap_or(false))
        .collect();
    others.sort();
    if others.is_empty() {
        return Err(GimError::Load(format!(
            "no weights in {}: expected model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)",
            dir.display()
        )));
    }
    Ok(others)
}

/// Read and translate `config.json` of a folder.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        GimError::Load(format!(
            "{} has no config.json; is it a Hugging Face model folder?",
            dir.display()
        ))
    })?;
    ModelConfig::from_json_str(&text)
}

/// Options for [`load`].
#[derive(Clone, Debug)]
pub struct LoadOpts {
    pub device: Device,
    pub dtype: DType,
    pub name: Option<String>,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            device: Device::Cpu,
            dtype: DType::F32,
            name: None,
        }
    }
}

/// Load a model from a folder, GGUF file, embedded toy name, named model or cached repo id.
pub fn load(spec: &str, opts: &LoadOpts) -> Result<LoadedModel> {
    let dir = resolve(spec)?;
    if let Some(file) = gguf_file_of(&dir)? {
        let (model, tok) = gguf::load(&file, opts)?;
        let name = opts.name.clone().unwrap_or_else(|| default_name(spec));
        return Ok(LoadedModel {
            name,
            source: file,
            model,
            tok,
        });
    }
    let cfg = read_config(&dir)?;
    let tok = Tok::from_dir(&dir)?;
    let src = SafetensorsSource::open(&dir)?;
    let w = load_weights(&cfg, &src, opts.dtype, &opts.device)?;
    let model = Transformer::new(cfg, w, opts.device.clone(), opts.dtype);
    let name = opts.name.clone().unwrap_or_else(|| default_name(spec));
    Ok(LoadedModel {
        name,
        source: dir,
        model,
        tok,
    })
}

/// The GGUF file to load for a resolved path: the path itself when it is a file, or the one
/// `.gguf` file of a folder without `config.json`.
fn gguf_file_of(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(Some(path.to_path_buf()));
    }
    if path.join("config.json").exists() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .map(|x| x.eq_ignore_ascii_case("gguf"))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(GimError::Load(format!(
            "{} has no config.json but {n} .gguf files; pass the one to load",
            path.display()
        ))),
    }
}

/// A short name for a model spec: the last path component without revision.
pub fn default_name(spec: &str) -> String {
    let s = spec.trim().trim_end_matches('/');
    let s = s.split('@').next().unwrap_or(s);
    let s = s.rsplit('/').next().unwrap_or(s);
    match s.rsplit_once('.') {
        Some((stem, ext)) if ext.eq_ignore_ascii_case("gguf") && !stem.is_empty() => stem.into(),
        _ => s.into(),
    }
}
