//! `aimsim sweep`: expand a scenario's `[sweep]` section into a plan of points, run them in parallel
//! (all of them, or one shard of a cluster job array), resume after an interruption, and merge shards.
//!
//! The plan is a pure function of the scenario, its `--set` overrides and the master seed: point `i`
//! always has the same values and the seed drawn from stream `(master seed, SweepPoint, i)`. Every point
//! writes its run outputs into `points/<id>/` and, last, `point.json` (the completion marker, written
//! atomically). `results.csv` is rebuilt from the completion markers in plan order after every point, so
//! it never depends on which process or thread ran a point, or in which order. docs/sweeps.md describes
//! the format.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use serde::{Deserialize, Serialize};
use toml::Value;

use crate::metrics::{FINAL_COLUMNS, final_cells};
use crate::output::{
    self, OutLock, crate_versions_json, ensure_dir, lock_out, sha256_hex, write_atomic,
};
use crate::run::{RunSpec, train_one};
use crate::scenario::{self, PointSet, Scenario, SweepSpec};
use crate::variants::ScenarioSource;

/// Version of the plan.json and point.json formats.
const FORMAT: u32 = 1;

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
}

/// A plan plus what running its points needs.
struct Expanded {
    plan: Plan,
    text: String,
    sets_per_point: Vec<Vec<PointSet>>,
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
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Id of point `index` in a plan of `total` points: `p` and at least four digits.
fn point_id(index: usize, total: usize) -> String {
    let width = total.saturating_sub(1).to_string().len().max(4);
    format!("p{index:0width$}")
}

/// Values of every point of a sweep, in plan order: the first axis varies slowest, repeats fastest.
/// Returns, per point, `(axis steps, repeat)`.
fn expand_indices(sweep: &SweepSpec) -> Vec<(Vec<usize>, u32)> {
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
fn expand(path: &Path, sets: &[String]) -> Result<Expanded> {
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

fn expand_scenario(
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

fn write_plan(out: &Path, plan: &Plan) -> Result<()> {
    write_atomic(
        &out.join("plan.json"),
        serde_json::to_string_pretty(plan)?.as_bytes(),
    )?;
    write_atomic(&out.join("plan.csv"), &plan_csv(plan)?)
}

fn read_plan(dir: &Path) -> Result<Option<Plan>> {
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
fn read_record(dir: &Path, plan: &Plan, p: &PlanPoint) -> Result<Option<PointRecord>> {
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

/// How `aimsim sweep` runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Threads in all (sweep-level x tile-level).
    pub threads: usize,
    /// Run only shard `(i, n)` of the plan.
    pub shard: Option<(usize, usize)>,
    /// Run at most this many unfinished points, then stop (the rest stay pending for a rerun).
    pub limit: Option<usize>,
}

/// What a call of [`run`] did.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// Points in the plan.
    pub total: usize,
    /// Points of this shard.
    pub in_shard: usize,
    /// Points of this shard already finished before this call.
    pub skipped: usize,
    /// Points run by this call.
    pub ran: usize,
    /// Points of this shard still unfinished.
    pub pending: usize,
    /// Concurrent points and tile threads per point used.
    pub workers: (usize, usize),
}

/// How `threads` are split: concurrent points first (they share nothing), tile threads inside a
/// point with what is left. Returns `(points at a time, tile threads per point)`.
pub fn split_threads(threads: usize, pending: usize) -> (usize, usize) {
    let threads = threads.max(1);
    let workers = threads.min(pending.max(1));
    (workers, (threads / workers).max(1))
}

/// Scans `out` for finished points of `plan` (all of them, not only one shard's).
fn finished(out: &Path, plan: &Plan) -> Result<BTreeMap<usize, PointRecord>> {
    let mut done = BTreeMap::new();
    for p in &plan.points {
        if let Some(r) = read_record(out, plan, p)? {
            done.insert(p.index, r);
        }
    }
    Ok(done)
}

/// Prepares `out` for `plan`: claims the folder (see [`lock_out`]), refuses a folder holding another
/// plan, writes plan.json and plan.csv. The folder is this process's while the returned guard lives.
fn prepare(out: &Path, plan: &Plan) -> Result<OutLock> {
    let lock = lock_out(out)?;
    if let Some(old) = read_plan(out)?
        && old.plan_sha256 != plan.plan_sha256
    {
        bail!(
            "{} holds another sweep (plan.json differs: scenario, overrides, seed or aimsim changed); \
             use a new --out folder",
            out.display()
        );
    }
    write_plan(out, plan)?;
    Ok(lock)
}

/// Writes the expanded plan (plan.json, plan.csv) into `out` without running anything.
pub fn write_plan_only(
    path: &Path,
    sets: &[String],
    out: &Path,
    shard: Option<(usize, usize)>,
) -> Result<Plan> {
    let mut plan = plan(path, sets)?;
    plan.shard = shard.map(|(i, n)| [i, n]);
    let _lock = prepare(out, &plan)?;
    Ok(plan)
}

/// Progress of the points of one call: a bar with ETA on a terminal, a log line at most every 10 s
/// otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Mutex<Instant>,
    todo: usize,
    done: AtomicUsize,
}

impl Progress {
    fn new(todo: usize, label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(todo as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} points, {elapsed} elapsed, eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        Progress {
            bar,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
            todo,
            done: AtomicUsize::new(0),
        }
    }

    fn point_done(&self, id: &str, accuracy: &str) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        match &self.bar {
            Some(b) => {
                b.set_message(format!("{id}: {accuracy}%"));
                b.inc(1);
            }
            None => {
                let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
                if done == self.todo || last.elapsed().as_secs_f64() >= 10.0 {
                    *last = Instant::now();
                    let el = self.started.elapsed().as_secs_f64();
                    let eta = el / done as f64 * (self.todo - done) as f64;
                    eprintln!(
                        "sweep: {done}/{} points ({:.0}%), {el:.0} s elapsed, eta {eta:.0} s; last {id}: test accuracy {accuracy}%",
                        self.todo,
                        100.0 * done as f64 / self.todo.max(1) as f64
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs the sweep of a scenario (or one shard of it) into `out`, skipping points already finished
/// there, and keeps `out/results.csv` current after every point.
pub fn run(path: &Path, sets: &[String], out: &Path, opts: &SweepOptions) -> Result<SweepReport> {
    let mut ex = expand(path, sets)?;
    ex.plan.shard = opts.shard.map(|(i, n)| [i, n]);
    let _lock = prepare(out, &ex.plan)?;
    let plan = &ex.plan;
    let done = finished(out, plan)?;
    let mine: Vec<usize> = plan
        .points
        .iter()
        .map(|p| p.index)
        .filter(|i| in_shard(*i, opts.shard))
        .collect();
    let skipped = mine.iter().filter(|i| done.contains_key(i)).count();
    let mut todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|i| !done.contains_key(i))
        .collect();
    if let Some(limit) = opts.limit {
        todo.truncate(limit);
    }
    let (workers, tile_threads) = split_threads(opts.threads, todo.len());
    let records = Mutex::new(done);
    // results.csv exists (possibly empty) from the start, so a shard with no finished point still has one.
    {
        let r = records.lock().unwrap_or_else(|e| e.into_inner());
        write_atomic(&out.join("results.csv"), &results_csv(plan, &r)?)?;
    }
    if skipped > 0 {
        eprintln!(
            "sweep: {skipped} of {} point(s) already finished in {}; running {}",
            mine.len(),
            out.display(),
            todo.len()
        );
    }
    let progress = Progress::new(todo.len(), &plan.scenario);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let run_point = |index: usize, pool: &rayon::ThreadPool| -> Result<()> {
        let p = &plan.points[index];
        let dir = out.join("points").join(&p.id);
        let started = Instant::now();
        let mut cache = HashMap::new();
        let done = pool.install(|| {
            train_one(
                &RunSpec {
                    text: &ex.text,
                    path,
                    sets,
                    variant: None,
                    point: &ex.sets_per_point[index],
                    dir: &dir,
                    label: p.id.clone(),
                    progress: false,
                    resume: false,
                    stop_after_epoch: None,
                },
                &mut cache,
            )
        })?;
        if done.effective_sha256 != p.effective_sha256 {
            bail!("{}: the configuration changed while the sweep ran", p.id);
        }
        let metrics = final_cells(&done.result.metrics);
        let record = PointRecord {
            format: FORMAT,
            plan_sha256: plan.plan_sha256.clone(),
            index,
            id: p.id.clone(),
            seed: p.seed,
            effective_sha256: p.effective_sha256.clone(),
            metrics,
            wall_s: started.elapsed().as_secs_f64(),
        };
        // The marker is written last: a point without it is rerun.
        write_atomic(
            &dir.join("point.json"),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
        let accuracy = record.metrics[0].clone();
        {
            let mut r = records.lock().unwrap_or_else(|e| e.into_inner());
            r.insert(index, record);
            write_atomic(&out.join("results.csv"), &results_csv(plan, &r)?)?;
        }
        progress.point_done(&p.id, &accuracy);
        Ok(())
    };
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new()
                    .num_threads(tile_threads)
                    .build()
                {
                    Ok(p) => p,
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(anyhow!("cannot start a thread pool: {e}"));
                        return;
                    }
                };
                while !failed.load(Ordering::SeqCst) {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&index) = todo.get(k) else { break };
                    if let Err(e) = run_point(index, &pool) {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(
                                e.context(format!("sweep point {}", plan.points[index].id)),
                            );
                    }
                }
            });
        }
    });
    progress.finish();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let ran = progress.done.load(Ordering::SeqCst);
    let finished_now = records.lock().unwrap_or_else(|e| e.into_inner());
    let pending = mine
        .iter()
        .filter(|i| !finished_now.contains_key(i))
        .count();
    write_manifest(out, plan, opts, workers, tile_threads)?;
    Ok(SweepReport {
        total: plan.points.len(),
        in_shard: mine.len(),
        skipped,
        ran,
        pending,
        workers: (workers, tile_threads),
    })
}

fn write_manifest(
    out: &Path,
    plan: &Plan,
    opts: &SweepOptions,
    workers: usize,
    tile_threads: usize,
) -> Result<()> {
    let manifest = serde_json::json!({
        "command": "sweep",
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": crate_versions_json(),
        "scenario": { "path": plan.path, "name": plan.scenario, "overrides": plan.sets },
        "master_seed": plan.master_seed,
        "plan_sha256": plan.plan_sha256,
        "points": plan.points.len(),
        "shard": plan.shard,
        "threads": opts.threads,
        "points_at_a_time": workers,
        "tile_threads_per_point": tile_threads,
        "files": ["plan.json", "plan.csv", "results.csv", "points/<id>/"],
    });
    output::write_manifest(out, &manifest)
}

/// What [`merge`] did.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// Points merged (all of the plan).
    pub points: usize,
    /// Shard folders read.
    pub shards: usize,
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
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
    Ok(MergeReport {
        points: plan.points.len(),
        shards: dirs.len(),
    })
}

