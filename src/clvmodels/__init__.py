"""clvmodels: probabilistic, predictive customer lifetime value.

From a transaction log to per-customer expected purchases, P(alive), expected spend and discounted
CLV, each with uncertainty::

    import clvmodels as clv
    log = clv.load_transactions("transactions.csv", customer_id="id", timestamp="date", amount="value")
    rfm = clv.rfm_summary(log, time_unit="W")
    bgnbd = clv.BetaGeoModel().fit(rfm)
    gg = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
    clv.clv(bgnbd, gg, rfm, horizon=12, period="M", discount_rate=0.01, interval=0.9)   # predictive
    clv.total_value(bgnbd, gg, rfm, segments=None, interval=0.9)        # the whole base's total
"""

from __future__ import annotations

import importlib
import sys
import types

#: Where each public name lives. ``import clvmodels`` (and ``clvmodels --help``) loads none of these
#: modules (nor pandas, scipy, matplotlib, scikit-learn, PyMC): a name's module is imported when the
#: name is first used (PEP 562), so a start costs what the modules used cost
#: (``benchmarks/bench_import.py``).
_EXPORTS = {
    "._version": ["__version__"],  # importlib.metadata scans the installed packages: ~0.1-0.3 s
    ".clv": ["clv", "predictive_clv", "simulate_clv", "total_value", "value_forecast"],
    ".data": ["load_transactions"],
    ".errors": ["AssumptionWarning", "ClvDataError", "ConvergenceWarning", "ModelFileError", "ModelKindError",
                "NotFittedError", "PriorSensitivityWarning"],
    ".models": ["BetaGeoModel", "CLVModel", "GammaGammaModel", "BetaGeoBetaBinomModel", "ContinuousPurchaseModel",
                "ContractualModel", "DiscretePurchaseModel", "GGompertzNBDModel", "ModifiedBetaGeoModel", "ParetoNBDModel",
                "BetaGeoCNBDModel", "ModifiedBetaGeoCNBDModel", "ParetoGGGModel",
                "PurchaseModel", "ShiftedBetaGeoModel", "SpendModel", "lr_test", "survivor_table"],
    ".models.persistence": ["load_model", "load_models", "save_models"],
    ".rfm": ["bgbb_summary", "calibration_holdout", "rfm_summary"],
    ".timevarying": ["covariate_calendar", "covariate_panel", "fourier_terms", "holiday_windows", "seasonal_dummies",
                     "timevarying_holdout", "timevarying_summary", "timevarying_summary_duckdb"],
    ".backtest": ["BacktestResult", "backtest", "discrete_backtest"],
    ".retention": ["RetentionBacktestResult", "retention_backtest"],
    ".baselines": ["GradientBoostingBaseline", "NoChangeBaseline", "RFMScoreBaseline"],
    ".plotting": ["plot_calibration", "plot_conditional_expectations", "plot_frequency_recency_matrix", "plot_lift",
                  "plot_probability_alive_matrix", "plot_survivors", "plot_totals", "plot_tracking",
                  "plot_clv_distribution", "plot_history_alive", "plot_period_transactions", "plot_regularity"],
    ".report": ["compare_report"],
    ".clv_report": ["clv_report"],
    ".regularity": ["estimate_regularity"],
    ".datasets.simulate": ["simulate_pareto_ggg"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'clvmodels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


class _Package(types.ModuleType):
    """``clvmodels`` itself. Importing a submodule binds it to the package's attribute of its name;
    for ``clv`` and ``backtest``, functions of the same name as their modules, the function is the
    attribute (as an eager ``from .clv import clv`` made it), found by :func:`__getattr__`."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _MODULE_OF.get(name) == f".{name}":
            return  # the submodule clvmodels.clv or clvmodels.backtest: the function keeps the name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "AssumptionWarning", "BetaGeoModel", "CLVModel", "ClvDataError", "ConvergenceWarning",
    "GammaGammaModel", "ModelFileError", "ModelKindError", "NotFittedError", "__version__", "calibration_holdout", "clv",
    "load_transactions", "predictive_clv", "simulate_clv", "total_value", "rfm_summary",
    "load_model", "load_models", "save_models",
]
__all__ += ["BetaGeoBetaBinomModel", "ContinuousPurchaseModel", "ContractualModel", "DiscretePurchaseModel",
            "ModifiedBetaGeoModel", "ParetoNBDModel", "PurchaseModel", "ShiftedBetaGeoModel", "SpendModel",
            "bgbb_summary", "survivor_table"]
__all__ += ["PriorSensitivityWarning", "lr_test"]
__all__ += ["BetaGeoCNBDModel", "ModifiedBetaGeoCNBDModel", "estimate_regularity", "plot_regularity"]
__all__ += ["BacktestResult", "GradientBoostingBaseline", "NoChangeBaseline", "RFMScoreBaseline", "backtest",
            "discrete_backtest", "RetentionBacktestResult", "retention_backtest", "compare_report", "plot_calibration",
            "plot_conditional_expectations", "plot_frequency_recency_matrix", "plot_lift", "plot_probability_alive_matrix",
            "plot_survivors", "plot_totals", "plot_tracking"]
__all__ += ["GGompertzNBDModel", "clv_report", "value_forecast", "plot_clv_distribution", "plot_history_alive",
            "plot_period_transactions"]
__all__ += ["covariate_calendar", "covariate_panel", "fourier_terms", "holiday_windows", "seasonal_dummies",
            "timevarying_holdout", "timevarying_summary", "timevarying_summary_duckdb"]
__all__ += ["ParetoGGGModel", "simulate_pareto_ggg"]
