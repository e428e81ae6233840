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

Below the constants, the steps in order; the machinery is in softglass (docs/architecture.md):
dataset (the label, the manifest's checks, split, scaling), baselines, training (an epoch,
predictions, metrics), checkpoints (resume, model files), figures.
"""
import json
import os
import random
import resource
import time

import numpy as np

from softglass import figures
from softglass.cli import apply_overrides, constants_of, exit_on_help, or_constants
from softglass.files import GlassFileError, atomic_write_bytes, check_writable, read_wall_times

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
FORMER_CUTOFF = 0.0             # A; the same for another former's glasses (metal units, read from
                                # the data); 0: CUTOFF (1.2 / rho)^(1/3), rho the data's mean
                                # number density in A^-3: as many neighbours per atom as a
                                # Kob-Andersen graph at rho = 1.2 (Cu64Zr36 ~6.7 A, a-Si ~7.4 A)

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

from softglass import baselines, checkpoints, dataset, training  # noqa: E402
from softglass import message_kernels               # noqa: E402, F401  (train.message_kernels)
from softglass.checkpoints import (model_file, restore_scaler, rng_states,  # noqa: E402, F401
                                   save_torch, set_rng_states)
from softglass.dataset import fit_scaling, scaled   # noqa: E402
from softglass.distributed import join_processes, micro_batches  # noqa: E402, F401
from softglass.graphs import glass_graph, neighbour_features  # noqa: E402, F401
from softglass.model import HybridPhysicsTransformer, count_parameters  # noqa: E402
from softglass.training import metrics, pearson  # noqa: E402, F401


# ================================ the model ======================================================
def build_model(**given):
    """The hybrid physics-transformer (softglass.model) with this script's architecture constants
    (seed "Hyperparameters"); `given` overrides any (the tests' small models)."""
    arch = dict(hidden=HIDDEN_DIM, layers=NUM_LAYERS, heads=NUM_HEADS, num_rbf=NUM_RBF,
                cutoff=CUTOFF, ffn_mult=FFN_MULT, use_checkpoint=USE_CHECKPOINT,
                fast_kernels=FAST_KERNELS, filter_table_points=FILTER_TABLE_POINTS,
                filter_table_rmin=FILTER_TABLE_RMIN)
    return HybridPhysicsTransformer(**{**arch, **given})


# ================================ 1. the data and the label ======================================
def load_dataset():
    """The glasses of augment_data.py's manifest (rotation < N_ROTATIONS of every base it lists)
    as graphs, grouped by base glass, labelled (LABEL over LABEL_MODES modes, or the stored S),
    and what the data say about themselves (softglass.dataset.graphs_by_base)."""
    import augment_data
    try:
        manifest = augment_data.read_manifest(DATA_DIR)    # every listed copy, with its sha256
    except GlassFileError as err:
        raise SystemExit(f"error: no augmented data set to train on: {err}")
    settings = dataset.DataSettings(
        data_dir=DATA_DIR, aug_subdir=AUG_SUBDIR, labels_subdir=LABELS_SUBDIR,
        n_rotations=N_ROTATIONS, rotation_shortcut=ROTATION_SHORTCUT, label_modes=LABEL_MODES,
        label=LABEL, cutoff=graph_cutoff())
    used = dataset.copies_used(manifest, settings)
    base_files = dict(augment_data.base_files(DATA_DIR)) if LABEL_MODES else None
    bases = dataset.bases_to_relabel(used, base_files, settings)     # {}: the stored label
    relabelled = label_over_modes(LABEL_MODES, bases, LABEL) if bases else {}
    data, info = dataset.graphs_by_base(used, int(manifest["n_atoms"]), relabelled, base_files,
                                        augment_data.load_augmented, settings)
    return data, dict(info, cutoff=settings.cutoff)


def graph_cutoff():
    """The graph's cutoff in the data's length unit: CUTOFF for Kob-Andersen glasses (sigma_AA),
    FORMER_CUTOFF (A) for another former's, or by default CUTOFF scaled by the mean spacing,
    CUTOFF (1.2 / rho)^(1/3): the former and the densities are read from the set's metadata."""
    import augment_data
    from softglass.files import former_of
    records = augment_data.read_metadata(DATA_DIR)[0]["records"]
    if former_of(dict(parameters=records[0]["parameters"])) == "ka":
        return CUTOFF
    if FORMER_CUTOFF > 0:
        return FORMER_CUTOFF
    density = np.mean([r["parameters"]["density"] for r in records])
    return float(CUTOFF * (1.2 / density) ** (1 / 3))


def label_over_modes(n_modes, bases, label="softness"):
    """LABEL over the n_modes softest modes of each base glass {index: path}, cached in
    DATA_DIR/LABELS_SUBDIR: {index: (stored label, new label)} (softglass.dataset). The modes
    are generate_glass_data.py's: its Hessian, eigensolver and zero-mode check."""
    import generate_glass_data as ggd       # (and jax) only for a label over n modes

    return dataset.label_over_modes(n_modes, bases, label, os.path.join(DATA_DIR, LABELS_SUBDIR),
                                    dataset.Modes(ggd.lowest_modes_of_snapshot, ggd.N_ZERO_MODES,
                                                  ggd.N_SOFT_MODES))


# ================================ 2. split and scale =============================================
def split_bases(bases, seed=None, n_test=None, n_val=None):
    """(train, validation, test) base glasses, shuffled with SEED: all rotations of a base stay
    on one side. Arguments left None take the (possibly overridden) constants."""
    seed, n_test, n_val = or_constants(globals(), seed=seed, n_test=n_test, n_val=n_val)
    return dataset.split_bases(bases, seed, n_test, n_val)


def split_and_scale(data):
    """The split, and the (train, validation, test) graphs standardized with the training
    atoms' means and deviations (the 3 eigenvalue features and the label: fit_scaling)."""
    split = split_bases(list(data))
    s = fit_scaling([g for b in split[0] for g in data[b]])
    return split, s, dataset.scaled_sets(data, split, s, ROTATION_SHORTCUT)


# ================================ 3. baselines ===================================================
def fit_gbt(x, y):
    """Gradient-boosted trees (random_state SEED) on neighbour_features rows x, fitted to the
    labels y (softglass.baselines; validate_rearrangements.py scores them as an indicator)."""
    return baselines.fit_gbt(x, y, SEED)


def baseline_scores(data, train_b, test_b):
    """Test R of lambda_1, least squares and trees on the same split (softglass.baselines)."""
    return baselines.baseline_scores(data, train_b, test_b, SEED)


# ================================ 4. train with checkpoints ======================================
def train_epoch(model, graphs, generator, optimizer, scaler, device, rank=0, world=1):
    """One epoch of updates of BATCH_SIZE x ACCUM_STEPS graphs (softglass.training)."""
    settings = training.UpdateSettings(batch_size=BATCH_SIZE, accum_steps=ACCUM_STEPS,
                                       grad_clip=GRAD_CLIP, use_amp=USE_AMP, cpu_bf16=CPU_BF16)
    return training.train_epoch(model, graphs, generator, optimizer, scaler, device, settings,
                                rank, world)


def predict(model, graphs, device):
    """Standardized (prediction, target) per graph, in USE_AMP / CPU_BF16 precision."""
    return training.predict(model, graphs, device, USE_AMP, CPU_BF16)


def choose_device(device=None):
    """torch.device of DEVICE (or `device`): auto, cpu or cuda, the last refused without a GPU."""
    device, = or_constants(globals(), device=device)
    return training.choose_device(device)


def config():
    """The settings a checkpoint must share to be resumed (not: how long, how fast or where)."""
    return checkpoints.settings_to_share(constants_of(globals()))


def checkpoint_to_resume(ckpt_path, info):
    """The checkpoint of an earlier run of these settings on these data, or None; any other is
    refused, saying what differs, before the baselines or the training."""
    return checkpoints.checkpoint_to_resume(ckpt_path, info, config(), BEST_FILE, DATA_DIR)


def train_with_checkpoints(model, sets, s, info, record, ck, device, rank, world, t_start):
    """AdamW, the learning rate halved on a validation plateau, at most EPOCHS epochs; after
    each, the best validation epoch's model file (BEST_FILE) and the full state (CHECKPOINT_FILE,
    resumed from when given as ck). Returns the history, why it stopped and its clock."""
    train_set, val_set, test_set = sets
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min",
                                                           factor=LR_FACTOR, patience=LR_PATIENCE)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and USE_AMP)
    os.makedirs(OUT_DIR, exist_ok=True)
    start, best_val, since_best, history, seconds_before = checkpoints.resume(
        ck, model, optimizer, scheduler, scaler)
    # one process: the model itself; under torchrun: DDP, which averages gradients across ranks
    learner = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator().manual_seed(SEED)
    stop = training.Stopping(epochs=EPOCHS, early_stop_patience=EARLY_STOP_PATIENCE,
                             time_limit_min=TIME_LIMIT_MIN)
    t0, stopped_by = time.perf_counter(), "EPOCHS"
    for epoch in range(start, EPOCHS):
        why = training.reason_to_stop(stop, epoch, start, since_best, history, t_start,
                                      len(test_set) / len(val_set), world)
        if why:
            stopped_by = why
            break
        te = time.perf_counter()
        generator.manual_seed(SEED * 100003 + epoch)     # batch order depends on (SEED, epoch)
        train_loss = train_epoch(learner, train_set, generator, optimizer, scaler, device,
                                 rank, world)
        tv = time.perf_counter()
        val_loss, val_r = training.validation_scores(training.predict_shared(
            model, val_set, device, USE_AMP, CPU_BF16, rank, world))
        scheduler.step(val_loss)
        if val_loss < best_val:
            best_val, since_best = val_loss, 0
            if rank == 0:   # everything predict.py needs to rebuild and apply the model
                save_torch(os.path.join(OUT_DIR, BEST_FILE),
                           model_file(model, s, epoch, info, record))
        else:
            since_best += 1
        history.append(dict(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_R=val_r,
                            lr=optimizer.param_groups[0]["lr"],
                            seconds=time.perf_counter() - te, val_seconds=time.perf_counter() - tv))
        progress = dict(epoch=epoch, best_val=best_val, since_best=since_best, history=history,
                        seconds=seconds_before + time.perf_counter() - t0)
        if rank == 0:       # the other processes hold the same state (DDP keeps them equal)
            save_torch(os.path.join(OUT_DIR, CHECKPOINT_FILE), checkpoints.training_state(
                model, optimizer, scheduler, scaler, progress, config(), info))
        print(f"epoch {epoch:3d}  train {train_loss:.4f}  val {val_loss:.4f}  val R {val_r:.4f}  "
              f"lr {history[-1]['lr']:.1e}  {history[-1]['seconds']:.1f}s  "
              f"(<= {training.minutes_left(stop, history, epoch, t_start):.1f} min left)",
              flush=True)
    return dict(history=history, stopped_by=stopped_by, clock_from=t0 - seconds_before)


