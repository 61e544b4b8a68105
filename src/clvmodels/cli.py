"""The ``clvmodels`` command: summarise logs, fit models, score customers, backtest, demo.

::

    clvmodels summarize LOG --out RFM.parquet [--calibration-end DATE] [--time-unit W] [--covariates COV.parquet]
    clvmodels fit RFM.parquet --model bgnbd+gg --method mle --out MODEL_DIR \\
        [--purchase-covariates A,B --dropout-covariates C --spend-covariates D --one-hot A] \\
        [--covariate-constraint a:A=b:A --covariate-penalty 0.1] [--covariates COV.parquet --covariate-id COL]
    clvmodels fit LOG --calendar CAL.csv --purchase-time-varying A,B [--dropout-time-varying C] --model pnbd ...
    clvmodels score MODEL_DIR RFM_OR_LOG --horizon 12 --period M --discount-rate 0.01 \\
        --interval 0.9 --out SCORES.parquet [--covariates COV.parquet] [--calendar CAL.csv]
    clvmodels backtest LOG --calibration-end DATE --out RESULT_DIR [--report REPORT.html]
    clvmodels report LOG --calibration-end DATE --out REPORT.html
    clvmodels demo

Exit codes (for schedulers):

* 0: success;
* 1: internal failure (a bug or an environment problem: the traceback is printed);
* 2: bad input or usage (missing, empty, unreadable or mis-named file, missing column, invalid
  data, unreadable model, bad option, an output that would overwrite an input): one line on
  stderr saying why, the traceback (and example rows) only with ``--debug``;
* 3: the run finished, but some customers were rejected (see the rejects file) and
  ``--allow-rejects`` was not given;
* 130 / 143: interrupted (Ctrl-C / SIGTERM); outputs are left as they were.

Outputs are written to a temporary file and renamed into place, so a failed or killed run leaves
the previous file (or none), never a partial one. An output that resolves to an input or to another
output (through symbolic links or relative paths too) is refused before anything is read. CSV
outputs escape formula-like text cells (a leading ``'`` before ``=``, ``+``, ``-``, ``@``, tab or
carriage return, OWASP's rule against CSV injection); ``--csv-raw`` writes them verbatim.
Progress bars are shown on a terminal; with ``--quiet``, ``--no-progress`` or when stderr is not a
terminal, progress goes to log lines instead (none with ``--quiet``). Warnings are one line each.

``score`` works per customer: invalid rows, duplicate ids, scores that overflow, and (for a raw
log) customers with a bad log row are rejected one by one into the rejects file, with the reason,
and every other customer is scored (read = scored + rejected). ``score --jobs N`` workers die with
the command, whether it ends, fails, gets SIGTERM or is killed (:mod:`clvmodels.workers`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

from .errors import ClvDataError
from .progress import progress_off

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_REJECTS = 3

log = logging.getLogger("clvmodels.cli")

EXIT_CODES = "Exit codes: 0 ok; 1 internal failure; 2 bad input or usage; 130/143 interrupted."
#: ``score`` is the only command that rejects customers (and has --allow-rejects).
SCORE_EXIT_CODES = ("Exit codes: 0 ok; 1 internal failure; 2 bad input or usage; 3 customers rejected "
                    "(see the rejects file) without --allow-rejects; 130/143 interrupted.")
TOP_EXIT_CODES = ("Exit codes: 0 ok; 1 internal failure; 2 bad input or usage; 3 customers rejected "
                  "(score, without --allow-rejects); 130/143 interrupted. 'clvmodels COMMAND --help' for a "
                  "command's options.")

#: The models the commands know, by name: ``(aliases, class name, kind)``. Kept here, not read from
#: the classes, so that ``clvmodels --help`` imports no model (tests/test_cli.py checks it against
#: each class's ``short_names`` and ``display_name``).
MODELS = {
    "BG/NBD": (("bgnbd",), "BetaGeoModel", "purchases, continuous time"),
    "MBG/NBD": (("mbgnbd",), "ModifiedBetaGeoModel", "purchases, continuous time"),
    "Pareto/NBD": (("pnbd", "paretonbd"), "ParetoNBDModel", "purchases, continuous time"),
    "BG/BB": (("bgbb",), "BetaGeoBetaBinomModel", "purchases, discrete opportunities"),
    "Gamma-Gamma": (("gg", "gammagamma"), "GammaGammaModel", "spend"),
    "sBG": (("sbg",), "ShiftedBetaGeoModel", "contractual retention"),
}


def models_help(kinds: tuple[str, ...] = ("purchases",)) -> str:
    """``bgnbd (BG/NBD), pnbd or paretonbd (Pareto/NBD), ...`` for the models of the given kinds."""
    return ", ".join(f"{' or '.join(aliases)} ({name})" for name, (aliases, _, kind) in MODELS.items()
                     if kind.startswith(kinds))


#: Python keyword hints in error messages of the library, as the command's options.
CLI_HINTS = {"(amount=None for a log without values)": "(--no-amount for a log without values)",
             "customer_id=...": "--customer-id COL", "timestamp=...": "--timestamp COL", "amount=...": "--amount COL",
             "date_format=...": "--date-format FMT", "refunds=...": "--refunds", "time_unit=...": "--time-unit",
             "observation_end=...": "--observation-end DATE"}

class UsageError(ClvDataError):
    """An invalid combination of options (exit code 2)."""


class Terminated(BaseException):
    """SIGTERM received: unwinds every ``with`` block (workers stopped, temporary files removed)."""


def _terminate(signum, frame):
    raise Terminated()


# ---------------------------------------------------------------------------- progress and logging
def _interactive(args) -> bool:
    return not args.quiet and not args.no_progress and sys.stderr.isatty()


@contextlib.contextmanager
def progress(args, total: int | None, desc: str, unit: str = "rows"):
    """A callback ``advance(n)``: a tqdm bar on a terminal, else log lines (none with --quiet)."""
    if _interactive(args):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr)
        try:
            yield bar.update
        finally:
            bar.close()
        return
    done = [0]
    start = time.monotonic()

    def advance(n: int) -> None:
        done[0] += n
        of = f" of {total:,}" if total else ""
        log.info("%s: %s%s %s (%.0f s)", desc, f"{done[0]:,}", of, unit, time.monotonic() - start)

    yield advance


@contextlib.contextmanager
def _one_line_warnings(args):
    """Warnings as one line each on stderr (``clvmodels COMMAND: ConvergenceWarning: ...``), without
    Python's file name and source line."""
    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"clvmodels {args.command}: {category.__name__}: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        if not args.quiet:
            warnings.simplefilter("default")
        warnings.showwarning = show
        yield


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is when they are written."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(args) -> None:
    logger = logging.getLogger("clvmodels")
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


