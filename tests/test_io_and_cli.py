"""The snapshot schema, the safe loader, atomic writes and the --NAME=value overrides."""
import os
import pickle

import numpy as np
import pytest

import softglass.cli
import softglass.files
from conftest import TINY, TINY_PROTOCOL, write_metadata
from softglass.cli import apply_overrides
from softglass.files import GlassFileError, atomic_write_pickle, load_glass


def test_schema_round_trip(tiny_glass, tmp_path):
    path = tmp_path / "glass.pkl"
    atomic_write_pickle(path, tiny_glass)
    back = load_glass(str(path), n_atoms=TINY["n_atoms"])
    assert set(back) == {"positions", "species", "box_size", "softness_score", "eigenvalues",
                         "energy", "parameters"}
    assert back["positions"].shape == (200, 3) and back["positions"].dtype == np.float64
    assert back["species"].shape == (200,) and set(np.unique(back["species"])) == {0, 1}
    assert back["eigenvalues"].shape == (200, 3)
    assert np.all(np.diff(back["eigenvalues"], axis=1) >= 0)     # ascending
    assert np.array_equal(back["softness_score"], tiny_glass["softness_score"])
    p = back["parameters"]
    assert p["sigma"].shape == (2, 2) and p["r_cutoff"] == pytest.approx(2.5)
    assert (back["species"] == 0).mean() == pytest.approx(0.8)
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_truncated_pickle_is_refused_naming_the_file(tiny_glass, tmp_path):
    path = tmp_path / "cut.pkl"
    data = pickle.dumps(tiny_glass)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GlassFileError, match="cut.pkl.*not a valid snapshot"):
        load_glass(str(path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned_by_glass_pickle",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"positions": _Evil()}))
    with pytest.raises(GlassFileError, match="evil.pkl.*forbidden global"):
        load_glass(str(path))
    assert not os.path.exists("/tmp/pwned_by_glass_pickle")


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("eigenvalues"), "missing keys"),
    (lambda s: s.__setitem__("positions", s["positions"][:, :2]), "shape"),
    (lambda s: s["softness_score"].__setitem__(3, np.nan), "non-finite"),
    (lambda s: s.__setitem__("species", s["species"].astype(float)), "dtype"),
    (lambda s: s["parameters"].pop("max_force"), "lacks"),
])
def test_bad_content_is_refused(tiny_glass, tmp_path, mutate, message):
    snap = pickle.loads(pickle.dumps(tiny_glass))
    mutate(snap)
    path = tmp_path / "bad.pkl"
    atomic_write_pickle(path, snap)
    with pytest.raises(GlassFileError, match=f"bad.pkl.*{message}"):
        load_glass(str(path))


