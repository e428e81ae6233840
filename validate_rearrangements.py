"""Does softness find where the glass yields? Athermal quasistatic shear to the first plastic event.

A fifth, optional step after train.py (issue 13). For each glass and each of six simple-shear
directions (+-xy, +-xz, +-yz; "xy" displaces x in proportion to y), in Lennard-Jones reduced units
(lengths sigma_AA, energies epsilon_AA, stress epsilon_AA / sigma_AA^3):

  1-5. shear   athermal quasistatic simple shear to the first plastic event, bisected to
               STRAIN_RESOLUTION; the event's strain, energy and stress drops, non-affine
               displacement, D2min, the hit (most-moved atom) and the top-1% movers; and the
               critical mode, the Hessian's lowest mode at the last stable minimum (its
               eigenvalue vanishes at the event), whose most-participating atom, the trigger,
               no minimiser can move: the engine is softglass/shear.py (its docstring has the
               steps), its settings the constants below
  6. score     indicators of the unstrained inherent structure (softness over 10/30/100 modes,
               vibrality, -lambda_1 of the local Hessian, random, the model's prediction when
               MODEL exists, each of MORE_MODELS (e.g. one trained with --LABEL_MODES=100),
               train.py's gradient-boosted trees when its split is read): percentile of the hit,
               share of hits in the top 5%, ROC AUC of the top-1% movers, bootstrap 95%
               intervals resampling glasses, and each model's difference to every indicator
               paired by event; the same ranks for the trigger, each indicator's R with the
               critical mode's participation, and how often trigger and hit agree

Input: the test glasses of train.py's split (RESULTS_FILE 'split' -> 'test' -> DATA_DIR's base
glasses), or GLASSES, a comma list of .pkl paths (runs without training). One result file per
(glass, direction) is written atomically under OUT_DIR/events, so a killed run resumes where it
stopped; a direction that does not yield by MAX_STRAIN, or whose FIRE fails, is recorded as such.

    python validate_rearrangements.py [--GLASSES=a.pkl,b.pkl] [--N_WORKERS=2] [--OUT_DIR=...]
        [--MORE_MODELS=s100=s100/hybrid_physics_best.pth]

A model trained after the shear is scored on a finished run's events without shearing again
(rearrangements.json keeps every event's hit, top movers and glass file sha256):

    python validate_rearrangements.py --RESCORE=rearrangements/rearrangements.json
        --OUT_DIR=rescored --MORE_MODELS=vib100=vib100/hybrid_physics_best.pth
"""
import dataclasses
from functools import partial
import json
import os
import time

import numpy as np

from softglass.cli import apply_overrides, constants_of, exit_on_help
from softglass.files import GlassFileError, file_sha256, load_glass

# ================================ constants ====================================================
# --- shear protocol ---
DIRECTIONS = "+xy,-xy,+xz,-xz,+yz,-yz"   # sign, displaced, gradient axis ("xy": x moves with y)
STRAIN_STEP = 1e-3              # strain increment of the coarse scan. First events of KA glasses
                                # come at gamma ~ 0.002-0.03 (median 0.009 at N = 500, issue
                                # 13), so 1e-3 finds one in ~10 steps; bisection then costs
                                # log2(1e-3/1e-5) ~ 7 relaxations. A smaller step only adds
                                # coarse steps: two events in one step are harmless, bisection
                                # returns the first one.
