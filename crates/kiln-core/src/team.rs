//! A fork-join team whose helpers wait by spinning, for passes too short for rayon.
//!
//! An SMO iteration of the SVM solver, or one time step of a recurrent layer, is short (tens
//! of microseconds) and splits its work once or several times. Rayon's idle workers go to
//! sleep after a few microseconds; waking one costs a futex call and, on a virtual machine,
//! an inter-processor interrupt: measured at about 15-20 µs per `rayon::join` after a serial
//! gap on the 2-core development machine, as long as the parallel work it saves. A team's
//! helpers instead spin on an atomic counter for a while after each job (a hand-off then
//! costs a cache-line transfer) and only then sleep, as OpenMP runtimes do.
//!
//! A [`Team`] of `n` threads is the caller plus `n - 1` helpers; [`Team::map`] hands one
//! item to each member and returns the results in order. A team runs one job at a time: a
//! `map` from inside a job, or from another thread while a job runs, runs its items on the
//! calling thread. Work is split identically either way, so results never depend on whether
//! the helpers took part.
//!
//! [`scope`] installs a team for the current thread (the SVM solver does, for one fit, sized
//! to the fit's thread count) and the free [`map`] and [`size`] use the installed team.
//!
//! ```
//! use kiln_core::team::Team;
//! let team = Team::new(2, std::time::Duration::from_micros(200));
//! let sums = team.map(vec![0..10, 10..20], |r| r.sum::<u32>());
//! assert_eq!(sums, vec![45, 145]);
//! ```

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an installed ([`scope`]) team's idle helpers spin before they sleep.
pub const SCOPE_SPIN: Duration = Duration::from_millis(2);

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
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    /// Held while a job runs: a `map` that cannot take it runs on the calling thread.
    running: Mutex<()>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.size())
            .finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Team>> = const { RefCell::new(None) };
}

/// Run `f` with a team of `threads` threads installed for this thread (none when `threads`
/// is 1, or when a team is installed already), for the free [`map`] and [`size`].
pub fn scope<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let installed = CURRENT.with(|c| c.borrow().is_some());
    if threads <= 1 || installed {
        return f();
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(Team::new(threads, SCOPE_SPIN)));
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

/// Threads in the team installed for this thread (1 when none is).
pub fn size() -> usize {
    CURRENT.with(|c| c.borrow().as_ref().map_or(1, Team::size))
}

/// [`Team::map`] on the team installed for this thread, or on this thread alone.
pub fn map<P: Send, T: Send>(items: Vec<P>, f: impl Fn(P) -> T + Sync) -> Vec<T> {
    CURRENT.with(|c| match &*c.borrow() {
        Some(team) => team.map(items, f),
        None => items.into_iter().map(f).collect(),
    })
}

/// `data` cut at the increasing positions `cuts` into `cuts.len() + 1` consecutive parts, the
/// last one running to the end: the disjoint mutable pieces a [`Team::map`] hands out.
pub fn cut<T>(data: &mut [T], cuts: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut at = 0;
    for c in cuts {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(c - at);
        out.push(part);
        rest = tail;
        at = c;
    }
    out.push(rest);
    out
}

