"""Does the structure say where a supercooled liquid relaxes? Softness against dynamic propensity.

The paper predicts softness at T = 0. Softness was introduced to predict thermal relaxation
(Schoenholz et al., Nat. Phys. 12, 469 (2016)), and the field scores structural predictors by
Pearson R with the dynamic propensity of isoconfigurational ensembles (Jung et al., "Roadmap on
machine learning glassy dynamics", arXiv:2311.14752: the Kob-Andersen liquid, N = 4096,
density 1.2, T = 0.44, 32 runs per configuration, propensity at the structural relaxation time).
For each ensemble of ENSEMBLE_DIR (public data, BOTAN's format: softglass/isoconfigurational.py):

  1. read       the configuration, its 32 replicas and the propensity p_i = <|dr_i|^2>
  2. minimise   FIRE with our smoothed Kob-Andersen potential to the inherent structure, exactly
                as generate_glass_data.py makes its labels (its constants); how far the atoms
                move, and (TRUNCATED_CHECKS configurations) how far the inherent structure of the
                data's own truncated-and-shifted potential lies from ours
  3. indicators softness over MODE_COUNTS modes, vibrality, -lambda_1 of the local Hessian, the
                per-atom energy of the inherent structure, the predictions of MODELS, and each of
                these coarse-grained over COARSE_GRAIN_LENGTH (nothing here has seen dynamics)
  4. score      Pearson and Spearman R with propensity over the A atoms, per configuration and
                as mean +- std; pooled over all configurations too (the roadmap's convention)
  5. learn      our architecture trained on propensity: the configurations but VALIDATION for
                training (fine-tuned from START_MODEL), the VALIDATION ones to choose the epoch and
                to score; beside it gradient-boosted trees on the same inputs and least squares
                on the coarse-grained indicators
  6. write      OUT_DIR/results.json, table.md, propensity.png, the trained model

Per-configuration physics is cached in OUT_DIR/configurations (keyed on the file's sha256 and the
settings), so an interrupted run resumes where it stopped.

    python propensity.py [--ENSEMBLE_DIR=path] [--MODELS=name=path,...] [--EPOCHS=0]
"""
import json
import os
import time

import numpy as np

from softglass.cli import apply_overrides, exit_on_help
from softglass.files import GlassFileError, atomic_write_bytes, check_writable
from softglass.prediction import displacement_from

# ================================ constants ====================================================
# --- data ---
ENSEMBLE_DIR = "../shared/data/propensity"  # folder of isoconfigurational ensembles (.npz), e.g.
                                # small_data/T0.44/train of github.com/h3-Open-BDEC/pyg_botan
ENSEMBLE_GLOB = "*.npz"
DENSITY = 1.2                   # number density (sigma_AA^-3): the files carry no box, so
                                # L = (N / DENSITY)^(1/3) = 15.05658 at N = 4096; checked against
                                # the positions
SCORED_SPECIES = 0              # R over the atoms of this species (0 = A, the roadmap's choice)
OUT_DIR = "propensity"          # results.json, table.md, propensity.png, propensity_model.pth

# --- indicators (from structure alone) ---
MODE_COUNTS = "10,30,100,300"   # softness S_n over the n lowest non-trivial Hessian modes
                                # (comma list); vibrality over the largest n
MODELS = "default=models/default_s10.pth,s100=models/s100.pth"  # name=model file (train.py's),
                                # scored as predictors (a missing file is an error)
COARSE_GRAIN_LENGTH = 1.0       # sigma_AA; x_i -> sum_j exp(-r_ij/l) x_j / sum_j exp(-r_ij/l)
                                # over j within COARSE_GRAIN_CUTOFF (i included); 0: off
COARSE_GRAIN_CUTOFF = 3.0       # sigma_AA
TRUNCATED_CHECKS = 1            # configurations also minimised with the data's truncated-and-
                                # shifted potential (rc = 2.5 sigma_ab), to measure the difference
TRUNCATED_FORCE_TOL = 1e-8      # epsilon/sigma; its forces jump at rc_ab, so FIRE stops earlier

# --- learning propensity (step 5) ---
VALIDATION = "9,10"             # the configurations (the number ending the file name) held out
                                # of training: the epoch is chosen and the model scored on them
START_MODEL = "models/default_s10.pth"  # the architecture and feature scaling to learn with
PRETRAINED = True               # start from START_MODEL's weights (fine-tuning softness into
                                # propensity); False: a fresh initialisation drawn with SEED
