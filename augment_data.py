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

Input: the data set DATA_DIR/metadata.pkl describes (generate_diverse_data.py): exactly the base
glasses it lists, with its atom count (a listed glass of another size is an error naming it).
Other glass files in DATA_DIR, and copies in DATA_DIR/augmented that are not of this set, are
reported and left alone, never used.

Output DATA_DIR/augmented/aug_0000.pkl ...: aug index = base_index * N_ROTATIONS + rotation, each
with the base's keys plus `cell` (3x3), `rotation` (3x3) and `base_index`. Resumable and
idempotent: valid existing files are kept. Last, DATA_DIR/augmented/manifest.json (atomically):
{n_atoms, n_rotations, seed, metadata_sha256, bases, files: {base: [names, rotation order]},
sha256: {name: hex}}: what train.py reads (read_manifest) instead of globbing the folder.
"""
import glob
import json
import os
import re
import time

import numpy as np

from softglass.cli import apply_overrides, exit_on_help, or_constants
from softglass.files import (GlassFileError, atomic_write_bytes, atomic_write_pickle, file_sha256,
                             load_glass, name_list, record_wall_time, safe_load_pickle)

# ================================ constants ====================================================
DATA_DIR = "data"                   # the data set: METADATA_FILE and the base glasses it lists
METADATA_FILE = "metadata.pkl"      # generate_diverse_data.py's list of the set (and atom count)
BASE_PATTERN = "glass_data_[0-9][0-9][0-9].pkl"   # base-glass names, only to report strays
AUG_SUBDIR = "augmented"            # output folder inside DATA_DIR
AUG_PATTERN = "aug_{:04d}.pkl"
MANIFEST_FILE = "manifest.json"     # in AUG_SUBDIR: the copies of this set, for train.py
N_ROTATIONS = 10                    # rotated copies per base glass
SEED = 0                            # rotation r of base b depends only on (SEED, b, r)

exit_on_help(globals())


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


# ================================ the dataset ====================================================
def read_metadata(data_dir=None):
    """DATA_DIR/metadata.pkl, checked, and the sha256 of its bytes. It names the data set: the
    base glasses every later step uses and their atom count, so no script sets either again."""
    data_dir, = or_constants(globals(), data_dir=data_dir)
    path = os.path.join(data_dir, METADATA_FILE)
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: file not found; run generate_diverse_data.py first (its "
                             "metadata lists the glasses of the data set)")
    meta = safe_load_pickle(path)
    records = meta.get("records") if isinstance(meta, dict) else None
    if not (isinstance(records, list) and records and isinstance(meta.get("n_atoms"), int)
            and all(isinstance(r, dict) and isinstance(r.get("file"), str) for r in records)):
        raise GlassFileError(f"{path}: not a metadata file of generate_diverse_data.py (needs "
                             "'n_atoms' and 'records' with a 'file' each); run it again")
    return meta, file_sha256(path)


def base_files(data_dir=None, meta=None):
    """The glasses of the data set: (index, path) of each file metadata.pkl lists, in its order
    (meta: that metadata, already read). A listed file that is missing is an error."""
    data_dir, = or_constants(globals(), data_dir=data_dir)
    meta = meta if meta is not None else read_metadata(data_dir)[0]
    source = os.path.join(data_dir, METADATA_FILE)
    bases = []
    for name in (r["file"] for r in meta["records"]):
        index, path = re.search(r"(\d+)\.pkl$", name), os.path.join(data_dir, name)
        if index is None or os.path.basename(name) != name:
            raise GlassFileError(f"{source}: lists {name!r}, not a numbered glass file")
        if not os.path.exists(path):
            raise GlassFileError(f"{path}: listed in {source} but missing; run "
                                 "generate_diverse_data.py again")
        bases.append((int(index[1]), path))
    if len({b for b, _ in bases}) != len(bases):
        raise GlassFileError(f"{source}: lists a base index twice")
    return bases


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


def augment_base(base_index, path, n_atoms):
    """Write the N_ROTATIONS copies of one base glass that are missing, invalid, or made from
    another version of the base (each copy records the sha256 of the base file it came from:
    a regenerated glass gets new copies, not its predecessor's)."""
    snap = None
    base_sha = file_sha256(path)
    written = 0
    for r in range(N_ROTATIONS):
        out = aug_path(base_index, r)
        rotation = random_rotation(np.random.default_rng([SEED, base_index, r]))
        if os.path.exists(out):
            try:
                old = load_augmented(out, n_atoms)
                if old["base_index"] == base_index and np.allclose(old["rotation"], rotation) \
                        and old.get("base_sha256") == base_sha:
                    continue
                print(f"  {out}: made from another base, version of it or seed: rewriting",
                      flush=True)
            except GlassFileError as err:
                print(f"  {err}: rewriting", flush=True)
        if snap is None:
            snap = load_glass(path, n_atoms)       # a bad base stops here, naming the file
        atomic_write_pickle(out, dict(rotate_glass(snap, rotation, base_index),
                                      base_sha256=base_sha))
        written += 1
    return written


# ================================ strays ========================================================
def stray_bases(bases):
    """Base-glass files in DATA_DIR that metadata.pkl does not list (an earlier, larger set)."""
    listed = {os.path.basename(p) for _, p in bases}
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA_DIR, BASE_PATTERN))
                  if os.path.basename(p) not in listed)


def stray_copies(manifest):
    """Copies in the augmented folder that are not of this set (another set, N_ROTATIONS)."""
    ours = set(manifest["sha256"])
    like = AUG_PATTERN.split("{", 1)[0] + "*" + AUG_PATTERN.rsplit("}", 1)[1]     # aug_*.pkl
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA_DIR, AUG_SUBDIR, like))
                  if os.path.basename(p) not in ours)