MAX_STRAIN = 0.2                # a direction not yielding by this strain is recorded as "no_yield"
STRAIN_RESOLUTION = 1e-5        # bisection stops when the event is bracketed this tightly
FORCE_TOL = 1e-10               # epsilon/sigma; a minimum has max_i |F_i| below this (as a glass)
MAX_FIRE_STEPS = 100000         # FIRE steps per relaxation; more is recorded as "fire_failed"
DISSIPATION_TOL = 1e-4          # epsilon; a step dissipating more than this is plastic. Along an
                                # elastic branch the work (Hermite quadrature of tau with its slopes
                                # G) equals the energy change but for the kinks of G where a pair
                                # crosses r_onset or r_cutoff (the smoothed LJ is only C1).
                                # Measured (bench_rearrangements.py, N = 1000, 6 directions): the
                                # largest elastic |dissipation| per direction is 2e-6 to 5.5e-5,
                                # the first events released 0.03 to 10 epsilon. The margin below
                                # is thin (2x): a false alarm costs only its bisection (the
                                # bracket's end relaxed from the last stable minimum is checked
                                # again and, when elastic, the scan goes on). The raw energy
                                # cannot be used: a residual stress tau_0 < 0 makes E fall
                                # elastically by V |tau_0| dgamma per step.
SKIN = 0.3                      # sigma; neighbour-list skin (generate_glass_data's SKIN_MINIMIZE),
                                # reduced for a small box so r_cut + skin stays below half the
                                # sheared cell's narrowest width (the list's images stay unique)
FORCE_KERNEL = "dense_r2"       # FIRE's forces in the sheared cell, as generate_glass_data's
                                # FORCE_KERNEL: "dense_r2", explicit pair forces on a Dense list (no
                                # scatter), the pair term in closed form in r^2; "dense", the same
                                # differentiating the pair function; "grad", -jax.grad of the
                                # energy on a half list (docs/report.md 13.4 times all three).
                                # The same forces to round-off, so, like NEWTON_*, not part of a
                                # result's protocol
PREDICTOR_MAX_MOVE = 0.05       # sigma; largest linear-response move used to start FIRE (a larger
                                # one means a nearly singular Hessian: start affinely instead)
NEWTON_FORCE = 1e-2             # epsilon/sigma; FIRE hands over to Newton below this max|F| (0 =
                                # plain FIRE to FORCE_TOL). The linear-response start is usually
                                # closer (~5e-3 after a 1e-3 step), so an elastic step needs no
                                # FIRE: chord steps with the previous minimum's Cholesky factor
                                # of the Hessian (atom 0 pinned), one new factor to check the end
                                # is a minimum; ~0.6 s per relaxation at N = 1000 against ~5 s of
                                # FIRE (bench_rearrangements.py)
NEWTON_RETRY_FORCE = 1e-4       # epsilon/sigma; when Newton fails at NEWTON_FORCE (past a fold the
                                # start has no basin), FIRE goes on to this force (through the
                                # event, into the new basin) and Newton tries again
NEWTON_MAX_STEPS = 30           # Newton/chord steps per relaxation before falling back to FIRE
NEWTON_FACTOR = "multifrontal"  # Cholesky factor of the pinned Hessian Newton solves with:
                                # "multifrontal", softglass/sparse_solver.py's sparse factor (fronts
                                # in a geometric nested-dissection order); "dense", LAPACK potrf
                                # of the dense 3N-3 matrix (1.4x slower at N = 1000,
                                # benchmarks/bench_rearrangements.py)
NEWTON_MAX_MOVE = 0.02          # sigma; a larger Newton step means a nearly singular Hessian (the
                                # state is near a fold, not a minimum's quadratic basin): FIRE

# --- what counts as a rearrangement ---
TOP_MOVERS_FRACTION = 0.01      # the top 1% of |non-affine displacement|: at N = 1000 the 10 atoms
                                # of a typical first event's core (a shear transformation zone of
                                # ~5-20 atoms), so a positive set of its core, not its elastic halo
TOP_HIT_FRACTION = 0.05         # score: share of events whose hit lies in an indicator's top 5%
D2MIN_RADIUS = 1.5              # sigma_AA; D2min neighbours (first minimum of g_AA(r) of KA ~ 1.45)

# --- indicators ---
MODE_COUNTS = (10, 30, 100)     # softness over this many lowest non-trivial Hessian modes;
                                # vibrality sums over the largest count (1/omega^2 weights the
                                # lowest modes): over all 3N - 3 modes instead, the hit's
                                # percentile moves by -0.001 [-0.007, +0.006] (156 events at
                                # N = 500) and +0.000 [-0.007, +0.008] (48 events at N = 1000;
                                # experiments/how_many_modes_for_vibrality.py)