/// Quotes a word for a POSIX shell.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Resources a Slurm task asks for: its wall-time limit and its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmLimits {
    /// `#SBATCH --time`, in one of Slurm's forms (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`).
    pub time: String,
    /// `#SBATCH --mem`, a whole number with an optional unit `K`, `M`, `G` or `T` (megabytes without).
    pub mem: String,
}

impl Default for SlurmLimits {
    /// One day and 4 GB a task: above any shipped sweep's need on one node, below common partition caps.
    fn default() -> Self {
        SlurmLimits {
            time: "1-00:00:00".into(),
            mem: "4G".into(),
        }
    }
}

impl SlurmLimits {
    /// Checks both values against Slurm's syntax, naming the option and the accepted forms.
    pub fn validate(&self) -> Result<()> {
        let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
        let clock = |s: &str| {
            let parts: Vec<&str> = s.split(':').collect();
            parts.len() <= 3 && parts.iter().all(|p| num(p))
        };
        let time_ok = match self.time.split_once('-') {
            Some((days, rest)) => num(days) && rest.split(':').count() <= 3 && clock(rest),
            None => clock(&self.time),
        };
        if !time_ok
            || self
                .time
                .split([':', '-'])
                .all(|p| p.chars().all(|c| c == '0'))
        {
            bail!(
                "--sbatch-time {:?}: give Slurm's time limit as minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 12:00:00 or 2-00:00:00), not zero",
                self.time
            );
        }
        let digits = self.mem.trim_end_matches(['K', 'M', 'G', 'T']);
        if !num(digits) || self.mem.len() > digits.len() + 1 || digits.chars().all(|c| c == '0') {
            bail!(
                "--sbatch-mem {:?}: give a whole number of megabytes, or one with a unit K, M, G or T (e.g. 4G)",
                self.mem
            );
        }
        Ok(())
    }
}

