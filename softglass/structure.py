"""The short-range order of a glass: coordination numbers and bond angles, the checks that a
network glass is what it should be (amorphous Si: four bonds per atom, angles spread around the
tetrahedral 109.5 degrees; Vink et al., J. Non-Cryst. Solids 282, 248 (2001))."""
import numpy as np

from .pairs import pair_list


def bonds(positions, box, r_bond):
    """The bonded pairs (i, j, r_ij) closer than r_bond (the first minimum of g(r))."""
    return pair_list(np.asarray(positions, np.float64), box, r_bond)


def coordination(positions, box, r_bond):
    """Each atom's number of neighbours closer than r_bond."""
    i, j, _ = bonds(positions, box, r_bond)
    return np.bincount(np.concatenate([i, j]), minlength=len(positions))


def bond_angles(positions, box, r_bond):
    """Every angle j-i-k (degrees) between two bonds of one atom i."""
    i, j, rij = bonds(positions, box, r_bond)
    centre = np.concatenate([i, j])
    vectors = np.concatenate([rij, -rij])          # from the centre to its neighbour
    order = np.argsort(centre, kind="stable")
    centre, vectors = centre[order], vectors[order]
    starts = np.searchsorted(centre, np.arange(len(positions) + 1))
    angles = []
    for a in range(len(positions)):
        v = vectors[starts[a]:starts[a + 1]]
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        first, second = np.triu_indices(len(v), k=1)
        angles.append(np.degrees(np.arccos(np.clip(np.sum(v[first] * v[second], axis=1),
                                                   -1.0, 1.0))))
    return np.concatenate(angles) if angles else np.zeros(0)


def network_summary(positions, box, r_bond):
    """Mean coordination, the share of fourfold atoms, and the bond angles' mean and spread."""
    z = coordination(positions, box, r_bond)
    theta = bond_angles(positions, box, r_bond)
    return dict(r_bond=float(r_bond), mean_coordination=float(z.mean()),
                fourfold_fraction=float(np.mean(z == 4)),
                bond_angle_mean=float(theta.mean()), bond_angle_std=float(theta.std()))
