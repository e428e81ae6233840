"""Forces of a pair potential in the compiled phases, and the float64 forces checked at the end.

The force kernel ("grad", "dense", "dense_r2") chooses how a compiled phase gets its forces:
"grad" differentiates the pair energy summed on a half (OrderedSparse) neighbour list; "dense"
and "dense_r2" sum pair forces along the rows of a Dense list (dense_pair_forces), "dense_r2" with
phi'(r)/r in closed form in r^2 where the potential has one. energy_and_forces recomputes energy
and forces in float64 from an independent pair list (pairs.pair_list).
"""
from . import jax_config  # noqa: F401  (float64)

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, smap, space

from .neighbours import NeighbourList
from .pairs import pair_list
from .potentials import pair_derivatives

LIST_FORMATS = {"grad": partition.OrderedSparse, "dense": partition.Dense,   # kernel -> list
                "dense_r2": partition.Dense}


def list_format(kernel):
    """jax-md's neighbour-list format the force kernel computes forces on (read at allocation,
    on the host: the format is a static field of the list, so the compiled phases follow it)."""
    if kernel not in LIST_FORMATS:
        raise ValueError(f"FORCE_KERNEL={kernel!r}: expected one of {tuple(LIST_FORMATS)}")
    return LIST_FORMATS[kernel]


def force_block_rows(n_atoms, block_rows, one_block_max_atoms):
    """Rows per block of the dense kernel's force sum for a system of n_atoms (0: one block): the
    forces of a system larger than one_block_max_atoms are summed block_rows rows at a time."""
    return block_rows if n_atoms > one_block_max_atoms else 0


