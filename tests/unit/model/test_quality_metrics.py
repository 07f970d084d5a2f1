"""The numpy quality metrics agree with scikit-learn's, on continuous and on tied scores."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from churn_mlops.model.quality_metrics import (
    average_ranks,
    brier_score,
    expected_calibration_error,
    pr_auc,
    quality_figures,
    roc_auc,
)

Sample = tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]


def _sample(seed: int, size: int, decimals: int | None = None) -> Sample:
    """Outcomes and probabilities that carry some signal; rounded scores make many ties."""
    rng = np.random.default_rng(seed)
    churned = rng.random(size) < 0.3
    scores = np.clip(0.25 * churned + rng.beta(2, 5, size), 0.0, 1.0)
    if decimals is not None:
        scores = np.round(scores, decimals)
    return churned, scores


SAMPLES = [
    pytest.param(_sample(1, 500), id="continuous"),
    pytest.param(_sample(2, 2000, decimals=1), id="ties-1-decimal"),
    pytest.param(_sample(3, 300, decimals=2), id="ties-2-decimals"),
    pytest.param(_sample(4, 7), id="seven-rows"),
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_roc_auc_matches_scikit_learn(sample: Sample) -> None:
    churned, scores = sample
    assert roc_auc(churned, scores) == pytest.approx(roc_auc_score(churned, scores), abs=1e-12)


@pytest.mark.parametrize("sample", SAMPLES)
def test_pr_auc_matches_scikit_learn_average_precision(sample: Sample) -> None:
    churned, scores = sample
    expected = average_precision_score(churned, scores)
    assert pr_auc(churned, scores) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("sample", SAMPLES)
def test_brier_score_matches_scikit_learn(sample: Sample) -> None:
    churned, scores = sample
    assert brier_score(churned, scores) == pytest.approx(brier_score_loss(churned, scores))


@pytest.mark.parametrize("sample", SAMPLES)
def test_calibration_error_weights_scikit_learn_calibration_curve_by_bin_size(
    sample: Sample,
) -> None:
    churned, scores = sample
    rate, mean_probability = calibration_curve(churned, scores, n_bins=10, strategy="uniform")
    # calibration_curve leaves out empty bins; its bins hold (lower, upper], the first also 0.
    bin_of = np.searchsorted(np.linspace(0, 1, 11)[1:-1], scores)
    sizes = np.bincount(bin_of, minlength=10)
    sizes = sizes[sizes > 0]
    expected = float(np.sum(sizes * np.abs(rate - mean_probability)) / scores.size)
    assert expected_calibration_error(churned, scores) == pytest.approx(expected, abs=1e-12)


def test_calibration_error_by_hand_puts_an_edge_value_in_the_lower_bin() -> None:
    # 0.1 falls in the first bin [0, 0.1] with 0.05: mean 0.075, churn rate 0.5 -> 0.425;
    # 0.95 alone in (0.9, 1]: churned -> 0.05. Weighted: (2 * 0.425 + 1 * 0.05) / 3 = 0.3.
    value = expected_calibration_error([True, False, True], [0.1, 0.05, 0.95])
    assert value == pytest.approx(0.3)


def test_perfect_and_reversed_rankings() -> None:
    churned = [False, False, True, True]
    assert roc_auc(churned, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(churned, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(churned, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert pr_auc(churned, [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_average_ranks_share_the_mean_rank_of_a_tie() -> None:
    ranks = average_ranks(np.array([0.3, 0.1, 0.3, 0.2, 0.3]))
    assert ranks.tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_undefined_figures_are_nan() -> None:
    assert math.isnan(roc_auc([True, True], [0.2, 0.9]))
    assert math.isnan(roc_auc([], []))
    assert math.isnan(pr_auc([False, False], [0.2, 0.9]))
    assert math.isnan(brier_score([], []))
    assert math.isnan(expected_calibration_error([], []))


def test_outcomes_and_probabilities_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 outcomes but 2 probabilities"):
        roc_auc([True, False, True], [0.1, 0.2])


def test_quality_figures_gathers_every_figure() -> None:
    churned, scores = _sample(5, 200)
    figures = quality_figures(churned, scores)
    assert figures.outcomes == 200
    assert figures.churned == int(churned.sum())
    assert figures.roc_auc == roc_auc(churned, scores)
    assert figures.pr_auc == pr_auc(churned, scores)
    assert figures.brier_score == brier_score(churned, scores)
    assert figures.calibration_error == expected_calibration_error(churned, scores)
