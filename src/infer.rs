//! `aimsim infer`: train a network (on the chip, or in software, or not at all when it starts from
//! given weights), deploy it on the chip, and measure its test accuracy at times after programming,
//! with each drift compensation and several repeats of the noise draws (docs/inference.md).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use aimsim_networks::data::Dataset;
use aimsim_networks::deploy::{Compensation, Deployment, FloatLayer};
use aimsim_networks::mlp::Mlp;
use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;
use serde_json::json;

use crate::output::{
    crate_versions_json, report_written, sha256_hex, write_atomic, write_manifest,
};
use crate::plot::{self, Chart, Series};
use crate::run::{RunSpec, Trained, cached_dataset, mean_std, train_one};
use crate::scenario::{InferenceSpec, Scenario};
use crate::trace::{TraceRecorder, TracedDevice};
use crate::variants::{self, ScenarioSource};

/// How `aimsim infer` runs.
#[derive(Debug, Clone)]
pub struct InferOptions {
    /// Threads for the evaluations (times x repeats run concurrently).
    pub threads: usize,
}

/// One accuracy of accuracy_vs_time.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyRow {
    /// Variant name (the scenario's name without variants).
    pub variant: String,
    /// Seed of the run.
    pub seed: u64,
    /// Time after programming, s.
    pub t_s: f64,
    /// Compensation.
    pub compensation: Compensation,
    /// Repeat of the noise draws.
    pub repeat: u32,
    /// Test accuracy, percent.
    pub accuracy: f64,
}

/// Runs `aimsim infer`: every variant x seed of the scenario is trained as `aimsim run` trains it
/// (outputs in the same folders), deployed and aged; writes accuracy_vs_time.csv and plots into `out`
/// and each run's folder.
pub fn infer(
    path: &Path,
    sets: &[String],
    out: &Path,
    opts: &InferOptions,
) -> Result<Vec<AccuracyRow>> {
    let started = Instant::now();
    let file = ScenarioSource::read(path)?;
    let origin = file.origin.clone();
    let base = file.load(sets, None)?;
    file.check_runs(sets, &base)?;
    let Some(bt) = &base.train else {
        bail!(
            "{origin}: `aimsim infer` deploys a trained network and needs a [train] section \
             (docs/inference.md)"
        );
    };
    let runs = variants::runs(&base.variants, &bt.seeds);
    for (name, _) in &runs {
        if file.load(sets, name.as_deref())?.inference.is_none() {
            bail!(
                "{origin}: `aimsim infer` needs an [inference] section (an empty one takes the \
                 defaults: write-verify programming, PCM noise and drift; docs/inference.md)"
            );
        }
    }
    let threads = opts.threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the evaluation threads")?;
    let _lock = crate::output::lock_out(out)?;
    let mut cache: HashMap<String, Dataset> = HashMap::new();
    let mut rows = Vec::new();
    for (name, seed) in &runs {
        let run_sets = variants::seed_sets(sets, *seed);
        let dir = variants::run_dir(out, name.as_deref(), *seed);
        let s = file.load(&run_sets, name.as_deref())?;
        let vname = name.clone().unwrap_or_else(|| base.name.clone());
        let label = variants::run_label(&vname, *seed);
        let done = train_one(
            &RunSpec {
                text: &file.text,
                path,
                sets: &run_sets,
                variant: name.as_deref(),
                point: &[],
                dir: &dir,
                label: label.clone(),
                progress: true,
                resume: false,
                stop_after_epoch: None,
            },
            &mut cache,
        )?;
        let trained = done
            .trained
            .ok_or_else(|| anyhow!("{origin}: the run of {label} left no network to deploy"))?;
        let t = s.train.as_ref().expect("checked above");
        let data = cached_dataset(t, s.seed(), &mut cache)?;
        eprintln!("{label}: deploying and aging ({threads} thread(s))");
        let run_rows = infer_one(&s, &trained, data, &dir, &vname, &pool)?;
        rows.extend(run_rows);
    }
    let spec = base.inference.as_ref().expect("checked above");
    write_accuracy(out, &rows, true)?;
    plot_accuracy(out, &rows, &base.name)?;
    print_table(&rows, spec);
    let summary = json!({
        "command": "infer",
        "scenario": { "path": origin, "name": base.name, "sha256": sha256_hex(file.text.as_bytes()), "overrides": sets },
        "threads": threads,
        "files": ["accuracy_vs_time.csv", "accuracy_vs_time.svg", "accuracy_vs_time.png"],
        "wall_s": started.elapsed().as_secs_f64(),
    });
    // A scenario without variants or seeds trains in `out` itself: its manifest gains the inference;
    // otherwise `out` holds the combined results and a manifest of its own.
    let own = out.join("manifest.json");
    let mut manifest = match std::fs::read_to_string(&own) {
        Ok(text) if runs.len() == 1 && runs[0] == (None, None) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", own.display()))?
        }
        _ => json!({
            "aimsim_version": env!("CARGO_PKG_VERSION"),
            "crate_versions": crate_versions_json(),
        }),
    };
    manifest["infer"] = summary;
    write_manifest(out, &manifest)?;
    report_written(out, started);
    Ok(rows)
}

