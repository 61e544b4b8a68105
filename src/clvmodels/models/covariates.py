"""Static customer covariates: the link layer from parameters, coefficients and a customer's
covariate row to that customer's parameters.

A model class declares ``covariate_links``: per process (the constructor's ``<process>_covariates``)
the parameters the process scales and the sign of the log-linear link

    θ_i = θ · exp(sign · Σ_k γ_{θ,k} z_ik)

(``../shared/reference/models.md``, "Covariates": CLVTools' Pareto/NBD, PyMC-Marketing's BG/NBD,
MBG/NBD and sBG; the analogous forms for Gamma-Gamma and BG/BB are documented on their classes).
:meth:`CovariateLink.individual` maps a parameter dict with the coefficients ``"<param>:<column>"``
and the covariate columns ``"z:<column>"`` of the data to the per-customer parameter dict that the
model's likelihood and formulas read unchanged (they broadcast parameters against customers).

:class:`CovariateDesign` is learned at ``fit`` from the customer table: it validates the named
columns (missing, NaN/inf, non-numeric, constant: errors naming the column, the row count and
examples), one-hot encodes text columns on request (the dropped level, the most frequent, is named),
standardises every design column (coefficients are fitted, penalised and given priors on that scale
and reported on the user's too), and transforms any later table the same way. It is kept on the
model as a plain dict (``covariates_``), so that saved models keep names, levels and scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ClvDataError, data_error
from .rows import unique_rows

#: Prefix of the standardised covariate columns in a model's data dict.
KEY_PREFIX = "z:"
#: Fewest customers per distinct covariate profile, on average, for which formulas are evaluated
#: profile by profile (:func:`profile_groups`) rather than at per-customer parameters.
MIN_PROFILE_ROWS = 8


def key(name: str) -> str:
    """The data-dict key of design column ``name``."""
    return KEY_PREFIX + name


def _missing(frame: pd.DataFrame, sources) -> None:
    missing = [c for c in sources if c not in frame.columns]
    if missing:
        raise ClvDataError(
            f"Covariate column(s) {missing} not found in the customer table ({len(frame):,} rows; columns: "
            f"{list(map(str, frame.columns))[:20]}). Join the covariates by customer id (rfm_summary(..., "
            "covariates=table)) or pass a table that has them; a missing covariate is never taken as 0.")


def _numeric(frame: pd.DataFrame, source: str) -> np.ndarray:
    values = frame[source].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise data_error("Covariates must be finite numbers; found missing or infinite values", column=source,
                         rows=frame.loc[bad, [source]], n_rows=int(bad.sum()),
                         fix="Fill them (e.g. with an indicator column for 'unknown') or leave these customers out.")
    return values


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _labels(frame: pd.DataFrame, source: str) -> np.ndarray:
    series = frame[source]
    bad = series.isna().to_numpy()
    if bad.any():
        raise data_error("A categorical covariate has missing values", column=source, rows=frame.loc[bad, [source]],
                         fix="Give them a level of their own (e.g. 'unknown') or leave these customers out.")
    return series.astype(str).to_numpy()


@dataclass(frozen=True)
class DesignColumn:
    """One column of the design: a numeric covariate, or one indicator of a categorical covariate's level."""

    name: str
    source: str
    level: str | None
    mean: float
    scale: float


