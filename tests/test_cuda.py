"""The CUDA path, proven on a GPU rather than assumed (skipped where torch sees no CUDA device;
`make gpu-check` runs it and times training). float16 autocast with GradScaler and activation
checkpointing train and resume; a run started on the CPU resumes on the GPU; the GPU's float16
predictions agree with the CPU's float32 ones."""
import json

import numpy as np
import pytest
import torch

from test_train import _args, _run, dataset  # noqa: F401  (the tiny data set and train.main)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device: run `make gpu-check` on a GPU machine")


def test_a_cpu_run_resumes_on_the_gpu(train, dataset, tmp_path):  # noqa: F811
    out = tmp_path / "x"
    _run(train, _args(dataset, out, 1) + ["--DEVICE=cpu"])
    _run(train, _args(dataset, out, 2) + ["--DEVICE=cuda"])       # empty scaler state, CPU RNG
    ck = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ck["epoch"] == 1 and ck["scaler"]["scale"] > 0          # the GPU epoch had a scaler
    results = json.loads((out / "results.json").read_text())
    assert results["device"] == "cuda" and not results["fused_kernels"]
    _run(train, _args(dataset, out, 3) + ["--DEVICE=cpu"])        # and back to the CPU


def test_amp_training_resumes_like_an_uninterrupted_run(train, dataset, tmp_path):  # noqa: F811
    _run(train, _args(dataset, tmp_path / "a", 2) + ["--DEVICE=cuda"])
    _run(train, _args(dataset, tmp_path / "b", 1) + ["--DEVICE=cuda"])
    _run(train, _args(dataset, tmp_path / "b", 2) + ["--DEVICE=cuda"])
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    assert np.isfinite(a["history"][1]["train_loss"])
    # float16 atomics make CUDA runs not bit-reproducible; the same trajectory to 1%
    assert b["history"][1]["train_loss"] == pytest.approx(a["history"][1]["train_loss"], rel=1e-2)


def test_float16_predictions_agree_with_cpu_float32(train, tiny_glass, tmp_path):
    from conftest import SMALL
    torch.manual_seed(0)
    model = train.build_model(**SMALL, fast_kernels=False)
    g = train.glass_graph(tiny_glass, train.CUTOFF)
    x = torch.cat([g.x[:, :2], (g.x[:, 2:] - g.x[:, 2:].mean(0)) / g.x[:, 2:].std(0)], 1)
    with torch.no_grad():
        cpu = model.eval()(x, g.edge_index, g.edge_dist)
        gpu_model = model.cuda()
        with torch.autocast("cuda", dtype=torch.float16):
            gpu = gpu_model(x.cuda(), g.edge_index.cuda(), g.edge_dist.cuda())
    assert torch.allclose(gpu.float().cpu(), cpu, atol=2e-2 * float(cpu.abs().max()) + 1e-3)


def test_checkpointed_blocks_give_the_same_gradients_on_the_gpu(train, tiny_glass):
    from conftest import SMALL
    g = train.glass_graph(tiny_glass, train.CUTOFF).cuda()
    grads = []
    for use in (False, True):
        torch.manual_seed(0)
        model = train.build_model(**SMALL, use_checkpoint=use).cuda().train()
        model(g.x, g.edge_index, g.edge_dist).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
