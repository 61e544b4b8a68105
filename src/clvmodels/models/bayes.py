"""Bayesian fits (MAP, NUTS, ADVI) of any :class:`~clvmodels.models.base.CLVModel` with PyMC.

The PyMC model is built generically from the class's declared :attr:`param_names`, its priors and
its one PyTensor log-likelihood ``type(model).log_likelihood(params, data)``: the weighted sum of that
expression over the unique data rows (weights: how many customers share each row) enters as a
``pm.Potential``. Every model class with the standard interface therefore gets all three methods
without further code.

Priors
------
A model's :attr:`default_priors` maps each parameter to a small spec ``(distribution, kwargs)``,
e.g. ``("HalfNormal", {"sigma": 5.0})``, or ``(distribution, kwargs, scale)`` where ``scale`` maps
some kwargs to a data column whose weighted mean multiplies them, e.g.
``("HalfNormal", {"sigma": 5.0}, {"sigma": "T"})`` is a half-normal of scale 5 x the mean customer
age. Scale parameters (BG/NBD's ``alpha`` has the unit of time, Gamma-Gamma's ``gamma`` that of
money) are given this way, so the default priors are equally weak whatever the time unit or the
currency. ``priors={...}`` on the estimator (or in ``fit``) replaces some or all of them; each value
may be

* a spec as above;
* a PyMC distribution made with ``.dist(...)`` (e.g. ``pm.Gamma.dist(2, 1)``), registered under
  the parameter's name;
* a function ``f(name)`` called inside the model context that returns a named random variable,
  e.g. ``lambda name: pm.LogNormal(name, 0, 2)``.

Priors must put all their mass on (0, inf): every parameter of these models is positive.

Compiled once per model structure
---------------------------------
The data (the unique rows of each likelihood part, and their weights) and the numeric
hyperparameters of spec priors (the data-scaled ones included) are inputs of the PyMC model, not
constants, so every fit with the same model class, data columns and prior distributions reuses
one compiled model (:mod:`.compiled`): refitting on another cutoff, other customers or other prior
values compiles nothing (NUTS with nutpie, the MAP's log posterior and gradient; PyMC's sampler and
ADVI reuse the PyMC model). Priors given as ``.dist()`` objects or functions are not cached: each
such fit builds and compiles its own model.

The two shape parameters of a beta mixing distribution (BG/NBD's and MBG/NBD's drop-out ``a, b``)
get a joint prior by default, :class:`BetaConcentrationPrior`: the beta's mean ``a/(a+b)`` is
uniform on (0, 1) and its concentration ``a+b`` has the heavy-tailed, scale-free density
``(1+a+b)^-2`` (the reparametrisation of Gelman et al., *Bayesian Data Analysis*, 3rd ed., §5.3,
and of PyMC-Marketing's ``phi``/``kappa``, without its cut at ``a+b >= 1``). Independent flat priors
on ``a`` and ``b`` favour large concentrations, which the data pin down poorly: on CDNOW they put
the posterior means of ``a`` and ``b`` 22% and 30% above the MLE, this prior 1-3%
(``benchmarks/bench_bayes.py``). Giving ``a`` or ``b`` in ``priors=`` replaces the joint prior
by independent ones: the given priors, and the class's :attr:`default_priors` for the other.

A model may sample other quantities than its parameters: its class's :attr:`bayes_parametrisation`
(a :class:`Reparametrisation`) names them, gives their default priors and maps them to the
parameters and back. Pareto/NBD samples its shapes ``r, s`` and its mean inter-purchase time
``alpha/r`` and mean lifetime ``beta/s``, which the data identify far better than the scales ``alpha``
and ``beta`` themselves. The parameters are then ``pm.Deterministic`` nodes (in the posterior under
their own names), and the MAP evaluates the priors at the sampled quantities computed from the
parameters. ``priors=`` may give priors of the sampled quantities, or of the parameters: naming a
parameter that is not sampled switches that fit to the plain parametrisation (:attr:`default_priors`).

Covariates
----------
A model with covariates (:mod:`.covariates`) samples its free coefficients too, on the standardised
scale, each with the prior :data:`COEFFICIENT_PRIOR` (a Normal of sd 1: a one-sd change of a covariate
multiplies a parameter by at most about ``e^±2`` a priori), overridable like the other priors by the
coefficient's name (``priors={"alpha:x1": ("Normal", {"mu": 0.0, "sigma": 0.5})}``) or for all of them
at once (``priors={"coefficients": ...}``). The covariate link is part of the compiled model's
structure and the covariate columns part of its packed data, so refits on other customers reuse it.

Methods
-------
``"map"``
    The posterior mode (L-BFGS on the log-parameters with the exact gradient of the PyMC model's
    log posterior, priors' densities on the natural scale; the optimiser of the MLE,
    :mod:`.optimize`) with a Laplace approximation: ``covariance_`` is the
    inverse negative Hessian of the log posterior with respect to the log-parameters at the mode,
    so predictions with ``interval=`` draw from it exactly as for the MLE.
``"nuts"``
    Hamiltonian Monte Carlo. Sampler: nutpie when it is installed (compiled with numba, with its
    low-rank modified mass matrix adaptation, which learns the posterior correlations; measured on
    CDNOW several times faster than PyMC's sampler end to end with far higher effective sample
    sizes, see ``benchmarks/bench_bayes.py``), else PyMC's own (PyTensor's C backend);
    ``nuts_sampler="pymc"|"nutpie"`` chooses, ``nuts={...}`` passes sampler options. Chains run in parallel on the
    available cores. Diagnostics (r_hat, bulk/tail ESS, divergences) are checked and a
    :class:`~clvmodels.errors.ConvergenceWarning` says what to do when they fail.
``"advi"``
    Mean-field ADVI (``pm.fit``, started at the MAP), then ``draws x chains`` independent draws from
    the fitted approximation. Fast, but it under-states posterior spread; a fit whose ELBO did not settle warns.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import warn_convergence
from ..progress import show_progress
from .compiled import compiled_model, nutpie_model
from .covariates import CovariateDesign, user_scale
from .prior_sensitivity import check_prior_sensitivity, with_prior_sensitivity
from .optimize import (Objective, boundary_parameters, compile_mode, covariance_from_hessian, information_criteria,
                       log_parameters, minimize_log_params, starting_points, value_and_gradient)
from .settings import check_sampling

#: r_hat above this fails the convergence check (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Bulk and tail ESS below this many per chain fail the convergence check (Vehtari et al. 2021: 100).
ESS_PER_CHAIN_MIN = 100
#: The MAP counts as converged when the largest absolute gradient of the (total) log posterior with
#: respect to the log-parameters is below this.
MAP_CONVERGED_GRADIENT = 1e-3


def nutpie_available() -> bool:
    """Whether the optional nutpie sampler is installed (``pip install clvmodels[nutpie]``)."""
    return importlib.util.find_spec("nutpie") is not None


def default_nuts_sampler() -> str:
    """``"nutpie"`` when installed (faster on these models), else ``"pymc"``."""
    return "nutpie" if nutpie_available() else "pymc"


# ---------------------------------------------------------------------------- priors
#: Default prior of a covariate coefficient (standardised scale); ``priors={"coefficients": ...}``
#: replaces it for all coefficients, ``priors={"<param>:<column>": ...}`` for one.
COEFFICIENT_PRIOR = ("Normal", {"mu": 0.0, "sigma": 1.0})
#: The key of ``priors`` that sets the prior of every covariate coefficient.
COEFFICIENTS = "coefficients"


def _is_coefficient(name: str) -> bool:
    return ":" in name


class BetaConcentrationPrior:
    """Joint prior of the shapes ``(a, b)`` of a beta mixing distribution: ``a/(a+b) ~ Uniform(0, 1)``
    and ``a+b`` with density ``(1+a+b)^-2``; on ``(a, b)`` that is the proper density
    ``(a+b)^-1 (1+a+b)^-2`` (the Jacobian of ``(a, b) -> (a/(a+b), a+b)`` is ``1/(a+b)``)."""

    def __init__(self, names: tuple[str, str]):
        self.names = tuple(names)

    def logp(self, a, b):
        import pytensor.tensor as pt

        kappa = a + b
        return -pt.log(kappa) - 2.0 * pt.log1p(kappa)

    def __repr__(self) -> str:
        a, b = self.names
        return f"BetaConcentrationPrior({a}/({a}+{b}) ~ Uniform(0, 1), {a}+{b} ~ density (1+{a}+{b})^-2)"


@dataclass(frozen=True)
class Reparametrisation:
    """Quantities a Bayesian fit samples instead of a model's parameters (its class's
    :attr:`bayes_parametrisation`).

    ``priors`` maps each sampled quantity to its default prior (a spec, as :attr:`default_priors`);
    ``to_params(sampled)`` returns every parameter from a dict of the sampled quantities and
    ``from_params(params)`` the reverse, both written with arithmetic that works on numpy values and
    PyTensor variables alike. A sampled quantity named like a parameter is that parameter.
    """

    priors: dict[str, tuple]
    to_params: Callable[[dict], dict]
    from_params: Callable[[dict], dict]


def parametrisation(model_cls, priors: dict) -> Reparametrisation | None:
    """The class's :class:`Reparametrisation` when the resolved ``priors`` are of its sampled
    quantities, else None (the parameters themselves are sampled)."""
    rep = model_cls.bayes_parametrisation
    return rep if rep is not None and {k for k in priors if not _is_coefficient(k)} == set(rep.priors) else None


def resolve_priors(model_cls, priors: dict | None, data: dict[str, np.ndarray],
                   weights: np.ndarray, link=None, varying: tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`_resolve_population_priors`, plus with covariates (``link``; ``varying``: the
    time-varying coefficients) the prior of each free coefficient (:data:`COEFFICIENT_PRIOR` unless
    ``priors`` names it or gives :data:`COEFFICIENTS`)."""
    priors = dict(priors or {})
    coefficient_priors = {k: priors.pop(k) for k in list(priors) if _is_coefficient(k) or k == COEFFICIENTS}
    out = _resolve_population_priors(model_cls, priors, data, weights)
    free = (() if link is None else link.free_names) + tuple(varying)
    unknown = set(coefficient_priors) - set(free) - {COEFFICIENTS}
    if unknown:
        raise ValueError(f"priors given for unknown coefficient(s) {sorted(unknown)}; {model_cls.__name__} has "
                         f"{list(free) or 'no covariates'}.")
    default = coefficient_priors.get(COEFFICIENTS, COEFFICIENT_PRIOR)
    for name in free:
        out[name] = _resolve_one(name, coefficient_priors.get(name, default), data, weights)
    return out


