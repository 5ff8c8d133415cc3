//! `aimsim sweep`: expand a scenario's `[sweep]` section into a plan of points, run them in parallel
//! (all of them, or one shard of a cluster job array), resume after an interruption, and merge shards.
//!
//! The plan is a pure function of the scenario, its `--set` overrides and the master seed: point `i`
//! always has the same values and the seed drawn from stream `(master seed, SweepPoint, i)`. Every point
//! writes its run outputs into `points/<id>/` and, last, `point.json` (the completion marker, written
//! atomically). `results.csv` is rebuilt from the completion markers in plan order after every point, so
//! it never depends on which process or thread ran a point, or in which order. docs/sweeps.md describes
//! the format.

mod merge;
mod plan;
mod slurm;

pub use merge::*;
pub use plan::*;
pub use slurm::*;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::final_cells;
use crate::output::{self, OutLock, crate_versions_json, lock_out, write_atomic};
use crate::run::{RunSpec, train_one};

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
        let point = ex.point_sets(index);
        let done = pool.install(|| {
            train_one(
                &RunSpec {
                    text: &ex.text,
                    path,
                    sets,
                    variant: None,
                    point: &point,
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
        // A scenario with an [inference] section deploys every point as `aimsim infer` does.
        let inference = match &done.trained {
            Some(trained) => {
                let origin = path.display().to_string();
                let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let (s, _, _) = crate::scenario::load_point_str(
                    &ex.text, &origin, &base_dir, sets, None, &point,
                )?;
                match (&s.inference, &s.train) {
                    (Some(_), Some(t)) => {
                        let data = crate::run::cached_dataset(t, s.seed(), &mut cache)?;
                        let rows = crate::infer::infer_one(&s, trained, data, &dir, &p.id, pool)?;
                        crate::infer::summarize(&rows)
                    }
                    _ => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let record = PointRecord {
            format: FORMAT,
            plan_sha256: plan.plan_sha256.clone(),
            index,
            id: p.id.clone(),
            seed: p.seed,
            effective_sha256: p.effective_sha256.clone(),
            metrics,
            wall_s: started.elapsed().as_secs_f64(),
            inference,
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
            if let Some(bytes) = inference_csv(plan, &r)? {
                write_atomic(&out.join("inference.csv"), &bytes)?;
            }
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
