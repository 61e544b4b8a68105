"""Batch scoring: the same numbers as the models' own predictions, chunk-independent, nothing lost."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import cdnow_summary
from clvmodels.errors import ClvDataError
from clvmodels.scoring import ScoreSettings, score_columns, score_frame, score_table
from clvmodels.validation import problems as row_problems

SETTINGS = ScoreSettings(horizon=12, period="M", discount_rate=0.01, interval=0.9, n_draws=100, seed=7)
#: Every interval over parameter draws (the CLV's too): the same draws for every chunk, so chunked and
#: one-shot scoring agree exactly.
EXPECTED_SETTINGS = ScoreSettings(horizon=12, period="M", discount_rate=0.01, interval=0.9, n_draws=100, seed=7,
                                  clv_interval="expected")


@pytest.fixture(scope="module")
def rfm():
    frame = cdnow_summary(with_spend=True)
    frame.attrs["time_unit"] = "W"
    return frame


@pytest.fixture(scope="module")
def models(rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clv.BetaGeoModel().fit(rfm), clv.GammaGammaModel(exclude_invalid=True).fit(rfm)


def test_scores_equal_the_models_predictions(models, rfm):
    bgnbd, gg = models
    got = score_frame(bgnbd, gg, rfm, EXPECTED_SETTINGS)
    assert list(got.columns) == score_columns(True, True, "expected")
    assert list(got.columns)[-3:] == ["clv", "clv_mean_lower", "clv_mean_upper"]
    month = 365.25 / 12 / 7  # weeks
    kw = dict(interval=0.9, n_draws=100, seed=7)
    ep = bgnbd.expected_purchases(12 * month, rfm, **kw)
    # the same formulas and draws, evaluated in another order: equal to rounding
    np.testing.assert_allclose(got["expected_purchases"], ep["mean"], rtol=1e-12)
    np.testing.assert_allclose(got["expected_purchases_mean_upper"], ep["mean_upper"], rtol=1e-12)
    np.testing.assert_allclose(got["probability_alive_mean_lower"],
                               bgnbd.probability_alive(rfm, **kw)["mean_lower"], rtol=1e-12)
    # the spend model's draws are seeded seed + 1: independent of the purchase model's, as in clv()
    spend = gg.expected_spend(rfm, **{**kw, "seed": 8})
    assert np.array_equal(got["expected_spend"], spend["mean"])
    assert np.array_equal(got["expected_spend_mean_lower"], spend["mean_lower"])
    value = clv.clv(bgnbd, gg, rfm, horizon=12, time_unit="M", discount_rate=0.01, kind="expected", **kw)
    np.testing.assert_allclose(got["clv"], value["mean"], rtol=1e-12)
    np.testing.assert_allclose(got["clv_mean_lower"], value["mean_lower"], rtol=1e-12)
    # sanity: intervals bracket the mean, and a 52-week horizon buys more than none
    assert (got["clv_mean_lower"] <= got["clv"]).all() and (got["clv"] <= got["clv_mean_upper"]).all()
    point = score_frame(bgnbd, gg, rfm, ScoreSettings())
    assert list(point.columns) == ["expected_purchases", "probability_alive", "expected_spend", "clv"]
    np.testing.assert_allclose(point["clv"], clv.clv(bgnbd, gg, rfm, horizon=12, time_unit="M", discount_rate=0.01),
                               rtol=1e-12)


@pytest.mark.slow
def test_clv_interval_is_predictive_by_default(models, rfm, tmp_path):
    """By default the CLV's interval is the predictive one (``clv_lower``/``clv_upper``): the
    interval of :func:`clvmodels.predictive_clv` simulated with the chunk's seed, the same for the
    same rows, and far wider than the expected value's."""
    from clvmodels.scoring import _chunk_seed

    bgnbd, gg = models
    got = score_frame(bgnbd, gg, rfm, SETTINGS)
    assert list(got.columns) == score_columns(True, True)
    assert list(got.columns)[-3:] == ["clv", "clv_lower", "clv_upper"]
    assert "expected_purchases_mean_lower" in got.columns
    pred = clv.predictive_clv(bgnbd, gg, rfm, horizon=12, period="M", discount_rate=0.01, interval=0.9,
                              n_samples=1000, seed=_chunk_seed(7, rfm.index))
    np.testing.assert_array_equal(got["clv_lower"], pred["lower"])
    np.testing.assert_array_equal(got["clv_upper"], pred["upper"])
    expected = score_frame(bgnbd, gg, rfm, EXPECTED_SETTINGS)
    assert (got["clv_upper"] - got["clv_lower"]).mean() > 3 * (expected["clv_mean_upper"]
                                                              - expected["clv_mean_lower"]).mean()
    # chunks: each chunk's interval is that chunk's own simulation
    score_table(bgnbd, gg, rfm, tmp_path / "s.parquet", settings=SETTINGS, chunk_rows=1000)
    scores = pd.read_parquet(tmp_path / "s.parquet").set_index("customer_id")
    first = score_frame(bgnbd, gg, rfm.iloc[:1000], SETTINGS)
    np.testing.assert_array_equal(scores["clv_upper"].to_numpy()[:1000], first["clv_upper"].to_numpy())
    with pytest.raises(ClvDataError, match="clv_interval"):
        ScoreSettings(clv_interval="plugin")


