"""The glass formers a run can choose (`--POTENTIAL=name`): each name makes a potential with the
plug-in interface of softglass.molecular_dynamics.

  ka     the smoothed Kob-Andersen A80B20 Lennard-Jones mixture (reduced units; the default, made
         by the compiled pair kernels of softglass.dynamics)
  cuzr   Cu64Zr36, Finnis-Sinclair EAM of Mendelev et al., Phil. Mag. 89, 967 (2009) (metal units)
  sw     amorphous silicon, Stillinger-Weber with Vink et al.'s refit, J. Non-Cryst. Solids 282,
         248 (2001) (metal units)
"""
FORMERS = ("ka", "cuzr", "sw")


def check_former(name):
    """A clear error for a name that is not a glass former we make."""
    if name not in FORMERS:
        raise ValueError(f"POTENTIAL={name!r}: expected one of {', '.join(FORMERS)}")
    return name


def make_potential(name, **ka_parameters):
    """The potential of former `name`; "ka" takes its sigma, epsilon and absolute r_onset,
    r_cutoff (softglass.system.make_system's) as keywords."""
    check_former(name)
    if name == "cuzr":
        from .eam import cuzr_mendelev_2009
        return cuzr_mendelev_2009()
    if name == "sw":
        from .stillinger_weber import amorphous_silicon_vink_2001
        return amorphous_silicon_vink_2001()
    from .potentials import SmoothedLJMixture
    tup = lambda a: tuple(map(tuple, a))  # noqa: E731  (hashable, as a frozen field)
    return SmoothedLJMixture(tup(ka_parameters["sigma"]), tup(ka_parameters["epsilon"]),
                             float(ka_parameters["r_onset"]), float(ka_parameters["r_cutoff"]))
