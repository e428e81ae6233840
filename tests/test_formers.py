"""The plug-in machinery of the glass formers (softglass.molecular_dynamics, formers,
hessian.autodiff_hessian), checked on the one potential with an independent implementation in
this project: the smoothed Kob-Andersen mixture through the plug-in interface must give the pair
kernels' energy, forces and analytic Hessian; NVT must hold and ramp its temperature; FIRE must
reach the inherent structure. Cu-Zr and Si glasses: tests/test_eam.py, test_stillinger_weber.py,
test_former_glasses.py."""
import jax
import numpy as np
import pytest

import generate_glass_data as ggd
from softglass import formers, forces, hessian as hs, molecular_dynamics as md


@pytest.fixture(scope="module")
def ka_start():
    """A quenched (not yet minimised) 256-atom KA configuration and its plug-in potential.
    (SHOW_PROGRESS is set off for the quench and restored: a module fixture must not leak a
    constant into the other test files.)"""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(ggd, "SHOW_PROGRESS", False)
        system = ggd.make_system(n_atoms=256, seed=3)
        r, _, _ = ggd.quenched_configuration(system, 0.44, 300, 3, log=lambda *a: None)
    return system, r, formers.make_potential("ka", **system)


SETTINGS = md.MDSettings(dt=0.002, tau=0.2, skin=0.3, chunk_steps=500, show_progress=False)


def test_unknown_former_is_refused():
    with pytest.raises(ValueError, match="POTENTIAL='lj'.*ka, cuzr, sw"):
        formers.make_potential("lj")


def test_plug_in_energy_forces_and_hessian_equal_the_pair_kernels(ka_start):
    system, r, pot = ka_start
    r, e, max_force, _ = md.inherent_structure(pot, r, system["box"], system["species"],
                                               fire=ggd.fire_settings(), settings=SETTINGS)
    assert max_force < ggd.FORCE_TOL
    e_pair, f_pair = forces.energy_and_forces(r, system)
    e_plug, f_plug = md.energy_and_forces(pot, r, system["box"], system["species"])
    assert abs(e_plug - e_pair) < 1e-12 * abs(e_pair)
    assert np.abs(f_plug - f_pair).max() < 1e-12
    h_pair, _ = hs.hessian(r, system)
    h_auto, local = hs.autodiff_hessian(md.energy_function(pot, system["box"],
                                                           system["species"], r), r)
    hs.check_hessian(h_auto, local)
    assert abs(h_auto - h_pair).max() < 1e-12 * abs(h_pair).max()
    vals, _ = ggd.lowest_modes(h_auto, 6)
    ggd.check_modes(vals)                       # three zero modes, then positive


def test_nvt_holds_and_ramps_its_temperature(ka_start):
    system, r, pot = ka_start
    args = (pot, r, system["box"], system["species"])
    state = md.nvt(*args, jax.random.PRNGKey(0), 0.6, 0.6, 1500, "hold", settings=SETTINGS)
    temps = []
    for _ in range(6):
        state = md.nvt(*args, None, 0.6, 0.6, 100, "hold", settings=SETTINGS, state=state)
        temps.append(md.temperature(state, pot))
    assert abs(np.mean(temps) - 0.6) < 0.06      # fluctuations ~ sqrt(2/3N) = 5% at N = 256
    state = md.nvt(*args, None, 0.6, 0.0, 3000, "ramp", settings=SETTINGS, state=state)
    assert md.temperature(state, pot) < 0.1


def test_a_kob_andersen_glass_records_none_of_the_formers_constants(monkeypatch):
    """The formers' constants enter the protocol (and its hash) of their own glasses only: a KA
    glass keeps the protocol hash it had before they existed."""
    former_only = ("POTENTIAL", "CUZR_", "SW_", "MD_")
    assert not [k for k in ggd.protocol_constants() if k.startswith(former_only)]
    monkeypatch.setattr(ggd, "POTENTIAL", "cuzr")
    assert {"POTENTIAL", "CUZR_DENSITY", "MD_FORCE_TOL"} <= set(ggd.protocol_constants())


def test_unknown_potential_stops_before_any_work(tmp_path, monkeypatch):
    for name in ("DATA_DIR", "POTENTIAL", "JAX_CACHE_DIR"):     # main() sets them: restored after
        monkeypatch.setattr(ggd, name, getattr(ggd, name))
    with pytest.raises(SystemExit, match="POTENTIAL='eam'"):
        ggd.main([f"--DATA_DIR={tmp_path}", "--POTENTIAL=eam", "--JAX_CACHE_DIR="])
    assert not list(tmp_path.iterdir())
