//! The model's chat template (Jinja, as Hugging Face ships it), rendered with minijinja: from a
//! folder's `chat_template.jinja` or `tokenizer_config.json`, or a GGUF file's
//! `tokenizer.chat_template` metadata.

use std::path::Path;

use serde_json::Value;

use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

/// What a template needs besides the messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

/// A special-token entry of `tokenizer_config.json`: a string or `{ "content": … }`.
fn token_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

/// `chat_template` is a string, or a list of `{name, template}` (the one named `default`).
fn template_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn from_folder(dir: &Path) -> Result<Option<ChatTemplate>> {
    let cfg: Value = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| {
            GimError::Load(format!(
                "{}/tokenizer_config.json is not valid JSON: {e}",
                dir.display()
            ))
        })?,
        Err(_) => Value::Null,
    };
    let source = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(t) => Some(t),
        Err(_) => cfg.get("chat_template").and_then(template_text),
    };
    Ok(source.map(|source| ChatTemplate {
        source,
        bos_token: token_text(cfg.get("bos_token")),
        eos_token: token_text(cfg.get("eos_token")),
    }))
}

fn from_gguf(path: &Path, m: &LoadedModel) -> Result<Option<ChatTemplate>> {
    use candle_core::quantized::gguf_file::{Content, Value as G};
    let mut f = std::fs::File::open(path)
        .map_err(|e| GimError::Load(format!("cannot open {}: {e}", path.display())))?;
    let c = Content::read(&mut f)
        .map_err(|e| GimError::Load(format!("cannot read {}: {e}", path.display())))?;
    let text = |k: &str| match c.metadata.get(k) {
        Some(G::String(s)) => Some(s.clone()),
        _ => None,
    };
    let piece = |k: &str| match c.metadata.get(k).map(|v| v.to_u32()) {
        Some(Ok(id)) => m.tok.piece(id),
        _ => String::new(),
    };
    Ok(text("tokenizer.chat_template").map(|source| ChatTemplate {
        source,
        bos_token: piece("tokenizer.ggml.bos_token_id"),
        eos_token: piece("tokenizer.ggml.eos_token_id"),
    }))
}

/// One integer of a GGUF file's metadata, if the file and the key are there.
pub fn gguf_u32(path: &Path, key: &str) -> Option<u32> {
    let mut f = std::fs::File::open(path).ok()?;
    let c = candle_core::quantized::gguf_file::Content::read(&mut f).ok()?;
    c.metadata.get(key)?.to_u32().ok()
}

/// The chat template of a loaded model, if it has one.
pub fn template_of(m: &LoadedModel) -> Result<Option<ChatTemplate>> {
    let src = &m.source;
    if src.is_file()
        && src
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        from_gguf(src, m)
    } else {
        from_folder(src)
    }
}

/// Render `messages` (`[{role, content}]`) with a generation prompt at the end.
pub fn render(t: &ChatTemplate, messages: &[(String, String)]) -> Result<String> {
    let mut env = minijinja::Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    let tmpl = env.template_from_str(&t.source).map_err(|e| {
        GimError::Load(format!(
            "the model's chat template does not parse: {}",
            first_line(&e.to_string())
        ))
    })?;
    let msgs: Vec<Value> = messages
        .iter()
        .map(|(role, content)| serde_json::json!({ "role": role, "content": content }))
        .collect();
    tmpl.render(minijinja::context! {
        messages => msgs,
        add_generation_prompt => true,
        bos_token => t.bos_token,
        eos_token => t.eos_token,
    })
    .map_err(|e| {
        GimError::input(format!(
            "the model's chat template failed: {}",
            first_line(&e.to_string())
        ))
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// `text` as one user message in the model's chat template, ready for generation.
pub fn user_prompt(m: &LoadedModel, text: &str) -> Result<String> {
    let t = template_of(m)?.ok_or_else(|| {
        GimError::input(format!(
            "model `{}` has no chat template (tokenizer_config.json or GGUF metadata); drop --chat",
            m.name
        ))
    })?;
    render(&t, &[("user".to_string(), text.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_like_transformers() {
        // SmolLM2-Instruct's template (ChatML with a default system prompt)
        let t = ChatTemplate {
            source: "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".into(),
            ..Default::default()
        };
        let s = render(&t, &[("user".into(), "Hi  there".into())]).unwrap();
        assert_eq!(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi  there<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let t = ChatTemplate {
            source: "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'].strip() | upper }}{% endfor %}".into(),
            bos_token: "<s>".into(),
            ..Default::default()
        };
        assert_eq!(
            render(&t, &[("user".into(), "  hi ".into())]).unwrap(),
            "<s>HI"
        );
        let e = render(&t, &[("system".into(), "x".into())]).unwrap_err();
        assert!(e.to_string().contains("no system"), "{e}");
    }
}
