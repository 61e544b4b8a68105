"""Maximum-likelihood fitting from a model's log-likelihood, with its exact gradient by dual numbers.

The negative mean log-likelihood over the unique rows (weighted by their counts) and its exact
gradient with respect to the log-parameters are evaluated directly with numpy and forward-mode dual
numbers (the model's one ``log_likelihood`` in the :data:`~.namespaces.DUAL` namespace; see
:mod:`.dual`): no graph is built and nothing is compiled, so the first fit in a process costs what
a later one does, and neither PyTensor nor PyMC is imported. Terms that read only some columns (e.g.
only the frequency) are summed over those columns' distinct values (:func:`likelihood_parts`). The
optimiser, shared with the MAP fit (:mod:`.optimize`), works on the log-parameters
(unconstrained), starts from a few points, polishes with Newton steps (the Hessian is the forward
difference of the exact gradient), and reports failure loudly: a fit that does not converge, or
whose estimate runs to a boundary (a parameter going to 0 or to infinity), warns with a
:class:`~clvmodels.errors.ConvergenceWarning`; standard errors come from the inverse Hessian (as in
lifetimes), and confidence intervals are formed on the log scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import warn_convergence
from . import dual
from .covariates import key
from .namespaces import DUAL, namespace_of
from .rows import compress
from .optimize import (Objective, boundary_parameters, covariance_from_hessian, information_criteria,
                       minimize_log_params, starting_points, unidentified_parameters)

#: The fit counts as converged when the largest absolute gradient of the mean log-likelihood (with
#: respect to the log-parameters) is below this.
CONVERGED_GRADIENT = 1e-4


def linked_log_likelihood(model_cls, link):
    """``(params, data, xp) -> model_cls.log_likelihood`` at the per-customer parameters of the covariate
    ``link`` (:class:`~.covariates.CovariateLink`): the model's likelihood, unchanged, with per-row parameters."""
    def log_likelihood(params, data, xp):
        return model_cls.log_likelihood(link.individual(params, data, xp), data, xp)

    return log_likelihood


def likelihood_parts(model_cls, data_names: tuple[str, ...], link=None):
    """The model's log-likelihood as ``((columns, fn), ...)`` with ``Σ fn(params, data) = log_likelihood``.

    A model may declare ``log_likelihood_parts`` (e.g. BG/NBD: the terms that read only the
    frequency, and the rest): each part is then summed over the distinct values of its own columns
    with their total weights, so the costly special functions of a frequency-only term are evaluated
    once per distinct frequency instead of once per distinct history. Without it (or if a part reads
    a column the data lack), the whole log-likelihood is one part. With covariates (``link``) it is
    one part too, at the per-customer parameters (every term then reads the covariates).
    """
    if link is not None:
        return ((tuple(data_names), linked_log_likelihood(model_cls, link)),)
    parts = model_cls.log_likelihood_parts
    if not parts or not all(set(cols) <= set(data_names) for cols, _ in parts):
        return ((tuple(data_names), model_cls.log_likelihood),)
    return tuple((tuple(cols), fn) for cols, fn in parts)


def part_data(model_cls, data: dict[str, np.ndarray], w: np.ndarray, link=None) -> list[tuple[dict, np.ndarray]]:
    """Per part of :func:`likelihood_parts` (of ``data``'s columns): its columns' distinct values in the
    unique rows ``data`` and their total weights ``w``, as ``(values, weights)``."""
    out = []
    for cols, _ in likelihood_parts(model_cls, tuple(data), link):
        if set(cols) == set(data):
            out.append(({k: data[k] for k in cols}, w))
        else:
            out.append(compress({k: data[k] for k in cols}, w))
    return out


def weighted_log_likelihood(parts, params: dict, values, xp=None):
    """``Σ weights · fn(params, data, xp)`` over ``parts`` (:func:`likelihood_parts`), ``values``
    holding the ``(data, weights)`` of each: numpy arrays with dual-number parameters
    (:func:`mle_objective`), or PyTensor variables (the Bayesian fits). ``xp``: the namespace
    (:mod:`.namespaces`); by default that of the parameters and data."""
    xp = namespace_of(params, *(data for data, _ in values)) if xp is None else xp
    total = 0.0
    for (_, fn), (data, w) in zip(parts, values):
        total = total + xp.sum(w * fn(params, data, xp))
    return total


