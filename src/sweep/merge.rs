//! `aimsim sweep merge`: shard folders of one plan combined into one folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::output::{ensure_dir, write_atomic};

use super::*;

/// What [`merge`] did.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// Points merged (all of the plan).
    pub points: usize,
    /// Shard folders read.
    pub shards: usize,
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    ensure_dir(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name_s = name.to_string_lossy();
        // Temporary files of an interrupted write, and the marker (copied last by the caller).
        if name_s.starts_with('.') || name_s == "point.json" {
            continue;
        }
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_dir(&e.path(), &to.join(&name))?;
        } else if ty.is_file() {
            let bytes = std::fs::read(e.path())
                .with_context(|| format!("cannot read {}", e.path().display()))?;
            write_atomic(&to.join(&name), &bytes)?;
        }
    }
    Ok(())
}

/// Merges the output folders of the shards of one sweep into `out`: checks that all hold the same
/// plan and that every point finished in exactly one of them, copies the point folders and writes
/// plan.json, plan.csv and results.csv.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<MergeReport> {
    if dirs.is_empty() {
        bail!(
            "give the shard folders to merge, e.g. aimsim sweep merge out/shard-* --out out/merged"
        );
    }
    let mut plan: Option<Plan> = None;
    for d in dirs {
        let p = read_plan(d)?.ok_or_else(|| {
            anyhow!(
                "{}: no plan.json; is it the --out folder of an aimsim sweep?",
                d.display()
            )
        })?;
        match &plan {
            None => plan = Some(p),
            Some(first) if first.plan_sha256 != p.plan_sha256 => bail!(
                "{} holds another sweep than {} (plan.json differs); merge only shards of one plan",
                d.display(),
                dirs[0].display()
            ),
            Some(_) => {}
        }
    }
    let mut plan = plan.expect("at least one folder");
    let out_abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    if dirs
        .iter()
        .any(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()) == out_abs)
    {
        bail!(
            "--out {} is one of the folders being merged; choose a new folder",
            out.display()
        );
    }
    let mut owner: BTreeMap<usize, (usize, PointRecord)> = BTreeMap::new();
    for (k, d) in dirs.iter().enumerate() {
        for p in &plan.points {
            if let Some(r) = read_record(d, &plan, p)? {
                if let Some((other, _)) = owner.get(&p.index) {
                    bail!(
                        "point {} finished in both {} and {}: every point must come from exactly one shard",
                        p.id,
                        dirs[*other].display(),
                        d.display()
                    );
                }
                owner.insert(p.index, (k, r));
            }
        }
    }
    let missing: Vec<&str> = plan
        .points
        .iter()
        .filter(|p| !owner.contains_key(&p.index))
        .map(|p| p.id.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of {} point(s) finished in none of the folders: {}{}; rerun their shards (finished points are kept)",
            missing.len(),
            plan.points.len(),
            missing
                .iter()
                .take(10)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() > 10 { ", ..." } else { "" }
        );
    }
    plan.shard = None;
    if read_plan(out)?.is_none() && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "--out {} is a non-empty folder that holds no sweep; merge into a new folder",
            out.display()
        );
    }
    let _lock = prepare(out, &plan)?;
    let mut records = BTreeMap::new();
    for (index, (k, r)) in owner {
        let id = &plan.points[index].id;
        let to = out.join("points").join(id);
        copy_dir(&dirs[k].join("points").join(id), &to)?;
        write_atomic(
            &to.join("point.json"),
            serde_json::to_string_pretty(&r)?.as_bytes(),
        )?;
        records.insert(index, r);
    }
    write_atomic(&out.join("results.csv"), &results_csv(&plan, &records)?)?;
    if let Some(bytes) = inference_csv(&plan, &records)? {
        write_atomic(&out.join("inference.csv"), &bytes)?;
    }
    Ok(MergeReport {
        points: plan.points.len(),
        shards: dirs.len(),
    })
}
