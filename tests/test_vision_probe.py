"""Probes on frozen features, the encoders, the views and the ``vision`` commands."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from mibounds.cli import vision as commands
from mibounds.vision.datasets import ImageSet, load_dataset
from mibounds.vision.encoders import Encoder, backbone, projector
from mibounds.vision.probe import evaluate, knn_accuracy, linear_probe
from mibounds.vision.training import TrainConfig, build_data, build_encoder
from mibounds.vision.views import MultiView, ViewConfig, view_transform

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")


def separable(n: int, classes: int = 4, dim: int = 16, seed: int = 0):
    """Class c is a Gaussian blob around 6 e_c with unit noise: linearly separable with margin
    ~6 sd, so a linear classifier errs with probability ~1e-9 per point."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, dim, generator=g) + 6 * nn.functional.one_hot(y, dim).float()
    return x, y


def test_linear_probe_separates_separable_features() -> None:
    x, y = separable(400)
    q, t = separable(200, seed=1)
    assert linear_probe(x, y, q, t) >= 0.99


def test_knn_separates_separable_features_and_matches_a_loop() -> None:
    x, y = separable(300)
    q, t = separable(100, seed=1)
    assert knn_accuracy(x, y, q, t, k=20) >= 0.99
    # weighted vote by hand on a small problem where the classes overlap
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 3, generator=g), torch.randint(0, 3, (30,), generator=g)
    q, t = torch.randn(12, 3, generator=g), torch.randint(0, 3, (12,), generator=g)
    xn, qn = nn.functional.normalize(x, dim=1), nn.functional.normalize(q, dim=1)
    correct = 0
    for i in range(12):
        sim = xn @ qn[i]
        top = sim.topk(7)
        votes = torch.zeros(3).index_add_(0, y[top.indices], (top.values / 0.1).exp())
        correct += int(votes.argmax() == t[i])
    assert knn_accuracy(x, y, q, t, k=7, temperature=0.1, chunk=5) == pytest.approx(correct / 12)


def test_probing_leaves_the_backbone_unchanged() -> None:
    config = TrainConfig(image_size=8, proj_hidden=16, proj_dim=8)
    _, train_eval, test_eval, info = build_data(config)
    encoder = build_encoder(config, info).train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    result = evaluate(encoder, train_eval.take(64), test_eval.take(32), probe_epochs=5, knn_k=10)
    assert 0.0 <= result["knn_top1"] <= 1.0 and 0.0 <= result["linear_top1"] <= 1.0
    assert result["feature_dim"] == 512
    assert encoder.training  # mode restored
    for key, value in encoder.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in encoder.parameters())


def test_encoder_cifar_stem_and_shapes() -> None:
    net, features = backbone("resnet18", in_channels=3, image_size=32)
    assert features == 512
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    big, _ = backbone("resnet18", image_size=224)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    assert backbone("resnet50", image_size=32)[1] == 2048
    head = projector(512, 64, 16)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    encoder = Encoder("tiny", in_channels=1, image_size=8, proj_hidden=16, proj_dim=8)
    views = torch.randn(3, 4, 1, 8, 8)
    assert encoder(views).shape == (3, 4, 8)
    assert encoder.features(views).shape == (3, 4, 512)
    with pytest.raises(ValueError, match=r"image_size 16 is too small for the imagenet stem"):
        backbone("tiny", image_size=16, stem="imagenet")


def test_one_forward_pass_for_all_views() -> None:
    # with BatchNorm in train mode, views see the statistics of all K x M images: equal to
    # running the flattened batch, different from running each view separately
    encoder = Encoder("tiny", in_channels=1, image_size=8, proj_hidden=16, proj_dim=8).train()
    views = torch.randn(4, 3, 1, 8, 8)
    together = encoder(views)
    torch.testing.assert_close(together, encoder(views.flatten(0, 1)).unflatten(0, (4, 3)))
    separately = torch.stack([encoder(views[:, a]) for a in range(3)], 1)
    assert not torch.allclose(together, separately, atol=1e-4)


def test_multiview_items_are_seeded_per_item_and_epoch() -> None:
    train_set, _, info = load_dataset("digits", image_size=16)
    transform = MultiView(view_transform(ViewConfig(16), info.mean, info.std), 4)
    data = train_set.with_transform(transform, seed=7)
    views, label, index = data[5]
    assert views.shape == (4, 1, 16, 16) and index == 5 and label == int(train_set.labels[5])
    assert not torch.equal(views[0], views[1])  # independent views
    torch.testing.assert_close(data[5][0], views)  # same item, same epoch: same views
    data.epoch = 1
    assert not torch.equal(data[5][0], views)
    assert isinstance(data.take(10), ImageSet) and len(data.take(10)) == 10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mibounds")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_commands_train_then_probe(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["vision", "train", "--image-size", "8", "--subset", "16", "-K", "8", "-M", "3",
            "--objective", "smile", "--param", "clip=2", "--epochs", "1", "--proj-hidden", "16",
            "--proj-dim", "8", "--workers", "0", "--threads", "1", "--no-progress",
            "--probe-epochs", "2", "--knn-k", "5", "--out", str(out)]  # fmt: skip
    args = _parser().parse_args(argv)
    config = commands.config_from_args(args)
    assert config.objective_params == {"clip": 2.0} and config.views == 3 and config.batch_size == 8
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and 0 <= summary["probe"]["knn_top1"] <= 1
    args = _parser().parse_args(["vision", "probe", str(out), "--probe-epochs", "3"])
    assert args.func(args) == 0
    saved = json.loads((out / "probe.json").read_text())
    assert saved["epoch"] == 1 and saved == json.loads(capsys.readouterr().out)


def test_commands_do_not_import_torchvision_when_registering() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from mibounds.cli import build_parser; build_parser(); "
        "print('torchvision' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_train_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match=r"unknown key 'epoch' in TrainConfig \(did you mean"):
        TrainConfig.from_dict({"epoch": 3})
    train_set, _, _ = load_dataset("digits", image_size=8)
    with pytest.raises(ValueError, match="subset of 5000"):
        train_set.take(5000)