/// Deploys one trained network as the scenario's `[inference]` section says and evaluates it at every
/// time, repeat and compensation; writes the run folder's inference files and adds an `inference`
/// record to its manifest.json.
pub fn infer_one(
    s: &Scenario,
    trained: &Trained,
    data: &Dataset,
    dir: &Path,
    variant: &str,
    pool: &rayon::ThreadPool,
) -> Result<Vec<AccuracyRow>> {
    let spec = s
        .inference
        .as_ref()
        .ok_or_else(|| anyhow!("the scenario has no [inference] section"))?;
    let started = Instant::now();
    let deployment = match &trained.hardware {
        Some(hw) => {
            let mut net = Mlp::new(
                &trained.cfg,
                Some(hw),
                &mut stream(hw.seed, Purpose::Init, 0),
            )?;
            net.import_state(&trained.state)
                .map_err(|e| anyhow!("restoring the trained network: {e}"))?;
            Deployment::from_trained(&net, &trained.cfg, hw, &spec.deploy)?
        }
        None => {
            let mut float = Mlp::new(&trained.cfg, None, &mut stream(s.seed(), Purpose::Init, 0))?;
            float
                .import_state(&trained.state)
                .map_err(|e| anyhow!("restoring the trained network: {e}"))?;
            let layers: Vec<FloatLayer> = float
                .layers()
                .iter()
                .map(|l| FloatLayer {
                    weights: l.weights.weights(),
                    bias: l.bias().to_vec(),
                })
                .collect();
            Deployment::from_float(&layers, &trained.cfg, &s.hardware, &spec.deploy)?
        }
    };
    let programmed_s = started.elapsed().as_secs_f64();
    let eval_started = Instant::now();
    let (jobs, results) = evaluate_grid(
        &deployment,
        data,
        &spec.times_s,
        spec.repeats,
        &spec.compensations,
        pool,
    );
    let eval_s = eval_started.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for (&(ti, r), accs) in jobs.iter().zip(&results) {
        for (c, a) in spec.compensations.iter().zip(accs) {
            rows.push(AccuracyRow {
                variant: variant.to_string(),
                seed: s.seed(),
                t_s: spec.times_s[ti],
                compensation: *c,
                repeat: r,
                accuracy: *a,
            });
        }
    }
    // Sorted by compensation, time, repeat: the order a reader scans the file in.
    rows.sort_by(|a, b| {
        (a.compensation as u8)
            .cmp(&(b.compensation as u8))
            .then(a.t_s.total_cmp(&b.t_s))
            .then(a.repeat.cmp(&b.repeat))
    });
    write_accuracy(dir, &rows, false)?;
    plot_accuracy(dir, &rows, variant)?;
    write_programming(dir, s, &deployment)?;
    write_histograms(dir, spec, &deployment)?;
    let traced = write_trace(dir, s, spec, &deployment)?;
    let evaluations = jobs.len() * spec.compensations.len();
    let mut files = vec![
        "accuracy_vs_time.csv",
        "accuracy_vs_time.svg",
        "accuracy_vs_time.png",
        "programming.csv",
        "conductances.csv",
        "conductances.svg",
        "conductances.png",
    ];
    if traced > 0 {
        files.push("trace_t.csv");
    }
    let manifest = json!({
        "seed": s.seed(),
        "variant": variant,
        "deployed": if trained.hardware.is_some() { "trained on the chip, as trained" } else { "float weights, programmed" },
        "device": s.hardware.device.to_string(),
        "test_samples": data.test_len(),
        "times_s": spec.times_s,
        "compensations": spec.compensations.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "repeats": spec.repeats,
        "traced_devices": traced,
        "files": files,
        "evaluations": evaluations,
        "program_wall_s": programmed_s,
        "eval_wall_s": eval_s,
        "inferences_per_s": (evaluations * data.test_len()) as f64 / eval_s.max(1e-9),
    });
    // The run's manifest (written by its training) gains what the inference did.
    let path = dir.join("manifest.json");
    let mut run_manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    run_manifest["inference"] = manifest;
    write_manifest(dir, &run_manifest)?;
    Ok(rows)
}

