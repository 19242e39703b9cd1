"""The shared argument checks of ``mibounds._checks``."""

from __future__ import annotations

import pytest
import torch

from mibounds._checks import check_finite, check_positive


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_values_whose_sum_overflows_pass(dtype) -> None:
    """The check sums first; finite terms that overflow the sum must not be called non-finite."""
    big = torch.finfo(dtype).max
    check_finite(torch.full((2, 8), big, dtype=dtype), "scores")
    check_finite(torch.tensor([big, -big, big], dtype=dtype), "scores")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_each_non_finite_entry_is_counted(bad, dtype) -> None:
    t = torch.full((3, 5), torch.finfo(dtype).max, dtype=dtype)
    t[0, 1] = bad
    t[2, 4] = bad
    with pytest.raises(ValueError, match="scores has 2 non-finite entries"):
        check_finite(t, "scores")


@pytest.mark.parametrize("bad", [True, False, 0, -1.0, float("nan"), float("inf"), "1", None])
def test_check_positive_refuses_bools_and_non_positive_or_non_finite_numbers(bad) -> None:
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        check_positive(bad, "alpha")


def test_check_positive_returns_a_float() -> None:
    assert check_positive(3, "alpha") == 3.0 and isinstance(check_positive(3, "alpha"), float)
