//! How magics hand their output to a front end (Jupyter kernel, REPL, tests).

pub use crate::render::{new_display_id, MimeBundle, RESULT_MIME};

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
