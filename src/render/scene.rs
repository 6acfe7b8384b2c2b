//! A figure as plain shapes in logical pixels, drawn once through plotters' SVG backend and once
//! through its bitmap backend, so both outputs share one layout.

use plotters::backend::{BitMapBackend, DrawingBackend, SVGBackend};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::color::Rgb;
use super::text::{self, FAMILY, X_HEIGHT_EM};
use super::Figure;
use crate::error::{GimError, Result};

/// Horizontal anchor of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Center,
    Right,
}

/// One drawable primitive. Coordinates are logical pixels, origin top-left.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Option<Rgb>,
        stroke: Option<(Rgb, u32)>,
    },
    Line {
        points: Vec<(f64, f64)>,
        color: Rgb,
        alpha: f64,
        width: u32,
    },
    Circle {
        cx: f64,
        cy: f64,
        r: f64,
        fill: Rgb,
    },
    /// Text vertically centred on `y` (on the x-height, as CSS does with `0.5ex`).
    Text {
        x: f64,
        y: f64,
        text: String,
        size: f64,
        color: Rgb,
        align: Align,
        bold: bool,
        /// Read bottom-to-top (rotated 90° counter-clockwise).
        vertical: bool,
    },
}

/// A list of shapes on a white canvas of `width` × `height` logical pixels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scene {
    pub width: u32,
    pub height: u32,
    pub shapes: Vec<Shape>,
}

/// Device pixels per logical pixel in the PNG (2 keeps text crisp on high-DPI screens).
pub const PNG_SCALE: u32 = 2;

impl Scene {
    pub fn new(width: u32, height: u32) -> Self {
        Scene {
            width,
            height,
            shapes: Vec::new(),
        }
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Rgb) {
        self.shapes.push(Shape::Rect {
            x,
            y,
            w,
            h,
            fill: Some(fill),
            stroke: None,
        });
    }

    pub fn boxed(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Rgb, stroke: Rgb) {
        self.shapes.push(Shape::Rect {
            x,
            y,
            w,
            h,
            fill: Some(fill),
            stroke: Some((stroke, 1)),
        });
    }

    pub fn line(&mut self, points: Vec<(f64, f64)>, color: Rgb, width: u32) {
        self.shapes.push(Shape::Line {
            points,
            color,
            alpha: 1.0,
            width,
        });
    }

    pub fn text(
        &mut self,
        x: f64,
        y: f64,
        text: impl Into<String>,
        size: f64,
        color: Rgb,
        align: Align,
    ) {
        self.push_text(x, y, text.into(), size, color, align, false, false);
    }

