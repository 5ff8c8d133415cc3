//! Plots drawn by aimsim itself, as SVG and PNG. Text uses the embedded DejaVu Sans font, so PNGs render
//! the same on machines without system fonts.
//!
//! Every chart is drawn the same way ([`write_chart`]): an axis whose label ends in a unit
//! (`conductance (uS)`, `energy (pJ)`, `pulses (millions)`) is rescaled to the SI prefix that suits its
//! data ([`scale_axis`]: 0.003 uS reads 3 nS); the right margin leaves room for the last tick label; and
//! the legend goes where it covers no data: the first empty corner of the plot, else an empty place along
//! its edges, else outside the plot on the right.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf32;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
    /// X axis label, with unit. A unit in parentheses at the end (`(uS)`, `(pJ)`, `(ms)`,
    /// `(millions)`) is rescaled to the prefix that suits the data ([`scale_axis`]).
    pub x_label: String,
    /// Y axis label, with unit (rescaled like `x_label`).
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// Fixed y range, else fitted to the data.
    pub y_range: Option<(f32, f32)>,
    /// What the x values are.
    pub x_scale: XScale,
}

/// How x values map to tick labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XScale {
    /// The values themselves.
    #[default]
    Linear,
    /// The values are `log10(t / 1 s)`: ticks at whole decades, labelled as times (`1 s`, `100 s`,
    /// `1e4 s`).
    Log10Seconds,
}

/// The tick label of decade `v` (`log10` of seconds) on a [`XScale::Log10Seconds`] axis; empty between
/// decades.
pub fn decade_label(v: f32) -> String {
    if (v - v.round()).abs() > 1e-3 {
        return String::new();
    }
    let k = v.round() as i32;
    match k {
        -3..=3 => format!("{} s", tick_label(10f32.powi(k))),
        _ => format!("1e{k} s"),
    }
}

/// A shaded band, e.g. the spread of a quantity across devices around a series' mean line.
#[derive(Debug, Clone)]
pub struct Band {
    /// Legend entry.
    pub label: String,
    /// The band takes the colour of this series of the chart.
    pub series: usize,
    /// `(x, low, high)` in drawing order.
    pub points: Vec<(f32, f32, f32)>,
}

/// Legends are drawn for charts of this many series at most (more would hide the plot).
const LEGEND_MAX_SERIES: usize = 12;

/// Range of the finite data of a chart (lines and bands), without padding; `None` without data.
fn extent(chart: &Chart, bands: &[Band]) -> Option<((f32, f32), (f32, f32))> {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    let points = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .chain(
            bands
                .iter()
                .flat_map(|b| b.points.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])),
        );
    for (x, y) in points {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    x0.is_finite().then_some(((x0, x1), (y0, y1)))
}

