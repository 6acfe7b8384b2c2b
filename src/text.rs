//! Character-safe helpers for user text: cursors and words are found on `char` boundaries, so
//! pasted text (no-break spaces, CJK, emoji, combining marks) can never split a code point.

/// The largest char boundary of `s` at or below byte offset `i` (clamped to `s.len()`).
pub fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Byte range of the whitespace-delimited word around byte offset `cursor`: it starts after the
/// last whitespace before the cursor and ends at the first whitespace after it. Any Unicode
/// whitespace (U+00A0, U+3000, …) separates words, as it does for `split_whitespace`.
pub fn word_around(s: &str, cursor: usize) -> (usize, usize) {
    let cursor = floor_char_boundary(s, cursor);
    let (before, after) = s.split_at(cursor);
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let end = after
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| cursor + i)
        .unwrap_or(s.len());
    (start, end)
}

/// The first `n` characters of `s`.
pub fn prefix_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => s.split_at(i).0,
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_multibyte_spaces() {
        let s = "load\u{a0}x";
        // the cursor at the end: the word is "x", starting after the 2-byte no-break space
        assert_eq!(word_around(s, s.len()), (6, 7));
        let s = "日本\u{3000}語";
        assert_eq!(word_around(s, s.len()), (9, 12));
        // a cursor inside a code point is moved down to its start
        assert_eq!(floor_char_boundary("日本", 4), 3);
        assert_eq!(word_around("日本", 4), (0, 6));
    }

    #[test]
    fn prefixes_count_chars() {
        assert_eq!(prefix_chars("日本語", 2), "日本");
        assert_eq!(prefix_chars("a", 2), "a");
        assert_eq!(prefix_chars("", 2), "");
    }
}
