"""Does softness find where the glass yields? Athermal quasistatic shear to the first plastic event.

A fifth, optional step after train.py (issue 13). For each glass and each of six simple-shear
directions (+-xy, +-xz, +-yz; "xy" displaces x in proportion to y), in Lennard-Jones reduced units
(lengths sigma_AA, energies epsilon_AA, stress epsilon_AA / sigma_AA^3):

  1-5. shear   athermal quasistatic simple shear to the first plastic event, bisected to
               STRAIN_RESOLUTION; the event's strain, energy and stress drops, non-affine
               displacement, D2min, the hit (most-moved atom) and the top-1% movers: the engine
               is softglass/shear.py (its docstring has the steps), its settings the constants below
  6. score     indicators of the unstrained inherent structure (softness over 10/30/100 modes,
               vibrality, -lambda_1 of the local Hessian, random, the model's prediction when
               MODEL exists, each of MORE_MODELS (e.g. one trained with --LABEL_MODES=100),
               train.py's gradient-boosted trees when its split is read): percentile of the hit,
               share of hits in the top 5%, ROC AUC of the top-1% movers, bootstrap 95%
               intervals resampling glasses, and each model's difference to every indicator
               paired by event

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
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import re
import time

import numpy as np

from softglass.cli import apply_overrides, constants_of, exit_on_help
from softglass.files import (GlassFileError, atomic_write_bytes, atomic_write_pickle, file_sha256,
                             load_glass, safe_load_pickle, same_value, system_of)

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


# ================================ the shear engine ================================================
from softglass import shear as aqs                    # noqa: E402  (imports jax: after --help)
from softglass.scores import (bootstrap_by_glass, in_top, percentile_rank,  # noqa: E402
                              roc_auc)
import generate_glass_data as ggd                     # noqa: E402  (enables float64)


def shear_protocol():
    """The engine's settings (softglass.shear.ShearProtocol) from the constants above, read now: after
    the command line's overrides, and in a spawned worker after _worker_init. Refuses a bad
    NEWTON_FACTOR or FORCE_KERNEL before any shear is run."""
    return aqs.ShearProtocol(**{f.name: globals()[f.name.upper()]
                                for f in dataclasses.fields(aqs.ShearProtocol)})


def relaxation():
    """How the shear's FIRE and factors compute (softglass.shear.Relaxation): generate_glass_data's
    constants of those names (its defaults: this script's command line does not set them)."""
    return aqs.Relaxation(**{f.name: getattr(ggd, f.name.upper())
                             for f in dataclasses.fields(aqs.Relaxation)})


# ================================ indicators and scores ===========================================
def indicators_of(snap, seed=0, models=None, gbt=None):
    """Per-atom indicators of the unstrained inherent structure, higher = predicted softer:
    S_n over the n lowest non-trivial modes (n in MODE_COUNTS), vibrality
    sum_k |e_k(i)|^2 / lambda_k over the same (largest) set of modes, -lambda_1 of the local
    Hessian (stored), random, each model's prediction ({indicator name: load_model(...)}) and
    train.py's gradient-boosted trees when `gbt` (gbt_indicator) is given."""
    system = system_of(snap)
    positions = np.asarray(snap["positions"], np.float64)
    h, local = ggd.hessian(positions, system)
    n_modes = max(MODE_COUNTS)
    vals, vecs = ggd.lowest_modes(h, ggd.N_ZERO_MODES + n_modes, positions,
                                  float(snap["box_size"]))
    ggd.check_modes(vals)
    out = {f"S{m}": ggd.softness_from_modes(vecs, n_soft=m) for m in MODE_COUNTS}
    out["vibrality"] = ggd.vibrality_from_modes(vals, vecs, n_modes=n_modes)
    out["-lambda_1"] = -np.asarray(snap["eigenvalues"], np.float64)[:, 0]
    out["random"] = np.random.default_rng(seed).random(len(positions))
    for name, model in (models or {}).items():
        out[name] = model_prediction(model, snap)
    if gbt is not None:
        out["gbt"] = gbt_prediction(gbt, snap)
    return out


def scored_models():
    """{indicator name: (model, sha256 of its file)}: MODEL as "model" (skipped with a note when
    absent), each name=path of MORE_MODELS as "model_<name>" (an error when absent: asked for)."""
    models = {}
    model = load_model(MODEL)
    if model is not None:
        models["model"] = (model, file_sha256(MODEL))   # hashed once, not per glass
    for name, path in more_models().items():         # present: more_models checked
        models[f"model_{name}"] = (load_model(path), file_sha256(path))
    return models


def more_models():
    """MORE_MODELS as {name: path}; a malformed entry or a missing file is an error (checked
    before any shear is run)."""
    out = {}
    for item in filter(None, (x.strip() for x in MORE_MODELS.split(","))):
        name, sep, path = (t.strip() for t in item.partition("="))
        if not sep or not re.fullmatch(r"[A-Za-z0-9_]+", name) or not path:
            raise GlassFileError(f"MORE_MODELS: {item!r} is not name=path (name: letters, "
                                 "digits, _)")
        if not os.path.exists(path):
            raise GlassFileError(f"{path}: model file not found (MORE_MODELS {name})")
        out[name] = path
    return out


def load_model(path):
    """train.py's model (its architecture and scaling from the file), or None with a note."""
    if not os.path.exists(path):
        print(f"note: {path} not found: the model's prediction is not scored (train.py writes it)")
        return None
    import torch
    import train
    return train.load_trained_model(path, torch.device("cpu"))


def model_prediction(model, snap):
    """predict.py's path: the snapshot is an inherent structure already, so its positions and
    stored local-Hessian eigenvalues are the model's input."""
    import torch
    import predict
    net, scaling, card = model
    glass = dict(species=np.asarray(snap["species"]), box=float(snap["box_size"]))
    described = dict(positions=np.asarray(snap["positions"], np.float64),
                     eigenvalues=np.asarray(snap["eigenvalues"], np.float64))
    return predict.predicted_softness(net, scaling, card, glass, described, torch.device("cpu"))


def gbt_indicator():
    """train.py's gradient-boosted-trees baseline (the 5 local-Hessian features of an atom and
    their means over its neighbours within train.CUTOFF) fitted to the stored label (the seed's
    S10) of the training glasses of train.py's split, or None with a note when there is no split
    (GLASSES given). Fitted on the base glasses, not their rotated copies: the features and the
    label are rotation invariant. Returns (trees, key): key names the training set by content."""
    import hashlib
    import augment_data
    import train
    try:
        with open(RESULTS_FILE) as fh:
            names = json.load(fh)["split"]["train"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"note: no train.py split in {RESULTS_FILE}: the trees baseline is not scored")
        return None
    bases = dict(augment_data.base_files(DATA_DIR))
    missing = [k for k in names if k not in bases]
    if missing:
        raise GlassFileError(f"{RESULTS_FILE}: training glasses {missing[:5]} are not in "
                             f"{DATA_DIR}'s data set")
    digest = hashlib.sha256()
    xs, ys = [], []
    for k in names:
        digest.update(file_sha256(bases[k]).encode())
        g = train.glass_graph(load_glass(bases[k]), train.CUTOFF)
        xs.append(train.neighbour_features(g))
        ys.append(g.y.numpy())
    trees = train.fit_gbt(np.concatenate(xs), np.concatenate(ys))
    return trees, digest.hexdigest()


def gbt_prediction(gbt, snap):
    import train
    trees, _ = gbt
    graph = train.glass_graph(snap, train.CUTOFF)
    return trees.predict(train.neighbour_features(graph)).astype(np.float64)


def event_record(glass, res, indicators):
    """One yielded event scored by every indicator of its glass: {name: [percentile rank of the
    hit, hit in the top TOP_HIT_FRACTION, ROC AUC of the top movers]}, with the event's glass,
    its atom count (sets of other sizes pooled or compared), direction, strain and hit.
    rearrangements.json keeps these records, with the top movers and the glass file's sha256,
    so a run's scores can be pooled with other runs (experiments/pooled_yield.py)
    and a model trained later scored on its events (RESCORE) after its events/ and indicators/
    folders are gone."""
    scores = {}
    for name, x in indicators.items():
        positive = np.zeros(len(x), bool)
        positive[res["top_movers"]] = True
        scores[name] = [percentile_rank(x, res["hit"]), in_top(x, res["hit"], TOP_HIT_FRACTION),
                        roc_auc(x, positive)]
    strain = res.get("event_strain")
    return dict(glass=glass, n_atoms=len(next(iter(indicators.values()))),
                direction=res.get("direction"), hit=int(res["hit"]),
                top_movers=[int(i) for i in res["top_movers"]],
                glass_sha256=res.get("glass_sha256"),
                event_strain=None if strain is None else float(strain), scores=scores)


def kept_records(path):
    """The event records a run's rearrangements.json keeps (event_record), refused with an error
    naming the file when they cannot be scored beside this code's: no records (written before
    they were kept), another shear protocol, or another TOP_HIT_FRACTION (its top-5% column)."""
    try:
        with open(path) as fh:
            summary = json.load(fh)
    except (OSError, ValueError) as err:
        raise GlassFileError(f"{path}: not a readable rearrangements.json ({err})")
    if "events" not in summary:
        raise GlassFileError(f"{path}: no per-event records (written before they were kept; "
                             "score its run's events/ and indicators/ folders instead)")
    if summary.get("protocol") != protocol():
        raise GlassFileError(f"{path}: shear protocol {summary.get('protocol')} is not the "
                             f"current {protocol()}")
    kept = summary.get("constants", {}).get("TOP_HIT_FRACTION")
    if kept != TOP_HIT_FRACTION:
        raise GlassFileError(f"{path}: its events were scored with TOP_HIT_FRACTION = {kept}, "
                             f"not the current {TOP_HIT_FRACTION}")
    return summary["events"]


def score_records(records, n_boot=None, seed=None):
    """records: event_record()s. Returns {indicator: scores}: the mean over events of each
    measure with its by-glass bootstrap 95% interval, the per-event percentiles kept for the
    figure and the paired differences."""
    n_boot = N_BOOTSTRAP if n_boot is None else n_boot
    seed = SEED if seed is None else seed
    table = {}
    for name in sorted({k for r in records for k in r["scores"]}):
        rows = [r for r in records if name in r["scores"]]
        gid = [r["glass"] for r in rows]
        pct, top, auc = zip(*(r["scores"][name] for r in rows))
        rng = np.random.default_rng(seed)
        # an AUC is None for an event kept without its movers and scored again (RESCORE)
        with_auc = [(a, g) for a, g in zip(auc, gid) if a is not None]
        table[name] = dict(
            n_events=len(rows), n_glasses=len(set(gid)),
            hit_percentile=bootstrap_by_glass(pct, gid, n_boot, rng),
            hit_in_top=bootstrap_by_glass(top, gid, n_boot, rng),
            top_movers_auc=(bootstrap_by_glass(*zip(*with_auc), n_boot, rng) if with_auc
                            else None),
            n_events_auc=len(with_auc),
            per_event_percentile=[float(p) for p in pct], glass_of_event=gid)
    return table


def score_events(events, indicators, n_boot=None, seed=None):
    """events: [(glass name, result dict)] of yielded events; indicators: {glass: {name: array}}.
    Returns {indicator: scores} (score_records)."""
    return score_records([event_record(g, ev, indicators[g]) for g, ev in events], n_boot, seed)


def paired_differences(table, n_boot=None, seed=None):
    """Each model's hit percentile minus every other indicator's, event by event (the same
    events), mean and by-glass bootstrap 95% interval: intervals of two indicators overlap more
    than their difference is uncertain, since both see the same hard and easy events."""
    n_boot = N_BOOTSTRAP if n_boot is None else n_boot
    out = {}
    for m in sorted(k for k in table if k == "model" or k.startswith("model_")):
        for other in sorted(table):
            a, b = table[m], table[other]
            if other == m or a["glass_of_event"] != b["glass_of_event"]:
                continue
            diff = np.subtract(a["per_event_percentile"], b["per_event_percentile"])
            out[f"{m} - {other}"] = bootstrap_by_glass(
                diff, a["glass_of_event"], n_boot,
                np.random.default_rng(SEED if seed is None else seed))
    return out


# ================================ pipeline ========================================================
def protocol():
    return {k: globals()[k] for k in _PROTOCOL}


def glass_list():
    """[(name, path)]: GLASSES, or the test glasses of train.py's split in RESULTS_FILE."""
    if GLASSES.strip():
        paths = [p.strip() for p in GLASSES.split(",") if p.strip()]
    else:
        import augment_data
        try:
            with open(RESULTS_FILE) as fh:
                test = json.load(fh)["split"]["test"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GlassFileError(f"{RESULTS_FILE}: no train.py split to read the test glasses "
                                 f"from ({type(err).__name__}: {err}); run train.py or name "
                                 "glasses with --GLASSES=a.pkl,b.pkl")
        bases = dict(augment_data.base_files(DATA_DIR))
        missing = [k for k in test if k not in bases]
        if missing:
            raise GlassFileError(f"{RESULTS_FILE}: test glasses {missing} are not in "
                                 f"{DATA_DIR}'s data set (metadata.pkl)")
        paths = [bases[k] for k in test]
    names = [re.sub(r"\.pkl$", "", os.path.basename(p)) for p in paths]
    if len(set(names)) != len(names):
        raise GlassFileError(f"GLASSES: two glasses share a file name ({', '.join(paths)})")
    return list(zip(names, paths))


def result_path(name, direction):
    sign = "p" if direction.strip()[0] == "+" else "m"
    return os.path.join(OUT_DIR, "events", f"{name}_{sign}{direction.strip()[1:]}.pkl")


def existing_result(path, glass_sha256=None):
    """A finished result of the current protocol, or None (missing, unreadable, other protocol).
    With glass_sha256, also None unless the result was sheared from a glass file of that content:
    a data set regenerated in place (same names, other glasses) must not inherit the old events.
    Results written before they named their glass (no glass_sha256) are made again."""
    if not os.path.exists(path):
        return None
    try:
        res = safe_load_pickle(path)
    except GlassFileError:
        return None
    if not (isinstance(res, dict) and res.get("status") and same_value(res.get("protocol"),
                                                                       protocol())):
        return None
    if glass_sha256 is not None and res.get("glass_sha256") != glass_sha256:
        return None
    return res


def run_task(task):
    """Shear one glass in one direction and write its result file (atomic)."""
    name, path, direction = task
    snap = load_glass(path)
    res = aqs.shear_to_first_event(snap, direction, shear_protocol(), where=path,
                                   relaxation=relaxation())
    res.update(glass=name, path=path, glass_sha256=file_sha256(path), protocol=protocol())
    atomic_write_pickle(result_path(name, direction), res)
    return name, direction, res["status"], res.get("event_strain"), res["seconds"]


def _worker_init(overrides):
    """A spawned worker re-imports this script with its defaults: apply the overrides again."""
    globals().update(overrides)
    ggd.enable_compilation_cache(JAX_CACHE_DIR)


@contextlib.contextmanager
def threads_per_worker(n_workers):
    """Spawned workers start with cores / n_workers BLAS threads (OpenBLAS, MKL, OpenMP) and, at
    one, single-threaded XLA ops. Left at their defaults, 2 workers on 2 cores run 4 BLAS and 4
    XLA threads: the last full run so made took 102 s per direction on average, against 59 s in
    bench_rearrangements.py with one pinned process per core (report 12). The environment is
    restored when the pool is done."""
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    keys = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(threads) for k in keys[:3]})
    if threads == 1:
        os.environ["XLA_FLAGS"] = f"{saved['XLA_FLAGS'] or ''} --xla_cpu_multi_thread_eigen=false"
    try:
        yield threads
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_tasks(tasks, overrides):
    from tqdm import tqdm
    bar = tqdm(total=len(tasks), desc="shear", unit="direction", disable=not SHOW_PROGRESS)
    report = lambda r: tqdm.write(f"  {r[0]} {r[1]}: {r[2]}" + (  # noqa: E731
        f" at strain {r[3]:.5f}" if r[3] is not None else "") + f" ({r[4]:.1f}s)")
    if N_WORKERS <= 1 or len(tasks) <= 1:
        for task in tasks:
            report(run_task(task))
            bar.update(1)
    else:
        ctx, n = mp.get_context("spawn"), min(N_WORKERS, len(tasks))
        with threads_per_worker(n), ctx.Pool(n, initializer=_worker_init,
                                             initargs=(overrides,)) as pool:
            for r in pool.imap_unordered(run_task, tasks):
                report(r)
                bar.update(1)
            pool.close()
            pool.join()
    bar.close()