def mle_objective(model_cls, data_names: tuple[str, ...], link=None, covariate_penalty: float = 0.0):
    """``f(theta, *part_inputs, total_weight, penalizer) -> (nll, grad)``: the mean negative
    log-likelihood (plus ``penalizer · Σ params²``) of the log-parameters ``theta`` and its exact
    gradient, where ``part_inputs`` are, for each of :func:`likelihood_parts`, its columns' (unique)
    values followed by their weights (:func:`objective_inputs`). Evaluated with dual numbers: nothing
    is compiled.

    With covariates (``link``, a :class:`~.covariates.CovariateLink`) ``theta`` continues with the
    free coefficients (standardised scale, not logged), penalised by ``covariate_penalty · Σ γ²``."""
    parts = likelihood_parts(model_cls, data_names, link)
    names = model_cls.param_names
    k = len(names)
    if link is not None:
        return _linked_objective(model_cls, parts[0][0], link, covariate_penalty)

    def f(theta, *inputs):
        *data_inputs, total, penalizer = inputs
        columns = iter(data_inputs)
        values = [({c: next(columns) for c in cols}, next(columns)) for cols, _ in parts]
        theta = np.asarray(theta, dtype=float)
        variables = dual.Dual.variables(theta)
        params = dict(zip(names, (dual.exp(v) for v in variables[:k])))
        if link is not None:
            params.update(link.coefficients(variables[k:]))
        # a non-finite value is the optimiser's business (Objective: (inf, 0)), not a warning's
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ll = weighted_log_likelihood(parts, params, values, DUAL)
        return penalised(theta, k, float(ll.value), ll.full_tangent(), total, penalizer, covariate_penalty)

    return f


def penalised(theta, k: int, log_lik: float, grad: np.ndarray, total: float, penalizer: float,
               covariate_penalty: float):
    """The objective's ``(value, gradient)`` from the log-likelihood and its gradient in ``theta``:
    ``−ℓ/total + penalizer · Σ θ_j² + covariate_penalty · Σ γ²`` (``θ_j = e^{theta_j}``, the first
    ``k`` entries; the coefficients ``γ`` the rest)."""
    scale = np.exp(2.0 * theta[:k])
    coefs = theta[k:]
    value = -log_lik / total + penalizer * float(scale.sum()) + covariate_penalty * float(coefs @ coefs)
    return value, -grad / total + 2.0 * np.r_[penalizer * scale, covariate_penalty * coefs]


def _linked_objective(model_cls, columns: tuple[str, ...], link, covariate_penalty: float):
    """:func:`mle_objective` with covariates, its gradient in two steps: dual numbers with one tangent
    per model parameter, each customer's own (``∂ℓ_i/∂θ_ij``, ``k`` tangents however many
    coefficients there are), then the chain rule through the link ``θ_ij = θ_j exp(s Σ_c γ_jc z_ic)``:
    ``∂θ_ij/∂ln θ_j = θ_ij`` and ``∂θ_ij/∂γ_jc = s z_ic θ_ij`` (a weighted sum over the rows)."""
    names = model_cls.param_names
    k = len(names)
    unit = np.eye(k)

    def f(theta, *inputs):
        *data_inputs, total, penalizer = inputs
        data = dict(zip(columns, data_inputs[:len(columns)]))
        w = data_inputs[len(columns)]
        theta = np.asarray(theta, dtype=float)
        params = dict(zip(names, np.exp(theta[:k])))
        per_row = link.individual({**params, **link.coefficients(theta[k:])}, data, np)
        variables = {n: dual.Dual(per_row[n], unit[:, j].reshape((k,) + (1,) * np.ndim(per_row[n])))
                     for j, n in enumerate(names)}
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ll = model_cls.log_likelihood(variables, data, DUAL)
            weighted = ll.full_tangent() * w                            # (k, rows): w_i ∂ℓ_i/∂θ_ij
        grad_log, grad_free = link_gradient(names, link, weighted, per_row, data)
        return penalised(theta, k, float(np.sum(w * ll.value)), np.r_[grad_log, grad_free], total, penalizer,
                         covariate_penalty)

    return f


def link_gradient(names, link, weighted, per_row, data) -> tuple[np.ndarray, np.ndarray]:
    """The gradient in the log-parameters and in the link's free coefficients from ``weighted``
    (``(k, rows)``: ``w_i ∂ℓ_i/∂θ_ij``, each customer's own parameters ``per_row``), by the chain rule
    through ``θ_ij = θ_j exp(s Σ_c γ_jc z_ic)``: ``∂θ_ij/∂ln θ_j = θ_ij``, ``∂θ_ij/∂γ_jc = s z_ic θ_ij``
    (``link`` None: no coefficients)."""
    grad_log = np.array([np.sum(weighted[j] * per_row[n]) for j, n in enumerate(names)])
    grad_free = np.zeros(0 if link is None else link.n_free)
    for param, sign, cnames in () if link is None else link.terms:
        j = names.index(param)
        scaled = weighted[j] * per_row[param]
        for cname in cnames:
            i = link.free[link.coefficient_names.index(f"{param}:{cname}")]
            grad_free[i] += sign * np.sum(scaled * data[key(cname)])
    return grad_log, grad_free


