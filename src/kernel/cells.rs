//! Splitting a cell into `%gim` magic lines and Rust code, and mapping a cursor onto them.
//!
//! Rules: a cell whose first non-blank line starts with `%%gim` is a magic block (one command
//! per line, `#` comments and blank lines skipped; text after `%%gim` on the first line is a
//! command too). Otherwise every line starting with `%gim` is a magic and the lines between
//! magics are Rust, evaluated in order.

use crate::text::floor_char_boundary;

/// One piece of a cell, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// The text after `%gim` (trimmed), for `Session::run_magic`.
    Magic(String),
    /// Rust source for evcxr (never blank).
    Rust(String),
}

/// Where the cursor of a completion / inspection request falls.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorTarget {
    /// On a magic line: the command text, the cursor inside it, and where that text starts
    /// in the cell (all byte offsets).
    Magic {
        line: String,
        cursor: usize,
        offset: usize,
    },
    /// In Rust code: the Rust text, the cursor inside it, and its offset in the cell.
    Rust {
        code: String,
        cursor: usize,
        offset: usize,
    },
}

const LINE_MAGIC: &str = "%gim";
const BLOCK_MAGIC: &str = "%%gim";

/// The command text of a `%gim …` line, or `None` if the line is not a magic.
pub fn magic_command(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let rest = t.strip_prefix(LINE_MAGIC)?;
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        Some(rest.trim())
    } else {
        None
    }
}

