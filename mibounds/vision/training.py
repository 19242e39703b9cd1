"""Self-supervised training of an image encoder with any objective of the catalogue.

One step: a batch of K images with M augmented views, ``(K, M, C, H, W)``, goes through the
encoder in one forward pass to embeddings ``z: (K, M, D)``, and the objective's loss on ``z``
is minimised. K is the *global* batch: with W processes (``torchrun``), each holds K / W images,
and the objective sees every process's embeddings through a differentiable all-gather
(``distributed``).

Reproducibility: the model is initialised from ``seed``; epoch e visits the items in a
permutation drawn from ``(seed, e)`` and augments item i from ``(seed, e, i)``; so a run resumed
from the checkpoint written after each epoch continues exactly as an uninterrupted run would (on
the same device and thread count), and W processes see the same global batches as one.

A process of a multi-process job that dies or stops answering (``distributed``) ends every
other process at its next collective, each with one line (``GroupFailure``) naming the epoch and
the checkpoint directory: running the same command again resumes from the last finished epoch.

Output, in ``config.out``: ``checkpoint.pt`` (model, objective state, optimiser, schedule, AMP
scaler, metrics) and ``record.json`` (config, per-epoch metrics, wall time, views processed,
relative compute = views processed / views SimCLR with M = 2 would process in the same epochs,
i.e. M / 2; and the probe's accuracies), both rewritten after every epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from mibounds._checks import resolve_device
from mibounds.provenance import provenance
from mibounds.vision.config import EXECUTION_FIELDS, TrainConfig
from mibounds.vision.datasets import DatasetInfo, ImageSet, load_dataset
from mibounds.vision.distributed import (
    DistEnv,
    GroupFailure,
    failure_reason,
    gather_hook,
    group_failure,
    init_distributed,
    shutdown,
)
from mibounds.vision.encoders import Encoder, min_image_size
from mibounds.vision.objectives import LossContext, build_objective
from mibounds.vision.probe import evaluate
from mibounds.vision.views import MultiView, check_crop, eval_transform, view_transform

__all__ = [
    "EpochBatches",
    "build_data",
    "build_encoder",
    "compute_loss",
    "load_checkpoint",
    "lr_factor",
    "probe_run",
    "train",
]

CHECKPOINT, RECORD = "checkpoint.pt", "record.json"


# --------------------------------------------------------------------------------- building


def build_data(
    config: TrainConfig, *, progress: bool = False
) -> tuple[ImageSet, ImageSet, ImageSet, DatasetInfo]:
    """``(train_views, train_eval, test_eval, info)``: the training split (its first
    ``config.subset`` items, if set) with the multi-view transform (items
    ``((M, C, S, S), label, index)``, seeded per item), and the whole train and test splits
    with the deterministic evaluation transform (items ``((C, S, S), label, index)``), for the
    probes.

    Checks every file of the dataset (``load_dataset``; ``progress``: a bar while a large
    ImageFolder is scanned) and that the images suit the crop and the encoder's stem, before
    anything runs.
    """
    train, test, info = load_dataset(
        config.dataset, config.data_root, image_size=config.image_size, progress=progress
    )
    views = config.view_config()
    if info.native_size is not None:
        check_crop(info.native_size, views)
    smallest = min_image_size(config.stem, config.image_size)
    if config.image_size < smallest:
        raise ValueError(
            f"image_size {config.image_size} is too small for the {config.arch} encoder's stem: "
            f"it needs images of side >= {smallest}"
        )
    multi = MultiView(view_transform(views, info.mean, info.std), config.views)
    plain = eval_transform(config.image_size, info.mean, info.std, center_crop=info.center_crop)
    subset = train if config.subset is None else train.take(config.subset)
    return (
        subset.with_transform(multi, seed=config.seed),
        train.with_transform(plain),
        test.with_transform(plain),
        info,
    )


def build_encoder(config: TrainConfig, info: DatasetInfo) -> Encoder:
    """The encoder, initialised from ``config.seed`` (torch's global generator is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Encoder(
            config.arch,
            in_channels=info.channels,
            image_size=config.image_size,
            stem=config.stem,
            proj_hidden=config.proj_hidden,
            proj_dim=config.proj_dim,
        )


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # weight decay on weights only: decaying BatchNorm scales and biases only shrinks them
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up from ``1 / warmup_steps`` to 1, then a cosine
    decay to 0 at ``total_steps`` (Loshchilov & Hutter 2017, without restarts)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class EpochBatches(Sampler[list[int]]):
    """Global batches of K items in a permutation drawn from ``(seed, epoch)``; this process
    yields its share, items ``[rank K / W, (rank + 1) K / W)`` of each. The last partial batch
    is dropped, so every step has exactly K items (all-gather needs equal shares)."""

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world: int = 1, seed: int = 0):
        if batch_size % world:
            raise ValueError(
                f"batch_size K = {batch_size} must be divisible by the {world} processes"
            )
        if batch_size // world < 2:
            raise ValueError(
                f"batch_size K = {batch_size} over {world} processes leaves fewer than 2 images "
                "per process; use K >= 2 per process"
            )
        if batch_size > n:
            raise ValueError(f"batch_size K = {batch_size} exceeds the {n} training images")
        self.n, self.batch_size, self.rank, self.world, self.seed = n, batch_size, rank, world, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        entropy = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint32)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(int(entropy[0])))
        share = self.batch_size // self.world
        for b in range(len(self)):
            start = b * self.batch_size + self.rank * share
            yield perm[start : start + share].tolist()


