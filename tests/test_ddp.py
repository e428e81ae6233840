"""train.py under torchrun (DistributedDataParallel, gloo on the CPU): two processes share each
update's graphs and follow the single-process trajectory; rank 0 alone writes; a killed run
resumes; a batch the processes cannot share is refused."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from test_train import _args, _run, dataset  # noqa: F401  (the tiny data set and train.main)


def _torchrun(args, nproc=2, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", os.path.join(ROOT, "train.py"), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _kill_tree(pid):
    """SIGKILL a process and all its descendants (torchrun starts its workers in sessions of
    their own, so killing its process group would leave them running)."""
    def children(p):
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                return [int(c) for c in fh.read().split()]
        except OSError:
            return []
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children(p)
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _checkpoint(out):
    return torch.load(out / "checkpoint.pth", weights_only=True)


def _same_trajectory(a, b, rel=1e-5, atol=1e-5):
    """Two checkpoints' loss histories and weights agree (summation order differs between one
    process accumulating and two processes all-reducing, so not bit for bit)."""
    assert [h["epoch"] for h in a["history"]] == [h["epoch"] for h in b["history"]]
    for ha, hb in zip(a["history"], b["history"]):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=rel)
        assert hb["val_loss"] == pytest.approx(ha["val_loss"], rel=rel)
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=atol), k


@pytest.mark.parametrize("n", [1, 5, 6, 13, 16, 17])
@pytest.mark.parametrize("world", [2, 4])
def test_processes_share_each_update_of_the_single_process_order(train, n, world):
    batch, accum = 2, 4
    alone = train.micro_batches(n, torch.Generator().manual_seed(3), 0, 1, batch, accum)
    shares = [train.micro_batches(n, torch.Generator().manual_seed(3), r, world, batch, accum)
              for r in range(world)]
    assert all(len(s) == len(alone) for s in shares)
    for u, update in enumerate(alone):
        assert all(w == 1.0 for _, w in update)
        slots = {len(s[u]) for s in shares}
        assert len(slots) == 1                      # every process joins each all-reduce
        real = [m for s in shares for m, w in s[u] if w]
        assert real == [m for m, _ in update]       # the same graphs, once each, in order
    assert sorted(i for s in shares for upd in s for m, w in upd if w for i in m) == list(range(n))


def test_two_processes_follow_the_single_process_run(train, dataset, tmp_path):  # noqa: F811
    # effective batch 4 of the 6 training graphs: one full update, then a short one in which
    # the second process has no graph left (its weight-0 repeat must not change the gradient)
    _run(train, _args(dataset, tmp_path / "one", 3))
    out = tmp_path / "two"
    run = _torchrun(_args(dataset, out, 3))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    _same_trajectory(_checkpoint(tmp_path / "one"), _checkpoint(out))
    results = json.loads((out / "results.json").read_text())
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    assert results["processes"] == 2 and single["processes"] == 1
    assert results["test_R"] == pytest.approx(single["test_R"], abs=1e-4)
    assert run.stdout.count("test R =") == 1          # one log: rank 0's
    assert not list(out.glob(".*.tmp"))


def test_a_killed_torchrun_resumes_where_it_stopped(train, dataset, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    proc = _torchrun(_args(dataset, out, 500), wait=False)
    ckpt = out / "checkpoint.pth"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and _checkpoint(out)["epoch"] >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    _kill_tree(proc.pid)                            # torchrun and both processes, mid-epoch
    proc.wait()
    before = _checkpoint(out)
    done = before["epoch"] + 1
    run = _torchrun(_args(dataset, out, done + 1))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"resuming from its checkpoint at epoch {done}" in run.stdout
    after = _checkpoint(out)
    assert after["history"][:done] == before["history"]
    assert after["epoch"] == done
    # ...and the resumed run is the one that was never killed (here: a single process)
    _run(train, _args(dataset, tmp_path / "whole", done + 1))
    _same_trajectory(_checkpoint(tmp_path / "whole"), after)
    # the process count is not a setting a checkpoint must share: one process goes on from it
    _run(train, _args(dataset, out, done + 2))
    _run(train, _args(dataset, tmp_path / "whole", done + 2))
    _same_trajectory(_checkpoint(tmp_path / "whole"), _checkpoint(out))


def test_a_batch_the_processes_cannot_share_is_refused(dataset, tmp_path):  # noqa: F811
    run = _torchrun(_args(dataset, tmp_path / "o", 1) + ["--ACCUM_STEPS=3"])
    assert run.returncode != 0
    assert "cannot share ACCUM_STEPS=3" in run.stdout + run.stderr
    assert not (tmp_path / "o" / "checkpoint.pth").exists()
