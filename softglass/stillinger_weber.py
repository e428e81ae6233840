"""Stillinger-Weber (SW) silicon in JAX, for amorphous silicon glasses.

SW (F. H. Stillinger and T. A. Weber, PRB 31, 5262 (1985)) adds to a short-ranged pair term a
three-body term that favours the tetrahedral angle, cos theta0 = -1/3:
    E = sum_{i<j} phi2(r_ij) + sum_i sum_{j<k} phi3(r_ij, r_ik, theta_jik),
    phi2(r) = A eps [B (sigma/r)^p - (sigma/r)^q] exp(sigma / (r - a sigma)),
    phi3 = lambda eps (cos theta_jik - cos theta0)^2
           exp(gamma sigma / (r_ij - a sigma)) exp(gamma sigma / (r_ik - a sigma)),
every term vanishing with all its derivatives at the cut-off a sigma (3.771 A). Units are LAMMPS's
"metal": A, eV, ps, amu. The 1985 parameters fit crystalline and liquid Si, but quenched to an
amorphous solid they give too many fivefold-coordinated atoms. R. L. C. Vink, G. T. Barkema, W. F.
van der Weg and N. Mousseau, J. Non-Cryst. Solids 282, 248 (2001) refit SW to a-Si: a 1.5 times
stronger angular term (lambda = 31.5 instead of 21) gives an almost perfectly fourfold network with
a realistic bond-angle spread, and eps = 1.64833 eV (instead of 2.1683 eV) puts the TA and TO peaks
of its vibrational density of states where experiment has them. Energy, forces and virial agree
with LAMMPS's pair_style sw (tests/test_stillinger_weber.py: 216-atom perturbed and compressed
diamond lattices, both parameter sets, the test's bound 1e-10) to |dE| < 1e-14 |E|, max |dF| <
1e-13 eV/A (forces up to 27 eV/A) and max |dW| < 1e-14 max |W| (measured): the same formula up to
the order of the floating-point operations. forces() gives the forces in closed form, the
three-body term through ten moments of each atom's bonds (O(M) per atom where the energy's angle
sum is O(M^2)); the MD and FIRE use it, and it equals -jax.grad of the energy to rounding.

Written here rather than wrapping jax-md's energy.stillinger_weber_neighbor_list: its angular kernel
(quantity.cosine_angle_between_two_vectors) adds 1e-7 A to both bond lengths, which shifts the
energy by ~3e-9 of itself and the forces by ~4e-7 eV/A against LAMMPS (measured), and it fixes
p = 4, q = 0 and cos theta0 = -1/3. The layout is jax-md's Dense one: row i of an (N, M)
neighbour matrix, and every angle j-i-k of two slots of one row as an (N, M, M) array.
"""
from . import jax_config  # noqa: F401  (float64)

import dataclasses

import jax
import jax.numpy as jnp
from jax_md import space

SW_1985 = ("F. H. Stillinger and T. A. Weber, Computer simulation of local order in condensed "
           "phases of silicon, Phys. Rev. B 31, 5262 (1985)")
