//! `aimsim run`: train a network on the simulated chip, variant by variant, and write metrics, traces,
//! histograms, plots, manifests and a summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use aimsim_networks::data::{self, Dataset};
use aimsim_networks::ep::{EpConfig, EpNetwork, Feedback};
use aimsim_networks::mlp::{Mlp, MlpConfig};
use aimsim_networks::train::{EpochMetrics, Network, Observer, TrainConfig, Training};
use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::RngExt;
use serde_json::json;

use crate::checkpoint::{self, Checkpoint, Histograms};
use crate::output::{
    crate_versions_json, ensure_dir, report_written, sha256_hex, write_atomic, write_manifest,
};
use crate::plot::{self, Chart, Series};
use crate::scenario::{self, Algorithm, DatasetSpec, EpSpec, PointSet, Scenario, TrainSpec};
use crate::trace::TraceRecorder;
use crate::variants::{self, ScenarioSource};

/// Result of one variant.
#[derive(Debug, Clone)]
pub struct VariantResult {
    /// Variant name.
    pub name: String,
    /// Seed of this run.
    pub seed: u64,
    /// Metrics per epoch (epoch 0 first).
    pub metrics: Vec<EpochMetrics>,
    /// Whether this was the software baseline.
    pub software: bool,
    /// Controller name (or "software").
    pub rule: String,
}

/// The network a run trains: backpropagation or equilibrium propagation.
#[derive(Debug)]
enum Net {
    Bp(Mlp),
    Ep(Box<EpNetwork>),
}

impl Network for Net {
    fn learn(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut aimsim_sim::ledger::Ledger,
    ) -> f32 {
        match self {
            Net::Bp(n) => n.learn(input, label, lr, ledger),
            Net::Ep(n) => n.learn(input, label, lr, ledger),
        }
    }
    fn learn_ahead(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut aimsim_sim::ledger::Ledger,
        next: Option<&[f32]>,
    ) -> f32 {
        match self {
            Net::Bp(n) => n.learn_ahead(input, label, lr, ledger, next),
            Net::Ep(n) => n.learn_ahead(input, label, lr, ledger, next),
        }
    }
    fn infer(&mut self, input: &[f32], ledger: &mut aimsim_sim::ledger::Ledger) -> usize {
        match self {
            Net::Bp(n) => n.infer(input, ledger),
            Net::Ep(n) => n.infer(input, ledger),
        }
    }
    fn prediction(&self) -> usize {
        match self {
            Net::Bp(n) => Network::prediction(n),
            Net::Ep(n) => Network::prediction(n.as_ref()),
        }
    }
    fn layer_tiles(&self) -> Vec<&[aimsim_sim::tile::Tile]> {
        match self {
            Net::Bp(n) => n.layer_tiles(),
            Net::Ep(n) => n.layer_tiles(),
        }
    }
}

/// The energy network of `sizes` with the `[ep]` settings.
pub fn ep_config(e: &EpSpec, sizes: &[usize], init_scale: f32) -> EpConfig {
    EpConfig {
        sizes: sizes.to_vec(),
        activation: e.activation,
        steps_free: e.steps_free,
        steps_nudged: e.steps_nudged,
        eps: e.eps,
        beta: e.beta,
        nudge: e.nudge,
        feedback: e.feedback,
        update: e.update,
        init_scale,
        tolerance: e.tolerance,
    }
}

/// Records traces and histograms and reports progress during training.
struct Recorder {
    trace: Option<TraceRecorder>,
    /// First error of the trace files; training stops after the epoch in which it happened.
    error: Option<anyhow::Error>,
    bins: usize,
    /// (label, per-layer histogram counts) at the start and the end.
    histograms: Histograms,
    bar: Option<ProgressBar>,
    label: String,
    /// No epoch or progress lines (sweep points report through the sweep's own progress).
    quiet: bool,
    last_log: Instant,
    epochs: u32,
}

