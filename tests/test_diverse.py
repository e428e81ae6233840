"""generate_diverse_data.py: determinism across worker counts, resume after kill -9, repair."""
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, TINY_PROTOCOL
from glass_io import load_glass

N = 250   # legal for the densest, largest-sigma corner: box 5.77 > 2 * 2.75


def _args(data_dir, cache_dir, n_configs, workers):
    protocol = dict(TINY_PROTOCOL, JAX_CACHE_DIR=cache_dir)
    return ([sys.executable, os.path.join(ROOT, "generate_diverse_data.py"),
             f"--N_CONFIGS={n_configs}", f"--N_ATOMS={N}", f"--N_WORKERS={workers}",
             f"--DATA_DIR={data_dir}", "--QUENCH_STEPS_RANGE=(300, 600)"]
            + [f"--{k}={v}" for k, v in protocol.items()])


def _run(*args, **kw):
    out = subprocess.run(_args(*args, **kw), capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module")
def two_glasses(tmp_path_factory, cache):
    d = tmp_path_factory.mktemp("one_worker")
    _run(str(d), cache, 2, 1)
    return d


def test_every_file_validates_and_parameters_stay_in_range(two_glasses):
    import generate_diverse_data as gdd
    meta = pickle.loads((two_glasses / "metadata.pkl").read_bytes())
    assert [r["file"] for r in meta["records"]] == ["glass_data_000.pkl", "glass_data_001.pkl"]
    for k in range(2):
        snap = load_glass(str(two_glasses / f"glass_data_{k:03d}.pkl"), n_atoms=N)
        p = snap["parameters"]
        assert gdd.DENSITY_RANGE[0] <= p["density"] <= gdd.DENSITY_RANGE[1]
        assert gdd.TEMPERATURE_RANGE[0] <= p["temperature"] <= gdd.TEMPERATURE_RANGE[1]
        assert 300 <= p["quench_steps"] <= 600 and isinstance(p["quench_steps"], int)
        assert gdd.SPECIES_RATIO_RANGE[0] <= p["species_ratio"] <= gdd.SPECIES_RATIO_RANGE[1]
        for scale, rng in (("sigma_scale", gdd.SIGMA_SCALE_RANGE),
                           ("epsilon_scale", gdd.EPSILON_SCALE_RANGE)):
            assert rng[0] <= p[scale] <= rng[1]
        assert np.allclose(p["sigma"], np.asarray(((1.0, 0.8), (0.8, 0.88))) * p["sigma_scale"])
        assert p["r_cutoff"] == pytest.approx(2.5 * p["sigma_scale"])
        assert p["max_force"] < 1e-10 and p["index"] == k
        assert snap["box_size"] == pytest.approx((N / p["density"]) ** (1 / 3))
        assert abs(np.mean(snap["species"] == 0) - p["species_ratio"]) <= 0.5 / N + 1e-12
        assert snap["softness_score"].sum() == pytest.approx(10.0)


def test_same_glass_with_one_or_two_workers(two_glasses, tmp_path, cache):
    _run(str(tmp_path), cache, 2, 2)
    for k in range(2):
        a = load_glass(str(two_glasses / f"glass_data_{k:03d}.pkl"))
        b = load_glass(str(tmp_path / f"glass_data_{k:03d}.pkl"))
        assert a["parameters"]["density"] == b["parameters"]["density"]
        assert np.allclose(a["positions"], b["positions"], atol=1e-8)
        assert np.allclose(a["softness_score"], b["softness_score"], atol=1e-8)


def test_kill_after_first_glass_then_resume(tmp_path, cache):
    proc = subprocess.Popen(_args(str(tmp_path), cache, 3, 1), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = tmp_path / "glass_data_000.pkl"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)        # the whole group: parent and worker
    proc.wait()
    assert first.exists(), "the first glass never appeared"
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    out = _run(str(tmp_path), cache, 3, 1)
    assert "1 done, 2 to make" in out or "2 done, 1 to make" in out
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    assert sorted(f for f in os.listdir(tmp_path)) == [
        "glass_data_000.pkl", "glass_data_001.pkl", "glass_data_002.pkl", "metadata.pkl",
        "timings.json"]
    for k in range(3):
        load_glass(str(tmp_path / f"glass_data_{k:03d}.pkl"), n_atoms=N)


def test_corrupt_file_is_reported_and_regenerated(two_glasses, tmp_path, cache):
    for k in range(2):
        (tmp_path / f"glass_data_{k:03d}.pkl").write_bytes(
            (two_glasses / f"glass_data_{k:03d}.pkl").read_bytes())
    bad = tmp_path / "glass_data_001.pkl"
    bad.write_bytes(bad.read_bytes()[:1000])
    out = _run(str(tmp_path), cache, 2, 1)
    assert "glass_data_001.pkl: not a valid snapshot" in out and "1 done, 1 to make" in out
    good = load_glass(str(two_glasses / "glass_data_001.pkl"))
    assert np.allclose(load_glass(str(bad))["positions"], good["positions"], atol=1e-8)


def test_box_too_small_for_the_ranges_is_refused(tmp_path):
    out = subprocess.run(_args(str(tmp_path), "", 1, 1)[:-1] + ["--N_ATOMS=200"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "minimum-image" in out.stderr
    assert os.listdir(tmp_path) == []
