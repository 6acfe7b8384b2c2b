//! GGUF checkpoints (llama.cpp's single-file format): the metadata becomes a Hugging Face style
//! config, the tensors are dequantised one at a time under the Hugging Face names the weight maps
//! ask for, and the tokenizer is rebuilt from the metadata.
//!
//! Family knowledge stays where it is: `config.rs` reads the config we build here and
//! `weights.rs` asks for the tensors it always asks for. What is GGUF-specific lives in this file:
//! llama.cpp's names, its row permutation of llama's q/k projections, Gemma's `1 + w` norms.

//!
//! Files: this one reads and checks the header and serves metadata fields and dequantised
//! tensors; `config.rs` turns the metadata into the config, `tensors.rs` maps Hugging Face
//! tensor names to GGUF ones, `tokenizer.rs` rebuilds the tokenizer.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

use super::LoadOpts;
use crate::error::{GimError, Result};
use crate::model::weights::load_weights;
use crate::model::Transformer;
use crate::tokenizer::Tok;

mod config;
mod tensors;
mod tokenizer;

pub use config::SUPPORTED_ARCHS;
pub use tensors::GgufSource;

/// Tensor types we dequantise (candle's CPU dequantisers).
const SUPPORTED_TYPES: &[GgmlDType] = &[
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// Load a GGUF file: the config from its metadata, its tokenizer, and its weights dequantised
/// to `opts.dtype` on `opts.device` one tensor at a time.
pub fn load(path: &Path, opts: &LoadOpts) -> Result<(Transformer, Tok)> {
    let g = GgufFile::open(path)?;
    let cfg = g.config()?;
    let tok = g.tokenizer()?;
    if tok.vocab_size() > cfg.vocab_size {
        return Err(g.err(&format!(
            "is inconsistent: its tokenizer has {} tokens for a vocabulary of {}",
            tok.vocab_size(),
            cfg.vocab_size
        )));
    }
    let w = load_weights(&cfg, &g.source(&cfg), opts.dtype, &opts.device)?;
    Ok((
        Transformer::new(cfg, w, opts.device.clone(), opts.dtype),
        tok,
    ))
}

/// An open GGUF file: its parsed header and a reader for tensor data.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: RefCell<BufReader<File>>,
    arch: String,
}

