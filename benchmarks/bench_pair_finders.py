"""Benchmark of the periodic pair finders: scipy's periodic k-d tree as neighbours.periodic_pairs
runs it, vesin's cell list (NeighborList, a half list, unsorted and sorted) and matscipy's
neighbour_list (a full list, halved here), at 10^3 and 10^4 atoms, in the cubic box and in a
sheared cell (T = L (I + SHEAR e_x e_z^T), columns the cell vectors), at the MD list radius
(R_CUT + SKIN) and at the Hessian's (R_CUT). Each finder's call returns the index pairs i < j
(the layout periodic_pairs returns; the time includes making it); medians of REPEATS on one core
(bench_lammps.pin_threads). Every finder's pair set is compared with the k-d tree's (sorted
(i, j) rows); a pair that only one finder holds is reported with its distance minus r_cut (a
pair within rounding of the cut-off may fall either way).

The positions: a real glass of GLASS_ATOMS (generate_glass_data.make_glass, its inherent
structure), sheared affinely into the sheared cell; and random uniform positions at every N of
SIZES (density DENSITY: a glass's pair count within a few per cent; the 10^4-atom rows are
random positions only).

    python benchmarks/bench_pair_finders.py [--SIZES=1000,10000] [--REPEATS=15] [--GLASS_ATOMS=1000]
        [--OUT=runs/pair_finders/bench_pair_finders.json]
"""
import json
import os
import platform
import statistics
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402
from bench_lammps import pin_threads  # noqa: E402

SIZES = "1000,10000"            # atoms of the random-position systems
GLASS_ATOMS = 1000              # atoms of the real glass (make_glass, ~15-40 s); 0: none
DENSITY = 1.2                   # atoms per sigma^3 (the KA glass's)
R_CUT = 2.5                     # sigma: the potential's cut-off (the Hessian's pair radius)
SKIN = 0.3                      # sigma: the MD list's skin (the list radius is R_CUT + SKIN)
SHEAR = 0.1                     # xz strain of the sheared cell
REPEATS = 15                    # timed calls per finder and case (after one warm-up call)
FINDERS = "kdtree,vesin,vesin_sorted,matscipy"     # the finders timed (matscipy: if installed)
THREADS = 1                     # cores (bench_lammps.pin_threads)
CPU = 0                         # the first core pinned to
BUILDERS = True                 # also time ordered_pairs / dense_neighbours on each finder
SEED = 0                        # random positions' seed
OUT = "runs/pair_finders/bench_pair_finders.json"  # JSON of the rows ("" writes none)


def median_ms(fns):
    """({name: median wall ms of fn()}, {name: median CPU ms}): each fn called once to warm up,
    then REPEATS rounds calling each in turn (interleaved, so a slow spell of a shared machine
    hits every finder alike). The CPU time (time.process_time, the process's every thread) is the
    steadier measure on a loaded machine: a wait for the core counts in the wall time only."""
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(REPEATS):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    return ({name: 1e3 * statistics.median(t) for name, t in wall.items()},
            {name: 1e3 * statistics.median(t) for name, t in cpu.items()})


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def finders():
    """{name: fn(frac, cell, r_cut) -> (M, 2) int pairs i < j}, frac the fractional positions and
    cell the 3x3 matrix of column cell vectors."""
    import numpy as np
    from softglass.pairs import periodic_pairs

    def kdtree(frac, cell, r_cut):      # as the project calls it: a cubic box takes real positions
        if np.allclose(cell, np.diag(np.diag(cell))) and np.ptp(np.diag(cell)) == 0:
            return periodic_pairs(frac * cell[0, 0], float(cell[0, 0]), r_cut)
        return periodic_pairs(frac, cell, r_cut)      # (_cell_pairs wraps a copy)

    out = {"kdtree": kdtree}
    try:
        from vesin import NeighborList

        def vesin_fn(is_sorted):
            def fn(frac, cell, r_cut):
                i, j = NeighborList(cutoff=r_cut, full_list=False, sorted=is_sorted).compute(
                    frac @ cell.T, cell.T, True, "ij")
                return np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)
            return fn
        out["vesin"], out["vesin_sorted"] = vesin_fn(False), vesin_fn(True)
    except ImportError:
        print("vesin is not installed: skipped")
    try:
        from matscipy.neighbours import neighbour_list

        def matscipy(frac, cell, r_cut):        # a full list: keep each pair once
            i, j = neighbour_list("ij", positions=frac @ cell.T, cell=cell.T, pbc=[True] * 3,
                                  cutoff=r_cut)
            keep = i < j
            return np.stack([i[keep], j[keep]], axis=1)
        out["matscipy"] = matscipy
    except ImportError:
        print("matscipy is not installed: skipped")
    return {k: v for k, v in out.items() if k in FINDERS.split(",")}


