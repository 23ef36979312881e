//! Threading for the recurrent time loops: a persistent pool (rayon's global pool, so a
//! decoder that runs the loop once per token pays no thread spawn), a barrier that spins
//! (then sleeps) for the once-per-step meeting, and the split of hidden units among threads.

use super::ops::{threads, with_threads};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// A buffer shared by the threads of one time loop, each of which writes only the
/// hidden units it owns. Segments handed out never overlap between threads.
#[derive(Clone, Copy)]
pub(crate) struct Shared(*mut f32, usize);
// SAFETY: threads write disjoint segments and synchronise through `SpinBarrier`.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    pub(crate) fn new(v: &mut [f32]) -> Shared {
        Shared(v.as_mut_ptr(), v.len())
    }
    /// SAFETY: callers guarantee no other thread accesses `[off, off+len)` concurrently.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn seg(&self, off: usize, len: usize) -> &mut [f32] {
        assert!(off + len <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
    /// A raw pointer to `[off, off+len)`, for a kernel that writes strided rows within it.
    /// SAFETY: callers guarantee the values written through it are no other thread's.
    pub(crate) unsafe fn ptr(&self, off: usize, len: usize) -> *mut f32 {
        assert!(off + len <= self.1);
        self.0.add(off)
    }
    /// SAFETY: no thread writes `[off, off+len)` while the slice lives.
    pub(crate) unsafe fn read(&self, off: usize, len: usize) -> &[f32] {
        assert!(off + len <= self.1);
        std::slice::from_raw_parts(self.0.add(off), len)
    }
}

