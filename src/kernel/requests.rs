//! How the worker answers each shell request: execute (in `worker.rs`), complete, inspect,
//! history, is_complete, kernel_info, comm_info and comm_open, and the error reply of each type
//! when its handler panicked.

use serde_json::{json, Value};

use super::cells::{self, CursorTarget};
use super::message::{Message, PROTOCOL_VERSION};
use super::worker::Worker;

/// The reply to `kernel_info_request`.
pub fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "gim",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "rust",
            "version": "",
            "mimetype": "text/rust",
            "file_extension": ".rs",
            "pygments_lexer": "rust",
            "codemirror_mode": "rust",
        },
        "banner": format!(
            "GIM {} — gradient attributions for language models.\n\
             `%gim help` lists the magics; other cells are Rust (evcxr).",
            env!("CARGO_PKG_VERSION")
        ),
        "help_links": [
            { "text": "Rust cells (evcxr)", "url": "https://github.com/evcxr/evcxr/blob/main/COMMON.md" },
        ],
        "debugger": false,
    })
}

/// One stored execution: its count, its code and the plain text of its result.
pub(super) struct HistoryEntry {
    pub(super) count: u64,
    pub(super) input: String,
    pub(super) output: Option<String>,
}

impl Worker {
    /// The error reply for a request whose handler panicked.
    pub(super) fn reply_after_panic(&self, msg: &Message, what: &str) {
        let evalue = format!(
            "internal error while handling {}: {what}; the kernel and its loaded models are kept",
            msg.msg_type()
        );
        eprintln!("gim kernel: {evalue}");
        let err = json!({ "status": "error", "ename": "InternalError", "evalue": evalue, "traceback": [evalue] });
        match msg.msg_type() {
            "execute_request" => {
                if !msg.content_bool("silent", false) {
                    self.shared.publish(
                        msg,
                        "error",
                        json!({ "ename": "InternalError", "evalue": evalue, "traceback": [evalue] }),
                    );
                }
                let mut c = err;
                c["execution_count"] = json!(self.execution_count);
                c["user_expressions"] = json!({});
                self.reply(msg, "execute_reply", c);
            }
            "complete_request" => {
                let mut c = err;
                c["matches"] = json!([]);
                c["cursor_start"] = msg.content.get("cursor_pos").cloned().unwrap_or(json!(0));
                c["cursor_end"] = c["cursor_start"].clone();
                c["metadata"] = json!({});
                self.reply(msg, "complete_reply", c);
            }
            "inspect_request" => {
                let mut c = err;
                c["found"] = json!(false);
                c["data"] = json!({});
                c["metadata"] = json!({});
                self.reply(msg, "inspect_reply", c);
            }
            "is_complete_request" => {
                self.reply(msg, "is_complete_reply", json!({ "status": "unknown" }))
            }
            "history_request" => {
                let mut c = err;
                c["history"] = json!([]);
                self.reply(msg, "history_reply", c);
            }
            "kernel_info_request" => self.reply(msg, "kernel_info_reply", kernel_info()),
            "comm_info_request" => self.reply(
                msg,
                "comm_info_reply",
                json!({ "status": "ok", "comms": {} }),
            ),
            _ => {}
        }
    }

    /// Handle one request.
    pub(super) fn handle(&mut self, msg: &Message) {
        if fault_injection() && msg.content_str("code").contains(PANIC_PROBE) {
            panic!("fault injection in {}", msg.msg_type());
        }
        match msg.msg_type() {
            "execute_request" => self.execute(msg),
            "kernel_info_request" => self.reply(msg, "kernel_info_reply", kernel_info()),
            "complete_request" => {
                let c = self.complete(msg);
                self.reply(msg, "complete_reply", c)
            }
            "inspect_request" => {
                let c = self.inspect(msg);
                self.reply(msg, "inspect_reply", c)
            }
            "is_complete_request" => {
                let (status, indent) = cells::is_complete(msg.content_str("code"));
                let mut c = json!({ "status": status });
                if status == "incomplete" {
                    c["indent"] = json!(indent);
                }
                self.reply(msg, "is_complete_reply", c)
            }
            "history_request" => {
                let c = self.history_reply(&msg.content);
                self.reply(msg, "history_reply", c)
            }
            "comm_info_request" => self.reply(
                msg,
                "comm_info_reply",
                json!({ "status": "ok", "comms": {} }),
            ),
            "comm_open" => {
                // No comm targets: tell the front end the comm is closed.
                let id = msg.content.get("comm_id").cloned().unwrap_or(Value::Null);
                self.shared
                    .publish(msg, "comm_close", json!({ "comm_id": id, "data": {} }));
            }
            "comm_msg" | "comm_close" => {}
            other => eprintln!("gim kernel: ignoring unknown shell message `{other}`"),
        }
    }

