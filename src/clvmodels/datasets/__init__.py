"""Data sets: the CDNOW logs shipped with ``lifetimes`` and simulators with known parameters (BG/NBD or
Pareto/NBD + Gamma-Gamma transaction logs, BG/BB histories, sBG contract lengths), covariates optional."""

from .cdnow import cdnow_summary, data_path, load_cdnow, load_donations
from .simulate import simulate, simulate_bgbb, simulate_pareto_ggg, simulate_sbg, simulate_seasonal

__all__ = ["cdnow_summary", "data_path", "load_cdnow", "load_donations", "simulate", "simulate_bgbb",
           "simulate_pareto_ggg", "simulate_sbg", "simulate_seasonal"]
