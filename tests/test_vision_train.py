"""The image trainer: an epoch per objective on a digits subset, the loss going down on a fixed
batch, exact resume, the data order and the schedule, and bad input.

Everything runs at 8x8 (the digits' native size) with the tiny ResNet and a small projector, so
that the whole file takes seconds."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch

from mibounds.catalogue import CATALOGUE
from mibounds.vision import training as train_module
from mibounds.vision.config import TrainConfig
from mibounds.vision.objectives import LossContext, build_objective
from mibounds.vision.training import (
    EpochBatches,
    build_data,
    build_encoder,
    compute_loss,
    load_checkpoint,
    lr_factor,
    train,
)

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_config(tmp_path, **changes) -> TrainConfig:
    values = dict(
        image_size=8,
        subset=16,
        batch_size=8,
        views=3,
        epochs=1,
        proj_hidden=32,
        proj_dim=16,
        optimizer="adamw",
        lr=1e-3,
        warmup_epochs=0.0,
        workers=0,
        progress=False,
        probe=False,
        out=str(tmp_path / "run"),
    )
    values.update(changes)
    return TrainConfig(**values)


def _views_for(name: str) -> int:
    return 2 if name == "simclr" else 3


def _params_for(name: str) -> dict:
    return {"alpha": 8.0} if name == "eqco" else {}


# every catalogue entry the image trainer can train (all but per-item states on scores alone)
TRAINABLE = sorted(n for n, e in CATALOGUE.items() if not (e.per_item and e.loss is None))


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_epoch_per_objective(tmp_path, name: str) -> None:
    config = tiny_config(
        tmp_path, objective=name, views=_views_for(name), objective_params=_params_for(name)
    )
    _, _, _, info = build_data(config)
    before = build_encoder(config, info).state_dict()
    record = train(config)
    assert record["finished"] and record["epochs_done"] == 1
    assert record["steps_per_epoch"] == 2
    assert math.isfinite(record["metrics"][0]["loss"])
    assert record["relative_compute"] == pytest.approx(config.views / 2)
    state = load_checkpoint(config.out)
    assert set(state["objective"]) == set(
        build_objective(
            name, LossContext(views=config.views, dataset_size=16), **_params_for(name)
        ).state_dict()
    )
    changed = [k for k, v in state["model"].items() if v.is_floating_point()]
    assert any(not torch.equal(state["model"][k], before[k]) for k in changed)
    saved = json.loads((tmp_path / "run" / "record.json").read_text())
    assert saved["metrics"] == record["metrics"]


@pytest.mark.parametrize("name", TRAINABLE)
def test_loss_decreases_on_a_fixed_batch(tmp_path, name: str) -> None:
    # 20 Adam steps on one batch of 8 digits x M views: the encoder can fit a fixed batch, so
    # every objective's loss must fall (by a margin well above step-to-step noise: the mean of
    # the last 5 steps against the first step)
    m = _views_for(name)
    config = tiny_config(tmp_path, objective=name, views=m, objective_params=_params_for(name))
    views, _, _, info = build_data(config)
    batch = torch.stack([views[i][0] for i in range(8)])
    indices = torch.arange(8)
    model = build_encoder(config, info)
    objective = build_objective(name, LossContext(config.temperature, m, 16), **_params_for(name))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = compute_loss(model, objective, batch, indices)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < losses[0] - 0.05, losses


@pytest.mark.parametrize("objective", ["mine", "sogclr"])
def test_resume_gives_the_uninterrupted_parameters(tmp_path, monkeypatch, objective) -> None:
    # the objective's state must be restored too (MINE's moving average, SogCLR's u_i of every
    # item, which the moving average of epoch 3 reads back from epoch 2); the resumed run uses a
    # loader worker, the uninterrupted one none (augmentations are seeded per item, so they agree)
    common = dict(objective=objective, epochs=3, subset=24, warmup_epochs=1.0, optimizer="sgd")
    straight = tiny_config(tmp_path / "a", **common)
    train(straight)

    interrupted = tiny_config(tmp_path / "b", **common)
    real_epoch = train_module._Run.train_epoch
    calls = {"n": 0}

    def dies_in_epoch_two(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(train_module._Run, "train_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    monkeypatch.setattr(train_module._Run, "train_epoch", real_epoch)
    assert load_checkpoint(interrupted.out)["epoch"] == 1
    resumed = tiny_config(tmp_path / "b", **common, workers=1)
    record = train(resumed)
    assert record["epochs_done"] == 3 and len(record["metrics"]) == 3

    a, b = load_checkpoint(straight.out), load_checkpoint(resumed.out)
    for part in ("model", "objective"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert [m["loss"] for m in a["metrics"]] == [m["loss"] for m in b["metrics"]]
    if objective == "sogclr":  # the comparison above covered every item's u, all visited
        assert a["objective"]["visited"].all() and a["objective"]["log_u"].abs().min() > 0


def test_resume_refuses_another_configuration(tmp_path) -> None:
    train(tiny_config(tmp_path, objective="arithmetic"))
    with pytest.raises(ValueError, match=r"another configuration \(objective"):
        train(tiny_config(tmp_path, objective="geometric"))
    # execution settings may change; a finished run is returned as it is
    record = train(tiny_config(tmp_path, objective="arithmetic", progress=True))
    assert record["epochs_done"] == 1


def test_epoch_batches_split_one_global_batch_over_processes() -> None:
    single = EpochBatches(20, 8, seed=3)
    shares = [EpochBatches(20, 8, rank=r, world=2, seed=3) for r in range(2)]
    for s in (single, *shares):
        s.set_epoch(1)
    glued = [a + b for a, b in zip(*[list(s) for s in shares], strict=True)]
    assert glued == list(single)
    assert len(single) == 2 and all(len(b) == 8 for b in single)
    single.set_epoch(2)
    assert list(single) != glued  # a new permutation every epoch
    with pytest.raises(ValueError, match="divisible"):
        EpochBatches(20, 9, world=2)
    with pytest.raises(ValueError, match="exceeds"):
        EpochBatches(5, 8)


def test_lr_factor_warms_up_linearly_then_decays_by_a_cosine() -> None:
    assert lr_factor(0, 4, 20) == pytest.approx(0.25)
    assert lr_factor(3, 4, 20) == pytest.approx(1.0)
    assert lr_factor(4, 4, 20) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)
    assert lr_factor(20, 4, 20) == pytest.approx(0.0)
    assert lr_factor(0, 0, 10) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ bad input


def test_poly_view_objective_with_one_view_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'arithmetic' needs M >= 2 views per sample, got M = 1"):
        TrainConfig(objective="arithmetic", views=1)


def test_bad_objective_options_fail_in_one_line_before_anything_runs(tmp_path, capsys) -> None:
    import argparse

    from mibounds.cli import vision as commands

    parser = argparse.ArgumentParser(prog="mibounds")
    commands.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "run"
    for option, message in (
        (["--objective", "barlow_multiview", "--param", "beta=-1"], "beta must be a number in [0"),
        (["--objective", "sogclr", "--param", "gamma=1.5"], "gamma must be a number in (0, 1]"),
        (["--objective", "simclr", "--param", "beta=0.1"], "'simclr' got unknown parameter 'beta'"),
        (["--probe-epochs", "0"], "probe_epochs (--probe-epochs) must be an integer >= 1"),
        (["--knn-k", "0"], "knn_k (--knn-k) must be an integer >= 1"),
        (["--knn-temperature", "0"], "knn_temperature (--knn-temperature) must be a number in (0"),
        (["--weight-decay", "-1"], "weight_decay (--weight-decay) must be a number in [0"),
        (["--device", "foo"], "device (--device) must be one of auto, cpu"),
        (["--param", "alpha"], "--param takes NAME=VALUE"),
    ):
        args = parser.parse_args(["vision", "train", *option, "--out", str(out)])
        assert args.func(args) == 2
        error = capsys.readouterr().err
        assert error.startswith("mibounds vision train: error: ") and message in error
        assert error.count("\n") == 1
    assert not out.exists()
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, inf\), got -1\.0"):
        TrainConfig(objective="barlow_multiview", objective_params={"beta": -1.0})


def test_cifar_path_without_the_batch_files(tmp_path) -> None:
    (tmp_path / "data_batch_1").write_bytes(b"")
    config = TrainConfig(dataset="cifar10", data_root=str(tmp_path), image_size=32)
    with pytest.raises(ValueError, match=r"data_batch_2.*test_batch") as error:
        build_data(config)
    assert "data_batch_1" in str(error.value)  # the message lists every expected file


def test_malformed_cifar_batch_is_named(tmp_path) -> None:
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": torch.zeros(2, 3072, dtype=torch.uint8).numpy(), b"labels": [0, 1]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"data_batch_3.*not a CIFAR-10 python batch"):
        build_data(TrainConfig(dataset="cifar10", data_root=str(tmp_path), image_size=32))


def test_small_cifar_stand_in_loads(tmp_path) -> None:
    labels = list(range(10))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = torch.randint(0, 256, (10, 3072), dtype=torch.uint8).numpy()
        (tmp_path / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    views, _, test_eval, info = build_data(
        TrainConfig(dataset="cifar10", data_root=str(tmp_path), image_size=32, views=2)
    )
    assert len(views) == 50 and len(test_eval) == 10 and info.channels == 3
    assert views[0][0].shape == (2, 3, 32, 32)


def test_image_folder_without_splits(tmp_path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"train/ and val/ \(or test/\)"):
        build_data(TrainConfig(dataset="folder", data_root=str(tmp_path), image_size=32))
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="not an ImageFolder split"):
        build_data(TrainConfig(dataset="folder", data_root=str(tmp_path), image_size=32))


def test_image_too_small_for_the_crop_or_the_encoder() -> None:
    with pytest.raises(ValueError, match=r"too small for crop_scale"):
        build_data(TrainConfig(image_size=16, crop_scale=(0.02, 1.0)))
    with pytest.raises(ValueError, match=r"image_size 4 is too small for the tiny encoder's stem"):
        build_data(TrainConfig(image_size=4))
    with pytest.raises(ValueError, match="needs a local root path"):
        build_data(TrainConfig(dataset="cifar10", image_size=32))


def test_image_folder_tree_loads(tmp_path) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                pixels = torch.randint(0, 256, (40, 48, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(tmp_path / split / label / f"{i}.png")
    views, train_eval, test_eval, info = build_data(
        TrainConfig(dataset="folder", data_root=str(tmp_path), image_size=32, views=2)
    )
    assert info.classes == ("cat", "dog") and info.channels == 3 and info.center_crop
    assert len(views) == 6 and len(test_eval) == 6
    assert views[0][0].shape == (2, 3, 32, 32)
    assert train_eval[0][0].shape == (3, 32, 32)
    assert sorted(int(train_eval[i][1]) for i in range(6)) == [0, 0, 0, 1, 1, 1]


def test_package_exports_the_train_function_even_after_the_module_loads():
    """``mibounds.vision.train`` is the function: no submodule of that name shadows it."""
    import mibounds.vision
    from mibounds.vision import training

    assert mibounds.vision.train is training.train


# ------------------------------------------------------------------------ the image scan


def _photo(path, size=(48, 40), seed=0) -> bytes:
    """A small noisy JPEG at ``path`` (noise: the entropy-coded data fills most of the file)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path.read_bytes()


