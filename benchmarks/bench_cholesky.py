"""Our multifrontal Cholesky (softglass.sparse_solver) against CHOLMOD (scikit-sparse) on the
shifted Hessian H - sigma I of a glass, as softglass.hessian.lowest_modes factors it: factor time,
solve time, the factor's entries, and the lowest modes through each (eigsh shift-invert, the
label's 13 modes), which must agree.

    python benchmarks/bench_cholesky.py [--GLASS=data/glass_data_000.pkl] [--TILES=1,2]
        [--REPEATS=3] [--OUT_FILE=runs/cholesky/bench_cholesky.json]

The glass: GLASS tiled TILES x TILES x TILES times (a periodic inherent structure repeated is one
too, with the same local structure): 1000 atoms and 8000 from the pipeline's first glass.
CHOLMOD runs twice: with its own fill-reducing ordering (AMD, or METIS where built with it), and
with our nested-dissection order given as the permutation (the same fill as ours), supernodal,
with one BLAS thread like ours (threadpoolctl). scikit-sparse is not in requirements.txt: it ships
as source and needs SuiteSparse's headers (Debian: apt-get install libsuitesparse-dev; then
pip install scikit-sparse).
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes, load_glass  # noqa: E402

GLASS = "data/glass_data_000.pkl"   # a pipeline glass (make pipeline writes them)
TILES = "1,2"                   # repeat the glass t x t x t times: 1000 and 8000 atoms
REPEATS = 3                     # timed factorisations per solver; medians reported
N_MODES = 13                    # modes for the eigsh check (3 zero + 10 soft: the label)
SHIFT = -0.1                    # generate_glass_data's EIGSH_SHIFT
LEAF_ATOMS = 64                 # generate_glass_data's ND_LEAF_ATOMS
OUT_FILE = ""                   # JSON of the numbers ("" writes none)


def tiled(snap, t):
    """Positions, species and box of the glass repeated t times along each axis."""
    box = float(snap["box_size"])
    shifts = np.stack(np.meshgrid(*[np.arange(t)] * 3, indexing="ij"), -1).reshape(-1, 3) * box
    positions = (snap["positions"][None] + shifts[:, None]).reshape(-1, 3)
    return positions, np.tile(snap["species"], len(shifts)), box * t


def timed(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def lowest(h, solve):
    op = scipy.sparse.linalg.LinearOperator(h.shape, matvec=solve, matmat=solve, dtype=float)
    v0 = np.random.default_rng(0).standard_normal(h.shape[0])
    t0 = time.perf_counter()
    vals = scipy.sparse.linalg.eigsh(h.tocsc(), k=N_MODES, sigma=SHIFT, which="LM", v0=v0,
                                     OPinv=op, return_eigenvectors=False)
    return np.sort(vals), time.perf_counter() - t0


def main(argv=None):
    apply_overrides(globals(), argv)
    from threadpoolctl import threadpool_limits
    from sksparse.cholmod import cholesky
    from softglass import hessian as hs, sparse_solver as ss
    snap = load_glass(os.path.join(_ROOT, GLASS))
    p = snap["parameters"]
    rows = []
    with threadpool_limits(1):
        for t in (int(x) for x in TILES.split(",")):
            positions, species, box = tiled(snap, t)
            system = dict(box=box, species=species.astype(np.int32), sigma=np.asarray(p["sigma"]),
                          epsilon=np.asarray(p["epsilon"]), r_onset=p["r_onset"],
                          r_cutoff=p["r_cutoff"])
            h, _ = hs.hessian(positions, system)
            a = (h - SHIFT * scipy.sparse.identity(h.shape[0], format="csr")).tocsr()
            tree = ss.nested_dissection_tree(positions, box, ss.atom_graph(h), LEAF_ATOMS)
            order = ss.nested_dissection_order(tree)
            ours, t_ours = timed(lambda: ss.MultifrontalCholesky(a, tree), REPEATS)
            amd, t_amd = timed(lambda: cholesky(a.tocsc(), mode="supernodal"), REPEATS)
            # our order, given to CHOLMOD: factor P A P^T with its natural ordering
            perm = scipy.sparse.csr_matrix((np.ones(len(order)), (np.arange(len(order)), order)),
                                           shape=a.shape)
            pap = (perm @ a @ perm.T).tocsc()
            nd, t_nd = timed(lambda: cholesky(pap, mode="supernodal",
                                              ordering_method="natural"), REPEATS)
            b = np.random.default_rng(1).standard_normal(a.shape[0])
            _, s_ours = timed(lambda: ours.solve(b), REPEATS)
            _, s_amd = timed(lambda: amd(b), REPEATS)
            x_ours, x_amd = ours.solve(b), amd(b)
            vals_ours, e_ours = lowest(h, ours.solve)
            vals_amd, e_amd = lowest(h, amd)
            row = dict(n_atoms=len(positions), factor_s=dict(ours=t_ours, cholmod_amd=t_amd,
                                                           cholmod_our_order=t_nd),
                       solve_s=dict(ours=s_ours, cholmod_amd=s_amd),
                       factor_entries=dict(cholmod_amd=int(amd.L().nnz),
                                           cholmod_our_order=int(nd.L().nnz)),
                       eigsh_s=dict(ours=e_ours, cholmod_amd=e_amd),
                       solve_difference=float(np.max(np.abs(x_ours - x_amd)) /
                                              np.max(np.abs(x_ours))),
                       eigenvalue_difference=float(np.max(np.abs(vals_ours - vals_amd))))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if OUT_FILE:
        out = OUT_FILE if os.path.isabs(OUT_FILE) else os.path.join(_ROOT, OUT_FILE)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        atomic_write_bytes(out, json.dumps(dict(rows=rows, constants=constants_of(globals())),
                                           indent=2).encode())
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
