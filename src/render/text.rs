//! The bundled font: registration with plotters, text measurement, and how tokens are spelled on screen.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef};
use plotters::style::FontStyle;

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/LICENSE-DejaVu.txt), embedded so that PNGs
/// look the same on a machine with no fonts installed.
static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// The family name given to plotters. The SVG backend writes it verbatim into `font-family`, so it
/// doubles as the CSS fallback list a browser uses when DejaVu Sans is not installed.
pub(crate) const FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// DejaVu Sans' x-height (OS/2 sxHeight 1120 / 2048 units): SVG centres text on `0.5ex`, and the
/// PNG path is shifted to put its baseline in the same place.
pub(crate) const X_HEIGHT_EM: f64 = 1120.0 / 2048.0;

struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        // The embedded files are known-good; a failure here is a build defect, not user input.
        let regular = FontRef::try_from_slice(REGULAR).expect("embedded DejaVuSans.ttf parses");
        let bold = FontRef::try_from_slice(BOLD).expect("embedded DejaVuSans-Bold.ttf parses");
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, REGULAR);
        let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, BOLD);
        Fonts { regular, bold }
    })
}

/// Make sure the font is registered with plotters before anything is drawn.
pub(crate) fn ensure_registered() {
    fonts();
}

fn font(bold: bool) -> &'static FontRef<'static> {
    let f = fonts();
    if bold {
        &f.bold
    } else {
        &f.regular
    }
}

/// Height of ascent − descent in em: the scale ab_glyph (and so plotters' bitmap text) works in.
pub(crate) fn line_height_em(bold: bool) -> f64 {
    let f = font(bold);
    f64::from(f.height_unscaled()) / f64::from(f.units_per_em().unwrap_or(2048.0))
}

/// Width in pixels of `text` set at `size` px (em), with kerning, as the PNG path draws it.
pub fn text_width(text: &str, size: f64, bold: bool) -> f64 {
    let f = font(bold);
    let upem = f64::from(f.units_per_em().unwrap_or(2048.0));
    let mut w = 0.0f64;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f64::from(f.kern_unscaled(p, id));
        }
        w += f64::from(f.h_advance_unscaled(id));
        prev = Some(id);
    }
    w / upem * size
}

/// True when the bundled font has a glyph for `c` (both weights).
pub fn has_glyph(c: char) -> bool {
    let f = fonts();
    f.regular.glyph_id(c).0 != 0 && f.bold.glyph_id(c).0 != 0
}

/// Replace characters the font cannot draw (and control characters) with `\u{..}` escapes, so
/// nothing ever renders as a tofu box.
pub fn escape_missing(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || !has_glyph(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a token looks like a tokenizer's special token (`<s>`, `<|endoftext|>`, `[CLS]`).
pub fn is_special(tok: &str) -> bool {
    let t = tok.trim();
    t.len() >= 3
        && ((t.starts_with('<') && t.ends_with('>')) || (t.starts_with('[') && t.ends_with(']')))
        && !t.contains(' ')
}

/// How a token is spelled in figures and HTML: whitespace made visible (`␣` space, `⏎` newline,
/// `⇥` tab), byte-level BPE markers (`Ġ`, `Ċ`, `ĉ`) and SentencePiece's `▁` read as the whitespace they
/// stand for, and characters the font lacks escaped.
pub fn display_token(tok: &str) -> String {
    let mut out = String::with_capacity(tok.len() + 4);
    for c in tok.chars() {
        match c {
            ' ' | 'Ġ' | '▁' => out.push('␣'),
            '\n' | 'Ċ' => out.push('⏎'),
            '\r' => out.push_str("\\r"),
            '\t' | 'ĉ' => out.push('⇥'),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push('∅');
    }
    escape_missing(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_markers_are_visible() {
        assert_eq!(display_token(" Paris"), "␣Paris");
        assert_eq!(display_token("ĠParis"), "␣Paris");
        assert_eq!(display_token("▁Paris"), "␣Paris");
        assert_eq!(display_token("\n\n"), "⏎⏎");
        assert_eq!(display_token("\tx"), "⇥x");
        assert_eq!(display_token(""), "∅");
    }

    #[test]
    fn missing_glyphs_are_escaped_but_latin_is_kept() {
        assert_eq!(display_token("café"), "café");
        assert_eq!(display_token("中"), "\\u{4e2d}");
        assert_eq!(display_token("\u{1}"), "\\u{1}");
        for c in ['␣', '⏎', '⇥', '∅', '→', '−', 'é', 'Ġ'] {
            assert!(has_glyph(c), "font lacks {c}");
        }
        assert!(!has_glyph('中'));
    }

    #[test]
    fn measured_widths_grow_with_text_and_size() {
        let a = text_width("Paris", 12.0, false);
        assert!(a > 25.0 && a < 45.0, "{a}");
        assert!((text_width("Paris", 24.0, false) - 2.0 * a).abs() < 1e-9);
        assert!(text_width("Paris", 12.0, true) > a);
        assert!(is_special("<|endoftext|>") && is_special("<s>") && !is_special("<"));
    }
}
