"""Colour ranges and the uint8 mapping."""

import numpy as np
import pytest

from embedview import EmbedviewError
from embedview._model.colors import colour_ranges, to_uint8


def test_robust_ignores_a_few_extremes():
    values = np.random.default_rng(0).uniform(0, 1, size=(10000, 3))
    values[:5] = 1000
    lo, hi = colour_ranges(values, "robust")
    assert (hi < 1.5).all() and (lo < 0.05).all()
    lo, hi = colour_ranges(values, "channel")
    assert (hi == 1000).all()


def test_global_uses_one_range_for_all_channels():
    values = np.array([[0.0, 5.0], [2.0, 10.0]])
    lo, hi = colour_ranges(values, "global")
    assert lo.tolist() == [0.0, 0.0] and hi.tolist() == [10.0, 10.0]


def test_mapping_clips_and_draws_nan_black():
    out = to_uint8(np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]]).T, np.array([0.0]), np.array([1.0]))
    assert out[:, 0].tolist() == [0, 0, 127, 255, 255, 0]


def test_constant_input_is_mid_grey_not_nan():
    values = np.full((100, 3), 7.0) + np.random.default_rng(0).normal(scale=1e-9, size=(100, 3))
    lo, hi = colour_ranges(values, "robust", reference=7.0)
    out = to_uint8(values, lo, hi)
    assert (out == 128).all()


def test_unknown_mode():
    with pytest.raises(EmbedviewError, match="normalize must be one of"):
        colour_ranges(np.zeros((3, 3)), "minmax")
