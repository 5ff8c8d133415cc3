//! `aimsim run`: train a network on the simulated chip, variant by variant, and write metrics, traces,
//! histograms, plots, manifests and a summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use aimsim_networks::data::{self, Dataset};
use aimsim_networks::ep::{EpNetwork, Feedback};
use aimsim_networks::mlp::{Mlp, MlpConfig};
use aimsim_networks::train::{EpochMetrics, Network, Observer, TrainConfig, Training, train_split};
use aimsim_sim::par::{Par, Team};
use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use rand::RngExt;
use serde_json::json;

use crate::checkpoint::{self, Checkpoint, Histograms};
use crate::metrics::summary_columns;
pub use crate::metrics::{SummaryRow, metrics_csv, summary_row};
use crate::output::{
    crate_versions_json, ensure_dir, report_written, sha256_hex, write_atomic, write_manifest,
};
use crate::plot::{self, Chart, Series};
use crate::scenario::{self, Algorithm, DatasetSpec, PointSet, Scenario, TrainSpec};
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
        par: Par<'_>,
    ) -> f32 {
        match self {
            Net::Bp(n) => n.learn(input, label, lr, ledger, par),
            Net::Ep(n) => n.learn(input, label, lr, ledger, par),
        }
    }
    fn learn_ahead(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut aimsim_sim::ledger::Ledger,
        next: Option<&[f32]>,
        par: Par<'_>,
    ) -> f32 {
        match self {
            Net::Bp(n) => n.learn_ahead(input, label, lr, ledger, next, par),
            Net::Ep(n) => n.learn_ahead(input, label, lr, ledger, next, par),
        }
    }
    fn infer(
        &mut self,
        input: &[f32],
        ledger: &mut aimsim_sim::ledger::Ledger,
        par: Par<'_>,
    ) -> usize {
        match self {
            Net::Bp(n) => n.infer(input, ledger, par),
            Net::Ep(n) => n.infer(input, ledger, par),
        }
    }
    fn prediction(&self) -> usize {
        match self {
            Net::Bp(n) => Network::prediction(n),
            Net::Ep(n) => Network::prediction(n.as_ref()),
        }
    }
    fn last_loss(&self, label: usize) -> Option<f32> {
        match self {
            Net::Bp(n) => n.last_loss(label),
            Net::Ep(n) => n.last_loss(label),
        }
    }
    fn layer_tiles(&self) -> Vec<&[aimsim_sim::tile::Tile]> {
        match self {
            Net::Bp(n) => n.layer_tiles(),
            Net::Ep(n) => n.layer_tiles(),
        }
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
        let numbers = [
            ("train loss", m.train_loss),
            ("training energy", m.train_energy_pj),
            ("training latency", m.train_latency_ns),
            ("test energy", m.test_energy_pj_per_sample),
            ("test latency", m.test_latency_ns_per_sample),
        ];
        if let Some((what, v)) = numbers.iter().find(|(_, v)| !v.is_finite()) {
            // A diverged run stops here: no non-finite number reaches a result file.
            self.keep(Err(anyhow::anyhow!(
                "{}: training diverged in epoch {}: the {what} is {v} (weights, activations or \
                 errors left the range of numbers); lower train.lr or the input scale. Runs \
                 finished before this one are kept",
                self.label,
                m.epoch
            )));
            return;
        }
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
        let val = m
            .val_accuracy
            .map(|v| format!(" validation accuracy {v:.2}%"))
            .unwrap_or_default();
        let loss = if m.epoch == 0 {
            String::new()
        } else {
            format!(" train loss {:.4}", m.train_loss)
        };
        let line = format!(
            "{}: epoch {}/{}{val} test accuracy {:.2}%{loss}",
            self.label, m.epoch, self.epochs, m.test_accuracy
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
            let dir = crate::data::find_data_dir(dir.as_deref(), name)?;
            crate::data::load_idx(&dir, name)?
        }
    };
    d.truncate(t.train_samples as usize, t.test_samples as usize);
    if let Some(side) = t.crop {
        d.crop(side as usize)
            .map_err(|e| anyhow::anyhow!("train.crop: {e}"))?;
    }
    if let Some(threshold) = t.binarize {
        d.binarize(threshold);
    }
    Ok(d)
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
    let val: Vec<(f32, f32)> = res
        .metrics
        .iter()
        .filter_map(|m| Some((m.epoch as f32, m.val_accuracy? as f32)))
        .collect();
    let chart = Chart {
        title: format!("{}: {}", s.name, res.name),
        subtitle: format!("{} | seed {}", res.rule, s.seed()),
        x_label: "epoch".into(),
        y_label: "accuracy (%)".into(),
        series: [
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
        ]
        .into_iter()
        .chain((!val.is_empty()).then(|| Series {
            label: "validation".into(),
            points: val,
            markers: true,
        }))
        .collect(),
        y_range: Some((0.0, 100.0)),
    };
    plot::write(dir, "accuracy", &chart)?;
    files.extend(["accuracy.svg".into(), "accuracy.png".into()]);
    if res.software {
        return Ok(files);
    }
    files.extend(trace_files.iter().cloned());
    if !trace_files.is_empty() {
        files.extend(crate::plotdir::trace_plot(
            dir,
            dir,
            &format!("{}: {}", s.name, res.name),
        )?);
    }
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
                // Layers count from 0 at the input side, as in trace.csv and [trace] addresses.
                w.write_record([
                    when.clone(),
                    l.to_string(),
                    lo.to_string(),
                    hi.to_string(),
                    c.to_string(),
                ])?;
                let share = 100.0 * *c as f32 / total as f32;
                pts.push((lo, share));
                pts.push((hi, share));
            }
            series.push(Series {
                label: format!("layer {l} {when}"),
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
    file.check_runs(sets, &base)?;
    for name in variants::runs(&base.variants, &[])
        .into_iter()
        .map(|(n, _)| n)
    {
        check_resources(&file.load(sets, name.as_deref())?, origin, name.as_deref())?;
    }
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
    if opts.stop_after_epoch.is_some() && bt.checkpoint_every == 0 {
        bail!(
            "--stop-after-epoch simulates an interruption that --resume continues from a checkpoint, \
             but {origin} writes none (train.checkpoint_every = 0): set it to 1 or more, e.g. \
             --set train.checkpoint_every=1"
        );
    }
    let _lock = crate::output::lock_out(out)?;
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
    let grouped = base.variant_groups.iter().any(Option::is_some);
    write_summary(out, &results, path, started, grouped)?;
    let groups: Vec<(String, Option<String>)> = base
        .variants
        .iter()
        .cloned()
        .zip(base.variant_groups.iter().cloned())
        .collect();
    if grouped {
        write_selection(out, &results, &groups)?;
    }
    Ok(results)
}

/// One method of a scenario whose variants are grouped: its candidates and the one the validation
/// split selects.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The group (or, for a variant without one, the variant's own name).
    pub method: String,
    /// Every candidate with its mean final validation accuracy over its seeds, in file order.
    pub candidates: Vec<(String, f64)>,
    /// The candidate with the highest mean final validation accuracy (the first of equals).
    pub chosen: String,
}

