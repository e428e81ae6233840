"""Predicted softness of any glass, from a model trained by train.py.

For one glass, in the order of the paper's method:

  1. read       our .pkl snapshot (generate_*.py, augment_data.py) or any structure file ASE reads
                (ase.io.read: extended XYZ, LAMMPS dump and data files, POSCAR, CIF, ...) with a
                cubic periodic cell, positions in sigma_AA and two species mapped to A and B
  2. minimise   FIRE in float64 to the inherent structure, max|F| < FORCE_TOL (generate_glass_data's
                FIRE; skipped with --MINIMIZE=False for a file that already is one: max|F| reported)
  3. features   local Hessian blocks D_i = sum_j K_ij and their eigenvalues (the model's input),
                checked against the sparse Hessian's diagonal blocks
  4. predict    the hybrid physics-transformer of MODEL, rebuilt from the architecture and feature
                scaling the file carries (loaded with weights_only=True)
  5. write      OUTPUT_DIR/<stem>_softness.xyz (extended XYZ written by ase.io.write, species as
                element symbols, A->Ni and B->P unless SPECIES_A/B name other elements; header keys
                species_A, species_B record the mapping: softness_pred, softness_true when known,
                the local eigenvalues), <stem>_softness.png (a slab coloured by softness) and
                <stem>_softness.json (what was done, every warning, R when labels exist)

Labels: a .pkl carries the true softness; an XYZ may carry a `softness_true` (or `softness`)
column; TRUE_LABELS=True computes it from the Hessian's lowest modes (the label the model was
trained on: the number of modes is read from the model file). With labels, Pearson R is printed.

    python predict.py --INPUT=my_glass.xyz [--MODEL=path.pth] [--MINIMIZE=False]
    python predict.py --INPUT=dump.glass --SPECIES_A=1 --SPECIES_B=2   # LAMMPS types 1 and 2

The model: MODEL when given, else the freshly trained TRAINED_MODEL (train.py's output) when it
exists, else the SHIPPED_MODEL of the repository; the one used is printed and recorded.

The potential: the one the input records (a .pkl's parameters; the sigma=, epsilon=, r_onset=,
r_cutoff= keys that train.py and predict.py write into an XYZ header), else the constants below
(Kob-Andersen, said on stdout and in the .json); SIGMA, EPSILON, R_ONSET or R_CUTOFF given on the
command line win over the file. Atoms must be of two species, A (0, the larger) and B (1).

Outputs that exist are replaced (said on stdout and recorded in the .json), unless they hold the
prediction of another input (X.pkl and X.xyz in one folder): that is refused before any work.
"""
import json
import os
import sys
import time

import numpy as np

from softglass.cli import apply_overrides, exit_on_help
from softglass.files import (GlassFileError, atomic_write_bytes, check_writable, former_of,
                             load_glass, read_structure, write_extxyz)

# ================================ constants ====================================================
# --- input and output ---
INPUT = ""                      # the glass: our .pkl snapshot, or any file ase.io.read reads, with
                                # positions in sigma_AA (LJ reduced units, not Angstrom)
INPUT_FORMAT = ""               # ase.io format of INPUT ("": from its name: .xyz/.extxyz extxyz,
                                # .lammpstrj/.dump/dump.* lammps-dump-text, .data/.lmp/data.*
                                # lammps-data, else ASE's guess: POSCAR, .cif, ...)
FRAME = ""                      # index of the frame to use in a file of several ("": the file
                                # must hold one; several are refused rather than one picked)
SPECIES_A = "Ni"                # the file's species that is A (the larger, 80%): an element symbol
                                # or a name the file uses (case-insensitive), or a LAMMPS type
                                # number; a file written by predict.py records its own mapping
SPECIES_B = "P"                 # the file's species that is B (Kob-Andersen's A80B20 models
                                # Ni80P20); any other species in the file is an error
ELEMENT_A = "Ni"                # element symbol written for A when SPECIES_A is none (a LAMMPS
                                # type, an A/B label): A80B20 models Ni80P20
ELEMENT_B = "P"                 # the same for B when SPECIES_B is no element symbol
MODEL = ""                      # the model file ("": TRAINED_MODEL if it exists, else
                                # SHIPPED_MODEL; the one used is printed and recorded)