def pair_set(pairs):
    import numpy as np
    return np.unique(np.sort(np.asarray(pairs, np.int64), axis=1), axis=0)


def differences(a, b, frac, cell, r_cut):
    """The pairs in exactly one of the sets a, b, with their distance minus r_cut."""
    import numpy as np
    n = len(frac)
    ka, kb = a[:, 0] * n + a[:, 1], b[:, 0] * n + b[:, 1]
    only = np.setxor1d(ka, kb)
    i, j = np.divmod(only, n)
    ds = frac[j] - frac[i]
    ds -= np.round(ds)
    d = np.linalg.norm(ds @ cell.T, axis=1)
    return [dict(i=int(p), j=int(q), in_kdtree=bool(k in set(ka.tolist())),
                 d_minus_r_cut=float(x - r_cut)) for p, q, k, x in zip(i, j, only, d)]


def builder_rows(systems):
    """ordered_pairs and dense_neighbours (the MD list's builders, cubic box, radius R_CUT + SKIN)
    timed with their pairs from list_pairs (vesin) and from the k-d tree (periodic_pairs), on
    float32 positions as the compiled phases hand them over; their outputs compared."""
    import numpy as np
    from softglass import neighbours
    if not hasattr(neighbours, "list_pairs"):
        print("the builders take the k-d tree's pairs (no neighbours.list_pairs): not timed")
        return []
    vesin_pairs = neighbours.list_pairs

    def kdtree_pairs(pos, box, r_list):
        pairs = periodic_pairs(np.asarray(pos, np.float64), float(box), float(r_list))
        return pairs[:, 0], pairs[:, 1]
    periodic_pairs = neighbours.periodic_pairs

    def with_pairs(build, finder, pos, box):
        def call():
            neighbours.list_pairs = finder
            try:
                return build(pos, box, R_CUT + SKIN)
            finally:
                neighbours.list_pairs = vesin_pairs
        return call
    rows = []
    print(f"{'builder':>16} {'positions':>9} {'N':>6} {'k-d tree ms (CPU)':>18} "
          f"{'vesin ms (CPU)':>18}  same list")
    for source, frac, box in systems:
        pos = (frac * box).astype(np.float32)
        for build in (neighbours.ordered_pairs, neighbours.dense_neighbours):
            calls = dict(kdtree=with_pairs(build, kdtree_pairs, pos, box),
                         vesin=with_pairs(build, vesin_pairs, pos, box))
            (ia, na), (ib, nb) = calls["kdtree"](), calls["vesin"]()
            row = dict(builder=build.__name__, positions=source, n_atoms=len(pos), box=box,
                       r_list=R_CUT + SKIN, same_list=bool(np.array_equal(ia, ib) and na == nb))
            row["median_ms"], row["median_cpu_ms"] = median_ms(calls)
            rows.append(row)
            w, c = row["median_ms"], row["median_cpu_ms"]
            print(f"{build.__name__:>16} {source:>9} {len(pos):6d} "
                  f"{w['kdtree']:9.2f} ({c['kdtree']:6.2f}) {w['vesin']:9.2f} ({c['vesin']:6.2f})"
                  f"  {'yes' if row['same_list'] else 'NO'}", flush=True)
    return rows


