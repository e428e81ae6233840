"""The snapshot schema, the safe loader, atomic writes and the --NAME=value overrides."""
import os
import pickle

import numpy as np
import pytest

import glass_io
from conftest import TINY, TINY_PROTOCOL
from glass_io import GlassFileError, apply_overrides, atomic_write_pickle, load_glass


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
    saved = glass_io.constants_of(vars(ggd))
    args = [f"--{k}={v}" for k, v in TINY_PROTOCOL.items()] + [
        f"--DATA_DIR={tmp_path}", "--N_ATOMS=200", "--QUENCH_STEPS=600", "--SEED=3"]
    try:
        ggd.main(args)
        path = tmp_path / ggd.OUTPUT_FILE
        snap = load_glass(str(path), n_atoms=200)
        assert np.allclose(snap["softness_score"], tiny_glass["softness_score"])   # deterministic
        before = path.read_bytes()
        with pytest.raises(SystemExit, match="(?s)minimum-image.*nothing written"):
            ggd.main(args + ["--N_ATOMS=150"])
        assert path.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == sorted([ggd.OUTPUT_FILE, "timings.json"])
        assert glass_io.read_wall_times(tmp_path)["generate_glass_data.py"]["seconds"] > 0
    finally:
        vars(ggd).update(saved)


def test_wall_times_accumulate_per_script_and_survive_a_bad_file(tmp_path):
    from glass_io import read_wall_times, record_wall_time
    assert read_wall_times(tmp_path) == {}
    (tmp_path / "timings.json").write_text("{not json")
    assert read_wall_times(tmp_path) == {}
    record_wall_time(tmp_path, "a.py", 1.26)
    record_wall_time(tmp_path, "b.py", 2.0, glasses_made=3)
    t = read_wall_times(tmp_path)
    assert t["a.py"]["seconds"] == 1.3 and t["b.py"]["glasses_made"] == 3


def test_compare_glass_sets_tells_same_from_different_glasses(tiny_glass, tmp_path):
    """tests/benchmarks/compare_glass_sets.py: the same glass is 'same', a displaced one differs
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
    out = tmp_path / "cmp.json"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks",
                          "compare_glass_sets.py")
    proc = subprocess.run([sys.executable, script, f"--DATA_DIR={ours}", f"--OTHER_DIR={other}",
                           f"--OUT_FILE={out}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["compared"] == 2 and summary["same"] == 1
    assert summary["differ"] == ["glass_data_001.pkl"]
    assert summary["per_glass"]["glass_data_001.pkl"]["max_displacement"] == pytest.approx(0.05)
    assert summary["other_fire_mass_above_1"] == 1 and summary["of_which_same"] == 0
    assert summary["differ_with_other_fire_mass_1"] == []
