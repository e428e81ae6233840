"""Benchmark of train.py on one process against torchrun with several: seconds per training
epoch (median over EPOCHS, the first, compiling, epoch left out) on the same data, split and
settings, and the loss trajectories they follow. Needs an augmented data set (make pipeline, or
augment_data.py on any set of glasses).

    python benchmarks/bench_ddp.py [--DATA_DIR=data] [--PROCESSES=2] [--EPOCHS=4]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402

DATA_DIR = "data"       # with augmented/ (its manifest) from augment_data.py
PROCESSES = 2           # torchrun processes, one thread each (torchrun's default)
THREADS = 2             # torch threads of the single process
EPOCHS = 4              # epochs per run; the first is left out of the median
N_TEST = 1              # base glasses held out (small sets: as many as possible to train on)
N_VAL = 1
N_ROTATIONS = 10        # copies per base used


def epoch_seconds(out_dir):
    with open(os.path.join(out_dir, "results.json")) as fh:
        results = json.load(fh)
    import torch
    history = torch.load(os.path.join(out_dir, "checkpoint.pth"), weights_only=True)["history"]
    return [h["seconds"] for h in history], [h["train_loss"] for h in history], results


def main():
    apply_overrides(globals())
    args = [f"--DATA_DIR={os.path.abspath(DATA_DIR)}", f"--EPOCHS={EPOCHS}", f"--N_TEST={N_TEST}",
            f"--N_VAL={N_VAL}", f"--N_ROTATIONS={N_ROTATIONS}", "--TIME_LIMIT_MIN=0"]
    train = os.path.join(_ROOT, "train.py")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in (
                ("1 process", [sys.executable, train, f"--NUM_THREADS={THREADS}"]),
                (f"{PROCESSES} processes", [sys.executable, "-m", "torch.distributed.run",
                                            "--standalone", f"--nproc_per_node={PROCESSES}",
                                            train])):
            out = os.path.join(tmp, name.replace(" ", "_"))
            subprocess.run(cmd + args + [f"--OUT_DIR={out}"], check=True, cwd=_ROOT)
            runs[name] = epoch_seconds(out)
    print(f"\n{'run':>12} {'s/epoch (median)':>17} {'graphs/s':>9}  train loss per epoch")
    for name, (seconds, losses, results) in runs.items():
        per_epoch = statistics.median(seconds[1:] or seconds)
        graphs = (results["data"]["n_bases"] - N_TEST - N_VAL) * N_ROTATIONS
        print(f"{name:>12} {per_epoch:17.2f} {graphs / per_epoch:9.2f}  "
              + " ".join(f"{x:.5f}" for x in losses))
    (a, _, _), (b, _, _) = runs.values()
    print(f"ratio (1 process / {PROCESSES} processes): "
          f"{statistics.median(a[1:] or a) / statistics.median(b[1:] or b):.2f}")


if __name__ == "__main__":
    main()
