"""The shipped models (models/, `make models`): self-describing, weights_only files that
predict.py falls back on, and that reproduce the test R of the run that made them."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = [("default_s10.pth", "model_default_s10", "softness", 10),
           ("s100.pth", "model_s100", "softness", 100),
           ("cuzr_s10.pth", "model_cuzr_s10", "softness", 10),           # make cuzr
           ("cuzr_s100.pth", "model_cuzr_s100", "softness", 100)]


def test_every_model_file_in_models_is_a_checked_one():
    """A model added to models/ is added above, so that it is checked to describe itself."""
    assert sorted(os.listdir(os.path.join(ROOT, "models"))) == sorted(s[0] for s in SHIPPED)


@pytest.mark.parametrize("name,record,label,modes", SHIPPED)
def test_a_shipped_model_describes_itself(name, record, label, modes):
    """It loads with weights_only, names its data (fingerprint, glasses' size, densities), label
    and test R, and that R is its run record's."""
    card = torch.load(os.path.join(ROOT, "models", name), weights_only=True)
    with open(os.path.join(ROOT, "runs", record, "results.json")) as fh:
        results = json.load(fh)
    data = results["data"]
    assert card["label"] == data["label"] == label
    assert card["n_soft_modes"] == data["n_soft_modes"] == modes
    assert card["data_fingerprint"] == data["data_fingerprint"]
    assert card["test"]["R"] == results["test_R"] and card["test"]["baselines"] == \
        results["baselines"]
    assert card["n_atoms"] == 1000 and len(card["architecture"]) >= 7
    former = "cuzr" if name.startswith("cuzr") else "ka"     # (the first model predates the key)
    assert card.get("former", "ka") == data.get("former", "ka") == former
    assert card["architecture"]["cutoff"] == data.get("cutoff", 2.5)   # A for Cu-Zr, sigma for KA
    assert os.path.getsize(os.path.join(ROOT, "models", name)) < 8e6          # small


def test_predict_uses_the_shipped_model_on_an_ase_file(tmp_path, tiny_glass):
    """Right after the install, with no model trained: an extended XYZ written by ase.io.write
    with Ni/P symbols is predicted with models/default_s10.pth, which predict.py names, within a
    minute."""
    import ase
    import ase.io
    atoms = ase.Atoms(symbols=np.where(tiny_glass["species"] == 0, "Ni", "P"),
                      positions=tiny_glass["positions"], cell=np.eye(3) * tiny_glass["box_size"],
                      pbc=True)
    ase.io.write(str(tmp_path / "mine.xyz"), atoms)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"),
                           f"--INPUT={tmp_path / 'mine.xyz'}", "--TRAINED_MODEL=/nonexistent.pth"],
                          capture_output=True, text=True, cwd=tmp_path)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "default_s10.pth (the shipped model" in proc.stdout
    out = json.loads((tmp_path / "mine_softness.json").read_text())
    assert out["model_source"].startswith("the shipped model")
    pred = ase.io.read(str(tmp_path / "mine_softness.xyz")).arrays["softness_pred"]
    assert len(pred) == len(tiny_glass["species"]) and np.all(np.isfinite(pred))
    assert seconds < 60, seconds
