//! Parallel execution of a phase's per-tile jobs.
//!
//! Every function that runs tiles in parallel takes a [`Par`] argument, as faer's kernels take theirs: the
//! caller sees, and chooses, where the jobs may run. [`Par::Seq`] runs them on the calling thread,
//! [`Par::Rayon`] on rayon's current pool, [`Par::Team`] on a [`Team`].
//!
//! Training at batch 1 runs a few short parallel phases per sample (the forward read of a layer's tiles,
//! the pulsed update of every tile), each lasting tens of microseconds. A general-purpose pool lets its
//! idle workers fall asleep between such phases, and waking them costs about as much as the phase itself.
//! A [`Team`] keeps a fixed set of helper threads polling for work while it lives, and lets them sleep on
//! a condition variable when no work has come for a while.
//!
//! Polling helpers pay off only while they own a core. When another process competes for the cores, a
//! helper that is descheduled holds up the phase it took a job of, and its polling takes time from the
//! thread that does the serial work; two threads then run slower than one. So a team measures, as it
//! runs, how many phases per second it completes with its jobs spread over all its threads and with every
//! job on the calling thread (the helpers asleep), and keeps the faster way ([`Spread::Adaptive`], see
//! [`TeamReport`] for what it found).
//!
//! Which thread runs a job never changes a result: every tile owns its random stream, and the callers
//! combine the jobs' outputs in a fixed order. So the executor, the thread count and the team's choices
//! are free to change from phase to phase.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One unit of parallel work with its estimated cost (any unit, compared between the jobs of one call).
pub struct Job<'a> {
    cost: u64,
    f: Box<dyn FnOnce() + Send + 'a>,
}

impl<'a> Job<'a> {
    /// A job of estimated cost `cost` (for a tile, its cells).
    pub fn new(cost: u64, f: impl FnOnce() + Send + 'a) -> Self {
        Job {
            cost,
            f: Box::new(f),
        }
    }
}

impl std::fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("cost", &self.cost).finish()
    }
}

/// Where the jobs of a parallel phase may run. Passed by value to every function that runs tiles in
/// parallel, so the caller decides (and sees) what a phase may use.
///
/// A `Par` cannot be sent to another thread (a [`Team`] serves the one thread that holds it), so no job
/// can capture one: a job never starts parallel work of its own.
///
/// ```compile_fail
/// use aimsim_sim::par::{Job, Team};
/// let team = Team::new(2);
/// let par = team.par();
/// // A job that would run jobs on the team that runs it: rejected, `Par` is not `Send`.
/// par.run(vec![Job::new(1, move || par.run(Vec::new())), Job::new(1, || {})]);
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Par<'t> {
    /// Every job on the calling thread, one after the other.
    Seq,
    /// On rayon's current pool (the pool whose `install` the caller runs in, else the global pool).
    Rayon,
    /// On a team of threads led by the calling thread.
    Team(&'t Team),
}

impl Par<'_> {
    /// Runs every job to completion and returns when all have run. A call with at most one job runs it
    /// on the calling thread. On a team, a panicking job is re-raised here once every other job has
    /// finished.
    pub fn run(self, jobs: Vec<Job<'_>>) {
        if jobs.len() <= 1 {
            return run_here(jobs);
        }
        match self {
            Par::Seq => run_here(jobs),
            Par::Rayon => {
                use rayon::prelude::*;
                jobs.into_par_iter().for_each(|j| (j.f)());
            }
            Par::Team(t) => t.run(jobs),
        }
    }

    /// Threads the jobs may use (rayon's current pool's size for [`Par::Rayon`]).
    pub fn threads(self) -> usize {
        match self {
            Par::Seq => 1,
            Par::Rayon => rayon::current_num_threads(),
            Par::Team(t) => t.threads(),
        }
    }
}

/// Runs `jobs` on this thread, in order.
fn run_here(jobs: Vec<Job<'_>>) {
    for j in jobs {
        (j.f)();
    }
}