def dense_pair_forces(pair, box, cell=None, block_rows=0, force_over_r=None):
    """Forces in the cubic box on a Dense list: F_i = sum_j phi'(|r_ij|) r_ij / |r_ij| over row i,
    r_ij = R_j - R_i (minimum image), phi' by forward-mode differentiation of the same pair
    function, sigma and epsilon of the slot's species pair. A gather and a sum along the rows:
    every pair is evaluated twice, but nothing is scattered (jax.grad of the energy on a half
    list scatter-adds each pair's force onto its two atoms, which XLA on CPU does slowly).
    Written for XLA's CPU loops: coordinates as three (N, M) planes (not (N, M, 3), whose
    3-wide inner axis does not vectorise), the periodic wrap by rounding (jax-md's jnp.mod is a
    slow fmod) and the species pair's parameters by selects on each atom's row of the tables
    (not a 2-d gather per slot): 3-4x faster at N = 256 than the same sums written on (N, M, 3)
    arrays with jax-md's displacement and parameter look-ups (measured, one core).
    With `cell` (a general periodic cell T, columns the cell vectors: softglass/shear.py's sheared
    box) the positions are fractions s and r_ij = T (s_ij - round(s_ij)), still in planes;
    the forces are real-space ones (what FIRE's velocities are).
    With block_rows > 0 the rows are summed block_rows at a time (lax.map over blocks; the last
    block padded with empty rows): the same sums, but each block's planes fit in cache, where
    at N = 10^4 the whole (3, N, M) planes stream through memory (FORCE_BLOCK_ROWS).
    With force_over_r(u, sigma, epsilon) (the "dense_r2" kernel: smoothed_lj_force_over_r) the
    pair term dE/dr / r comes from r^2 in closed form instead of differentiating `pair` at
    r = sqrt(r^2) and dividing by r."""

    def minimum_image(x, x_i, idx):                     # r_ij as three (rows, M) planes
        d = x[:, idx] - x_i[:, :, None]
        if cell is None:
            return d - box * jnp.round(d / box)
        d = d - jnp.round(d)
        return jnp.stack([sum(cell[a, b] * d[b] for b in range(3)) for a in range(3)])

    def row_forces(x, species, sigma, epsilon, x_i, s_i, idx):
        """F_i of the rows whose positions are x_i (3, rows), species s_i, list rows idx."""
        mask = idx < x.shape[1]                         # padding is N, as in jax-md
        dr = minimum_image(x, x_i, idx)                 # r_ij, (3, rows, M)
        r_sq = jnp.where(mask, dr[0] ** 2 + dr[1] ** 2 + dr[2] ** 2, 1)          # padding: 1
        s_j = species[idx]

        def of_pair(table):                             # table[s_i, s_j] per slot
            row = table[s_i]                            # (rows, n_species)
            return sum(jnp.where(s_j == b, row[:, b, None], 0) for b in range(table.shape[1]))

        if force_over_r is not None:
            g = force_over_r(r_sq, sigma=of_pair(sigma), epsilon=of_pair(epsilon))
            return jnp.sum(jnp.where(mask, g, 0) * dr, axis=2).T
        r = jnp.sqrt(r_sq)
        _, dphi = jax.jvp(lambda d: pair(d, sigma=of_pair(sigma), epsilon=of_pair(epsilon)),
                          (r,), (jnp.ones_like(r),))
        return jnp.sum(jnp.where(mask, dphi / r, 0) * dr, axis=2).T

    def forces(position, neighbor, species, sigma, epsilon, **unused):
        x, idx = position.T, neighbor.idx
        n = x.shape[1]
        if not 0 < block_rows < n:                      # one block: the whole list
            return row_forces(x, species, sigma, epsilon, x, species, idx)
        n_blocks = -(-n // block_rows)
        pad = n_blocks * block_rows - n                 # empty rows: every slot is padding
        rows = jnp.pad(jnp.arange(n), (0, pad)).reshape(n_blocks, block_rows)
        idx = jnp.pad(idx, ((0, pad), (0, 0)), constant_values=n).reshape(n_blocks, block_rows,
                                                                          -1)
        per_block = jax.lax.map(lambda b: row_forces(x, species, sigma, epsilon, x[:, b[0]],
                                                     species[b[0]], b[1]), (rows, idx))
        return per_block.reshape(n_blocks * block_rows, -1)[:n]

    return forces


def pair_forces(pair, box, cell, kernel, block_rows):
    """The forces a Dense list's kernel computes (dense_pair_forces): "dense_r2" takes the pair's
    closed form in r^2 where it has one (smoothed_lj; the soft spheres of the untangling have
    none and are differentiated, as with "dense")."""
    closed = getattr(pair, "force_over_r", None) if kernel == "dense_r2" else None
    return dense_pair_forces(pair, box, cell, block_rows, closed)


def pair_system(box, r_list, skin, pair, kernel, block_rows):
    """Shift, neighbour list and pair energy for a (traced) box. The energy function, given a
    Dense list (FORCE_KERNEL "dense" or "dense_r2"), returns the forces instead (in blocks of
    block_rows rows, see dense_pair_forces): jax-md's integrators and
    quantity.canonicalize_force take either, and the list's format is static under jit."""
    displacement, shift = space.periodic(box)
    metric = space.canonicalize_displacement_or_metric(displacement)
    return shift, NeighbourList(box, r_list, skin, fmt=list_format(kernel)), energy_or_forces(
        smap.pair_neighbor_list(pair, metric), pair_forces(pair, box, None, kernel, block_rows))


def energy_or_forces(energy_fn, forces_fn):
    """The pair energy on a half (OrderedSparse) list, the forces on a Dense one: the list's
    format is static under jit, so each compiled phase takes one branch."""

    def energy_or_forces(position, neighbor, **kwargs):
        if neighbor.format is partition.Dense:
            return forces_fn(position, neighbor, **kwargs)
        return energy_fn(position, neighbor=neighbor, **kwargs)

    return energy_or_forces



# ================================ float64 energy and forces ======================================
def pairs_with_parameters(positions, system):
    """The pairs within the cut-off, their r_ij, |r_ij|, and phi, phi', phi'' of their species
    pair (system: box, species, sigma, epsilon, r_onset, r_cutoff)."""
    i, j, rij = pair_list(positions, system["box"], system["r_cutoff"])
    s = np.asarray(system["species"])
    sig = np.asarray(system["sigma"])[s[i], s[j]]
    eps = np.asarray(system["epsilon"])[s[i], s[j]]
    r = np.linalg.norm(rij, axis=1)
    phi, d1, d2 = pair_derivatives(r, sig, eps, system["r_onset"], system["r_cutoff"])
    return i, j, rij, r, phi, d1, d2


def energy_and_forces(positions, system):
    """Total energy and forces from the pair list (float64), independent of the neighbour list."""
    i, j, rij, r, phi, d1, _ = pairs_with_parameters(positions, system)
    fij = (d1 / r)[:, None] * rij            # force on j from i is -phi'(r) n = -(d1/r) rij
    forces = np.zeros_like(positions)
    np.add.at(forces, i, fij)
    np.add.at(forces, j, -fij)
    return float(np.sum(phi)), forces
