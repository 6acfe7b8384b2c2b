//! What a front end shows: one MIME bundle per output (text/plain always, pictures, HTML and the
//! result's machine-readable form), and display ids. Lives in `render` so that the figures and the
//! session both use it without `render` naming the session (re-exported as `session::MimeBundle`).

use serde_json::{Map, Value};

/// The MIME type that carries a result's machine-readable form. No front end renders a vendor
/// type by default (JupyterLab ranks `application/json` first and would show every result as a
/// JSON tree), so pictures, HTML and text stay what users see while the data travels along.
pub const RESULT_MIME: &str = "application/vnd.gim.result+json";

/// One rich output: MIME type → data (`text/plain` always present), plus metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MimeBundle {
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl MimeBundle {
    /// A bundle with only `text/plain`.
    pub fn text(s: impl Into<String>) -> Self {
        let mut b = MimeBundle::default();
        b.data.insert("text/plain".into(), Value::String(s.into()));
        b
    }

    /// Add (or replace) a MIME type.
    pub fn with(mut self, mime: &str, v: impl Into<Value>) -> Self {
        self.data.insert(mime.into(), v.into());
        self
    }

    /// Attach the result's machine-readable form (under [`RESULT_MIME`]).
    pub fn with_result(self, v: impl Into<Value>) -> Self {
        self.with(RESULT_MIME, v)
    }

    /// The machine-readable result, if the bundle carries one.
    pub fn result(&self) -> Option<&Value> {
        self.data.get(RESULT_MIME)
    }

    pub fn plain(&self) -> &str {
        self.data
            .get("text/plain")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
}

/// A display id no other output of this process has: a front end updates every output that
/// shares an id, so ids must never repeat across cells.
pub fn new_display_id(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("gim-{what}-{}-{n}", std::process::id())
}
