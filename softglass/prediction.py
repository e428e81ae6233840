"""The steps of predict.py after reading (softglass.structure_input): the inherent structure and
the model's input features of a user's glass, the model's softness, the true label to score it
against, and the outputs (<stem>_softness.xyz, .png, .json; which model file).

Light at import: the output and model-file checks run before jax and torch are loaded, so the
physics imports them when called. Settings come in as arguments (`Physics`: generate_glass_data's
FIRE, eigensolver and overlap check; predict.py's own constants as keywords); doubts go to a
`warn` callable and choices made for the user to a `note` callable, which record them.
"""
import dataclasses
import json
import os
import time

import numpy as np

from .files import GlassFileError, check_writable, write_extxyz


@dataclasses.dataclass(frozen=True)
class Physics:
    """How a Kob-Andersen glass is brought to its inherent structure and labelled: the glass
    generator's settings (the model learnt from glasses made with them)."""
    engine: object              # softglass.dynamics.Engine: how FIRE's compiled chunks compute
    fire: object                # softglass.dynamics.Fire: FIRE's steps, tolerance, budget, skin
    spectrum: object            # softglass.indicators.Spectrum: the lowest modes, found, checked
    min_pair_distance: float    # sigma_AA; a closer pair in the inherent structure is an overlap


def physics_from(g, show_progress):
    """Physics from generate_glass_data.py's constants g ({NAME: value}, cli.script_constants)."""
    from . import dynamics, indicators
    engine = dynamics.Engine(
        force_kernel=g["FORCE_KERNEL"], neighbour_list=g["NEIGHBOUR_LIST"],
        force_block_rows=g["FORCE_BLOCK_ROWS"],
        force_one_block_max_atoms=g["FORCE_ONE_BLOCK_MAX_ATOMS"],
        capacity_margin=g["CAPACITY_MARGIN"], chunk_steps=g["CHUNK_STEPS"],
        show_progress=show_progress)
    fire = dynamics.Fire(dt_start=g["FIRE_DT_START"], dt_max=g["FIRE_DT_MAX"],
                         max_dt_omega=g["FIRE_MAX_DT_OMEGA"], force_tol=g["FORCE_TOL"],
                         max_steps=g["MAX_FIRE_STEPS"], skin=g["SKIN_MINIMIZE"])
    spectrum = indicators.Spectrum(
        n_zero_modes=g["N_ZERO_MODES"], zero_mode_tol=g["ZERO_MODE_TOL"],
        dense_eigh_max_atoms=g["DENSE_EIGH_MAX_ATOMS"], eigsh_shift=g["EIGSH_SHIFT"],
        nd_leaf_atoms=g["ND_LEAF_ATOMS"])
    return Physics(engine=engine, fire=fire, spectrum=spectrum,
                   min_pair_distance=g["MIN_PAIR_DISTANCE"])


def start_jax(cache_dir):
    """Turn on the XLA compilation cache in cache_dir ("" none). Importing jax-md compiles ~120
    tiny programs: when the folder exists they are read from it (every program kept, as
    generate_glass_data.py's import does), then only the programs worth keeping are."""
    from .jax_config import enable_compilation_cache
    if cache_dir and os.path.isdir(cache_dir):
        enable_compilation_cache(cache_dir, min_compile_seconds=0)
    from . import dynamics  # noqa: F401  (jax-md, compiled from the cache)
    enable_compilation_cache(cache_dir)


# ================================ 2-3. inherent structure and features ===========================
def physical_system(glass):
    """The pair system dict of the physics (softglass.system), refusing a box narrower than
    twice the cutoff."""
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


def relaxed(glass, system, physics, minimize, max_force_warn, warn):
    """(positions, energy, max|F|, FIRE steps): FIRE to the inherent structure, or the given
    positions (minimize False), warned about when they are no minimum."""
    from . import dynamics, forces
    if minimize:
        positions, energy, max_force, n_fire, _ = dynamics.inherent_structure(
            glass["positions"], system, fire=physics.fire, engine=physics.engine)
        return positions, energy, max_force, n_fire
    positions = glass["positions"]
    energy, f = forces.energy_and_forces(positions, system)
    max_force = float(np.max(np.linalg.norm(f, axis=1)))
    if max_force > max_force_warn:
        warn(f"max|F| = {max_force:.2e} > {max_force_warn:g}: not an inherent structure "
             "(the model was trained on minima; use --MINIMIZE=True)")
    return positions, energy, max_force, 0


