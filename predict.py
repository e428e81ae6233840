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

from softglass import prediction, structure_input
from softglass.cli import apply_overrides, exit_on_help, script_constants
from softglass.files import GlassFileError, atomic_write_bytes

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
# FIRE, the eigensolver and the overlap check are generate_glass_data.py's, and the model's
# loading train.py's (FAST_KERNELS): read from their files' constants, as predict.py always took
# them (an edit there reaches predict.py), without importing those scripts (jax-md, torch and
# their own command lines); their command-line overrides never applied here.
_GLASS_SCRIPT = os.path.join(_HERE, "generate_glass_data.py")
_TRAIN_SCRIPT = os.path.join(_HERE, "train.py")
_POTENTIAL = ("SIGMA", "EPSILON", "R_ONSET", "R_CUTOFF")


def warn(message):
    """A doubt about the result: printed and recorded in the output .json."""
    print(f"warning: {message}")
    _WARNINGS.append(message)


def note(message):
    """A choice made for the user (a default used, a file replaced): printed and recorded."""
    print(f"note: {message}")
    _NOTES.append(message)


# ================================ the settings, from the constants ===============================
# Read when called, so that --NAME=value (and a test's monkeypatching) reaches every step.
def reading():
    """How INPUT is read (softglass.structure_input.Reading)."""
    return structure_input.Reading(
        input_format=INPUT_FORMAT, frame=FRAME, species_a=SPECIES_A, species_b=SPECIES_B,
        element_a=ELEMENT_A, element_b=ELEMENT_B, sigma=SIGMA, epsilon=EPSILON, r_onset=R_ONSET,
        r_cutoff=R_CUTOFF, minority_a_warn=MINORITY_A_WARN)


def glass_physics():
    """generate_glass_data.py's FIRE, eigensolver and overlap check (prediction.Physics)."""
    return prediction.physics_from(script_constants(_GLASS_SCRIPT), sys.stderr.isatty())


def read_glass(path, given=frozenset()):
    """INPUT read as a glass (softglass.structure_input.read_glass); `given`: the constants set
    on the command line (they win over what the file records)."""
    return structure_input.read_glass(path, reading(), given, warn=warn)


def output_paths(input_path):
    """<stem>_softness.{xyz,png,json} in OUTPUT_DIR ("": beside the input)."""
    return prediction.output_paths(input_path, OUTPUT_DIR)


def check_outputs(paths, input_path):
    """The outputs' folder writable; no other input's outputs replaced (softglass.prediction)."""
    prediction.check_outputs(paths, input_path, note)


def resolve_model():
    """(model file, how it was chosen): MODEL, else TRAINED_MODEL, else SHIPPED_MODEL."""
    return prediction.resolve_model(MODEL, TRAINED_MODEL, SHIPPED_MODEL, _HERE)


# ================================ 1. read and check, before any physics ==========================
def read_and_check(paths, overridden):
    """The glass, its potential (the command line's SIGMA ... win over the file's), no overlaps,
    the outputs writable and the model file found: every check on the files before jax or torch.
    Returns the glass, the model file and how it was chosen."""
    glass = read_glass(INPUT, overridden)
    if overridden & set(_POTENTIAL):            # asked for on the command line: it wins
        glass.update(potential=structure_input.potential_from_constants(reading()),
                     potential_from="the command line (" + ", ".join(
                         sorted(overridden & set(_POTENTIAL))) + "), not the file")
    elif glass.get("potential_in_file") is False:
        warn(f"{INPUT} records no potential (no sigma=, epsilon=, r_onset=, r_cutoff= in its "
             f"header): its potential is taken from the constants SIGMA={SIGMA}, "
             f"EPSILON={EPSILON}, R_ONSET={R_ONSET}, R_CUTOFF={R_CUTOFF} (Kob-Andersen unless "
             "set); give the glass's own on the command line if it was made with another")
    if glass["potential"] is not None:          # a former's snapshot is an inherent structure
        structure_input.check_overlaps(glass, INPUT, OVERLAP_FRACTION)
    check_outputs(paths, INPUT)
    model_path, model_source = resolve_model()
    prediction.check_model_file(model_path)
    return glass, model_path, model_source


def say_how_it_was_read(glass, model_path, model_source):
    """The format and the A/B mapping of a structure file (a snapshot's is fixed), the model."""
    if glass["mapping"]["source"] != "the snapshot (0 is A, 1 is B)":
        print(f"{INPUT}: read as {glass['format']}"
              + (f", frame {glass['frame']}" if glass["frame"] is not None else "")
              + f"; A is {glass['mapping']['A']!r}, B is {glass['mapping']['B']!r} (from "
              f"{glass['mapping']['source']}), written as {glass['elements'][0]} and "
              f"{glass['elements'][1]}")
    print(f"model: {model_path} ({model_source})")


def say_what_was_read(glass, card, n_modes):
    """The glass and the model in one line: size, density, potential, what the model learnt."""
    n = len(glass["species"])
    length = "sigma" if glass["potential"] is not None else "A"
    print(f"{INPUT}: {n} atoms, box {glass['box']:.4f} {length} (density "
          f"{n / glass['box'] ** 3:.4f}),"
          f" potential from {glass['potential_from']}; model trained on "
          f"{card.get('n_atoms')}-atom glasses, {card.get('label', 'softness')} over {n_modes} "
          f"modes, commit {str(card.get('commit'))[:12]}"
          + (f"; its test R {card['test']['R']:.4f} on {card['test']['n_glasses']} held-out "
             f"glasses" if "test" in card else ""))


