"""Shared fixtures: the repository root on sys.path, and one tiny glass made once per session."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Small but legal: 200 atoms at density 1.2 is a 5.50 sigma box, just wider than 2 r_cut = 5.0.
TINY = dict(n_atoms=200, density=1.2, temperature=0.44, quench_steps=600, seed=3)
TINY_PROTOCOL = dict(UNTANGLE_STEPS=200, LJ_DESCENT_STEPS=300, HEAT_STEPS=300, CHUNK_STEPS=300,
                     JAX_CACHE_DIR="")


@pytest.fixture(scope="session")
def ggd():
    import generate_glass_data as module
    saved = {k: getattr(module, k) for k in TINY_PROTOCOL}
    for k, v in TINY_PROTOCOL.items():
        setattr(module, k, v)
    yield module
    for k, v in saved.items():
        setattr(module, k, v)


@pytest.fixture(scope="session")
def tiny_glass(ggd):
    """A 200-atom inherent structure with its labels (the full six-step protocol, short)."""
    return ggd.make_glass(log=lambda *a: None, **TINY)


# A small hybrid model for the model tests (the default one is ~850K parameters).
SMALL = dict(hidden=32, layers=2, heads=4, num_rbf=8, ffn_mult=2)


@pytest.fixture(scope="session")
def train():
    import train as module
    return module


@pytest.fixture(scope="session")
def small_model(train, tiny_glass, tmp_path_factory):
    """An untrained small model in train.py's model-file format (the weights do not matter
    for what these tests check: that the same glass gives the same numbers)."""
    import torch
    torch.manual_seed(0)
    model = train.build_model(**SMALL)
    y = torch.tensor(tiny_glass["softness_score"])
    x = torch.tensor(tiny_glass["eigenvalues"])
    scaling = dict(x_mean=x.mean(0).float(), x_std=x.std(0).float(), y_mean=y.mean().float(),
                   y_std=y.std().float())
    info = dict(n_atoms=200, n_soft_modes=10, data_fingerprint="test", density_range=[1.2, 1.2])
    path = tmp_path_factory.mktemp("model") / "small.pth"
    train.save_torch(str(path), train.model_file(model, scaling, 0, info,
                                                 dict(commit="test", config={})))
    return str(path)


@pytest.fixture(scope="session")
def graph(train, tiny_glass):
    """The tiny glass as a PyG graph."""
    return train.glass_graph(tiny_glass, train.CUTOFF)


def write_metadata(data_dir, names, n_atoms):
    """A minimal metadata.pkl listing `names` as the data set's glasses (what
    generate_diverse_data.py writes, less what augment_data.py and the benchmarks do not read)."""
    from softglass.files import atomic_write_pickle
    records = [dict(file=name, parameters={}) for name in names]
    atomic_write_pickle(os.path.join(str(data_dir), "metadata.pkl"),
                        dict(records=records, n_configs=len(names), n_atoms=int(n_atoms)))


def load_benchmark(name):
    """benchmarks/<name>.py or experiments/<name>.py as a module (they are scripts, not a
    package)."""
    import importlib.util
    path = next((p for p in (os.path.join(ROOT, folder, f"{name}.py")
                             for folder in ("benchmarks", "experiments")) if os.path.exists(p)),
                os.path.join(ROOT, "experiments", f"{name}.py"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
