"""Hybrid physics-transformer: predict per-atom softness from rotation-invariant features.

Seed README, "Architecture Details", "Hybrid Message Passing", "Training Details". Each atom
carries 5 features (species one-hot, the 3 local-Hessian eigenvalues); edges join every pair
closer than CUTOFF under periodic boundaries of the (rotated) cell. Five hybrid blocks combine a
physics branch (Bessel radial basis x cosine cutoff -> MLP filter, message x_j * w_ij) and a
4-head attention branch (logits q_i.k_j/sqrt(d) * fc(r_ij), softmax over neighbours), fused by a
learnable gate gamma.

Departures from the seed (see README.md):
- the best checkpoint is chosen on a validation split (N_VAL bases), not on the test set, which
  is touched once, at the end;
- the three eigenvalue features are standardized with training-set statistics (stored with the
  model); where the seed is silent inside a block we use the standard transformer choices:
  pre-LayerNorm residual sub-blocks, a multi-head output projection on the attention sum and a
  SiLU feed-forward of width FFN_MULT x hidden. At the defaults: 883,078 parameters (seed ~850K).
- on a CPU both edge sums of a block run in the fused kernels of softglass/message_kernels.py (the radial
  filter tabulated on FILTER_TABLE_POINTS distances); the reference PyG path is kept
  (FAST_KERNELS=False, CUDA, or no C compiler) and tested to compute the same;
- at most EPOCHS = 24 epochs (seed: 200), a fixed count rather than a wall-clock budget, so the
  same data, SEED and code give the same model bit for bit on one CPU with the same number of
  threads, whatever its load (the fused kernels sum in a fixed order: softglass/message_kernels.py);
  TIME_LIMIT_MIN is an optional time budget, recorded in results.json where it cuts the run.

    python train.py [--EPOCHS=24] [--DATA_DIR=data] [--OUT_DIR=.] [--SEED=0]
    torchrun --nproc_per_node=K train.py [...]      # K processes (DDP: gloo on CPU, nccl on CUDA)

Under torchrun each update's BATCH_SIZE x ACCUM_STEPS graphs are shared among the K processes
(ACCUM_STEPS / K micro-batches each) and their gradients averaged, so the run follows the
single-process trajectory (README: "Beyond one machine"); rank 0 alone writes files.
"""
import contextlib
import json
import os
import random
import resource
import time

import numpy as np

from softglass import figures
from softglass.cli import apply_overrides, constants_of, exit_on_help, or_constants
from softglass.files import (GlassFileError, atomic_write_bytes, check_writable, former_of,
                             read_wall_times)

# ================================ constants ====================================================
# --- data ---
DATA_DIR = "data"               # contains augmented/aug_*.pkl from augment_data.py
AUG_SUBDIR = "augmented"
OUT_DIR = "."                   # hybrid_physics_best.pth, training_curves.png, results.json
N_ROTATIONS = 10                # rotated copies per base used (<= what augment_data.py wrote); the
                                # atom count and the set of glasses are read from the data's manifest
ROTATION_SHORTCUT = False       # True: build one graph per base and let it stand for its
                                # N_ROTATIONS copies (same epoch length, batches and result: the
                                # model and its inputs are rotation invariant; see README)
N_TEST = 18                     # base glasses held out for the final test (seed: 18 of 120)
N_VAL = 12                      # base glasses for model selection and early stopping
SEED = 0                        # split, initialisation, batch order
LABEL_MODES = 0                 # softness label: 0 = the one stored in the glasses (the seed's S
                                # over generate_glass_data's N_SOFT_MODES = 10 modes); n > 0 = S_i
                                # over the n softest non-trivial modes of each base glass's Hessian,
                                # computed here once (~2 s per 1000-atom glass at n = 100) and cached
                                # in DATA_DIR/LABELS_SUBDIR. 100 modes are learnt better (R 0.78) and
                                # locate rearrangements better (README, validate_rearrangements.py)
LABEL = "softness"              # with LABEL_MODES = n > 0, the per-atom quantity over those n modes:
                                # "softness" (S_i above) or "vibrality" (sum_k |v_k(i)|^2 /
                                # lambda_k, the harmonic response: the best Hessian indicator of
                                # where a glass yields with S over 100 modes, README)
LABELS_SUBDIR = "labels"
CUTOFF = 2.5                    # sigma_AA, graph and radial-basis cutoff (absolute)

# --- architecture (seed "Hyperparameters") ---
HIDDEN_DIM = 128
NUM_LAYERS = 5
NUM_HEADS = 4
NUM_RBF = 32                    # Bessel functions sin(k pi r/rc)/(r/rc), k = 1..NUM_RBF
FFN_MULT = 2                    # feed-forward width / hidden (seed silent; gives ~850K parameters)

