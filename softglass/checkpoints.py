"""What a training run keeps: the checkpoint's random-generator states and GradScaler, atomic
torch saves, and the trained model file (weights, feature and target scaling, architecture, the
data and label it learnt), which loads with torch.load(weights_only=True): tensors and builtins
only, so reading one cannot run code."""
import io
import random

import numpy as np
import torch

from .files import atomic_write_bytes
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