def test_purchase_model_alone(models, rfm):
    got = score_frame(models[0], None, rfm, ScoreSettings(horizon=3, period="W"))
    assert list(got.columns) == ["expected_purchases", "probability_alive"]
    np.testing.assert_allclose(got["expected_purchases"], models[0].expected_purchases(3.0, rfm), rtol=1e-12)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_chunked_scoring_equals_one_shot(models, rfm, tmp_path, fmt):
    bgnbd, gg = models
    table = tmp_path / f"rfm.{fmt}"
    (rfm.to_parquet if fmt == "parquet" else rfm.to_csv)(table, index=True)
    counts = score_table(bgnbd, gg, table, tmp_path / f"scores.{fmt}", settings=EXPECTED_SETTINGS, chunk_rows=500)
    assert (counts.read, counts.scored, counts.rejected) == (2357, 2357, 0)
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    got = read(tmp_path / f"scores.{fmt}").set_index("customer_id")
    expected = score_frame(bgnbd, gg, rfm, EXPECTED_SETTINGS)
    assert list(got.index.astype(int)) == list(rfm.index)
    np.testing.assert_allclose(got[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-12 if fmt == "csv" else 0)
    assert len(read(tmp_path / f"scores.rejects.{fmt}")) == 0


@pytest.mark.slow
def test_parallel_workers_give_the_same_file(models, rfm, tmp_path):
    bgnbd, gg = models
    score_table(bgnbd, gg, rfm, tmp_path / "one.parquet", settings=SETTINGS, chunk_rows=400)
    counts = score_table(bgnbd, gg, rfm, tmp_path / "two.parquet", settings=SETTINGS, chunk_rows=400, jobs=2)
    assert counts.scored == 2357
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two.parquet"), pd.read_parquet(tmp_path / "one.parquet"),
                                  check_exact=True)