def glass_indicators(name, path, models, gbt):
    """Indicators of one glass, cached in OUT_DIR/indicators. The cache names what made it (the
    glass file's content, each model file's content (models: scored_models()), the trees'
    training glasses' content), so a retrained model or another split recomputes it instead of
    scoring stale predictions."""
    cache = os.path.join(OUT_DIR, "indicators", f"{name}.pkl")
    stored = safe_load_pickle(cache) if os.path.exists(cache) else None
    made_from = dict(mode_counts=list(MODE_COUNTS), seed=SEED, glass=file_sha256(path),
                     models={k: sha for k, (_, sha) in models.items()},
                     gbt=gbt[1] if gbt is not None else None)
    if isinstance(stored, dict) and same_value(stored.get("made_from"), made_from):
        return stored["values"]
    snap = load_glass(path)
    index = int(re.search(r"(\d+)$", name)[1]) if re.search(r"(\d+)$", name) else 0
    values = indicators_of(snap, seed=SEED * 100003 + index,
                           models={k: m for k, (m, _) in models.items()}, gbt=gbt)
    atomic_write_pickle(cache, dict(values=values, made_from=made_from))
    return values


def write_event_xyz(path, res, snap, indicators):
    """The pre-event minimum in its sheared cell with the non-affine displacement, D2min, true
    softness (the glass's label) and every indicator as columns (OVITO reads it)."""
    cell = res["cell_before"]
    positions = np.mod(res["frac_before"], 1.0) @ cell.T
    names = np.array(["A", "B"])[np.asarray(snap["species"])]
    norm = np.linalg.norm(res["displacement"], axis=1)
    cols = [("nonaffine", res["displacement"]), ("displacement", norm[:, None]),
            ("d2min", res["d2min"][:, None]),
            ("softness_true", np.asarray(snap["softness_score"])[:, None])]
    cols += [(re.sub(r"[^A-Za-z0-9_]", "_", k), v[:, None]) for k, v in indicators.items()]
    if "model" in indicators:
        cols.append(("softness_pred", indicators["model"][:, None]))
    props = "species:S:1:pos:R:3" + "".join(f":{k}:R:{v.shape[1]}" for k, v in cols)
    lattice = " ".join(f"{x:.10f}" for x in cell.T.ravel())      # rows: the cell vectors
    values = np.concatenate([positions] + [v for _, v in cols], axis=1)
    lines = [str(len(names)), f'Lattice="{lattice}" Properties={props} pbc="T T T" '
             f'comment="first event of {res["glass"]} sheared {res["direction"]} at strain '
             f'{res["event_strain"]:.5f}; hit atom {res["hit"]}"']
    lines += [f"{s} " + " ".join(f"{v:.10g}" for v in row) for s, row in zip(names, values)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def plot_hit_percentiles(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["hit_percentile"][0]):
        p = np.sort(row["per_event_percentile"])
        m, lo, hi = row["hit_percentile"]
        ax.step(p, np.arange(1, len(p) + 1) / len(p), where="post",
                label=f"{name}: {m:.2f} [{lo:.2f}, {hi:.2f}]")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("percentile rank of the indicator at the hit atom")
    ax.set_ylabel("cumulative share of events")
    ax.set_title("Which indicator finds the first rearrangement?")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_scored_run(summary, table, records):
    """Write rearrangements.json (summary with the table's scores, the models' paired
    differences and the event records) and the figure into OUT_DIR. An older run's figure and
    event.xyz are removed first, so a run without events (or a rescored one, which has no
    displacements) does not leave them beside its rearrangements.json. Returns the event.xyz
    path for the caller."""
    summary.update(
        scores={k: {kk: vv for kk, vv in v.items()
                    if kk not in ("per_event_percentile", "glass_of_event")}
                for k, v in table.items()},
        paired_differences=paired_differences(table),
        protocol=protocol(), constants=constants_of(globals()), events=records)
    atomic_write_bytes(os.path.join(OUT_DIR, "rearrangements.json"),
                       json.dumps(summary, indent=2).encode())
    figure, xyz = (os.path.join(OUT_DIR, f) for f in ("hit_percentile_cdf.png", "event.xyz"))
    for path in (figure, xyz):
        if os.path.exists(path):
            os.remove(path)
    if table:
        plot_hit_percentiles(table, figure)
    return xyz


def summarise(glasses):
    """Read every result, score the indicators, write the table, the figure and one event."""
    directions = [d.strip() for d in DIRECTIONS.split(",")]
    # hashed again, not taken from main: a glass rewritten during the shear has no results
    sha = {g: file_sha256(p) for g, p in glasses}
    results = {(g, d): existing_result(result_path(g, d), sha[g])
               for g, _ in glasses for d in directions}
    missing = [f"{g} {d}" for (g, d), r in results.items() if r is None]
    if missing:
        raise RuntimeError(f"results missing for {missing[:5]}; run again to finish them")
    models = scored_models()
    if GLASSES.strip():
        print("note: GLASSES given, so no train.py split: the trees baseline is not scored")
    gbt = gbt_indicator() if not GLASSES.strip() else None
    indicators = {g: glass_indicators(g, p, models, gbt) for g, p in glasses}
    events = [(g, r) for (g, d), r in results.items() if r["status"] == "yielded"]
    records = [event_record(g, r, indicators[g]) for g, r in events]
    table = score_records(records)
    strains = np.array([r["event_strain"] for _, r in events])
    statuses = {s: sum(r["status"] == s for r in results.values())
                for s in ("yielded", "no_yield", "fire_failed")}
    summary = dict(
        n_glasses=len(glasses), directions=directions, statuses=statuses,
        not_yielded=[f"{g} {d}: {r['status']} ({r['message']})" for (g, d), r in results.items()
                     if r["status"] != "yielded"],
        event_strain=dict(median=float(np.median(strains)) if len(strains) else None,
                          min=float(strains.min()) if len(strains) else None,
                          max=float(strains.max()) if len(strains) else None),
        seconds_per_direction=float(np.mean([r["seconds"] for r in results.values()])),
        model=MODEL if "model" in models else None,
        model_sha256=models["model"][1] if "model" in models else None,
        more_models={k: dict(file=v, sha256=models[f"model_{k}"][1])
                     for k, v in more_models().items()})
    xyz = write_scored_run(summary, table, records)
    if events:
        g, res = events[0]
        write_event_xyz(xyz, res, load_glass(dict(glasses)[g]), indicators[g])
    return summary, table


def glass_determined(name, kept_constants):
    """Whether an indicator is fixed by the glass file alone under the kept run's constants:
    softness over n modes and -lambda_1 always, vibrality at the same MODE_COUNTS, random at the
    same SEED. Scored again on a kept event, such an indicator must rank the hit as it did."""
    if re.fullmatch(r"S\d+", name) or name == "-lambda_1":
        return True
    if name == "vibrality":
        return list(kept_constants.get("MODE_COUNTS", [])) == list(MODE_COUNTS)
    return name == "random" and kept_constants.get("SEED") == SEED


def rescored_record(record, indicators, glass_fixed, as_kept, where):
    """A kept event record (event_record) scored again with its glass's `indicators`: the hit's
    percentile and top share from the kept hit, the AUC from the kept movers. For records kept
    before their movers were, an indicator in `as_kept` (the same values as the kept run's: the
    glass-determined ones, a model of the same file) keeps its AUC, the others get None.
    Indicators not recomputed keep their stored scores (a model whose file is gone stays in the
    table and in the paired differences). An indicator in `glass_fixed` (glass_determined)
    ranking the hit otherwise than the record did means another glass under the same name:
    refused."""
    hit, movers = record["hit"], record.get("top_movers")
    scores = dict(record["scores"])
    for name, x in indicators.items():
        if len(x) != record.get("n_atoms", len(x)):
            raise GlassFileError(f"{where}: {record['glass']} has {record['n_atoms']} atoms in "
                                 f"the kept events, {len(x)} in this run's glass file")
        auc = None
        if movers is not None:
            positive = np.zeros(len(x), bool)
            positive[movers] = True
            auc = roc_auc(x, positive)
        new = [percentile_rank(x, hit), in_top(x, hit, TOP_HIT_FRACTION), auc]
        old = scores.get(name)
        if old is not None and name in glass_fixed and abs(old[0] - new[0]) > 1e-9:
            raise GlassFileError(
                f"{where}: {record['glass']} {record['direction']}: {name} ranks the hit at "
                f"{new[0]:.4f} here, {old[0]:.4f} in the kept record: this run's glass file "
                "is not the one that was sheared")
        if old is not None and name in as_kept and auc is None:
            new[2] = old[2]
        scores[name] = new
    return dict(record, scores=scores)


def kept_model_files(kept):
    """{indicator name: sha256 of the model file} of the models a kept run scored."""
    out = {"model": kept.get("model_sha256")} if kept.get("model_sha256") else {}
    out.update({f"model_{k}": v.get("sha256") for k, v in (kept.get("more_models") or {}).items()})
    return out


def rescore(glasses):
    """RESCORE: the kept events of a finished run scored again with this run's indicators, into
    OUT_DIR (another folder: the kept run's figure and event.xyz are not overwritten). The
    statuses and strains are the kept run's; no event.xyz is written (the displacements are not
    kept). A model file other than the one the kept run scored under the same name is refused:
    its row would silently stand for another model (train.py's default OUT_DIR rewrites
    MODEL's file)."""
    records = kept_records(RESCORE)
    with open(RESCORE) as fh:
        kept = json.load(fh)
    out = os.path.join(OUT_DIR, "rearrangements.json")
    if os.path.exists(out) and os.path.samefile(out, RESCORE):
        raise GlassFileError(f"{RESCORE}: RESCORE would overwrite the run it reads; give another "
                             "OUT_DIR")
    paths = dict(glasses)
    missing = sorted({r["glass"] for r in records} - set(paths))
    if missing:
        raise GlassFileError(f"{RESCORE}: its events are of glasses {missing[:5]}, not among "
                             "this run's (RESULTS_FILE's test glasses in DATA_DIR, or GLASSES)")
    glass_sha = {g: file_sha256(paths[g]) for g in {r["glass"] for r in records}}
    for r in records:
        if r.get("glass_sha256") and r["glass_sha256"] != glass_sha[r["glass"]]:
            raise GlassFileError(f"{paths[r['glass']]}: not the glass file {RESCORE} sheared "
                                 "(another sha256)")
    models = scored_models()
    kept_files = kept_model_files(kept)
    for name, (_, sha) in models.items():
        if kept_files.get(name) not in (None, sha):
            flag = "MODEL" if name == "model" else f"MORE_MODELS {name[len('model_'):]}"
            raise GlassFileError(
                f"{RESCORE}: its {name!r} row is of another model file than {flag} names now "
                "(another sha256); score the new model under a new name (--MORE_MODELS="
                "name=path)" + (", with --MODEL=none to keep the kept row" if name == "model"
                                else ""))
    gbt = gbt_indicator() if not GLASSES.strip() else None
    names = sorted({r["glass"] for r in records})
    indicators = {g: glass_indicators(g, paths[g], models, gbt) for g in names}
    constants = kept.get("constants", {})
    glass_fixed = {k for k in indicators[names[0]] if glass_determined(k, constants)} \
        if names else set()
    as_kept = glass_fixed | {k for k, (_, sha) in models.items() if kept_files.get(k) == sha}
    records = [rescored_record(r, indicators[r["glass"]], glass_fixed, as_kept, RESCORE)
               for r in records]
    table = score_records(records)
    more = dict(kept.get("more_models") or {})
    more.update({k: dict(file=v, sha256=models[f"model_{k}"][1])
                 for k, v in more_models().items()})
    summary = dict(
        {k: kept.get(k) for k in ("n_glasses", "directions", "statuses", "not_yielded",
                                  "event_strain", "seconds_per_direction")},
        rescored_from=RESCORE,
        model=MODEL if "model" in models else kept.get("model"),
        model_sha256=models["model"][1] if "model" in models else kept.get("model_sha256"),
        more_models=more)
    write_scored_run(summary, table, records)
    return summary


def print_table(summary):
    print(f"{summary['statuses']} over {summary['n_glasses']} glasses; median event strain "
          f"{summary['event_strain']['median']}")
    print(f"{'indicator':<12} {'hit percentile [95%]':<24} {'hit in top 5%':<22} "
          f"{'AUC top 1%':<22}")
    for name, row in sorted(summary["scores"].items(), key=lambda kv: -kv[1]["hit_percentile"][0]):
        f = lambda t: "not kept" if t is None else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"  # noqa
        auc = f(row["top_movers_auc"])
        if row.get("n_events_auc", row["n_events"]) < row["n_events"] and row["top_movers_auc"]:
            auc += f" ({row['n_events_auc']} of {row['n_events']} events)"
        print(f"{name:<12} {f(row['hit_percentile']):<24} {f(row['hit_in_top']):<22} {auc}")
    if summary.get("paired_differences"):
        print("hit percentile, paired by event (model minus indicator) [by-glass 95%]:")
        for name, t in summary["paired_differences"].items():
            print(f"  {name:<24} {t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]")


def main(argv=None):
    overrides = apply_overrides(globals(), argv)
    ggd.enable_compilation_cache(JAX_CACHE_DIR)
    t0 = time.perf_counter()
    try:
        glasses = glass_list()
        more_models()
        shear_protocol()
        directions = [d.strip() for d in DIRECTIONS.split(",")]
        for d in directions:
            aqs.parse_direction(d)
        for name, path in glasses:            # refuse a too-small box before any work
            snap = load_glass(path)
            aqs.check_sheared_minimum_image(float(snap["box_size"]),
                                        float(snap["parameters"]["r_cutoff"]), MAX_STRAIN, path)
    except (GlassFileError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if RESCORE.strip():
        try:
            summary = rescore(glasses)
        except GlassFileError as err:
            raise SystemExit(f"error: {err}")
        print(f"{RESCORE}: {len(summary['events'])} kept events scored again, nothing sheared")
        print_table(summary)
        print(f"wrote {os.path.join(OUT_DIR, 'rearrangements.json')}, hit_percentile_cdf.png "
              f"in {time.perf_counter() - t0:.1f}s")
        return summary
    sha = {g: file_sha256(p) for g, p in glasses}
    tasks = [(g, p, d) for g, p in glasses for d in directions
             if existing_result(result_path(g, d), sha[g]) is None]
    redo = sum(os.path.exists(result_path(g, d)) for g, _, d in tasks)
    if redo:
        print(f"note: {redo} result file(s) in {OUT_DIR}/events are of another glass file or "
              "protocol (or older than results that name their glass): sheared again",
              flush=True)
    print(f"{len(glasses)} glasses x {len(directions)} directions: "
          f"{len(glasses) * len(directions) - len(tasks)} done, {len(tasks)} to run with "
          f"{min(N_WORKERS, max(len(tasks), 1))} worker(s) -> {OUT_DIR}", flush=True)
    if tasks:
        run_tasks(tasks, overrides)
    summary, _ = summarise(glasses)
    print_table(summary)
    print(f"wrote {os.path.join(OUT_DIR, 'rearrangements.json')}, hit_percentile_cdf.png, "
          f"event.xyz in {time.perf_counter() - t0:.1f}s")
    return summary


if __name__ == "__main__":
    main()
