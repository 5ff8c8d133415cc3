//! `aimsim local`: local plasticity rules (Hebbian, anti-Hebbian, curl descent) on the tiles, every
//! `[[variant]]` and seed of a scenario (docs/ep.md).

use std::path::Path;
use std::time::Instant;

use aimsim_networks::local::{self, LocalRule, LocalRun};
use aimsim_sim::ledger::Phase;
use aimsim_sim::par::Par;
use anyhow::{Result, bail};
use serde_json::json;

use crate::output::{
    crate_versions_json, report_written, sha256_hex, write_atomic, write_manifest,
};
use crate::plot::{self, Chart, Series};
use crate::run::mean_std;
use crate::variants::{self, ScenarioSource};

/// One finished run.
#[derive(Debug, Clone)]
pub struct LocalResult {
    /// Variant name (the scenario's name without variants).
    pub variant: String,
    /// Seed.
    pub seed: u64,
    /// Rule.
    pub rule: LocalRule,
    /// Flipped fraction (curl).
    pub flip_fraction: f32,
    /// The run.
    pub run: LocalRun,
}

impl LocalResult {
    /// Final test loss over the initial one.
    pub fn ratio(&self) -> f64 {
        let first = self.run.points.first().map_or(f64::NAN, |p| p.test_loss);
        let last = self.run.points.last().map_or(f64::NAN, |p| p.test_loss);
        last / first
    }
}

/// Runs every variant and seed of a scenario's `[local]` experiment; writes `local.csv`,
/// `summary.csv`, `loss.svg/png`, (curl) `stability.svg/png` and `manifest.json` into `out`.
pub fn run(path: &Path, sets: &[String], out: &Path) -> Result<Vec<LocalResult>> {
    let started = Instant::now();
    let file = ScenarioSource::read(path)?;
    let base = file.load(sets, None)?;
    file.check_runs(sets, &base)?;
    let Some(bl) = &base.local else {
        bail!(
            "{}: `aimsim local` needs a [local] section (docs/scenarios.md, docs/ep.md)",
            file.origin
        );
    };
    let _lock = crate::output::lock_out(out)?;
    let mut results = Vec::new();
    for (name, seed) in variants::runs(&base.variants, &bl.seeds) {
        let s = file.load(&variants::seed_sets(sets, seed), name.as_deref())?;
        let l = s.local.clone().expect("variants inherit [local]");
        let vname = name.clone().unwrap_or_else(|| s.name.clone());
        let cfg = &l.config;
        let r = local::run(
            cfg,
            (!l.software).then_some(&s.hardware),
            s.seed(),
            Par::Rayon,
        )?;
        eprintln!(
            "{vname} seed {}: {} {} steps, test loss {:.5} -> {:.5}",
            s.seed(),
            cfg.rule.name(),
            cfg.steps,
            r.points.first().map_or(f64::NAN, |p| p.test_loss),
            r.points.last().map_or(f64::NAN, |p| p.test_loss)
        );
        results.push(LocalResult {
            variant: vname,
            seed: s.seed(),
            rule: cfg.rule,
            flip_fraction: cfg.flip_fraction,
            run: r,
        });
    }
    write_outputs(out, path, &file.text, &results, started)?;
    Ok(results)
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |a| format!("{a:.6}"))
}

