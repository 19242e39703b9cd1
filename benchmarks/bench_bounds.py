"""Forward + backward time of every pairwise estimator against the floor measured in the same run.

The floor is one ``logsumexp`` over the same (K, K) scores, forward + backward, with the
estimators' own ``mibounds._numerics.logsumexp``: no estimator can avoid reading the K^2 scores
once and writing their gradient once. Target: every estimator within
2x of the floor. Run by hand:

    python benchmarks/bench_bounds.py [--device cuda] [--sizes 256 1024 4096] [--repeats 10]
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
from torch import Tensor

from mibounds import bounds
from mibounds._numerics import logsumexp

from timing import interleaved_seconds


def floor(scores: Tensor) -> Tensor:
    return logsumexp(scores, -1).mean()


ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {
    "floor (logsumexp)": floor,
    "infonce": bounds.infonce,
    "nwj": bounds.nwj,
    "tuba": lambda s: bounds.tuba(s, 1.0),
    "dv": bounds.dv,
    "js": bounds.js,
    "smile": functools.partial(bounds.smile, clip=5.0),
    "interpolated": functools.partial(bounds.interpolated, alpha=0.01),
    "eqco": functools.partial(bounds.eqco, alpha=512.0),
    "mine": bounds.MINE(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    header = f"{'estimator':<20}" + "".join(f"{f'K={k} ms':>12}{'ratio':>7}" for k in args.sizes)
    print(header)
    g = torch.Generator().manual_seed(0)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ESTIMATORS}
    for k in args.sizes:
        scores = torch.randn(k, k, generator=g).to(args.device).requires_grad_()
        for name, fn in ESTIMATORS.items():
            if isinstance(fn, torch.nn.Module):
                fn = type(fn)().to(args.device)  # fresh moving average per size
            base, seconds = interleaved_seconds([floor, fn], scores, args.repeats)
            results[name].append((seconds * 1e3, seconds / base))
    for name, row in results.items():
        print(f"{name:<20}" + "".join(f"{ms:>12.2f}{ratio:>7.2f}" for ms, ratio in row))


if __name__ == "__main__":
    main()
