"""Training speed of the default model on a CUDA GPU (`make gpu-check` runs it after
tests/test_cuda.py): one step = a batch of BATCH_SIZE 1000-atom graphs, forward, L1 loss,
backward, clipping and AdamW, as train.py does it on CUDA (reference PyG path, activation
checkpointing), with float16 autocast + GradScaler (USE_AMP) and in float32. Prints the median
seconds per step, graphs per second and the peak GPU memory of each.

    python benchmarks/bench_gpu.py [--REPEATS=20]
"""
import os
import statistics
import sys
import time

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from softglass.cli import apply_overrides  # noqa: E402

REPEATS = 20                    # timed steps per precision (after two warm-up steps)


def timed_steps(model, batch, amp):
    import train
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    times = []
    for i in range(REPEATS + 2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            pred = model(batch.x, batch.edge_index, batch.edge_dist)
        loss = torch.nn.functional.l1_loss(pred.float(), batch.y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.GRAD_CLIP)
        scaler.step(optimizer)
        scaler.update()
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    apply_overrides(globals())
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU (and the CUDA build of torch)")
    import train
    from bench_train import glasses
    from torch_geometric.data import Batch
    graphs = [train.glass_graph(s, train.CUTOFF) for s in glasses(train.BATCH_SIZE)]
    batch = Batch.from_data_list(train.scaled(graphs, train.fit_scaling(graphs))).cuda()
    print(f"{torch.cuda.get_device_name()}: batch of {train.BATCH_SIZE} graphs, {batch.num_nodes} "
          f"atoms, {batch.num_edges} edges; torch {torch.__version__}")
    for amp in (True, False):
        torch.manual_seed(0)
        model = train.build_model().cuda().train()
        torch.cuda.reset_peak_memory_stats()
        t = timed_steps(model, batch, amp)
        print(f"{'float16 AMP' if amp else 'float32    '}: {t:.4f} s/step  "
              f"{train.BATCH_SIZE / t:7.1f} graphs/s  peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB  (median of {REPEATS})")


if __name__ == "__main__":
    main()
