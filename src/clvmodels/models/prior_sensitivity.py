"""Prior sensitivity of a Bayesian fit (MAP, NUTS, ADVI): does the data or the prior decide each parameter?

After every Bayesian fit the same data are fitted by maximum likelihood (:func:`~.mle.fit_mle`, no
prior) and each parameter's posterior is compared with the likelihood alone, on the log scale
(where the MLE's standard errors are formed):

``shift``
    ``(E[ln θ] − ln θ_MLE) / SE(ln θ_MLE)``: how many of the MLE's standard errors the prior moved
    the estimate (the posterior mean of ``ln θ``; the mode for MAP). With a prior that the data
    outweigh it is ``O(1/√n)`` of a standard error; skewness of the likelihood alone moves a
    posterior mean by a fraction of one.
``sd_ratio``
    ``sd(ln θ | data) / SE(ln θ_MLE)``: below 1 the prior adds information the data lack (a
    posterior much narrower than the likelihood), above 1 the likelihood is flatter than its
    curvature at the MLE says (e.g. a ridge towards a boundary), which the prior then bounds.

A parameter is **prior-dominated** when ``|shift| >`` :data:`SHIFT_MAX` or ``sd_ratio <``
:data:`SD_RATIO_MIN`, or when the likelihood alone gives it no finite standard error (e.g. the
MLE runs to a boundary: no sign of drop-out): then the posterior is mostly the prior's, and predictions
that depend on it (e.g. Pareto/NBD's drop-out ``s``, ``β`` on a short log) are the prior's choice.
Both are the usual comparisons of a posterior with the likelihood alone (Gelman et al., *Bayesian
Data Analysis*, 3rd ed., ch. 4: the posterior is approximately normal around the MLE with the
inverse-Hessian variance when the data dominate the prior), read as z-scores.

The table is stored as ``model.prior_sensitivity_`` and shown in ``summary()``; a
:class:`~clvmodels.errors.PriorSensitivityWarning` names the prior-dominated parameters and what to do.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import PriorSensitivityWarning

#: A posterior (mean of ``ln θ``) more than this many of the MLE's standard errors from the MLE is
#: prior-dominated.
SHIFT_MAX = 1.0
#: A posterior sd of ``ln θ`` below this fraction of the MLE's standard error is prior-dominated
#: (the prior supplies more than three quarters of the information: ``1/0.5² = 4`` x the likelihood's).
SD_RATIO_MIN = 0.5
#: Columns the table adds to ``summary()``.
COLUMNS = ("mle", "prior_shift_se", "prior_sd_ratio", "prior_dominated")


def log_posterior_moments(model) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of ``ln θ`` per parameter: over the posterior draws (NUTS, ADVI), or the mode and
    the Laplace sd (MAP)."""
    names = list(type(model).param_names)
    draws = getattr(model, "posterior_draws_", None)
    if draws is not None:
        logs = np.column_stack([np.log(np.asarray(draws[k], dtype=float)) for k in names])
        return logs.mean(axis=0), logs.std(axis=0, ddof=1)
    sd = np.sqrt(np.diag(model.covariance_)[:len(names)]) if getattr(model, "covariance_", None) is not None else np.nan
    return np.log(model.params_[names].to_numpy(dtype=float)), np.broadcast_to(sd, (len(names),))


def prior_sensitivity_table(names, post_mean, post_sd, mle_params, mle_se, mle_converged: bool) -> pd.DataFrame:
    """The per-parameter table (index ``parameter``; columns :data:`COLUMNS`) from the log-scale
    posterior moments and the MLE with its log-scale standard errors (``attrs``: the thresholds and
    whether the MLE converged)."""
    mle_log = np.log(np.asarray(mle_params, dtype=float))
    se = np.where(np.isfinite(mle_se) & (np.asarray(mle_se) > 0), mle_se, np.nan)
    shift = (np.asarray(post_mean) - mle_log) / se
    ratio = np.asarray(post_sd) / se
    with np.errstate(invalid="ignore"):
        dominated = ~np.isfinite(shift) | (np.abs(shift) > SHIFT_MAX) | (ratio < SD_RATIO_MIN)
    table = pd.DataFrame({"mle": np.exp(mle_log), "prior_shift_se": shift, "prior_sd_ratio": ratio,
                          "prior_dominated": dominated}, index=pd.Index(list(names), name="parameter"))
    table.attrs.update(shift_max=SHIFT_MAX, sd_ratio_min=SD_RATIO_MIN, mle_converged=bool(mle_converged))
    return table


def check_prior_sensitivity(model, data: dict[str, np.ndarray], w: np.ndarray, time_varying=None) -> pd.DataFrame:
    """Fit the MLE on the same unique rows (and time-varying covariates, ``time_varying``), set
    ``model.prior_sensitivity_`` and warn (a :class:`~clvmodels.errors.PriorSensitivityWarning`) when
    a parameter is prior-dominated."""
    from .mle import fit_mle

    cls = type(model)
    names = list(cls.param_names)
    reference = model.structure_copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # an MLE that fails is the finding, reported below
        try:
            fit_mle(reference, data, w, link=model._covariate_link(), time_varying=time_varying)
            mle_params, cov = reference.params_[names].to_numpy(), reference.covariance_
            converged = reference.converged_
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            mle_params, cov, converged = np.full(len(names), np.nan), None, False
    se = np.sqrt(np.diag(cov)[:len(names)]) if cov is not None else np.full(len(names), np.nan)
    post_mean, post_sd = log_posterior_moments(model)
    table = prior_sensitivity_table(names, post_mean, post_sd, mle_params, se, converged)
    model.prior_sensitivity_ = table
    bad = table.index[table["prior_dominated"]].tolist()
    if bad:
        rows = ", ".join(_describe(k, table.loc[k]) for k in bad)
        advi = (" (or ADVI's approximation is poor: check with method='nuts')"
                if getattr(model, "sampler_", None) == "advi" else "")
        warnings.warn(
            f"{cls.__name__}: the prior, not the data, decides {', '.join(bad)}{advi} ({rows}). Predictions "
            "that depend on them follow the prior: use more customers or a longer observation window, set "
            "priors= that say what you know, and compare with the MLE (model.prior_sensitivity_).",
            PriorSensitivityWarning, stacklevel=4)
    return table


def _describe(name: str, row: pd.Series) -> str:
    if not np.isfinite(row["prior_shift_se"]):
        return f"{name}: no finite MLE standard error"
    return (f"{name}: posterior {row['prior_shift_se']:+.1f} MLE standard errors from the MLE "
            f"{row['mle']:.3g}, sd {row['prior_sd_ratio']:.2f} x the MLE's")


def with_prior_sensitivity(model, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (a parameter summary) with the columns of ``model.prior_sensitivity_`` when it has one."""
    sens = getattr(model, "prior_sensitivity_", None)
    if sens is None:
        return table
    out = table.join(sens[list(COLUMNS)])
    out.attrs.update(table.attrs, prior_shift_max=SHIFT_MAX, prior_sd_ratio_min=SD_RATIO_MIN)
    return out


__all__ = ["COLUMNS", "SD_RATIO_MIN", "SHIFT_MAX", "check_prior_sensitivity", "log_posterior_moments",
           "prior_sensitivity_table", "with_prior_sensitivity"]