def _resolve_population_priors(model_cls, priors: dict | None, data: dict[str, np.ndarray],
                               weights: np.ndarray) -> dict[str, Any]:
    """The model's default priors updated by ``priors``, with data-scaled spec kwargs computed.

    Keyed by the sampled quantities of the class's :attr:`bayes_parametrisation` unless ``priors``
    names a parameter that it does not sample; then by :attr:`param_names`. The pairs of
    :attr:`joint_priors` that ``priors`` leaves alone map both their names to one
    :class:`BetaConcentrationPrior`."""
    rep = model_cls.bayes_parametrisation
    sampled = tuple(rep.priors) if rep is not None else ()
    unknown = set(priors or {}) - set(model_cls.param_names) - set(sampled)
    if unknown:
        raise ValueError(f"priors given for unknown parameter(s) {sorted(unknown)}; "
                         f"{model_cls.__name__} has {list(dict.fromkeys((*model_cls.param_names, *sampled)))}.")
    if rep is not None and not set(priors or {}) - set(sampled):
        return {name: _resolve_one(name, {**rep.priors, **(priors or {})}[name], data, weights) for name in sampled}
    mixed = set(priors or {}) & (set(sampled) - set(model_cls.param_names))
    if mixed:
        raise ValueError(f"priors of {sorted(mixed)} (sampled by {model_cls.__name__}'s parametrisation) cannot be "
                         f"mixed with priors of its other parameters {sorted(set(priors) - set(sampled))}.")
    merged = {**model_cls.default_priors, **(priors or {})}
    missing = [k for k in model_cls.param_names if k not in merged]
    if missing:
        raise ValueError(f"No prior for parameter(s) {missing} of {model_cls.__name__}: pass priors={{...}}.")
    out = {}
    for pair in model_cls.joint_priors:
        if not set(pair) & set(priors or {}):
            joint = BetaConcentrationPrior(pair)
            out.update(dict.fromkeys(pair, joint))
    for name in model_cls.param_names:
        if name not in out:
            out[name] = _resolve_one(name, merged[name], data, weights)
    return out