TRAINED_MODEL = "hybrid_physics_best.pth"   # train.py's OUT_DIR/BEST_FILE (OUT_DIR "." : the
                                # folder train.py ran in; here, this folder or the working one)
SHIPPED_MODEL = "models/default_s10.pth"    # the model shipped with the repository (relative
                                # to this script's folder)
OUTPUT_DIR = ""                 # <stem>_softness.xyz, .png and .json go here ("": beside INPUT)
MINIMIZE = True                 # FIRE to the inherent structure first (False: use the positions
                                # as they are; the model was trained on inherent structures)
TRUE_LABELS = False             # also compute the true softness from the Hessian's lowest modes
                                # (modes 4..3+n, n from the model file) and print R
ANY_FORMER = False              # a .pkl glass of another former than the model's (its parameters name
                                # it: cuzr, sw): refused unless True, then predicted as a transfer,
                                # its lengths scaled to the model's mean density and its local
                                # stiffnesses to the model's mean (the features made dimensionless)
DEVICE = "cpu"                  # "cpu", "cuda" or "auto" for the model (the physics runs on the
                                # CPU; the model in float32 either way)

# --- potential of an input without one ---
# Kob & Andersen, PRE 51, 4626 (1995); files written by train.py and predict.py carry theirs
# (sigma=, epsilon=, r_onset=, r_cutoff= in the header), a .pkl its parameters.
SIGMA = ((1.0, 0.8), (0.8, 0.88))     # sigma_ab, sigma_AA units   [[AA, AB], [BA, BB]]
EPSILON = ((1.0, 1.5), (1.5, 0.5))    # epsilon_ab, epsilon_AA units
R_ONSET = 2.0                   # start of the C1 smoothing, in units of max(sigma)
R_CUTOFF = 2.5                  # potential exactly zero beyond, in units of max(sigma)

# --- checks ---
MAX_FORCE_WARN = 1e-6           # epsilon/sigma; with MINIMIZE=False, warn above this max|F|
                                # (the features of a non-minimum are not what the model learnt)
LABEL_MOVE_TOL = 0.1            # sigma; if FIRE moves the median atom further than this (rigid
                                # shift removed), the file's labels belong to another structure:
                                # R is withheld (wrong potential? not a minimum?). Thermal noise
                                # of a low-T snapshot moves atoms ~0.03; a wrong sigma ~0.3-0.4
DENSITY_MARGIN = 0.05           # sigma^-3; warn when the glass's density lies further than this
                                # outside the densities the model was trained on
OVERLAP_FRACTION = 0.5          # of the pair's sigma_ab; a closer pair in the input is refused
                                # before FIRE (a duplicated atom, other units), which otherwise
                                # ends in MAX_FIRE_STEPS or an ARPACK failure far from the cause.
                                # There the pair energy is ~1.6e4 epsilon_ab; test_glass.xyz's
                                # closest pair is at 1.005 sigma_ab
MINORITY_A_WARN = 0.5           # warn when fewer than this fraction of atoms are A (Kob-Andersen's
                                # A is 80%: SPECIES_A and SPECIES_B swapped?)

exit_on_help(globals())         # --help lists the constants above without importing jax or torch

_HERE = os.path.dirname(os.path.abspath(__file__))
_WARNINGS, _NOTES = [], []      # of this run, printed and recorded in the .json


def warn(message):
    """A doubt about the result: printed and recorded in the output .json."""
    print(f"warning: {message}")
    _WARNINGS.append(message)


def note(message):
    """A choice made for the user (a default used, a file replaced): printed and recorded."""
    print(f"note: {message}")
    _NOTES.append(message)


# ================================ 1. read ========================================================
def read_extxyz(path):
    """One frame of extended XYZ through ASE: {column: (N, k) array} (species as written, pos,
    every per-atom column; names in lower case), the 3x3 cell (rows are box vectors), the header's
    key=value pairs (keys in lower case; numbers parsed by ASE)."""
    s = read_structure(path, "extxyz")
    atoms = s["atoms"]
    columns = dict(species=s["labels"].astype(object)[:, None], pos=atoms.positions)
    columns.update({k.lower(): np.asarray(v).reshape(len(atoms), -1) for k, v in
                    atoms.arrays.items() if k not in ("numbers", "positions")})
    return columns, np.array(atoms.cell), {k.lower(): v for k, v in atoms.info.items()}


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


