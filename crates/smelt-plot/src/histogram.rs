//! Histograms of tensor values with marked ranges (e.g. the clipping range a quantizer chose).

use std::path::Path;

use plotters::prelude::*;

use crate::{FONT, PALETTE, PlotError, draw_err, render_png};

/// A vertical marker: a value on the x axis and its legend text.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Position.
    pub x: f64,
    /// Legend entry (markers with the same label share one entry).
    pub label: String,
}

/// A histogram on a log-count axis (tails matter for quantization ranges).
#[derive(Debug, Clone)]
pub struct Histogram<'a> {
    /// Title above the chart.
    pub title: &'a str,
    /// X axis caption.
    pub x_label: &'a str,
    /// The values (non-finite ones are skipped).
    pub values: &'a [f32],
    /// Number of bins.
    pub bins: usize,
    /// Vertical lines drawn over the bars.
    pub markers: &'a [Marker],
}

const SIZE: (u32, u32) = (800, 450);

impl Histogram<'_> {
    /// Renders to a PNG at `path` (written atomically).
    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        render_png(path, SIZE, |root| self.draw(root))
    }

    fn draw(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> Result<(), PlotError> {
        let finite = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .map(f64::from);
        let markers = self.markers.iter().map(|m| m.x);
        let (mut lo, mut hi) = finite
            .clone()
            .chain(markers)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() || hi <= lo {
            (lo, hi) = (lo.min(0.0) - 1.0, hi.max(0.0) + 1.0);
            if !lo.is_finite() {
                (lo, hi) = (-1.0, 1.0);
            }
        }
        let pad = (hi - lo) * 0.03;
        let (lo, hi) = (lo - pad, hi + pad);
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        for v in finite {
            let b = (((v - lo) / width) as usize).min(bins - 1);
            counts[b] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, (0.8f64..top * 3.0).log_scale())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(self.x_label)
            .y_desc("count (log)")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        let bar_color = PALETTE[0];
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, &c)| {
                        let x0 = lo + i as f64 * width;
                        Rectangle::new([(x0, 0.8), (x0 + width, c as f64)], bar_color.filled())
                    }),
            )
            .map_err(draw_err)?;
        let mut seen: Vec<&str> = Vec::new();
        for m in self.markers {
            let is_new = !seen.contains(&m.label.as_str());
            if is_new {
                seen.push(&m.label);
            }
            let k = seen.iter().position(|s| *s == m.label).expect("just added");
            let color = PALETTE[(k + 3) % PALETTE.len()];
            let series = chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m.x, 0.8), (m.x, top * 3.0)],
                    color.stroke_width(2),
                )))
                .map_err(draw_err)?;
            if is_new {
                series.label(m.label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
        }
        if !self.markers.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 13))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_err)?;
        }
        Ok(())
    }
}