/// How long an idle helper polls before it sleeps, and the leader waits before it yields its core.
const POLL: Duration = Duration::from_micros(200);
/// Length of each measurement window of an adaptive team.
const WINDOW: Duration = Duration::from_millis(25);
/// A pause between two phases longer than this restarts the measurement in progress (the workload
/// stopped: evaluation, a checkpoint, the end of the run).
const GAP: Duration = Duration::from_millis(10);
/// Shortest and longest time between two comparisons. The interval doubles each time a comparison
/// confirms the current choice and falls back to the shortest after a change.
const MIN_HOLD: Duration = Duration::from_millis(200);
const MAX_HOLD: Duration = Duration::from_millis(3200);
/// The other way must be this much faster (relative) to be taken.
const MARGIN: f64 = 0.03;
/// The current way's rate before and after a probe must agree this well (relative) for the comparison
/// to count; otherwise the workload changed during it (or the machine is noisy), and it is repeated after
/// the same interval.
const CONSISTENT: f64 = 0.10;

/// How a [`Team`] distributes the jobs of a phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spread {
    /// Measure, as the team runs, the phases per second with the jobs spread over every thread and with
    /// all of them on the calling thread, and keep the faster way: on a machine shared with other
    /// processes, polling helpers can lose their cores, and one thread is then faster than two.
    #[default]
    Adaptive,
    /// Always spread the jobs over every thread.
    Always,
}

/// What an adaptive team did and found, for reports: how many phases ran spread over all its threads,
/// how many on the calling thread alone, and the rates of the last comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamReport {
    /// The team's threads (the calling one included).
    pub threads: usize,
    /// How the team distributes jobs.
    pub spread: Spread,
    /// Phases (of more than one job) spread over all threads.
    pub spread_phases: u64,
    /// Phases run on the calling thread alone.
    pub solo_phases: u64,
    /// Comparisons that counted (the rates before and after the probe agreed).
    pub comparisons: u32,
    /// Times the team changed its way of running.
    pub switches: u32,
    /// Phases per second of the last comparison that counted: (spread over all threads, calling thread
    /// alone).
    pub last_rates: Option<(f64, f64)>,
    /// Whether the team spreads its jobs now.
    pub spreading: bool,
}

impl TeamReport {
    /// Share of the phases that ran spread over all threads, 0 to 1 (1 when none ran).
    pub fn spread_share(&self) -> f64 {
        let n = self.spread_phases + self.solo_phases;
        if n == 0 {
            1.0
        } else {
            self.spread_phases as f64 / n as f64
        }
    }
}

type Panic = Box<dyn Any + Send + 'static>;

struct Shared {
    /// Bumped once per published batch of work.
    generation: AtomicU64,
    /// Helpers that have finished the current batch.
    finished: AtomicUsize,
    /// Per helper, the current batch (job lifetimes erased; see [`Team::run_spread`]).
    slots: Vec<Mutex<Option<Arc<Batch>>>>,
    /// Helpers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// The first panic of a helper's job in the current batch.
    panic: Mutex<Option<Panic>>,
}

/// A set of threads that runs the jobs of [`Par::Team`] phases: the thread that calls [`Par::run`] plus
/// `threads - 1` helpers, which live as long as the team. See the module documentation.
///
/// A team serves one thread at a time: it is not `Sync`, so the [`Par`] borrowed from it cannot leave the
/// thread that holds the team.
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<std::thread::JoinHandle<()>>,
    /// The adaptive choice; a `RefCell` also makes the team `!Sync`, which [`Team::run_spread`]'s safety
    /// argument relies on.
    adapt: RefCell<Adapt>,
}

impl Team {
    /// A team of `threads` threads (the calling one plus `threads - 1` helpers) that adapts how it
    /// spreads jobs ([`Spread::Adaptive`]). With `threads <= 1` it has no helpers and runs every job on
    /// the calling thread.
    pub fn new(threads: usize) -> Team {
        Team::with_spread(threads, Spread::Adaptive)
    }

