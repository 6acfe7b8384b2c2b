//! How magics hand their output to a front end (Jupyter kernel, REPL, tests).

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

/// Where a running magic sends what it shows. Implemented by the kernel (iopub messages),
/// the REPL (terminal + files) and tests (a recorder).
pub trait Output {
    /// Text on `stdout` or `stderr`.
    fn stream(&mut self, name: &str, text: &str);
    /// A display bundle; `display_id` lets later calls update it in place.
    fn display(&mut self, bundle: MimeBundle, display_id: Option<&str>);
    /// Replace the content of an earlier display with this id.
    fn update_display(&mut self, bundle: MimeBundle, display_id: &str);
    /// True once the user asked to interrupt; long loops check it and stop.
    fn interrupted(&self) -> bool {
        false
    }
}

/// An [`Output`] that records everything (tests, REPL).
#[derive(Debug, Default)]
pub struct Recorder {
    pub streams: Vec<(String, String)>,
    pub displays: Vec<(MimeBundle, Option<String>)>,
    pub updates: Vec<(MimeBundle, String)>,
}

impl Output for Recorder {
    fn stream(&mut self, name: &str, text: &str) {
        self.streams.push((name.to_string(), text.to_string()));
    }
    fn display(&mut self, bundle: MimeBundle, display_id: Option<&str>) {
        self.displays.push((bundle, display_id.map(str::to_string)));
    }
    fn update_display(&mut self, bundle: MimeBundle, display_id: &str) {
        self.updates.push((bundle, display_id.to_string()));
    }
}
