"""Direct sliding-window correlation (private Numba kernels; no validation, no I/O).

Canonical layout, prepared by ``engine.api``:
  x    (C, Z, H, W)            float32 or float64, C-contiguous
  w    (Cout, Cg, KD, KH, KW)  same dtype; output channel o reads input channels g*Cg .. g*Cg+Cg-1
  maps zmap/ymap/xmap          padded coordinate -> source index, -1 reads ``cval``
  out  (Cout, Zo, Ho, Wo)      written here, one block of rows of a run of planes per task
  iout (Cout, Zo, Ho, Wo)      8/16-bit: when not empty, filled instead of ``out`` (then a
                               placeholder) through ``_round_row``, block by block from a buffer
                               in cache (``convcli apply``'s cast without a float result)
  planar = P > 1               x holds P interleaved channels (xmap, bx, dx per channel): the
                               strips keep each channel's row apart, so the paired blocks run on them

``correlate_bank`` takes one of several paths (``MODE``, below), which ``dispatch.direct_job``
picks; it runs as ``bank(mode)``, a copy compiled with only that path.

Each kernel runs tasks ``t0 .. t1-1`` in a ``prange``; ``engine.tasks`` calls it, or its serial
twin for small calls. No full padded copy of the image: each task pads only the strip of input
rows that its block of output rows reads, so the strip stays in cache and the inner loop runs over
contiguous memory. For a volume, a task filters a run of consecutive output planes and keeps the
strips of the input planes they read in a ring, so each input plane is converted once per run, not
once per output plane reading it (a 3x3x3 block of a uint16 volume: 71 -> 49 ms on one thread).

Measured trade-offs, kept as they are: the strip fill and the row accumulation stay inline in
the prange body, and the interior of a strip row is one slice assignment. Split into helper
functions, or with the slice assignment written as a loop, the kernels compiled 3x faster (the
slice assignment's size-mismatch message pulls in Numba's unicode machinery) but ran 1.1-1.3x
slower (interleaved A/B at 4096^2); speed won. The hand-unrolled tap blocks (``_taps8`` ... ``_taps1`` and their call sites) are the
price of speed: each pass over the accumulator adds 4-8 taps, which keeps it in registers.
Rows of at least FLAT_MAX_WIDTH cells at unit stride and dilation (most images) go in pairs
through the generated blocks of ``_passes`` instead (4096^2 float32, one thread: 5x5 37 -> 25 ms,
9x9 88 -> 53-61 ms, 15x15 229 -> 124 ms); the older blocks remain for dilated and strided kernels.
A whole 3x3 or 5x5 plane at unit stride and dilation needs no strip at all (``correlate_unrolled``):
float and 8-bit rows (grey, or RGB interleaved) are read in place, 16-bit ones converted into a ring of rows, and each pair of output rows
is assigned in one pass, which halves the time of the commonest filters (the strip fill and the
zeroing were most of it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import njit, njit_rounding, njit_serial, overload, prange, specialised, vector_registers
from ._passes import PAIRS, QUADS
from ._passes import add_block as _add_block
from ._passes import add_column as _add_column
from ._passes import add_plane as _add_plane
from ._passes import block_shape as _block_shape

# the hash of _passes.py, kept by tools/generate_passes.py: Numba's cache hashes only this file's
# text, so kernels that inline a changed _passes.py compile again
PASSES_SHA1 = "2147781f544f212cd6d56009b567b2cd65677297"


@njit_serial
def _taps8(acc, s0, s1, s2, s3, s4, s5, s6, s7, w0, w1, w2, w3, w4, w5, w6, w7):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += (w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]) + (w4 * s4[j] + w5 * s5[j] + w6 * s6[j] + w7 * s7[j])


@njit_serial
def _taps9(acc, s0, s1, s2, s3, s4, s5, s6, s7, s8, w0, w1, w2, w3, w4, w5, w6, w7, w8, add):  # pragma: no cover - compiled
    """Nine taps per pass; ``add=False`` assigns instead (a single-plane 3x3 needs no zeroed rows)."""
    if add:
        for j in range(acc.shape[0]):
            acc[j] += ((w0 * s0[j] + w1 * s1[j] + w2 * s2[j]) + (w3 * s3[j] + w4 * s4[j] + w5 * s5[j])) + (w6 * s6[j] + w7 * s7[j] + w8 * s8[j])
    else:
        for j in range(acc.shape[0]):
            acc[j] = ((w0 * s0[j] + w1 * s1[j] + w2 * s2[j]) + (w3 * s3[j] + w4 * s4[j] + w5 * s5[j])) + (w6 * s6[j] + w7 * s7[j] + w8 * s8[j])


@njit_serial
def _taps4(acc, s0, s1, s2, s3, w0, w1, w2, w3):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]


@njit_serial
def _taps3(acc, s0, s1, s2, w0, w1, w2):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j]


@njit_serial
def _taps2(acc, s0, s1, w0, w1):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += w0 * s0[j] + w1 * s1[j]


@njit_serial
def _taps1(acc, s0, w0):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += w0 * s0[j]


@njit_serial
def _taps8c(acc, s, w0, w1, w2, w3, w4, w5, w6, w7):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += (w0 * s[j] + w1 * s[j + 1] + w2 * s[j + 2] + w3 * s[j + 3]) + (w4 * s[j + 4] + w5 * s[j + 5] + w6 * s[j + 6] + w7 * s[j + 7])


@njit_serial
def _taps4c(acc, s, w0, w1, w2, w3):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += w0 * s[j] + w1 * s[j + 1] + w2 * s[j + 2] + w3 * s[j + 3]


@njit_serial
def _row_taps(acc, line, wrow, dx, Wo):  # pragma: no cover - compiled
    """One kernel row: its taps are shifted slices of the same line, 8 or 4 per pass."""
    KW = wrow.shape[0]
    b = 0
    if dx == 1:  # one slice per pass, the shifts constant: fewer array views (each costs a refcount)
        while b + 8 <= KW:
            _taps8c(acc, line[b:], wrow[b], wrow[b + 1], wrow[b + 2], wrow[b + 3], wrow[b + 4], wrow[b + 5], wrow[b + 6], wrow[b + 7])
            b += 8
        while b + 4 <= KW:
            _taps4c(acc, line[b:], wrow[b], wrow[b + 1], wrow[b + 2], wrow[b + 3])
            b += 4
    while b + 8 <= KW:
        p = b * dx
        _taps8(acc, line[p : p + Wo], line[p + dx : p + dx + Wo], line[p + 2 * dx : p + 2 * dx + Wo],
               line[p + 3 * dx : p + 3 * dx + Wo], line[p + 4 * dx : p + 4 * dx + Wo],
               line[p + 5 * dx : p + 5 * dx + Wo], line[p + 6 * dx : p + 6 * dx + Wo],
               line[p + 7 * dx : p + 7 * dx + Wo], wrow[b], wrow[b + 1], wrow[b + 2], wrow[b + 3],
               wrow[b + 4], wrow[b + 5], wrow[b + 6], wrow[b + 7])  # fmt: skip
        b += 8
    while b + 4 <= KW:
        p = b * dx
        _taps4(acc, line[p : p + Wo], line[p + dx : p + dx + Wo], line[p + 2 * dx : p + 2 * dx + Wo],
               line[p + 3 * dx : p + 3 * dx + Wo], wrow[b], wrow[b + 1], wrow[b + 2], wrow[b + 3])  # fmt: skip
        b += 4
    rest = KW - b
    p = b * dx
    if rest == 3:
        _taps3(acc, line[p : p + Wo], line[p + dx : p + dx + Wo], line[p + 2 * dx : p + 2 * dx + Wo],
               wrow[b], wrow[b + 1], wrow[b + 2])  # fmt: skip
    elif rest == 2:
        _taps2(acc, line[p : p + Wo], line[p + dx : p + dx + Wo], wrow[b], wrow[b + 1])
    elif rest == 1:
        _taps1(acc, line[p : p + Wo], wrow[b])




@njit_serial
def _accumulate_flat(acc, strip, wk, Wp, dy, dx):  # pragma: no cover - compiled
    """acc += every tap of one kernel plane over a whole block of rows at once.

    ``strip`` is the block's padded rows flattened (row length Wp); at unit stride tap (a, b)
    reads it at offset a*dy*Wp + b*dx, so output row r, column j sits at acc[r*Wp + j]. The
    cells between rows (j >= Wo) are computed and thrown away. Taps go 8 per pass.
    """
    KH, KW = wk.shape
    n = acc.shape[0]
    a = 0
    while a + 4 <= KH:
        b = 0
        while b + 2 <= KW:
            p0 = a * dy * Wp + b * dx
            p1 = p0 + dx
            r = dy * Wp
            _taps8(acc, strip[p0 : p0 + n], strip[p0 + r : p0 + r + n], strip[p0 + 2 * r : p0 + 2 * r + n],
                   strip[p0 + 3 * r : p0 + 3 * r + n], strip[p1 : p1 + n], strip[p1 + r : p1 + r + n],
                   strip[p1 + 2 * r : p1 + 2 * r + n], strip[p1 + 3 * r : p1 + 3 * r + n],
                   wk[a, b], wk[a + 1, b], wk[a + 2, b], wk[a + 3, b],
                   wk[a, b + 1], wk[a + 1, b + 1], wk[a + 2, b + 1], wk[a + 3, b + 1])  # fmt: skip
            b += 2
        if b < KW:
            p0 = a * dy * Wp + b * dx
            r = dy * Wp
            _taps4(acc, strip[p0 : p0 + n], strip[p0 + r : p0 + r + n], strip[p0 + 2 * r : p0 + 2 * r + n],
                   strip[p0 + 3 * r : p0 + 3 * r + n], wk[a, b], wk[a + 1, b], wk[a + 2, b], wk[a + 3, b])  # fmt: skip
        a += 4
    while a < KH:
        b = 0
        base = a * dy * Wp
        while b + 4 <= KW:
            p = base + b * dx
            _taps4(acc, strip[p : p + n], strip[p + dx : p + dx + n], strip[p + 2 * dx : p + 2 * dx + n],
                   strip[p + 3 * dx : p + 3 * dx + n], wk[a, b], wk[a, b + 1], wk[a, b + 2], wk[a, b + 3])  # fmt: skip
            b += 4
        rest = KW - b
        p = base + b * dx
        if rest == 3:
            _taps3(acc, strip[p : p + n], strip[p + dx : p + dx + n], strip[p + 2 * dx : p + 2 * dx + n],
                   wk[a, b], wk[a, b + 1], wk[a, b + 2])  # fmt: skip
        elif rest == 2:
            _taps2(acc, strip[p : p + n], strip[p + dx : p + dx + n], wk[a, b], wk[a, b + 1])
        elif rest == 1:
            _taps1(acc, strip[p : p + n], wk[a, b])
        a += 1


# correlate_bank's paths. FLAT: rows narrower than FLAT_MAX_WIDTH at unit stride, one flat
# vector per block (_accumulate_flat); TAPS: strided or dilated, the older tap blocks (_taps8 ...);
# BLOCKS: unit strides and dilations (or planar strips), pairs of rows through _passes.add_block;
# BY_COLUMNS: the same, four rows per kernel column (7 or 9 rows high, 16 vector registers);
# FUSED: a 3x3x3 at unit x-stride and dilation, all 27 taps in one pass per row or pair of rows;
# BY_PLANES: the same, four rows per kernel plane (unit strides and dilations, 16 vector registers).
FLAT, TAPS, BLOCKS, BY_COLUMNS, FUSED, BY_PLANES = 1, 2, 3, 4, 5, 6
FOURS = (BY_COLUMNS, BY_PLANES)  # the paths that go four rows at a time
MODE_NAMES = {FLAT: "flat", TAPS: "taps", BLOCKS: "blocks", BY_COLUMNS: "columns", FUSED: "fused", BY_PLANES: "planes"}
MODE = 0  # fixed in each compiled copy (bank): Numba prunes the other paths before typing them


def bank(mode: int):  # -> the compiled copy
    """``correlate_bank`` compiled for one path (``MODE``): a first call compiles only the code
    and tap blocks that path runs (a first 9x9 call on a 2-core Zen 1: the whole kernel 97 s, its
    BY_COLUMNS copy 21 s)."""
    return specialised(correlate_bank, MODE_NAMES[mode], MODE=mode)


def correlate_bank(x, w, zmap, ymap, xmap, bx, cval, sz, sy, sx, dz, dy, dx, groups, block, zrun, planar, out, iout, post, counts, block_rows, t0, t1):  # pragma: no cover - compiled
    C, Z, H, W = x.shape
    Cout, Cg, KD, KH, KW = w.shape
    # integer output: each block's rows go to a float buffer in cache, then through _round_row into
    # iout (out is a placeholder); counts[t] = task t's clipped values
    integer = iout.shape[0] > 0
    _, Zo, Ho, Wo = iout.shape if integer else out.shape
    # planar = P > 1: x holds P interleaved channels; each strip row keeps them as P padded segments
    # (xmap, bx and dx per channel), so the paired blocks run at unit spacing along one line
    P = max(planar, 1)
    Wseg = xmap.shape[0]
    Wp = Wseg * P
    row_span = (P - 1) * Wseg + Wo // P  # cells a row computes (those between segments go unused)
    buffered = integer or P > 1
    W = W // P
    nblocks = (Ho + block - 1) // block
    nruns = (Zo + zrun - 1) // zrun
    out_per_group = Cout // groups
    interior_end = min(bx + W, Wseg)
    # A task filters a run of output planes: the padded input planes they read pass through a ring
    # of NS strips, each converted once per run instead of once per output plane that reads it.
    # a run of one plane keeps one strip per kernel plane (no ring: nothing is reused across planes)
    NS = (KD - 1) * dz + 1 if zrun > 1 else KD
    # Every branch on a path tests MODE itself, so that Numba prunes it (a variable holding the
    # test would not be pruned).
    if MODE == 0:
        raise RuntimeError("correlate_bank runs as bank(mode), a copy compiled for one path")
    fours = MODE == BY_COLUMNS or MODE == BY_PLANES  # four rows at a time, with spare rows past a block's end
    for t in prange(t0, t1):  # task t = (output channel, run of planes, row block)
        o = t // (nruns * nblocks)
        rem = t - o * (nruns * nblocks)
        zr = rem // nblocks
        bi = rem - zr * nblocks
        i0 = bi * block
        i1 = min(i0 + block, Ho)
        nrows = (i1 - 1 - i0) * sy + (KH - 1) * dy + 1
        # rows more than the block reads: a block whose rows are not a multiple of two (of four,
        # with ``fours``) computes its last rows with spare ones, which read these
        extra = 3 if fours else 1
        ring = np.empty((NS, nrows + extra, Wp), dtype=w.dtype)  # x may be 8/16-bit: converted as a strip fills
        for s in range(NS):
            for e in range(nrows, nrows + extra):
                for q in range(Wp):
                    ring[s, e, q] = 0.0
        held = np.full(NS, -1, dtype=np.int64)  # the (padded plane, input channel) each strip holds
        rows_buf = np.empty((i1 - i0 if buffered else 0, row_span), dtype=w.dtype)
        ibuf = np.empty(row_span if integer else 0, dtype=np.int32)
        rb = i0 if buffered else 0  # output row i is row i - rb of plane
        span = (i1 - i0 - 1) * Wp + Wo
        accf = np.empty(span if MODE == FLAT else 0, dtype=w.dtype)
        # BLOCKS and FUSED compute an odd block's last row with a spare row; BY_COLUMNS and BY_PLANES
        # (four rows at a time) the rows past a block's end with three
        spare = np.empty(row_span if MODE == BLOCKS or MODE == FUSED else 0, dtype=w.dtype)
        spares = np.empty((3 if fours else 0, row_span), dtype=w.dtype)
        # TAPS: one plane of a 3x3 at unit x-stride is one assigning pass per row, no zeroing first
        single3 = Cg == 1 and KD == 1 and KH == 3 and KW == 3 and sx == 1
        g = o // out_per_group
        for zo in range(zr * zrun, min(Zo, (zr + 1) * zrun)):
            plane = rows_buf if buffered else out[o, zo]
            if MODE == FLAT:
                for q in range(span):
                    accf[q] = 0.0
            if MODE == TAPS:
                if not single3:
                    for i in range(i0, i1):
                        row = plane[i - rb]
                        for j in range(Wo):
                            row[j] = 0.0
            for cg in range(Cg):
                ci = g * Cg + cg
                for c in range(KD):
                    pz = zo * sz + c * dz
                    slot = pz % NS if zrun > 1 else c
                    strip = ring[slot]
                    if held[slot] != pz * Cg + cg:  # else filled for an earlier plane of this run
                        held[slot] = pz * Cg + cg
                        zz = zmap[pz]
                        for p in range(nrows):
                            dst = strip[p]
                            rr = ymap[i0 * sy + p]
                            if zz < 0 or rr < 0:
                                for q in range(Wp):
                                    dst[q] = cval
                                continue
                            src = x[ci, zz, rr]
                            if P > 1:
                                _fill_planar(dst, src, xmap, bx, interior_end, Wseg, P, cval)
                                continue
                            for q in range(bx):
                                m = xmap[q]
                                dst[q] = src[m] if m >= 0 else cval
                            dst[bx:interior_end] = src[: interior_end - bx]
                            for q in range(interior_end, Wp):
                                m = xmap[q]
                                dst[q] = src[m] if m >= 0 else cval
                    if MODE == FLAT:
                        _accumulate_flat(accf, strip.reshape((nrows + extra) * Wp), w[o, cg, c], Wp, dy, dx)
                    if MODE == BY_COLUMNS:
                        for i in range(i0, i1, 4):
                            a0, a1, a2, a3 = _four_rows(plane, spares, i - rb, i1 - rb, row_span)
                            if cg == 0 and c == 0:  # zeroed just before their first column: still in L1 then
                                for j in range(row_span):
                                    a0[j] = 0.0
                                    a1[j] = 0.0
                                    a2[j] = 0.0
                                    a3[j] = 0.0
                            for b in range(KW):
                                _add_column(a0, a1, a2, a3, strip, i - i0, b, w[o, cg, c, :, b])
                    if MODE == BLOCKS:
                        for i in range(i0, i1, 2):
                            a0 = plane[i - rb, :row_span]
                            a1 = plane[i + 1 - rb, :row_span] if i + 1 < i1 else spare
                            if cg == 0 and c == 0:  # zeroed here, just before their first block: still in L1 then
                                for j in range(row_span):
                                    a0[j] = 0.0
                                    a1[j] = 0.0
                            a = 0
                            while a < KH:
                                b = 0
                                while b < KW:
                                    rows, cols = _block_shape(KH - a, KW - b, block_rows)
                                    _add_block(a0, a1, strip, i - i0 + a, b, w[o, cg, c, a : a + rows, b : b + cols])
                                    b += cols
                                a += rows
                    if MODE != TAPS:
                        continue
                    for i in range(i0, i1):
                        acc = plane[i - rb]
                        r0 = (i - i0) * sy
                        if sx == 1:
                            # Blocking across kernel rows: each pass over acc adds up to 4 taps,
                            # so acc is loaded and stored once per 4 multiply-adds.
                            a = 0
                            while KW == 1 and a + 8 <= KH:  # a column kernel: 8 rows per pass
                                _taps8(acc, strip[r0 + a * dy, :Wo], strip[r0 + (a + 1) * dy, :Wo],
                                       strip[r0 + (a + 2) * dy, :Wo], strip[r0 + (a + 3) * dy, :Wo],
                                       strip[r0 + (a + 4) * dy, :Wo], strip[r0 + (a + 5) * dy, :Wo],
                                       strip[r0 + (a + 6) * dy, :Wo], strip[r0 + (a + 7) * dy, :Wo],
                                       w[o, cg, c, a, 0], w[o, cg, c, a + 1, 0], w[o, cg, c, a + 2, 0],
                                       w[o, cg, c, a + 3, 0], w[o, cg, c, a + 4, 0], w[o, cg, c, a + 5, 0],
                                       w[o, cg, c, a + 6, 0], w[o, cg, c, a + 7, 0])  # fmt: skip
                                a += 8
                            while a + 4 <= KH:
                                l0 = strip[r0 + a * dy]
                                l1 = strip[r0 + (a + 1) * dy]
                                l2 = strip[r0 + (a + 2) * dy]
                                l3 = strip[r0 + (a + 3) * dy]
                                b = 0
                                while b + 2 <= KW:  # two kernel columns per pass: 8 taps
                                    p0 = b * dx
                                    p1 = p0 + dx
                                    _taps8(acc, l0[p0 : p0 + Wo], l1[p0 : p0 + Wo], l2[p0 : p0 + Wo], l3[p0 : p0 + Wo],
                                           l0[p1 : p1 + Wo], l1[p1 : p1 + Wo], l2[p1 : p1 + Wo], l3[p1 : p1 + Wo],
                                           w[o, cg, c, a, b], w[o, cg, c, a + 1, b], w[o, cg, c, a + 2, b], w[o, cg, c, a + 3, b],
                                           w[o, cg, c, a, b + 1], w[o, cg, c, a + 1, b + 1], w[o, cg, c, a + 2, b + 1],
                                           w[o, cg, c, a + 3, b + 1])  # fmt: skip
                                    b += 2
                                if b < KW:
                                    base = b * dx
                                    _taps4(acc, l0[base : base + Wo], l1[base : base + Wo], l2[base : base + Wo],
                                           l3[base : base + Wo], w[o, cg, c, a, b], w[o, cg, c, a + 1, b],
                                           w[o, cg, c, a + 2, b], w[o, cg, c, a + 3, b])  # fmt: skip
                                a += 4
                            rest = KH - a
                            if rest == 3:
                                l0 = strip[r0 + a * dy]
                                l1 = strip[r0 + (a + 1) * dy]
                                l2 = strip[r0 + (a + 2) * dy]
                                b = 0
                                while b + 3 <= KW:  # three kernel columns per pass: 9 taps (a 3x3 in one pass)
                                    p0 = b * dx
                                    p1 = p0 + dx
                                    p2 = p1 + dx
                                    _taps9(acc, l0[p0 : p0 + Wo], l1[p0 : p0 + Wo], l2[p0 : p0 + Wo],
                                           l0[p1 : p1 + Wo], l1[p1 : p1 + Wo], l2[p1 : p1 + Wo],
                                           l0[p2 : p2 + Wo], l1[p2 : p2 + Wo], l2[p2 : p2 + Wo],
                                           w[o, cg, c, a, b], w[o, cg, c, a + 1, b], w[o, cg, c, a + 2, b],
                                           w[o, cg, c, a, b + 1], w[o, cg, c, a + 1, b + 1], w[o, cg, c, a + 2, b + 1],
                                           w[o, cg, c, a, b + 2], w[o, cg, c, a + 1, b + 2], w[o, cg, c, a + 2, b + 2],
                                           not single3)  # fmt: skip
                                    b += 3
                                while b < KW:
                                    base = b * dx
                                    _taps3(acc, l0[base : base + Wo], l1[base : base + Wo], l2[base : base + Wo],
                                           w[o, cg, c, a, b], w[o, cg, c, a + 1, b], w[o, cg, c, a + 2, b])  # fmt: skip
                                    b += 1
                            elif rest == 2:
                                l0 = strip[r0 + a * dy]
                                l1 = strip[r0 + (a + 1) * dy]
                                for b in range(KW):
                                    base = b * dx
                                    _taps2(acc, l0[base : base + Wo], l1[base : base + Wo], w[o, cg, c, a, b], w[o, cg, c, a + 1, b])
                            elif rest == 1:
                                _row_taps(acc, strip[r0 + a * dy], w[o, cg, c, a], dx, Wo)
                        else:
                            for a in range(KH):
                                line = strip[r0 + a * dy]
                                for b in range(KW):
                                    wv = w[o, cg, c, a, b]
                                    base = b * dx
                                    for j in range(Wo):
                                        acc[j] += wv * line[base + j * sx]
            if MODE == FLAT:
                for i in range(i0, i1):
                    row = plane[i - rb]
                    src = accf[(i - i0) * Wp : (i - i0) * Wp + Wo]
                    for j in range(Wo):
                        row[j] = src[j]
            if MODE == BY_PLANES:
                for i in range(i0, i1, 4):
                    a0, a1, a2, a3 = _four_rows(plane, spares, i - rb, i1 - rb, row_span)
                    for c in range(3):  # one call site: each inlined copy costs compile time
                        _add_plane(a0, a1, a2, a3, ring[(zo * sz + c * dz) % NS if zrun > 1 else c], i - i0, w[o, 0, c], c == 0)
            if MODE == FUSED:  # the 27 taps inline (as a helper, or with the dilation as an offset, they did not vectorise)
                s0 = ring[(zo * sz) % NS if zrun > 1 else 0]
                s1 = ring[(zo * sz + dz) % NS if zrun > 1 else 1]
                s2 = ring[(zo * sz + 2 * dz) % NS if zrun > 1 else 2]
                wf = w[o, 0]
                w0, w1, w2, w3, w4, w5, w6, w7, w8 = wf[0, 0, 0], wf[0, 0, 1], wf[0, 0, 2], wf[0, 1, 0], wf[0, 1, 1], wf[0, 1, 2], wf[0, 2, 0], wf[0, 2, 1], wf[0, 2, 2]
                v0, v1, v2, v3, v4, v5, v6, v7, v8 = wf[1, 0, 0], wf[1, 0, 1], wf[1, 0, 2], wf[1, 1, 0], wf[1, 1, 1], wf[1, 1, 2], wf[1, 2, 0], wf[1, 2, 1], wf[1, 2, 2]
                u0, u1, u2, u3, u4, u5, u6, u7, u8 = wf[2, 0, 0], wf[2, 0, 1], wf[2, 0, 2], wf[2, 1, 0], wf[2, 1, 1], wf[2, 1, 2], wf[2, 2, 0], wf[2, 2, 1], wf[2, 2, 2]
                if sy == 1 and dy == 1:
                    # pairs of rows: four rows of each plane loaded once for two outputs (256^3,
                    # one thread, interleaved A/B: 64 -> 62 ms); an odd block's last row pairs with spare
                    for i in range(i0, i1, 2):
                        r0 = i - i0
                        acc = plane[i - rb]
                        acd = plane[i + 1 - rb] if i + 1 < i1 else spare
                        a0, a1, a2, a3 = s0[r0], s0[r0 + 1], s0[r0 + 2], s0[r0 + 3]
                        b0, b1, b2, b3 = s1[r0], s1[r0 + 1], s1[r0 + 2], s1[r0 + 3]
                        c0, c1, c2, c3 = s2[r0], s2[r0 + 1], s2[r0 + 2], s2[r0 + 3]
                        for j in range(Wo):
                            e0, e1, e2, f0, f1, f2 = a0[j], a0[j + 1], a0[j + 2], a1[j], a1[j + 1], a1[j + 2]
                            g0, g1, g2, h0, h1, h2 = a2[j], a2[j + 1], a2[j + 2], a3[j], a3[j + 1], a3[j + 2]
                            p = ((w0 * e0 + w1 * e1 + w2 * e2) + (w3 * f0 + w4 * f1 + w5 * f2)) + (w6 * g0 + w7 * g1 + w8 * g2)
                            pp = ((w0 * f0 + w1 * f1 + w2 * f2) + (w3 * g0 + w4 * g1 + w5 * g2)) + (w6 * h0 + w7 * h1 + w8 * h2)
                            e0, e1, e2, f0, f1, f2 = b0[j], b0[j + 1], b0[j + 2], b1[j], b1[j + 1], b1[j + 2]
                            g0, g1, g2, h0, h1, h2 = b2[j], b2[j + 1], b2[j + 2], b3[j], b3[j + 1], b3[j + 2]
                            q = ((v0 * e0 + v1 * e1 + v2 * e2) + (v3 * f0 + v4 * f1 + v5 * f2)) + (v6 * g0 + v7 * g1 + v8 * g2)
                            qq = ((v0 * f0 + v1 * f1 + v2 * f2) + (v3 * g0 + v4 * g1 + v5 * g2)) + (v6 * h0 + v7 * h1 + v8 * h2)
                            e0, e1, e2, f0, f1, f2 = c0[j], c0[j + 1], c0[j + 2], c1[j], c1[j + 1], c1[j + 2]
                            g0, g1, g2, h0, h1, h2 = c2[j], c2[j + 1], c2[j + 2], c3[j], c3[j + 1], c3[j + 2]
                            r = ((u0 * e0 + u1 * e1 + u2 * e2) + (u3 * f0 + u4 * f1 + u5 * f2)) + (u6 * g0 + u7 * g1 + u8 * g2)
                            rr = ((u0 * f0 + u1 * f1 + u2 * f2) + (u3 * g0 + u4 * g1 + u5 * g2)) + (u6 * h0 + u7 * h1 + u8 * h2)
                            acc[j] = (p + q) + r
                            acd[j] = (pp + qq) + rr
                else:
                    for i in range(i0, i1):
                        r0 = (i - i0) * sy
                        acc = plane[i - rb]
                        a0, a1, a2 = s0[r0], s0[r0 + dy], s0[r0 + 2 * dy]
                        b0, b1, b2 = s1[r0], s1[r0 + dy], s1[r0 + 2 * dy]
                        c0, c1, c2 = s2[r0], s2[r0 + dy], s2[r0 + 2 * dy]
                        for j in range(Wo):
                            p = (((w0 * a0[j] + w1 * a0[j + 1] + w2 * a0[j + 2]) + (w3 * a1[j] + w4 * a1[j + 1] + w5 * a1[j + 2]))
                                 + (w6 * a2[j] + w7 * a2[j + 1] + w8 * a2[j + 2]))
                            q = (((v0 * b0[j] + v1 * b0[j + 1] + v2 * b0[j + 2]) + (v3 * b1[j] + v4 * b1[j + 1] + v5 * b1[j + 2]))
                                 + (v6 * b2[j] + v7 * b2[j + 1] + v8 * b2[j + 2]))
                            r = (((u0 * c0[j] + u1 * c0[j + 1] + u2 * c0[j + 2]) + (u3 * c1[j] + u4 * c1[j + 1] + u5 * c1[j + 2]))
                                 + (u6 * c2[j] + u7 * c2[j + 1] + u8 * c2[j + 2]))
                            acc[j] = (p + q) + r
            if buffered:
                for i in range(i0, i1):
                    if integer:
                        counts[t] += _round_row(plane[i - i0], iout[o, zo, i], P, Wseg, post, ibuf)
                    else:
                        _interleave_row(plane[i - i0], out[o, zo, i], P, Wseg)
    return out


def reads_in_place(x: str, acc: str) -> bool:
    """Whether ``correlate_unrolled`` reads rows of dtype ``x`` as they are under weights of dtype
    ``acc`` (names): its own type; 8-bit rows on CPUs with 32 vector registers (AVX-512); 16-bit
    ones under float64 (Numba multiplies uint16 by float32 in float64, which would round
    differently from the border columns). Others are converted into a ring of rows: for 16-bit grey
    it beat a float copy of the whole image (3x3 28 -> 17 ms, 4000x3000).

    8-bit rows, 4000x3000 to uint8 against ``cv2.filter2D``: on the AVX-512 Xeon the ring cost
    20-40% (its float rows fill L2); on the AVX2 AMD EPYC Zen 1 it saved 16-36% (RGB 5x5 223 ->
    177 ms on one thread, 114 -> 91 on two), where each 8-lane conversion of every tap's load is
    two 128-bit operations. The rule lives in this file, not in ``tuning``: Numba's cache hashes
    only a kernel's own file, and its index holds the CPU features the choice reads."""
    return x == acc or (x == "uint8" and vector_registers() >= 32) or (x == "uint16" and acc == "float64")


