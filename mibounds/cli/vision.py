"""``mibounds vision train`` and ``mibounds vision probe``.

``vision train``'s options are generated from ``TrainConfig``'s fields (``mibounds.vision.config``)
and its objective's parameters from the catalogue (``--param NAME=VALUE``); ``--config FILE``
reads a TOML file of the same keys, which the given options override. torchvision and the
trainer are imported inside the command functions, so building the ``mibounds`` parser stays
light. Several processes: ``torchrun --nproc_per_node=N -m mibounds vision train ...``
(``--batch-size`` is then the global K, split over the N processes).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mibounds.cli.errors import one_line_errors
from mibounds.cli.options import (
    add_common,
    add_dataclass_options,
    apply_common,
    catalogue_params_help,
    dataclass_values,
    parse_params,
)

__all__ = ["config_from_args", "register"]

_FIELDS: list[str] = []  # the generated options' fields, filled by register


def _add_train(sub: argparse._SubParsersAction) -> None:
    from mibounds.catalogue import CATALOGUE
    from mibounds.vision.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="train an encoder on M views per image with an MI objective",
        description="Train a ResNet encoder with any objective of the catalogue on M augmented "
        "views per image; checkpoint every epoch (rerunning the command resumes), then score it "
        "with the kNN and linear probes.\n\nObjectives and their parameters (--param NAME=VALUE; "
        "a pairwise estimator is averaged over the view pairs):\n"
        + catalogue_params_help(list(CATALOGUE)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file of TrainConfig keys (objective may be a table {name = ..., **params}); "
        "the options given here override it",
    )
    _FIELDS[:] = add_dataclass_options(p, TrainConfig)
    p.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a parameter of the objective, e.g. --param negatives=all_views (repeatable)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start afresh even if --out holds a checkpoint (default: resume)",
    )
    add_common(p, out="run directory (default runs/vision/run)")
    p.set_defaults(func=run_train)


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="kNN and linear-probe accuracy of a trained encoder",
        description="Score the frozen backbone of a run directory's checkpoint: weighted kNN "
        "(cosine, k neighbours, temperature T) and a linear probe, top-1 on the test split. "
        "Writes probe.json in the run directory.",
    )
    p.add_argument("run", type=Path, help="run directory of `mibounds vision train`")
    p.add_argument("--workers", type=int, default=None, help="default: the run's")
    p.add_argument("--knn-k", type=int, default=None, help="default: the run's")
    p.add_argument("--knn-temperature", type=float, default=None, help="default: the run's")
    p.add_argument("--probe-epochs", type=int, default=None, help="default: the run's")
    add_common(p, out=None, progress=False)
    p.set_defaults(func=run_probe)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vision train`` and ``vision probe`` to the ``mibounds`` command line."""
    vision = subparsers.add_parser(
        "vision",
        help="image experiments: train ResNet encoders with MI objectives, probe them",
        description="Image experiments: ResNet encoders trained on M views per image.",
    )
    sub = vision.add_subparsers(dest="vision_command", required=True, metavar="SUBCOMMAND")
    _add_train(sub)
    _add_probe(sub)


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` that ``vision train``'s arguments describe: ``--config``'s values,
    overridden by the options given, with ``--device``, ``--out`` and ``--no-progress``."""
    from mibounds.vision.config import TrainConfig

    values = TrainConfig.from_toml(args.config).to_dict() if args.config else {}
    values.update(dataclass_values(args, _FIELDS))
    params = parse_params(args.param)
    if params or "objective" in dataclass_values(args, _FIELDS):
        base = values.get("objective_params", {}) if "objective" not in params else {}
        values["objective_params"] = {**base, **params}
    values["device"] = args.device
    if args.out is not None:
        values["out"] = str(args.out)
    values["progress"] = not args.no_progress
    return TrainConfig.from_dict(values, "vision train")


@one_line_errors(
    lambda args: f"vision {args.vision_command}",
    "The checkpoint of the last finished epoch is kept; run the same command again to resume.",
)
def run_train(args: argparse.Namespace) -> int:
    from mibounds.vision.training import train

    config = config_from_args(args)  # every option checked before any data is read
    args.out = Path(config.out)
    apply_common(args)
    record = train(config, restart=args.restart)
    last = record["metrics"][-1] if record["metrics"] else {}
    summary = {
        "out": record["config"]["out"],
        "epochs": record["epochs_done"],
        "final_loss": last.get("loss"),
        "wall_time_s": round(record["wall_time_s"], 1),
        "relative_compute": record["relative_compute"],
        "probe": record["probe"],
    }
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary, indent=2))
    return 0


@one_line_errors(lambda args: f"vision {args.vision_command}")
def run_probe(args: argparse.Namespace) -> int:
    from mibounds.vision.training import probe_run

    apply_common(args)
    result = probe_run(
        args.run,
        device=args.device,
        workers=args.workers,
        knn_k=args.knn_k,
        knn_temperature=args.knn_temperature,
        probe_epochs=args.probe_epochs,
    )
    print(json.dumps(result, indent=2))
    return 0
