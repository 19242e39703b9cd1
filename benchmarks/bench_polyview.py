"""Forward + backward time and memory of every poly-view estimator and of the training loss.

Each estimator is timed from embeddings ``z: (K, M, D)``: the S-based ones include the einsum that
builds ``S: (K, M, K, M)``, the losses and ``sufficient_statistics`` take ``z`` directly. Two
baselines from the same run:

- floor: the einsum that builds S plus one logsumexp (the estimators' own) over every candidate
  ``(j, b)``, forward + backward; no estimator on S can do less. Target: within 2x of it. Floor
  and estimator take turns, repeat by repeat, so that load on a shared machine hits both alike.
  ``/floor`` is with the default value checks (``validate_args=True``), ``unchecked`` without
  them.
- the loop reference of ``tests/polyview_reference.py`` (Python loops over samples, views and
  view pairs), timed once (no warm-up, one repeat) to give the speedup. Its backward writes an
  S-sized gradient for every slice it indexed, so its cost grows like K^3 M^4: at K > 64 both it
  and the fast version are timed on the first 64 samples (``--reference-k``), and the table says
  at which K the speedup was measured.

Memory: peak extra memory of one forward + backward (the torch profiler's memory timeline, CPU
tensors created minus freed, above what existed before) and the bytes autograd saves for the
backward (unique storages seen by a saved-tensors hook), both in units of |S| = 4 K^2 M^2 bytes.
Run by hand (about ten minutes on two cores, mostly the loop references):

    nice python benchmarks/bench_polyview.py [--device cuda] [--repeats 5] [--no-reference]
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action

# time the checkout this script lives in (and its loop references), not the installed mibounds
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import polyview_reference as R

from mibounds import bounds
from mibounds import polyview as P
from mibounds._numerics import logsumexp
from mibounds.polyview_loss import polyview_loss

from timing import interleaved_seconds, seconds, step

SIZES = [(256, 2), (256, 8), (64, 16), (1024, 4)]
TEMPERATURE = 0.1


def build_scores(z: Tensor) -> Tensor:
    return torch.einsum("iad,jbd->iajb", z, z)


def floor(z: Tensor) -> Tensor:
    return logsumexp(build_scores(z).flatten(-2), -1).sum()


def on_scores(estimator: Callable[..., Tensor]) -> Callable[..., Tensor]:
    return lambda z, checked=True: estimator(build_scores(z), validate_args=checked)


def set_then_one_vs_rest(aggregate: str, bound: Callable[..., Tensor] = bounds.infonce):
    def estimator(S: Tensor, validate_args: bool = True) -> Tensor:
        F = P.set_scores(S, aggregate, validate_args=validate_args)
        return P.one_vs_rest(F, bound, validate_args=validate_args)

    return estimator


def checked(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    return lambda z, checked=True: fn(z, validate_args=checked)


def loss(aggregate: str, negatives: str) -> Callable[..., Tensor]:
    return lambda z, checked=True: polyview_loss(
        z, TEMPERATURE, aggregate, negatives, validate_args=checked
    )


def reference_loss(aggregate: str, negatives: str) -> Callable[[Tensor], Tensor]:
    return lambda z: R.polyview_loss(z, TEMPERATURE, aggregate, negatives)


# name -> (estimator of z with a validate_args switch, loop reference of z)
ESTIMATORS: dict[str, tuple[Callable[..., Tensor], Callable[[Tensor], Tensor]]] = {
    "multicrop": (on_scores(P.multicrop), lambda z: R.multicrop(build_scores(z))),
    "multicrop(nwj)": (
        on_scores(functools.partial(P.multicrop, bound=bounds.nwj)),
        lambda z: R.multicrop(build_scores(z), bound=bounds.nwj),
    ),
    "arithmetic": (on_scores(P.arithmetic), lambda z: R.arithmetic(build_scores(z))),
    "geometric": (on_scores(P.geometric), lambda z: R.geometric(build_scores(z))),
    "1vR(set arith)": (
        on_scores(set_then_one_vs_rest("arithmetic")),
        lambda z: R.one_vs_rest(R.set_scores(build_scores(z), "arithmetic")),
    ),
    "1vR(set geo,nwj)": (
        on_scores(set_then_one_vs_rest("geometric", bounds.nwj)),
        lambda z: R.one_vs_rest(R.set_scores(build_scores(z), "geometric"), bound=bounds.nwj),
    ),
    "suff_stats": (checked(P.sufficient_statistics), R.sufficient_statistics),
    "loss all/arith": (loss("arithmetic", "all_views"), reference_loss("arithmetic", "all_views")),
    "loss all/geo": (loss("geometric", "all_views"), reference_loss("geometric", "all_views")),
    "loss same/arith": (loss("arithmetic", "same_view"), reference_loss("arithmetic", "same_view")),
}


def peak_extra_bytes(fn: Callable[[Tensor], Tensor], z: Tensor) -> int:
    """Peak bytes of tensors alive during one forward + backward, above those alive before."""
    step(fn, z)  # z.grad exists before the measured step, as in a training loop
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step(fn, z)
    live = peak = 0
    for _, action, (key, _), size in prof._memory_profile().timeline:
        if key.device != z.device or action == Action.PREEXISTING:
            continue
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def saved_bytes(fn: Callable[[Tensor], Tensor], z: Tensor) -> int:
    """Bytes of the distinct storages autograd saves for the backward (z itself excluded)."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() != z.untyped_storage().data_ptr():
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(z)
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reference", action="store_true", help="skip the loop references")
    parser.add_argument(
        "--reference-k", type=int, default=64, help="samples for the loop reference (subsample)"
    )
    parser.add_argument(
        "--sizes", nargs="+", default=[f"{k},{m}" for k, m in SIZES], help="K,M pairs"
    )
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"D = {args.dim}, median of {args.repeats} (loop reference: 1 run)"
    )
    header = (
        f"{'estimator':<18}{'K':>6}{'M':>4}{'ms':>9}{'/floor':>8}{'unchecked':>11}"
        f"{'loop K':>8}{'loop ms':>10}{'speedup':>9}{'peak/|S|':>10}{'saved/|S|':>11}"
    )
    print(header)
    g = torch.Generator().manual_seed(0)
    for k, m in (map(int, size.split(",")) for size in args.sizes):
        # unit-variance scores: dot products of D-dim vectors with entries of variance 1/D
        z = (torch.randn(k, m, args.dim, generator=g) / args.dim**0.5).to(args.device)
        z.requires_grad_()
        size_s = 4 * (k * m) ** 2
        floor_ms = seconds(floor, z, args.repeats) * 1e3
        print(
            f"{'floor':<18}{k:>6}{m:>4}{floor_ms:>9.2f}{1:>8.2f}{'':>11}{'':>27}"
            f"{peak_extra_bytes(floor, z) / size_s:>10.2f}{saved_bytes(floor, z) / size_s:>11.2f}",
            flush=True,
        )
        for name, (fn, reference) in ESTIMATORS.items():
            unchecked = functools.partial(fn, checked=False)
            base, ms, ms_unchecked = (
                t * 1e3 for t in interleaved_seconds([floor, fn, unchecked], z, args.repeats)
            )
            loop = f"{'':>27}"
            if not args.no_reference:
                k_ref = min(k, args.reference_k)
                sub = z.detach()[:k_ref].clone().requires_grad_()
                fast_ms = ms if k_ref == k else seconds(fn, sub, args.repeats) * 1e3
                loop_ms = seconds(reference, sub, repeats=1, warmup=0) * 1e3
                loop = f"{k_ref:>8}{loop_ms:>10.0f}{loop_ms / fast_ms:>9.0f}"
            print(
                f"{name:<18}{k:>6}{m:>4}{ms:>9.2f}{ms / base:>8.2f}{ms_unchecked / base:>11.2f}"
                f"{loop}{peak_extra_bytes(fn, z) / size_s:>10.2f}"
                f"{saved_bytes(fn, z) / size_s:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
