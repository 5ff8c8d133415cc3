//! `aimsim plot <folder>`: draws the plots of an output folder from the files in it, so plots can be
//! redrawn (or drawn for a merged sweep) without rerunning anything.
//!
//! What is drawn depends on what the folder holds: a sweep (`results.csv` + `plan.json`): a metric
//! against a swept key, one line per value of a second key, error bars over repeats; a training run
//! (`metrics.csv`): accuracy against epoch, conductance histograms, traced conductances ([`trace_plot`],
//! which `aimsim run` draws too); a folder of runs (`summary.csv`): each run plus a comparison; a device
//! run (`trace.csv` with a `cycle` column): the pulse response and the step size against the state
//! ([`step_plot`], which `aimsim device` draws too).
//!
//! Its size (about 1,050 lines, tests apart): one redraw per kind of output folder (device, run, runs,
//! sweep) and the two plots drawn from streamed traces; each reads its own files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::metrics::FINAL_COLUMNS;
use crate::output::ensure_dir;
use crate::plot::{self, Band, Chart, Series, device_axis};
use crate::sweep::Plan;
use crate::trace::for_each_npy_row;

/// One histogram of histogram.csv: (time, layer) and its bins (low edge, high edge, count).
type HistogramLine = ((String, String), Vec<(f32, f32, f32)>);

/// Options of sweep plots.
#[derive(Debug, Clone, Default)]
pub struct SweepPlotOptions {
    /// Swept key on the x axis (default: the first swept key with numeric values that varies).
    pub x: Option<String>,
    /// Swept key with one line per value (default: the next swept key that varies).
    pub by: Option<String>,
    /// results.csv columns on the y axis (default: final test accuracy and training energy).
    pub metrics: Vec<String>,
}

/// A CSV file as a header and rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn read(path: &Path) -> Result<Table> {
        let mut r = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let header = r
            .headers()
            .with_context(|| format!("{}: no header", path.display()))?
            .iter()
            .map(String::from)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            let rec = rec.with_context(|| format!("{}: malformed row", path.display()))?;
            rows.push(rec.iter().map(String::from).collect());
        }
        Ok(Table { header, rows })
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    fn num(&self, row: &[String], col: usize) -> Option<f32> {
        row.get(col)?.trim().parse::<f32>().ok()
    }
}

/// Draws every plot the folder's files allow; returns the files written.
pub fn plot_dir(dir: &Path, out: Option<&Path>, opts: &SweepPlotOptions) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut files = Vec::new();
    if dir.join("results.csv").is_file() && dir.join("plan.json").is_file() {
        let out = out.map_or_else(|| dir.join("plots"), Path::to_path_buf);
        ensure_dir(&out)?;
        sweep_plots(dir, &out, opts, &mut files)?;
        return Ok(files);
    }
    if opts.x.is_some() || opts.by.is_some() || !opts.metrics.is_empty() {
        bail!(
            "--x, --by and --metric apply to sweep folders (with results.csv and plan.json); {} is not one",
            dir.display()
        );
    }
    let out = out.map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
    ensure_dir(&out)?;
    if dir.join("metrics.csv").is_file() {
        run_plots(dir, &out, &mut files)?;
    } else if dir.join("summary.csv").is_file() {
        runs_plots(dir, &out, &mut files)?;
    } else if dir.join("trace.csv").is_file() {
        device_plot(dir, &out, &mut files)?;
    }
    // An `aimsim infer` folder (or run folder of one): accuracy against time after programming.
    if dir.join("accuracy_vs_time.csv").is_file() {
        let rows = crate::infer::read_accuracy(&dir.join("accuracy_vs_time.csv"))?;
        let title = title_of(dir);
        crate::infer::plot_accuracy(&out, &rows, &title)?;
        written(&out, "accuracy_vs_time", &mut files);
    }
    if files.is_empty() {
        bail!(
            "nothing to plot in {}: expected results.csv and plan.json (aimsim sweep), metrics.csv or summary.csv \
             (aimsim run), accuracy_vs_time.csv (aimsim infer), or trace.csv (aimsim device)",
            dir.display()
        );
    }
    Ok(files)
}

fn written(out: &Path, stem: &str, files: &mut Vec<PathBuf>) {
    files.push(out.join(format!("{stem}.svg")));
    files.push(out.join(format!("{stem}.png")));
}