def objective_inputs(model_cls, data: dict[str, np.ndarray], w: np.ndarray, link=None) -> list[np.ndarray]:
    """The data inputs of :func:`mle_objective`: per part, its columns' unique rows and weights."""
    return [v for values, weights in part_data(model_cls, data, w, link) for v in (*values.values(), weights)]


def _static_objective(model, data: dict[str, np.ndarray], w: np.ndarray, link, coef_penalty: float) -> Objective:
    """The objective of the log-parameters (and static coefficients) without time-varying covariates."""
    structure = model.likelihood_structure()
    f = mle_objective(structure, tuple(data), link, coef_penalty)
    return Objective(f, objective_inputs(structure, data, w, link) + [float(w.sum()), float(model.penalizer)])


#: L-BFGS settings of every maximum-likelihood fit (:func:`~.optimize.minimize_log_params`).
_LBFGS = dict(ftol=1e-12, gtol=1e-8, improvement=1e-12, good_enough=CONVERGED_GRADIENT)


def static_optimum(model, data: dict[str, np.ndarray], w: np.ndarray, link, coef_penalty: float, starts) -> np.ndarray:
    """The log-parameters (and static coefficients) maximising the likelihood without the time-varying
    covariates, on the distinct rows: the time-varying fit's first start (its coefficients at 0 give
    this likelihood), which saves it about a fifth of its evaluations (``benchmarks/bench_timevarying.py``)."""
    rows, weights = compress(data, w)
    n_free = len(link.free_names) if link is not None else 0
    opt = minimize_log_params(_static_objective(model, rows, weights, link, coef_penalty),
                              [np.r_[s, np.zeros(n_free)] for s in starts],
                              failure=f"{type(model).__name__}: the log-likelihood is not finite at any starting point.",
                              maxiter=1000, **_LBFGS)
    return opt.theta


