"""generate_diverse_data.py: determinism across worker counts (a glass of the Dask cluster is
bit for bit the physics called in process), resume after kill -9, a Dask worker killed mid-glass,
an existing Dask cluster (SCHEDULER), repair, the protocol recorded per glass (a rerun with other
constants refuses, or remakes it with REGENERATE=True), strays of a larger set."""
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, TINY_PROTOCOL
from softglass.files import load_glass

N = 250   # legal for the densest, largest-sigma corner: box 5.77 > 2 * 2.75


def _args(data_dir, cache_dir, n_configs, workers, extra=()):
    protocol = dict(TINY_PROTOCOL, JAX_CACHE_DIR=cache_dir)
    return ([sys.executable, os.path.join(ROOT, "generate_diverse_data.py"),
             f"--N_CONFIGS={n_configs}", f"--N_ATOMS={N}", f"--N_WORKERS={workers}",
             f"--DATA_DIR={data_dir}", "--QUENCH_STEPS_RANGE=(300, 600)"]
            + [f"--{k}={v}" for k, v in protocol.items()] + list(extra))


def _main_here(capsys, *args, **kw):
    """The script's main() called in this process with _args(*args, **kw): no second interpreter
    importing jax (~8 s each). For a refusal, a set already made, and a run that makes glasses
    where what is tested is the resume and repair logic rather than the command line (those
    glasses are made, as always, by the local Dask cluster's worker processes, spawned from this
    one). Returns (exit code, stdout, stderr) as the script's process would have them (a
    SystemExit message goes to stderr with code 1); the constants of both scripts, and the
    environment (a cluster's nannies may set thread variables in it), are restored after."""
    code, message = 0, ""
    capsys.readouterr()
    try:
        _main_restoring(*args, **kw)
    except SystemExit as err:
        code, message = (1, str(err)) if isinstance(err.code, str) else (err.code, "")
    out, err = capsys.readouterr()
    return code, out, err + message


def _main_restoring(*args, **kw):
    """generate_diverse_data.main(_args(*args, **kw)) in this process; the constants of both
    scripts and the environment restored after, however it ends."""
    import generate_diverse_data as gdd
    import generate_glass_data as ggd
    import softglass.cli
    saved = [(module, softglass.cli.constants_of(vars(module))) for module in (gdd, ggd)]
    environ = dict(os.environ)
    try:
        gdd.main(_args(*args, **kw)[2:])
    finally:
        for module, constants in saved:
            vars(module).update(constants)
        os.environ.clear()
        os.environ.update(environ)


def _main_succeeds(capsys, *args, **kw):
    """_main_here for a run that must succeed: its stdout and stderr together."""
    code, out, err = _main_here(capsys, *args, **kw)
    assert code == 0, out + err
    return out + err


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module")
def two_glasses(tmp_path_factory, cache):
    """Two glasses made by one worker of the local cluster (main() run here: the command line is
    tested by the runs killed below, which are processes of their own)."""
    d = tmp_path_factory.mktemp("one_worker")
    _main_restoring(str(d), cache, 2, 1)
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


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, cache):
    d = tmp_path_factory.mktemp("two_workers")
    _main_restoring(str(d), cache, 2, 2)
    return d


def test_same_glass_with_one_or_two_workers(two_glasses, two_workers):
    for k in range(2):
        a = load_glass(str(two_glasses / f"glass_data_{k:03d}.pkl"))
        b = load_glass(str(two_workers / f"glass_data_{k:03d}.pkl"))
        assert a["parameters"]["density"] == b["parameters"]["density"]
        _same_glass(a, b)


def _same_glass(a, b, softness_atol=0.0):
    """Bit for bit (JAX on the CPU, numpy and LAPACK are deterministic here, in any process with
    the same environment), but the softness with `softness_atol`: LAPACK's eigenvectors change in
    their last bits with its thread count (a Dask cluster of its defaults sets
    OPENBLAS_NUM_THREADS=1 in its workers; the script's local cluster keeps the environment)."""
    for key in ("positions", "species", "eigenvalues"):
        assert np.array_equal(a[key], b[key]), key
    assert a["energy"] == b["energy"]
    assert np.allclose(a["softness_score"], b["softness_score"], rtol=0, atol=softness_atol)