def _source_row(x, c, zz, r, ring, slot, fill):  # (NUMBA_DISABLE_JIT runs this body; the JIT, the overload)
    """Row ``r`` of plane ``zz`` of channel ``c``: the row itself where it is read in place, else
    its copy in the kernel's type in ``ring[slot]`` (converted there first when ``fill``)."""
    row = x[c, zz, r]
    if reads_in_place(row.dtype.name, ring.dtype.name):
        return row
    if fill:
        ring[slot] = row
    return ring[slot]


@overload(_source_row)
def _source_row_typed(x, c, zz, r, ring, slot, fill):  # pragma: no cover - compiled
    if reads_in_place(str(x.dtype), str(ring.dtype)):

        def in_place(x, c, zz, r, ring, slot, fill):
            return x[c, zz, r]

        return in_place

    def converted(x, c, zz, r, ring, slot, fill):
        dst = ring[slot]
        if fill:
            src = x[c, zz, r]
            for j in range(dst.shape[0]):
                dst[j] = src[j]
        return dst

    return converted


def _constant_row(x, ring, cval):  # (NUMBA_DISABLE_JIT runs this body; the JIT, the overload)
    """A row of the constant border in the type of the rows ``_source_row`` gives."""
    return np.full(ring.shape[1], cval, dtype=x.dtype if reads_in_place(x.dtype.name, ring.dtype.name) else ring.dtype)


