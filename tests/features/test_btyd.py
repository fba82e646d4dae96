"""Buy-till-you-die fits on degenerate inputs: finite parameters, probabilities in [0, 1], a
clear error when no fit can be made; the quadratures against independent evaluations."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.optimize import approx_fprime

from features import btyd

HORIZON = 13.0  # weeks

DEGENERATE = {
    "one order each": (np.zeros(40), np.zeros(40), np.linspace(1, 30, 40)),
    "all orders on one day, cutoff that day": (np.zeros(20), np.zeros(20), np.zeros(20)),
    "all orders on one day, cutoff a day later": (np.zeros(20), np.zeros(20), np.full(20, 1 / 7)),
    "one customer": ([3.0], [10.0], [20.0]),
    "one one-time buyer": ([0.0], [0.0], [5.0]),
    "three customers": ([0.0, 1.0, 5.0], [0.0, 2.0, 9.0], [10.0, 10.0, 10.0]),
    "identical customers": (np.full(100, 4.0), np.full(100, 8.0), np.full(100, 12.0)),
    "last order at the cutoff": ([2.0, 5.0, 1.0], [7.0, 7.0, 7.0], [7.0, 7.0, 7.0]),
    "very large frequencies": ([5000.0, 12000.0, 300.0, 0.0], [51.9, 52.0, 50.0, 0.0], [52.0, 52.0, 52.0, 30.0]),
    "daily buyers, identical": (np.full(30, 3000.0), np.full(30, 430.0), np.full(30, 430.1)),
}


def _check_bgnbd(x, t_x, T):
    params = btyd.fit_bgnbd(x, t_x, T)
    values = np.array([params.r, params.alpha, params.a, params.b])
    assert np.isfinite(values).all() and (values > 0).all(), params
    for p in (btyd.p_alive(params, x, t_x, T), btyd.p_no_purchase(params, x, t_x, T, HORIZON)):
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all(), (params, p)
    e = btyd.expected_purchases(params, x, t_x, T, HORIZON)
    assert np.isfinite(e).all() and (e >= 0).all(), (params, e)
    return params


def _check_pareto(x, t_x, T):
    params = btyd.fit_pareto_nbd(x, t_x, T)
    values = np.array([params.r, params.alpha, params.s, params.beta])
    assert np.isfinite(values).all() and (values > 0).all(), params
    for p in (btyd.pnbd_p_alive(params, x, t_x, T), btyd.pnbd_p_no_purchase(params, x, t_x, T, HORIZON)):
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all(), (params, p)
    return params


@pytest.mark.filterwarnings("error")  # no overflow, division or invalid-value warning either
@pytest.mark.parametrize("case", DEGENERATE)
def test_degenerate_inputs_give_finite_parameters_and_probabilities(case):
    x, t_x, T = (np.asarray(v, dtype=float) for v in DEGENERATE[case])
    _check_bgnbd(x, t_x, T)
    _check_pareto(x, t_x, T)


def test_degenerate_fits_say_something_sensible():
    x, t_x, T = DEGENERATE["one order each"]
    # no one ever came back: silence over the next 13 weeks is very likely under both models
    assert btyd.p_no_purchase(btyd.fit_bgnbd(x, t_x, T), x, t_x, T, HORIZON).min() > 0.9
    assert btyd.pnbd_p_no_purchase(btyd.fit_pareto_nbd(x, t_x, T), x, t_x, T, HORIZON).min() > 0.9
    # a customer with thousands of orders, the last at the cutoff, buys again (the old quadrature
    # weights overflowed there: u_w / u_w.sum() was inf / inf)
    x, t_x, T = (np.array(v) for v in DEGENERATE["very large frequencies"])
    pareto = btyd.fit_pareto_nbd(x, t_x, T)
    assert btyd.pnbd_p_no_purchase(pareto, x, t_x, T, HORIZON)[1] < 1e-3
    # with CDNOW's parameters it stays silent only by dying before its next order, about
    # E[mu] E[1/lambda] with mu ~ Gamma(s, beta+T), lambda ~ Gamma(r+x, alpha+T)
    silent = btyd.pnbd_p_no_purchase(btyd.ParetoNbdParams(0.55, 10.6, 0.61, 11.7), [5000.0], [52.0], [52.0], HORIZON)[0]
    assert silent == pytest.approx(0.61 / (11.7 + 52) * (10.6 + 52) / (5000 + 0.55 - 1), rel=0.02)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 60), st.floats(0, 1), st.floats(0, 300)), min_size=1, max_size=6),
       st.sampled_from([1, 100, 10_000]))
def test_random_small_inputs_give_finite_fits_and_bounded_probabilities(rows, scale):
    x = np.array([r[0] for r in rows], dtype=float) * np.where(np.arange(len(rows)) == 0, scale, 1)
    T = np.array([r[2] for r in rows])
    t_x = np.where(x > 0, np.array([r[1] for r in rows]) * T, 0.0)
    _check_bgnbd(x, t_x, T)
    _check_pareto(x, t_x, T)


def test_missing_rows_are_left_out_of_the_fit_and_scored_nan():
    x, t_x, T = np.array([0.0, 2, 1, 4]), np.array([0.0, 3, 1, 6]), np.array([5.0, 6, 7, 8])
    with_missing = [np.append(v, np.nan) for v in (x, t_x, T)]
    assert btyd.fit_bgnbd(*with_missing) == btyd.fit_bgnbd(x, t_x, T)
    params = btyd.fit_pareto_nbd(*with_missing)
    assert params == btyd.fit_pareto_nbd(x, t_x, T)
    p = btyd.pnbd_p_no_purchase(params, *with_missing, HORIZON)
    assert np.isnan(p[-1]) and np.isfinite(p[:-1]).all()
    assert np.isnan(btyd.p_alive(btyd.fit_bgnbd(x, t_x, T), *with_missing)[-1])


def test_no_usable_history_or_a_failed_optimiser_raise_a_clear_error():
    for fit in (btyd.fit_bgnbd, btyd.fit_pareto_nbd):
        with pytest.raises(btyd.BtydFitError, match="at least one customer"):
            fit([np.nan], [np.nan], [np.nan])
        with pytest.raises(btyd.BtydFitError):
            fit([], [], [])
    with pytest.raises(btyd.BtydFitError, match="not finite"):
        btyd._minimize(lambda p: np.nan, np.zeros(4), [(-1, 1)] * 4, jac=False, model="test")
    assert issubclass(btyd.BtydFitError, ValueError)
    with pytest.raises(ValueError, match="0 <= t_x <= T"):
        btyd.fit_bgnbd([1.0], [5.0], [4.0])
    with pytest.raises(ValueError, match="finite and positive"):
        btyd.p_alive(btyd.BgNbdParams(np.nan, 1.0, 1.0, 1.0), [1.0], [1.0], [2.0])


def test_penalised_gradient_matches_finite_differences():
    """The BG/NBD fit's objective (likelihood + prior) and its analytic gradient agree."""
    rng = np.random.default_rng(4)
    T = rng.uniform(0, 60, 300)
    x = np.floor(rng.exponential(2, 300))
    t_x = np.where(x > 0, T * rng.uniform(0, 1, 300), 0.0)
    weight = rng.integers(1, 3, 300).astype(float)
    centre, _ = btyd._prior_centre(x, T, weight, 0.5)

    def value(p):
        return btyd._log_likelihood(p, x, t_x, T, weight) + btyd._log_prior(p, centre, btyd.PRIOR_SD)[0]

    for point in (np.log([0.3, 5.0, 0.8, 2.5]), np.array([-6.0, 8.0, 4.0, -5.0]), np.array([5.0, -6.0, -7.0, 7.0])):
        ll, grad = btyd._log_likelihood_and_gradient(point, x, t_x, T, weight)
        total = grad + btyd._log_prior(point, centre, btyd.PRIOR_SD)[1]
        assert ll == pytest.approx(btyd._log_likelihood(point, x, t_x, T, weight), rel=1e-12)
        assert total == pytest.approx(approx_fprime(point, value, 1e-7), rel=1e-4, abs=1e-3)