VINK_2001 = ("R. L. C. Vink, G. T. Barkema, W. F. van der Weg and N. Mousseau, Fitting the "
             "Stillinger-Weber potential to amorphous silicon, J. Non-Cryst. Solids 282, 248 "
             "(2001); " + SW_1985)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class StillingerWeber:
    """SW silicon with its parameters (LAMMPS sw file names; lam is lambda). eq=False: hashed by
    identity, so an instance can be a static argument of jax.jit."""
    name: str = "sw"
    elements: tuple = ("Si",)
    masses: tuple = (28.0855,)                  # amu
    cutoff: float = dataclasses.field(init=False)   # a sigma, A
    epsilon: float                              # eV
    sigma: float                                # A
    a: float
    lam: float
    gamma: float
    A: float
    B: float
    p: float = 4.0
    q: float = 0.0
    costheta0: float = -1.0 / 3.0
    citation: str = SW_1985
    units = "metal"                             # A, eV, ps, amu

    def __post_init__(self):
        # LAMMPS's cut-off, the same product: the exponentials vanish there
        object.__setattr__(self, "cutoff", float(self.a * self.sigma))

    def energy(self, positions, neighbours, species, displacement):
        """Total energy (eV) of positions (N, 3) with the Dense neighbour matrix `neighbours`
        (N, M) (padding N; entries beyond the cut-off count for nothing). species is ignored
        (one element)."""
        del species
        bonds, inside = bond_vectors(positions, neighbours, displacement, self.cutoff)
        r = jnp.sqrt(jnp.sum(bonds ** 2, axis=-1))
        two = jnp.where(inside, self.phi2_over_eps(r), 0.0)
        # each pair sits in two rows (i, j) and (j, i): half the sum counts it once
        return self.epsilon * (jnp.sum(two) / 2 + self.three_body_over_eps(bonds, r, inside))

    def phi2_over_eps(self, r):
        """phi2(r) / eps = A [B (sigma/r)^p - (sigma/r)^q] exp(sigma / (r - a sigma)), for r
        below the cut-off (finite for the stand-in r of the other slots)."""
        s = self.sigma / r
        return self.A * (self.B * s ** self.p - s ** self.q) * jnp.exp(
            self.sigma / (r - self.cutoff))

    def three_body_over_eps(self, bonds, r, inside):
        """sum_i sum_{j<k} phi3 / eps = (lambda / 2) sum_i sum_{j != k} g_ij g_ik (cos theta_jik -
        cos theta0)^2, g_ij = exp(gamma sigma / (r_ij - a sigma)), 0 beyond the cut-off (LAMMPS's
        sum over the pairs j < k of i's neighbours, as jax-md's over the (j, k) slots)."""
        g = jnp.where(inside, jnp.exp(self.gamma * self.sigma / (r - self.cutoff)), 0.0)
        unit = bonds / r[..., None]
        cos = jnp.einsum("imx,inx->imn", unit, unit)
        off_diagonal = ~jnp.eye(r.shape[1], dtype=bool)           # j = k is no angle
        h = jnp.where(off_diagonal, (cos - self.costheta0) ** 2, 0.0)
        return self.lam / 2 * jnp.einsum("im,imn,in->", g, h, g)

    def forces(self, positions, neighbours, species, displacement):
        """Forces -dE/dR (eV/A, (N, 3)) in closed form, the arguments as energy()'s (entries
        beyond the cut-off and padding count for nothing); -jax.grad(energy) to rounding
        (tests/test_stillinger_weber.py).

        The three-body sum at i, written with the bond unit vectors u_j = (R_j - R_i) / r_ij
        and g_j = g(r_ij) (0 beyond the cut-off), needs no sum over pairs of bonds: with i's
        moments S_i = sum_j g_j u_j u_j^T (3 x 3), v_i = sum_j g_j u_j and s_i = sum_j g_j,
        and cos_jk = u_j . u_k,
            sum_{j != k} g_j g_k (cos_jk - c0)^2
              = tr(S_i^2) - 2 c0 |v_i|^2 + c0^2 s_i^2 - (1 - c0)^2 sum_j g_j^2,
        the last term removing j = k (where cos = 1). Differentiating T_i = lambda/2 (that):
            dT_i/dR_j = a_ij g'(r_ij) u_j
                        + (2 lambda g_j / r_ij) (1 - u_j u_j^T) (S_i u_j - c0 v_i),
            a_ij = lambda [u_j^T S_i u_j - 2 c0 v_i . u_j + c0^2 s_i - (1 - c0)^2 g_j]
                 = lambda sum_{k != j} g_k (cos_jk - c0)^2,
        and dT_i/dR_i = -sum_j dT_i/dR_j. Atom i feels the triplets centred on it and those
        centred on each neighbour j where it is an end; the latter is dT_j/dR_i, the same
        expression with j's moments and the bond reversed (u -> -u). Summed along row i, with
        S = S_i + S_j, v = v_i - v_j, s = s_i + s_j and w = S u - c0 v (u = u_ij):
            F_i = eps sum_j [(phi2'(r)/eps + g'(r) a - (2 lambda g / r) u.w) u
                             + (2 lambda g / r) w],
            a = lambda [u.w - c0 u.v + c0^2 s - 2 (1 - c0)^2 g].
        Two passes along the rows of the Dense list (every bond in both rows): the ten moments
        per atom, then the forces, gathering j's moments along the rows. Each is O(M) per atom,
        where energy()'s angle sum, and reverse mode through it, is O(M^2); and nothing is
        scattered (forces on j and k from i's triplets scatter-added onto them, as reverse mode
        does, is slow in XLA on CPU). Measured, one core under load: 4-8x faster than
        jax.grad(energy) at N = 1000 (M = 23), 5-9x at N = 8000; all rows at once, as blocks of
        rows (EAM's FORCE_BLOCK_ROWS) were no faster here at N = 8000."""
        del species
        n = positions.shape[0]
        idx = jnp.asarray(neighbours)
        c0 = self.costheta0
        j = jnp.minimum(idx, n - 1)                     # the padding N reads atom N - 1
        # R_j - R_i, (N, M, 3); vmapped, so that a displacement of single (3,) vectors
        # (jax-md's space.periodic) serves as well as a broadcasting one (the same program)
        d = jax.vmap(jax.vmap(displacement, (0, None)))(positions[j], positions)
        r2 = d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2
        inside = (idx < n) & (r2 > 0) & (r2 < self.cutoff * self.cutoff)
        r = jnp.sqrt(jnp.where(inside, r2, 1.0))        # finite 1 / r, 1 / (r - a sigma)
        inv_r = 1.0 / r
        u = [d[..., x] * inv_r for x in range(3)]       # three (N, M) planes
        to_cut = r - self.cutoff
        g = jnp.where(inside, jnp.exp(self.gamma * self.sigma / to_cut), 0.0)
        dg = -self.gamma * self.sigma / (to_cut * to_cut) * g

        # moments per atom: S_xx, S_yy, S_zz, S_xy, S_xz, S_yz, v_x, v_y, v_z, s
        own = ([jnp.sum(g * u[x] * u[y], axis=1) for x, y in
                [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]]
               + [jnp.sum(g * u[x], axis=1) for x in range(3)] + [jnp.sum(g, axis=1)])
        other = [m[j] for m in own]                     # j's, along the rows
        S = [own[c][:, None] + other[c] for c in range(6)]
        v = [own[6 + x][:, None] - other[6 + x] for x in range(3)]
        s = own[9][:, None] + other[9]
        w = [S[0] * u[0] + S[3] * u[1] + S[4] * u[2] - c0 * v[0],
             S[3] * u[0] + S[1] * u[1] + S[5] * u[2] - c0 * v[1],
             S[4] * u[0] + S[5] * u[1] + S[2] * u[2] - c0 * v[2]]
        u_w = u[0] * w[0] + u[1] * w[1] + u[2] * w[2]
        u_v = u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
        a = self.lam * (u_w - c0 * u_v + c0 * c0 * s - 2.0 * (1.0 - c0) ** 2 * g)

        # phi2/eps = A (B x^p - x^q) exp(sigma / (r - a sigma)), x = sigma / r:
        # d/dr = A exp(..) [(q x^q - p B x^p) / r - (B x^p - x^q) sigma / (r - a sigma)^2]
        x_p, x_q = (self.sigma * inv_r) ** self.p, (self.sigma * inv_r) ** self.q
        dphi2 = self.A * jnp.exp(self.sigma / to_cut) * (
            (self.q * x_q - self.p * self.B * x_p) * inv_r
            - (self.B * x_p - x_q) * self.sigma / (to_cut * to_cut))
        transverse = 2.0 * self.lam * g * inv_r
        along = jnp.where(inside, dphi2 + dg * a - transverse * u_w, 0.0)
        return self.epsilon * jnp.stack([jnp.sum(along * u[x] + transverse * w[x], axis=1)
                                         for x in range(3)], axis=1)

    def record(self):
        """The parameters as plain Python values, for a glass snapshot."""
        return dict(name=self.name, elements=list(self.elements), masses=list(self.masses),
                    cutoff=self.cutoff, units=self.units, epsilon=self.epsilon,
                    sigma=self.sigma, a=self.a, **{"lambda": self.lam}, gamma=self.gamma,
                    costheta0=self.costheta0, A=self.A, B=self.B, p=self.p, q=self.q,
                    citation=self.citation)