TARGET = "propensity"           # what the model learns: "propensity" or "log" (log p_i)
EPOCHS = 60                     # passes over the training configurations (0: no training)
LR = 2e-4                       # AdamW learning rate
WEIGHT_DECAY = 1e-5
SEED = 0                        # initialisation, batch order, the trees
NUM_THREADS = 0                 # torch CPU threads (0: torch's default)

exit_on_help(globals())

_HERE = os.path.dirname(os.path.abspath(__file__))


def here(path):
    """A path given relative to this script's folder (models/, the shared data) as it is from
    the working folder."""
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(_HERE, path)


# ================================ 1. the ensembles ===============================================
def mode_counts():
    """MODE_COUNTS as a sorted tuple of positive integers."""
    try:
        counts = tuple(sorted({int(v) for v in str(MODE_COUNTS).split(",") if v.strip()}))
    except ValueError:
        counts = ()
    if not counts or counts[0] < 1:
        raise SystemExit(f"error: MODE_COUNTS={MODE_COUNTS!r}: expected a comma list of positive "
                         "integers, e.g. 10,30,100,300")
    return counts


def config_number(path):
    """The configuration's number: BOTAN names a file isoconfig_N4096T0.44_<k>_tc07.npz."""
    import re
    m = re.search(r"_(\d+)(?:_[^_]*)?\.npz$", os.path.basename(path)) or \
        re.search(r"(\d+)\D*$", os.path.basename(path))
    return int(m[1]) if m else None


def ensemble_files():
    """The ensembles, in the order of their numbers, and the validation ones: refused at start
    (before any physics) when none is found or VALIDATION names none of them."""
    import glob
    folder = here(ENSEMBLE_DIR)
    files = glob.glob(os.path.join(folder, ENSEMBLE_GLOB))
    if not files:
        raise GlassFileError(f"ENSEMBLE_DIR={folder}: no {ENSEMBLE_GLOB} files (isoconfigurational"
                             " ensembles: see this script's docstring)")
    numbers = [config_number(f) for f in files]
    if None in numbers or len(set(numbers)) < len(files):
        raise GlassFileError(f"ENSEMBLE_DIR={folder}: each file's name must end in its own "
                             "configuration number (name_<k>.npz or name_<k>_<suffix>.npz); "
                             f"got {sorted(os.path.basename(f) for f in files)}")
    files = sorted(files, key=config_number)
    wanted = {int(v) for v in str(VALIDATION).split(",") if v.strip()}
    validation = [f for f in files if config_number(f) in wanted]
    if EPOCHS > 0 and (not validation or len(validation) == len(files)):
        raise GlassFileError(f"VALIDATION={VALIDATION}: must name some but not all of the "
                             f"configurations {[config_number(f) for f in files]}")
    return files, validation


# ================================ 2-3. inherent structure and indicators =========================
_GLASS_SCRIPT = os.path.join(_HERE, "generate_glass_data.py")


def glass_settings():
    """The Kob-Andersen physics as generate_glass_data.py's file sets it (its FIRE, eigensolver
    and potential; read from its source, as predict.py does: the labels the models learnt were
    made with them): (prediction.Physics, the pair system's parameters)."""
    from softglass.cli import script_constants
    from softglass.potentials import absolute_cutoffs
    from softglass.prediction import physics_from
    g = script_constants(_GLASS_SCRIPT)
    r_onset, r_cutoff = absolute_cutoffs(g["SIGMA"], g["R_ONSET"], g["R_CUTOFF"])
    potential = dict(sigma=np.asarray(g["SIGMA"], np.float64),
                     epsilon=np.asarray(g["EPSILON"], np.float64), r_onset=r_onset,
                     r_cutoff=r_cutoff)
    return physics_from(g, show_progress=False), potential


