"""Periodic geometry in numpy: the one pair finder and the minimum image, in a cubic box or any
periodic cell (a sheared box, a rotated cube). No jax: train.py and the plots use it too.

  periodic_pairs             index pairs i < j closer than r_cut, in a cubic box (a number) or a
                             general cell (a 3x3 matrix, columns the cell vectors, positions as
                             fractions)
  pair_list                  those pairs with their minimum-image vectors r_ij (float64 forces,
                             the Hessian)
  fractional_minimum_image,  the minimum image and wrapped fractions in a cell whose rows are the
  wrapped_fractional         box vectors (augment_data's rotated cubes)
  min_pair_distance          the closest pair (an overlap check)

A scipy periodic k-d tree finds the pairs in O(N log N): in the cubic box on the wrapped positions,
in a general cell on the fractional coordinates (unit box) with a radius grown by the cell's
smallest singular value, then filtered by the real distance.
"""
import numpy as np
from scipy.spatial import cKDTree


def periodic_pairs(positions, cell, r_cut):
    """Index pairs (i, j), i < j, closer than r_cut under periodic boundaries.
    cell a number: the cubic box [0, cell)^3, positions in real space; scipy's periodic k-d tree on
    the positions wrapped into the box. cell a 3x3 matrix (columns the cell vectors T): positions
    are fractions s (r = T s); the tree searches the unit box with radius r_cut / sigma_min(T),
    which holds every pair within r_cut, and the real distances keep those within it."""
    if np.ndim(cell) == 0:
        box = float(cell)
        wrapped = np.mod(positions, box)
        wrapped[wrapped >= box] = 0.0           # np.mod of a tiny negative number can give box
        return cKDTree(wrapped, boxsize=box).query_pairs(r_cut, output_type="ndarray")
    i, j, _ = _cell_pairs(positions, cell, r_cut)
    return np.stack([i, j], axis=1)


def _cell_pairs(frac, cell, r_cut):
    frac = np.mod(frac, 1.0)
    frac[frac >= 1.0] = 0.0                     # mod of -1e-17 rounds to 1.0
    radius = r_cut / np.linalg.svd(cell, compute_uv=False)[-1]
    pairs = cKDTree(frac, boxsize=1.0).query_pairs(min(radius, 0.8660254), output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    ds = frac[j] - frac[i]
    ds -= np.round(ds)
    rij = ds @ cell.T
    keep = np.einsum("ij,ij->i", rij, rij) < r_cut ** 2
    return i[keep], j[keep], rij[keep]


def pair_list(positions, cell, r_cut):
    """All pairs i < j closer than r_cut (periodic_pairs) with r_ij = r_j - r_i, the minimum
    image: in the cubic box (cell a number) wrapped by the box length, in a general cell (positions
    fractions) T (s_j - s_i - round(s_j - s_i))."""
    if np.ndim(cell) != 0:
        return _cell_pairs(positions, cell, r_cut)
    box = cell
    pairs = periodic_pairs(positions, box, r_cut)
    i, j = pairs[:, 0], pairs[:, 1]
    rij = positions[j] - positions[i]
    rij -= box * np.round(rij / box)
    return i, j, rij


def fractional_minimum_image(dr, cell):
    """Pair vectors dr under periodic boundaries of a (rotated) cell whose rows are box vectors."""
    frac = dr @ np.linalg.inv(cell)
    return (frac - np.round(frac)) @ cell


def wrapped_fractional(positions, cell):
    """Fractional coordinates of positions in a (rotated) cell, wrapped into [0, 1)."""
    frac = positions @ np.linalg.inv(cell)
    return frac - np.floor(frac)


def min_pair_distance(positions, box):
    """The closest pair's distance in the cubic box (an overlap check)."""
    d, _ = cKDTree(np.mod(positions, box), boxsize=box).query(np.mod(positions, box), k=2)
    return float(np.min(d[:, 1]))
