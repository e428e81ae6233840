"""The glass formers a run can choose (`--POTENTIAL=name`): each name makes a potential with the
plug-in interface of softglass.molecular_dynamics.

  ka     the smoothed Kob-Andersen A80B20 Lennard-Jones mixture (reduced units; the default, made
         by the compiled pair kernels of softglass.dynamics)
  cuzr   Cu64Zr36, Mendelev's Finnis-Sinclair EAM: LAMMPS's CuZr_mm.eam.fs, the 2007 fit
         (Mendelev, Sordelet, Kramer, J. Appl. Phys. 102, 043501), or any Cu-Zr eam/fs file
         (the 2009 fit, Phil. Mag. 89, 967, is not in LAMMPS's package) (metal units)
  sw     amorphous silicon, Stillinger-Weber with Vink et al.'s refit, J. Non-Cryst. Solids 282,
         248 (2001) (metal units)
"""
FORMERS = ("ka", "cuzr", "sw")


def check_former(name):
    """A clear error for a name that is not a glass former we make."""
    if name not in FORMERS:
        raise ValueError(f"POTENTIAL={name!r}: expected one of {', '.join(FORMERS)}")
    return name


def make_potential(name, potential_file=None, **ka_parameters):
    """The potential of former `name`; "cuzr" reads potential_file (a path, or the name of a
    file in LAMMPS's package; None: CuZr_mm.eam.fs), "ka" takes its sigma, epsilon and absolute
    r_onset, r_cutoff (softglass.system.make_system's) as keywords."""
    check_former(name)
    if name == "cuzr":
        import os
        from .eam import cuzr_mendelev
        from .reference_lammps import potential_file as shipped
        path = potential_file or "CuZr_mm.eam.fs"
        return cuzr_mendelev(path if os.sep in path or os.path.isfile(path) else shipped(path))
    if name == "sw":
        from .stillinger_weber import amorphous_silicon_vink_2001
        return amorphous_silicon_vink_2001()
    from .potentials import SmoothedLJMixture
    tup = lambda a: tuple(map(tuple, a))  # noqa: E731  (hashable, as a frozen field)
    return SmoothedLJMixture(tup(ka_parameters["sigma"]), tup(ka_parameters["epsilon"]),
                             float(ka_parameters["r_onset"]), float(ka_parameters["r_cutoff"]))
