"""Peak memory of one forward + backward of the poly-view loss, dense against tiled.

Each (variant, size) runs in a fresh subprocess, so that one measurement's peak cannot hide
another's. The child makes the embeddings ``z: (K, M, D)`` (and, to load the libraries and
their buffers first, runs one small step), reads its memory, runs one forward + backward of
the loss (``negatives="all_views"``, arithmetic aggregate) and reports the peak above that
reading: on CPU the peak resident set (``getrusage``'s ``ru_maxrss``), on CUDA
``torch.cuda.max_memory_allocated``. Variants (as in ``bench_tiled.py``): ``dense``
(``polyview_loss`` with a budget everything fits, the whole scores at once; only up to
``--dense-max`` anchors K M), ``default`` (its default budget of 1 GiB: dense where the scores
fit it, else tiled) and ``tiled`` (tiled at every size).
Targets: tiled at K M = 65536 within 2 GiB, at 32768 within 1.5 GiB. Run by hand (a few
minutes on two cores, mostly the tiled step at K M = 65536):

    nice python benchmarks/bench_memory.py [--device cuda] [--autocast] [--threads 1]
        [--sizes 4096 8192 ...]

``--autocast`` runs the forward under bf16 autocast (the score matmuls in bf16, the logsumexp in
float32); ``--threads`` sets each child's torch threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

# measure the checkout this script lives in (its children too), not the installed mibounds
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mibounds.polyview_loss import polyview_loss
from mibounds.tiled import _BLOCK_BUFFERS, _default_block_size, _score_bytes

SIZES = [4096, 8192, 16384, 32768, 65536]  # K M
TEMPERATURE = 0.1
GIB = 2**30


def _tiled_budget(z: torch.Tensor) -> int:
    """The budget of two blocks of the size the automatic choice takes where dense does not fit."""
    return _BLOCK_BUFFERS * _score_bytes(z, _default_block_size(z, memory_budget=2**30))


LOSSES = {
    "dense": lambda z: polyview_loss(z, TEMPERATURE, memory_budget=2**62, validate_args=False),
    "default": lambda z: polyview_loss(z, TEMPERATURE, validate_args=False),
    "tiled": lambda z: polyview_loss(
        z, TEMPERATURE, memory_budget=_tiled_budget(z), validate_args=False
    ),
}


def _resident_bytes() -> int:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(variant: str, km: int, m: int, d: int, device: str, autocast: bool) -> dict[str, float]:
    bf16 = torch.autocast(torch.device(device).type, torch.bfloat16)
    context = bf16 if autocast else contextlib.nullcontext()

    def loss(z: torch.Tensor) -> torch.Tensor:
        with context:
            return LOSSES[variant](z)

    warm = torch.randn(16, m, d, device=device, requires_grad=True)
    loss(warm).backward()
    z = torch.randn(km // m, m, d, device=device, requires_grad=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _resident_bytes()
    start = time.perf_counter()
    loss(z).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _resident_bytes()
    return {"extra": (peak - before) / GIB, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="K M values")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--dense-max", type=int, default=16384, help="largest K M for dense")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast forward")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "KM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        variant, km = args.child
        result = child(variant, int(km), args.views, args.dim, args.device, args.autocast)
        print(json.dumps(result))
        return
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, M = "
        f"{args.views}, D = {args.dim}, autocast {args.autocast}; GiB above the embeddings at the "
        "peak of one forward + backward (fresh process each); seconds per variant"
    )
    print(f"{'K M':>7}{'K':>7}{'|S| GiB':>9}  " + "".join(f"{v:>15}" for v in LOSSES) + "   s")
    for km in args.sizes:
        cells, seconds = [], []
        for variant in LOSSES:
            if variant != "tiled" and km > args.dense_max:
                cells.append(f"{'-':>15}")
                continue
            command = [sys.executable, __file__, "--child", variant, str(km)]
            command += ["--views", str(args.views), "--dim", str(args.dim)]
            command += ["--device", args.device, "--threads", str(args.threads)]
            command += ["--autocast"] if args.autocast else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                cells.append(f"{'failed':>15}")
                print(done.stderr.strip().splitlines()[-1], file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            cells.append(f"{result['extra']:>15.3f}")
            seconds.append(f"{result['seconds']:.1f}")
        size_s = 4 * km * km / GIB
        print(f"{km:>7}{km // args.views:>7}{size_s:>9.2f}  " + "".join(cells), "/".join(seconds),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
