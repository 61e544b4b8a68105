"""Maximum-likelihood fitting from a model's PyTensor log-likelihood.

The negative mean log-likelihood over the unique rows (weighted by their counts) is compiled once per
model class together with its exact gradient (PyTensor's C backend when a compiler is present: its
compiled modules are cached on disk, so later processes start fast); terms that read only some
columns (e.g. only the frequency) are summed over those columns' distinct values
(:func:`likelihood_parts`). The Hessian is the forward difference of the exact gradient. The optimiser
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
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from ..errors import ClvDataError, warn_convergence
from .rows import compress

#: A log-parameter standard error above this (a 95% interval wider than a factor e^±10) means the
#: data do not identify the parameter, even if the optimiser stopped short of the boundary.
UNIDENTIFIED_LOG_SE = 5.0
#: Log-parameters beyond this magnitude (values above ~1e7 or below ~1e-7) count as a boundary.
BOUNDARY_LOG = 16.0


def likelihood_parts(model_cls, data_names: tuple[str, ...]):
    """The model's log-likelihood as ``((columns, fn), ...)`` with ``Σ fn(params, data) = log_likelihood``.

    A model may declare ``log_likelihood_parts`` (e.g. BG/NBD: the terms that read only the
    frequency, and the rest): each part is then summed over the distinct values of its own columns
    with their total weights, so the costly special functions of a frequency-only term are evaluated
    once per distinct frequency instead of once per distinct history. Without it (or if a part reads
    a column the data lack), the whole log-likelihood is one part.
    """
    parts = getattr(model_cls, "log_likelihood_parts", None)
    if not parts or not all(set(cols) <= set(data_names) for cols, _ in parts):
        return ((tuple(data_names), model_cls.log_likelihood),)
    return tuple((tuple(cols), fn) for cols, fn in parts)


@lru_cache(maxsize=None)
def compiled_objective(model_cls, data_names: tuple[str, ...]):
    """Compiled ``f(theta, *part_inputs, total_weight, penalizer) -> (nll, grad)`` of the mean
    negative log-likelihood, where ``part_inputs`` are, for each of :func:`likelihood_parts`, its
    columns' (unique) values followed by their weights."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    theta = pt.dvector("theta")
    params = {k: pt.exp(theta[i]) for i, k in enumerate(model_cls.param_names)}
    inputs, ll = [theta], 0.0
    for j, (cols, fn) in enumerate(likelihood_parts(model_cls, data_names)):
        data = {k: pt.dvector(f"{k}_{j}") for k in cols}
        w = pt.dvector(f"weights_{j}")
        inputs += [*data.values(), w]
        ll = ll + (w * fn(params, data)).sum()
    total = pt.dscalar("total_weight")
    penalizer = pt.dscalar("penalizer")
    nll = -ll / total + penalizer * pt.sum(pt.exp(theta) ** 2)
    inputs += [total, penalizer]
    mode = Mode(linker="cvm", optimizer="fast_run") if pytensor.config.cxx else None
    return pytensor.function(inputs, [nll, pytensor.grad(nll, theta)], mode=mode,
                           on_unused_input="ignore")  # a model may not read every column (NBD: recency)


def objective_inputs(model_cls, data: dict[str, np.ndarray], w: np.ndarray) -> list[np.ndarray]:
    """The data inputs of :func:`compiled_objective`: per part, its columns' unique rows and weights."""
    args = []
    for cols, _ in likelihood_parts(model_cls, tuple(data)):
        if set(cols) == set(data):
            values, weights = {k: data[k] for k in cols}, w
        else:
            values, weights = compress({k: data[k] for k in cols}, w)
        args += [values[k] for k in cols] + [weights]
    return args


def numeric_hessian(grad, theta: np.ndarray, step: float = 1e-6, g0: np.ndarray | None = None) -> np.ndarray:
    """Hessian as forward differences of the exact gradient ``grad(theta)`` (symmetrised).

    ``len(theta)`` gradient evaluations (plus one when ``g0 = grad(theta)`` is not given). With an
    exact gradient the truncation error is ``O(step)`` relative (~1e-6), ample for standard errors
    and for Newton steps.
    """
    k = len(theta)
    g0 = grad(theta) if g0 is None else g0
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = step
        H[:, i] = (grad(theta + e) - g0) / step
    return (H + H.T) / 2


class _Objective:
    """``theta -> (value, gradient)`` of the compiled objective, remembering the last few points
    (the optimiser, the Newton polish and the Hessian often ask for the same point twice)."""

    def __init__(self, f, args):
        self.f, self.args, self.cache, self.n_evals = f, args, {}, 0

    def __call__(self, theta):
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        if key not in self.cache:
            value, grad = self.f(theta, *self.args)
            self.n_evals += 1
            out = (np.inf, np.zeros_like(theta)) if not np.isfinite(value) else \
                (float(value), np.asarray(grad, dtype=float).copy())
            if len(self.cache) >= 8:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = out
        return self.cache[key]