# ================================ 5. test, figures, results.json =================================
def test_best_model(model, test_set, s, info, run, baselines_r, record, device, world, t_start):
    """The best validation epoch's model on the test set, touched once: its metrics, the
    figures, results.json, and the test recorded in the model file itself."""
    figures.plot_curves(run["history"], os.path.join(OUT_DIR, "training_curves.png"))
    best_path = os.path.join(OUT_DIR, BEST_FILE)
    best = checkpoints.load_best(best_path, os.path.join(OUT_DIR, CHECKPOINT_FILE), device, info)
    model.load_state_dict(best["state_dict"])
    pairs = predict(model, test_set, device)
    test = metrics(pairs, s)
    import augment_data
    figures.test_figures(test_set, pairs, s, OUT_DIR, augment_data.load_augmented)
    history, stopped_by = run["history"], run["stopped_by"]
    results = dict(**training.test_results(test, test_set, pairs),
                   best_epoch=int(best["epoch"]), epochs=len(history), stopped_by=stopped_by,
                   # a cut by the clock: the model is not what these settings give elsewhere
                   **(dict(time_limit=dict(TIME_LIMIT_MIN=TIME_LIMIT_MIN, EPOCHS=EPOCHS,
                                           epochs_run=len(history)))
                      if stopped_by == "time limit" else {}),
                   n_params=count_parameters(model), fused_kernels=model.uses_fused_path(device),
                   seconds=time.perf_counter() - run["clock_from"],
                   wall_seconds_this_run=time.perf_counter() - t_start,
                   peak_memory_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   script_seconds=read_wall_times(DATA_DIR), device=str(device),
                   # torch's CPU sums split by thread: the bits depend on the thread count
                   processes=world, threads=torch.get_num_threads(),
                   seed=SEED, baselines=baselines_r, **record)
    write_results(results)
    checkpoints.record_test(best_path, test, len(record["split"]["test"]), baselines_r)
    print(f"test R = {test['R']:.4f}  R^2 = {test['R2']:.4f}  MAE = {test['MAE']:.4f}  "
          f"per-glass R = {test['per_glass_R_mean']:.4f} +- {test['per_glass_R_std']:.4f}")


