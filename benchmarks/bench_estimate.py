"""The default ``mibounds.estimate`` on the field's standard tasks at n = 5,000: time and accuracy.

For each task of ``TASKS`` below (the "Beyond Normal" benchmark's, Czyż et al. 2023, as named in
``mibounds.tasks``): n samples drawn with seed 0, the default ``estimate`` (its seeds 0..S-1),
the true MI, the estimate ± its standard error, the error and whether it is within 0.1 nats;
beside it the two classical baselines on the same samples (``mibounds.classical``: CCA's
Gaussian MI and KSG with k = 3). Targets (docs/estimation.md): the default on the 5 + 5 dense
Gaussian in under 60 s on 2 CPU cores; within 0.1 nats on every non-pathological task.

Rows are appended to ``OUT/rows.jsonl`` as each task finishes and skipped when run again, so an
interrupted run resumes; the markdown table goes to stdout and ``OUT/accuracy.md``. Run by hand:

    nice python benchmarks/bench_estimate.py [--threads 2] [--seeds 3] [--n 5000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mibounds.classical import cca_mi, ksg_mi
from mibounds.estimation import estimate
from mibounds.tasks import TASKS

NAMES = [
    "multinormal-dense-5-5-0.5",
    "multinormal-sparse-5-5-2-2.0",
    "student-identity-5-5-2",
    "half_cube-multinormal-sparse-5-5-2-2.0",
    "asinh-student-identity-5-5-2",
    "normal_cdf-multinormal-sparse-3-3-2-2.0",
    "spiral-multinormal-sparse-3-3-2-2.0",
    "wiggly-multinormal-sparse-3-3-2-2.0",
    "1v1-additive-0.1",
    "multinormal-dense-25-25-0.5",
]
TOLERANCE = 0.1


def run_task(name: str, n: int, seeds: int) -> dict:
    task = TASKS[name]
    x, y = task.sample(n, generator=torch.Generator().manual_seed(0))
    result = estimate(x, y, seeds=seeds, progress=False, device="cpu")
    return {
        "task": name,
        "true": task.mi,
        "estimate": result.value,
        "stderr": result.stderr,
        "error": result.value - task.mi,
        "within": abs(result.value - task.mi) < TOLERANCE,
        "seconds": result.seconds,
        "steps": list(result.steps),
        "cca": cca_mi(x, y),
        "ksg": ksg_mi(x, y),
    }


def table(rows: list[dict], n: int, seeds: int, threads: int) -> str:
    lines = [
        f"Default `mibounds.estimate` (infonce, early stopping, {seeds} seeds) at n = {n}, "
        f"{threads} torch thread(s); nats. Classical baselines on the same samples.",
        "",
        "| task | true MI | estimate ± se | error | within 0.1 | s | CCA | KSG |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['task']}` | {r['true']:.3f} | {r['estimate']:.3f} ± {r['stderr']:.3f} | "
            f"{r['error']:+.3f} | {'yes' if r['within'] else '**no**'} | {r['seconds']:.0f} | "
            f"{r['cca']:.3f} | {r['ksg']:.3f} |"
        )
    hits = sum(r["within"] for r in rows)
    lines += ["", f"Within {TOLERANCE} nats: {hits} of {len(rows)} tasks."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-estimate"))
    parser.add_argument("--tasks", default=",".join(NAMES), help="comma list of task names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "rows.jsonl"
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if (row["n"], row["seeds"], row["threads"]) == (args.n, args.seeds, args.threads):
                done[row["task"]] = row
    start = time.perf_counter()
    names = args.tasks.split(",")
    for name in tqdm(names, desc="tasks"):
        if name in done:
            continue
        row = {**run_task(name, args.n, args.seeds), "n": args.n}
        row.update(seeds=args.seeds, threads=args.threads)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done[name] = row
    text = table([done[n] for n in names], args.n, args.seeds, args.threads)
    text += f"\n\nThis run: {time.perf_counter() - start:.0f} s (tasks already in {path} skipped)."
    (args.out / "accuracy.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
