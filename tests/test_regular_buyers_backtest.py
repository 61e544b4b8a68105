"""Backtest on a simulated regular-buyer log (issue 17): the models of regular inter-purchase times
beat BG/NBD, whose memoryless clock misjudges who has left, on holdout MAE and on the holdout
total, and the comparison report shows every model and names a regular one the winner.

The log: 2,000 MBG/CNBD-3 customers (Erlang-3 inter-purchase times, ``datasets.simulate(k=3)``)
acquired over 12 weeks, a 40-week calibration and a 26-week holdout. Each entry of :data:`MODELS`
is one forecast of the backtest (Pareto/GGG with a short MCMC: 2 chains of 100 + 200 sweeps, enough
for its holdout forecast of the fitted customers).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import clvmodels as clv
from clvmodels.datasets import simulate
from clvmodels.report import compare_report

#: ``name: (unfitted model, whether it models regular buyers)``.
MODELS = {
    "BG/NBD": (lambda: clv.BetaGeoModel(), False),
    "MBG/CNBD-k": (lambda: clv.ModifiedBetaGeoCNBDModel(max_k=5), True),
    "Pareto/GGG": (lambda: clv.ParetoGGGModel(chains=2, tune=100, draws=200, latent_draws=100, seed=3), True),
}
REGULAR = [name for name, (_, regular) in MODELS.items() if regular]
CALIBRATION_END = "2024-10-07"      # 40 weeks after the log's start


@pytest.fixture(scope="module")
def result():
    log = simulate(2_000, r=3.0, alpha=6.0, a=1.0, b=3.0, k=3, drop_at_first=True, cohort_length=12,
                   observation_length=66, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the simulated log's notices; fit warnings are recorded
        return clv.backtest(clv.load_transactions(log), {name: make() for name, (make, _) in MODELS.items()},
                            calibration_end=CALIBRATION_END, spend_model=False, baselines={}, n_samples=100,
                            n_draws=100, seed=0)


def test_regular_models_win_on_mae_and_the_holdout_total(result):
    table = result.table("purchases")
    assert list(table.index) == list(MODELS)
    memoryless = table.loc["BG/NBD"]
    assert memoryless["total_error_pct"] > 10     # BG/NBD keeps customers in a regular gap alive
    for name in REGULAR:
        assert table.loc[name, "mae"] < 0.9 * memoryless["mae"], name
        assert abs(table.loc[name, "total_error_pct"]) < min(10.0, abs(memoryless["total_error_pct"])), name
    # the predictive distribution's scores for the models with a pmf (Pareto/GGG has none: a note says so)
    with_pmf = [name for name in REGULAR if name != "Pareto/GGG"]
    for name in with_pmf:
        assert table.loc[name, "crps"] < memoryless["crps"], name
    assert np.isnan(table.loc["Pareto/GGG", "crps"])
    totals = result.totals.set_index("model")
    assert all(totals.loc[name, "inside"] for name in with_pmf)
    assert result.models[(CALIBRATION_END, "MBG/CNBD-k")].k_ == 3       # k selected by likelihood


def test_the_report_shows_every_model_and_a_regular_winner(result, tmp_path):
    text = compare_report(result, tmp_path / "regular.html", title="Regular buyers").read_text(encoding="utf-8")
    for name in MODELS:
        assert f"<b>{name}</b>, calibration end {CALIBRATION_END}" in text
    table = result.table("purchases")
    winner = table["mae"].idxmin()
    assert winner in REGULAR and f'<td class="best">{table.loc[winner, "mae"]:.3f}</td>' in text
    assert any(f"Recommended model: <b>{name}</b>" in text for name in REGULAR)
