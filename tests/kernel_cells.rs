//! Splitting cells into magics and Rust, cursor targeting and is_complete.

use gim::kernel::cells::{self, CursorTarget, Piece};

fn magic(s: &str) -> Piece {
    Piece::Magic(s.to_string())
}

#[test]
fn plain_rust_is_one_piece() {
    assert_eq!(
        cells::split("let x = 1;\nx + 1"),
        vec![Piece::Rust("let x = 1;\nx + 1".into())]
    );
    assert_eq!(cells::split("  \n\n"), vec![]);
}

#[test]
fn line_magics_then_rust() {
    let p = cells::split("%gim help\n%gim demo --x 1\nlet y = 2;\ny");
    assert_eq!(
        p,
        vec![
            magic("help"),
            magic("demo --x 1"),
            Piece::Rust("let y = 2;\ny".into())
        ]
    );
    // `%gimx` is not a magic; bare `%gim` is an empty command.
    assert_eq!(cells::magic_command("%gimx"), None);
    assert_eq!(cells::magic_command("  %gim"), Some(""));
    assert_eq!(cells::split("%gim\n"), vec![magic("")]);
}

#[test]
fn interleaved_pieces_keep_order() {
    let p = cells::split("let a = 1;\n%gim demo\nprintln!(\"{a}\");\n");
    assert_eq!(
        p,
        vec![
            Piece::Rust("let a = 1;\n".into()),
            magic("demo"),
            Piece::Rust("println!(\"{a}\");\n".into())
        ]
    );
}

#[test]
fn block_magic() {
    let p = cells::split("%%gim\n# a comment\nhelp\n\n  demo  \n%gim help\n");
    assert_eq!(p, vec![magic("help"), magic("demo"), magic("help")]);
    assert_eq!(
        cells::split("\n%%gim demo\nhelp"),
        vec![magic("demo"), magic("help")]
    );
    assert_eq!(
        cells::split("%%gimmick\n"),
        vec![Piece::Rust("%%gimmick\n".into())]
    );
}

#[test]
fn cursor_on_magic_line() {
    let code = "let x = 1;\n%gim he";
    let t = cells::target_at(code, code.len());
    assert_eq!(
        t,
        CursorTarget::Magic {
            line: "he".into(),
            cursor: 2,
            offset: code.len() - 2
        }
    );
    let t = cells::target_at("%%gim\nde", 8);
    assert_eq!(
        t,
        CursorTarget::Magic {
            line: "de".into(),
            cursor: 2,
            offset: 6
        }
    );
}

#[test]
fn cursor_in_rust_between_magics() {
    let code = "%gim demo\nlet x = 1;\nx.\n%gim help\n";
    let cursor = code.find("x.").map(|i| i + 2).unwrap_or(0);
    match cells::target_at(code, cursor) {
        CursorTarget::Rust {
            code: src,
            cursor: c,
            offset,
        } => {
            assert_eq!(src, "let x = 1;\nx.\n");
            assert_eq!(offset, 10);
            assert_eq!(&src[..c], "let x = 1;\nx.");
        }
        other => panic!("expected Rust, got {other:?}"),
    }
    // Out-of-range and mid-character cursors are clamped, not panics.
    let _ = cells::target_at("é", 1);
    let _ = cells::target_at("", 99);
}

#[test]
fn char_and_byte_offsets() {
    let s = "é%gim a";
    assert_eq!(cells::char_to_byte(s, 1), 2);
    assert_eq!(cells::byte_to_char(s, 2), 1);
    assert_eq!(cells::char_to_byte(s, 100), s.len());
}

#[test]
fn is_complete_rust_and_magics() {
    assert_eq!(cells::is_complete("fn f() {").0, "incomplete");
    assert_eq!(cells::is_complete("let x = 1;").0, "complete");
    assert_eq!(cells::is_complete("let s = \"abc").0, "incomplete");
    assert_eq!(cells::is_complete("let s = \"a{b\";").0, "complete");
    assert_eq!(cells::is_complete("let c = '{';").0, "complete");
    assert_eq!(cells::is_complete("fn f<'a>(x: &'a str) {}").0, "complete");
    assert_eq!(cells::is_complete("let r = r#\"}\"#;").0, "complete");
    assert_eq!(cells::is_complete("// {\nlet x = 1;").0, "complete");
    assert_eq!(cells::is_complete("/* {").0, "incomplete");
    assert_eq!(cells::is_complete("let x = 1; }").0, "invalid");
    assert_eq!(cells::is_complete("%gim demo").0, "complete");
    assert_eq!(cells::is_complete("%%gim\nhelp\n{").0, "complete");
    assert_eq!(cells::is_complete("fn f() {\n    if x {").1, "        ");
}
