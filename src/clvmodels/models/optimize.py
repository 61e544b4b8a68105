"""The optimiser shared by the maximum-likelihood fit (:mod:`.mle`) and the MAP fit (:mod:`.bayes`).

Both maximise a smooth function of the log-parameters ``θ = ln(params)`` (unconstrained; every
parameter of these models is positive) and its exact gradient: the MLE evaluates both with dual
numbers (:mod:`.mle`, no compilation), the MAP compiles them with PyTensor (:func:`log_parameters`,
:func:`value_and_gradient`, PyTensor imported only then). :func:`minimize_log_params` runs L-BFGS-B from a few starting points
(:func:`starting_points`), optionally polishes the best with Newton steps, and returns the point with
its gradient and Hessian (forward differences of the exact gradient, :func:`numeric_hessian`). From
those :func:`covariance_from_hessian` gives the covariance of ``θ`` (the inverse Hessian, as in
lifetimes), :func:`information_criteria` AIC and BIC, and :func:`boundary_parameters` and
:func:`unidentified_parameters` name the parameters the data cannot identify: an estimate beyond
``e^±BOUNDARY_LOG``, or one whose log-scale standard error exceeds :data:`UNIDENTIFIED_LOG_SE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import optimize
from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

from ..errors import ClvDataError

#: A log-parameter standard error above this (a 95% interval wider than a factor e^±10) means the
#: data do not identify the parameter, even if the optimiser stopped short of the boundary.
UNIDENTIFIED_LOG_SE = 5.0
#: Log-parameters beyond this magnitude (values above ~1e7 or below ~1e-7) count as a boundary.
BOUNDARY_LOG = 16.0
#: The optimiser's box on the log-parameters: a margin beyond the boundary, so that an estimate
#: running to it is seen at the boundary rather than stopped short of it.
LOG_BOX = BOUNDARY_LOG + 4.0


@cache
def blas_controller() -> ThreadpoolController:
    """The process's BLAS thread pools, found once: finding them (loading each library's symbols)
    costs ~15 ms the first time and ~3 ms each later time, more than a warm BG/NBD objective; a
    limit set through this controller costs ~20 µs. The BLAS libraries are loaded with numpy and
    scipy, before any fit."""
    return ThreadpoolController()


def compile_mode():
    """PyTensor's C backend when a compiler is present (compiled modules are cached on disk, so later
    processes start fast), else PyTensor's default."""
    import pytensor
    from pytensor.compile.mode import Mode

    return Mode(linker="cvm", optimizer="fast_run") if pytensor.config.cxx else None


def log_parameters(param_names, linear_names=()):
    """A symbolic vector ``theta`` of log-parameters and the dict ``{name: exp(theta[i])}``; with
    ``linear_names`` (covariate coefficients) ``theta`` continues with them, not logged."""
    import pytensor.tensor as pt

    theta = pt.dvector("theta")
    k = len(param_names)
    params = {name: pt.exp(theta[i]) for i, name in enumerate(param_names)}
    params.update({name: theta[k + j] for j, name in enumerate(linear_names)})
    return theta, params


def value_and_gradient(inputs, value, theta):
    """Compiled ``f(*inputs) -> (value, d value / d theta)`` (``theta`` the first of ``inputs``); an
    input the value does not read is allowed (a model need not read every data column: NBD, recency)."""
    import pytensor

    return pytensor.function(inputs, [value, pytensor.grad(value, theta)], mode=compile_mode(),
                             on_unused_input="ignore")


def numeric_hessian(grad, theta: np.ndarray, step: float = 1e-6, g0: np.ndarray | None = None) -> np.ndarray:
    """Hessian as forward differences of the exact gradient ``grad(theta)`` (symmetrised).

    ``len(theta)`` gradient evaluations (plus one when ``g0 = grad(theta)`` is not given). With an
    exact gradient the truncation error is ``O(step)`` relative (~1e-6), ample for standard errors
    and for Newton steps.
    """
    k = len(theta)
    g0 = grad(theta) if g0 is None else g0
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = step
        H[:, i] = (grad(theta + e) - g0) / step
    return (H + H.T) / 2