MODEL = "hybrid_physics_best.pth"   # train.py's model; skipped with a note when absent
MORE_MODELS = ""                # other train.py models scored beside it, comma list of name=path
                                # (e.g. s100=s100/hybrid_physics_best.pth, trained with
                                # --LABEL_MODES=100): indicator "model_<name>"
N_BOOTSTRAP = 10000             # bootstrap resamples of the glasses (events of one glass correlate)
SEED = 0                        # random indicator and bootstrap

# --- input and output ---
GLASSES = ""                    # comma list of .pkl glasses; "" = the test glasses of RESULTS_FILE
RESULTS_FILE = "results.json"   # train.py's results: its 'split' names the test glasses
DATA_DIR = "data"               # the data set of generate_diverse_data.py
OUT_DIR = "rearrangements"      # events/, indicators/, rearrangements.json, the figure, event.xyz
RESCORE = ""                    # a run's rearrangements.json whose kept events are scored again
                                # with this run's indicators (e.g. a model trained since), nothing
                                # sheared: its glasses must be this run's (DATA_DIR's test glasses
                                # or GLASSES), checked against its Hessian indicators' scores
N_WORKERS = os.cpu_count() or 1  # processes, one (glass, direction) per task (spawn: JAX is not
                                 # fork-safe); 1 runs in this process
SHOW_PROGRESS = True            # tqdm bar over tasks
JAX_CACHE_DIR = ".jax_cache"    # persistent XLA compilation cache ("" disables)

exit_on_help(globals())         # --help lists the constants above without importing jax

# constants that shape a result: a result file made with other values is made again
_PROTOCOL = ("STRAIN_STEP", "MAX_STRAIN", "STRAIN_RESOLUTION", "FORCE_TOL", "MAX_FIRE_STEPS",
             "DISSIPATION_TOL", "SKIN", "PREDICTOR_MAX_MOVE", "TOP_MOVERS_FRACTION", "D2MIN_RADIUS")
# NEWTON_* change how fast a minimum is reached, not which (tests/test_rearrangements.py checks the
# event against plain FIRE), so results made with other values are kept


# ================================ settings from the constants ====================================
# Read when a step runs: after the command line's overrides, and in a spawned worker after
# _worker_init, so an override reaches every step.
from softglass import events, reporting, scores, workers   # noqa: E402  (imports jax: after --help)
from softglass import indicators as ind               # noqa: E402
from softglass import shear as aqs                    # noqa: E402
from softglass.scores import bootstrap_by_glass, in_top, percentile_rank, roc_auc  # noqa: E402,F401
from softglass.workers import threads_per_worker      # noqa: E402,F401  (importable from here)
import generate_glass_data as ggd                     # noqa: E402  (enables float64)


def settings(kind, constants):
    """A settings dataclass whose fields are the constants of those names in upper case."""
    return kind(**{f.name: constants[f.name.upper()] for f in dataclasses.fields(kind)})


def shear_protocol():
    """The engine's settings (softglass.shear.ShearProtocol) from the constants above. Refuses a
    bad NEWTON_FACTOR or FORCE_KERNEL before any shear is run."""
    return settings(aqs.ShearProtocol, globals())


def relaxation():
    """How the shear's FIRE and factors compute (softglass.shear.Relaxation): generate_glass_data's
    constants of those names (its defaults: this script's command line does not set them)."""
    return settings(aqs.Relaxation, vars(ggd))


def spectrum():
    """How the Hessian's lowest modes are found (softglass.indicators.Spectrum): generate_glass_data's
    constants of those names, as for the glasses' labels."""
    return settings(ind.Spectrum, vars(ggd))


def protocol():
    return {k: globals()[k] for k in _PROTOCOL}


def directions():
    return [d.strip() for d in DIRECTIONS.split(",")]