# ---------------------------------------------------------------------------- argument parsing
def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    # accepted before and after the subcommand; a subcommand's default must not override the top's
    parser.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="no progress bars or log lines (errors only)")
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="on an error, print the traceback and the example rows")
    parser.add_argument("--no-progress", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="no progress bars (they are shown only on a terminal; log lines stay)")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _csv_raw(parser) -> None:
    parser.add_argument("--csv-raw", action="store_true",
                        help="CSV outputs: write text cells verbatim (default: a leading ' before =, +, -, @, "
                             "tab or CR, against formula injection in spreadsheets)")


def _names(text: str) -> list[str]:
    """An argparse type: comma-separated column names (``a,b``)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def _constraint(text: str) -> list[str] | str:
    """An argparse type: an equality constraint between coefficients, ``a:channel=b:channel`` (two or
    more ``<param>:<column>`` joined by ``=``), or a covariate name alone (``channel``: every coefficient
    of that covariate shared by the processes), as the models' ``covariate_constraints`` take them."""
    parts = [p.strip() for p in text.split("=")]
    if len(parts) == 1 and parts[0] and ":" not in parts[0]:
        return parts[0]
    if len(parts) < 2 or not all(param and sep and column for param, sep, column in (p.partition(":") for p in parts)):
        raise argparse.ArgumentTypeError(
            f"expected two or more coefficients '<param>:<column>' joined by '=' (e.g. 'a:channel=b:channel') or a "
            f"covariate name (one coefficient shared by every process), got {text!r}")
    return parts


def _covariate_options(parser: argparse.ArgumentParser, missing: bool = False):
    """``--covariates FILE`` (a customer-level table joined by id) and ``--covariate-id``, in their group."""
    g = parser.add_argument_group("covariates")
    g.add_argument("--covariates", metavar="FILE",
                   help="customer-level covariate table (.csv or .parquet), one row per customer, joined by id")
    g.add_argument("--covariate-id", default="customer_id", metavar="COL",
                   help="customer id column of --covariates (customer_id); ids match as text")
    if missing:
        g.add_argument("--missing-covariates", choices=["error", "drop"], default="error",
                       help="customers without a row in --covariates: error (default) or drop them (counted)")
    return g


def _read_covariates(args):
    """The table of ``--covariates`` indexed by its ids as text (None without the option)."""
    if args.covariates is None:
        return None
    from .io import read_columns
    from .rfm import covariate_index

    table = read_columns(args.covariates, text_columns=(args.covariate_id,))
    if args.covariate_id not in table.columns:
        raise UsageError(f"--covariates {args.covariates}: no id column {args.covariate_id!r} (it has "
                         f"{', '.join(map(str, table.columns))}); name it with --covariate-id COL.")
    return covariate_index(table, args.covariate_id)


def _join_covariates(args, rfm):
    """``rfm`` (indexed by id) with ``--covariates`` joined (rfm.join_covariates), the counts reported."""
    from .rfm import join_covariates

    table = _read_covariates(args)
    if table is None:
        return rfm
    out = join_covariates(rfm, table, missing=args.missing_covariates)
    log.info("joined %d covariate column(s) from %s: %s customer(s) without covariates%s; %s covariate row(s) "
             "match no customer", table.shape[1], args.covariates, f"{out.attrs['n_without_covariates']:,}",
             " (dropped)" if out.attrs["n_without_covariates"] else "", f"{out.attrs['n_covariates_unmatched']:,}")
    return out


def _time_varying_options(parser: argparse.ArgumentParser, fit: bool = False):
    """``--calendar FILE`` or ``--covariate-panel FILE`` (time-varying covariates on a regular grid), in
    their group; for ``fit`` also the columns each process reads."""
    g = parser.add_argument_group("time-varying covariates")
    source = g.add_mutually_exclusive_group()
    source.add_argument("--calendar", metavar="FILE",
                        help="calendar of time-varying covariates shared by all customers (.csv or .parquet): one row "
                             "per grid period, its start in --period-column" + (
                                 "; the input is then a transaction log" if fit else
                                 ", covering each customer from her first purchase to the end of the horizon"))
    source.add_argument("--covariate-panel", metavar="FILE",
                        help="panel of time-varying covariates: one row per customer (--panel-id) and grid period")
    g.add_argument("--period-column", default="period", metavar="COL", help="period start column (period)")
    g.add_argument("--panel-id", default="customer_id", metavar="COL",
                   help="customer id column of --covariate-panel (customer_id); ids match as text")
    g.add_argument("--grid", default="7D", metavar="FREQ",
                   help="the grid's pandas frequency: 7D (weeks from the first period start), W-MON, D, MS, ... (7D)")
    if fit:
        for process, what in (("purchase", "the purchase rate"), ("dropout", "the drop-out rate (pnbd)")):
            g.add_argument(f"--{process}-time-varying", metavar="COLS", type=_names,
                           help=f"comma-separated time-varying covariates of {what}: columns of --calendar or "
                                "--covariate-panel")
    return g


def _time_varying_file(args) -> tuple[str | None, str | None]:
    """``(option, path)`` of the time-varying covariates given (``(None, None)`` without)."""
    if args.calendar is not None:
        return "--calendar", args.calendar
    if args.covariate_panel is not None:
        return "--covariate-panel", args.covariate_panel
    return None, None


def _read_covariate_path(args, columns=None):
    """The :class:`~clvmodels.timevarying.CovariatePath` of ``--calendar`` or ``--covariate-panel`` with
    ``columns`` (default: all but the period and id), validated (exit 2 naming a missing column)."""
    from .io import read_columns
    from .timevarying import covariate_calendar, covariate_panel

    option, path = _time_varying_file(args)
    panel = option == "--covariate-panel"
    table = read_columns(path, text_columns=(args.panel_id,) if panel else ())
    need = [args.period_column] + ([args.panel_id] if panel else []) + list(columns or [])
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise UsageError(f"{option} {path}: no column(s) {', '.join(map(repr, missing))} (it has "
                         f"{', '.join(map(str, table.columns))}); name the period with --period-column"
                         f"{' and the id with --panel-id' if panel else ''}.")
    if panel:
        return covariate_panel(table, id_column=args.panel_id, period=args.period_column, columns=columns, freq=args.grid)
    return covariate_calendar(table, period=args.period_column, columns=columns, freq=args.grid)


