//! A small persistent thread pool for the training step: `run(f)` calls `f(part, parts)` once for
//! every part of a job, on whichever of the pool's threads claims it first (the caller is one of
//! them), and returns when every part is done.
//!
//! A training step has about a dozen parallel regions and lasts about a millisecond, so waking
//! threads through the OS (several microseconds each) on every region would cost seconds over a
//! run. Idle workers therefore spin for a short while ([`SPIN`]) and only then sleep on a futex.
//!
//! On a busy machine a worker can be off its core for milliseconds. The pool never waits for a
//! worker that has not started: parts are claimed from a shared counter, so the caller takes the
//! parts nobody else took, and a job is *closed* once all its parts are claimed. A worker that
//! arrives after the close leaves without touching the job, and the caller waits only for the
//! workers that joined before it (each finishing the part it holds). While it waits, the caller
//! spins briefly and then sleeps, leaving its core to the thread it waits for.
//!
//! Which thread runs a part never changes a result: each part writes its own outputs, and the
//! kernels reduce every output element in the same order whatever the split.
//!
//! A panic in any part ends the job cleanly: the other parts still run or are skipped, the caller
//! waits for every joined worker as usual, and then resumes the first panic on its own thread.

use atomic_wait::{wait, wake_all};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Job = dyn Fn(usize, usize) + Sync;

/// How long an idle worker, or a caller waiting for a worker, spins before it sleeps. Longer than
/// the serial work between two parallel regions of a step (so that an idle machine never pays
/// for a wake-up), short enough that a descheduled peer gets the core back quickly.
pub const SPIN: Duration = Duration::from_micros(50);

/// The state word: `epoch << 1 | open`. A job is open from its publication until all its parts
/// are claimed (or it panicked); the epoch tells jobs apart.
const OPEN: u32 = 1;

struct Shared {
    /// `epoch << 1 | OPEN` while a job is open, `epoch << 1` once it is closed.
    state: AtomicU32,
    /// Workers inside the current job (joined, not yet left).
    active: AtomicU32,
    /// Workers asleep on `state`, waiting for a job.
    sleepers: AtomicU32,
    /// Whether the caller sleeps on `active`, waiting for the joined workers to leave.
    caller_waits: AtomicBool,
    /// The next part of the current job to be claimed.
    next: AtomicUsize,
    /// The current job and its number of parts, written only while no worker is inside a job
    /// (before the state opens it); see the safety comment in [`Pool::run_parts`].
    job: std::cell::UnsafeCell<Option<(JobPtr, usize)>>,
    /// The first panic of the current job, resumed by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
}

// SAFETY: `job` is written by the caller only while the job is closed and no worker is inside it
// (`active` is 0 and the state says closed), and read by workers only between joining an open
// job and leaving it; the SeqCst accesses to `state` and `active` order the two.
unsafe impl Sync for Shared {}

/// A job reference with its lifetime erased; see the safety comment in [`Pool::run_parts`].
#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is `Sync`, and `run_parts` keeps it alive while any worker may use it.
unsafe impl Send for JobPtr {}

pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Spin until `ready()` holds or [`SPIN`] has passed; whether it holds.
fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > SPIN {
            return ready();
        }
    }
}