def main():
    apply_overrides(globals())
    cores = pin_threads(THREADS, CPU)
    import numpy as np
    # numpy (imported by softglass.cli before pin_threads set OMP_NUM_THREADS) started OpenBLAS
    # with a thread per core: on the one pinned core its threads contend, and the general cell's
    # (M, 3) @ (3, 3) product in _cell_pairs took ~50x its single-thread time. Limit them here.
    try:
        from threadpoolctl import threadpool_info, threadpool_limits     # (with scikit-learn)
        threadpool_limits(THREADS)
        blas = [dict(api=p["internal_api"], threads=p["num_threads"]) for p in threadpool_info()]
    except ImportError:
        blas = "threadpoolctl not installed: BLAS threads not limited"
    systems = []
    if GLASS_ATOMS:
        import generate_glass_data as ggd
        ggd.SHOW_PROGRESS = False
        t0 = time.perf_counter()
        glass = ggd.make_glass(n_atoms=GLASS_ATOMS, density=DENSITY, log=lambda *a: None)
        print(f"glass of {GLASS_ATOMS} atoms made in {time.perf_counter() - t0:.0f} s")
        box = float(glass["box_size"])
        systems.append(("glass", np.mod(np.asarray(glass["positions"], np.float64) / box, 1.0),
                        box))
    rng = np.random.default_rng(SEED)
    for n in (int(s) for s in str(SIZES).split(",")):
        systems.append(("random", rng.uniform(0.0, 1.0, (n, 3)), (n / DENSITY) ** (1 / 3)))
    fns = finders()
    print(f"cores {cores}, {cpu_model()}, BLAS {blas}")
    print(f"{'positions':>9} {'N':>6} {'cell':>7} {'r_cut':>5} {'pairs':>8} "
          + " ".join(f"{k[:15]:>16}" for k in fns) + "  same set")
    print(f"{'':>39}" + " ".join(f"{'ms (CPU ms)':>16}" for k in fns))
    rows = []
    for source, frac, box in systems:
        for cell_name, cell in (("cubic", box * np.eye(3)),
                                ("sheared", box * (np.eye(3) + SHEAR * np.outer([1, 0, 0],
                                                                                [0, 0, 1])))):
            for r_cut in (R_CUT + SKIN, R_CUT):
                ref = pair_set(fns["kdtree"](frac, cell, r_cut))
                row = dict(positions=source, n_atoms=len(frac), cell=cell_name, r_cut=r_cut,
                           box=box, pairs=len(ref), median_ms={}, same_set={}, differences={})
                for name, fn in fns.items():
                    found = pair_set(fn(frac, cell, r_cut))
                    row["same_set"][name] = bool(np.array_equal(found, ref))
                    if not row["same_set"][name]:
                        row["differences"][name] = differences(ref, found, frac, cell, r_cut)
                calls = {name: (lambda fn=fn: fn(frac, cell, r_cut)) for name, fn in fns.items()}
                row["median_ms"], row["median_cpu_ms"] = median_ms(calls)
                rows.append(row)
                print(f"{source:>9} {len(frac):6d} {cell_name:>7} {r_cut:5.2f} {len(ref):8d} "
                      + " ".join(f"{row['median_ms'][k]:7.2f} ({row['median_cpu_ms'][k]:6.2f})"
                           for k in fns)
                      + "  " + ("yes" if all(row["same_set"].values()) else
                                f"NO {row['differences']}"), flush=True)
    builders = builder_rows(systems) if BUILDERS else []
    if OUT:
        versions = {}
        for module in ("numpy", "scipy", "vesin", "matscipy"):
            try:
                versions[module] = __import__(module).__version__
            except ImportError:
                versions[module] = None
        atomic_write_bytes(OUT, json.dumps(dict(
            command="python benchmarks/bench_pair_finders.py " + " ".join(sys.argv[1:]),
            constants=constants_of(globals()), cores=cores, cpu_model=cpu_model(), blas=blas,
            versions=versions, rows=rows, builders=builders), indent=1).encode())
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
