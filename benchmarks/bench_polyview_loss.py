"""Forward + backward time of ``polyview_loss`` against its floor, for every candidate set and
aggregate, measured in the same run.

The floor (``bench_polyview.floor``) is one einsum building the ``(K, M, K, M)`` scores of
``z: (K, M, D)`` and one logsumexp over every candidate ``(j, b)``, forward + backward: the
loss scores the same candidates and cannot do less. The floor and every variant take turns
within each repeat (``timing.take_turns``); each variant's ratio is taken repeat by repeat (its
time over the floor's in the same repeat), and the table prints the median milliseconds and
the min and median of those ratios. Target: median ratio <= 1.5 at (K, M) = (256, 8) and at
K M = 2048 for M in {4, 8, 16}, with the default value checks (``validate_args=True``).

Then the peer: at M = 2 the all-view loss is SimCLR's NT-Xent, timed against lightly's
(``lightly_ntxent.py``, a re-implementation of its algorithm) at each of ``--peer-sizes``, the
two taking turns; both values must agree to 2e-7 (relative). Target: at most 0.6x lightly's
time at K = 4096.

Run by hand (about a minute per thread count on two cores):

    nice python benchmarks/bench_polyview_loss.py --threads 1 [--device cuda] [--autocast]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

# time the checkout this script lives in, not whichever mibounds is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mibounds.polyview import LOSS_AGGREGATES, NEGATIVES
from mibounds.polyview_loss import polyview_loss

from bench_polyview import floor
from lightly_ntxent import lightly_nt_xent
from timing import ratio_summary, step, take_turns

SIZES = [(512, 4), (256, 8), (128, 16)]  # K M = 2048 three ways; (256, 8) is the other
TEMPERATURE = 0.1
TARGET = 1.5
PEER_TARGET = 0.6  # of lightly's NT-Xent time, at K = 4096
PEER_SIZES = [1024, 4096]


def variant(aggregate: str, negatives: str) -> Callable[[Tensor], Tensor]:
    return functools.partial(
        polyview_loss, temperature=TEMPERATURE, aggregate=aggregate, negatives=negatives
    )


VARIANTS = {
    f"{negatives}/{aggregate}": variant(aggregate, negatives)
    for negatives in NEGATIVES
    for aggregate in LOSS_AGGREGATES
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast forward")
    parser.add_argument(
        "--sizes", nargs="+", default=[f"{k},{m}" for k, m in SIZES], help="K,M pairs"
    )
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--peer-sizes", type=int, nargs="*", default=PEER_SIZES, help="K for the NT-Xent peer"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"D = {args.dim}, autocast {args.autocast}, {args.repeats} repeats taking turns; "
        "ratios to the floor per repeat: min and median"
    )
    print(f"{'variant':<30}{'K':>6}{'M':>4}{'ms':>9}{'min':>7}{'median':>8}")
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for k, m in (map(int, size.split(",")) for size in args.sizes):
        # unit-variance scores: dot products of D-dim vectors with entries of variance 1/D
        z = (torch.randn(k, m, args.dim, generator=g) / args.dim**0.5).to(args.device)
        z.requires_grad_()
        fns = {"floor": floor} | {name: VARIANTS[name] for name in args.only}
        calls = [functools.partial(step, fn, z, args.autocast) for fn in fns.values()]
        times = dict(zip(fns, take_turns(calls, args.repeats), strict=True))
        for name, record in times.items():
            low, mid = ratio_summary(record, times["floor"])
            if name != "floor":
                worst = max(worst, mid)
            ms = statistics.median(record) * 1e3
            print(f"{name:<30}{k:>6}{m:>4}{ms:>9.2f}{low:>7.2f}{mid:>8.2f}", flush=True)
    verdict = "met" if worst <= TARGET else "NOT MET"
    print(f"largest median ratio {worst:.2f} <= {TARGET}x: {verdict}")
    if args.peer_sizes:
        peer(args.peer_sizes, args.dim, args.device, args.repeats, args.autocast, g)


def peer(sizes: list[int], dim: int, device: str, repeats: int, autocast: bool, g) -> None:
    """``polyview_loss`` at M = 2 (NT-Xent) against lightly's NT-Xent, taking turns."""
    ours = VARIANTS["all_views/geometric"]

    def theirs(z: Tensor) -> Tensor:
        return lightly_nt_xent(z[:, 0], z[:, 1], TEMPERATURE)

    print(f"NT-Xent at M = 2 against lightly's: {'K':>6}{'ms':>9}{'lightly ms':>12}", end="")
    print(f"{'min':>7}{'median':>8}{'rel. diff':>11}")
    for k in sizes:
        z = (torch.randn(k, 2, dim, generator=g) / dim**0.5).to(device).requires_grad_()
        with torch.no_grad():
            value, expected = ours(z), theirs(z)
        difference = abs(value.item() - expected.item()) / abs(expected.item())
        calls = [functools.partial(step, fn, z, autocast) for fn in (ours, theirs)]
        mine, lightly = take_turns(calls, repeats)
        low, mid = ratio_summary(mine, lightly)
        print(
            f"{'':<35}{k:>6}{statistics.median(mine) * 1e3:>9.1f}"
            f"{statistics.median(lightly) * 1e3:>12.1f}{low:>7.2f}{mid:>8.2f}{difference:>11.1e}",
            flush=True,
        )
        if difference > 2e-7:
            print(f"  values differ: {value.item()} against lightly's {expected.item()}")
    print(f"target at K = {sizes[-1]}: median <= {PEER_TARGET}x lightly's: "
          f"{'met' if mid <= PEER_TARGET else 'NOT MET'}")  # fmt: skip


if __name__ == "__main__":
    main()
