"""Benchmark of predict.py on a default glass (1000 atoms, Kob-Andersen, density 1.2).

The input is what a user brings: a glass quenched to T = 0 by Brownian dynamics but not yet
minimised (generate_glass_data.py's steps 1-4), written as extended XYZ. predict.py then runs FIRE
to the inherent structure, the local-Hessian features and the model, and writes its outputs. Timed
as a user runs it, a whole `python predict.py` process each time: once with an empty persistent
JAX compilation cache (cold) and REPEATS times with the cache it left (warm, median). A second
series adds TRUE_LABELS=True (the Hessian's lowest modes and R).

The model's weights do not change the time: MODEL (train.py's output) is used when it exists,
else an untrained model of the default architecture is written to a temporary file (said so).

    python benchmarks/bench_predict.py [--REPEATS=3] [--MODEL=hybrid_physics_best.pth]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402

REPEATS = 3                     # warm-cache runs per series (median quoted)
MODEL = "hybrid_physics_best.pth"   # train.py's output (relative to the repository root)
SEED = 0                        # seed of the default glass


def quenched_glass_xyz(path):
    """Steps 1-4 of generate_glass_data.py at its defaults: the not-yet-minimised glass."""
    import numpy as np
    from softglass import figures
    import generate_glass_data as ggd
    system = ggd.make_system(seed=SEED)
    r, _, _ = ggd.quenched_configuration(system, ggd.TEMPERATURE, ggd.QUENCH_STEPS, SEED,
                                         log=lambda *a: None)
    figures.write_extxyz(path, r, system["species"], system["box"] * np.eye(3), {},
                         "quenched to T = 0, not minimised", potential=system)


def untrained_model(path):
    import torch
    import train
    torch.manual_seed(0)
    model = train.build_model()
    scaling = dict(x_mean=torch.zeros(3), x_std=torch.ones(3), y_mean=torch.tensor(0.01),
                   y_std=torch.tensor(0.01))
    info = dict(n_atoms=1000, n_soft_modes=10, data_fingerprint="untrained (benchmark)")
    train.save_torch(path, train.model_file(model, scaling, -1, info,
                                            dict(commit=train.git_commit(), config={})))


def run(args, cache, out):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(_ROOT, "predict.py"), *args,
                    f"--OUTPUT_DIR={out}"], check=True, stdout=subprocess.DEVNULL,
                   cwd=cache)                   # the JAX cache (.jax_cache) lives in cwd
    wall = time.perf_counter() - t0
    summary = json.load(open(os.path.join(out, "quenched_softness.json")))
    return dict(wall=wall, fire_steps=summary["fire_steps"], max_force=summary["max_force"],
                **summary["seconds"])


def main():
    apply_overrides(globals())
    with tempfile.TemporaryDirectory() as tmp:
        xyz = os.path.join(tmp, "quenched.xyz")
        print("making the default glass, quenched but not minimised (about 30 s) ...", flush=True)
        quenched_glass_xyz(xyz)
        model = os.path.join(_ROOT, MODEL)
        if not os.path.exists(model):
            model = os.path.join(tmp, "untrained.pth")
            untrained_model(model)
            print(f"no {MODEL}: timing an untrained model of the default architecture")
        for label, extra in (("predict", []), ("predict + true labels", ["--TRUE_LABELS=True"])):
            cache = tempfile.mkdtemp(dir=tmp)
            args = [f"--INPUT={xyz}", f"--MODEL={model}", *extra]
            cold = run(args, cache, tmp)
            warm = [run(args, cache, tmp) for _ in range(REPEATS)]
            med = {k: statistics.median(w[k] for w in warm) for k in warm[0]}
            print(f"{label}: cold cache {cold['wall']:.1f} s; warm cache median "
                  f"{med['wall']:.1f} s over {REPEATS} (FIRE {med['fire']:.1f} s for "
                  f"{med['fire_steps']:.0f} steps to max|F| {med['max_force']:.1e}, features "
                  f"{med['features']:.1f} s, model {med['model']:.1f} s; the rest is start-up "
                  f"and writing)", flush=True)


if __name__ == "__main__":
    main()