impl Recorder {
    fn keep(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn histogram(&self, net: &dyn Network) -> Vec<Vec<u64>> {
        net.layer_tiles()
            .iter()
            .map(|tiles| {
                let mut counts = vec![0u64; self.bins];
                for tile in tiles.iter() {
                    for a in 0..tile.cell().arrays() {
                        let p = tile.array(a);
                        for i in 0..p.len() {
                            let u = p.fraction(i).clamp(0.0, 1.0);
                            let b = ((u * self.bins as f32) as usize).min(self.bins - 1);
                            counts[b] += 1;
                        }
                    }
                }
                counts
            })
            .collect()
    }
}

impl Observer for Recorder {
    fn after_update(&mut self, net: &dyn Network, step: u64) {
        if self.error.is_none()
            && let Some(t) = &mut self.trace
        {
            let r = t.after_update(net, step);
            self.keep(r);
        }
    }

    fn after_epoch(&mut self, net: &dyn Network, m: &EpochMetrics) {
        if m.epoch == 0 {
            if let Some(t) = &mut self.trace {
                let r = t.record(net, 0);
                self.keep(r);
            }
            let h = self.histogram(net);
            self.histograms.push(("initial".into(), h));
        } else if m.epoch == self.epochs {
            let h = self.histogram(net);
            self.histograms.push(("final".into(), h));
        }
        let line = format!(
            "{}: epoch {}/{} test accuracy {:.2}% train loss {:.4}",
            self.label, m.epoch, self.epochs, m.test_accuracy, m.train_loss
        );
        match &self.bar {
            Some(b) => b.println(line),
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    fn progress(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                if !self.quiet && self.last_log.elapsed().as_secs_f64() >= 10.0 {
                    self.last_log = Instant::now();
                    eprintln!(
                        "{}: {done}/{total} samples ({:.0}%)",
                        self.label,
                        100.0 * done as f64 / total.max(1) as f64
                    );
                }
            }
        }
    }
}

/// Builds (or loads) the dataset a training spec asks for. Generated sets derive their seed from the
/// scenario seed.
pub fn dataset(t: &TrainSpec, seed: u64) -> Result<Dataset> {
    let data_seed = stream(seed, Purpose::Data, 0).random::<u64>();
    let mut d = match &t.dataset {
        DatasetSpec::Glyphs { side } => data::glyphs(
            t.train_samples as usize,
            t.test_samples as usize,
            *side as usize,
            data_seed,
        ),
        DatasetSpec::TeacherStudent => data::teacher_student(
            t.train_samples as usize,
            t.test_samples as usize,
            64,
            10,
            data_seed,
        ),
        DatasetSpec::Idx { name, dir } => {
            let dir = data::find_data_dir(dir.as_deref(), name)?;
            data::load_idx(&dir, name)?
        }
    };
    d.truncate(t.train_samples as usize, t.test_samples as usize);
    Ok(d)
}

/// Metrics as CSV (simulated quantities only, so equal seeds give byte-identical files).
pub fn metrics_csv(rows: &[EpochMetrics]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "epoch",
        "train_loss",
        "train_accuracy",
        "test_accuracy",
        "pulses_up",
        "pulses_down",
        "refreshes",
        "train_latency_ns",
        "train_energy_pj",
        "test_latency_ns_per_sample",
        "test_energy_pj_per_sample",
    ])?;
    for m in rows {
        w.write_record([
            m.epoch.to_string(),
            format!("{:.6}", m.train_loss),
            format!("{:.4}", m.train_accuracy),
            format!("{:.4}", m.test_accuracy),
            m.pulses_up.to_string(),
            m.pulses_down.to_string(),
            m.refreshes.to_string(),
            format!("{:.1}", m.train_latency_ns),
            format!("{:.1}", m.train_energy_pj),
            format!("{:.3}", m.test_latency_ns_per_sample),
            format!("{:.3}", m.test_energy_pj_per_sample),
        ])?;
    }
    Ok(w.into_inner()?)
}

