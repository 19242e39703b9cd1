"""Timing shared by the benchmarks: forward + backward, functions taking turns.

On a shared machine the load changes from second to second; timing a baseline and an estimator
in separate blocks lets that change masquerade as a speed ratio. Here every repeat runs each
function once, in turn, so a slow stretch hits them alike, and the medians are compared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor


def step(fn: Callable[[Tensor], Tensor], x: Tensor) -> None:
    """One forward + backward of ``fn`` at the leaf ``x`` (waits for the GPU, if any)."""
    x.grad = None
    fn(x).backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_seconds(
    fns: list[Callable[[Tensor], Tensor]], x: Tensor, repeats: int, warmup: int = 2
) -> list[float]:
    """Median seconds of one forward + backward of each function, the functions taking turns."""
    for _ in range(warmup):
        for fn in fns:
            step(fn, x)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            step(fn, x)
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def seconds(fn: Callable[[Tensor], Tensor], x: Tensor, repeats: int, warmup: int = 2) -> float:
    """Median seconds of one forward + backward of ``fn``."""
    return interleaved_seconds([fn], x, repeats, warmup)[0]
