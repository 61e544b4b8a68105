"""Maximum-likelihood fitting from a model's PyTensor log-likelihood.

The negative mean log-likelihood over the unique rows (weighted by their counts) is compiled once per
model class together with its exact gradient (PyTensor's C backend when a compiler is present: its
compiled modules are cached on disk, so later processes start fast). The Hessian is the central
difference of the exact gradient. The optimiser
works on the log-parameters (unconstrained), starts from a few points, and reports failure loudly:
a fit that does not converge, or whose estimate runs to a boundary (a parameter going to 0 or to
infinity), warns with a :class:`~clvmodels.errors.ConvergenceWarning`; standard errors come from
the inverse Hessian (as in lifetimes), and confidence intervals are formed on the log scale.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..errors import ClvDataError
from .base import warn_convergence

#: Log-parameters beyond this magnitude (values above ~1e7 or below ~1e-7) count as a boundary.
BOUNDARY_LOG = 16.0


@lru_cache(maxsize=None)
def compiled_objective(model_cls, data_names: tuple[str, ...]):
    """Compiled ``f(theta, *data, weights, penalizer) -> (nll, grad)`` of the mean negative log-likelihood."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    theta = pt.dvector("theta")
    params = {k: pt.exp(theta[i]) for i, k in enumerate(model_cls.param_names)}
    data = {k: pt.dvector(k) for k in data_names}
    w = pt.dvector("weights")
    penalizer = pt.dscalar("penalizer")
    ll = (w * model_cls.log_likelihood(params, data)).sum() / w.sum()
    nll = -ll + penalizer * pt.sum(pt.exp(theta) ** 2)
    inputs = [theta, *data.values(), w, penalizer]
    mode = Mode(linker="cvm", optimizer="fast_run") if pytensor.config.cxx else None
    return pytensor.function(inputs, [nll, pytensor.grad(nll, theta)], mode=mode)


def numeric_hessian(grad, theta: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Hessian as central differences of the exact gradient ``grad(theta)`` (symmetrised)."""
    k = len(theta)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = step
        H[:, i] = (grad(theta + e) - grad(theta - e)) / (2 * step)
    return (H + H.T) / 2


def fit_mle(model, data: dict[str, np.ndarray], w: np.ndarray, *, x0=None, maxiter: int = 1000,
            tol: float = 1e-10) -> None:
    """Fit ``model`` by maximum likelihood on unique rows ``data`` with weights ``w``; sets its ``*_``."""
    names = model.param_names
    f = compiled_objective(type(model), tuple(data))
    penalizer = float(model.penalizer)
    args = [data[k] for k in data] + [w, penalizer]
    total = float(w.sum())

    def fun(theta):
        value, grad = f(theta, *args)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(theta)
        return float(value), np.asarray(grad, dtype=float)

    starts = [np.asarray(x0, dtype=float)] if x0 is not None else []
    starts += [np.log(model.initial_params(data, w)), np.zeros(len(names)), np.full(len(names), 1.0),
               np.full(len(names), -1.0)]
    best = None
    for start in starts:
        if not np.isfinite(fun(start)[0]):
            continue
        res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B",
                                bounds=[(-BOUNDARY_LOG - 4, BOUNDARY_LOG + 4)] * len(names),
                                options={"maxiter": maxiter, "ftol": tol * 1e-3, "gtol": 1e-9})
        if best is None or res.fun < best.fun - 1e-12:
            best = res
        if res.success and np.max(np.abs(res.jac)) < 1e-5:
            break
    if best is None:
        raise ClvDataError(
            f"{type(model).__name__}: the log-likelihood is not finite at any starting point; "
            "check the data (e.g. recency > T, negative values)."
        )
    theta = best.x
    def hess(th):
        return numeric_hessian(lambda v: fun(v)[1], th)

    # polish with Newton steps (cheap: a few parameters)
    H = hess(theta)
    for _ in range(20):
        value, grad = fun(theta)
        if np.max(np.abs(grad)) < 1e-10:
            break
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            break
        cand = np.clip(theta - step, -BOUNDARY_LOG - 4, BOUNDARY_LOG + 4)
        if fun(cand)[0] > value:
            break
        theta = cand
        H = hess(theta)
    value, grad = fun(theta)
    grad_max = float(np.max(np.abs(grad)))
    at_boundary = [k for k, t in zip(names, theta) if abs(t) >= BOUNDARY_LOG]
    converged = bool(grad_max < 1e-4 and not at_boundary)

    unpenalized = -f(theta, *args[:-1], 0.0)[0] * total
    cov = np.full((len(names), len(names)), np.nan)
    pd_ok = False
    try:
        eig = np.linalg.eigvalsh(H)
        if np.all(eig > 0) and np.all(np.isfinite(H)):
            cov = np.linalg.inv(H * total)
            pd_ok = True
    except np.linalg.LinAlgError:
        pass

    model.params_ = pd.Series(np.exp(theta), index=list(names), name="estimate")
    model.log_likelihood_ = float(unpenalized)
    model.covariance_ = cov
    model.converged_ = converged
    k = len(names)
    model.aic_ = 2 * k - 2 * model.log_likelihood_
    model.bic_ = k * np.log(total) - 2 * model.log_likelihood_
    model.optimizer_ = {"message": str(best.message), "n_iter": int(best.nit), "max_abs_gradient": grad_max,
                        "at_boundary": at_boundary}
    if at_boundary:
        vals = ", ".join(f"{k}={np.exp(t):.3g}" for k, t in zip(names, theta) if k in at_boundary)
        warn_convergence(
            f"{type(model).__name__}: the maximum-likelihood estimate is at a boundary ({vals}): the "
            "data cannot identify these parameters (e.g. almost no repeat purchases, or no sign of "
            "drop-out). Do not read them as estimates; use more data, a penalizer, or a Bayesian fit "
            "with informative priors."
        )
    elif not converged:
        warn_convergence(
            f"{type(model).__name__}: the optimiser did not converge (max |gradient| = {grad_max:.2g}, "
            f"{best.message}). The estimates may be off; try penalizer=0.001 or check the data."
        )
    if not pd_ok and not at_boundary:
        warn_convergence(
            f"{type(model).__name__}: the Hessian at the estimate is not positive definite, so there are "
            "no standard errors: the parameters are poorly identified by these data."
        )


def mle_summary(model, level: float = 0.95) -> pd.DataFrame:
    """Estimates, standard errors (delta method from the log scale) and log-scale confidence intervals."""
    names = list(model.param_names)
    est = model.params_[names].to_numpy()
    se_log = np.sqrt(np.diag(model.covariance_)) if np.all(np.isfinite(model.covariance_)) else np.full(len(names), np.nan)
    z = stats.norm.ppf(0.5 + level / 2)
    lo, hi = f"lower_{level:.0%}", f"upper_{level:.0%}"
    return pd.DataFrame(
        {"estimate": est, "se": est * se_log, lo: est * np.exp(-z * se_log), hi: est * np.exp(z * se_log)},
        index=pd.Index(names, name="parameter"),
    )
