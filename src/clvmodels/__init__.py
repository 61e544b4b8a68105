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

from ._version import __version__
from .clv import clv, predictive_clv, simulate_clv, total_value
from .data import load_transactions
from .errors import (AssumptionWarning, ClvDataError, ConvergenceWarning, ModelFileError, ModelKindError,
                     NotFittedError, PriorSensitivityWarning)
from .models import BetaGeoModel, CLVModel, GammaGammaModel
from .models import BetaGeoCNBDModel, ModifiedBetaGeoCNBDModel
from .models import (BetaGeoBetaBinomModel, ContinuousPurchaseModel, ContractualModel, DiscretePurchaseModel,
                     ModifiedBetaGeoModel, ParetoNBDModel, PurchaseModel, ShiftedBetaGeoModel, SpendModel,
                     survivor_table)
from .models.persistence import load_model, load_models, save_models
from .rfm import bgbb_summary, calibration_holdout, rfm_summary
from .backtest import BacktestResult, backtest, discrete_backtest
from .retention import RetentionBacktestResult, retention_backtest
from .baselines import GradientBoostingBaseline, NoChangeBaseline, RFMScoreBaseline
from .plotting import (plot_calibration, plot_conditional_expectations, plot_frequency_recency_matrix, plot_lift,
                       plot_probability_alive_matrix, plot_survivors, plot_totals, plot_tracking)
from .report import compare_report
from .regularity import estimate_regularity
from .plotting import plot_regularity

__all__ = [
    "AssumptionWarning", "BetaGeoModel", "CLVModel", "ClvDataError", "ConvergenceWarning",
    "GammaGammaModel", "ModelFileError", "ModelKindError", "NotFittedError", "__version__", "calibration_holdout", "clv",
    "load_transactions", "predictive_clv", "simulate_clv", "total_value", "rfm_summary",
    "load_model", "load_models", "save_models",
]
__all__ += ["BetaGeoBetaBinomModel", "ContinuousPurchaseModel", "ContractualModel", "DiscretePurchaseModel",
            "ModifiedBetaGeoModel", "ParetoNBDModel", "PurchaseModel", "ShiftedBetaGeoModel", "SpendModel",
            "bgbb_summary", "survivor_table"]
__all__ += ["PriorSensitivityWarning"]
__all__ += ["BetaGeoCNBDModel", "ModifiedBetaGeoCNBDModel", "estimate_regularity", "plot_regularity"]
__all__ += ["BacktestResult", "GradientBoostingBaseline", "NoChangeBaseline", "RFMScoreBaseline", "backtest",
            "discrete_backtest", "RetentionBacktestResult", "retention_backtest", "compare_report", "plot_calibration",
            "plot_conditional_expectations", "plot_frequency_recency_matrix", "plot_lift", "plot_probability_alive_matrix",
            "plot_survivors", "plot_totals", "plot_tracking"]