def configuration_physics(path, ens, settings, cache_dir, check_truncated):
    """Steps 2-3 of one ensemble, cached in cache_dir under a key naming the file's content and
    the settings: the inherent structure, its local-Hessian eigenvalues (the model's input) and
    the indicators computed from its Hessian and pair energies."""
    from softglass import dynamics, hessian as hs
    from softglass import isoconfigurational as iso
    from softglass.files import atomic_write_pickle, file_sha256, safe_load_pickle
    from softglass.forces import pairs_with_parameters
    from softglass.indicators import modal_indicators
    physics, potential = settings
    key = dict(file=file_sha256(path), modes=list(mode_counts()), density=DENSITY,
               fire=repr(physics.fire), spectrum=repr(physics.spectrum),
               potential={k: np.asarray(v).tolist() for k, v in potential.items()},
               truncated=bool(check_truncated) and TRUNCATED_FORCE_TOL)
    cache = os.path.join(cache_dir, os.path.splitext(os.path.basename(path))[0] + ".pkl")
    stored = safe_load_pickle(cache) if os.path.exists(cache) else None
    if isinstance(stored, dict) and stored.get("key") == key:
        return stored
    system = dict(box=ens["box"], species=ens["species"].astype(np.int32), **potential)
    t0 = time.perf_counter()
    r, energy, max_force, steps, _ = dynamics.inherent_structure(
        ens["positions"], system, fire=physics.fire, engine=physics.engine)
    moved = displacement_from(ens["positions"], r, ens["box"])
    h, local = hs.hessian(r, system)
    hs.check_hessian(h, local)
    values, vals = modal_indicators(h, r, ens["box"], mode_counts(), physics.spectrum)
    values[f"vibrality{max(mode_counts())}"] = values.pop("vibrality")
    i, j, *_, phi, _, _ = pairs_with_parameters(r, system)
    eig = hs.local_hessian_eigenvalues(local)
    values["-lambda_1"] = -eig[:, 0]
    values["energy"] = iso.per_atom_energy(phi, i, j, len(r))
    out = dict(key=key, positions=r, eigenvalues=eig, values=values,
               fire=dict(energy_per_atom=energy / len(r), max_force=max_force, steps=int(steps),
                         moved_median=float(np.median(moved)), moved_max=float(moved.max())),
               lowest_eigenvalue=float(vals[physics.spectrum.n_zero_modes]),
               seconds=time.perf_counter() - t0)
    if check_truncated:
        out["truncated"] = truncated_inherent_structure(physics, potential, ens, r)
    atomic_write_pickle(cache, out)
    return out


def truncated_inherent_structure(physics, potential, ens, ours):
    """Kob and Andersen's truncated-and-shifted mixture (the data's): its inherent structure from
    the same configuration, and how far it lies from ours (per atom, rigid shift removed)."""
    import dataclasses
    from softglass import molecular_dynamics as md
    from softglass.potentials import TruncatedShiftedLJMixture
    mixture = TruncatedShiftedLJMixture(sigma=tuple(map(tuple, potential["sigma"].tolist())),
                                        epsilon=tuple(map(tuple, potential["epsilon"].tolist())))
    fire = dataclasses.replace(physics.fire, force_tol=TRUNCATED_FORCE_TOL)
    settings = md.MDSettings(dt=fire.dt_start, tau=1.0, skin=fire.skin,
                             chunk_steps=physics.engine.chunk_steps, show_progress=False)
    r, energy, max_force, steps = md.inherent_structure(mixture, ens["positions"], ens["box"],
                                                        ens["species"], fire=fire,
                                                        settings=settings)
    apart = displacement_from(ours, r, ens["box"])
    moved = displacement_from(ens["positions"], r, ens["box"])
    return dict(energy_per_atom=energy / len(r), max_force=max_force, steps=int(steps),
                from_ours_median=float(np.median(apart)), from_ours_max=float(apart.max()),
                moved_median=float(np.median(moved)))


def load_models():
    """{name: (model, scaling, card)} of MODELS (name=path, comma separated); a malformed entry,
    a missing file or one that is no model file is an error naming it."""
    from softglass.checkpoints import load_trained_model
    from softglass.indicators import named_models
    import torch
    return {name: load_trained_model(path, torch.device("cpu"), True, "hybrid_physics_best.pth")
            for name, path in named_models(MODELS, "MODELS", here).items()}


def model_prediction(loaded, positions, species, box, eigenvalues):
    """A model's per-atom prediction for one inherent structure, in its label's units."""
    import torch
    from softglass.prediction import predicted_softness
    model, scaling, card = loaded
    return predicted_softness(model, scaling, card, dict(species=species, box=box),
                              dict(positions=positions, eigenvalues=eigenvalues),
                              torch.device("cpu"))


def with_coarse_grained(values, positions, box):
    """Each indicator and, when COARSE_GRAIN_LENGTH > 0, its coarse-grained twin (name + "_cg")."""
    from softglass.isoconfigurational import coarse_grained
    out = dict(values)
    if COARSE_GRAIN_LENGTH > 0:
        for name, v in values.items():
            out[name + "_cg"] = coarse_grained(v, positions, box, COARSE_GRAIN_LENGTH,
                                               COARSE_GRAIN_CUTOFF)
    return out