fn title_of(dir: &Path) -> String {
    std::path::absolute(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// Pulse response of a device run (conductance of every sampled device against pulse number) and, where
/// the manifest describes the protocol, the step size against the state ([`step_plot`]).
fn device_plot(dir: &Path, out: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let t = Table::read(&dir.join("trace.csv"))?;
    let (Some(dc), Some(pc), Some(gc)) = (t.col("device"), t.col("pulse"), t.col("conductance"))
    else {
        return Ok(());
    };
    let manifest = std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        .unwrap_or_default();
    let unit = manifest["trace"]["unit"]
        .as_str()
        .unwrap_or("uS")
        .to_string();
    let mut by_device: BTreeMap<u64, Vec<(f32, f32)>> = BTreeMap::new();
    for r in &t.rows {
        if let (Some(d), Some(p), Some(g)) = (r[dc].parse::<u64>().ok(), t.num(r, pc), t.num(r, gc))
        {
            by_device.entry(d).or_default().push((p, g));
        }
    }
    let title = title_of(dir);
    let chart = Chart {
        title: title.clone(),
        subtitle: format!(
            "pulse response of {} device(s): potentiation then depression pulses",
            by_device.len()
        ),
        x_label: "pulse number".into(),
        y_label: device_axis(&unit, ""),
        series: device_series(by_device),
        y_range: None,
        x_scale: crate::plot::XScale::Linear,
    };
    plot::write(out, "response", &chart)?;
    written(out, "response", files);
    let (Some(every), Some(pulses)) = (
        manifest["trace"]["every"].as_u64(),
        manifest["protocol"]["pulses"].as_u64(),
    ) else {
        return Ok(());
    };
    let p = StepPlot {
        title: &title,
        unit: &unit,
        every,
        pulses,
    };
    if step_plot(dir, out, &p)? {
        written(out, STEP_PLOT, files);
    }
    Ok(())
}

/// File stem of the step-size plot of a device run.
pub const STEP_PLOT: &str = "step_vs_g";

/// Bins of the state axis of the step-size plot.
const STEP_BINS: usize = 40;

/// Traced devices the step-size statistics use at most (the first ones, in column order).
const STEP_DEVICES: usize = 1024;

/// One bin of a step-size curve: the steps of the pulses that found a device's state in the bin, as one
/// mean per device, summarized over the devices.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBin {
    /// Centre of the bin: the state before the pulse, in the trace's unit.
    pub g: f32,
    /// Mean over the devices of each device's mean step in the bin (signed: down steps are negative).
    pub mean: f32,
    /// 10th percentile over the devices of their mean steps.
    pub p10: f32,
    /// 90th percentile over the devices of their mean steps.
    pub p90: f32,
    /// Devices with a step in the bin.
    pub devices: usize,
}

/// Step size against state of a pulse-response trace, for up and for down pulses.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCurves {
    /// Potentiation pulses, bins in increasing state.
    pub up: Vec<StepBin>,
    /// Depression pulses, bins in increasing state.
    pub down: Vec<StepBin>,
    /// Devices the statistics cover.
    pub devices: usize,
}

/// The step per pulse of every device between two records of a pulse-response trace, when the pulses
/// between them all went one way: `(up, state before, step per pulse)` for each device, by `f`.
/// `pulses` is the protocol's pulses per direction: pulse `q` (from 1) is an up pulse when
/// `(q - 1) / pulses` is even.
fn record_steps(
    (p0, v0): (u64, &[f32]),
    (p1, v1): (u64, &[f32]),
    pulses: u64,
    f: &mut dyn FnMut(usize, bool, f32, f32),
) {
    if p1 <= p0 || pulses == 0 {
        return;
    }
    let (phase0, phase1) = (p0 / pulses, (p1 - 1) / pulses);
    if phase0 != phase1 {
        return;
    }
    let n = (p1 - p0) as f32;
    let up = phase1.is_multiple_of(2);
    for (d, (a, b)) in v0.iter().zip(v1).enumerate().take(STEP_DEVICES) {
        if a.is_finite() && b.is_finite() {
            f(d, up, *a, (b - a) / n);
        }
    }
}