def _element(name):
    """The element symbol `name` is (case-insensitive), or None (a type number, an A/B label)."""
    from ase.data import chemical_symbols
    found = [s for s in chemical_symbols[1:] if s.lower() == str(name).strip().lower()]
    return found[0] if found else None


def species_mapping(labels, header, given):
    """(name of A, name of B, where the mapping comes from): SPECIES_A/SPECIES_B from the command
    line; else the species_A/species_B a file of predict.py records; else, for a file whose
    species are A and B, or 0 and 1 (what predict.py read before files carried element
    symbols), those; else the constants."""
    if given & {"SPECIES_A", "SPECIES_B"}:
        return SPECIES_A, SPECIES_B, "SPECIES_A, SPECIES_B on the command line"
    if "species_a" in header and "species_b" in header:
        return str(header["species_a"]), str(header["species_b"]), "the file's header"
    if "A" in set(labels) and set(labels) <= {"A", "B"}:      # "A" is no element: an A/B file
        return "A", "B", "the file's own A/B labels"
    if "0" in set(labels) and set(labels) <= {"0", "1"}:      # LAMMPS types start at 1: 0 is A
        return "0", "1", "the file's own 0/1 labels"
    return SPECIES_A, SPECIES_B, "the constants SPECIES_A, SPECIES_B"


def species_codes(labels, types, name_a, name_b, path):
    """0 for A, 1 for B: an atom is A when its species as written (or its LAMMPS type) is
    name_a, B when it is name_b; a species that is neither (or both) is an error naming it."""
    labels = np.asarray(labels).astype(str)

    def matches(name):
        name = str(name).strip()
        hit = np.char.lower(labels) == name.lower()
        if types is not None and name.lstrip("+-").isdigit():
            hit |= types == int(name)
        return hit

    if str(name_a).strip().lower() == str(name_b).strip().lower():
        raise GlassFileError(f"{path}: SPECIES_A and SPECIES_B are both {name_a!r}")
    is_a, is_b = matches(name_a), matches(name_b)
    for bad, what in ((is_a & is_b, "both A and B"), (~(is_a | is_b), "neither A nor B")):
        if bad.any():
            kinds = sorted(set(labels[bad]) if types is None else
                           {f"type {t} (read as {s})" for t, s in zip(types[bad], labels[bad])})
            present = sorted(set(labels) if types is None else
                             {f"type {t} ({s})" for t, s in zip(types, labels)})
            raise GlassFileError(
                f"{path}: unknown species {', '.join(kinds[:5])} ({int(bad.sum())} atoms): it "
                f"maps to {what} (A is {name_a!r}, B is {name_b!r}); the file holds "
                f"{', '.join(present[:8])}: name A and B with --SPECIES_A and --SPECIES_B (an "
                "element symbol, the name the file uses, or a LAMMPS type number)")
    return np.where(is_a, 0, 1).astype(np.int64)


def check_two_species(species, names, path):
    """The model is for a binary A/B glass: one species only is refused; A as the minority (it
    is 80% in Kob-Andersen) is warned about: a swapped mapping gives a confident wrong answer."""
    n_a = int(np.sum(species == 0))
    if n_a in (0, len(species)):
        raise GlassFileError(f"{path}: all {len(species)} atoms are {'B' if n_a == 0 else 'A'} "
                             f"(A is {names[0]!r}, B is {names[1]!r}): the model is for a binary "
                             "A/B glass (check SPECIES_A and SPECIES_B)")
    if n_a < MINORITY_A_WARN * len(species):
        warn(f"{path}: only {n_a} of {len(species)} atoms are A ({names[0]!r}); Kob-Andersen's A "
             f"is the 80% majority: are SPECIES_A and SPECIES_B swapped?")


def check_finite(positions, cell, line, path):
    """Refuse a non-finite coordinate, naming the atom and its line (before any physics: a NaN
    would otherwise surface as a failed minimisation)."""
    if not np.all(np.isfinite(cell)):
        raise GlassFileError(f"{path}: the cell holds non-finite numbers {cell.tolist()}")
    bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
    if bad.size:
        where = [f"atom {i}" + (f" (line {line[i]})" if line is not None else "")
                 + f": {positions[i].tolist()}" for i in bad[:3]]
        raise GlassFileError(f"{path}: {bad.size} atom(s) with a non-finite position: "
                             + "; ".join(where))


