//! Plots drawn by aimsim itself, as SVG and PNG. Text uses the embedded DejaVu Sans font, so PNGs render
//! the same on machines without system fonts.

use std::path::Path;
use std::sync::Once;

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

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// Points in drawing order.
    pub points: Vec<(f32, f32)>,
    /// Draw markers at the points.
    pub markers: bool,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// Subtitle.
    pub subtitle: String,
    /// X axis label, with unit.
    pub x_label: String,
    /// Y axis label, with unit.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// Fixed y range, else fitted to the data.
    pub y_range: Option<(f32, f32)>,
}

fn bounds(chart: &Chart) -> ((f32, f32), (f32, f32)) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    for s in &chart.series {
        for (x, y) in &s.points {
            if x.is_finite() && y.is_finite() {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
                y0 = y0.min(*y);
                y1 = y1.max(*y);
            }
        }
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    // Markers (and error bars) at the ends of the x range stay inside the plot area.
    if chart.series.iter().any(|s| s.markers) {
        let pad = (x1 - x0) * 0.03;
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6 * y1.abs().max(1.0));
    let y = chart.y_range.unwrap_or((y0 - pad, y1 + pad));
    ((x0, x1), y)
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    area.fill(&WHITE).map_err(e)?;
    let ((x0, x1), (y0, y1)) = bounds(chart);
    let titled = area.titled(&chart.title, ("sans-serif", 26)).map_err(e)?;
    let mut c = ChartBuilder::on(&titled)
        .caption(&chart.subtitle, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    // Whole-number x data (epochs, counts) get whole-number ticks only.
    let x_whole = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .all(|(x, _)| x.fract() == 0.0);
    let x_fmt = move |v: &f32| {
        if x_whole && (v - v.round()).abs() > 1e-6 * v.abs().max(1.0) {
            String::new()
        } else {
            tick_label(*v)
        }
    };
    let y_fmt = |v: &f32| tick_label(*v);
    c.configure_mesh()
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    let legend = chart.series.len() <= 12;
    for (k, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let drawn = c
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(e)?;
        if legend {
            drawn.label(s.label.clone()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
        if s.markers {
            c.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(e)?;
        }
        if let Some(errs) = errors.and_then(|all| all.get(k)) {
            // Vertical bar from y - e to y + e with short caps (caps are 1/100 of the x range wide).
            let cap = (x1 - x0) / 100.0;
            for (&(x, y), &err) in s.points.iter().zip(errs) {
                if !(err.is_finite() && err > 0.0) {
                    continue;
                }
                let (lo, hi) = (y - err, y + err);
                c.draw_series([
                    PathElement::new([(x, lo), (x, hi)], color.stroke_width(1)),
                    PathElement::new([(x - cap, lo), (x + cap, lo)], color.stroke_width(1)),
                    PathElement::new([(x - cap, hi), (x + cap, hi)], color.stroke_width(1)),
                ])
                .map_err(e)?;
            }
        }
    }
    if legend {
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    area.present().map_err(e)?;
    Ok(())
}

/// A tick value as a person writes it: `50` not `50.0`, `0.25`, `1e-6` for very small or large values.
pub fn tick_label(v: f32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// Writes `<stem>.svg` and `<stem>.png` of a chart into `dir`, atomically.
pub fn write(dir: &Path, stem: &str, chart: &Chart) -> Result<()> {
    write_with_errors(dir, stem, chart, None)
}

/// [`write`] with error bars: `errors[k][i]` is the half height of the bar at point `i` of series `k`
/// (drawn from `y - e` to `y + e`; missing or zero values draw none).
pub fn write_with_errors(
    dir: &Path,
    stem: &str,
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
) -> Result<()> {
    register_font();
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        chart,
        errors,
    )?;
    write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;

    let png = dir.join(format!("{stem}.png"));
    let tmp = temp_path(&png);
    let drawn = draw(
        BitMapBackend::new(&tmp, SIZE).into_drawing_area(),
        chart,
        errors,
    )
    .and_then(|_| std::fs::rename(&tmp, &png).map_err(anyhow::Error::from));
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn
}

/// What a pulse-response plot shows.
pub struct ResponsePlot<'a> {
    /// One curve per device: (label, (pulse number, value) points).
    pub curves: &'a [(String, Vec<(f32, f32)>)],
    /// Title (device label or scenario name).
    pub title: &'a str,
    /// Subtitle (model summary).
    pub subtitle: &'a str,
    /// Unit of the trace values (`uS` or `w`).
    pub unit: &'a str,
}

/// Writes `<stem>.svg` and `<stem>.png` of a pulse-response trace into `dir`: every curve's
/// conductance against pulse number.
pub fn response(dir: &Path, stem: &str, p: &ResponsePlot) -> Result<()> {
    let chart = Chart {
        title: p.title.to_string(),
        subtitle: p.subtitle.to_string(),
        x_label: "pulse number".into(),
        y_label: if p.unit == "uS" {
            "conductance (uS)".to_string()
        } else {
            format!("weight ({})", p.unit)
        },
        series: p
            .curves
            .iter()
            .map(|(label, points)| Series {
                label: label.clone(),
                points: points.clone(),
                markers: false,
            })
            .collect(),
        y_range: None,
    };
    write(dir, stem, &chart)
}

#[cfg(test)]
mod tick_tests {
    use super::tick_label;

    #[test]
    fn tick_labels_read_plainly() {
        assert_eq!(tick_label(50.0), "50");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2.5e-7), "2.5e-7");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(-12.5), "-12.5");
    }
}
