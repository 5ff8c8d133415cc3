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
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use aimsim_networks::data::Dataset;
use aimsim_networks::train::EpochMetrics;
use anyhow::{Context, Result, bail};

use crate::checkpoint;
use crate::metrics::summary_columns;
pub use crate::metrics::{SummaryRow, metrics_csv, summary_row};
use crate::output::{ensure_dir, report_written, write_atomic};
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
    let mut failed: Vec<FailedRun> = Vec::new();
    let runs = variants::runs(&base.variants, &bt.seeds);
    for (name, seed) in &runs {
        let run_sets = variants::seed_sets(sets, *seed);
        let dir = variants::run_dir(out, name.as_deref(), *seed);
        let vname = name.clone().unwrap_or_else(|| base.name.clone());
        // A marker left by an earlier failure of this run no longer applies.
        remove_if_present(&dir.join(FAILED_MARKER))?;
        let before = files_in(&dir);
        let done = train_one(
            &RunSpec {
                text: &file.text,
                path,
                sets: &run_sets,
                variant: name.as_deref(),
                point: &[],
                dir: &dir,
                label: variants::run_label(&vname, *seed),
                progress: true,
                resume: opts.resume,
                stop_after_epoch: opts.stop_after_epoch,
            },
            &mut cache,
        );
        match done {
            Ok(done) if done.stopped => return Ok(results),
            Ok(done) => results.push(done.result),
            Err(e) => {
                // One run failing (a diverged learning rate, say) loses no other run's results: it
                // is marked, the remaining runs go on, and the summary covers the runs that finished.
                let error = format!("{e:#}");
                eprintln!("error: {error}\n(continuing with the remaining runs)");
                let seed = file
                    .load(&run_sets, name.as_deref())
                    .map_or(seed.unwrap_or(base.seed()), |s| s.seed());
                mark_failed(&dir, &error, &before)?;
                failed.push(FailedRun {
                    name: vname,
                    seed,
                    dir,
                    error,
                });
            }
        }
    }
    let grouped = base.variant_groups.iter().any(Option::is_some);
    // Comparisons need every run of a variant: a variant with a failed run is left out of them.
    let complete: Vec<VariantResult> = results
        .iter()
        .filter(|r| !failed.iter().any(|f| f.name == r.name))
        .cloned()
        .collect();
    write_summary(out, &results, &complete, &failed, path, started, grouped)?;
    let groups: Vec<(String, Option<String>)> = base
        .variants
        .iter()
        .cloned()
        .zip(base.variant_groups.iter().cloned())
        .collect();
    if grouped {
        write_selection(out, &complete, &groups)?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} run(s) failed ({}); summary.csv holds the {} that finished, failed.csv lists \
             the failures, and each failed run's folder holds {FAILED_MARKER}",
            failed.len(),
            runs.len(),
            failed
                .iter()
                .map(|f| format!("{} seed {}", f.name, f.seed))
                .collect::<Vec<_>>()
                .join(", "),
            results.len()
        );
    }
    Ok(results)
}

/// A run of `aimsim run` that ended with an error.
#[derive(Debug, Clone)]
struct FailedRun {
    /// Variant name (the scenario's name without variants).
    name: String,
    /// Seed of the run.
    seed: u64,
    /// Its output folder.
    dir: PathBuf,
    /// The error, with its causes.
    error: String,
}

/// The file that marks a run's folder as not finished: it holds the error.
pub const FAILED_MARKER: &str = "FAILED.txt";

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The files of a folder (none when it does not exist) with their modification times.
fn files_in(dir: &Path) -> Vec<(String, Option<SystemTime>)> {
    let mut files: Vec<(String, Option<SystemTime>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok();
            (e.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect();
    files.sort();
    files
}

/// Writes [`FAILED_MARKER`] into the folder of a run that failed: the error, that this run wrote no
/// metrics.csv or manifest.json, and which files there the run did not touch (`before` lists the
/// folder's files when the run started): left by an earlier run into the same folder, they do not
/// describe this one.
fn mark_failed(dir: &Path, error: &str, before: &[(String, Option<SystemTime>)]) -> Result<()> {
    ensure_dir(dir)?;
    let stale: Vec<String> = files_in(dir)
        .into_iter()
        .filter(|f| before.contains(f))
        .map(|(name, _)| name)
        .filter(|n| !n.starts_with('.') && n != FAILED_MARKER)
        .collect();
    let mut text = format!(
        "This run did not finish.\n\n{error}\n\nIt wrote no metrics.csv and no manifest.json (a finished run's \
         last file); it is not in summary.csv but in failed.csv. A checkpoint.bin written by this run \
         holds its last completed epoch. Rerunning the command replaces this folder's files.\n"
    );
    if !stale.is_empty() {
        text.push_str(&format!(
            "\nLeft by an earlier run into this folder (older than this run, not its results): {}\n",
            stale.join(", ")
        ));
    }
    write_atomic(&dir.join(FAILED_MARKER), text.as_bytes())
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

/// Writes summary.csv (the runs that finished), failed.csv (the runs that failed, when any did), prints
/// the table and, unless the variants are `grouped` (then only the chosen variants are compared, by
/// [`write_selection`]), the paired differences of the `complete` variants (every run finished).
fn write_summary(
    out: &Path,
    results: &[VariantResult],
    complete: &[VariantResult],
    failed: &[FailedRun],
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
    if failed.is_empty() {
        // Left by an earlier run into the same folder: it no longer describes these results.
        remove_if_present(&out.join("failed.csv"))?;
    } else {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["variant", "seed", "folder", "error"])?;
        for f in failed {
            let folder = f
                .dir
                .strip_prefix(out)
                .unwrap_or(&f.dir)
                .display()
                .to_string();
            w.write_record([
                f.name.clone(),
                f.seed.to_string(),
                if folder.is_empty() {
                    ".".into()
                } else {
                    folder
                },
                f.error.clone(),
            ])?;
        }
        write_atomic(&out.join("failed.csv"), &w.into_inner()?)?;
    }

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
    for f in failed {
        println!(
            "{:<16} FAILED (seed {}): {}",
            f.name,
            f.seed,
            f.error.lines().next().unwrap_or("")
        );
    }
    let left_out = variants::first_seen(failed.iter().map(|f| f.name.as_str()));
    if !left_out.is_empty() && results.len() > complete.len() {
        println!(
            "(left out of the comparisons, a run of theirs failed: {})",
            left_out.join(", ")
        );
    }
    let paired = if grouped {
        Vec::new()
    } else {
        paired_comparisons(complete)
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