/// Test accuracies of `d` at every time and repeat (jobs `(time index, repeat)`, run in parallel on
/// `pool`, each a function of its indices alone), one per compensation of `comps`.
pub fn evaluate_grid(
    d: &Deployment,
    data: &Dataset,
    times_s: &[f64],
    repeats: u32,
    comps: &[Compensation],
    pool: &rayon::ThreadPool,
) -> (Vec<(usize, u32)>, Vec<Vec<f64>>) {
    let jobs: Vec<(usize, u32)> = (0..times_s.len())
        .flat_map(|ti| (0..repeats).map(move |r| (ti, r)))
        .collect();
    let results = pool.install(|| {
        jobs.par_iter()
            .map_init(
                || d.network().expect("a deployed network rebuilds"),
                |net, &(ti, r)| d.accuracy(net, data, times_s[ti], ti, r, comps),
            )
            .collect()
    });
    (jobs, results)
}

/// Mean and sd over the repeats of every (time, compensation) of one run's rows, in the order of
/// the rows (a sweep point's record).
pub fn summarize(rows: &[AccuracyRow]) -> Vec<crate::sweep::InferenceCell> {
    let mut keys: Vec<(f64, Compensation)> = Vec::new();
    for r in rows {
        if !keys
            .iter()
            .any(|(t, c)| *t == r.t_s && *c == r.compensation)
        {
            keys.push((r.t_s, r.compensation));
        }
    }
    keys.into_iter()
        .map(|(t, c)| {
            let acc: Vec<f64> = rows
                .iter()
                .filter(|r| r.t_s == t && r.compensation == c)
                .map(|r| r.accuracy)
                .collect();
            let (mean, sd) = mean_std(&acc);
            crate::sweep::InferenceCell {
                t_s: t,
                compensation: c.name().to_string(),
                mean,
                sd,
                repeats: acc.len() as u32,
            }
        })
        .collect()
}

/// accuracy_vs_time.csv: one row per (time, compensation, seed, repeat), tidy.
fn write_accuracy(dir: &Path, rows: &[AccuracyRow], with_variant: bool) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["t_s", "compensation", "seed", "repeat", "accuracy"];
    if with_variant {
        header.insert(0, "variant");
    }
    w.write_record(&header)?;
    for r in rows {
        let mut cells = vec![
            format!("{}", r.t_s),
            r.compensation.name().to_string(),
            r.seed.to_string(),
            r.repeat.to_string(),
            format!("{:.4}", r.accuracy),
        ];
        if with_variant {
            cells.insert(0, r.variant.clone());
        }
        w.write_record(&cells)?;
    }
    write_atomic(&dir.join("accuracy_vs_time.csv"), &w.into_inner()?)
}

/// Groups rows by (variant, compensation): per time, mean and sample sd over seeds x repeats.
/// A line of the accuracy plot: its label and `(t, mean, sd)` points.
type Curve = (String, Vec<(f64, f64, f64)>);

fn curves(rows: &[AccuracyRow]) -> Vec<Curve> {
    let mut keys: Vec<(String, Compensation)> = Vec::new();
    for r in rows {
        let k = (r.variant.clone(), r.compensation);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let several = keys.iter().any(|(v, _)| *v != keys[0].0);
    keys.into_iter()
        .map(|(v, c)| {
            let mut times: Vec<f64> = rows
                .iter()
                .filter(|r| r.variant == v && r.compensation == c)
                .map(|r| r.t_s)
                .collect();
            times.sort_by(f64::total_cmp);
            times.dedup();
            let pts = times
                .iter()
                .map(|t| {
                    let acc: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.variant == v && r.compensation == c && r.t_s == *t)
                        .map(|r| r.accuracy)
                        .collect();
                    let (m, sd) = mean_std(&acc);
                    (*t, m, sd)
                })
                .collect();
            let label = if several {
                format!("{v}: {} compensation", c.name())
            } else {
                format!("{} compensation", c.name())
            };
            (label, pts)
        })
        .collect()
}