def _simulate_bgnbd(rng, n, r, alpha, a, b, T, horizon):
    """BG/NBD customers: gamma purchase rates, beta dropout chances, a coin after each purchase;
    (x, t_x) up to T and whether they bought again within ``horizon`` after it."""
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, t_x, bought_after = np.zeros(n), np.zeros(n), np.zeros(n, bool)
    alive, t = np.ones(n, bool), np.zeros(n)
    for _ in range(300):  # vectorised over customers
        t = t + rng.exponential(1 / lam)
        before = alive & (t <= T)
        x[before] += 1
        t_x[before] = t[before]
        bought_after |= alive & (t > T) & (t <= T + horizon)
        alive = alive & (t <= T) & (rng.random(n) >= p)
    return x, t_x, bought_after


def test_bgnbd_recovers_known_parameters_and_the_prior_moves_nothing_that_matters():
    rng = np.random.default_rng(11)
    n, truth = 4000, (0.25, 4.0, 0.8, 2.5)
    T = rng.integers(26 * 7, 52 * 7, n) / 7.0
    x, t_x, bought = _simulate_bgnbd(rng, n, *truth, T, HORIZON)
    fitted = btyd.fit_bgnbd(x, t_x, T)
    assert fitted.r == pytest.approx(truth[0], rel=0.2) and fitted.alpha == pytest.approx(truth[1], rel=0.25)
    assert fitted.a == pytest.approx(truth[2], rel=0.4) and fitted.b == pytest.approx(truth[3], rel=0.4)
    silent = btyd.p_no_purchase(fitted, x, t_x, T, HORIZON)
    assert silent.mean() == pytest.approx(1 - bought.mean(), abs=0.02)
    plain = btyd.p_no_purchase(btyd.fit_bgnbd(x, t_x, T, prior_sd=None), x, t_x, T, HORIZON)
    assert np.abs(silent - plain).max() < 1e-3