# --- training (seed "Hyperparameters") ---
BATCH_SIZE = 4                  # graphs per step
ACCUM_STEPS = 4                 # gradient accumulation: effective batch 16
LR = 5e-4
WEIGHT_DECAY = 1e-5
GRAD_CLIP = 1.0                 # max global gradient norm
LR_PATIENCE = 5                 # ReduceLROnPlateau on the validation loss
LR_FACTOR = 0.5
EPOCHS = 24                     # epochs at most (seed: 200). A count, not a clock: a run's
                                # length does not depend on the machine's speed or load (same
                                # data, SEED, code and thread count: the same model bit for bit).
                                # 24 is what the former default, a 43-minute wall-clock budget,
                                # held on the 2-core development CPU (runs/train_s100_grad: 24
                                # epochs, best 13; runs/pipeline_dense_r2: early stop at 26, best 5);
                                # --EPOCHS=200: the seed's schedule
EARLY_STOP_PATIENCE = 20        # epochs without a better validation loss before stopping
TIME_LIMIT_MIN = 0.0            # optional wall-clock budget of one run, minutes (0: none): no epoch
                                # is started that would end after it. Where it cuts the run, the
                                # model depends on the machine's speed and load, so results.json
                                # records it ("stopped_by": "time limit", "time_limit")
USE_AMP = True                  # float16 autocast + GradScaler on CUDA
CPU_BF16 = False                # bfloat16 autocast on CPU: measured 3x slower here, so off
USE_CHECKPOINT = True           # activation checkpointing of the hybrid blocks, reference path only
                                # (the fused path keeps no per-edge tensors, so it needs none)
FAST_KERNELS = True             # CPU: fused C kernels of softglass/message_kernels.py (falls back
                                # to the reference PyG path, with a warning, where they cannot be
                                # built)
FILTER_TABLE_POINTS = 4096      # fused path: w(r) tabulated on this many points, linear interpolation
FILTER_TABLE_RMIN = 0.5         # sigma_AA, table start (below any pair distance in a glass)
NUM_THREADS = 0                 # torch CPU threads (0: torch's default)
DEVICE = "auto"                 # "auto" (CUDA when present), "cpu" or "cuda"

BASELINES_ONLY = False          # compute the baselines on the split, write results.json, no training

CHECKPOINT_FILE = "checkpoint.pth"     # full training state, rewritten every epoch (resume)
BEST_FILE = "hybrid_physics_best.pth"  # best-validation weights + scaling, weights_only loadable

exit_on_help(globals())                # --help lists the constants above without importing torch

import torch                                        # noqa: E402
import torch.nn as nn                               # noqa: E402
import torch.nn.functional as F                     # noqa: E402
from torch_geometric.data import Batch              # noqa: E402

from softglass import message_kernels               # noqa: E402
from softglass.distributed import from_rank0, join_processes, micro_batches  # noqa: E402
from softglass.graphs import glass_graph, neighbour_features         # noqa: E402
from softglass.checkpoints import (model_file, restore_scaler, rng_states,  # noqa: E402
                                   save_torch, set_rng_states)
from softglass.model import HybridPhysicsTransformer, count_parameters  # noqa: E402


# ================================ the model ======================================================
def build_model(**given):
    """The hybrid physics-transformer (softglass.model) with this script's architecture constants
    (seed "Hyperparameters"); `given` overrides any (the tests' small models)."""
    arch = dict(hidden=HIDDEN_DIM, layers=NUM_LAYERS, heads=NUM_HEADS, num_rbf=NUM_RBF,
                cutoff=CUTOFF, ffn_mult=FFN_MULT, use_checkpoint=USE_CHECKPOINT,
                fast_kernels=FAST_KERNELS, filter_table_points=FILTER_TABLE_POINTS,
                filter_table_rmin=FILTER_TABLE_RMIN)
    return HybridPhysicsTransformer(**{**arch, **given})


# ================================ data ===========================================================
_LABELS = {"softness": "S", "vibrality": "V"}     # LABEL -> its cache files' letter


def label_over_modes(n_modes, bases, label="softness"):
    """The label (S_i, or vibrality V_i) over the n_modes softest non-trivial modes of each base
    glass {index: path}: the sparse Hessian of its inherent structure, its lowest modes (three
    zero modes checked) and softness_from_modes (vibrality_from_modes), generate_glass_data's
    path. As a check that a file is the glass its copies were made from, the stored label is
    recomputed from the same modes (to 1e-8). Returns {index: (stored label, new label)}, each
    glass file read at most once. Cached per glass in DATA_DIR/LABELS_SUBDIR, keyed by the glass
    file's content, n_modes and the label."""
    import generate_glass_data as ggd
    from softglass.files import (atomic_write_pickle, file_sha256, load_glass, safe_load_pickle,
                                 system_of)
    from tqdm import tqdm
    out = {}
    if label not in _LABELS:
        raise SystemExit(f"error: LABEL={label!r}: expected one of {tuple(_LABELS)}")
    for b, path in tqdm(sorted(bases.items()), desc=f"{label} over {n_modes} modes",
                        unit="glass", disable=os.environ.get("RANK", "0") != "0"):
        name = os.path.basename(path).replace(".pkl", "")
        cache = os.path.join(DATA_DIR, LABELS_SUBDIR, f"{name}_{_LABELS[label]}{n_modes}.pkl")
        made_from = dict(glass=file_sha256(path), n_modes=n_modes)
        if label != "softness":             # (softness caches from before LABEL stay valid)
            made_from["label"] = label
        stored = safe_load_pickle(cache) if os.path.exists(cache) else None
        if (isinstance(stored, dict) and stored.get("made_from") == made_from
                and "stored_label" in stored):         # (an older cache lacks it: recomputed)
            out[b] = stored["stored_label"], stored["softness"]
            continue
        snap = load_glass(path)
        n_stored = int(snap["parameters"].get("n_soft_modes") or ggd.N_SOFT_MODES)
        positions = np.asarray(snap["positions"], np.float64)
        h, _ = ggd.hessian(positions, system_of(snap))
        vals, vecs = ggd.lowest_modes(h, ggd.N_ZERO_MODES + max(n_modes, n_stored), positions,
                                      float(snap["box_size"]))
        ggd.check_modes(vals)
        stored_label = np.asarray(snap["softness_score"])
        deviation = np.abs(ggd.softness_from_modes(vecs, n_soft=n_stored) - stored_label).max()
        if deviation > 1e-8:
            raise SystemExit(f"error: {path}: its stored softness_score is not S over its "
                             f"{n_stored} softest modes (max deviation {deviation:.2e}); "
                             "regenerate it")
        out[b] = stored_label, (ggd.softness_from_modes(vecs, n_soft=n_modes)
                                if label == "softness" else
                                ggd.vibrality_from_modes(vals, vecs, n_modes=n_modes))
        atomic_write_pickle(cache, dict(stored_label=out[b][0], softness=out[b][1],
                                        made_from=made_from))
    return out


