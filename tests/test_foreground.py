"""The foreground rule of the DINOv2 recipe: Otsu's threshold, the smaller side, or as given."""

import sys
from pathlib import Path

import numpy as np
import pytest

from embedview import EmbedviewError
from embedview._model.fit import Accumulator
from embedview._model.foreground import MIN_CELLS, ForegroundRule, choose_threshold

sys.path.insert(0, str(Path(__file__).parent))
from _synthetic import prototypes  # noqa: E402


def bimodal(n=5000, background=0.0, foreground=6.0, share=0.2, seed=0):
    rng = np.random.default_rng(seed)
    is_fg = rng.random(n) < share
    return np.where(is_fg, foreground, background) + rng.normal(size=n), is_fg


@pytest.mark.parametrize("foreground", [6.0, -6.0])
def test_otsu_splits_the_modes_and_the_smaller_side_is_foreground(foreground):
    values, is_fg = bimodal(foreground=foreground)
    rule = choose_threshold(values)
    assert rule.side == ("above" if foreground > 0 else "below")
    assert 1.5 < abs(rule.threshold) < 4.5  # between the modes, clear of both
    assert np.mean(rule.mask(values) == is_fg) > 0.99
    assert rule.fraction == pytest.approx(is_fg.mean(), abs=0.01)


def test_a_gap_puts_the_threshold_in_its_middle():
    values = np.concatenate([np.zeros(800), np.full(200, 10.0)])
    rule = choose_threshold(values)
    assert rule.side == "above" and rule.fraction == 0.2 and abs(rule.threshold - 5.0) < 0.1


def test_given_threshold_and_side_are_respected():
    values, _ = bimodal()
    rule = choose_threshold(values, threshold=1.0)
    assert rule.threshold == 1.0 and rule.side == "above"
    assert rule.fraction == pytest.approx(np.mean(values > 1.0))
    rule = choose_threshold(values, side="below")
    assert rule.side == "below" and rule.fraction > 0.75 and 1.5 < rule.threshold < 4.5
    rule = choose_threshold(values, threshold=-0.5, side="below")
    assert (rule.threshold, rule.side) == (-0.5, "below")
    assert np.array_equal(rule.mask(values), values <= -0.5)


def test_nan_is_ignored_and_never_foreground():
    values, is_fg = bimodal()
    values[::10] = np.nan
    values[1] = np.inf
    rule = choose_threshold(values.reshape(50, 100))
    finite = np.isfinite(values)
    assert rule.fraction == pytest.approx(np.mean(rule.mask(values)[finite]))
    assert not rule.mask(values)[~np.isfinite(values) & ~np.isposinf(values)].any()
    assert np.mean(rule.mask(values)[finite] == is_fg[finite]) > 0.99


def test_a_few_far_outliers_do_not_decide_the_split():
    values, is_fg = bimodal()
    values[:3] = 1e6  # ViT artefact tokens far out along the first component
    rule = choose_threshold(values)
    assert np.mean(rule.mask(values)[3:] == is_fg[3:]) > 0.99


def test_constant_values():
    with pytest.raises(EmbedviewError, match=r"same \(2\.5\) for every cell"):
        choose_threshold(np.full(100, 2.5))
    rule = choose_threshold(np.full(100, 2.5), threshold=0.0, side="above")
    assert (rule.side, rule.fraction) == ("above", 1.0)
    with pytest.raises(EmbedviewError, match="no cell has its first component below 0 .* inside"):
        choose_threshold(np.full(100, 2.5), threshold=0.0)  # the smaller side is empty


def test_bad_requests():
    with pytest.raises(EmbedviewError, match=f"only 5 cells .*at least {MIN_CELLS}"):
        choose_threshold(np.array([1.0, 2, 3, 4, 5, np.nan, np.nan]))
    values, _ = bimodal()
    with pytest.raises(EmbedviewError, match="'above' or 'below'"):
        choose_threshold(values, side="left")
    with pytest.raises(EmbedviewError, match="no cell has its first component above 100"):
        choose_threshold(values, threshold=100.0)
    with pytest.raises(EmbedviewError, match="finite number"):
        choose_threshold(values, threshold=float("nan"))


def test_describe():
    assert ForegroundRule(0.123, "above", 0.234).describe() == \
        "foreground: first component above 0.123 (23.4% of cells)"


def test_on_a_pca_the_rule_separates_the_dominant_material():
    """80% of cells one material: thresholding the first component keeps exactly the others."""
    rng = np.random.default_rng(0)
    protos = prototypes(5, 32)
    material = np.where(rng.random(4000) < 0.8, 0, rng.integers(1, 5, 4000))
    cells = (protos[material] + rng.normal(size=(4000, 32))).astype(np.float32)
    acc = Accumulator(32)
    acc.add(cells.T)
    first = acc.basis(3).project(cells.T)[0]
    rule = choose_threshold(first)
    foreground = rule.mask(first)
    assert (material[foreground] != 0).mean() > 0.99 and (material[~foreground] == 0).mean() > 0.99


@pytest.mark.parametrize("seed", range(4))
def test_otsu_matches_scikit_image(seed):
    """On the clipped range it histograms, the threshold is scikit-image's within one bin."""
    from skimage.filters import threshold_otsu

    from embedview._model.foreground import _BINS, _RANGE_PERCENTILES, _otsu

    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1 + seed, 3000), rng.normal(6, 1, 1000 * (seed + 1))])
    lo, hi = np.percentile(values, _RANGE_PERCENTILES)
    reference = threshold_otsu(np.clip(values, lo, hi), nbins=_BINS)
    assert abs(_otsu(values) - reference) <= (hi - lo) / _BINS
