"""The layer calculator's parsing and arithmetic, without the CLI."""

from __future__ import annotations

import pytest

from convcli.errors import ArgumentError, LayerError, UsageError
from convcli.layers import explain, parse_axes, parse_layer, parse_padding, run_chain


def test_parse_axes_and_padding():
    assert parse_axes("7x5", "kernel") == [7, 5] and parse_axes("3", "stride") == [3]
    assert parse_padding("same") == "same"
    assert parse_padding("1:2x3") == [(1, 2), (3, 3)]
    with pytest.raises(UsageError, match="expected N or NxM"):
        parse_axes("3y3", "kernel")
    with pytest.raises(UsageError, match=">= 1"):
        parse_axes("0", "stride", minimum=1)
    with pytest.raises(UsageError, match="cannot be negative"):
        parse_padding("-1")


def test_parse_layer_words_and_pool_stride_default():
    spec = parse_layer("conv k=3 s=2 p=1 c=64 g=2 nobias")
    assert (spec.kind, spec.kernel, spec.stride, spec.filters, spec.groups, spec.bias) == ("conv", "3", "2", 64, 2, False)
    pool = parse_layer("maxpool k=3")
    assert (pool.kind, pool.pool, pool.stride) == ("pool", "max", "3")
    with pytest.raises(LayerError, match="unknown layer type"):
        parse_layer("dense c=3")


def test_chain_carries_channels_params_and_receptive_field():
    specs = [parse_layer(t) for t in ("conv k=3 p=1 c=16", "pool max k=2", "conv k=3 d=2 p=2 c=32", "dw k=3 p=1")]
    res = run_chain(specs, [32, 32], 3)
    assert [r.output_size for r in res] == [[32, 32], [16, 16], [16, 16], [16, 16]]
    assert [r.params for r in res] == [(3 * 9 + 1) * 16, 0, (16 * 9 + 1) * 32, 32 * 9 + 32]
    assert res[-1].receptive_field == [16, 16]  # 3, then +1 (pool), +4*2 (k=3 d=2 at jump 2), +2*2
    assert "params" in explain(res[0])[-2]


def test_transposed_layer_matches_pytorch_formula():
    (res,) = run_chain([parse_layer("convT k=4 s=2 p=1 c=32")], [16, 16], 64)
    assert res.output_size == [32, 32]
    assert res.params == 64 * 32 * 16 + 32
    assert res.macs == 64 * 16 * 16 * 32 * 16


def test_too_small_input_names_the_smallest_that_works():
    with pytest.raises(ArgumentError, match="smallest input that works is 5"):
        run_chain([parse_layer("conv k=5 c=1")], [3], 1)
