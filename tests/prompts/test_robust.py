"""Robust statistics (median / MAD) of the weights-free backend: one home, the values
each caller had before."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.prompts._robust import MAD_TO_SD, robust_stats


def test_robust_stats_is_median_and_scaled_mad():
    values = np.array([1.0, 2.0, 2.0, 3.0, 10.0], dtype=np.float32)
    med, sd = robust_stats(values)
    assert med == 2.0
    assert sd == pytest.approx(MAD_TO_SD * 1.0)  # |v - 2| = 1, 0, 0, 1, 8 -> median 1


def test_robust_stats_estimates_gaussian_spread_despite_outliers():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(40.0, 5.0, 5000), np.full(500, 400.0)])  # 9 % bone
    med, sd = robust_stats(values)
    assert med == pytest.approx(40.0, abs=1.0)
    assert sd == pytest.approx(5.0, rel=0.15)
    assert np.std(values) > 15 * sd  # what a plain SD would have said


def test_rejection_pass_drops_a_neighbour_mixed_into_the_ball():
    """A click's ball near an edge: 70 % the object (100), 30 % a neighbour (160). The
    first MAD is inflated by the neighbour; one pass within 3 robust SDs of the first
    median drops the neighbour's voxels."""
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(100.0, 4.0, 700), rng.normal(160.0, 4.0, 300)])
    plain = robust_stats(values)
    rejected = robust_stats(values, reject=True)
    assert rejected[1] < plain[1]
    assert rejected[0] == pytest.approx(100.0, abs=2.0)
    assert rejected[1] == pytest.approx(4.0, rel=0.2)


def test_rejection_pass_needs_a_spread_and_three_values():
    assert robust_stats(np.array([5.0, 5.0, 5.0, 90.0]), reject=True) == (5.0, 0.0)
    assert robust_stats(np.array([7.0]), reject=True) == (7.0, 0.0)


def test_robust_stats_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one value"):
        robust_stats(np.zeros(0))