def _resolve_one(name: str, spec, data, weights):
    return _scaled_spec(name, spec, data, weights) if isinstance(spec, tuple) else spec


def _scaled_spec(name: str, spec: tuple, data, weights) -> tuple[str, dict[str, float]]:
    if len(spec) not in (2, 3) or not isinstance(spec[0], str) or not isinstance(spec[1], dict):
        raise ValueError(f"Prior spec of {name!r} must be (distribution_name, {{kwargs}}[, {{kwarg: column}}]), "
                         f"got {spec!r}.")
    dist, kwargs = spec[0], dict(spec[1])
    for kwarg, column in (spec[2] if len(spec) == 3 else {}).items():
        if column not in data:
            raise ValueError(f"Prior of {name!r} is scaled by column {column!r}, which the model does not read.")
        scale = float(np.average(np.abs(data[column]), weights=weights))
        kwargs[kwarg] = float(kwargs[kwarg]) * (scale if scale > 0 else 1.0)
    return dist, kwargs


def _prior_rv(name: str, prior, pymc_model, hyper: dict):
    import pymc as pm

    if isinstance(prior, BetaConcentrationPrior):
        return pm.HalfFlat(name)  # the joint density enters as a Potential (see _joint_log_prior)
    if isinstance(prior, tuple):
        dist_name, kwargs = prior
        dist = getattr(pm, dist_name, None)
        if dist is None or not hasattr(dist, "dist"):
            raise ValueError(f"Prior of {name!r}: {dist_name!r} is not a PyMC distribution.")
        # numeric hyperparameters are read from the inputs, so other prior values reuse the compile
        return dist(name, **{k: hyper.get((name, k), v) for k, v in kwargs.items()})
    if callable(prior) and not hasattr(prior, "owner"):
        rv = prior(name)
        if getattr(rv, "name", None) != name:
            raise ValueError(f"The prior function of {name!r} must return a random variable named {name!r}.")
        return rv
    if hasattr(prior, "owner"):  # an unnamed distribution made with pm.X.dist(...)
        return pymc_model.register_rv(prior, name)
    raise ValueError(f"Prior of {name!r} must be a spec tuple, a pm.X.dist(...) or a function of the name; "
                     f"got {type(prior).__name__}.")


#: The name of the PyMC model's one input (``pm.Data``), :func:`model_inputs`.
INPUTS = "inputs"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _hyperparameters(priors: dict) -> list[tuple[str, str, float]]:
    """``(parameter, kwarg, value)`` of each numeric hyperparameter of the spec ``priors``, in order."""
    return [(name, k, float(v)) for name, prior in priors.items() if isinstance(prior, tuple)
            for k, v in prior[1].items() if _is_number(v)]


def model_inputs(model_cls, data: dict[str, np.ndarray], weights: np.ndarray, priors: dict, link=None) -> np.ndarray:
    """Everything a fit's PyMC model reads besides its structure, packed in one vector (its one input
    :data:`INPUTS`): the number of rows of each of the likelihood's parts (:func:`~.mle.part_data`:
    its columns' distinct values and their weights), the numeric hyperparameters of the spec priors
    (:func:`_hyperparameters`), then per part its columns and its weights.

    One vector rather than one input per array because nutpie compiles code to read each shared
    input: BG/NBD's eight separate inputs made its numba compile ~60% slower."""
    from . import mle

    parts = mle.part_data(model_cls, data, weights, link)
    head = [len(w) for _, w in parts] + [v for _, _, v in _hyperparameters(priors)]
    arrays = [np.asarray(a, dtype=float) for values, w in parts for a in (*values.values(), w)]
    return np.concatenate([np.asarray(head, dtype=float), *arrays])


