"""The simulated system: a cubic periodic box, the species of its atoms, and the interaction
parameters of each species pair (absolute cut-offs). A system is a plain dict (box, species,
sigma, epsilon, r_onset, r_cutoff), the form the compiled phases take as traced arguments."""
import numpy as np

from .potentials import absolute_cutoffs


def box_length(n_atoms, density):
    """L = (N / rho)^(1/3)."""
    return float((n_atoms / density) ** (1.0 / 3.0))


def check_minimum_image(n_atoms, density, r_cut):
    """A box narrower than 2 r_cut lets an atom see two images of a neighbour: refuse it."""
    if not (isinstance(n_atoms, (int, np.integer)) and n_atoms > 0 and density > 0):
        raise ValueError(f"N_ATOMS={n_atoms!r} and DENSITY={density!r} must be positive")
    box = box_length(n_atoms, density)
    if box <= 2.0 * r_cut:
        n_min = int(np.ceil(density * (2.0 * r_cut) ** 3)) + 1
        raise ValueError(f"N_ATOMS={n_atoms} at density {density} gives a box of {box:.3f} sigma, "
                         f"not wider than twice the cutoff ({2 * r_cut:.3f}); the minimum-image "
                         f"convention would fail. Use N_ATOMS >= {n_min} at this density.")
    return box


def assign_species(n_atoms, species_ratio, rng):
    """N_A = round(ratio * N) atoms of type A (0), the rest B (1), in random order."""
    n_a = int(round(species_ratio * n_atoms))
    species = np.ones(n_atoms, np.int32)
    species[:n_a] = 0
    return rng.permutation(species).astype(np.int32)


def make_system(n_atoms, density, species_ratio, sigma, epsilon, r_onset, r_cutoff, seed):
    """Box, species and interaction parameters (absolute cut-offs: r_onset and r_cutoff are in
    units of max(sigma), as in jax-md) of one glass; species drawn from `seed`."""
    sigma, epsilon = np.asarray(sigma, np.float64), np.asarray(epsilon, np.float64)
    r_on, r_cut = absolute_cutoffs(sigma, r_onset, r_cutoff)
    box = check_minimum_image(n_atoms, density, r_cut)
    rng = np.random.default_rng(seed)
    return dict(box=box, species=assign_species(n_atoms, species_ratio, rng), sigma=sigma,
                epsilon=epsilon, r_onset=r_on, r_cutoff=r_cut)