def load_dataset():
    """The glasses of augment_data.py's manifest (rotation < N_ROTATIONS of every base it lists)
    as graphs, grouped by base glass, and what the data says about itself: the atom count, the
    label (modes summed in S), the density range, and a fingerprint of the data per base glass
    (a checkpoint of other data is never resumed). Files not in the manifest are reported and
    left unused."""
    import glob
    import hashlib
    from augment_data import load_augmented, read_manifest
    from tqdm import tqdm
    aug_dir = os.path.join(DATA_DIR, AUG_SUBDIR)
    try:
        manifest = read_manifest(DATA_DIR)      # every listed copy there, with its sha256
    except GlassFileError as err:
        raise SystemExit(f"error: no augmented data set to train on: {err}")
    if N_ROTATIONS > manifest["n_rotations"]:
        raise SystemExit(f"error: N_ROTATIONS={N_ROTATIONS} but augment_data.py wrote "
                         f"{manifest['n_rotations']} rotations per glass in {aug_dir}")
    n_atoms = int(manifest["n_atoms"])
    used = {int(b): names[:N_ROTATIONS] for b, names in manifest["files"].items()}
    listed = {n for names in manifest["files"].values() for n in names}
    strays = sorted(set(map(os.path.basename, glob.glob(os.path.join(aug_dir, "aug_*.pkl"))))
                    - listed)
    if strays:
        print(f"note: {len(strays)} files in {aug_dir} are not in its manifest and are not used "
              f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''})")
    relabelled = {}
    if LABEL_MODES:
        from augment_data import base_files
        files = dict(base_files(DATA_DIR))
        missing = sorted(set(used) - set(files))
        if missing:
            raise SystemExit(f"error: LABEL_MODES={LABEL_MODES} needs the base glasses of "
                             f"{aug_dir}, but {DATA_DIR} lacks bases {missing[:5]}")
        relabelled = label_over_modes(LABEL_MODES, {b: files[b] for b in used}, LABEL)
    elif LABEL != "softness":
        raise SystemExit(f"error: LABEL={LABEL} needs LABEL_MODES > 0 (the modes it sums over)")
    by_base, content, labels, densities, formers = {}, {}, set(), [], set()
    for b, names in tqdm(sorted(used.items()), desc="graphs", unit="glass",
                         disable=os.environ.get("RANK", "0") != "0"):     # rank 0 under torchrun
        per_base = by_base.setdefault(b, [])
        base_hash = hashlib.sha256()
        for name in names:
            path = os.path.join(aug_dir, name)
            try:
                snap = load_augmented(path, n_atoms)
            except GlassFileError as err:
                raise SystemExit(f"error: {err}")
            if relabelled:      # a rotation keeps the atoms' order and every mode's weights
                base_label, new_label = relabelled[b]
                if not np.array_equal(snap["softness_score"], base_label):
                    raise SystemExit(f"error: {path} is not a rotated copy of base glass {b} "
                                     f"({files[b]}): their labels differ; rerun augment_data.py")
                snap["softness_score"] = new_label
            for key in ("positions", "species", "cell", "softness_score", "eigenvalues"):
                base_hash.update(np.ascontiguousarray(snap[key]).tobytes())
            labels.add(snap["parameters"].get("n_soft_modes"))
            formers.add(former_of(snap))
            densities.append(float(snap["parameters"]["density"]))
            if ROTATION_SHORTCUT and per_base:
                continue
            g = glass_graph(snap, CUTOFF)
            g.path = path                                 # to reload its atoms for the figures
            if per_base and torch.equal(g.edge_index, per_base[0].edge_index):
                g.edge_index = per_base[0].edge_index     # rotations share one edge list in memory
            per_base.append(g)
        content[str(b)] = base_hash.hexdigest()
    if len(formers) > 1:
        raise SystemExit(f"error: the glasses of {aug_dir} mix glass formers ({sorted(formers)}): "
                         "a model learns one (their features are in different units)")
    if len(labels) > 1:
        raise SystemExit(f"error: the glasses of {aug_dir} mix softness labels (n_soft_modes "
                         f"{sorted(labels, key=str)}); regenerate them with one N_SOFT_MODES")
    if ROTATION_SHORTCUT:         # the same graph object stands for every copy of its base
        by_base = {b: graphs * N_ROTATIONS for b, graphs in by_base.items()}
    # the fingerprint is of what the model sees (coordinates, cell, labels, features), not of
    # the files' bytes: a glass remade identically (other timings recorded) is the same data
    fingerprint = hashlib.sha256(json.dumps(sorted(content.items())).encode()).hexdigest()
    stored_modes = labels.pop()
    info = dict(n_atoms=n_atoms, n_soft_modes=LABEL_MODES or stored_modes, label=LABEL,
                former=formers.pop(),
                data_fingerprint=fingerprint,
                n_bases=len(by_base), n_rotations=N_ROTATIONS,
                density_range=[min(densities), max(densities)], glasses=content)
    return dict(sorted(by_base.items())), info


