"""Forward + backward time of the poly-view loss from ``mibounds.tiled``, dense against tiled.

Variants of ``mibounds.polyview_loss.polyview_loss`` (``negatives="all_views"``, arithmetic
aggregate by default) on embeddings ``z: (K, M, D)``, taking turns repeat by repeat
(``timing.take_turns``):

- ``dense``: a memory budget everything fits, so the whole ``(K, M, M, N)`` scores at once;
- ``tiled``: a budget that leaves blocks of the default size (``mibounds.tiled``), or of each
  of ``--blocks`` candidate rows.

For each size it prints the median milliseconds of ``dense`` and, for every tiled variant, the
min and median over repeats of its time over dense's in the same repeat
(``timing.ratio_summary``). Target: tiled <= 1.3x dense where dense
fits. Run by hand (about two minutes on two
cores):

    nice python benchmarks/bench_tiled.py [--device cuda] [--autocast] [--blocks 32 64 128]
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
from mibounds import polyview as P
from mibounds.polyview_loss import polyview_loss
from mibounds.tiled import _BLOCK_BUFFERS, _default_block_size, _score_bytes

from timing import ratio_summary, step, take_turns

SIZES = [(512, 4), (256, 8), (128, 16), (1024, 8)]  # (K, M): K M = 2048 three ways, then 8192
TEMPERATURE = 0.1


def variants(
    aggregate: str, negatives: str, blocks: list[int | None]
) -> dict[str, Callable[[Tensor], Tensor]]:
    args = (TEMPERATURE, aggregate, negatives)
    fns: dict[str, Callable[[Tensor], Tensor]] = {
        "dense": lambda z: polyview_loss(z, *args, memory_budget=2**62, validate_args=False),
    }
    for block in blocks:
        name = "tiled" if block is None else f"tiled B={block}"
        fns[name] = functools.partial(_tiled, args=args, block=block)
    return fns


def _tiled(z: Tensor, args: tuple, block: int | None) -> Tensor:
    """Tiled, with ``block`` candidate rows, or the block the automatic choice would take: the
    memory budget of two blocks of that many rows."""
    rows = _default_block_size(z, memory_budget=2**62) if block is None else block
    budget = _BLOCK_BUFFERS * _score_bytes(z, rows)
    return polyview_loss(z, *args, memory_budget=budget, validate_args=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--aggregate", default="arithmetic", choices=P.AGGREGATES)
    parser.add_argument("--negatives", default="all_views", choices=P.NEGATIVES)
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast forward")
    parser.add_argument(
        "--blocks", type=int, nargs="*", default=[], help="block sizes to time besides the default"
    )
    parser.add_argument(
        "--sizes", nargs="+", default=[f"{k},{m}" for k, m in SIZES], help="K,M pairs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"D = {args.dim}, {args.negatives}/{args.aggregate}, autocast {args.autocast}, "
        f"{args.repeats} repeats taking turns; ratios to dense per repeat: min and median"
    )
    print(f"{'variant':<14}{'K':>6}{'M':>4}{'ms':>9}{'/dense min':>12}{'median':>8}")
    fns = variants(args.aggregate, args.negatives, [None, *args.blocks])
    g = torch.Generator().manual_seed(0)
    for k, m in (map(int, size.split(",")) for size in args.sizes):
        z = torch.randn(k, m, args.dim, generator=g).to(args.device).requires_grad_()

        calls = [functools.partial(step, fn, z, args.autocast) for fn in fns.values()]
        times = dict(zip(fns, take_turns(calls, args.repeats), strict=True))
        dense = times["dense"]
        for name, record in times.items():
            row = f"{name:<14}{k:>6}{m:>4}{statistics.median(record) * 1e3:>9.1f}"
            if name != "dense":
                low, mid = ratio_summary(record, dense)
                row += f"{low:>12.2f}{mid:>8.2f}"
            if name == "tiled":
                row += f"   (B = {_default_block_size(z, 2**62)})"
            print(row, flush=True)


if __name__ == "__main__":
    main()