# ================================ 2-4. the physics and the model =================================
def load_model(model_path):
    """jax for the physics, then the model on DEVICE (softglass.checkpoints.load_trained_model,
    weights_only). Returns the model, its scaling, its record and the device."""
    prediction.start_jax(script_constants(_GLASS_SCRIPT)["JAX_CACHE_DIR"])
    from softglass import checkpoints, training     # torch after jax, as ever
    device = training.choose_device(DEVICE)         # refuses cuda without a GPU, names the fix
    try:
        model, scaling, card = checkpoints.load_trained_model(
            model_path, device, *(script_constants(_TRAIN_SCRIPT)[k] for k in ("FAST_KERNELS",
                                                                                 "BEST_FILE")))
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    return model, scaling, card, device


def describe(glass, card, n_modes):
    """Steps 2-3: the inherent structure (MINIMIZE) and the local-Hessian eigenvalues, with the
    true label when TRUE_LABELS; a former's snapshot as it is (an inherent structure already)."""
    if "snapshot" in glass:
        described = prediction.describe_snapshot(glass, card)
        note(f"{INPUT} is a {glass['former']} inherent structure: predicted from its own "
             "features and labels (no minimisation here)")
    else:
        prediction.warn_outside_training(glass, card, DENSITY_MARGIN, warn)
        try:
            described = prediction.relax_and_describe(
                glass, glass_physics(), n_modes, card.get("label", "softness"),
                minimize=MINIMIZE, true_labels=TRUE_LABELS, max_force_warn=MAX_FORCE_WARN,
                warn=warn)
        except (ValueError, RuntimeError) as err:   # too small a box, FIRE failed, bad Hessian
            raise SystemExit(f"error: {INPUT}: {err}")
    print(f"  {'inherent structure' if MINIMIZE else 'as given'}: E/N = "
          f"{described['energy'] / len(glass['species']):.6f}, max|F| = "
          f"{described['max_force']:.2e} after {described['fire_steps']} FIRE steps (atoms moved "
          f"up to {described['moved_max']:.3g} "
          f"{'sigma' if glass['potential'] is not None else 'A'}); closest pair "
          f"{described['min_pair_distance']:.3f}")
    return described


# ================================ 5. outputs =====================================================
def write_outputs(paths, glass, described, pred, true, label, model_path):
    """<stem>_softness.xyz and the slab figure .png; returns R against the true labels, or
    None, and the comment both carry."""
    from softglass import figures
    r = float(np.corrcoef(pred, true)[0, 1]) if true is not None else None
    comment = f"predicted softness of {os.path.basename(INPUT)} by " \
        f"{os.path.basename(model_path)}" + \
        (f"; R = {r:.4f} against the true softness ({label})" if r is not None else "")
    prediction.write_softness_xyz(paths["xyz"], described, glass, pred, true, comment)
    snap = dict(positions=described["positions"], species=glass["species"],
                cell=glass["box"] * np.eye(3))
    figures.plot_slice(snap, pred, true, paths["png"], comment)
    return r


def record(paths, glass, described, model_path, model_source, card, r, label, seconds, t_start):
    """<stem>_softness.json: what was done, every warning and note, R when labels exist."""
    n = len(glass["species"])
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
    return summary


# ================================ main ===========================================================
def main(argv=None):
    overridden = apply_overrides(globals(), argv)
    del _WARNINGS[:], _NOTES[:]                 # of this run only (main may be called again)
    if not INPUT:
        raise SystemExit("error: name the glass with --INPUT=path (.pkl, or any file ase.io.read "
                         "reads); --help lists the constants")
    t_start = time.perf_counter()
    paths = output_paths(INPUT)
    try:                                        # every check on the files before any physics
        glass, model_path, model_source = read_and_check(paths, set(overridden))
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    say_how_it_was_read(glass, model_path, model_source)
    model, scaling, card, device = load_model(model_path)
    prediction.check_former(glass, card, model_path, INPUT, ANY_FORMER, warn,
                            shipped=prediction.shipped_models_of(glass.get("former", "ka"),
                                                                 os.path.join(_HERE, "models")))
    n_modes = int(card.get("n_soft_modes") or 10)
    say_what_was_read(glass, card, n_modes)
    described = describe(glass, card, n_modes)
    t0 = time.perf_counter()
    pred = prediction.predicted_softness(model, scaling, card, glass, described, device)
    seconds = dict(described["seconds"], model=time.perf_counter() - t0)
    true, label = prediction.true_softness(glass, described, n_modes,
                                           card.get("label", "softness"),
                                           label_move_tol=LABEL_MOVE_TOL, warn=warn)
    r = write_outputs(paths, glass, described, pred, true, label, model_path)
    summary = record(paths, glass, described, model_path, model_source, card, r, label, seconds,
                     t_start)
    print(f"  R = {r:.4f} against the true softness ({label})" if r is not None else
          f"  no R: {label}")
    if _WARNINGS:
        print(f"  {len(_WARNINGS)} warning(s), recorded in {paths['json']}")
    print(f"wrote {paths['xyz']} (open in OVITO: colour by softness_pred), {paths['png']}, "
          f"{paths['json']} in {summary['wall_seconds']:.1f}s")
    return summary


if __name__ == "__main__":
    main()
