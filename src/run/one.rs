//! One training run: the network a run trains, what it records while training, the dataset it
//! builds, and [`train_one`], the one training path that `aimsim run` and sweeps share.

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

use super::*;
use crate::checkpoint::{self, Checkpoint, Histograms};

use crate::output::{crate_versions_json, ensure_dir, sha256_hex, write_atomic, write_manifest};
use crate::plot::{self, Chart, Series};
use crate::scenario::{self, Algorithm, DatasetSpec, PointSet, Scenario, TrainSpec};
use crate::trace::TraceRecorder;
use crate::weights;

/// The network a run trains: backpropagation or equilibrium propagation.
#[derive(Debug)]
// One network per run: the size of the enum costs nothing, and boxing the common case would not help.
#[allow(clippy::large_enum_variant)]
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
    fn learn_batch(
        &mut self,
        inputs: &[f32],
        labels: &[usize],
        lr: f32,
        mode: aimsim_sim::update::BatchUpdate,
        ledger: &mut aimsim_sim::ledger::Ledger,
        par: Par<'_>,
    ) -> Vec<(f32, usize)> {
        match self {
            Net::Bp(n) => n.learn_batch(inputs, labels, lr, mode, ledger, par),
            Net::Ep(n) => n.learn_batch(inputs, labels, lr, mode, ledger, par),
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

/// The convolutional front of `t` for the images of `data`: an IDX folder may hold images of any
/// size, read from its files (one channel; square images after `train.crop`), so the front's image is
/// taken from the data and its shapes checked again.
fn image_front(t: &TrainSpec, data: &Dataset) -> Result<Option<aimsim_networks::conv::ConvFront>> {
    let Some(front) = &t.conv else {
        return Ok(None);
    };
    let (c, h, w) = front.image;
    if c * h * w == data.inputs {
        return Ok(Some(front.clone()));
    }
    let side = (data.inputs as f64).sqrt().round() as usize;
    if side * side != data.inputs {
        bail!(
            "train.layers: the convolutions need square one-channel images; dataset {} has {} \
             values per sample",
            data.name,
            data.inputs
        );
    }
    let front = aimsim_networks::conv::ConvFront {
        image: (1, side, side),
        layers: front.layers.clone(),
    };
    front.shapes().map_err(|e| {
        anyhow::anyhow!(
            "train.layers: {e} (the images of dataset {} are {side}x{side} after train.crop)",
            data.name
        )
    })?;
    Ok(Some(front))
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
                 errors left the range of numbers); lower train.lr or the input scale. The other \
                 runs are unaffected",
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

/// The dataset of `t` and `seed` from `cache`, built (or loaded) on first use.
pub fn cached_dataset<'c>(
    t: &TrainSpec,
    seed: u64,
    cache: &'c mut HashMap<String, Dataset>,
) -> Result<&'c Dataset> {
    let key = format!(
        "{:?}|{}|{}|{}|{:?}|{:?}",
        t.dataset, t.train_samples, t.test_samples, seed, t.crop, t.binarize
    );
    if !cache.contains_key(&key) {
        cache.insert(key.clone(), dataset(t, seed)?);
    }
    Ok(&cache[&key])
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
    /// The trained network as plain data (backpropagation networks that finished; `None` for
    /// equilibrium propagation and for a stopped run): what `aimsim infer` deploys.
    pub trained: Option<Trained>,
}

/// A trained network as plain data: enough to rebuild it.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The network's shape and settings.
    pub cfg: MlpConfig,
    /// The hardware its layers are on (`None` for float weights).
    pub hardware: Option<aimsim_networks::mlp::Hardware>,
    /// Its state after training.
    pub state: aimsim_networks::mlp::MlpState,
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
    let data = cached_dataset(&t, s.seed(), cache)?;
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
        conv: image_front(&t, data).with_context(|| origin.clone())?,
    };
    let dir = spec.dir;
    ensure_dir(dir)?;
    let ckpt_path = dir.join(checkpoint::FILE_NAME);
    let hash = checkpoint::scenario_hash(&effective, name);
    let saved = if spec.resume && ckpt_path.exists() {
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
    if let (true, Net::Bp(mlp)) = (t.weight_noise > 0.0, &mut net) {
        mlp.set_weight_noise(t.weight_noise, s.seed());
    }
    if let (false, Net::Bp(mlp)) = (t.lr_scale.is_empty(), &mut net) {
        mlp.set_lr_scale(&t.lr_scale)
            .map_err(|e| anyhow::anyhow!("train.lr_scale: {e}"))?;
    }
    if let Some(w) = &t.init_weights {
        let target = match &mut net {
            Net::Bp(m) => weights::NetMut::Bp(m, t.exact_init),
            Net::Ep(n) => weights::NetMut::Ep(n),
        };
        weights::apply(w, target).with_context(|| origin.clone())?;
    }
    if let Some(c) = &saved {
        match &mut net {
            Net::Bp(mlp) => mlp.import_state(&c.net),
            Net::Ep(ep) => ep.import_state(&c.net, c.ep_samples),
        }
        .map_err(|e| {
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
        batch: t.batch as usize,
        batch_update: t.batch_update,
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
        if every > 0 && (epoch.is_multiple_of(every) || training.done()) {
            let trace = match &mut rec.trace {
                Some(tr) => tr.checkpoint()?,
                None => Default::default(),
            };
            let (net, ep_samples) = match &net {
                Net::Bp(mlp) => (mlp.export_state(), 0),
                Net::Ep(ep) => ep.export_state(),
            };
            let c = Checkpoint {
                progress: training.progress().clone(),
                net,
                ep_samples,
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
            trained: None,
        });
    }
    let mut files = write_variant(dir, &s, &res, &rec, &trace_files)?;
    let view = match &net {
        Net::Bp(m) => weights::NetRef::Bp(m),
        Net::Ep(n) => weights::NetRef::Ep(n),
    };
    let (npz_files, conductances) = weights::write_run(dir, view, &s.hardware)?;
    files.extend(npz_files);
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
        "conductances": conductances,
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
        trained: match &net {
            Net::Bp(mlp) => Some(Trained {
                cfg: cfg.clone(),
                hardware: hw_opt.cloned(),
                state: mlp.export_state(),
            }),
            Net::Ep(_) => None,
        },
    })
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

/// Writes a finished run's files into `dir`: metrics.csv, histograms, plots and the manifest.
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
        x_scale: crate::plot::XScale::Linear,
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
            x_scale: crate::plot::XScale::Linear,
        },
    )?;
    files.extend([
        "histogram.csv".into(),
        "histogram.svg".into(),
        "histogram.png".into(),
    ]);
    Ok(files)
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