def compute_loss(model: nn.Module, objective: nn.Module, views: Tensor, indices: Tensor) -> Tensor:
    """The objective's loss on one batch: ``views: (K, M, C, H, W)`` through ``model`` in one
    forward pass (every view normalised with the same BatchNorm statistics) to ``z: (K, M, D)``,
    then ``objective(z, indices)``."""
    return objective(model(views), indices)


# ------------------------------------------------------------------------------ checkpoints


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename it: a run killed mid-write keeps the old file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict of a run directory (raises ``ValueError`` if there is none)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ValueError(
            f"no checkpoint at {str(path)!r}: expected a run directory of `mibounds vision train`"
        )
    return torch.load(path, map_location=map_location, weights_only=True)


def _check_resumable(saved: dict[str, Any], config: TrainConfig, run_dir: Path) -> None:
    current = config.to_dict()
    saved = {**current, **{k: v for k, v in saved.items() if k in current}}
    saved["crop_scale"] = list(saved["crop_scale"])
    differ = sorted(k for k in current if k not in EXECUTION_FIELDS and saved.get(k) != current[k])
    if differ:
        changes = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in differ)
        raise ValueError(
            f"{run_dir} holds a run with another configuration ({changes}); resume it with the "
            f"same settings, or pass another --out (or --restart to overwrite it)"
        )


# -------------------------------------------------------------------------------- training