@overload(_constant_row)
def _constant_row_typed(x, ring, cval):  # pragma: no cover - compiled
    if reads_in_place(str(x.dtype), str(ring.dtype)):
        return lambda x, ring, cval: np.full(ring.shape[1], cval, dtype=x.dtype)
    return lambda x, ring, cval: np.full(ring.shape[1], cval, dtype=ring.dtype)


@njit_serial
def _line(x, c, zz, ymap, p, cline, ring, fill):  # pragma: no cover - compiled
    """The row behind padded row ``p`` (the map's last for a spare row past it) in the kernel's
    type, or ``cline``; rows of another type are converted into ``ring`` slot ``p % len(ring)``
    when ``fill`` (the first time a block reads them)."""
    r = ymap[min(p, ymap.shape[0] - 1)]
    return cline if zz < 0 or r < 0 else _source_row(x, c, zz, r, ring, p % ring.shape[0], fill)


@njit_serial
def _four_rows(plane, spares, k, end, span):  # pragma: no cover - compiled
    """Rows k .. k + 3 of ``plane`` (``span`` cells), spare rows for those at or past ``end``."""
    a1 = plane[k + 1, :span] if k + 1 < end else spares[0]
    a2 = plane[k + 2, :span] if k + 2 < end else spares[1]
    a3 = plane[k + 3, :span] if k + 3 < end else spares[2]
    return plane[k, :span], a1, a2, a3


