//! `aimsim ep-fidelity`: how close equilibrium propagation's update is to the exact gradient of the
//! same network, against beta, estimator, devices and feedback path (docs/ep.md).

use std::path::Path;
use std::time::Instant;

use aimsim_networks::ep::{self as epn, EpNetwork, FidelityPoint};
use aimsim_sim::par::Par;
use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::output::{
    crate_versions_json, report_written, sha256_hex, write_atomic, write_manifest,
};
use crate::plot::{self, Chart, Series};
use crate::run::{dataset, mean_std};
use crate::variants::{self, ScenarioSource};
use crate::weights;

/// One row of `fidelity.csv`.
#[derive(Debug, Clone)]
pub struct FidelityRow {
    /// Variant name (the scenario's name without variants).
    pub variant: String,
    /// Seed of the run.
    pub seed: u64,
    /// Feedback path of the variant.
    pub feedback: &'static str,
    /// The measured point.
    pub point: FidelityPoint,
}

/// Runs the fidelity diagnostic on every variant and seed of a scenario and writes `fidelity.csv`,
/// `cosine.svg/png`, `error.svg/png` and `manifest.json` into `out`. Returns the rows.
pub fn run(path: &Path, sets: &[String], out: &Path) -> Result<Vec<FidelityRow>> {
    let started = Instant::now();
    let file = ScenarioSource::read(path)?;
    let base = file.load(sets, None)?;
    file.check_runs(sets, &base)?;
    let Some(bt) = &base.train else {
        bail!(
            "{}: `aimsim ep-fidelity` needs a [train] section (dataset, hidden sizes, lr) and \
             reads [ep] (docs/ep.md)",
            file.origin
        );
    };
    if bt.conv.is_some() || bt.batch > 1 {
        bail!(
            "{}: `aimsim ep-fidelity` measures layered dense energy networks sample by sample: \
             train.layers with convolutions and train.batch > 1 do not apply (use train.hidden)",
            file.origin
        );
    }
    let _lock = crate::output::lock_out(out)?;
    let mut rows = Vec::new();
    for (name, seed) in variants::runs(&base.variants, &bt.seeds) {
        let s = file.load(&variants::seed_sets(sets, seed), name.as_deref())?;
        let t = s.train.clone().expect("variants inherit [train]");
        let vname = name.clone().unwrap_or_else(|| s.name.clone());
        let data = dataset(&t, s.seed())?;
        let mut sizes = vec![data.inputs];
        sizes.extend(t.hidden.iter().map(|h| *h as usize));
        sizes.push(data.classes);
        let cfg = s.ep.network(&sizes, t.init_scale);
        let hw_opt = (!t.software).then_some(&s.hardware);
        let build = || {
            let mut init = stream(s.seed(), Purpose::Init, 0);
            let mut net = EpNetwork::new(&cfg, hw_opt, &mut init, s.seed())?;
            if let Some(w) = &t.init_weights {
                // Checked on the probe below before any estimate; the same network takes them again.
                weights::apply(w, weights::NetMut::Ep(&mut net))
                    .expect("starting weights checked against this network");
            }
            Ok(net)
        };
        if let Some(w) = &t.init_weights {
            let mut init = stream(s.seed(), Purpose::Init, 0);
            let mut probe = EpNetwork::new(&cfg, hw_opt, &mut init, s.seed())?;
            weights::apply(w, weights::NetMut::Ep(&mut probe))
                .with_context(|| file.origin.clone())?;
        }
        let n = (s.ep.fidelity_samples as usize).min(data.train_len());
        let samples: Vec<(&[f32], usize)> = (0..n)
            .map(|i| {
                let (x, y) = data.train_sample(i);
                (x, y as usize)
            })
            .collect();
        eprintln!(
            "{vname} seed {}: {} beta(s) x {} estimator(s) on {} sample(s)",
            s.seed(),
            s.ep.fidelity_betas.len(),
            s.ep.fidelity_nudges.len(),
            n
        );
        let points = epn::fidelity(
            &build,
            &samples,
            &s.ep.fidelity_betas,
            &s.ep.fidelity_nudges,
            t.lr,
            Par::Rayon,
        )?;
        rows.extend(points.into_iter().map(|point| FidelityRow {
            variant: vname.clone(),
            seed: s.seed(),
            feedback: s.ep.config.feedback.name(),
            point,
        }));
    }
    write_outputs(out, path, &file.text, &rows, started)?;
    Ok(rows)
}

