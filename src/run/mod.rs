//! `aimsim run`: train a network on the simulated chip, variant by variant, and write metrics, traces,
//! histograms, plots, manifests and a summary.

mod compare;
mod one;
mod resources;

pub use compare::*;
pub use one::*;
use resources::check_resources;
pub use resources::memory_estimate;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use aimsim_networks::data::Dataset;
use aimsim_networks::train::EpochMetrics;
use anyhow::{Context, Result, bail};

use crate::checkpoint;
use crate::metrics::summary_columns;
pub use crate::metrics::{SummaryRow, metrics_csv, summary_row};
use crate::output::{report_written, write_atomic};
use crate::plot::{self, Chart, Series};
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
    if base.inference.is_some() {
        eprintln!(
            "note: {origin} has an [inference] section; `aimsim run` trains only, `aimsim infer` \
             trains and deploys"
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
                x_scale: crate::plot::XScale::Linear,
            },
        )?;
    }
    report_written(out, started);
    Ok(())
}