@dataclass(frozen=True)
class CovariateDesign:
    """The covariates of a fitted model: design columns (with their standardisation), the sources of each
    process, the dropped level of each encoded column and the equality constraints between coefficients."""

    columns: tuple[DesignColumn, ...]
    processes: dict
    dropped: dict
    constraints: tuple[tuple[str, ...], ...] = ()

    # ------------------------------------------------------------------ learning and transforming
    @classmethod
    def learn(cls, frame: pd.DataFrame, processes: dict[str, list[str]], *, one_hot=False,
              weights: np.ndarray | None = None) -> "CovariateDesign":
        """The design of the covariates named per process in ``processes``, from the customer table ``frame``
        (``weights``: customers per row, so that a pre-aggregated table is standardised as its customers).

        ``one_hot``: ``True`` (every non-numeric column) or a list of columns to encode as indicators,
        dropping the most frequent level (the baseline); any other non-numeric column is refused."""
        w = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
        sources = list(dict.fromkeys(c for cols in processes.values() for c in cols))
        _missing(frame, sources)
        encode = set(sources) if one_hot is True else set(one_hot or ())
        columns, dropped = [], {}
        for source in sources:
            if _is_numeric(frame[source]) and source not in encode:
                columns.append(_standardised(source, None, _numeric(frame, source), w))
                continue
            if source not in encode:
                examples = list(pd.unique(frame[source].astype(str)))[:5]
                raise ClvDataError(
                    f"Covariate column {source!r} is not numeric (e.g. {examples}; {len(frame):,} rows). Pass "
                    f"one_hot=True (or one_hot=[{source!r}]) to encode it as indicators of its levels, the most "
                    "frequent level dropped as the baseline, or encode it yourself.")
            labels = _labels(frame, source)
            levels, codes = np.unique(labels, return_inverse=True)
            counts = np.bincount(codes.ravel(), weights=w, minlength=len(levels))
            if len(levels) < 2:
                raise data_error(f"Categorical covariate has a single level ({levels[0]!r}): its effect is not "
                                 "identified", column=source, n_rows=len(frame), fix="Leave it out.")
            base = str(levels[np.argmax(counts)])
            dropped[source] = base
            for level in levels:
                if level != base:
                    columns.append(_standardised(source, str(level), (labels == level).astype(float), w))
        return cls(tuple(columns), {p: list(c) for p, c in processes.items()}, dropped)

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The standardised design columns of ``frame`` (keys ``"z:<name>"``), checked as at fit; a
        level unseen at fit is an error (its effect is unknown)."""
        _missing(frame, self.sources())
        out, labels = {}, {}
        for source in self.dropped:
            labels[source] = _labels(frame, source)
            known = {c.level for c in self.columns if c.source == source} | {self.dropped[source]}
            unseen = ~np.isin(labels[source], list(known))
            if unseen.any():
                raise data_error(f"Categorical covariate has levels not seen at fit ({sorted(set(labels[source][unseen]))[:5]})",
                                 column=source, rows=frame.loc[unseen, [source]],
                                 fix=f"The model knows the levels {sorted(known)}; map the others to one of them.")
        for c in self.columns:
            raw = (labels[c.source] == c.level).astype(float) if c.level is not None else _numeric(frame, c.source)
            out[key(c.name)] = (raw - c.mean) / c.scale
        return out

    def sources(self) -> list[str]:
        """The customer-table columns the design reads (each once, in order)."""
        return list(dict.fromkeys(c.source for c in self.columns))

    def problems(self, frame: pd.DataFrame) -> pd.Series:
        """Why each row of ``frame`` cannot be transformed (empty string when it can): a missing,
        non-numeric or infinite value of a numeric covariate, a missing or unseen level of an encoded
        one; so that a batch rejects those customers one by one (:meth:`transform` raises instead).
        A missing column is an error, never a zero."""
        _missing(frame, self.sources())
        reason = np.full(len(frame), "", dtype=object)
        for source in self.sources():
            if source in self.dropped:
                known = [c.level for c in self.columns if c.source == source] + [self.dropped[source]]
                values = frame[source]
                missing = values.isna().to_numpy()
                unseen = ~missing & ~np.isin(values.astype(str).to_numpy(), known)
                reason[unseen & (reason == "")] = f"covariate {source} has a level not seen at fit"
            else:
                values = pd.to_numeric(frame[source], errors="coerce").to_numpy(dtype=float)
                missing = ~np.isfinite(values)
            reason[missing & (reason == "")] = f"missing, non-numeric or infinite covariate {source}"
        return pd.Series(reason, index=frame.index, name="reason")

    # ------------------------------------------------------------------ names
    def names(self, process: str) -> list[str]:
        """The design columns of ``process``'s covariates."""
        sources = set(self.processes.get(process, ()))
        return [c.name for c in self.columns if c.source in sources]

    def column(self, name: str) -> DesignColumn:
        return next(c for c in self.columns if c.name == name)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"columns": [vars(c).copy() for c in self.columns], "processes": self.processes,
                "dropped": self.dropped, "constraints": [list(g) for g in self.constraints]}

    @classmethod
    def from_dict(cls, d: dict) -> "CovariateDesign":
        try:
            columns = tuple(DesignColumn(str(c["name"]), str(c["source"]), None if c["level"] is None else str(c["level"]),
                                         float(c["mean"]), float(c["scale"])) for c in d["columns"])
            design = cls(columns, {str(p): [str(s) for s in v] for p, v in d["processes"].items()},
                         {str(k): str(v) for k, v in d["dropped"].items()},
                         tuple(tuple(str(n) for n in g) for g in d.get("constraints", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ClvDataError(f"Invalid covariate design ({type(exc).__name__}: {exc}).") from None
        if not all(np.isfinite(c.mean) and np.isfinite(c.scale) and c.scale > 0 for c in columns):
            raise ClvDataError("Invalid covariate design: every column needs a finite mean and a positive scale.")
        return design

    def with_constraints(self, constraints) -> "CovariateDesign":
        return CovariateDesign(self.columns, self.processes, self.dropped, tuple(tuple(g) for g in constraints))


def _standardised(source: str, level: str | None, values: np.ndarray, weights: np.ndarray) -> DesignColumn:
    """The column standardised by its (customer-weighted) mean and standard deviation."""
    n = len(values)
    mean = float(np.average(values, weights=weights))
    scale = float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))
    name = source if level is None else f"{source}[{level}]"
    if not scale > 1e-12 * max(1.0, abs(mean)):
        raise data_error(f"Covariate is constant (every value {mean:.6g}): its effect is not identified apart from "
                         "the population parameters", column=name, n_rows=n, fix="Leave it out.")
    return DesignColumn(name, source, level, mean, scale)


# ---------------------------------------------------------------------------- the link
@dataclass(frozen=True)
class CovariateLink:
    """Coefficients and per-customer parameters of a model class's ``covariate_links`` and a design.

    ``terms``: ``(param, sign, design columns)`` per linked parameter; ``coefficient_names``: the
    coefficients ``"<param>:<column>"`` in that order; ``free``: per coefficient, the index of the
    free (fitted) coefficient it equals (equality constraints map several to one)."""

    terms: tuple[tuple[str, float, tuple[str, ...]], ...]
    coefficient_names: tuple[str, ...]
    free: tuple[int, ...]
    free_names: tuple[str, ...]

    @classmethod
    def build(cls, links: dict, design: CovariateDesign) -> "CovariateLink":
        terms = []
        for process, targets in links.items():
            names = tuple(design.names(process))
            if names:
                terms += [(param, float(sign), names) for param, sign in targets]
        coefficient_names = tuple(f"{param}:{n}" for param, _, names in terms for n in names)
        free, free_names, group_of = [], [], {}
        for g, group in enumerate(design.constraints):
            for n in group:
                group_of[n] = g
        first = {}
        for name in coefficient_names:
            g = group_of.get(name)
            if g is not None and g in first:
                free.append(first[g])
                free_names[first[g]] += "=" + name
                continue
            free.append(len(free_names))
            free_names.append(name)
            if g is not None:
                first[g] = free[-1]
        return cls(tuple(terms), coefficient_names, tuple(free), tuple(free_names))

    @property
    def n_free(self) -> int:
        return len(self.free_names)

    def coefficients(self, free) -> dict:
        """``{coefficient: value}`` from the free coefficients (numbers, arrays, duals or PyTensor variables)."""
        return {name: free[i] for name, i in zip(self.coefficient_names, self.free)}

    def individual(self, params: dict, data: dict, xp=np) -> dict:
        """Per-customer parameters: ``θ_i = θ · exp(sign · Σ_k γ_{θ,k} z_ik)`` for each linked ``θ``;
        the others and the coefficients' own entries are dropped or passed through unchanged."""
        out = {k: v for k, v in params.items() if ":" not in k}
        for param, sign, names in self.terms:
            eta = 0.0
            for n in names:
                eta = eta + params[f"{param}:{n}"] * data[key(n)]
            out[param] = params[param] * xp.exp(sign * eta)
        return out


def profile_groups(z: dict[str, np.ndarray]) -> list[tuple[dict[str, float], np.ndarray | slice]] | None:
    """The distinct covariate profiles (rows of the equal-length 1-d columns ``z``) with the positions
    of their customers: ``[(profile, rows), ...]``, profiles in first-appearance order, rows increasing
    (a slice where they are contiguous: customers sorted by profile, ``unique_rows(..., sort=True)``).

    Customers of one profile share their parameters (a categorical covariate such as a channel or a
    region has a few profiles), so a formula evaluated per profile sees parameters of shape
    ``(n_draws, 1)`` and shares its work between customers of equal histories as without covariates
    (``per_distinct_pair``, ``per_distinct_draw``). ``None`` where that cannot pay: no covariates, or
    fewer than :data:`MIN_PROFILE_ROWS` customers per profile on average (continuous covariates make
    nearly every profile distinct; per-customer parameters are then evaluated in one pass)."""
    if not z:
        return None
    n = len(next(iter(z.values())))
    profiles, code = unique_rows(z)
    count = len(next(iter(profiles.values())))
    if count > 1 and count * MIN_PROFILE_ROWS > n:
        return None
    order = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[order], np.arange(count + 1))
    groups = []
    for g in range(count):
        rows = order[bounds[g]:bounds[g + 1]]
        if rows[-1] - rows[0] == len(rows) - 1:   # contiguous (rows sorted by profile): a slice, no copy
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        groups.append(({k: float(v[g]) for k, v in profiles.items()}, rows))
    return groups