class _Run:
    """The state of one training run and the epoch loop over it."""

    def __init__(self, config: TrainConfig, env: DistEnv, restart: bool) -> None:
        self.config, self.env = config, env
        self.dir = Path(config.out)
        self.train_views, self.train_eval, self.test_eval, self.info = build_data(
            config, progress=config.progress and env.is_main
        )
        n = len(self.train_views)
        self.sampler = EpochBatches(
            n, config.batch_size, rank=env.rank, world=env.world_size, seed=config.seed
        )
        model: nn.Module = build_encoder(config, self.info)
        if config.sync_bn and env.device.type != "cuda":
            raise ValueError(
                "sync_bn needs CUDA: torch's SyncBatchNorm runs on GPUs only (on CPU each "
                "process normalises its own K / W images)"
            )
        if config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(env.device)
        self.model = (
            DistributedDataParallel(
                model, device_ids=[env.device] if env.device.type == "cuda" else None
            )
            if env.distributed
            else model
        )
        budget = max(1, round(config.memory_budget * 2**30))  # GiB -> bytes
        ctx = LossContext(config.temperature, config.views, n, gather_hook(env), budget)
        self.objective = build_objective(config.objective, ctx, **config.objective_params).to(
            env.device
        )
        self.optimizer = _optimizer(config, self.model)
        steps = len(self.sampler)
        self.total_steps = config.epochs * steps
        warmup = round(config.warmup_epochs * steps)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, self.total_steps)
        )
        cuda = env.device.type == "cuda"
        self.amp_dtype = (
            (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            if cuda and config.amp
            else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch, self.metrics, self.wall_time, self.probe = 0, [], 0.0, None
        if not restart and (self.dir / CHECKPOINT).is_file():
            self._resume()

    # -- persistence

    def _resume(self) -> None:
        state = load_checkpoint(self.dir, map_location=self.env.device)
        _check_resumable(state["config"], self.config, self.dir)
        _unwrap(self.model).load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.metrics = state["epoch"], state["metrics"]
        self.wall_time, self.probe = state["wall_time"], state.get("probe")

    def save(self) -> None:
        if not self.env.is_main:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model": _unwrap(self.model).state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "metrics": self.metrics,
            "wall_time": self.wall_time,
            "probe": self.probe,
        }
        _atomic_write(self.dir / CHECKPOINT, lambda p: torch.save(state, p))
        record = self.record()
        _atomic_write(self.dir / RECORD, lambda p: p.write_text(json.dumps(record, indent=2)))

    def record(self) -> dict[str, Any]:
        views = sum(m["views"] for m in self.metrics)
        images = sum(m["images"] for m in self.metrics)
        return {
            "config": self.config.to_dict(),
            "world_size": self.env.world_size,
            "dataset_size": len(self.train_views),
            "steps_per_epoch": len(self.sampler),
            "epochs_done": self.epoch,
            "finished": self.epoch == self.config.epochs,
            "metrics": self.metrics,
            "wall_time_s": self.wall_time,
            "views_processed": views,
            "relative_compute": views / (2 * images) if images else None,
            "probe": self.probe,
            "provenance": provenance(self.env.device),
        }

    # -- the loop

    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        self.train_views.epoch = self.epoch
        return DataLoader(
            self.train_views,
            batch_sampler=self.sampler,
            num_workers=self.config.workers,
            pin_memory=self.env.device.type == "cuda",
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        device, start = self.env.device, time.perf_counter()
        total = torch.zeros((), device=device, dtype=torch.float64)
        bar = tqdm(
            self._loader(),
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
            disable=not (self.config.progress and self.env.is_main),
            leave=False,
        )
        steps = 0
        for views, _, indices in bar:
            views = views.to(device, non_blocking=True)
            indices = indices.to(device, non_blocking=True)
            with self._autocast():
                loss = compute_loss(self.model, self.objective, views, indices)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            total += loss.detach()
            steps += 1
            if steps % 10 == 0 or steps == len(self.sampler):
                value = loss.item()  # one device sync per 10 steps
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"loss became {value} at epoch {self.epoch + 1}, step {steps}; the "
                        f"checkpoint of the last finished epoch is in {self.dir}"
                    )
                bar.set_postfix(loss=f"{value:.4f}")
        if self.env.distributed:
            torch.distributed.all_reduce(total)
            total /= self.env.world_size
        seconds = time.perf_counter() - start
        images = steps * self.config.batch_size
        return {
            "epoch": self.epoch + 1,
            "loss": float(total) / steps,
            "lr": self.schedule.get_last_lr()[0],
            "seconds": seconds,
            "images": images,
            "views": images * self.config.views,
            "images_per_s": images / seconds,
        }

    def evaluate(self) -> dict[str, float]:
        return evaluate(
            _unwrap(self.model),
            self.train_eval,
            self.test_eval,
            device=self.env.device,
            knn_k=self.config.knn_k,
            knn_temperature=self.config.knn_temperature,
            probe_epochs=self.config.probe_epochs,
            workers=self.config.workers,
            seed=self.config.seed,
        )


def train(config: TrainConfig, *, restart: bool = False) -> dict[str, Any]:
    """Train (or resume) the run ``config`` describes; returns its record (see the module
    docstring), after the kNN and linear probes if ``config.probe``.

    Under ``torchrun`` it joins the process group from the environment; every process returns
    the same record, only process 0 writes files and probes. If another process dies or stops
    answering, each survivor raises ``GroupFailure`` at its next collective (within the
    group's timeout, ``distributed.init_distributed``), saying where to resume from.
    """
    env = init_distributed(config.device, config.dist_timeout)
    stage = "start-up (before epoch 1)"
    try:
        run = _Run(config, env, restart)
        epochs = range(run.epoch, config.epochs)
        for _ in tqdm(epochs, desc="epochs", disable=not (config.progress and env.is_main)):
            stage = f"epoch {run.epoch + 1}"
            metrics = run.train_epoch()
            run.epoch += 1
            run.metrics.append(metrics)
            run.wall_time += metrics["seconds"]
            run.save()
        if config.probe and run.probe is None and env.is_main:
            start = time.perf_counter()
            run.probe = {**run.evaluate(), "seconds": time.perf_counter() - start}
            run.save()
        return run.record()
    except RuntimeError as error:
        if not (env.distributed and group_failure(error)):
            raise
        raise _lost_peer(env, stage, Path(config.out), error) from error
    finally:
        shutdown(env)


def _lost_peer(env: DistEnv, stage: str, run_dir: Path, error: RuntimeError) -> GroupFailure:
    if (run_dir / CHECKPOINT).is_file():
        kept = f"the checkpoint of the last finished epoch is in {run_dir}; run the same command "
        kept += "again to resume"
    else:
        kept = f"no epoch had finished, so {run_dir} holds no checkpoint; run the same command "
        kept += "again to start"
    return GroupFailure(
        f"a process of the group died or stopped answering during {stage} (rank {env.rank} of "
        f"{env.world_size} saw: {failure_reason(error)}); {kept}"
    )


def probe_run(
    run_dir: str | Path,
    *,
    device: str = "auto",
    workers: int | None = None,
    knn_k: int | None = None,
    knn_temperature: float | None = None,
    probe_epochs: int | None = None,
) -> dict[str, float]:
    """kNN and linear-probe accuracies of the encoder saved in ``run_dir`` (its last epoch), on
    the data of its config; the ``None`` options keep the run's settings. Writes ``probe.json``
    beside the checkpoint and returns its content."""
    state = load_checkpoint(run_dir)
    values = dict(state["config"])
    overrides = {
        "workers": workers,
        "knn_k": knn_k,
        "knn_temperature": knn_temperature,
        "probe_epochs": probe_epochs,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(values)
    dev = resolve_device(device)
    _, train_eval, test_eval, info = build_data(config, progress=config.progress)
    encoder = build_encoder(config, info)
    encoder.load_state_dict(state["model"])
    start = time.perf_counter()
    result = evaluate(
        encoder.to(dev),
        train_eval,
        test_eval,
        device=dev,
        knn_k=config.knn_k,
        knn_temperature=config.knn_temperature,
        probe_epochs=config.probe_epochs,
        workers=config.workers,
        seed=config.seed,
    )
    result = {**result, "epoch": state["epoch"], "seconds": time.perf_counter() - start}
    path = Path(run_dir) / "probe.json"
    _atomic_write(path, lambda p: p.write_text(json.dumps(result, indent=2)))
    return result
