"""Baseline forecasts of holdout purchases and value, to show what a CLV model adds.

Every baseline follows one small contract, used by :func:`clvmodels.backtest.backtest`:

* ``fit(transactions, calibration_end, *, t=None, time_unit="W", resolution="D")`` learns
  from the transactions up to ``calibration_end`` only (later ones are cut off first, so a baseline
  can never see the holdout) and returns ``self``;
* ``predict(rfm, t)`` returns a frame with ``purchases`` and ``value`` per customer of the
  calibration summary ``rfm`` for the next ``t`` periods (``t``: the prediction window, in ``time_unit``).

Baselines
---------
:class:`NoChangeBaseline`
    Each customer repeats her calibration-period purchase rate ``x / T`` and mean spend.
:class:`RFMScoreBaseline`
    The direct-marketing heuristic: recency, frequency and monetary quintile scores (1-5 each),
    summed; each score's purchases and value are learned from an earlier window of the calibration
    period (scores at the window's start, outcomes within it).
:class:`GradientBoostingBaseline`
    scikit-learn gradient boosting (Poisson loss) on RFM features, trained the same way: features
    from an earlier window, target = the next window's purchases and value.

The windowed baselines learn from a target window of length ``window`` (default: the prediction
window ``t``, at most half of the calibration span) and scale their forecasts by ``t / window``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from .data import TIMESTAMP, as_log
from .errors import ClvDataError, renamed_argument
from .periods import period_end, resolve_resolution
from .rfm import calibration_holdout
from .units import normalize_unit, unit_days
from .validation import require_columns


def _check_rfm(rfm: pd.DataFrame, t: float) -> None:
    require_columns(rfm, ("frequency", "recency", "T"), fix="Build it with calibration_holdout(...).")
    if not np.isfinite(t) or t < 0:
        raise ClvDataError(f"t must be finite and non-negative, got {t!r}.")


def _mean_spend(rfm: pd.DataFrame) -> np.ndarray:
    if "monetary_value" not in rfm.columns:
        return np.full(len(rfm), np.nan)
    return rfm["monetary_value"].to_numpy(dtype=float)


class NoChangeBaseline(BaseEstimator):
    """"No change": every customer keeps her calibration-period purchase rate and mean spend.

    ``purchases = x / T · t`` (0 for customers observed for no time) and
    ``value = purchases · m`` with ``m`` the mean repeat-transaction value.
    """

    name = "no change"

    def fit(self, transactions=None, calibration_end=None, *, t=None, time_unit: str = "W",
            resolution: str = "D", horizon=None) -> "NoChangeBaseline":
        """Nothing to learn; records the time unit. Returns ``self``."""
        renamed_argument(f"{type(self).__name__}.fit", "t", t, "horizon", horizon)
        self.time_unit_ = normalize_unit(time_unit)
        return self

    def predict(self, rfm: pd.DataFrame, t: float) -> pd.DataFrame:
        """Purchases and value in the next ``t`` periods per customer of ``rfm``."""
        _check_rfm(rfm, t)
        x = rfm["frequency"].to_numpy(dtype=float)
        T = rfm["T"].to_numpy(dtype=float)
        rate = np.divide(x, T, out=np.zeros_like(x), where=T > 0)
        purchases = rate * float(t)
        value = purchases * np.nan_to_num(_mean_spend(rfm), nan=0.0)
        return pd.DataFrame({"purchases": purchases, "value": value}, index=rfm.index)


class _WindowBaseline(BaseEstimator):
    """Shared part of the baselines trained on an earlier window of the calibration period."""

    name = "window"

    def __init__(self, *, window: float | None = None):
        self.window = window

    def fit(self, transactions, calibration_end, *, t: float | None = None, time_unit: str = "W",
            resolution: str = "D", horizon: float | None = None):
        """Learn from features at ``calibration_end − window`` and outcomes in the window after.

        Only transactions up to ``calibration_end`` are read. Returns ``self``. (``horizon`` is the
        deprecated name of ``t``.)
        """
        t = renamed_argument(f"{type(self).__name__}.fit", "t", t, "horizon", horizon)
        log = as_log(transactions)
        unit = normalize_unit(time_unit)
        cal_end = pd.Timestamp(calibration_end)
        log = log.loc[log[TIMESTAMP] <= period_end(cal_end, resolve_resolution(resolution))]  # never the holdout
        if len(log) == 0:
            raise ClvDataError(f"No transactions on or before the calibration end {cal_end.date()}.")
        span_days = (cal_end.normalize() - log[TIMESTAMP].min().normalize()).days
        if self.window is not None:
            window_days = float(self.window) * unit_days(unit)
        else:
            window_days = span_days / 2
            if t is not None:
                window_days = min(window_days, float(t) * unit_days(unit))
        window_days = int(round(window_days))
        if window_days < 1 or window_days >= span_days:
            raise ClvDataError(
                f"{type(self).__name__}: the training window ({window_days} days) must be at least one "
                f"day and shorter than the calibration span ({span_days} days); pass window=... in "
                f"{unit} or use a longer calibration period.")
        split = cal_end.normalize() - pd.Timedelta(days=window_days)
        training = calibration_holdout(log, split, cal_end, unit, resolution=resolution, truncate=True)
        self.window_ = window_days / unit_days(unit)
        self.window_start_ = str(split.date())
        self.n_training_ = len(training)
        self.time_unit_ = unit
        self._learn(training)
        return self

    def predict(self, rfm: pd.DataFrame, t: float) -> pd.DataFrame:
        """Purchases and value in the next ``t`` periods per customer of ``rfm`` (scaled by ``t / window``)."""
        if not hasattr(self, "window_"):
            from .errors import NotFittedError

            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit(...) first.")
        _check_rfm(rfm, t)
        purchases, value = self._forecast(rfm)
        scale = float(t) / self.window_
        return pd.DataFrame({"purchases": purchases * scale, "value": value * scale}, index=rfm.index)


def rfm_scores(rfm: pd.DataFrame, n_bins: int = 5) -> pd.DataFrame:
    """Recency, frequency and monetary scores (1..n_bins, higher = better) and their sum.

    Scores are percentile ranks cut into ``n_bins`` equal bins, with ties ranked alike (so the 60%
    of customers with no repeat purchase share one frequency score). Recency is scored on the time
    since the last purchase, ``T − recency`` (more recent = higher score).
    """
    def score(values: np.ndarray) -> np.ndarray:
        pct = pd.Series(values).rank(method="average", pct=True).to_numpy()
        return np.clip(np.ceil(pct * n_bins), 1, n_bins).astype(np.int64)

    x = rfm["frequency"].to_numpy(dtype=float)
    since_last = rfm["T"].to_numpy(dtype=float) - rfm["recency"].to_numpy(dtype=float)
    out = pd.DataFrame({"R": score(-since_last), "F": score(x)}, index=rfm.index)
    out["M"] = score(_mean_spend(rfm)) if "monetary_value" in rfm.columns else 1
    out["score"] = out["R"] + out["F"] + out["M"]
    return out


class RFMScoreBaseline(_WindowBaseline):
    """RFM-score heuristic: customers with the same R+F+M score buy like that score did before.

    Parameters
    ----------
    window
        Length (in the time unit) of the earlier window used to learn each score's purchases and
        value; default: the prediction window ``t``, at most half of the calibration span.
    n_bins
        Number of score levels per dimension (quintiles by default).

    Attributes (after ``fit``)
    --------------------------
    table_ : frame indexed by score with the mean purchases and value in the training window and
        the number of training customers
    """

    name = "RFM score"

    def __init__(self, *, window: float | None = None, n_bins: int = 5):
        super().__init__(window=window)
        self.n_bins = n_bins

    def _learn(self, training: pd.DataFrame) -> None:
        scores = rfm_scores(training, self.n_bins)["score"]
        target = pd.DataFrame({
            "purchases": training["frequency_holdout"].to_numpy(dtype=float),
            "value": training["value_holdout"].to_numpy(dtype=float) if "value_holdout" in training
            else np.nan,
            "score": scores.to_numpy()})
        table = target.groupby("score").agg(purchases=("purchases", "mean"), value=("value", "mean"),
                                            n_customers=("purchases", "size"))
        self.table_ = table
        self.overall_ = (float(target["purchases"].mean()), float(target["value"].mean()))

    def _forecast(self, rfm):
        scores = rfm_scores(rfm, self.n_bins)["score"]
        table = self.table_.reindex(scores.to_numpy())
        purchases = table["purchases"].fillna(self.overall_[0]).to_numpy()
        value = table["value"].fillna(self.overall_[1]).to_numpy()
        return purchases, value


def rfm_features(rfm: pd.DataFrame) -> pd.DataFrame:
    """Features of the gradient-boosting baseline: frequency, recency, T, mean spend, time since the
    last purchase and the calibration purchase rate ``x / T``."""
    x = rfm["frequency"].to_numpy(dtype=float)
    T = rfm["T"].to_numpy(dtype=float)
    r = rfm["recency"].to_numpy(dtype=float)
    return pd.DataFrame({
        "frequency": x, "recency": r, "T": T, "monetary_value": np.nan_to_num(_mean_spend(rfm), nan=0.0),
        "since_last": T - r, "rate": np.divide(x, T, out=np.zeros_like(x), where=T > 0),
    }, index=rfm.index)


class GradientBoostingBaseline(_WindowBaseline):
    """Gradient boosting (``HistGradientBoostingRegressor``, Poisson loss) on RFM features.

    Two regressors, one for purchases and one for value, are trained on features at the start of an
    earlier window and the customers' purchases and value within it; they never see the holdout.

    Parameters
    ----------
    window
        Length of the training window (see :class:`RFMScoreBaseline`).
    max_iter, learning_rate, max_leaf_nodes
        Passed to scikit-learn's ``HistGradientBoostingRegressor``.
    seed
        Seed (early stopping's validation split); ``random_state`` is its deprecated name.
    n_threads
        OpenMP threads of the boosting (default 1: the model is small, and on a busy machine extra
        threads that wait for each other can make a fit 40 times slower); ``None`` for all cores.
    """

    name = "gradient boosting"

    def __init__(self, *, window: float | None = None, max_iter: int = 200, learning_rate: float = 0.05,
                 max_leaf_nodes: int = 15, seed: int | None = 0, n_threads: int | None = 1,
                 random_state: int | None = None):
        super().__init__(window=window)
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.seed = seed
        self.n_threads = n_threads
        self.random_state = random_state  # deprecated name of seed (warns at fit)

    def _regressor(self, y: np.ndarray):
        from sklearn.ensemble import HistGradientBoostingRegressor

        if not np.any(y > 0):
            return None  # nobody bought in the window: the forecast is 0
        return HistGradientBoostingRegressor(
            loss="poisson", max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            random_state=renamed_argument(type(self).__name__, "seed", self.seed, "random_state", self.random_state))

    def _learn(self, training: pd.DataFrame) -> None:
        X = rfm_features(training)
        self.models_ = {}
        targets = {"purchases": training["frequency_holdout"].to_numpy(dtype=float)}
        if "value_holdout" in training.columns:
            targets["value"] = training["value_holdout"].to_numpy(dtype=float)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            for name, y in targets.items():
                reg = self._regressor(y)
                self.models_[name] = reg.fit(X, y) if reg is not None else None

    def _forecast(self, rfm):
        X = rfm_features(rfm)
        out = []
        for name in ("purchases", "value"):
            if name not in self.models_:
                out.append(np.full(len(rfm), np.nan))
            elif self.models_[name] is None:
                out.append(np.zeros(len(rfm)))
            else:
                with threadpool_limits(limits=self.n_threads, user_api="openmp"):
                    out.append(np.maximum(self.models_[name].predict(X), 0.0))
        return out[0], out[1]


def default_baselines(seed: int | None = 0) -> dict[str, object]:
    """The three baselines of the comparison, by name."""
    return {"no change": NoChangeBaseline(), "RFM score": RFMScoreBaseline(),
            "gradient boosting": GradientBoostingBaseline(seed=seed)}
