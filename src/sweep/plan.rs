//! The plan of a sweep: expanding `[sweep]` into points with their values and seeds, plan.json,
//! point records and results.csv, shards and the default thread count.

use std::collections::BTreeMap;
use std::path::Path;

use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, anyhow, bail};
use rand::Rng;
use serde::{Deserialize, Serialize};
use toml::Value;

use crate::metrics::FINAL_COLUMNS;
use crate::output::{sha256_hex, write_atomic};
use crate::scenario::{self, PointSet, Scenario, SweepSpec};
use crate::variants::ScenarioSource;

/// Version of the plan.json and point.json formats.
pub(super) const FORMAT: u32 = 1;

/// One point of an expanded plan, as recorded in plan.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPoint {
    /// Position in the plan (0-based); the point's seed is derived from it.
    pub index: usize,
    /// Folder name under `points/`, e.g. `p0007`.
    pub id: String,
    /// The swept values as results.csv cells, aligned with [`Plan::columns`].
    pub values: Vec<String>,
    /// Repeat number (0-based) of this combination of values.
    pub repeat: u32,
    /// Seed of the point's run (replaces `scenario.seed`).
    pub seed: u64,
    /// SHA-256 of the point's effective configuration: what resume and merge compare.
    pub effective_sha256: String,
}

/// An expanded sweep, as written to plan.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Format version.
    pub format: u32,
    /// Scenario name.
    pub scenario: String,
    /// Scenario path as given.
    pub path: String,
    /// `--set` overrides applied to every point.
    pub sets: Vec<String>,
    /// Master seed.
    pub master_seed: u64,
    /// Repeats per combination of values.
    pub repeats: u32,
    /// Swept keys, in plan order (one column each in results.csv).
    pub columns: Vec<String>,
    /// The keys of each axis: one for a grid key, several for a zipped group (they advance together).
    #[serde(default)]
    pub axes: Vec<Vec<String>>,
    /// SHA-256 of the columns and points: equal plans, equal hashes.
    pub plan_sha256: String,
    /// `[index, count]` of the shard this folder runs, if any.
    pub shard: Option<[usize; 2]>,
    /// Every point of the plan, in order.
    pub points: Vec<PlanPoint>,
}

/// The completion marker of a point (`points/<id>/point.json`), written after all its other files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointRecord {
    /// Format version.
    pub format: u32,
    /// Hash of the plan the point belongs to.
    pub plan_sha256: String,
    /// Position in the plan.
    pub index: usize,
    /// Point id.
    pub id: String,
    /// Seed of the run.
    pub seed: u64,
    /// SHA-256 of the effective configuration.
    pub effective_sha256: String,
    /// Final metrics as results.csv cells, aligned with [`FINAL_COLUMNS`].
    pub metrics: Vec<String>,
    /// Wall time of the point, seconds (the only column that differs between equal runs).
    pub wall_s: f64,
    /// With an `[inference]` section: the point's accuracy after deployment at every time and
    /// compensation (mean and sd over the repeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inference: Vec<InferenceCell>,
}

/// One time and compensation of a deployed sweep point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceCell {
    /// Time after programming, s.
    pub t_s: f64,
    /// Compensation name.
    pub compensation: String,
    /// Mean test accuracy over the repeats, percent.
    pub mean: f64,
    /// Sample standard deviation over the repeats.
    pub sd: f64,
    /// Repeats of the noise draws.
    pub repeats: u32,
}

/// A plan plus what running its points needs.
pub(super) struct Expanded {
    pub(super) plan: Plan,
    pub(super) text: String,
    pub(super) sets_per_point: Vec<Vec<PointSet>>,
}

