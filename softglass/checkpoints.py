"""What a training run keeps: the checkpoint (full training state, random-generator states and
GradScaler) and what resuming from it requires, atomic torch saves, and the trained model file
(weights, feature and target scaling, architecture, the data and label it learnt, its test),
which loads with torch.load(weights_only=True): tensors and builtins only, so reading one cannot
run code."""
import io
import os
import random

import numpy as np
import torch

from .files import GlassFileError, atomic_write_bytes
from .model import count_parameters


def save_torch(path, obj):
    """torch.save through an atomic write: an interrupted save never corrupts the last one."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def rng_states():
    """The three generators' states as tensors and builtins only, so that a checkpoint loads with
    torch.load(weights_only=True) (numpy's state holds an ndarray, which that refuses)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(torch=torch.get_rng_state(),
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                           has_gauss=int(has_gauss), cached=float(cached)),
                python=random.getstate())


def set_rng_states(states):
    """Inverse of rng_states. The torch state is the CPU generator's, whatever the device."""
    torch.set_rng_state(states["torch"].cpu())
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    random.setstate(states["python"])


def restore_scaler(scaler, state):
    """Load a GradScaler state unless the saving run had none: a run started on the CPU (scaler
    disabled, empty state) and resumed on CUDA starts a fresh scaler, and a CUDA run resumed on
    the CPU (scaler disabled) drops it; GradScaler.load_state_dict raises on both."""
    if scaler.is_enabled() and state:
        scaler.load_state_dict(state)
    elif scaler.is_enabled():
        print("note: the checkpoint has no GradScaler state (saved without AMP): starting a "
              "fresh scaler")


def model_file(model, scaling, epoch, info, record):
    """Everything predict.py needs to rebuild and apply the model (BEST_FILE): weights, feature
    and target scaling, architecture, the data and label it learnt, the commit and the settings.
    Tensors and builtins only, so it loads with weights_only=True."""
    return dict(state_dict=model.state_dict(), **{k: v.cpu() for k, v in scaling.items()},
                architecture=model.architecture, epoch=epoch, n_params=count_parameters(model),
                n_atoms=info["n_atoms"], n_soft_modes=info["n_soft_modes"],
                label=info.get("label", "softness"), density_range=info.get("density_range"),
                data_fingerprint=info["data_fingerprint"], commit=record["commit"],
                config=record["config"], former=info.get("former", "ka"))


def git_commit(folder):
    """The commit of the code in `folder` (with '+dirty' when it has uncommitted changes), or
    'unknown'."""
    import subprocess

    def run(*args):
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                              timeout=10)
    try:
        head = run("rev-parse", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ================================ resuming a run ===============================================
# train.py's constants a resumed run may change: how long, how fast or where it runs
NOT_SHARED_ON_RESUME = ("EPOCHS", "OUT_DIR", "DATA_DIR", "NUM_THREADS", "TIME_LIMIT_MIN",
                        "FAST_KERNELS", "DEVICE", "BASELINES_ONLY", "LABELS_SUBDIR")


def settings_to_share(constants):
    """The settings a checkpoint must share to be resumed (not: how long, how fast or where)."""
    return {k: v for k, v in constants.items() if k not in NOT_SHARED_ON_RESUME}


def config_mismatch(saved, current):
    """Names of the settings that differ between a checkpoint and this run."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def checkpoint_to_resume(ckpt_path, info, config, best_file, data_dir):
    """The checkpoint of an earlier run of this configuration (settings_to_share) on these data,
    or None (fresh start). One of other data or other settings is refused, naming what differs,
    before any time is spent on baselines or training."""
    if not os.path.exists(ckpt_path):
        return None
    fresh = (f"to start fresh, remove {ckpt_path} (and {best_file} beside it) or use another "
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
                         f"{data_dir}); {fresh}")
    differ = config_mismatch(ck["config"], config)
    if differ:
        changes = ", ".join(f"{k} {ck['config'].get(k)!r} -> {config.get(k)!r}" for k in differ)
        raise SystemExit(f"error: {ckpt_path} was written with other settings ({changes}); "
                         f"{fresh}")
    return ck


def resume(ck, model, optimizer, scheduler, scaler):
    """Restore a run's training state (checkpoint_to_resume's), or a fresh start for None.
    Returns (first epoch, best validation loss, epochs since it, history, seconds trained)."""
    if ck is None:
        return 0, float("inf"), 0, [], 0.0
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])       # moves the state to the parameters' device
    scheduler.load_state_dict(ck["scheduler"])
    restore_scaler(scaler, ck["scaler"])
    set_rng_states(ck["rng"])
    print(f"resuming from its checkpoint at epoch {ck['epoch'] + 1}")
    return ck["epoch"] + 1, ck["best_val"], ck["since_best"], ck["history"], ck["seconds"]


def training_state(model, optimizer, scheduler, scaler, progress, config, info):
    """The full training state after an epoch (CHECKPOINT_FILE): weights, optimizer, scheduler,
    scaler, random generators, progress (epoch, best_val, since_best, history, seconds), the
    settings and the data's fingerprint. Tensors and builtins only (weights_only loadable)."""
    return dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), rng=rng_states(),
                **progress, config=config, data_fingerprint=info["data_fingerprint"],
                data_glasses=info["glasses"])


# ================================ the trained model file =======================================
def load_best(best_path, ckpt_path, device, info):
    """The best epoch's model file of this run, refused if written for other data."""
    best = torch.load(best_path, map_location=device, weights_only=True)
    if best.get("data_fingerprint") != info["data_fingerprint"]:
        raise SystemExit(f"error: {best_path} was written for other data; remove it and "
                         f"{ckpt_path} to train afresh")
    return best


def record_test(best_path, test, n_glasses, baselines):
    """Add to the model file how it tested and against which baselines: the file describes
    itself (models/ ships such files, and predict.py says what it applies)."""
    card = torch.load(best_path, map_location="cpu", weights_only=True)
    card["test"] = dict(R=test["R"], per_glass_R_mean=test["per_glass_R_mean"],
                        per_glass_R_std=test["per_glass_R_std"], n_glasses=n_glasses,
                        baselines=baselines, threads=torch.get_num_threads())
    save_torch(best_path, card)


def load_trained_model(path, device, fast_kernels, best_file):
    """Rebuild a model written by train.py (best_file) with its architecture, and return it in
    eval mode with its feature/target scaling and its record. Loads with weights_only=True: the
    file holds tensors and builtins only, so reading it cannot run code."""
    from .model import HybridPhysicsTransformer
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: model file not found (train.py writes it to "
                             f"OUT_DIR/{best_file})")
    try:
        best = torch.load(path, map_location=device, weights_only=True)
        arch = best["architecture"]
    except Exception as err:    # truncated, not ours, or written before it carried its architecture
        first_line = (str(err).strip().splitlines() or [""])[0][:160]
        raise GlassFileError(f"{path}: not a model file of this train.py ({type(err).__name__}: "
                             f"{first_line}); use the hybrid_physics_best.pth that train.py "
                             "writes") from None
    try:        # weights that do not fit the architecture the file records (edited, other code)
        model = HybridPhysicsTransformer(**arch, use_checkpoint=False, fast_kernels=fast_kernels)
        model.load_state_dict(best["state_dict"])
        scaling = {k: best[k] for k in ("x_mean", "x_std", "y_mean", "y_std")}
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise GlassFileError(f"{path}: its weights do not match the architecture it records "
                             f"({type(err).__name__}: {first}); use a hybrid_physics_best.pth "
                             "written by this train.py") from None
    return model.to(device).eval(), scaling, best