/// A path as one `#SBATCH` option value: Slurm reads these lines itself (no shell), expands `%`
/// patterns and takes a double-quoted value whole, so `%` is doubled and paths with blanks are quoted.
/// `pattern` (such as `%a`) is appended as it is.
fn sbatch_value(path: &str, pattern: &str) -> Result<String> {
    if path.contains(['"', '\n', '\r']) {
        bail!(
            "--out {path:?}: Slurm cannot take a log path with a double quote or a line break; choose another folder"
        );
    }
    let v = path.replace('%', "%%") + pattern;
    Ok(if v.chars().any(char::is_whitespace) {
        format!("\"{v}\"")
    } else {
        v
    })
}

/// A Slurm job-array script that runs the sweep in `shards` tasks of `cpus` CPUs each, every task
/// writing into `<out>/shard-<i>`, plus the merge command to run when all have finished. Paths are
/// made absolute so the script runs from any folder, and quoted for the shell (and for Slurm's own
/// `#SBATCH` lines), so no character of a path or a `--set` is expanded when the job runs.
pub fn sbatch_script(
    path: &Path,
    sets: &[String],
    out: &Path,
    shards: usize,
    cpus: usize,
    limits: &SlurmLimits,
    plan: &Plan,
) -> Result<String> {
    if shards == 0 {
        bail!("--emit-sbatch needs at least 1 shard");
    }
    limits.validate()?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let scenario = abs(path).display().to_string();
    let out_abs = abs(out).display().to_string();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "aimsim".into());
    let name: String = plan
        .scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut set_args = String::new();
    for s in sets {
        set_args += &format!(" --set {}", sh_quote(s));
    }
    let per_shard = plan.points.len().div_ceil(shards);
    let out_q = sh_quote(&out_abs);
    let exe_q = sh_quote(&exe);
    let merge = format!("{exe_q} sweep merge {out_q}/shard-* --out {out_q}/merged");
    let log = sbatch_value(&format!("{out_abs}/logs/shard-"), "%a.log")?;
    Ok(format!(
        r#"#!/bin/bash
# Slurm job array for the sweep of {scenario}
# {points} point(s) in {shards} shard(s) (about {per_shard} each, round robin over the plan).
# Written by `aimsim sweep --emit-sbatch {shards}`. Submit with: sbatch {out_q}/sweep.sbatch
# A task that fails or is cancelled can be resubmitted (sbatch --array=<i> ...): finished points are kept.
#SBATCH --job-name=aimsim-{name}
#SBATCH --array=0-{last}
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --mem={mem}
#SBATCH --output={log}
set -euo pipefail
AIMSIM="${{AIMSIM:-{exe_q}}}"
"$AIMSIM" sweep {scenario_q}{set_args} \
    --out {out_q}/shard-"$SLURM_ARRAY_TASK_ID" \
    --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" \
    --threads "${{SLURM_CPUS_PER_TASK:-{cpus}}}"

# When every task has finished, merge (checks that each point is present exactly once):
#   "$AIMSIM" sweep merge {out_q}/shard-* --out {out_q}/merged
# or submit it as a dependent job:
#   sbatch --dependency=afterok:<job id> --wrap {merge_q}
"#,
        points = plan.points.len(),
        last = shards - 1,
        time = limits.time,
        mem = limits.mem,
        merge_q = sh_quote(&merge),
        scenario_q = sh_quote(&scenario),
    ))
}