def relax_and_describe(glass, physics, n_label_modes, label="softness", *, minimize, true_labels,
                       max_force_warn, warn):
    """Inherent structure (or the given positions), the local-Hessian eigenvalues and, if asked
    (true_labels), the true label (softness, or vibrality: the model's) over n_label_modes
    modes. Physics checks as in generate_glass_data.py."""
    from . import hessian as hs
    from .pairs import min_pair_distance
    system = physical_system(glass)
    t0 = time.perf_counter()
    positions, energy, max_force, n_fire = relaxed(glass, system, physics, minimize,
                                                   max_force_warn, warn)
    t_fire = time.perf_counter() - t0
    moved = displacement_from(glass["positions"], positions, system["box"])
    d_min = min_pair_distance(positions, system["box"])
    if d_min < physics.min_pair_distance:
        raise ValueError(f"overlap: closest pair at {d_min:.3f} < {physics.min_pair_distance} "
                         "sigma")
    h, local = hs.hessian(positions, system)
    hs.check_hessian(h, local)
    out = dict(positions=positions, energy=energy, max_force=max_force, fire_steps=int(n_fire),
               eigenvalues=hs.local_hessian_eigenvalues(local), min_pair_distance=d_min,
               moved_max=float(moved.max()), moved_median=float(np.median(moved)),
               seconds=dict(fire=t_fire))
    if true_labels:
        out["true"] = true_label(h, physics.spectrum, n_label_modes, label)
    out["seconds"]["features"] = time.perf_counter() - t0 - t_fire
    return out


def true_label(h, spectrum, n_modes, label):
    """Softness (or vibrality) over the n_modes lowest modes after the zero modes, found and
    checked as the generator does."""
    from . import hessian as hs
    n_zero = spectrum.n_zero_modes
    vals, vecs = hs.lowest_modes(h, n_zero + n_modes, dense_max_atoms=spectrum.dense_eigh_max_atoms,
                                 shift=spectrum.eigsh_shift, leaf_atoms=spectrum.nd_leaf_atoms)
    hs.check_modes(vals, n_zero, spectrum.zero_mode_tol)
    return (hs.vibrality_from_modes(vals, vecs, n_zero, n_modes) if label == "vibrality" else
            hs.softness_from_modes(vecs, n_zero, n_modes))


# ================================ another former's snapshot ======================================
def shipped_models_of(former, folder):
    """The shipped model files of a former (models/<former>_s*.pth; Kob-Andersen's are the
    default ones), relative names for a message."""
    import glob
    if former == "ka" or not os.path.isdir(folder):
        return []
    return sorted(os.path.join("models", os.path.basename(p))
                  for p in glob.glob(os.path.join(folder, f"{former}_s*.pth")))


