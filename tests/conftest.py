"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """One torch thread, for modules of many tiny steps (training loops, small convolutions):
    they run fastest and reproducibly on one thread, and on a loaded machine a second OpenMP
    thread mostly spins waiting (10-20x slower steps, measured on the image tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