@njit_serial
def _edge_cells(x, c, zz, ymap, xmap, i0, i1, j0, j1, Wo, cval, wk, spacing, outputs):  # pragma: no cover - compiled
    """The padded cells of columns ``:j0`` and ``j1:`` (whose taps cross the x border) for rows
    ``i0 .. i1-1``, side by side in flat rows of L cells, for the kernel's pass to sum in one call
    as ``outputs`` (4 or 2) flat output rows into ``sums`` (the interior's sums, so the same bits wherever
    a chunk's edge puts a column). Returns (cells, sums, lw, L): row r's sum of column j < j0 is
    ``sums[r * L + j]``, of j >= j1 ``sums[r * L + lw + j - j1]``."""
    K = wk.shape[0]
    reach = spacing * (K - 1)
    lw = j0 + reach if j0 > 0 else 0  # padded cells left of the interior, then right of it
    L = lw + (Wo - j1 + reach if j1 < Wo else 0)
    R = i1 - i0
    sums = np.empty(outputs * R * L, dtype=wk.dtype)  # (junk where the parts meet, and past the first R * L)
    cells = np.empty((R + 8) * L, dtype=wk.dtype)  # the lines the pass reads past the first: spare rows
    for p in range(R + 8 if L > 0 else 0):
        r = ymap[min(i0 + p, ymap.shape[0] - 1)]
        for q in range(L):
            m = xmap[q if q < lw else j1 + q - lw]
            cells[p * L + q] = x[c, zz, r, m] if m >= 0 and r >= 0 and zz >= 0 else cval
    return cells, sums, lw, L