def check_former(glass, card, model_path, input_path, any_former, warn, shipped=()):
    """A glass of another former than the model's is refused unless any_former: the model's
    inputs (local stiffnesses, distances) are in its own former's units. With any_former the
    transfer is said and recorded. shipped: model files of the glass's former, suggested."""
    mine, model = glass.get("former", "ka"), card.get("former", "ka")
    if mine == model:
        return
    if not any_former:
        own = f" (shipped: --MODEL={' or --MODEL='.join(shipped)})" if shipped else ""
        raise SystemExit(
            f"error: {input_path} is a {mine} glass and {model_path} was trained on {model} "
            f"glasses: its inputs (local stiffnesses, distances) are in {model}'s units, so its "
            f"prediction would mean nothing here. Use a model trained on {mine} glasses{own}, or "
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


# ================================ 4. the model ===================================================
def predicted_softness(model, scaling, card, glass, described, device):
    """The model's softness per atom, in softness units (its standardisation undone)."""
    import torch
    from .dataset import scaled
    from .graphs import glass_graph
    length = described.get("length_scale", 1.0)        # a transfer (transfer_scales): else 1
    stiffness = described.get("stiffness_scale", 1.0)
    snap = dict(positions=described["positions"] * length, species=glass["species"],
                box_size=glass["box"] * length, eigenvalues=described["eigenvalues"] * stiffness,
                softness_score=np.zeros(len(glass["species"])))
    graph = glass_graph(snap, cutoff=card["architecture"]["cutoff"])
    s = {k: v.cpu() for k, v in scaling.items()}
    g = scaled([graph], s)[0].to(device)
    with torch.no_grad():                           # full precision on every device: no autocast
        pred = model(g.x, g.edge_index, g.edge_dist).float().cpu()
    return (pred * s["y_std"] + s["y_mean"]).to(torch.float64).numpy()


def true_softness(glass, described, n_modes, label="softness", *, label_move_tol, warn):
    """The labels to score against and what they are, or (None, reason). A file's labels belong
    to the file's structure: if FIRE moved the median atom more than label_move_tol they are not
    this structure's, and R is withheld rather than reported wrong."""
    if described.get("true") is not None:
        return described["true"], f"{label} over {n_modes} modes, computed here"
    if glass["true"] is None:
        return None, "no labels in the input (--TRUE_LABELS=True computes them)"
    if described["moved_median"] > label_move_tol:
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


def warn_outside_training(glass, card, density_margin, warn):
    """The model has seen a range of densities; far outside it (wrong units, another system)
    its prediction is an extrapolation."""
    n = len(glass["species"])
    density = n / glass["box"] ** 3
    lo, hi = card.get("density_range") or (None, None)
    if lo is None:
        return
    if card.get("former", "ka") == "ka":
        unit, digits = "sigma^-3", (4, 3)
    else:                                       # metal units: the margin relative to KA's 1.2
        unit, digits, density_margin = "A^-3", (5, 5), density_margin * (lo + hi) / 2 / 1.2
    if not lo - density_margin <= density <= hi + density_margin:
        warn(f"density {density:.{digits[0]}f} {unit} lies outside the {lo:.{digits[1]}f}-"
             f"{hi:.{digits[1]}f} the model was trained on (positions must be in "
             f"{'sigma_AA, not Angstrom' if unit == 'sigma^-3' else 'Angstrom'}): its prediction "
             f"is an extrapolation")


# ================================ 5. outputs and the model file ==================================
def write_softness_xyz(path, described, glass, pred, true, comment):
    """Extended XYZ (ase.io.write) of the structure the prediction is for, in the input's own cell
    (it overlays the input in OVITO): element symbols, positions, softness_true (when known),
    softness_pred, the local eigenvalues; the header records the A/B mapping (species_A,
    species_B) and the potential used, so that predict.py reads the file back as it was."""
    positions = described["positions"] / glass["box"] @ glass["cell"]
    columns = ({} if true is None else dict(softness_true=true))
    columns.update(softness_pred=pred, lambda_local=described["eigenvalues"])
    from .figures import potential_info
    recorded = (potential_info(glass["potential"]) if glass["potential"] is not None else
                dict(potential=glass["former"]))
    info = dict(species_A=glass["elements"][0], species_B=glass["elements"][1], **recorded,
                comment=comment)
    write_extxyz(path, np.asarray(glass["elements"])[glass["species"]], positions, glass["cell"],
                 columns, info)


def output_paths(input_path, output_dir):
    """<stem>_softness.{xyz,png,json} in output_dir ("": beside the input): the stem is the
    input's name without its last suffix."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    base = os.path.join(output_dir or os.path.dirname(os.path.abspath(input_path)),
                        stem + "_softness")
    return {ext: base + "." + ext for ext in ("xyz", "png", "json")}


def check_outputs(paths, input_path, note):
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


def resolve_model(model, trained_model, shipped_model, here):
    """(model file, how it was chosen): model when given; else the freshly trained trained_model
    (in the working folder or `here`, the scripts' folder); else shipped_model (relative to
    `here`). None found: a clear error."""
    if model:
        return model, "given with --MODEL"
    trained = [trained_model] + ([] if os.path.isabs(trained_model) else
                                 [os.path.join(here, trained_model)])
    for path in trained:
        if os.path.exists(path):
            return path, "the freshly trained model, train.py's output"
    shipped = os.path.join(here, shipped_model)
    if os.path.exists(shipped):
        return shipped, "the shipped model; no freshly trained one"
    raise GlassFileError(f"no model file: neither {trained_model} (train.py writes it into its "
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