    /// A team of `threads` threads that spreads jobs as `spread` says.
    pub fn with_spread(threads: usize, spread: Spread) -> Team {
        let helpers = threads.max(1) - 1;
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            slots: (0..helpers).map(|_| Mutex::new(None)).collect(),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let helpers = (0..helpers)
            .map(|k| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("aimsim-team-{}", k + 1))
                    .spawn(move || helper(&s, k))
                    .expect("spawn a team thread")
            })
            .collect();
        Team {
            shared,
            helpers,
            adapt: RefCell::new(Adapt::new(spread)),
        }
    }

    /// The executor that runs phases on this team.
    pub fn par(&self) -> Par<'_> {
        Par::Team(self)
    }

    /// Threads of the team, the calling one included.
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// What the team did so far, and why.
    pub fn report(&self) -> TeamReport {
        let a = self.adapt.borrow();
        TeamReport {
            threads: self.threads(),
            spread: a.spread,
            spreading: a.spreading,
            ..a.report.clone()
        }
    }

    /// Runs `jobs` (more than one) spread over the team or on this thread, as the adaptive choice says.
    fn run(&self, jobs: Vec<Job<'_>>) {
        if self.helpers.is_empty() {
            return run_here(jobs);
        }
        let spread = self.adapt.borrow_mut().next_phase(Instant::now());
        if spread {
            self.run_spread(jobs);
        } else {
            run_here(jobs);
        }
    }

    /// Every thread of the team (this one included) takes the jobs one at a time, largest estimated cost
    /// first, until none is left; returns when every helper has finished.
    fn run_spread(&self, jobs: Vec<Job<'_>>) {
        let s = &*self.shared;
        let mut jobs = jobs;
        jobs.sort_by_key(|j| std::cmp::Reverse(j.cost));
        let jobs = jobs
            .into_iter()
            .map(|j| {
                // SAFETY: this erases the jobs' borrow lifetime `'_` so that the helpers, which outlive
                // this call, can hold them. A job borrows only data that outlives this call, and no thread
                // touches a job after this function has returned or unwound:
                // - until the generation is bumped below, no helper looks at its slot, and nothing between
                //   here and that bump can panic (poisoned locks are entered anyway);
                // - from the bump on, `Wait` holds this thread (returning or unwinding) until every helper
                //   has reported the batch finished, and a helper reports only after its last job has
                //   returned and after it has dropped its handle on the batch;
                // - every job is taken out of the batch (and run, then dropped) by the thread that claims
                //   it, and this thread claims jobs until none is left, so when the helpers have finished
                //   the batch holds no job;
                // - only this thread publishes batches: the team is not `Sync`, so no other thread can
                //   call this function on it, and a job cannot capture the team's `Par` (not `Send`) to
                //   publish a batch from inside a job while this one runs.
                let j = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(j) };
                Mutex::new(Some(j))
            })
            .collect();
        let batch = Arc::new(Batch {
            jobs,
            next: AtomicUsize::new(0),
        });
        s.finished.store(0, Ordering::SeqCst);
        for slot in &s.slots {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&batch));
        }
        s.generation.fetch_add(1, Ordering::SeqCst);
        let wait = Wait(s);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let own_panic = batch.work();
        drop(wait);
        let helper_panic = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = own_panic.or(helper_panic) {
            resume_unwind(p);
        }
    }
}

/// Waits, when dropped, until every helper has finished the current batch.
struct Wait<'a>(&'a Shared);

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let s = self.0;
        // The helpers never sleep with work pending, so polling (and yielding the core now and then) ends.
        let since = Instant::now();
        let mut polls = 0u32;
        while s.finished.load(Ordering::Acquire) < s.slots.len() {
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(64) && since.elapsed() > POLL {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads())
            .finish()
    }
}

