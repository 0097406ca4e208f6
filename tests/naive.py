"""Independent reference implementation: np.pad plus a Python loop over kernel taps.

Shares no code with convcli: padding splits and border rules are written out again here, with
numpy's own pad modes as the border oracle.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

NP_PAD_MODE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap", "constant": "constant"}

# Tolerances, one place per accumulation dtype: relative to the largest possible |output|.
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}


def pad_pairs(padding, shape, kshape, stride, dilation):
    nd = len(kshape)
    if padding == "same":
        pairs = []
        for n, k, s, d in zip(shape, kshape, stride, dilation):
            out = math.ceil(n / s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "full":
        return [(d * (k - 1),) * 2 for k, d in zip(kshape, dilation)]
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [tuple(p) if isinstance(p, (tuple, list)) else (p, p) for p in padding]


def naive_correlate(x, k, border="reflect", padding="same", stride=1, dilation=1, cval=0.0, flip=False):
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    nd = k.ndim
    if flip:
        k = k[(slice(None, None, -1),) * nd]
    channels = x.ndim == nd + 1
    if not channels:
        x = x[..., None]
    stride = (stride,) * nd if isinstance(stride, int) else tuple(stride)
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    pairs = pad_pairs(padding, x.shape[:nd], k.shape, stride, dilation)
    mode = NP_PAD_MODE[border]
    kwargs = {"constant_values": cval} if border == "constant" else {}
    xp = np.pad(x, list(pairs) + [(0, 0)], mode=mode, **kwargs)
    out_shape = [
        (xp.shape[i] - dilation[i] * (k.shape[i] - 1) - 1) // stride[i] + 1 for i in range(nd)
    ]
    out = np.zeros(out_shape + [x.shape[-1]])
    for tap in itertools.product(*[range(n) for n in k.shape]):
        sl = tuple(
            slice(tap[i] * dilation[i], tap[i] * dilation[i] + (out_shape[i] - 1) * stride[i] + 1, stride[i])
            for i in range(nd)
        )
        out += k[tap] * xp[sl]
    return out if channels else out[..., 0]


def naive_layer(x, weight, bias=None, mode="corr", **kw):
    cout, cin = weight.shape[:2]
    outs = []
    for j in range(cout):
        acc = sum(naive_correlate(x[..., c], weight[j, c], flip=(mode == "conv"), **kw) for c in range(cin))
        outs.append(acc + (0.0 if bias is None else bias[j]))
    return np.stack(outs, axis=-1)


def assert_close(got, ref, x, k, dtype=np.float32):
    scale = float(np.abs(np.asarray(k, dtype=np.float64)).sum() * max(1.0, np.nanmax(np.abs(np.asarray(x, dtype=np.float64)))))
    np.testing.assert_allclose(got, ref, rtol=0, atol=RTOL[np.dtype(dtype)] * scale * 5)
