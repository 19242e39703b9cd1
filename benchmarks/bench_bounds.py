"""Forward + backward time of every pairwise estimator against the floor measured in the same run.

The floor is one ``logsumexp`` over the same (K, K) scores, forward + backward, with the
estimators' own ``mibounds._numerics.logsumexp``: no estimator can avoid reading the K^2 scores
once and writing their gradient once. The floor and every estimator take turns within each
repeat, and each estimator's ratio is taken repeat by repeat (its time over the floor's in the
same repeat); the table prints the median time and the min and median of those ratios.

Targets, on the median ratio at the largest size (K = 4096 by default): nwj, tuba, dv, js,
smile, eqco and mine within 1.5x of the floor, interpolated within 3x. Run by hand:

    python benchmarks/bench_bounds.py [--device cuda] [--sizes 256 1024 4096] [--repeats 10]
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
from mibounds import bounds
from mibounds._numerics import logsumexp

from timing import ratio_summary, step, take_turns


def floor(scores: Tensor) -> Tensor:
    return logsumexp(scores, -1).mean()


ESTIMATORS: dict[str, Callable[[], Callable[[Tensor], Tensor]]] = {
    "infonce": lambda: bounds.infonce,
    "nwj": lambda: bounds.nwj,
    "tuba": lambda: functools.partial(bounds.tuba, log_baseline=1.0),
    "dv": lambda: bounds.dv,
    "js": lambda: bounds.js,
    "smile": lambda: functools.partial(bounds.smile, clip=5.0),
    "interpolated": lambda: functools.partial(bounds.interpolated, alpha=0.01),
    "eqco": lambda: functools.partial(bounds.eqco, alpha=512.0),
    "mine": lambda: bounds.MINE(),  # a fresh moving average per size
}
TARGETS = {name: 1.5 for name in ("nwj", "tuba", "dv", "js", "smile", "eqco", "mine")}
TARGETS["interpolated"] = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"mibounds from {Path(bounds.__file__).parent}")
    g = torch.Generator().manual_seed(0)
    # results[name][size index] = (median ms, min ratio, median ratio)
    results: dict[str, list[tuple[float, float, float]]] = {"floor": []}
    results |= {name: [] for name in ESTIMATORS}
    for k in args.sizes:
        scores = torch.randn(k, k, generator=g).to(args.device).requires_grad_()
        fns = [floor] + [make() for make in ESTIMATORS.values()]
        fns = [fn.to(args.device) if isinstance(fn, torch.nn.Module) else fn for fn in fns]
        times = take_turns([functools.partial(step, fn, scores) for fn in fns], args.repeats)
        for name, record in zip(results, times, strict=True):
            ms = statistics.median(record) * 1e3
            results[name].append((ms, *ratio_summary(record, times[0])))
    header = f"{'estimator':<14}" + "".join(
        f"{f'K={k} ms':>12}{'min':>6}{'median':>7}" for k in args.sizes
    )
    print(header)
    for name, row in results.items():
        cells = "".join(f"{ms:>12.2f}{low:>6.2f}{mid:>7.2f}" for ms, low, mid in row)
        print(f"{name:<14}{cells}")
    print(f"targets at K = {args.sizes[-1]} (median ratio):")
    for name, target in TARGETS.items():
        mid = results[name][-1][2]
        print(f"  {name:<14}{mid:>6.2f} <= {target:.1f}x: {'met' if mid <= target else 'NOT MET'}")


if __name__ == "__main__":
    main()