/// Reads an accuracy_vs_time.csv (with or without its `variant` column) back into rows; errors name
/// the file and line.
pub fn read_accuracy(path: &Path) -> Result<Vec<AccuracyRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = r.headers()?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no `{name}` column", path.display()))
    };
    let (t, c, sd, rep, acc) = (
        col("t_s")?,
        col("compensation")?,
        col("seed")?,
        col("repeat")?,
        col("accuracy")?,
    );
    let var = header.iter().position(|h| h == "variant");
    let mut rows = Vec::new();
    for (k, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), k + 2))?;
        let bad = |what: &str| anyhow!("{}: line {}: bad {what}", path.display(), k + 2);
        let compensation = match &rec[c] {
            "none" => Compensation::None,
            "global" => Compensation::Global,
            "column" => Compensation::Column,
            _ => return Err(bad("compensation")),
        };
        rows.push(AccuracyRow {
            variant: var.map_or_else(String::new, |v| rec[v].to_string()),
            seed: rec[sd].parse().map_err(|_| bad("seed"))?,
            t_s: rec[t].parse().map_err(|_| bad("t_s"))?,
            compensation,
            repeat: rec[rep].parse().map_err(|_| bad("repeat"))?,
            accuracy: rec[acc].parse().map_err(|_| bad("accuracy"))?,
        });
    }
    Ok(rows)
}

/// accuracy_vs_time.svg/png: mean test accuracy against log time, a band of +- one sd over seeds and
/// repeats around each line.
pub fn plot_accuracy(dir: &Path, rows: &[AccuracyRow], title: &str) -> Result<()> {
    let curves = curves(rows);
    let chart = Chart {
        title: format!("{title}: accuracy after programming"),
        subtitle: "mean, and +- sd over seeds and repeats of the noise draws (bands)".into(),
        x_label: "time after programming (log scale)".into(),
        y_label: "test accuracy (%)".into(),
        series: curves
            .iter()
            .map(|(label, pts)| Series {
                label: label.clone(),
                points: pts
                    .iter()
                    .map(|(t, m, _)| (t.log10() as f32, *m as f32))
                    .collect(),
                markers: true,
            })
            .collect(),
        y_range: None,
        x_scale: crate::plot::XScale::Log10Seconds,
    };
    let bands: Vec<plot::Band> = curves
        .iter()
        .enumerate()
        .map(|(k, (_, pts))| plot::Band {
            // The subtitle says what the bands are; the legend lists the lines.
            label: String::new(),
            series: k,
            points: pts
                .iter()
                .map(|(t, m, sd)| (t.log10() as f32, (m - sd) as f32, (m + sd) as f32))
                .collect(),
        })
        .collect();
    plot::write_chart(dir, "accuracy_vs_time", &chart, None, &bands)
}

/// The printed table: mean +- sd per compensation (columns) and time (rows).
fn print_table(rows: &[AccuracyRow], spec: &InferenceSpec) {
    for (label, pts) in curves(rows) {
        println!("{label}:");
        for (t, m, sd) in pts {
            println!("  t = {:>12} s  {:6.2} +- {:.2} %", t, m, sd);
        }
    }
    let _ = spec;
}

/// programming.csv: what programming cost (write-verify counts, the time and energy they take on the
/// ledger's cost model, device-serial within a tile, tiles in parallel) and how far it landed.
fn write_programming(dir: &Path, s: &Scenario, d: &Deployment) -> Result<()> {
    let r = d.report();
    let v = r.verify;
    let cost = &s.hardware.cost;
    // One device read: a read pass plus one ADC conversion; one pulse train: its slot.
    let read_cycles = cost.read_cycles as u64 + cost.adc_cycles as u64;
    let cycles = v.reads * read_cycles + v.slots * cost.pulse_cycles as u64;
    let tiles: usize = {
        let net = d.network().map_err(|e| anyhow!("{e}"))?;
        net.layers().iter().map(|l| l.weights.tiles().len()).sum()
    };
    let energy_pj = (v.pulses_up + v.pulses_down) as f64 * cost.pulse_energy_pj
        + v.reads as f64 * (cost.dac_energy_pj + cost.adc_energy_pj);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "devices",
        "unconverged",
        "verify_reads",
        "pulses_up",
        "pulses_down",
        "rms_weight_error",
        "cycles_serial",
        "time_s_tiles_parallel",
        "energy_pj",
    ])?;
    w.write_record([
        v.devices.to_string(),
        v.unconverged.to_string(),
        v.reads.to_string(),
        v.pulses_up.to_string(),
        v.pulses_down.to_string(),
        format!("{:.6}", r.rms_error),
        cycles.to_string(),
        format!(
            "{:.6e}",
            cycles as f64 / cost.clock_hz / tiles.max(1) as f64
        ),
        format!("{:.6e}", energy_pj),
    ])?;
    write_atomic(&dir.join("programming.csv"), &w.into_inner()?)
}

