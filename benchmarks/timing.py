"""Timing shared by the benchmarks: calls (or forward + backward passes) taking turns.

On a shared machine the load changes from second to second; timing a baseline and an estimator
in separate blocks lets that change masquerade as a speed ratio. Here every repeat runs each
function once, in turn, so a slow stretch hits them alike, and the medians are compared.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor


def step(fn: Callable[[Tensor], Tensor], x: Tensor, autocast: bool = False) -> None:
    """One forward (under bf16 autocast if asked) + backward of ``fn`` at the leaf ``x``
    (waits for the GPU, if any)."""
    x.grad = None
    with torch.autocast(x.device.type, torch.bfloat16) if autocast else contextlib.nullcontext():
        loss = fn(x)
    loss.backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def take_turns(
    calls: list[Callable[[], object]], repeats: int, warmup: int = 2
) -> list[list[float]]:
    """Seconds of each call in every repeat, the calls taking turns: ``[call][repeat]``."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, record in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            record.append(time.perf_counter() - start)
    return times


def interleaved_seconds(
    fns: list[Callable[[Tensor], Tensor]], x: Tensor, repeats: int, warmup: int = 2
) -> list[float]:
    """Median seconds of one forward + backward of each function, the functions taking turns."""
    calls = [lambda fn=fn: step(fn, x) for fn in fns]
    return [statistics.median(record) for record in take_turns(calls, repeats, warmup)]


def ratio_summary(times: list[float], baseline: list[float]) -> tuple[float, float]:
    """Min and median over repeats of ``times[r] / baseline[r]``, two records of ``take_turns``:
    each repeat's ratio compares calls made moments apart, so it cancels slow stretches that the
    ratio of medians would not."""
    per_repeat = [t / b for t, b in zip(times, baseline, strict=True)]
    return min(per_repeat), statistics.median(per_repeat)


def seconds(fn: Callable[[Tensor], Tensor], x: Tensor, repeats: int, warmup: int = 2) -> float:
    """Median seconds of one forward + backward of ``fn``."""
    return interleaved_seconds([fn], x, repeats, warmup)[0]
