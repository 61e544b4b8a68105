"""(M)BG/CNBD-k (Platzer & Reutterer 2016): the reference CDNOW fits of models.md for k = 1, 2, 3,
k = 1 equal to MBG/NBD and BG/NBD (likelihood and every prediction to 1e-10), predictions against a
forward simulation of the model's own process (independent of the formulas), the exact simulation
against the formulas, recovery of k and the parameters on simulated regular buyers, CLV and save/load.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import BetaGeoCNBDModel, ClvDataError, ModifiedBetaGeoCNBDModel
from clvmodels.datasets import simulate
from clvmodels.models import cnbd

#: models.md, "(M)BG/CNBD-k": (class, k, r, alpha, a, b, log-likelihood) on the CDNOW sample.
REFERENCE = [
    (ModifiedBetaGeoCNBDModel, 1, 0.5248, 6.1831, 0.8914, 1.6140, -9582.14),
    (BetaGeoCNBDModel, 1, 0.2426, 4.4136, 0.7929, 2.4259, -9582.43),
    (ModifiedBetaGeoCNBDModel, 2, 0.5799, 2.2881, 1.1345, 1.5850, -9853.25),
    (BetaGeoCNBDModel, 2, 0.2269, 1.4629, 0.9440, 2.0743, -9855.33),
    (ModifiedBetaGeoCNBDModel, 3, 0.5330, 1.2582, 1.2887, 1.8452, -10394.36),
]
NAMES = ("r", "alpha", "a", "b")


@pytest.fixture(scope="module")
def cdnow(cdnow_sample_log):
    return clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="W", truncate=True, litt=True)


@pytest.mark.parametrize("cls,k,r,alpha,a,b,ll", REFERENCE, ids=[f"{c.display_name}-{k}" for c, k, *_ in REFERENCE])
def test_reference_fits_on_cdnow(cdnow, cls, k, r, alpha, a, b, ll):
    model = cls(k=k).fit(cdnow)
    assert model.converged_ and model.k_ == k
    for name, value in zip(NAMES, (r, alpha, a, b)):
        assert model.params_[name] == pytest.approx(value, rel=5e-3), name
    assert model.log_likelihood_ == pytest.approx(ll, abs=0.05)


def test_auto_selects_k_1_on_cdnow_and_reports_every_k(cdnow):
    model = ModifiedBetaGeoCNBDModel(max_k=3).fit(cdnow)
    assert model.k_ == 1
    assert model.k_log_likelihoods_.index.tolist() == [1, 2, 3]
    np.testing.assert_allclose(model.k_log_likelihoods_.to_numpy(), [-9582.14, -9853.25, -10394.36], atol=0.05)
    assert model.params_["r"] == pytest.approx(0.5248, rel=5e-3)
    assert "k=1" in repr(model)


@pytest.mark.parametrize("cls,ref", [(ModifiedBetaGeoCNBDModel, clv.ModifiedBetaGeoModel),
                                     (BetaGeoCNBDModel, clv.BetaGeoModel)])
def test_k_1_is_mbgnbd_and_bgnbd(cdnow, cls, ref):
    model, other = cls(k=1).fit(cdnow), ref().fit(cdnow)
    params = {k: other.params_[k] for k in NAMES}
    data = {c: cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T", "litt")}
    np.testing.assert_allclose(model.likelihood_structure().log_likelihood(params, data, np),
                               ref.log_likelihood(params, data, np), rtol=0, atol=1e-10)
    model.params_ = other.params_.copy()
    for name, kwargs in (("probability_alive", {}), ("expected_purchases", {"t": 39.0}),
                         ("expected_purchases", {"t": 200.0}), ("probability_of_n_purchases", {"t": 39.0, "n": 2})):
        np.testing.assert_allclose(getattr(model, name)(**kwargs), getattr(other, name)(**kwargs),
                                   rtol=1e-10, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(model.expected_purchases_new_customer([1.0, 39.0, 78.0]),
                               other.expected_purchases_new_customer([1.0, 39.0, 78.0]), rtol=1e-10)
    draws = {k: np.array([[v]]) for k, v in params.items()}
    h = (data["frequency"], data["recency"], data["T"])
    np.testing.assert_allclose(cls.purchase_pmf_formula({**draws, "k": np.array([[1.0]])}, *h, t=39.0, n_max=6),
                               ref.purchase_pmf_formula(draws, *h, t=39.0, n_max=6), atol=1e-10)


# ---------------------------------------------------------------------------- against the process
TRUE = dict(r=3.0, alpha=6.0, a=1.0, b=3.0)


def _point(params: dict, k: int) -> dict:
    return {**{n: np.array([[float(v)]]) for n, v in params.items()}, "k": np.array([[float(k)]])}


@pytest.mark.parametrize("cls,k", [(ModifiedBetaGeoCNBDModel, 3), (BetaGeoCNBDModel, 2)])
def test_probability_alive_matches_the_simulated_truth(cls, k):
    """Customers simulated up to T: the mean P(alive) of each frequency group, at the true
    parameters, is the fraction of the group really alive (within 4 binomial SE)."""
    log, truth = simulate(20_000, **TRUE, k=k, drop_at_first=bool(cls.drop_at_first), cohort_length=12,
                          observation_length=40, seed=3, return_truth=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rfm = clv.rfm_summary(clv.load_transactions(log), observation_end=log.attrs["observation_end"],
                              time_unit="W", resolution="h")
    alive = cls.probability_alive_formula(_point(TRUE, k), *(rfm[c].to_numpy(float) for c in ("frequency", "recency", "T")))
    frame = pd.DataFrame({"p": alive[0], "alive": truth["alive"].reindex(rfm.index).to_numpy(float)})
    groups = frame.groupby(pd.cut(rfm["frequency"], [-1, 0, 1, 2, 4, 8, 1000]), observed=True)
    for _, g in groups:
        se = np.sqrt(g["p"].mean() * (1 - g["p"].mean()) / len(g)) + 1e-3
        assert abs(g["p"].mean() - g["alive"].mean()) < 4 * se


@pytest.fixture(scope="module")
def regular_buyers():
    """20,000 MBG/CNBD-3 customers: a 26-week calibration (cohorts over 12 weeks), a 38-week holdout."""
    log, truth = simulate(20_000, **TRUE, k=3, drop_at_first=True, cohort_length=12, observation_length=64,
                          seed=1, return_truth=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return clv.calibration_holdout(clv.load_transactions(log), "2024-07-01", "2025-03-24", "W", litt=True)


def test_expected_purchases_and_pmf_match_the_holdout_at_the_true_parameters(regular_buyers):
    ch = regular_buyers
    t = float(ch["duration_holdout"].iloc[0])
    h = [ch[c].to_numpy(float) for c in ("frequency", "recency", "T")]
    params = _point(TRUE, 3)
    expected = ModifiedBetaGeoCNBDModel.expected_purchases_formula(params, *h, t=t)[0]
    actual = ch["frequency_holdout"].to_numpy(float)
    groups = pd.cut(ch["frequency"], [-1, 0, 1, 2, 4, 8, 1000])
    for _, idx in pd.Series(np.arange(len(ch))).groupby(groups.to_numpy(), observed=True):
        se = actual[idx].std(ddof=1) / np.sqrt(len(idx)) + 1e-3
        assert abs(expected[idx].mean() - actual[idx].mean()) < 4 * se
    pmf = ModifiedBetaGeoCNBDModel.purchase_pmf_formula(params, *h, t=t, n_max=4)[0].mean(axis=0)
    observed = np.bincount(np.minimum(actual.astype(int), 4), minlength=5) / len(actual)
    np.testing.assert_allclose(pmf, observed, atol=4 * np.sqrt(0.25 / len(actual)))
    assert pmf.sum() == pytest.approx(1.0)


def test_simulation_agrees_with_the_formulas(regular_buyers):
    ch = regular_buyers.iloc[:4000]
    h = [ch[c].to_numpy(float) for c in ("frequency", "recency", "T")]
    params = _point(TRUE, 3)
    rng = np.random.default_rng(0)
    f = ModifiedBetaGeoCNBDModel
    periods = np.stack([f.simulate_purchases_formula(params, *h, t=np.array([10.0, 25.0, 38.0]), rng=rng)
                        for _ in range(25)])
    totals = periods.sum(axis=-1)
    expected = f.expected_purchases_formula(params, *h, t=38.0)[0]
    se = totals.std() / np.sqrt(totals.size)
    assert abs(totals.mean() - expected.mean()) < 4 * se
    by_10 = periods[..., 0].mean()
    assert abs(by_10 - f.expected_purchases_formula(params, *h, t=10.0).mean()) < 4 * periods[..., 0].std() / np.sqrt(totals.size)
    pmf = f.purchase_pmf_formula(params, *h, t=38.0, n_max=5)[0].mean(axis=0)
    observed = np.bincount(np.minimum(totals.ravel(), 5), minlength=6) / totals.size
    np.testing.assert_allclose(observed, pmf, atol=4 * np.sqrt(0.25 / totals.size))


def test_recovers_k_and_the_parameters(regular_buyers):
    model = ModifiedBetaGeoCNBDModel(max_k=5).fit(regular_buyers)
    assert model.k_ == 3 and model.converged_
    assert model.k_log_likelihoods_.idxmax() == 3
    table = model.summary()
    for name, value in TRUE.items():
        assert abs(table.loc[name, "estimate"] - value) < 3 * table.loc[name, "se"], name
    # the regular model predicts the holdout better than MBG/NBD
    t = float(regular_buyers["duration_holdout"].iloc[0])
    mbg = clv.ModifiedBetaGeoModel().fit(regular_buyers)
    actual = regular_buyers["frequency_holdout"]
    assert (np.abs(model.expected_purchases(t=t) - actual).mean()
            < 0.8 * np.abs(mbg.expected_purchases(t=t) - actual).mean())


# ---------------------------------------------------------------------------- the estimator
def test_clv_and_save_load(regular_buyers, tmp_path):
    rfm = regular_buyers.iloc[:3000]
    model = ModifiedBetaGeoCNBDModel(k=3).fit(rfm)
    spend = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
    value = clv.clv(model, spend, rfm.drop(columns="litt"), horizon=6, period="M", discount_rate=0.01)
    assert np.isfinite(value).all() and (value >= 0).all()
    model.save(tmp_path / "m")
    loaded = clv.load_model(tmp_path / "m")
    assert type(loaded) is ModifiedBetaGeoCNBDModel and loaded.k_ == 3 and loaded.k == 3
    scored = rfm.drop(columns="litt")   # predictions do not need litt
    pd.testing.assert_series_equal(loaded.expected_purchases(t=10.0, rfm=scored), model.expected_purchases(t=10.0))
    pd.testing.assert_series_equal(loaded.probability_alive(rfm=scored), model.probability_alive())


def test_interval_draws_carry_k(regular_buyers):
    rfm = regular_buyers.iloc[:500]
    model = ModifiedBetaGeoCNBDModel(k=2).fit(rfm)
    out = model.expected_purchases(t=10.0, interval=0.9, n_draws=50, seed=1)
    assert (out["mean_lower"] <= out["mean_upper"]).all()
    assert set(model.parameter_draws(5, seed=0)) == {*NAMES, "k"}


def test_bad_settings_and_missing_litt(cdnow):
    with pytest.raises(ClvDataError, match="litt=True"):
        ModifiedBetaGeoCNBDModel(k=2).fit(cdnow.drop(columns="litt"))
    for bad in (0, 2.5, "two", cnbd.MAX_K + 1):
        with pytest.raises(ClvDataError, match="k must be"):
            ModifiedBetaGeoCNBDModel(k=bad).fit(cdnow)
    with pytest.raises(ClvDataError, match="max_k"):
        ModifiedBetaGeoCNBDModel(max_k=0).fit(cdnow)
    with pytest.raises(ClvDataError, match="k must be one whole number"):
        cnbd.erlang_order({"k": np.array([1.0, 2.0])})


# ---------------------------------------------------------------------------- Bayesian fits
def test_each_k_is_its_own_compiled_structure():
    from clvmodels.models.bayes import structure_key

    names = ("frequency", "recency", "T", "litt")
    priors = {}
    keys = {structure_key(cnbd.likelihood_structure(ModifiedBetaGeoCNBDModel, k), names, priors) for k in (1, 2, 3)}
    keys.add(structure_key(cnbd.likelihood_structure(BetaGeoCNBDModel, 2), names, priors))
    assert len(keys) == 4
    assert cnbd.likelihood_structure(ModifiedBetaGeoCNBDModel, 2) is cnbd.likelihood_structure(ModifiedBetaGeoCNBDModel, 2)


def test_map_at_k_2_is_near_the_mle(cdnow):
    model = ModifiedBetaGeoCNBDModel(k=2).fit(cdnow, method="map")
    assert model.k_ == 2 and model.method_ == "map"
    mle = ModifiedBetaGeoCNBDModel(k=2).fit(cdnow)
    for name in NAMES:   # weak priors: the mode moves by less than one standard error
        se = mle.summary().loc[name, "se"]
        assert abs(model.params_[name] - mle.params_[name]) < se, name
    assert model.log_likelihood_ == pytest.approx(mle.log_likelihood_, abs=0.5)
    assert np.isfinite(model.expected_purchases(t=39.0, interval=0.9, n_draws=50, seed=0)).all().all()


@pytest.mark.slow
def test_short_nuts_selects_k_by_mle_then_samples(cdnow):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ModifiedBetaGeoCNBDModel(max_k=2).fit(cdnow, method="nuts", draws=300, tune=300, chains=2,
                                                        random_seed=1, progressbar=False)
    assert model.k_ == 1 and model.method_ == "nuts"
    table = model.summary()
    for name, value in zip(NAMES, REFERENCE[0][2:6]):
        assert abs(table.loc[name, "mean"] - value) < 2 * table.loc[name, "sd"], name
    assert len(model.parameter_draws()["k"]) == 600


# ---------------------------------------------------------------------------- command line
def test_command_line_summarize_fit_and_score(tmp_path, capsys):
    from clvmodels import cli

    log = simulate(1500, **TRUE, k=2, drop_at_first=True, cohort_length=12, observation_length=40, seed=5)
    log.to_parquet(tmp_path / "log.parquet")
    args = ["summarize", str(tmp_path / "log.parquet"), "--time-unit", "W", "--litt"]
    assert cli.main(args + ["--out", str(tmp_path / "rfm.parquet")]) == 0
    assert cli.main(args[:-1] + ["--out", str(tmp_path / "plain.parquet")]) == 0
    assert "litt" in pd.read_parquet(tmp_path / "rfm.parquet").columns
    fit = ["fit", "--model", "mbgcnbd+gg", "--method", "mle"]
    assert cli.main(fit + [str(tmp_path / "plain.parquet"), "--out", str(tmp_path / "bad")]) == 2
    assert "litt" in capsys.readouterr().err
    assert cli.main(fit + [str(tmp_path / "rfm.parquet"), "--out", str(tmp_path / "model")]) == 0
    assert "k=2" in capsys.readouterr().out
    assert cli.main(["score", str(tmp_path / "model"), str(tmp_path / "plain.parquet"), "--horizon", "3",
                     "--period", "M", "--out", str(tmp_path / "scores.parquet")]) == 0
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == 1500 and scores["clv"].notna().all()


@pytest.mark.slow   # minutes: CNBD-k's expectations are series of incomplete beta functions per draw
def test_backtest_on_regular_buyers_favours_the_regular_model(tmp_path):
    log = simulate(2000, **TRUE, k=3, drop_at_first=True, cohort_length=12, observation_length=64, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clv.backtest(log, {"MBG/NBD": clv.ModifiedBetaGeoModel(), "MBG/CNBD-k": ModifiedBetaGeoCNBDModel()},
                              calibration_end="2024-07-01", observation_end="2025-03-24", time_unit="W")
    table = result.table("purchases")
    assert table.loc["MBG/CNBD-k", "mae"] < 0.8 * table.loc["MBG/NBD", "mae"]
    assert abs(table.loc["MBG/CNBD-k", "total_error_pct"]) < abs(table.loc["MBG/NBD", "total_error_pct"])
    assert table.loc["MBG/CNBD-k", "crps"] < table.loc["MBG/NBD", "crps"]
    assert "MBG/CNBD-k" in clv.compare_report(result, tmp_path / "report.html").read_text()


# ---------------------------------------------------------------------------- regularity diagnostics
@pytest.mark.parametrize("k", [1, 3])
def test_estimate_regularity_recovers_k(k):
    """Many purchases per customer (hour resolution: no merged purchases): Wheat & Morrison's k
    within 15% (M ~ Beta(k, k) for Erlang-k gaps of any rate) and the median gamma shape near k."""
    log = simulate(6000, r=20.0, alpha=10.0, a=0.5, b=40.0, k=k, cohort_length=4, observation_length=60, seed=k)
    reg = clv.estimate_regularity(log, resolution="h")
    assert reg.k_wheat == pytest.approx(k, rel=0.15)
    assert reg.k_gamma_median == pytest.approx(k, rel=0.25)
    assert len(reg.shapes) < len(reg.m) and reg.min_purchases == 10
    assert ((reg.m > 0) & (reg.m < 1)).all()


def test_regularity_of_cdnow_and_its_plot(cdnow_sample_log):
    reg = clv.estimate_regularity(cdnow_sample_log, resolution="D")
    assert 0.5 < reg.k_wheat < 2.0        # CDNOW shows no regularity (models.md: k = 1 is selected)
    fig = clv.plot_regularity(reg)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and "k =" in ax.get_title()
    with pytest.raises(ClvDataError, match="min_purchases"):
        clv.estimate_regularity(cdnow_sample_log, min_purchases=2)


def test_gamma_shape_mle_solves_its_equation():
    from scipy import special

    from clvmodels.regularity import gamma_shape_mle

    itts = pd.Series(np.random.default_rng(0).gamma(2.5, 1.0, 3000), index=np.repeat(np.arange(3), 1000))
    shapes = gamma_shape_mle(itts)
    for cid, k in shapes.items():
        x = itts.loc[cid].to_numpy()
        assert np.log(k) - special.digamma(k) == pytest.approx(np.log(x.mean()) - np.log(x).mean(), rel=1e-10)
        assert k == pytest.approx(2.5, rel=0.15)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_expected_purchases_given_a_phase_equals_the_sum_of_tail_probabilities(k):
    """``Σ_i P(N = i) H(⌊(i+j)/k⌋)`` against the direct ``Σ_m S_m P(N >= mk−j)`` with scipy's
    incomplete beta (``P(N >= i) = I_q(i, n)``), for every phase and a spread of parameters."""
    from scipy.special import betainc, betaln

    rng = np.random.default_rng(k)
    size = 40
    n, alpha_t, a, b = rng.uniform(0.2, 60, size), rng.uniform(0.5, 80, size), rng.uniform(0.1, 5, size), rng.uniform(0.2, 40, size)
    t = rng.uniform(0.5, 150, size)
    for j in range(k):
        got = cnbd._expected_given_phase(n + j, alpha_t, a, b, t, k, np.full(size, float(j)))
        m = np.arange(1, 4000)[:, None]
        direct = (np.exp(betaln(a, b + m - 1) - betaln(a, b)) * betainc(m * k - j, n + j, t / (alpha_t + t))).sum(0)
        np.testing.assert_allclose(got, direct, rtol=1e-11)
