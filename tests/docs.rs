//! docs/magics.md is generated from the same clap doc strings as `%gim help`, so it cannot drift.
//! Regenerate with `GIM_BLESS=1 cargo test --release --test docs`.

#[test]
fn magic_reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/magics.md");
    let want = format!(
        "# `%gim` magic reference\n\nGenerated from the magics' own documentation (`%gim help <command>` shows the same text).\n\n{}",
        gim::session::magics::help::reference_markdown()
    );
    if std::env::var("GIM_BLESS").is_ok() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/magics.md is stale: run GIM_BLESS=1 cargo test --release --test docs"
    );
    for m in [
        "attribute",
        "compare",
        "circuit",
        "edges",
        "heads",
        "patch",
        "ablate",
        "pattern",
        "selfrepair",
        "load",
    ] {
        assert!(have.contains(&format!("### `%gim {m}`")), "{m} missing");
    }
}
