"""Shared by the ``test_vision_*`` files."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread for the image tests: their convolutions are tiny, and on a loaded
    machine a second OpenMP thread mostly spins waiting (10-20x slower steps, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