impl Pool {
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: AtomicU32::new(0),
            active: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            caller_waits: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            job: std::cell::UnsafeCell::new(None),
            panic: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let workers = (1..threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("mnist-mlp-kernel-{t}"))
                    .spawn(move || worker(&shared))
                    .expect("spawning a kernel thread")
            })
            .collect();
        Pool {
            threads,
            shared,
            workers,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(t, threads)` for t = 0..threads, in parallel; return when all calls returned.
    pub fn run(&self, f: &(dyn Fn(usize, usize) + Sync)) {
        self.run_parts(self.threads, f);
    }

    /// Run `f(part, parts)` once for every part in 0..parts, on the pool's threads; return when
    /// all calls returned. A panic in any call is resumed here, after every other call is done.
    pub fn run_parts(&self, parts: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.threads == 1 || parts <= 1 {
            for part in 0..parts {
                f(part, parts);
            }
            return;
        }
        let shared = &*self.shared;
        // SAFETY: we erase the lifetime of `f` to hand it to the workers. A worker calls it only
        // after joining this job while it is open, and this function closes the job and waits
        // until no joined worker is left before it returns or unwinds, so the reference never
        // outlives the borrow. The job slot is written while the previous job is closed and
        // `active` is 0: no worker reads it then.
        let short: *const (dyn Fn(usize, usize) + Sync + '_) = f;
        let ptr = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), *const Job>(short)
        });
        unsafe { *shared.job.get() = Some((ptr, parts)) };
        shared.next.store(0, SeqCst);
        let epoch = (shared.state.load(SeqCst) >> 1).wrapping_add(1);
        shared.state.store(epoch << 1 | OPEN, SeqCst);
        if shared.sleepers.load(SeqCst) > 0 {
            wake_all(&shared.state);
        }
        let mine = catch_unwind(AssertUnwindSafe(|| claim_parts(shared, f, parts)));
        if mine.is_err() {
            // No more parts for anyone.
            shared.next.store(usize::MAX / 2, SeqCst);
        }
        // Close the job (nobody joins it any more), then wait for those who did.
        shared.state.store(epoch << 1, SeqCst);
        wait_for_workers(shared);
        let theirs = shared.panic.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            resume_unwind(payload);
        }
    }
}

/// Claim and run parts of the current job until none is left.
fn claim_parts(shared: &Shared, f: &(dyn Fn(usize, usize) + Sync + '_), parts: usize) {
    loop {
        let part = shared.next.fetch_add(1, SeqCst);
        if part >= parts {
            return;
        }
        f(part, parts);
    }
}

/// Wait until no worker is inside the closed job: spin for [`SPIN`], then sleep until the last
/// one leaves.
fn wait_for_workers(shared: &Shared) {
    if spin_until(|| shared.active.load(SeqCst) == 0) {
        return;
    }
    loop {
        shared.caller_waits.store(true, SeqCst);
        let active = shared.active.load(SeqCst);
        if active == 0 {
            break;
        }
        wait(&shared.active, active);
    }
    shared.caller_waits.store(false, SeqCst);
}

fn worker(shared: &Shared) {
    let mut seen = 0u32;
    loop {
        // Wait for an open job we have not taken part in yet.
        let fresh = |s: u32| s & OPEN == OPEN && s >> 1 != seen;
        let mut s = shared.state.load(SeqCst);
        if !fresh(s) && !shared.stop.load(SeqCst) {
            if spin_until(|| fresh(shared.state.load(SeqCst)) || shared.stop.load(SeqCst)) {
                s = shared.state.load(SeqCst);
            } else {
                shared.sleepers.fetch_add(1, SeqCst);
                loop {
                    s = shared.state.load(SeqCst);
                    if fresh(s) || shared.stop.load(SeqCst) {
                        break;
                    }
                    wait(&shared.state, s);
                }
                shared.sleepers.fetch_sub(1, SeqCst);
            }
        }
        if shared.stop.load(SeqCst) {
            return;
        }
        if !fresh(s) {
            continue;
        }
        seen = s >> 1;
        // Join, then check that the job is still the open one we saw: if the caller closed it
        // meanwhile, it may not be waiting for us, and the job may be gone.
        shared.active.fetch_add(1, SeqCst);
        if shared.state.load(SeqCst) == s {
            // SAFETY: the job is open and we are counted in `active`, so the caller neither
            // returns nor rewrites the slot until we leave (see `Pool::run_parts`).
            let (job, parts) = unsafe { *shared.job.get() }.expect("a job is set before it opens");
            let result = catch_unwind(AssertUnwindSafe(|| {
                claim_parts(shared, unsafe { &*job.0 }, parts)
            }));
            if let Err(payload) = result {
                // No more parts for anyone; the caller resumes the panic.
                shared.next.store(usize::MAX / 2, SeqCst);
                let mut first = shared.panic.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(payload);
            }
        }
        if shared.active.fetch_sub(1, SeqCst) == 1 && shared.caller_waits.load(SeqCst) {
            atomic_wait::wake_one(&shared.active);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        // Any value change wakes sleepers; keep the job closed.
        self.shared.state.fetch_add(2, SeqCst);
        wake_all(&self.shared.state);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The `t`-th of `parts` near-equal pieces of `0..n`, in multiples of `align` (except the last).
pub fn split(n: usize, parts: usize, t: usize, align: usize) -> std::ops::Range<usize> {
    let units = n.div_ceil(align);
    let start = (units * t / parts * align).min(n);
    let end = (units * (t + 1) / parts * align).min(n);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_per_job_and_sees_the_callers_data() {
        let pool = Pool::new(3);
        for parts in [1, 2, 3, 7] {
            for round in 0..100 {
                let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                pool.run_parts(parts, &|t, n| {
                    assert_eq!(n, parts);
                    hits[t].fetch_add(round + 1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == round + 1));
            }
        }
    }

    #[test]
    fn jobs_after_an_idle_spell_still_run_on_the_workers() {
        // Workers asleep on the futex must wake for the next job.
        let pool = Pool::new(2);
        for _ in 0..3 {
            std::thread::sleep(SPIN * 20);
            let on_worker = AtomicBool::new(false);
            let caller = std::thread::current().id();
            // Enough parts, each slow enough, that the woken worker takes some.
            pool.run_parts(64, &|_, _| {
                if std::thread::current().id() != caller {
                    on_worker.store(true, SeqCst);
                }
                std::thread::sleep(Duration::from_micros(200));
            });
            assert!(on_worker.load(SeqCst), "no part ran on the worker");
        }
    }

    #[test]
    fn more_parts_than_threads_each_run_exactly_once() {
        let pool = Pool::new(4);
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        pool.run_parts(1000, &|part, _| {
            hits[part].fetch_add(1, SeqCst);
        });
        assert!(hits.iter().all(|h| h.load(SeqCst) == 1));
    }

    #[test]
    fn a_panic_in_the_callers_part_reaches_the_caller_after_the_workers_are_done() {
        let pool = Pool::new(3);
        let (entered, left) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let caller = std::thread::current().id();
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|_, _| {
                if std::thread::current().id() == caller {
                    // Panic while both workers are inside their parts.
                    let start = Instant::now();
                    while entered.load(SeqCst) < 2 && start.elapsed() < Duration::from_secs(2) {
                        std::hint::spin_loop();
                    }
                    panic!("boom in the caller");
                }
                entered.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                left.fetch_add(1, SeqCst);
            })
        }));
        // Every worker that entered the job has left it before the panic reached us.
        let (inside, out) = (entered.load(SeqCst), left.load(SeqCst));
        let message = result.expect_err("the panic must reach the caller");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"boom in the caller"));
        assert_eq!((inside, out), (2, 2), "workers still inside the job");
        // And the pool still works.
        let hits = AtomicUsize::new(0);
        pool.run(&|_, _| {
            hits.fetch_add(1, SeqCst);
        });
        assert_eq!(hits.load(SeqCst), 3);
    }

    #[test]
    fn a_panic_in_a_workers_part_reaches_the_caller_instead_of_a_hang() {
        let pool = Pool::new(2);
        for _ in 0..20 {
            let result = catch_unwind(AssertUnwindSafe(|| {
                pool.run(&|part, _| {
                    if part == 1 {
                        panic!("boom in part {part}");
                    }
                    std::thread::sleep(Duration::from_micros(100));
                })
            }));
            let message = result.expect_err("the panic must reach the caller");
            let text = message
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or_default();
            assert_eq!(text, "boom in part 1");
        }
    }

    #[test]
    fn split_covers_the_range_in_aligned_pieces() {
        for (n, parts, align) in [(500, 2, 24), (10, 2, 4), (7, 3, 1), (3, 4, 8)] {
            let pieces: Vec<_> = (0..parts).map(|t| split(n, parts, t, align)).collect();
            assert_eq!(pieces[0].start, 0);
            assert_eq!(pieces.last().unwrap().end, n);
            for w in pieces.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(w[0].end % align.min(n.max(1)), 0, "{pieces:?}");
            }
        }
    }
}