def potential_from_constants():
    """sigma, epsilon and absolute cut-offs (jax-md's convention: multiples of max sigma)."""
    sigma, epsilon = np.asarray(SIGMA, float), np.asarray(EPSILON, float)
    s = float(np.max(sigma))
    return dict(sigma=sigma, epsilon=epsilon, r_onset=R_ONSET * s, r_cutoff=R_CUTOFF * s)


def _numbers(value):
    """A header value as numbers: ASE parses them already; text (older callers) is split."""
    return np.asarray(value.split() if isinstance(value, str) else value, float).ravel()


def potential_from_header(header, path):
    """The potential recorded by train.py / predict.py (figures.potential_info), or None."""
    keys = ("sigma", "epsilon", "r_onset", "r_cutoff")
    if not any(k in header for k in keys):
        return None
    try:
        return dict(sigma=_numbers(header["sigma"]).reshape(2, 2),
                    epsilon=_numbers(header["epsilon"]).reshape(2, 2),
                    r_onset=float(_numbers(header["r_onset"])[0]),
                    r_cutoff=float(_numbers(header["r_cutoff"])[0]))
    except (KeyError, ValueError, IndexError) as err:
        raise GlassFileError(f"{path}: the header's potential ({', '.join(keys)}) is incomplete "
                             f"or malformed ({type(err).__name__}: {err})")


def read_glass(path, given=frozenset()):
    """The glass as positions in [0, box)^3 of its cubic cell's own frame, species, box, the cell
    as given (outputs are written in it), potential, true softness (or None), line of each atom
    in the file (or None), how file species map to A and B. `given`: constants set on the
    command line (they win over what the file records)."""
    if path.endswith(".pkl") and not INPUT_FORMAT:
        snap = load_glass(path)
        cell = np.asarray(snap.get("cell", snap["box_size"] * np.eye(3)), float)
        positions, box = cubic_frame(np.asarray(snap["positions"], float), cell, path)
        p = snap["parameters"]
        if former_of(snap) != "ka":
            return former_glass(snap, positions, box, cell)
        potential = {k: (np.asarray(p[k], float) if k in ("sigma", "epsilon") else float(p[k]))
                     for k in ("sigma", "epsilon", "r_onset", "r_cutoff")}
        species = np.asarray(snap["species"], np.int64)
        check_two_species(species, ("A", "B"), path)
        return dict(positions=positions, species=species, box=box, cell=cell,
                    potential=potential, potential_from="the snapshot",
                    true=np.asarray(snap["softness_score"], float),
                    label_modes=p.get("n_soft_modes"), line=None, format="pkl", frame=None,
                    mapping=dict(A=0, B=1, source="the snapshot (0 is A, 1 is B)"),
                    elements=(ELEMENT_A, ELEMENT_B))
    s = read_structure(path, INPUT_FORMAT, FRAME)
    atoms = s["atoms"]
    cell = np.array(atoms.cell)
    if not atoms.pbc.all() or abs(np.linalg.det(cell)) == 0:
        raise GlassFileError(f"{path}: no periodic cell in 3D (pbc {atoms.pbc.tolist()}; an "
                             "extended-XYZ file needs Lattice=\"...\" in its header line, a "
                             "LAMMPS file periodic box bounds)")
    check_finite(atoms.positions, cell, s["line"], path)
    header = {k.lower(): v for k, v in atoms.info.items()}
    name_a, name_b, source = species_mapping(s["labels"], header, given)
    species = species_codes(s["labels"], s["types"], name_a, name_b, path)
    elements = (_element(name_a) or ELEMENT_A, _element(name_b) or ELEMENT_B)
    if elements[0] == elements[1] or source == "the file's own A/B labels":   # "B" is boron
        elements = (ELEMENT_A, ELEMENT_B)
    check_two_species(species, (name_a, name_b), path)
    positions, box = cubic_frame(atoms.positions, cell, path)
    true = next((np.asarray(atoms.arrays[k], float).ravel() for k in ("softness_true", "softness")
                 if k in atoms.arrays), None)
    potential = potential_from_header(header, path)
    return dict(positions=positions, species=species, box=box, cell=cell,
                potential=potential or potential_from_constants(),
                potential_from="the file's header" if potential else
                "the constants SIGMA, EPSILON, R_ONSET, R_CUTOFF (Kob-Andersen unless set)",
                potential_in_file=potential is not None, true=true, label_modes=None,
                line=s["line"], format=s["format"],
                frame=s["frame"] if s["n_frames"] > 1 else None,
                mapping=dict(A=name_a, B=name_b, source=source), elements=elements)