def _unpack(model_cls, data_names: tuple[str, ...], priors: dict, packed, link=None):
    """The symbolic contents of the packed input (:func:`model_inputs`): the likelihood's
    ``[(columns, weights), ...]`` per part, and the hyperparameters ``{(parameter, kwarg): scalar}``."""
    import pytensor.tensor as pt

    from . import mle

    parts = mle.likelihood_parts(model_cls, tuple(data_names), link)
    lengths = pt.cast(pt.round(packed[:len(parts)]), "int64")
    names = [(name, k) for name, k, _ in _hyperparameters(priors)]
    start = len(parts)
    hyper = {key: packed[start + i] for i, key in enumerate(names)}
    start = start + len(names)
    values = []
    for j, (cols, _) in enumerate(parts):
        arrays = []
        for _ in range(len(cols) + 1):
            arrays.append(packed[start:start + lengths[j]])
            start = start + lengths[j]
        values.append((dict(zip(cols, arrays[:-1])), arrays[-1]))
    return values, hyper


def build_pymc_model(model_cls, data: dict[str, np.ndarray], weights: np.ndarray, priors: dict, link=None,
                     time_varying=None):
    """PyMC model: priors on :attr:`param_names` (or on the sampled quantities of
    :func:`parametrisation`, the parameters then being deterministic) plus
    ``Potential(sum(w * log_likelihood))``.

    The data and the spec priors' numeric hyperparameters are read from one ``pm.Data`` input
    (:func:`model_inputs`), so one compiled model serves every fit of the same structure, whatever
    its data and prior values (:mod:`.compiled`). With time-varying covariates (``time_varying``, a
    :class:`~.timevarying.TimeVaryingFit`) the likelihood is its symbolic one, the pieces constants
    of the graph (one model per fit)."""
    import pymc as pm

    rep = parametrisation(model_cls, priors)
    with pm.Model() as pymc_model:
        packed = pm.Data(INPUTS, model_inputs(model_cls, data, weights, priors, link))
        values, hyper = _unpack(model_cls, tuple(data), priors, packed, link)
        params = {name: _prior_rv(name, prior, pymc_model, hyper) for name, prior in priors.items()}
        coefficients = {k: params.pop(k) for k in list(params) if _is_coefficient(k)}
        if rep is not None:
            params = {k: params[k] if k in params else pm.Deterministic(k, v)
                      for k, v in rep.to_params(params).items()}
        for joint in _joint_priors(priors):
            pm.Potential("prior_" + "_".join(joint.names), joint.logp(*(params[k] for k in joint.names)))
        if link is not None:
            params.update(link.coefficients([coefficients[k] for k in link.free_names]))
        pm.Potential("log_likelihood", _log_likelihood(model_cls, params, coefficients, data, values, link,
                                                       time_varying))
    return pymc_model


def _log_likelihood(model_cls, params, coefficients, data, values, link, time_varying):
    """:func:`weighted_log_likelihood`, or with time-varying covariates their symbolic likelihood."""
    if time_varying is not None:
        return time_varying.symbolic_log_likelihood(params, coefficients)
    return weighted_log_likelihood(model_cls, params, tuple(data), values, link)


def weighted_log_likelihood(model_cls, params: dict, data_names: tuple[str, ...], values, link=None):
    """``Σ w · log_likelihood`` over the unique rows as a PyTensor scalar, each of the model's
    :func:`~.mle.likelihood_parts` summed over the distinct values of its own columns (BG/NBD's
    frequency-only ``gammaln``/``betaln`` terms once per distinct frequency: on 1M customers a few
    hundred values instead of ~100,000 histories, for every gradient the sampler takes); ``values``
    holds each part's symbolic ``(columns, weights)`` (:func:`_unpack`)."""
    from . import mle

    return mle.weighted_log_likelihood(mle.likelihood_parts(model_cls, tuple(data_names), link), params, values)


def structure_key(model_cls, data_names: tuple[str, ...], priors: dict, link=None) -> tuple | None:
    """What a compiled model depends on besides its inputs: the model class, the data columns (hence
    the likelihood parts), and per parameter its prior's distribution, the names of its numeric
    hyperparameters and any other (hashable) kwargs, or the joint prior it belongs to. ``None``
    (do not cache) when a prior is a ``.dist()`` or a function, which cannot be compared safely."""
    from . import mle

    layout = tuple(cols for cols, _ in mle.likelihood_parts(model_cls, tuple(data_names), link))
    per_param = []
    for name, prior in priors.items():
        if isinstance(prior, BetaConcentrationPrior):
            per_param.append(("joint", prior.names))
        elif isinstance(prior, tuple):
            dist_name, kwargs = prior
            fixed = tuple(sorted((k, v) for k, v in kwargs.items() if not _is_number(v)))
            try:
                hash(fixed)
            except TypeError:
                return None
            per_param.append((name, dist_name, tuple(k for k, v in kwargs.items() if _is_number(v)), fixed))
        else:
            return None
    return (model_cls, tuple(data_names), layout, tuple(per_param), link)


def _joint_priors(priors: dict) -> list[BetaConcentrationPrior]:
    """The distinct joint priors among resolved ``priors``."""
    return list({id(p): p for p in priors.values() if isinstance(p, BetaConcentrationPrior)}.values())


