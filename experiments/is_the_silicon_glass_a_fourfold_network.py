"""Is our Stillinger-Weber glass amorphous silicon: a fourfold network with tetrahedral angles?

For each glass of GLASSES (generate_glass_data.py --POTENTIAL=sw snapshots), the coordination
numbers within BOND_CUTOFF (the first minimum of g(r)) and every bond angle (softglass.structure),
pooled over the glasses: the share of atoms with 3, 4, 5 bonds, the angles' mean and spread, and a
figure of both distributions (coordination bars, angle histogram with the tetrahedral 109.47
degrees marked). Writes OUT_DIR/network.json and OUT_DIR/network.png.

    python experiments/is_the_silicon_glass_a_fourfold_network.py
        [--GLASSES=data/transfer/sw/*.pkl] [--OUT_DIR=runs/asi_network]
"""
import glob
import json
import os
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides                  # noqa: E402
from softglass.files import atomic_write_bytes, load_glass  # noqa: E402

GLASSES = "data/transfer/sw/*.pkl"   # glob of a-Si snapshots (the transfer experiment's glasses)
BOND_CUTOFF = 2.8               # A; generate_glass_data's SW_BOND_CUTOFF
OUT_DIR = "runs/asi_network"    # network.json and network.png go here
TETRAHEDRAL = np.degrees(np.arccos(-1 / 3))   # 109.47 degrees


def main(argv=None):
    apply_overrides(globals(), argv)
    from softglass import structure
    paths = sorted(glob.glob(os.path.join(_ROOT, GLASSES)))
    if not paths:
        raise SystemExit(f"error: no glass matches {GLASSES} (make them with "
                         "experiments/does_a_kob_andersen_model_transfer.py --FORMERS=sw)")
    z, angles, per_glass = [], [], []
    for path in paths:
        snap = load_glass(path)
        if snap["parameters"].get("potential", {}).get("name") != "sw":
            raise SystemExit(f"error: {path} is not a Stillinger-Weber glass")
        r, box = snap["positions"], snap["box_size"]
        z.append(structure.coordination(r, box, BOND_CUTOFF))
        angles.append(structure.bond_angles(r, box, BOND_CUTOFF))
        per_glass.append(dict(file=os.path.relpath(path, _ROOT),
                              **structure.network_summary(r, box, BOND_CUTOFF)))
    z, angles = np.concatenate(z), np.concatenate(angles)
    counts = np.bincount(z, minlength=7)
    result = dict(n_glasses=len(paths), n_atoms=int(len(z)), bond_cutoff=BOND_CUTOFF,
                  coordination_share={int(k): float(c / len(z)) for k, c in enumerate(counts)
                                      if c},
                  mean_coordination=float(z.mean()), bond_angle_mean=float(angles.mean()),
                  bond_angle_std=float(angles.std()), per_glass=per_glass)
    out = os.path.join(_ROOT, OUT_DIR)
    os.makedirs(out, exist_ok=True)
    atomic_write_bytes(os.path.join(out, "network.json"), json.dumps(result, indent=2).encode())
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    shown = np.arange(2, 7)
    left.bar(shown, counts[shown] / len(z))
    left.set(xlabel=f"bonds per atom (r < {BOND_CUTOFF} A)", ylabel="share of atoms",
             title=f"coordination, mean {z.mean():.3f}")
    right.hist(angles, bins=90, range=(40, 180), density=True)
    right.axvline(TETRAHEDRAL, color="k", ls="--", lw=1, label="tetrahedral 109.47")
    right.set(xlabel="bond angle (degrees)", ylabel="density",
              title=f"{angles.mean():.1f} +- {angles.std():.1f} degrees")
    right.legend(frameon=False)
    fig.suptitle(f"a-Si, Stillinger-Weber (Vink 2001): {len(paths)} glasses, {len(z)} atoms")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "network.png"), dpi=110)
    print(json.dumps({k: v for k, v in result.items() if k != "per_glass"}, indent=1))


if __name__ == "__main__":
    main()
