//! `aimsim plot <folder>`: draws the plots of an output folder from the files in it, so plots can be
//! redrawn (or drawn for a merged sweep) without rerunning anything.
//!
//! What is drawn depends on what the folder holds: a sweep (`results.csv` + `plan.json`): a metric
//! against a swept key, one line per value of a second key, error bars over repeats; a training run
//! (`metrics.csv`): accuracy against epoch, conductance histograms, traced conductances; a folder of
//! runs (`summary.csv`): each run plus a comparison; a device run (`trace.csv` with a `cycle` column):
//! the pulse response.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::metrics::FINAL_COLUMNS;
use crate::output::ensure_dir;
use crate::plot::{self, Chart, Series};
use crate::sweep::Plan;

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
    if files.is_empty() {
        bail!(
            "nothing to plot in {}: expected results.csv and plan.json (aimsim sweep), metrics.csv or summary.csv \
             (aimsim run), or trace.csv (aimsim device)",
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

/// Pulse response of a device run: conductance of every sampled device against pulse number.
fn device_plot(dir: &Path, out: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let t = Table::read(&dir.join("trace.csv"))?;
    let (Some(dc), Some(pc), Some(gc)) = (t.col("device"), t.col("pulse"), t.col("conductance"))
    else {
        return Ok(());
    };
    let unit = std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        .and_then(|m| m["trace"]["unit"].as_str().map(String::from))
        .unwrap_or_else(|| "uS".into());
    let mut by_device: BTreeMap<u64, Vec<(f32, f32)>> = BTreeMap::new();
    for r in &t.rows {
        if let (Some(d), Some(p), Some(g)) = (r[dc].parse::<u64>().ok(), t.num(r, pc), t.num(r, gc))
        {
            by_device.entry(d).or_default().push((p, g));
        }
    }
    let chart = Chart {
        title: title_of(dir),
        subtitle: format!(
            "pulse response of {} device(s): potentiation then depression pulses",
            by_device.len()
        ),
        x_label: "pulse number".into(),
        y_label: if unit == "uS" {
            "conductance (uS)".into()
        } else {
            format!("weight ({unit})")
        },
        series: device_series(by_device),
        y_range: None,
    };
    plot::write(out, "response", &chart)?;
    written(out, "response", files);
    Ok(())
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
                },
            )?;
            written(out, "histogram", files);
        }
    }

    let trace = dir.join("trace.csv");
    if trace.is_file() {
        let t = Table::read(&trace)?;
        // Traced devices are numbered by `column` (older folders: `device`).
        if let (Some(dc), Some(sc), Some(gc)) = (
            t.col("column").or_else(|| t.col("device")),
            t.col("step"),
            t.col("conductance"),
        ) {
            let mut by_device: BTreeMap<u64, Vec<(f32, f32)>> = BTreeMap::new();
            for r in &t.rows {
                if let (Some(d), Some(s), Some(g)) =
                    (r[dc].parse::<u64>().ok(), t.num(r, sc), t.num(r, gc))
                {
                    by_device.entry(d).or_default().push((s, g));
                }
            }
            let n = by_device.len();
            plot::write(
                out,
                "trace",
                &Chart {
                    title: format!("{title}: traced devices during training"),
                    subtitle: format!("{n} device(s); conductance as recorded in trace.csv"),
                    x_label: "training sample (update step)".into(),
                    y_label: "conductance (uS, or weight units for step models)".into(),
                    series: device_series(by_device),
                    y_range: None,
                },
            )?;
            written(out, "trace", files);
        }
    }
    Ok(())
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
            };
            plot::write_with_errors(out, &stem, &chart, Some(&errors))?;
            written(out, &stem, files);
        }
    }
    Ok(())
}
