"""How good a model's probabilities were once the outcomes are known: ROC AUC, PR AUC (average
precision), the Brier score and the expected calibration error, in numpy alone.

Serving workers compute these every `CHURN_QUALITY_REFRESH_SECONDS` (`observability.quality`)
and `GET /model/compare` on request; scikit-learn is not imported here because a worker should
not load it for four formulas. tests/unit/model/test_quality_metrics.py checks each one against
scikit-learn's, on random and on tied scores.

Every function takes the outcomes (`churned`, booleans or 0/1) and the predicted probabilities
of churn, and answers NaN where the figure is undefined (no outcomes; for the two AUCs, outcomes
of one class only), which Prometheus shows as a gap rather than a misleading value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CALIBRATION_BINS = 10
"""The expected calibration error's bins: 10 of equal width over [0, 1]."""

Outcomes = npt.ArrayLike
Probabilities = npt.ArrayLike


def _as_arrays(
    churned: Outcomes, probabilities: Probabilities
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    outcomes = np.asarray(churned, dtype=np.bool_).ravel()
    scores = np.asarray(probabilities, dtype=np.float64).ravel()
    if outcomes.shape != scores.shape:
        raise ValueError(f"{outcomes.size} outcomes but {scores.size} probabilities")
    return outcomes, scores


def average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    run_of = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[run_of]
    return ranks


def roc_auc(churned: Outcomes, probabilities: Probabilities) -> float:
    """The probability that a customer who churned scored above one who did not (ties count
    half): the Mann-Whitney U statistic over the product of the class sizes."""
    outcomes, scores = _as_arrays(churned, probabilities)
    positives = int(outcomes.sum())
    negatives = outcomes.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = float(average_ranks(scores)[outcomes].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def pr_auc(churned: Outcomes, probabilities: Probabilities) -> float:
    """Average precision as scikit-learn defines it: the precision at each distinct threshold,
    weighted by the recall it adds, sum_n (R_n - R_{n-1}) P_n (no interpolation)."""
    outcomes, scores = _as_arrays(churned, probabilities)
    positives = int(outcomes.sum())
    if positives == 0 or positives == outcomes.size:
        return float("nan") if positives == 0 else 1.0
    order = np.argsort(-scores, kind="mergesort")
    ordered_scores, ordered_outcomes = scores[order], outcomes[order]
    # The last position of each run of equal scores: one threshold per distinct score.
    last_of_run = np.flatnonzero(np.r_[ordered_scores[1:] != ordered_scores[:-1], True])
    true_positives = np.cumsum(ordered_outcomes)[last_of_run]
    flagged = last_of_run + 1
    precision = true_positives / flagged
    recall_added = np.diff(np.r_[0, true_positives]) / positives
    return float(np.sum(recall_added * precision))


def brier_score(churned: Outcomes, probabilities: Probabilities) -> float:
    """The mean squared difference between the probability and the outcome (0 is perfect)."""
    outcomes, scores = _as_arrays(churned, probabilities)
    if outcomes.size == 0:
        return float("nan")
    return float(np.mean((scores - outcomes) ** 2))


def expected_calibration_error(
    churned: Outcomes, probabilities: Probabilities, bins: int = CALIBRATION_BINS
) -> float:
    """The mean, weighted by each bin's share of the predictions, of |churn rate - mean
    probability| over `bins` equal-width bins of [0, 1]. A bin holds (lower, upper], the first
    also 0: the edges scikit-learn's `calibration_curve(strategy="uniform")` uses."""
    outcomes, scores = _as_arrays(churned, probabilities)
    if outcomes.size == 0:
        return float("nan")
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    bin_of = np.searchsorted(inner_edges, scores)
    predicted = np.bincount(bin_of, weights=scores, minlength=bins)
    observed = np.bincount(bin_of, weights=outcomes.astype(np.float64), minlength=bins)
    # |sum of outcomes - sum of probabilities| per bin is count * |rate - mean|.
    return float(np.sum(np.abs(observed - predicted)) / outcomes.size)


@dataclass(frozen=True)
class QualityFigures:
    """Every figure of one model version on one set of outcomes."""

    outcomes: int
    churned: int
    roc_auc: float
    pr_auc: float
    brier_score: float
    calibration_error: float


def quality_figures(churned: Outcomes, probabilities: Probabilities) -> QualityFigures:
    outcomes, scores = _as_arrays(churned, probabilities)
    return QualityFigures(
        outcomes=int(outcomes.size),
        churned=int(outcomes.sum()),
        roc_auc=roc_auc(outcomes, scores),
        pr_auc=pr_auc(outcomes, scores),
        brier_score=brier_score(outcomes, scores),
        calibration_error=expected_calibration_error(outcomes, scores),
    )