def _log_posterior_functions(model_cls, data_names: tuple[str, ...], pymc_model, priors, link=None,
                             time_varying=None):
    """Compiled ``f(theta) -> (log posterior, gradient)`` and ``g(theta) -> log-likelihood`` of the
    log-parameters ``theta``, reading the data and hyperparameters from ``pymc_model``'s inputs (so
    compiled once per model structure). The log posterior uses the priors' densities on the natural
    scale (no Jacobian), so its maximiser is the usual MAP and, as a function of ``theta``, it has the
    same maximiser (``d/d ln θ = θ d/dθ``)."""
    import pymc as pm
    import pytensor

    free = _free(link, time_varying)
    theta, params = log_parameters(model_cls.param_names, free)
    values, _ = _unpack(model_cls, data_names, priors, pymc_model[INPUTS], link)
    coefficients = {k: params.pop(k) for k in free}
    rep = parametrisation(model_cls, priors)
    sampled = {**(rep.from_params(params) if rep is not None else params), **coefficients}
    if link is not None:
        params.update(link.coefficients([coefficients[k] for k in link.free_names]))
    ll = _log_likelihood(model_cls, params, coefficients, data_names, values, link, time_varying)
    log_prior = sum(pm.logp(pymc_model[k], sampled[k]).sum() for k in priors)
    log_prior += sum(j.logp(*(params[k] for k in j.names)) for j in _joint_priors(priors))
    return (value_and_gradient([theta], ll + log_prior, theta),
            pytensor.function([theta], ll, mode=compile_mode()))


def _free(link, time_varying) -> list[str]:
    """The free coefficients sampled after the parameters: the static covariates', then the time-varying ones."""
    return (list(link.free_names) if link is not None else []) + (list(time_varying.names) if time_varying else [])


def _start_point(pymc_model, values: dict[str, float]) -> dict[str, np.ndarray]:
    """``values`` (natural scale) as a point of the PyMC model's (transformed) value variables."""
    import pytensor.tensor as pt

    start = {}
    for name, value in values.items():
        rv = pymc_model[name]
        value_var = pymc_model.rvs_to_values[rv]
        transform = pymc_model.rvs_to_transforms.get(rv)
        v = pt.as_tensor_variable(np.asarray(value, dtype=float))
        start[value_var.name] = np.asarray((transform.forward(v, *rv.owner.inputs) if transform else v).eval())
    return start


