"""The Markov chain Monte Carlo sampler of Pareto/GGG (Platzer & Reutterer 2016, "Ticking away the
moments: timing regularity helps to better predict customer activity", Marketing Science 35(5),
section 3.2 and appendix; R package BTYDplus, ``pggg.mcmc.DrawParameters``).

The model (:mod:`.pareto_ggg`) has three latent rates per customer, ``k_i`` (regularity), ``λ_i``
(purchase rate) and ``μ_i`` (drop-out rate), each Gamma-distributed in the population with the
hyperparameters ``(t, γ)``, ``(r, α)`` and ``(s, β)``. Unlike BTYDplus, which also samples each
customer's lifetime ``τ_i``, the sampler integrates ``τ_i`` out analytically (``log_censoring``
below), which removes the strong ``τ``-``μ`` dependence of the augmented chain. This module holds the
model's per-customer mathematics, compiled once (the likelihood and P(alive), also as numpy ufuncs for
:mod:`.pareto_ggg`), and the sampler. One sweep (Metropolis-within-Gibbs):

1. per customer, random-walk Metropolis steps of ``ln k_i``, ``ln λ_i``, ``ln μ_i`` and of ``ln λ_i``
   and ``ln μ_i`` together (the ridge of customers without repeat purchases: few purchases are
   explained by a low rate or an early death), one likelihood evaluation each, step sizes adapted per
   customer and move during tuning towards an acceptance rate of 0.44 (Roberts & Rosenthal 2009);
2. per population Gamma(shape ``a``, rate ``b``) of ``z_i`` (``k``, ``λ`` or ``μ``): a slice-sampling step
   (Neal 2003) of ``ln a`` with the mean ``a/b`` held fixed, then ``b`` from its conjugate Gamma full
   conditional (the sums ``Σ z_i`` and ``Σ ln z_i`` are all the customers contribute);
3. moves of whole populations together with their latents (``group_moves``: scale, shape, and the
   purchase and drop-out scales together), the directions in which steps 1 and 2 alone mix slowly
   (hyperparameters and latents are strongly dependent where customers say little about their rates).

The kernels are compiled with numba (``nogil``; not cached on disk: numba cannot pickle the pointers
to SciPy's incomplete gamma functions, so each process compiles them once, a few seconds); chains run
in threads, each seeding its own numba random state, so a seed reproduces the draws.
"""

from __future__ import annotations

import functools

import numpy as np

#: Target acceptance rate of the per-customer one-dimensional random-walk steps.
TARGET_ACCEPT = 0.44
#: Order of the latents in the sampler's arrays and of the hyperparameter pairs (shape, rate).
LATENTS = ("k", "lambda", "mu")
HYPERS = (("t", "gamma"), ("r", "alpha"), ("s", "beta"))