    pub fn bold(
        &mut self,
        x: f64,
        y: f64,
        text: impl Into<String>,
        size: f64,
        color: Rgb,
        align: Align,
    ) {
        self.push_text(x, y, text.into(), size, color, align, true, false);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn push_text(
        &mut self,
        x: f64,
        y: f64,
        text: String,
        size: f64,
        color: Rgb,
        align: Align,
        bold: bool,
        vertical: bool,
    ) {
        self.shapes.push(Shape::Text {
            x,
            y,
            text,
            size,
            color,
            align,
            bold,
            vertical,
        });
    }

    /// Draw through both backends.
    pub fn render(&self) -> Result<Figure> {
        text::ensure_registered();
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (self.width, self.height)).into_drawing_area();
            self.draw(&root, 1.0, true)
                .map_err(|e| GimError::Io(format!("svg rendering failed: {e}")))?;
            root.present()
                .map_err(|e| GimError::Io(format!("svg rendering failed: {e}")))?;
        }
        let (pw, ph) = (self.width * PNG_SCALE, self.height * PNG_SCALE);
        let mut rgb = vec![0u8; (pw * ph * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (pw, ph)).into_drawing_area();
            self.draw(&root, f64::from(PNG_SCALE), false)
                .map_err(|e| GimError::Io(format!("png rendering failed: {e}")))?;
            root.present()
                .map_err(|e| GimError::Io(format!("png rendering failed: {e}")))?;
        }
        let png = encode_png(&rgb, pw, ph)?;
        Ok(Figure {
            svg,
            png,
            width: self.width,
            height: self.height,
            png_scale: PNG_SCALE,
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        k: f64,
        svg: bool,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let p = |x: f64, y: f64| ((x * k).round() as i32, (y * k).round() as i32);
        let col = |c: Rgb| RGBColor(c.0, c.1, c.2);
        let sw = |w: u32| ((f64::from(w) * k).round() as u32).max(1);
        root.fill(&WHITE)?;
        for s in &self.shapes {
            match s {
                Shape::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill,
                    stroke,
                } => {
                    let (a, b) = (p(*x, *y), p(x + w, y + h));
                    if let Some(f) = fill {
                        root.draw(&Rectangle::new([a, b], col(*f).filled()))?;
                    }
                    if let Some((c, w)) = stroke {
                        root.draw(&Rectangle::new([a, b], col(*c).stroke_width(sw(*w))))?;
                    }
                }
                Shape::Line {
                    points,
                    color,
                    alpha,
                    width,
                } => {
                    let pts: Vec<_> = points.iter().map(|(x, y)| p(*x, *y)).collect();
                    let style = ShapeStyle {
                        color: col(*color).mix(*alpha),
                        filled: false,
                        stroke_width: sw(*width),
                    };
                    root.draw(&PathElement::new(pts, style))?;
                }
                Shape::Circle { cx, cy, r, fill } => {
                    root.draw(&Circle::new(
                        p(*cx, *cy),
                        (r * k).round() as i32,
                        col(*fill).filled(),
                    ))?;
                }
                Shape::Text {
                    x,
                    y,
                    text,
                    size,
                    color,
                    align,
                    bold,
                    vertical,
                } => {
                    let weight = if *bold {
                        FontStyle::Bold
                    } else {
                        FontStyle::Normal
                    };
                    let em = size * k;
                    // plotters' SVG writes font-size = size / 1.24; its bitmap path scales glyphs so
                    // that ascent − descent = size. Convert so both draw `em` pixels per em.
                    let backend_size = if svg {
                        em * 1.24
                    } else {
                        em * text::line_height_em(*bold)
                    };
                    // SVG puts the baseline 0.5ex below the anchor; the bitmap path puts it
                    // size/2 − ⌊size/1.24⌋/2 below. Shift the bitmap anchor to match.
                    let shift = if svg {
                        0.0
                    } else {
                        let target = 0.5 * X_HEIGHT_EM * em;
                        let actual =
                            backend_size / 2.0 - f64::from((backend_size / 1.24) as i32 / 2);
                        target - actual
                    };
                    let (mut ax, mut ay) = p(*x, *y);
                    if *vertical {
                        ax += shift.round() as i32;
                    } else {
                        ay += shift.round() as i32;
                    }
                    let h = match align {
                        Align::Left => HPos::Left,
                        Align::Center => HPos::Center,
                        Align::Right => HPos::Right,
                    };
                    let ink = col(*color);
                    let mut style = TextStyle::from(FontDesc::new(
                        FontFamily::Name(FAMILY),
                        backend_size,
                        weight,
                    ))
                    .color(&ink)
                    .pos(Pos::new(h, VPos::Center));
                    if *vertical {
                        style = style.transform(FontTransform::Rotate270);
                    }
                    root.draw(&Text::new(text.as_str(), (ax, ay), style))?;
                }
            }
        }
        Ok(())
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut wr = enc
            .write_header()
            .map_err(|e| GimError::Io(format!("png encoding failed: {e}")))?;
        wr.write_image_data(rgb)
            .map_err(|e| GimError::Io(format!("png encoding failed: {e}")))?;
    }
    Ok(out)
}