/// Step size against state from the records of a pulse-response trace. `rows` feeds the records to
/// its argument as `(pulse, values of the traced devices)` in time order (it is called twice: once for
/// the state range, once for the bins); `pulses` is the protocol's pulses per direction. The step of a
/// record is the change since the previous record divided by the pulses between them, counted at the
/// state before; pairs of records with pulses of both directions between them are skipped. A bin is
/// drawn where at least a fifth of the devices (at least one) have steps in it, each device counting
/// once (its mean step in the bin).
pub fn steps_vs_g<R>(mut rows: R, pulses: u64, bins: usize) -> Result<StepCurves>
where
    R: FnMut(&mut dyn FnMut(u64, &[f32])) -> Result<()>,
{
    let bins = bins.max(1);
    // Pass 1: the range of states before a pulse, and the devices.
    let (mut lo, mut hi, mut devices) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
    // The previous record: its pulse (none before the first) and values.
    let (mut p0, mut v0): (Option<u64>, Vec<f32>) = (None, Vec::new());
    rows(&mut |p, v| {
        devices = devices.max(v.len().min(STEP_DEVICES));
        if let Some(p0) = p0 {
            record_steps((p0, &v0), (p, v), pulses, &mut |_, _, g, _| {
                lo = lo.min(g);
                hi = hi.max(g);
            });
        }
        p0 = Some(p);
        v0.clear();
        v0.extend_from_slice(v);
    })?;
    if !lo.is_finite() {
        return Ok(StepCurves {
            up: Vec::new(),
            down: Vec::new(),
            devices,
        });
    }
    let width = if hi > lo {
        (hi - lo) / bins as f32
    } else {
        1.0
    };
    let bin = |g: f32| (((g - lo) / width) as usize).min(bins - 1);
    // Pass 2: per direction, device and bin, the sum and count of steps.
    let mut sums = vec![0.0f64; 2 * devices * bins];
    let mut counts = vec![0u32; 2 * devices * bins];
    let (mut p0, mut v0): (Option<u64>, Vec<f32>) = (None, Vec::new());
    rows(&mut |p, v| {
        if let Some(p0) = p0 {
            record_steps((p0, &v0), (p, v), pulses, &mut |d, up, g, step| {
                let i = (usize::from(!up) * devices + d) * bins + bin(g);
                sums[i] += f64::from(step);
                counts[i] += 1;
            });
        }
        p0 = Some(p);
        v0.clear();
        v0.extend_from_slice(v);
    })?;
    let curve = |dir: usize| -> Vec<StepBin> {
        let active = (0..devices)
            .filter(|d| (0..bins).any(|b| counts[(dir * devices + d) * bins + b] > 0))
            .count();
        let needed = active.div_ceil(5).max(1);
        (0..bins)
            .filter_map(|b| {
                let mut means: Vec<f32> = (0..devices)
                    .map(|d| (dir * devices + d) * bins + b)
                    .filter(|&i| counts[i] > 0)
                    .map(|i| (sums[i] / f64::from(counts[i])) as f32)
                    .collect();
                if means.len() < needed {
                    return None;
                }
                means.sort_by(f32::total_cmp);
                Some(StepBin {
                    g: lo + (b as f32 + 0.5) * width,
                    mean: means.iter().sum::<f32>() / means.len() as f32,
                    p10: percentile(&means, 0.1),
                    p90: percentile(&means, 0.9),
                    devices: means.len(),
                })
            })
            .collect()
    };
    Ok(StepCurves {
        up: curve(0),
        down: curve(1),
        devices,
    })
}

/// The `q` quantile of sorted values, linearly interpolated between ranks.
fn percentile(sorted: &[f32], q: f32) -> f32 {
    let pos = q * (sorted.len() - 1) as f32;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

/// What the step-size plot of a device run needs besides the folder's trace.npy.
#[derive(Debug, Clone)]
pub struct StepPlot<'a> {
    /// Title (device label or folder name).
    pub title: &'a str,
    /// Unit of the trace (`uS` or `w`).
    pub unit: &'a str,
    /// Pulses between two records of the trace (`trace.every`).
    pub every: u64,
    /// Pulses per direction of the protocol (`protocol.pulses`).
    pub pulses: u64,
}

