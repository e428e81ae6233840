"""One epoch of training, predictions and their metrics, the device and its precision, the
settings no run can use, and when a run stops (an epoch count, early stopping, an optional time
budget).

Every setting is an argument: UpdateSettings holds train.py's constants of one update, Stopping
those of when it stops.
"""
import contextlib
import dataclasses
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch

from . import message_kernels
from .distributed import from_rank0, micro_batches


@dataclasses.dataclass(frozen=True)
class UpdateSettings:
    """train.py's constants of one optimizer update (the names in capitals are theirs)."""
    batch_size: int             # BATCH_SIZE: graphs per micro-batch
    accum_steps: int            # ACCUM_STEPS: micro-batches per update
    grad_clip: float            # GRAD_CLIP: max global gradient norm
    use_amp: bool               # USE_AMP: float16 autocast + GradScaler on CUDA
    cpu_bf16: bool              # CPU_BF16: bfloat16 autocast on CPU


@dataclasses.dataclass(frozen=True)
class Stopping:
    """train.py's constants of when a run stops."""
    epochs: int                 # EPOCHS: epochs at most
    early_stop_patience: int    # EARLY_STOP_PATIENCE: epochs without a better validation loss
    time_limit_min: float       # TIME_LIMIT_MIN: wall-clock budget of a run, minutes (0: none)


# the settings that count something and so must be at least 1, and what each counts
COUNTS = dict(N_TEST="base glasses held out for the test",
              N_VAL="base glasses the best epoch is chosen on",
              N_ROTATIONS="rotated copies used per base glass",
              BATCH_SIZE="graphs per micro-batch", ACCUM_STEPS="micro-batches per update",
              EPOCHS="epochs at most")


def check_settings(constants):
    """Refuse, before anything is read or computed, settings no run can use, naming the constant
    and what it allows (an empty validation or test set, or an empty batch, would otherwise end
    in a traceback after the data are loaded and the baselines fitted). constants: train.py's
    {name: value}."""
    for name, what in COUNTS.items():
        value = constants[name]
        if value < 1:
            raise SystemExit(f"error: {name}={value}: must be an integer >= 1 ({what})")
    for name in ("TIME_LIMIT_MIN", "NUM_THREADS"):
        if constants[name] < 0:
            raise SystemExit(f"error: {name}={constants[name]}: must be >= 0 (0: "
                             f"{'no time limit' if name == 'TIME_LIMIT_MIN' else 'torch default'})")


