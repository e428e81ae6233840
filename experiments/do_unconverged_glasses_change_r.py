"""Do unconverged structures change R? FIRE stopped early or skipped (issue 6).

    python experiments/do_unconverged_glasses_change_r.py [--N_GLASSES=24] [--EARLY_FORCE_TOLS=0.1,0.001]
                                           [--EPOCHS=60] [--N_WORKERS=2]

Our glasses are inherent structures converged to max|F| < FORCE_TOL = 1e-10. A pipeline that
stops FIRE early, or skips it, labels another configuration: its Hessian has unstable modes and
its local 3x3 blocks differ. Is such a label easier or harder to predict?

For each of the first N_GLASSES base glasses of the data set (data/metadata.pkl) the protocol of
generate_glass_data.py is replayed from the glass's stored parameters and sub-seed up to the end
of the quench (T = 0, not minimised: "FIRE skipped"); FIRE then runs in stages to max|F| below
each of EARLY_FORCE_TOLS ("stopped early", every stage restarting FIRE from the last) and on to
FORCE_TOL, where the replay is checked against the stored inherent structure (restarting FIRE at
each stage resets its velocities, so a staged run can end in a neighbouring minimum: glasses 1
and 10 of the first 24 in our data set; a continuous FIRE from the same quench lands exactly on the
stored one, checked for glass 1. Glass 11 differs for another reason: it was stored before FIRE got
a mass for stiff glasses, which it now gets (1.9). Such a glass's "converged" stage is its replayed
minimum, reported). At every stage the Hessian is built and fully diagonalised (dense eigh); the
label is the seed's softness over the 10 softest modes other than the three translations, unstable
ones included (generate_glass_data.softness_of_any_configuration), and the features are that
configuration's local 3x3 Hessian eigenvalues. The stages are cached in DATA_DIR/unconverged/ (resumable).

Then, per stage, on one split of these glasses (N_TEST, N_VAL): the baselines of
train.baseline_scores and the default model trained EPOCHS passes over the training glasses
(what_drives_r.train_and_test: same budget for every stage). Also how far each stage's label is
from the converged one (pooled R). Results: stdout and DATA_DIR/unconverged.json.
"""
import io
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _ROOT)
sys.path.insert(0, _HERE)

from augment_data import base_files, read_metadata  # noqa: E402  (the glasses of a data set)
from softglass.cli import apply_overrides  # noqa: E402
from softglass.files import atomic_write_bytes, load_glass  # noqa: E402

DATA_DIR = os.path.join(_ROOT, "data")
CACHE_SUBDIR = "unconverged"
N_GLASSES = 24                  # the first base glasses (each replay: ~90 s of one core)
EARLY_FORCE_TOLS = "0.1,0.001"  # FIRE stopped at these max|F| (epsilon/sigma_AA), comma list
N_WORKERS = 2                   # processes, one glass each
N_TEST = 6                      # of N_GLASSES, for the per-stage model (train.py's split, smaller)
N_VAL = 3
SEED = 0                        # split and initialisation
TRAIN_MODEL = True
EPOCHS = 60                     # passes over the 15 training glasses, per stage (240 steps;
                                # 15 passes left the model still improving at the last one)
REPLAY_TOL = 1e-6               # sigma; the replayed inherent structure must match the stored one


# ================================ one glass, every stage (in a worker) ==========================
def stage_record(ggd, r, system, name, fire_steps):
    """Hessian, full spectrum, label and features of one configuration."""
    e, forces = ggd.energy_and_forces(r, system)
    h, local = ggd.hessian(r, system)
    vals, vecs = np.linalg.eigh(h.toarray())
    others = vals[ggd.vibrational_modes(vals, vecs)]               # ascending
    return dict(stage=name, positions=r, softness=ggd.softness_of_any_configuration(vals, vecs),
                features=ggd.local_hessian_eigenvalues(local),
                max_force=float(np.max(np.linalg.norm(forces, axis=1))),
                energy_per_atom=float(e / len(r)), fire_steps=int(fire_steps),
                n_unstable=int(np.sum(others < -ggd.ZERO_MODE_TOL)),
                lowest=others[:5])


def replay(task):
    """All stages of glass k, cached as an npz; returns the cache path."""
    k, path, cache, tols = task
    import generate_glass_data as ggd
    ggd.SHOW_PROGRESS = False
    ggd.enable_compilation_cache(ggd.JAX_CACHE_DIR)
    if os.path.exists(cache):
        return cache
    snap = load_glass(path)
    p = snap["parameters"]
    system = ggd.make_system(len(snap["positions"]), p["density"], p["species_ratio"],
                             np.asarray(p["sigma"]), np.asarray(p["epsilon"]), p["seed"])
    if not np.array_equal(system["species"], snap["species"]):
        raise RuntimeError(f"{path}: the replay draws other species; not the stored protocol")
    r, _, _ = ggd.quenched_configuration(system, p["temperature"], p["quench_steps"], p["seed"],
                                         log=lambda *a: None)
    r = np.mod(r, system["box"])
    stages, steps = [stage_record(ggd, r, system, "skipped", 0)], 0
    for tol in (*tols, ggd.FORCE_TOL):
        r, _, _, n, _ = ggd.inherent_structure(r, system, force_tol=tol)
        steps += n
        name = "converged" if tol == ggd.FORCE_TOL else f"max|F|<{tol:g}"
        stages.append(stage_record(ggd, r, system, name, steps))
    d = r - snap["positions"]
    d -= system["box"] * np.round(d / system["box"])
    replay_error = float(np.abs(d).max())
    buf = io.BytesIO()
    np.savez(buf, replay_error=replay_error, names=[s["stage"] for s in stages],
             **{f"{key}_{i}": s[key] for i, s in enumerate(stages) for key in s if key != "stage"})
    atomic_write_bytes(cache, buf.getvalue())
    return cache