/// conductances.csv and conductances.svg/png: histograms of every device's conductance as programmed
/// and at the first and last time (repeat 0), per layer.
fn write_histograms(dir: &Path, spec: &InferenceSpec, d: &Deployment) -> Result<()> {
    let last = spec.times_s.len() - 1;
    let snaps = [
        ("programmed".to_string(), 0usize, None),
        (
            format!("t = {} s", spec.times_s[0]),
            0,
            Some(spec.times_s[0]),
        ),
        (
            format!("t = {} s", spec.times_s[last]),
            last,
            Some(spec.times_s[last]),
        ),
    ];
    let g_max = spec.deploy.g_max_us;
    let bins = spec.histogram_bins as usize;
    let (lo, hi) = (0.0f64, 1.2 * g_max);
    let width = (hi - lo) / bins as f64;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["when", "t_s", "layer", "lo_us", "hi_us", "count"])?;
    let mut series = Vec::new();
    for (label, ti, t) in &snaps {
        let arrays = d.conductances(t.unwrap_or(spec.times_s[0]), *ti, 0);
        let layers = arrays.iter().map(|a| a.layer).max().map_or(0, |m| m + 1);
        let mut all = vec![0u64; bins];
        for l in 0..layers {
            let mut counts = vec![0u64; bins];
            for a in arrays.iter().filter(|a| a.layer == l) {
                let values = if t.is_some() { &a.g_t } else { &a.g_prog };
                for g in values {
                    let b = (((g - lo) / width).floor().max(0.0) as usize).min(bins - 1);
                    counts[b] += 1;
                }
            }
            for (b, c) in counts.iter().enumerate() {
                all[b] += c;
                w.write_record([
                    label.clone(),
                    t.map_or(String::new(), |t| t.to_string()),
                    l.to_string(),
                    format!("{}", lo + b as f64 * width),
                    format!("{}", lo + (b + 1) as f64 * width),
                    c.to_string(),
                ])?;
            }
        }
        let total: u64 = all.iter().sum::<u64>().max(1);
        series.push(Series {
            label: label.clone(),
            points: all
                .iter()
                .enumerate()
                .map(|(b, c)| {
                    (
                        (lo + (b as f64 + 0.5) * width) as f32,
                        (*c as f64 / total as f64) as f32,
                    )
                })
                .collect(),
            markers: false,
        });
    }
    write_atomic(&dir.join("conductances.csv"), &w.into_inner()?)?;
    let chart = Chart {
        title: "conductances after programming".into(),
        subtitle: "every device of every layer; repeat 0".into(),
        x_label: "conductance (uS)".into(),
        y_label: "fraction of devices per bin".into(),
        series,
        y_range: None,
        x_scale: crate::plot::XScale::Linear,
    };
    plot::write(dir, "conductances", &chart)
}

/// trace_t.csv: the `[trace]` devices' conductances at every time of every repeat. Returns how many
/// devices were traced (0 without a `[trace]` section).
fn write_trace(dir: &Path, s: &Scenario, spec: &InferenceSpec, d: &Deployment) -> Result<usize> {
    let Some(tspec) = &s.trace else {
        return Ok(0);
    };
    let net = d.network().map_err(|e| anyhow!("{e}"))?;
    let devices: Vec<TracedDevice> =
        TraceRecorder::select(&net, tspec, s.seed()).map_err(|e| anyhow!("{e}"))?;
    let cols: Vec<usize> = devices
        .iter()
        .map(|t| net.layers()[t.layer].weights.tiles()[t.tile].cols())
        .collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "t_s",
        "repeat",
        "layer",
        "tile",
        "row",
        "col",
        "role",
        "g_prog_us",
        "g_us",
    ])?;
    for r in 0..spec.repeats {
        for (ti, t) in spec.times_s.iter().enumerate() {
            let arrays = d.conductances(*t, ti, r);
            for (dev, c) in devices.iter().zip(&cols) {
                let a = arrays
                    .iter()
                    .find(|a| a.layer == dev.layer && a.tile == dev.tile && a.array == dev.array)
                    .expect("a traced device's array");
                let i = dev.index(*c);
                w.write_record([
                    t.to_string(),
                    r.to_string(),
                    dev.layer.to_string(),
                    dev.tile.to_string(),
                    dev.row.to_string(),
                    dev.col.to_string(),
                    dev.role.to_string(),
                    format!("{}", a.g_prog[i]),
                    format!("{}", a.g_t[i]),
                ])?;
            }
        }
    }
    write_atomic(&dir.join("trace_t.csv"), &w.into_inner()?)?;
    Ok(devices.len())
}
