//! The AMX kernel: 32×32 blocks of c from bf16 tiles (Intel Sapphire Rapids and later).

use super::{Job, PackedB, TILE, TILES_READY};
use std::arch::asm;

/// The tile configuration (palette 1): tmm0–tmm7 all 16 rows of 64 bytes — 16×16 fp32
/// for the results, 16×32 bf16 for the left operand, 16 k-pairs × 16 columns for the
/// right one.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Loads the configuration once per thread. Nothing else in the process touches the
/// tiles, so it stays loaded.
///
/// # Safety
/// The CPU has AMX and the process has the tile permission ([`super::has_amx`]).
pub(super) unsafe fn configure() {
    if !TILES_READY.get() {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        TILES_READY.set(true);
    }
}

/// One block as 2×2 result tiles (tmm0–3), the left operand's two 16-row tiles in
/// tmm4–5, the right operand's two 16-column tiles in tmm6–7, 32 of k per step.
///
/// # Safety
/// [`configure`] ran on this thread; the job lies inside the packed operands, and its
/// `src` and `dst` are valid 32×32 blocks.
pub(super) unsafe fn block(a: &[u16], b: &PackedB, j: Job) {
    let kp = b.kp;
    if let Some((cp, rs)) = j.src {
        asm!(
            "tileloadd tmm0, [{c0} + {sc}*1]",
            "tileloadd tmm1, [{c1} + {sc}*1]",
            "tileloadd tmm2, [{c2} + {sc}*1]",
            "tileloadd tmm3, [{c3} + {sc}*1]",
            c0 = in(reg) cp, c1 = in(reg) cp.add(16), c2 = in(reg) cp.add(16 * rs),
            c3 = in(reg) cp.add(16 * rs + 16), sc = in(reg) rs * 4,
            options(nostack, readonly)
        );
    } else {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }
    let (off, kw) = b.block(j.j0, j.k0);
    let b0 = b.data.as_ptr().add(off);
    let b1 = b0.add((kw / 2) * 32);
    // The left tiles of rows i0.. and i0+16.., 32 of k after 32 of k, contiguous.
    let a0 = a.as_ptr().add(j.i0 * kp);
    let a1 = a0.add(16 * kp);
    for kc in (j.k0..j.k1).step_by(TILE) {
        asm!(
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm6, [{b0} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0.add(kc * 16),
            a1 = in(reg) a1.add(kc * 16),
            b0 = in(reg) b0.add((kc - j.k0) / 2 * 32),
            b1 = in(reg) b1.add((kc - j.k0) / 2 * 32),
            s = in(reg) 64usize,
            options(nostack, readonly)
        );
    }
    let (cp, rs) = j.dst;
    asm!(
        "tilestored [{c0} + {sc}*1], tmm0",
        "tilestored [{c1} + {sc}*1], tmm1",
        "tilestored [{c2} + {sc}*1], tmm2",
        "tilestored [{c3} + {sc}*1], tmm3",
        c0 = in(reg) cp, c1 = in(reg) cp.add(16), c2 = in(reg) cp.add(16 * rs),
        c3 = in(reg) cp.add(16 * rs + 16), sc = in(reg) rs * 4,
        options(nostack)
    );
}
