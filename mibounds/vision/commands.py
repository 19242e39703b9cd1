"""``mibounds vision train`` and ``mibounds vision probe``.

torchvision and the trainer are imported inside the command functions, so building the
``mibounds`` parser stays light. Multi-process: ``torchrun --nproc_per_node=N -m mibounds vision
train ...`` (``--batch-size`` is then the global K, split over the N processes).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from typing import TYPE_CHECKING

from mibounds._command import one_line_errors

if TYPE_CHECKING:  # the trainer imports torchvision: only for annotations here
    from mibounds.vision.training import TrainConfig

__all__ = ["register"]


def _objective_params() -> dict[str, tuple[float, list[str]]]:
    """Every objective hyperparameter -> (a default, the objectives that take it)."""
    from mibounds.vision.objectives import OBJECTIVES

    params: dict[str, tuple[float, list[str]]] = {}
    for name, entry in OBJECTIVES.items():
        for param, default in entry.params.items():
            params.setdefault(param, (default, []))[1].append(name)
    return params


def _scale(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH (e.g. 0.2,1.0), got {text!r}"
        ) from error
    return low, high


def _add_train(sub: argparse._SubParsersAction) -> None:
    from mibounds.vision.objectives import OBJECTIVES

    p = sub.add_parser(
        "train",
        help="train an encoder on M views per image with an MI objective",
        description="Train a ResNet encoder with any objective of mibounds.bounds / "
        "mibounds.polyview on M augmented views per image; checkpoint every epoch (rerunning "
        "the command resumes), then score it with the kNN and linear probes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data and views")
    d.add_argument(
        "--dataset",
        default="digits",
        choices=("digits", "cifar10", "folder"),
        help="digits ship with scikit-learn; cifar10 and folder read --data-root",
    )
    d.add_argument(
        "--data-root",
        default=None,
        help="CIFAR-10 python batches directory, or an ImageFolder root with train/ and val/",
    )
    d.add_argument("--image-size", type=int, default=16, help="side of every view in pixels")
    d.add_argument("--subset", type=int, default=None, help="train on the first N images only")
    d.add_argument("-M", "--views", type=int, default=2, help="views per image M")
    d.add_argument(
        "--crop-scale",
        type=_scale,
        default=(0.2, 1.0),
        help="random resized crop area range LOW,HIGH",
    )
    d.add_argument("--jitter", type=float, default=0.5, help="colour jitter strength (p = 0.8)")
    d.add_argument("--grayscale-p", type=float, default=0.2)
    d.add_argument("--flip-p", type=float, default=0.5)
    d.add_argument(
        "--blur",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Gaussian blur (default: on for images of side >= 96)",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--arch",
        default="tiny",
        choices=("tiny", "resnet18", "resnet34", "resnet50"),
        help="tiny = ResNet(BasicBlock, [1, 1, 1, 1])",
    )
    m.add_argument(
        "--stem",
        default="auto",
        choices=("auto", "cifar", "imagenet"),
        help="auto: the CIFAR stem for images of side <= 64",
    )
    m.add_argument("--proj-hidden", type=int, default=512, help="projector hidden width")
    m.add_argument("--proj-dim", type=int, default=128, help="embedding dimension D")
    m.add_argument(
        "--sync-bn",
        action="store_true",
        help="BatchNorm statistics over the global batch (CUDA, multi-process)",
    )
    o = p.add_argument_group("objective")
    o.add_argument(
        "--objective",
        default="simclr",
        choices=tuple(OBJECTIVES),
        help="; ".join(f"{k}: {v.help}" for k, v in OBJECTIVES.items()),
    )
    o.add_argument("--temperature", type=float, default=0.2, help="tau of the cosine scores")
    for param, (default, users) in _objective_params().items():
        o.add_argument(
            f"--{param.replace('_', '-')}",
            dest=f"param_{param}",
            metavar=param.upper(),
            type=float,
            default=argparse.SUPPRESS,
            help=f"for {', '.join(users)} (default {default})",
        )
    t = p.add_argument_group("optimisation")
    t.add_argument(
        "-K", "--batch-size", type=int, default=128, help="images per step K, over all processes"
    )
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    t.add_argument("--lr", type=float, default=0.1, help="peak learning rate (not scaled by K)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument(
        "--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to zero"
    )
    t.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mixed precision on CUDA (bfloat16 where supported, else float16)",
    )
    t.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("run")
    r.add_argument("--out", default="runs/vision/run", help="run directory")
    r.add_argument(
        "--restart",
        action="store_true",
        help="start afresh even if --out holds a checkpoint (default: resume)",
    )
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader processes (default: min(4, cores - 1))",
    )
    r.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's); on a shared CPU 1 is often fastest",
    )
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--no-progress", dest="progress", action="store_false")
    r.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="skip the kNN and linear probes after training",
    )
    r.add_argument("--probe-epochs", type=int, default=100)
    r.add_argument("--knn-k", type=int, default=200)
    r.add_argument("--knn-temperature", type=float, default=0.1)
    p.set_defaults(func=run_train)


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="kNN and linear-probe accuracy of a trained encoder",
        description="Score the frozen backbone of a run directory's checkpoint: weighted kNN "
        "(cosine, k neighbours, temperature T) and a linear probe, top-1 on the test split. "
        "Writes probe.json in the run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run directory of `mibounds vision train`")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=int, default=None, help="default: the run's")
    p.add_argument("--knn-k", type=int, default=None, help="default: the run's (200)")
    p.add_argument("--knn-temperature", type=float, default=None, help="default: the run's (0.1)")
    p.add_argument("--probe-epochs", type=int, default=None, help="default: the run's (100)")
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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` an argparse namespace of ``vision train`` describes."""
    from mibounds.vision.training import TrainConfig

    values = vars(args)
    names = {f.name for f in fields(TrainConfig)}
    config = {k: v for k, v in values.items() if k in names and v is not None}
    config["params"] = {
        k.removeprefix("param_"): v
        for k, v in values.items()
        if k.startswith("param_") and v is not None
    }
    return TrainConfig(**config)


@one_line_errors(
    lambda args: f"vision {args.vision_command}",
    "The checkpoint of the last finished epoch is kept; run the same command again to resume.",
)
def run_train(args: argparse.Namespace) -> int:
    import torch

    from mibounds.vision.training import train

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    record = train(config_from_args(args), restart=args.restart)
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
