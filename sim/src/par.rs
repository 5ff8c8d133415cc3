//! Parallel execution of a phase's per-tile jobs.
//!
//! Training at batch 1 runs a few short parallel phases per sample (the forward read of a layer's tiles,
//! the pulsed update of every tile), each lasting tens of microseconds. A general-purpose pool lets its
//! idle workers fall asleep between such phases, and waking them costs about as much as the phase itself.
//! A [`Team`] keeps a fixed set of helper threads polling for work while a training run lasts, and falls
//! back to sleeping on a condition variable when no work has come for a while.
//!
//! [`run`] executes a list of [`Job`]s: on the calling thread's team when there is one, otherwise on
//! rayon's current pool. Which thread runs a job never changes a result: every tile owns its random
//! stream, and the callers combine the jobs' outputs in a fixed order.

use std::any::Any;
use std::cell::Cell;
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

/// How long an idle helper polls before it sleeps.
const POLL: Duration = Duration::from_micros(200);

thread_local! {
    /// The team this thread leads, if any.
    static TEAM: Cell<Option<*const Shared>> = const { Cell::new(None) };
    /// True while this thread runs a job of a team (nested [`run`] calls then run inline).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

type Panic = Box<dyn Any + Send + 'static>;

struct Shared {
    /// Bumped once per published batch of work.
    generation: AtomicU64,
    /// Helpers that have finished the current batch.
    finished: AtomicUsize,
    /// Per helper, the current batch (job lifetimes erased; see [`run_on`]).
    slots: Vec<Mutex<Option<Arc<Batch>>>>,
    /// Helpers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// The first panic of a helper's job in the current batch.
    panic: Mutex<Option<Panic>>,
}

/// A set of threads that serves every [`run`] called by the thread that created it. See the module
/// documentation.
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<std::thread::JoinHandle<()>>,
}

impl Team {
    /// Runs `f` with a team of `threads` threads (this one plus `threads - 1` helpers) serving every
    /// [`run`] that `f` makes on this thread. With `threads <= 1`, or when this thread already leads a
    /// team or runs a team's job, `f` simply runs (jobs then run on the existing team, inline, or on
    /// rayon's pool as usual).
    pub fn scope<R>(threads: usize, f: impl FnOnce() -> R) -> R {
        if threads <= 1 || TEAM.with(|t| t.get().is_some()) || IN_JOB.with(|j| j.get()) {
            return f();
        }
        let team = Team::new(threads - 1);
        TEAM.with(|t| t.set(Some(Arc::as_ptr(&team.shared))));
        // Unset the thread's team even if `f` panics, before the helpers are stopped.
        struct Unset;
        impl Drop for Unset {
            fn drop(&mut self) {
                TEAM.with(|t| t.set(None));
            }
        }
        let unset = Unset;
        let r = f();
        drop(unset);
        drop(team);
        r
    }

    fn new(helpers: usize) -> Team {
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
        Team { shared, helpers }
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
            .field("threads", &(self.helpers.len() + 1))
            .finish()
    }
}

/// A helper's life: wait for a batch, run its share, report, until the team is dropped.
fn helper(s: &Shared, me: usize) {
    IN_JOB.with(|j| j.set(true));
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
        if let Some(p) = batch.and_then(|b| b.work()) {
            s.panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
        s.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs every job to completion and returns when all have run. On a team (see [`Team::scope`]) the
/// threads (the calling one included) take the jobs one at a time, largest estimated cost first; without
/// a team, on rayon's current pool. Inside a team's job, inline. A panicking job is re-raised here once
/// every other job has finished.
pub fn run(jobs: Vec<Job<'_>>) {
    if jobs.len() <= 1 || IN_JOB.with(|j| j.get()) {
        for j in jobs {
            (j.f)();
        }
        return;
    }
    match TEAM.with(|t| t.get()) {
        // SAFETY: the pointer is set by `Team::scope` on this thread and cleared before its team (which
        // owns the `Arc`) is dropped, so it is valid for the whole call.
        Some(p) => run_on(unsafe { &*p }, jobs),
        None => {
            use rayon::prelude::*;
            jobs.into_par_iter().for_each(|j| (j.f)());
        }
    }
}

fn run_on(s: &Shared, jobs: Vec<Job<'_>>) {
    let threads = s.slots.len() + 1;
    // Largest first: every thread takes the next job in this order when it is free.
    let mut jobs = jobs;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.cost));
    let batch: Vec<Mutex<Option<Job<'static>>>> = jobs
        .into_iter()
        // SAFETY: the jobs borrow data that outlives this call, and this function does not return (nor
        // unwind) before every helper has reported the batch finished, by which time each job has run
        // (or been dropped with the batch, here).
        .map(|j| {
            Mutex::new(Some(unsafe {
                std::mem::transmute::<Job<'_>, Job<'static>>(j)
            }))
        })
        .collect();
    let batch = Arc::new(Batch {
        jobs: batch,
        next: AtomicUsize::new(0),
    });
    s.finished.store(0, Ordering::SeqCst);
    for slot in &s.slots {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&batch));
    }
    s.generation.fetch_add(1, Ordering::SeqCst);
    if s.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
    IN_JOB.with(|j| j.set(true));
    let own_panic = batch.work();
    IN_JOB.with(|j| j.set(false));
    // The helpers never sleep with work pending, so polling (and yielding the core now and then) ends.
    let since = Instant::now();
    let mut polls = 0u32;
    while s.finished.load(Ordering::Acquire) < threads - 1 {
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) && since.elapsed() > POLL {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let helper_panic = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = own_panic.or(helper_panic) {
        resume_unwind(p);
    }
}

/// The jobs of one [`run`] on a team; each thread takes the next unclaimed one until none is left.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn work(threads: usize, rounds: usize) -> Vec<u64> {
        let mut cells = vec![0u64; 7];
        Team::scope(threads, || {
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
                run(jobs);
            }
        });
        cells
    }

    #[test]
    fn every_job_runs_once_per_call_at_any_team_size() {
        let want = work(1, 500);
        for threads in [2, 3, 5] {
            assert_eq!(work(threads, 500), want, "{threads} threads");
        }
    }

    #[test]
    fn helpers_wake_after_sleeping() {
        let mut hits = [0u32; 4];
        Team::scope(3, || {
            for _ in 0..3 {
                // Longer than the polling window: the helpers are asleep when the next batch comes.
                std::thread::sleep(POLL * 5);
                run(hits
                    .iter_mut()
                    .map(|h| Job::new(1, move || *h += 1))
                    .collect());
            }
        });
        assert_eq!(hits, [3; 4]);
    }

    #[test]
    fn a_panicking_job_is_re_raised_after_the_others_finish() {
        let mut done = [false; 6];
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Team::scope(2, || {
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
                run(jobs);
            })
        }));
        assert!(r.is_err());
        assert_eq!(done, [true, true, true, false, true, true]);
        // The thread leads no team any more: a new one can be made.
        assert_eq!(work(2, 3), work(1, 3));
    }

    #[test]
    fn nested_runs_inside_a_job_run_inline() {
        let mut outer = [0u32; 3];
        Team::scope(2, || {
            run(outer
                .iter_mut()
                .map(|o| {
                    Job::new(1, move || {
                        let mut inner = [0u32; 4];
                        run(inner
                            .iter_mut()
                            .map(|v| Job::new(1, move || *v = 1))
                            .collect());
                        *o = inner.iter().sum();
                    })
                })
                .collect());
        });
        assert_eq!(outer, [4; 3]);
    }
}