/// Picks, for every method (a `group` of variants, or an ungrouped variant on its own), the variant
/// whose final-epoch validation accuracy, averaged over its seeds, is highest: the learning rate (or any
/// setting the candidates differ in) is chosen on held-out training data, never on the test set.
/// Errors when a candidate has no validation accuracy.
pub fn select_by_validation(
    results: &[VariantResult],
    groups: &[(String, Option<String>)],
) -> Result<Vec<Selection>> {
    let mut out: Vec<Selection> = Vec::new();
    for (name, group) in groups {
        let method = group.clone().unwrap_or_else(|| name.clone());
        let vals: Vec<f64> =
            results
                .iter()
                .filter(|r| &r.name == name)
                .map(|r| {
                    r.metrics.last().and_then(|m| m.val_accuracy).with_context(|| {
                    format!(
                        "variant `{name}` has no validation accuracy to be selected by: set \
                         train.validation > 0 (it may not be set to 0 by the variant)"
                    )
                })
                })
                .collect::<Result<_>>()?;
        if vals.is_empty() {
            continue;
        }
        let mean = mean_std(&vals).0;
        match out.iter_mut().find(|s| s.method == method) {
            Some(s) => {
                let best = s
                    .candidates
                    .iter()
                    .find(|(n, _)| *n == s.chosen)
                    .map_or(f64::NEG_INFINITY, |c| c.1);
                if mean > best {
                    s.chosen = name.clone();
                }
                s.candidates.push((name.clone(), mean));
            }
            None => out.push(Selection {
                method,
                candidates: vec![(name.clone(), mean)],
                chosen: name.clone(),
            }),
        }
    }
    Ok(out)
}

