//! The block driver every kernel shares: the order of 32×32 blocks of c, the jobs the
//! threads take, and the reference kernel.

use super::*;
use std::cell::RefCell;

/// Runs the kernel over the 32×32 blocks of c in `rows` × `cols` (multiples of 32),
/// clipping its writes to `m` rows and `n` columns.
///
/// The order of the blocks, shared by every kernel: columns in panels of [`NC`], rows in
/// groups of [`MC`], k in passes of [`KC`] over a panel's group, and within a pass each strip of the left operand (32
/// rows × KC, 16 KB, in L1) serves every column block of the panel (KC × NC of the right
/// operand, 128 KB, in L2) before the next strip is loaded. Partial sums wait between
/// passes in a per-thread buffer of contiguous 4 KB blocks: kept in c, whose rows lie a
/// power of two apart in the common shapes, they would all fall into one cache set.
///
/// # Safety
/// `c` must be valid for writes at `i·c_rs + j` for every i < m, j < n in the ranges.
pub(super) unsafe fn run(
    path: Path,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    a: &[u16],
    b: &PackedB,
    c_out: COut,
    start: Start,
) {
    let COut {
        p: c,
        rs: c_rs,
        m,
        n,
    } = c_out;
    let kp = b.kp;
    // Strips and column blocks as start + index·32: `run` is called at every step of a
    // time loop, which should not allocate.
    let rows = rows.start..rows.end.min(round_up(m));
    let strips = (rows.end.saturating_sub(rows.start)).div_ceil(TILE);
    C_BUF.with_borrow_mut(|cbuf| {
        for jc in cols.clone().step_by(NC).filter(|&j| j < n) {
            let blocks = ((jc + NC).min(cols.end).min(round_up(n)) - jc).div_ceil(TILE);
            for g0 in (0..strips).step_by(MC / TILE) {
                let group = (strips - g0).min(MC / TILE);
                let need = group * blocks;
                let at = |q: usize| {
                    (
                        rows.start + (g0 + q / blocks) * TILE,
                        jc + (q % blocks) * TILE,
                    )
                };
                if cbuf.len() < need {
                    cbuf.resize(need, CBlock([0.0; TILE * TILE]));
                }
                let cbuf = &mut cbuf[..need];
                // A block inside m × n starts from c (when accumulating) and ends in c;
                // only its partial sums between passes, and the clipped edge blocks,
                // go through the buffer (a copy cost as much as a pass of the kernel).
                let whole = |i0: usize, j0: usize| i0 + TILE <= m && j0 + TILE <= n;
                for k0 in (0..kp).step_by(KC) {
                    let k1 = (k0 + KC).min(kp);
                    let job = |q: usize, cb: &mut CBlock| {
                        let (i0, j0) = at(q);
                        let at_c = (c.add(i0 * c_rs + j0), c_rs);
                        let buf = (cb.0.as_mut_ptr(), TILE);
                        let src = match (k0 == 0, start) {
                            (false, _) => Some((buf.0 as *const f32, TILE)),
                            (true, Start::Zero) => None,
                            (true, Start::C) if whole(i0, j0) => Some((at_c.0 as *const f32, c_rs)),
                            // An edge block is added to c at the end.
                            (true, Start::C) => None,
                            // Stride 0: the row start, repeated down the block.
                            (true, Start::Rows(r)) => Some((r[j0..].as_ptr(), 0)),
                        };
                        let dst = if k1 == kp && whole(i0, j0) { at_c } else { buf };
                        Job {
                            i0,
                            j0,
                            rows: (m - i0).min(TILE),
                            k0,
                            k1,
                            src,
                            dst,
                        }
                    };
                    match path {
                        #[cfg(target_arch = "x86_64")]
                        Path::Amx => {
                            amx::configure();
                            for (q, cb) in cbuf.iter_mut().enumerate() {
                                amx::block(a, b, job(q, cb));
                            }
                        }
                        #[cfg(target_arch = "x86_64")]
                        Path::Avx512Bf16 => {
                            for (q, cb) in cbuf.iter_mut().enumerate() {
                                avx512::block(a, b, job(q, cb));
                            }
                        }
                        _ => {
                            for (q, cb) in cbuf.iter_mut().enumerate() {
                                reference_block(a, b, job(q, cb));
                            }
                        }
                    }
                }
                for (q, cb) in cbuf.iter().enumerate() {
                    let (i0, j0) = at(q);
                    if !whole(i0, j0) {
                        store_block(cb, i0, j0, c_out, matches!(start, Start::C));
                    }
                }
            }
        }
    });
}