def per_profile(fn, link: "CovariateLink", params: dict, z: dict[str, np.ndarray], data: dict):
    """``fn(link.individual(params, z), **data)``, evaluated once per covariate profile
    (:func:`profile_groups`) on the customers of that profile, at the profile's parameters, and
    gathered back; at per-customer parameters in one pass where profiles are too many.

    ``data`` holds the customers' 1-d columns (every one sliced by profile) and scalar settings
    (``t``, ``n_max``: passed on). The customers' axis of the result is that of the parameters' last
    axis (``(n_draws, customers)``, or ``(n_draws, customers, k)`` for a pmf table)."""
    groups = profile_groups(z)
    if groups is None:
        return fn(link.individual(params, z), **data)
    n = len(next(iter(z.values())))
    columns = {k for k, v in data.items() if np.ndim(v) == 1 and len(v) == n}
    axis = max(max(np.ndim(v) for v in params.values()) - 1, 0)
    out = None
    for profile, rows in groups:
        value = np.asarray(fn(link.individual(params, profile), **{k: v[rows] if k in columns else v
                                                                   for k, v in data.items()}))
        if len(groups) == 1:
            return value
        value = value.reshape(value.shape + (1,) * (axis + 1 - value.ndim))   # a value per draw only
        if out is None:
            out = np.empty(value.shape[:axis] + (n,) + value.shape[axis + 1:], dtype=value.dtype)
        target = (slice(None),) * axis + (rows,)
        out[target] = np.broadcast_to(value, out[target].shape)
    return out


