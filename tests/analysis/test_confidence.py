"""Per-structure confidence and review flags: an intensity-ambiguous structure is flagged, clear ones are not."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.analysis.confidence import (ReviewThresholds, fit_temperature, flagged,
                                               summarise_confidence)


torch = pytest.importorskip("torch")

#: class means of a toy intensity model: background, three organs
_MEANS = np.array([0.0, 100.0, 200.0, 300.0])


def _ambiguous_case(seed=0):
    """Three organs of distinct intensity; organ 2 has an inserted region halfway to organ 3."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((24, 40, 48), np.uint8)
    truth[4:20, 5:17, 5:20] = 1
    truth[4:20, 22:36, 5:20] = 2
    truth[4:20, 8:32, 28:44] = 3
    image = _MEANS[truth] + rng.normal(0, 12, truth.shape)
    # the ambiguous region: a third of organ 2 at 240, closer to organ 2 than to organ 3
    # (so still labelled 2) but where the two classes overlap
    image[4:20, 22:36, 5:10] = 240.0 + rng.normal(0, 5, (16, 14, 5))
    return image.astype(np.float32), truth


def _scores(image, sigma=25.0):
    """Gaussian class log-likelihoods of each voxel: what a well-behaved model's logits look like."""
    return torch.from_numpy(
        (-(image[None] - _MEANS[:, None, None, None]) ** 2 / (2 * sigma ** 2)).astype(np.float32))


def test_the_flag_picks_the_ambiguous_structure_and_not_the_clear_ones():
    from napari_medseg.inference.resample import resample_logits_to_labels

    image, truth = _ambiguous_case()
    labels, max_prob, entropy = resample_logits_to_labels(_scores(image), truth.shape, (1, 1, 1),
                                                          (1, 1, 1), confidence=True)
    assert (labels == truth).mean() > 0.95
    summary = summarise_confidence(labels, max_prob, {1: "liver", 2: "spleen", 3: "kidney"})
    by_name = {s.name: s for s in summary}
    assert set(by_name) == {"liver", "spleen", "kidney"}
    assert [s.name for s in flagged(summary)] == ["spleen"]
    spleen, liver = by_name["spleen"], by_name["liver"]
    assert spleen.fraction_below > 0.25 and liver.fraction_below < 0.05
    assert spleen.mean_confidence < liver.mean_confidence
    # the view point lies inside the structure, on a slice with unsure voxels
    z, y, x = spleen.view_point_vox
    assert labels[z, y, x] == 2 and (max_prob[z][labels[z] == 2] < 0.9).any()
    # entropy says the same: higher in the ambiguous part
    assert entropy[4:20, 22:36, 5:10].mean() > 3 * entropy[4:20, 22:36, 12:20].mean()
    # stricter thresholds flag more, looser thresholds none
    assert len(flagged(summarise_confidence(labels, max_prob, thresholds=ReviewThresholds(
        voxel=0.999999, fraction_below=0.01)))) == 3
    assert flagged(summarise_confidence(labels, max_prob, thresholds=ReviewThresholds(
        voxel=0.3, mean=0.3, fraction_below=0.9, boundary=0.3))) == []
    d = spleen.as_dict()
    assert d["review"] is True and d["reasons"] and isinstance(d["view_point_vox"], list)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="not on the labels' grid"):
        summarise_confidence(np.zeros((2, 3, 4), np.uint8), np.ones((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="threshold mean must be in"):
        ReviewThresholds(mean=1.5)
    with pytest.raises(ValueError, match="outside the model's 4 classes"):
        fit_temperature([np.zeros((4, 2, 2, 2))], [np.full((2, 2, 2), 7)])
    with pytest.raises(ValueError, match="differ in shape"):
        fit_temperature([np.zeros((4, 2, 2, 2))], [np.zeros((2, 2, 3), int)])


def test_fit_temperature_recovers_the_overconfidence_of_scaled_scores():
    """Scores three times too sharp for their labels: the fitted temperature is about 3."""
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 1.5, (4, 20, 20, 20))
    p = np.exp(true_logits - true_logits.max(0))
    p /= p.sum(0)
    # labels drawn from the calibrated probabilities
    u = rng.random((20, 20, 20))
    labels = (p.cumsum(0) < u).sum(0).clip(0, 3)
    t_sharp = fit_temperature([3.0 * true_logits], [labels])
    t_true = fit_temperature([true_logits], [labels])
    assert 2.5 < t_sharp < 3.5, t_sharp
    assert 0.8 < t_true < 1.25, t_true