def split_bases(bases, seed=None, n_test=None, n_val=None):
    """Shuffle the base glasses with `seed`; all rotations of a base stay on one side.
    Arguments left None take the (possibly overridden) constants."""
    seed, n_test, n_val = or_constants(globals(), seed=seed, n_test=n_test, n_val=n_val)
    bases = sorted(bases)
    if len(bases) < n_test + n_val + 1:
        raise SystemExit(f"error: {len(bases)} base glasses cannot give N_TEST={n_test}, "
                         f"N_VAL={n_val} and a training set")
    order = np.random.default_rng(seed).permutation(bases).tolist()
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def fit_scaling(graphs):
    """Mean and std of the eigenvalue features and the target over the training atoms."""
    x = torch.cat([g.x[:, 2:] for g in graphs])
    y = torch.cat([g.y for g in graphs])
    return dict(x_mean=x.mean(0), x_std=x.std(0).clamp_min(1e-8), y_mean=y.mean(),
                y_std=y.std().clamp_min(1e-8))


def scaled(graphs, s):
    """Shallow copies of the graphs (edges shared, not copied) with standardized eigenvalues and
    target; a graph object repeated in `graphs` stays one object."""
    import copy
    done = {}
    for g in graphs:
        if id(g) not in done:
            c = copy.copy(g)
            c.x = torch.cat([g.x[:, :2], (g.x[:, 2:] - s["x_mean"]) / s["x_std"]], dim=1)
            c.y = (g.y - s["y_mean"]) / s["y_std"]
            done[id(g)] = c
    return [done[id(g)] for g in graphs]


# ================================ training =======================================================
def autocast_for(device):
    if device.type == "cuda" and USE_AMP:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and CPU_BF16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def train_epoch(model, graphs, generator, optimizer, scaler, device, rank=0, world=1):
    """One epoch: L1 loss on the standardized target; each update averages the gradient over
    BATCH_SIZE x ACCUM_STEPS graphs (shared among `world` processes, `model` then wrapped in
    DistributedDataParallel), clips it to GRAD_CLIP and steps. Returns the mean |error| per atom."""
    model.train()
    per_rank = ACCUM_STEPS // world
    total = torch.zeros(2, dtype=torch.float64)         # sum of |error| over atoms, atoms
    optimizer.zero_grad(set_to_none=True)
    for update in micro_batches(len(graphs), generator, rank, world, BATCH_SIZE, ACCUM_STEPS):
        for k, (idx, weight) in enumerate(update):
            batch = Batch.from_data_list([graphs[i] for i in idx]).to(device)
            # DDP averages gradients across processes at the update's last backward only
            sync = world == 1 or k + 1 == len(update)
            with contextlib.nullcontext() if sync else model.no_sync():
                with autocast_for(device):
                    pred = model(batch.x, batch.edge_index, batch.edge_dist)
                loss = F.l1_loss(pred.float(), batch.y)
                scaler.scale(loss * weight / per_rank).backward()
            if weight:
                total += torch.tensor([loss.item() * batch.y.numel(), batch.y.numel()],
                                      dtype=torch.float64)
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    if world > 1:                    # on the device: nccl reduces CUDA tensors only
        on_device = total.to(device)
        torch.distributed.all_reduce(on_device)
        total = on_device.cpu()
    return float(total[0] / max(float(total[1]), 1.0))


@torch.no_grad()
def predict(model, graphs, device):
    """Standardized predictions and targets per graph."""
    model.eval()
    out = []
    for g in graphs:
        g = g.to(device)
        with autocast_for(device):
            pred = model(g.x, g.edge_index, g.edge_dist)
        out.append((pred.float().cpu(), g.y.cpu()))
    return out


def predict_shared(model, graphs, device, rank=0, world=1):
    """predict() of every graph, the graphs dealt among the `world` processes and the results
    gathered, in order, on every process (which then all take the same decisions from them)."""
    if world == 1:
        return predict(model, graphs, device)
    parts = [None] * world
    torch.distributed.all_gather_object(parts, predict(model, graphs[rank::world], device))
    out = [None] * len(graphs)
    for r, part in enumerate(parts):
        out[r::world] = part
    return out


def pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def metrics(pairs, s):
    """Pooled R, R^2 (coefficient of determination), MAE (softness units), per-glass R."""
    pred = torch.cat([p for p, _ in pairs]) * s["y_std"] + s["y_mean"]
    true = torch.cat([t for _, t in pairs]) * s["y_std"] + s["y_mean"]
    per_glass = [pearson(p, t) for p, t in pairs]
    r = pearson(pred, true)
    return dict(R=r, R_squared=r * r,
                R2=float(1 - ((pred - true) ** 2).sum() / ((true - true.mean()) ** 2).sum()),
                MAE=float((pred - true).abs().mean()),
                MAE_standardized=float(torch.cat([(p - t).abs() for p, t in pairs]).mean()),
                per_glass_R_mean=float(np.mean(per_glass)),
                per_glass_R_std=float(np.std(per_glass)))


def per_glass_first_copy(graphs, pairs):
    """Test R of each base glass on its first rotated copy, with the copy's file: what
    predict.py on that file must reproduce."""
    out = {}
    for g, (p, t) in zip(graphs, pairs):
        out.setdefault(str(g.base), dict(file=os.path.basename(g.path), R=pearson(p, t)))
    return out


# ================================ baselines ======================================================
def fit_gbt(x, y):
    """Gradient-boosted trees on neighbour_features rows x, fitted to the labels y (the baseline
    of baseline_scores; validate_rearrangements.py scores it as an indicator too)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    gbt = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=SEED)
    return gbt.fit(x, y)


def baseline_scores(data, train_b, test_b):
    """Test R of simple predictors on the same split, one copy per base (features and labels
    are rotation invariant, so the other copies repeat it): lambda_1 alone (signed R: a soft cage
    means a soft atom, so expect it negative), least squares on the 5 features, and gradient-
    boosted trees on the 5 features plus their neighbour averages. The model must beat these."""
    tr = [data[b][0] for b in train_b]
    te = [data[b][0] for b in test_b]
    y_tr = torch.cat([g.y for g in tr]).numpy()
    y_te = torch.cat([g.y for g in te]).numpy()
    x_tr = np.concatenate([neighbour_features(g) for g in tr])
    x_te = np.concatenate([neighbour_features(g) for g in te])
    r = lambda pred: float(np.corrcoef(pred, y_te)[0, 1])  # noqa: E731
    ones = lambda x: np.concatenate([x[:, :5], np.ones((len(x), 1))], axis=1)  # noqa: E731
    coef, *_ = np.linalg.lstsq(ones(x_tr), y_tr, rcond=None)
    gbt = fit_gbt(x_tr, y_tr)
    return dict(lambda1_R=r(x_te[:, 2]), least_squares_R=r(ones(x_te) @ coef),
                gbt_neighbours_R=r(gbt.predict(x_te)))


def test_figures(test_set, pairs, s):
    """Hexbin of predicted vs true softness over the test atoms (one copy per base), and the
    test glass with the median per-glass R as a slice figure and as extended XYZ."""
    from augment_data import load_augmented
    first = {}
    for k, g in enumerate(test_set):
        first.setdefault(g.base, k)
    unit = lambda t: (t * s["y_std"] + s["y_mean"]).numpy()  # noqa: E731
    pred = np.concatenate([unit(pairs[k][0]) for k in first.values()])
    true = np.concatenate([unit(pairs[k][1]) for k in first.values()])
    figures.plot_hexbin(pred, true, float(np.corrcoef(pred, true)[0, 1]),
                        os.path.join(OUT_DIR, "test_predicted_vs_true.png"))
    per_glass = sorted((pearson(*pairs[k]), k) for k in first.values())
    r, k = per_glass[len(per_glass) // 2]
    g = test_set[k]
    snap = load_augmented(g.path)
    title = f"test glass {g.base} ({os.path.basename(g.path)}): median per-glass R = {r:.3f}"
    figures.plot_slice(snap, unit(pairs[k][0]), unit(pairs[k][1]),
                       os.path.join(OUT_DIR, "test_glass_slice.png"), title)
    figures.write_extxyz(os.path.join(OUT_DIR, "test_glass.xyz"), snap["positions"],
                         snap["species"], snap["cell"],
                         dict(softness_true=unit(pairs[k][1]), softness_pred=unit(pairs[k][0])),
                         title, potential=snap["parameters"])


def time_left_for_epoch(t_start, history, test_per_val):
    """Whether one more epoch (median of the last five) and the final test evaluation (the last
    validation pass scaled by test_per_val) end before TIME_LIMIT_MIN after t_start."""
    if not TIME_LIMIT_MIN:
        return True
    epoch_s = np.median([h["seconds"] for h in history[-5:]])
    final_s = history[-1].get("val_seconds", 0.0) * test_per_val + 15.0   # + plots and saving
    return time.perf_counter() - t_start + epoch_s + final_s <= TIME_LIMIT_MIN * 60


def config():
    """The settings a checkpoint must share to be resumed (not: how long, how fast or where)."""
    return {k: v for k, v in constants_of(globals()).items()
            if k not in ("EPOCHS", "OUT_DIR", "DATA_DIR", "NUM_THREADS", "TIME_LIMIT_MIN",
                         "FAST_KERNELS", "DEVICE", "BASELINES_ONLY", "LABELS_SUBDIR")}


def config_mismatch(saved, current):
    """Names of the settings that differ between a checkpoint and this run."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def git_commit():
    """The commit of this code (with '+dirty' when it has uncommitted changes), or 'unknown'."""
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True, text=True,  # noqa
                                        timeout=10)
        head = run("rev-parse", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ================================ the trained model file =========================================
def load_trained_model(path, device=None, fast_kernels=None):
    """Rebuild a model written by train.py (BEST_FILE) with its architecture, and return it in
    eval mode with its feature/target scaling and its record. Loads with weights_only=True: the
    file holds tensors and builtins only, so reading it cannot run code."""
    device = device or torch.device("cpu")
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: model file not found (train.py writes it to "
                             f"OUT_DIR/{BEST_FILE})")
    try:
        best = torch.load(path, map_location=device, weights_only=True)
        arch = best["architecture"]
    except Exception as err:    # truncated, not ours, or written before it carried its architecture
        first_line = (str(err).strip().splitlines() or [""])[0][:160]
        raise GlassFileError(f"{path}: not a model file of this train.py ({type(err).__name__}: "
                             f"{first_line}); use the hybrid_physics_best.pth that train.py "
                             "writes") from None
    try:        # weights that do not fit the architecture the file records (edited, other code)
        model = HybridPhysicsTransformer(**arch, use_checkpoint=False, fast_kernels=(
            FAST_KERNELS if fast_kernels is None else fast_kernels))
        model.load_state_dict(best["state_dict"])
        scaling = {k: best[k] for k in ("x_mean", "x_std", "y_mean", "y_std")}
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise GlassFileError(f"{path}: its weights do not match the architecture it records "
                             f"({type(err).__name__}: {first}); use a hybrid_physics_best.pth "
                             "written by this train.py") from None
    return model.to(device).eval(), scaling, best


def choose_device(device=None):
    """torch.device of DEVICE (or `device`): auto, cpu or cuda, the last refused without a GPU."""
    device, = or_constants(globals(), device=device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"error: DEVICE={device!r}: expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: DEVICE=cuda but torch sees no CUDA device (is the CUDA build of "
                         "torch installed? README: GPU users)")
    return torch.device(device)


def describe_compute_path(device):
    """Say at start, before any epoch, which path the model runs: the fused CPU kernels are
    ~30x faster than the reference path (README: Training speed), so losing them is loud."""
    if device.type != "cpu" or not FAST_KERNELS:
        return "reference PyG path" + (f" on {device}" if device.type != "cpu" else "")
    if message_kernels.available():
        return "fused CPU kernels (softglass/message_kernels.py)"
    import warnings
    warnings.warn(f"fused CPU kernels unavailable ({message_kernels.build_error()}): training "
                  "runs the reference PyG path, ~30x slower (README: macOS)", stacklevel=2)
    return "reference PyG path (fused kernels unavailable)"


def checkpoint_to_resume(ckpt_path, info):
    """The checkpoint of an earlier run of this configuration on these data, or None (fresh
    start). One of other data or other settings is refused, naming what differs, before any
    time is spent on baselines or training."""
    if not os.path.exists(ckpt_path):
        return None
    fresh = (f"to start fresh, remove {ckpt_path} (and {BEST_FILE} beside it) or use another "
             "--OUT_DIR")
    try:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SystemExit(f"error: {ckpt_path}: cannot resume from it ({type(err).__name__}: "
                         f"{str(err)[:200]}); {fresh}")
    if ck.get("data_fingerprint") != info["data_fingerprint"]:
        old, new = ck.get("data_glasses", {}), info["glasses"]
        changed = sorted((set(old) ^ set(new)) | {b for b in set(old) & set(new)
                                                   if old[b] != new[b]}, key=int)
        which = (f"base glasses {', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''} "
                 "differ" if old else "the glasses changed")
        raise SystemExit(f"error: {ckpt_path} was written for other data ({which} in "
                         f"{DATA_DIR}); {fresh}")
    current = config()
    differ = config_mismatch(ck["config"], current)
    if differ:
        changes = ", ".join(f"{k} {ck['config'].get(k)!r} -> {current.get(k)!r}" for k in differ)
        raise SystemExit(f"error: {ckpt_path} was written with other settings ({changes}); "
                         f"{fresh}")
    return ck


def resume(ck, model, optimizer, scheduler, scaler):
    """Restore a run's training state (checkpoint_to_resume's), or a fresh start for None."""
    if ck is None:
        return 0, float("inf"), 0, [], 0.0
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])       # moves the state to the parameters' device
    scheduler.load_state_dict(ck["scheduler"])
    restore_scaler(scaler, ck["scaler"])
    set_rng_states(ck["rng"])
    print(f"resuming from its checkpoint at epoch {ck['epoch'] + 1}")
    return ck["epoch"] + 1, ck["best_val"], ck["since_best"], ck["history"], ck["seconds"]