def _log_columns(parser: argparse.ArgumentParser):
    """The options that read a transaction log (its columns, time format, refunds), in their group."""
    g = parser.add_argument_group("transaction log")
    g.add_argument("--customer-id", default="customer_id", metavar="COL", help="customer id column (customer_id)")
    g.add_argument("--timestamp", default="timestamp", metavar="COL", help="purchase time column (timestamp)")
    g.add_argument("--amount", default="amount", metavar="COL", help="purchase value column (amount)")
    g.add_argument("--no-amount", action="store_true", help="the log has no values (purchase models only)")
    g.add_argument("--date-format", metavar="FMT", help="strftime format of text timestamps, e.g. %%Y-%%m-%%d")
    g.add_argument("--refunds", choices=["error", "net", "drop"], default="error",
                   help="negative amounts: error (default), net against the latest earlier purchase, or drop")
    return g


def _log_options(parser: argparse.ArgumentParser) -> None:
    g = _log_columns(parser)
    g.add_argument("--observation-end", metavar="DATE", help="end of observation (default: the last transaction)")
    g.add_argument("--resolution", default="D", help="purchases within one such period count once (D)")
    g.add_argument("--truncate", action="store_true", help="ignore transactions after --observation-end")
    g.add_argument("--engine", choices=["auto", "pandas", "duckdb"], default="auto",
                   help="pandas (in memory) or duckdb (out of core; text timestamps must be ISO or given "
                        "by --date-format); auto: duckdb for files when installed")
    g.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="DuckDB memory cap, e.g. 4GB (checked by DuckDB itself)")