def former_glass(snap, positions, box, cell):
    """A glass of another former (softglass.formers) from its snapshot: an inherent structure
    already, with its local-Hessian eigenvalues and labels, made by generate_glass_data.py
    --POTENTIAL; predicted from those (no minimisation: the Kob-Andersen physics here does not
    apply to it)."""
    p = snap["parameters"]
    elements = tuple(p["potential"]["elements"]) * 2
    return dict(positions=positions, species=np.asarray(snap["species"], np.int64), box=box,
                cell=cell, potential=None, potential_from=f"the snapshot ({p['potential']['name']})",
                former=p["potential"]["name"], units=p.get("units", "metal"),
                true=np.asarray(snap["softness_score"], float), label_modes=p.get("n_soft_modes"),
                line=None, format="pkl", frame=None, snapshot=snap,
                mapping=dict(A=0, B=1, source="the snapshot (0 is A, 1 is B)"),
                elements=elements[:2])


def check_former(glass, card, model_path):
    """A glass of another former than the model's is refused unless ANY_FORMER: the model's
    inputs (local stiffnesses, distances) are in its own former's units. With ANY_FORMER the
    transfer is said and recorded."""
    mine, model = glass.get("former", "ka"), card.get("former", "ka")
    if mine == model:
        return
    if not ANY_FORMER:
        raise SystemExit(
            f"error: {INPUT} is a {mine} glass and {model_path} was trained on {model} glasses: "
            f"its inputs (local stiffnesses, distances) are in {model}'s units, so its "
            f"prediction would mean nothing here. Use a model trained on {mine} glasses, or "
            f"--ANY_FORMER=True to predict it as a transfer (lengths and stiffnesses rescaled to "
            f"the model's means: docs/report.md, section 17)")
    warn(f"a transfer: a model trained on {model} glasses predicts a {mine} glass; its lengths "
         f"are scaled to the model's mean density and its local stiffnesses to the model's mean")


def transfer_scales(glass, card):
    """(length scale, stiffness scale) that put a glass of another former in the model's units:
    lengths so that its number density is the middle of the model's density range, local
    stiffnesses so that their mean is the model's training mean (x_mean). (1, 1) for a glass of
    the model's own former."""
    if glass.get("former", "ka") == card.get("former", "ka"):
        return 1.0, 1.0
    n = len(glass["species"])
    density = n / glass["box"] ** 3
    length = float((density / np.mean(card["density_range"])) ** (1 / 3))
    stiffness = float(np.mean(np.asarray(card["x_mean"])) /
                      np.mean(glass["snapshot"]["eigenvalues"]))
    return length, stiffness


def describe_snapshot(glass, card):
    """relax_and_describe's record for a former's snapshot: its own inherent structure and
    features, in the model's units when it is a transfer."""
    snap, p = glass["snapshot"], glass["snapshot"]["parameters"]
    length, stiffness = transfer_scales(glass, card)
    return dict(positions=glass["positions"], energy=float(snap["energy"]),
                max_force=float(p["max_force"]), fire_steps=0,
                eigenvalues=np.asarray(snap["eigenvalues"], float),
                min_pair_distance=float(p.get("min_pair_distance", np.nan)), moved_max=0.0,
                moved_median=0.0, length_scale=length, stiffness_scale=stiffness,
                seconds=dict(fire=0.0, features=0.0))