def fit_mle(model, data: dict[str, np.ndarray], w: np.ndarray, *, x0=None, maxiter: int = 1000,
            tol: float = 1e-10, link=None, time_varying=None) -> None:
    """Fit ``model`` by maximum likelihood on unique rows ``data`` with weights ``w``; sets its ``*_``.

    L-BFGS on the log-parameters from the first of a few starting points that converges (``x0``,
    log scale, first if given; ``maxiter`` iterations at most), then Newton steps with the Hessian
    of the exact gradient until the largest absolute gradient component of the mean log-likelihood
    is below ``tol`` or stops shrinking. The fit counts as converged (``converged_``) when that
    gradient is below :data:`CONVERGED_GRADIENT`, no parameter is at a boundary and every one is
    identified (:func:`~.optimize.boundary_parameters`, :func:`~.optimize.unidentified_parameters`).

    With covariates (``link``: :class:`~.covariates.CovariateLink`, their columns in ``data``) the
    free coefficients follow the log-parameters in the optimiser's vector (starting at 0) and in
    ``covariance_``; ``coefficients_`` holds every coefficient (standardised scale).

    With time-varying covariates (``time_varying``: a :class:`~.timevarying.TimeVaryingFit`) their
    coefficients come last in the vector (starting at 0) and in ``covariance_``, and are set as
    ``time_varying_coefficients_``.
    """
    k = len(model.param_names)
    tv_names = [] if time_varying is None else list(time_varying.names)
    names = list(model.param_names) + ([] if link is None else list(link.free_names)) + tv_names
    name = type(model).__name__
    coef_penalty = 0.0 if link is None and time_varying is None else float(model.covariate_penalty)
    total = float(w.sum())
    fun = (_static_objective(model, data, w, link, coef_penalty) if time_varying is None
           else Objective(time_varying.objective(coef_penalty), [total, float(model.penalizer)]))
    starts = starting_points(model, data, w, None)
    if x0 is None and time_varying is not None:
        x0 = np.r_[static_optimum(model, data, w, link, coef_penalty, starts), np.zeros(len(tv_names))]
    starts = ([] if x0 is None else [np.asarray(x0, dtype=float)]) + [np.r_[s, np.zeros(len(names) - k)] for s in starts]
    opt = minimize_log_params(
        fun, starts,
        failure=f"{name}: the log-likelihood is not finite at any starting point; check the data "
                "(e.g. recency > T, negative values).",
        maxiter=maxiter, **_LBFGS, newton_steps=20, newton_tol=tol, precondition=time_varying is not None)
    theta, grad_max = opt.theta, opt.max_abs_gradient
    params = pd.Series(np.exp(theta[:k]), index=names[:k], name="estimate")
    at_boundary = boundary_parameters(names[:k], theta[:k])
    converged = bool(grad_max < CONVERGED_GRADIENT and not at_boundary)
    cov, pd_ok = covariance_from_hessian(opt.hessian, total)
    unidentified = unidentified_parameters(names, cov, exclude=at_boundary) if pd_ok else {}
    if unidentified:
        converged = False
        vals = ", ".join(f"{p}={np.exp(theta[names.index(p)]) if p in params else theta[names.index(p)]:.3g} "
                         f"(SE {se:.3g})" for p, se in unidentified.items())
        warn_convergence(
            f"{name}: {vals}: the data barely identify these parameters (the "
            "estimate is drifting towards 0 or infinity, e.g. no sign of drop-out). Do not read them "
            "as estimates; use more data, a penalizer, or a Bayesian fit with informative priors."
        )

    model.params_ = params
    n_static = len(names) - k - len(tv_names)
    if link is not None:
        model.coefficients_ = pd.Series(link.coefficients(theta[k:k + n_static]), name="estimate", dtype=float)
    if time_varying is not None:
        model.time_varying_coefficients_ = pd.Series(theta[k + n_static:], index=tv_names, name="estimate",
                                                     dtype=float)
    is_penalised = model.penalizer or coef_penalty
    if not coef_penalty:
        unpenalised = fun.f
    elif time_varying is None:
        unpenalised = mle_objective(model.likelihood_structure(), tuple(data), link)
    else:
        unpenalised = time_varying.objective(0.0)
    model.log_likelihood_ = float(-(unpenalised(theta, *fun.args[:-1], 0.0)[0] if is_penalised else opt.value) * total)
    model.covariance_ = cov
    # without a positive-definite Hessian there are no standard errors: not a usable fit (warned below)
    model.converged_ = converged and pd_ok
    model.n_free_parameters_ = len(names)
    model.aic_, model.bic_ = information_criteria(model.log_likelihood_, len(names), total)
    model.optimizer_ = {"message": str(opt.lbfgs.message), "n_iter": int(opt.lbfgs.nit),
                        "n_evaluations": fun.n_evals, "max_abs_gradient": grad_max, "at_boundary": at_boundary}
    if at_boundary:
        vals = ", ".join(f"{p}={params[p]:.3g}" for p in at_boundary)
        warn_convergence(
            f"{name}: the maximum-likelihood estimate is at a boundary ({vals}): the "
            "data cannot identify these parameters (e.g. almost no repeat purchases, or no sign of "
            "drop-out). Do not read them as estimates; use more data, a penalizer, or a Bayesian fit "
            "with informative priors."
        )
    elif not converged and not unidentified:
        warn_convergence(
            f"{name}: the optimiser did not converge (max |gradient| = {grad_max:.2g}, "
            f"{opt.lbfgs.message}). The estimates may be off; try penalizer=0.001 or check the data."
        )
    if not pd_ok and not at_boundary:
        warn_convergence(
            f"{name}: the Hessian at the estimate is not positive definite, so there are "
            "no standard errors: the data barely identify the parameters (e.g. no sign of drop-out). Do "
            "not read them as estimates; use more data, a penalizer, or a Bayesian fit with informative priors."
        )


def mle_summary(model, level: float = 0.95) -> pd.DataFrame:
    """Estimates, standard errors (delta method from the log scale) and log-scale confidence intervals."""
    names = list(model.param_names)
    est = model.params_[names].to_numpy()
    se_log = np.sqrt(np.diag(model.covariance_)[:len(names)]) if np.all(np.isfinite(model.covariance_)) else np.full(len(names), np.nan)
    z = ndtri(0.5 + level / 2)  # the standard normal quantile (scipy.stats not imported)
    lo, hi = f"lower_{level:.0%}", f"upper_{level:.0%}"
    return pd.DataFrame(
        {"estimate": est, "se": est * se_log, lo: est * np.exp(-z * se_log), hi: est * np.exp(z * se_log)},
        index=pd.Index(names, name="parameter"),
    )