/// The result of a product as the kernels write it: element (i, j) of its `m × n` at
/// `p[i·rs + j]`.
#[derive(Clone, Copy)]
pub(super) struct COut {
    pub p: *mut f32,
    pub rs: usize,
    pub m: usize,
    pub n: usize,
}

/// A 32×32 fp32 block of partial sums, row-major, one 4 KB aligned piece.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct CBlock(pub(super) [f32; TILE * TILE]);

thread_local! {
    /// Each thread's partial sums of one column panel, reused from call to call.
    static C_BUF: RefCell<Vec<CBlock>> = const { RefCell::new(Vec::new()) };
}

/// One 32×32 block of c at (i0, j0) and the part `k0..k1` of its sum: `src + a·b` goes to
/// `dst`, both 32×32 fp32 blocks given as (first element, row stride).
#[derive(Clone, Copy)]
pub(super) struct Job {
    pub(super) i0: usize,
    pub(super) j0: usize,
    /// The block's rows inside m (1..=32): a kernel may skip the rows past them, which are
    /// padding (a batch of 20 fills 20 of 32 rows, so the per-step products of a
    /// zaremba-medium step would spend 37% of their work on zeros).
    pub(super) rows: usize,
    pub(super) k0: usize,
    pub(super) k1: usize,
    /// Where the sum so far is (`None`: zero).
    pub(super) src: Option<(*const f32, usize)>,
    pub(super) dst: (*mut f32, usize),
}

/// Depth of one pass over k: a 32-row strip of the left operand is 32 KB.
pub(super) const KC: usize = 512;
/// Columns of one panel: the right operand's part for one pass is 256 KB.
pub(super) const NC: usize = 256;
/// Rows whose partial sums wait together between passes (256 KB of them).
pub(super) const MC: usize = 256;

/// Adds (or writes) a 32×32 block into c at (i0, j0), clipped to m × n.
///
/// # Safety
/// As for [`run`].
pub(super) unsafe fn store_block(blk: &CBlock, i0: usize, j0: usize, c: COut, accumulate: bool) {
    let COut {
        p: c,
        rs: c_rs,
        m,
        n,
    } = c;
    let (ri, cj) = ((m - i0).min(TILE), (n - j0).min(TILE));
    for r in 0..ri {
        let dst = std::slice::from_raw_parts_mut(c.add((i0 + r) * c_rs + j0), cj);
        let src = &blk.0[r * TILE..r * TILE + cj];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// The packed product in plain Rust (fp32 arithmetic on the bf16 values): what the tests
/// compare the kernels with, and what runs if a path is asked for off x86-64.
///
/// # Safety
/// The job's `src` and `dst` are valid 32×32 blocks.
pub(super) unsafe fn reference_block(a: &[u16], b: &PackedB, j: Job) {
    let kp = b.kp;
    for r in 0..TILE {
        for q in 0..TILE {
            let col = j.j0 + q;
            let mut s = j.src.map_or(0.0, |(p, rs)| *p.add(r * rs + q));
            for p in j.k0..j.k1 {
                s += from_bf16(a[a_idx(j.i0 + r, p, kp)]) * from_bf16(b.data[b.idx(p, col)]);
            }
            *j.dst.0.add(r * j.dst.1 + q) = s;
        }
    }
}
