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
    #: Fit methods understood by :meth:`fit`.
    methods: ClassVar[tuple[str, ...]] = ("mle", "map", "nuts", "advi")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        add_package_class(cls)  # loadable by name from a saved model file

    def __init__(self, *, method: str = "mle", penalizer: float = 0.0, priors: dict | None = None,
                 draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int | None = None,
                 progressbar: bool = True, random_seed: int | None = None):
        self.method = method
        self.penalizer = penalizer
        self.priors = priors
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.seed = seed
        self.progressbar = progressbar
        self.random_seed = random_seed  # deprecated name of seed (warns at fit)

    # ------------------------------------------------------------------ scikit-learn contract
    @classmethod
    def _get_param_names(cls) -> list[str]:
        import inspect

        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

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
    def fit(self, rfm: pd.DataFrame, *, method: str | None = None, weights=None, **kwargs) -> "CLVModel":
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
        **kwargs
            Passed to the fitting routine (e.g. ``draws``, ``chains`` for NUTS).
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
        unique, w = compress(data, weights)
        self._reset_fit()
        if method == "mle":
            from .mle import fit_mle

            fit_mle(self, unique, w, **kwargs)
        else:
            from .bayes import fit_bayes

            kwargs.setdefault("random_seed", renamed_argument(type(self).__name__, "seed", self.seed,
                                                              "random_seed", self.random_seed))
            fit_bayes(self, unique, w, method=method, **kwargs)
        self.method_ = method
        self.n_customers_ = int(round(w.sum()))
        self.n_unique_ = len(w)
        self.time_unit_ = rfm.attrs.get("time_unit") if hasattr(rfm, "attrs") else None
        self.fingerprint_ = data_fingerprint(unique, w)
        self.rfm_ = rfm
        return self

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
        ``compress_rows``: see :func:`summarise_draws`.
        """
        rfm = self._rfm_or_fitted(rfm)
        data = self._data_arrays(rfm) if columns is None else validate_columns(rfm, columns)
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
        table.attrs.update(log_likelihood=self.log_likelihood_, aic=self.aic_, bic=self.bic_,
                           converged=self.converged_, n_customers=self.n_customers_)
        return with_prior_sensitivity(self, table)   # a MAP fit's

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