@njit_serial
def _staged(line, stage, p, Ws, fill):  # pragma: no cover - compiled
    """Row ``p``'s slot of the stage (8 rows ``Ws`` cells apart), holding ``line`` (copied when ``fill``)."""
    n = line.shape[0]
    dst = stage[(p % 8) * Ws : (p % 8) * Ws + n]
    if fill:
        for q in range(n):
            dst[q] = line[q]
    return dst


@njit_serial
def _put_edges(row, sums, r, lw, L, j0, j1):  # pragma: no cover - compiled
    for j in range(j0):
        row[j] = sums[r * L + j]
    for j in range(j1, row.shape[0]):
        row[j] = sums[r * L + lw + j - j1]


IN_FOURS = 0  # fixed in each compiled copy of correlate_unrolled (unrolled): 1 four rows at a time,
KSIZE = SPACING = 0  # ... the kernel size and tap spacing it takes,
PASS: Any = None  # ... and the pass it calls for them: _passes.PAIRS or QUADS[k, spacing]


def unrolled(fours: bool, k: int, spacing: int):  # -> the compiled copy
    """``correlate_unrolled`` compiled for one k x k kernel at one tap ``spacing``, in pairs of
    rows or four rows at a time (``quads`` >= 0): each copy types and compiles only its own
    pass (a first 3x3 call does not compile the 5x5's, nor a grey image the RGB rows')."""
    table = QUADS if fours else PAIRS
    name = f"{'fours' if fours else 'pairs'}{k}x{k}_{spacing}"
    return specialised(correlate_unrolled, name, IN_FOURS=int(fours), KSIZE=k, SPACING=spacing, PASS=table[k, spacing])


def unrolled_copies(fours_here: bool) -> list[tuple[bool, int, int]]:
    """The (fours, k, spacing) of every copy dispatch may run (``fours_here``: on 16 vector registers)."""
    copies = [(False, k, sp) for k, sp in PAIRS]
    return copies + ([(True, k, sp) for k, sp in QUADS] if fours_here else [])


