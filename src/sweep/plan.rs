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
    sweep: SweepSpec,
    /// Where each swept value was written: `origins[axis][key][step]` is `file:line:col`.
    origins: Vec<Vec<Vec<String>>>,
}

impl Expanded {
    /// The values point `index` sets (its swept values, then its seed), as overrides that name where
    /// each was written.
    pub(super) fn point_sets(&self, index: usize) -> Vec<PointSet> {
        let p = &self.plan.points[index];
        let steps = steps_of(&self.sweep, index);
        point_sets(&self.sweep, &self.origins, &steps, &p.id, index, p.seed)
    }
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

/// The axis steps of plan point `index` (see [`expand_indices`]).
fn steps_of(sweep: &SweepSpec, index: usize) -> Vec<usize> {
    let mut rest = index / sweep.repeats.max(1) as usize;
    let mut steps = vec![0; sweep.axes.len()];
    for (k, axis) in sweep.axes.iter().enumerate().rev() {
        steps[k] = rest % axis.values.len();
        rest /= axis.values.len();
    }
    steps
}

/// Index of the first point (repeat 0) whose axes are at `steps`.
fn index_of(sweep: &SweepSpec, steps: &[usize]) -> usize {
    let combo = sweep
        .axes
        .iter()
        .zip(steps)
        .fold(0, |acc, (axis, s)| acc * axis.values.len() + s);
    combo * sweep.repeats as usize
}

/// The overrides of a point: each swept value with the place it was written, then the seed.
fn point_sets(
    sweep: &SweepSpec,
    origins: &[Vec<Vec<String>>],
    steps: &[usize],
    id: &str,
    index: usize,
    seed: u64,
) -> Vec<PointSet> {
    let mut sets = Vec::new();
    for (a, axis) in sweep.axes.iter().enumerate() {
        for (k, key) in axis.keys.iter().enumerate() {
            let value = axis.values[steps[a]][k].clone();
            sets.push(PointSet {
                key: key.clone(),
                origin: format!(
                    "{} (sweep point {id}: {key} = {value})",
                    origins[a][k][steps[a]]
                ),
                value,
            });
        }
    }
    sets.push(PointSet {
        key: "scenario.seed".into(),
        value: Value::Integer(seed as i64),
        origin: format!(
            "sweep point {id} (seed derived from master seed {} and index {index})",
            sweep.seed
        ),
    });
    sets
}

/// `file:line:col` of every swept value: `[axis][key][step]`.
fn value_origins(sweep: &SweepSpec, text: &str, origin: &str) -> Vec<Vec<Vec<String>>> {
    let mut paths = Vec::new();
    for axis in &sweep.axes {
        let mut head = vec!["sweep".to_string()];
        if axis.section == "grid" {
            head.push("grid".into());
        } else {
            let i = axis
                .section
                .trim_start_matches("zip[")
                .trim_end_matches(']');
            head.extend(["zip".to_string(), i.to_string()]);
        }
        for key in &axis.keys {
            for step in 0..axis.values.len() {
                let mut path = head.clone();
                path.extend([key.clone(), step.to_string()]);
                paths.push(path);
            }
        }
    }
    let mut found = scenario::key_origins(text, origin, &paths).into_iter();
    sweep
        .axes
        .iter()
        .map(|axis| {
            axis.keys
                .iter()
                .map(|_| found.by_ref().take(axis.values.len()).collect())
                .collect()
        })
        .collect()
}

/// The axes in groups that are validated together: two axes share a group when they set keys of
/// linked sections ([`scenario::LINKED_SECTIONS`]), directly or through a third axis (a zipped group
/// links the sections of all its keys).
fn axis_groups(sweep: &SweepSpec) -> Vec<Vec<usize>> {
    let class = |key: &str| -> String {
        let section = key.split('.').next().unwrap_or(key);
        match scenario::LINKED_SECTIONS
            .iter()
            .position(|g| g.contains(&section))
        {
            Some(i) => format!("#{i}"),
            None => section.to_string(),
        }
    };
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for (a, axis) in sweep.axes.iter().enumerate() {
        let classes: Vec<String> = axis.keys.iter().map(|k| class(k)).collect();
        let mut merged = (classes.clone(), vec![a]);
        groups.retain(|(cs, axes)| {
            if cs.iter().any(|c| classes.contains(c)) {
                merged.0.extend(cs.iter().cloned());
                merged.1.extend(axes);
                false
            } else {
                true
            }
        });
        merged.1.sort_unstable();
        groups.push(merged);
    }
    let mut out: Vec<Vec<usize>> = groups.into_iter().map(|(_, axes)| axes).collect();
    out.sort();
    out
}

/// Validates every point of a sweep without loading each one. A point's validity depends on the
/// values of each group of linked sections separately (see [`scenario::LINKED_SECTIONS`]), so the
/// points are all valid exactly when the first point is and, for each group of axes, every
/// combination of that group's values is with the other axes at their first value: the sum over the
/// groups of their combinations, not their product. The error reported is the one of the first
/// invalid point in plan order, as loading every point would report it.
fn validate_points(
    parsed: &scenario::Parsed,
    sweep: &SweepSpec,
    origins: &[Vec<Vec<String>>],
    base_dir: &Path,
    total: usize,
) -> Result<(), scenario::ScenarioError> {
    let load = |steps: &[usize]| {
        let index = index_of(sweep, steps);
        let sets = point_sets(
            sweep,
            origins,
            steps,
            &point_id(index, total),
            index,
            point_seed(sweep.seed, index),
        );
        parsed.load(base_dir, None, &sets).map(|_| ())
    };
    let zero = vec![0; sweep.axes.len()];
    load(&zero)?;
    let mut first: Option<(usize, scenario::ScenarioError)> = None;
    for group in axis_groups(sweep) {
        // Every combination of the group's steps, the last axis fastest (so in plan order).
        let mut steps = zero.clone();
        'combos: loop {
            let mut g = group.len();
            loop {
                if g == 0 {
                    break 'combos;
                }
                g -= 1;
                let a = group[g];
                steps[a] += 1;
                if steps[a] < sweep.axes[a].values.len() {
                    break;
                }
                steps[a] = 0;
            }
            if let Err(e) = load(&steps) {
                let index = index_of(sweep, &steps);
                if first.as_ref().is_none_or(|(i, _)| index < *i) {
                    first = Some((index, e));
                }
                // Later combinations of this group come later in the plan.
                break;
            }
        }
    }
    match first {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// The effective configuration of every point of a sweep (the TOML whose hash resume and merge
/// compare), built from one serialization: the configuration with a placeholder for every swept value
/// and the seed, cut at the placeholders, is filled with each point's values as TOML writes them.
/// Serializing each point's whole configuration instead costs time in proportion to the `[sweep]`
/// section, which every configuration holds, for each of up to a million points.
struct Template {
    /// The text around the placeholders: one more than `slots`.
    parts: Vec<String>,
    /// Which value fills each gap: swept keys in plan order (axis by axis), then the seed.
    slots: Vec<usize>,
    /// Each swept value as TOML writes it: `[axis][key][step]`.
    values: Vec<Vec<Vec<String>>>,
}

/// Start of a placeholder as written in the effective configuration (a quoted string).
const SLOT: &str = "\"aimsim-sweep-slot-";

impl Template {
    /// The template of a sweep's points, or `None` when a swept value is a table or an array of tables
    /// (TOML writes those as sections of their own, not in place of a value) or a placeholder cannot
    /// be found exactly once.
    fn new(parsed: &scenario::Parsed, sweep: &SweepSpec) -> Option<Template> {
        let plain = |v: &Value| match v {
            Value::Table(_) => false,
            Value::Array(a) => !a.iter().any(Value::is_table),
            _ => true,
        };
        let keys: Vec<&String> = sweep.axes.iter().flat_map(|a| &a.keys).collect();
        if sweep
            .axes
            .iter()
            .any(|a| a.values.iter().flatten().any(|v| !plain(v)))
            || keys
                .iter()
                .any(|k| *k == "device.preset" || !k.contains('.'))
        {
            return None;
        }
        let n = keys.len() + 1;
        let mut sets: Vec<PointSet> = keys
            .iter()
            .map(|k| (*k).clone())
            .chain(["scenario.seed".to_string()])
            .enumerate()
            .map(|(j, key)| PointSet {
                key,
                value: Value::String(format!("aimsim-sweep-slot-{j}-of-{n}")),
                origin: String::new(),
            })
            .collect();
        let text = parsed.effective(&sets).ok()?;
        sets.clear();
        let mut parts = Vec::new();
        let mut slots = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(SLOT) {
            let tail = &rest[at + SLOT.len()..];
            let (j, after) = tail.split_once(&format!("-of-{n}\""))?;
            let j: usize = j.parse().ok()?;
            if j >= n || slots.contains(&j) {
                return None;
            }
            parts.push(rest[..at].to_string());
            slots.push(j);
            rest = after;
        }
        parts.push(rest.to_string());
        if slots.len() != n {
            return None;
        }
        let mut values = Vec::new();
        for axis in &sweep.axes {
            let mut keys = Vec::new();
            for k in 0..axis.keys.len() {
                let texts: Option<Vec<String>> =
                    axis.values.iter().map(|v| value_text(&v[k])).collect();
                keys.push(texts?);
            }
            values.push(keys);
        }
        Some(Template {
            parts,
            slots,
            values,
        })
    }

    /// The effective configuration of the point at `steps` with `seed`.
    fn fill(&self, steps: &[usize], seed: u64) -> String {
        let mut filled: Vec<&str> = Vec::with_capacity(self.slots.len());
        for (a, keys) in self.values.iter().enumerate() {
            filled.extend(keys.iter().map(|k| k[steps[a]].as_str()));
        }
        let seed = seed.to_string();
        filled.push(&seed);
        let mut out = String::with_capacity(self.parts.iter().map(String::len).sum::<usize>() + 64);
        for (part, slot) in self.parts.iter().zip(&self.slots) {
            out.push_str(part);
            out.push_str(filled[*slot]);
        }
        out.push_str(self.parts.last().map_or("", String::as_str));
        out
    }
}

/// A value as TOML writes it in a document (`key = <this>`).
fn value_text(v: &Value) -> Option<String> {
    let mut t = toml::Table::new();
    t.insert("v".into(), v.clone());
    let text = toml::to_string(&t).ok()?;
    Some(text.strip_prefix("v = ")?.strip_suffix('\n')?.to_string())
}

/// Expands and validates the sweep of a scenario: a bad value anywhere in the grid is reported, at the
/// first point that has it, before anything runs.
pub(super) fn expand(path: &Path, sets: &[String]) -> Result<Expanded> {
    let file = ScenarioSource::read(path)?;
    let (text, origin, base_dir) = (&file.text, &file.origin, &file.base_dir);
    let base = file.load(sets, None)?;
    let Some(sweep) = base.sweep.clone() else {
        bail!(
            "{origin}: `aimsim sweep` needs a [sweep] section (docs/sweeps.md), e.g.\n  [sweep]\n  grid = {{ \"device.levels\" = [32, 64] }}"
        );
    };
    expand_scenario(&base, sweep, text, origin, base_dir, sets, path)
}

/// [`expand`] of a scenario already loaded (`base`, with its `sweep`).
pub(super) fn expand_scenario(
    base: &Scenario,
    sweep: SweepSpec,
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
    path: &Path,
) -> Result<Expanded> {
    let columns: Vec<String> = sweep.axes.iter().flat_map(|a| a.keys.clone()).collect();
    let indices = expand_indices(&sweep);
    let total = indices.len();
    let parsed = scenario::Parsed::new(text, origin, sets)?;
    let origins = value_origins(&sweep, text, origin);
    validate_points(&parsed, &sweep, &origins, base_dir, total)?;
    let cells: Vec<Vec<Vec<String>>> = sweep
        .axes
        .iter()
        .map(|axis| {
            (0..axis.keys.len())
                .map(|k| axis.values.iter().map(|v| cell(&v[k])).collect())
                .collect()
        })
        .collect();
    let template = Template::new(&parsed, &sweep).filter(|t| {
        // Checked against the full serialization at points spread over the plan (the first and last
        // included): any difference, and every point is serialized in full.
        let stride = (total / 16).max(1);
        (0..total).step_by(stride).chain([total - 1]).all(|index| {
            let steps = steps_of(&sweep, index);
            let seed = point_seed(sweep.seed, index);
            let id = point_id(index, total);
            parsed
                .effective(&point_sets(&sweep, &origins, &steps, &id, index, seed))
                .is_ok_and(|full| full == t.fill(&steps, seed))
        })
    });
    let mut points = Vec::with_capacity(total);
    for (index, (steps, repeat)) in indices.into_iter().enumerate() {
        let id = point_id(index, total);
        let seed = point_seed(sweep.seed, index);
        let values = cells
            .iter()
            .zip(&steps)
            .flat_map(|(keys, &step)| keys.iter().map(move |c| c[step].clone()))
            .collect();
        let effective = match &template {
            Some(t) => t.fill(&steps, seed),
            None => parsed.effective(&point_sets(&sweep, &origins, &steps, &id, index, seed))?,
        };
        points.push(PlanPoint {
            index,
            id,
            values,
            repeat,
            seed,
            effective_sha256: sha256_hex(effective.as_bytes()),
        });
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
        sweep,
        origins,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small training scenario; `SWEEP` is replaced by each case's `[sweep]` section.
    const BASE: &str = r#"
[scenario]
name = "t"
seed = 3

[device]
model = "neurosim"
levels = 16
nl_up = 1.0
nl_down = -1.0
g_min = 0.1
g_max = 10.0

[tile]
rows = 32
cols = 32

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 100
test_samples = 50
hidden = [8]

SWEEP
"#;

    /// What expanding every point one by one gives (the way plans were validated before points
    /// were validated by group): every point's effective configuration hash, or the first error.
    fn point_by_point(text: &str) -> Result<Vec<String>, String> {
        let (base, _, _) =
            scenario::load_str(text, "t.toml", Path::new("."), &[]).map_err(|e| e.to_string())?;
        let sweep = base.sweep.clone().unwrap();
        let origins = value_origins(&sweep, text, "t.toml");
        let indices = expand_indices(&sweep);
        let total = indices.len();
        indices
            .into_iter()
            .enumerate()
            .map(|(index, (steps, _))| {
                let sets = point_sets(
                    &sweep,
                    &origins,
                    &steps,
                    &point_id(index, total),
                    index,
                    point_seed(sweep.seed, index),
                );
                scenario::load_point_str(text, "t.toml", Path::new("."), &[], None, &sets)
                    .map(|(_, effective, _)| sha256_hex(effective.as_bytes()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    fn expanded(text: &str) -> Result<Vec<String>, String> {
        let (base, _, _) =
            scenario::load_str(text, "t.toml", Path::new("."), &[]).map_err(|e| e.to_string())?;
        let sweep = base.sweep.clone().unwrap();
        expand_scenario(
            &base,
            sweep,
            text,
            "t.toml",
            Path::new("."),
            &[],
            Path::new("t.toml"),
        )
        .map(|ex| {
            ex.plan
                .points
                .into_iter()
                .map(|p| p.effective_sha256)
                .collect()
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn grouped_validation_and_templates_equal_loading_every_point() {
        let cases = [
            // Valid sweeps: scalars, strings that TOML quotes or escapes, arrays, zips across groups.
            r#"grid = { "device.nl_up" = [0.5, 2.0, -3.0], "train.lr" = [0.1, 0.05], "io.adc_bits" = [6, 8] }
repeats = 2"#,
            r#"grid = { "scenario.description" = ["plain", "with \"quotes\"", "it's", "two\nlines", "tab\there"], "train.hidden" = [[8], [8, 4], [16, 16, 4]] }"#,
            r#"zip = [{ "device.levels" = [16, 32], "train.lr" = [0.1, 0.2] }, { "cost.clock_hz" = [1e8, 2e9], "io.dac_bits" = [5, 7] }]
grid = { "tile.rows" = [16, 64] }"#,
            // Tables and presets: every point serialized in full.
            r#"grid = { "device.d2d.nl_up" = [{ dist = "normal", sigma = 0.1 }, { dist = "uniform", half_width = 0.2 }], "train.lr" = [0.1, 0.3] }"#,
            r#"grid = { "device.preset" = ["neurosim-pcmo", "neurosim-epiram"], "train.epochs" = [1, 2] }"#,
            // One bad value in each of two groups: the first bad point in plan order is reported.
            r#"grid = { "device.nl_up" = [1.0, 30.0], "train.lr" = [0.1, -1.0] }"#,
            r#"grid = { "device.nl_up" = [1.0, 2.0, 30.0], "train.lr" = [0.1, 0.2, 0.3, -1.0] }
repeats = 3"#,
            // Keys that are only bad together (one group).
            r#"grid = { "device.g_min" = [0.1, 20.0], "device.g_max" = [10.0, 30.0], "train.lr" = [0.1, 0.2] }"#,
            r#"grid = { "train.validation" = [0, 60], "train.train_samples" = [100, 50], "device.levels" = [16, 32] }"#,
            r#"grid = { "tile.cell" = ["pair", "single"], "update.controller" = ["bidirectional", "unidirectional"], "io.adc_bits" = [6, 8] }"#,
            r#"grid = { "device.levels" = [16, 32], "protocol.pulses" = [10, 100000000] }"#,
            // Sections linked through a zipped group.
            r#"zip = [{ "device.g_min" = [0.1, 20.0], "train.lr" = [0.1, 0.2] }]
grid = { "device.g_max" = [10.0, 30.0] }"#,
            // Every point bad (the first point is).
            r#"grid = { "device.nl_up" = [30.0, 40.0], "train.lr" = [0.1, 0.2] }"#,
            // A key of no section, and a value that is not of the key's type.
            r#"grid = { "trian.lr" = [0.1], "train.lr" = [0.1, 0.2] }"#,
            r#"grid = { "train.lr" = [0.1, 0.2], "train.epochs" = [1, "two"] }"#,
        ];
        for case in cases {
            let text = BASE.replace("SWEEP", &format!("[sweep]\n{case}\n"));
            let want = point_by_point(&text);
            assert_eq!(expanded(&text), want, "{case}");
        }
    }

    #[test]
    fn a_template_serves_plain_values_and_tables_fall_back() {
        let load = |sweep: &str| {
            let text = BASE.replace("SWEEP", &format!("[sweep]\n{sweep}\n"));
            let (base, _, _) = scenario::load_str(&text, "t.toml", Path::new("."), &[]).unwrap();
            let parsed = scenario::Parsed::new(&text, "t.toml", &[]).unwrap();
            Template::new(&parsed, base.sweep.as_ref().unwrap()).is_some()
        };
        assert!(load(
            r#"grid = { "device.nl_up" = [0.5, 2.0], "train.hidden" = [[8], [4, 4]] }"#
        ));
        assert!(!load(
            r#"grid = { "device.d2d.nl_up" = [{ dist = "normal", sigma = 0.1 }] }"#
        ));
        assert!(!load(r#"grid = { "device.preset" = ["neurosim-pcmo"] }"#));
    }

    #[test]
    fn groups_follow_the_linked_sections() {
        let text = BASE.replace(
            "SWEEP",
            r#"[sweep]
grid = { "device.nl_up" = [1.0], "io.adc_bits" = [6], "train.lr" = [0.1], "tile.rows" = [8], "ep.beta" = [0.1] }
zip = [{ "cost.clock_hz" = [1e9], "trace.every" = [1] }]
"#,
        );
        let base = scenario::load_str(&text, "t.toml", Path::new("."), &[]);
        let sweep = base.map(|b| b.0.sweep.unwrap());
        // Axes: device.nl_up, ep.beta, io.adc_bits, tile.rows, train.lr, then the zip.
        let sweep = sweep.unwrap_or_else(|e| panic!("{e}"));
        // The chip's sections and training's are one group (train.batch_update reads
        // update.controller); ep and io stand alone.
        assert_eq!(
            axis_groups(&sweep),
            vec![vec![0, 3, 4, 5], vec![1], vec![2]]
        );
    }
}
