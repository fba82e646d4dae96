"""BG/NBD buy-till-you-die model (Fader, Hardie & Lee 2005), vectorised with numpy/scipy.

Inputs per customer at a cutoff (time in weeks): ``x`` repeat purchases (distinct order days
after the first), ``t_x`` age at the last purchase, ``T`` age at the cutoff, all measured
from the first purchase. The parameters are fitted by maximum likelihood on history before
the cutoff (on a sample when the base is large) and applied to everyone.

Outputs used as features and baselines:
- P(no purchase in the next ``t`` weeks) = (1 - P(alive)) + P(alive) * ((a+T)/(a+T+t))**(r+x)
  (alive customers purchase as a Poisson process with a gamma posterior rate; under BG/NBD a
  customer can only drop out right after a purchase);
- E[purchases in the next ``t`` weeks] (eq. 10 of the paper);
- P(alive) itself (kept for reference: 1 - P(alive) ranks every one-time buyer as alive, so
  it is *not* the churn score).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


def _log_likelihood(log_params: np.ndarray, x, t_x, T, weight=1.0) -> float:
    r, alpha, a, b = np.exp(log_params)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = np.where(x > 0, betaln(a + 1, b + np.maximum(x, 1) - 1) - betaln(a, b) - (r + x) * np.log(alpha + t_x), -np.inf)
    return float(np.sum(weight * (common + np.logaddexp(a1, a2))))


def _log_likelihood_and_gradient(log_params: np.ndarray, x, t_x, T, weight) -> tuple[float, np.ndarray]:
    """The BG/NBD log-likelihood and its gradient in the log-parameters (so the optimiser
    needs one evaluation per step, not five finite differences)."""
    r, alpha, a, b = np.exp(log_params)
    bought = x > 0
    xb = np.maximum(x, 1)
    log_a1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    log_a2 = np.where(bought, betaln(a + 1, b + xb - 1) - betaln(a, b) - (r + x) * np.log(alpha + t_x), -np.inf)
    top = np.maximum(log_a1, log_a2)
    e1, e2 = np.exp(log_a1 - top), np.exp(log_a2 - top)  # A1, A2 scaled by the larger
    share1, share2 = e1 / (e1 + e2), e2 / (e1 + e2)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + top + np.log(e1 + e2)
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - share1 * np.log(alpha + T) - share2 * np.log(alpha + t_x)
    d_alpha = r / alpha - share1 * (r + x) / (alpha + T) - share2 * (r + x) / (alpha + t_x)
    d_a = share1 * (psi_ab - psi_abx) + share2 * (digamma(a + 1) - digamma(a) + psi_ab - psi_abx)
    d_b = (share1 * (digamma(b + x) - digamma(b) + psi_ab - psi_abx)
           + share2 * np.where(bought, digamma(b + xb - 1) - digamma(b) + psi_ab - psi_abx, 0.0))
    grad = np.array([np.sum(weight * d) for d in (d_r, d_alpha, d_a, d_b)]) * np.array([r, alpha, a, b])
    return float(np.sum(weight * ll)), grad


def _fitting_sample(x, t_x, T, sample: int | None, seed: int, model: str):
    """The (x, t_x, T, weight) arrays a model is fitted on: a seeded sample when the base is
    large, with identical customers (same repeat days, same ages: common, since ages are whole
    days) collapsed into one row weighted by their count. The likelihood is the same sum."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if sample is not None and len(x) > sample:
        idx = np.random.default_rng(seed).choice(len(x), sample, replace=False)
        x, t_x, T = x[idx], t_x[idx], T[idx]
    if len(x) == 0:
        raise ValueError(f"{model} needs at least one customer with a purchase before the cutoff")
    rows, weight = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    return rows[:, 0], rows[:, 1], rows[:, 2], weight.astype(float)