def correlate_unrolled(x, w, zmap, ymap, xmap, bx, cval, sz, groups, block, quads, out, iout, post, counts, block_rows, t0, t1):  # pragma: no cover - compiled
    """``correlate_bank`` for one plane of a whole 3x3 or 5x5 kernel (w (Cout, 1, 1, K, K)) at unit
    stride and dilation, on rows read in place (``reads_in_place``: the kernel's type, 8-bit on AVX-512; the
    caller converts those whose type cannot hold a constant border), others converted into a ring
    of K+3 rows as a block first reads them (``_line``). It runs as copies (``unrolled``), each
    calling one pass, ``PASS``, for its kernel size and tap spacing; the border columns' sums come
    from the same pass, on their cells gathered into flat rows (``_edge_cells``). Pairs of output rows
    are assigned in one pass each (``_passes.PAIRS``): no strip to fill and no zeroing; in the
    copies compiled for fours (which dispatch runs when ``quads`` >= 0: a 5x5 on
    16 vector registers), four rows at a time (``_passes.QUADS``,
    the same bits): on the lines as they are (0: they spread over L1, ``tuning.rows_spread``), or
    on copies in a stage of rows ``quads`` cells longer, which spread (rows read in place whose
    width crowds one L1 set: 4096 float32). RGB rows stay interleaved
    (``SPACING`` 3, xmap per value), and an integer ``iout`` gets each row through ``_round_row``
    from a float row in cache.

    4096^2 float32 on one thread, into a warm result: 3x3 23 -> 10-12 ms, 5x5 30 -> 16-20 ms
    (``cv2.filter2D`` 14 and 24)."""
    W = x.shape[3]
    Cout = w.shape[0]
    K = KSIZE  # the copy's
    spacing = SPACING
    if w.shape[3] != K:  # (the pass would read the wrong taps)
        raise ValueError("correlate_unrolled: a copy takes only the kernel size it was compiled for")
    integer = iout.shape[0] > 0
    _, Zo, Ho, Wo = iout.shape if integer else out.shape
    nblocks = (Ho + block - 1) // block
    out_per_group = Cout // groups
    j0 = min(bx, Wo)  # output cells j0 .. j1-1 read x cells j - bx + spacing * u in place
    j1 = max(j0, min(Wo, W - spacing * (K - 1) + bx))
    for t in prange(t0, t1):  # task t = (output channel, plane, row block)
        o = t // (Zo * nblocks)
        rem = t - o * (Zo * nblocks)
        zo = rem // nblocks
        i0 = (rem - zo * nblocks) * block
        i1 = min(i0 + block, Ho)
        c = o // out_per_group
        zz = zmap[zo * sz]
        wk = w[o, 0, 0]
        b0 = np.empty(Wo, dtype=w.dtype)  # an integer result's float rows; else the spare rows past a block
        b1 = np.empty(Wo, dtype=w.dtype)
        ibuf = np.empty(Wo if integer else 0, dtype=np.int32)
        ring = np.empty((K + 3, W), dtype=w.dtype)  # rows not read in place, converted
        cline = _constant_row(x, ring, cval)
        cells, sums, lw, L = _edge_cells(x, c, zz, ymap, xmap, i0, i1, j0, j1, Wo, cval, wk, spacing, 4 if IN_FOURS == 1 else 2)
        n = (i1 - i0) * L
        if IN_FOURS == 1:  # (quads >= 0: dispatch runs this copy)
            b2 = np.empty(Wo, dtype=w.dtype)
            b3 = np.empty(Wo, dtype=w.dtype)
            Ws = W + quads
            stage = np.empty(8 * Ws if quads > 0 else 0, dtype=cline.dtype)  # (the lines' type)
            if L > 0:  # the edges' sums, as four flat rows (the last three junk)
                PASS(sums[:n], sums[n : 2 * n], sums[2 * n : 3 * n], sums[3 * n :], cells, cells[L:], cells[2 * L :],
                     cells[3 * L :], cells[4 * L :], cells[5 * L :], cells[6 * L :], cells[7 * L :], wk)  # fmt: skip
            for i in range(i0, i1, 4):
                a0 = b0 if integer else out[o, zo, i]
                a1 = b1 if integer or i + 1 >= i1 else out[o, zo, i + 1]
                a2 = b2 if integer or i + 2 >= i1 else out[o, zo, i + 2]
                a3 = b3 if integer or i + 3 >= i1 else out[o, zo, i + 3]
                # rows i .. i+7; a quad after the block's first converts only its four new rows
                first = i == i0
                l0 = _line(x, c, zz, ymap, i, cline, ring, first)
                l1 = _line(x, c, zz, ymap, i + 1, cline, ring, first)
                l2 = _line(x, c, zz, ymap, i + 2, cline, ring, first)
                l3 = _line(x, c, zz, ymap, i + 3, cline, ring, first)
                l4 = _line(x, c, zz, ymap, i + 4, cline, ring, True)
                l5 = _line(x, c, zz, ymap, i + 5, cline, ring, True)
                l6 = _line(x, c, zz, ymap, i + 6, cline, ring, True)
                l7 = _line(x, c, zz, ymap, i + 7, cline, ring, True)
                if quads > 0:  # the quad's new lines into the stage (all eight for a block's first)
                    l0, l1, l2, l3 = _staged(l0, stage, i, Ws, first), _staged(l1, stage, i + 1, Ws, first), _staged(l2, stage, i + 2, Ws, first), _staged(l3, stage, i + 3, Ws, first)
                    l4, l5, l6, l7 = _staged(l4, stage, i + 4, Ws, True), _staged(l5, stage, i + 5, Ws, True), _staged(l6, stage, i + 6, Ws, True), _staged(l7, stage, i + 7, Ws, True)
                PASS(a0[j0:j1], a1[j0:j1], a2[j0:j1], a3[j0:j1], l0, l1, l2, l3, l4, l5, l6, l7, wk)
                for r, a in enumerate((a0, a1, a2, a3)):
                    if i + r < i1:
                        _put_edges(a, sums, i + r - i0, lw, L, j0, j1)
                        if integer:
                            counts[t] += _round_row(a, iout[o, zo, i + r], 1, Wo, post, ibuf)
        else:
            if L > 0:  # the edges' sums, as two flat rows (the second junk)
                PASS(sums[:n], sums[n : 2 * n], cells, cells[L:], cells[2 * L :], cells[3 * L :], cells[4 * L :], cells[5 * L :], wk, block_rows)
            for i in range(i0, i1, 2):
                a0 = b0 if integer else out[o, zo, i]
                a1 = b1 if integer or i + 1 == i1 else out[o, zo, i + 1]
                # rows i .. i+K; a pair after the block's first converts only its two new rows
                first = i == i0
                l0 = _line(x, c, zz, ymap, i, cline, ring, first)
                l1 = _line(x, c, zz, ymap, i + 1, cline, ring, first)
                l2 = _line(x, c, zz, ymap, i + 2, cline, ring, first or K == 3)
                l3 = _line(x, c, zz, ymap, i + 3, cline, ring, first or K == 3)
                l4, l5 = l3, l3  # (unread by a 3x3)
                if KSIZE == 5:  # (pruned from the 3x3 copies)
                    l4 = _line(x, c, zz, ymap, i + 4, cline, ring, True)
                    l5 = _line(x, c, zz, ymap, i + 5, cline, ring, True)
                PASS(a0[j0:j1], a1[j0:j1], l0, l1, l2, l3, l4, l5, wk, block_rows)
                _put_edges(a0, sums, i - i0, lw, L, j0, j1)
                if i + 1 < i1:
                    _put_edges(a1, sums, i + 1 - i0, lw, L, j0, j1)
                if integer:
                    counts[t] += _round_row(a0, iout[o, zo, i], 1, Wo, post, ibuf)
                    if i + 1 < i1:
                        counts[t] += _round_row(a1, iout[o, zo, i + 1], 1, Wo, post, ibuf)
    return out


@njit_serial
def _fill_planar(dst, src, xmap, bx, interior_end, Wseg, P, cval):  # pragma: no cover - compiled
    """One strip row from a row of P interleaved channels: channel ch's padded row goes to
    ``dst[ch*Wseg : (ch+1)*Wseg]``; ``xmap`` maps a padded pixel to a source pixel (-1: cval)."""
    n = interior_end - bx
    if P == 3:  # RGB: constant offsets, which LLVM vectorises as one stride-3 load group
        s0 = dst[bx:interior_end]
        s1 = dst[Wseg + bx : Wseg + interior_end]
        s2 = dst[2 * Wseg + bx : 2 * Wseg + interior_end]
        for q in range(n):
            s0[q] = src[3 * q]
            s1[q] = src[3 * q + 1]
            s2[q] = src[3 * q + 2]
    else:
        for ch in range(P):
            seg = dst[ch * Wseg + bx : ch * Wseg + interior_end]
            for q in range(n):
                seg[q] = src[q * P + ch]
    for ch in range(P):
        base = ch * Wseg
        for q in range(bx):
            m = xmap[q]
            dst[base + q] = src[m * P + ch] if m >= 0 else cval
        for q in range(max(bx, interior_end), Wseg):
            m = xmap[q]
            dst[base + q] = src[m * P + ch] if m >= 0 else cval


@njit_serial
def _interleave_row(src, dst, P, Wseg):  # pragma: no cover - compiled
    """A planar row (P segments of Wseg cells) into an interleaved output row."""
    n = dst.shape[0] // P
    if P == 1:
        for j in range(n):
            dst[j] = src[j]
    elif P == 3:
        s0, s1, s2 = src[:n], src[Wseg : Wseg + n], src[2 * Wseg : 2 * Wseg + n]
        for j in range(n):
            dst[3 * j] = s0[j]
            dst[3 * j + 1] = s1[j]
            dst[3 * j + 2] = s2[j]
    else:
        for ch in range(P):
            seg = src[ch * Wseg : ch * Wseg + n]
            for j in range(n):
                dst[j * P + ch] = seg[j]


@njit_rounding
def _rounded(v, pre, scale, offset, absolute):  # pragma: no cover - compiled
    """``convcli apply``'s steps on a float result, each rounded as numpy rounds it apart (this
    helper's flags allow no fused multiply-add): + the kernel's offset, * scale, + offset, abs, rint."""
    v = (v + pre) * scale
    v = v + offset
    return np.rint(abs(v) if absolute else v)


@njit_rounding
def _clipped(v, lo, hi):  # pragma: no cover - compiled
    """A rounded value clipped to [lo, hi] (NaN -> 0) as an int32 (every 8/16-bit value fits).
    NaN passes max and min (Python's order), so it is caught after them: caught before, the
    check kept the row's loop from vectorising (1.2 against 0.74 ns a value)."""
    w = min(max(v, lo), hi)
    return np.int32(w if w == w else 0.0)