fn write_outputs(
    out: &Path,
    path: &Path,
    text: &str,
    results: &[LocalResult],
    started: Instant,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "variant",
        "seed",
        "rule",
        "flip_fraction",
        "step",
        "test_loss",
        "alignment",
        "weight_norm",
    ])?;
    for r in results {
        for p in &r.run.points {
            w.write_record([
                r.variant.clone(),
                r.seed.to_string(),
                r.rule.name().to_string(),
                r.flip_fraction.to_string(),
                p.step.to_string(),
                format!("{:.6}", p.test_loss),
                opt(p.alignment),
                format!("{:.6}", p.weight_norm),
            ])?;
        }
    }
    write_atomic(&out.join("local.csv"), &w.into_inner()?)?;

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "variant",
        "seed",
        "rule",
        "flip_fraction",
        "flipped",
        "initial_loss",
        "final_loss",
        "min_loss",
        "final_over_initial",
        "final_alignment",
        "pulses_up",
        "pulses_down",
        "train_energy_pj",
    ])?;
    for r in results {
        let pts = &r.run.points;
        let upd = r.run.ledger.phase(Phase::Update);
        w.write_record([
            r.variant.clone(),
            r.seed.to_string(),
            r.rule.name().to_string(),
            r.flip_fraction.to_string(),
            r.run.flipped.len().to_string(),
            format!("{:.6}", pts.first().map_or(f64::NAN, |p| p.test_loss)),
            format!("{:.6}", pts.last().map_or(f64::NAN, |p| p.test_loss)),
            format!(
                "{:.6}",
                pts.iter()
                    .map(|p| p.test_loss)
                    .fold(f64::INFINITY, f64::min)
            ),
            format!("{:.6}", r.ratio()),
            opt(pts.last().and_then(|p| p.alignment)),
            upd.pulses_up.to_string(),
            upd.pulses_down.to_string(),
            format!("{:.1}", r.run.ledger.total_energy_pj()),
        ])?;
    }
    write_atomic(&out.join("summary.csv"), &w.into_inner()?)?;

    // Table and plots: mean over seeds per variant.
    let order = variants::first_seen(results.iter().map(|r| r.variant.as_str()));
    println!(
        "{:<16} {:<13} {:>6} {:>5} {:>18} {:>18} {:>18}",
        "variant", "rule", "flip", "seeds", "initial loss", "final loss", "final / initial"
    );
    let mut loss_series = Vec::new();
    let mut stability = Vec::new();
    for name in &order {
        let rs: Vec<&LocalResult> = results.iter().filter(|r| r.variant == *name).collect();
        let (i, is) = mean_std(
            &rs.iter()
                .map(|r| r.run.points[0].test_loss)
                .collect::<Vec<_>>(),
        );
        let fin: Vec<f64> = rs
            .iter()
            .map(|r| r.run.points.last().map_or(f64::NAN, |p| p.test_loss))
            .collect();
        let (f, fs) = mean_std(&fin);
        let (q, qs) = mean_std(&rs.iter().map(|r| r.ratio()).collect::<Vec<_>>());
        println!(
            "{:<16} {:<13} {:>6} {:>5} {:>18} {:>18} {:>18}",
            name,
            rs[0].rule.name(),
            rs[0].flip_fraction,
            rs.len(),
            format!("{i:.4} +- {is:.4}"),
            format!("{f:.4} +- {fs:.4}"),
            format!("{q:.3} +- {qs:.3}")
        );
        let steps: Vec<u64> = rs[0].run.points.iter().map(|p| p.step).collect();
        let points = steps
            .iter()
            .enumerate()
            .map(|(k, st)| {
                let v: Vec<f64> = rs.iter().map(|r| r.run.points[k].test_loss).collect();
                (*st as f32, mean_std(&v).0 as f32)
            })
            .collect();
        loss_series.push(Series {
            label: (*name).to_string(),
            points,
            markers: false,
        });
        stability.push((rs[0].flip_fraction, q as f32));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = vec!["local.csv", "summary.csv", "loss.svg", "loss.png"];
    plot::write(
        out,
        "loss",
        &Chart {
            title: format!("{stem}: test loss"),
            subtitle: "mean over seeds".into(),
            x_label: "training samples".into(),
            y_label: "test loss".into(),
            series: loss_series,
            y_range: None,
            x_scale: crate::plot::XScale::Linear,
        },
    )?;
    if results.iter().all(|r| r.rule == LocalRule::Curl) && order.len() > 1 {
        stability.sort_by(|a, b| a.0.total_cmp(&b.0));
        plot::write(
            out,
            "stability",
            &Chart {
                title: format!("{stem}: curl descent stability"),
                subtitle: "final over initial test loss, mean over seeds (1 = no learning)".into(),
                x_label: "fraction of hidden neurons with flipped updates".into(),
                y_label: "final / initial test loss".into(),
                series: vec![Series {
                    label: "curl descent".into(),
                    points: stability,
                    markers: true,
                }],
                y_range: None,
                x_scale: crate::plot::XScale::Linear,
            },
        )?;
        files.extend(["stability.svg", "stability.png"]);
    }
    files.push("manifest.json");
    let manifest = json!({
        "command": "local",
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": crate_versions_json(),
        "scenario": { "path": path.display().to_string(), "sha256": sha256_hex(text.as_bytes()) },
        "runs": results.len(),
        "files": files,
        "wall_s": started.elapsed().as_secs_f64(),
    });
    write_manifest(out, &manifest)?;
    report_written(out, started);
    Ok(())
}