def check_overlaps(glass, path):
    """Refuse atoms closer than OVERLAP_FRACTION of their pair's sigma before FIRE, naming them:
    from there FIRE diverges or the eigensolver fails, far from the cause."""
    from softglass.pairs import pair_list
    sigma = np.asarray(glass["potential"]["sigma"], float)
    species = glass["species"]
    first, second, rij = pair_list(glass["positions"], glass["box"],
                                   OVERLAP_FRACTION * float(sigma.max()))
    if not len(first):
        return
    d = np.linalg.norm(rij, axis=1)
    ratio = d / sigma[species[first], species[second]]
    close = ratio < OVERLAP_FRACTION
    if close.any():
        k = int(np.argmin(ratio))
        i, j = int(first[k]), int(second[k])
        line = glass.get("line")
        at = (lambda a: f"atom {a}" + (f" (line {line[a]})" if line is not None else ""))
        names = "AB"
        raise GlassFileError(
            f"{path}: {int(close.sum())} pair(s) of overlapping atoms, the closest {at(i)} and "
            f"{at(j)} at {d[k]:.4g} sigma, {ratio[k]:.3g} of their sigma_"
            f"{names[species[i]]}{names[species[j]]}: a duplicated atom, or positions not in "
            f"sigma_AA? FIRE cannot start from there (limit: OVERLAP_FRACTION={OVERLAP_FRACTION})")


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
            warn(f"max|F| = {max_force:.2e} > {MAX_FORCE_WARN:g}: not an inherent structure "
                 "(the model was trained on minima; use --MINIMIZE=True)")
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
    length = described.get("length_scale", 1.0)        # a transfer (transfer_scales): else 1
    stiffness = described.get("stiffness_scale", 1.0)
    snap = dict(positions=described["positions"] * length, species=glass["species"],
                box_size=glass["box"] * length, eigenvalues=described["eigenvalues"] * stiffness,
                softness_score=np.zeros(len(glass["species"])))
    graph = train.glass_graph(snap, cutoff=card["architecture"]["cutoff"])
    s = {k: v.cpu() for k, v in scaling.items()}
    g = train.scaled([graph], s)[0].to(device)
    with torch.no_grad():                           # full precision on every device: no autocast
        pred = model(g.x, g.edge_index, g.edge_dist).float().cpu()
    return (pred * s["y_std"] + s["y_mean"]).to(torch.float64).numpy()


# ================================ 5. outputs =====================================================
def write_softness_xyz(path, described, glass, pred, true, comment):
    """Extended XYZ (ase.io.write) of the structure the prediction is for, in the input's own cell
    (it overlays the input in OVITO): element symbols, positions, softness_true (when known),
    softness_pred, the local eigenvalues; the header records the A/B mapping (species_A,
    species_B) and the potential used, so that predict.py reads the file back as it was."""
    positions = described["positions"] / glass["box"] @ glass["cell"]
    columns = ({} if true is None else dict(softness_true=true))
    columns.update(softness_pred=pred, lambda_local=described["eigenvalues"])
    from softglass.figures import potential_info
    recorded = (potential_info(glass["potential"]) if glass["potential"] is not None else
                dict(potential=glass["former"]))
    info = dict(species_A=glass["elements"][0], species_B=glass["elements"][1], **recorded,
                comment=comment)
    write_extxyz(path, np.asarray(glass["elements"])[glass["species"]], positions, glass["cell"],
                 columns, info)


