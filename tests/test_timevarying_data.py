"""Time-varying covariates' data layer: panels and calendars, and the summaries a fit and forecasts read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvmodels import rfm_summary
from clvmodels.datasets import simulate, simulate_seasonal
from clvmodels.errors import ClvDataError
from clvmodels.timevarying import (covariate_calendar, covariate_panel, fourier_terms, future_exposure, holiday_windows,
                                   new_customer_exposure, seasonal_dummies, timevarying_holdout, timevarying_summary)

WEEKS = pd.date_range("2024-01-01", "2024-03-04", freq="7D")   # Mondays


def small_log():
    # customer 1: two purchases on 2024-01-03 (one transaction), a repeat on Saturday 2024-01-20;
    # customer 2: 2024-01-10 and 2024-02-01; customer 3: one purchase on 2024-02-05
    return pd.DataFrame({"customer_id": [1, 1, 1, 2, 2, 3],
                         "timestamp": pd.to_datetime(["2024-01-03 08:00", "2024-01-03 10:00", "2024-01-20", "2024-01-10",
                                                      "2024-02-01", "2024-02-05"], format="ISO8601")})


def small_panel():
    # z = 10 * customer + week number (0 = the week of 2024-01-01), and a second column -z
    rows = [(c, w, 10.0 * c + k) for c in (1, 2, 3) for k, w in enumerate(WEEKS)]
    table = pd.DataFrame(rows, columns=["customer_id", "period", "z"])
    table["minus"] = -table["z"]
    return table


def integral(pieces, gamma, upto=None):
    """Σ length · exp(γ·z) per customer (over pieces ending by ``upto`` when given)."""
    w = pieces.length * np.exp(pieces.z @ np.asarray(gamma))
    if upto is not None:
        w = np.where(pieces.start + pieces.length <= upto[pieces.customer] + 1e-12, w, 0.0)
    return np.bincount(pieces.customer, weights=w, minlength=pieces.n_customers)


def test_pieces_and_purchase_z_by_hand():
    rfm, s = timevarying_summary(small_log(), covariate_panel(small_panel()), observation_end="2024-02-10", amount=None)
    assert rfm["frequency"].tolist() == [1, 1, 0]           # the two purchases of 2024-01-03 are one
    p = s.pieces
    assert p.columns == ("z", "minus") and p.n_customers == 3
    # customer 1, 2024-01-03 (Wednesday) to 2024-02-10 (Saturday): cut at each Monday and at 2024-01-20
    d = 1 / 7
    np.testing.assert_allclose(p.length[p.customer == 0], [5 * d, 1, 5 * d, 2 * d, 1, 1, 5 * d])
    np.testing.assert_allclose(p.z[p.customer == 0, 0], [10, 11, 12, 12, 13, 14, 15])
    np.testing.assert_allclose(p.start[p.customer == 0][3], rfm["recency"].iloc[0])
    # customer 2 from 2024-01-10 (week 1), cut at 2024-02-01 (week 4)
    np.testing.assert_allclose(p.z[p.customer == 1, 0], [21, 22, 23, 24, 24, 25])
    np.testing.assert_allclose(p.length[p.customer == 2], [5 * d])   # customer 3: 2024-02-05 to 2024-02-10
    np.testing.assert_allclose(p.z[p.customer == 2, 0], [35])
    # purchase_z: z at the repeat purchases only (weeks 2 and 4), never at the first
    np.testing.assert_allclose(s.purchase_z, [[12, -12], [24, -24], [0, 0]])
    np.testing.assert_allclose(np.bincount(p.customer, weights=p.length), rfm["T"], rtol=1e-13)


def test_calendar_broadcasts_like_a_panel_of_equal_rows():
    calendar = pd.DataFrame({"z": np.arange(len(WEEKS), dtype=float)}, index=pd.Index(WEEKS, name="period"))
    panel = pd.concat([calendar.reset_index().assign(customer_id=c) for c in ("1", "2", "3")])
    _, a = timevarying_summary(small_log(), covariate_calendar(calendar), observation_end="2024-02-10", amount=None)
    _, b = timevarying_summary(small_log(), covariate_panel(panel), observation_end="2024-02-10", amount=None)
    for f in ("customer", "start", "length", "z"):
        np.testing.assert_array_equal(getattr(a.pieces, f), getattr(b.pieces, f))
    np.testing.assert_array_equal(a.purchase_z, b.purchase_z)


@pytest.fixture(scope="module")
def simulated():
    log = simulate(400, cohort_length=20, observation_length=60, seed=3)
    periods = pd.date_range("2023-12-25", periods=70, freq="7D")
    calendar = pd.concat([fourier_terms(periods, order=1), holiday_windows(periods, ["2024-12-25"], before=7)], axis=1)
    return log, calendar


def test_pieces_tile_each_window(simulated):
    log, calendar = simulated
    rfm, s = timevarying_summary(log, covariate_calendar(calendar), observation_end=None)
    p = s.pieces
    assert np.all(np.diff(p.customer) >= 0) and np.all(p.length > 0)
    np.testing.assert_allclose(np.bincount(p.customer, weights=p.length, minlength=len(rfm)), rfm["T"], rtol=0,
                               atol=1e-12)
    first = np.r_[True, p.customer[1:] != p.customer[:-1]]
    assert np.all(p.start[first] == 0)
    np.testing.assert_allclose(p.start[~first], (p.start + p.length)[np.flatnonzero(~first) - 1], atol=1e-12)
    # each piece lies on one side of recency; the boundaries inside are grid dates or recency
    end = p.start + p.length
    tx = rfm["recency"].to_numpy()[p.customer]
    assert np.all((end <= tx + 1e-12) | (p.start >= tx - 1e-12))
    origin = pd.to_datetime(log.groupby("customer_id")["timestamp"].min().dt.normalize()).to_numpy()
    inner = p.start[~first] * 7 * 86_400e9 + origin[p.customer[~first]].astype("datetime64[ns]").view(np.int64)
    on_grid = np.isin(np.rint(inner / 1e9).astype(np.int64), calendar.index.as_unit("s").asi8)
    assert np.all(on_grid | np.isclose(p.start[~first], tx[~first], atol=1e-12))
    # purchase_z: z of each repeat purchase's week, summed, by brute force
    week = np.searchsorted(calendar.index.as_unit("ns").asi8, log["timestamp"].dt.normalize().astype("datetime64[ns]")
                           .to_numpy().view(np.int64), side="right") - 1
    per_day = pd.DataFrame({"c": log["customer_id"], "d": log["timestamp"].dt.normalize(), "w": week})
    per_day = per_day.drop_duplicates(["c", "d"]).sort_values(["c", "d"])
    per_day = per_day[per_day.duplicated("c")]
    expected = calendar.to_numpy()[per_day["w"]]
    expected = pd.DataFrame(expected).groupby(per_day["c"].to_numpy()).sum().reindex(rfm.index, fill_value=0.0)
    np.testing.assert_allclose(s.purchase_z, expected.to_numpy(), atol=1e-12)
    assert np.all(s.purchase_z[rfm["frequency"].to_numpy() == 0] == 0) and (rfm["frequency"] > 0).sum() > 100


def test_refining_the_grid_leaves_the_integrals_unchanged(simulated):
    log, calendar = simulated
    daily = calendar.reindex(pd.date_range(calendar.index[0], calendar.index[-1] + pd.Timedelta(days=6), freq="D",
                                           name="period"), method="ffill")
    rfm, weekly_s = timevarying_summary(log, covariate_calendar(calendar), observation_end=None)
    _, daily_s = timevarying_summary(log, covariate_calendar(daily), observation_end=None)
    assert len(daily_s.pieces.length) > 5 * len(weekly_s.pieces.length)
    np.testing.assert_allclose(daily_s.purchase_z, weekly_s.purchase_z, atol=1e-12)
    tx = rfm["recency"].to_numpy()
    for gamma in np.random.default_rng(0).normal(size=(5, 3)):
        np.testing.assert_allclose(integral(daily_s.pieces, gamma), integral(weekly_s.pieces, gamma), rtol=1e-12)
        np.testing.assert_allclose(integral(daily_s.pieces, gamma, tx), integral(weekly_s.pieces, gamma, tx), rtol=1e-12)
    fw = future_exposure(rfm, covariate_calendar(calendar), 4.5)
    fd = future_exposure(rfm, covariate_calendar(daily), 4.5)
    np.testing.assert_allclose(np.bincount(fw.customer, weights=fw.length), 4.5, rtol=1e-13)
    np.testing.assert_allclose(integral(fd, [0.3, -1, 2]), integral(fw, [0.3, -1, 2]), rtol=1e-12)


def test_holdout_split_and_future_window(simulated):
    log, calendar = simulated
    path = covariate_calendar(calendar)
    table, s = timevarying_holdout(log, path, "2024-09-30")
    rfm, t = timevarying_summary(log[log["timestamp"] < "2024-10-01"], path, observation_end="2024-09-30")
    pd.testing.assert_frame_equal(table[rfm.columns], rfm, check_like=True)
    for f in ("customer", "start", "length", "z"):
        np.testing.assert_array_equal(getattr(s.pieces, f), getattr(t.pieces, f))
    np.testing.assert_array_equal(s.purchase_z, t.purchase_z)
    # the holdout window (T, T + duration] starts at T and tiles the duration
    f = future_exposure(table, path, table["duration_holdout"])
    first = np.r_[True, f.customer[1:] != f.customer[:-1]]
    np.testing.assert_allclose(f.start[first], table["T"].to_numpy()[f.customer[first]], atol=1e-12)
    np.testing.assert_allclose(np.bincount(f.customer, weights=f.length), table["duration_holdout"], rtol=1e-13)
    # the whole log's pieces up to T + t equal calibration + holdout for a customer covered by both
    _, whole = timevarying_summary(log, path, observation_end=None)
    gamma = np.array([0.5, -0.2, 1.0])
    np.testing.assert_allclose(integral(s.pieces, gamma) + integral(f, gamma),
                               integral(whole.pieces, gamma)[rfm_summary(log).index.isin(table.index)],
                               rtol=1e-12)


def test_new_customer_window():
    calendar = pd.DataFrame({"z": np.arange(len(WEEKS), dtype=float)}, index=pd.Index(WEEKS, name="period"))
    p = new_customer_exposure(covariate_calendar(calendar), ["2024-01-05", "2024-01-01"], [2.0, 1.0])
    assert p.n_customers == 2
    np.testing.assert_allclose(p.length[p.customer == 0], [3 / 7, 1, 4 / 7])
    np.testing.assert_allclose(p.z[p.customer == 0, 0], [0, 1, 2])
    np.testing.assert_allclose(p.length[p.customer == 1], [1])
    with pytest.raises(ClvDataError, match="not covered"):
        new_customer_exposure(covariate_calendar(calendar), "2024-03-01", 3.0)
    with pytest.raises(ClvDataError, match="calendar"):
        new_customer_exposure(covariate_panel(small_panel()), "2024-01-05", 1.0)


def test_calendar_helpers():
    months = seasonal_dummies(WEEKS)
    assert months.attrs["dropped"] == "month[1]" and list(months.columns) == [f"month[{m}]" for m in range(2, 13)]
    assert months.loc["2024-02-05", "month[2]"] == 1 and months.loc["2024-01-29"].sum() == 0
    quarters = seasonal_dummies(pd.date_range("2024-01-01", periods=8, freq="MS"), season="quarter", drop=4)
    assert quarters.attrs["dropped"] == "quarter[4]" and quarters["quarter[2]"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    # Fourier terms: the mean of each term over the period, by quadrature
    days = pd.date_range("2024-01-01", periods=60, freq="7D")
    terms = fourier_terms(days, period=365.25, order=2)
    u = (days.as_unit("s").asi8[:, None] / 86_400 + np.linspace(0, 7, 7001)[None, :])
    w = 2 * np.pi * 2 / 365.25
    np.testing.assert_allclose(terms["fourier_sin2"], np.trapezoid(np.sin(w * u), dx=7 / 7000, axis=1) / 7, atol=1e-9)
    np.testing.assert_allclose(terms["fourier_cos2"], np.trapezoid(np.cos(w * u), dx=7 / 7000, axis=1) / 7, atol=1e-9)
    # holiday windows: Christmas with the week before; Sunday 2024-12-29 alone
    h = holiday_windows(pd.date_range("2024-12-02", periods=6, freq="7D"), ["2024-12-25"], before=7)
    assert h["holiday"].tolist() == [0, 0, 1, 1, 0, 0]
    h = holiday_windows(pd.date_range("2024-12-02", periods=6, freq="7D"), ["2024-12-29"])
    assert h["holiday"].tolist() == [0, 0, 0, 1, 0, 0]
    with pytest.raises(ClvDataError, match="season"):
        seasonal_dummies(WEEKS, season="week")


def test_panel_errors():
    table = small_panel()
    with pytest.raises(ClvDataError, match=r"off the grid '7D'.*period"):
        covariate_panel(pd.concat([table, table.iloc[[0]].assign(period=pd.Timestamp("2024-01-03"))]))
    with pytest.raises(ClvDataError, match=r"more than one row for a customer and period \(2 rows\)"):
        covariate_panel(pd.concat([table, table.iloc[[4]]]))
    with pytest.raises(ClvDataError, match=r"gaps: 1 run\(s\) of missing periods for 1 customer") as err:
        covariate_panel(table.drop(index=[3, 4]))
    assert "2024-01-22" in str(err.value) and "2" in str(err.value)
    with pytest.raises(ClvDataError, match=r"Missing or infinite .* column 'z' \(1 row\)"):
        covariate_panel(table.assign(z=table["z"].where(table.index != 5)))
    with pytest.raises(ClvDataError, match=r"Non-numeric .* column 'z'"):
        covariate_panel(table.assign(z=table["z"].astype(object).where(table.index != 5, "high")))
    with pytest.raises(ClvDataError, match="freq must be a pandas frequency"):
        covariate_panel(table, freq="fortnightly")
    with pytest.raises(ClvDataError, match=r"Column\(s\) \['week'\] not found"):
        covariate_panel(table, period="week")
    # coverage: customer 2's path ends before the observation end; customer 3 has no rows
    short = table[(table["customer_id"] != 2) | (table["period"] < "2024-02-05")]
    with pytest.raises(ClvDataError, match=r"1 customer\(s\) are not covered") as err:
        timevarying_summary(small_log(), covariate_panel(short), observation_end="2024-02-10", amount=None)
    assert "2024-02-05" in str(err.value) and "2" in str(err.value)
    with pytest.raises(ClvDataError, match=r"1 customer\(s\) of the summary have no row .* '3'"):
        timevarying_summary(small_log(), covariate_panel(table[table["customer_id"] != 3]),
                            observation_end="2024-02-10", amount=None)
    with pytest.raises(ClvDataError, match="not covered"):   # a window past the panel's end
        rfm, _ = timevarying_summary(small_log(), covariate_panel(table), observation_end="2024-02-10", amount=None)
        future_exposure(rfm, covariate_panel(table), 10.0)


def test_calendar_errors():
    calendar = pd.DataFrame({"z": np.arange(len(WEEKS), dtype=float)}, index=pd.Index(WEEKS, name="period"))
    with pytest.raises(ClvDataError, match=r"gaps: 1 period"):
        covariate_calendar(calendar.drop(index=WEEKS[3]), freq="7D")
    with pytest.raises(ClvDataError, match="more than one row for a period"):
        covariate_calendar(pd.concat([calendar, calendar.iloc[[2]]]), freq="7D")
    late = calendar.loc["2024-01-15":]
    with pytest.raises(ClvDataError, match=r"2 customer\(s\) are not covered by the calendar") as err:
        timevarying_summary(small_log(), covariate_calendar(late), observation_end="2024-02-10", amount=None)
    assert "before the grid" in str(err.value) and "2024-01-03" in str(err.value)
    with pytest.raises(ClvDataError, match="CovariatePath"):
        timevarying_summary(small_log(), calendar, observation_end="2024-02-10", amount=None)


def test_ids_are_text_labels():
    panel = small_panel().assign(customer_id=lambda t: t["customer_id"].astype(str))
    rfm, s = timevarying_summary(small_log(), covariate_panel(panel), observation_end="2024-02-10", amount=None)
    np.testing.assert_allclose(s.purchase_z[:, 0], [12, 24, 0])
    assert rfm.index.tolist() == [1, 2, 3]


def test_static_covariates_and_summary_arguments():
    static = pd.DataFrame({"customer_id": ["1", "2"], "web": [1.0, 0.0]})
    with pytest.warns(UserWarning, match="no covariates"):
        rfm, s = timevarying_summary(small_log(), covariate_panel(small_panel()), observation_end="2024-02-10",
                                     amount=None, static_covariates=static, covariate_id="customer_id",
                                     missing_covariates="drop")
    assert rfm["web"].tolist() == [1.0, 0.0] and s.pieces.n_customers == 2
    np.testing.assert_allclose(s.purchase_z[:, 0], [12, 24])


def test_simulated_purchases_of_new_customers_match_the_closed_forms():
    """Mean repeat purchases in the first 52 weeks of customers all born at the start: BG/NBD in the
    operational time Λ(t) = Σ length·exp(γz) (FHL 2005 eq. 9 at Λ(t)), and Pareto/NBD without a drop-out
    effect, (r/α) ∫ exp(γz(u)) (β/(β+u))^s du (piecewise closed form), to 4 Monte Carlo standard errors."""
    from scipy.special import hyp2f1

    n, t = 100_000, 52.0
    for model in ("bgnbd", "pareto_nbd"):
        log, calendar, truth = simulate_seasonal(n, model=model, cohort_length=0.0, observation_length=t, seed=1,
                                                 return_truth=True)
        assert set(calendar.columns) == {"fourier_sin1", "fourier_cos1", "holiday"}
        repeat = log.groupby("customer_id").size().reindex(truth.index).to_numpy() - 1
        pieces = new_customer_exposure(covariate_calendar(calendar), "2024-01-01", t)
        m = np.exp(pieces.z @ np.array([0.3, 0.0, 0.7]))       # the default effects
        if model == "bgnbd":
            r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
            tau = float(np.sum(pieces.length * m))
            expected = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tau)) ** r * hyp2f1(r, b, a + b - 1, tau / (alpha + tau)))
            plain = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
        else:
            r, alpha, s, beta = 0.55, 10.58, 0.61, 11.67
            u0, u1 = pieces.start, pieces.start + pieces.length
            alive = beta ** s * ((beta + u1) ** (1 - s) - (beta + u0) ** (1 - s)) / (1 - s)
            expected = r / alpha * float(np.sum(m * alive))
            plain = r / alpha * beta ** s * ((beta + t) ** (1 - s) - beta ** (1 - s)) / (1 - s)
        se = repeat.std() / np.sqrt(n)
        assert abs(repeat.mean() - expected) < 4 * se, (model, repeat.mean(), expected, se)
        assert abs(plain - expected) > 5 * se       # the calendar's effect is far beyond the Monte Carlo error


def test_simulated_dropout_effect_and_errors():
    # a drop-out effect shortens Pareto/NBD lifetimes: the fraction alive after a year falls
    calendar = pd.DataFrame({"promo": np.ones(60)}, index=pd.date_range("2024-01-01", periods=60, freq="7D", name="period"))
    alive = [simulate_seasonal(20_000, calendar, model="pareto_nbd", dropout_coefficients={"promo": g},
                               observation_length=52, cohort_length=0, return_truth=True)[2]["alive"].mean()
             for g in (0.0, np.log(2.0))]
    # P(alive at t) = (β/(β+t))^s, and twice the drop-out rate is a Gamma(s, β/2) rate
    np.testing.assert_allclose(alive, [(11.67 / (11.67 + 52)) ** 0.61, (11.67 / 2 / (11.67 / 2 + 52)) ** 0.61],
                               atol=4 * 0.5 / np.sqrt(20_000))
    with pytest.raises(ClvDataError, match="only purchase_coefficients"):
        simulate_seasonal(10, calendar, dropout_coefficients={"promo": 1.0})
    with pytest.raises(ClvDataError, match="must cover"):
        simulate_seasonal(10, calendar, observation_length=70)
    with pytest.raises(ClvDataError, match=r"Coefficients of \['sale'\]"):
        simulate_seasonal(10, calendar, purchase_coefficients={"sale": 1.0}, observation_length=52)


def test_duckdb_gives_the_same_summaries(simulated, tmp_path):
    pytest.importorskip("duckdb")
    from clvmodels.timevarying import timevarying_summary_duckdb

    log, calendar = simulated
    log = log.assign(customer_id="c" + log["customer_id"].astype(str))   # text ids, as a file holds them
    path = covariate_calendar(calendar)
    file = tmp_path / "log.parquet"
    log.to_parquet(file)
    for cal_end in (None, "2024-09-30"):
        if cal_end is None:
            expected = timevarying_summary(log, path, "2025-02-23")
        else:
            expected = timevarying_holdout(log, path, cal_end, "2025-02-23")
        got = timevarying_summary_duckdb(str(file), path, "2025-02-23", calibration_end=cal_end, threads=1)
        pd.testing.assert_frame_equal(got[0][["frequency", "recency", "T"]], expected[0][["frequency", "recency", "T"]],
                                      check_index_type=False)
        for f in ("customer", "start", "length", "z"):
            np.testing.assert_array_equal(getattr(got[1].pieces, f), getattr(expected[1].pieces, f))
        np.testing.assert_allclose(got[1].purchase_z, expected[1].purchase_z, rtol=1e-15, atol=0)


def test_monthly_calendar_with_its_frequency_inferred():
    months = pd.date_range("2024-01-01", periods=6, freq="MS")
    calendar = pd.DataFrame({"z": np.arange(6.0)}, index=pd.Index(list(months), name="period"))   # no freq attached
    path = covariate_calendar(calendar)
    assert path.freq == "MS" and list(path.periods) == list(months)
    rfm, s = timevarying_summary(small_log(), path, observation_end="2024-02-10", amount=None)
    np.testing.assert_allclose(s.pieces.length[s.pieces.customer == 0], [17 / 7, 12 / 7, 9 / 7])   # cut on Jan 20 and Feb 1
    np.testing.assert_allclose(s.purchase_z[:, 0], [0, 1, 0])


def test_panel_rows_in_any_order_and_ids_of_mixed_types():
    table = small_panel()
    shuffled = table.sample(frac=1.0, random_state=0)
    shuffled["customer_id"] = shuffled["customer_id"].astype(object)
    shuffled.loc[shuffled.index[:5], "customer_id"] = shuffled.loc[shuffled.index[:5], "customer_id"].astype(str)
    _, a = timevarying_summary(small_log(), covariate_panel(table), observation_end="2024-02-10", amount=None)
    _, b = timevarying_summary(small_log(), covariate_panel(shuffled), observation_end="2024-02-10", amount=None)
    for f in ("customer", "start", "length", "z"):
        np.testing.assert_array_equal(getattr(a.pieces, f), getattr(b.pieces, f))
    np.testing.assert_array_equal(a.purchase_z, b.purchase_z)