# ---------------------------------------------------------------------------- fitting
def fit_bayes(model, data: dict[str, np.ndarray], w: np.ndarray, *, method: str, priors: dict | None = None,
              draws: int | None = None, tune: int | None = None, chains: int | None = None,
              cores: int | None = None, random_seed: int | None = None, progressbar: bool | None = None,
              nuts_sampler: str | None = None, target_accept: float = 0.8, advi_iterations: int = 30_000,
              time_varying=None, **sampler_kwargs) -> None:
    """Fit ``model`` on unique rows ``data`` with weights ``w`` by MAP, NUTS or ADVI; sets its ``*_``.

    Parameters
    ----------
    model
        The estimator; its constructor settings (``priors``, ``draws``, ``tune``, ``chains``,
        ``random_seed``, ``progressbar``) are the defaults of the keyword arguments here.
    data, w
        Unique data rows and how many customers each stands for (see :func:`~.rows.compress`).
    method
        ``"map"``, ``"nuts"`` or ``"advi"``.
    nuts_sampler
        ``"nutpie"`` or ``"pymc"``; default :func:`default_nuts_sampler`.
    target_accept
        NUTS target acceptance rate (raise to 0.9-0.99 if there are divergences).
    advi_iterations
        Maximum ADVI optimisation steps (it stops earlier once the parameters settle).
    **sampler_kwargs
        Passed on to ``pm.sample`` (NUTS) or ``pm.fit`` (ADVI).

    With time-varying covariates (``time_varying``, a :class:`~.timevarying.TimeVaryingFit`) their
    coefficients are sampled after the static ones, with the same default prior, and their posterior
    means set as ``time_varying_coefficients_``.

    Sets ``params_`` (posterior means; the mode for MAP), ``covariance_`` (of the log-parameters),
    ``posterior_draws_`` (NUTS/ADVI: dict of flat arrays over chains x draws), ``idata_`` (the
    DataTree PyMC returns), ``diagnostics_``, ``converged_``, ``priors_`` (the priors used, as
    given or as resolved specs), ``sampler_`` and ``prior_sensitivity_`` (the posterior against the
    MLE per parameter, :mod:`.prior_sensitivity`, which warns when the prior decides a parameter).
    """
    import pymc as pm

    cls = model.likelihood_structure()
    link = model._covariate_link()
    free = _free(link, time_varying)
    names = list(cls.param_names)
    priors = resolve_priors(cls, model.priors if priors is None else priors, data, w, link,
                            () if time_varying is None else time_varying.names)
    draws, tune, chains = check_sampling(model.draws if draws is None else draws,
                                         model.tune if tune is None else tune,
                                         model.chains if chains is None else chains)
    seed = model.random_seed if random_seed is None else random_seed
    # the sampler's bar: as asked, else on a terminal or in Jupyter (clvmodels.progress)
    progressbar = show_progress(model.progressbar if progressbar is None else progressbar)
    # one compiled model per structure, its inputs set to this fit's data and priors (models/compiled.py)
    # time-varying covariates: the pieces are constants of the graph, so no compile is shared
    key = structure_key(cls, tuple(data), priors, link) if time_varying is None else None
    entry = compiled_model(key, lambda: build_pymc_model(cls, data, w, priors, link, time_varying))
    inputs = {INPUTS: model_inputs(cls, data, w, priors, link)}
    pymc_model = entry.pymc_model
    model.priors_ = {k: (list(v) if isinstance(v, tuple) else repr(v)) for k, v in priors.items()}
    model.posterior_draws_ = None
    model.idata_ = None

    if method == "map":
        if sampler_kwargs:
            raise TypeError(f"Unexpected arguments for method='map': {sorted(sampler_kwargs)}.")
        with entry.using(inputs):
            _fit_map(model, data, w, entry, priors, time_varying)
        check_prior_sensitivity(model, data, w, time_varying)
        return
    if method == "nuts":
        sampler = nuts_sampler or default_nuts_sampler()
        if sampler not in ("pymc", "nutpie"):
            raise ValueError(f"nuts_sampler must be 'pymc' or 'nutpie', got {sampler!r}.")
        if sampler == "nutpie" and not nutpie_available():
            raise ValueError("nuts_sampler='nutpie' needs the nutpie package: pip install 'clvmodels[nutpie]'.")
        cores = int(cores or min(chains, os.cpu_count() or 1))
        kwargs = dict(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                      progressbar=progressbar, model=pymc_model, nuts_sampler=sampler,
                      compute_convergence_checks=False)
        kwargs["nuts"] = {"target_accept": target_accept, **sampler_kwargs.pop("nuts", {})}
        if sampler == "nutpie":
            # a mass matrix that learns the posterior's correlations (Gamma-Gamma's p and gamma are
            # strongly correlated): on CDNOW, ~8x the effective sample size per second
            if "low_rank_modified_mass_matrix" not in kwargs["nuts"]:  # nutpie < 0.16's name of it
                kwargs["nuts"].setdefault("adaptation", "low_rank")
        else:
            kwargs["compile_kwargs"] = sampler_kwargs.pop("compile_kwargs", {"mode": compile_mode()})
        with entry.using(inputs):
            if sampler == "nutpie" and not sampler_kwargs:
                idata = _sample_nutpie(entry, inputs, **kwargs)
            else:  # PyMC's sampler, or options only pm.sample knows: compiled by pm.sample for this fit
                idata = pm.sample(**kwargs, **sampler_kwargs)
        model.sampler_ = sampler
    elif method == "advi":
        from pymc.variational.callbacks import CheckParametersConvergence

        with entry.using(inputs):
            # start at the MAP: ADVI's stochastic optimiser then only has to find the spread
            theta = _map_estimate(model, data, w, entry, priors, time_varying)[0].theta
            rep = parametrisation(cls, priors)
            values = dict(zip(names, np.exp(theta)))
            values = {**(rep.from_params(values) if rep is not None else values), **dict(zip(free, theta[len(names):]))}
            start = _start_point(pymc_model, values)
            callback = CheckParametersConvergence(every=500, tolerance=0.01, diff="absolute")
            approx = pm.fit(n=int(advi_iterations), method="advi", model=pymc_model, random_seed=seed,
                            progressbar=progressbar, callbacks=[callback], start=start, **sampler_kwargs)
            n_steps = len(approx.hist)
            idata = approx.sample(draws * chains, random_seed=seed)
        model.sampler_ = "advi"
        model.advi_steps_ = n_steps
    else:
        raise ValueError(f"Unknown Bayesian method {method!r}.")

    posterior = idata.posterior
    model.idata_ = idata
    flat = {k: np.asarray(posterior[k].values, dtype=float).reshape(-1) for k in names + free}
    model.posterior_draws_ = {k: flat[k] for k in names}
    model.params_ = pd.Series({k: float(v.mean()) for k, v in model.posterior_draws_.items()},
                              name="posterior_mean")[names]
    logs = np.column_stack([np.log(flat[k]) for k in names] + [flat[k] for k in free])
    model.covariance_ = np.atleast_2d(np.cov(logs, rowvar=False))
    if link is not None:   # every coefficient's draws (constrained ones share their free coefficient's)
        model.posterior_draws_.update(link.coefficients([flat[k] for k in link.free_names]))
        model.coefficients_ = pd.Series({k: float(np.mean(v)) for k, v in link.coefficients(
            [flat[k] for k in link.free_names]).items()}, name="posterior_mean")
    if time_varying is not None:
        model.posterior_draws_.update({k: flat[k] for k in time_varying.names})
        model.time_varying_coefficients_ = pd.Series({k: float(np.mean(flat[k])) for k in time_varying.names},
                                                     name="posterior_mean")
    if method == "nuts":
        model.diagnostics_ = nuts_diagnostics(idata, names + free)
        model.converged_ = check_chains(cls.__name__, model.diagnostics_, chains, target_accept)
    else:
        converged = n_steps < int(advi_iterations) or elbo_settled(approx.hist)
        model.diagnostics_ = {"advi_steps": n_steps, "final_elbo": float(-approx.hist[-1])}
        model.converged_ = converged
        if not converged:
            warn_convergence(
                f"{cls.__name__}: ADVI did not settle within {advi_iterations:,} steps; the approximation "
                "may be poor. Pass advi_iterations=<more>, or use method='nuts'.")
    check_prior_sensitivity(model, data, w, time_varying)


def _sample_nutpie(entry, inputs, *, draws, tune, chains, cores, random_seed, progressbar, nuts, **_):
    """``pm.sample(nuts_sampler="nutpie", ...)`` on the compiled model of ``entry`` (compiled once per
    structure, :func:`~.compiled.nutpie_model`): the seed derived from ``random_seed`` and the options
    as PyMC derives them, so the draws are the same as ``pm.sample``'s, which compiles anew each time."""
    import nutpie

    seed = int(np.random.default_rng(random_seed).spawn(chains)[0].integers(2**30))
    nuts = dict(nuts)
    if "max_treedepth" in nuts:
        nuts["maxdepth"] = nuts.pop("max_treedepth")
    return nutpie.sample(nutpie_model(entry, inputs), draws=draws, tune=max(tune, 1), chains=chains, cores=cores,
                         seed=seed, save_warmup=False, progress_bar=bool(progressbar), **nuts)