fn write_variant(
    dir: &Path,
    s: &Scenario,
    res: &VariantResult,
    rec: &Recorder,
    trace_files: &[String],
) -> Result<Vec<String>> {
    let mut files = vec!["metrics.csv".to_string()];
    write_atomic(&dir.join("metrics.csv"), &metrics_csv(&res.metrics)?)?;
    let chart = Chart {
        title: format!("{}: {}", s.name, res.name),
        subtitle: format!("{} | seed {}", res.rule, s.seed),
        x_label: "epoch".into(),
        y_label: "accuracy (%)".into(),
        series: vec![
            Series {
                label: "test".into(),
                points: res
                    .metrics
                    .iter()
                    .map(|m| (m.epoch as f32, m.test_accuracy as f32))
                    .collect(),
                markers: true,
            },
            Series {
                label: "train (during the epoch)".into(),
                points: res
                    .metrics
                    .iter()
                    .skip(1)
                    .map(|m| (m.epoch as f32, m.train_accuracy as f32))
                    .collect(),
                markers: true,
            },
        ],
        y_range: Some((0.0, 100.0)),
    };
    plot::write(dir, "accuracy", &chart)?;
    files.extend(["accuracy.svg".into(), "accuracy.png".into()]);
    if res.software {
        return Ok(files);
    }
    files.extend(trace_files.iter().cloned());
    // Histograms.
    let bins = rec.bins;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["when", "layer", "bin_lo", "bin_hi", "count"])?;
    let mut series = Vec::new();
    for (when, layers) in &rec.histograms {
        for (l, counts) in layers.iter().enumerate() {
            let total: u64 = counts.iter().sum::<u64>().max(1);
            let mut pts = Vec::new();
            for (b, c) in counts.iter().enumerate() {
                let (lo, hi) = (b as f32 / bins as f32, (b + 1) as f32 / bins as f32);
                w.write_record([
                    when.clone(),
                    (l + 1).to_string(),
                    lo.to_string(),
                    hi.to_string(),
                    c.to_string(),
                ])?;
                let share = 100.0 * *c as f32 / total as f32;
                pts.push((lo, share));
                pts.push((hi, share));
            }
            series.push(Series {
                label: format!("layer {} {when}", l + 1),
                points: pts,
                markers: false,
            });
        }
    }
    write_atomic(&dir.join("histogram.csv"), &w.into_inner()?)?;
    plot::write(
        dir,
        "histogram",
        &Chart {
            title: format!("{}: {} conductance histograms", s.name, res.name),
            subtitle: format!(
                "all devices of each layer, initial and after epoch {}",
                rec.epochs
            ),
            x_label: "conductance (fraction of the device range)".into(),
            y_label: "devices (%)".into(),
            series,
            y_range: None,
        },
    )?;
    files.extend([
        "histogram.csv".into(),
        "histogram.svg".into(),
        "histogram.png".into(),
    ]);
    Ok(files)
}

/// Runs every variant of a scenario (or the scenario itself when it has none) and writes the results
/// into `out`. Returns the per-variant results.
pub fn run(path: &Path, sets: &[String], out: &Path) -> Result<Vec<VariantResult>> {
    run_with(path, sets, out, &RunOptions::default())
}

/// How `aimsim run` treats checkpoints.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue every run from the checkpoint in its output folder (`--resume`).
    pub resume: bool,
    /// Stop the command after this epoch of the first run that reaches it, once its checkpoint is
    /// written, without writing that run's results (`--stop-after-epoch`; simulates an interruption).
    pub stop_after_epoch: Option<u32>,
}