/// Writes `selection.csv` (every candidate, its mean final validation accuracy, whether it was chosen)
/// and `paired-selected.csv` (every selected method against the first hardware method, paired by seed,
/// on final test accuracy), and prints both.
fn write_selection(
    out: &Path,
    results: &[VariantResult],
    groups: &[(String, Option<String>)],
) -> Result<()> {
    let sel = select_by_validation(results, groups)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "method",
        "variant",
        "mean_final_val_accuracy",
        "chosen",
        "final_test_mean",
        "final_test_sd",
        "seeds",
    ])?;
    println!();
    println!(
        "{:<16} {:<20} {:>14} {:>16}   (chosen on the validation split; test accuracy of the chosen variant only)",
        "method", "chosen variant", "mean val %", "final test %"
    );
    let mut chosen_results: Vec<VariantResult> = Vec::new();
    for s in &sel {
        for (name, val) in &s.candidates {
            let tests: Vec<f64> = results
                .iter()
                .filter(|r| &r.name == name)
                .map(|r| summary_row(&r.metrics).final_test)
                .collect();
            let (m, sd) = mean_std(&tests);
            let chosen = *name == s.chosen;
            // The test accuracy of a candidate that was not chosen is recorded, never compared.
            w.write_record([
                s.method.clone(),
                name.clone(),
                format!("{val:.4}"),
                chosen.to_string(),
                format!("{m:.4}"),
                format!("{sd:.4}"),
                tests.len().to_string(),
            ])?;
            if chosen {
                let k = s
                    .candidates
                    .iter()
                    .position(|(n, _)| n == name)
                    .unwrap_or(0);
                let edge = s.candidates.len() > 1 && (k == 0 || k + 1 == s.candidates.len());
                println!(
                    "{:<16} {:<20} {:>14.2} {:>16}{}",
                    s.method,
                    name,
                    val,
                    mean_sd_cell(&tests),
                    if edge {
                        "   (first or last candidate of its group: widen the grid if it is ordered)"
                    } else {
                        ""
                    }
                );
                chosen_results.extend(results.iter().filter(|r| &r.name == name).map(|r| {
                    let mut r = r.clone();
                    r.name = s.method.clone();
                    r
                }));
            }
        }
    }
    write_atomic(&out.join("selection.csv"), &w.into_inner()?)?;
    let paired: Vec<Paired> = paired_comparisons(&chosen_results)
        .into_iter()
        .filter(|p| p.metric == "final_test_accuracy")
        .collect();
    let bytes = paired_report(&paired, "of the chosen variants ")?;
    write_atomic(&out.join("paired-selected.csv"), &bytes)?;
    Ok(())
}

