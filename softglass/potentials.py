"""Interaction potentials: the smoothed Kob-Andersen Lennard-Jones mixture of the glasses, and the
harmonic soft spheres that untangle random starting positions.

A pair potential here is a jax-md pair function phi(r, sigma, epsilon) of the species pair's
parameters, plus (optionally) `force_over_r`, the closed form of phi'(r)/r in u = r^2 that the
"dense_r2" force kernel uses. Its derivatives phi, phi', phi'' (pair_derivatives) feed the
float64 forces and the Hessian.
"""
from . import jax_config  # noqa: F401  (float64)

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import energy

from .neighbours import bucket


def absolute_cutoffs(sigma, r_onset, r_cutoff):
    """jax-md's lennard_jones_* multiply r_onset/r_cutoff by max(sigma); we do the same, once,
    and store and use the absolute distances."""
    s = float(np.max(sigma))
    return r_onset * s, r_cutoff * s


def smoothed_lj(r_onset, r_cutoff):
    """jax-md's LJ times the C1 (HOOMD) switch S(r): S=1 below r_onset, 0 beyond r_cutoff.

    Python-float cut-offs become float64 arrays first: jax-md squares them as `r ** f32(2)`,
    which for a (weakly typed) Python float rounds r^2 to float32 and, unless r is exact in
    binary (sigma scaled by 1.06, say), shifts the forces by ~1e-7 (measured): enough to fail
    the 1e-10 force check."""
    strong = lambda r: r if isinstance(r, jax.Array) else jnp.asarray(r, jnp.float64)  # noqa
    pair = energy.multiplicative_isotropic_cutoff(energy.lennard_jones, strong(r_onset),
                                                  strong(r_cutoff))
    pair.force_over_r = smoothed_lj_force_over_r(strong(r_onset), strong(r_cutoff))
    return pair


def smoothed_lj_force_over_r(r_onset, r_cutoff):
    """(dE/dr) / r of smoothed_lj's pair energy E = phi S as a closed form in u = r^2, for the
    "dense_r2" kernel: F_i = sum_j (dE/dr / r) r_ij needs neither r nor a division by it.
    With a = sigma^2 / u: phi = 4 eps (a^6 - a^3), dphi/du = -12 eps (2 a^6 - a^3) / u; the HOOMD
    switch is a cubic in u, S = (rc^2 - u)^2 (rc^2 + 2u - 3 ro^2) / (rc^2 - ro^2)^3 between the
    onset and the cut-off, dS/du = 6 (rc^2 - u)(ro^2 - u) / (rc^2 - ro^2)^3; and dE/dr / r =
    2 dE/du = 2 (dphi/du S + phi dS/du), zero beyond the cut-off (jax-md's expressions, checked
    against the forward-mode derivative of smoothed_lj in tests/test_force_kernel.py)."""
    ro2, rc2 = r_onset ** 2, r_cutoff ** 2
    scale = 1 / (rc2 - ro2) ** 3

    def force_over_r(u, sigma, epsilon):
        inv = 1 / u
        a3 = (sigma * sigma * inv) ** 3
        a6 = a3 * a3
        phi = 4 * epsilon * (a6 - a3)
        dphi = -12 * epsilon * (2 * a6 - a3) * inv
        w = rc2 - u
        switch = jnp.where(u < ro2, 1, w * w * (rc2 + 2 * u - 3 * ro2) * scale)
        dswitch = jnp.where(u < ro2, 0, 6 * w * (ro2 - u) * scale)
        return jnp.where(u < rc2, 2 * (dphi * switch + phi * dswitch), 0)

    return force_over_r


def soft_sphere_pair(dr, sigma, epsilon, **unused):
    """Harmonic soft sphere (eps/2)(1 - r/sigma)^2 for r < sigma, used only to untangle."""
    return energy.soft_sphere(dr, sigma=sigma, epsilon=epsilon, alpha=2)



@jax.jit
def _pair_derivatives_jit(r, sigma, epsilon, r_onset, r_cutoff):
    phi = smoothed_lj(r_onset, r_cutoff)
    f = lambda x, s, e: phi(x, sigma=s, epsilon=e)  # noqa: E731
    return (jax.vmap(f)(r, sigma, epsilon), jax.vmap(jax.grad(f))(r, sigma, epsilon),
            jax.vmap(jax.grad(jax.grad(f)))(r, sigma, epsilon))


def pair_derivatives(r, sigma, epsilon, r_onset, r_cutoff):
    """phi(r), phi'(r), phi''(r) of the smoothed LJ, by automatic differentiation of jax-md's
    own pair function (the seed's k_rad/k_trans are these without the smoothing).

    Compiled once for a padded length: evaluated eagerly, every new pair count (one per glass)
    compiled and cached each primitive again. Measured on six 400-atom glasses in one process:
    peak memory grew ~100 MB per glass before, ~15 MB after, and each glass took seconds less."""
    n = len(r)
    m = bucket(n)
    pad = lambda a, value: np.concatenate([a, np.full(m - n, value)])  # noqa: E731
    out = _pair_derivatives_jit(pad(r, 1.0), pad(sigma, 1.0), pad(epsilon, 0.0),
                                np.float64(r_onset), np.float64(r_cutoff))
    return tuple(np.asarray(o)[:n] for o in out)


