"""Data sets: the CDNOW logs shipped with ``lifetimes`` and a BG/NBD + Gamma-Gamma simulator."""

from .cdnow import cdnow_summary, data_path, load_cdnow, load_donations
from .simulate import simulate, simulate_pareto_ggg

__all__ = ["cdnow_summary", "data_path", "load_cdnow", "load_donations", "simulate", "simulate_pareto_ggg"]
