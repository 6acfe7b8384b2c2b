//! `gim kernel install`: write the kernelspec (kernel.json + logos) where Jupyter looks.

use std::path::{Path, PathBuf};

use serde_json::json;

/// The logos shipped in `kernel-spec/`, embedded so the binary installs itself anywhere.
const LOGO_32: &[u8] = include_bytes!("../../kernel-spec/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../../kernel-spec/logo-64x64.png");

/// Where to install.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The per-user Jupyter data dir (`~/.local/share/jupyter/kernels` on Linux).
    User,
    /// `sys.prefix` of the active Python (`$VIRTUAL_ENV`, else `python3 -c 'import sys; …'`).
    SysPrefix,
    /// An explicit prefix: `P/share/jupyter/kernels`.
    Prefix(PathBuf),
}

/// The folder that holds kernelspecs for `target`.
pub fn kernels_dir(target: &Target) -> anyhow::Result<PathBuf> {
    Ok(match target {
        Target::User => {
            if let Some(d) = std::env::var_os("JUPYTER_DATA_DIR") {
                PathBuf::from(d).join("kernels")
            } else {
                let home =
                    std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
                let home = PathBuf::from(home);
                if cfg!(target_os = "macos") {
                    home.join("Library/Jupyter/kernels")
                } else {
                    home.join(".local/share/jupyter/kernels")
                }
            }
        }
        Target::SysPrefix => sys_prefix()?.join("share/jupyter/kernels"),
        Target::Prefix(p) => p.join("share/jupyter/kernels"),
    })
}

fn sys_prefix() -> anyhow::Result<PathBuf> {
    if let Some(v) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run python3 to find sys.prefix: {e}"))?;
    if !out.status.success() {
        anyhow::bail!("python3 failed while looking up sys.prefix");
    }
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if p.is_empty() {
        anyhow::bail!("python3 printed no sys.prefix");
    }
    Ok(PathBuf::from(p))
}

/// The kernel.json for a binary at `exe`.
pub fn kernel_json(exe: &Path) -> serde_json::Value {
    json!({
        "argv": [exe.display().to_string(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": "GIM (Rust)",
        "language": "rust",
        "interrupt_mode": "message",
        "metadata": { "debugger": false },
    })
}

/// Write the kernelspec `name` into `target`'s kernels folder; returns the spec folder.
pub fn install(target: &Target, name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        anyhow::bail!("kernel name `{name}` must be ASCII letters, digits, `.`, `_` or `-`");
    }
    let exe = std::env::current_exe()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dir = kernels_dir(target)?.join(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(
        dir.join("kernel.json"),
        serde_json::to_string_pretty(&kernel_json(&exe))?,
    )?;
    std::fs::write(dir.join("logo-32x32.png"), LOGO_32)?;
    std::fs::write(dir.join("logo-64x64.png"), LOGO_64)?;
    Ok(dir)
}