# ================================ the plug-in interface ==========================================
def dense_rows(positions, neighbours, species, displacement):
    """A Dense neighbour matrix (N x width, padded with N) as pair rows: which entries are
    atoms, r_ij^2 (padding at r = 1, finite) and the species pair (index into species x species
    tables) of every entry."""
    n = positions.shape[0]
    present = neighbours < n
    j = jnp.where(present, neighbours, 0)
    d = displacement(positions[:, None, :], positions[j])
    r_sq = jnp.where(present, jnp.sum(d * d, axis=-1), 1.0)
    return present, r_sq, (species[:, None], species[j])


@dataclasses.dataclass(frozen=True, eq=False)
class SmoothedLJMixture:
    """The smoothed Kob-Andersen mixture through the interface every plugged-in potential has
    (softglass.molecular_dynamics): E = 1/2 sum_i sum_{j in row i} phi_ab(r_ij), phi the same
    jax-md pair function as the compiled KA phases (smoothed_lj). The KA pipeline keeps its
    faster pair kernels (softglass.forces); this form lets the many-body machinery (MD, FIRE,
    the autodiff Hessian) be checked against them. sigma, epsilon: species x species;
    r_onset, r_cutoff absolute. Hashes by identity (a static argument of jit)."""
    sigma: tuple
    epsilon: tuple
    r_onset: float
    r_cutoff: float
    elements: tuple = ("A", "B")
    masses: tuple = (1.0, 1.0)
    name: str = "ka"
    units: str = "lj"

    @property
    def cutoff(self):
        return self.r_cutoff

    def energy(self, positions, neighbours, species, displacement):
        present, r_sq, pair = dense_rows(positions, neighbours, species, displacement)
        sigma, epsilon = jnp.asarray(self.sigma), jnp.asarray(self.epsilon)
        phi = smoothed_lj(self.r_onset, self.r_cutoff)(jnp.sqrt(r_sq), sigma=sigma[pair],
                                                        epsilon=epsilon[pair])
        return 0.5 * jnp.sum(jnp.where(present, phi, 0.0))

    def record(self):
        return dict(name=self.name, units=self.units, elements=list(self.elements),
                    masses=list(self.masses), sigma=np.asarray(self.sigma).tolist(),
                    epsilon=np.asarray(self.epsilon).tolist(), r_onset=float(self.r_onset),
                    r_cutoff=float(self.r_cutoff))


@dataclasses.dataclass(frozen=True, eq=False)
class TruncatedShiftedLJMixture:
    """Kob and Andersen's own mixture (PRE 51, 4626 (1995)), as most liquid simulations run it:
    phi_ab(r) - phi_ab(rc_ab) below rc_ab = cutoff_ratio sigma_ab, zero beyond; the energy is
    continuous at rc_ab and the force jumps there. Our SmoothedLJMixture instead switches every
    pair off between 2.0 and 2.5 sigma_AA, so its A-B and B-B pairs reach further; this one lets a
    configuration of such a liquid be minimised in its own potential, to see how much the choice
    moves an inherent structure. Same interface as SmoothedLJMixture."""
    sigma: tuple
    epsilon: tuple
    cutoff_ratio: float = 2.5
    elements: tuple = ("A", "B")
    masses: tuple = (1.0, 1.0)
    name: str = "ka_truncated"
    units: str = "lj"

    @property
    def cutoff(self):
        return self.cutoff_ratio * float(np.max(self.sigma))

    def energy(self, positions, neighbours, species, displacement):
        present, r_sq, pair = dense_rows(positions, neighbours, species, displacement)
        sigma, epsilon = jnp.asarray(self.sigma)[pair], jnp.asarray(self.epsilon)[pair]
        lj = lambda a: 4 * epsilon * (a ** 6 - a ** 3)       # noqa: E731   a = (sigma/r)^2
        rc_sq = (self.cutoff_ratio * sigma) ** 2
        phi = lj(sigma ** 2 / r_sq) - lj(1.0 / self.cutoff_ratio ** 2)
        return 0.5 * jnp.sum(jnp.where(present & (r_sq < rc_sq), phi, 0.0))

    def record(self):
        return dict(name=self.name, units=self.units, elements=list(self.elements),
                    masses=list(self.masses), sigma=np.asarray(self.sigma).tolist(),
                    epsilon=np.asarray(self.epsilon).tolist(), cutoff_ratio=self.cutoff_ratio)
