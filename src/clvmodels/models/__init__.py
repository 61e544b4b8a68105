"""CLV models. Each kind declares its formulas in an abstract base (the protocol that everything
else consumes): purchase models (:mod:`.purchase`), spend models (:mod:`.spend`) and contractual
retention models (:mod:`.contractual`); each model's mathematics lives in its own module."""

from .base import CLVModel
from .bgbb import BetaGeoBetaBinomModel
from .bgnbd import BetaGeoModel
from .cnbd import BetaGeoCNBDModel, ModifiedBetaGeoCNBDModel
from .contractual import ContractualModel, survivor_table
from .covariates import lr_test
from .gamma_gamma import GammaGammaModel
from .ggompertz_nbd import GGompertzNBDModel
from .mbgnbd import ModifiedBetaGeoModel
from .pareto_ggg import ParetoGGGModel
from .pareto_nbd import ParetoNBDModel
from .purchase import ContinuousPurchaseModel, DiscretePurchaseModel, PurchaseModel
from .registry import register_model_class
from .sbg import ShiftedBetaGeoModel
from .spend import SpendModel

__all__ = ["BetaGeoBetaBinomModel", "BetaGeoCNBDModel", "BetaGeoModel", "CLVModel", "ContinuousPurchaseModel",
           "ContractualModel", "DiscretePurchaseModel", "GGompertzNBDModel", "GammaGammaModel", "ModifiedBetaGeoCNBDModel",
           "ModifiedBetaGeoModel", "ParetoGGGModel", "ParetoNBDModel", "PurchaseModel", "ShiftedBetaGeoModel", "SpendModel", "lr_test",
           "register_model_class", "survivor_table"]