class _Version(argparse.Action):
    """``--version``: the installed version (read from the package metadata only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from ._version import __version__

        print(f"clvmodels {__version__}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit 2), pointing to ``--help`` instead of printing the usage."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clvmodels",
        description="Probabilistic customer lifetime value: summarise transaction logs, fit models, score customers.",
        epilog=TOP_EXIT_CODES,
    )
    _common(parser, top=True)
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("summarize", epilog=EXIT_CODES, aliases=["summarise"], help="RFM summary of a transaction log",
                       description="Per-customer RFM summary (frequency, recency, T, monetary_value) of a "
                                   "transaction log (CSV or Parquet); with --calibration-end, also the "
                                   "holdout behaviour.")
    p.add_argument("log", help="transaction log: .csv or .parquet")
    p.add_argument("--out", required=True, help="output table (.parquet, or .csv)")
    p.add_argument("--calibration-end", metavar="DATE", help="split into calibration and holdout at this date")
    p.add_argument("--time-unit", default="W", help="unit of recency and T (W)")
    p.add_argument("--litt", action="store_true",
                   help="add litt, the sum of log inter-purchase times (needed to fit mbgcnbd, bgcnbd)")
    p.add_argument("--csv", action="store_true", help="write CSV instead of Parquet")
    _csv_raw(p)
    _covariate_options(p, missing=True)
    _log_options(p)
    _common(p)

    p = sub.add_parser("fit", epilog=EXIT_CODES, help="fit a purchase (and spend) model to an RFM table",
                       description="Fit models to an RFM table and save them to a model directory.")
    p.add_argument("rfm", help="RFM table (.parquet or .csv) from 'clvmodels summarize'")
    p.add_argument("--model", default="bgnbd+gg",
                   help="purchase model, optionally +spend model (bgnbd+gg). Purchase models: "
                        f"{models_help(('purchases',))}; spend: {models_help(('spend',))}. BG/BB reads "
                        "frequency, recency and n_periods (opportunities; clvmodels.bgbb_summary); mbgcnbd and bgcnbd "
                        "need the litt column ('summarize --litt')")
    p.add_argument("--method", choices=["mle", "map", "nuts", "advi"], default="mle", help="fit method (mle)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--time-unit", help="unit of the table's recency and T (default: recorded in the Parquet file)")
    p.add_argument("--penalizer", type=finite_float, default=0.0, help="L2 penalty of the MLE (0)")
    p.add_argument("--draws", type=positive_int, default=1000, help="NUTS/ADVI draws per chain (1000)")
    p.add_argument("--tune", type=int, default=1000, help="NUTS tuning steps (1000)")
    p.add_argument("--chains", type=positive_int, default=4, help="NUTS chains (4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    g = _covariate_options(p, missing=True)
    g.add_argument("--id-column", default="customer_id",
                   help="customer id column of the RFM table, to join --covariates (customer_id)")
    for process, what in (("purchase", "the purchase rate"), ("dropout", "drop-out"), ("spend", "the spend model")):
        g.add_argument(f"--{process}-covariates", metavar="COLS", type=_names,
                       help=f"comma-separated covariate columns of {what} (columns of the RFM table or of --covariates)")
    g.add_argument("--one-hot", metavar="COLS", type=_names,
                   help="comma-separated text covariates to encode as indicators of their levels (the most frequent "
                        "dropped as the baseline)")
    g.add_argument("--covariate-constraint", metavar="SPEC", type=_constraint, action="append",
                   help="coefficients constrained equal, 'a:channel=b:channel' (or a covariate name: one coefficient "
                        "shared by every process); repeatable; for the model whose coefficients they are")
    g.add_argument("--covariate-penalty", metavar="LAMBDA", type=finite_float,
                   help="L2 penalty on the standardised coefficients of every model with covariates (MLE; 0)")
    _time_varying_options(p, fit=True)
    _log_options(p)  # the log's, read with --calendar or --covariate-panel
    _common(p)

    p = sub.add_parser("score", epilog=SCORE_EXIT_CODES, help="score customers with a saved model",
                       description="Per-customer expected purchases, P(alive), expected spend and CLV. "
                                   "With --interval, CLV gets the predictive interval of what the customer will "
                                   "actually be worth (clv_lower/clv_upper: process and parameter uncertainty, "
                                   "by simulation), and the expected values get the intervals of their parameter "
                                   "uncertainty (<score>_mean_lower/_mean_upper; --clv-interval expected gives "
                                   "clv_mean_lower/clv_mean_upper instead of the predictive one). Input: an RFM table in "
                                   "the model's time unit, or a transaction log (screened row by row: customers "
                                   "with a bad row are rejected; the rest summarised in the model's time unit). "
                                   "Customers that cannot be scored are listed in the rejects file.")
    p.add_argument("model_dir", help="model directory from 'clvmodels fit'")
    p.add_argument("input", help="RFM table or transaction log (.csv or .parquet)")
    p.add_argument("--out", required=True, help="scores table (.parquet, or .csv)")
    p.add_argument("--horizon", type=positive_int, default=12, help="number of periods ahead (12)")
    p.add_argument("--period", default=None,
                   help="length of one discounting period: h, D, W, M, Q, Y (M: months); the data's time "
                        "unit is the model's")
    p.add_argument("--time-unit", dest="deprecated_time_unit", default=None, metavar="PERIOD",
                   help="deprecated name of --period")
    p.add_argument("--discount-rate", type=finite_float, default=0.01,
                   help="discount rate per period, > -1 (0.01)")
    p.add_argument("--interval", type=finite_float, default=None,
                   help="add interval columns of this width, e.g. 0.9: clv_lower/clv_upper (predictive) and "
                        "<score>_mean_lower/_mean_upper (expected values)")
    p.add_argument("--clv-interval", choices=["predictive", "expected"], default="predictive",
                   help="what the CLV interval describes: predictive (default: the customer's realised value, "
                        "clv_lower/clv_upper) or expected (parameter uncertainty of the expected value only, "
                        "clv_mean_lower/clv_mean_upper)")
    p.add_argument("--draws", type=positive_int, default=200, help="parameter draws for intervals (200)")
    p.add_argument("--samples", type=positive_int, default=1000,
                   help="simulated futures per customer for the predictive CLV interval (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameter draws (0)")
    p.add_argument("--period-length", type=finite_float, help="length of one period in the model's time unit")
    p.add_argument("--csv", action="store_true", help="write CSV instead of Parquet")
    _csv_raw(p)
    p.add_argument("--rejects", help="rejects table (default: <out>.rejects.parquet / .csv)")
    p.add_argument("--allow-rejects", action="store_true", help="exit 0 even when customers were rejected")
    p.add_argument("--id-column", default="customer_id", help="customer id column of an RFM table (customer_id)")
    p.add_argument("--segment-col", metavar="COL",
                   help="a column of the input naming each customer's segment: also write per segment the "
                        "customers, P(alive) and the sums of the expected scores to <out>.segments.parquet "
                        "(.csv); a log's customer takes her last row's segment")
    _covariate_options(p)
    _time_varying_options(p)
    p.add_argument("--chunk-rows", type=positive_int, default=100_000, help="customers per chunk (100000)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="worker processes scoring chunks in parallel; they die with this process (1)")
    _log_options(p)
    _common(p)

    p = sub.add_parser("backtest", epilog=EXIT_CODES, help="fit on a calibration period and score the holdout",
                       description="Backtest purchase models on a transaction log (clvmodels.backtest).")
    _backtest_options(p)
    p.add_argument("--out", required=True, help="directory for the result tables (Parquet)")
    p.add_argument("--report", help="also write the HTML comparison report here")
    _common(p)

    p = sub.add_parser("report", epilog=EXIT_CODES, help="backtest and write the HTML CLV report",
                       description="Backtest purchase models and write the CLV report (one HTML file): which model "
                                   "to use and why, the customer base's value over the horizon with its interval, "
                                   "active customers, segments, top customers and the backtest's details "
                                   "(clvmodels.clv_report; a log without amounts gets the comparison report).")
    _backtest_options(p)
    p.add_argument("--out", required=True, help="report file (.html)")
    p.add_argument("--title", help="report title")
    p.add_argument("--horizon", type=positive_int, default=12, help="CLV horizon in periods (12)")
    p.add_argument("--clv-period", default="M",
                   help="length of one CLV period of --horizon: D, W, M, Q, Y (M: months)")
    p.add_argument("--discount-rate", type=finite_float, default=0.01, help="discount rate per period (0.01)")
    p.add_argument("--currency", default="$", help="prefix of money amounts in the report ($)")
    p.add_argument("--segments-out", metavar="FILE", help="also write the segment table here (.csv or .parquet)")
    _common(p)

    p = sub.add_parser("demo", epilog=EXIT_CODES, help="CDNOW end to end: fit BG/NBD + Gamma-Gamma, show the top customers",
                       description="Run the CDNOW demo (clvmodels.demo).")
    p.add_argument("--top", type=int, default=10, help="number of customers to show (10)")
    p.add_argument("--sample", action="store_true", help="use the 2,357-customer sample")
    _common(p)
    return parser


#: The baselines of ``--baselines`` (clvmodels.baselines.default_baselines' names, without spaces).
BASELINES = {"nochange": "no change", "rfm": "RFM score", "gbm": "gradient boosting"}


def _backtest_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", help="transaction log (.csv or .parquet)")
    p.add_argument("--calibration-end", required=True, metavar="DATE", help="last day of the calibration period")
    p.add_argument("--observation-end", metavar="DATE",
                   help="end of the holdout when --holdout is not given (default: the last transaction)")
    p.add_argument("--holdout", type=finite_float,
                   help="holdout length in --time-unit (default: to --observation-end)")
    p.add_argument("--models", default="bgnbd",
                   help="comma-separated purchase models (bgnbd), of one kind: continuous time, "
                        f"{models_help(('purchases, continuous',))}; or discrete opportunities, "
                        f"{models_help(('purchases, discrete',))} (then --period is the opportunity)")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help=f"comma-separated baselines to compare with, or none ({','.join(BASELINES)}: no change, "
                        "RFM score, gradient boosting; continuous-time models)")
    p.add_argument("--interval", type=finite_float, default=0.9,
                   help="level of the predictive intervals and of the total's interval (0.9)")
    p.add_argument("--time-unit", default="W", help="unit of T, recency and --holdout (W)")
    p.add_argument("--period", default="Y",
                   help="discrete models (bgbb): the calendar period of one transaction opportunity (Y)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    _log_columns(p)


# ---------------------------------------------------------------------------- helpers
def _amount(args):
    return None if args.no_amount else args.amount


def _out_format(path: str, csv: bool) -> str:
    return "csv" if csv or path.lower().endswith(".csv") else "parquet"


def _use_duckdb(args, source) -> bool:
    if args.engine == "pandas" or not isinstance(source, (str, Path)):
        return False
    from .scale import duckdb_available

    if args.engine == "duckdb" and not duckdb_available():
        raise UsageError("--engine duckdb needs the 'duckdb' package: pip install 'clvmodels[scale]'.")
    return duckdb_available()


def summarise_log(args, source, time_unit: str, calibration_end=None):
    """The RFM frame of a log file, by DuckDB or pandas (``args``: the log options)."""
    common = dict(time_unit=time_unit, resolution=args.resolution, truncate=args.truncate,
                  litt=getattr(args, "litt", False))
    load = dict(customer_id=args.customer_id, timestamp=args.timestamp, amount=_amount(args),
                date_format=args.date_format, refunds=args.refunds)
    if _use_duckdb(args, source):
        from .scale import calibration_holdout_duckdb, rfm_summary_duckdb

        extra = dict(memory_limit=args.memory_limit)
        if calibration_end is not None:
            return calibration_holdout_duckdb(source, calibration_end, args.observation_end, **common, **load, **extra)
        return rfm_summary_duckdb(source, args.observation_end, **common, **load, **extra)
    from .data import load_transactions
    from .rfm import calibration_holdout, rfm_summary

    frame = load_transactions(source, **load)
    if calibration_end is not None:
        return calibration_holdout(frame, calibration_end, args.observation_end, **common)
    return rfm_summary(frame, args.observation_end, **common)


def _resolve_model(name: str):
    """A model class by one of its ``short_names`` (e.g. ``bgnbd``) or its class name."""
    import importlib

    from .models.registry import model_classes

    importlib.import_module(".models", __package__)  # defines, and so registers, the model classes

    classes = model_classes()
    by_name = {alias: cls for cls in classes.values() for alias in cls.short_names}
    by_name |= {k.lower(): cls for k, cls in classes.items()}
    cls = by_name.get(name.strip().lower().replace("/", "").replace("-", "").replace("_", ""))
    if cls is None:
        raise UsageError(f"Unknown model {name!r}; known: {models_help(('purchases', 'spend', 'contractual'))}.")
    return cls


def _model_pair(spec: str):
    """The purchase and (optional) spend model classes of ``--model purchase[+spend]``."""
    from .models import PurchaseModel, SpendModel

    names = spec.split("+")
    if len(names) > 2:
        raise UsageError(f"--model takes a purchase model and optionally a spend model (e.g. bgnbd+gg), got {spec!r}.")
    purchase_cls = _resolve_model(names[0])
    spend_cls = _resolve_model(names[1]) if len(names) == 2 else None
    if not issubclass(purchase_cls, PurchaseModel):
        raise UsageError(f"--model {spec!r}: {names[0]!r} is a {purchase_cls.kind_name}; give a purchase model "
                         "first (e.g. bgnbd+gg).")
    if spend_cls is not None and not issubclass(spend_cls, SpendModel):
        raise UsageError(f"--model {spec!r}: {names[1]!r} after '+' is not a spend model; the second model "
                         "must be one (e.g. bgnbd+gg).")
    return purchase_cls, spend_cls


def _check_outputs(inputs: dict, files: dict | None = None, directories: dict | None = None) -> None:
    """Refuse outputs that resolve to an input or to each other (exit 2, before reading anything)."""
    from .io import check_outputs

    check_outputs(inputs, files or {}, directories)


# ---------------------------------------------------------------------------- commands
def cmd_summarize(args) -> int:
    from .io import write_table

    _check_outputs({"the log": args.log} | ({"--covariates": args.covariates} if args.covariates else {}),
                   {"--out": args.out})
    start = time.monotonic()
    rfm = _join_covariates(args, summarise_log(args, args.log, args.time_unit, args.calibration_end))
    fmt = _out_format(args.out, args.csv)
    write_table(rfm, args.out, fmt=fmt, escape=not args.csv_raw)
    log.info("summarised %s customers in %.1f s -> %s", f"{len(rfm):,}", time.monotonic() - start, args.out)
    print(f"customers: {len(rfm):,}; repeat buyers: {int((rfm['frequency'] > 0).sum()):,}; wrote {args.out}")
    return EXIT_OK


def cmd_fit(args) -> int:
    from .io import read_columns, table_attrs
    from .scoring import input_columns
    from .models.persistence import save_models
    from .units import normalize_unit

    option, tv_file = _time_varying_file(args)
    _check_outputs({"the RFM table" if tv_file is None else "the log": args.rfm}
                   | ({"--covariates": args.covariates} if args.covariates else {})
                   | ({option: tv_file} if tv_file else {}), directories={"--out": args.out})
    purchase_cls, spend_cls = _model_pair(args.model)
    covariate_settings = _covariate_settings(args, purchase_cls, spend_cls)
    tv_settings = _time_varying_settings(args)
    columns = list(dict.fromkeys(input_columns(purchase_cls, spend_cls) + list(purchase_cls.fit_columns)))
    summary = None
    if tv_file is not None:
        rfm, summary = _time_varying_summary(args, tv_settings)
        unit, attrs = rfm.attrs["time_unit"], rfm.attrs
        rfm = _join_covariates(args, rfm)
    else:
        attrs = table_attrs(args.rfm)
        unit = args.time_unit or attrs.get("time_unit")
        if unit is None:
            raise UsageError(f"{args.rfm!r} does not record its time unit (CSV tables cannot): pass --time-unit W (or D, "
                             "M, ...).")
        named = list(dict.fromkeys(c for kw in covariate_settings.values() for k, v in kw.items()
                                   if k.endswith("_covariates") for c in v))
        if args.covariates is None:
            rfm = read_columns(args.rfm, columns + named)  # refuses missing columns
        else:
            rfm = read_columns(args.rfm, [args.id_column] + columns, text_columns=(args.id_column,))
            rfm = _join_covariates(args, rfm.set_index(args.id_column))
    unit = normalize_unit(unit)
    rfm.attrs["time_unit"] = unit
    settings = dict(method=args.method, penalizer=args.penalizer, draws=args.draws, tune=args.tune,
                    chains=args.chains, seed=args.seed, progressbar=_interactive(args))
    models = {}
    start = time.monotonic()
    log.info("fitting %s (%s) on %s customers", purchase_cls.__name__, args.method, f"{len(rfm):,}")
    purchase = purchase_cls(**_accepted(purchase_cls, settings), **covariate_settings["purchase"], **tv_settings)
    models["purchase"] = purchase.fit(rfm, **({} if summary is None else {"time_varying": summary}))
    if spend_cls is not None:
        log.info("fitting %s (%s)", spend_cls.__name__, args.method)
        spend_settings = _accepted(spend_cls, {**settings, "exclude_invalid": True}) | covariate_settings["spend"]
        models["spend"] = spend_cls(**spend_settings).fit(rfm)
    metadata = {"model": args.model, "method": args.method, "source": str(args.rfm), "time_unit": unit,
                "resolution": attrs.get("resolution"), "n_customers": len(rfm)}
    if tv_file is not None:
        metadata["time_varying"] = {"option": option, "file": str(tv_file), "period_column": args.period_column,
                                    "grid": args.grid, "observation_end": str(attrs["observation_end"])}
    save_models(models, args.out, metadata=metadata)
    log.info("fitted in %.1f s -> %s", time.monotonic() - start, args.out)
    if not args.quiet:
        for role, model in models.items():
            print(f"{role}: {model}")
            print(model.summary().to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {args.out}")
    return EXIT_OK


def _time_varying_settings(args) -> dict[str, list[str]]:
    """The purchase model's ``<process>_time_varying`` from ``--<process>-time-varying``, given exactly when
    ``--calendar`` or ``--covariate-panel`` is (a usage error otherwise)."""
    out = {f"{p}_time_varying": getattr(args, f"{p}_time_varying") for p in ("purchase", "dropout")
           if getattr(args, f"{p}_time_varying") is not None}
    option, _ = _time_varying_file(args)
    if out and option is None:
        raise UsageError("--purchase-time-varying / --dropout-time-varying name columns of a covariate path: give it "
                         "with --calendar FILE or --covariate-panel FILE (the input is then the transaction log).")
    if option is not None and not out:
        raise UsageError(f"{option} is given, but no --purchase-time-varying or --dropout-time-varying names its "
                         "columns the model reads.")
    if option is not None and args.covariates is not None and args.missing_covariates != "error":
        raise UsageError("--missing-covariates drop with time-varying covariates: the summary is built from the log "
                         "for every customer; give every customer a row in --covariates.")
    return out


def _time_varying_summary(args, tv_settings: dict):
    """``(rfm, summary)`` of the log ``args.rfm`` with the covariate path of ``--calendar`` or
    ``--covariate-panel`` (:func:`~clvmodels.timevarying.timevarying_summary`, or its DuckDB twin)."""
    from .timevarying import timevarying_summary, timevarying_summary_duckdb

    path = _read_covariate_path(args, list(dict.fromkeys(c for cols in tv_settings.values() for c in cols)))
    unit = args.time_unit or "W"
    common = dict(resolution=args.resolution, truncate=args.truncate, customer_id=args.customer_id,
                  timestamp=args.timestamp, amount=_amount(args), date_format=args.date_format, refunds=args.refunds)
    log.info("summarising the transaction log %s with the time-varying covariates of %s", args.rfm,
             args.calendar or args.covariate_panel)
    if _use_duckdb(args, args.rfm):
        return timevarying_summary_duckdb(args.rfm, path, args.observation_end, unit, memory_limit=args.memory_limit,
                                          **common)
    from .data import load_transactions

    load = {k: common.pop(k) for k in ("customer_id", "timestamp", "amount", "date_format", "refunds")}
    return timevarying_summary(load_transactions(args.rfm, **load), path, args.observation_end, unit, **common)


def _covariate_settings(args, purchase_cls, spend_cls) -> dict[str, dict]:
    """The covariate parameters of each model (``purchase``, ``spend``) from ``--<process>-covariates``
    and ``--one-hot``; a process the model does not have is a usage error, never ignored."""
    out = {"purchase": {}, "spend": {}}
    for process in ("purchase", "dropout", "spend"):
        names = getattr(args, f"{process}_covariates")
        if names is None:
            continue
        role, cls = ("spend", spend_cls) if process == "spend" else ("purchase", purchase_cls)
        if cls is None or f"{process}_covariates" not in cls._get_param_names():
            have = [] if cls is None else [p for p in cls._get_param_names() if p.endswith("_covariates")]
            raise UsageError(f"--{process}-covariates: the {role} model of --model {args.model} "
                             f"{'is not given' if cls is None else 'has no such process'}"
                             f"{'' if not have else ' (it takes ' + ', '.join('--' + p.replace('_', '-') for p in have) + ')'}.")
        out[role][f"{process}_covariates"] = names
    for option, given in (("--one-hot names columns to encode", args.one_hot),
                          ("--covariates joins a covariate table", args.covariates),
                          ("--covariate-constraint ties coefficients", args.covariate_constraint),
                          ("--covariate-penalty shrinks coefficients", args.covariate_penalty is not None)):
        if given and not any(out.values()):
            raise UsageError(f"{option}, but no --purchase-covariates, --dropout-covariates or --spend-covariates "
                             "names the covariates of the models.")
    if args.covariate_penalty is not None and args.covariate_penalty < 0:
        raise UsageError(f"--covariate-penalty must be >= 0, got {args.covariate_penalty:g}.")
    classes = {"purchase": purchase_cls, "spend": spend_cls}
    for spec in args.covariate_constraint or ():
        role = _constraint_model(spec, out, classes)
        out[role].setdefault("covariate_constraints", []).append(spec)
    for kw in out.values():
        if kw and args.one_hot:
            kw["one_hot"] = args.one_hot
        if kw and args.covariate_penalty is not None:
            kw["covariate_penalty"] = args.covariate_penalty
    return out


def _constraint_model(spec, covariates: dict[str, dict], classes: dict) -> str:
    """Which model (``purchase`` or ``spend``) a ``--covariate-constraint`` is for: the first with
    covariates whose linked parameters include every coefficient's (or, for a covariate name, that
    names the covariate); a usage error when none does."""
    linked, named = {}, {}
    for role, kw in covariates.items():
        if kw:
            linked[role] = sorted({p for targets in classes[role].covariate_links.values() for p, _ in targets})
            named[role] = [c for k, v in kw.items() if k.endswith("_covariates") for c in v]
    for role in linked:
        if spec in named[role] if isinstance(spec, str) else {n.partition(":")[0] for n in spec} <= set(linked[role]):
            return role
    text = spec if isinstance(spec, str) else "=".join(spec)
    raise UsageError(f"--covariate-constraint {text!r} does not name coefficients of one model with covariates "
                     f"(the parameters their covariates scale: {linked}; their covariates: {named}).")


def _accepted(cls, settings: dict) -> dict:
    names = set(cls._get_param_names())
    return {k: v for k, v in settings.items() if k in names}


def _score_period(args) -> str:
    """``--period``, or the deprecated ``--time-unit`` (with a notice on stderr)."""
    old = args.deprecated_time_unit
    if old is None:
        return args.period or "M"
    print("clvmodels score: --time-unit is deprecated here (it is the discounting period): use --period "
          f"{old}.", file=sys.stderr)
    if args.period is not None and args.period != old:
        raise UsageError(f"--period {args.period} and the deprecated --time-unit {old} disagree: give --period only.")
    return old


def _screened_summary(args, purchase):
    """The RFM frame of the log ``args.input`` in the model's time unit, summarised from the rows of
    the customers without a bad row, and the :class:`~clvmodels.log_screening.LogScreen` (rejects)."""
    import pandas as pd

    from .io import scratch_directory
    from .log_screening import screen_log

    unit = getattr(purchase, "time_unit_", None)
    if unit is None:
        raise UsageError("The model does not record its time unit, so a log cannot be summarised for it: "
                         "summarise the log first (clvmodels summarize) and score the RFM table.")
    log.info("screening and summarising the transaction log %s (time unit %s)", args.input, unit)
    with scratch_directory(args.out) as scratch:
        screened = screen_log(args.input, scratch, customer_id=args.customer_id, timestamp=args.timestamp,
                              amount=_amount(args), date_format=args.date_format, refunds=args.refunds,
                              observation_end=args.observation_end, truncate=args.truncate,
                              chunk_rows=args.chunk_rows)
        if screened.path is None:  # every customer rejected
            empty = pd.DataFrame(columns=["frequency", "recency", "T", "monetary_value"],
                                 index=pd.Index([], name=args.id_column, dtype=object))
            empty.attrs["time_unit"] = unit
            return empty, screened
        return summarise_log(args, screened.path, unit), screened


def cmd_score(args) -> int:
    from .io import count_rows, table_attrs, table_columns
    from .models.persistence import load_models
    from .scoring import ScoreSettings, companion_path, default_rejects_path, input_columns, score_table
    from .validation import check_time_unit

    settings = ScoreSettings(horizon=args.horizon, period=_score_period(args), discount_rate=args.discount_rate,
                             interval=args.interval, n_draws=args.draws, seed=args.seed,
                             period_length=args.period_length, clv_interval=args.clv_interval,
                             n_samples=args.samples)
    fmt = _out_format(args.out, args.csv)
    rejects = args.rejects or default_rejects_path(args.out, fmt)
    segments_path = None if args.segment_col is None else companion_path(args.out, fmt, "segments")
    option, tv_file = _time_varying_file(args)
    _check_outputs({"the model directory": args.model_dir, "the input": args.input}
                   | ({"--covariates": args.covariates} if args.covariates else {})
                   | ({option: tv_file} if tv_file else {}),
                   {"--out": args.out, "--rejects": rejects} | ({"--segment-col's table": segments_path}
                                                               if segments_path else {}))
    models, meta = load_models(args.model_dir)
    if "purchase" not in models:
        raise ClvDataError(f"{args.model_dir!r} holds no purchase model (it has {sorted(models)}).")
    purchase, spend = models["purchase"], models.get("spend")
    path = _score_covariate_path(args, purchase)
    columns = table_columns(args.input)
    if args.segment_col is not None and args.segment_col not in columns:
        raise UsageError(f"--segment-col {args.segment_col}: {args.input!r} has no such column; it has "
                         f"{', '.join(map(str, columns))}.")
    screened = None
    if all(c in columns for c in input_columns(purchase)):
        if check_time_unit(purchase, table_attrs(args.input), model_resolution=meta.get("resolution")) is None:
            log.warning("%s records no time unit (CSV tables cannot): it is taken to be the model's (%s); "
                        "the mismatch check was skipped.", args.input, getattr(purchase, "time_unit_", None))
        source, total = args.input, count_rows(args.input)
        log.info("scoring the RFM table %s", args.input)
    else:
        source, screened = _screened_summary(args, purchase)
        total = len(source)
    with progress(args, total, "scoring", "customers") as advance:
        counts = score_table(purchase, spend, source, args.out, settings=settings, rejects=rejects, fmt=fmt,
                             id_column=args.id_column, chunk_rows=args.chunk_rows, progress=advance,
                             jobs=args.jobs, escape=not args.csv_raw,
                             prior_rejects=None if screened is None else screened.rejects,
                             covariates=_read_covariates(args), time_varying=path)
    if screened is not None:
        for line in screened.summary():
            log.warning("rejected: %s", line)
    print(f"read: {counts.read:,}; scored: {counts.scored:,}; rejected: {counts.rejected:,}; "
          f"wrote {args.out} and {rejects}")
    if segments_path is not None:
        _write_segments(args, segments_path, fmt, id_column=args.id_column if screened is None else args.customer_id)
        print(f"wrote {segments_path}")
    if counts.rejected:
        for reason, n in sorted(counts.reasons.items(), key=lambda kv: -kv[1]):
            log.warning("rejected %s customer(s): %s", f"{n:,}", reason)
        if not args.allow_rejects:
            print(f"{counts.rejected:,} customer(s) rejected (see {rejects}); pass --allow-rejects to accept.",
                  file=sys.stderr)
            return EXIT_REJECTS
    return EXIT_OK


def _score_covariate_path(args, purchase):
    """The covariate path of ``--calendar`` / ``--covariate-panel`` with the purchase model's time-varying
    columns (None for a model without; a usage error when one is given for a model without, or missing)."""
    from .models.timevarying import design_of

    option, tv_file = _time_varying_file(args)
    if not purchase.has_time_varying:
        if option is not None:
            raise UsageError(f"{option}: the purchase model has no time-varying covariates; leave it out.")
        return None
    columns = list(design_of(purchase).columns)
    if option is None:
        raise UsageError(f"The purchase model has time-varying covariates ({', '.join(columns)}): give their future "
                         "path with --calendar FILE (or --covariate-panel FILE), covering each customer from her first "
                         "purchase to the end of the horizon.")
    return _read_covariate_path(args, columns)


def _backtest_models(args) -> tuple[dict, bool]:
    """The models of ``--models`` by name, and whether they are discrete-opportunity models (all or
    none: a usage error otherwise)."""
    from .models import DiscretePurchaseModel, PurchaseModel

    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--models names no model; give one or more of: {models_help()}.")
    classes = {name: _resolve_model(name) for name in names}
    for name, cls in classes.items():
        if not issubclass(cls, PurchaseModel):
            raise UsageError(f"--models {name!r} is a {cls.kind_name}: a backtest compares purchase models "
                             f"({models_help()}).")
    discrete = {name for name, cls in classes.items() if issubclass(cls, DiscretePurchaseModel)}
    if discrete and len(discrete) < len(classes):
        raise UsageError(f"--models mixes discrete-opportunity ({', '.join(sorted(discrete))}) and continuous-time "
                         "models: backtest them separately.")
    return {name: cls() for name, cls in classes.items()}, bool(discrete)


def _baselines(args, seed: int) -> dict:
    """The baselines of ``--baselines`` (``none``: no baseline)."""
    from .baselines import default_baselines

    names = [n.strip().lower() for n in args.baselines.split(",") if n.strip()]
    if names == ["none"]:
        return {}
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UsageError(f"--baselines: unknown {', '.join(map(repr, unknown))}; known: {', '.join(BASELINES)} "
                         "or none.")
    available = default_baselines(seed)
    return {BASELINES[n]: available[BASELINES[n]] for n in names}


def _write_segments(args, path: str, fmt: str, id_column: str) -> None:
    """The per-segment table of ``score --segment-col`` (:func:`~clvmodels.scoring.segment_summary`),
    from the scores written and the input's segment column, written atomically next to them."""
    from .io import read_columns, write_table
    from .scoring import segment_summary

    scores = read_columns(args.out, text_columns=(args.id_column,))
    scores.index = scores.pop(args.id_column).astype(str)
    members = read_columns(args.input, [id_column, args.segment_col], text_columns=(id_column,))
    members = members.drop_duplicates(id_column, keep="last")  # a log: her last row's segment
    segments = members.set_index(members[id_column].astype(str))[args.segment_col]
    write_table(segment_summary(scores, segments), path, fmt=fmt, escape=not args.csv_raw)