def bad_rows(rfm: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The CDNOW table with one broken row per problem (ids as text, one a duplicate)."""
    t = rfm.reset_index().astype({"customer_id": str})
    problems = {
        "1": ("frequency", np.nan, "missing, non-numeric or infinite frequency"),
        "2": ("frequency", 1.5, "frequency is not a non-negative integer"),
        "3": ("recency", -1.0, "recency is not in [0, T]"),
        "4": ("recency", 1000.0, "recency is not in [0, T]"),
        "5": ("monetary_value", -5.0, "monetary_value is negative"),
        "6": ("T", np.inf, "missing, non-numeric or infinite T"),
    }
    for cid, (col, value, _) in problems.items():
        t.loc[t["customer_id"] == cid, col] = value
    zero = t.index[(t["frequency"] == 0) & ~t["customer_id"].isin(list(problems))][0]
    t.loc[zero, "recency"] = 2.0
    expected = {cid: reason for cid, (_, _, reason) in problems.items()}
    expected[t.loc[zero, "customer_id"]] = "recency > 0 without repeat purchases"
    dup = t.iloc[[10]].copy()  # id "11" again, at the end: the first one is scored
    missing = t.iloc[[20]].assign(customer_id=None)
    return pd.concat([t, dup, missing], ignore_index=True), expected


def test_every_customer_is_scored_or_rejected_once(models, rfm, tmp_path):
    bgnbd, gg = models
    table, expected = bad_rows(rfm)
    path = tmp_path / "rfm.parquet"
    table.to_parquet(path, index=False)
    counts = score_table(bgnbd, gg, path, tmp_path / "s.parquet", settings=EXPECTED_SETTINGS, chunk_rows=400)
    scores = pd.read_parquet(tmp_path / "s.parquet")
    rejects = pd.read_parquet(tmp_path / "s.rejects.parquet")
    assert counts.read == len(table) == counts.scored + counts.rejected
    assert counts.scored == len(scores) == 2357 - len(expected)
    assert counts.rejected == len(rejects) == len(expected) + 2
    got = dict(zip(rejects["customer_id"], rejects["reason"]))
    for cid, reason in expected.items():
        assert got[cid] == reason
    assert got["11"].startswith("duplicate customer_id")
    assert rejects.loc[rejects["customer_id"].isna(), "reason"].tolist() == ["missing customer_id"]
    assert scores["customer_id"].is_unique and "11" in set(scores["customer_id"])
    # the union is the input: no customer lost, none twice
    assert sorted(scores["customer_id"].tolist() + rejects["customer_id"].dropna().tolist()) == \
        sorted(table["customer_id"].dropna().tolist())
    assert counts.reasons["recency is not in [0, T]"] == 2
    # the scored rows have exactly the scores of a clean run
    clean = score_frame(bgnbd, gg, rfm.loc[scores["customer_id"].astype(int)], EXPECTED_SETTINGS)
    assert np.array_equal(scores["clv_mean_upper"].to_numpy(), clean["clv_mean_upper"].to_numpy())


def test_row_problems_accepts_valid_rows(rfm):
    assert (row_problems(rfm, ["frequency", "recency", "T", "monetary_value"]) == "").all()


def test_bayesian_draws_give_posterior_means(models, rfm):
    from arviz_base import from_dict  # noqa: F401  (the same stack as a NUTS fit)

    bgnbd, gg = models
    posterior = clv.BetaGeoModel().fit(rfm)
    posterior.posterior_draws_ = bgnbd.parameter_draws(300, seed=1)
    spend = clv.GammaGammaModel(exclude_invalid=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spend.fit(rfm)
    spend.posterior_draws_ = gg.parameter_draws(300, seed=2)
    point = score_frame(posterior, spend, rfm, ScoreSettings(n_draws=300))
    assert list(point.columns) == ["expected_purchases", "probability_alive", "expected_spend", "clv"]
    alive = posterior.probability_alive(rfm)  # the posterior mean over all draws
    np.testing.assert_allclose(point["probability_alive"], alive, rtol=1e-12)


def test_unknown_time_unit_needs_period_length(models, rfm, tmp_path):
    bgnbd, gg = models
    bare = rfm.copy()
    bare.attrs = {}
    model = clv.BetaGeoModel().fit(bare)
    with pytest.raises(ClvDataError, match="period_length"):
        score_table(model, None, rfm, tmp_path / "s.parquet", settings=ScoreSettings())
    assert not (tmp_path / "s.parquet").exists()
    got = score_frame(model, None, rfm, ScoreSettings(period_length=4.0, horizon=2))
    np.testing.assert_allclose(got["expected_purchases"], model.expected_purchases(8.0, rfm), rtol=1e-12)


@pytest.mark.parametrize("kw,match", [({"horizon": 0}, "horizon"), ({"interval": 1.5}, "interval"),
                                      ({"n_draws": 1}, "n_draws"), ({"period": "fortnight"}, "time unit"),
                                      ({"discount_rate": -1.0}, "discount_rate"),
                                      ({"discount_rate": float("nan")}, "discount_rate"),
                                      ({"period_length": 0.0}, "period_length")])
def test_settings_are_checked(kw, match):
    with pytest.raises(ClvDataError, match=match):
        ScoreSettings(**kw)


def test_frame_source_and_failure_leaves_previous_output(models, rfm, tmp_path, monkeypatch):
    bgnbd, gg = models
    out = tmp_path / "s.parquet"
    score_table(bgnbd, gg, rfm, out, settings=ScoreSettings())
    before = out.read_bytes()
    import clvmodels.scoring as scoring

    calls = {"n": 0}
    real = scoring.score_frame

    def fail_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise FloatingPointError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_frame", fail_on_third_chunk)
    with pytest.raises(FloatingPointError):
        score_table(bgnbd, gg, rfm, out, settings=ScoreSettings(), chunk_rows=300)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet", "s.rejects.parquet"]


@pytest.mark.parametrize("n_draws", [1, 2, 7, 200])
def test_quantiles_equal_numpys_bit_for_bit(n_draws):
    from clvmodels.models.draws import quantiles

    rng = np.random.default_rng(n_draws)
    values = rng.lognormal(size=(n_draws, 1_000))
    values[:, :10] = 3.0  # ties
    qs = [0.5, 0.05, 0.95, 0.0, 1.0, 0.25]
    assert np.array_equal(quantiles(values, qs), np.quantile(values, qs, axis=0))


# ---------------------------------------------------------------------------- issue #12: per customer, units
def extreme_rows(rfm: pd.DataFrame) -> pd.DataFrame:
    """Repeat buyers, one with a mean spend of 1e308 (its expected spend overflows) and others
    extreme but harmless (a billion purchases, an age of 1e300 weeks)."""
    t = rfm[rfm["frequency"] > 0].iloc[:900].copy()
    t.iloc[0, t.columns.get_loc("monetary_value")] = 1e308
    t.iloc[1, t.columns.get_loc("frequency")] = 10**9
    t.iloc[2, [t.columns.get_loc("recency"), t.columns.get_loc("T")]] = 1e300
    return t


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.slow
def test_one_overflowing_customer_is_rejected_and_the_rest_scored(models, rfm, tmp_path, jobs):
    bgnbd, gg = models
    t = extreme_rows(rfm)
    counts = score_table(bgnbd, gg, t, tmp_path / "s.parquet", settings=EXPECTED_SETTINGS, chunk_rows=200,
                         jobs=jobs)
    assert (counts.read, counts.scored, counts.rejected) == (900, 899, 1)
    rejects = pd.read_parquet(tmp_path / "s.rejects.parquet")
    assert rejects["customer_id"].tolist() == [str(t.index[0])]
    assert rejects["reason"].tolist() == ["expected_spend, clv not finite (extreme input values)"]
    assert rejects["monetary_value"].tolist() == ["1e+308"]
    scores = pd.read_parquet(tmp_path / "s.parquet").set_index("customer_id")
    assert list(scores.index) == list(t.index[1:])
    assert np.isfinite(scores[score_columns(True, True, "expected")].to_numpy()).all()
    clean = score_frame(bgnbd, gg, t.iloc[3:], EXPECTED_SETTINGS)
    np.testing.assert_array_equal(scores.loc[t.index[3:], clean.columns].to_numpy(), clean.to_numpy())


def test_score_frame_names_the_overflowing_customers(models, rfm):
    bgnbd, gg = models
    t = extreme_rows(rfm)
    with pytest.raises(ClvDataError, match=r"not finite or out of range.*\(1 row\)"):
        score_frame(bgnbd, gg, t, ScoreSettings())
    got = score_frame(bgnbd, gg, t, ScoreSettings(), reasons=True)
    assert (got["reason"] != "").tolist() == [True] + [False] * 899


def test_result_problems_checks_ranges():
    from clvmodels.scoring import result_problems

    scores = pd.DataFrame({"expected_purchases": [1.0, -0.5, 2.0, np.nan],
                           "probability_alive": [0.5, 0.5, 1.5, 0.2]})
    assert result_problems(scores).tolist() == [
        "", "expected_purchases out of range (extreme input values)",
        "probability_alive out of range (extreme input values)",
        "expected_purchases not finite (extreme input values)"]


def test_a_table_in_another_time_unit_is_refused(models, rfm, tmp_path):
    bgnbd, gg = models
    days = rfm.copy()
    days[["recency", "T"]] *= 7
    days.attrs = {"time_unit": "D"}
    for call in (lambda: score_frame(bgnbd, gg, days, ScoreSettings()),
                 lambda: score_table(bgnbd, gg, days, tmp_path / "s.parquet", settings=ScoreSettings())):
        with pytest.raises(ClvDataError, match=r"Time unit mismatch.*'D'.*'W'.*--time-unit W"):
            call()
    path = tmp_path / "days.parquet"
    days.to_parquet(path)  # pandas records attrs in the file
    with pytest.raises(ClvDataError, match="Time unit mismatch"):
        score_table(bgnbd, gg, path, tmp_path / "s.parquet", settings=ScoreSettings())
    assert not (tmp_path / "s.parquet").exists()
    weeks = tmp_path / "weeks.csv"
    rfm.to_csv(weeks)  # a CSV records no unit: accepted, reported as unchecked
    assert score_table(bgnbd, gg, weeks, tmp_path / "s.parquet", settings=ScoreSettings()).time_unit is None
    assert score_table(bgnbd, gg, rfm, tmp_path / "s.parquet", settings=ScoreSettings()).time_unit == "W"


def test_outputs_that_are_the_input_or_each_other_are_refused(models, rfm, tmp_path):
    bgnbd, gg = models
    path = tmp_path / "rfm.parquet"
    rfm.to_parquet(path)
    before = path.read_bytes()
    (tmp_path / "link.parquet").symlink_to(path)
    for out, rejects in [(path, None), (tmp_path / "link.parquet", None), (tmp_path / "s.parquet", path),
                         (tmp_path / "s.parquet", tmp_path / "sub" / ".." / "s.parquet")]:
        with pytest.raises(ClvDataError, match="same"):
            score_table(bgnbd, gg, path, out, rejects=rejects, settings=ScoreSettings())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.parquet", "rfm.parquet"]


def test_time_unit_keyword_is_a_deprecated_alias_of_period():
    with pytest.warns(DeprecationWarning, match="period="):
        settings = ScoreSettings(time_unit="W")
    assert settings.period == "W"
    with pytest.warns(DeprecationWarning, match="period="):
        assert settings.time_unit == "W"
    assert ScoreSettings(period="weeks").period == "W"


def test_csv_outputs_escape_formulas_unless_raw(models, rfm, tmp_path):
    bgnbd, _ = models
    t = rfm.iloc[:4].reset_index().astype({"customer_id": str})
    t["customer_id"] = ["=HYPERLINK(\"http://x\")", "+1", "@SUM(A1)", "-2"]
    t = t.set_index("customer_id")
    t.attrs = rfm.attrs
    score_table(bgnbd, None, t, tmp_path / "s.csv", settings=ScoreSettings())
    ids = pd.read_csv(tmp_path / "s.csv", dtype={"customer_id": str})["customer_id"].tolist()
    assert ids == ["'=HYPERLINK(\"http://x\")", "+1", "'@SUM(A1)", "-2"]  # plain numbers stay numbers
    score_table(bgnbd, None, t, tmp_path / "raw.csv", settings=ScoreSettings(), escape=False)
    assert pd.read_csv(tmp_path / "raw.csv", dtype={"customer_id": str})["customer_id"].tolist() == list(t.index)