# ================================ device and precision =========================================
def choose_device(device):
    """torch.device of DEVICE: auto (CUDA when present), cpu or cuda, the last refused without a
    GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"error: DEVICE={device!r}: expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: DEVICE=cuda but torch sees no CUDA device (is the CUDA build of "
                         "torch installed? README: GPU users)")
    return torch.device(device)


def describe_compute_path(device, fast_kernels):
    """Say at start, before any epoch, which path the model runs: the fused CPU kernels are
    ~30x faster than the reference path (README: Training speed), so losing them is loud."""
    if device.type != "cpu" or not fast_kernels:
        return "reference PyG path" + (f" on {device}" if device.type != "cpu" else "")
    if message_kernels.available():
        return "fused CPU kernels (softglass/message_kernels.py)"
    import warnings
    warnings.warn(f"fused CPU kernels unavailable ({message_kernels.build_error()}): training "
                  "runs the reference PyG path, ~30x slower (README: macOS)", stacklevel=2)
    return "reference PyG path (fused kernels unavailable)"


def autocast_for(device, use_amp, cpu_bf16):
    """float16 autocast on CUDA (use_amp), bfloat16 on the CPU (cpu_bf16), else none."""
    if device.type == "cuda" and use_amp:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


# ================================ an epoch =====================================================
def train_epoch(model, graphs, generator, optimizer, scaler, device, settings, rank=0, world=1):
    """One epoch: L1 loss on the standardized target; each update averages the gradient over
    BATCH_SIZE x ACCUM_STEPS graphs (shared among `world` processes, `model` then wrapped in
    DistributedDataParallel), clips it to GRAD_CLIP and steps. Returns the mean |error| per atom."""
    model.train()
    per_rank = settings.accum_steps // world
    total = torch.zeros(2, dtype=torch.float64)         # sum of |error| over atoms, atoms
    optimizer.zero_grad(set_to_none=True)
    for update in micro_batches(len(graphs), generator, rank, world, settings.batch_size,
                                settings.accum_steps):
        for k, (idx, weight) in enumerate(update):
            batch = Batch.from_data_list([graphs[i] for i in idx]).to(device)
            # DDP averages gradients across processes at the update's last backward only
            sync = world == 1 or k + 1 == len(update)
            with contextlib.nullcontext() if sync else model.no_sync():
                with autocast_for(device, settings.use_amp, settings.cpu_bf16):
                    pred = model(batch.x, batch.edge_index, batch.edge_dist)
                loss = F.l1_loss(pred.float(), batch.y)
                scaler.scale(loss * weight / per_rank).backward()
            if weight:
                total += torch.tensor([loss.item() * batch.y.numel(), batch.y.numel()],
                                      dtype=torch.float64)
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    if world > 1:                    # on the device: nccl reduces CUDA tensors only
        on_device = total.to(device)
        torch.distributed.all_reduce(on_device)
        total = on_device.cpu()
    return float(total[0] / max(float(total[1]), 1.0))


# ================================ predictions and metrics ======================================
@torch.no_grad()
def predict(model, graphs, device, use_amp, cpu_bf16):
    """Standardized predictions and targets per graph."""
    model.eval()
    out = []
    for g in graphs:
        g = g.to(device)
        with autocast_for(device, use_amp, cpu_bf16):
            pred = model(g.x, g.edge_index, g.edge_dist)
        out.append((pred.float().cpu(), g.y.cpu()))
    return out


def predict_shared(model, graphs, device, use_amp, cpu_bf16, rank=0, world=1):
    """predict() of every graph, the graphs dealt among the `world` processes and the results
    gathered, in order, on every process (which then all take the same decisions from them)."""
    if world == 1:
        return predict(model, graphs, device, use_amp, cpu_bf16)
    parts = [None] * world
    torch.distributed.all_gather_object(parts, predict(model, graphs[rank::world], device,
                                                       use_amp, cpu_bf16))
    out = [None] * len(graphs)
    for r, part in enumerate(parts):
        out[r::world] = part
    return out


def pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def validation_scores(pairs):
    """(mean |error| per atom, pooled R) of standardized predictions: the loss the best epoch
    and the learning rate follow."""
    loss = float(torch.cat([(p - t).abs() for p, t in pairs]).mean())
    return loss, pearson(torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs]))


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


def test_results(test, graphs, pairs):
    """results.json's test entries: metrics() `test` of the standardized pairs of `graphs`."""
    return dict(test_R=test["R"], test_R2=test["R2"], test_R_squared=test["R_squared"],
                test_MAE=test["MAE"], test_MAE_standardized=test["MAE_standardized"],
                per_glass_R=dict(mean=test["per_glass_R_mean"], std=test["per_glass_R_std"]),
                test_R_by_glass=per_glass_first_copy(graphs, pairs))


# ================================ when a run stops =============================================
def time_left_for_epoch(t_start, history, test_per_val, time_limit_min):
    """Whether one more epoch (median of the last five) and the final test evaluation (the last
    validation pass scaled by test_per_val) end before time_limit_min after t_start (0: no
    limit)."""
    if not time_limit_min:
        return True
    epoch_s = np.median([h["seconds"] for h in history[-5:]])
    final_s = history[-1].get("val_seconds", 0.0) * test_per_val + 15.0   # + plots and saving
    return time.perf_counter() - t_start + epoch_s + final_s <= time_limit_min * 60


def reason_to_stop(stopping, epoch, start, since_best, history, t_start, test_per_val,
                   world):
    """'early stop' or 'time limit' (saying so) before `epoch`, else None (the epoch count
    decides). Under torchrun rank 0's clock decides for all."""
    if since_best >= stopping.early_stop_patience:
        print(f"early stop: no better validation loss for {stopping.early_stop_patience} epochs")
        return "early stop"
    if history and epoch > start and not from_rank0(time_left_for_epoch(
            t_start, history, test_per_val, stopping.time_limit_min), world):
        print(f"time limit: another epoch would end after TIME_LIMIT_MIN="
              f"{stopping.time_limit_min} min; this run's length, and so its model, depends on "
              f"the machine's speed and load (--TIME_LIMIT_MIN=0: EPOCHS={stopping.epochs} "
              "epochs at most, reproducible)")
        return "time limit"
    return None


def minutes_left(stopping, history, epoch, t_start):
    """At most how long the run goes on after `epoch`: the remaining epochs at the median of
    the last five, or the rest of the time budget."""
    left = np.median([h["seconds"] for h in history[-5:]]) * (stopping.epochs - epoch - 1)
    if stopping.time_limit_min:
        left = min(left, stopping.time_limit_min * 60 - (time.perf_counter() - t_start))
    return max(left, 0) / 60
