"""Direct sliding-window correlation (private Numba kernels; no validation, no I/O).

Canonical layout, prepared by ``engine.api``:
  x    (C, Z, H, W)            float32 or float64, C-contiguous
  w    (Cout, Cg, KD, KH, KW)  same dtype; output channel o reads input channels g*Cg .. g*Cg+Cg-1
  maps zmap/ymap/xmap          padded coordinate -> source index, -1 reads ``cval``
  out  (Cout, Zo, Ho, Wo)      written here, one block of rows per prange iteration

No full padded copy of the image: each iteration pads only the strip of input rows that its block
of output rows reads, so the strip stays in cache and the inner loop runs over contiguous memory.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import njit


@njit
def correlate_bank(x, w, zmap, ymap, xmap, bx, cval, sz, sy, sx, dz, dy, dx, groups, block, out):  # pragma: no cover - compiled
    C, Z, H, W = x.shape
    Cout, Cg, KD, KH, KW = w.shape
    _, Zo, Ho, Wo = out.shape
    Wp = xmap.shape[0]
    nblocks = (Ho + block - 1) // block
    out_per_group = Cout // groups
    ntasks = Cout * Zo * nblocks
    interior_end = min(bx + W, Wp)
    for t in prange(ntasks):
        o = t // (Zo * nblocks)
        rem = t - o * (Zo * nblocks)
        zo = rem // nblocks
        bi = rem - zo * nblocks
        i0 = bi * block
        i1 = min(i0 + block, Ho)
        nrows = (i1 - 1 - i0) * sy + (KH - 1) * dy + 1
        strip = np.empty((nrows, Wp), dtype=x.dtype)
        for i in range(i0, i1):
            row = out[o, zo, i]
            for j in range(Wo):
                row[j] = 0.0
        g = o // out_per_group
        for cg in range(Cg):
            ci = g * Cg + cg
            for c in range(KD):
                zz = zmap[zo * sz + c * dz]
                for p in range(nrows):
                    dst = strip[p]
                    rr = ymap[i0 * sy + p]
                    if zz < 0 or rr < 0:
                        for q in range(Wp):
                            dst[q] = cval
                        continue
                    src = x[ci, zz, rr]
                    for q in range(bx):
                        m = xmap[q]
                        dst[q] = src[m] if m >= 0 else cval
                    dst[bx:interior_end] = src[: interior_end - bx]
                    for q in range(interior_end, Wp):
                        m = xmap[q]
                        dst[q] = src[m] if m >= 0 else cval
                for i in range(i0, i1):
                    acc = out[o, zo, i]
                    for a in range(KH):
                        line = strip[(i - i0) * sy + a * dy]
                        for b in range(KW):
                            wv = w[o, cg, c, a, b]
                            base = b * dx
                            if sx == 1:
                                seg = line[base : base + Wo]
                                for j in range(Wo):
                                    acc[j] += wv * seg[j]
                            else:
                                for j in range(Wo):
                                    acc[j] += wv * line[base + j * sx]
    return out