/// [`run`] with checkpoint options.
pub fn run_with(
    path: &Path,
    sets: &[String],
    out: &Path,
    opts: &RunOptions,
) -> Result<Vec<VariantResult>> {
    let started = Instant::now();
    let file = ScenarioSource::read(path)?;
    let origin = &file.origin;
    let base = file.load(sets, None)?;
    let Some(bt) = &base.train else {
        bail!(
            "{origin}: `aimsim run` trains a network and needs a [train] section (docs/scenarios.md); \
             for device curves use `aimsim device`"
        );
    };
    if base.sweep.is_some() {
        eprintln!(
            "note: {origin} has a [sweep] section; `aimsim run` trains its base configuration once, \
             `aimsim sweep` runs the sweep"
        );
    }
    if opts.stop_after_epoch == Some(0) {
        bail!("--stop-after-epoch counts epochs from 1; 0 would stop before training");
    }
    ensure_dir(out)?;
    if opts.resume && !has_checkpoint(out, 3) {
        bail!(
            "--resume: no {} under {} (checkpoints are written at the end of epochs when \
             train.checkpoint_every > 0)",
            checkpoint::FILE_NAME,
            out.display()
        );
    }
    let mut cache: HashMap<String, Dataset> = HashMap::new();
    let mut results = Vec::new();
    for (name, seed) in &variants::runs(&base.variants, &bt.seeds) {
        let run_sets = variants::seed_sets(sets, *seed);
        let mut dir = match name {
            Some(n) => out.join(n),
            None => out.to_path_buf(),
        };
        if let Some(seed) = seed {
            dir = dir.join(format!("seed-{seed}"));
        }
        let vname = name.clone().unwrap_or_else(|| base.name.clone());
        let done = train_one(
            &RunSpec {
                text: &file.text,
                path,
                sets: &run_sets,
                variant: name.as_deref(),
                point: &[],
                dir: &dir,
                label: match seed {
                    Some(sd) => format!("{vname} seed {sd}"),
                    None => vname.clone(),
                },
                progress: true,
                resume: opts.resume,
                stop_after_epoch: opts.stop_after_epoch,
            },
            &mut cache,
        )?;
        if done.stopped {
            return Ok(results);
        }
        results.push(done.result);
    }
    write_summary(out, &results, path, started)?;
    Ok(results)
}

/// One training run: the scenario's text with its overrides, variant and sweep-point values, and the
/// folder its outputs go to.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The scenario file's text.
    pub text: &'a str,
    /// Where the text was read from (errors, manifest, relative data files).
    pub path: &'a Path,
    /// `--set` overrides (including a `scenario.seed` override for a seed repeat).
    pub sets: &'a [String],
    /// The `[[variant]]` to apply, if any.
    pub variant: Option<&'a str>,
    /// The values of a sweep point, if any.
    pub point: &'a [PointSet],
    /// Output folder (created if missing).
    pub dir: &'a Path,
    /// Name shown in progress lines.
    pub label: String,
    /// Show the run's own progress bar (terminal) or log lines (otherwise).
    pub progress: bool,
    /// Continue from the checkpoint in `dir` when there is one (`--resume`).
    pub resume: bool,
    /// Stop after this epoch once its checkpoint is written, without writing results (an interruption).
    pub stop_after_epoch: Option<u32>,
}

/// What one training run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Metrics and identity of the run.
    pub result: VariantResult,
    /// SHA-256 of the effective configuration (after overrides, variant, point values, preset).
    pub effective_sha256: String,
    /// Wall time of training and writing, seconds.
    pub wall_s: f64,
    /// The run stopped early as asked (`stop_after_epoch`): only its checkpoint was written.
    pub stopped: bool,
}