# ================================ 1. which glasses ===============================================
def split(part):
    """The glass numbers train.py's split in RESULTS_FILE puts in `part` ("train", "test")."""
    with open(RESULTS_FILE) as fh:
        return json.load(fh)["split"][part]


def base_files():
    """{glass number: path} of DATA_DIR's data set (its metadata.pkl)."""
    import augment_data
    return dict(augment_data.base_files(DATA_DIR))


def glass_list():
    """[(name, path)]: GLASSES, or the test glasses of train.py's split in RESULTS_FILE."""
    if GLASSES.strip():
        paths = [p.strip() for p in GLASSES.split(",") if p.strip()]
    else:
        try:
            test = split("test")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GlassFileError(f"{RESULTS_FILE}: no train.py split to read the test glasses "
                                 f"from ({type(err).__name__}: {err}); run train.py or name "
                                 "glasses with --GLASSES=a.pkl,b.pkl")
        bases = base_files()
        missing = [k for k in test if k not in bases]
        if missing:
            raise GlassFileError(f"{RESULTS_FILE}: test glasses {missing} are not in "
                                 f"{DATA_DIR}'s data set (metadata.pkl)")
        paths = [bases[k] for k in test]
    return events.named_glasses(paths)


# ================================ 2. their indicators ============================================
def load_model(path):
    """train.py's model: (net, scaling, record), its architecture and scaling from the file."""
    import torch
    import train
    return train.load_trained_model(path, torch.device("cpu"))


def model_prediction(model, snap):
    """predict.py's path: the snapshot is an inherent structure already, so its positions and
    stored local-Hessian eigenvalues are the model's input."""
    import torch
    from softglass.prediction import predicted_softness
    net, scaling, card = model
    glass = dict(species=np.asarray(snap["species"]), box=float(snap["box_size"]))
    described = dict(positions=np.asarray(snap["positions"], np.float64),
                     eigenvalues=np.asarray(snap["eigenvalues"], np.float64))
    return predicted_softness(net, scaling, card, glass, described, torch.device("cpu"))


def more_models():
    """MORE_MODELS as {name: path}; a malformed entry or a missing file is an error (checked
    before any shear is run)."""
    return ind.named_models(MORE_MODELS)


def scored_models():
    """{indicator name: (model, sha256 of its file)}: MODEL as "model" (skipped with a note when
    absent), each name=path of MORE_MODELS as "model_<name>" (an error when absent: asked for)."""
    return ind.scored_models(MODEL, more_models(), load_model)


def gbt_indicator():
    """train.py's gradient-boosted-trees baseline (the 5 local-Hessian features of an atom and
    their means over its neighbours within train.CUTOFF) fitted to the stored label (the seed's
    S10) of the training glasses of train.py's split, or None with a note when there is no split
    (GLASSES given). Fitted on the base glasses, not their rotated copies: the features and the
    label are rotation invariant. Returns (trees, key): key names the training set by content."""
    try:
        names = split("train")
    except (OSError, ValueError, KeyError, TypeError):
        print(f"note: no train.py split in {RESULTS_FILE}: the trees baseline is not scored")
        return None
    bases = base_files()
    missing = [k for k in names if k not in bases]
    if missing:
        raise GlassFileError(f"{RESULTS_FILE}: training glasses {missing[:5]} are not in "
                             f"{DATA_DIR}'s data set")
    import train
    return ind.fitted_on([bases[k] for k in names], tree_features, train.fit_gbt)


def tree_features(snap):
    """train.py's features of the trees (rows per atom) and the stored label."""
    import train
    graph = train.glass_graph(snap, train.CUTOFF)
    return train.neighbour_features(graph), graph.y.numpy()


def gbt_prediction(gbt, snap):
    trees, _ = gbt
    return trees.predict(tree_features(snap)[0]).astype(np.float64)