def _backtest_log(args):
    from .data import load_transactions
    from .io import table_format  # noqa: F401  (validates the extension early)

    table_format(args.log)
    return load_transactions(args.log, customer_id=args.customer_id, timestamp=args.timestamp,
                             amount=_amount(args), date_format=args.date_format, refunds=args.refunds)


def _run_backtest(args, frame=None):
    """The backtest of ``--models`` (and ``--baselines``) on the log (``frame``: already loaded)."""
    from .backtest import backtest, discrete_backtest

    models, discrete = _backtest_models(args)
    baselines = _baselines(args, args.seed)
    frame = _backtest_log(args) if frame is None else frame
    if discrete:
        t = None if args.holdout is None else int(args.holdout)
        return discrete_backtest(frame, models, calibration_end=args.calibration_end, t=t,
                                 observation_end=args.observation_end, period=args.period, interval=args.interval,
                                 seed=args.seed)
    return backtest(frame, models, calibration_end=args.calibration_end, t=args.holdout,
                    observation_end=args.observation_end, time_unit=args.time_unit, baselines=baselines,
                    interval=args.interval, seed=args.seed)


def cmd_backtest(args) -> int:
    from .io import atomic_directory, write_table

    _check_outputs({"the log": args.log}, {"--report": args.report}, {"--out": args.out})
    result = _run_backtest(args)
    tables = {name: getattr(result, name) for name in vars(result)
              if hasattr(getattr(result, name), "to_parquet")}
    with atomic_directory(args.out, marker_files=("settings.json",)) as tmp:
        for name, table in tables.items():
            write_table(table.reset_index() if table.index.name else table, tmp / f"{name}.parquet", index=False)
        (tmp / "settings.json").write_text(json.dumps(result.settings, indent=1, default=str) + "\n")
    if args.report:
        _write_report(result, args.report)
    print(f"wrote {args.out}" + (f" and {args.report}" if args.report else ""))
    return EXIT_OK


