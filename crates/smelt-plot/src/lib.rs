//! PNG charts for experiment verbs and reports: a thin layer over plotters that embeds its own
//! font (DejaVu Sans, see `fonts/DejaVuSans.LICENSE`) so charts render the same on any machine,
//! with no system font libraries, and writes files atomically.

#![deny(missing_docs)]

mod histogram;

use std::path::Path;
use std::sync::Once;

pub use histogram::{Histogram, Marker};

use plotters::prelude::*;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped with the crate; failure is a build defect.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed.
    #[error("drawing chart: {0}")]
    Draw(String),
    /// Encoding or writing the PNG failed.
    #[error("writing {path}: {why}")]
    Write {
        /// Target file.
        path: String,
        /// Cause.
        why: String,
    },
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

/// One cluster of bars: a label on the x axis and one value per series.
#[derive(Debug, Clone)]
pub struct BarGroup {
    /// Label under the cluster.
    pub label: String,
    /// One value per series, in series order.
    pub values: Vec<f64>,
}

/// A grouped bar chart.
#[derive(Debug, Clone)]
pub struct GroupedBars<'a> {
    /// Title above the chart.
    pub title: &'a str,
    /// Y axis caption.
    pub y_label: &'a str,
    /// Series names, shown in the legend.
    pub series: &'a [String],
    /// Clusters, left to right.
    pub groups: &'a [BarGroup],
    /// Logarithmic y axis (values must be positive).
    pub log_y: bool,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

const SIZE: (u32, u32) = (1000, 600);

impl GroupedBars<'_> {
    /// Renders to a PNG at `path` (written atomically).
    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        render_png(path, SIZE, |root| self.draw(root))
    }

    fn draw(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> Result<(), PlotError> {
        let n_series = self.series.len().max(1);
        let finite = self
            .groups
            .iter()
            .flat_map(|g| g.values.iter().copied())
            .filter(|v| v.is_finite() && (!self.log_y || *v > 0.0));
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            (lo, hi)
        } else {
            (1.0, 10.0)
        };
        let x_range = 0f64..self.groups.len() as f64;
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(self.title, (FONT, 24))
            .margin(15)
            .x_label_area_size(60)
            .y_label_area_size(80);
        let label = |x: &f64| {
            let i = x.floor() as usize;
            self.groups
                .get(i)
                .map(|g| g.label.clone())
                .unwrap_or_default()
        };
        let width = 0.8 / n_series as f64;
        let bar = |gi: usize, si: usize| {
            let x0 = gi as f64 + 0.1 + si as f64 * width;
            (x0, x0 + width)
        };
        macro_rules! finish {
            ($chart:expr, $base:expr) => {{
                let mut c = $chart;
                c.configure_mesh()
                    .disable_x_mesh()
                    .x_labels(self.groups.len() * 2 + 1)
                    .x_label_formatter(&|x| {
                        if (x.fract() - 0.5).abs() < 1e-9 {
                            label(x)
                        } else {
                            String::new()
                        }
                    })
                    .y_label_formatter(&|v| {
                        if self.log_y {
                            format!("{v:.0e}")
                        } else {
                            format!("{v:.1}")
                        }
                    })
                    .y_desc(self.y_label)
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(draw_err)?;
                for (si, name) in self.series.iter().enumerate() {
                    let color = PALETTE[si % PALETTE.len()];
                    let rects = self.groups.iter().enumerate().filter_map(|(gi, g)| {
                        let v = *g.values.get(si)?;
                        if !v.is_finite() || (self.log_y && v <= 0.0) {
                            return None;
                        }
                        let (x0, x1) = bar(gi, si);
                        Some(Rectangle::new([(x0, $base), (x1, v)], color.filled()))
                    });
                    c.draw_series(rects)
                        .map_err(draw_err)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                        });
                }
                c.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font((FONT, 15))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(draw_err)?;
            }};
        }
        if self.log_y {
            let (a, b) = (lo / 2.0, hi * 10.0);
            let chart = builder
                .build_cartesian_2d(x_range, (a..b).log_scale())
                .map_err(draw_err)?;
            finish!(chart, a);
        } else {
            let a = lo.min(0.0);
            let b = hi.max(0.0) * 1.25 + 1e-12;
            let chart = builder
                .build_cartesian_2d(x_range, a..b)
                .map_err(draw_err)?;
            finish!(chart, 0.0);
        }
        Ok(())
    }
}

/// A drawing area on an in-memory bitmap.
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws on a white canvas of `size` with the embedded font and writes the PNG atomically.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    register_font();
    let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    write_png(path, &rgb, size)
}

/// Encodes an RGB buffer as PNG and writes it atomically.
pub fn write_png(path: &Path, rgb: &[u8], size: (u32, u32)) -> Result<(), PlotError> {
    let err = |why: String| PlotError::Write {
        path: path.display().to_string(),
        why,
    };
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, size.0, size.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| err(e.to_string()))?;
        w.write_image_data(rgb).map_err(|e| err(e.to_string()))?;
    }
    smelt_files::write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_the_png_signature() {
        let dir = std::env::temp_dir().join(format!("smelt-plot-test-{}", std::process::id()));
        let path = dir.join("bars.png");
        let series = vec!["a".to_string(), "b".to_string()];
        let groups = vec![
            BarGroup {
                label: "x".into(),
                values: vec![1.0, 2.0],
            },
            BarGroup {
                label: "y".into(),
                values: vec![0.5, 4.0],
            },
        ];
        for log_y in [false, true] {
            GroupedBars {
                title: "t",
                y_label: "v",
                series: &series,
                groups: &groups,
                log_y,
            }
            .write_png(&path)
            .unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            // Not a blank image: some pixels are neither white nor black.
            assert!(bytes.len() > 5_000);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