class Objective:
    """``theta -> (value, gradient)`` of a compiled ``f(theta, *args) -> (value, gradient)`` to be
    minimised (``negate=True``: of ``-f``, to maximise ``f``); ``(inf, 0)`` where ``f`` is not finite.
    Remembers the last few points (the optimiser, the Newton polish and the Hessian often ask for the
    same point twice) and counts the evaluations."""

    def __init__(self, f, args=(), *, negate: bool = False):
        self.f, self.args, self.sign, self.cache, self.n_evals = f, list(args), -1.0 if negate else 1.0, {}, 0

    def __call__(self, theta):
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        if key not in self.cache:
            value, grad = self.f(theta, *self.args)
            self.n_evals += 1
            out = (np.inf, np.zeros_like(theta)) if not np.isfinite(value) else \
                (self.sign * float(value), self.sign * np.asarray(grad, dtype=float))
            if len(self.cache) >= 8:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = out
        return self.cache[key]


def starting_points(model, data: dict[str, np.ndarray], w: np.ndarray, x0=None) -> list[np.ndarray]:
    """The optimiser's starting points (log scale): ``x0`` if given, the model's
    :meth:`~.base.CLVModel.initial_params`, then all log-parameters 0, 1 and -1."""
    k = len(model.param_names)
    starts = [np.asarray(x0, dtype=float)] if x0 is not None else []
    return starts + [np.log(model.initial_params(data, w)), np.zeros(k), np.full(k, 1.0), np.full(k, -1.0)]


@dataclass
class Optimum:
    """The result of :func:`minimize_log_params`."""

    #: The log-parameters at the minimum.
    theta: np.ndarray
    #: The objective and its gradient there.
    value: float
    gradient: np.ndarray
    #: Its Hessian there (:func:`numeric_hessian`).
    hessian: np.ndarray
    #: The best L-BFGS-B run (``message``, ``nit``).
    lbfgs: optimize.OptimizeResult

    @property
    def max_abs_gradient(self) -> float:
        return float(np.max(np.abs(self.gradient)))


def minimize_log_params(fun: Objective, starts, *, failure: str, maxiter: int, ftol: float, gtol: float,
                        improvement: float, good_enough: float | None = None, newton_steps: int = 0,
                        newton_tol: float = 0.0, precondition: bool = False) -> Optimum:
    """Minimise ``fun`` over the log-parameters: L-BFGS-B (box :data:`LOG_BOX`) from each of ``starts``
    where ``fun`` is finite, keeping a run only if it lowers the best value by more than ``improvement``
    and stopping at the first that succeeds with a largest absolute gradient below ``good_enough``;
    then up to ``newton_steps`` Newton steps with the Hessian of the exact gradient until that gradient
    is below ``newton_tol`` or stops shrinking (each step must not raise the objective beyond rounding).

    With ``precondition`` the first finite start is moved first by L-BFGS in coordinates whitened by
    the Hessian there (``θ = θ0 + L⁻ᵀu``, ``H = LLᵀ``; skipped where ``H`` is not positive definite):
    for a start near the optimum of a badly scaled objective (a time-varying fit from the fit without
    them) this halves the evaluations (``benchmarks/bench_timevarying.py``).

    Raises :class:`~clvmodels.errors.ClvDataError` with the message ``failure`` when ``fun`` is not
    finite at any starting point.
    """
    if precondition:
        starts = _preconditioned(fun, list(starts))
    best = None
    for start in starts:
        if not np.isfinite(fun(start)[0]):
            continue
        # L-BFGS-B's few-parameter BLAS calls only pay thread start-up costs (8 ms an iteration
        # on a busy 2-core machine, more than the whole objective on CDNOW): run them on one thread
        with blas_controller().limit(limits=1, user_api="blas"):
            res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=[(-LOG_BOX, LOG_BOX)] * len(start),
                                    options={"maxiter": maxiter, "ftol": ftol, "gtol": gtol})
        if best is None or res.fun < best.fun - improvement:
            best = res
        if good_enough is not None and res.success and np.max(np.abs(res.jac)) < good_enough:
            break
    if best is None:
        raise ClvDataError(failure)
    theta = np.asarray(best.x, dtype=float)

    # a few parameters: the Hessian costs len(theta) gradients; it is recomputed only when the
    # Newton steps have moved theta noticeably
    def hess(th):
        return numeric_hessian(lambda v: fun(v)[1], th, g0=fun(th)[1])

    H, H_at = hess(theta), theta
    for _ in range(newton_steps):
        value, grad = fun(theta)
        if np.max(np.abs(grad)) < newton_tol:
            break
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            break
        cand = np.clip(theta - step, -LOG_BOX, LOG_BOX)
        cand_value, cand_grad = fun(cand)
        # accept a step that does not increase the objective beyond rounding and shrinks the gradient
        if not (cand_value <= value + 1e-13 * max(1.0, abs(value))
                and np.max(np.abs(cand_grad)) < np.max(np.abs(grad))):
            break
        theta = cand
        if np.max(np.abs(theta - H_at)) > 1e-3:
            H, H_at = hess(theta), theta
    if np.max(np.abs(theta - H_at)) > 1e-6:
        H = hess(theta)
    value, grad = fun(theta)
    return Optimum(theta=theta, value=value, gradient=grad, hessian=H, lbfgs=best)