/// Axis ranges of a chart: the data's, padded, or the fixed y range.
fn bounds(chart: &Chart, bands: &[Band]) -> ((f32, f32), (f32, f32)) {
    let ((mut x0, mut x1), (y0, y1)) = extent(chart, bands).unwrap_or(((0.0, 1.0), (0.0, 1.0)));
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

/// SI prefixes an axis may take: power of ten and symbol (ASCII `u` for micro, as in `uS`).
const SI_PREFIXES: [(i32, &str); 10] = [
    (-15, "f"),
    (-12, "p"),
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
];

/// Units that take SI prefixes on an axis.
const SI_UNITS: [&str; 7] = ["Hz", "S", "J", "s", "W", "V", "A"];

/// Multiples of a count, as words (`pulses (millions)`); the plain count has no word.
const COUNT_WORDS: [(i32, &str); 4] = [(0, ""), (3, "thousands"), (6, "millions"), (9, "billions")];

/// The unit at the end of an axis label, `quantity (<prefix><unit>)`: the quantity, the power of ten
/// of the prefix, and the unit (`None` for a count in words).
fn split_unit(label: &str) -> Option<(&str, i32, Option<&'static str>)> {
    let inner = label.strip_suffix(')')?;
    let open = inner.rfind(" (")?;
    let (quantity, unit) = (&inner[..open], &inner[open + 2..]);
    if let Some(&(exp, _)) = COUNT_WORDS
        .iter()
        .find(|(_, w)| !w.is_empty() && *w == unit)
    {
        return Some((quantity, exp, None));
    }
    SI_UNITS.iter().find_map(|&base| {
        let prefix = unit.strip_suffix(base)?;
        let prefix = if prefix == "\u{b5}" { "u" } else { prefix };
        let &(exp, _) = SI_PREFIXES.iter().find(|(_, p)| *p == prefix)?;
        Some((quantity, exp, Some(base)))
    })
}

/// The label and factor that put an axis in the prefix suiting its data: for a label ending in a
/// prefixed unit (`(uS)`, `(pJ)`, `(ms)`; or a count in `(thousands)`, `(millions)`, `(billions)`) and
/// data spanning `lo..hi` in that unit, the prefix that brings the larger magnitude into `[1, 1000)`
/// (as far as the prefixes go), and the factor to multiply the values by. A label without such a unit,
/// or a range without magnitude, comes back unchanged with factor 1.
pub fn scale_axis(label: &str, lo: f64, hi: f64) -> (String, f64) {
    let unchanged = (label.to_string(), 1.0);
    let Some((quantity, exp, unit)) = split_unit(label) else {
        return unchanged;
    };
    let magnitude = lo.abs().max(hi.abs()) * 10f64.powi(exp);
    if !(magnitude.is_finite() && magnitude > 0.0) {
        return unchanged;
    }
    // The small epsilon keeps exact powers of ten (1e-6 S) in the larger prefix despite rounding.
    let target = (magnitude.log10() / 3.0 + 1e-9).floor() as i32 * 3;
    let name = |e: i32| -> (i32, String) {
        match unit {
            Some(u) => {
                let (e, p) = SI_PREFIXES
                    .iter()
                    .min_by_key(|(x, _)| (x - e).abs())
                    .copied()
                    .unwrap_or((0, ""));
                (e, format!("{quantity} ({p}{u})"))
            }
            None => {
                let (e, w) = COUNT_WORDS
                    .iter()
                    .min_by_key(|(x, _)| (x - e).abs())
                    .copied()
                    .unwrap_or((0, ""));
                let label = if w.is_empty() {
                    quantity.to_string()
                } else {
                    format!("{quantity} ({w})")
                };
                (e, label)
            }
        }
    };
    let (e, label) = name(target);
    (label, 10f64.powi(exp - e))
}

/// A chart (with its error bars and bands) with both axes in the prefix that suits their data.
fn scaled(
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
    bands: &[Band],
) -> (Chart, Option<Vec<Vec<f32>>>, Vec<Band>) {
    let ((x0, x1), (y0, y1)) = extent(chart, bands).unwrap_or(((0.0, 0.0), (0.0, 0.0)));
    let (y0, y1) = chart.y_range.unwrap_or((y0, y1));
    let (x_label, fx) = scale_axis(&chart.x_label, x0.into(), x1.into());
    let (y_label, fy) = scale_axis(&chart.y_label, y0.into(), y1.into());
    let (fx, fy) = (fx as f32, fy as f32);
    let chart = Chart {
        x_label,
        y_label,
        series: chart
            .series
            .iter()
            .map(|s| Series {
                points: s.points.iter().map(|&(x, y)| (x * fx, y * fy)).collect(),
                ..s.clone()
            })
            .collect(),
        y_range: chart.y_range.map(|(a, b)| (a * fy, b * fy)),
        ..chart.clone()
    };
    let errors = errors.map(|all| {
        all.iter()
            .map(|e| e.iter().map(|v| v * fy).collect())
            .collect()
    });
    let bands = bands
        .iter()
        .map(|b| Band {
            points: b
                .points
                .iter()
                .map(|&(x, lo, hi)| (x * fx, lo * fy, hi * fy))
                .collect(),
            ..b.clone()
        })
        .collect();
    (chart, errors, bands)
}

/// One line of a legend.
struct Entry {
    label: String,
    color: RGBAColor,
    /// A band's entry shows a filled swatch; a line's a line (with a marker when its points have them).
    band: bool,
    marker: bool,
}

fn legend_entries(chart: &Chart, bands: &[Band]) -> Vec<Entry> {
    if chart.series.len() > LEGEND_MAX_SERIES {
        return Vec::new();
    }
    chart
        .series
        .iter()
        .enumerate()
        .map(|(k, s)| Entry {
            label: s.label.clone(),
            color: Palette99::pick(k).to_rgba(),
            band: false,
            marker: s.markers,
        })
        .chain(bands.iter().map(|b| Entry {
            label: b.label.clone(),
            color: Palette99::pick(b.series).to_rgba(),
            band: true,
            marker: false,
        }))
        .filter(|e| !e.label.is_empty())
        .collect()
}

const LEGEND_FONT: u32 = 13;
const LEGEND_PAD: i32 = 6;
const LEGEND_SWATCH: i32 = 22;
/// Gap between the legend and the plot's edges (inside) or the plot (outside), pixels.
const LEGEND_GAP: i32 = 10;
/// Free pixels the legend keeps around itself from the data.
const LEGEND_CLEARANCE: i32 = 6;

fn legend_font() -> TextStyle<'static> {
    ("sans-serif", LEGEND_FONT).into_font().into()
}