/// Draws `step_vs_g.svg/png` of a device run into `out`: the change per pulse against the state before
/// the pulse, up and down pulses, mean over the devices with a 10-90 percentile band
/// ([`steps_vs_g`] on `dir/trace.npy`). Returns whether it drew one (a trace too sparse for steps of
/// one direction draws none).
pub fn step_plot(dir: &Path, out: &Path, p: &StepPlot) -> Result<bool> {
    let npy = dir.join("trace.npy");
    let every = p.every.max(1);
    let curves = steps_vs_g(
        |f: &mut dyn FnMut(u64, &[f32])| {
            for_each_npy_row(&npy, &mut |r, v| f(r * every, v)).map(|_| ())
        },
        p.pulses,
        STEP_BINS,
    )?;
    if curves.up.is_empty() && curves.down.is_empty() {
        return Ok(false);
    }
    let mut series = Vec::new();
    let mut bands = Vec::new();
    for (name, c) in [("up", &curves.up), ("down", &curves.down)] {
        bands.push(Band {
            label: format!("{name}: 10-90 percentile of devices"),
            series: series.len(),
            points: c.iter().map(|b| (b.g, b.p10, b.p90)).collect(),
        });
        series.push(Series {
            label: format!("{name} pulses: mean of devices"),
            points: c.iter().map(|b| (b.g, b.mean)).collect(),
            markers: false,
        });
    }
    let mut subtitle = format!(
        "step per pulse against the state before it, {} device(s), {STEP_BINS} state bins",
        curves.devices
    );
    if every > 1 {
        subtitle += &format!("; mean step over records {every} pulses apart");
    }
    let chart = Chart {
        title: p.title.to_string(),
        subtitle,
        x_label: device_axis(p.unit, " before the pulse"),
        y_label: device_axis(p.unit, " change per pulse"),
        series,
        y_range: None,
        x_scale: crate::plot::XScale::Linear,
    };
    plot::write_chart(out, STEP_PLOT, &chart, None, &bands)?;
    Ok(true)
}

/// Accuracy, histograms and traces of one training run.
fn run_plots(dir: &Path, out: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let m = Table::read(&dir.join("metrics.csv"))?;
    let title = title_of(dir);
    let (Some(ec), Some(tc)) = (m.col("epoch"), m.col("test_accuracy")) else {
        bail!(
            "{}: no epoch or test_accuracy column",
            dir.join("metrics.csv").display()
        );
    };
    let mut series = vec![Series {
        label: "test".into(),
        points: m
            .rows
            .iter()
            .filter_map(|r| Some((m.num(r, ec)?, m.num(r, tc)?)))
            .collect(),
        markers: true,
    }];
    if let Some(trc) = m.col("train_accuracy") {
        series.push(Series {
            label: "train (during the epoch)".into(),
            points: m
                .rows
                .iter()
                .skip(1)
                .filter_map(|r| Some((m.num(r, ec)?, m.num(r, trc)?)))
                .collect(),
            markers: true,
        });
    }
    // Validation accuracy: empty cells without a validation split.
    if let Some(vc) = m.col("val_accuracy") {
        let points: Vec<(f32, f32)> = m
            .rows
            .iter()
            .filter_map(|r| Some((m.num(r, ec)?, m.num(r, vc)?)))
            .collect();
        if !points.is_empty() {
            series.push(Series {
                label: "validation".into(),
                points,
                markers: true,
            });
        }
    }
    plot::write(
        out,
        "accuracy",
        &Chart {
            title: title.clone(),
            subtitle: "accuracy after every epoch (epoch 0: untrained)".into(),
            x_label: "epoch".into(),
            y_label: "accuracy (%)".into(),
            series,
            y_range: Some((0.0, 100.0)),
            x_scale: crate::plot::XScale::Linear,
        },
    )?;
    written(out, "accuracy", files);

    let hist = dir.join("histogram.csv");
    if hist.is_file() {
        let h = Table::read(&hist)?;
        if let (Some(wc), Some(lc), Some(loc), Some(hic), Some(cc)) = (
            h.col("when"),
            h.col("layer"),
            h.col("bin_lo"),
            h.col("bin_hi"),
            h.col("count"),
        ) {
            // One step line per (time, layer), in file order, as a share of that histogram's devices.
            let mut groups: Vec<HistogramLine> = Vec::new();
            for r in &h.rows {
                let key = (r[wc].clone(), r[lc].clone());
                let (Some(lo), Some(hi), Some(c)) = (h.num(r, loc), h.num(r, hic), h.num(r, cc))
                else {
                    continue;
                };
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push((lo, hi, c)),
                    None => groups.push((key, vec![(lo, hi, c)])),
                }
            }
            let series = groups
                .into_iter()
                .map(|((when, layer), bins)| {
                    let total: f32 = bins.iter().map(|b| b.2).sum::<f32>().max(1.0);
                    Series {
                        label: format!("layer {layer} {when}"),
                        points: bins
                            .iter()
                            .flat_map(|(lo, hi, c)| {
                                [(*lo, 100.0 * c / total), (*hi, 100.0 * c / total)]
                            })
                            .collect(),
                        markers: false,
                    }
                })
                .collect();
            plot::write(
                out,
                "histogram",
                &Chart {
                    title: format!("{title}: conductance histograms over training"),
                    subtitle: "all devices of each layer".into(),
                    x_label: "conductance (fraction of the device range)".into(),
                    y_label: "devices (%)".into(),
                    series,
                    y_range: None,
                    x_scale: crate::plot::XScale::Linear,
                },
            )?;
            written(out, "histogram", files);
        }
    }

    for f in trace_plot(dir, out, &title)? {
        files.push(out.join(f));
    }
    Ok(())
}

