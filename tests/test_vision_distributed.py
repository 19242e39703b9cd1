"""Two gloo processes on CPU against one process that sees the same global batch.

BatchNorm: in train mode each process would normalise its own K / W images with their own
statistics, so even a correct gather could not reproduce the single-process forward pass (that is
what ``--sync-bn`` is for, on CUDA). The model is therefore put in eval mode, where BatchNorm
applies fixed running statistics and the network acts on each image alone; the only coupling
between samples is then the objective, which is exactly what the gather must get right: the loss
(averaged over processes) and every parameter's gradient (averaged by DDP) must equal the single
process's, and an objective's state (MINE's moving average, SogCLR's u_i) must be the single
process's in every process. Each objective first takes a no-grad step on other views of the same
images, so that the measured step starts from a visited state (SogCLR's moving average with
gamma = 0.9 then enters the gradient through the weights exp(s) / u_i).

Tolerance: float32, rtol 1e-4 and atol 1e-6 (for gradients, atol 1e-5 of the model's largest
gradient entry where that is larger). The two computations differ only in summation order
(convolutions over 8 instead of 16 images, the gradient all-reduce), which moves float32 results
by a few ulps relative to the size of the terms summed: a gradient whose exact value is zero
because large terms cancel (the last projector bias under Barlow Twins, whose standardisation
removes any shift: noise of 4e-6 at a gradient scale of 7) gets noise of that scale. A wrong
gradient (e.g. a gather that does not sum the backward over processes, which halves the
cross-process terms) is off by tens of percent.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from mibounds.vision.distributed import all_gather_with_grad
from mibounds.vision.encoders import Encoder
from mibounds.vision.objectives import LossContext, build_objective
from mibounds.vision.training import TrainConfig, compute_loss, load_checkpoint, train

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")

K, M, WORLD = 8, 3, 2
# name -> (catalogue name, parameters): every way an objective crosses processes
OBJECTIVES = {
    "arithmetic": ("arithmetic", {}),  # gathered negatives, same-view candidates
    "arithmetic-all-views": ("arithmetic", {"negatives": "all_views"}),
    "multicrop-nt-xent": ("multicrop", {"negatives": "all_views"}),  # view-pair candidates
    "multicrop-nwj": ("multicrop", {"bound": "nwj"}),  # the global batch's scores
    "sufficient_statistics": ("sufficient_statistics", {"normalize": True}),
    "mine": ("mine", {}),
    "sogclr": ("sogclr", {}),
    "barlow_multiview": ("barlow_multiview", {}),  # a statistic of the global batch
}
# the embedding-level losses forced onto their tiled path (mibounds.tiled) in the two processes,
# against the dense single process: a budget of 512 bytes leaves blocks of one candidate row
# (two buffers of K / W * M * M float32 scores per row: 288 bytes)
TILED = {f"{name}-tiled": name for name in ("arithmetic-all-views", "multicrop-nt-xent", "sogclr")}
TINY_BUDGET = 512


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, M, 1, 8, 8, generator=g), torch.arange(K) + 100


def _model() -> Encoder:
    torch.manual_seed(0)
    model = Encoder("tiny", in_channels=1, image_size=8, proj_hidden=16, proj_dim=8)
    # non-trivial running statistics, so that eval-mode BatchNorm is not the identity
    with torch.no_grad():
        model.train()(torch.randn(32, 1, 8, 8))
    return model.eval()


def _run(model: torch.nn.Module, name: str, gather, views, indices, warm_views):
    entry, params = OBJECTIVES[TILED.get(name, name)]
    budget = TINY_BUDGET if name in TILED else 2**30
    objective = build_objective(entry, LossContext(0.2, M, 200, gather, budget), **params)
    with torch.no_grad():
        compute_loss(model, objective, warm_views, indices)
    loss = compute_loss(model, objective, views, indices)
    loss.backward()
    return loss.detach(), objective.state_dict()


def _worker(rank: int, port: int, path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    views, indices = _batch()
    warm_views = _batch(seed=1)[0]
    share = slice(rank * K // WORLD, (rank + 1) * K // WORLD)
    results = {}
    for name in [*OBJECTIVES, *TILED]:
        model = _model()
        ddp = DistributedDataParallel(model)
        loss, state = _run(
            ddp, name, all_gather_with_grad, views[share], indices[share], warm_views[share]
        )
        dist.all_reduce(loss)
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        results[name] = (loss / WORLD, grads, state)
    gathered, offset = all_gather_with_grad(indices[share])
    results["indices"] = (gathered, offset)
    # the whole trainer in the existing group: 2 steps of K = 8 digits, 4 per process
    config = TrainConfig(
        image_size=8, subset=16, batch_size=8, views=3, epochs=1, proj_hidden=16, proj_dim=8,
        objective="mine", workers=0, progress=False, probe=False, device="cpu",
        out=str(Path(path).parent / "run"),
    )  # fmt: skip
    results["record"] = train(config)
    results["state"] = load_checkpoint(config.out) if rank == 0 else None
    # SogCLR in the trainer: each process's sampler share carries its own dataset indices
    sogclr = config.replace(objective="sogclr", out=str(Path(path).parent / "sogclr"))
    train(sogclr)
    results["sogclr_trainer"] = load_checkpoint(sogclr.out)["objective"] if rank == 0 else None
    # the same with the scores in blocks (--memory-budget of about 1 KiB)
    tiled = sogclr.replace(memory_budget=1e-6, out=str(Path(path).parent / "sogclr-tiled"))
    train(tiled)
    results["sogclr_tiled_trainer"] = load_checkpoint(tiled.out)["objective"] if rank == 0 else None
    torch.save(results, f"{path}.{rank}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ddp") / "rank0.pt")
    mp.spawn(_worker, args=(_free_port(), path), nprocs=WORLD, join=True)
    return [torch.load(f"{path}.{rank}", weights_only=False) for rank in range(WORLD)]


@pytest.mark.parametrize("name", [*OBJECTIVES, *TILED])
def test_ddp_loss_and_gradients_equal_one_process(two_processes, name: str) -> None:
    """Each objective in two processes (the tiled ones in blocks) against the dense one."""
    views, indices = _batch()
    model = _model()
    loss, state = _run(model, TILED.get(name, name), None, views, indices, _batch(seed=1)[0])
    scale = max(float(p.grad.abs().max()) for p in model.parameters())
    for rank, result in enumerate(two_processes):
        ddp_loss, ddp_grads, ddp_state = result[name]
        torch.testing.assert_close(ddp_loss, loss, rtol=1e-4, atol=1e-6)
        for key, p in model.named_parameters():
            torch.testing.assert_close(
                ddp_grads[key], p.grad, rtol=1e-4, atol=max(1e-6, 1e-5 * scale), msg=key
            )
        for key, value in state.items():  # the objective's state: the same in every process
            torch.testing.assert_close(ddp_state[key], value, rtol=1e-4, atol=1e-6, msg=(rank, key))
    if name.startswith("sogclr"):  # the state compared above is the visited one, and only there
        assert torch.equal(state["visited"], (torch.arange(200) >= 100) & (torch.arange(200) < 108))


def test_gather_offsets_integer_indices_by_rank(two_processes) -> None:
    for rank, result in enumerate(two_processes):
        gathered, offset = result["indices"]
        assert offset == rank * K // WORLD
        torch.testing.assert_close(gathered, _batch()[1])


def test_trainer_under_two_processes(two_processes) -> None:
    # both processes return the same record (losses averaged over them); process 0's
    # checkpoint holds the objective's state, updated once per global step
    first, second = (r["record"] for r in two_processes)
    assert first["world_size"] == 2 and first["finished"] and first["steps_per_epoch"] == 2
    assert first["metrics"][0]["loss"] == second["metrics"][0]["loss"]
    assert first["metrics"][0]["images"] == 16
    state = two_processes[0]["state"]
    assert int(state["objective"]["loss.state.steps"]) == 2
    # SogCLR: 2 global steps over the 16 items, half of each step's items in each process: every
    # item's u reached process 0's state
    assert two_processes[0]["sogclr_trainer"]["visited"].all()
    # the trainer's --memory-budget reaches the loss: in blocks, the same state to rounding
    dense, tiled = (two_processes[0][key] for key in ("sogclr_trainer", "sogclr_tiled_trainer"))
    assert dense.keys() == tiled.keys()
    for key, value in dense.items():
        torch.testing.assert_close(tiled[key], value, rtol=1e-4, atol=1e-6, msg=key)