/// Where and how big a chart's legend is drawn, and the chart's right margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Right margin of the chart, pixels.
    right: u32,
    /// Top-left corner of the legend box (pixels of the whole image), if there is a legend.
    legend: Option<(i32, i32)>,
    /// Legend box size and row height, pixels.
    legend_size: (i32, i32),
    row: i32,
}

/// Which pixels of the plot area the data cover (lines, markers, error bars, bands), counted over any
/// rectangle through a summed-area table.
struct Occupancy {
    /// Plot area in image pixels: left, top, width, height.
    x0: i32,
    y0: i32,
    w: i32,
    h: i32,
    covered: Vec<bool>,
}

impl Occupancy {
    fn new((x0, y0, x1, y1): (i32, i32, i32, i32)) -> Self {
        let (w, h) = ((x1 - x0).max(1), (y1 - y0).max(1));
        Occupancy {
            x0,
            y0,
            w,
            h,
            covered: vec![false; (w * h) as usize],
        }
    }

    /// Marks the square of half width `r` around image pixel `(x, y)`.
    fn mark(&mut self, x: f64, y: f64, r: i32) {
        let (cx, cy) = (x.round() as i32 - self.x0, y.round() as i32 - self.y0);
        for py in (cy - r).max(0)..=(cy + r).min(self.h - 1) {
            for px in (cx - r).max(0)..=(cx + r).min(self.w - 1) {
                self.covered[(py * self.w + px) as usize] = true;
            }
        }
    }

    /// Marks a line from `a` to `b` (image pixels), `r` pixels either side.
    fn line(&mut self, a: (f64, f64), b: (f64, f64), r: i32) {
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).clamp(1, 20_000);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            self.mark(a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1), r);
        }
    }

    /// Marks the pixels of column `x` from `y_a` to `y_b` (image pixels, either order).
    fn column(&mut self, x: f64, y_a: f64, y_b: f64) {
        let (top, bottom) = (y_a.min(y_b), y_a.max(y_b));
        let steps = ((bottom - top).ceil() as usize).min(20_000);
        for i in 0..=steps {
            self.mark(x, top + i as f64, 0);
        }
    }

    /// Covered pixels in the rectangle `[x, x + w) x [y, y + h)` of image pixels.
    fn count(&self, x: i32, y: i32, w: i32, h: i32) -> usize {
        let (ax, ay) = ((x - self.x0).max(0), (y - self.y0).max(0));
        let (bx, by) = ((x + w - self.x0).min(self.w), (y + h - self.y0).min(self.h));
        let mut n = 0;
        for py in ay..by {
            let row = (py * self.w) as usize;
            n += self.covered[row + ax as usize..row + bx.max(ax) as usize]
                .iter()
                .filter(|c| **c)
                .count();
        }
        n
    }
}