# ================================ 5. learning propensity =======================================
def graph_of(physics, species, box, target, cutoff):
    """The inherent structure as the model's graph (edges within `cutoff`, START_MODEL's),
    labelled with `target`."""
    from softglass.graphs import glass_graph
    snap = dict(positions=physics["positions"], species=species, box_size=box,
                eigenvalues=physics["eigenvalues"], softness_score=target)
    return glass_graph(snap, cutoff)


def learned_target(p):
    """What the model and the trees learn: p, or log p (TARGET)."""
    return np.log(p) if TARGET == "log" else p


def as_propensity(target):
    """A prediction of learned_target back on the scale of p (Pearson R is not invariant under
    the log)."""
    return np.exp(target) if TARGET == "log" else target


def trees_on_propensity(train_graphs, val_graphs):
    """Gradient-boosted trees on each atom's 5 inputs and their neighbour averages (train.py's
    baseline), fitted to the training configurations' target: per-atom predictions on the
    validation ones."""
    from softglass.baselines import fit_gbt
    from softglass.graphs import neighbour_features
    x = np.concatenate([neighbour_features(g) for g in train_graphs])
    y = np.concatenate([g.y.numpy() for g in train_graphs])
    gbt = fit_gbt(x, y, SEED)
    return [as_propensity(gbt.predict(neighbour_features(g))) for g in val_graphs]


def linear_on_indicators(train, train_targets, val):
    """Least squares of the target on the coarse-grained structural indicators of step 3 (each
    standardized over the training atoms; all of them when COARSE_GRAIN_LENGTH is 0), fitted on
    the training configurations: the linear regression on coarse-grained descriptors that the
    roadmap finds hard to beat (Boattini et al., PRL 127, 088007 (2021)). The raw softnesses and
    vibrality are heavy-tailed and a square loss chases their outliers: with them the fit scores
    0.39 on the validation configurations, without them 0.53 (docs/report.md, section 18).
    Per-atom predictions on the validation configurations."""
    names = sorted(n for n in train[0] if n.endswith("_cg") or COARSE_GRAIN_LENGTH <= 0)
    x = np.array([np.concatenate([t[n] for t in train]) for n in names]).T
    mean, std = x.mean(0), x.std(0) + 1e-300
    ones = lambda x: np.c_[(x - mean) / std, np.ones(len(x))]  # noqa: E731
    coef, *_ = np.linalg.lstsq(ones(x), np.concatenate(train_targets), rcond=None)
    return [as_propensity(ones(np.array([v[n] for n in names]).T) @ coef) for v in val]


