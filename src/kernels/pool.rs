//! A tiny persistent thread pool for the training step: `run(f)` calls `f(t, threads)` on every
//! thread (the caller is thread 0) and returns when all are done.
//!
//! A training step has about a dozen parallel regions and lasts about a millisecond, so waking
//! threads through the OS (tens of microseconds) would cost seconds over a run. Workers spin on
//! an atomic epoch instead, yielding to the OS only after a long idle spell.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Incremented once per job; workers start when they see it change.
    epoch: AtomicUsize,
    /// Workers that finished the current job.
    done: AtomicUsize,
    stop: AtomicBool,
    /// The current job, valid from an epoch change until `done` reaches the worker count.
    job: std::sync::Mutex<Option<JobPtr>>,
}

/// A job reference with its lifetime erased; see the safety comment in [`Pool::run`].
#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is `Sync`, and `run` keeps it alive until every worker is done with it.
unsafe impl Send for JobPtr {}

pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Spins before a waiting thread starts yielding its core to the OS.
const SPINS_BEFORE_YIELD: u32 = 1 << 16;

fn wait_until(mut ready: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if spins < SPINS_BEFORE_YIELD {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

impl Pool {
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            job: std::sync::Mutex::new(None),
        });
        let workers = (1..threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("mnist-mlp-kernel-{t}"))
                    .spawn(move || worker(t, threads, &shared))
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
        if self.threads == 1 {
            f(0, 1);
            return;
        }
        // SAFETY: we erase the lifetime of `f` to hand it to the workers. This function does
        // not return before every worker has finished calling it (the wait below), so the
        // reference never outlives the borrow.
        let short: *const (dyn Fn(usize, usize) + Sync + '_) = f;
        let ptr = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), *const Job>(short)
        });
        *self.shared.job.lock().expect("pool mutex") = Some(ptr);
        self.shared.done.store(0, Ordering::Relaxed);
        self.shared.epoch.fetch_add(1, Ordering::Release);
        f(0, self.threads);
        let workers = self.threads - 1;
        wait_until(|| self.shared.done.load(Ordering::Acquire) == workers);
    }
}

fn worker(t: usize, threads: usize, shared: &Shared) {
    let mut seen = 0usize;
    loop {
        wait_until(|| shared.epoch.load(Ordering::Acquire) != seen || shared.stop.load(Ordering::Relaxed));
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = shared.epoch.load(Ordering::Acquire);
        let job = shared
            .job
            .lock()
            .expect("pool mutex")
            .expect("a job is set before the epoch moves");
        // SAFETY: see `Pool::run`: the job stays alive until `done` counts this worker.
        unsafe { (*job.0)(t, threads) };
        shared.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
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
    fn every_thread_runs_once_per_job_and_sees_the_callers_data() {
        let pool = Pool::new(3);
        for round in 0..100 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            pool.run(&|t, n| {
                assert_eq!(n, 3);
                hits[t].fetch_add(round + 1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1));
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