/// The pixels a chart's data cover in the plot area `rect` (image pixels: left, top, right, bottom)
/// with axis ranges `ranges`.
fn occupancy(
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
    bands: &[Band],
    ranges: ((f32, f32), (f32, f32)),
    rect: (i32, i32, i32, i32),
) -> Occupancy {
    let ((x0, x1), (y0, y1)) = ranges;
    let px = |x: f32| {
        f64::from(rect.0) + f64::from(x - x0) / f64::from(x1 - x0) * f64::from(rect.2 - rect.0)
    };
    let py = |y: f32| {
        f64::from(rect.3) - f64::from(y - y0) / f64::from(y1 - y0) * f64::from(rect.3 - rect.1)
    };
    let mut occ = Occupancy::new(rect);
    for b in bands {
        for w in b.points.windows(2) {
            let ((xa, la, ha), (xb, lb, hb)) = (w[0], w[1]);
            if ![xa, la, ha, xb, lb, hb].iter().all(|v| v.is_finite()) {
                continue;
            }
            let (pa, pb) = (px(xa), px(xb));
            let n = ((pb - pa).abs().ceil() as usize).clamp(1, 20_000);
            for i in 0..=n {
                let t = i as f32 / n as f32;
                let (lo, hi) = (la + t * (lb - la), ha + t * (hb - ha));
                occ.column(pa + f64::from(t) * (pb - pa), py(lo), py(hi));
            }
        }
    }
    for (k, s) in chart.series.iter().enumerate() {
        let finite = |p: &(f32, f32)| p.0.is_finite() && p.1.is_finite();
        for w in s.points.windows(2) {
            if finite(&w[0]) && finite(&w[1]) {
                occ.line((px(w[0].0), py(w[0].1)), (px(w[1].0), py(w[1].1)), 2);
            }
        }
        for p in s.points.iter().filter(|p| finite(p)) {
            occ.mark(px(p.0), py(p.1), if s.markers { 4 } else { 2 });
        }
        if let Some(errs) = errors.and_then(|all| all.get(k)) {
            for (&(x, y), &e) in s.points.iter().zip(errs) {
                if finite(&(x, y)) && e.is_finite() && e > 0.0 {
                    occ.line((px(x), py(y - e)), (px(x), py(y + e)), 3);
                }
            }
        }
    }
    occ
}

/// The first place inside the plot area `rect` where a legend of size `(w, h)` covers no data: the
/// corners (upper right, upper left, lower right, lower left), then along the top, bottom, right and
/// left edges. `None` when there is none.
fn empty_place(
    occ: &Occupancy,
    rect: (i32, i32, i32, i32),
    (w, h): (i32, i32),
) -> Option<(i32, i32)> {
    let (l, t) = (rect.0 + LEGEND_GAP, rect.1 + LEGEND_GAP);
    let (r, b) = (rect.2 - LEGEND_GAP - w, rect.3 - LEGEND_GAP - h);
    if r < l || b < t {
        return None;
    }
    const STEP: usize = 8;
    let mut places = vec![(r, t), (l, t), (r, b), (l, b)];
    places.extend((l..=r).rev().step_by(STEP).map(|x| (x, t)));
    places.extend((l..=r).rev().step_by(STEP).map(|x| (x, b)));
    places.extend((t..=b).step_by(STEP).map(|y| (r, y)));
    places.extend((t..=b).step_by(STEP).map(|y| (l, y)));
    let c = LEGEND_CLEARANCE;
    places
        .into_iter()
        .find(|&(x, y)| occ.count(x - c, y - c, w + 2 * c, h + 2 * c) == 0)
}

