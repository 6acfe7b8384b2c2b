//! `gim repl`: the `%gim` magics in a terminal, with line editing and history.
//!
//! Lines may be typed with or without the `%gim ` prefix. Text goes to the terminal;
//! pictures (SVG, PNG) in a result are written to files under `--out` and their paths printed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustyline::error::ReadlineError;
use serde_json::Value;

use crate::kernel::cells;
use crate::session::{MimeBundle, Output, Session};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder for pictures produced by magics.
    #[arg(long, default_value = "gim-out")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".gim_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    // Ctrl-C while a magic runs asks it to stop (at the prompt rustyline handles it).
    let interrupt = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupt))?;
    let mut session = Session::new();
    let mut out = TerminalOutput {
        dir: args.out,
        written: 0,
        interrupt,
        last: None,
        open_line: false,
    };
    println!(
        "gim {} — `help` lists the magics, Ctrl-D quits.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        let line = match editor.readline("gim> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let _ = editor.add_history_entry(trimmed);
        if matches!(trimmed, "exit" | "quit" | ":q") {
            break;
        }
        let command = cells::magic_command(trimmed).unwrap_or(trimmed);
        out.interrupt.store(false, Ordering::SeqCst);
        // A panic in a magic is reported and the session (models, settings, results) kept.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.run_magic(command, &mut out)
        }));
        out.end_line();
        match ran {
            Err(panic) => eprintln!(
                "error: internal error: {}; the session is kept",
                crate::error::panic_message(&*panic)
            ),
            Ok(Ok(Some(bundle))) => out.show(&bundle),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                eprintln!("error: {}", e.message);
                if !e.usage.is_empty() {
                    eprintln!("usage: {}", e.usage);
                }
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

/// Prints text and writes pictures to files.
struct TerminalOutput {
    dir: PathBuf,
    written: usize,
    interrupt: Arc<AtomicBool>,
    /// The last display with an id and its text (updates that extend it print the difference).
    last: Option<(String, String)>,
    open_line: bool,
}

impl TerminalOutput {
    /// Finish a line left open by a growing display.
    fn end_line(&mut self) {
        if self.open_line {
            println!();
            self.open_line = false;
        }
    }

    fn show(&mut self, bundle: &MimeBundle) {
        let text = bundle.plain();
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
        for (mime, ext) in [("image/svg+xml", "svg"), ("image/png", "png")] {
            if let Some(v) = bundle.data.get(mime) {
                match self.save(v, ext) {
                    Ok(p) => println!("[{mime}] {}", p.display()),
                    Err(e) => eprintln!("could not write {mime}: {e}"),
                }
            }
        }
    }

    fn save(&mut self, v: &Value, ext: &str) -> anyhow::Result<PathBuf> {
        let bytes = match (v, ext) {
            (Value::String(s), "png") => {
                base64_decode(s).ok_or_else(|| anyhow::anyhow!("invalid base64 PNG"))?
            }
            (Value::String(s), _) => s.clone().into_bytes(),
            (Value::Array(parts), _) => parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<String>()
                .into_bytes(),
            _ => anyhow::bail!("unexpected JSON for a picture"),
        };
        std::fs::create_dir_all(&self.dir)?;
        let path = next_free(&self.dir, &mut self.written, ext);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}

fn next_free(dir: &Path, n: &mut usize, ext: &str) -> PathBuf {
    loop {
        *n += 1;
        let p = dir.join(format!("out-{:03}.{ext}", *n));
        if !p.exists() {
            return p;
        }
    }
}

impl Output for TerminalOutput {
    fn stream(&mut self, name: &str, text: &str) {
        if name == "stderr" {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    fn display(&mut self, bundle: MimeBundle, display_id: Option<&str>) {
        self.end_line();
        self.show(&bundle);
        self.last = display_id.map(|id| (id.to_string(), bundle.plain().to_string()));
    }
    fn update_display(&mut self, bundle: MimeBundle, display_id: &str) {
        // A display that only grows (generation) prints what it gained, on the same line.
        let text = bundle.plain().to_string();
        let grown = match &self.last {
            Some((id, old)) if id == display_id => {
                text.strip_prefix(old.as_str()).map(str::to_string)
            }
            _ => None,
        };
        match grown {
            Some(new) => {
                print!("{new}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
                self.open_line = true;
            }
            None => {
                self.end_line();
                self.show(&bundle);
            }
        }
        self.last = Some((display_id.to_string(), text));
    }
    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }
}

/// Standard base64 (whitespace ignored); `None` on invalid input.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_written_to_files() {
        let dir = std::env::temp_dir().join(format!("gim-repl-test-{}", std::process::id()));
        let interrupt = Arc::new(AtomicBool::new(false));
        let mut out = TerminalOutput {
            dir: dir.clone(),
            written: 0,
            interrupt,
            last: None,
            open_line: false,
        };
        let bundle = MimeBundle::text("a picture")
            .with("image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'/>")
            .with("image/png", "iVBORw0KGgo=");
        out.show(&bundle);
        let svg = std::fs::read_to_string(dir.join("out-001.svg")).unwrap_or_default();
        assert!(svg.starts_with("<svg"));
        let png = std::fs::read(dir.join("out-002.png")).unwrap_or_default();
        assert_eq!(&png[..4], b"\x89PNG");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn base64_round() {
        assert_eq!(
            super::base64_decode("aGVsbG8=").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(super::base64_decode("iVBO\nRw==").map(|v| v.len()), Some(4));
    }
}