def _map_estimate(model, data, w, entry, priors, time_varying=None):
    """Maximise the log posterior over the log-parameters (:func:`~.optimize.minimize_log_params`:
    L-BFGS from every start, exact gradient, no Newton polish).

    Returns the :class:`~.optimize.Optimum` of the negative log posterior (whose Hessian is the
    negative Hessian of the log posterior) and the compiled log posterior and log-likelihood.
    """
    log_post, loglik = entry.function(
        "map", lambda: _log_posterior_functions(model.likelihood_structure(), tuple(data), entry.pymc_model, priors,
                                                model._covariate_link(), time_varying))
    free = _free(model._covariate_link(), time_varying)
    starts = starting_points(model, data, w)
    # covariate coefficients are not logged: L-BFGS's first steps on the total log posterior (a
    # gradient of the order of the number of customers) overflow exp(γ·z); the per-customer mean
    # is scaled as the MLE's objective is, and the optimum and Hessian are rescaled below
    scale = 1.0 if not free else float(np.sum(w))
    if free:
        starts = [np.r_[s, np.zeros(len(free))] for s in starts]

    def objective(theta):
        if scale == 1.0:
            return log_post(theta)
        value, grad = log_post(theta)
        return value / scale, np.asarray(grad) / scale
    opt = minimize_log_params(
        Objective(objective, negate=True), starts,
        failure=f"{type(model).__name__}: the log posterior is not finite at any starting point; "
                "check the data and the priors.",
        maxiter=2000, ftol=1e-14, gtol=1e-9 / scale, improvement=1e-10 / scale)
    if scale != 1.0:
        opt.value, opt.gradient, opt.hessian = opt.value * scale, opt.gradient * scale, opt.hessian * scale
    return opt, log_post, loglik


def _fit_map(model, data, w, entry, priors, time_varying=None) -> None:
    cls = type(model)
    names = list(cls.param_names)
    link = model._covariate_link()
    opt, log_post, loglik = _map_estimate(model, data, w, entry, priors, time_varying)
    theta, grad_max = opt.theta, opt.max_abs_gradient
    cov, ok = covariance_from_hessian(opt.hessian)
    at_boundary = boundary_parameters(names, theta[:len(names)])
    model.params_ = pd.Series(np.exp(theta[:len(names)]), index=names, name="map")
    k = len(names)
    n_static = 0 if link is None else link.n_free
    if link is not None:
        model.coefficients_ = pd.Series(link.coefficients(theta[k:k + n_static]), name="map", dtype=float)
    if time_varying is not None:
        model.time_varying_coefficients_ = pd.Series(theta[k + n_static:], index=list(time_varying.names), name="map",
                                                     dtype=float)
    names = names + _free(link, time_varying)
    model.covariance_ = cov
    model.log_likelihood_ = float(loglik(theta))
    model.log_posterior_ = float(log_post(theta)[0])
    model.aic_, model.bic_ = information_criteria(model.log_likelihood_, len(names), float(np.sum(w)))
    model.converged_ = bool(ok and grad_max < MAP_CONVERGED_GRADIENT and not at_boundary)
    model.diagnostics_ = {"max_abs_gradient": grad_max, "hessian_positive_definite": ok, "at_boundary": at_boundary}
    model.sampler_ = "map"
    if at_boundary:
        warn_convergence(
            f"{cls.__name__}: the MAP runs to a boundary ({', '.join(at_boundary)}): the data do not identify "
            "these parameters and the priors are too weak to; use more informative priors or more data.")
    elif not ok:
        warn_convergence(
            f"{cls.__name__}: the log posterior's Hessian at the MAP is not negative definite, so the "
            "Laplace approximation (and intervals) are unavailable; the data barely identify the "
            "parameters. Use method='nuts' or more informative priors.")
    elif not model.converged_:
        warn_convergence(
            f"{cls.__name__}: the MAP optimiser stopped away from the mode (max |gradient| "
            f"{grad_max:.2g}). Try method='nuts', or check the data.")


# ---------------------------------------------------------------------------- diagnostics
def nuts_diagnostics(idata, names) -> dict[str, Any]:
    """Max r_hat, min bulk/tail ESS (ArviZ 1.x, rank-normalised), divergences and tree-depth hits."""
    import arviz as az

    posterior = idata.posterior
    rhat = az.rhat(idata, var_names=names)
    ess_bulk = az.ess(idata, var_names=names, method="bulk")
    ess_tail = az.ess(idata, var_names=names, method="tail")
    stats = idata.sample_stats
    divergences = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    depth_hits = 0
    if "reached_max_treedepth" in stats:
        depth_hits = int(np.asarray(stats["reached_max_treedepth"].values).sum())
    return {
        "r_hat": {k: float(rhat[k].values) for k in names},
        "ess_bulk": {k: float(ess_bulk[k].values) for k in names},
        "ess_tail": {k: float(ess_tail[k].values) for k in names},
        "divergences": divergences,
        "max_treedepth_hits": depth_hits,
        "chains": int(posterior.sizes["chain"]),
        "draws": int(posterior.sizes["draw"]),
    }


