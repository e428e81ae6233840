"""Training on several processes (torchrun): joining the process group, each process's share of
an update's micro-batches, and a decision broadcast from rank 0. One process is the same code with
world = 1."""
import os
import sys

import torch


def micro_batches(n, generator, rank, world, batch, accum):
    """This process's micro-batches of one epoch as lists of (graph indices, loss weight), one
    list per optimizer update. The epoch's order is one permutation of the n training graphs
    (what a shuffled DataLoader draws from `generator`), cut into micro-batches of `batch` graphs
    and updates of `accum` micro-batches (the last ones possibly short). Under torchrun each of
    the `world` processes takes a contiguous accum/world of every update's micro-batches, so the
    averaged gradient of an update is the single process's, up to summation order. (torch's
    DistributedSampler would deal graphs round-robin and pad the epoch with repeats: the graphs
    averaged in one update would differ from the single-process run.) At the last, short update a
    process left without a micro-batch repeats one with weight 0: every process must join each
    gradient all-reduce."""
    # the draws of torch's DataLoader(shuffle=True, generator=generator), which this replaces:
    # one int64 (its worker base seed), then the permutation; earlier runs' batches are kept
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(n, generator=generator).tolist()
    micro = [order[i:i + batch] for i in range(0, n, batch)]
    per_rank = accum // world
    updates = []
    for u in range(0, len(micro), accum):
        update = micro[u:u + accum]
        mine = update[rank * per_rank:(rank + 1) * per_rank]
        slots = min(per_rank, len(update))          # rank 0's share, the largest
        updates.append([(m, 1.0) for m in mine] + [(update[0], 0.0)] * (slots - len(mine)))
    return updates


def join_processes(device, batch_size, accum_steps):
    """(rank, world size, device) of this process: (0, 1, device) when run alone; under torchrun
    (WORLD_SIZE > 1) it joins the process group (nccl on CUDA, gloo on the CPU), takes GPU
    LOCAL_RANK, and leaves the log to rank 0 (errors still come from every process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if accum_steps % world:
        raise SystemExit(f"error: {world} processes cannot share ACCUM_STEPS={accum_steps} "
                         f"micro-batches per update: choose ACCUM_STEPS a multiple of {world} "
                         f"(the effective batch BATCH_SIZE x ACCUM_STEPS = "
                         f"{batch_size * accum_steps} graphs is what the run learns from)")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise SystemExit(f"error: process {local} on a node with "
                             f"{torch.cuda.device_count()} GPU(s): --nproc_per_node too large")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank()
    if rank:
        sys.stdout = open(os.devnull, "w")
    return rank, world, device


def from_rank0(value, world):
    """Rank 0's value on every process (a decision taken from its own clock, say)."""
    if world == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