/// Prints every comparison (`paired difference <what>(<metric>): B - A = m [lo, hi] ...`) and returns
/// them as CSV (paired.csv's columns).
fn paired_report(paired: &[Paired], what: &str) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "metric",
        "variant",
        "reference",
        "seeds",
        "mean_difference",
        "sd_difference",
        "t_975",
        "ci95_low",
        "ci95_high",
    ])?;
    for p in paired {
        let d = &p.diff;
        println!(
            "paired difference {what}({}): {} - {} = {:.2} [{:.2}, {:.2}] (95% CI, {} seeds)",
            p.label, p.variant, p.reference, d.mean, d.lo, d.hi, d.n
        );
        w.write_record([
            p.metric.to_string(),
            p.variant.clone(),
            p.reference.clone(),
            d.n.to_string(),
            format!("{:.4}", d.mean),
            format!("{:.4}", d.sd),
            format!("{:.6}", d.t),
            format!("{:.4}", d.lo),
            format!("{:.4}", d.hi),
        ])?;
    }
    Ok(w.into_inner()?)
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
        "{:?}|{}|{}|{}|{:?}|{:?}",
        t.dataset,
        t.train_samples,
        t.test_samples,
        s.seed(),
        t.crop,
        t.binarize
    );
    if !cache.contains_key(&key) {
        cache.insert(key.clone(), dataset(&t, s.seed())?);
    }
    let data = &cache[&key];
    if t.validation as usize >= data.train_len() {
        bail!(
            "{origin}: train.validation = {} holds out every one of the {} training samples the \
             dataset has; at least one must remain to train on",
            t.validation,
            data.train_len()
        );
    }
    let mut sizes = vec![data.inputs];
    sizes.extend(t.hidden.iter().map(|h| *h as usize));
    sizes.push(data.classes);
    let cfg = MlpConfig {
        sizes,
        activation: t.activation,
        loss: t.loss,
        bias: t.bias,
        init_scale: t.init_scale,
        exact_init: t.exact_init,
    };
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
    let mut init = stream(s.seed(), Purpose::Init, 0);
    let hw_opt = (!t.software).then_some(&s.hardware);
    let mut net = match t.algorithm {
        Algorithm::Bp => Net::Bp(Mlp::new(&cfg, hw_opt, &mut init)?),
        Algorithm::Ep => Net::Ep(Box::new(EpNetwork::new(
            &s.ep.network(&cfg.sizes, t.init_scale),
            hw_opt,
            &mut init,
            s.seed(),
        )?)),
    };
    if let (false, Net::Bp(mlp)) = (t.lr_scale.is_empty(), &mut net) {
        mlp.set_lr_scale(&t.lr_scale)
            .map_err(|e| anyhow::anyhow!("train.lr_scale: {e}"))?;
    }
    if let (Some(c), Net::Bp(mlp)) = (&saved, &mut net) {
        mlp.import_state(&c.net).map_err(|e| {
            anyhow::anyhow!(
                "{}: the checkpoint does not fit the network: {e}",
                ckpt_path.display()
            )
        })?;
    }
    let tc = TrainConfig {
        epochs: t.epochs,
        lr: t.lr,
        lr_decay: t.lr_decay,
        shuffle: t.shuffle,
        seed: s.seed(),
        validation: t.validation as usize,
    };
    let total = train_split(data, &tc) as u64 * t.epochs as u64;
    let bar = (spec.progress && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} samples, {rate}, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&samples_per_s(s.per_sec()));
            })
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
                s.seed(),
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
    // The tiles run on a team as large as rayon's current pool: every core for `aimsim run`, the point's
    // tile threads in a sweep (docs/sweeps.md). The team adapts to a busy machine (sim::par).
    let team = Team::new(rayon::current_num_threads());
    let v_started = Instant::now();
    let mut training = match saved {
        Some(c) => Training::resume(data, &tc, &s.hardware.cost, c.progress)
            .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?,
        None => Training::start(&mut net, data, &tc, &s.hardware.cost, &mut rec, team.par()),
    };
    let mut stopped = false;
    while !training.done() {
        let epoch = training.run_epoch(&mut net, &mut rec, team.par()).epoch;
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
        seed: s.seed(),
        metrics,
        software: t.software,
        rule: {
            let hw_rule = if t.software {
                "software baseline (float weights)".to_string()
            } else {
                format!(
                    "{} on {} cells",
                    s.hardware.controller.name(),
                    s.hardware.tile.cell.name()
                )
            };
            match t.algorithm {
                Algorithm::Bp => hw_rule,
                Algorithm::Ep => format!(
                    "EP {} beta {}{}, {}",
                    s.ep.config.nudge.name(),
                    s.ep.config.beta,
                    if s.ep.config.feedback == Feedback::Separate {
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
        "seed": s.seed(),
        "dataset": { "name": data.name, "train": train_split(data, &tc), "validation": tc.validation, "test": data.test_len(), "inputs": data.inputs, "classes": data.classes },
        "network": cfg.sizes,
        "rule": res.rule,
        "device": s.hardware.device.to_string(),
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

/// Mean and sample standard deviation (`n - 1` in the denominator; 0 for fewer than two values).
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

/// Mean and sample standard deviation over seeds as a table cell: `m +- sd` (two decimals) for two
/// values or more, `m (n=1)` for one (no spread to report), `-` for none.
pub fn mean_sd_cell(v: &[f64]) -> String {
    match v.len() {
        0 => "-".into(),
        1 => format!("{:.2} (n=1)", v[0]),
        _ => {
            let (m, sd) = mean_std(v);
            format!("{m:.2} +- {sd:.2}")
        }
    }
}

/// `t_{0.975, dof}` for `dof` 1..=30, to six decimals.
const T_975: [f64; 30] = [
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.045230, 2.042272,
];

/// The 0.975 quantile of Student's t distribution with `dof` degrees of freedom (the factor of a
/// two-sided 95 % interval): a table to six decimals for 1..=30, beyond it the Cornish-Fisher
/// expansion around the normal quantile to `dof^-4` (error below 1e-6). Infinite for 0.
pub fn t_975(dof: usize) -> f64 {
    match dof {
        0 => f64::INFINITY,
        1..=30 => T_975[dof - 1],
        _ => {
            let z: f64 = 1.959_963_984_540_054;
            let v = dof as f64;
            let g1 = (z.powi(3) + z) / 4.0;
            let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
            let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
            let g4 = (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5)
                - 1920.0 * z.powi(3)
                - 945.0 * z)
                / 92160.0;
            z + g1 / v + g2 / (v * v) + g3 / v.powi(3) + g4 / v.powi(4)
        }
    }
}

/// The mean of paired differences (one per seed) with its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedDifference {
    /// Pairs (seeds).
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Sample standard deviation of the differences (`n - 1`).
    pub sd: f64,
    /// `t_{0.975, n-1}`.
    pub t: f64,
    /// Lower end of the interval, `mean - t sd / sqrt(n)`.
    pub lo: f64,
    /// Upper end of the interval, `mean + t sd / sqrt(n)`.
    pub hi: f64,
}

/// The paired difference of `diffs` (`B - A` per seed) with its 95 % t interval on `n - 1` degrees of
/// freedom; `None` for fewer than two pairs.
pub fn paired_difference(diffs: &[f64]) -> Option<PairedDifference> {
    let n = diffs.len();
    if n < 2 {
        return None;
    }
    let (mean, sd) = mean_std(diffs);
    let t = t_975(n - 1);
    let half = t * sd / (n as f64).sqrt();
    Some(PairedDifference {
        n,
        mean,
        sd,
        t,
        lo: mean - half,
        hi: mean + half,
    })
}

/// One comparison of paired.csv: `variant - reference` on one metric over the seeds both ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// summary.csv column compared.
    pub metric: &'static str,
    /// Its name in the printed table.
    pub label: &'static str,
    /// Variant B.
    pub variant: String,
    /// Variant A, the reference: the first hardware variant (the first variant when all are software).
    pub reference: String,
    /// `B - A` over the shared seeds.
    pub diff: PairedDifference,
}

/// Every variant against the reference variant, paired by seed: the final test accuracy, and the test
/// accuracy at the best validation epoch where both have a validation split. Empty with one variant
/// or fewer than two shared seeds.
pub fn paired_comparisons(results: &[VariantResult]) -> Vec<Paired> {
    let order = variants::first_seen(results.iter().map(|r| r.name.as_str()));
    let Some(reference) = order
        .iter()
        .find(|n| results.iter().any(|r| r.name == **n && !r.software))
        .or(order.first())
        .copied()
    else {
        return Vec::new();
    };
    type Metric = (&'static str, &'static str, fn(&SummaryRow) -> Option<f64>);
    let metrics: [Metric; 2] = [
        ("final_test_accuracy", "final test %", |r| {
            Some(r.final_test)
        }),
        ("test_accuracy_at_best_val", "test % at best val", |r| {
            r.test_at_best_val
        }),
    ];
    let mut out = Vec::new();
    for name in order.iter().filter(|n| **n != reference) {
        for (metric, label, get) in metrics {
            let diffs: Vec<f64> = results
                .iter()
                .filter(|a| a.name == reference)
                .filter_map(|a| {
                    let b = results
                        .iter()
                        .find(|b| b.name == *name && b.seed == a.seed)?;
                    Some(get(&summary_row(&b.metrics))? - get(&summary_row(&a.metrics))?)
                })
                .collect();
            if let Some(diff) = paired_difference(&diffs) {
                out.push(Paired {
                    metric,
                    label,
                    variant: name.to_string(),
                    reference: reference.to_string(),
                    diff,
                });
            }
        }
    }
    out
}

/// Writes summary.csv, prints the table and, unless the variants are `grouped` (then only the chosen
/// variants are compared, by [`write_selection`]), the paired differences of every variant.
fn write_summary(
    out: &Path,
    results: &[VariantResult],
    path: &Path,
    started: Instant,
    grouped: bool,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["variant", "seed", "rule"];
    header.extend(summary_columns().map(|c| c.name));
    w.write_record(header)?;
    for r in results {
        let row = summary_row(&r.metrics);
        let mut cells = vec![r.name.clone(), r.seed.to_string(), r.rule.clone()];
        cells.extend(summary_columns().map(|c| (c.cell)(&row)));
        w.write_record(cells)?;
    }
    write_atomic(&out.join("summary.csv"), &w.into_inner()?)?;

    // The printed table: one line per variant, mean +- sample sd over its seeds.
    let order = variants::first_seen(results.iter().map(|r| r.name.as_str()));
    println!(
        "{:<16} {:<32} {:>5} {:>16} {:>16} {:>18} {:>12} {:>12} {:>9} {:>10} {:>10}",
        "variant",
        "rule",
        "seeds",
        "final test %",
        "best val %",
        "test % at best val",
        "pulses up",
        "pulses down",
        "refreshes",
        "energy uJ",
        "latency ms"
    );
    for name in &order {
        let rs: Vec<&VariantResult> = results.iter().filter(|r| r.name == *name).collect();
        let rows: Vec<SummaryRow> = rs.iter().map(|r| summary_row(&r.metrics)).collect();
        let all = |f: fn(&SummaryRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
        // Validation columns: a value for every seed, or "-".
        let some = |f: fn(&SummaryRow) -> Option<f64>| {
            rows.iter()
                .map(f)
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default()
        };
        let mean = |f: fn(&SummaryRow) -> f64| mean_std(&all(f)).0;
        println!(
            "{:<16} {:<32} {:>5} {:>16} {:>16} {:>18} {:>12.0} {:>12.0} {:>9.0} {:>10.3} {:>10.3}",
            name,
            rs[0].rule,
            rs.len(),
            mean_sd_cell(&all(|r| r.final_test)),
            mean_sd_cell(&some(|r| r.best_val)),
            mean_sd_cell(&some(|r| r.test_at_best_val)),
            mean(|r| r.pulses_up as f64),
            mean(|r| r.pulses_down as f64),
            mean(|r| r.refreshes as f64),
            mean(|r| r.energy_pj) / 1e6,
            mean(|r| r.latency_ns) / 1e6
        );
    }
    let paired = if grouped {
        Vec::new()
    } else {
        paired_comparisons(results)
    };
    if !paired.is_empty() {
        println!();
        let bytes = paired_report(&paired, "")?;
        write_atomic(&out.join("paired.csv"), &bytes)?;
    } else if out.join("paired.csv").is_file() {
        // Left by an earlier run into the same folder: it no longer describes these results.
        std::fs::remove_file(out.join("paired.csv"))
            .with_context(|| format!("cannot remove {}", out.join("paired.csv").display()))?;
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

/// Bytes a training run needs, roughly: the dataset in memory (4 bytes a feature, both splits, plus
/// a shuffled index) and the network's tiles (per device about 40 bytes: state, its write counters,
/// its share of the weight cache and per-device parameters). With the parts that dominate, naming
/// the key each depends on.
pub fn memory_estimate(s: &Scenario) -> Option<(u64, Vec<(&'static str, u64)>)> {
    use crate::scenario::DatasetSpec;
    let t = s.train.as_ref()?;
    let inputs = match &t.dataset {
        DatasetSpec::Glyphs { side } => (*side as u64).pow(2),
        DatasetSpec::TeacherStudent => 64,
        DatasetSpec::Idx { .. } => t.crop.map_or(784, |c| (c as u64).pow(2)),
    };
    let samples = t.train_samples as u64 + t.test_samples as u64;
    let data = samples * (inputs * 4 + 16);
    let mut sizes = vec![inputs];
    sizes.extend(t.hidden.iter().map(|h| *h as u64));
    sizes.push(10);
    let weights: u64 = sizes.windows(2).map(|w| w[0] * w[1]).sum();
    let arrays = if t.software {
        0
    } else {
        s.hardware.tile.cell.arrays() as u64
    };
    let net = weights * (8 + 40 * arrays);
    Some((
        data + net,
        vec![("train.train_samples", data), ("train.hidden", net)],
    ))
}

/// Refuses, before any work, a run that cannot fit in this machine's available memory or whose
/// training trace would exceed the trace limit, with the estimate and the key to change.
fn check_resources(s: &Scenario, origin: &str, variant: Option<&str>) -> Result<()> {
    let Some(t) = s.train.as_ref() else {
        return Ok(());
    };
    let which = variant
        .map(|v| format!(" (variant `{v}`)"))
        .unwrap_or_default();
    if let Some((need, parts)) = memory_estimate(s)
        && let Some(avail) = available_memory()
        && need > avail
    {
        let (key, _) = parts.iter().max_by_key(|(_, b)| *b).expect("parts");
        bail!(
            "{origin}{which}: this run needs about {:.1} GB of memory and {:.1} GB are available; \
             reduce `{key}` ({})",
            need as f64 / 1e9,
            avail as f64 / 1e9,
            parts
                .iter()
                .map(|(k, b)| format!("{k}: {:.1} GB", *b as f64 / 1e9))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if t.trace_every > 0 && !t.software {
        let rows = t.epochs as u64 * t.train_samples as u64 / t.trace_every as u64 + 1;
        let cells = rows * t.trace_devices as u64;
        let limit = crate::scenario::MAX_TRACE_CELLS;
        if cells > limit {
            bail!(
                "{origin}{which}: the training trace would hold {cells} values ({rows} records x {} \
                 devices), above the limit of {limit} (0.8 GB as .npy, several GB as CSV); raise \
                 `train.trace_every` or lower `train.trace_devices`",
                t.trace_devices
            );
        }
    }
    Ok(())
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux); `None` elsewhere.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A training rate as a person reads it: `1795 samples/s`, `7.5 samples/s` (no thousands separators,
/// no digits past what the estimate can hold).
fn samples_per_s(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        "- samples/s".into()
    } else if rate < 10.0 {
        format!("{rate:.1} samples/s")
    } else {
        format!("{rate:.0} samples/s")
    }
}

#[cfg(test)]
mod rate_tests {
    #[test]
    fn rates_read_as_whole_samples_per_second() {
        assert_eq!(super::samples_per_s(1795.379), "1795 samples/s");
        assert_eq!(super::samples_per_s(7.46), "7.5 samples/s");
        assert_eq!(super::samples_per_s(0.0), "- samples/s");
    }
}