def resolve_constraints(constraints, coefficient_names, design: CovariateDesign) -> tuple[tuple[str, ...], ...]:
    """Groups of coefficients constrained equal: each entry of ``constraints`` is a list of
    coefficient names (``["alpha:x", "beta:x"]``) or a covariate name (every coefficient of its
    design columns, e.g. CLVTools' ``names.cov.constr``: one coefficient shared by both processes)."""
    groups = []
    for entry in constraints or ():
        if isinstance(entry, str):
            columns = [c.name for c in design.columns if entry in (c.source, c.name)]
            if not columns:
                raise ClvDataError(f"covariate_constraints names {entry!r}, which is not a covariate of this model "
                                   f"(covariates: {sorted({c.source for c in design.columns})}).")
            for col in columns:
                group = tuple(n for n in coefficient_names if n.split(":", 1)[1] == col)
                if len(group) < 2:
                    raise ClvDataError(f"covariate_constraints: {entry!r} has one coefficient only ({group}); "
                                       "a constraint needs two or more (name it on several processes).")
                groups.append(group)
        else:
            group = tuple(map(str, entry))
            unknown = [n for n in group if n not in coefficient_names]
            if unknown or len(group) < 2:
                raise ClvDataError(f"covariate_constraints: {list(group)} must name two or more coefficients of "
                                   f"this model; unknown: {unknown}; coefficients: {list(coefficient_names)}.")
            groups.append(group)
    seen = [n for g in groups for n in g]
    if len(seen) != len(set(seen)):
        raise ClvDataError(f"covariate_constraints: a coefficient is in two groups ({groups}); merge them.")
    return tuple(groups)


def user_scale(design: CovariateDesign, names, values: np.ndarray) -> np.ndarray:
    """Coefficients per unit of the user's column (per indicator for a level): the standardised
    coefficient divided by the column's standard deviation."""
    return np.asarray(values, dtype=float) / np.array([design.column(n.split(":", 1)[1]).scale for n in names])


def lr_test(small, big) -> dict:
    """Likelihood-ratio test of two nested maximum-likelihood fits on the same customers: the
    statistic ``2 (ln L_big − ln L_small)``, its degrees of freedom (the difference in free
    parameters) and the p-value of its asymptotic chi-squared law (Wilks' theorem)."""
    for m in (small, big):
        m._check_fitted()
        if m.method_ != "mle":
            raise ClvDataError(f"lr_test compares maximum-likelihood fits; {type(m).__name__} was fitted by {m.method_!r}.")
    if type(small) is not type(big):
        raise ClvDataError(f"lr_test needs two fits of one model, got {type(small).__name__} and {type(big).__name__}.")
    if small.n_customers_ != big.n_customers_:
        raise ClvDataError(f"lr_test needs fits on the same customers ({small.n_customers_:,} vs {big.n_customers_:,}).")
    df = big.n_free_parameters_ - small.n_free_parameters_
    if df <= 0:
        raise ClvDataError(f"lr_test(small, big): big must have more free parameters than small ({big.n_free_parameters_} "
                           f"vs {small.n_free_parameters_}); swap them?")
    if getattr(small, "covariate_penalty", 0) or getattr(big, "covariate_penalty", 0):
        raise ClvDataError("lr_test needs unpenalised fits (covariate_penalty=0).")
    statistic = 2.0 * (big.log_likelihood_ - small.log_likelihood_)
    return {"statistic": float(statistic), "df": int(df), "p_value": float(stats.chi2.sf(max(statistic, 0.0), df))}


__all__ = ["CovariateDesign", "CovariateLink", "DesignColumn", "KEY_PREFIX", "MIN_PROFILE_ROWS", "key", "lr_test",
           "per_profile", "profile_groups", "resolve_constraints", "user_scale"]