def elbo_settled(loss_history, fraction: float = 0.1) -> bool:
    """Whether ADVI's loss (−ELBO) has stopped improving: the mean over the last ``fraction`` of the
    steps is within half a standard deviation (of the noisy loss) of the mean over the ``fraction``
    before."""
    h = np.asarray(loss_history, dtype=float)
    h = h[np.isfinite(h)]
    n = max(int(len(h) * fraction), 50)
    if len(h) < 2 * n:
        return False
    last, previous = h[-n:], h[-2 * n:-n]
    return bool(previous.mean() - last.mean() < 0.5 * last.std())


def check_chains(name: str, diag: dict, chains: int, target_accept: float | None, sampler: str = "NUTS") -> bool:
    """Whether the chains converged (r_hat, bulk and tail ESS, divergences); warns naming what failed."""
    problems = []
    worst_rhat = max(diag["r_hat"].values())
    if not worst_rhat <= RHAT_MAX:
        bad = [k for k, v in diag["r_hat"].items() if not v <= RHAT_MAX]
        problems.append(f"r_hat up to {worst_rhat:.3f} > {RHAT_MAX} ({', '.join(bad)}): the chains disagree; "
                        "run more tune/draws or check for multiple modes")
    ess_min = ESS_PER_CHAIN_MIN * chains
    low = {k: min(diag["ess_bulk"][k], diag["ess_tail"][k]) for k in diag["ess_bulk"]}
    if min(low.values()) < ess_min:
        bad = [k for k, v in low.items() if v < ess_min]
        problems.append(f"effective sample size as low as {min(low.values()):.0f} (< {ess_min}) for "
                        f"{', '.join(bad)}: increase draws")
    if diag["divergences"]:
        problems.append(f"{diag['divergences']} divergent transitions: the posterior is hard to explore; "
                        f"raise target_accept (now {target_accept}) toward 0.95, or use tighter priors")
    if problems:
        warn_convergence(f"{name}: {sampler} sampling problems: " + "; ".join(problems)
                         + ". Do not trust these estimates or intervals before fixing this.")
    return not problems


# ---------------------------------------------------------------------------- summary
def bayes_summary(model, level: float = 0.95) -> pd.DataFrame:
    """Posterior mean, sd, highest-density interval at ``level``, and for NUTS r_hat and bulk/tail ESS.

    ``attrs`` hold the method, sampler, divergences, convergence flag and number of customers.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    import arviz as az

    names = list(type(model).param_names)
    draws = model.posterior_draws_
    link = model._covariate_link()
    free = [] if link is None else list(link.free_names)
    lo, hi = f"hdi_lower_{level:.0%}", f"hdi_upper_{level:.0%}"
    rows = {}
    for k in names:
        v = np.asarray(draws[k], dtype=float)
        lower, upper = np.asarray(az.hdi(v, prob=level), dtype=float)
        rows[k] = {"mean": v.mean(), "sd": v.std(ddof=1), lo: lower, hi: upper}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "parameter"
    diag = getattr(model, "diagnostics_", {}) or {}
    if link is not None:   # the coefficients (standardised scale), each with its free coefficient's diagnostics
        free_of = {n: free[i] for n, i in zip(link.coefficient_names, link.free)}
        for k in link.coefficient_names:
            v = np.asarray(draws[k], dtype=float)
            lower, upper = np.asarray(az.hdi(v, prob=level), dtype=float)
            table.loc[k] = pd.Series({"mean": v.mean(), "sd": v.std(ddof=1), lo: lower, hi: upper})
        design = CovariateDesign.from_dict(model.covariates_)
        coefficients = list(link.coefficient_names)
        for column in ("mean", "sd", lo, hi):      # per unit of the user's column
            table[f"user_{column}"] = np.nan
            table.loc[coefficients, f"user_{column}"] = user_scale(design, coefficients,
                                                                   table.loc[coefficients, column].to_numpy())
    varying = getattr(model, "time_varying_coefficients_", None)
    if varying is not None:   # time-varying coefficients (standardised scale, and per unit of the user's column)
        from .timevarying import design_of

        for k in varying.index:
            v = np.asarray(draws[k], dtype=float)
            lower, upper = np.asarray(az.hdi(v, prob=level), dtype=float)
            table.loc[k] = pd.Series({"mean": v.mean(), "sd": v.std(ddof=1), lo: lower, hi: upper})
        user = {c: design_of(model).user_scale(table.loc[list(varying.index), c].to_numpy()) for c in ("mean", "sd", lo, hi)}
        for column, values in user.items():
            if f"user_{column}" not in table:
                table[f"user_{column}"] = np.nan
            table.loc[list(varying.index), f"user_{column}"] = values
    if "r_hat" in diag:
        free_of = {**(free_of if link is not None else {}), **({k: k for k in varying.index} if varying is not None else {})}
        for col in ("r_hat", "ess_bulk", "ess_tail"):
            table[col] = [diag[col][k if k in names else free_of[k]] for k in table.index]
    table.attrs.update(method=model.method_ if hasattr(model, "method_") else None,
                       sampler=getattr(model, "sampler_", None), converged=model.converged_,
                       divergences=diag.get("divergences"), n_customers=getattr(model, "n_customers_", None),
                       n_draws=len(next(iter(draws.values()))))
    return with_prior_sensitivity(model, table)


__all__ = ["Reparametrisation", "build_pymc_model", "bayes_summary", "check_chains", "default_nuts_sampler", "fit_bayes",
           "nuts_diagnostics", "nutpie_available", "parametrisation", "resolve_priors"]
