"""Batched seeds against a plain per-seed loop: the same training, R = 16 seeds.

The batched trainer (``mibounds.harness.train``) stacks the R critics' parameters and runs them
as one model (batched matmuls); the baseline trains each seed in turn with an ordinary module,
the same (fused) Adam and the same data and initial weights. Both do the same steps and
held-out evaluation, so the final estimates agree (printed). Target: the batched trainer at
least 5x faster on 16 seeds. Run by hand:

    python benchmarks/bench_harness.py [--seeds 16] [--steps 200] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from mibounds.harness import RunConfig, train
from mibounds.harness.data import GaussianStream
from mibounds.harness.objectives import build_objective, harness_entry
from mibounds.harness.trainer import adam, init_critic

from timing import take_turns

# Figure 2 of the poly-view paper (d = 1, K = 16, rho = 0.9, the polyview-gaussian critic) at
# each of its M, where one seed's step goes from overhead-bound (M = 2) to compute-bound
# (M = 10); and a pairwise InfoNCE whose single-seed step is compute-bound (~1 GFLOP)
POLYVIEW = {
    "objective": "arithmetic",
    "d": 1,
    "k": 16,
    "rho": 0.9,
    "critic_params": {"hidden_dim": 64, "embed_dim": 16, "n_hidden": 2},
}
SETTINGS = {
    **{f"poly-view arithmetic, K = 16, M = {m}": {**POLYVIEW, "m": m} for m in (2, 4, 8, 10)},
    "pairwise InfoNCE, d = 20, K = 64": {
        "objective": "infonce",
        "d": 20,
        "k": 64,
        "mi": 4.0,
        "critic_params": {"hidden_dim": 256, "embed_dim": 32, "n_hidden": 2},
    },
}


def plain_loop(config: RunConfig, seeds: list[int], device: str) -> list[float]:
    """Each seed alone: its own module, Adam and data stream; returns the held-out estimates."""
    estimates = []
    spec = harness_entry(config.objective)
    objective = build_objective(spec, spec.check_params(dict(config.objective_params)), 1)

    def critic_of(module):
        # the objective expects a leading seed axis of size 1
        return lambda x, y=None: module(x[0], None if y is None else y[0]).unsqueeze(0)

    for seed in seeds:
        module = init_critic(config, seed).to(device)
        source = GaussianStream(config, [seed], torch.device(device))
        optimizer = adam(module.parameters(), config.lr, torch.device(device))
        critic = critic_of(module)
        for step in range(config.steps):
            loss = -objective(critic, source.train_batch(step), validate_args=False).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            batch = source.eval_batches(config.eval_batches)
            value = torch.stack(
                [
                    objective(
                        critic, type(batch)(x=batch.x[:, i], y=_at(batch.y, i)), validate_args=False
                    )
                    for i in range(config.eval_batches)
                ]
            )
        estimates.append(float(value.mean()))
    return estimates


def _at(t, i):
    return None if t is None else t[:, i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="seeds R (default 16)")
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for every path (default 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each path, taking turns (default 3)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    print(
        f"R = {args.seeds} seeds, {args.steps} steps, {args.threads} thread(s), {args.device}; "
        f"median of {args.repeats} runs each, the paths taking turns"
    )
    for name, values in SETTINGS.items():
        config = RunConfig(steps=args.steps, eval_batches=4, curve_every=10, **values)
        estimates: dict[str, list[float]] = {}

        def batched(config=config, estimates=estimates) -> None:
            runs = train(config, seeds, device=args.device)
            estimates["batched"] = [r["estimate_mean"] for r in runs]

        def plain(config=config, estimates=estimates) -> None:
            estimates["plain"] = plain_loop(config, seeds, args.device)

        def alone(config=config) -> None:
            for seed in seeds:
                train(config, [seed], device=args.device)

        train(config, seeds[:1], device=args.device)  # first-call costs, outside the timing
        times = take_turns([batched, plain, alone], args.repeats, warmup=0)
        t_batched, t_plain, t_alone = (statistics.median(t) for t in times)
        per_run = [p / b for p, b in zip(times[1], times[0], strict=True)]
        diff = max(
            abs(a - b) for a, b in zip(estimates["batched"], estimates["plain"], strict=True)
        )
        print(
            f"{name}:\n  batched {t_batched:.2f} s; plain per-seed loop {t_plain:.2f} s "
            f"(speed-up {t_plain / t_batched:.1f}x, per repeat {min(per_run):.1f}-"
            f"{max(per_run):.1f}x; max |estimate difference| {diff:.1e} nats); "
            f"train() once per seed {t_alone:.2f} s ({t_alone / t_batched:.1f}x)"
        )


if __name__ == "__main__":
    main()
