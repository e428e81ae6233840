"""augment_data.py: rotations with the cell, invariance of the copied labels, resume, bad input."""
import os

import numpy as np
import pytest

import glass_io
from glass_io import atomic_write_pickle


@pytest.fixture()
def aug(tmp_path, tiny_glass):
    import augment_data
    saved = glass_io.constants_of(vars(augment_data))
    for k in range(2):
        atomic_write_pickle(tmp_path / f"glass_data_{k:03d}.pkl", tiny_glass)
    atomic_write_pickle(tmp_path / "glass_data_1k.pkl", tiny_glass)    # not a base: ignored
    augment_data.main([f"--DATA_DIR={tmp_path}", "--N_ATOMS=200", "--N_ROTATIONS=3"])
    yield augment_data, tmp_path
    vars(augment_data).update(saved)


def test_files_schema_and_proper_rotations(aug, tiny_glass):
    module, d = aug
    files = sorted(os.listdir(d / "augmented"))
    assert files == [f"aug_{i:04d}.pkl" for i in range(6)]
    rotations = []
    for i, name in enumerate(files):
        snap = module.load_augmented(str(d / "augmented" / name), n_atoms=200)
        assert snap["base_index"] == i // 3
        q = snap["rotation"]
        assert np.linalg.det(q) == pytest.approx(1.0) and np.allclose(q @ q.T, np.eye(3))
        assert np.allclose(snap["cell"], tiny_glass["box_size"] * q.T)
        assert np.allclose(snap["positions"], tiny_glass["positions"] @ q.T)
        assert np.array_equal(snap["eigenvalues"], tiny_glass["eigenvalues"])
        rotations.append(q)
    assert not np.allclose(rotations[0], rotations[1])       # different draws per copy


def test_periodic_distances_and_labels_are_invariant(aug, ggd, tiny_glass):
    """Under the rotated cell every periodic pair vector is the rotated original, so the local
    eigenvalues and the softness recomputed on the rotated glass equal the copied ones."""
    module, d = aug
    snap = module.load_augmented(str(d / "augmented" / "aug_0004.pkl"))
    p = tiny_glass["parameters"]
    system = ggd.make_system(p["n_atoms"], p["density"], p["species_ratio"], p["sigma"],
                             p["epsilon"], p["seed"])
    i, j, rij, r, _, d1, d2 = ggd._pairs_with_parameters(tiny_glass["positions"], system)
    rot_rij = module.fractional_minimum_image(snap["positions"][j] - snap["positions"][i],
                                              snap["cell"])
    assert np.allclose(rot_rij, rij @ snap["rotation"].T, atol=1e-10)
    assert np.allclose(np.linalg.norm(rot_rij, axis=1), r, atol=1e-10)
    # the seed's way (rotated positions in the unrotated cube) changes distances: the reason for the cell
    cube = snap["positions"][j] - snap["positions"][i]
    cube -= tiny_glass["box_size"] * np.round(cube / tiny_glass["box_size"])
    assert not np.allclose(np.linalg.norm(cube, axis=1), r, atol=1e-3)
    h, local = ggd.hessian_from_pairs(200, i, j, ggd.pair_hessian_blocks(rot_rij, r, d1, d2))
    assert np.allclose(ggd.local_hessian_eigenvalues(local), snap["eigenvalues"], atol=1e-9)
    _, vecs = ggd.lowest_modes(h, 13)
    assert np.allclose(ggd.softness_from_modes(vecs), snap["softness_score"], atol=1e-8)


def test_rerun_keeps_valid_files_and_repairs_the_rest(aug, capsys):
    module, d = aug
    keep = d / "augmented" / "aug_0000.pkl"
    stamp = keep.stat().st_mtime_ns
    (d / "augmented" / "aug_0002.pkl").unlink()
    bad = d / "augmented" / "aug_0005.pkl"
    bad.write_bytes(bad.read_bytes()[:500])
    (d / "augmented" / ".aug_0003.pkl.x.tmp").write_bytes(b"partial")
    module.main([f"--DATA_DIR={d}", "--N_ATOMS=200", "--N_ROTATIONS=3"])
    out = capsys.readouterr().out
    assert "aug_0005.pkl: not a valid snapshot" in out and "wrote 2, kept 4" in out
    assert keep.stat().st_mtime_ns == stamp
    assert sorted(os.listdir(d / "augmented")) == [f"aug_{i:04d}.pkl" for i in range(6)]
    module.load_augmented(str(bad), n_atoms=200)


def test_bad_base_and_missing_bases_are_clear_errors(tmp_path, aug):
    module, d = aug
    (d / "augmented" / "aug_0003.pkl").unlink()
    (d / "glass_data_001.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SystemExit, match="glass_data_001.pkl: not a valid snapshot"):
        module.main([f"--DATA_DIR={d}", "--N_ATOMS=200", "--N_ROTATIONS=3"])
    assert (d / "augmented" / "aug_0000.pkl").exists()
    with pytest.raises(SystemExit, match="no base glasses"):
        module.main([f"--DATA_DIR={tmp_path / 'empty'}"])
