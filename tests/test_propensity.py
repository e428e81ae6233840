"""propensity.py and softglass.isoconfigurational on a synthetic ensemble: the tiny glass as the
configuration, replicas whose displacements grow with its softness (so the softness must find
them), the ensemble format's checks, and resuming from the per-configuration cache."""
import os

import numpy as np
import pytest

from softglass.cli import constants_of
from softglass.files import GlassFileError
from softglass import isoconfigurational as iso


def write_ensemble(path, glass, seed, n_replicas=6, **replace):
    """An ensemble in BOTAN's format whose replica displacements scale with sqrt(S_i)."""
    rng = np.random.default_rng(seed)
    x0 = np.mod(glass["positions"], glass["box_size"])
    amp = 0.05 + 0.3 * np.sqrt(glass["softness_score"] / glass["softness_score"].mean())
    runs = x0[None] + rng.normal(size=(n_replicas, len(x0), 3)) * amp[None, :, None]
    data = dict(types=glass["species"].astype(np.int8), initial_positions=x0, positions=runs)
    data.update(replace)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return data


def test_propensity_is_the_mean_squared_displacement_over_replicas(tiny_glass, tmp_path):
    data = write_ensemble(tmp_path / "e_1.npz", tiny_glass, 0)
    ens = iso.read_ensemble(str(tmp_path / "e_1.npz"), 1.2)
    expected = np.mean(np.sum((data["positions"] - data["initial_positions"]) ** 2, -1), 0)
    assert np.allclose(ens["propensity"], expected, rtol=1e-14)
    assert ens["replicas"] == 6 and np.isclose(ens["box"], tiny_glass["box_size"])


@pytest.mark.parametrize("replace, message", [
    (dict(positions=None), "missing positions"),
    (dict(initial_positions=np.zeros((5, 3))), "initial_positions has shape (5, 3)"),
    (dict(positions=np.zeros((4, 199, 3))), "every replica must hold the same 200 atoms"),
    (dict(positions=np.zeros((1, 200, 3))), "1 replica"),
    (dict(types=np.r_[np.zeros(199), 2].astype(np.int8)), "two species"),
    (dict(initial_positions=np.full((200, 3), np.nan)), "not finite at index (0, 0)"),
])
def test_bad_ensembles_are_refused_naming_the_file(tiny_glass, tmp_path, replace, message):
    path = tmp_path / "bad_1.npz"
    write_ensemble(path, tiny_glass, 0, **replace)
    with pytest.raises(GlassFileError, match=r"bad_1\.npz") as err:
        iso.read_ensemble(str(path), 1.2)
    assert message in str(err.value)


def test_a_wrong_density_is_caught_by_the_positions(tiny_glass, tmp_path):
    write_ensemble(tmp_path / "e_1.npz", tiny_glass, 0)
    with pytest.raises(GlassFileError, match="wrong DENSITY"):
        iso.read_ensemble(str(tmp_path / "e_1.npz"), 1.5)


def test_coarse_graining_keeps_a_constant_and_averages_neighbours(tiny_glass):
    r, box = tiny_glass["positions"], tiny_glass["box_size"]
    assert np.allclose(iso.coarse_grained(np.full(len(r), 3.0), r, box, 1.0, 2.0), 3.0)
    x = np.random.default_rng(1).normal(size=len(r))
    assert np.array_equal(iso.coarse_grained(x, r, box, 0.0, 2.0), x)
    smooth = iso.coarse_grained(x, r, box, 1.0, 2.0)
    assert smooth.std() < 0.6 * x.std()          # an average over ~10 neighbours
    # symmetric weights: the weighted mean over all atoms is preserved up to the weights' spread
    assert abs(smooth.mean() - x.mean()) < 0.1


def test_per_atom_energies_sum_to_the_total(tiny_glass):
    from softglass.files import system_of
    from softglass.forces import energy_and_forces, pairs_with_parameters
    system = system_of(tiny_glass)
    i, j, *_, phi, _, _ = pairs_with_parameters(tiny_glass["positions"], system)
    e = iso.per_atom_energy(phi, i, j, len(tiny_glass["positions"]))
    total, _ = energy_and_forces(tiny_glass["positions"], system)
    assert np.isclose(e.sum(), total, rtol=1e-12)