def fit_mle(model, data: dict[str, np.ndarray], w: np.ndarray, *, x0=None, maxiter: int = 1000,
            tol: float = 1e-10) -> None:
    """Fit ``model`` by maximum likelihood on unique rows ``data`` with weights ``w``; sets its ``*_``.

    L-BFGS on the log-parameters from the first of a few starting points that converges (``x0``,
    log scale, first if given; ``maxiter`` iterations at most), then Newton steps with the Hessian
    of the exact gradient until the largest absolute gradient component of the mean log-likelihood
    is below ``tol`` or stops shrinking. The fit counts as converged (``converged_``) when that
    gradient is below 1e-4 and no parameter is at a boundary.
    """
    names = model.param_names
    f = compiled_objective(type(model), tuple(data))
    penalizer = float(model.penalizer)
    total = float(w.sum())
    args = objective_inputs(type(model), data, w) + [total, penalizer]
    fun = _Objective(f, args)

    starts = [np.asarray(x0, dtype=float)] if x0 is not None else []
    starts += [np.log(model.initial_params(data, w)), np.zeros(len(names)), np.full(len(names), 1.0),
               np.full(len(names), -1.0)]
    best = None
    for start in starts:
        if not np.isfinite(fun(start)[0]):
            continue
        # L-BFGS-B's few-parameter BLAS calls only pay thread start-up costs (8 ms an iteration
        # on a busy 2-core machine, more than the whole objective on CDNOW): run them on one thread
        with threadpool_limits(limits=1, user_api="blas"):
            res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B",
                                    bounds=[(-BOUNDARY_LOG - 4, BOUNDARY_LOG + 4)] * len(names),
                                    options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-8})
        if best is None or res.fun < best.fun - 1e-12:
            best = res
        if res.success and np.max(np.abs(res.jac)) < 1e-4:
            break
    if best is None:
        raise ClvDataError(
            f"{type(model).__name__}: the log-likelihood is not finite at any starting point; "
            "check the data (e.g. recency > T, negative values)."
        )
    theta = np.asarray(best.x, dtype=float)

    # polish with Newton steps (a few parameters: the Hessian costs len(theta) gradients); the
    # Hessian is recomputed only when the steps have moved theta noticeably
    def hess(th):
        return numeric_hessian(lambda v: fun(v)[1], th, g0=fun(th)[1])

    H, H_at = hess(theta), theta
    for _ in range(20):
        value, grad = fun(theta)
        if np.max(np.abs(grad)) < tol:
            break
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            break
        cand = np.clip(theta - step, -BOUNDARY_LOG - 4, BOUNDARY_LOG + 4)
        cand_value, cand_grad = fun(cand)
        # accept a step that does not increase the objective beyond rounding and shrinks the gradient
        if not (cand_value <= value + 1e-13 * max(1.0, abs(value))
                and np.max(np.abs(cand_grad)) < np.max(np.abs(grad))):
            break
        theta = cand
        if np.max(np.abs(theta - H_at)) > 1e-3:
            H, H_at = hess(theta), theta
    if np.max(np.abs(theta - H_at)) > 1e-6:
        H = hess(theta)
    value, grad = fun(theta)
    grad_max = float(np.max(np.abs(grad)))
    at_boundary = [k for k, t in zip(names, theta) if abs(t) >= BOUNDARY_LOG]
    converged = bool(grad_max < 1e-4 and not at_boundary)

    unpenalized = -(f(theta, *args[:-1], 0.0)[0] if penalizer else value) * total
    cov = np.full((len(names), len(names)), np.nan)
    pd_ok = False
    try:
        eig = np.linalg.eigvalsh(H)
        if np.all(eig > 0) and np.all(np.isfinite(H)):
            cov = np.linalg.inv(H * total)
            pd_ok = True
    except np.linalg.LinAlgError:
        pass

    unidentified = []
    if pd_ok:
        log_se = np.sqrt(np.diag(cov))
        unidentified = [k for k, se in zip(names, log_se) if se > UNIDENTIFIED_LOG_SE and k not in at_boundary]
        if unidentified:
            converged = False
            vals = ", ".join(f"{k}={np.exp(t):.3g} (log-scale SE {se:.3g})"
                             for k, t, se in zip(names, theta, log_se) if k in unidentified)
            warn_convergence(
                f"{type(model).__name__}: {vals}: the data barely identify these parameters (the "
                "estimate is drifting towards 0 or infinity, e.g. no sign of drop-out). Do not read them "
                "as estimates; use more data, a penalizer, or a Bayesian fit with informative priors."
            )

    model.params_ = pd.Series(np.exp(theta), index=list(names), name="estimate")
    model.log_likelihood_ = float(unpenalized)
    model.covariance_ = cov
    # without a positive-definite Hessian there are no standard errors: not a usable fit (warned below)
    model.converged_ = converged and pd_ok
    k = len(names)
    model.aic_ = 2 * k - 2 * model.log_likelihood_
    model.bic_ = k * np.log(total) - 2 * model.log_likelihood_
    model.optimizer_ = {"message": str(best.message), "n_iter": int(best.nit), "n_evaluations": fun.n_evals,
                        "max_abs_gradient": grad_max, "at_boundary": at_boundary}
    if at_boundary:
        vals = ", ".join(f"{k}={np.exp(t):.3g}" for k, t in zip(names, theta) if k in at_boundary)
        warn_convergence(
            f"{type(model).__name__}: the maximum-likelihood estimate is at a boundary ({vals}): the "
            "data cannot identify these parameters (e.g. almost no repeat purchases, or no sign of "
            "drop-out). Do not read them as estimates; use more data, a penalizer, or a Bayesian fit "
            "with informative priors."
        )
    elif not converged and not unidentified:
        warn_convergence(
            f"{type(model).__name__}: the optimiser did not converge (max |gradient| = {grad_max:.2g}, "
            f"{best.message}). The estimates may be off; try penalizer=0.001 or check the data."
        )
    if not pd_ok and not at_boundary:
        warn_convergence(
            f"{type(model).__name__}: the Hessian at the estimate is not positive definite, so there are "
            "no standard errors: the data barely identify the parameters (e.g. no sign of drop-out). Do "
            "not read them as estimates; use more data, a penalizer, or a Bayesian fit with informative priors."
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
