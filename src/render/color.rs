//! Colour scales: diverging (blue − / white 0 / red +) for signed scores, sequential for attention.

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub fn hex(&self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG relative luminance in [0, 1].
    pub fn luminance(&self) -> f64 {
        fn lin(c: u8) -> f64 {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        }
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// Near-black or white, whichever reads better on this background.
    pub fn text_on(&self) -> Rgb {
        if self.luminance() > 0.36 {
            INK
        } else {
            WHITE
        }
    }
}

/// Body text colour.
pub const INK: Rgb = Rgb(0x1a, 0x1a, 0x1a);
/// Secondary text (axis labels, captions).
pub const MUTED: Rgb = Rgb(0x55, 0x55, 0x55);
/// Hairlines, cell borders.
pub const RULE: Rgb = Rgb(0xc8, 0xc8, 0xc8);
pub const WHITE: Rgb = Rgb(255, 255, 255);

// ColorBrewer RdBu (11 classes), from most negative (blue) to most positive (red).
const RDBU: [Rgb; 11] = [
    Rgb(0x05, 0x30, 0x61),
    Rgb(0x21, 0x66, 0xac),
    Rgb(0x43, 0x93, 0xc3),
    Rgb(0x92, 0xc5, 0xde),
    Rgb(0xd1, 0xe5, 0xf0),
    Rgb(0xf7, 0xf7, 0xf7),
    Rgb(0xfd, 0xdb, 0xc7),
    Rgb(0xf4, 0xa5, 0x82),
    Rgb(0xd6, 0x60, 0x4d),
    Rgb(0xb2, 0x18, 0x2b),
    Rgb(0x67, 0x00, 0x1f),
];

// ColorBrewer Blues (9 classes), light to dark.
const BLUES: [Rgb; 9] = [
    Rgb(0xf7, 0xfb, 0xff),
    Rgb(0xde, 0xeb, 0xf7),
    Rgb(0xc6, 0xdb, 0xef),
    Rgb(0x9e, 0xca, 0xe1),
    Rgb(0x6b, 0xae, 0xd6),
    Rgb(0x42, 0x92, 0xc6),
    Rgb(0x21, 0x71, 0xb5),
    Rgb(0x08, 0x51, 0x9c),
    Rgb(0x08, 0x30, 0x6b),
];

/// Categorical colours for lines (Tableau 10).
pub const CATEGORICAL: [Rgb; 10] = [
    Rgb(0x4e, 0x79, 0xa7),
    Rgb(0xf2, 0x8e, 0x2b),
    Rgb(0xe1, 0x57, 0x59),
    Rgb(0x76, 0xb7, 0xb2),
    Rgb(0x59, 0xa1, 0x4f),
    Rgb(0xed, 0xc9, 0x48),
    Rgb(0xb0, 0x7a, 0xa1),
    Rgb(0xff, 0x9d, 0xa7),
    Rgb(0x9c, 0x75, 0x5f),
    Rgb(0xba, 0xb0, 0xac),
];

fn ramp(stops: &[Rgb], t: f64) -> Rgb {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Colour of `v` on a diverging scale symmetric around 0 with limits ±`lim` (values beyond clip).
pub fn diverging(v: f64, lim: f64) -> Rgb {
    if v.is_nan() {
        return RDBU[5];
    }
    let lim = if lim > 0.0 && lim.is_finite() {
        lim
    } else {
        1.0
    };
    ramp(&RDBU, 0.5 + 0.5 * v / lim)
}

/// Colour of `v` in [0, `max`] on a light-to-dark blue scale.
pub fn sequential(v: f64, max: f64) -> Rgb {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    ramp(&BLUES, v / max)
}

/// The symmetric limit for a set of scores: the largest |score| (1 when all are 0 or none finite).
pub fn symmetric_limit(scores: impl IntoIterator<Item = f64>) -> f64 {
    let m = scores
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_is_white_at_zero_blue_below_red_above() {
        assert_eq!(diverging(0.0, 2.0), Rgb(0xf7, 0xf7, 0xf7));
        assert_eq!(diverging(-2.0, 2.0), RDBU[0]);
        assert_eq!(diverging(5.0, 2.0), RDBU[10]);
        let neg = diverging(-1.0, 2.0);
        let pos = diverging(1.0, 2.0);
        assert!(neg.2 > neg.0 && pos.0 > pos.2);
        assert_eq!(diverging(f64::NAN, 1.0), RDBU[5]);
    }

    #[test]
    fn text_colour_follows_luminance() {
        assert_eq!(diverging(0.0, 1.0).text_on(), INK);
        assert_eq!(diverging(1.0, 1.0).text_on(), WHITE);
        assert_eq!(diverging(-1.0, 1.0).text_on(), WHITE);
        assert_eq!(Rgb(0xf4, 0xa5, 0x82).hex(), "#f4a582");
        assert_eq!(symmetric_limit([0.5, -2.0, f64::NAN]), 2.0);
        assert_eq!(symmetric_limit([0.0]), 1.0);
    }
}
