//! `gim kernel install` writes a complete kernelspec for each target (drives the real binary).

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gim-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn install(args: &[&str], envs: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gim"));
    cmd.args(["kernel", "install"])
        .args(args)
        .env_remove("JUPYTER_DATA_DIR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run gim")
}

fn check_spec(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("kernel.json")).expect("kernel.json");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let argv: Vec<&str> = spec["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        Path::new(argv[0]).is_absolute(),
        "argv[0] must be absolute: {}",
        argv[0]
    );
    assert_eq!(
        &argv[1..],
        ["kernel", "--connection-file", "{connection_file}"]
    );
    assert_eq!(spec["display_name"], "GIM (Rust)");
    assert_eq!(spec["language"], "rust");
    assert_eq!(spec["interrupt_mode"], "message");
    for logo in ["logo-32x32.png", "logo-64x64.png"] {
        let bytes = std::fs::read(dir.join(logo)).expect("logo");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[test]
fn prefix_install() {
    let p = scratch("prefix");
    let out = install(
        &["--prefix", p.to_str().expect("utf8"), "--name", "gim-test"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_spec(&p.join("share/jupyter/kernels/gim-test"));
    let _ = std::fs::remove_dir_all(p);
}

#[test]
fn sys_prefix_uses_virtual_env() {
    let p = scratch("venv");
    let out = install(&["--sys-prefix"], &[("VIRTUAL_ENV", &p)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_spec(&p.join("share/jupyter/kernels/gim"));
    let _ = std::fs::remove_dir_all(p);
}

#[test]
fn user_install_is_the_default() {
    let home = scratch("home");
    let out = install(&[], &[("HOME", &home)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = if cfg!(target_os = "macos") {
        "Library/Jupyter/kernels"
    } else {
        ".local/share/jupyter/kernels"
    };
    check_spec(&home.join(base).join("gim"));
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn bad_name_is_refused() {
    let p = scratch("badname");
    let out = install(
        &["--prefix", p.to_str().expect("utf8"), "--name", "../evil"],
        &[],
    );
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(p);
}