def fit_bgnbd(x, t_x, T, *, sample: int | None = 50_000, seed: int = 0) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters from (x, t_x, T) arrays (weeks)."""
    x, t_x, T, w = _fitting_sample(x, t_x, T, sample, seed, "BG/NBD")
    n, mean_T = w.sum(), float(np.average(T, weights=w))
    def objective(p):
        ll, grad = _log_likelihood_and_gradient(p, x, t_x, T, w)
        return -ll / n, -grad / n

    result = minimize(objective, x0=np.log([0.5, max(mean_T, 1.0), 1.0, 2.0]), jac=True,
                      method="L-BFGS-B", bounds=[(-8, 6), (-8, 10), (-8, 6), (-8, 8)])
    r, alpha, a, b = np.exp(result.x)
    return BgNbdParams(r=float(r), alpha=float(alpha), a=float(a), b=float(b))


def p_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        odds = np.where(x > 0, a / (b + x - 1) * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x))), 0.0)
    return 1.0 / (1.0 + odds)


def p_no_purchase(params: BgNbdParams, x, t_x, T, t: float) -> np.ndarray:
    """Probability of no purchase in the ``t`` weeks after the cutoff."""
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    alive = p_alive(params, x, t_x, T)
    silent_if_alive = np.exp((params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + t)))
    return (1.0 - alive) + alive * silent_if_alive


def expected_purchases(params: BgNbdParams, x, t_x, T, t: float) -> np.ndarray:
    """Expected number of purchases in the ``t`` weeks after the cutoff."""
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (a + b + x - 1) / (a - 1) * (1 - ratio * hyp) * p_alive(params, x, t_x, T)
    return np.where(np.isfinite(value), np.maximum(value, 0.0), np.nan)


# -- Pareto/NBD (Schmittlein, Morrison & Colombo 1987; likelihood as in Fader & Hardie 2005) ---

@dataclass(frozen=True)
class ParetoNbdParams:
    r: float
    alpha: float
    s: float
    beta: float


def _log_hyp2f1(a, b, c, z):
    """log 2F1(a, b; c; z) for 0 <= z < 1; near z = 1 with c - a - b < 0 the series blows up,
    so Euler's transformation 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z) is used there."""
    direct = hyp2f1(a, b, c, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        euler = (c - a - b) * np.log1p(-z) + np.log(hyp2f1(c - a, c - b, c, z))
        return np.where(np.isfinite(direct) & (direct > 0), np.log(np.where(direct > 0, direct, 1.0)), euler)


def _pnbd_log_a0(r, alpha, s, beta, x, t_x, T):
    """log A0 of the Pareto/NBD likelihood, through the Gauss hypergeometric function."""
    rsx = r + s + x
    if alpha >= beta:
        b, big, gap = s + 1, alpha, alpha - beta
    else:
        b, big, gap = r + x, beta, beta - alpha
    l1 = _log_hyp2f1(rsx, b, rsx + 1, gap / (big + t_x)) - rsx * np.log(big + t_x)
    l2 = _log_hyp2f1(rsx, b, rsx + 1, gap / (big + T)) - rsx * np.log(big + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        return l1 + np.log1p(-np.exp(np.minimum(l2 - l1, 0.0)))


def _pnbd_log_likelihood(log_params, x, t_x, T, weight=1.0) -> float:
    r, alpha, s, beta = np.exp(log_params)
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive_to_T = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    died = np.log(s / (r + s + x)) + _pnbd_log_a0(r, alpha, s, beta, x, t_x, T)
    ll = head + np.logaddexp(alive_to_T, np.where(np.isfinite(died), died, -np.inf))
    return float(np.sum(weight * ll)) if np.all(np.isfinite(ll)) else -1e300


def fit_pareto_nbd(x, t_x, T, *, sample: int | None = 5_000, seed: int = 0) -> ParetoNbdParams:
    """Maximum-likelihood Pareto/NBD parameters from (x, t_x, T) arrays (weeks)."""
    x, t_x, T, w = _fitting_sample(x, t_x, T, sample, seed, "Pareto/NBD")
    n, mean_T = w.sum(), float(np.average(T, weights=w))
    result = minimize(lambda p: -_pnbd_log_likelihood(p, x, t_x, T, w) / n,
                      x0=np.log([0.5, max(mean_T, 1.0), 0.5, max(mean_T, 1.0)]),
                      method="L-BFGS-B", bounds=[(-9, 9)] * 4)
    r, alpha, s, beta = np.exp(result.x)
    return ParetoNbdParams(r=float(r), alpha=float(alpha), s=float(s), beta=float(beta))


def pnbd_p_alive(params: ParetoNbdParams, x, t_x, T) -> np.ndarray:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    log_ratio = (np.log(s / (r + s + x)) + (r + x) * np.log(alpha + T) + s * np.log(beta + T)
                 + _pnbd_log_a0(r, alpha, s, beta, x, t_x, T))
    return 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700)))


def pnbd_p_no_purchase(params: ParetoNbdParams, x, t_x, T, t: float, nodes: int = 24) -> np.ndarray:
    """Probability of no purchase in the ``t`` weeks after the cutoff.

    A customer alive at T buys at rate lambda until an exponential dropout at rate mu, so
    P(no purchase in t | lambda, mu) = mu/(lambda+mu) + lambda/(lambda+mu) * exp(-(lambda+mu) t);
    given the history, lambda ~ Gamma(r+x, alpha+T) and mu ~ Gamma(s, beta+T) independently.
    The expectation is taken by generalised Gauss-Laguerre quadrature, once per distinct x.
    """
    from scipy.special import roots_genlaguerre

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    v_nodes, v_w = roots_genlaguerre(nodes, s - 1)
    v_w = v_w / v_w.sum()
    silent_if_alive = np.empty(len(x))
    for value in np.unique(x):
        rows = np.flatnonzero(x == value)
        u_nodes, u_w = roots_genlaguerre(nodes, r + value - 1)
        u_w = u_w / u_w.sum()
        lam = u_nodes[None, :, None] / (alpha + T[rows])[:, None, None]
        mu = v_nodes[None, None, :] / (beta + T[rows])[:, None, None]
        both = lam + mu
        f = mu / both + lam / both * np.exp(-both * t)
        silent_if_alive[rows] = np.einsum("nij,i,j->n", f, u_w, v_w)
    alive = pnbd_p_alive(params, x, t_x, T)
    return (1.0 - alive) + alive * silent_if_alive