@njit_rounding
def _round_row(src, dst, P, Wseg, post, tmp):  # pragma: no cover - compiled
    """A float row (P planar segments of Wseg cells) into an integer output row, as
    ``postprocess.Cast`` does; ``post`` = (pre, scale, offset, lo, hi, absolute), ``tmp`` an int32
    row as long as ``src``. Returns how many values were out of range or NaN; ``src`` is left rounded.
    Rounded along the row first, then interleaved: one loop doing both compiled 15-20 s longer
    inside the kernel. The float steps, the count and the clip are three loops: in one, the
    count's 64-bit sum held the loop to 4 lanes, and a 4000x3000 RGB 5x5 to uint8 spent 50 of its
    190 ms here (1.4 ns a value against 0.74 in three; AMD EPYC Zen 1, one thread)."""
    pre, scale, offset, lo, hi = post[0], post[1], post[2], post[3], post[4]
    absolute = post[5] != 0
    k = 0
    n = dst.shape[0] // P
    for ch in range(P):  # the cells between segments are not results: not counted
        seg, rounded = src[ch * Wseg : ch * Wseg + n], tmp[ch * Wseg : ch * Wseg + n]
        for j in range(n):
            seg[j] = _rounded(seg[j], pre, scale, offset, absolute)
        for j in range(n):
            if not lo <= seg[j] <= hi:
                k += 1
        for j in range(n):
            rounded[j] = _clipped(seg[j], lo, hi)
    _interleave_row(tmp, dst, P, Wseg)
    return k


@njit_serial
def _quad8u(a0, a1, a2, a3, p, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, c0, w0, w1, w2, w3, w4, w5, w6, w7):  # pragma: no cover - compiled
    """Eight taps down the columns for four consecutive output rows: rows ``r0..r10`` of the plane
    ``p`` from column ``c0``, 11 rows read for 32 products. Each row's sum is formed before any
    store, so the rows are loaded once for all four; the column index is unsigned, so Numba
    adds no negative-index guard and the loop vectorises."""
    off = np.uint64(c0)
    for j in range(a0.shape[0]):
        q = off + np.uint64(j)
        s = ((w0 * p[r0, q] + w1 * p[r1, q]) + (w2 * p[r2, q] + w3 * p[r3, q])) + ((w4 * p[r4, q] + w5 * p[r5, q]) + (w6 * p[r6, q] + w7 * p[r7, q]))
        t = ((w0 * p[r1, q] + w1 * p[r2, q]) + (w2 * p[r3, q] + w3 * p[r4, q])) + ((w4 * p[r5, q] + w5 * p[r6, q]) + (w6 * p[r7, q] + w7 * p[r8, q]))
        u = ((w0 * p[r2, q] + w1 * p[r3, q]) + (w2 * p[r4, q] + w3 * p[r5, q])) + ((w4 * p[r6, q] + w5 * p[r7, q]) + (w6 * p[r8, q] + w7 * p[r9, q]))
        v = ((w0 * p[r3, q] + w1 * p[r4, q]) + (w2 * p[r5, q] + w3 * p[r6, q])) + ((w4 * p[r7, q] + w5 * p[r8, q]) + (w6 * p[r9, q] + w7 * p[r10, q]))
        a0[j] += s
        a1[j] += t
        a2[j] += u
        a3[j] += v


@njit_serial
def _quad4u(a0, a1, a2, a3, p, r0, r1, r2, r3, r4, r5, r6, c0, w0, w1, w2, w3):  # pragma: no cover - compiled
    off = np.uint64(c0)
    for j in range(a0.shape[0]):
        q = off + np.uint64(j)
        s = (w0 * p[r0, q] + w1 * p[r1, q]) + (w2 * p[r2, q] + w3 * p[r3, q])
        t = (w0 * p[r1, q] + w1 * p[r2, q]) + (w2 * p[r3, q] + w3 * p[r4, q])
        u = (w0 * p[r2, q] + w1 * p[r3, q]) + (w2 * p[r4, q] + w3 * p[r5, q])
        v = (w0 * p[r3, q] + w1 * p[r4, q]) + (w2 * p[r5, q] + w3 * p[r6, q])
        a0[j] += s
        a1[j] += t
        a2[j] += u
        a3[j] += v


@njit_serial
def _quad1u(a0, a1, a2, a3, p, r0, r1, r2, r3, c0, w0):  # pragma: no cover - compiled
    off = np.uint64(c0)
    for j in range(a0.shape[0]):
        q = off + np.uint64(j)
        s = w0 * p[r0, q]
        t = w0 * p[r1, q]
        u = w0 * p[r2, q]
        v = w0 * p[r3, q]
        a0[j] += s
        a1[j] += t
        a2[j] += u
        a3[j] += v


@njit_serial
def _src(x, c, z, r, c0, c1, zrow):  # pragma: no cover - compiled
    """Columns ``c0:c1`` of source row ``r``; a constant-border row (``r < 0``) reads zeros."""
    if r >= 0:
        return x[c, z, r, c0:c1]
    return zrow[c0:c1]


@njit_serial
def _rows_inside(ymap, i, KH):  # pragma: no cover - compiled
    """Whether every row that output rows ``i .. i+3`` read is a source row (none of them in a
    constant border, which reads zeros): then four rows go together through ``_quad_column``."""
    for b in range(i, min(i + KH + 3, ymap.shape[0])):
        if ymap[b] < 0:
            return False
    return True


@njit_serial
def _quad_column(lines, x, c, z, ymap, i, fy, c0, c1, lo, hi):  # pragma: no cover - compiled
    """``lines[k, lo:hi]`` = the vertical taps of output row ``i + k`` (k < 4) over source columns
    ``c0:c1`` (unit stride and dilation, no row in a constant border: ``_rows_inside``). Rows past
    the map's end repeat its last entry: their results are not used. The rows are read from the
    plane by index, not through a view each (a view costs a refcount: narrow rows ran 25% slower)."""
    KH = fy.shape[0]
    last = ymap.shape[0] - 1
    a0, a1, a2, a3 = lines[0, lo:hi], lines[1, lo:hi], lines[2, lo:hi], lines[3, lo:hi]
    for j in range(a0.shape[0]):
        a0[j] = 0.0
        a1[j] = 0.0
        a2[j] = 0.0
        a3[j] = 0.0
    p = x[c, z]
    a = 0
    while a + 8 <= KH:
        b = i + a
        _quad8u(a0, a1, a2, a3, p, ymap[b], ymap[b + 1], ymap[b + 2], ymap[b + 3], ymap[b + 4], ymap[b + 5],
                ymap[b + 6], ymap[b + 7], ymap[min(b + 8, last)], ymap[min(b + 9, last)], ymap[min(b + 10, last)], c0,
                fy[a], fy[a + 1], fy[a + 2], fy[a + 3], fy[a + 4], fy[a + 5], fy[a + 6], fy[a + 7])  # fmt: skip
        a += 8
    if a + 4 <= KH:
        b = i + a
        _quad4u(a0, a1, a2, a3, p, ymap[b], ymap[b + 1], ymap[b + 2], ymap[b + 3], ymap[min(b + 4, last)],
                ymap[min(b + 5, last)], ymap[min(b + 6, last)], c0, fy[a], fy[a + 1], fy[a + 2], fy[a + 3])  # fmt: skip
        a += 4
    while a < KH:
        b = i + a
        _quad1u(a0, a1, a2, a3, p, ymap[b], ymap[min(b + 1, last)], ymap[min(b + 2, last)], ymap[min(b + 3, last)], c0, fy[a])
        a += 1


@njit_serial
def _one_column(line, x, c, z, ymap, i, fy, sy, dy, c0, c1, lo, hi, zrow):  # pragma: no cover - compiled
    """``line[lo:hi]`` = the vertical taps of output row ``i`` (any stride and dilation)."""
    KH = fy.shape[0]
    acc = line[lo:hi]
    for j in range(acc.shape[0]):
        acc[j] = 0.0
    r0 = i * sy
    a = 0
    while a + 8 <= KH:
        _taps8(acc, _src(x, c, z, ymap[r0 + a * dy], c0, c1, zrow), _src(x, c, z, ymap[r0 + (a + 1) * dy], c0, c1, zrow),
               _src(x, c, z, ymap[r0 + (a + 2) * dy], c0, c1, zrow), _src(x, c, z, ymap[r0 + (a + 3) * dy], c0, c1, zrow),
               _src(x, c, z, ymap[r0 + (a + 4) * dy], c0, c1, zrow), _src(x, c, z, ymap[r0 + (a + 5) * dy], c0, c1, zrow),
               _src(x, c, z, ymap[r0 + (a + 6) * dy], c0, c1, zrow), _src(x, c, z, ymap[r0 + (a + 7) * dy], c0, c1, zrow),
               fy[a], fy[a + 1], fy[a + 2], fy[a + 3], fy[a + 4], fy[a + 5], fy[a + 6], fy[a + 7])  # fmt: skip
        a += 8
    while a < KH:
        _taps1(acc, _src(x, c, z, ymap[r0 + a * dy], c0, c1, zrow), fy[a])
        a += 1