def write_results(results):
    os.makedirs(OUT_DIR, exist_ok=True)
    atomic_write_bytes(os.path.join(OUT_DIR, "results.json"),
                       json.dumps(results, indent=2).encode())


def git_commit():
    """The commit of this code (with '+dirty' when it has uncommitted changes), or 'unknown'."""
    return checkpoints.git_commit(os.path.dirname(os.path.abspath(__file__)))


def load_trained_model(path, device=None, fast_kernels=None):
    """A model file of this script (BEST_FILE) rebuilt in eval mode, with its scaling and record
    (softglass.checkpoints.load_trained_model; weights_only, so loading it runs no code)."""
    return checkpoints.load_trained_model(
        path, device or torch.device("cpu"),
        FAST_KERNELS if fast_kernels is None else fast_kernels, BEST_FILE)


# ================================ the run ========================================================
def train_and_test(device, rank, world, t_start):
    """The method in order: the data and the label, the split by base glass, the scaling on the
    training atoms, the baselines, training with checkpoints, the test (rank 0 writes)."""
    compute_path = training.describe_compute_path(device, FAST_KERNELS)  # warns now, not later
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)
    data, info = load_dataset()
    (train_b, val_b, test_b), s, sets = split_and_scale(data)
    train_set, val_set, test_set = sets
    print(f"{len(data)} base glasses of {info['n_atoms']} atoms (label: {info['label']} over "
          f"{info['n_soft_modes']} modes): {len(train_b)} train / {len(val_b)} val / "
          f"{len(test_b)} test ({len(train_set)} / {len(val_set)} / {len(test_set)} graphs); "
          f"device {device}" + (f", {world} processes (torchrun)" if world > 1 else ""))
    ck = checkpoint_to_resume(os.path.join(OUT_DIR, CHECKPOINT_FILE), info)  # refused now
    record = dict(config=constants_of(globals()), commit=git_commit(),
                  split=dict(train=train_b, val=val_b, test=test_b),
                  data={k: v for k, v in info.items() if k != "glasses"})
    t_base = time.perf_counter()
    # every process computes them (the same numbers: deterministic), none waits at a collective
    # while rank 0 fits the trees (a long wait would outlast the process group's timeout)
    baselines_r = baseline_scores(data, train_b, test_b)
    if rank == 0:
        print("baselines (test R): " + ", ".join(f"{k} {v:.4f}" for k, v in baselines_r.items())
              + f"  [{time.perf_counter() - t_base:.1f}s]")
    if BASELINES_ONLY:
        if rank == 0:
            write_results(dict(baselines=baselines_r, seed=SEED, **record))
        return
    model = build_model(cutoff=info["cutoff"]).to(device)
    print(f"model: {count_parameters(model):,} parameters; {compute_path}")
    run = train_with_checkpoints(model, sets, s, info, record, ck, device, rank, world, t_start)
    if rank == 0:                   # the test, figures and results are rank 0's
        test_best_model(model, test_set, s, info, run, baselines_r, record, device, world, t_start)


def main(argv=None):
    apply_overrides(globals(), argv)
    t_start = time.perf_counter()
    training.check_settings(constants_of(globals()))    # before anything is read
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


if __name__ == "__main__":
    main()