def load_stages(cache):
    with np.load(cache) as f:
        names = [str(n) for n in f["names"]]
        stages = [{key[:-len(f"_{i}")]: f[key] for key in f.files if key.endswith(f"_{i}")}
                  for i in range(len(names))]
        return float(f["replay_error"]), dict(zip(names, stages))


# ================================ per stage: baselines and the model ============================
def pearson(a, b):
    return float(np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1])


def evaluate(stage, snaps, per_glass, split):
    import train
    import what_drives_r
    data = {}
    for k, snap in snaps.items():
        s = per_glass[k][stage]
        g = train.glass_graph(dict(snap, positions=s["positions"], eigenvalues=s["features"],
                                   softness_score=s["softness"]), train.CUTOFF)
        data[k] = [g]
    row = dict(baselines=train.baseline_scores(data, split[0], split[2]))
    if TRAIN_MODEL:
        row["model"] = what_drives_r.train_and_test(train, {k: d[0] for k, d in data.items()},
                                                    split, epochs=EPOCHS, seed=SEED)
    return row


def main():
    apply_overrides(globals(), sys.argv[1:])
    tols = tuple(float(t) for t in str(EARLY_FORCE_TOLS).split(",") if t)
    meta, _ = read_metadata(DATA_DIR)
    paths = [p for _, p in base_files(DATA_DIR, meta)][:N_GLASSES]
    if len(paths) < N_GLASSES:
        raise SystemExit(f"error: {len(paths)} glasses in {DATA_DIR}, N_GLASSES={N_GLASSES}; "
                         "run generate_diverse_data.py first")
    cache_dir = os.path.join(DATA_DIR, CACHE_SUBDIR)
    os.makedirs(cache_dir, exist_ok=True)
    tasks = [(k, p, os.path.join(cache_dir, os.path.basename(p).replace(".pkl", ".npz")), tols)
             for k, p in enumerate(paths)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(N_WORKERS) as pool:     # JAX is not fork-safe
        for done, cache in enumerate(pool.imap_unordered(replay, tasks), 1):
            print(f"  {done}/{len(tasks)} replayed: {os.path.basename(cache)} "
                  f"[{time.perf_counter() - t0:.0f}s]", flush=True)
    replay_seconds = time.perf_counter() - t0
    per_glass, replay_errors = {}, {}
    for k, _, cache, _ in tasks:
        replay_errors[k], per_glass[k] = load_stages(cache)
    worst = max(replay_errors.values())
    if worst > REPLAY_TOL:
        bad = [k for k, e in replay_errors.items() if e > REPLAY_TOL]
        print(f"warning: glasses {bad} replay to another inherent structure (max |dr| "
              f"{worst:.2e} sigma): their 'converged' stage is the replayed one")
    import train
    snaps = {k: load_glass(p, meta["n_atoms"]) for k, p in enumerate(paths)}
    split = train.split_bases(list(snaps), seed=SEED, n_test=N_TEST, n_val=N_VAL)
    stages = list(per_glass[0])
    rows = {}
    for stage in stages:
        st = [per_glass[k][stage] for k in snaps]
        t = time.perf_counter()
        row = dict(
            max_force_median=float(np.median([s["max_force"] for s in st])),
            fire_steps_median=float(np.median([s["fire_steps"] for s in st])),
            n_unstable_median=float(np.median([s["n_unstable"] for s in st])),
            energy_above_IS=float(np.mean([s["energy_per_atom"] -
                                           per_glass[k]["converged"]["energy_per_atom"]
                                           for k, s in zip(snaps, st)])),
            label_R_vs_converged=pearson([s["softness"] for s in st],
                                         [per_glass[k]["converged"]["softness"] for k in snaps]),
            **evaluate(stage, snaps, per_glass, split))
        row["seconds"] = time.perf_counter() - t
        rows[stage] = row
        m = row.get("model", {})
        print(f"{stage:12s} max|F| {row['max_force_median']:.1e}  unstable modes "
              f"{row['n_unstable_median']:.0f}  dE/N {row['energy_above_IS']:.4f}  label R vs IS "
              f"{row['label_R_vs_converged']:.3f}  lambda1 {row['baselines']['lambda1_R']:+.3f}  "
              f"lstsq {row['baselines']['least_squares_R']:.3f}  GBT+nb "
              f"{row['baselines']['gbt_neighbours_R']:.3f}" +
              (f"  model R {m['R']:.3f} (per glass {m['per_glass_R_mean']:.3f} +- "
               f"{m['per_glass_R_std']:.3f})" if m else ""), flush=True)
    out = dict(n_glasses=len(paths), early_force_tols=tols, replay_seconds=replay_seconds,
               replay_max_dr=worst, split=dict(zip(("train", "val", "test"), split)),
               epochs=EPOCHS, seed=SEED, rows=rows)
    atomic_write_bytes(os.path.join(DATA_DIR, "unconverged.json"),
                       json.dumps(out, indent=2).encode())


if __name__ == "__main__":
    main()