def report_strays(what, names):
    if names:
        print(f"note: {len(names)} {what} not in this data set, not used, left in place: "
              f"{name_list(names)}", flush=True)


# ================================ the manifest ===================================================
def build_manifest(n_atoms, metadata_sha256, bases):
    """What train.py uses: the copies of each base of this set, in rotation order, with the
    sha256 of each file (read back from disk: what a reader will find)."""
    aug_dir = os.path.join(DATA_DIR, AUG_SUBDIR)
    indices = sorted(b for b, _ in bases)
    files = {str(b): [os.path.basename(aug_path(b, r)) for r in range(N_ROTATIONS)]
             for b in indices}
    return dict(n_atoms=int(n_atoms), n_rotations=int(N_ROTATIONS), seed=int(SEED),
                metadata_sha256=metadata_sha256, bases=indices, files=files,
                sha256={n: file_sha256(os.path.join(aug_dir, n))
                        for names in files.values() for n in names})


def manifest_problem(m):
    """What is wrong with a manifest's structure, or None."""
    keys = ("n_atoms", "n_rotations", "seed", "metadata_sha256", "bases", "files", "sha256")
    if not isinstance(m, dict) or any(k not in m for k in keys):
        return f"expected a JSON object with keys {list(keys)}"
    if any(type(m[k]) is not int for k in ("n_atoms", "n_rotations", "seed")):
        return "'n_atoms', 'n_rotations' and 'seed' must be integers"
    if not (isinstance(m["bases"], list) and all(type(b) is int for b in m["bases"])
            and m["bases"] == sorted(set(m["bases"])) and m["bases"]):
        return "'bases' must be a sorted list of distinct base indices"
    if not isinstance(m["files"], dict) or set(m["files"]) != {str(b) for b in m["bases"]}:
        return "'files' must have one entry per base, keyed by its index"
    lists = list(m["files"].values())
    if any(not isinstance(v, list) or len(v) != m["n_rotations"] for v in lists):
        return "each 'files' entry must list n_rotations file names"
    names = [n for v in lists for n in v]
    if any(not isinstance(n, str) or os.path.basename(n) != n for n in names):
        return "'files' must hold plain file names (inside the augmented folder)"
    if not isinstance(m["sha256"], dict) or set(m["sha256"]) != set(names):
        return "'sha256' must hold exactly the listed files"
    return None


def read_manifest(data_dir=None, check_files=True):
    """DATA_DIR/augmented/manifest.json, validated, as a dict: its structure, that it was made
    from the metadata.pkl now in DATA_DIR (else the data set changed since), and (check_files)
    that every listed copy is there with its recorded sha256. GlassFileError naming the file."""
    data_dir, = or_constants(globals(), data_dir=data_dir)
    aug_dir = os.path.join(data_dir, AUG_SUBDIR)
    path = os.path.join(aug_dir, MANIFEST_FILE)

    def fail(problem):
        raise GlassFileError(f"{path}: {problem}; run augment_data.py (again)")

    if not os.path.exists(path):
        fail("file not found")
    try:
        with open(path, "rb") as fh:
            manifest = json.loads(fh.read())
    except (OSError, ValueError) as err:
        fail(f"not a readable manifest ({type(err).__name__}: {err})")
    problem = manifest_problem(manifest)
    if problem:
        fail(f"not a valid manifest ({problem})")
    metadata = os.path.join(data_dir, METADATA_FILE)
    if not os.path.exists(metadata) or file_sha256(metadata) != manifest["metadata_sha256"]:
        fail(f"made from another {metadata} than the one there now (the data set changed)")
    for name, digest in manifest["sha256"].items() if check_files else ():
        copy = os.path.join(aug_dir, name)
        if not os.path.exists(copy) or file_sha256(copy) != digest:
            fail(f"{name} is missing or changed since the manifest was written")
    return manifest


def main(argv=None):
    apply_overrides(globals(), argv)
    from tqdm import tqdm
    try:
        meta, metadata_sha256 = read_metadata()
        bases = base_files(meta=meta)
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    n_atoms = meta["n_atoms"]
    report_strays(f"base glass file(s) in {DATA_DIR}", stray_bases(bases))
    os.makedirs(os.path.join(DATA_DIR, AUG_SUBDIR), exist_ok=True)
    for tmp in glob.glob(os.path.join(DATA_DIR, AUG_SUBDIR, ".*.tmp")):
        os.unlink(tmp)                              # left by a run killed mid-write
    written, t0 = 0, time.perf_counter()
    try:
        for base_index, path in tqdm(bases, desc="augment", unit="glass"):
            written += augment_base(base_index, path, n_atoms)
    except GlassFileError as err:
        raise SystemExit(f"error: bad base glass: {err} ({METADATA_FILE}: n_atoms {n_atoms})")
    # Last, once every copy is on disk: a killed run leaves the previous manifest or none.
    manifest = build_manifest(n_atoms, metadata_sha256, bases)
    atomic_write_bytes(os.path.join(DATA_DIR, AUG_SUBDIR, MANIFEST_FILE),
                       json.dumps(manifest, indent=1).encode())
    report_strays(f"augmented file(s) in {os.path.join(DATA_DIR, AUG_SUBDIR)}",
                  stray_copies(manifest))
    print(f"{len(bases)} base glasses of {n_atoms} atoms x {N_ROTATIONS} rotations in "
          f"{os.path.join(DATA_DIR, AUG_SUBDIR)}: wrote {written}, kept "
          f"{len(bases) * N_ROTATIONS - written}; listed in {MANIFEST_FILE}")
    record_wall_time(DATA_DIR, "augment_data.py", time.perf_counter() - t0, written=written)


if __name__ == "__main__":
    main()
