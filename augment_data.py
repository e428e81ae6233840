"""Physics-informed augmentation: N_ROTATIONS random rotations of every base glass.

Seed README, "Physics-Informed Augmentation": the local-Hessian eigenvalues and the softness are
invariant under a global rotation, so they are copied, not recomputed (tests/test_augment.py
checks the invariance on a small glass).

Departure from the seed: the seed rotates the positions inside the same cubic periodic box, which
breaks periodicity (images of a rotated glass no longer tile the cube, so pair distances across
the boundary change). We rotate the cell with the positions: `cell` holds the rotated box
vectors as rows, cell = box_size * R^T, and every pair distance under periodic boundaries of that
cell equals the original one.

    python augment_data.py [--DATA_DIR=data] [--N_ROTATIONS=10] [--SEED=0]

Output DATA_DIR/augmented/aug_0000.pkl ...: aug index = base_index * N_ROTATIONS + rotation, each
with the base's keys plus `cell` (3x3), `rotation` (3x3) and `base_index`. Resumable and
idempotent: valid existing files are kept.
"""
import glob
import os
import re
import time

import numpy as np

from glass_io import (GlassFileError, apply_overrides, atomic_write_pickle, load_glass,
                      record_wall_time)

# ================================ constants ====================================================
DATA_DIR = "data"                   # where the base glasses are
BASE_PATTERN = "glass_data_[0-9][0-9][0-9].pkl"   # the diverse set (not glass_data_1k.pkl)
AUG_SUBDIR = "augmented"            # output folder inside DATA_DIR
AUG_PATTERN = "aug_{:04d}.pkl"
N_ROTATIONS = 10                    # rotated copies per base glass
SEED = 0                            # rotation r of base b depends only on (SEED, b, r)
N_ATOMS = 1000                      # every base glass must have this many atoms


# ================================ rotations ======================================================
def random_rotation(rng):
    """A rotation drawn uniformly (Haar measure) from SO(3): QR of a Gaussian matrix with the
    signs fixed (Mezzadri, Notices AMS 54, 592 (2007)), determinant forced to +1."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotate_glass(snap, rotation, base_index):
    """Rotate positions and cell together; copy the invariant labels and features."""
    out = {k: v for k, v in snap.items()}
    out["positions"] = snap["positions"] @ rotation.T
    out["cell"] = snap["box_size"] * rotation.T          # rows: the rotated box vectors
    out["rotation"] = rotation
    out["base_index"] = int(base_index)
    return out


def fractional_minimum_image(dr, cell):
    """Pair vectors dr under periodic boundaries of a (rotated) cell whose rows are box vectors."""
    frac = dr @ np.linalg.inv(cell)
    return (frac - np.round(frac)) @ cell


def wrapped_fractional(positions, cell):
    """Fractional coordinates of positions in a (rotated) cell, wrapped into [0, 1)."""
    frac = positions @ np.linalg.inv(cell)
    return frac - np.floor(frac)


# ================================ the dataset ====================================================
def base_files():
    """Sorted base glasses as (index from the file name, path)."""
    paths = sorted(glob.glob(os.path.join(DATA_DIR, BASE_PATTERN)))
    return [(int(re.search(r"(\d+)\.pkl$", p).group(1)), p) for p in paths]


def aug_path(base_index, r):
    return os.path.join(DATA_DIR, AUG_SUBDIR, AUG_PATTERN.format(base_index * N_ROTATIONS + r))


def load_augmented(path, n_atoms=None):
    """An augmented snapshot: the base schema plus a proper rotation and its cell."""
    snap = load_glass(path, n_atoms)
    for key in ("cell", "rotation", "base_index"):
        if key not in snap:
            raise GlassFileError(f"{path}: missing key '{key}'")
    rot = np.asarray(snap["rotation"])
    if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-10) \
            or np.linalg.det(rot) < 0:
        raise GlassFileError(f"{path}: 'rotation' is not a proper 3x3 rotation")
    if not np.allclose(snap["cell"], snap["box_size"] * rot.T, atol=1e-9):
        raise GlassFileError(f"{path}: 'cell' is not the rotated box")
    return snap


def augment_base(base_index, path):
    """Write the N_ROTATIONS copies of one base glass that are missing or invalid."""
    snap = None
    written = 0
    for r in range(N_ROTATIONS):
        out = aug_path(base_index, r)
        rotation = random_rotation(np.random.default_rng([SEED, base_index, r]))
        if os.path.exists(out):
            try:
                old = load_augmented(out, N_ATOMS)
                if old["base_index"] == base_index and np.allclose(old["rotation"], rotation):
                    continue
                print(f"  {out}: made from another base or seed: rewriting", flush=True)
            except GlassFileError as err:
                print(f"  {err}: rewriting", flush=True)
        if snap is None:
            snap = load_glass(path, N_ATOMS)       # a bad base stops here, naming the file
        atomic_write_pickle(out, rotate_glass(snap, rotation, base_index))
        written += 1
    return written


def main(argv=None):
    apply_overrides(globals(), argv)
    from tqdm import tqdm
    bases = base_files()
    if not bases:
        raise SystemExit(f"error: no base glasses {BASE_PATTERN} in {DATA_DIR}; "
                         "run generate_diverse_data.py first")
    os.makedirs(os.path.join(DATA_DIR, AUG_SUBDIR), exist_ok=True)
    for tmp in glob.glob(os.path.join(DATA_DIR, AUG_SUBDIR, ".*.tmp")):
        os.unlink(tmp)                              # left by a run killed mid-write
    written, t0 = 0, time.perf_counter()
    try:
        for base_index, path in tqdm(bases, desc="augment", unit="glass"):
            written += augment_base(base_index, path)
    except GlassFileError as err:
        raise SystemExit(f"error: bad base glass: {err}")
    print(f"{len(bases)} base glasses x {N_ROTATIONS} rotations in "
          f"{os.path.join(DATA_DIR, AUG_SUBDIR)}: wrote {written}, kept "
          f"{len(bases) * N_ROTATIONS - written}")
    record_wall_time(DATA_DIR, "augment_data.py", time.perf_counter() - t0, written=written)


if __name__ == "__main__":
    main()