def test_a_glass_of_the_dask_cluster_is_the_physics_called_in_process(two_workers, ggd,
                                                                      monkeypatch):
    """Glass 1 of the 2-worker Dask run is ggd.make_glass called here, without Dask, with the
    parameters drawn for (SEED, 1) and the sub-seed of its attempt: exactly (np.array_equal)."""
    import generate_diverse_data as gdd
    monkeypatch.setattr(gdd, "QUENCH_STEPS_RANGE", (300, 600))
    monkeypatch.setattr(ggd, "SHOW_PROGRESS", False)
    made = load_glass(str(two_workers / "glass_data_001.pkl"), n_atoms=N)
    p = made["parameters"]
    drawn = gdd.draw_parameters(1, 0, ggd)
    assert {k: p[k] for k in ("density", "temperature", "quench_steps", "species_ratio")} == {
        k: drawn[k] for k in ("density", "temperature", "quench_steps", "species_ratio")}
    here = ggd.make_glass(n_atoms=N, density=drawn["density"], temperature=drawn["temperature"],
                          quench_steps=drawn["quench_steps"], species_ratio=drawn["species_ratio"],
                          sigma=drawn["sigma"], epsilon=drawn["epsilon"],
                          seed=gdd.simulation_seed(0, 1, p["attempt"]), log=lambda *a: None)
    _same_glass(here, made)


@contextlib.contextmanager
def _existing_cluster(n_workers, config=None):
    """A Dask cluster of `n_workers` processes started apart from the script, as a user's would
    be (Dask's defaults but `config`; its workers are spawned from this process, so with ROOT on
    sys.path), and a client of it. Its nannies set thread variables in this process's
    environment: restored after."""
    import dask
    from distributed import Client, LocalCluster
    saved = dict(os.environ)
    try:
        with dask.config.set(config or {}):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   memory_limit=0, dashboard_address=None)
        with cluster, Client(cluster, set_as_default=False) as client:
            yield cluster.scheduler_address, client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _made_here(client):
    """Whether each worker of the cluster has made a glass (configured itself for one)."""
    return client.run(lambda: bool(
        sys.modules.get("generate_diverse_data") and
        sys.modules["generate_diverse_data"]._CONFIGURED.get("key"))).values()


def _kill_the_worker_mid_glass(client, proc, data_dir):
    """SIGKILL the (one) worker process once the first glass is written and the second has run
    for a second; returns (its pid, the finished files {name: (bytes, mtime)})."""
    seen = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        [(pid, keys)] = client.run(lambda dask_worker: (
            os.getpid(), [ts.key for ts in dask_worker.state.executing])).values()
        if keys and keys[0].startswith("glass-001-") and (data_dir / "glass_data_000.pkl").exists():
            seen = seen or time.time()
            if time.time() - seen > 1.0:
                os.kill(pid, signal.SIGKILL)
                return pid, {f: ((data_dir / f).read_bytes(), (data_dir / f).stat().st_mtime_ns)
                             for f in os.listdir(data_dir) if f.startswith("glass_data_")}
        time.sleep(0.1)
    raise AssertionError("the second glass never ran for a second on the worker")