/// Threads to use: SLURM_CPUS_PER_TASK when set, else the machine's cores.
pub fn default_threads() -> usize {
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Parses `i/N` (0 <= i < N).
pub fn parse_shard(raw: &str) -> Result<(usize, usize)> {
    let bad = || anyhow!("--shard `{raw}`: expected i/N with 0 <= i < N, e.g. --shard 0/4");
    let (i, n) = raw.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The shard named by a Slurm job array (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, of
/// `SLURM_ARRAY_TASK_COUNT`), when those variables are set.
pub fn shard_from_env() -> Result<Option<(usize, usize)>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
    else {
        return Ok(None);
    };
    let num = |k: &str, v: &str| -> Result<usize> {
        v.trim()
            .parse()
            .map_err(|_| anyhow!("{k}=`{v}` is not a whole number"))
    };
    let id = num("SLURM_ARRAY_TASK_ID", &id)?;
    let min = match var("SLURM_ARRAY_TASK_MIN") {
        Some(m) => num("SLURM_ARRAY_TASK_MIN", &m)?,
        None => 0,
    };
    let count = num("SLURM_ARRAY_TASK_COUNT", &count)?;
    let i = id
        .checked_sub(min)
        .ok_or_else(|| anyhow!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?;
    if count == 0 || i >= count {
        bail!(
            "SLURM_ARRAY_TASK_ID {id} (minus SLURM_ARRAY_TASK_MIN {min}) is not below SLURM_ARRAY_TASK_COUNT {count}; \
             use an array of consecutive indices (--array=0-{})",
            count.max(1) - 1
        );
    }
    Ok(Some((i, count)))
}

/// The seed of point `index` of a sweep with master seed `master`: 63 bits (a TOML integer) of the
/// first draw of stream `(master, SweepPoint, index)`.
pub fn point_seed(master: u64, index: usize) -> u64 {
    stream(master, Purpose::SweepPoint, index as u64).next_u64() >> 1
}

/// A swept value as a results.csv cell: strings bare, everything else as TOML.
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Id of point `index` in a plan of `total` points: `p` and at least four digits.
pub(super) fn point_id(index: usize, total: usize) -> String {
    let width = total.saturating_sub(1).to_string().len().max(4);
    format!("p{index:0width$}")
}

/// Values of every point of a sweep, in plan order: the first axis varies slowest, repeats fastest.
/// Returns, per point, `(axis steps, repeat)`.
pub(super) fn expand_indices(sweep: &SweepSpec) -> Vec<(Vec<usize>, u32)> {
    let lens: Vec<usize> = sweep.axes.iter().map(|a| a.values.len()).collect();
    let combos: usize = lens.iter().product();
    let mut out = Vec::with_capacity(combos * sweep.repeats as usize);
    for c in 0..combos {
        let mut steps = vec![0; lens.len()];
        let mut rest = c;
        for (k, len) in lens.iter().enumerate().rev() {
            steps[k] = rest % len;
            rest /= len;
        }
        for r in 0..sweep.repeats {
            out.push((steps.clone(), r));
        }
    }
    out
}

/// Expands and validates the sweep of a scenario: every point is loaded exactly as it will run, so a
/// bad value anywhere in the grid is reported before anything runs.
pub(super) fn expand(path: &Path, sets: &[String]) -> Result<Expanded> {
    let file = ScenarioSource::read(path)?;
    let (text, origin, base_dir) = (&file.text, &file.origin, &file.base_dir);
    let base = file.load(sets, None)?;
    let Some(sweep) = base.sweep.clone() else {
        bail!(
            "{origin}: `aimsim sweep` needs a [sweep] section (docs/sweeps.md), e.g.\n  [sweep]\n  grid = {{ \"device.levels\" = [32, 64] }}"
        );
    };
    expand_scenario(&base, &sweep, text, origin, base_dir, sets, path)
}

pub(super) fn expand_scenario(
    base: &Scenario,
    sweep: &SweepSpec,
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
    path: &Path,
) -> Result<Expanded> {
    let columns: Vec<String> = sweep.axes.iter().flat_map(|a| a.keys.clone()).collect();
    let indices = expand_indices(sweep);
    let total = indices.len();
    let mut points = Vec::with_capacity(total);
    let mut sets_per_point = Vec::with_capacity(total);
    for (index, (steps, repeat)) in indices.into_iter().enumerate() {
        let id = point_id(index, total);
        let seed = point_seed(sweep.seed, index);
        let mut point_sets = Vec::new();
        let mut values = Vec::new();
        for (a, axis) in sweep.axes.iter().enumerate() {
            for (k, key) in axis.keys.iter().enumerate() {
                let value = axis.values[steps[a]][k].clone();
                let mut loc = vec!["sweep".to_string()];
                if axis.section == "grid" {
                    loc.push("grid".into());
                } else {
                    let i = axis
                        .section
                        .trim_start_matches("zip[")
                        .trim_end_matches(']');
                    loc.extend(["zip".to_string(), i.to_string()]);
                }
                loc.extend([key.clone(), steps[a].to_string()]);
                values.push(cell(&value));
                point_sets.push(PointSet {
                    key: key.clone(),
                    origin: format!(
                        "{} (sweep point {id}: {key} = {value})",
                        scenario::key_origin(text, origin, &loc)
                    ),
                    value,
                });
            }
        }
        point_sets.push(PointSet {
            key: "scenario.seed".into(),
            value: Value::Integer(seed as i64),
            origin: format!(
                "sweep point {id} (seed derived from master seed {} and index {index})",
                sweep.seed
            ),
        });
        let (_, effective, _) =
            scenario::load_point_str(text, origin, base_dir, sets, None, &point_sets)?;
        points.push(PlanPoint {
            index,
            id,
            values,
            repeat,
            seed,
            effective_sha256: sha256_hex(effective.as_bytes()),
        });
        sets_per_point.push(point_sets);
    }
    let hashed = serde_json::to_string(&(&columns, &points))?;
    let plan = Plan {
        format: FORMAT,
        scenario: base.name.clone(),
        path: path.display().to_string(),
        sets: sets.to_vec(),
        master_seed: sweep.seed,
        repeats: sweep.repeats,
        columns,
        axes: sweep.axes.iter().map(|a| a.keys.clone()).collect(),
        plan_sha256: sha256_hex(hashed.as_bytes()),
        shard: None,
        points,
    };
    Ok(Expanded {
        plan,
        text: text.to_string(),
        sets_per_point,
    })
}

/// Expands a scenario's sweep into its plan (every point validated).
pub fn plan(path: &Path, sets: &[String]) -> Result<Plan> {
    Ok(expand(path, sets)?.plan)
}

/// Whether plan point `index` belongs to shard `(i, n)`: round robin, so neighbouring points (similar
/// cost) spread over the shards.
pub fn in_shard(index: usize, shard: Option<(usize, usize)>) -> bool {
    shard.is_none_or(|(i, n)| index % n == i)
}

/// The plan as CSV: point, swept values, repeat, seed.
pub fn plan_csv(plan: &Plan) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["point".to_string()];
    header.extend(plan.columns.iter().cloned());
    header.extend(["repeat".into(), "seed".into()]);
    w.write_record(&header)?;
    for p in &plan.points {
        let mut row = vec![p.id.clone()];
        row.extend(p.values.iter().cloned());
        row.extend([p.repeat.to_string(), p.seed.to_string()]);
        w.write_record(&row)?;
    }
    Ok(w.into_inner()?)
}

pub(super) fn write_plan(out: &Path, plan: &Plan) -> Result<()> {
    write_atomic(
        &out.join("plan.json"),
        serde_json::to_string_pretty(plan)?.as_bytes(),
    )?;
    write_atomic(&out.join("plan.csv"), &plan_csv(plan)?)
}

pub(super) fn read_plan(dir: &Path) -> Result<Option<Plan>> {
    let p = dir.join("plan.json");
    if !p.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan written by aimsim sweep", p.display()))?;
    if plan.format != FORMAT {
        bail!(
            "{}: plan format {} (this aimsim writes {FORMAT})",
            p.display(),
            plan.format
        );
    }
    Ok(Some(plan))
}

/// The completion marker of a point in `dir`, if the point finished there. A marker of another plan
/// or configuration is an error: that folder belongs to a different sweep.
pub(super) fn read_record(dir: &Path, plan: &Plan, p: &PlanPoint) -> Result<Option<PointRecord>> {
    let path = dir.join("points").join(&p.id).join("point.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let r: PointRecord = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a point record written by aimsim sweep",
            path.display()
        )
    })?;
    if r.plan_sha256 != plan.plan_sha256
        || r.index != p.index
        || r.seed != p.seed
        || r.effective_sha256 != p.effective_sha256
        || r.metrics.len() != FINAL_COLUMNS.len()
    {
        bail!(
            "{}: this point was run with a different configuration (scenario, overrides or aimsim changed); \
             use a new --out folder, or delete the point's folder to rerun it",
            path.display()
        );
    }
    Ok(Some(r))
}

