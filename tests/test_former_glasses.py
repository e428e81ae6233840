"""One tiny glass per former (generate_glass_data.py --POTENTIAL=...), made by the script's own
main() with a fast quench: it converges, passes the physics checks inside make_former_glass
(symmetric Hessian, three zero modes, diagonal blocks, no overlaps), records its potential, and
has the short-range order of its kind."""
import pickle

import numpy as np
import pytest

from softglass.cli import constants_of
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


@pytest.fixture(scope="module")
def cuzr_glass(ggd, tmp_path_factory):
    """A 320-atom Cu64Zr36 glass quenched at 1e15 K/s: (its file, the snapshot)."""
    folder = tmp_path_factory.mktemp("cuzr")
    with pytest.MonkeyPatch.context() as monkeypatch:
        name, snap = make(ggd, folder, monkeypatch, "--POTENTIAL=cuzr", "--N_ATOMS=320",
                          "--CUZR_QUENCH_RATE=1e15")
    return folder / name, snap


def test_a_tiny_cu64zr36_glass(ggd, cuzr_glass):
    path, snap = cuzr_glass
    name = path.name
    assert name == "cuzr_glass_data_320.pkl"
    validate_snapshot(snap, name, 320)
    p = snap["parameters"]
    assert p["potential"]["name"] == "cuzr" and p["potential"]["elements"] == ["Cu", "Zr"]
    assert len(p["potential"]["sha256"]) == 64                # which file, exactly
    assert p["max_force"] < ggd.MD_FORCE_TOL
    assert np.sum(snap["species"] == 0) == round(0.64 * 320)  # Cu64Zr36
    assert abs(p["pressure_bar"]) < 3e4     # near zero pressure (a 1e15 K/s glass: ~+1.7 GPa)
    assert -4.6 < snap["energy"] / 320 < -4.2                 # eV per atom
    assert snap["softness_score"].sum() == pytest.approx(ggd.N_SOFT_MODES, rel=1e-10)


def test_a_missing_potential_file_is_named_before_any_work(ggd, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="(?s)no/such.eam.fs.*nothing written"):
        make(ggd, tmp_path, monkeypatch, "--POTENTIAL=cuzr", "--N_ATOMS=320",
             "--CUZR_POTENTIAL_FILE=no/such.eam.fs")


def test_predict_refuses_a_model_of_another_former_unless_told(cuzr_glass, tmp_path):
    """The shipped Kob-Andersen model on a Cu-Zr glass: refused, saying why and what to do;
    with ANY_FORMER=True predicted as a transfer (lengths and stiffnesses rescaled), said so in
    the warnings the .json records, and scored against the glass's own labels."""
    import json

    import predict
    path, snap = cuzr_glass
    args = [f"--INPUT={path}", "--TRAINED_MODEL=/nonexistent.pth", f"--OUTPUT_DIR={tmp_path}"]
    saved = constants_of(vars(predict))                 # main() sets the module's constants
    try:
        with pytest.raises(SystemExit, match="is a cuzr glass.*trained on ka glasses.*ANY_"):
            predict.main(args)
        assert not list(tmp_path.iterdir())             # refused before writing anything
        summary = predict.main(args + ["--ANY_FORMER=True"])
    finally:
        vars(predict).update(saved)
    assert any("a transfer" in w for w in summary["warnings"])
    assert summary["R"] is not None and np.isfinite(summary["R"])
    recorded = json.loads((tmp_path / (path.stem + "_softness.json")).read_text())
    assert recorded["warnings"] == summary["warnings"]


def test_a_transfer_rescales_lengths_and_stiffnesses(cuzr_glass):
    """transfer_scales puts the glass at the middle of the model's density range and its mean
    local stiffness at the model's mean; a glass of the model's own former is left alone."""
    import predict
    from softglass.prediction import transfer_scales
    path, snap = cuzr_glass
    glass = predict.read_glass(str(path))
    card = dict(former="ka", density_range=[1.1, 1.3], x_mean=[10.0, 30.0, 50.0])
    length, stiffness = transfer_scales(glass, card)
    n = len(snap["species"])
    assert n / (snap["box_size"] * length) ** 3 == pytest.approx(1.2, rel=1e-12)
    assert np.mean(snap["eigenvalues"]) * stiffness == pytest.approx(30.0, rel=1e-12)
    assert transfer_scales(glass, dict(card, former="cuzr")) == (1.0, 1.0)


def test_the_label_over_n_modes_of_a_former_glass_is_its_own_hessians(ggd, cuzr_glass):
    """train.py's labels over n modes (lowest_modes_of_snapshot): the glass's Hessian with the
    potential its snapshot records, made again and checked. Over the stored label's 10 modes it
    gives the stored softness back; over more, a label that still sums to its mode count."""
    from softglass import hessian as hs
    path, snap = cuzr_glass
    vals, vecs = ggd.lowest_modes_of_snapshot(snap, 3 + 20, str(path))
    assert np.abs(hs.softness_from_modes(vecs, 3, 10) - snap["softness_score"]).max() < 1e-8
    assert np.allclose(vals[:13], snap["parameters"]["lowest_eigenvalues"][:13], atol=1e-9)
    assert hs.softness_from_modes(vecs, 3, 20).sum() == pytest.approx(20, rel=1e-10)