/// `fidelity.csv` (every row, 6 significant digits).
pub fn fidelity_csv(rows: &[FidelityRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "variant",
        "seed",
        "feedback",
        "beta",
        "estimator",
        "cosine",
        "cosine_median",
        "rel_error",
        "cosine_applied",
        "rel_error_applied",
        "norm_exact",
        "norm_estimate",
    ])?;
    for r in rows {
        let p = &r.point;
        w.write_record([
            r.variant.clone(),
            r.seed.to_string(),
            r.feedback.to_string(),
            p.beta.to_string(),
            p.nudge.name().to_string(),
            format!("{:.6}", p.cosine),
            format!("{:.6}", p.cosine_median),
            format!("{:.6}", p.rel_error),
            format!("{:.6}", p.cosine_applied),
            format!("{:.6}", p.rel_error_applied),
            format!("{:.6e}", p.norm_exact),
            format!("{:.6e}", p.norm_estimate),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// (variant, estimator) groups in first-seen order, with their betas in order.
fn groups(rows: &[FidelityRow]) -> Vec<(String, &'static str, Vec<f32>)> {
    let mut g: Vec<(String, &'static str, Vec<f32>)> = Vec::new();
    for r in rows {
        let n = r.point.nudge.name();
        match g.iter_mut().find(|(v, e, _)| *v == r.variant && *e == n) {
            Some((_, _, betas)) => {
                if !betas.contains(&r.point.beta) {
                    betas.push(r.point.beta);
                }
            }
            None => g.push((r.variant.clone(), n, vec![r.point.beta])),
        }
    }
    g
}

fn write_outputs(
    out: &Path,
    path: &Path,
    text: &str,
    rows: &[FidelityRow],
    started: Instant,
) -> Result<()> {
    write_atomic(&out.join("fidelity.csv"), &fidelity_csv(rows)?)?;
    println!(
        "{:<18} {:<12} {:>6} {:>5} {:>17} {:>17} {:>17} {:>17}",
        "variant",
        "estimator",
        "beta",
        "seeds",
        "cosine",
        "median cosine",
        "rel. error",
        "cosine (applied)"
    );
    let mut cos_series = Vec::new();
    let mut err_series = Vec::new();
    for (variant, est, betas) in groups(rows) {
        let mut cos_pts = Vec::new();
        let mut err_pts = Vec::new();
        for beta in betas {
            let sel: Vec<&FidelityPoint> = rows
                .iter()
                .filter(|r| r.variant == variant && r.point.nudge.name() == est)
                .map(|r| &r.point)
                .filter(|p| p.beta == beta)
                .collect();
            let (c, cs) = mean_std(&sel.iter().map(|p| p.cosine).collect::<Vec<_>>());
            let (e, es) = mean_std(&sel.iter().map(|p| p.rel_error).collect::<Vec<_>>());
            let (m, ms) = mean_std(&sel.iter().map(|p| p.cosine_median).collect::<Vec<_>>());
            let (a, as_) = mean_std(&sel.iter().map(|p| p.cosine_applied).collect::<Vec<_>>());
            println!(
                "{:<18} {:<12} {:>6} {:>5} {:>17} {:>17} {:>17} {:>17}",
                variant,
                est,
                beta,
                sel.len(),
                format!("{c:.4} +- {cs:.4}"),
                format!("{m:.4} +- {ms:.4}"),
                format!("{e:.4} +- {es:.4}"),
                format!("{a:.4} +- {as_:.4}")
            );
            cos_pts.push((beta.log10(), c as f32));
            err_pts.push((beta.log10(), e as f32));
        }
        cos_series.push(Series {
            label: format!("{variant} {est}"),
            points: cos_pts,
            markers: true,
        });
        err_series.push(Series {
            label: format!("{variant} {est}"),
            points: err_pts,
            markers: true,
        });
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    plot::write(
        out,
        "cosine",
        &Chart {
            title: format!("{stem}: EP update vs exact gradient"),
            subtitle: "cosine similarity of the batch update, mean over seeds".into(),
            x_label: "log10 beta".into(),
            y_label: "cosine similarity".into(),
            series: cos_series,
            y_range: None,
            x_scale: crate::plot::XScale::Linear,
        },
    )?;
    plot::write(
        out,
        "error",
        &Chart {
            title: format!("{stem}: EP update vs exact gradient"),
            subtitle: "||g_EP - g|| / ||g||, mean over seeds".into(),
            x_label: "log10 beta".into(),
            y_label: "relative error".into(),
            series: err_series,
            y_range: None,
            x_scale: crate::plot::XScale::Linear,
        },
    )?;
    let manifest = json!({
        "command": "ep-fidelity",
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": crate_versions_json(),
        "scenario": { "path": path.display().to_string(), "sha256": sha256_hex(text.as_bytes()) },
        "exact_gradient": "implicit differentiation at the free fixed point (f64, devices' weights, no periphery)",
        "rows": rows.len(),
        "files": ["fidelity.csv", "cosine.svg", "cosine.png", "error.svg", "error.png", "manifest.json"],
        "wall_s": started.elapsed().as_secs_f64(),
    });
    write_manifest(out, &manifest)?;
    report_written(out, started);
    Ok(())
}
