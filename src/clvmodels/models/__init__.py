"""CLV models: purchase models (BG/NBD, ...) and spend models (Gamma-Gamma)."""

from .base import CLVModel
from .bgnbd import BetaGeoModel
from .gamma_gamma import GammaGammaModel

__all__ = ["BetaGeoModel", "CLVModel", "GammaGammaModel"]