/// Curves of `trace.png` at most (the first traced devices, in column order).
const TRACE_CURVES: usize = 32;

/// Points per curve of `trace.png` at most (records are thinned evenly beyond it).
const TRACE_POINTS: usize = 2000;

/// At most about `2 x cap` points of a stream, evenly spaced: when full, every other point goes and
/// the spacing doubles; the last point is always kept.
struct Thinned {
    points: Vec<(f32, f32)>,
    stride: u64,
    seen: u64,
    last: Option<(f32, f32)>,
}

impl Thinned {
    fn new() -> Self {
        Thinned {
            points: Vec::new(),
            stride: 1,
            seen: 0,
            last: None,
        }
    }

    fn push(&mut self, p: (f32, f32)) {
        if self.seen.is_multiple_of(self.stride) {
            self.points.push(p);
            if self.points.len() >= 2 * TRACE_POINTS {
                let kept = self.points.iter().copied().step_by(2).collect();
                self.points = kept;
                self.stride *= 2;
            }
        }
        self.seen += 1;
        self.last = Some(p);
    }

    fn finish(mut self) -> Vec<(f32, f32)> {
        if let Some(p) = self.last
            && self.points.last() != Some(&p)
        {
            self.points.push(p);
        }
        self.points
    }
}

/// Draws `trace.svg/png` of a training run into `out` from `dir/trace.csv`: the traced devices'
/// conductance (or weight, by the unit in trace_devices.csv) against training sample, one line per
/// device (the first 32), each named by its place (layer, tile, row, column, role). The file is read as
/// a stream and thinned, so memory does not grow with the run. Returns the files written (none without
/// a trace). `aimsim run` and `aimsim plot` both draw it; `name` starts the title.
pub fn trace_plot(dir: &Path, out: &Path, name: &str) -> Result<Vec<String>> {
    let path = dir.join("trace.csv");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = r
        .headers()
        .with_context(|| format!("{}: no header", path.display()))?
        .clone();
    let col = |n: &str| header.iter().position(|h| h == n);
    // Traced devices are numbered by `column` (older folders: `device`).
    let (Some(dc), Some(sc), Some(gc)) = (
        col("column").or_else(|| col("device")),
        col("step"),
        col("conductance"),
    ) else {
        return Ok(Vec::new());
    };
    let place: Vec<Option<usize>> = ["layer", "tile", "row", "col", "role"]
        .iter()
        .map(|n| col(n))
        .collect();
    let mut curves: BTreeMap<u64, (String, Thinned)> = BTreeMap::new();
    let mut devices = std::collections::BTreeSet::new();
    let mut rec = csv::StringRecord::new();
    while r
        .read_record(&mut rec)
        .with_context(|| format!("{}: malformed row", path.display()))?
    {
        let (Some(d), Some(s), Some(g)) = (
            rec.get(dc).and_then(|v| v.parse::<u64>().ok()),
            rec.get(sc).and_then(|v| v.trim().parse::<f32>().ok()),
            rec.get(gc).and_then(|v| v.trim().parse::<f32>().ok()),
        ) else {
            continue;
        };
        devices.insert(d);
        if !curves.contains_key(&d) && curves.len() >= TRACE_CURVES {
            continue;
        }
        curves
            .entry(d)
            .or_insert_with(|| {
                let cell = |k: usize| place[k].and_then(|c| rec.get(c)).unwrap_or("?");
                let label = if place.iter().all(Option::is_some) {
                    format!(
                        "layer {} tile {} ({}, {}) {}",
                        cell(0),
                        cell(1),
                        cell(2),
                        cell(3),
                        cell(4)
                    )
                } else {
                    format!("device {d}")
                };
                (label, Thinned::new())
            })
            .1
            .push((s, g));
    }
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    // The unit of every column is in trace_devices.csv (older folders without it: uS).
    let unit = Table::read(&dir.join("trace_devices.csv"))
        .ok()
        .and_then(|t| {
            let c = t.col("unit")?;
            t.rows.first().map(|r| r[c].clone())
        })
        .unwrap_or_else(|| "uS".into());
    let n = devices.len();
    let shown = if n > curves.len() {
        format!("the first {} of {n} traced devices", curves.len())
    } else {
        format!("{n} traced device(s)")
    };
    let quantity = if unit == "w" { "weight" } else { "conductance" };
    let chart = Chart {
        title: format!("{name}: traced devices during training"),
        subtitle: format!("{shown}; stored {quantity} as recorded in trace.csv"),
        x_label: "training sample (update step)".into(),
        y_label: device_axis(&unit, ""),
        series: curves
            .into_values()
            .map(|(label, points)| Series {
                label,
                points: points.finish(),
                markers: false,
            })
            .collect(),
        y_range: None,
        x_scale: crate::plot::XScale::Linear,
    };
    plot::write(out, "trace", &chart)?;
    Ok(vec!["trace.svg".into(), "trace.png".into()])
}