def train_on_propensity(train_graphs, val_graphs, val_species, val_p, log=print):
    """Fine-tune START_MODEL (or train its architecture afresh: PRETRAINED) on the training
    configurations' target with train.py's epoch (L1 on the standardized target, clipped
    gradients), one configuration per update; keep the epoch with the best mean validation R
    (Pearson with propensity over SCORED_SPECIES). Returns the model, the best epoch (its
    validation predictions and weights), the history and the scaling."""
    import torch
    from softglass.checkpoints import load_trained_model
    from softglass.dataset import scaled
    from softglass.training import UpdateSettings, train_epoch
    from softglass.model import HybridPhysicsTransformer
    torch.manual_seed(SEED)
    model, scaling, card = load_trained_model(here(START_MODEL), torch.device("cpu"), True,
                                              "hybrid_physics_best.pth")
    if not PRETRAINED:
        model = HybridPhysicsTransformer(**card["architecture"], use_checkpoint=False,
                                         fast_kernels=True)
    y = torch.cat([g.y for g in train_graphs])
    s = dict(x_mean=scaling["x_mean"], x_std=scaling["x_std"], y_mean=y.mean(),
             y_std=y.std())
    tr, va = scaled(train_graphs, s), scaled(val_graphs, s)
    settings = UpdateSettings(batch_size=1, accum_steps=1, grad_clip=1.0, use_amp=False,
                              cpu_bf16=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    generator = torch.Generator().manual_seed(SEED)
    best, history = None, []

    def validation():
        model.eval()
        with torch.no_grad():
            preds = [as_propensity(model(g.x, g.edge_index, g.edge_dist).double().numpy()
                                   * float(s["y_std"]) + float(s["y_mean"])) for g in va]
        r = [float(np.corrcoef(p[m], t[m])[0, 1]) for p, t, m in
             zip(preds, val_p, (sp == SCORED_SPECIES for sp in val_species))]
        return preds, float(np.mean(r))

    for epoch in range(EPOCHS):
        t0 = time.perf_counter()
        loss = train_epoch(model, tr, generator, optimizer, scaler, torch.device("cpu"), settings)
        preds, r = validation()
        history.append(dict(epoch=epoch, train_loss=loss, val_R=r,
                            seconds=time.perf_counter() - t0))
        log(f"epoch {epoch:3d}  train {loss:.4f}  val R {r:.4f}  "
            f"{history[-1]['seconds']:.1f}s")
        if best is None or r > best["val_R"]:
            best = dict(val_R=r, epoch=epoch, preds=preds,
                        state={k: v.clone() for k, v in model.state_dict().items()})
    return model, best, history, s


# ================================ 6. outputs, and main ===========================================
def check_settings():
    """Refuse, before anything is read, settings no run can use."""
    mode_counts()
    if TARGET not in ("propensity", "log"):
        raise SystemExit(f"error: TARGET={TARGET!r}: expected 'propensity' or 'log'")
    if EPOCHS < 0 or COARSE_GRAIN_LENGTH < 0:
        raise SystemExit("error: EPOCHS and COARSE_GRAIN_LENGTH must be >= 0")


def structural_indicators(ensembles, files, settings, models):
    """Steps 2-3 for every configuration: (physics, indicators, species, propensities), each a
    {configuration number: ...}."""
    from softglass.pairs import min_pair_distance
    physics, indicators, species, targets = {}, {}, {}, {}
    for k, (c, ens) in enumerate(ensembles.items()):
        ph = configuration_physics(files[k], ens, settings,
                                   os.path.join(OUT_DIR, "configurations"), k < TRUNCATED_CHECKS)
        d_min = min_pair_distance(ph["positions"], ens["box"])
        if d_min < settings[0].min_pair_distance:       # the glasses' overlap check
            raise SystemExit(f"error: {files[k]}: its inherent structure has a pair at {d_min:.3f}"
                             f" < {settings[0].min_pair_distance} sigma (an overlap)")
        values = dict(ph["values"])
        for name, loaded in models.items():
            values[f"model_{name}"] = model_prediction(loaded, ph["positions"], ens["species"],
                                                       ens["box"], ph["eigenvalues"])
        physics[c], species[c], targets[c] = ph, ens["species"], ens["propensity"]
        indicators[c] = with_coarse_grained(values, ph["positions"], ens["box"])
        print(f"configuration {c}: inherent structure E/N = {ph['fire']['energy_per_atom']:.5f},"
              f" max|F| = {ph['fire']['max_force']:.1e} after {ph['fire']['steps']} FIRE steps;"
              f" atoms moved {ph['fire']['moved_median']:.3f} (median), "
              f"{ph['fire']['moved_max']:.3f} (max) sigma; closest pair {d_min:.3f}")
    return physics, indicators, species, targets


def write_outputs(results, table, learned, t_start):
    """Step 6: results.json, table.md, propensity.png, and the headline printed."""
    from softglass import isoconfigurational as iso
    atomic_write_bytes(os.path.join(OUT_DIR, "results.json"),
                       json.dumps(results, indent=1).encode())
    iso.write_table(os.path.join(OUT_DIR, "table.md"), table, learned)
    iso.plot_scores(os.path.join(OUT_DIR, "propensity.png"), table, learned)
    best = max(table.items(), key=lambda kv: kv[1]["pearson"]["mean"])
    print(f"best from structure alone: {best[0]}, Pearson R = {best[1]['pearson']['mean']:.3f} "
          f"+- {best[1]['pearson']['std']:.3f} over {len(results['ensembles'])} configurations")
    for name, t in learned.items():
        print(f"{name}: Pearson R = {t['pearson']['mean']:.3f} on the validation configurations")
    print(f"wrote {OUT_DIR}/results.json, table.md, propensity.png "
          f"in {time.perf_counter() - t_start:.0f} s")


def main(argv=None):
    apply_overrides(globals(), argv)
    check_settings()
    t_start = time.perf_counter()
    from softglass import isoconfigurational as iso
    try:                                        # every file checked before any physics
        files, validation = ensemble_files()
        ensembles = {config_number(f): iso.read_ensemble(f, DENSITY) for f in files}
        models = load_models()
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    check_writable(OUT_DIR, "OUT_DIR", "the results ")
    if NUM_THREADS:
        import torch
        torch.set_num_threads(NUM_THREADS)
    first = next(iter(ensembles.values()))
    print(f"{len(files)} ensembles in {here(ENSEMBLE_DIR)}: N = {len(first['species'])}, "
          f"{first['replicas']} replicas each")
    physics, indicators, species, targets = structural_indicators(
        ensembles, files, glass_settings(), models)
    per, table = iso.score_table(indicators, targets, species, SCORED_SPECIES)
    learned, training = ({}, None) if EPOCHS == 0 else learn(ensembles, physics, indicators,
                                                             files, validation)
    results = dict(ensembles=[os.path.basename(f) for f in files], density=DENSITY,
                   scored_species=SCORED_SPECIES, mode_counts=list(mode_counts()),
                   coarse_grain=dict(length=COARSE_GRAIN_LENGTH, cutoff=COARSE_GRAIN_CUTOFF),
                   structure_only=table, per_configuration={str(c): v for c, v in per.items()},
                   learned=learned, training=training,
                   inherent_structures={str(c): dict(p["fire"], truncated=p.get("truncated"),
                                                     seconds=p["seconds"])
                                        for c, p in physics.items()},
                   wall_seconds=time.perf_counter() - t_start)
    write_outputs(results, table, learned, t_start)
    return results


def learn(ensembles, physics, indicators, files, validation):
    """Step 5: the model and the trees trained on propensity, scored on VALIDATION."""
    from softglass.isoconfigurational import correlations, summary
    val_c = [config_number(f) for f in validation]
    train_c = [c for c in ensembles if c not in val_c]
    import torch
    cutoff = torch.load(here(START_MODEL), weights_only=True)["architecture"]["cutoff"]
    graph = lambda c: graph_of(physics[c], ensembles[c]["species"], ensembles[c]["box"],  # noqa
                               learned_target(ensembles[c]["propensity"]), cutoff)
    tr, va = [graph(c) for c in train_c], [graph(c) for c in val_c]
    val_species = [ensembles[c]["species"] for c in val_c]
    val_p = [ensembles[c]["propensity"] for c in val_c]
    print(f"training on propensity: configurations {train_c}, validation {val_c}")
    model, best, history, s = train_on_propensity(tr, va, val_species, val_p)
    trees = trees_on_propensity(tr, va)
    linear = linear_on_indicators([indicators[c] for c in train_c],
                                  [learned_target(ensembles[c]["propensity"]) for c in train_c],
                                  [indicators[c] for c in val_c])
    learned = {}
    for name, preds in (("trained_model", best["preds"]), ("trained_trees", trees),
                        ("trained_linear", linear)):
        rows = {c: correlations(p, t, sp == SCORED_SPECIES)
                for c, p, t, sp in zip(val_c, preds, val_p, val_species)}
        mask = np.concatenate([sp == SCORED_SPECIES for sp in val_species])
        learned[name] = dict(summary(rows), per_configuration={str(c): v for c, v in rows.items()},
                             pooled=correlations(np.concatenate(preds), np.concatenate(val_p),
                                                 mask))
    save_model(model, best, s, [f for f in files if config_number(f) in train_c],
               len(ensembles[train_c[0]]["species"]))
    return learned, dict(train=train_c, validation=val_c, history=history,
                         best_epoch=best["epoch"], target=TARGET, start_model=START_MODEL,
                         pretrained=PRETRAINED, epochs=EPOCHS, lr=LR)


def save_model(model, best, scaling, train_files, n_atoms):
    """OUT_DIR/propensity_model.pth: the best epoch's weights in train.py's model-file format
    (predict.py and MODELS read it), naming the ensembles it learnt from by content."""
    import hashlib
    from softglass.checkpoints import git_commit, model_file, save_torch
    from softglass.cli import constants_of
    from softglass.files import file_sha256
    model.load_state_dict(best["state"])
    digest = hashlib.sha256("".join(file_sha256(f) for f in train_files).encode()).hexdigest()
    info = dict(n_atoms=n_atoms, n_soft_modes=0, density_range=[DENSITY, DENSITY],
                label="propensity" if TARGET != "log" else "log propensity",
                data_fingerprint=digest, former="ka")
    record = dict(commit=git_commit(_HERE), config=constants_of(globals()))
    card = model_file(model, scaling, best["epoch"], info, record)
    card.update(trained_on=[os.path.basename(f) for f in train_files],
                validation_R=best["val_R"])
    save_torch(os.path.join(OUT_DIR, "propensity_model.pth"), card)


if __name__ == "__main__":
    main()