# the settings that count something and so must be at least 1, and what each counts
_AT_LEAST_ONE = dict(N_TEST="base glasses held out for the test",
                     N_VAL="base glasses the best epoch is chosen on",
                     N_ROTATIONS="rotated copies used per base glass",
                     BATCH_SIZE="graphs per micro-batch", ACCUM_STEPS="micro-batches per update",
                     EPOCHS="epochs at most")


def check_settings():
    """Refuse, before anything is read or computed, settings no run can use, naming the constant
    and what it allows (an empty validation or test set, or an empty batch, would otherwise end
    in a traceback after the data are loaded and the baselines fitted)."""
    for name, what in _AT_LEAST_ONE.items():
        value = globals()[name]
        if value < 1:
            raise SystemExit(f"error: {name}={value}: must be an integer >= 1 ({what})")
    for name in ("TIME_LIMIT_MIN", "NUM_THREADS"):
        if globals()[name] < 0:
            raise SystemExit(f"error: {name}={globals()[name]}: must be >= 0 (0: "
                             f"{'no time limit' if name == 'TIME_LIMIT_MIN' else 'torch default'})")


def main(argv=None):
    apply_overrides(globals(), argv)
    t_start = time.perf_counter()
    check_settings()
    check_writable(OUT_DIR, "OUT_DIR")
    if LABEL_MODES and os.path.isdir(DATA_DIR):      # the label cache is written there
        check_writable(os.path.join(DATA_DIR, LABELS_SUBDIR), "DATA_DIR")
    if NUM_THREADS:
        torch.set_num_threads(NUM_THREADS)
    rank, world, device = join_processes(choose_device(), BATCH_SIZE, ACCUM_STEPS)
    try:
        train_and_test(device, rank, world, t_start)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def train_and_test(device, rank, world, t_start):
    """The run: data, split, baselines, training with checkpoints, the test (rank 0 writes)."""
    compute_path = describe_compute_path(device)          # warns now, not after an epoch
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)

    data, info = load_dataset()
    train_b, val_b, test_b = split_bases(list(data))
    train_graphs = [g for b in train_b for g in data[b]]
    s = fit_scaling(train_graphs)
    train_set = scaled(train_graphs, s)
    # evaluation: with the shortcut the copies are one object, so evaluate it once (pooled and
    # per-glass R, MAE are unchanged by repeating identical predictions)
    copies = (lambda b: data[b][:1]) if ROTATION_SHORTCUT else (lambda b: data[b])  # noqa: E731
    val_set = scaled([g for b in val_b for g in copies(b)], s)
    test_set = scaled([g for b in test_b for g in copies(b)], s)
    print(f"{len(data)} base glasses of {info['n_atoms']} atoms (label: {info['label']} over "
          f"{info['n_soft_modes']} modes): {len(train_b)} train / {len(val_b)} val / "
          f"{len(test_b)} test ({len(train_set)} / {len(val_set)} / {len(test_set)} graphs); "
          f"device {device}" + (f", {world} processes (torchrun)" if world > 1 else ""))
    ckpt_path = os.path.join(OUT_DIR, CHECKPOINT_FILE)
    best_path = os.path.join(OUT_DIR, BEST_FILE)
    ck = checkpoint_to_resume(ckpt_path, info)            # refuses other data/settings now
    split = dict(train=train_b, val=val_b, test=test_b)
    record = dict(config=constants_of(globals()), commit=git_commit(), split=split,
                  data={k: v for k, v in info.items() if k != "glasses"})

    t_base = time.perf_counter()
    # every process computes them (the same numbers: deterministic), none waits at a collective
    # while rank 0 fits the trees (a long wait would outlast the process group's timeout)
    baselines = baseline_scores(data, train_b, test_b)
    if rank == 0:
        print("baselines (test R): " + ", ".join(f"{k} {v:.4f}" for k, v in baselines.items())
              + f"  [{time.perf_counter() - t_base:.1f}s]")
    if BASELINES_ONLY:
        if rank:
            return
        os.makedirs(OUT_DIR, exist_ok=True)
        atomic_write_bytes(os.path.join(OUT_DIR, "results.json"), json.dumps(
            dict(baselines=baselines, seed=SEED, **record), indent=2).encode())
        return

    model = build_model().to(device)
    n_params = count_parameters(model)
    print(f"model: {n_params:,} parameters; {compute_path}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min",
                                                           factor=LR_FACTOR, patience=LR_PATIENCE)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and USE_AMP)
    os.makedirs(OUT_DIR, exist_ok=True)
    start, best_val, since_best, history, seconds_before = resume(ck, model, optimizer,
                                                                  scheduler, scaler)
    # one process: the model itself; under torchrun: DDP, which averages gradients across ranks
    learner = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)

    generator = torch.Generator().manual_seed(SEED)
    t0 = time.perf_counter()
    stopped_by = "EPOCHS"
    for epoch in range(start, EPOCHS):
        if since_best >= EARLY_STOP_PATIENCE:
            print(f"early stop: no better validation loss for {EARLY_STOP_PATIENCE} epochs")
            stopped_by = "early stop"
            break
        if history and epoch > start and not from_rank0(     # rank 0's clock decides for all
                time_left_for_epoch(t_start, history, len(test_set) / len(val_set)), world):
            print(f"time limit: another epoch would end after TIME_LIMIT_MIN={TIME_LIMIT_MIN} "
                  f"min; this run's length, and so its model, depends on the machine's speed "
                  f"and load (--TIME_LIMIT_MIN=0: EPOCHS={EPOCHS} epochs at most, reproducible)")
            stopped_by = "time limit"
            break
        te = time.perf_counter()
        generator.manual_seed(SEED * 100003 + epoch)     # batch order depends on (SEED, epoch)
        train_loss = train_epoch(learner, train_set, generator, optimizer, scaler, device,
                                 rank, world)
        tv = time.perf_counter()
        val = predict_shared(model, val_set, device, rank, world)
        val_loss = float(torch.cat([(p - t).abs() for p, t in val]).mean())
        val_r = pearson(torch.cat([p for p, _ in val]), torch.cat([t for _, t in val]))
        scheduler.step(val_loss)
        if val_loss < best_val:
            best_val, since_best = val_loss, 0
            # everything predict.py needs to rebuild and apply the model, weights_only loadable
            if rank == 0:
                save_torch(best_path, model_file(model, s, epoch, info, record))
        else:
            since_best += 1
        history.append(dict(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_R=val_r,
                            lr=optimizer.param_groups[0]["lr"],
                            seconds=time.perf_counter() - te, val_seconds=time.perf_counter() - tv))
        seconds = seconds_before + time.perf_counter() - t0
        if rank == 0:       # the other processes hold the same state (DDP keeps them equal)
            save_torch(ckpt_path, dict(
                model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), rng=rng_states(),
                epoch=epoch, best_val=best_val, since_best=since_best, history=history,
                seconds=seconds, config=config(), data_fingerprint=info["data_fingerprint"],
                data_glasses=info["glasses"]))
        left = np.median([h["seconds"] for h in history[-5:]]) * (EPOCHS - epoch - 1)
        if TIME_LIMIT_MIN:
            left = min(left, TIME_LIMIT_MIN * 60 - (time.perf_counter() - t_start))
        print(f"epoch {epoch:3d}  train {train_loss:.4f}  val {val_loss:.4f}  val R {val_r:.4f}  "
              f"lr {history[-1]['lr']:.1e}  {history[-1]['seconds']:.1f}s  "
              f"(<= {max(left, 0) / 60:.1f} min left)", flush=True)
    if rank:                   # the test, figures and results are rank 0's
        return
    figures.plot_curves(history, os.path.join(OUT_DIR, "training_curves.png"))

    best = torch.load(best_path, map_location=device, weights_only=True)
    if best.get("data_fingerprint") != info["data_fingerprint"]:
        raise SystemExit(f"error: {best_path} was written for other data; remove it and "
                         f"{ckpt_path} to train afresh")
    model.load_state_dict(best["state_dict"])
    test_pairs = predict(model, test_set, device)               # the test set, touched once
    test = metrics(test_pairs, s)
    test_figures(test_set, test_pairs, s)
    results = dict(test_R=test["R"], test_R2=test["R2"], test_R_squared=test["R_squared"],
                   test_MAE=test["MAE"], test_MAE_standardized=test["MAE_standardized"],
                   per_glass_R=dict(mean=test["per_glass_R_mean"], std=test["per_glass_R_std"]),
                   test_R_by_glass=per_glass_first_copy(test_set, test_pairs),
                   best_epoch=int(best["epoch"]), epochs=len(history), stopped_by=stopped_by,
                   # a cut by the clock: the model is not what these settings give elsewhere
                   **(dict(time_limit=dict(TIME_LIMIT_MIN=TIME_LIMIT_MIN, EPOCHS=EPOCHS,
                                           epochs_run=len(history)))
                      if stopped_by == "time limit" else {}),
                   n_params=n_params, fused_kernels=model.uses_fused_path(device),
                   seconds=seconds_before + time.perf_counter() - t0,
                   wall_seconds_this_run=time.perf_counter() - t_start,
                   peak_memory_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   script_seconds=read_wall_times(DATA_DIR), device=str(device),
                   # torch's CPU sums split by thread: the bits depend on the thread count
                   processes=world, threads=torch.get_num_threads(),
                   seed=SEED, baselines=baselines, **record)
    atomic_write_bytes(os.path.join(OUT_DIR, "results.json"),
                       json.dumps(results, indent=2).encode())
    # the model file describes itself: how it tested and against which baselines (models/ ships
    # such files, and predict.py says what it applies)
    card = torch.load(best_path, map_location="cpu", weights_only=True)
    card["test"] = dict(R=test["R"], per_glass_R_mean=test["per_glass_R_mean"],
                        per_glass_R_std=test["per_glass_R_std"], n_glasses=len(test_b),
                        baselines=baselines, threads=torch.get_num_threads())
    save_torch(best_path, card)
    print(f"test R = {test['R']:.4f}  R^2 = {test['R2']:.4f}  MAE = {test['MAE']:.4f}  "
          f"per-glass R = {test['per_glass_R_mean']:.4f} +- {test['per_glass_R_std']:.4f}")


if __name__ == "__main__":
    main()
