//! A fork-join team whose helpers wait by spinning, for the SMO solver's per-iteration passes.
//!
//! An SMO iteration is short (tens of microseconds at 10,000 samples) and splits its work
//! three or four times: the two kernel rows, the gradient update and the working-set scans.
//! Rayon's idle workers go to sleep after a few microseconds; waking one costs a futex call
//! and, on a virtual machine, an inter-processor interrupt: measured here at about 15-20 µs a
//! `rayon::join` after a serial gap, as long as the parallel work it saves. The team's helpers
//! instead spin on an atomic counter between jobs for a while (a hand-off costs a cache-line
//! transfer) and only then sleep, as OpenMP runtimes do.
//!
//! [`scope`] runs a closure with a team of `rayon::current_num_threads()` threads (the caller
//! and `n - 1` helpers) installed for the current thread; [`map`] hands one item to each
//! member and returns the results in order. Outside a scope, or inside a job, [`map`] runs the
//! items on the calling thread. Work is split identically either way, so results do not
//! depend on the thread count.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

/// A job: run the part of the given index.
type Job = dyn Fn(usize) + Sync;

/// A job with its lifetime erased, valid while the thread that published it waits in
/// [`Team::run`].
#[derive(Clone, Copy)]
struct JobPtr(*const Job);

// SAFETY: the pointee is `Sync` (so it may be called from any thread); the pointer is only
// dereferenced between its publication and the `done` count that `Team::run` waits for.
#[allow(unsafe_code)]
unsafe impl Send for JobPtr {}

struct Shared {
    /// Bumped once per job (and once to stop).
    epoch: AtomicU64,
    /// Helpers finished with the current job.
    done: AtomicUsize,
    job: Mutex<Option<JobPtr>>,
    stop: AtomicBool,
    panicked: AtomicBool,
    /// Helpers asleep or about to sleep on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

/// The caller plus `helpers.len()` spinning helper threads.
struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    /// Set while a job runs: a nested [`map`] runs on the calling thread.
    busy: Cell<bool>,
}

thread_local! {
    static CURRENT: RefCell<Option<Team>> = const { RefCell::new(None) };
}

/// Run `f` with a team of `rayon::current_num_threads()` threads installed for this thread
/// (none when that is 1, or when a team is installed already).
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    let threads = rayon::current_num_threads();
    let installed = CURRENT.with(|c| c.borrow().is_some());
    if threads <= 1 || installed {
        return f();
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(Team::new(threads - 1)));
    // Uninstalled (and its helpers joined) even if `f` panics.
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            let team = CURRENT.with(|c| c.borrow_mut().take());
            drop(team);
        }
    }
    let _guard = Uninstall;
    f()
}

/// Threads in the installed team (1 when none is installed).
pub fn size() -> usize {
    CURRENT.with(|c| c.borrow().as_ref().map_or(1, |t| t.helpers.len() + 1))
}

/// `f` over `items`, one item per team member (member `k` takes items `k`, `k + size`, ...),
/// the results in the order of `items`.
pub fn map<P: Send, T: Send>(items: Vec<P>, f: impl Fn(P) -> T + Sync) -> Vec<T> {
    let n = items.len();
    let size = size();
    if n <= 1 || size == 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<Option<P>>> = items.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let out: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let job = |member: usize| {
        for k in (member..n).step_by(size) {
            let item = slots[k]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(item) = item {
                let r = f(item);
                *out[k].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            }
        }
    };
    let ran = CURRENT.with(|c| match &*c.borrow() {
        Some(team) if !team.busy.get() => {
            team.run(&job);
            true
        }
        _ => false,
    });
    if !ran {
        (0..size).for_each(job);
    }
    out.into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect()
}

