"""The Markov chain Monte Carlo sampler of Pareto/GGG (Platzer & Reutterer 2016, "Ticking away the
moments: timing regularity helps to better predict customer activity", Marketing Science 35(5),
section 3.2 and appendix; R package BTYDplus, ``pggg.mcmc.DrawParameters``).

The model (:mod:`.pareto_ggg`) has three latent rates per customer, ``k_i`` (regularity), ``λ_i``
(purchase rate) and ``μ_i`` (drop-out rate), each Gamma-distributed in the population with the
hyperparameters ``(t, γ)``, ``(r, α)`` and ``(s, β)``. Unlike BTYDplus, which also samples each
customer's lifetime ``τ_i``, the chain integrates ``τ_i`` out analytically (``log_censoring`` below).
This module holds the model's per-customer mathematics, compiled once (the likelihood and P(alive),
also as numpy ufuncs for :mod:`.pareto_ggg`), and the sampler.

Where customers say little about their own rates, a chain that updates hyperparameters given the
latents and latents given the hyperparameters moves slowly (each step is tied to the other's current
value). Hence:

* the customers **without repeat purchases** (half of a typical table) have no latents in the chain:
  their likelihood integrated over ``k, λ, μ`` (``log_no_repeat_marginal``: ``1 − ∫ f(g) (β/(β+g))^s dg``
  averaged over ``k``, ``f`` the BetaPrime law of the first waiting time with ``λ`` integrated out and
  the Lomax survival of the lifetime with ``μ`` integrated out; Gauss–Legendre quadrature, one pass
  for all their distinct ``T``) enters every hyperparameter update directly, and their latents are
  drawn exactly (rejection from the populations) for the kept draws;
* ``λ`` and ``μ`` of the others are updated with their populations by **partially collapsed Gibbs**
  (van Dyk & Park 2008) on the complete data (Tanner & Wong 1987): given the latents, each customer's
  open waiting time after her last purchase and her alive/death state (and death time) are drawn
  exactly; given them the inter-purchase times are complete (``x+1`` Gamma(k, kλ) waiting times) and the
  lifetime is seen or censored, so ``λ`` and ``μ`` are conjugate (Gamma(r + k(x+1), α + k(t_x+G)) and
  Gamma(s + dead, β + min(τ, T))) and ``(r, α)``, ``(s, β)`` are drawn from the likelihood with them
  integrated out, then ``λ_i, μ_i`` exactly.

One sweep:

1. per customer with repeat purchases, random-walk Metropolis steps of ``ln k_i``, ``ln λ_i``,
   ``ln μ_i`` and of ``ln λ_i`` and ``ln μ_i`` together (few purchases are explained by a low rate or an
   early death), one likelihood evaluation each, step sizes adapted per customer and move during
   tuning towards an acceptance rate of 0.44 (Roberts & Rosenthal 2009);
2. :data:`AUGMENT_ROUNDS` rounds of: the complete data, then ``(r, α)`` and ``(s, β)`` by slice
   sampling (Neal 2003) of ``ln a`` and ``ln(a/b)`` (shape ``a``, rate ``b``) with the latents
   integrated out, then ``λ_i`` and ``μ_i``;
3. ``(t, γ)`` by the same slice sampling given the ``k_i``;
4. moves of whole populations with their latents (``group_moves``: :data:`GROUP_ROUNDS` rounds of the
   regularities' scale and shape, then the purchase and drop-out scales together; Liu & Sabatti 2000),
   the directions in which the other steps mix slowly.

The customers without repeat purchases' marginal enters steps 2-4 wherever hyperparameters move.

The kernels are compiled with numba (``nogil``; not cached on disk: numba cannot pickle the pointers
to SciPy's incomplete gamma functions, so each process compiles them once, a few seconds); chains run
in threads, each seeding its own numba random state, so a seed reproduces the draws.
"""

from __future__ import annotations

import functools

import numpy as np

from .quadrature import gauss_legendre

