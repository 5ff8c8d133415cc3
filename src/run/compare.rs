//! Comparing runs: choosing each method's variant on the validation split, and paired differences
//! over seeds with their 95 % intervals (selection.csv, paired.csv).

use std::path::Path;

use anyhow::{Context, Result};

use super::*;
pub use crate::metrics::{SummaryRow, summary_row};
use crate::output::write_atomic;
use crate::variants::{self};

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
pub(super) fn write_selection(
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
pub(super) fn paired_report(paired: &[Paired], what: &str) -> Result<Vec<u8>> {
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
