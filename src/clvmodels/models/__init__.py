"""CLV models: purchase models (BG/NBD, ...) and spend models (Gamma-Gamma)."""

from .base import CLVModel
from .bgnbd import BetaGeoModel
from .gamma_gamma import GammaGammaModel
from .bgbb import BetaGeoBetaBinomModel, bgbb_summary
from .mbgnbd import ModifiedBetaGeoModel
from .pareto_nbd import ParetoNBDModel
from .sbg import ShiftedBetaGeoModel, survivor_table

__all__ = ["BetaGeoModel", "CLVModel", "GammaGammaModel"]
__all__ += ["BetaGeoBetaBinomModel", "ModifiedBetaGeoModel", "ParetoNBDModel", "ShiftedBetaGeoModel",
            "bgbb_summary", "survivor_table"]
