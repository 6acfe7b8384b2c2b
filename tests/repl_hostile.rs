//! `gim repl` fed the hostile corpus (tests/data/hostile_corpus.json, shared with the kernel test):
//! every line is answered, nothing panics, and the model loaded first is still listed at the end.

use std::io::Write;
use std::process::{Command, Stdio};

fn corpus() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/hostile_corpus.json"
    );
    let text = std::fs::read_to_string(path).expect("read the corpus");
    serde_json::from_str(&text).expect("corpus is a JSON list of strings")
}

#[test]
fn repl_survives_the_hostile_corpus() {
    let home = std::env::temp_dir().join(format!("gim-repl-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("temp home");
    let mut lines = vec!["load toy-ioi".to_string()];
    let corpus = corpus();
    for s in &corpus {
        // The REPL reads one line at a time: line breaks inside a string would split it.
        let s = s.replace(['\n', '\r'], " ");
        lines.push(s.clone());
        lines.push(format!("%gim {s}"));
        lines.push(format!("load {s}"));
        lines.push(format!("attribute \"{s}\" --target {s}"));
        lines.push(format!("tokens \"{s}\""));
        lines.push(format!("help {s}"));
    }
    lines.push("models".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_gim"))
        .args(["repl", "--out"])
        .arg(home.join("out"))
        .env("HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", home.join("hf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gim repl");
    // Feed stdin from its own thread: the REPL's output fills the pipe while it reads.
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        for l in &lines {
            if writeln!(stdin, "{l}").is_err() {
                return false;
            }
        }
        true
    });
    let out = child.wait_with_output().expect("repl output");
    assert!(feeder.join().unwrap_or(false), "the REPL stopped reading");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "repl exited with {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    assert!(
        !stderr.contains("internal error"),
        "a caught panic: {stderr}"
    );
    // Every error is one line starting with `error:` (or its `usage:` line).
    for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            l.starts_with("error:")
                || l.starts_with("usage:")
                || l.starts_with("  ")
                || l.starts_with("loaded "),
            "unexpected stderr line {l:?}"
        );
    }
    let errors = stderr.lines().filter(|l| l.starts_with("error:")).count();
    assert!(
        errors > corpus.len(),
        "the hostile lines were not all refused: {errors}"
    );
    // The last `models` still lists the model loaded before the corpus.
    let tail = stdout.rsplit("toy-ioi").next().unwrap_or("");
    assert!(stdout.contains("toy-ioi"), "model lost: {stdout}");
    assert!(
        tail.len() < 400,
        "toy-ioi is not in the last listing: {tail}"
    );
    let _ = std::fs::remove_dir_all(&home);
}