    fn complete(&mut self, msg: &Message) -> Value {
        let code = msg.content_str("code").to_string();
        let cursor_chars = msg
            .content
            .get("cursor_pos")
            .and_then(Value::as_u64)
            .unwrap_or(code.chars().count() as u64);
        let cursor = cells::char_to_byte(&code, cursor_chars as usize);
        let (matches, start, end) = match cells::target_at(&code, cursor) {
            CursorTarget::Magic {
                line,
                cursor,
                offset,
            } => {
                let c = match self.session_now() {
                    Some(session) => session.complete(&line, cursor),
                    None => Default::default(),
                };
                (c.matches, offset + c.cursor_start, offset + c.cursor_end)
            }
            CursorTarget::Rust {
                code: src,
                cursor: c,
                offset,
            } => match self.engine() {
                Ok(engine) => match engine.complete(&src, c) {
                    Some((m, s, e)) => (m, offset + s, offset + e),
                    None => (vec![], cursor, cursor),
                },
                Err(_) => (vec![], cursor, cursor),
            },
        };
        json!({
            "status": "ok",
            "matches": matches,
            "cursor_start": cells::byte_to_char(&code, start),
            "cursor_end": cells::byte_to_char(&code, end),
            "metadata": {},
        })
    }

    fn inspect(&mut self, msg: &Message) -> Value {
        let code = msg.content_str("code");
        let cursor_chars = msg
            .content
            .get("cursor_pos")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cursor = cells::char_to_byte(code, cursor_chars as usize);
        let found = match cells::target_at(code, cursor) {
            CursorTarget::Magic { line, cursor, .. } => {
                self.session_now().and_then(|s| s.inspect(&line, cursor))
            }
            CursorTarget::Rust { .. } => None,
        };
        match found {
            Some(b) => {
                json!({ "status": "ok", "found": true, "data": Value::Object(b.data), "metadata": Value::Object(b.metadata) })
            }
            None => json!({ "status": "ok", "found": false, "data": {}, "metadata": {} }),
        }
    }

    fn history_reply(&self, content: &Value) -> Value {
        let get = |k: &str| content.get(k).and_then(Value::as_i64);
        let all = self.history.iter();
        let entries: Vec<&HistoryEntry> =
            match content.get("hist_access_type").and_then(Value::as_str) {
                Some("tail") => {
                    let n = get("n").unwrap_or(10).max(0) as usize;
                    all.skip(self.history.len().saturating_sub(n)).collect()
                }
                Some("range") => {
                    let start = get("start").unwrap_or(0);
                    let stop = get("stop").unwrap_or(i64::MAX);
                    all.filter(|h| (h.count as i64) >= start && (h.count as i64) < stop)
                        .collect()
                }
                Some("search") => {
                    let pattern = content
                        .get("pattern")
                        .and_then(Value::as_str)
                        .unwrap_or("*");
                    let mut hits: Vec<&HistoryEntry> =
                        all.filter(|h| glob_match(pattern, &h.input)).collect();
                    if content
                        .get("unique")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                    {
                        // Keep the latest occurrence of each input.
                        let mut seen = std::collections::HashSet::new();
                        hits.reverse();
                        hits.retain(|h| seen.insert(h.input.as_str()));
                        hits.reverse();
                    }
                    if let Some(n) = get("n") {
                        hits = hits.split_off(hits.len().saturating_sub(n.max(0) as usize));
                    }
                    hits
                }
                _ => Vec::new(),
            };
        let with_output = content
            .get("output")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let history: Vec<Value> = entries
            .iter()
            .map(|h| {
                if with_output {
                    json!([0, h.count, [h.input, h.output]])
                } else {
                    json!([0, h.count, h.input])
                }
            })
            .collect();
        json!({ "status": "ok", "history": history })
    }
}

/// With `GIM_FAULT_INJECTION=1`, any shell request whose code holds this text panics in its
/// handler: the tests prove the panic guard on a real kernel, since no known input panics.
const PANIC_PROBE: &str = "__gim_panic_probe__";

fn fault_injection() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GIM_FAULT_INJECTION").is_ok_and(|v| v == "1"))
}

/// `*` / `?` glob matching for history search.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}