def indicators_of(snap, seed=0, models=None, gbt=None):
    """Per-atom indicators of the unstrained inherent structure, higher = predicted softer
    (softglass.indicators.indicators_of over MODE_COUNTS), then each model's prediction
    ({name: load_model(...)}) and the trees' (gbt_indicator) when given."""
    predictors = {name: partial(model_prediction, m) for name, m in (models or {}).items()}
    if gbt is not None:
        predictors["gbt"] = partial(gbt_prediction, gbt)
    return ind.indicators_of(snap, MODE_COUNTS, spectrum(), seed, predictors)


def glass_indicators(name, path, models, gbt):
    """Indicators of one glass (models: scored_models()), cached in OUT_DIR/indicators under a
    key naming the glass file's, each model file's and the trees' training glasses' content."""
    made_by = dict(models={k: sha for k, (_, sha) in models.items()},
                   gbt=gbt[1] if gbt is not None else None)
    return ind.glass_indicators(
        name, path, os.path.join(OUT_DIR, "indicators"), MODE_COUNTS, SEED, made_by,
        lambda snap, seed: indicators_of(snap, seed, {k: m for k, (m, _) in models.items()}, gbt))


# ================================ 3. shear each glass to its first event =========================
def result_path(name, direction):
    return events.result_path(OUT_DIR, name, direction)


def existing_result(path, glass_sha256=None):
    """A finished result of the current protocol (softglass.events.existing_result), or None."""
    return events.existing_result(path, protocol(), glass_sha256)


def run_task(task):
    """Shear one glass in one direction and write its result file (atomic)."""
    name, path, direction = task
    return events.shear_and_write(name, path, direction, result_path(name, direction),
                                  shear_protocol(), relaxation(), protocol())


def _worker_init(overrides):
    """A spawned worker re-imports this script with its defaults: apply the overrides again."""
    globals().update(overrides)
    ggd.enable_compilation_cache(JAX_CACHE_DIR)


# ================================ 4. the event records and their scores ==========================
def event_record(glass, res, indicators):
    """One yielded event scored by every indicator of its glass (softglass.events.event_record)."""
    return events.event_record(glass, res, indicators, TOP_HIT_FRACTION)


def kept_records(path):
    """A run's kept event records, refused unless of this protocol and TOP_HIT_FRACTION."""
    return events.kept_records(path, protocol(), TOP_HIT_FRACTION)


def score_records(records, n_boot=None, seed=None):
    """{indicator: scores} over the records, by-glass bootstrap (softglass.scores)."""
    return scores.score_records(records, N_BOOTSTRAP if n_boot is None else n_boot,
                                SEED if seed is None else seed)


def score_events(yielded, indicators, n_boot=None, seed=None):
    """yielded: [(glass, result)]; indicators: {glass: {name: values}}."""
    return score_records([event_record(g, r, indicators[g]) for g, r in yielded], n_boot, seed)


def paired_differences(table, n_boot=None, seed=None):
    """Each model's hit percentile minus every other indicator's, paired by event."""
    return scores.paired_differences(table, N_BOOTSTRAP if n_boot is None else n_boot,
                                     SEED if seed is None else seed)


# ================================ 5. the figure and the summary ==================================
def write_scored_run(summary, table, records):
    return reporting.write_scored_run(OUT_DIR, summary, table, records, paired_differences(table),
                                      protocol(), constants_of(globals()))


def summarise(glasses):
    """Read every result, score the indicators, write the table, the figure and one event."""
    results = events.finished_results(glasses, directions(), OUT_DIR, protocol())
    models = scored_models()
    if GLASSES.strip():
        print("note: GLASSES given, so no train.py split: the trees baseline is not scored")
    gbt = gbt_indicator() if not GLASSES.strip() else None
    indicators = {g: glass_indicators(g, p, models, gbt) for g, p in glasses}
    yielded = [(g, r) for (g, d), r in results.items() if r["status"] == "yielded"]
    records = [event_record(g, r, indicators[g]) for g, r in yielded]
    table = score_records(records)
    summary = dict(events.shear_summary(results, len(glasses), directions()),
                   **reporting.model_files(MODEL, more_models(), models))
    xyz = write_scored_run(summary, table, records)
    if yielded:
        g, res = yielded[0]
        reporting.write_event_xyz(xyz, res, load_glass(dict(glasses)[g]), indicators[g])
    return summary, table