impl GgufFile {
    /// Read and check the header: magic, metadata, tensor table, and that every tensor lies
    /// inside the file with a type we can dequantise.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let file =
            File::open(path).map_err(|e| GimError::Load(format!("cannot open {shown}: {e}")))?;
        let file_size = file
            .metadata()
            .map_err(|e| GimError::Load(format!("cannot read {shown}: {e}")))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut head = Vec::with_capacity(8);
        (&mut reader)
            .take(8)
            .read_to_end(&mut head)
            .map_err(|e| GimError::Load(format!("cannot read {shown}: {e}")))?;
        if head.is_empty() {
            return Err(GimError::Load(format!(
                "{shown} is empty (truncated); download it again"
            )));
        }
        let magic = &head[..head.len().min(4)];
        if !b"GGUF".starts_with(magic) {
            let hex: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
            return Err(GimError::Load(format!(
                "{shown} is not a GGUF file (it starts with bytes {} instead of `GGUF`); pass a .gguf file or a model folder",
                hex.join(" ")
            )));
        }
        if head.len() < 8 {
            return Err(GimError::Load(format!(
                "{shown} is truncated: {} bytes, less than a GGUF header; download it again",
                head.len()
            )));
        }
        let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(1..=3).contains(&version) {
            return Err(GimError::Unsupported(format!(
                "{shown} is GGUF version {version}, which gim cannot read (versions 1 to 3)"
            )));
        }
        std::io::Seek::rewind(&mut reader)
            .map_err(|e| GimError::Load(format!("cannot read {shown}: {e}")))?;
        let content = Content::read(&mut reader).map_err(|e| header_error(path, &e))?;
        let g = GgufFile {
            path: path.to_path_buf(),
            content,
            reader: RefCell::new(reader),
            arch: String::new(),
        };
        g.check_tensors(file_size)?;
        let arch = g.meta_str("general.architecture")?.ok_or_else(|| {
            g.err("has no `general.architecture` in its metadata; is it a model file?")
        })?;
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(GimError::Unsupported(format!(
                "{shown}: GGUF architecture `{arch}` is not supported (supported: {})",
                SUPPORTED_ARCHS.join(", ")
            )));
        }
        Ok(GgufFile { arch, ..g })
    }

    /// The `general.architecture` value (`llama`, `qwen2`, …).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &std::collections::HashMap<String, Value> {
        &self.content.metadata
    }

    fn err(&self, what: &str) -> GimError {
        GimError::Load(format!("{} {what}", self.path.display()))
    }

    fn check_tensors(&self, file_size: u64) -> Result<()> {
        let mut infos: Vec<(&String, &TensorInfo)> = self.content.tensor_infos.iter().collect();
        infos.sort_by_key(|(_, i)| i.offset);
        for (name, info) in infos {
            let t = info.ggml_dtype;
            if !SUPPORTED_TYPES.contains(&t) {
                return Err(GimError::Unsupported(format!(
                    "{}: tensor `{name}` has quantisation type {}, which gim cannot dequantise (supported: {})",
                    self.path.display(),
                    type_name(t),
                    SUPPORTED_TYPES.iter().map(|t| type_name(*t)).collect::<Vec<_>>().join(", ")
                )));
            }
            let dims = info.shape.dims();
            let elems = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            let last = dims.last().copied().unwrap_or(1);
            let bs = t.block_size();
            let bytes = elems
                .filter(|n| n % bs as u64 == 0 && last % bs == 0)
                .and_then(|n| (n / bs as u64).checked_mul(t.type_size() as u64));
            let Some(bytes) = bytes else {
                return Err(self.err(&format!(
                    "is corrupt: tensor `{name}` has shape {dims:?}, which does not fit {} blocks of {bs}",
                    type_name(t)
                )));
            };
            let start = self.content.tensor_data_offset.checked_add(info.offset);
            let end = start.and_then(|s| s.checked_add(bytes));
            match end {
                Some(end) if end <= file_size => {}
                _ => {
                    return Err(self.err(&format!(
                        "is truncated or corrupt: tensor `{name}` ({} bytes at offset {}) ends beyond the end of the file ({file_size} bytes); download it again",
                        bytes,
                        start.unwrap_or(u64::MAX)
                    )))
                }
            }
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn meta_str(&self, key: &str) -> Result<Option<String>> {
        match self.meta(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad_meta(key, v, "a string")),
        }
    }

    fn meta_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.meta(key) {
            None => Ok(None),
            Some(v) => match int_of(v) {
                Some(x) if x >= 0 => Ok(Some(x as usize)),
                _ => Err(self.bad_meta(key, v, "a non-negative integer")),
            },
        }
    }

    fn need_usize(&self, key: &str) -> Result<usize> {
        self.meta_usize(key)?
            .ok_or_else(|| self.err(&format!("lacks the metadata field `{key}`")))
    }

    fn meta_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.meta(key) {
            None => Ok(None),
            // An f32 field holds a decimal like 1e-5 as 9.99999974e-6: take the shortest decimal
            // that rounds to the same f32, the value the model's config.json had.
            Some(Value::F32(x)) => Ok(format!("{x}").parse().ok()),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(v) => match int_of(v) {
                Some(x) => Ok(Some(x as f64)),
                None => Err(self.bad_meta(key, v, "a number")),
            },
        }
    }

    fn meta_bool(&self, key: &str) -> Option<bool> {
        match self.meta(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => int_of(v).map(|x| x != 0),
            None => None,
        }
    }

    fn bad_meta(&self, key: &str, v: &Value, want: &str) -> GimError {
        let shown = match v {
            Value::Array(a) => format!("an array of {}", a.len()),
            Value::String(s) => format!("the string {s:?}"),
            other => format!("{other:?}"),
        };
        self.err(&format!(
            "has a bad metadata field `{key}`: {shown}, expected {want}"
        ))
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Dimensions of a tensor in candle's order (`[rows, cols]` for a linear weight).
    fn dims(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims())
    }

    /// One tensor, dequantised to f32 on the CPU; the quantised copy is dropped before returning.
    fn read(&self, name: &str) -> Result<Tensor> {
        let q = {
            let mut r = self.reader.borrow_mut();
            self.content
                .tensor(&mut *r, name, &Device::Cpu)
                .map_err(|e| {
                    self.err(&format!(
                        "is corrupt: cannot read tensor `{name}` ({}); download it again",
                        first_line(&e.to_string())
                    ))
                })?
        };
        Ok(q.dequantize(&Device::Cpu)?)
    }

    /// The tokenizer described by the metadata.
    pub fn tokenizer(&self) -> Result<Tok> {
        tokenizer::from_gguf(self)
    }
}

fn int_of(v: &Value) -> Option<i128> {
    Some(match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => return None,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// llama.cpp's name of a tensor type.
fn type_name(t: GgmlDType) -> String {
    match t {
        GgmlDType::Q2K => "Q2_K".into(),
        GgmlDType::Q3K => "Q3_K".into(),
        GgmlDType::Q4K => "Q4_K".into(),
        GgmlDType::Q5K => "Q5_K".into(),
        GgmlDType::Q6K => "Q6_K".into(),
        GgmlDType::Q8K => "Q8_K".into(),
        other => format!("{other:?}"),
    }
}

/// A header candle could not parse, as one line that says what to do.
fn header_error(path: &Path, e: &candle_core::Error) -> GimError {
    let msg = first_line(&e.to_string());
    let shown = path.display();
    if let Some(n) = msg
        .strip_prefix("unknown dtype for tensor ")
        .and_then(|n| n.trim().parse::<u32>().ok())
    {
        return GimError::Unsupported(format!(
            "{shown} holds tensors of GGML type {n} ({}), which candle cannot read (supported: {})",
            ggml_type_number_name(n),
            SUPPORTED_TYPES
                .iter()
                .map(|t| type_name(*t))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    GimError::Load(format!(
        "cannot read the GGUF header of {shown} ({msg}); the file is truncated or corrupt, download it again"
    ))
}

/// ggml's names for the type numbers candle does not know.
fn ggml_type_number_name(n: u32) -> &'static str {
    match n {
        4 | 5 => "a removed Q4 variant",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}