/// inference.csv of a sweep whose points were deployed (`None` when none was): one row per point,
/// time and compensation (`point`, the swept columns, `repeat`, `seed`, `t_s`, `compensation`,
/// `accuracy_mean`, `accuracy_sd`, `repeats`), in plan order.
pub fn inference_csv(
    plan: &Plan,
    records: &BTreeMap<usize, PointRecord>,
) -> Result<Option<Vec<u8>>> {
    if records.values().all(|r| r.inference.is_empty()) {
        return Ok(None);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["point".to_string()];
    header.extend(plan.columns.iter().cloned());
    header.extend(
        [
            "repeat",
            "seed",
            "t_s",
            "compensation",
            "accuracy_mean",
            "accuracy_sd",
            "repeats",
        ]
        .map(String::from),
    );
    w.write_record(&header)?;
    for (index, r) in records {
        let p = &plan.points[*index];
        for c in &r.inference {
            let mut row = vec![p.id.clone()];
            row.extend(p.values.iter().cloned());
            row.extend([
                p.repeat.to_string(),
                p.seed.to_string(),
                c.t_s.to_string(),
                c.compensation.clone(),
                format!("{:.4}", c.mean),
                format!("{:.4}", c.sd),
                c.repeats.to_string(),
            ]);
            w.write_record(&row)?;
        }
    }
    Ok(Some(w.into_inner()?))
}

/// results.csv of the finished points, in plan order.
pub fn results_csv(plan: &Plan, records: &BTreeMap<usize, PointRecord>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["point".to_string()];
    header.extend(plan.columns.iter().cloned());
    header.extend(["repeat".into(), "seed".into()]);
    header.extend(FINAL_COLUMNS.iter().map(|c| c.name.to_string()));
    header.push("wall_s".into());
    w.write_record(&header)?;
    for (index, r) in records {
        let p = &plan.points[*index];
        let mut row = vec![p.id.clone()];
        row.extend(p.values.iter().cloned());
        row.extend([p.repeat.to_string(), p.seed.to_string()]);
        row.extend(r.metrics.iter().cloned());
        row.push(format!("{:.3}", r.wall_s));
        w.write_record(&row)?;
    }
    Ok(w.into_inner()?)
}
