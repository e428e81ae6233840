"""Predicted softness of any glass, from a model trained by train.py.

For one glass, in the order of the paper's method:

  1. read       our .pkl snapshot (generate_*.py, augment_data.py) or an extended XYZ file with
                species and a cubic periodic cell (OVITO, ASE and LAMMPS dumps converted by them)
  2. minimise   FIRE in float64 to the inherent structure, max|F| < FORCE_TOL (generate_glass_data's
                FIRE; skipped with --MINIMIZE=False for a file that already is one: max|F| reported)
  3. features   local Hessian blocks D_i = sum_j K_ij and their eigenvalues (the model's input),
                checked against the sparse Hessian's diagonal blocks
  4. predict    the hybrid physics-transformer of MODEL, rebuilt from the architecture and feature
                scaling the file carries (loaded with weights_only=True)
  5. write      OUTPUT_DIR/<stem>_softness.xyz (extended XYZ: softness_pred, softness_true when
                known, the local eigenvalues; OVITO and ASE read it), <stem>_softness.png (a slab
                coloured by softness) and <stem>_softness.json (what was done, R when labels exist)

Labels: a .pkl carries the true softness; an XYZ may carry a `softness_true` (or `softness`)
column; TRUE_LABELS=True computes it from the Hessian's lowest modes (the label the model was
trained on: the number of modes is read from the model file). With labels, Pearson R is printed.

    python predict.py --INPUT=my_glass.xyz [--MODEL=hybrid_physics_best.pth] [--MINIMIZE=False]

The potential: the one the input records (a .pkl's parameters; the sigma=, epsilon=, r_onset=,
r_cutoff= keys that train.py and predict.py write into an XYZ header), else the constants below
(Kob-Andersen); SIGMA, EPSILON, R_ONSET or R_CUTOFF given on the command line win over the file.
Atoms must be of two species, A (0, the larger) and B (1), as in training.
"""
import json
import os
import re
import shlex
import sys
import time

import numpy as np

from glass_io import GlassFileError, apply_overrides, atomic_write_bytes, exit_on_help, load_glass

# ================================ constants ====================================================
# --- input and output ---
INPUT = ""                      # the glass: .pkl snapshot or extended XYZ (.xyz / .extxyz) with
                                # positions in sigma_AA (LJ reduced units, not Angstrom)
MODEL = "hybrid_physics_best.pth"   # written by train.py into its OUT_DIR (not checkpoint.pth)
OUTPUT_DIR = ""                 # <stem>_softness.xyz, .png and .json go here ("": beside INPUT)
MINIMIZE = True                 # FIRE to the inherent structure first (False: use the positions
                                # as they are; the model was trained on inherent structures)
TRUE_LABELS = False             # also compute the true softness from the Hessian's lowest modes
                                # (modes 4..3+n, n from the model file) and print R
DEVICE = "cpu"                  # "cpu", "cuda" or "auto" for the model (the physics runs on the
                                # CPU; the model in float32 either way)

# --- potential of an extended-XYZ input without one in its header (Kob & Andersen, PRE 51,
# 4626 (1995)); files written by train.py and predict.py carry theirs (sigma=, epsilon=, ...) ---
SIGMA = ((1.0, 0.8), (0.8, 0.88))     # sigma_ab, sigma_AA units   [[AA, AB], [BA, BB]]
EPSILON = ((1.0, 1.5), (1.5, 0.5))    # epsilon_ab, epsilon_AA units
R_ONSET = 2.0                   # start of the C1 smoothing, in units of max(sigma)
R_CUTOFF = 2.5                  # potential exactly zero beyond, in units of max(sigma)
SPECIES_A = "A"                 # name of species 0 (the larger, 80%) in an XYZ file; 0 is accepted
SPECIES_B = "B"                 # name of species 1 in an XYZ file; 1 is accepted

# --- checks ---
MAX_FORCE_WARN = 1e-6           # epsilon/sigma; with MINIMIZE=False, warn above this max|F|
                                # (the features of a non-minimum are not what the model learnt)
LABEL_MOVE_TOL = 0.1            # sigma; if FIRE moves the median atom further than this (rigid
                                # shift removed), the file's labels belong to another structure:
                                # R is withheld (wrong potential? not a minimum?). Thermal noise
                                # of a low-T snapshot moves atoms ~0.03; a wrong sigma ~0.3-0.4
DENSITY_MARGIN = 0.05           # sigma^-3; warn when the glass's density lies further than this
                                # outside the densities the model was trained on