def test_quadratures_match_independent_evaluations():
    # the Pareto/NBD A0 integral: Gauss-Legendre around the mode against adaptive quadrature
    for r, alpha, s, beta, x, t_x, T in [(0.55, 10.6, 0.61, 11.7, 3, 10, 50), (0.001, 0.001, 3000, 10, 0, 0, 50),
                                          (30, 1e3, 0.05, 0.5, 2000, 52, 52.1), (1, 0.5, 1, 1e4, 5000, 0.5, 100)]:
        k, m = r + x, s + 1

        def integrand(u, k=k, m=m, alpha=alpha, beta=beta, lo=t_x):  # tau = lo + u, scaled at u = 0
            return np.exp(-k * np.log1p(u / (alpha + lo)) - m * np.log1p(u / (beta + lo)))

        scale = -k * np.log(alpha + t_x) - m * np.log(beta + t_x)
        reference = scale + np.log(quad(integrand, 0, T - t_x, epsabs=0, epsrel=1e-12, limit=400,
                                        points=[min(T - t_x, 1e-3 * (T - t_x) + 1 / (k + m))])[0])
        got = btyd._log_power_integral(np.array([k]), m, alpha, beta, np.array([float(t_x)]), np.array([float(T)]))[0]
        assert got == pytest.approx(reference, rel=1e-8, abs=1e-8)
        log_a0 = btyd._pnbd_log_a0(r, alpha, s, beta, np.array([float(x)]), np.array([float(t_x)]), np.array([float(T)]))
        assert log_a0[0] == pytest.approx(np.log(r + s + x) + reference, rel=1e-7, abs=1e-7)
    # the gamma rule: exact mean and variance at any shape, weights summing to one
    for shape in (1e-4, 0.6, 150.0, 5000.0):
        u, w = btyd._weights(shape, 24)
        assert w.sum() == pytest.approx(1) and (w * u).sum() == pytest.approx(shape, rel=1e-10)
        assert (w * u**2).sum() - shape**2 == pytest.approx(shape, rel=1e-8)
    # expected purchases: continuous through a = 1 (0/0 in eq. 10), and where a + b + x - 1 = 0
    e = [btyd.expected_purchases(btyd.BgNbdParams(0.24, 4.4, a, 2.4), [0, 1, 5], [0, 3, 20], [30, 30, 30], HORIZON)
         for a in (1 - 1e-3, 1.0, 1 + 1e-3)]
    assert e[1] == pytest.approx(0.5 * (e[0] + e[2]), rel=1e-5)
    assert btyd.expected_purchases(btyd.BgNbdParams(0.24, 4.4, 0.3, 0.7), [0.0], [0.0], [30.0], HORIZON)[0] == \
        pytest.approx(0.0852, abs=0.002)


def test_a_failed_fit_leaves_the_btyd_features_missing_with_a_warning(monkeypatch, caplog):
    from features.build import build_features

    orders = pd.DataFrame({"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "a", "b"],
                           "ordered_at": pd.to_datetime(["2024-01-05", "2024-02-05", "2024-01-20"]).astype("datetime64[us]"),
                           "amount": [1.0, 2.0, 3.0]})

    def fail(*args, **kwargs):
        raise btyd.BtydFitError("BG/NBD fit failed: for the test")

    monkeypatch.setattr(btyd, "fit_bgnbd", fail)
    with caplog.at_level(logging.WARNING, logger="features.build"):
        f = build_features({"orders": orders}, [pd.Timestamp("2024-03-01")])
    assert len(f) == 2 and f[["btyd_p_no_order", "btyd_expected_orders", "btyd_p_alive"]].isna().all().all()
    assert f["days_since_last_order"].notna().all()
    assert "btyd_* features missing at cutoff 2024-03-01" in caplog.text


def test_daily_buyers_get_finite_btyd_features():
    """A product log where each account orders every day for two years (x in the hundreds)."""
    from features.build import build_features

    days = pd.date_range("2022-01-01", "2023-12-31", freq="D")
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(3 * len(days))],
                           "customer_id": np.repeat(["a", "b", "c"], len(days)),
                           "ordered_at": np.tile(days.to_numpy(), 3).astype("datetime64[us]"), "amount": 1.0})
    f = build_features({"orders": orders}, [pd.Timestamp("2024-01-01")])
    assert (f["btyd_x"] == len(days) - 1).all()
    for name in ("btyd_p_no_order", "btyd_p_alive"):
        assert f[name].between(0, 1).all()
    assert np.isfinite(f["btyd_expected_orders"]).all()
