//! Plots drawn by aimsim itself, as SVG and PNG. Text uses the embedded DejaVu Sans font, so PNGs render
//! the same on machines without system fonts.

use std::path::Path;
use std::sync::Once;

use aimsim_sim::protocol::ResponseTrace;
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::output::{temp_path, write_atomic};

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The font is compiled in; failure would be a build defect, reported on first text draw.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Size of every plot in pixels.
const SIZE: (u32, u32) = (960, 600);

/// What a pulse-response plot shows.
pub struct ResponsePlot<'a> {
    /// The recorded trace.
    pub trace: &'a ResponseTrace,
    /// Title (device label or scenario name).
    pub title: &'a str,
    /// Subtitle (model summary).
    pub subtitle: &'a str,
    /// Unit of the trace values (`uS` or `w`).
    pub unit: &'a str,
}

fn draw_response<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, p: &ResponsePlot) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let t = p.trace;
    area.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in &t.conductance {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let last = t.steps.last().map_or(1, |s| s.pulse.max(1));
    let titled = area
        .titled(p.title, ("sans-serif", 26))
        .map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&titled)
        .caption(p.subtitle, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(0f32..last as f32, (lo - pad)..(hi + pad))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("pulse number")
        .y_desc(if p.unit == "uS" {
            "conductance (uS)".to_string()
        } else {
            format!("weight ({})", p.unit)
        })
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let legend = t.devices <= 10;
    for d in 0..t.devices {
        let color = Palette99::pick(d).to_rgba();
        let series = LineSeries::new(
            t.steps
                .iter()
                .enumerate()
                .map(|(row, s)| (s.pulse as f32, t.at(row, d))),
            color.stroke_width(2),
        );
        let drawn = chart.draw_series(series).map_err(|e| anyhow!("{e}"))?;
        if legend {
            drawn.label(format!("device {d}")).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    area.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png` of a pulse-response trace into `dir`, atomically.
pub fn response(dir: &Path, stem: &str, p: &ResponsePlot) -> Result<()> {
    register_font();
    let mut svg = String::new();
    draw_response(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        p,
    )?;
    write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;

    let png = dir.join(format!("{stem}.png"));
    let tmp = temp_path(&png);
    let drawn = draw_response(BitMapBackend::new(&tmp, SIZE).into_drawing_area(), p)
        .and_then(|_| std::fs::rename(&tmp, &png).map_err(anyhow::Error::from));
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn
}