def output_paths(input_path):
    """<stem>_softness.{xyz,png,json}: the stem is the input's name without its last suffix."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    base = os.path.join(OUTPUT_DIR or os.path.dirname(os.path.abspath(input_path)),
                        stem + "_softness")
    return {ext: base + "." + ext for ext in ("xyz", "png", "json")}


def check_outputs(paths, input_path):
    """Before any work: the output folder must be writable (else the whole computation is lost
    at the end); outputs of another input with the same stem (X.pkl beside X.xyz) are refused, not
    replaced; outputs of this input are replaced, saying so."""
    check_writable(os.path.dirname(paths["json"]), "OUTPUT_DIR", "the outputs ")
    if os.path.exists(paths["json"]):
        try:
            with open(paths["json"]) as fh:
                record = json.load(fh)
            previous, same = record.get("input_path"), os.path.abspath(input_path)
            if previous is None and record.get("input"):    # older outputs: the name as given
                previous, same = record["input"], os.path.basename(input_path)
                previous = os.path.basename(previous)
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous and previous != same:
            raise GlassFileError(f"{paths['json']}: holds the prediction for {previous}, not "
                                 f"{input_path}; both write {os.path.basename(paths['json'])[:-5]}"
                                 ".*: choose another --OUTPUT_DIR (or remove the old outputs)")
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing:
        note(f"replacing {', '.join(existing)} (outputs of an earlier run)")


def resolve_model():
    """(model file, how it was chosen): MODEL when given; else the freshly trained TRAINED_MODEL
    (in the working folder or this script's); else the SHIPPED_MODEL. None found: a clear error."""
    if MODEL:
        return MODEL, "given with --MODEL"
    trained = [TRAINED_MODEL] + ([] if os.path.isabs(TRAINED_MODEL) else
                                 [os.path.join(_HERE, TRAINED_MODEL)])
    for path in trained:
        if os.path.exists(path):
            return path, "the freshly trained model, train.py's output"
    shipped = os.path.join(_HERE, SHIPPED_MODEL)
    if os.path.exists(shipped):
        return shipped, "the shipped model; no freshly trained one"
    raise GlassFileError(f"no model file: neither {TRAINED_MODEL} (train.py writes it into its "
                         f"OUT_DIR: run `make pipeline`) nor the shipped {shipped} exists: train "
                         "one, restore models/ from the repository, or name one with --MODEL=path")


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
        warn(f"the model learnt {label}; the file's labels are softness")
    elif glass["label_modes"] not in (None, n_modes):
        warn(f"the file's softness sums {glass['label_modes']} modes, the model learnt "
             f"{n_modes}")
    return glass["true"], "from the input file"


def warn_outside_training(glass, card):
    """The model has seen a range of densities; far outside it (wrong units, another system)
    its prediction is an extrapolation."""
    n = len(glass["species"])
    density = n / glass["box"] ** 3
    lo, hi = card.get("density_range") or (None, None)
    if lo is not None and not lo - DENSITY_MARGIN <= density <= hi + DENSITY_MARGIN:
        warn(f"density {density:.4f} sigma^-3 lies outside the {lo:.3f}-{hi:.3f} the model "
             f"was trained on (positions must be in sigma_AA, not Angstrom): its prediction is "
             f"an extrapolation")


# ================================ main ===========================================================
_POTENTIAL = ("SIGMA", "EPSILON", "R_ONSET", "R_CUTOFF")


def main(argv=None):
    overridden = apply_overrides(globals(), argv)
    del _WARNINGS[:], _NOTES[:]                 # of this run only (main may be called again)
    if not INPUT:
        raise SystemExit("error: name the glass with --INPUT=path (.pkl, or any file ase.io.read "
                         "reads); --help lists the constants")
    t_start = time.perf_counter()
    paths = output_paths(INPUT)
    try:                                        # every check on the files before any physics
        glass = read_glass(INPUT, set(overridden))
        if set(overridden) & set(_POTENTIAL):       # asked for on the command line: it wins
            glass.update(potential=potential_from_constants(), potential_from=(
                "the command line (" + ", ".join(sorted(set(overridden) & set(_POTENTIAL)))
                + "), not the file"))
        elif glass.get("potential_in_file") is False:
            warn(f"{INPUT} records no potential (no sigma=, epsilon=, r_onset=, r_cutoff= in its "
                 f"header): its potential is taken from the constants SIGMA={SIGMA}, "
                 f"EPSILON={EPSILON}, R_ONSET={R_ONSET}, R_CUTOFF={R_CUTOFF} (Kob-Andersen unless "
                 "set); give the glass's own on the command line if it was made with another")
        if glass["potential"] is not None:      # a former's snapshot is an inherent structure
            check_overlaps(glass, INPUT)
        check_outputs(paths, INPUT)
        model_path, model_source = resolve_model()
        check_model_file(model_path)
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    if glass["mapping"]["source"] != "the snapshot (0 is A, 1 is B)":
        print(f"{INPUT}: read as {glass['format']}"
              + (f", frame {glass['frame']}" if glass["frame"] is not None else "")
              + f"; A is {glass['mapping']['A']!r}, B is {glass['mapping']['B']!r} (from "
              f"{glass['mapping']['source']}), written as {glass['elements'][0]} and "
              f"{glass['elements'][1]}")
    print(f"model: {model_path} ({model_source})")
    from softglass import figures
    import generate_glass_data as ggd
    import train
    ggd.SHOW_PROGRESS = sys.stderr.isatty()
    ggd.enable_compilation_cache(ggd.JAX_CACHE_DIR)
    device = train.choose_device(DEVICE)            # refuses cuda without a GPU, names the fix
    try:
        model, scaling, card = train.load_trained_model(model_path, device)
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    check_former(glass, card, model_path)
    n_modes = int(card.get("n_soft_modes") or 10)
    n = len(glass["species"])
    length = "sigma" if glass["potential"] is not None else "A"
    print(f"{INPUT}: {n} atoms, box {glass['box']:.4f} {length} (density "
          f"{n / glass['box'] ** 3:.4f}),"
          f" potential from {glass['potential_from']}; model trained on "
          f"{card.get('n_atoms')}-atom glasses, {card.get('label', 'softness')} over {n_modes} "
          f"modes, commit {str(card.get('commit'))[:12]}"
          + (f"; its test R {card['test']['R']:.4f} on {card['test']['n_glasses']} held-out "
             f"glasses" if "test" in card else ""))
    if "snapshot" in glass:
        described = describe_snapshot(glass, card)
        note(f"{INPUT} is a {glass['former']} inherent structure: predicted from its own "
             "features and labels (no minimisation here)")
    else:
        warn_outside_training(glass, card)
    try:
        if "snapshot" not in glass:
            described = relax_and_describe(glass, ggd, n_modes, card.get("label", "softness"))
    except (ValueError, RuntimeError) as err:       # too small a box, FIRE failed, bad Hessian
        raise SystemExit(f"error: {INPUT}: {err}")
    print(f"  {'inherent structure' if MINIMIZE else 'as given'}: E/N = "
          f"{described['energy'] / n:.6f}, max|F| = {described['max_force']:.2e} after "
          f"{described['fire_steps']} FIRE steps (atoms moved up to {described['moved_max']:.3g} "
          f"{length}); closest pair {described['min_pair_distance']:.3f}")
    t0 = time.perf_counter()
    pred = predicted_softness(model, scaling, card, glass, described, device)
    seconds = dict(described["seconds"], model=time.perf_counter() - t0)
    true, label = true_softness(glass, described, n_modes, card.get("label", "softness"))
    r = float(np.corrcoef(pred, true)[0, 1]) if true is not None else None

    comment = f"predicted softness of {os.path.basename(INPUT)} by " \
        f"{os.path.basename(model_path)}" + \
        (f"; R = {r:.4f} against the true softness ({label})" if r is not None else "")
    write_softness_xyz(paths["xyz"], described, glass, pred, true, comment)
    snap = dict(positions=described["positions"], species=glass["species"],
                cell=glass["box"] * np.eye(3))
    figures.plot_slice(snap, pred, true, paths["png"], comment)
    summary = dict(input=INPUT, input_path=os.path.abspath(INPUT), input_format=glass["format"],
                   frame=glass["frame"], species=dict(glass["mapping"],
                                                      written_as=list(glass["elements"])),
                   model=model_path, model_source=model_source, model_commit=card.get("commit"),
                   n_atoms=n, potential_from=glass["potential_from"], minimized=MINIMIZE,
                   max_force=described["max_force"], fire_steps=described["fire_steps"],
                   moved_max=described["moved_max"], energy_per_atom=described["energy"] / n,
                   R=r, label=label, warnings=list(_WARNINGS), notes=list(_NOTES),
                   seconds=seconds, wall_seconds=time.perf_counter() - t_start)
    atomic_write_bytes(paths["json"], json.dumps(summary, indent=2).encode())
    print(f"  R = {r:.4f} against the true softness ({label})" if r is not None else
          f"  no R: {label}")
    if _WARNINGS:
        print(f"  {len(_WARNINGS)} warning(s), recorded in {paths['json']}")
    print(f"wrote {paths['xyz']} (open in OVITO: colour by softness_pred), {paths['png']}, "
          f"{paths['json']} in {summary['wall_seconds']:.1f}s")
    return summary


if __name__ == "__main__":
    main()
