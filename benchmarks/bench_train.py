"""Training speed of the default model on 1000-atom glasses: reference (PyG) vs fused path.

    python benchmarks/bench_train.py [--repeats-fused=10] [--repeats-reference=2] [--profile]

One training step = a batch of BATCH_SIZE graphs: forward, L1 loss, backward, gradient clipping and
an AdamW step (the optimizer runs every ACCUM_STEPS batches in training: counted every batch here,
an upper bound). Both paths start from the same weights, run on the same batch, in this process,
and the script prints the median seconds per step and graphs per second of each, their ratio, the
largest prediction difference between the paths and the peak resident memory. `--profile` adds a
torch.profiler table (self CPU time per operator) for one step of each path.

Glasses: data/glass_data_000.pkl ... (generate_diverse_data.py), else one made here.
"""
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import train  # noqa: E402
from softglass.files import load_glass  # noqa: E402


def glasses(n):
    paths = [os.path.join(ROOT, "data", f"glass_data_{k:03d}.pkl") for k in range(n)]
    if all(os.path.exists(p) for p in paths):
        return [load_glass(p, 1000) for p in paths]
    import generate_glass_data as ggd
    print("no data/glass_data_*.pkl: making one 1000-atom glass (about a minute)")
    snap = ggd.make_glass(n_atoms=1000, seed=0, log=lambda *a, **k: None)
    return [snap] * n


def step(model, optimizer, batch):
    optimizer.zero_grad(set_to_none=True)
    pred = model(batch.x, batch.edge_index, batch.edge_dist)
    loss = torch.nn.functional.l1_loss(pred, batch.y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), train.GRAD_CLIP)
    optimizer.step()
    return pred.detach()


def timed(model, batch, repeats):
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)    # lr 0: weights stay put
    pred = step(model, optimizer, batch)                             # warm-up (and kernel build)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step(model, optimizer, batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times), pred, optimizer


def profile(model, optimizer, batch, label):
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, optimizer, batch)
    print(f"\n--- torch.profiler, one step, {label} ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main():
    args = dict(a.lstrip("-").split("=") if "=" in a else (a.lstrip("-"), "1")
                for a in sys.argv[1:])
    rep_fused, rep_ref = int(args.get("repeats-fused", 10)), int(args.get("repeats-reference", 2))
    from torch_geometric.data import Batch
    snaps = glasses(train.BATCH_SIZE)
    graphs = [train.glass_graph(s, train.CUTOFF) for s in snaps]
    s = train.fit_scaling(graphs)
    batch = Batch.from_data_list(train.scaled(graphs, s))
    print(f"batch: {train.BATCH_SIZE} graphs, {batch.num_nodes} atoms, {batch.num_edges} edges; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    torch.manual_seed(0)
    reference = train.build_model(fast_kernels=False)
    fused = train.build_model(fast_kernels=True)
    fused.load_state_dict(reference.state_dict())
    if not fused.uses_fused_path(torch.device("cpu")):
        raise SystemExit(f"fused kernels unavailable: {train.message_kernels.build_error()}")
    reference.train()
    fused.train()

    t_ref, p_ref, opt_ref = timed(reference, batch, rep_ref)
    t_fused, p_fused, opt_fused = timed(fused, batch, rep_fused)
    n = train.BATCH_SIZE
    print(f"reference (PyG{', checkpointed' if reference.use_checkpoint else ''}): "
          f"{t_ref:7.3f} s/step  {n / t_ref:6.2f} graphs/s  (median of {rep_ref})")
    print(f"fused kernels:        {t_fused:7.3f} s/step  {n / t_fused:6.2f} graphs/s  "
          f"(median of {rep_fused})")
    print(f"speed-up {t_ref / t_fused:.1f}x;  max |prediction difference| "
          f"{float((p_ref - p_fused).abs().max()):.2e} (predictions up to "
          f"{float(p_ref.abs().max()):.2f})")
    print(f"peak resident memory of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if "profile" in args:
        profile(reference, opt_ref, batch, "reference")
        profile(fused, opt_fused, batch, "fused")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
