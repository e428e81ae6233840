"""One tiny glass per former (generate_glass_data.py --POTENTIAL=...), made by the script's own
main() with a fast quench: it converges, passes the physics checks inside make_former_glass
(symmetric Hessian, three zero modes, diagonal blocks, no overlaps), records its potential, and
has the short-range order of its kind."""
import pickle

import numpy as np
import pytest

from softglass.files import validate_snapshot

FAST = ["--MD_MELT_TIME=1", "--SHOW_PROGRESS=False", "--JAX_CACHE_DIR="]


def make(ggd, tmp_path, monkeypatch, *args):
    """Run generate_glass_data.main with args (its constants restored afterwards)."""
    for name in ("DATA_DIR", "POTENTIAL", "JAX_CACHE_DIR", "N_ATOMS", "MD_MELT_TIME",
                 "SHOW_PROGRESS", "SW_QUENCH_RATE", "CUZR_QUENCH_RATE", "CUZR_POTENTIAL_FILE"):
        monkeypatch.setattr(ggd, name, getattr(ggd, name))
    ggd.main([f"--DATA_DIR={tmp_path}", *FAST, *args])
    path, = tmp_path.glob("*.pkl")
    with open(path, "rb") as fh:
        return path.name, pickle.load(fh)


def test_a_tiny_amorphous_silicon_glass(ggd, tmp_path, monkeypatch):
    name, snap = make(ggd, tmp_path, monkeypatch, "--POTENTIAL=sw", "--N_ATOMS=216",
                      "--SW_QUENCH_RATE=1e15")
    assert name == "sw_glass_data_216.pkl"            # never a Kob-Andersen file's name
    validate_snapshot(snap, name, 216)
    p = snap["parameters"]
    assert p["potential"]["name"] == "sw" and p["potential"]["lambda"] == 31.5
    assert p["max_force"] < ggd.MD_FORCE_TOL
    assert np.all(snap["species"] == 0)
    assert snap["softness_score"].sum() == pytest.approx(ggd.N_SOFT_MODES, rel=1e-10)
    net = p["network"]                                 # a fourfold network with tetrahedral angles
    assert 3.8 < net["mean_coordination"] < 4.3 and net["fourfold_fraction"] > 0.7
    assert 105 < net["bond_angle_mean"] < 112 and net["bond_angle_std"] < 18


def test_a_box_too_small_for_the_cutoff_is_refused(ggd, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="(?s)not wider than twice sw's cutoff.*nothing written"):
        make(ggd, tmp_path, monkeypatch, "--POTENTIAL=sw", "--N_ATOMS=27")


def test_a_tiny_cu64zr36_glass(ggd, tmp_path, monkeypatch):
    name, snap = make(ggd, tmp_path, monkeypatch, "--POTENTIAL=cuzr", "--N_ATOMS=320",
                      "--CUZR_QUENCH_RATE=1e15")
    assert name == "cuzr_glass_data_320.pkl"
    validate_snapshot(snap, name, 320)
    p = snap["parameters"]
    assert p["potential"]["name"] == "cuzr" and p["potential"]["elements"] == ["Cu", "Zr"]
    assert len(p["potential"]["sha256"]) == 64                # which file, exactly
    assert p["max_force"] < ggd.MD_FORCE_TOL
    assert np.sum(snap["species"] == 0) == round(0.64 * 320)  # Cu64Zr36
    assert abs(p["pressure_bar"]) < 2e4                       # near zero pressure (2 GPa)
    assert -4.6 < snap["energy"] / 320 < -4.2                 # eV per atom
    assert snap["softness_score"].sum() == pytest.approx(ggd.N_SOFT_MODES, rel=1e-10)


def test_a_missing_potential_file_is_named_before_any_work(ggd, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="(?s)no/such.eam.fs.*nothing written"):
        make(ggd, tmp_path, monkeypatch, "--POTENTIAL=cuzr", "--N_ATOMS=320",
             "--CUZR_POTENTIAL_FILE=no/such.eam.fs")
