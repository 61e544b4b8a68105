"""End-to-end CDNOW demo: summarise the log, fit BG/NBD + Gamma-Gamma, print the top customers by CLV;
with ``--report FILE`` also backtest and write the CLV report.

Run with ``python -m clvmodels.demo`` (or ``clvmodels demo``; ``./run demo --report report.html``).
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd

from .backtest import backtest
from .clv import clv
from .clv_report import clv_report
from .data import load_transactions
from .models import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from .rfm import rfm_summary
from .datasets import load_cdnow


def run_demo(top: int = 10, sample: bool = False, interval: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Fit on CDNOW's first 39 weeks and return the top customers by 12-month CLV (1%/month discount)."""
    log = load_transactions(load_cdnow(sample=sample), timestamp="date")
    rfm = rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
    print(f"CDNOW {'sample' if sample else 'master'} log: {len(log):,} transactions, {len(rfm):,} customers; "
          f"39-week calibration, weeks")
    bgnbd = BetaGeoModel().fit(rfm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spend = GammaGammaModel(exclude_invalid=True).fit(rfm)
    print(f"\n{bgnbd}\n{bgnbd.summary().round(4).to_string()}")
    print(f"\n{spend}\n{spend.summary().round(4).to_string()}")
    value = clv(bgnbd, spend, rfm, horizon=12, period="M", discount_rate=0.01, interval=interval, seed=seed)
    table = pd.concat(
        [rfm, bgnbd.probability_alive().rename("p_alive"),
         bgnbd.expected_purchases(52).rename("purchases_52w"),
         spend.expected_spend().rename("expected_spend"),
         value.add_prefix("clv_")], axis=1,
    ).sort_values("clv_mean", ascending=False)
    print(f"\nTop {top} customers by predicted 12-month CLV ({interval:.0%} interval from parameter uncertainty):")
    print(table.head(top).round(2).to_string())
    print(f"\nTotal predicted 12-month CLV: ${value['mean'].sum():,.0f} "
          f"over {len(rfm):,} customers")
    return table


def write_report(path, sample: bool = False, seed: int = 0):
    """Backtest BG/NBD and Pareto/NBD on CDNOW (39 calibration weeks, the rest as holdout) and write
    the CLV report (:func:`clvmodels.clv_report.clv_report`) of the 12 months after the log's end."""
    log = load_transactions(load_cdnow(sample=sample), timestamp="date")
    result = backtest(log, {"BG/NBD": BetaGeoModel(), "Pareto/NBD": ParetoNBDModel()}, calibration_end="1997-09-30",
                      seed=seed)
    report = clv_report(result, log, path, seed=seed)
    total = report.total.iloc[0]
    print(f"\nCLV report written to {path}: model {report.model}; the base's next 12 months "
          f"${total['mean']:,.0f} (90% predictive interval ${total['lower']:,.0f} – ${total['upper']:,.0f})")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=10, help="number of customers to show")
    parser.add_argument("--sample", action="store_true", help="use the 2,357-customer sample")
    parser.add_argument("--report", metavar="FILE", help="also backtest BG/NBD and Pareto/NBD and write the CLV "
                                                         "report (HTML) here")
    args = parser.parse_args(argv)
    run_demo(top=args.top, sample=args.sample)
    if args.report:
        write_report(args.report, sample=args.sample)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