def test_wrong_atom_count_and_missing_file(tiny_glass, tmp_path):
    path = tmp_path / "g.pkl"
    atomic_write_pickle(path, tiny_glass)
    with pytest.raises(GlassFileError, match="has 200 atoms, expected 1000"):
        load_glass(str(path), n_atoms=1000)
    with pytest.raises(GlassFileError, match="nope.pkl: file not found"):
        load_glass(str(tmp_path / "nope.pkl"))


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "keep.pkl"
    atomic_write_pickle(path, {"a": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        atomic_write_pickle(path, {"a": Boom()})
    assert pickle.loads(path.read_bytes()) == {"a": 1}
    assert os.listdir(tmp_path) == ["keep.pkl"]


def test_overrides_are_typed_and_bad_names_rejected():
    ns = dict(EPOCHS=200, LR=5e-4, DATA_DIR="data", USE_AMP=True, SIGMA=((1.0, 0.8), (0.8, 0.88)),
              lower=1)
    changed = apply_overrides(ns, ["--EPOCHS=3", "--LR=1e-3", "--DATA_DIR=/tmp/x", "--USE_AMP=false"])
    assert ns["EPOCHS"] == 3 and isinstance(ns["EPOCHS"], int)
    assert ns["LR"] == 1e-3 and ns["DATA_DIR"] == "/tmp/x" and ns["USE_AMP"] is False
    assert set(changed) == {"EPOCHS", "LR", "DATA_DIR", "USE_AMP"}
    with pytest.raises(SystemExit, match="(?s)unknown constant 'EPOCH'.*Valid names: DATA_DIR, EPOCHS"):
        apply_overrides(ns, ["--EPOCH=3"])
    with pytest.raises(SystemExit, match="--EPOCHS='three': not a valid int"):
        apply_overrides(ns, ["--EPOCHS=three"])
    with pytest.raises(SystemExit, match="not of the form --NAME=value"):
        apply_overrides(ns, ["EPOCHS=3"])
    apply_overrides(ns, ["--SIGMA=((1.1, 0.8), (0.8, 0.9))"])
    assert ns["SIGMA"] == ((1.1, 0.8), (0.8, 0.9))
    with pytest.raises(SystemExit, match="expected shape"):
        apply_overrides(ns, ["--SIGMA=(1.0, 0.8)"])
    with pytest.raises(SystemExit, match="unknown constant 'lower'"):
        apply_overrides(ns, ["--lower=2"])


def test_main_writes_a_valid_file_and_refuses_a_too_small_box(ggd, tiny_glass, tmp_path):
    """The script end to end (tiny settings): one valid file, no temp files; then a box narrower
    than 2 r_cut stops with a clear error and leaves the existing file untouched."""
    saved = softglass.cli.constants_of(vars(ggd))
    args = [f"--{k}={v}" for k, v in TINY_PROTOCOL.items()] + [
        f"--DATA_DIR={tmp_path}", "--N_ATOMS=200", "--QUENCH_STEPS=600", "--SEED=3"]
    try:
        ggd.main(args)
        path = tmp_path / ggd.output_file(200)
        snap = load_glass(str(path), n_atoms=200)
        assert np.allclose(snap["softness_score"], tiny_glass["softness_score"])   # deterministic
        before = path.read_bytes()
        with pytest.raises(SystemExit, match="(?s)minimum-image.*nothing written"):
            ggd.main(args + ["--N_ATOMS=150"])
        assert path.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == sorted([ggd.output_file(200), "timings.json"])
        assert softglass.files.read_wall_times(tmp_path)["generate_glass_data.py"]["seconds"] > 0
    finally:
        vars(ggd).update(saved)


def test_wall_times_accumulate_per_script_and_survive_a_bad_file(tmp_path):
    from softglass.files import read_wall_times, record_wall_time
    assert read_wall_times(tmp_path) == {}
    (tmp_path / "timings.json").write_text("{not json")
    assert read_wall_times(tmp_path) == {}
    record_wall_time(tmp_path, "a.py", 1.26)
    record_wall_time(tmp_path, "b.py", 2.0, glasses_made=3)
    t = read_wall_times(tmp_path)
    assert t["a.py"]["seconds"] == 1.3 and t["b.py"]["glasses_made"] == 3


def test_compare_glass_sets_tells_same_from_different_glasses(tiny_glass, tmp_path):
    """experiments/are_glass_sets_alike.py: the same glass is 'same', a displaced one differs
    and its FIRE mass is reported (the check behind README's 108-of-120 reproducibility claim)."""
    import copy
    import json
    import subprocess
    import sys
    ours, other = tmp_path / "ours", tmp_path / "other"
    ours.mkdir(), other.mkdir()
    moved = copy.deepcopy(tiny_glass)
    moved["positions"] = moved["positions"].copy()
    moved["positions"][7] += 0.05
    moved["parameters"]["fire_mass"] = 2.0
    for k in range(2):
        atomic_write_pickle(ours / f"glass_data_{k:03d}.pkl", tiny_glass)
    atomic_write_pickle(other / "glass_data_000.pkl", tiny_glass)
    atomic_write_pickle(other / "glass_data_001.pkl", moved)
    atomic_write_pickle(ours / "glass_data_002.pkl", tiny_glass)      # only in one set: skipped
    for d in (ours, other):   # a file its metadata.pkl does not list is not of the set: skipped
        atomic_write_pickle(d / "glass_data_003.pkl", moved)
    write_metadata(ours, [f"glass_data_{k:03d}.pkl" for k in range(3)], 200)
    write_metadata(other, [f"glass_data_{k:03d}.pkl" for k in range(2)] + ["glass_data_003.pkl"],
                   200)
    out = tmp_path / "cmp.json"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                          "are_glass_sets_alike.py")
    proc = subprocess.run([sys.executable, script, f"--DATA_DIR={ours}", f"--OTHER_DIR={other}",
                           f"--OUT_FILE={out}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["compared"] == 2 and summary["same"] == 1
    assert summary["differ"] == ["glass_data_001.pkl"]
    assert summary["per_glass"]["glass_data_001.pkl"]["max_displacement"] == pytest.approx(0.05)
    assert summary["other_fire_mass_above_1"] == 1 and summary["of_which_same"] == 0
    assert summary["differ_with_other_fire_mass_1"] == []


# --help: built from the script's source, printed before the script's heavy imports ------------
_RUN_HELP = """import runpy, sys, time
sys.argv = [{script!r}, {flag!r}]
t0 = time.perf_counter()
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
else:
    raise AssertionError("--help did not exit")
print(([m for m in ("jax", "torch") if m in sys.modules], time.perf_counter() - t0))
"""


def _help_of(script, flag="--help"):
    """stdout of `python script flag`, the heavy modules it had imported and its wall time."""
    import ast
    import subprocess
    import sys
    from conftest import ROOT
    proc = subprocess.run([sys.executable, "-c", _RUN_HELP.format(script=script, flag=flag)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text, _, last = proc.stdout.rstrip().rpartition("\n")
    return (text, *ast.literal_eval(last))


@pytest.mark.parametrize("script, module, flag, line, after, section", [
    ("train.py", "train", "--help", ("--CUTOFF=2.5", "sigma_AA, graph and radial-basis cutoff"),
     ("--ROTATION_SHORTCUT=False", "N_ROTATIONS copies (same epoch length"),
     '--- training (seed "Hyperparameters") ---'),
    ("generate_glass_data.py", "generate_glass_data", "-h", ("--DENSITY=1.2", "atoms / sigma_AA^3"),
     ("--MAX_MOVE=0.02", "leave at r ~ 0.9 sigma have LJ forces"), "--- Hessian and labels ---"),
])
def test_help_lists_every_constant_with_its_comment_before_heavy_imports(script, module, flag,
                                                                         line, after, section):
    import importlib
    text, heavy, seconds = _help_of(script, flag)
    assert heavy == [] and seconds < 3, (heavy, seconds)      # jax/torch never imported
    lines = text.splitlines()
    assert "--NAME=value or --NAME value" in lines[1]
    for name in softglass.cli.constants_of(vars(importlib.import_module(module))):
        assert f"--{name}=" in text, name
    at = [i for i, s in enumerate(lines) if s.split()[:1] == [line[0]] and line[1] in s]
    assert at, f"{line} not on one line"                      # value and units side by side
    first = next(i for i, s in enumerate(lines) if s.split()[:1] == [after[0]])
    assert after[1] in lines[first + 1]                       # the comment's continuation line
    assert section in lines                                   # the source's section headers


def test_diverse_help_lists_the_forwarded_protocol():
    text, heavy, _ = _help_of("generate_diverse_data.py")
    assert heavy == []
    own, _, forwarded = text.partition("=== forwarded to generate_glass_data.py")
    assert "--DENSITY_RANGE=(1.1, 1.3)" in own and "--HEAT_STEPS" not in own
    assert "--HEAT_STEPS=2000" in forwarded and "--- protocol ---" in forwarded
    assert "--N_ATOMS" not in forwarded      # its own N_ATOMS shadows generate_glass_data's


def test_space_separated_overrides_and_negative_values(tmp_path):
    import subprocess
    import sys
    import types
    from conftest import ROOT
    import generate_diverse_data
    ns = dict(EPOCHS=200, LR=5e-4, DATA_DIR="data", EIGSH_SHIFT=-0.1)
    changed = apply_overrides(ns, ["--EPOCHS", "3", "--DATA_DIR", "/tmp/x", "--EIGSH_SHIFT",
                                   "-0.2", "--LR=1e-3"])
    assert changed == dict(EPOCHS=3, DATA_DIR="/tmp/x", EIGSH_SHIFT=-0.2, LR=1e-3)
    assert softglass.cli.normalise_argv(["--EIGSH_SHIFT", "-1e-2", "-h"]) == ["--EIGSH_SHIFT=-1e-2", "-h"]
    for argv in (["--EPOCHS"], ["--EPOCHS", "--LR=1e-3"], ["--LR=1e-3", "--EPOCHS"]):
        with pytest.raises(SystemExit, match="--EPOCHS needs a value"):
            apply_overrides(dict(ns), argv)
    with pytest.raises(SystemExit, match="(?s)unknown constant 'EPOCH'.*Valid names: DATA_DIR"):
        apply_overrides(dict(ns), ["--EPOCH", "3"])
    # generate_diverse_data splits the arguments between its constants and the forwarded ones
    protocol = types.SimpleNamespace(HEAT_STEPS=2000, EIGSH_SHIFT=-0.1, N_ATOMS=1000)
    assert generate_diverse_data.split_overrides(
        ["--N_CONFIGS", "4", "--HEAT_STEPS", "50", "--EIGSH_SHIFT", "-0.2", "--N_ATOMS=200"],
        protocol) == (["--N_CONFIGS=4", "--N_ATOMS=200"], ["--HEAT_STEPS=50", "--EIGSH_SHIFT=-0.2"])
    # end to end: the space-separated value reaches the script; a trailing name is refused
    def augment(*args):
        return subprocess.run([sys.executable, "augment_data.py", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    proc = augment("--DATA_DIR", str(tmp_path), "--SEED", "1")
    assert proc.returncode == 1 and "metadata.pkl: file not found" in proc.stderr
    assert str(tmp_path) in proc.stderr
    proc = augment("--DATA_DIR", str(tmp_path), "--SEED")
    assert proc.returncode == 1 and "--SEED needs a value" in proc.stderr


def test_the_cache_folder_read_before_overrides(tmp_path, monkeypatch):
    """jax-md's import reads its programs from the run's JAX_CACHE_DIR, found on the command line
    before the overrides are applied: only for a script of this folder as the main program, only
    a folder that exists (never created), and "" keeps it off."""
    import sys
    import types
    from conftest import ROOT
    main = types.ModuleType("__main__")
    main.__file__ = os.path.join(ROOT, "generate_glass_data.py")
    monkeypatch.setitem(sys.modules, "__main__", main)
    there, missing = tmp_path / "cache", tmp_path / "missing"
    there.mkdir()
    for argv, default, expected in (
            ([], str(there), str(there)),
            (["--JAX_CACHE_DIR", str(there)], ".jax_cache", str(there)),
            ([f"--JAX_CACHE_DIR={there}", "--JAX_CACHE_DIR="], ".jax_cache", None),   # the last
            ([f"--JAX_CACHE_DIR={missing}"], str(there), None),
            (["--SEED"], str(there), None)):                 # malformed: main() reports it
        monkeypatch.setattr(sys, "argv", ["generate_glass_data.py", *argv])
        found = softglass.cli.jax_cache_dir_before_overrides(dict(JAX_CACHE_DIR=default))
        assert found == expected, argv
    assert not missing.exists()
    main.__file__ = os.path.join(ROOT, "tests", "somewhere_else.py")      # pytest, a user's worker
    monkeypatch.setattr(sys, "argv", ["x", f"--JAX_CACHE_DIR={there}"])
    assert softglass.cli.jax_cache_dir_before_overrides(dict(JAX_CACHE_DIR=str(there))) is None


def test_a_new_cache_folder_takes_effect_and_empty_turns_it_off(ggd, tmp_path):
    """JAX opens its cache folder once: enable_compilation_cache must reset it on a change, or
    programs would silently keep going to the first folder (jax-md's import uses one first)."""
    import jax
    import jax.numpy as jnp
    first, second = tmp_path / "first", tmp_path / "second"

    def compile_new(k):                  # a program no earlier test compiled
        return jax.jit(lambda x: jnp.sin(x) * k + 0.123456789 * k)(jnp.arange(k + 7.0))

    def kept(folder):
        return len(os.listdir(folder)) if folder.exists() else 0
    try:
        ggd.enable_compilation_cache(str(first), min_compile_seconds=0)
        compile_new(1)
        assert kept(first) >= 1
        ggd.enable_compilation_cache(str(second), min_compile_seconds=0)
        n_first = kept(first)
        compile_new(2)
        assert kept(second) >= 1 and kept(first) == n_first
        ggd.enable_compilation_cache("")
        n_second = kept(second)
        compile_new(3)
        assert (kept(first), kept(second)) == (n_first, n_second)
    finally:
        ggd.enable_compilation_cache("")