/// Writes `<out>/sweep.sbatch` (and `<out>/logs/`, which Slurm needs to exist) and the plan.
pub fn emit_sbatch(
    path: &Path,
    sets: &[String],
    out: &Path,
    shards: usize,
    cpus: usize,
    limits: &SlurmLimits,
) -> Result<PathBuf> {
    limits.validate()?;
    let plan = write_plan_only(path, sets, out, None)?;
    let script = sbatch_script(path, sets, out, shards, cpus, limits, &plan)?;
    ensure_dir(&out.join("logs"))?;
    let file = out.join("sweep.sbatch");
    write_atomic(&file, script.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_syntax() {
        assert_eq!(parse_shard("0/3").unwrap(), (0, 3));
        assert_eq!(parse_shard("2/3").unwrap(), (2, 3));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_the_plan() {
        for n in 1..6 {
            for index in 0..40 {
                let owners = (0..n).filter(|i| in_shard(index, Some((*i, n)))).count();
                assert_eq!(owners, 1);
            }
        }
    }

    #[test]
    fn threads_go_to_points_first() {
        assert_eq!(split_threads(2, 10), (2, 1));
        assert_eq!(split_threads(2, 1), (1, 2));
        assert_eq!(split_threads(8, 3), (3, 2));
        assert_eq!(split_threads(1, 0), (1, 1));
    }

    #[test]
    fn point_seeds_are_stable_and_distinct() {
        // Pinned: changing the derivation would silently change every published sweep.
        let a: Vec<u64> = (0..4).map(|i| point_seed(7, i)).collect();
        let b: Vec<u64> = (0..4).map(|i| point_seed(7, i)).collect();
        assert_eq!(a, b);
        assert_eq!(point_seed(5, 0), 273_206_254_679_030_381);
        assert_eq!(point_seed(5, 1), 7_956_903_049_813_327_979);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert!(a.iter().all(|s| *s <= i64::MAX as u64));
        assert_ne!(point_seed(8, 0), a[0]);
    }

    #[test]
    fn ids_pad_to_the_plan_size() {
        assert_eq!(point_id(3, 10), "p0003");
        assert_eq!(point_id(12345, 20000), "p12345");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("a/b.toml"), "a/b.toml");
        assert_eq!(sh_quote("x y"), "'x y'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(
            sh_quote("device.d2d.nl_up={dist=\"normal\"}"),
            "'device.d2d.nl_up={dist=\"normal\"}'"
        );
    }
}