/// Trains one network as `spec` describes and writes metrics.csv, traces, histograms, plots and
/// manifest.json into `spec.dir`. `cache` keeps generated or loaded datasets between runs of one process.
pub fn train_one(spec: &RunSpec, cache: &mut HashMap<String, Dataset>) -> Result<RunOutput> {
    let origin = spec.path.display().to_string();
    let base_dir = spec
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let name = spec.variant;
    let (s, effective, applied) =
        scenario::load_point_str(spec.text, &origin, &base_dir, spec.sets, name, spec.point)?;
    let Some(t) = s.train.clone() else {
        bail!("{origin}: a training run needs a [train] section (docs/scenarios.md)");
    };
    let vname = name.map_or_else(|| s.name.clone(), str::to_string);
    let key = format!(
        "{:?}|{}|{}|{}",
        t.dataset, t.train_samples, t.test_samples, s.seed
    );
    if !cache.contains_key(&key) {
        cache.insert(key.clone(), dataset(&t, s.seed)?);
    }
    let data = &cache[&key];
    let mut sizes = vec![data.inputs];
    sizes.extend(t.hidden.iter().map(|h| *h as usize));
    sizes.push(data.classes);
    let cfg = MlpConfig {
        sizes,
        activation: t.activation,
        loss: t.loss,
        bias: t.bias,
        init_scale: t.init_scale,
    };
    let hw = variants::hardware(&s);
    let dir = spec.dir;
    ensure_dir(dir)?;
    let ckpt_path = dir.join(checkpoint::FILE_NAME);
    let hash = checkpoint::scenario_hash(&effective);
    let saved = if spec.resume && ckpt_path.exists() {
        if t.algorithm == Algorithm::Ep {
            bail!(
                "{}: checkpoints of equilibrium-propagation runs are not supported; rerun without --resume",
                ckpt_path.display()
            );
        }
        Some(checkpoint::load(&ckpt_path, &hash)?)
    } else {
        if spec.resume {
            eprintln!(
                "{}: no checkpoint in {}, starting from epoch 0",
                spec.label,
                dir.display()
            );
        }
        None
    };
    let mut init = stream(s.seed, Purpose::Init, 0);
    let hw_opt = (!t.software).then_some(&hw);
    let mut net = match t.algorithm {
        Algorithm::Bp => Net::Bp(Mlp::new(&cfg, hw_opt, &mut init)?),
        Algorithm::Ep => Net::Ep(Box::new(EpNetwork::new(
            &ep_config(&s.ep, &cfg.sizes, t.init_scale),
            hw_opt,
            &mut init,
            s.seed,
        )?)),
    };
    if let (Some(c), Net::Bp(mlp)) = (&saved, &mut net) {
        mlp.import_state(&c.net).map_err(|e| {
            anyhow::anyhow!(
                "{}: the checkpoint does not fit the network: {e}",
                ckpt_path.display()
            )
        })?;
    }
    let total = data.train_len() as u64 * t.epochs as u64;
    let bar = (spec.progress && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} samples {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(spec.label.clone());
        if let Some(c) = &saved {
            b.set_position(c.progress.step);
        }
        b
    });
    let trace = if t.software {
        None
    } else {
        let unit = net
            .layer_tiles()
            .into_iter()
            .flatten()
            .next()
            .map_or("uS", |tile| tile.array(0).unit());
        Some(
            TraceRecorder::new(
                &net,
                &t.trace,
                s.seed,
                dir,
                unit,
                saved.as_ref().map(|c| c.trace),
            )
            .with_context(|| format!("{origin}: [trace]"))?,
        )
    };
    let mut rec = Recorder {
        trace,
        error: None,
        bins: t.histogram_bins as usize,
        histograms: saved
            .as_ref()
            .map(|c| c.histograms.clone())
            .unwrap_or_default(),
        bar,
        label: spec.label.clone(),
        quiet: !spec.progress,
        last_log: Instant::now(),
        epochs: t.epochs,
    };
    let tc = TrainConfig {
        epochs: t.epochs,
        lr: t.lr,
        lr_decay: t.lr_decay,
        shuffle: t.shuffle,
        seed: s.seed,
    };
    let v_started = Instant::now();
    let mut training = match saved {
        Some(c) => Training::resume(data, &tc, &s.cost, c.progress)
            .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?,
        None => Training::start(&mut net, data, &tc, &s.cost, &mut rec),
    };
    let mut stopped = false;
    while !training.done() {
        let epoch = training.run_epoch(&mut net, &mut rec).epoch;
        if let Some(e) = rec.error.take() {
            return Err(e);
        }
        let every = t.checkpoint_every;
        if let Net::Bp(mlp) = &net
            && every > 0
            && (epoch.is_multiple_of(every) || training.done())
        {
            let trace = match &mut rec.trace {
                Some(tr) => tr.checkpoint()?,
                None => Default::default(),
            };
            let c = Checkpoint {
                progress: training.progress().clone(),
                net: mlp.export_state(),
                trace,
                histograms: rec.histograms.clone(),
            };
            checkpoint::save(&ckpt_path, &c, &hash)?;
        }
        if spec.stop_after_epoch == Some(epoch) && !training.done() {
            stopped = true;
            break;
        }
    }
    if let Some(b) = &rec.bar {
        b.finish_and_clear();
    }
    if stopped {
        if let Some(tr) = &mut rec.trace {
            tr.checkpoint()?;
        }
        eprintln!(
            "{}: stopped after epoch {} as asked (--stop-after-epoch); continue with --resume",
            spec.label,
            training.progress().epoch
        );
    }
    let metrics = training.into_rows();
    let trace_files = match (stopped, rec.trace.take()) {
        (false, Some(tr)) => tr.finish()?,
        _ => Vec::new(),
    };
    let res = VariantResult {
        name: vname.clone(),
        seed: s.seed,
        metrics,
        software: t.software,
        rule: {
            let hw_rule = if t.software {
                "software baseline (float weights)".to_string()
            } else {
                format!("{} on {} cells", s.controller.name(), s.tile.cell.name())
            };
            match t.algorithm {
                Algorithm::Bp => hw_rule,
                Algorithm::Ep => format!(
                    "EP {} beta {}{}, {}",
                    s.ep.nudge.name(),
                    s.ep.beta,
                    if s.ep.feedback == Feedback::Separate {
                        " separate feedback"
                    } else {
                        ""
                    },
                    hw_rule
                ),
            }
        },
    };
    if stopped {
        return Ok(RunOutput {
            result: res,
            effective_sha256: sha256_hex(effective.as_bytes()),
            wall_s: v_started.elapsed().as_secs_f64(),
            stopped: true,
        });
    }
    let mut files = write_variant(dir, &s, &res, &rec, &trace_files)?;
    files.push("manifest.json".into());
    let manifest = json!({
        "command": if spec.point.is_empty() { "run" } else { "sweep" },
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": crate_versions_json(),
        "scenario": {
            "path": origin,
            "name": s.name,
            "variant": name,
            "sha256": sha256_hex(spec.text.as_bytes()),
            "effective_sha256": sha256_hex(effective.as_bytes()),
            "overrides": applied,
        },
        "seed": s.seed,
        "dataset": { "name": data.name, "train": data.train_len(), "test": data.test_len(), "inputs": data.inputs, "classes": data.classes },
        "network": cfg.sizes,
        "rule": res.rule,
        "device": s.device.to_string(),
        "files": files,
        "wall_s": v_started.elapsed().as_secs_f64(),
        "samples_per_s": total as f64 / v_started.elapsed().as_secs_f64().max(1e-9),
    });
    write_manifest(dir, &manifest)?;
    Ok(RunOutput {
        result: res,
        effective_sha256: sha256_hex(effective.as_bytes()),
        wall_s: v_started.elapsed().as_secs_f64(),
        stopped: false,
    })
}