fn block_header(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix(BLOCK_MAGIC)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

fn is_block(code: &str) -> bool {
    code.lines()
        .find(|l| !l.trim().is_empty())
        .and_then(block_header)
        .is_some()
}

/// Split a cell into pieces.
pub fn split(code: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    if is_block(code) {
        let mut first = true;
        for line in code.lines() {
            let cmd = if first && !line.trim().is_empty() {
                first = false;
                block_header(line).unwrap_or("")
            } else {
                line.trim()
            };
            // `%gim` prefixes are tolerated inside a block.
            let cmd = magic_command(cmd).unwrap_or(cmd);
            if !cmd.is_empty() && !cmd.starts_with('#') {
                pieces.push(Piece::Magic(cmd.to_string()));
            }
        }
        return pieces;
    }
    let mut rust = String::new();
    for line in code.split_inclusive('\n') {
        match magic_command(line) {
            Some(cmd) => {
                flush_rust(&mut rust, &mut pieces);
                pieces.push(Piece::Magic(cmd.to_string()));
            }
            None => rust.push_str(line),
        }
    }
    flush_rust(&mut rust, &mut pieces);
    pieces
}

fn flush_rust(rust: &mut String, pieces: &mut Vec<Piece>) {
    if !rust.trim().is_empty() {
        pieces.push(Piece::Rust(std::mem::take(rust)));
    }
    rust.clear();
}

/// What the cursor (a byte offset into `code`) points at.
pub fn target_at(code: &str, cursor: usize) -> CursorTarget {
    let cursor = floor_char_boundary(code, cursor.min(code.len()));
    let block = is_block(code);
    // Find the line containing the cursor.
    let line_start = code[..cursor].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = code[cursor..]
        .find('\n')
        .map(|i| cursor + i)
        .unwrap_or(code.len());
    let line = &code[line_start..line_end];
    let prefix_len = if block {
        let lead = line.len() - line.trim_start().len();
        let t = &line[lead..];
        if t.starts_with(BLOCK_MAGIC) {
            Some(lead + BLOCK_MAGIC.len())
        } else if magic_command(line).is_some() {
            Some(lead + LINE_MAGIC.len())
        } else {
            Some(lead)
        }
    } else if magic_command(line).is_some() {
        Some(line.len() - line.trim_start().len() + LINE_MAGIC.len())
    } else {
        None
    };
    match prefix_len {
        Some(p) => {
            // Skip the single separating space so the command text starts at its first word.
            let mut start = line_start + p;
            while start < line_end && code[start..].starts_with(' ') {
                start += 1;
            }
            let start = start.min(cursor.max(line_start + p));
            CursorTarget::Magic {
                line: code[start..line_end].to_string(),
                cursor: cursor.saturating_sub(start),
                offset: start,
            }
        }
        None => {
            // The Rust run containing the cursor: bounded by magic lines (or the cell edges).
            let mut start = 0;
            let mut end = code.len();
            let mut pos = 0;
            for l in code.split_inclusive('\n') {
                let l_end = pos + l.len();
                if magic_command(l).is_some() {
                    if l_end <= line_start {
                        start = l_end;
                    } else if pos >= line_end && end == code.len() {
                        end = pos;
                    }
                }
                pos = l_end;
            }
            CursorTarget::Rust {
                code: code[start..end].to_string(),
                cursor: cursor - start,
                offset: start,
            }
        }
    }
}

/// Byte offset of the `chars`-th code point (Jupyter cursors count code points).
pub fn char_to_byte(s: &str, chars: usize) -> usize {
    s.char_indices()
        .nth(chars)
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

/// Number of code points before byte offset `byte`.
pub fn byte_to_char(s: &str, byte: usize) -> usize {
    let b = floor_char_boundary(s, byte.min(s.len()));
    s[..b].chars().count()
}

/// Whether a cell is complete (`"complete"`), needs more lines (`"incomplete"`, with an
/// indent) or cannot be parsed (`"invalid"`). Magics are always complete; Rust is judged by
/// bracket and string balance.
pub fn is_complete(code: &str) -> (&'static str, String) {
    let mut rust = String::new();
    for p in split(code) {
        if let Piece::Rust(r) = p {
            rust.push_str(&r);
        }
    }
    match balance(&rust) {
        Balance::Open(depth) => ("incomplete", "    ".repeat(depth.min(8))),
        Balance::Closed => ("complete", String::new()),
        Balance::Invalid => ("invalid", String::new()),
    }
}

enum Balance {
    Closed,
    Open(usize),
    Invalid,
}

/// Bracket / string / comment balance of Rust source (raw strings and char literals handled
/// well enough for line-by-line entry).
fn balance(src: &str) -> Balance {
    let mut stack: Vec<char> = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    let mut block_comments = 0usize;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if block_comments > 0 {
            if c == b'*' && next == Some(b'/') {
                block_comments -= 1;
                i += 2;
            } else if c == b'/' && next == Some(b'*') {
                block_comments += 1;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match c {
            b'/' if next == Some(b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => {
                block_comments += 1;
                i += 2;
            }
            b'"' => match skip_string(b, i + 1) {
                Some(j) => i = j,
                None => return Balance::Open(stack.len()),
            },
            b'r' if matches!(next, Some(b'"') | Some(b'#')) && (i == 0 || !is_ident(b[i - 1])) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while j < b.len() && b[j] == b'#' {
                    hashes += 1;
                    j += 1;
                }
                if j < b.len() && b[j] == b'"' {
                    let close: Vec<u8> = std::iter::once(b'"')
                        .chain(std::iter::repeat_n(b'#', hashes))
                        .collect();
                    match find(&b[j + 1..], &close) {
                        Some(k) => i = j + 1 + k + close.len(),
                        None => return Balance::Open(stack.len()),
                    }
                } else {
                    i += 1;
                }
            }
            b'\'' => i = skip_char_literal(b, i),
            b'(' | b'[' | b'{' => {
                stack.push(c as char);
                i += 1;
            }
            b')' | b']' | b'}' => {
                let want = match c {
                    b')' => '(',
                    b']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(want) {
                    return Balance::Invalid;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if block_comments > 0 || !stack.is_empty() {
        Balance::Open(stack.len())
    } else {
        Balance::Closed
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Skip a char literal like `'a'` or `'\n'`; a lifetime (`'a`) is left as one byte.
fn skip_char_literal(b: &[u8], i: usize) -> usize {
    if b.get(i + 1) == Some(&b'\\') {
        // Escape: find the closing quote within a few bytes ('\u{10FFFF}' is the longest).
        let window = b.get(i + 2..(i + 12).min(b.len())).unwrap_or(&[]);
        return match window.iter().position(|&c| c == b'\'') {
            Some(k) => i + 2 + k + 1,
            None => i + 1,
        };
    }
    // One UTF-8 code point then a quote.
    let mut j = i + 1;
    if j < b.len() {
        j += 1;
        while j < b.len() && (b[j] & 0xC0) == 0x80 {
            j += 1;
        }
        if b.get(j) == Some(&b'\'') {
            return j + 1;
        }
    }
    i + 1
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