def _preconditioned(fun: Objective, starts: list) -> list:
    """``starts`` with the first finite one replaced by the L-BFGS optimum in the coordinates whitened by
    its Hessian (:func:`minimize_log_params`' ``precondition``), clipped to the box."""
    for i, start in enumerate(starts):
        theta0 = np.asarray(start, dtype=float)
        value, g0 = fun(theta0)
        if not np.isfinite(value):
            continue
        try:
            back = np.linalg.inv(np.linalg.cholesky(numeric_hessian(lambda v: fun(v)[1], theta0, g0=g0))).T
        except np.linalg.LinAlgError:
            return starts
        if not np.all(np.isfinite(back)):
            return starts

        def whitened(u):
            v, g = fun(np.clip(theta0 + back @ u, -LOG_BOX, LOG_BOX))
            return v, back.T @ g

        with blas_controller().limit(limits=1, user_api="blas"):
            res = optimize.minimize(whitened, np.zeros(len(theta0)), jac=True, method="L-BFGS-B",
                                    options={"maxiter": 200, "ftol": 1e-12, "gtol": 1e-8})
        moved = np.clip(theta0 + back @ res.x, -LOG_BOX, LOG_BOX)
        return starts[:i] + [moved] + starts[i + 1:] if res.fun <= value else starts
    return starts


def covariance_from_hessian(H: np.ndarray, n: float = 1.0) -> tuple[np.ndarray, bool]:
    """``(inv(n H), True)`` when ``H`` (of a minimised negative log-likelihood or log posterior, per
    customer when ``n`` is the number of customers) is finite and positive definite, else a NaN
    matrix and ``False``: without it there are no standard errors."""
    k = len(H)
    if np.all(np.isfinite(H)):
        try:
            if np.all(np.linalg.eigvalsh(H) > 0):
                return np.linalg.inv(H * n), True
        except np.linalg.LinAlgError:
            pass
    return np.full((k, k), np.nan), False


def information_criteria(log_likelihood: float, k: int, n: float) -> tuple[float, float]:
    """``(AIC, BIC) = (2k − 2 ln L, k ln n − 2 ln L)`` of ``k`` parameters fitted to ``n`` customers."""
    return 2 * k - 2 * log_likelihood, k * np.log(n) - 2 * log_likelihood


def boundary_parameters(names, theta: np.ndarray) -> list[str]:
    """The parameters whose log exceeds :data:`BOUNDARY_LOG` in magnitude (run to 0 or infinity)."""
    return [k for k, t in zip(names, theta) if abs(t) >= BOUNDARY_LOG]


def unidentified_parameters(names, covariance: np.ndarray, exclude=()) -> dict[str, float]:
    """``{name: log-scale SE}`` of the parameters (other than ``exclude``) whose log-scale standard
    error exceeds :data:`UNIDENTIFIED_LOG_SE`: the data barely identify them."""
    log_se = np.sqrt(np.diag(covariance))
    return {k: se for k, se in zip(names, log_se) if se > UNIDENTIFIED_LOG_SE and k not in exclude}