/// A barrier that spins, then sleeps: the time loop meets once per step, every few
/// microseconds, far more often than an OS wait/wake round trip would allow, so a waiter
/// spins first. If its partner is late (descheduled: another process wants the core), the
/// waiter sleeps on a condition variable instead of yielding in a loop — a yield hands the
/// core to the other process for a whole time slice, and 2-thread runs beside two niced
/// fuzzers ran 3× slower than on one thread that way. The releaser locks and wakes only when
/// someone sleeps, so the fast path is as before: atomics, no lock, no system call.
pub(crate) struct SpinBarrier {
    n: usize,
    count: AtomicUsize,
    gen: AtomicUsize,
    /// Waiters asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl SpinBarrier {
    pub(crate) fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            n,
            count: AtomicUsize::new(0),
            gen: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }
    pub(crate) fn wait(&self) {
        if self.n == 1 {
            return;
        }
        let g = self.gen.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            // SeqCst here and in the waiter's count-then-check: either the waiter sees the
            // new generation and does not sleep, or this sees the sleeper and takes the lock,
            // which the waiter holds until it sleeps. The fast path takes no lock.
            self.gen.fetch_add(1, Ordering::SeqCst);
            if self.sleepers.load(Ordering::SeqCst) > 0 {
                let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.wake.notify_all();
            }
        } else {
            for _ in 0..1 << 12 {
                if self.gen.load(Ordering::Acquire) != g {
                    return;
                }
                std::hint::spin_loop();
            }
            let mut held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            while self.gen.load(Ordering::SeqCst) == g {
                held = self.wake.wait(held).unwrap_or_else(|e| e.into_inner());
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Runs `f(part)` for `part` in `0..parts`, each on its own thread of the persistent pool,
/// all at once (the parts meet at a [`SpinBarrier`], so no two may share a thread).
/// `rayon::broadcast` gives exactly that: one call per pool thread, each on a distinct
/// thread; threads past `parts` return at once. The caller waits.
pub(crate) fn run_parts(parts: usize, f: impl Fn(usize) + Sync) {
    if parts <= 1 {
        return f(0);
    }
    debug_assert!(parts <= rayon::current_num_threads());
    rayon::broadcast(|ctx| {
        if ctx.index() < parts {
            f(ctx.index());
        }
    });
}

thread_local! {
    /// Set by [`in_turn`]: bidirectional layers run their directions one after the other.
    static IN_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the two directions of a bidirectional layer run at once, one thread each,
/// instead of in turn with each direction's hidden units split over the threads. They are
/// independent, so with two threads (or three) at once wins: no barrier at every step, and
/// each per-step `[B, H]·[H, G·H]` product runs whole on one core instead of as two
/// slivers. With more threads each direction would want several, and two time loops
/// broadcasting on one pool at once could each wait for threads the other holds.
pub(crate) fn directions_at_once() -> bool {
    let t = threads().min(rayon::current_num_threads());
    (2..4).contains(&t) && !IN_TURN.with(|c| c.get())
}

/// Runs `a` and `b` at once on two threads of the pool, each capped at one thread
/// ([`super::ops::with_threads`]), and returns both results.
pub(crate) fn join_single<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    rayon::join(|| with_threads(1, a), || with_threads(1, b))
}

/// Runs `f` with bidirectional layers taking their directions in turn (tests compare the
/// two schedules).
#[cfg(test)]
pub(crate) fn in_turn<R>(f: impl FnOnce() -> R) -> R {
    let old = IN_TURN.with(|c| c.replace(true));
    let r = f();
    IN_TURN.with(|c| c.set(old));
    r
}

/// Threads for the time loop of a layer with `b` rows and `h` units: each thread owns a
/// slice of hidden units (all of their gates), so one barrier per step suffices.
pub(crate) fn loop_threads(b: usize, h: usize, g: usize) -> usize {
    // The pool may be smaller than `threads()` if it was built before `set_threads`.
    let t = threads().min(rayon::current_num_threads());
    if t > 1 && h >= 32 && b * h * g >= 8192 {
        t.min(h / 16)
    } else {
        1
    }
}

pub(crate) fn unit_range(h: usize, parts: usize, p: usize) -> (usize, usize) {
    // Multiples of 8 keep each thread's slices aligned to SIMD width.
    let chunk = h.div_ceil(parts).div_ceil(8) * 8;
    let j0 = (p * chunk).min(h);
    (j0, ((p + 1) * chunk).min(h) - j0)
}

/// How a time loop shares hidden units among threads, and the order of the `G·H` gate
/// columns that goes with it. Thread p owns units `j0..j0+u` of every gate; in the
/// "part-major" order its `G·u` columns sit together at column `G·j0` (gate k, unit jj at
/// `G·j0 + k·u + jj`), so each thread reads the input projections and writes the gate
/// cache in place, row by row, instead of gathering and scattering its columns at every
/// step. With one thread the order is PyTorch's gate-major one and nothing is permuted.
pub(crate) struct Split {
    pub(crate) parts: usize,
    pub(crate) hidden: usize,
    pub(crate) gates: usize,
    /// The gate-major index of each part-major column `[G·H]` (computed once per call:
    /// every permutation below and the backward's W_hh columns use it).
    pub(crate) order: Vec<usize>,
}

impl Split {
    pub(crate) fn new(parts: usize, hidden: usize, gates: usize) -> Split {
        let mut order = Vec::with_capacity(gates * hidden);
        for p in 0..parts.max(1) {
            let (j0, u) = unit_range(hidden, parts.max(1), p);
            for k in 0..gates {
                order.extend((0..u).map(|jj| k * hidden + j0 + jj));
            }
        }
        Split {
            parts,
            hidden,
            gates,
            order,
        }
    }

    pub(crate) fn range(&self, p: usize) -> (usize, usize) {
        unit_range(self.hidden, self.parts, p)
    }

    pub(crate) fn is_identity(&self) -> bool {
        self.parts <= 1
    }

    /// The rows of gate-major `w [G·H, n]` in part-major order.
    pub(crate) fn permute_rows<'a>(&self, w: &'a [f32], n: usize) -> std::borrow::Cow<'a, [f32]> {
        if self.is_identity() {
            return w.into();
        }
        let mut out = Vec::with_capacity(w.len());
        for &r in &self.order {
            out.extend_from_slice(&w[r * n..(r + 1) * n]);
        }
        out.into()
    }

    /// Adds to gate-major `grad [G·H, n]` what `f` computes in part-major order: `f(buf)`
    /// accumulates into `buf`, which is `grad` itself when the orders agree.
    pub(crate) fn accumulate_rows(&self, grad: &mut [f32], n: usize, f: impl FnOnce(&mut [f32])) {
        if self.is_identity() {
            return f(grad);
        }
        let mut tmp = vec![0.0; grad.len()];
        f(&mut tmp);
        for (q, &r) in self.order.iter().enumerate() {
            grad[r * n..(r + 1) * n]
                .iter_mut()
                .zip(&tmp[q * n..(q + 1) * n])
                .for_each(|(d, v)| *d += v);
        }
    }
}