def _kernels():
    """The numba kernels (compiled on first use; numba comes with PyTensor)."""
    import ctypes
    import math

    import numba
    from numba.extending import get_cython_function_address

    signature = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)
    gammainc = signature(get_cython_function_address("scipy.special.cython_special", "gammainc"))
    gammaincc = signature(get_cython_function_address("scipy.special.cython_special", "gammaincc"))
    jit = numba.njit(nogil=True, error_model="numpy")   # no disk cache: numba cannot pickle the ctypes pointers

    @jit
    def log_censoring(k, lam, mu, gap):
        """``ln P(no purchase in a gap of length gap after the last one, before or after death)
        = ln[1 − (kλ/(kλ+μ))^k P(k, (kλ+μ) gap)]``: the lifetime ``τ ~ Exp(μ)`` integrated out (given
        ``τ > t_x``) of ``e^{−μ(T−t_x)} S(T−t_x) + ∫ μ e^{−μu} S(u) du`` with ``S`` the survival of
        Gamma(k, rate kλ) (by parts; Platzer & Reutterer 2016, eq. 5 with ``τ`` integrated out).
        Computed as ``log1p(−ρ^k P)`` or, where that is near 0, ``ln(1 − ρ^k + ρ^k Q)``."""
        kl = k * lam
        z = (kl + mu) * gap
        if z <= 0.0:
            return 0.0
        log_rho_k = k * (math.log(kl) - math.log(kl + mu))
        p = math.exp(log_rho_k) * gammainc(k, z)
        if p < 0.5:
            return math.log1p(-p)
        return math.log(-math.expm1(log_rho_k) + math.exp(log_rho_k) * gammaincc(k, z))

    @jit
    def customer_log_likelihood(k, lam, mu, x, tx, T, litt):
        """Per-customer log-likelihood of Pareto/GGG given her latents, lifetime integrated out
        (Platzer & Reutterer 2016, eq. 5): ``x`` Gamma(k, rate kλ) inter-purchase densities
        ``kx ln(kλ) − x lnΓ(k) + (k−1) litt − kλ t_x``, survival to ``t_x`` (``−μ t_x``) and
        :func:`log_censoring` of the gap ``T − t_x``."""
        kl = k * lam
        return (k * x * math.log(kl) - x * math.lgamma(k) + (k - 1.0) * litt - kl * tx - mu * tx
                + log_censoring(k, lam, mu, T - tx))

    @jit
    def log_probability_alive(k, lam, mu, gap):
        """``ln P(τ > T | history, latents) = −μ gap + ln Q(k, kλ gap) − log_censoring`` (alive at ``T``
        and no purchase in the gap, over the probability of no purchase in it)."""
        q = gammaincc(k, k * lam * gap)
        if q <= 0.0:
            return -np.inf
        return -mu * gap + math.log(q) - log_censoring(k, lam, mu, gap)

    @jit
    def gamma_hyper_log_density(log_a, mean, n, sum_z, sum_log_z, prior):
        """``ln p(ln a | a/b = mean, z)`` of a Gamma(a, b) population: the Gamma likelihood of the
        ``z_i``, the Gamma priors of ``a`` and ``b`` (``prior = (shape_a, rate_a, shape_b, rate_b)``)
        and the Jacobian ``a²`` of ``(a, b) → (ln a, a/b)``."""
        a = math.exp(log_a)
        b = a / mean
        if not (a > 0.0 and b > 0.0 and a < 1e8):
            return -np.inf
        out = n * (a * math.log(b) - math.lgamma(a)) + (a - 1.0) * sum_log_z - b * sum_z
        out += (prior[0] - 1.0) * log_a - prior[1] * a + (prior[2] - 1.0) * math.log(b) - prior[3] * b
        return out + 2.0 * log_a

    @jit
    def update_hyper(a, b, z, prior):
        """One slice-sampling step of ``ln a`` (mean fixed; stepping out by 1, Neal 2003), then ``b``
        from its conjugate full conditional ``Gamma(n a + shape_b, Σ z + rate_b)``."""
        n = z.size
        sum_z = 0.0
        sum_log_z = 0.0
        for i in range(n):
            sum_z += z[i]
            sum_log_z += math.log(z[i])
        mean = a / b
        x0 = math.log(a)
        level = gamma_hyper_log_density(x0, mean, n, sum_z, sum_log_z, prior) - np.random.exponential()
        width = 1.0
        left = x0 - width * np.random.random()
        right = left + width
        for _ in range(50):
            if gamma_hyper_log_density(left, mean, n, sum_z, sum_log_z, prior) <= level:
                break
            left -= width
        for _ in range(50):
            if gamma_hyper_log_density(right, mean, n, sum_z, sum_log_z, prior) <= level:
                break
            right += width
        x1 = x0
        for _ in range(200):
            x1 = left + (right - left) * np.random.random()
            if gamma_hyper_log_density(x1, mean, n, sum_z, sum_log_z, prior) > level:
                break
            if x1 < x0:
                left = x1
            else:
                right = x1
        a = math.exp(x1)
        b = np.random.gamma(n * a + prior[2], 1.0) / (sum_z + prior[3])
        return a, b

    @jit
    def digamma(x):
        """ψ(x), x > 0: recurrence to x >= 6, then the asymptotic series."""
        out = 0.0
        while x < 6.0:
            out -= 1.0 / x
            x += 1.0
        x2 = 1.0 / (x * x)
        return out + math.log(x) - 0.5 / x - x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 / 252))

    @jit
    def trigamma(x):
        """ψ1(x), x > 0: recurrence to x >= 6, then the asymptotic series."""
        out = 0.0
        while x < 6.0:
            out += 1.0 / (x * x)
            x += 1.0
        x2 = 1.0 / (x * x)
        return out + 1.0 / x + 0.5 * x2 + x2 / x * (1.0 / 6 - x2 * (1.0 / 30 - x2 / 42))

    @jit
    def population_move(new_hyper, shift, scale, theta, ll, ll_new, old_theta, hyper, prior, x, tx, T, litt):
        """Metropolis step of the populations to the hyperparameters ``new_hyper`` (``(3, 2)``) with every
        customer's latents moved to ``ln z_ci' = shift_c + scale_c ln z_ci`` (a deterministic bijection
        given the random step, its inverse the opposite step): the ratio of the joint densities in log
        coordinates (likelihoods, Gamma densities of the latents, hyperpriors) times the Jacobian
        ``Π_c scale_c^n``. Returns whether it moved."""
        n = x.size
        log_ratio = 0.0
        for c in range(3):
            a, b, a2, b2 = hyper[c, 0], hyper[c, 1], new_hyper[c, 0], new_hyper[c, 1]
            if not (a2 > 0.0 and b2 > 0.0 and a2 < 1e8 and b2 < 1e300):
                return False
            log_ratio += n * (a2 * math.log(b2) - math.lgamma(a2) - a * math.log(b) + math.lgamma(a)
                              + math.log(scale[c]))
            log_ratio += (prior[c, 0] * (math.log(a2) - math.log(a)) - prior[c, 1] * (a2 - a)
                          + prior[c, 2] * (math.log(b2) - math.log(b)) - prior[c, 3] * (b2 - b))
        for i in range(n):
            for c in range(3):
                old = theta[c, i]
                old_theta[c, i] = old
                new = shift[c] + scale[c] * old
                theta[c, i] = new
                log_ratio += (new_hyper[c, 0] * new - new_hyper[c, 1] * math.exp(new)
                              - hyper[c, 0] * old + hyper[c, 1] * math.exp(old))
            ll_new[i] = customer_log_likelihood(math.exp(theta[0, i]), math.exp(theta[1, i]), math.exp(theta[2, i]),
                                                x[i], tx[i], T[i], litt[i])
            log_ratio += ll_new[i] - ll[i]
        if math.log(np.random.random()) < log_ratio:
            hyper[:, :] = new_hyper
            ll[:] = ll_new
            return True
        theta[:, :] = old_theta
        return False

    @jit
    def group_moves(theta, ll, ll_new, old_theta, hyper, prior, group_step, x, tx, T, litt, tuning, rate):
        """The moves of whole populations (the directions in which single-customer updates move slowly):
        per population its scale (every ``z_i`` times ``e^u``, the rate over ``e^u``) and its shape (the
        ``ln z_i`` standardised by their Gamma's mean and sd kept, shape and rate times ``e^v``), and the
        purchase and drop-out rates' scales together (``λ_i, μ_i`` times ``e^u``: fewer purchases are
        explained by lower rates or by earlier deaths). Step sizes adapt during tuning."""
        for move in range(7):
            new_hyper = hyper.copy()
            shift = np.zeros(3)
            scale = np.ones(3)
            u = group_step[move] * np.random.standard_normal()
            if move < 3:                                   # population move's scale
                new_hyper[move, 1] = hyper[move, 1] * math.exp(-u)
                shift[move] = u
            elif move < 6:                                 # its shape
                c = move - 3
                a, b = hyper[c, 0], hyper[c, 1]
                a2, b2 = a * math.exp(u), b * math.exp(u)
                new_hyper[c, 0], new_hyper[c, 1] = a2, b2
                scale[c] = math.sqrt(trigamma(a2) / trigamma(a))
                shift[c] = digamma(a2) - math.log(b2) - (digamma(a) - math.log(b)) * scale[c]
            else:                                          # λ and μ scales together
                for c in (1, 2):
                    new_hyper[c, 1] = hyper[c, 1] * math.exp(-u)
                    shift[c] = u
            ok = population_move(new_hyper, shift, scale, theta, ll, ll_new, old_theta, hyper, prior, x, tx, T, litt)
            if tuning:
                group_step[move] *= math.exp(rate * ((1.0 if ok else 0.0) - TARGET_ACCEPT))

    @jit
    def run_chain(seed, x, tx, T, litt, theta, step, group_step, hyper, prior, first, last, n_tune, keep_every,
                  hyper_draws, latent_draws, accepted):
        """Sweeps ``first`` to ``last − 1`` of one chain (sweeps below ``n_tune`` adapt, the others are
        recorded: the hyperparameters every sweep into ``hyper_draws``, the latents (as float32) every
        ``keep_every``-th into ``latent_draws``), so that a chain runs in pieces (a progress bar between
        them) with its whole state in the arrays passed.

        ``theta``: ``(3, n)`` log-latents (``ln k, ln λ, ln μ``), updated in place; ``step``: their
        random-walk scales, ``group_step`` those of :func:`group_moves`; ``hyper``: ``(3, 2)`` shape and
        rate of each latent's population; ``prior``: ``(3, 4)`` the Gamma priors of each population's
        shape and rate; ``accepted``: per latent, accepted steps of the recorded sweeps. ``seed`` seeds
        this piece's random numbers."""
        np.random.seed(seed)
        n = x.size
        ll = np.empty(n)
        for i in range(n):
            ll[i] = customer_log_likelihood(math.exp(theta[0, i]), math.exp(theta[1, i]), math.exp(theta[2, i]),
                                            x[i], tx[i], T[i], litt[i])
        n_kept = latent_draws.shape[0]
        z = np.empty(n)
        ll_new_all = np.empty(n)
        old_theta = np.empty((3, n))
        for sweep in range(first, last):
            tuning = sweep < n_tune
            rate = 1.0 / math.sqrt(sweep + 1.0)
            for i in range(n):
                for move in range(4):          # ln k, ln λ, ln μ, then ln λ and ln μ together
                    u = step[move, i] * np.random.standard_normal()
                    log_ratio = 0.0
                    for c in range(3):
                        if move == c or (move == 3 and c > 0):
                            old = theta[c, i]
                            theta[c, i] = old + u
                            log_ratio += hyper[c, 0] * u - hyper[c, 1] * (math.exp(old + u) - math.exp(old))
                    ll_new = customer_log_likelihood(math.exp(theta[0, i]), math.exp(theta[1, i]),
                                                     math.exp(theta[2, i]), x[i], tx[i], T[i], litt[i])
                    ok = math.log(np.random.random()) < log_ratio + ll_new - ll[i]
                    if ok:
                        ll[i] = ll_new
                    else:
                        for c in range(3):
                            if move == c or (move == 3 and c > 0):
                                theta[c, i] -= u
                    if tuning:
                        step[move, i] *= math.exp(rate * ((1.0 if ok else 0.0) - TARGET_ACCEPT))
                    elif move < 3:
                        accepted[move] += 1.0 if ok else 0.0
            for c in range(3):
                for i in range(n):
                    z[i] = math.exp(theta[c, i])
                hyper[c, 0], hyper[c, 1] = update_hyper(hyper[c, 0], hyper[c, 1], z, prior[c])
            group_moves(theta, ll, ll_new_all, old_theta, hyper, prior, group_step, x, tx, T, litt, tuning, rate)
            if not tuning:
                d = sweep - n_tune
                hyper_draws[d] = hyper
                if (d + 1) % keep_every == 0 and d // keep_every < n_kept:
                    for c in range(3):
                        for i in range(n):
                            latent_draws[d // keep_every, c, i] = math.exp(theta[c, i])

    vectorize = numba.vectorize(["float64(float64, float64, float64, float64, float64, float64, float64)"])
    alive = numba.vectorize(["float64(float64, float64, float64, float64)"])
    return vectorize(customer_log_likelihood.py_func), alive(log_probability_alive.py_func), run_chain


@functools.cache
def kernels():
    """``(log_likelihood, log_probability_alive, run_chain)``, compiled once per process: the first two
    as numpy ufuncs of the per-customer functions that the sampler's ``run_chain`` calls."""
    return _kernels()


#: Sweeps per piece of a chain between two updates of the progress bar.
PIECE = 25


def sample(data: dict[str, np.ndarray], *, chains: int, tune: int, draws: int, latent_draws: int,
           priors: np.ndarray, seed: int | None, cores: int, start: dict[str, float],
           progressbar: bool | None = None) -> dict:
    """Run ``chains`` chains of :func:`kernels`' ``run_chain`` in threads (at most ``cores`` at once),
    each in pieces of :data:`PIECE` sweeps, with a progress bar of all chains' sweeps
    (:func:`clvmodels.progress.progress`: ``progressbar``, else only on a terminal).

    ``start``: values of the hyperparameters ``r, alpha, s, beta`` to start from (Pareto/NBD's
    maximum-likelihood estimates: the limit ``k = 1``); every chain draws its own starting latents
    from them (``λ_i ~ Gamma(r + x_i, α + T_i)``, ``μ_i ~ Gamma(s + 1/2, β + T_i)``, ``k_i = 1 ± 10%``),
    so the chains start apart but near the posterior.

    Returns ``{"hyper": (chains, draws, 3, 2), "latent": (chains, kept, 3, n) float32,
    "acceptance": (chains, 3)}``; ``latent_draws`` latent draws are kept in all (equally spaced
    within each chain)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..progress import progress

    *_, run_chain = kernels()
    x, tx, T, litt = (np.ascontiguousarray(data[c], dtype=float) for c in ("frequency", "recency", "T", "litt"))
    keep_every = max(1, draws * chains // max(latent_draws, 1))
    seeds = np.random.SeedSequence(seed).generate_state(chains)
    rng = np.random.default_rng(seed)

    def start_point():
        lam = rng.gamma(start["r"] + x, 1.0 / (start["alpha"] + T))
        mu = rng.gamma(start["s"] + 0.5, 1.0 / (start["beta"] + T))
        theta = np.stack([rng.normal(0.0, 0.1, x.size), np.log(np.maximum(lam, 1e-12)), np.log(np.maximum(mu, 1e-12))])
        hyper = np.array([[1.0, 1.0], [start["r"], start["alpha"]], [start["s"], start["beta"]]])
        return np.ascontiguousarray(theta), np.full((4, x.size), 0.5), hyper

    starts = [start_point() for _ in range(chains)]
    total = int(tune) + int(draws)
    hyper = np.empty((chains, int(draws), 3, 2))
    latent = np.empty((chains, int(draws) // keep_every, 3, x.size), dtype=np.float32)
    accepted = np.zeros((chains, 3))

    def chain(c, advance):
        theta, step, hyper0 = starts[c]
        group_step = np.full(7, 0.05)
        piece_seeds = np.random.SeedSequence(int(seeds[c])).generate_state(-(-total // PIECE))
        for piece, first in enumerate(range(0, total, PIECE)):
            last = min(first + PIECE, total)
            run_chain(int(piece_seeds[piece] % 2**31), x, tx, T, litt, theta, step, group_step, hyper0, priors,
                      first, last, int(tune), keep_every, hyper[c], latent[c], accepted[c])
            advance(last - first)

    with progress(chains * total, "Pareto/GGG MCMC", unit="sweep", progressbar=progressbar) as advance, \
            ThreadPoolExecutor(max_workers=max(1, min(cores, chains))) as pool:
        list(pool.map(lambda c: chain(c, advance), range(chains)))
    return {"hyper": hyper, "latent": latent, "acceptance": accepted / max(int(draws) * x.size, 1)}


__all__ = ["HYPERS", "LATENTS", "TARGET_ACCEPT", "kernels", "sample"]