def _write_report(result, path, title=None):
    """The HTML report of ``result`` (``compare_report``), with a one-step progress bar on a terminal."""
    from .progress import progress
    from .report import compare_report

    with progress(1, "writing the report", "report") as advance:
        path = compare_report(result, path, title=title)
        advance(1)
    return path


def cmd_report(args) -> int:
    from .clv_report import clv_report, fitted_spend_model

    _check_outputs({"the log": args.log}, {"--out": args.out, "--segments-out": args.segments_out})
    frame = _backtest_log(args)
    result = _run_backtest(args, frame)
    spend, why = fitted_spend_model(result) if "amount" in frame.columns else (None, "the log has no amounts.")
    if spend is None:
        log.warning("no CLV report: %s Writing the comparison report of purchases instead.", why)
        print(f"wrote {_write_report(result, args.out, title=args.title)}")
        return EXIT_OK
    clv_report(result, frame, args.out, title=args.title, horizon=args.horizon, period=args.clv_period,
               discount_rate=args.discount_rate, currency=args.currency, seed=args.seed, export=args.segments_out)
    print(f"wrote {args.out}" + (f" and {args.segments_out}" if args.segments_out else ""))
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import main as demo_main

    return int(demo_main(["--top", str(args.top)] + (["--sample"] if args.sample else [])) or 0)


