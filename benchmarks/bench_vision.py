"""Training-step throughput of ResNet-18 at 32x32 with M views per image, and the loss's share.

One step = the ``(K, M, 3, 32, 32)`` views through ResNet-18 (CIFAR stem) and the SimCLR
projector (2048-128) in one forward pass, the objective on ``z: (K, M, 128)``, the backward and
an SGD update: ``mibounds.vision.training.compute_loss`` plus the optimiser, as the trainer runs it
(without data loading, which overlaps with the step in loader workers).

- images/s = K / step time (views/s = K M / step time); median over ``--steps`` timed steps
  after one warm-up step.
- loss share = (objective forward + backward from ``z``) / step time; the objective is timed
  alone on a detached ``z`` of the step's shape (median of 20 repeats), so the share does not
  depend on the profiler.

    nice python benchmarks/bench_vision.py [--k 16] [--steps 3] [--threads N] [--device cuda]

The machine is shared: timings are upper bounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mibounds.vision.encoders import Encoder
from mibounds.vision.objectives import LossContext, build_objective
from mibounds.vision.training import compute_loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, k: int, m: int, steps: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    model = Encoder("resnet18", in_channels=3, image_size=32, proj_hidden=2048, proj_dim=128)
    model = model.to(device).train()
    objective = build_objective(name, LossContext(0.2, m, k)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    views = torch.randn(k, m, 3, 32, 32, device=device)
    indices = torch.arange(k, device=device)

    def step() -> None:
        loss = compute_loss(model, objective, views, indices)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    step_time = _median_time(step, steps, device)

    z = torch.randn(k, m, 128, device=device, requires_grad=True)

    def loss_only() -> None:
        objective(z, indices).backward()

    loss_only()
    loss_time = _median_time(loss_only, 20, device)
    return {
        "objective": name,
        "K": k,
        "M": m,
        "step_s": step_time,
        "images_per_s": k / step_time,
        "views_per_s": k * m / step_time,
        "loss_ms": 1000 * loss_time,
        "loss_share": loss_time / step_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=16, help="images per step K")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--objectives", default="simclr,multicrop,geometric,arithmetic,sufficient_statistics"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"ResNet-18, 32x32, K = {args.k}, device {device}, {torch.get_num_threads()} threads")
    print("| objective | K | M | step (s) | images/s | views/s | loss (ms) | loss share |")
    print("|---|---|---|---|---|---|---|---|")
    for m in (2, 8):
        for name in args.objectives.split(","):
            if name == "simclr" and m != 2:
                continue
            r = bench(name, args.k, m, args.steps, device)
            print(
                f"| {r['objective']} | {r['K']} | {r['M']} | {r['step_s']:.2f} | "
                f"{r['images_per_s']:.1f} | {r['views_per_s']:.1f} | {r['loss_ms']:.2f} | "
                f"{100 * r['loss_share']:.2f} % |",
                flush=True,
            )


if __name__ == "__main__":
    main()