/// Font of tick labels and axis descriptions.
const TICK_FONT: u32 = 14;

/// Lays a chart out on `area`: title, subtitle, axes with the given right margin; returns the chart.
fn frame<'a, DB: DrawingBackend>(
    titled: &'a DrawingArea<DB, Shift>,
    chart: &Chart,
    ((x0, x1), (y0, y1)): ((f32, f32), (f32, f32)),
    right: u32,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf32, RangedCoordf32>>>
where
    DB::ErrorType: 'static,
{
    ChartBuilder::on(titled)
        .caption(&chart.subtitle, ("sans-serif", 15))
        .margin(12)
        .margin_right(right)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| anyhow!("{e}"))
}

/// Plot area of a chart laid out with right margin `right`, in image pixels (left, top, right, bottom).
fn plot_rect(
    chart: &Chart,
    ranges: ((f32, f32), (f32, f32)),
    right: u32,
) -> Result<(i32, i32, i32, i32)> {
    let mut scratch = String::new();
    let area = SVGBackend::with_string(&mut scratch, SIZE).into_drawing_area();
    let titled = area
        .titled(&chart.title, ("sans-serif", 26))
        .map_err(|e| anyhow!("{e}"))?;
    let c = frame(&titled, chart, ranges, right)?;
    let (xs, ys) = c.plotting_area().get_pixel_range();
    Ok((xs.start, ys.start, xs.end, ys.end))
}

