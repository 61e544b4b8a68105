"""The estimator contract shared by every CLV model.

A model class declares its parameters (:attr:`CLVModel.param_names`), the columns it reads
(:attr:`CLVModel.data_columns`) and its per-customer log-likelihood, written once as an expression
against an array namespace (:meth:`CLVModel.log_likelihood`, :mod:`clvmodels.models.namespaces`).
From that single expression:

* the maximum-likelihood fit (:mod:`clvmodels.models.mle`) evaluates the weighted sum and its exact
  gradient with respect to the log-parameters with dual numbers (nothing compiled, PyTensor not
  imported), and the Hessian from that gradient;
* the Bayesian fits (:mod:`clvmodels.models.bayes`: MAP, NUTS, ADVI) add priors and hand the same
  expression, built with PyTensor, to PyMC as a potential.

Each kind of model declares the rest of its formulas in an abstract base of its own, the one
contract that predictions, CLV, backtests, scoring, the CLI and Spark consume:
:class:`~clvmodels.models.purchase.PurchaseModel` (continuous-time and discrete-opportunity
purchase models), :class:`~clvmodels.models.spend.SpendModel` and
:class:`~clvmodels.models.contractual.ContractualModel`. A class that leaves a formula of its kind
undefined cannot be instantiated.

Predictions are numpy functions of a parameter dict whose values broadcast: a point estimate is a
single draw, a posterior is a stack of draws (:mod:`clvmodels.models.draws`), and
:meth:`CLVModel._predict` turns either into per-customer point values or intervals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from ..errors import ClvDataError, ModelKindError, NotFittedError, renamed_argument
from ..validation import validate_columns  # the one definition (see clvmodels.validation)
from .draws import EXPECTED, interval_frame, is_bayesian, parameter_draws, summarise_draws
from .covariates import KEY_PREFIX, CovariateDesign, CovariateLink, per_profile, resolve_constraints, user_scale
from .namespaces import NUMPY
from .persistence import save_model
from .registry import add_package_class
from .rows import compress, data_fingerprint
from .settings import check_penalizer


class CLVModel(ABC):
    """Base class: scikit-learn style estimator contract plus the shared fitting/prediction plumbing.

    Subclasses set :attr:`param_names`, :attr:`data_columns`, :attr:`display_name` and define
    :meth:`log_likelihood`; they may refine :meth:`_data_arrays` (model-specific checks of the data)
    and :meth:`initial_params`.
    """

    #: Short name in tables and reports (e.g. ``"BG/NBD"``).
    display_name: ClassVar[str] = ""
    #: Names that select the model on the command line (``clvmodels fit --model bgnbd+gg``).
    short_names: ClassVar[tuple[str, ...]] = ()
    #: What the model's kind is called in messages (set by each kind's abstract base).
    kind_name: ClassVar[str] = "CLV model"

    #: Names of the population parameters, in the order of the optimiser's vector.
    param_names: ClassVar[tuple[str, ...]] = ()
    #: Columns of the RFM frame the model reads.
    data_columns: ClassVar[tuple[str, ...]] = ()
    #: Columns the fit reads beyond :attr:`data_columns` (CNBD-k's ``litt``); predictions do not.
    fit_columns: ClassVar[tuple[str, ...]] = ()
    #: Default priors of the Bayesian fits: ``{param: ("Distribution", {kwargs})}``.
    default_priors: ClassVar[dict[str, tuple[str, dict[str, float]]]] = {}
    #: Pairs of beta-mixing shapes given a joint prior by default (see :mod:`.bayes`).
    joint_priors: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Optionally, other quantities the Bayesian fits sample, with their priors, and how they map to
    #: and from :attr:`param_names` (a :class:`~clvmodels.models.bayes.Reparametrisation`).
    bayes_parametrisation: ClassVar[Any] = None
    #: Optionally, ``log_likelihood`` as a sum of parts ``((columns, fn), ...)``, each ``fn(params,
    #: data, xp)`` summed over the distinct values of its own columns (see
    #: :func:`clvmodels.models.mle.likelihood_parts`).
    log_likelihood_parts: ClassVar[tuple | None] = None
    #: Covariates: per process (the constructor's ``<process>_covariates``), the parameters it scales
    #: and the sign of the log-linear link ``θ_i = θ exp(sign γ·z_i)`` (:mod:`.covariates`).
    covariate_links: ClassVar[dict[str, tuple[tuple[str, float], ...]]] = {}
    #: In words, what ``exp(coefficient)`` of each linked parameter multiplies (reports); a parameter
    #: not listed is described by its name.
    covariate_effects: ClassVar[dict[str, str]] = {}
    #: Open lower bounds of parameters beyond positivity where the predictions exist (Gamma-Gamma's
    #: ``q > 1``: the expected spend): draws from a maximum-likelihood fit's asymptotic normal are
    #: restricted to them (:func:`~clvmodels.models.draws.parameter_draws`).
    draw_bounds: ClassVar[dict[str, float]] = {}
    #: Fit methods understood by :meth:`fit`.
    methods: ClassVar[tuple[str, ...]] = ("mle", "map", "nuts", "advi")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        add_package_class(cls)  # loadable by name from a saved model file

    def __init__(self, *, method: str = "mle", penalizer: float = 0.0, priors: dict | None = None,
                 draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int | None = None,
                 progressbar: bool | None = None, random_seed: int | None = None, covariate_constraints=None,
                 covariate_penalty: float = 0.0, one_hot=False):
        self.method = method
        self.penalizer = penalizer
        self.priors = priors
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.seed = seed
        self.progressbar = progressbar
        self.random_seed = random_seed  # deprecated name of seed (warns at fit)
        self.covariate_constraints = covariate_constraints
        self.covariate_penalty = covariate_penalty
        self.one_hot = one_hot

    # ------------------------------------------------------------------ scikit-learn contract
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's keyword parameters, following ``**kwargs`` up the classes' ``__init__``s
        (a kind adds its covariate processes and passes the rest on)."""
        import inspect

        names = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            names += [p.name for p in params if p.name != "self" and p.name not in names
                      and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return names

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "CLVModel":
        """Set constructor parameters (scikit-learn convention); returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}; valid: {valid}.")
            setattr(self, key, value)
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "params_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit(rfm) first.")

    # ------------------------------------------------------------------ the model's mathematics
    @staticmethod
    @abstractmethod
    def log_likelihood(params: dict, data: dict, xp):
        """Per-customer log-likelihood of the parameters (a dict) and the data (a dict of the
        :attr:`data_columns`), written with the operations of the namespace ``xp``
        (:mod:`clvmodels.models.namespaces`: numpy values, dual numbers for the MLE, PyTensor for the
        Bayesian fits); every model class defines its own (e.g.
        :func:`clvmodels.models.bgnbd.log_likelihood`)."""

    def likelihood_structure(self) -> type:
        """The class whose :attr:`param_names`, :meth:`log_likelihood` (and its parts) and priors a fit
        evaluates: the model's own class, or for a model with a structural setting that shapes the
        likelihood (CNBD-k's Erlang order ``k``) a class fixing it (one compiled Bayesian model each)."""
        return type(self)

    def structure_copy(self) -> "CLVModel":
        """An unfitted model with the same settings and :meth:`likelihood_structure`."""
        return type(self)(**self.get_params())

    def structure_parameters(self) -> dict[str, float]:
        """Fixed settings the formulas read beside the fitted parameters (CNBD-k's ``k``), added to
        every set of parameter draws (:func:`~clvmodels.models.draws.parameter_draws`); none by default."""
        return {}

    def _fit_arrays(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        """The columns the likelihood reads: :meth:`_data_arrays` and the :attr:`fit_columns`."""
        data = self._data_arrays(rfm)
        return {**data, **validate_columns(rfm, self.fit_columns)} if self.fit_columns else data

    def initial_params(self, data: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        """Starting values of the optimiser (natural scale); subclasses may give better ones."""
        return np.ones(len(self.param_names))

    def _data_arrays(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        """Validated float arrays of :attr:`data_columns` (subclasses may add checks)."""
        return validate_columns(rfm, self.data_columns)

    @classmethod
    def require_formula(cls, name: str, what: str) -> Callable:
        """The optional formula ``name`` of the model's kind (e.g. ``"purchase_pmf_formula"``), or a
        :class:`~clvmodels.errors.ModelKindError` saying that ``what`` needs it."""
        formula = getattr(cls, name)
        if formula is None:
            raise ModelKindError(f"{what} needs the model's {name.removesuffix('_formula')} formula, which "
                                 f"{cls.__name__} does not provide.")
        return formula

    # ------------------------------------------------------------------ fitting
    def fit(self, rfm: pd.DataFrame, *, method: str | None = None, weights=None, time_varying=None,
            **kwargs) -> "CLVModel":
        """Fit the model to an RFM summary; returns ``self``.

        Parameters
        ----------
        rfm
            Frame with the model's :attr:`data_columns` (as made by :func:`clvmodels.rfm_summary`).
        method
            ``"mle"`` (maximum likelihood), ``"map"``, ``"nuts"`` or ``"advi"``; defaults to the
            constructor's ``method``.
        weights
            Optional number of customers each row stands for (e.g. a pre-aggregated table).
        time_varying
            With time-varying covariates (the constructor's ``<process>_time_varying``): the
            :class:`~clvmodels.exposure.TimeVaryingSummary` of ``rfm``'s customers (same rows, same
            order); see :mod:`.timevarying`. Sets ``time_varying_`` (the design) and
            ``time_varying_coefficients_``.
        **kwargs
            Passed to the fitting routine (e.g. ``draws``, ``chains`` for NUTS).

        With covariates (the constructor's ``<process>_covariates``: columns of ``rfm``; see
        :mod:`.covariates`) the fit also sets ``covariates_`` (the design: columns, levels, dropped
        levels, means and scales, constraints), ``coefficients_`` (standardised scale; ``summary()``
        gives them on the user's scale too) and ``n_free_parameters_``; ``covariance_`` then covers the
        log-parameters and the free coefficients.
        """
        method = (method or self.method).lower()
        if method not in self.methods:
            raise ValueError(f"Unknown fit method {method!r}; choose one of {self.methods}.")
        check_penalizer(self.penalizer)
        data = self._fit_arrays(rfm)
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            if weights.shape != (len(rfm),) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ClvDataError("weights must be one finite, non-negative number per row.")
        design = self._learn_covariates(rfm, weights)
        if design is not None:
            data.update(design.transform(rfm))
        from .timevarying import fit_setup, processes_of

        varying = processes_of(self, time_varying)
        self._reset_fit()
        if design is not None:
            self.covariates_ = design.to_dict()
        tv = None
        if varying:       # rows alike in their history and their covariate path too (fit_setup merges them)
            tv = fit_setup(self, varying, time_varying, data, np.ones(len(rfm)) if weights is None else weights)
            unique, w = tv.data, tv.w
        else:
            unique, w = compress(data, weights)
        if method == "mle":
            from .mle import fit_mle

            fit_mle(self, unique, w, link=self._covariate_link(), time_varying=tv, **kwargs)
        else:
            from .bayes import fit_bayes
            from .environment import quiet_pymc

            kwargs.setdefault("random_seed", renamed_argument(type(self).__name__, "seed", self.seed,
                                                              "random_seed", self.random_seed))
            if tv is not None:
                kwargs["time_varying"] = tv
            with quiet_pymc():
                fit_bayes(self, unique, w, method=method, **kwargs)
        self.method_ = method
        self.n_customers_ = int(round(w.sum()))
        self.n_unique_ = len(w)
        self.time_unit_ = rfm.attrs.get("time_unit") if hasattr(rfm, "attrs") else None
        self.fingerprint_ = data_fingerprint(unique, w)
        self.rfm_ = rfm
        if varying:
            self.time_varying_summary_ = time_varying
        return self

    # ------------------------------------------------------------------ covariates
    def covariate_processes(self) -> dict[str, list[str]]:
        """``{process: [columns]}`` of the covariates named in the constructor (``<process>_covariates``)."""
        out = {}
        given = [k.removesuffix("_covariates") for k in self._get_param_names() if k.endswith("_covariates")
                 and getattr(self, k, None)]
        unlinked = [p for p in given if p not in self.covariate_links]
        if unlinked:
            raise ClvDataError(f"{type(self).__name__} does not link covariates to its {unlinked} process(es) yet "
                               f"(covariate_links: {sorted(self.covariate_links) or 'none'}); leave "
                               f"{[p + '_covariates' for p in unlinked]} out.")
        for process in self.covariate_links:
            columns = getattr(self, f"{process}_covariates", None)
            if columns is None:
                continue
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise ClvDataError(f"{process}_covariates must be a list of column names, got {columns!r:.80}.")
            if columns:
                out[process] = list(columns)
        return out

    def covariate_sources(self) -> list[str]:
        """The customer-table columns of the covariates named in the constructor (each once, in order)."""
        return list(dict.fromkeys(c for cols in self.covariate_processes().values() for c in cols))

    def _learn_covariates(self, rfm: pd.DataFrame, weights: np.ndarray | None = None) -> CovariateDesign | None:
        """The covariate design of the training table (None without covariates), constraints resolved."""
        processes = self.covariate_processes()
        if not processes:
            return None
        penalty = self.covariate_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not np.isfinite(penalty) or penalty < 0:
            raise ClvDataError(f"covariate_penalty must be a finite number >= 0, got {penalty!r:.80}.")
        design = CovariateDesign.learn(rfm, processes, one_hot=self.one_hot, weights=weights)
        names = CovariateLink.build(self.covariate_links, design).coefficient_names
        return design.with_constraints(resolve_constraints(self.covariate_constraints, names, design))

    def _covariate_link(self) -> CovariateLink | None:
        """The link of the fitted covariates (None for a model without covariates)."""
        design = getattr(self, "covariates_", None)
        if design is None:
            return None
        return CovariateLink.build(self.covariate_links, CovariateDesign.from_dict(design))

    @property
    def has_covariates(self) -> bool:
        """Whether the fitted model has covariates."""
        return getattr(self, "covariates_", None) is not None

    def covariate_data(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        """The standardised covariate columns (``z:<name>``) of the customers of ``rfm``, transformed as
        at fit (empty without covariates). A missing column is an error, never a zero."""
        if not self.has_covariates:
            return {}
        return CovariateDesign.from_dict(self.covariates_).transform(rfm)

    def formula(self, name: str) -> Callable | None:
        """The class's formula ``name`` (e.g. ``"expected_purchases_formula"``); with covariates, at each
        customer's parameters (:func:`linked`: the data then include :meth:`covariate_data`)."""
        fn = getattr(type(self), name)
        link = self._covariate_link()
        return fn if fn is None or link is None else linked(fn, link)

    def _covariate_grid(self, grid: pd.DataFrame, covariates) -> pd.DataFrame:
        """A prediction grid that needs no customer history (new customers, a cohort's survival) with
        the covariates of the customers it is for: one profile (a dict, Series or one-row frame) for
        every row of ``grid``, one row of ``grid`` for each row of a frame of ``covariates``, or a
        frame of as many profiles as ``grid`` has rows (row ``i`` of each paired).
        A model with covariates needs them; one without refuses them."""
        if not (self.is_fitted and self.has_covariates):
            if covariates is not None:
                raise ClvDataError(f"This {type(self).__name__} has no covariates: leave covariates= out.")
            return grid
        if covariates is None:
            raise ClvDataError(f"This {type(self).__name__} has covariates: pass the covariates of the customers to "
                               "predict for (covariates=a dict or a frame with the covariate columns).")
        profiles = pd.DataFrame([covariates]) if isinstance(covariates, (dict, pd.Series)) else covariates
        if len(profiles) == 1:
            return grid.assign(**{c: profiles[c].iloc[0] for c in profiles.columns})
        if len(grid) == 1:
            return profiles.assign(**{c: grid[c].iloc[0] for c in grid.columns})
        if len(profiles) == len(grid):
            return grid.assign(**{c: profiles[c].to_numpy() for c in profiles.columns})
        raise ClvDataError(f"Pass one covariate profile for several values ({len(grid)}), several profiles "
                           f"({len(profiles)}) for one value, or one profile per value.")

    def _with_covariates(self, fn: Callable, data: dict, rfm: pd.DataFrame) -> Callable:
        """``fn`` at each customer's parameters, and ``data`` extended with the covariates of ``rfm``
        (a model without covariates: ``fn`` itself)."""
        link = self._covariate_link()
        if link is None:
            return fn
        data.update(self.covariate_data(rfm))
        return linked(fn, link)

    def _reset_fit(self) -> None:
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)

    # ------------------------------------------------------------------ parameters and draws
    def parameter_draws(self, n_draws: int | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        """Parameter values as arrays of shape ``(n_draws,)``: the posterior draws of a Bayesian fit
        (all, or ``n_draws`` of them), the point estimate of an MLE (``n_draws`` None) or draws from
        its asymptotic normal (see :func:`clvmodels.models.draws.parameter_draws`)."""
        return parameter_draws(self, n_draws, seed)

    # ------------------------------------------------------------------ predictions
    def _rfm_or_fitted(self, rfm):
        self._check_fitted()
        if rfm is None and not hasattr(self, "rfm_"):
            raise ClvDataError(
                f"This {type(self).__name__} has no training data (it was loaded from a file, which "
                "does not store the training frame): pass the customers to score, e.g. rfm=..."
            )
        return self.rfm_ if rfm is None else rfm

    def _predict(
        self,
        fn: Callable[..., np.ndarray],
        rfm: pd.DataFrame | None,
        *,
        name: str,
        columns: tuple[str, ...] | None = None,
        interval: float | None = None,
        n_draws: int | None = None,
        seed: int | None = None,
        compress_rows: bool = True,
        **fn_kwargs,
    ) -> pd.Series | pd.DataFrame:
        """Evaluate ``fn(params, **data, **fn_kwargs)`` per customer and summarise over draws.

        Without ``interval``: a Series of point values (the value at the estimate for MLE; the
        posterior mean for Bayesian fits). With ``interval`` (e.g. 0.9): a frame with ``mean``,
        ``median``, ``lower`` and ``upper`` per customer, over parameter draws: the uncertainty of
        the expected value (``attrs``: ``interval`` and ``uncertainty``; see
        :func:`~clvmodels.models.draws.interval_frame`).
        ``compress_rows``: see :func:`summarise_draws`. A model with time-varying covariates refuses:
        its forecasts go along the covariate paths (:mod:`.timevarying`), not through the static formulas.
        """
        if getattr(self, "time_varying_", None) is not None:
            raise ClvDataError(f"{name} is not available along a covariate path: this {type(self).__name__} has "
                               "time-varying covariates (expected_purchases, probability_alive, clv and "
                               "predictive_purchases take time_varying= and future=).")
        rfm = self._rfm_or_fitted(rfm)
        data = self._data_arrays(rfm) if columns is None else validate_columns(rfm, columns)
        fn = self._with_covariates(fn, data, rfm)
        if is_bayesian(self):
            draws = self.parameter_draws(n_draws, seed=seed)
        elif interval is None:
            draws = self.parameter_draws()
        else:
            draws = self.parameter_draws(n_draws or 1000, seed=seed)
        values = summarise_draws(fn, draws, data, interval=interval, compress_rows=compress_rows, **fn_kwargs)
        index = rfm.index
        if interval is None:
            return pd.Series(values["mean"], index=index, name=name)
        return interval_frame(values, index, interval, EXPECTED)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Parameter table: estimates with standard errors and intervals (MLE), or posterior
        means, sd, HDIs, r_hat and ESS (Bayesian fits). Fit statistics are in ``attrs``."""
        self._check_fitted()
        if is_bayesian(self):
            from .bayes import bayes_summary

            return bayes_summary(self, level)
        from .mle import mle_summary

        from .prior_sensitivity import with_prior_sensitivity

        table = mle_summary(self, level)
        link = self._covariate_link()
        if link is not None:
            table = pd.concat([table, self._coefficient_table(link, level)])
            table.attrs["dropped_levels"] = dict(self.covariates_["dropped"])
        if getattr(self, "time_varying_", None) is not None:
            from .timevarying import coefficient_table

            table = pd.concat([table, coefficient_table(self, level)])
        table.attrs.update(log_likelihood=self.log_likelihood_, aic=self.aic_, bic=self.bic_,
                           converged=self.converged_, n_customers=self.n_customers_)
        return with_prior_sensitivity(self, table)   # a MAP fit's

    def _coefficient_table(self, link: CovariateLink, level: float) -> pd.DataFrame:
        """Rows of the covariate coefficients: estimate, SE and normal interval on the standardised
        scale, and the same per unit of the user's column (``user_*``)."""
        from scipy import stats

        k = len(self.param_names)
        cov = self.covariance_
        free_se = np.sqrt(np.diag(cov)[k:]) if np.all(np.isfinite(cov)) else np.full(link.n_free, np.nan)
        se = np.array([free_se[i] for i in link.free])
        est = self.coefficients_[list(link.coefficient_names)].to_numpy()
        z = stats.norm.ppf(0.5 + level / 2)
        lo, hi = f"lower_{level:.0%}", f"upper_{level:.0%}"
        design = CovariateDesign.from_dict(self.covariates_)
        names = list(link.coefficient_names)
        table = pd.DataFrame({"estimate": est, "se": se, lo: est - z * se, hi: est + z * se},
                             index=pd.Index(names, name="parameter"))
        for column in ("estimate", "se", lo, hi):
            table[f"user_{column}"] = user_scale(design, names, table[column].to_numpy())
        return table

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Save the model to the directory ``path`` (JSON + netCDF, no pickle; written atomically).

        Load it with :func:`clvmodels.load_model`; see :mod:`clvmodels.models.persistence`.
        """
        save_model(self, path)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        name = type(self).__name__
        if not self.is_fitted:
            return f"{name}(method={self.method!r}, unfitted)"
        ps = ", ".join(f"{k}={self.params_[k]:.4g}" for k in self.param_names)
        return f"{name}({ps}; {self.method_} on {self.n_customers_:,} customers)"

    def _repr_html_(self) -> str:
        if not self.is_fitted:
            return f"<p>{type(self).__name__} (unfitted)</p>"
        return f"<p><b>{repr(self)}</b></p>" + self.summary().to_html(float_format=lambda v: f"{v:.4g}")


# ---------------------------------------------------------------------------- helpers
def linked(fn: Callable, link: CovariateLink) -> Callable:
    """``fn(params, **data)`` evaluated at the per-customer parameters of ``link`` (the covariate
    columns ``z:...`` of ``data`` are consumed by the link): once per distinct covariate profile, at
    the parameters its customers share (:func:`~clvmodels.models.covariates.per_profile`), or at every
    customer's own parameters where ``fn`` draws random numbers (an ``rng``: a simulation draws them
    customer after customer, which a regrouping by profile would reorder) or takes data by position."""
    import functools

    @functools.wraps(fn)
    def at_customer_parameters(params, *args, **data):
        z = {k: data.pop(k) for k in list(data) if k.startswith(KEY_PREFIX)}
        if "rng" not in data and not args:
            return per_profile(fn, link, params, z, data)
        return fn(link.individual(params, z, NUMPY), *args, **data)

    return at_customer_parameters


def check_kind(model, kind: type, what: str) -> None:
    """Refuse a model of the wrong kind (e.g. a spend model where a purchase model is needed),
    naming the protocol it must follow."""
    if not isinstance(model, kind):
        summary = (kind.__doc__ or "").strip().splitlines()[0].rstrip(".")
        raise ModelKindError(f"{what}: {type(model).__name__} is not a {kind.kind_name} ({summary}); it must "
                             f"subclass {kind.__module__}.{kind.__name__}.")


def check_t(t) -> None:
    """A prediction horizon (scalar or array) must be finite and non-negative."""
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ClvDataError(f"t must be finite and non-negative, got {t}.")


def check_n(n) -> None:
    """A purchase count must be a non-negative integer."""
    if int(n) != n or n < 0:
        raise ClvDataError(f"n must be a non-negative integer, got {n!r}.")