/// Whether a checkpoint file lies in `dir` or its subfolders, `depth` levels down.
fn has_checkpoint(dir: &Path, depth: u32) -> bool {
    if dir.join(checkpoint::FILE_NAME).is_file() {
        return true;
    }
    depth > 0
        && std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().is_dir() && has_checkpoint(&e.path(), depth - 1))
        })
}

/// One run's summary: final and best test accuracy, pulses up and down, refreshes, energy, latency.
type Row = (f64, f64, u64, u64, u64, f64, f64);

/// One row of the summary of a variant.
fn summary_row(r: &VariantResult) -> Row {
    let last = r.metrics.last().cloned().unwrap_or_default();
    let best = r
        .metrics
        .iter()
        .skip(1)
        .map(|m| m.test_accuracy)
        .fold(0.0, f64::max);
    let sum = |f: fn(&EpochMetrics) -> f64| r.metrics.iter().map(f).sum::<f64>();
    (
        last.test_accuracy,
        best,
        r.metrics.iter().map(|m| m.pulses_up).sum(),
        r.metrics.iter().map(|m| m.pulses_down).sum(),
        r.metrics.iter().map(|m| m.refreshes).sum(),
        sum(|m| m.train_energy_pj),
        sum(|m| m.train_latency_ns),
    )
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn write_summary(
    out: &Path,
    results: &[VariantResult],
    path: &Path,
    started: Instant,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "variant",
        "seed",
        "rule",
        "final_test_accuracy",
        "best_test_accuracy",
        "pulses_up",
        "pulses_down",
        "refreshes",
        "train_energy_pj",
        "train_latency_ns",
    ])?;
    for r in results {
        let (fin, best, up, down, refr, e, lat) = summary_row(r);
        w.write_record([
            r.name.clone(),
            r.seed.to_string(),
            r.rule.clone(),
            format!("{fin:.4}"),
            format!("{best:.4}"),
            up.to_string(),
            down.to_string(),
            refr.to_string(),
            format!("{e:.1}"),
            format!("{lat:.1}"),
        ])?;
    }
    write_atomic(&out.join("summary.csv"), &w.into_inner()?)?;

    // The printed table: one line per variant, mean +- std over its seeds.
    let order = variants::first_seen(results.iter().map(|r| r.name.as_str()));
    println!(
        "{:<16} {:<32} {:>5} {:>16} {:>16} {:>12} {:>12} {:>9} {:>10} {:>10}",
        "variant",
        "rule",
        "seeds",
        "final test %",
        "best test %",
        "pulses up",
        "pulses down",
        "refreshes",
        "energy uJ",
        "latency ms"
    );
    for name in &order {
        let rs: Vec<&VariantResult> = results.iter().filter(|r| r.name == *name).collect();
        let rows: Vec<_> = rs.iter().map(|r| summary_row(r)).collect();
        let col = |f: &dyn Fn(&Row) -> f64| mean_std(&rows.iter().map(f).collect::<Vec<_>>());
        let (fin, fin_s) = col(&|r| r.0);
        let (best, best_s) = col(&|r| r.1);
        let (up, _) = col(&|r| r.2 as f64);
        let (down, _) = col(&|r| r.3 as f64);
        let (refr, _) = col(&|r| r.4 as f64);
        let (e, _) = col(&|r| r.5);
        let (lat, _) = col(&|r| r.6);
        println!(
            "{:<16} {:<32} {:>5} {:>16} {:>16} {:>12.0} {:>12.0} {:>9.0} {:>10.3} {:>10.3}",
            name,
            rs[0].rule,
            rs.len(),
            format!("{fin:.2} +- {fin_s:.2}"),
            format!("{best:.2} +- {best_s:.2}"),
            up,
            down,
            refr,
            e / 1e6,
            lat / 1e6
        );
    }
    if results.len() > 1 {
        plot::write(
            out,
            "accuracy",
            &Chart {
                title: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                subtitle: "test accuracy of every run".into(),
                x_label: "epoch".into(),
                y_label: "test accuracy (%)".into(),
                series: results
                    .iter()
                    .map(|r| Series {
                        label: format!("{} (seed {})", r.name, r.seed),
                        points: r
                            .metrics
                            .iter()
                            .map(|m| (m.epoch as f32, m.test_accuracy as f32))
                            .collect(),
                        markers: true,
                    })
                    .collect(),
                y_range: Some((0.0, 100.0)),
            },
        )?;
    }
    report_written(out, started);
    Ok(())
}