COMMANDS = {"summarize": cmd_summarize, "summarise": cmd_summarize, "fit": cmd_fit, "score": cmd_score,
            "backtest": cmd_backtest, "report": cmd_report, "demo": cmd_demo}


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input (exit 2), not a bug: ours, files that cannot be opened,
    and the readers' errors on files that are empty, garbled, not UTF-8 or not what their name says."""
    import pandas as pd

    types = [ClvDataError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
             UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError, pd.errors.OutOfBoundsDatetime]
    if "pyarrow" in sys.modules:
        import pyarrow as pa

        types.append(pa.ArrowInvalid)
    if "duckdb" in sys.modules:
        import duckdb

        types += [duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException,
                  duckdb.OutOfRangeException]
    return tuple(types)


def _report_bad_input(command: str, exc: BaseException, debug: bool) -> None:
    """One line saying why (the first line of the message); the rest and the traceback with --debug."""
    text = str(exc).strip() or type(exc).__name__
    for keyword, option in CLI_HINTS.items():
        text = text.replace(keyword, option)
    first, _, rest = text.partition("\n")
    if debug:
        traceback.print_exc()
        print(f"clvmodels {command}: error: {text}", file=sys.stderr)
        return
    if not isinstance(exc, ClvDataError):
        first += f" ({type(exc).__name__}: check the file's format and contents; --debug for details)"
    elif rest.strip():
        first += " (--debug shows the example rows)"
    print(f"clvmodels {command}: error: {first}", file=sys.stderr)


def main(argv=None) -> int:
    """Entry point of the ``clvmodels`` command; returns the exit code.

    SIGTERM raises :class:`Terminated` for the duration of the command, so that worker processes
    are stopped and temporary files removed as on any error (exit 143)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit with 2 (argparse)
    _setup_logging(args)
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        with _one_line_warnings(args), (progress_off() if not _interactive(args) else contextlib.nullcontext()):
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"clvmodels {args.command}: interrupted; outputs left as they were.", file=sys.stderr)
        return 130
    except Terminated:
        print(f"clvmodels {args.command}: terminated (SIGTERM); outputs left as they were.", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as exc:  # noqa: BLE001 - bad input (exit 2) or an internal failure (exit 1)
        if isinstance(exc, bad_input_errors()):
            _report_bad_input(args.command, exc, args.debug)
            return EXIT_BAD_INPUT
        traceback.print_exc()
        print(f"clvmodels {args.command}: internal error (exit {EXIT_INTERNAL}); outputs left as they were.",
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    raise SystemExit(main())