def test_truncated_shifted_mixture_matches_a_direct_sum(tiny_glass):
    """Kob and Andersen's own potential (each pair cut at 2.5 sigma_ab and shifted to 0 there),
    through the plug-in interface, against the pair sum written out."""
    import jax.numpy as jnp
    from softglass import molecular_dynamics as md
    from softglass.pairs import pair_list
    from softglass.potentials import TruncatedShiftedLJMixture
    sigma, epsilon = np.array([[1.0, 0.8], [0.8, 0.88]]), np.array([[1.0, 1.5], [1.5, 0.5]])
    pot = TruncatedShiftedLJMixture(sigma=tuple(map(tuple, sigma)),
                                    epsilon=tuple(map(tuple, epsilon)))
    r, box, s = tiny_glass["positions"], float(tiny_glass["box_size"]), tiny_glass["species"]
    energy, forces = md.energy_and_forces(pot, r, box, s)
    i, j, rij = pair_list(r, box, 2.5)
    d = np.linalg.norm(rij, axis=1)
    sg, ep = sigma[s[i], s[j]], epsilon[s[i], s[j]]
    lj = lambda x: 4 * ep * ((sg / x) ** 12 - (sg / x) ** 6)  # noqa: E731
    inside = d < 2.5 * sg
    assert np.isclose(energy, np.sum((lj(d) - lj(2.5 * sg))[inside]), rtol=1e-12)
    assert np.allclose(np.sum(forces, 0), 0, atol=1e-9)
    del jnp


@pytest.fixture
def propensity_module():
    import propensity as module
    saved = constants_of(vars(module))
    yield module
    vars(module).update(saved)


def test_propensity_script_scores_trains_and_resumes(tiny_glass, small_model, tmp_path,
                                                     propensity_module, monkeypatch, capsys):
    ens_dir = tmp_path / "ensembles"
    ens_dir.mkdir()
    for k in (1, 2, 3):
        write_ensemble(ens_dir / f"iso_{k}_tc07.npz", tiny_glass, k)
    out = tmp_path / "out"
    argv = [f"--ENSEMBLE_DIR={ens_dir}", "--MODE_COUNTS=10,30", f"--MODELS=small={small_model}",
            f"--START_MODEL={small_model}", "--VALIDATION=3", "--EPOCHS=1",
            "--TRUNCATED_CHECKS=0", f"--OUT_DIR={out}"]
    results = propensity_module.main(argv)
    table = results["structure_only"]
    # the replicas move with sqrt(S10): softness over its modes must find that, chance cannot
    assert table["S10"]["pearson"]["mean"] > 0.5
    assert set(table) >= {"S10", "S30", "vibrality30", "-lambda_1", "energy", "model_small",
                          "S10_cg"}
    assert set(results["learned"]) == {"trained_model", "trained_trees", "trained_linear"}
    assert results["training"]["train"] == [1, 2] and results["training"]["validation"] == [3]
    for c, fire in results["inherent_structures"].items():
        assert fire["max_force"] < 1e-10 and fire["moved_max"] < 1e-6   # already a minimum
    for name in ("results.json", "table.md", "propensity.png", "propensity_model.pth"):
        assert (out / name).exists()
    # resume: every configuration's physics comes from the cache, none is recomputed
    from softglass import dynamics
    monkeypatch.setattr(dynamics, "inherent_structure",
                        lambda *a, **k: pytest.fail("recomputed a cached configuration"))
    again = propensity_module.main(argv[:-3] + ["--EPOCHS=0", "--TRUNCATED_CHECKS=0",
                                                f"--OUT_DIR={out}"])
    assert again["structure_only"]["S10"] == table["S10"]


def test_propensity_script_refuses_bad_input_before_any_physics(tiny_glass, tmp_path,
                                                                propensity_module):
    ens_dir = tmp_path / "ensembles"
    ens_dir.mkdir()
    write_ensemble(ens_dir / "iso_1_tc07.npz", tiny_glass, 1)
    write_ensemble(ens_dir / "iso_2_tc07.npz", tiny_glass, 2, positions=np.zeros((3, 150, 3)))
    with pytest.raises(SystemExit, match=r"iso_2_tc07\.npz.*same 200 atoms"):
        propensity_module.main([f"--ENSEMBLE_DIR={ens_dir}", "--VALIDATION=1",
                                f"--OUT_DIR={tmp_path / 'o'}"])
    with pytest.raises(SystemExit, match="no \\*.npz files"):
        propensity_module.main([f"--ENSEMBLE_DIR={tmp_path}", f"--OUT_DIR={tmp_path / 'o'}"])
    os.remove(ens_dir / "iso_2_tc07.npz")
    with pytest.raises(SystemExit, match="VALIDATION=7"):
        propensity_module.main([f"--ENSEMBLE_DIR={ens_dir}", "--VALIDATION=7",
                                f"--OUT_DIR={tmp_path / 'o'}"])
    with pytest.raises(SystemExit, match="nowhere.pth: model file not found"):
        propensity_module.main([f"--ENSEMBLE_DIR={ens_dir}", "--EPOCHS=0",
                                "--MODELS=x=nowhere.pth", f"--OUT_DIR={tmp_path / 'o'}"])