/// Decides the right margin and where the legend goes (see the module docs).
fn layout(
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
    bands: &[Band],
    entries: &[Entry],
    ranges: ((f32, f32), (f32, f32)),
) -> Result<Layout> {
    let mut scratch = String::new();
    let area = SVGBackend::with_string(&mut scratch, SIZE).into_drawing_area();
    let text = |s: &str, size: u32| -> Result<(i32, i32)> {
        let style: TextStyle = ("sans-serif", size).into_font().into();
        let (w, h) = area
            .estimate_text_size(s, &style)
            .map_err(|e| anyhow!("{e}"))?;
        Ok((w as i32, h as i32))
    };
    // The last x tick label is centred on the plot's right edge: half of it must fit in the margin.
    let widest = text(&tick_label(ranges.0.1), TICK_FONT)?
        .0
        .max(text("0.000", TICK_FONT)?.0);
    let right = (widest / 2 + 8).max(16) as u32;
    if entries.is_empty() {
        return Ok(Layout {
            right,
            legend: None,
            legend_size: (0, 0),
            row: 0,
        });
    }
    let mut text_w = 0;
    let mut text_h = 0;
    for e in entries {
        let (w, h) = text(&e.label, LEGEND_FONT)?;
        text_w = text_w.max(w);
        text_h = text_h.max(h);
    }
    let row = text_h.max(12) + 6;
    let size = (
        2 * LEGEND_PAD + LEGEND_SWATCH + 6 + text_w,
        2 * LEGEND_PAD + row * entries.len() as i32 - 6,
    );
    let rect = plot_rect(chart, ranges, right)?;
    let occ = occupancy(chart, errors, bands, ranges, rect);
    if let Some(at) = empty_place(&occ, rect, size) {
        return Ok(Layout {
            right,
            legend: Some(at),
            legend_size: size,
            row,
        });
    }
    // Outside, right of the plot: the plot narrows to make room.
    let right = right.max((size.0 + 2 * LEGEND_GAP) as u32);
    let rect = plot_rect(chart, ranges, right)?;
    Ok(Layout {
        right,
        legend: Some((rect.2 + LEGEND_GAP, rect.1)),
        legend_size: size,
        row,
    })
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
    bands: &[Band],
    entries: &[Entry],
    layout: &Layout,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    area.fill(&WHITE).map_err(e)?;
    let ranges = bounds(chart, bands);
    let ((x0, x1), _) = ranges;
    let titled = area.titled(&chart.title, ("sans-serif", 26)).map_err(e)?;
    let mut c = frame(&titled, chart, ranges, layout.right)?;
    // Whole-number x data (epochs, counts) get whole-number ticks only.
    let x_whole = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .all(|(x, _)| x.fract() == 0.0);
    let log_time = chart.x_scale == XScale::Log10Seconds;
    let x_fmt = move |v: &f32| {
        if log_time {
            decade_label(*v)
        } else if x_whole && (v - v.round()).abs() > 1e-6 * v.abs().max(1.0) {
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
        .label_style(("sans-serif", TICK_FONT))
        .draw()
        .map_err(e)?;
    for b in bands {
        let color = Palette99::pick(b.series).to_rgba();
        let pts: Vec<(f32, f32, f32)> = b
            .points
            .iter()
            .copied()
            .filter(|(x, lo, hi)| x.is_finite() && lo.is_finite() && hi.is_finite())
            .collect();
        let outline: Vec<(f32, f32)> = pts
            .iter()
            .map(|&(x, _, hi)| (x, hi))
            .chain(pts.iter().rev().map(|&(x, lo, _)| (x, lo)))
            .collect();
        if outline.len() >= 3 {
            c.draw_series([Polygon::new(outline, color.mix(0.22).filled())])
                .map_err(e)?;
        }
    }
    for (k, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(e)?;
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
    if let Some((lx, ly)) = layout.legend {
        let (w, h) = layout.legend_size;
        area.draw(&Rectangle::new(
            [(lx, ly), (lx + w, ly + h)],
            WHITE.mix(0.9).filled(),
        ))
        .map_err(e)?;
        area.draw(&Rectangle::new([(lx, ly), (lx + w, ly + h)], BLACK))
            .map_err(e)?;
        let font = legend_font().pos(Pos::new(HPos::Left, VPos::Center));
        for (i, entry) in entries.iter().enumerate() {
            let yc = ly + LEGEND_PAD + i as i32 * layout.row + (layout.row - 6) / 2;
            let (sx, ex) = (lx + LEGEND_PAD, lx + LEGEND_PAD + LEGEND_SWATCH);
            if entry.band {
                area.draw(&Rectangle::new(
                    [(sx, yc - 5), (ex, yc + 5)],
                    entry.color.mix(0.22).filled(),
                ))
                .map_err(e)?;
            } else {
                area.draw(&PathElement::new(
                    [(sx, yc), (ex, yc)],
                    entry.color.stroke_width(2),
                ))
                .map_err(e)?;
                if entry.marker {
                    area.draw(&Circle::new(((sx + ex) / 2, yc), 3, entry.color.filled()))
                        .map_err(e)?;
                }
            }
            area.draw(&Text::new(entry.label.clone(), (ex + 6, yc), font.clone()))
                .map_err(e)?;
        }
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
    write_chart(dir, stem, chart, None, &[])
}

/// [`write`] with error bars: `errors[k][i]` is the half height of the bar at point `i` of series `k`
/// (drawn from `y - e` to `y + e`; missing or zero values draw none).
pub fn write_with_errors(
    dir: &Path,
    stem: &str,
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
) -> Result<()> {
    write_chart(dir, stem, chart, errors, &[])
}

/// [`write_with_errors`] with shaded bands drawn under the lines.
pub fn write_chart(
    dir: &Path,
    stem: &str,
    chart: &Chart,
    errors: Option<&[Vec<f32>]>,
    bands: &[Band],
) -> Result<()> {
    register_font();
    let (chart, errors, bands) = scaled(chart, errors, bands);
    let errors = errors.as_deref();
    let entries = legend_entries(&chart, &bands);
    let layout = layout(&chart, errors, &bands, &entries, bounds(&chart, &bands))?;
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        &chart,
        errors,
        &bands,
        &entries,
        &layout,
    )?;
    write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;

    let png = dir.join(format!("{stem}.png"));
    let tmp = temp_path(&png);
    let drawn = draw(
        BitMapBackend::new(&tmp, SIZE).into_drawing_area(),
        &chart,
        errors,
        &bands,
        &entries,
        &layout,
    )
    .and_then(|_| std::fs::rename(&tmp, &png).map_err(anyhow::Error::from));
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn
}

/// The axis label of a device quantity in trace unit `unit` (the `unit` of trace_devices.csv and the
/// manifest): `conductance<what> (uS)` for conductance models, `weight<what> (normalized units)` for step
/// models that work in weight units (`w`); `what` qualifies the quantity (`" change per pulse"`).
pub fn device_axis(unit: &str, what: &str) -> String {
    match unit {
        "uS" => format!("conductance{what} (uS)"),
        "w" => format!("weight{what} (normalized units)"),
        other => format!("device value{what} ({other})"),
    }
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
/// conductance (or weight) against pulse number.
pub fn response(dir: &Path, stem: &str, p: &ResponsePlot) -> Result<()> {
    let chart = Chart {
        title: p.title.to_string(),
        subtitle: p.subtitle.to_string(),
        x_label: "pulse number".into(),
        y_label: device_axis(p.unit, ""),
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
        x_scale: XScale::Linear,
    };
    write(dir, stem, &chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_read_plainly() {
        assert_eq!(tick_label(50.0), "50");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2.5e-7), "2.5e-7");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(-12.5), "-12.5");
    }

    #[test]
    fn axes_take_the_prefix_that_suits_their_data() {
        // 0.003 uS reads 3 nS: values times 1000.
        let (label, f) = scale_axis("conductance (uS)", 0.003, 0.0385);
        assert_eq!(label, "conductance (nS)");
        assert!((f - 1e3).abs() < 1e-9, "{f}");
        // In range: unchanged; an exact power of ten stays in the larger prefix.
        assert_eq!(
            scale_axis("conductance (uS)", 1.0, 212.3).0,
            "conductance (uS)"
        );
        assert_eq!(
            scale_axis("conductance (uS)", 0.0, 1.0).0,
            "conductance (uS)"
        );
        assert_eq!(
            scale_axis("conductance (uS)", 0.2, 0.9).0,
            "conductance (nS)"
        );
        // Negative data count by magnitude.
        assert_eq!(scale_axis("step (uS)", -0.004, 0.002).0, "step (nS)");
        // Energy in pJ up to 3.2e6 pJ: 3.2 uJ; seconds; the micro sign reads as u.
        let (label, f) = scale_axis("training energy (pJ)", 0.0, 3.2e6);
        assert_eq!(label, "training energy (uJ)");
        assert!((f - 1e-6).abs() < 1e-18, "{f}");
        assert_eq!(scale_axis("wall time (s)", 0.0, 0.02).0, "wall time (ms)");
        assert_eq!(scale_axis("latency (\u{b5}s)", 0.0, 5.0).0, "latency (us)");
        // Counts in words: 0.002 millions are 2 thousands; plain counts lose the word.
        assert_eq!(
            scale_axis("pulses (millions)", 0.0, 0.002).0,
            "pulses (thousands)"
        );
        let (label, f) = scale_axis("pulses (millions)", 0.0, 0.0005);
        assert_eq!((label.as_str(), f), ("pulses", 1e6));
        // Not units: unchanged.
        for label in [
            "accuracy (%)",
            "weight (normalized units)",
            "levels (levels)",
            "device(s)",
        ] {
            assert_eq!(scale_axis(label, 0.0, 0.001), (label.to_string(), 1.0));
        }
        // No magnitude: unchanged.
        assert_eq!(scale_axis("conductance (uS)", 0.0, 0.0).1, 1.0);
    }

    fn chart(series: Vec<Vec<(f32, f32)>>) -> Chart {
        Chart {
            title: "t".into(),
            subtitle: "s".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: series
                .into_iter()
                .enumerate()
                .map(|(k, points)| Series {
                    label: format!("curve {k}"),
                    points,
                    markers: false,
                })
                .collect(),
            y_range: None,
            x_scale: XScale::Linear,
        }
    }

    fn legend_of(c: &Chart, bands: &[Band]) -> (Layout, (i32, i32, i32, i32)) {
        register_font();
        let entries = legend_entries(c, bands);
        let ranges = bounds(c, bands);
        let layout = layout(c, None, bands, &entries, ranges).unwrap();
        (layout, plot_rect(c, ranges, layout.right).unwrap())
    }

    /// Which corner of the plot area `rect` the legend is in: (right half, top half).
    fn corner(l: &Layout, rect: (i32, i32, i32, i32)) -> (bool, bool) {
        let (x, y) = l.legend.unwrap();
        let (w, h) = l.legend_size;
        (
            x + w / 2 > (rect.0 + rect.2) / 2,
            y + h / 2 < (rect.1 + rect.3) / 2,
        )
    }

    #[test]
    fn legend_goes_to_an_empty_corner() {
        // Rising lines fill the upper right and lower left: the legend goes to the upper left.
        let rising: Vec<Vec<(f32, f32)>> = (0..3)
            .map(|k| (0..=100).map(|i| (i as f32, (i + 5 * k) as f32)).collect())
            .collect();
        let (l, rect) = legend_of(&chart(rising), &[]);
        assert_eq!(corner(&l, rect), (false, true), "{l:?} in {rect:?}");
        // A peak in the middle leaves the upper right empty: the first choice.
        let peak = vec![
            (0..=100)
                .map(|i| (i as f32, 50.0 - (i as f32 - 50.0).abs()))
                .collect(),
        ];
        let (l, rect) = legend_of(&chart(peak), &[]);
        assert_eq!(corner(&l, rect), (true, true), "{l:?} in {rect:?}");
        // A valley takes both upper corners and the bottom middle: the lower right is empty.
        let valley = vec![
            (0..=100)
                .map(|i| (i as f32, (i as f32 - 50.0).abs()))
                .collect(),
        ];
        let (l, rect) = legend_of(&chart(valley), &[]);
        assert_eq!(corner(&l, rect), (true, false), "{l:?} in {rect:?}");
        // A band counts as data: a band over the whole upper half (and a line along the bottom) leave
        // the legend the space between them.
        let flat = vec![(0..=100).map(|i| (i as f32, 0.0)).collect()];
        let band = Band {
            label: "spread".into(),
            series: 0,
            points: (0..=100).map(|i| (i as f32, 5.0, 10.0)).collect(),
        };
        let (l, rect) = legend_of(&chart(flat), &[band]);
        let (x, y) = l.legend.unwrap();
        assert!(
            y > (rect.1 + rect.3) / 2 && x >= rect.0 && x < rect.2,
            "{l:?} in {rect:?}"
        );
    }

    #[test]
    fn a_full_plot_puts_the_legend_outside_and_keeps_the_last_tick() {
        // Noise over the whole area: no empty place inside.
        let mut v = 7u32;
        let mut next = || {
            v = v.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (v >> 8) as f32 / (1u32 << 24) as f32
        };
        let noise = (0..4)
            .map(|_| (0..=400).map(|i| (i as f32, next())).collect())
            .collect();
        let (l, rect) = legend_of(&chart(noise), &[]);
        let (x, y) = l.legend.unwrap();
        assert!(x > rect.2 && y == rect.1, "{l:?} in {rect:?}");
        assert!(x + l.legend_size.0 <= SIZE.0 as i32, "{l:?}");
        // Without a legend the right margin still holds half of the last tick label ("400").
        let mut c = chart(vec![vec![(0.0, 0.0), (400.0, 1.0)]]);
        c.series[0].label.clear();
        let (l, rect) = legend_of(&c, &[]);
        assert_eq!(l.legend, None);
        assert!(SIZE.0 as i32 - rect.2 >= 20, "{l:?} {rect:?}");
    }
}