# ================================ 6. rescoring a kept run ========================================
def rescore(glasses):
    """RESCORE: the kept events of a finished run scored again with this run's indicators, into
    OUT_DIR (another folder: the kept run's figure and event.xyz are not overwritten). The
    statuses and strains are the kept run's; no event.xyz is written (the displacements are not
    kept). A model file other than the one the kept run scored under the same name is refused:
    its row would silently stand for another model (train.py's default OUT_DIR rewrites
    MODEL's file)."""
    kept = events.kept_run(RESCORE, protocol(), TOP_HIT_FRACTION)
    paths = dict(glasses)
    events.check_rescore(RESCORE, kept, OUT_DIR, paths)
    models = scored_models()
    files = {k: sha for k, (_, sha) in models.items()}
    events.check_kept_models(RESCORE, kept, files)
    gbt = gbt_indicator() if not GLASSES.strip() else None
    indicators = {g: glass_indicators(g, paths[g], models, gbt)
                  for g in sorted({r["glass"] for r in kept["events"]})}
    records = events.rescored_records(RESCORE, kept, indicators, files, MODE_COUNTS, SEED,
                                      TOP_HIT_FRACTION)
    summary = dict(events.kept_shear_summary(kept), rescored_from=RESCORE,
                   **reporting.model_files(MODEL, more_models(), models, kept))
    write_scored_run(summary, score_records(records), records)
    return summary


# ================================ main ===========================================================
def checked_glasses():
    """The glasses, with every setting checked before any work: MORE_MODELS, the protocol, the
    directions, and each glass's box (wide enough for its minimum image up to MAX_STRAIN)."""
    try:
        glasses = glass_list()
        more_models()
        shear_protocol()
        for d in directions():
            aqs.parse_direction(d)
        events.check_boxes(glasses, MAX_STRAIN)
    except (GlassFileError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    return glasses


def main(argv=None):
    overrides = apply_overrides(globals(), argv)
    ggd.enable_compilation_cache(JAX_CACHE_DIR)
    t0 = time.perf_counter()
    glasses = checked_glasses()
    if RESCORE.strip():
        try:
            summary = rescore(glasses)
        except GlassFileError as err:
            raise SystemExit(f"error: {err}")
        print(f"{RESCORE}: {len(summary['events'])} kept events scored again, nothing sheared")
        reporting.print_table(summary)
        print(f"wrote {os.path.join(OUT_DIR, 'rearrangements.json')}, hit_percentile_cdf.png "
              f"in {time.perf_counter() - t0:.1f}s")
        return summary
    sha = {g: file_sha256(p) for g, p in glasses}
    tasks = [(g, p, d) for g, p in glasses for d in directions()
             if existing_result(result_path(g, d), sha[g]) is None]
    redo = sum(os.path.exists(result_path(g, d)) for g, _, d in tasks)
    if redo:
        print(f"note: {redo} result file(s) in {OUT_DIR}/events are of another glass file or "
              "protocol (or older than results that name their glass): sheared again",
              flush=True)
    n_all = len(glasses) * len(directions())
    print(f"{len(glasses)} glasses x {len(directions())} directions: {n_all - len(tasks)} done, "
          f"{len(tasks)} to run with {min(N_WORKERS, max(len(tasks), 1))} worker(s) -> "
          f"{OUT_DIR}", flush=True)
    if tasks:
        workers.run_tasks(tasks, run_task, N_WORKERS, _worker_init, (overrides,),
                          events.print_result, SHOW_PROGRESS, desc="shear", unit="direction")
    summary, _ = summarise(glasses)
    reporting.print_table(summary)
    print(f"wrote {os.path.join(OUT_DIR, 'rearrangements.json')}, hit_percentile_cdf.png, "
          f"event.xyz in {time.perf_counter() - t0:.1f}s")
    return summary


if __name__ == "__main__":
    main()