exit_on_help(globals())         # --help lists the constants above without importing jax or torch


# ================================ 1. read ========================================================
def _extxyz_header(line, path):
    """key=value pairs of an extended-XYZ comment line (values may be quoted)."""
    try:
        pairs = shlex.split(line)
    except ValueError as err:
        raise GlassFileError(f"{path}: line 2 is not an extended-XYZ header ({err})")
    return {p.split("=", 1)[0].lower(): p.split("=", 1)[1] for p in pairs if "=" in p}


def read_extxyz(path):
    """One frame of extended XYZ: {columns}, the 3x3 cell (rows are box vectors), the header's
    key=value pairs (keys in lower case)."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
        n = int(lines[0].split()[0])
    except (OSError, ValueError, IndexError) as err:
        raise GlassFileError(f"{path}: not an XYZ file (first line must be the atom count; "
                             f"{type(err).__name__}: {err})")
    header = _extxyz_header(lines[1] if len(lines) > 1 else "", path)
    if "lattice" not in header:
        raise GlassFileError(f"{path}: no Lattice=\"...\" in line 2: the periodic cell is needed")
    try:
        cell = np.array(header["lattice"].split(), float).reshape(3, 3)
    except ValueError:
        raise GlassFileError(f"{path}: Lattice must hold 9 numbers, found {header['lattice']!r}")
    if "pbc" in header and header["pbc"].upper().split() not in (["T"] * 3, ["TRUE"] * 3):
        raise GlassFileError(f"{path}: pbc={header['pbc']!r}: the glass must be periodic in 3D")
    spec = header.get("properties", "species:S:1:pos:R:3").split(":")
    columns, start = {}, 0
    rows = [ln.split() for ln in lines[2:2 + n]]
    if len(rows) != n or any(len(r) != len(rows[0]) for r in rows):
        raise GlassFileError(f"{path}: expected {n} atom lines of equal length")
    for name, kind, width in zip(spec[::3], spec[1::3], spec[2::3]):
        block = [r[start:start + int(width)] for r in rows]
        start += int(width)
        try:
            columns[name.lower()] = (np.array(block, float) if kind in ("R", "I")
                                     else np.array(block, object))    # S, L: kept as text
        except ValueError as err:
            if name.lower() in ("pos", "softness_true", "softness"):     # the ones we read
                raise GlassFileError(f"{path}: column {name!r} is not numeric ({err})")
            columns[name.lower()] = np.array(block, object)
    return columns, cell, header


def cubic_frame(positions, cell, path):
    """Positions in the cell's own axis-aligned frame and the box length. The physics here needs a
    cubic cell; a rotated one (augment_data.py's copies) is rotated back, which changes nothing
    the model sees (distances are the same)."""
    box = float(np.linalg.norm(cell[0]))
    if not np.allclose(cell @ cell.T, box ** 2 * np.eye(3), atol=1e-8 * box ** 2):
        lengths = np.linalg.norm(cell, axis=1)
        cos = [float(cell[a] @ cell[b] / (lengths[a] * lengths[b])) for a, b in ((1, 2), (0, 2),
                                                                                 (0, 1))]
        angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        raise GlassFileError(f"{path}: only cubic periodic cells are supported (three orthogonal "
                             f"cell vectors of equal length); this one has lengths "
                             f"{np.round(lengths, 6).tolist()} and angles "
                             f"{np.round(angles, 3).tolist()} degrees")
    frac = positions @ np.linalg.inv(cell)
    return (frac - np.floor(frac)) * box, box


def species_codes(names, path):
    """0 for A, 1 for B, from SPECIES_A/SPECIES_B or the integers 0/1."""
    lookup = {SPECIES_A: 0, SPECIES_B: 1, "0": 0, "1": 1}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise GlassFileError(f"{path}: unknown species {unknown[:5]}; expected "
                             f"{SPECIES_A}/{SPECIES_B} or 0/1 (set --SPECIES_A, --SPECIES_B)")
    return np.array([lookup[s] for s in names], np.int64)


def potential_from_constants():
    """sigma, epsilon and absolute cut-offs (jax-md's convention: multiples of max sigma)."""
    sigma, epsilon = np.asarray(SIGMA, float), np.asarray(EPSILON, float)
    s = float(np.max(sigma))
    return dict(sigma=sigma, epsilon=epsilon, r_onset=R_ONSET * s, r_cutoff=R_CUTOFF * s)


def potential_from_header(header, path):
    """The potential recorded by train.py / predict.py (figures.potential_header), or None."""
    keys = ("sigma", "epsilon", "r_onset", "r_cutoff")
    if not any(k in header for k in keys):
        return None
    try:
        return dict(sigma=np.array(header["sigma"].split(), float).reshape(2, 2),
                    epsilon=np.array(header["epsilon"].split(), float).reshape(2, 2),
                    r_onset=float(header["r_onset"]), r_cutoff=float(header["r_cutoff"]))
    except (KeyError, ValueError) as err:
        raise GlassFileError(f"{path}: the header's potential ({', '.join(keys)}) is incomplete "
                             f"or malformed ({type(err).__name__}: {err})")


def read_glass(path):
    """The glass as positions in [0, box)^3 of its cubic cell's own frame, species, box, the cell
    as given (outputs are written in it), potential, true softness (or None)."""
    if path.endswith(".pkl"):
        snap = load_glass(path)
        cell = np.asarray(snap.get("cell", snap["box_size"] * np.eye(3)), float)
        positions, box = cubic_frame(np.asarray(snap["positions"], float), cell, path)
        p = snap["parameters"]
        potential = {k: (np.asarray(p[k], float) if k in ("sigma", "epsilon") else float(p[k]))
                     for k in ("sigma", "epsilon", "r_onset", "r_cutoff")}
        return dict(positions=positions, species=np.asarray(snap["species"], np.int64), box=box,
                    cell=cell, potential=potential, potential_from="the snapshot",
                    true=np.asarray(snap["softness_score"], float),
                    label_modes=p.get("n_soft_modes"))
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: file not found")
    columns, cell, header = read_extxyz(path)
    for need in ("species", "pos"):
        if need not in columns:
            raise GlassFileError(f"{path}: no '{need}' column in Properties")
    positions, box = cubic_frame(columns["pos"], cell, path)
    true = next((columns[k][:, 0] for k in ("softness_true", "softness") if k in columns), None)
    potential = potential_from_header(header, path)
    return dict(positions=positions, species=species_codes(columns["species"][:, 0], path),
                box=box, cell=cell, potential=potential or potential_from_constants(),
                potential_from="the file's header" if potential else
                "the constants SIGMA, EPSILON, R_ONSET, R_CUTOFF", true=true, label_modes=None)


# ================================ 2-3. inherent structure and features ===========================
def physical_system(glass, ggd):
    """generate_glass_data's system dict, refusing a box narrower than twice the cutoff."""
    p = glass["potential"]
    n = len(glass["positions"])
    if glass["box"] <= 2.0 * p["r_cutoff"]:
        raise ValueError(f"box {glass['box']:.3f} sigma is not wider than twice the cutoff "
                         f"{p['r_cutoff']:.3f}: the minimum-image convention would fail "
                         f"(N = {n} atoms at density {n / glass['box'] ** 3:.3f})")
    return dict(box=glass["box"], species=glass["species"].astype(np.int32), **p)


def displacement_from(before, after, box):
    """|r_after - r_before| per atom under periodic boundaries, the rigid shift removed (FIRE may
    drift the whole glass; that changes nothing about it)."""
    d = after - before
    d -= box * np.round(d / box)
    return np.linalg.norm(d - d.mean(axis=0), axis=1)


def relax_and_describe(glass, ggd, n_label_modes, label="softness"):
    """Inherent structure (or the given positions), the local-Hessian eigenvalues and, if asked,
    the true label (softness, or vibrality: the model's) over n_label_modes modes. Physics
    checks as in generate_glass_data.py."""
    system = physical_system(glass, ggd)
    t0 = time.perf_counter()
    if MINIMIZE:
        positions, energy, max_force, n_fire, _ = ggd.inherent_structure(glass["positions"],
                                                                         system)
    else:
        positions = glass["positions"]
        energy, forces = ggd.energy_and_forces(positions, system)
        max_force, n_fire = float(np.max(np.linalg.norm(forces, axis=1))), 0
        if max_force > MAX_FORCE_WARN:
            print(f"warning: max|F| = {max_force:.2e} > {MAX_FORCE_WARN:g}: not an inherent "
                  "structure (the model was trained on minima; use --MINIMIZE=True)")
    t_fire = time.perf_counter() - t0
    moved = displacement_from(glass["positions"], positions, system["box"])
    d_min = ggd.min_pair_distance(positions, system["box"])
    if d_min < ggd.MIN_PAIR_DISTANCE:
        raise ValueError(f"overlap: closest pair at {d_min:.3f} < {ggd.MIN_PAIR_DISTANCE} sigma")
    h, local = ggd.hessian(positions, system)
    ggd.check_hessian(h, local)
    out = dict(positions=positions, energy=energy, max_force=max_force, fire_steps=int(n_fire),
               eigenvalues=ggd.local_hessian_eigenvalues(local), min_pair_distance=d_min,
               moved_max=float(moved.max()), moved_median=float(np.median(moved)),
               seconds=dict(fire=t_fire))
    if TRUE_LABELS:
        vals, vecs = ggd.lowest_modes(h, ggd.N_ZERO_MODES + n_label_modes)
        ggd.check_modes(vals)
        out["true"] = (ggd.vibrality_from_modes(vals, vecs, n_modes=n_label_modes)
                       if label == "vibrality" else
                       ggd.softness_from_modes(vecs, n_soft=n_label_modes))
    out["seconds"]["features"] = time.perf_counter() - t0 - t_fire
    return out


# ================================ 4. the model ===================================================
def predicted_softness(model, scaling, card, glass, described, device):
    """The model's softness per atom, in softness units (its standardisation undone)."""
    import torch
    import train
    snap = dict(positions=described["positions"], species=glass["species"],
                box_size=glass["box"], eigenvalues=described["eigenvalues"],
                softness_score=np.zeros(len(glass["species"])))
    graph = train.glass_graph(snap, cutoff=card["architecture"]["cutoff"])
    s = {k: v.cpu() for k, v in scaling.items()}
    g = train.scaled([graph], s)[0].to(device)
    with torch.no_grad():                           # full precision on every device: no autocast
        pred = model(g.x, g.edge_index, g.edge_dist).float().cpu()
    return (pred * s["y_std"] + s["y_mean"]).to(torch.float64).numpy()


# ================================ 5. outputs =====================================================
def write_softness_xyz(path, described, glass, pred, true, comment):
    """Extended XYZ of the structure the prediction is for, in the input's own cell (it overlays
    the input in OVITO): species, positions, softness_true (when known), softness_pred, the local
    eigenvalues, and the potential used."""
    import figures
    positions = described["positions"] / glass["box"] @ glass["cell"]
    columns = ({} if true is None else dict(softness_true=true))
    columns.update(softness_pred=pred, lambda_local=described["eigenvalues"])
    figures.write_extxyz(path, positions, glass["species"], glass["cell"], columns, comment,
                         potential=glass["potential"], names=(SPECIES_A, SPECIES_B))


def output_paths(input_path):
    stem = re.sub(r"\.(pkl|xyz|extxyz)$", "", os.path.basename(input_path))
    base = os.path.join(OUTPUT_DIR or os.path.dirname(os.path.abspath(input_path)),
                        stem + "_softness")
    return {ext: base + "." + ext for ext in ("xyz", "png", "json")}


def check_model_file(path):
    """Refuse at once (before importing jax and torch) what cannot be a model file."""
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: model file not found (train.py writes it as "
                             "hybrid_physics_best.pth into its OUT_DIR; run `make pipeline`)")
    if os.path.basename(path) == "checkpoint.pth":
        raise GlassFileError(f"{path}: a training checkpoint, not a model file: use "
                             "hybrid_physics_best.pth beside it")


def true_softness(glass, described, n_modes, label="softness"):
    """The labels to score against and what they are, or (None, reason). A file's labels belong
    to the file's structure: if FIRE moved the median atom more than LABEL_MOVE_TOL they are not
    this structure's, and R is withheld rather than reported wrong."""
    if described.get("true") is not None:
        return described["true"], f"{label} over {n_modes} modes, computed here"
    if glass["true"] is None:
        return None, "no labels in the input (--TRUE_LABELS=True computes them)"
    if described["moved_median"] > LABEL_MOVE_TOL:
        return None, (f"FIRE moved the median atom {described['moved_median']:.3f} sigma (up to "
                      f"{described['moved_max']:.3f}) from the file's positions, so its labels "
                      f"are of another structure: is the potential right ({glass['potential_from']})"
                      f"? is the file an inherent structure? (--MINIMIZE=False scores it as given;"
                      f" --TRUE_LABELS=True recomputes the labels)")
    if label != "softness":
        print(f"warning: the model learnt {label}; the file's labels are softness")
    elif glass["label_modes"] not in (None, n_modes):
        print(f"warning: the file's softness sums {glass['label_modes']} modes, the model "
              f"learnt {n_modes}")
    return glass["true"], "from the input file"


def warn_outside_training(glass, card):
    """The model has seen a range of densities; far outside it (wrong units, another system)
    its prediction is an extrapolation."""
    n = len(glass["species"])
    density = n / glass["box"] ** 3
    lo, hi = card.get("density_range") or (None, None)
    if lo is not None and not lo - DENSITY_MARGIN <= density <= hi + DENSITY_MARGIN:
        print(f"warning: density {density:.4f} sigma^-3 lies outside the {lo:.3f}-{hi:.3f} the "
              f"model was trained on (positions must be in sigma_AA, not Angstrom): its "
              f"prediction is an extrapolation")


# ================================ main ===========================================================
_POTENTIAL = ("SIGMA", "EPSILON", "R_ONSET", "R_CUTOFF")


def main(argv=None):
    overridden = apply_overrides(globals(), argv)
    if not INPUT:
        raise SystemExit("error: name the glass with --INPUT=path (.pkl or extended .xyz); "
                         "--help lists the constants")
    t_start = time.perf_counter()
    try:
        glass = read_glass(INPUT)
        check_model_file(MODEL)
        if set(overridden) & set(_POTENTIAL):       # asked for on the command line: it wins
            glass.update(potential=potential_from_constants(), potential_from=(
                "the command line (" + ", ".join(sorted(set(overridden) & set(_POTENTIAL)))
                + "), not the file"))
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    import figures
    import generate_glass_data as ggd
    import train
    ggd.SHOW_PROGRESS = sys.stderr.isatty()
    ggd.enable_compilation_cache(ggd.JAX_CACHE_DIR)
    device = train.choose_device(DEVICE)            # refuses cuda without a GPU, names the fix
    try:
        model, scaling, card = train.load_trained_model(MODEL, device)
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    n_modes = int(card.get("n_soft_modes") or 10)
    n = len(glass["species"])
    print(f"{INPUT}: {n} atoms, box {glass['box']:.4f} sigma (density {n / glass['box'] ** 3:.4f}),"
          f" potential from {glass['potential_from']}; model {MODEL} (trained on "
          f"{card.get('n_atoms')}-atom glasses, {card.get('label', 'softness')} over {n_modes} "
          f"modes, commit "
          f"{str(card.get('commit'))[:12]})")
    warn_outside_training(glass, card)
    try:
        described = relax_and_describe(glass, ggd, n_modes, card.get("label", "softness"))
    except (ValueError, RuntimeError) as err:       # too small a box, FIRE failed, bad Hessian
        raise SystemExit(f"error: {INPUT}: {err}")
    print(f"  {'inherent structure' if MINIMIZE else 'as given'}: E/N = "
          f"{described['energy'] / n:.6f}, max|F| = {described['max_force']:.2e} after "
          f"{described['fire_steps']} FIRE steps (atoms moved up to {described['moved_max']:.3g} "
          f"sigma); closest pair {described['min_pair_distance']:.3f}")
    t0 = time.perf_counter()
    pred = predicted_softness(model, scaling, card, glass, described, device)
    seconds = dict(described["seconds"], model=time.perf_counter() - t0)
    true, label = true_softness(glass, described, n_modes, card.get("label", "softness"))
    r = float(np.corrcoef(pred, true)[0, 1]) if true is not None else None

    paths = output_paths(INPUT)
    comment = f"predicted softness of {os.path.basename(INPUT)} by {os.path.basename(MODEL)}" + \
        (f"; R = {r:.4f} against the true softness ({label})" if r is not None else "")
    write_softness_xyz(paths["xyz"], described, glass, pred, true, comment)
    snap = dict(positions=described["positions"], species=glass["species"],
                cell=glass["box"] * np.eye(3))
    figures.plot_slice(snap, pred, true, paths["png"], comment)
    summary = dict(input=INPUT, model=MODEL, model_commit=card.get("commit"), n_atoms=n,
                   potential_from=glass["potential_from"], minimized=MINIMIZE,
                   max_force=described["max_force"], fire_steps=described["fire_steps"],
                   moved_max=described["moved_max"], energy_per_atom=described["energy"] / n,
                   R=r, label=label, seconds=seconds, wall_seconds=time.perf_counter() - t_start)
    atomic_write_bytes(paths["json"], json.dumps(summary, indent=2).encode())
    print(f"  R = {r:.4f} against the true softness ({label})" if r is not None else
          f"  no R: {label}")
    print(f"wrote {paths['xyz']} (open in OVITO: colour by softness_pred), {paths['png']}, "
          f"{paths['json']} in {summary['wall_seconds']:.1f}s")
    return summary


if __name__ == "__main__":
    main()