impl Team {
    /// A team of `threads` threads: the caller of [`Team::map`] and `threads - 1` helpers
    /// that spin for `spin` after each job before they sleep. Fewer helpers if the system
    /// refuses to start threads (their items then run on the members that exist).
    pub fn new(threads: usize, spin: Duration) -> Team {
        let helpers = threads.saturating_sub(1);
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
                .name(format!("kiln-team-{member}"))
                .spawn(move || helper(&shared, member, spin))
            {
                Ok(h) => handles.push(h),
                // Fewer helpers: the members that exist take the missing members' items.
                Err(_) => break,
            }
        }
        Team {
            shared,
            helpers: handles,
            running: Mutex::new(()),
        }
    }

    /// Threads in the team, the caller included.
    pub fn size(&self) -> usize {
        self.helpers.len() + 1
    }

    /// `f` over `items`, one item per member (member `k` takes items `k`, `k + size`, ...),
    /// the results in the order of `items`. On the calling thread alone when the team is busy
    /// (a nested call, or another thread's job).
    pub fn map<P: Send, T: Send>(&self, items: Vec<P>, f: impl Fn(P) -> T + Sync) -> Vec<T> {
        let n = items.len();
        let size = self.size();
        let guard = match self.running.try_lock() {
            Ok(g) if n > 1 && size > 1 => g,
            _ => return items.into_iter().map(f).collect(),
        };
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
        self.run(&job);
        drop(guard);
        out.into_iter()
            .filter_map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect()
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
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        // Wait for the helpers, yielding the core every few microseconds: on a loaded machine
        // a helper may be waiting for this very core.
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(128) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *s.job.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a kiln team helper thread panicked in its part of the job");
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
fn helper(s: &Shared, member: usize, spin: Duration) {
    let mut seen = 0u64;
    loop {
        seen = wait_for_epoch(s, seen, spin);
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

/// Wait until the epoch differs from `seen` (spinning for `spin`, yielding the core now and
/// then to any other runnable thread, then sleeping); return it.
fn wait_for_epoch(s: &Shared, seen: u64, spin: Duration) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return e;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(256) {
            std::hint::spin_loop();
            continue;
        }
        if start.elapsed() < spin {
            std::thread::yield_now();
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

    #[test]
    fn map_returns_results_in_order_for_any_team_size() {
        for threads in [1, 2, 3] {
            let got = scope(threads, || {
                assert_eq!(size(), threads);
                let mut all = Vec::new();
                for round in 0..200u64 {
                    let items: Vec<u64> = (0..5).map(|k| k + round).collect();
                    all.extend(map(items, |v| v * v));
                }
                all
            });
            let want: Vec<u64> = (0..200u64)
                .flat_map(|r| (0..5).map(move |k| (k + r) * (k + r)))
                .collect();
            assert_eq!(got, want, "{threads} threads");
        }
        assert_eq!(size(), 1);
    }

    #[test]
    fn cut_makes_consecutive_parts_with_the_rest_last() {
        let mut v: Vec<u32> = (0..10).collect();
        let parts = cut(&mut v, [3, 3, 7]);
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, vec![3, 0, 4, 3]);
        assert_eq!(parts[3], &[7, 8, 9]);
        assert_eq!(cut(&mut v, []).len(), 1);
    }

    #[test]
    fn items_may_be_disjoint_mutable_slices() {
        let mut v = vec![1.0f64; 1000];
        let team = Team::new(2, Duration::from_micros(100));
        let (a, b) = v.split_at_mut(400);
        let lens = team.map(vec![a, b], |part| {
            part.iter_mut().for_each(|x| *x *= 2.0);
            part.len()
        });
        assert_eq!(lens, vec![400, 600]);
        assert!(v.iter().all(|&x| x == 2.0));
    }

    #[test]
    fn helpers_wake_after_sleeping_and_nested_maps_run_inline() {
        let team = Team::new(2, Duration::from_micros(100));
        let a = team.map(vec![1, 2], |v| v + 1);
        std::thread::sleep(Duration::from_millis(5));
        let b = team.map(vec![10, 20], |v| {
            team.map(vec![v, v], |w| w * 2).iter().sum::<i32>()
        });
        assert_eq!((a, b), (vec![2, 3], vec![40, 80]));
    }

    #[test]
    fn concurrent_callers_share_one_team() {
        let team = Team::new(2, Duration::from_micros(100));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let team = &team;
                s.spawn(move || {
                    for round in 0..300u64 {
                        let got = team.map(vec![t, round], |v| v + 1);
                        assert_eq!(got, vec![t + 1, round + 1]);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panic_in_a_part_reaches_the_caller_and_the_team_recovers() {
        let team = Team::new(2, Duration::from_micros(100));
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.map(vec![0, 1], |v| if v == 1 { panic!("part one") } else { v })
        }));
        assert!(r.is_err());
        assert_eq!(team.map(vec![3, 4], |v| v), vec![3, 4]);
    }
}