def test_the_scan_reads_headers_checksums_and_jpeg_ends(tmp_path) -> None:
    from mibounds.vision.datasets import _image_problem

    good = _photo(tmp_path / "good.jpg")
    assert _image_problem(str(tmp_path / "good.jpg")) is None
    # data after the end marker (as some cameras append): decoded in full, and readable
    (tmp_path / "trailer.jpg").write_bytes(good + b"\x00" * 5000 + b"vendor data")
    assert _image_problem(str(tmp_path / "trailer.jpg")) is None
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) * 3 // 4])
    assert "truncated" in _image_problem(str(tmp_path / "cut.jpg"))
    # a PNG whose pixel data is damaged fails its chunk checksum (verify), not only a decode
    from PIL import Image

    Image.new("RGB", (16, 16), (10, 200, 30)).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    idat = data.index(b"IDAT") + 8
    data[idat] ^= 0xFF
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    assert _image_problem(str(tmp_path / "ok.png")) is None
    assert "checksum" in _image_problem(str(tmp_path / "flipped.png"))


def test_a_clean_scan_of_a_big_folder_is_remembered_until_a_file_changes(
    tmp_path, monkeypatch
) -> None:
    import os

    from mibounds.vision import datasets

    monkeypatch.setattr(datasets, "SCAN_CACHE_MIN", 4)  # "big" from 4 images
    monkeypatch.setenv("MIBOUNDS_CACHE_DIR", str(tmp_path / "cache"))
    scanned = []
    real = datasets._image_problem
    monkeypatch.setattr(datasets, "_image_problem", lambda p: scanned.append(p) or real(p))
    paths = [str(tmp_path / "img" / f"{i}.jpg") for i in range(5)]
    for i, p in enumerate(paths):
        _photo(Path(p), seed=i)
    datasets.scan_images(paths, tmp_path)
    assert len(scanned) == 5 and len(list((tmp_path / "cache").rglob("*.json"))) == 1
    datasets.scan_images(paths, tmp_path)
    assert len(scanned) == 5  # remembered: no file opened
    datasets.scan_images(paths[:4], tmp_path)  # another file list: scanned
    assert len(scanned) == 9
    Path(paths[2]).write_bytes(b"broken")  # a file changed (size and mtime): scanned again
    os.utime(paths[2], ns=(1, 1))
    with pytest.raises(ValueError, match=r"1 of 5 image files .* img/2.jpg \(not an image"):
        datasets.scan_images(paths, tmp_path)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2  # the bad scan is not kept


def test_a_file_damaged_after_the_scan_is_named_when_read(tmp_path) -> None:
    from mibounds.vision.datasets import ImageSet

    good = _photo(tmp_path / "a.jpg")
    images = ImageSet([str(tmp_path / "a.jpg")], torch.zeros(1, dtype=torch.long))
    assert images[0][0].size == (48, 40)
    (tmp_path / "a.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"image '.*a\.jpg' cannot be decoded \(OSError: image"):
        images[0]