@njit_serial
def _border_cells(lines, nr, q_from, q_to, xmap, q0, lo, c0, c1, ext, e0, e1):  # pragma: no cover - compiled
    """Padded cells ``q_from:q_to`` of the ``nr`` lines: copies of the column sums of source column
    ``m`` (interior ``lo:`` holds columns ``c0:c1``, the extra region ``ext:`` columns ``e0:e1``)."""
    for q in range(q_from, q_to):
        m = xmap[q0 + q]
        for k in range(nr):
            if m < 0:
                lines[k, q] = 0.0
            elif c0 <= m < c1:
                lines[k, q] = lines[k, lo + m - c0]
            else:
                lines[k, q] = lines[k, ext + m - e0]


@njit_serial
def _far_columns(xmap, q0, lo, hi, span, c0, c1, W):  # pragma: no cover - compiled
    """The source columns ``e0:e1`` that padded cells read outside the tile's ``c0:c1`` (``wrap``, or
    padding wider than the tile); ``e1 <= e0`` when there are none."""
    e0 = W
    e1 = 0
    for q in range(span):
        m = xmap[q0 + q]
        if (q < lo or q >= hi) and m >= 0 and not (c0 <= m < c1):
            e0 = min(e0, m)
            e1 = max(e1, m + 1)
    return e0, e1


@njit
def separable_yx(x, fy, fx, ymap, xmap, bx, sy, sx, dy, dx, block, col_tile, out, t0, t1):  # pragma: no cover - compiled
    """Fused separable pass over the last two axes, y first: per (row block, column tile), each
    output row's column sums (``fy`` down the source rows, read in place) go to a line in cache,
    and ``fx`` along that line writes the row of ``out``. At unit y-stride and dilation four rows go
    together, sharing the source rows they read (``_quad_column``). Border cells read 0 (the caller
    shifts a constant cval out).

    Measured at 4096^2 float32 on one thread (Xeon Sapphire Rapids, interleaved with
    ``cv2.sepFilter2D``, both writing into a reused array): x first into a cache-sized buffer (the
    earlier kernel) 1.06-1.42x OpenCV's time for a Gaussian 31; y first, one row at a time,
    0.9-1.0x; four rows sharing their source rows 0.72-0.80x (9 taps 0.49x, 5 taps 0.67x).
    Per-row sums formed before any store matter: written as ``a0[j] += ...; a1[j] += ...`` LLVM
    reloaded every row for each output row (a store might alias them), 25% slower."""
    C, Z, H, W = x.shape
    _, _, Ho, Wo = out.shape
    KW = fx.shape[0]
    nblocks = (Ho + block - 1) // block
    ntiles = (Wo + col_tile - 1) // col_tile
    quad = sy == 1 and dy == 1
    for t in prange(t0, t1):  # task t = (channel, plane, row block, column tile)
        ct = t // (Z * nblocks * ntiles)
        rem = t - ct * (Z * nblocks * ntiles)
        z = rem // (nblocks * ntiles)
        rem = rem - z * (nblocks * ntiles)
        bi = rem // ntiles
        ti = rem - bi * ntiles
        i0 = bi * block
        i1 = min(i0 + block, Ho)
        j0 = ti * col_tile
        j1 = min(j0 + col_tile, Wo)
        tw = j1 - j0
        q0 = j0 * sx  # first padded column this tile reads
        span = (tw - 1) * sx + (KW - 1) * dx + 1
        lo = min(max(0, bx - q0), span)  # [lo, hi): padded columns inside the image
        hi = max(lo, min(span, bx + W - q0))
        c0 = q0 + lo - bx  # ... which are source columns c0:c1
        c1 = q0 + hi - bx
        # source columns that padded cells read outside the tile get their own region of the
        # lines, filled by the same helpers as the interior: no bit depends on the column tile
        e0, e1 = _far_columns(xmap, q0, lo, hi, span, c0, c1, W)
        ext = (span + 15) // 16 * 16
        pitch = (ext + max(0, e1 - e0) + 15) // 16 * 16
        buf = np.empty(4 * pitch + 16, dtype=x.dtype)
        # lines[k, lo] shares the 64-byte phase of x's column c0 (of every row, when the row pitch
        # is a multiple of 64 bytes), so the column loads and stores align
        phase = (x.ctypes.data // x.itemsize + c0 - buf.ctypes.data // x.itemsize - lo) % 16
        lines = buf[phase : phase + 4 * pitch].reshape((4, pitch))
        zrow = np.zeros(W, dtype=x.dtype)
        i = i0
        while i < i1:
            four = quad and _rows_inside(ymap, i, fy.shape[0])  # (constant-border rows: one at a time)
            nr = min(4, i1 - i) if four else 1
            for part in range(2 if e1 > e0 else 1):  # one call site each: the helpers compile once
                s0, s1, d0 = (c0, c1, lo) if part == 0 else (e0, e1, ext)
                if four:
                    _quad_column(lines, x, ct, z, ymap, i, fy, s0, s1, d0, d0 + s1 - s0)
                else:
                    _one_column(lines[0], x, ct, z, ymap, i, fy, sy, dy, s0, s1, d0, d0 + s1 - s0, zrow)
            _border_cells(lines, nr, 0, lo, xmap, q0, lo, c0, c1, ext, e0, e1)
            _border_cells(lines, nr, hi, span, xmap, q0, lo, c0, c1, ext, e0, e1)
            for k in range(nr):
                line = lines[k]
                acc = out[ct, z, i + k, j0:j1]
                for j in range(tw):
                    acc[j] = 0.0
                if sx == 1:
                    _row_taps(acc, line, fx, dx, tw)
                else:
                    for b in range(KW):
                        wv = fx[b]
                        for j in range(tw):
                            acc[j] += wv * line[b * dx + j * sx]
            i += nr
    return out


@njit
def columns_inplace(x, f, rmap, load_to, rows, col_tile, t0, t1):  # pragma: no cover - compiled
    """The 1-D filter ``f`` down the rows of (C, 1, H, N) ``x``, in place (unit stride and
    dilation, as many rows out as in): per column tile, the source rows go to a ring of ``rows``
    rows in cache before any output row overwrites them, and four output rows at a time sum their
    taps from the ring (``_quad_column``). ``rmap`` maps padded rows to ring slots (-1 reads
    zeros); before block ``b`` (rows 4b .. 4b+3) rows up to ``load_to[b]`` are loaded. The caller
    checks that no row a block reads has left the ring (see ``dispatch._ring_plan``). Blocks that
    read a constant border's zero rows, and a last partial block, go row by row."""
    C, _, H, N = x.shape
    ntiles = (N + col_tile - 1) // col_tile
    nblocks = (H + 3) // 4
    for t in prange(t0, t1):  # task t = (channel, column tile)
        ct = t // ntiles
        c0 = (t - ct * ntiles) * col_tile
        c1 = min(c0 + col_tile, N)
        tw = c1 - c0
        ring = np.empty((1, 1, rows, tw), dtype=x.dtype)
        row = np.empty(tw, dtype=x.dtype)
        zrow = np.zeros(tw, dtype=x.dtype)
        loaded = -1
        for bk in range(nblocks):
            while loaded < load_to[bk]:
                loaded += 1
                slot = ring[0, 0, loaded % rows]
                src = x[ct, 0, loaded, c0:c1]
                for j in range(tw):
                    slot[j] = src[j]
            i = 4 * bk
            if i + 4 <= H and _rows_inside(rmap, i, f.shape[0]):
                _quad_column(x[ct, 0, i : i + 4], ring, 0, 0, rmap, i, f, 0, tw, c0, c1)
            else:  # a constant border's zero rows, or a last partial block: row by row
                for k in range(min(4, H - i)):
                    _one_column(row, ring, 0, 0, rmap, i + k, f, 1, 1, 0, tw, 0, tw, zrow)
                    dst = x[ct, 0, i + k, c0:c1]
                    for j in range(tw):
                        dst[j] = row[j]
    return x