/// A helper's life: wait for a batch, run its share, report, until the team is dropped.
fn helper(s: &Shared, me: usize) {
    let mut seen = 0u64;
    loop {
        let since = Instant::now();
        let mut polls = 0u32;
        loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(64) || since.elapsed() < POLL {
                std::hint::spin_loop();
                continue;
            }
            // Idle for a while: sleep until the next batch. The publisher bumps the generation before
            // it reads `sleepers`, this thread counts itself in `sleepers` before it reads the generation
            // (both sequentially consistent), so one of the two sees the other: no lost wake-up.
            let mut g_lock = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.generation.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst)
            {
                g_lock = s.wake.wait(g_lock).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        let batch = s.slots[me].lock().unwrap_or_else(|e| e.into_inner()).take();
        // The batch handle is dropped at the end of this statement, before the batch is reported finished.
        if let Some(p) = batch.and_then(|b| b.work()) {
            s.panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
        s.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// The jobs of one spread phase; each thread takes the next unclaimed one until none is left.
struct Batch {
    jobs: Vec<Mutex<Option<Job<'static>>>>,
    next: AtomicUsize,
}

impl Batch {
    /// Runs jobs until none is left; returns the first panic of a job run by this thread.
    fn work(&self) -> Option<Panic> {
        let mut panic = None;
        loop {
            let k = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(slot) = self.jobs.get(k) else {
                return panic;
            };
            let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(job) = job
                && let Err(p) = catch_unwind(AssertUnwindSafe(job.f))
            {
                panic.get_or_insert(p);
            }
        }
    }
}

/// Where an adaptive team stands in its cycle: hold the current way, then measure it, probe the other
/// way, measure the current way again, and compare.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Run the current way until `until`.
    Hold { until: Instant },
    /// Measurement window `step` (0: the current way, 1: the other way, 2: the current way again),
    /// started at `start`, with `phases` phases so far and the rates of the earlier windows.
    Measure {
        step: usize,
        start: Instant,
        phases: u64,
        rates: [f64; 3],
    },
}

/// The adaptive choice of a team (see [`Spread::Adaptive`]), kept by the leading thread.
#[derive(Debug)]
struct Adapt {
    spread: Spread,
    /// The current way: spread over all threads (true) or on the calling thread.
    spreading: bool,
    stage: Stage,
    /// Interval until the next comparison.
    hold: Duration,
    /// Start of the last phase.
    last: Option<Instant>,
    report: TeamReport,
}

impl Adapt {
    fn new(spread: Spread) -> Adapt {
        Adapt {
            spread,
            spreading: true,
            stage: Stage::Measure {
                step: 0,
                start: Instant::now(),
                phases: 0,
                rates: [0.0; 3],
            },
            hold: MIN_HOLD,
            last: None,
            report: TeamReport::default(),
        }
    }

    /// Called at the start of every phase of more than one job, at `now`; says whether to spread it.
    fn next_phase(&mut self, now: Instant) -> bool {
        if self.spread == Spread::Always {
            self.report.spread_phases += 1;
            return true;
        }
        let paused = self.last.is_none_or(|l| now.duration_since(l) > GAP);
        self.last = Some(now);
        if let Stage::Hold { until } = self.stage
            && now >= until
        {
            self.restart(now, 0, [0.0; 3]);
        }
        if let Stage::Measure {
            step,
            start,
            phases,
            rates,
        } = self.stage
        {
            if paused {
                // The workload stopped in between: the window would count the pause. Start it again.
                self.restart(now, step, rates);
            } else {
                let elapsed = now.duration_since(start);
                if elapsed >= WINDOW {
                    let mut rates = rates;
                    rates[step] = phases as f64 / elapsed.as_secs_f64();
                    if step < 2 {
                        self.restart(now, step + 1, rates);
                    } else {
                        self.decide(now, rates);
                    }
                }
            }
        }
        let spread = match &mut self.stage {
            Stage::Measure { step, phases, .. } => {
                *phases += 1;
                (*step == 1) != self.spreading
            }
            Stage::Hold { .. } => self.spreading,
        };
        if spread {
            self.report.spread_phases += 1;
        } else {
            self.report.solo_phases += 1;
        }
        spread
    }

    fn restart(&mut self, now: Instant, step: usize, rates: [f64; 3]) {
        self.stage = Stage::Measure {
            step,
            start: now,
            phases: 0,
            rates,
        };
    }

    /// Compares the probe of the other way with the current way measured around it, and holds the
    /// winner.
    fn decide(&mut self, now: Instant, rates: [f64; 3]) {
        let [before, probe, after] = rates;
        let base = 0.5 * (before + after);
        if (before - after).abs() <= CONSISTENT * base {
            self.report.comparisons += 1;
            self.report.last_rates = Some(if self.spreading {
                (base, probe)
            } else {
                (probe, base)
            });
            if probe > (1.0 + MARGIN) * base {
                self.spreading = !self.spreading;
                self.report.switches += 1;
                self.hold = MIN_HOLD;
            } else {
                self.hold = (2 * self.hold).min(MAX_HOLD);
            }
        }
        self.stage = Stage::Hold {
            until: now + self.hold,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(par: Par<'_>, rounds: usize) -> Vec<u64> {
        let mut cells = vec![0u64; 7];
        for r in 0..rounds {
            let jobs = cells
                .iter_mut()
                .enumerate()
                .map(|(k, c)| {
                    Job::new(k as u64 % 3 + 1, move || {
                        *c = c
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add((k + r) as u64);
                    })
                })
                .collect();
            par.run(jobs);
        }
        cells
    }

    #[test]
    fn every_job_runs_once_per_call_on_every_executor() {
        let want = work(Par::Seq, 500);
        assert_eq!(work(Par::Rayon, 500), want, "rayon");
        for threads in [1, 2, 3, 5] {
            for spread in [Spread::Adaptive, Spread::Always] {
                let team = Team::with_spread(threads, spread);
                assert_eq!(work(team.par(), 500), want, "{threads} threads, {spread:?}");
                assert_eq!(team.par().threads(), threads);
            }
        }
    }

    #[test]
    fn helpers_wake_after_sleeping() {
        let mut hits = [0u32; 4];
        let team = Team::with_spread(3, Spread::Always);
        for _ in 0..3 {
            // Longer than the polling window: the helpers are asleep when the next batch comes.
            std::thread::sleep(POLL * 5);
            team.par().run(
                hits.iter_mut()
                    .map(|h| Job::new(1, move || *h += 1))
                    .collect(),
            );
        }
        assert_eq!(hits, [3; 4]);
        assert_eq!(team.report().spread_phases, 3);
    }

    #[test]
    fn a_panicking_job_is_re_raised_after_the_others_finish() {
        let mut done = [false; 6];
        let team = Team::with_spread(2, Spread::Always);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let jobs = done
                .iter_mut()
                .enumerate()
                .map(|(k, d)| {
                    Job::new(1, move || {
                        if k == 3 {
                            panic!("job 3 fails");
                        }
                        *d = true;
                    })
                })
                .collect();
            team.par().run(jobs);
        }));
        assert!(r.is_err());
        assert_eq!(done, [true, true, true, false, true, true]);
        // The team still works after a panic.
        assert_eq!(work(team.par(), 3), work(Par::Seq, 3));
    }

    /// Phases of a fixed length on the calling thread: `spread_cost` when spread, `solo_cost` alone.
    fn simulate(adapt: &mut Adapt, start: Instant, secs: f64, spread_us: u64, solo_us: u64) {
        let mut now = start;
        let end = start + Duration::from_secs_f64(secs);
        while now < end {
            let spread = adapt.next_phase(now);
            now += Duration::from_micros(if spread { spread_us } else { solo_us });
        }
    }

    #[test]
    fn an_adaptive_team_keeps_the_faster_way() {
        let t0 = Instant::now();
        // Spreading is faster: the team keeps spreading, with rare probes of one thread.
        let mut a = Adapt::new(Spread::Adaptive);
        simulate(&mut a, t0, 10.0, 80, 120);
        assert!(a.spreading);
        assert_eq!(a.report.switches, 0);
        assert!(a.report.comparisons >= 3);
        assert!(a.report.spread_phases > 50 * a.report.solo_phases);
        let (s, o) = a.report.last_rates.unwrap();
        assert!((s / o - 1.5).abs() < 0.05, "{s} {o}");
        // One thread is faster: the team switches at the first comparison and stays.
        let mut a = Adapt::new(Spread::Adaptive);
        simulate(&mut a, t0, 10.0, 150, 120);
        assert!(!a.spreading);
        assert_eq!(a.report.switches, 1);
        assert!(a.report.solo_phases > 20 * a.report.spread_phases);
        // The machine changes: the team follows.
        let t1 = t0 + Duration::from_secs(10);
        simulate(&mut a, t1, 10.0, 80, 120);
        assert!(a.spreading);
        assert_eq!(a.report.switches, 2);
    }

    #[test]
    fn a_pause_restarts_the_measurement() {
        let t0 = Instant::now();
        let mut a = Adapt::new(Spread::Adaptive);
        // Phases 100 us apart for 20 ms, a pause of 50 ms, more phases: no window spans the pause.
        simulate(&mut a, t0, 0.02, 100, 100);
        let t1 = t0 + Duration::from_millis(70);
        simulate(&mut a, t1, 0.02, 100, 100);
        assert!(matches!(
            a.stage,
            Stage::Measure {
                step: 0,
                phases: 200,
                ..
            }
        ));
    }

    #[test]
    fn an_always_team_never_measures() {
        let mut a = Adapt::new(Spread::Always);
        simulate(&mut a, Instant::now(), 2.0, 150, 120);
        assert!(a.spreading);
        assert_eq!(a.report.solo_phases, 0);
        assert_eq!(a.report.comparisons, 0);
    }
}