def test_a_recorded_potential_that_is_not_this_codes_is_refused(cuzr_glass):
    """potential_of_record makes the recorded potential again, or names why it cannot: another
    EAM file (its sha256), another Stillinger-Weber parameter, a snapshot with none."""
    from softglass.formers import make_potential, potential_of_record
    path, snap = cuzr_glass
    record = snap["parameters"]["potential"]
    assert potential_of_record(record).sha256 == record["sha256"]
    with pytest.raises(ValueError, match="x.pkl: its EAM file .sha256 000000000000"):
        potential_of_record(dict(record, sha256="0" * 64), "x.pkl")
    sw = make_potential("sw").record()
    assert potential_of_record(sw).lam == 31.5
    with pytest.raises(ValueError, match=r"y.pkl: its sw parameters differ .*\['lambda'\]"):
        potential_of_record(dict(sw, **{"lambda": 21.0}), "y.pkl")
    with pytest.raises(ValueError, match="records no potential of another glass former"):
        potential_of_record(None)


def test_a_former_graph_has_as_many_neighbours_as_a_kob_andersen_one(train, cuzr_glass,
                                                                     tmp_path, monkeypatch):
    """train.py reads the former and the densities from the set's metadata: a Cu-Zr set gets
    CUTOFF (1.2 / rho)^(1/3) in A (or FORMER_CUTOFF), a Kob-Andersen set CUTOFF in sigma."""
    from softglass.files import atomic_write_pickle
    path, snap = cuzr_glass
    p = snap["parameters"]
    atomic_write_pickle(str(tmp_path / "metadata.pkl"), dict(
        records=[dict(file=path.name, parameters=p)], n_configs=1, n_atoms=320))
    monkeypatch.setattr(train, "DATA_DIR", str(tmp_path))
    cutoff = train.graph_cutoff()
    assert cutoff == pytest.approx(2.5 * (1.2 / p["density"]) ** (1 / 3), rel=1e-12)
    assert 6.5 < cutoff < 7.0                                       # A, for rho ~ 0.06 A^-3
    neighbours = 4 / 3 * np.pi * cutoff ** 3 * p["density"]
    assert neighbours == pytest.approx(4 / 3 * np.pi * 2.5 ** 3 * 1.2, rel=1e-12)
    monkeypatch.setattr(train, "FORMER_CUTOFF", 6.0)
    assert train.graph_cutoff() == 6.0
    atomic_write_pickle(str(tmp_path / "metadata.pkl"), dict(
        records=[dict(file="glass_data_000.pkl", parameters=dict(density=1.2))], n_configs=1,
        n_atoms=320))
    assert train.graph_cutoff() == train.CUTOFF


def test_a_shipped_cu_zr_model_predicts_a_cu_zr_glass_and_is_suggested(cuzr_glass, tmp_path):
    """The Cu-Zr models ship (make cuzr): the Kob-Andersen model's refusal names them, and one
    predicts a Cu-Zr glass as its own former's, no transfer, scored against the file's labels."""
    import os

    import predict
    from conftest import ROOT
    path, snap = cuzr_glass
    shipped = os.path.join(ROOT, "models", "cuzr_s10.pth")
    args = [f"--INPUT={path}", f"--OUTPUT_DIR={tmp_path}"]
    saved = constants_of(vars(predict))
    try:
        with pytest.raises(SystemExit, match=r"shipped: --MODEL=models/cuzr_s10.pth or "
                                             r"--MODEL=models/cuzr_s100.pth"):
            predict.main(args + ["--TRAINED_MODEL=/nonexistent.pth"])
        summary = predict.main(args + [f"--MODEL={shipped}"])
    finally:
        vars(predict).update(saved)
    assert not any("transfer" in w for w in summary["warnings"]), summary["warnings"]
    assert not any("extrapolation" in w for w in summary["warnings"]), summary["warnings"]
    assert summary["R"] is not None and summary["R"] > 0.1      # a 320-atom glass, S10


def test_train_writes_a_former_test_glass_with_its_own_elements(cuzr_glass, tmp_path):
    """train.py's test figures for a Cu-Zr set: the test glass's extended XYZ carries Cu and Zr,
    and no Lennard-Jones header (predict.py would read sigma and epsilon from one)."""
    import types

    import ase.io
    import torch
    from softglass import figures
    path, snap = cuzr_glass
    n = len(snap["species"])
    copy = dict(snap, cell=snap["box_size"] * np.eye(3))
    s = dict(y_std=torch.tensor(1.0), y_mean=torch.tensor(0.0))
    label = torch.tensor(snap["softness_score"])
    figures.test_figures([types.SimpleNamespace(base=0, path=str(path))],
                         {0: (label + 0.01 * torch.arange(n), label)}, s, str(tmp_path),
                         lambda p: copy)
    atoms = ase.io.read(str(tmp_path / "test_glass.xyz"))
    assert sorted(set(atoms.get_chemical_symbols())) == ["Cu", "Zr"]
    assert np.sum(np.array(atoms.get_chemical_symbols()) == "Cu") == np.sum(snap["species"] == 0)
    assert "sigma" not in atoms.info and "epsilon" not in atoms.info