#: Target acceptance rate of the per-customer one-dimensional random-walk steps.
TARGET_ACCEPT = 0.44
#: Order of the latents in the sampler's arrays and of the hyperparameter pairs (shape, rate).
LATENTS = ("k", "lambda", "mu")
HYPERS = (("t", "gamma"), ("r", "alpha"), ("s", "beta"))
#: Rounds of the regularities' moves in :func:`group_moves` and of the complete-data updates per sweep.
GROUP_ROUNDS = 3
AUGMENT_ROUNDS = 2
#: Gauss–Legendre nodes and weights on [0, 1] of the no-repeat customers' marginal likelihood: in
#: ``ln k`` (40) and in ``ln g`` per panel (8; panels ``PANEL_WIDTH / sqrt(k + 1)`` wide).
K_NODES, K_WEIGHTS = gauss_legendre(40)
G_NODES, G_WEIGHTS = gauss_legendre(8)
PANEL_WIDTH = 2.0
MIDPOINT_WIDTH = 0.01
#: At most this many panels per stretch (reached only at regularities far beyond the data's, k > 10^4).
MAX_PANELS = 400


def _kernels():
    """The numba kernels (compiled on first use; numba comes with PyTensor)."""
    import ctypes
    import math

    import numba
    from numba.extending import get_cython_function_address

    signature = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)
    gammainc = signature(get_cython_function_address("scipy.special.cython_special", "gammainc"))
    gammaincc = signature(get_cython_function_address("scipy.special.cython_special", "gammaincc"))
    gammainccinv = signature(get_cython_function_address("scipy.special.cython_special", "gammainccinv"))
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
    def log1pexp(z):
        """``ln(1 + e^z)`` without overflow."""
        return z + math.log1p(math.exp(-z)) if z > 0.0 else math.log1p(math.exp(z))

    @jit
    def log_no_repeat_marginal(hyper, T, count, work):
        """``Σ_j count_j ln P(no repeat purchase in (0, T_j] | t, γ, r, α, s, β)``: the marginal likelihood
        of the customers without repeat purchases, their ``k, λ, μ`` integrated out.

        ``P = 1 − ∫_0^T f(g) (β/(β+g))^s dg`` averaged over ``k ~ Gamma(t, γ)``: the first waiting time
        ``G`` (``Gamma(k, rate kλ)`` with ``λ ~ Gamma(r, α)``: ``kG/α ~`` BetaPrime(k, r), density ``f``)
        must come before the end of the lifetime (``τ`` Lomax(s, β), ``μ`` integrated out) and before
        ``T``. Gauss–Legendre in ``ln k`` (±9 sd of the log-gamma law) and in ``ln g`` (panels from where
        the BetaPrime cdf is 1e-14, or 40 below ``ln T_1`` with the cdf's leading term beyond, to ``T_1``,
        then from each ``T_j`` to the next, by the midpoint rule where ``ln T`` moves by at most
        :data:`MIDPOINT_WIDTH`; ``T`` sorted ascending); ``work``: ``(3, T.size)``
        scratch."""
        t, gam, r, alpha, s, beta = hyper[0, 0], hyper[0, 1], hyper[1, 0], hyper[1, 1], hyper[2, 0], hyper[2, 1]
        centre = digamma(t) - math.log(gam)
        half = 9.0 * math.sqrt(trigamma(t))
        log_norm_k = math.lgamma(t) - t * math.log(gam)
        lgr = math.lgamma(r)
        acc, log_mid, lomax = work[0], work[1], work[2]
        acc[:] = 0.0
        for q in range(1, T.size):                                 # midpoints between consecutive T
            log_mid[q] = 0.5 * (math.log(T[q - 1]) + math.log(T[q]))
            lomax[q] = s * math.log1p(math.exp(log_mid[q]) / beta)
        norm = 0.0
        for j in range(K_NODES.size):
            y = centre - half + 2.0 * half * K_NODES[j]
            k = math.exp(y)
            weight = 2.0 * half * K_WEIGHTS[j] * math.exp(t * y - gam * k - log_norm_k)
            norm += weight
            if weight < 1e-30:
                continue
            log_beta_fn = math.lgamma(k) + lgr - math.lgamma(k + r)
            c0 = math.log(k / alpha)                               # ln v = c0 + ln g
            lo = (math.log(1e-14) + math.log(k) + log_beta_fn) / k - c0
            cum = 0.0
            if lo < math.log(T[0]) - 40.0:
                lo = math.log(T[0]) - 40.0
                cum = math.exp(k * (c0 + lo) - math.log(k) - log_beta_fn)
            for q in range(T.size):
                hi = math.log(T[q])
                if q > 0 and hi - lo <= MIDPOINT_WIDTH:          # close T: the midpoint rule
                    lv = c0 + log_mid[q]
                    cum += (hi - lo) * math.exp(k * lv - (k + r) * log1pexp(lv) - log_beta_fn - lomax[q])
                elif hi > lo:
                    panels = min(int((hi - lo) * math.sqrt(k + 1.0) / PANEL_WIDTH) + 1, MAX_PANELS)
                    width = (hi - lo) / panels
                    for p in range(panels):
                        for h in range(G_NODES.size):
                            lg = lo + width * (p + G_NODES[h])
                            lv = c0 + lg
                            cum += width * G_WEIGHTS[h] * math.exp(k * lv - (k + r) * log1pexp(lv) - log_beta_fn
                                                                   - s * math.log1p(math.exp(lg) / beta))
                acc[q] += weight * cum
                lo = hi
        out = 0.0
        for q in range(T.size):
            p0 = 1.0 - acc[q] / norm
            if not p0 > 0.0:
                return -np.inf
            out += count[q] * math.log(p0)
        return out

    @jit
    def truncated_gamma(k, kl, c):
        """A draw of ``G ~ Gamma(k, rate kl)`` given ``G > c``: by rejection where that is likely, else
        by the inverse cdf ``Q^{−1}(k, V Q(k, kl c))/kl`` (``V`` uniform), where ``Q`` underflows the
        Gamma's asymptotic hazard ``kl`` (``c + Exp(kl)``)."""
        if c <= 0.0:
            return np.random.gamma(k) / kl
        q = gammaincc(k, kl * c)
        if q > 0.25:
            while True:
                g = np.random.gamma(k) / kl
                if g > c:
                    return g
        if q > 1e-300:
            g = gammainccinv(k, (1.0 - np.random.random()) * q) / kl
            if g > c:
                return g
        return c + np.random.exponential() / kl

    @jit
    def death_cdf(k, kl, mu, d):
        """``P(death within d of the last purchase and no purchase before it) = 1 − ρ^k P(k, (kλ+μ)d)
        − e^{−μd} Q(k, kλd)`` (the terms of :func:`log_censoring`)."""
        log_rho_k = k * (math.log(kl) - math.log(kl + mu))
        return 1.0 - math.exp(log_rho_k) * gammainc(k, (kl + mu) * d) - math.exp(-mu * d) * gammaincc(k, kl * d)

    @jit
    def death_and_open_gap(k, kl, mu, gap):
        """A draw of the time ``D`` from the last purchase to death (within ``gap``) and of the open waiting
        time ``G > D``, given death before the end and no purchase in between (density
        ``∝ μ e^{−μD} Gamma(G; k, kl) 1{G > D}``): by rejection from the Exponential truncated to
        ``gap`` and the Gamma, after 100 failures ``D`` by bisection of :func:`death_cdf`."""
        tail = -math.expm1(-mu * gap)
        for _ in range(100):
            d = -math.log1p(-np.random.random() * tail) / mu
            g = np.random.gamma(k) / kl
            if g > d:
                return d, g
        target = np.random.random() * death_cdf(k, kl, mu, gap)
        lo, hi = 0.0, gap
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if death_cdf(k, kl, mu, mid) < target:
                lo = mid
            else:
                hi = mid
        d = 0.5 * (lo + hi)
        return d, truncated_gamma(k, kl, d)

    @jit
    def augment(theta, x, tx, T, shape_add, exposure):
        """The complete data of each customer given her latents (exact draws): alive at ``T`` with
        P(alive) (:func:`log_probability_alive`), else the death time and the open waiting time
        (:func:`death_and_open_gap`); alive, the open waiting time exceeds ``T − t_x``. Written as the
        conjugate updates' statistics: ``λ ~ Gamma(r + k(x+1), α + k(t_x+G))`` (``x+1`` Gamma(k, kλ)
        waiting times summing to ``t_x + G``) and ``μ ~ Gamma(s + dead, β + lifetime seen)``:
        ``shape_add[0] = k(x+1)``, ``exposure[0] = k(t_x+G)``, ``shape_add[1] = 1{dead}``,
        ``exposure[1] = min(τ, T)``."""
        for i in range(x.size):
            k, lam, mu = math.exp(theta[0, i]), math.exp(theta[1, i]), math.exp(theta[2, i])
            kl = k * lam
            gap = T[i] - tx[i]
            if np.random.random() < math.exp(log_probability_alive(k, lam, mu, gap)):
                g = truncated_gamma(k, kl, gap)
                shape_add[1, i] = 0.0
                exposure[1, i] = T[i]
            else:
                d, g = death_and_open_gap(k, kl, mu, gap)
                shape_add[1, i] = 1.0
                exposure[1, i] = tx[i] + d
            shape_add[0, i] = k * (x[i] + 1.0)
            exposure[0, i] = k * (tx[i] + g)

    @jit
    def population_log_density(uv, c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count, work):
        """``ln p`` of population ``c``'s ``(ln a, ln(a/b))`` (shape ``a``, rate ``b``) given the rest: for
        ``k`` (``c = 0``) the Gamma density of the latents (``sums = (n, Σ k_i, Σ ln k_i)``), for ``λ``
        and ``μ`` the latents integrated out of the complete data (:func:`augment`:
        ``Σ_i lnΓ(a + m_i) − lnΓ(a) + a ln b − (a + m_i) ln(b + e_i)``), then the customers without repeat
        purchases (:func:`log_no_repeat_marginal`), the Gamma hyperpriors and the Jacobian ``ab``."""
        a = math.exp(uv[0])
        b = a / math.exp(uv[1])
        if not (a > 0.0 and b > 0.0 and a < 1e8 and b < 1e300):
            return -np.inf
        lb = math.log(b)
        if c == 0:
            out = sums[0] * (a * lb - math.lgamma(a)) + (a - 1.0) * sums[2] - b * sums[1]
        else:
            out = 0.0
            lga = math.lgamma(a)
            for i in range(shape_add.shape[1]):
                m = shape_add[c - 1, i]
                lbe = math.log(b + exposure[c - 1, i])
                if m == 0.0:
                    out += a * (lb - lbe)
                else:
                    out += math.lgamma(a + m) - lga + a * lb - (a + m) * lbe
        out += (prior[c, 0] * uv[0] - prior[c, 1] * a + prior[c, 2] * lb - prior[c, 3] * b)
        if zero_T.size:
            old_a, old_b = hyper[c, 0], hyper[c, 1]
            hyper[c, 0], hyper[c, 1] = a, b
            out += log_no_repeat_marginal(hyper, zero_T, zero_count, work)
            hyper[c, 0], hyper[c, 1] = old_a, old_b
        return out

    @jit
    def update_population(c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count, work):
        """One slice-sampling step (Neal 2003, stepping out by 0.5) of ``ln a`` then of ``ln(a/b)`` of
        population ``c`` under :func:`population_log_density`."""
        uv = np.array([math.log(hyper[c, 0]), math.log(hyper[c, 0] / hyper[c, 1])])
        for d in range(2):
            level = population_log_density(uv, c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count,
                                           work) - np.random.exponential()
            x0 = uv[d]
            left = x0 - 0.5 * np.random.random()
            right = left + 0.5
            for _ in range(50):
                uv[d] = left
                if population_log_density(uv, c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count,
                                          work) <= level:
                    break
                left -= 0.5
            for _ in range(50):
                uv[d] = right
                if population_log_density(uv, c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count,
                                          work) <= level:
                    break
                right += 0.5
            x1 = x0
            for _ in range(200):
                x1 = left + (right - left) * np.random.random()
                uv[d] = x1
                if population_log_density(uv, c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count,
                                          work) > level:
                    break
                if x1 < x0:
                    left = x1
                else:
                    right = x1
            uv[d] = x1
        hyper[c, 0] = math.exp(uv[0])
        hyper[c, 1] = hyper[c, 0] / math.exp(uv[1])

    @jit
    def population_move(new_hyper, shift, scale, theta, ll, ll_new, old_theta, hyper, prior, x, tx, T, litt,
                        zero_T, zero_count, work, marginal):
        """Metropolis step of the populations to the hyperparameters ``new_hyper`` (``(3, 2)``) with every
        customer's latents moved to ``ln z_ci' = shift_c + scale_c ln z_ci`` (a deterministic bijection
        given the random step, its inverse the opposite step): the ratio of the joint densities in log
        coordinates (likelihoods, Gamma densities of the latents, the customers without repeat purchases'
        marginal, hyperpriors) times the Jacobian ``Π_c scale_c^n``. ``marginal``: that marginal at
        ``hyper``. Returns whether it moved and the marginal after the step."""
        n = x.size
        log_ratio = 0.0
        for c in range(3):
            a, b, a2, b2 = hyper[c, 0], hyper[c, 1], new_hyper[c, 0], new_hyper[c, 1]
            if not (a2 > 0.0 and b2 > 0.0 and a2 < 1e8 and b2 < 1e300):
                return False, marginal
            log_ratio += n * (a2 * math.log(b2) - math.lgamma(a2) - a * math.log(b) + math.lgamma(a)
                              + math.log(scale[c]))
            log_ratio += (prior[c, 0] * (math.log(a2) - math.log(a)) - prior[c, 1] * (a2 - a)
                          + prior[c, 2] * (math.log(b2) - math.log(b)) - prior[c, 3] * (b2 - b))
        new_marginal = log_no_repeat_marginal(new_hyper, zero_T, zero_count, work) if zero_T.size else 0.0
        log_ratio += new_marginal - marginal
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
            return True, new_marginal
        theta[:, :] = old_theta
        return False, marginal

    @jit
    def group_moves(theta, ll, ll_new, old_theta, hyper, prior, group_step, x, tx, T, litt, zero_T, zero_count,
                    work, tuning, rate):
        """Moves of whole populations with their latents (the directions in which the other updates move
        slowly): :data:`GROUP_ROUNDS` rounds of the regularities' scale (every ``k_i`` times ``e^u``, the
        rate over ``e^u``) and shape (the ``ln k_i`` standardised by their Gamma's mean and sd kept, shape
        and rate times ``e^v``), then the purchase and drop-out rates' scales together (``λ_i, μ_i`` times
        ``e^u``: fewer purchases are explained by lower rates or by earlier deaths). Step sizes adapt
        during tuning."""
        marginal = log_no_repeat_marginal(hyper, zero_T, zero_count, work) if zero_T.size else 0.0
        for step in range(2 * GROUP_ROUNDS + 1):
            move = step % 2 if step < 2 * GROUP_ROUNDS else 2
            new_hyper = hyper.copy()
            shift = np.zeros(3)
            scale = np.ones(3)
            u = group_step[move] * np.random.standard_normal()
            if move == 0:                                  # the regularities' scale
                new_hyper[0, 1] = hyper[0, 1] * math.exp(-u)
                shift[0] = u
            elif move == 1:                                # their shape
                a, b = hyper[0, 0], hyper[0, 1]
                a2, b2 = a * math.exp(u), b * math.exp(u)
                new_hyper[0, 0], new_hyper[0, 1] = a2, b2
                scale[0] = math.sqrt(trigamma(a2) / trigamma(a))
                shift[0] = digamma(a2) - math.log(b2) - (digamma(a) - math.log(b)) * scale[0]
            else:                                          # λ and μ scales together
                for c in (1, 2):
                    new_hyper[c, 1] = hyper[c, 1] * math.exp(-u)
                    shift[c] = u
            ok, marginal = population_move(new_hyper, shift, scale, theta, ll, ll_new, old_theta, hyper, prior, x, tx,
                                           T, litt, zero_T, zero_count, work, marginal)
            if tuning:
                group_step[move] *= math.exp(rate * ((1.0 if ok else 0.0) - TARGET_ACCEPT))

    @jit
    def draw_no_repeat(hyper, T):
        """An exact draw of ``(k, λ, μ)`` of a customer without repeat purchases in ``(0, T]``: from the
        populations, kept when the simulated first waiting time ``Gamma(k, kλ)`` outlasts the simulated
        lifetime ``Exp(μ)`` or ``T`` (rejection sampling; acceptance the marginal probability, which the
        posterior keeps away from 0 as long as such customers exist; NaN after 10^7 rejections, which
        the predictions' finiteness checks report)."""
        for _ in range(10_000_000):
            k = np.random.gamma(hyper[0, 0]) / hyper[0, 1]
            lam = np.random.gamma(hyper[1, 0]) / hyper[1, 1]
            mu = np.random.gamma(hyper[2, 0]) / hyper[2, 1]
            if k > 0.0 and lam > 0.0 and mu > 0.0 and \
                    np.random.gamma(k) / (k * lam) > min(np.random.exponential() / mu, T):
                return k, lam, mu
        return np.nan, np.nan, np.nan

    @jit
    def run_chain(seed, x, tx, T, litt, zero_T, zero_count, zero_each, theta, step, group_step, hyper, prior,
                  first, last, n_tune, keep_every, hyper_draws, latent_draws, accepted):
        """Sweeps ``first`` to ``last − 1`` of one chain (sweeps below ``n_tune`` adapt, the others are
        recorded: the hyperparameters every sweep into ``hyper_draws``, the latents (as float32) every
        ``keep_every``-th into ``latent_draws``), so that a chain runs in pieces (a progress bar between
        them) with its whole state in the arrays passed.

        ``x, tx, T, litt``: the customers with repeat purchases, whose latents are sampled; ``zero_T``,
        ``zero_count``: the distinct ``T`` (ascending) of those without and how many have each, their
        latents integrated out (:func:`log_no_repeat_marginal`) and drawn exactly for the kept draws
        (:func:`draw_no_repeat`; ``zero_each``: each one's ``T``, after the others in ``latent_draws``).
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
        ll_new_all = np.empty(n)
        old_theta = np.empty((3, n))
        shape_add = np.empty((2, n))
        exposure = np.empty((2, n))
        work = np.empty((3, zero_T.size))
        sums = np.zeros(3)
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
            # λ and μ with their populations, given the complete data (partially collapsed Gibbs)
            for _ in range(AUGMENT_ROUNDS):
                augment(theta, x, tx, T, shape_add, exposure)
                for c in (1, 2):
                    update_population(c, hyper, prior, sums, shape_add, exposure, zero_T, zero_count, work)
                    for i in range(n):
                        theta[c, i] = math.log(max(np.random.gamma(hyper[c, 0] + shape_add[c - 1, i]), 1e-300)
                                               / (hyper[c, 1] + exposure[c - 1, i]))
            for i in range(n):
                ll[i] = customer_log_likelihood(math.exp(theta[0, i]), math.exp(theta[1, i]), math.exp(theta[2, i]),
                                                x[i], tx[i], T[i], litt[i])
            sums[:] = 0.0
            sums[0] = n
            for i in range(n):
                sums[1] += math.exp(theta[0, i])
                sums[2] += theta[0, i]
            update_population(0, hyper, prior, sums, shape_add, exposure, zero_T, zero_count, work)
            group_moves(theta, ll, ll_new_all, old_theta, hyper, prior, group_step, x, tx, T, litt, zero_T,
                        zero_count, work, tuning, rate)
            if not tuning:
                d = sweep - n_tune
                hyper_draws[d] = hyper
                if (d + 1) % keep_every == 0 and d // keep_every < n_kept:
                    for c in range(3):
                        for i in range(n):
                            latent_draws[d // keep_every, c, i] = math.exp(theta[c, i])
                    for j in range(zero_each.size):
                        k, lam, mu = draw_no_repeat(hyper, zero_each[j])
                        latent_draws[d // keep_every, 0, n + j] = k
                        latent_draws[d // keep_every, 1, n + j] = lam
                        latent_draws[d // keep_every, 2, n + j] = mu

    vectorize = numba.vectorize(["float64(float64, float64, float64, float64, float64, float64, float64)"])
    alive = numba.vectorize(["float64(float64, float64, float64, float64)"])
    return (vectorize(customer_log_likelihood.py_func), alive(log_probability_alive.py_func), log_no_repeat_marginal,
            draw_no_repeat, run_chain)


@functools.cache
def kernels():
    """``(log_likelihood, log_probability_alive, log_no_repeat_marginal, draw_no_repeat, run_chain)``,
    compiled once per process: the first two as numpy ufuncs of the per-customer functions that the
    sampler's ``run_chain`` calls."""
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
    of the customers with repeat purchases from them (``λ_i ~ Gamma(r + x_i, α + T_i)``,
    ``μ_i ~ Gamma(s + 1/2, β + T_i)``, ``k_i = 1 ± 10%``), so the chains start apart but near the
    posterior; those without repeat purchases have no latents in the chain (integrated out, drawn
    exactly for the kept draws).

    Returns ``{"hyper": (chains, draws, 3, 2), "latent": (chains, kept, 3, n) float32,
    "acceptance": (chains, 3)}`` (the acceptance rates of the customers with repeat purchases);
    ``latent_draws`` latent draws are kept in all (equally spaced within each chain)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..progress import progress

    *_, run_chain = kernels()
    columns = [np.asarray(data[c], dtype=float) for c in ("frequency", "recency", "T", "litt")]
    repeat = columns[0] > 0
    x, tx, T, litt = (np.ascontiguousarray(v[repeat]) for v in columns)
    zero_each = np.ascontiguousarray(columns[2][~repeat])
    zero_T, zero_count = np.unique(zero_each, return_counts=True)
    zero_count = zero_count.astype(float)
    order = np.argsort(np.concatenate([np.flatnonzero(repeat), np.flatnonzero(~repeat)]), kind="stable")
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
    latent = np.empty((chains, int(draws) // keep_every, 3, repeat.size), dtype=np.float32)
    accepted = np.zeros((chains, 3))

    def chain(c, advance):
        theta, step, hyper0 = starts[c]
        group_step = np.full(3, 0.05)
        piece_seeds = np.random.SeedSequence(int(seeds[c])).generate_state(-(-total // PIECE))
        for piece, first in enumerate(range(0, total, PIECE)):
            last = min(first + PIECE, total)
            run_chain(int(piece_seeds[piece] % 2**31), x, tx, T, litt, zero_T, zero_count, zero_each, theta, step,
                      group_step, hyper0, priors, first, last, int(tune), keep_every, hyper[c], latent[c], accepted[c])
            advance(last - first)

    with progress(chains * total, "Pareto/GGG MCMC", unit="sweep", progressbar=progressbar) as advance, \
            ThreadPoolExecutor(max_workers=max(1, min(cores, chains))) as pool:
        list(pool.map(lambda c: chain(c, advance), range(chains)))
    return {"hyper": hyper, "latent": latent[..., order], "acceptance": accepted / max(int(draws) * x.size, 1)}


__all__ = ["HYPERS", "LATENTS", "TARGET_ACCEPT", "kernels", "sample"]
