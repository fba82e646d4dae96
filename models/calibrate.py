"""Probability calibration fitted on the validation cutoffs (never the test cutoff).

A calibrated risk of 0.3 means about 30% of such customers become former clients. The
fitted map is a monotone piecewise-linear curve (isotonic regression, or Platt scaling
sampled on a grid) stored as two arrays, so the served model applies it with ``np.interp``
and needs no scikit-learn.
"""
from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.serving import apply_calibration


class RiskCalibrator:
    """scikit-learn style: ``method`` in ('isotonic', 'platt', 'none'); fitted state ``x_``, ``y_``.
    'none' keeps the risk as it is (used when no labelled cutoff is left to calibrate on)."""

    def __init__(self, method: str = "isotonic"):
        self.method = method

    def fit(self, raw_risk, label) -> "RiskCalibrator":
        p = np.clip(np.asarray(raw_risk, dtype=float), 1e-6, 1 - 1e-6)
        y = np.asarray(label, dtype=float)
        if self.method == "none":
            self.x_, self.y_ = np.array([0.0, 1.0]), np.array([0.0, 1.0])
        elif self.method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6).fit(p, y)
            self.x_, self.y_ = _block_centres(np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float))
        elif self.method == "platt":
            logit = np.log(p / (1 - p)).reshape(-1, 1)
            lr = LogisticRegression(C=1e6).fit(logit, y)
            self.x_ = np.linspace(0, 1, 1001)[1:-1]
            grid = np.log(self.x_ / (1 - self.x_)).reshape(-1, 1)
            self.y_ = lr.predict_proba(grid)[:, 1]
        else:
            raise ValueError(f"unknown calibration method {self.method!r}: use isotonic, platt or none")
        self.x_, self.y_ = _strict_ends(np.asarray(self.x_, float), np.asarray(self.y_, float))
        return self

    def transform(self, raw_risk) -> np.ndarray:
        return apply_calibration(raw_risk, self.x_, self.y_)


def _block_centres(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression is a step function: customers inside a step would tie, and a ranked
    list would order them arbitrarily. Interpolating between the centres of the steps keeps
    the calibration and makes the map strictly increasing, so ranks follow the model."""
    starts = np.flatnonzero(np.r_[True, np.diff(y) != 0])
    ends = np.r_[starts[1:], len(y)] - 1
    return (x[starts] + x[ends]) / 2.0, y[starts]


def _strict_ends(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extend the map to the whole of [0, 1] with a slight slope beyond the fitted range, so a
    risk outside the range of the calibration rows is not flattened into a tie (the order of the
    list stays the model's); the ends move by at most 0.1% of the distance to 0 or 1."""
    if len(x) < 2 or np.array_equal(x, [0.0, 1.0]):
        return x, y
    if x[0] > 0:
        x, y = np.r_[0.0, x], np.r_[y[0] * (1 - 1e-3), y]
    if x[-1] < 1:
        x, y = np.r_[x, 1.0], np.r_[y, y[-1] + (1 - y[-1]) * 1e-3]
    return x, y