impl Team {
    fn new(helpers: usize) -> Team {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: Mutex::new(None),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(helpers);
        for member in 1..=helpers {
            let shared = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("kiln-smo-{member}"))
                .spawn(move || helper(&shared, member))
            {
                Ok(h) => handles.push(h),
                // Fewer helpers: the members that exist take the missing members' items.
                Err(_) => break,
            }
        }
        Team {
            shared,
            helpers: handles,
            busy: Cell::new(false),
        }
    }

    /// Run `job(0)` here and `job(k)` on helper `k`; return when all are done, re-raising a
    /// panic of any of them.
    fn run<'a>(&self, job: &'a (dyn Fn(usize) + Sync + 'a)) {
        let s = &*self.shared;
        let n = self.helpers.len();
        // SAFETY: only the lifetime is erased. Helpers dereference the pointer after the
        // epoch bump below and count `done` after their last use of it; this function returns
        // (or unwinds) only once `done == n`, so `job` outlives every use.
        #[allow(unsafe_code)]
        let erased: *const Job =
            unsafe { std::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static Job>(job) };
        *s.job.lock().unwrap_or_else(PoisonError::into_inner) = Some(JobPtr(erased));
        s.done.store(0, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
            s.wake.notify_all();
        }
        self.busy.set(true);
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        self.busy.set(false);
        *s.job.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a kiln SMO helper thread panicked");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
            s.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            // A helper's job panics are caught; nothing else in its loop panics.
            let _ = h.join();
        }
    }
}

/// A helper's loop: wait for the next epoch (spinning, then sleeping), run its part, count it.
fn helper(s: &Shared, member: usize) {
    let mut seen = 0u64;
    loop {
        seen = wait_for_epoch(s, seen);
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let job = *s.job.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(JobPtr(ptr)) = job {
            // SAFETY: see `Team::run`: the job stays alive until this helper counts `done`.
            #[allow(unsafe_code)]
            let f = unsafe { &*ptr };
            if catch_unwind(AssertUnwindSafe(|| f(member))).is_err() {
                s.panicked.store(true, Ordering::SeqCst);
            }
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

/// Wait until the epoch differs from `seen`; return it.
fn wait_for_epoch(s: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return e;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(256) || start.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        // Sleep. `run` bumps the epoch before it reads `sleepers`, and this thread counts
        // itself in `sleepers` before it reads the epoch under the lock: whichever comes
        // first, either `run` notifies or this thread sees the new epoch.
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        let mut g = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while s.epoch.load(Ordering::SeqCst) == seen {
            g = s.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
        drop(g);
        s.sleepers.fetch_sub(1, Ordering::SeqCst);
        return s.epoch.load(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn map_returns_results_in_order_for_any_team_size() {
        for threads in [1, 2, 3] {
            let got = in_threads(threads, || {
                scope(|| {
                    assert_eq!(size(), threads);
                    let mut all = Vec::new();
                    for round in 0..200u64 {
                        let items: Vec<u64> = (0..5).map(|k| k + round).collect();
                        all.extend(map(items, |v| v * v));
                    }
                    all
                })
            });
            let want: Vec<u64> = (0..200u64)
                .flat_map(|r| (0..5).map(move |k| (k + r) * (k + r)))
                .collect();
            assert_eq!(got, want, "{threads} threads");
        }
    }

    #[test]
    fn items_may_be_disjoint_mutable_slices() {
        let mut v = vec![1.0f64; 1000];
        in_threads(2, || {
            scope(|| {
                let (a, b) = v.split_at_mut(400);
                let sums = map(vec![a, b], |part| {
                    part.iter_mut().for_each(|x| *x *= 2.0);
                    part.len()
                });
                assert_eq!(sums, vec![400, 600]);
            })
        });
        assert!(v.iter().all(|&x| x == 2.0));
    }

    #[test]
    fn helpers_wake_after_sleeping_and_nested_maps_run_inline() {
        let got = in_threads(2, || {
            scope(|| {
                let a = map(vec![1, 2], |v| v + 1);
                std::thread::sleep(SPIN * 3);
                let b = map(vec![10, 20], |v| {
                    map(vec![v, v], |w| w * 2).iter().sum::<i32>()
                });
                (a, b)
            })
        });
        assert_eq!(got, (vec![2, 3], vec![40, 80]));
    }

    #[test]
    fn a_panic_in_a_part_reaches_the_caller_and_the_team_recovers() {
        in_threads(2, || {
            scope(|| {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    map(vec![0, 1], |v| if v == 1 { panic!("part one") } else { v })
                }));
                assert!(r.is_err());
                assert_eq!(map(vec![3, 4], |v| v), vec![3, 4]);
            })
        });
        assert_eq!(size(), 1);
    }
}
