"""Calibration on a synthetic case with known probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from models.calibrate import RiskCalibrator
from models.evaluate import expected_calibration_error


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_a_distorted_score_is_brought_back_to_the_true_probability(method):
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.01, 0.6, 40_000)
    y = (rng.random(len(true_p)) < true_p).astype(int)
    raw = true_p ** 0.4  # over-confident, but ranks the same
    fit, test = slice(0, 20_000), slice(20_000, None)
    assert expected_calibration_error(y[test], raw[test]) > 0.2
    cal = RiskCalibrator(method).fit(raw[fit], y[fit])
    risk = cal.transform(raw[test])
    assert expected_calibration_error(y[test], risk) < 0.02
    # monotone: the ranking of customers is the model's
    order = np.argsort(raw[test])
    assert (np.diff(risk[order]) >= 0).all()


def test_isotonic_map_is_strictly_increasing_inside_its_range():
    rng = np.random.default_rng(1)
    raw = rng.random(5000)
    y = (rng.random(5000) < raw).astype(int)
    cal = RiskCalibrator("isotonic").fit(raw, y)
    grid = np.linspace(cal.x_[0], cal.x_[-1], 200)
    assert (np.diff(cal.transform(grid)) > 0).all()