def test_a_worker_of_an_existing_cluster_killed_mid_glass_loses_only_that_glass(
        two_glasses, tmp_path, cache):
    """--SCHEDULER=<address>: the glasses are made by that cluster's workers, which apply the
    run's overrides themselves. SIGKILL of its worker while it makes glass 1, glass 0 finished:
    glass 0 is never remade (its result was released), and glass 1 is made again on the worker
    its nanny restarted; the run finishes with both glasses, those of the local default: bit for
    bit, but the softness to 1e-12 (that cluster's LAPACK runs one thread; ~5e-15 apart). (A
    glass whose worker dies allowed-failures times is a KilledWorker failure of that glass: the
    run keeps the others and asks for a rerun; not tested here, for time.)"""
    allowed_failures = 3
    with _existing_cluster(1, {"distributed.scheduler.allowed-failures": allowed_failures}) as (
            address, client):
        proc = subprocess.Popen(_args(str(tmp_path), cache, 2, 1,
                                      extra=[f"--SCHEDULER={address}"]),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            pid, finished = _kill_the_worker_mid_glass(client, proc, tmp_path)
            out = proc.communicate(timeout=180)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
        client.wait_for_workers(1)
        assert pid not in client.run(os.getpid).values()       # the nanny started another
        assert any(_made_here(client))                        # ...which made glass 1
    assert list(finished) == ["glass_data_000.pkl"], "the kill came after glass 1 was written"
    f = tmp_path / "glass_data_000.pkl"
    assert (f.read_bytes(), f.stat().st_mtime_ns) == finished[f.name]          # never remade
    assert proc.returncode == 0, out
    assert (f"0 done, 2 to make on the Dask scheduler {address} (its workers; N_WORKERS is not "
            "used)") in out
    assert [out.count(f"glass {k:03d}: rho") for k in range(2)] == [1, 1], out
    for k in range(2):
        _same_glass(load_glass(str(tmp_path / f"glass_data_{k:03d}.pkl"), n_atoms=N),
                    load_glass(str(two_glasses / f"glass_data_{k:03d}.pkl")), 1e-12)
    assert (tmp_path / "metadata.pkl").exists()
    timings = json.loads((tmp_path / "timings.json").read_text())["generate_diverse_data.py"]
    assert timings["scheduler"] == address and "workers" not in timings


def test_kill_after_first_glass_then_resume(tmp_path, cache, capsys):
    """SIGKILL of the run (parent and worker) once glass 0 is written, glass 1 under way (a glass
    takes seconds; the file is polled every 0.2 s): the rerun keeps glass 0 and makes glass 1.
    The killed run is a process of its own (the kill is the point); the rerun is main() here."""
    proc = subprocess.Popen(_args(str(tmp_path), cache, 2, 1), cwd=ROOT,
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
    out = _main_succeeds(capsys, str(tmp_path), cache, 2, 1)
    assert "1 done, 1 to make" in out, out
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    assert sorted(f for f in os.listdir(tmp_path)) == [
        "glass_data_000.pkl", "glass_data_001.pkl", "metadata.pkl", "timings.json"]
    for k in range(2):
        load_glass(str(tmp_path / f"glass_data_{k:03d}.pkl"), n_atoms=N)


def test_corrupt_file_is_reported_and_regenerated(two_glasses, tmp_path, cache, capsys):
    for k in range(2):
        (tmp_path / f"glass_data_{k:03d}.pkl").write_bytes(
            (two_glasses / f"glass_data_{k:03d}.pkl").read_bytes())
    bad = tmp_path / "glass_data_001.pkl"
    bad.write_bytes(bad.read_bytes()[:1000])
    out = _main_succeeds(capsys, str(tmp_path), cache, 2, 1)
    assert "glass_data_001.pkl: not a valid snapshot" in out and "1 done, 1 to make" in out
    good = load_glass(str(two_glasses / "glass_data_001.pkl"))
    assert np.allclose(load_glass(str(bad))["positions"], good["positions"], atol=1e-8)


def test_box_too_small_for_the_ranges_is_refused(tmp_path, capsys):
    code, _, err = _main_here(capsys, str(tmp_path), "", 1, 1, extra=["--N_ATOMS=200"])
    assert code != 0 and "minimum-image" in err
    assert os.listdir(tmp_path) == []


def _copy(src, dst, names, as_names=None):
    for name, new in zip(names, as_names or names):
        (dst / new).write_bytes((src / name).read_bytes())


def test_each_glass_records_the_protocol_that_shaped_it(two_glasses):
    import softglass.cli
    import softglass.files
    meta = pickle.loads((two_glasses / "metadata.pkl").read_bytes())
    for rec in meta["records"]:
        p = rec["parameters"]
        assert p["protocol_hash"] == meta["protocol_hash"] == softglass.files.sha256_of_json(p["protocol"])
    ggd_part = p["protocol"]["generate_glass_data.py"]
    ours = p["protocol"]["generate_diverse_data.py"]
    assert ggd_part["HEAT_STEPS"] == 300 and ggd_part["CHUNK_STEPS"] == 300
    assert not {"JAX_CACHE_DIR", "SHOW_PROGRESS", "DATA_DIR", "DENSITY", "SEED"} & set(ggd_part)
    assert ours["N_ATOMS"] == N and "MAX_ATTEMPTS" not in ours and "DENSITY_RANGE" in ours
    assert not {"N_CONFIGS", "N_WORKERS", "DATA_DIR", "METADATA_FILE"} & set(ours)
    # the other formers' ranges shape no Kob-Andersen glass (its protocol hash stays as it was)
    assert not [k for k in {**ours, **ggd_part} if k.startswith(("CUZR_", "SW_", "MD_"))]


def test_rerun_keeps_a_glass_of_the_same_protocol_and_remakes_one_of_another(
        two_glasses, tmp_path, cache, capsys):
    names = ["glass_data_000.pkl", "glass_data_001.pkl"]
    _copy(two_glasses, tmp_path, names)
    first = (tmp_path / names[0]).read_bytes()
    code, out, _ = _main_here(capsys, str(tmp_path), cache, 2, 1)
    assert code == 0 and "2 done, 0 to make" in out and (tmp_path / names[0]).read_bytes() == first
    old = pickle.loads((tmp_path / names[1]).read_bytes())      # as made by older code
    del old["parameters"]["protocol"], old["parameters"]["protocol_hash"]
    (tmp_path / names[1]).write_bytes(pickle.dumps(old))
    code, _, err = _main_here(capsys, str(tmp_path), cache, 2, 1,
                              extra=["--HEAT_STEPS=200"])               # a forgotten flag
    assert code == 1 and "2 glasses in" in err
    assert "made with HEAT_STEPS 300 -> 200" in err
    assert "--REGENERATE=True" in err
    assert (tmp_path / names[0]).read_bytes() == first                 # nothing touched
    out = _main_succeeds(capsys, str(tmp_path), cache, 2, 1,
                         extra=["--HEAT_STEPS=200", "--REGENERATE=True"])
    assert "glass_data_000.pkl: made with HEAT_STEPS 300 -> 200: regenerating" in out, out
    assert "glass_data_001.pkl: made without a recorded protocol" in out
    assert "0 done, 2 to make" in out
    for name in names:
        p = load_glass(str(tmp_path / name), n_atoms=N)["parameters"]
        assert p["heat_steps"] == 200
        assert p["protocol"]["generate_glass_data.py"]["HEAT_STEPS"] == 200
    meta = pickle.loads((tmp_path / "metadata.pkl").read_bytes())
    assert meta["protocol_hash"] == p["protocol_hash"]


def test_smaller_set_lists_only_its_glasses_and_augment_reports_the_stray(
        two_glasses, tmp_path, cache, capsys):
    """N_CONFIGS=2 into a folder holding 3 glasses: metadata.pkl lists 2, augment_data.py uses
    those 2 and names the third, which both leave in place."""
    import augment_data
    import softglass.cli
    import softglass.files
    _copy(two_glasses, tmp_path, ["glass_data_000.pkl", "glass_data_001.pkl", "glass_data_001.pkl"],
          ["glass_data_000.pkl", "glass_data_001.pkl", "glass_data_002.pkl"])
    code, out, _ = _main_here(capsys, str(tmp_path), cache, 2, 1)
    assert code == 0 and "2 done, 0 to make" in out and "1 file(s)" in out
    assert "glass_data_002.pkl" in out
    meta = pickle.loads((tmp_path / "metadata.pkl").read_bytes())
    assert [r["file"] for r in meta["records"]] == ["glass_data_000.pkl", "glass_data_001.pkl"]
    saved = softglass.cli.constants_of(vars(augment_data))
    try:
        augment_data.main([f"--DATA_DIR={tmp_path}", "--N_ROTATIONS=2"])
    finally:
        vars(augment_data).update(saved)
    out = capsys.readouterr().out
    assert "1 base glass file(s)" in out and "glass_data_002.pkl" in out
    assert augment_data.read_manifest(str(tmp_path))["bases"] == [0, 1]
    assert sorted(os.listdir(tmp_path / "augmented")) == [f"aug_{i:04d}.pkl" for i in range(4)] + [
        "manifest.json"]
    assert (tmp_path / "glass_data_002.pkl").exists()


def test_forwarded_constant_that_would_change_nothing_is_refused(tmp_path, capsys):
    """Each glass draws its density from DENSITY_RANGE: --DENSITY would be silently ignored."""
    code, _, err = _main_here(capsys, str(tmp_path), "", 1, 1, extra=["--DENSITY=1.0"])
    assert code != 0 and "--DENSITY has no effect" in err
    assert "DENSITY_RANGE" in err and os.listdir(tmp_path) == []


def test_an_interrupted_regeneration_leaves_no_metadata_vouching_for_a_mixture(
        two_glasses, tmp_path, cache, monkeypatch):
    """metadata.pkl describes a finished set: a regeneration killed halfway (old and new glasses
    side by side) leaves none, so augment_data.py refuses instead of mixing two protocols."""
    import augment_data
    import generate_diverse_data as gdd
    import generate_glass_data as ggd
    import softglass.cli
    import softglass.files
    _copy(two_glasses, tmp_path, ["glass_data_000.pkl", "glass_data_001.pkl", "metadata.pkl"])

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(gdd, "make_glasses", interrupted)
    saved = [(m, softglass.cli.constants_of(vars(m))) for m in (gdd, ggd)]
    try:
        with pytest.raises(SystemExit, match="interrupted: finished glasses are kept"):
            gdd.main(_args(str(tmp_path), cache, 2, 1,
                           extra=["--HEAT_STEPS=200", "--REGENERATE=True"])[2:])
    finally:
        for module, constants in saved:
            vars(module).update(constants)
    assert not (tmp_path / "metadata.pkl").exists()
    with pytest.raises(softglass.files.GlassFileError, match="metadata.pkl: file not found"):
        augment_data.base_files(str(tmp_path))


@pytest.mark.parametrize("setting, message", [
    ("--DENSITY_RANGE=1.3,1.1", r"DENSITY_RANGE=\(1.3, 1.1\): reversed.*--DENSITY_RANGE=1.1,1.3"),
    ("--QUENCH_STEPS_RANGE=7000,3000", r"QUENCH_STEPS_RANGE=\(7000, 3000\): reversed"),
    ("--TEMPERATURE_RANGE=0,0.4", r"TEMPERATURE_RANGE=\(0.0, 0.4\): its values must be > 0"),
    ("--SPECIES_RATIO_RANGE=0.8,1.2", r"SPECIES_RATIO_RANGE=.*must be in \[0.0, 1.0\]")])
def test_a_reversed_or_impossible_range_is_refused_before_any_glass(tmp_path, capsys, setting,
                                                                    message):
    """Refused at the start, naming the constant (numpy would draw from a reversed uniform range
    without a word; a reversed integer range failed in every worker, then advised a rerun)."""
    import re
    code, _, err = _main_here(capsys, str(tmp_path / "d"), "", 1, 1, extra=[setting])
    assert code != 0 and re.search(message, err), err
    assert "rerun" not in err and not (tmp_path / "d").exists()


def test_an_unwritable_data_dir_is_refused_before_any_glass(tmp_path, capsys, monkeypatch):
    """A DATA_DIR that cannot be created (a file in the way) or written (read-only) stops the run
    at once, before any cluster starts, naming DATA_DIR."""
    import generate_diverse_data as gdd
    monkeypatch.setattr(gdd, "make_glasses", lambda *a: pytest.fail("a glass was started"))
    (tmp_path / "a_file").write_text("")
    code, _, err = _main_here(capsys, str(tmp_path / "a_file" / "d"), "", 1, 1)
    assert code != 0 and "DATA_DIR=" in err and "a_file/d: cannot write there" in err, err
    if os.geteuid() == 0:                      # root writes into read-only folders anyway
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = _main_here(capsys, str(locked), "", 1, 1)
    assert code != 0 and "locked: cannot write there" in err, err


def test_only_closed_connection_errors_of_the_shutdown_are_dropped():
    """Installed for the cluster's shutdown, ShutdownNoise drops Dask's CommClosedError (as the
    exception of a record or in its message) and nothing else; before it is installed and after
    it is removed, that error is printed like any other."""
    import logging

    from distributed.comm.core import CommClosedError
    from softglass import dask_cluster
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("distributed.test_shutdown")
    logger.addHandler(Capture())
    logger.propagate = False

    def log_errors(tag):
        for err in (CommClosedError("in <TCP ...>: Stream is closed"), RuntimeError("real")):
            try:
                raise err
            except Exception:
                logger.exception(f"{tag} {type(err).__name__}")
        logger.error(f"{tag} message: CommClosedError: in <TCP (closed)>")

    log_errors("before")
    with dask_cluster.shutdown_noise_dropped() as noise:
        log_errors("running")
        noise.install()
        log_errors("shutdown")
    log_errors("after")
    assert seen == ["before CommClosedError", "before RuntimeError",
                    "before message: CommClosedError: in <TCP (closed)>",
                    "running CommClosedError", "running RuntimeError",
                    "running message: CommClosedError: in <TCP (closed)>",
                    "shutdown RuntimeError",
                    "after CommClosedError", "after RuntimeError",
                    "after message: CommClosedError: in <TCP (closed)>"]


# ================================ another glass former ===========================================
CUZR_FAST = ["--POTENTIAL=cuzr", "--N_ATOMS=330", "--MD_MELT_TIME=0.5",
             "--CUZR_QUENCH_RATE_RANGE=2e15,4e15"]


def test_a_cu_zr_set_draws_density_quench_rate_and_composition(tmp_path, cache, capsys):
    """--POTENTIAL=cuzr: each glass draws its density, quench rate (log-uniform) and Cu fraction
    from the CUZR_ ranges and records them and its potential; the protocol holds the Cu-Zr
    ranges, not the Kob-Andersen ones; a rerun keeps it; other Cu-Zr ranges are refused, named."""
    out = _main_succeeds(capsys, str(tmp_path), cache, 1, 1, extra=CUZR_FAST)
    assert "x_0 0.6" in out and "GPa" in out            # the former's progress line
    meta = pickle.loads((tmp_path / "metadata.pkl").read_bytes())
    p = meta["records"][0]["parameters"]
    snap = load_glass(str(tmp_path / "glass_data_000.pkl"))
    assert p["potential"]["name"] == "cuzr" and p["units"] == "metal"
    assert 0.0608 <= p["density"] <= 0.0622 and 2e15 <= p["quench_rate"] <= 4e15
    assert 0.60 <= p["species_ratio"] <= 0.68
    assert np.sum(snap["species"] == 0) == round(p["species_ratio"] * 330)
    assert snap["box_size"] ** 3 == pytest.approx(330 / p["density"], rel=1e-12)
    assert p["max_force"] < 1e-10
    ours = p["protocol"]["generate_diverse_data.py"]
    ggd_part = p["protocol"]["generate_glass_data.py"]
    assert ours["CUZR_DENSITY_RANGE"] == (0.0608, 0.0622) and ggd_part["POTENTIAL"] == "cuzr"
    assert not {"DENSITY_RANGE", "SW_DENSITY_RANGE", "SIGMA_SCALE_RANGE"} & set(ours)
    assert not {"CUZR_DENSITY", "CUZR_QUENCH_RATE", "CUZR_CU_FRACTION"} & set(ggd_part)
    assert "1 done, 0 to make" in _main_succeeds(capsys, str(tmp_path), cache, 1, 1,
                                                 extra=CUZR_FAST)
    code, _, err = _main_here(capsys, str(tmp_path), cache, 1, 1,
                              extra=CUZR_FAST + ["--CUZR_DENSITY_RANGE=0.060,0.062"])
    assert code != 0 and "CUZR_DENSITY_RANGE" in err and "other settings" in err


@pytest.mark.parametrize("setting, message", [
    ("--CUZR_DENSITY=0.06", r"--CUZR_DENSITY has no effect.*CUZR_DENSITY_RANGE"),
    ("--CUZR_CU_FRACTION_RANGE=0.7,0.6", r"CUZR_CU_FRACTION_RANGE=\(0.7, 0.6\): reversed"),
    ("--CUZR_QUENCH_RATE_RANGE=0,1e14", r"CUZR_QUENCH_RATE_RANGE=.*must be > 0"),
    ("--N_ATOMS=250", r"box of 15.90 A at the densest cuzr glass"),
    ("--CUZR_POTENTIAL_FILE=no/such.eam.fs", r"no/such.eam.fs"),
    ("--POTENTIAL=lj", r"POTENTIAL='lj': expected one of ka, cuzr, sw")])
def test_a_bad_former_setting_is_refused_before_any_glass(tmp_path, capsys, setting, message):
    import re
    args = [a for a in CUZR_FAST if a.split("=")[0] != setting.split("=")[0]] + [setting]
    code, _, err = _main_here(capsys, str(tmp_path / "d"), "", 1, 1, extra=args)
    assert code != 0 and re.search(message, err), err
    assert not (tmp_path / "d").exists()