/// A folder of runs (`aimsim run` with variants or seeds): every run's plots and a comparison.
fn runs_plots(dir: &Path, out: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        if d.join("metrics.csv").is_file() {
            runs.push(d);
            continue;
        }
        if depth < 2 {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(&d)
                .with_context(|| format!("cannot read {}", d.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            stack.extend(subs.into_iter().rev().map(|p| (p, depth + 1)));
        }
    }
    runs.sort();
    let mut series = Vec::new();
    for r in &runs {
        let rel = r.strip_prefix(dir).unwrap_or(r);
        let sub_out = out.join(rel);
        ensure_dir(&sub_out)?;
        run_plots(r, &sub_out, files)?;
        let m = Table::read(&r.join("metrics.csv"))?;
        if let (Some(ec), Some(tc)) = (m.col("epoch"), m.col("test_accuracy")) {
            series.push(Series {
                label: rel.display().to_string(),
                points: m
                    .rows
                    .iter()
                    .filter_map(|row| Some((m.num(row, ec)?, m.num(row, tc)?)))
                    .collect(),
                markers: true,
            });
        }
    }
    if !series.is_empty() {
        plot::write(
            out,
            "accuracy",
            &Chart {
                title: title_of(dir),
                subtitle: "test accuracy of every run".into(),
                x_label: "epoch".into(),
                y_label: "test accuracy (%)".into(),
                series,
                y_range: Some((0.0, 100.0)),
                x_scale: crate::plot::XScale::Linear,
            },
        )?;
        written(out, "accuracy", files);
    }
    Ok(())
}

/// Axis label and scale factor of a results.csv column.
fn metric_axis(name: &str) -> (String, f32) {
    match FINAL_COLUMNS.iter().find(|c| c.name == name) {
        Some(c) => (c.label.to_string(), c.scale),
        None if name == "wall_s" => ("wall time (s)".into(), 1.0),
        None => (name.to_string(), 1.0),
    }
}

/// Axis label of a swept key, with its unit where the key has one.
fn key_axis(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    let unit = match last {
        "nl_up" | "nl_down" => " (NeuroSim NL label)",
        "levels" | "levels_down" => " (levels)",
        "adc_bits" | "dac_bits" => " (bits)",
        "g_min" | "g_max" => " (uS)",
        "cv" | "rel_half_width" => " (relative to nominal)",
        "c2c" => " (relative sigma)",
        "lr" => " (weight units)",
        "epochs" => " (epochs)",
        "rows" | "cols" => " (devices)",
        "train_samples" | "test_samples" => " (samples)",
        _ => "",
    };
    format!("{key}{unit}")
}

fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One line per device (`device <id>`, no markers), in device order.
fn device_series(by_device: BTreeMap<u64, Vec<(f32, f32)>>) -> Vec<Series> {
    by_device
        .into_iter()
        .map(|(d, points)| Series {
            label: format!("device {d}"),
            points,
            markers: false,
        })
        .collect()
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len().max(1) as f32;
    let m = v.iter().sum::<f32>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Distinct values of a column in order of first appearance (plan order).
fn distinct(t: &Table, col: usize) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in &t.rows {
        if !v.contains(&r[col]) {
            v.push(r[col].clone());
        }
    }
    v
}

fn sweep_plots(
    dir: &Path,
    out: &Path,
    opts: &SweepPlotOptions,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let plan: Plan = serde_json::from_str(
        &std::fs::read_to_string(dir.join("plan.json"))
            .with_context(|| format!("cannot read {}/plan.json", dir.display()))?,
    )
    .with_context(|| format!("{}/plan.json: not a sweep plan", dir.display()))?;
    let t = Table::read(&dir.join("results.csv"))?;
    if t.rows.is_empty() {
        bail!("{}/results.csv has no finished point yet", dir.display());
    }
    let keys = &plan.columns;
    if keys.is_empty() {
        bail!("the sweep varies no key (only repeats): nothing to put on the x axis");
    }
    let col = |k: &str| -> Result<usize> {
        t.col(k)
            .with_context(|| format!("results.csv has no column `{k}`"))
    };
    let check_key = |k: &str, flag: &str| -> Result<()> {
        if !keys.iter().any(|c| c == k) {
            bail!(
                "{flag} `{k}` is not a swept key; swept keys: {}",
                keys.join(", ")
            );
        }
        Ok(())
    };
    let varies = |k: &str| -> Result<bool> { Ok(distinct(&t, col(k)?).len() > 1) };
    let numeric = |k: &str| -> Result<bool> {
        let c = col(k)?;
        Ok(t.rows.iter().all(|r| r[c].trim().parse::<f64>().is_ok()))
    };
    let x = match &opts.x {
        Some(k) => {
            check_key(k, "--x")?;
            k.clone()
        }
        None => {
            let mut pick = None;
            for k in keys {
                if varies(k)? && numeric(k)? {
                    pick = Some(k.clone());
                    break;
                }
            }
            match pick {
                Some(k) => k,
                None => keys
                    .iter()
                    .find(|k| varies(k).unwrap_or(false))
                    .unwrap_or(&keys[0])
                    .clone(),
            }
        }
    };
    let by = match &opts.by {
        Some(k) => {
            check_key(k, "--by")?;
            if *k == x {
                bail!("--by `{k}` is also the x axis; choose another swept key");
            }
            Some(k.clone())
        }
        None => {
            let mut pick = None;
            for k in keys {
                if *k != x && varies(k)? {
                    pick = Some(k.clone());
                    break;
                }
            }
            pick
        }
    };
    let metrics: Vec<String> = if opts.metrics.is_empty() {
        vec!["final_test_accuracy".into(), "train_energy_pj".into()]
    } else {
        opts.metrics.clone()
    };
    for m in &metrics {
        let c = t.col(m).with_context(|| {
            let candidates: Vec<&str> = t
                .header
                .iter()
                .skip(plan.columns.len() + 3)
                .map(String::as_str)
                .collect();
            format!(
                "--metric `{m}` is not a results.csv column; columns: {}",
                candidates.join(", ")
            )
        })?;
        if t.rows.iter().any(|r| r[c].trim().parse::<f64>().is_err()) {
            if t.rows.iter().any(|r| r[c].trim().is_empty()) {
                bail!(
                    "--metric `{m}` has empty cells in results.csv (validation columns are empty \
                     without train.validation)"
                );
            }
            bail!("--metric `{m}` is not numeric in results.csv");
        }
    }
    // Keys zipped with x or by advance with them: they are neither lines nor panels.
    let partners = |k: &str| -> Vec<String> {
        plan.axes
            .iter()
            .find(|a| a.iter().any(|c| c == k))
            .map(|a| a.iter().filter(|c| *c != k).cloned().collect())
            .unwrap_or_default()
    };
    let tied: Vec<String> = partners(&x)
        .into_iter()
        .chain(by.as_deref().map(partners).unwrap_or_default())
        .collect();
    // Panels: one chart per combination of the other keys that vary.
    let others: Vec<String> = keys
        .iter()
        .filter(|k| **k != x && Some(*k) != by.as_ref() && !tied.contains(k))
        .filter(|k| varies(k).unwrap_or(false))
        .cloned()
        .collect();
    let other_cols: Vec<usize> = others.iter().map(|k| col(k)).collect::<Result<_>>()?;
    let mut panels: Vec<Vec<String>> = Vec::new();
    for r in &t.rows {
        let p: Vec<String> = other_cols.iter().map(|c| r[*c].clone()).collect();
        if !panels.contains(&p) {
            panels.push(p);
        }
    }
    if panels.len() > 64 {
        bail!(
            "{} charts per metric (one per combination of {}): choose --x and --by among them",
            panels.len(),
            others.join(", ")
        );
    }
    let xc = col(&x)?;
    let x_numeric = numeric(&x)?;
    let x_values = distinct(&t, xc);
    let x_pos = |v: &str| -> f32 {
        if x_numeric {
            v.trim().parse::<f32>().unwrap_or(f32::NAN)
        } else {
            x_values.iter().position(|s| s == v).unwrap_or(0) as f32
        }
    };
    let by_c = by.as_deref().map(col).transpose()?;
    let by_values = by_c.map_or_else(|| vec![String::new()], |c| distinct(&t, c));
    for m in &metrics {
        let mc = col(m)?;
        let (y_label, scale) = metric_axis(m);
        for (pi, panel) in panels.iter().enumerate() {
            let mut series = Vec::new();
            let mut errors = Vec::new();
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            let mut max_n = 0;
            for bv in &by_values {
                let mut pts = Vec::new();
                let mut errs = Vec::new();
                let mut xs: Vec<&String> = x_values.iter().collect();
                if x_numeric {
                    xs.sort_by(|a, b| x_pos(a).total_cmp(&x_pos(b)));
                }
                for xv in xs {
                    let ys: Vec<f32> = t
                        .rows
                        .iter()
                        .filter(|r| r[xc] == *xv)
                        .filter(|r| by_c.is_none_or(|c| r[c] == *bv))
                        .filter(|r| other_cols.iter().zip(panel).all(|(c, v)| r[*c] == *v))
                        .filter_map(|r| t.num(r, mc).map(|y| y * scale))
                        .collect();
                    if ys.is_empty() {
                        continue;
                    }
                    max_n = max_n.max(ys.len());
                    let (mean, sd) = mean_std(&ys);
                    lo = lo.min(mean - sd);
                    hi = hi.max(mean + sd);
                    pts.push((x_pos(xv), mean));
                    errs.push(sd);
                }
                if pts.is_empty() {
                    continue;
                }
                series.push(Series {
                    label: match &by {
                        Some(k) => format!("{k} = {bv}"),
                        None => m.clone(),
                    },
                    points: pts,
                    markers: true,
                });
                errors.push(errs);
            }
            if series.is_empty() {
                continue;
            }
            let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1e-6));
            let mut subtitle = format!(
                "{}: mean over {} repeat(s), error bars = standard deviation",
                plan.scenario, max_n
            );
            for (k, v) in others.iter().zip(panel) {
                subtitle += &format!("; {k} = {v}");
            }
            if !x_numeric {
                subtitle += &format!(
                    "; x: {}",
                    x_values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| format!("{i} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let mut stem = format!("sweep-{}-vs-{}", file_part(m), file_part(&x));
            if let Some(b) = &by {
                stem += &format!("-by-{}", file_part(b));
            }
            if panels.len() > 1 {
                for (k, v) in others.iter().zip(panel) {
                    let short = k.rsplit('.').next().unwrap_or(k);
                    stem += &format!("-{}={}", file_part(short), file_part(v));
                }
                if stem.len() > 180 {
                    stem = format!("{}-panel{pi}", &stem[..150]);
                }
            }
            let x_partners = partners(&x);
            if !x_partners.is_empty() {
                subtitle += &format!("; {x} zipped with {}", x_partners.join(", "));
            }
            let chart = Chart {
                title: format!("{} vs {x}", y_label.split(" (").next().unwrap_or(&y_label)),
                subtitle,
                x_label: key_axis(&x),
                y_label: y_label.clone(),
                series,
                y_range: Some((lo - pad, hi + pad)),
                x_scale: crate::plot::XScale::Linear,
            };
            plot::write_with_errors(out, &stem, &chart, Some(&errors))?;
            written(out, &stem, files);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plotdir_tests.rs"]
mod tests;