def bond_vectors(positions, neighbours, displacement, cutoff):
    """Bond vectors r_j - r_i (N, M, 3) of the neighbour slots and whether each is a bond (a real
    neighbour, 0 < r < cutoff). displacement is vmapped (jax-md's map_neighbor), so one acting on
    single (3,) vectors works as well as a broadcasting one. Double where: every other slot (the
    padding N, which would read a clamped atom and give r = 0 in row N - 1; entries beyond the
    cut-off) gets the fixed vector (2 cutoff, 0, 0), so that no 1/r or 1/(r - a sigma) in the
    masked branch is infinite and its zero cotangent gives zero, not NaN, gradients and Hessians."""
    n = positions.shape[0]
    others = positions[jnp.minimum(neighbours, n - 1)]
    bonds = space.map_neighbor(displacement)(positions, others)
    r2 = jnp.sum(bonds ** 2, axis=-1)
    inside = (neighbours < n) & (r2 > 0) & (r2 < cutoff * cutoff)
    stand_in = jnp.array([2 * cutoff, 0.0, 0.0], dtype=bonds.dtype)
    return jnp.where(inside[..., None], bonds, stand_in), inside


def virial(potential, positions, neighbours, species, displacement):
    """W = -dE/d epsilon at epsilon = 0, every minimum-image vector v mapped to (I + epsilon) v
    (3 x 3, eV): sum over bonds of r f, which is LAMMPS's virial sum_i r_i f_i (symmetric for
    SW, which depends on distances and angles only)."""
    def strained(eps):
        mapped = lambda ra, rb: displacement(ra, rb) @ (jnp.eye(3) + eps).T  # noqa: E731
        return potential.energy(positions, neighbours, species, mapped)
    return -jax.grad(strained)(jnp.zeros((3, 3), positions.dtype))


def silicon_stillinger_weber_1985():
    """The original SW silicon (LAMMPS's Si.sw: eps 2.1683 eV, i.e. 50 kcal/mol; lambda 21)."""
    return StillingerWeber(epsilon=2.1683, sigma=2.0951, a=1.8, lam=21.0, gamma=1.2,
                           A=7.049556277, B=0.6022245584, citation=SW_1985)


def amorphous_silicon_vink_2001():
    """Vink et al.'s a-Si refit: lambda 31.5 (1.5 x 21) and eps 1.64833 eV, the rest SW's.
    (jax-md's three_body_strength multiplies lambda: 1.5 with lam = 21 is this lambda.)"""
    return StillingerWeber(epsilon=1.64833, sigma=2.0951, a=1.8, lam=31.5, gamma=1.2,
                           A=7.049556277, B=0.6022245584, citation=VINK_2001)
