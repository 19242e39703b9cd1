"""mibounds.arrays: a user's samples checked (one line naming the problem) and files read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mibounds.arrays import as_samples, load_arrays

RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal((20, 3)), RNG.standard_normal((20, 2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: (X, Y),
        lambda: (torch.from_numpy(X).float(), torch.from_numpy(Y)),
        lambda: (pd.DataFrame(X, columns=list("abc")), pd.DataFrame(Y)),
        lambda: (X.tolist(), Y.tolist()),
    ],
    ids=["numpy", "torch", "pandas", "lists"],
)
def test_every_array_type_gives_the_same_float64_tensors(make) -> None:
    s = as_samples(*make())
    assert s.kind == "pairs" and s.n == 20
    assert s.x.dtype == s.y.dtype == torch.float64
    torch.testing.assert_close(s.x, torch.from_numpy(X))
    torch.testing.assert_close(s.y, torch.from_numpy(Y), atol=1e-6, rtol=1e-6)


def test_a_1d_array_is_one_coordinate_and_a_series_is_accepted() -> None:
    s = as_samples(pd.Series(X[:, 0]), Y[:, 1])
    assert tuple(s.x.shape) == (20, 1) and tuple(s.y.shape) == (20, 1)


def test_views_are_n_by_m_by_d() -> None:
    s = as_samples(views=RNG.standard_normal((10, 3, 2)))
    assert s.kind == "views" and s.n == 10 and s.x is None


BAD = [
    ("n-mismatch", dict(x=X, y=Y[:19]), ValueError, "same number of rows n, got 20 and 19"),
    (
        "nan-rows",
        dict(x=np.where(np.arange(20)[:, None] % 7 == 0, np.nan, X), y=Y),
        ValueError,
        "x has 3 of 20 rows with NaN or inf (the first is row 0)",
    ),
    (
        "inf-row",
        dict(x=X, y=np.where(np.arange(20)[:, None] == 4, np.inf, Y)),
        ValueError,
        "y has 1 of 20 rows with NaN or inf (the first is row 4)",
    ),
    (
        "constant-column",
        dict(x=np.column_stack([X, np.ones(20)]), y=Y),
        ValueError,
        "x has constant columns [3]",
    ),
    (
        "constant-named-column",
        dict(x=pd.DataFrame({"a": X[:, 0], "flat": 2.0}), y=Y),
        ValueError,
        "x has constant columns ['flat']",
    ),
    (
        "non-numeric-column",
        dict(x=pd.DataFrame({"a": X[:, 0], "name": ["u"] * 20}), y=Y),
        ValueError,
        "x has non-numeric columns ['name']",
    ),
    ("strings", dict(x=np.array(["a"] * 20), y=Y), ValueError, "must hold real numbers"),
    ("booleans", dict(x=X > 0, y=Y), ValueError, "must hold real numbers, got dtype bool"),
    ("3-d-x", dict(x=np.zeros((20, 2, 2)), y=Y), ValueError, "x must have shape (n, d) or (n,)"),
    ("not-an-array", dict(x="data.csv", y=Y), TypeError, "x must be an array"),
    ("only-x", dict(x=X), ValueError, "give both x and y"),
    (
        "one-view",
        dict(views=RNG.standard_normal((5, 1, 2))),
        ValueError,
        "views needs M >= 2 views",
    ),
    ("2-d-views", dict(views=X), ValueError, "views must have shape (n, M, d)"),
    ("too-few-rows", dict(x=X[:1], y=Y[:1]), ValueError, "need at least 2 rows"),
]


@pytest.mark.parametrize(("kw", "kind", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_samples_are_refused_in_one_line_naming_the_problem(kw, kind, words) -> None:
    with pytest.raises(kind) as info:
        as_samples(**kw)
    assert words in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------------- files


def test_npz_default_and_named_keys(tmp_path) -> None:
    np.savez(tmp_path / "a.npz", x=X, y=Y, other=Y)
    out = load_arrays(tmp_path / "a.npz")
    assert out["x"].shape == (20, 3) and out["y"].shape == (20, 2)
    assert load_arrays(tmp_path / "a.npz", y="other")["y"].shape == (20, 2)
    np.savez(tmp_path / "v.npz", views=np.zeros((4, 3, 2)))
    assert load_arrays(tmp_path / "v.npz")["views"].shape == (4, 3, 2)


def test_npy_columns_and_views(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.hstack([X, Y]))
    out = load_arrays(tmp_path / "a.npy", x="0:3", y="3,4")
    np.testing.assert_array_equal(out["x"], X)
    np.testing.assert_array_equal(out["y"], Y)
    np.save(tmp_path / "v.npy", np.zeros((4, 3, 2)))
    assert load_arrays(tmp_path / "v.npy")["views"].shape == (4, 3, 2)


def test_csv_names_lists_and_prefixes(tmp_path) -> None:
    frame = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "xylo": X[:, 2], "y_0": Y[:, 0]})
    frame["target"] = Y[:, 1]
    frame.to_csv(tmp_path / "t.csv", index=False)
    out = load_arrays(tmp_path / "t.csv")  # prefixes: x0, x1 (not xylo); y_0
    assert out["x"].shape == (20, 2) and out["y"].shape == (20, 1)
    out = load_arrays(tmp_path / "t.csv", x="x0,xylo", y="target")
    np.testing.assert_allclose(out["x"], X[:, [0, 2]])
    np.testing.assert_allclose(out["y"][:, 0], Y[:, 1])


def test_parquet_is_read_with_pandas(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "target": Y[:, 0]})
    frame.to_parquet(tmp_path / "t.parquet")
    out = load_arrays(tmp_path / "t.parquet", y="target")  # x: the prefix picks x0, x1
    np.testing.assert_allclose(out["x"], X[:, :2])
    np.testing.assert_allclose(out["y"][:, 0], Y[:, 0])


BAD_FILES = [
    ("unknown-key", "a.npz", dict(x="inputs"), "has no array 'inputs' for x; it has ['x', 'y']"),
    ("unknown-column", "t.csv", dict(y="z"), "has no column 'z' nor columns z0, z_1"),
    ("unknown-in-list", "t.csv", dict(x="x0,nope"), "has no columns ['nope'] for x"),
    ("overlap", "t.csv", dict(x="x0,x1", y="x1"), "x and y share columns ['x1']"),
    ("npy-no-columns", "a.npy", {}, "give x and y as its column indices"),
    ("npy-bad-columns", "a.npy", dict(x="0:2", y="9"), "picks columns [9]"),
    ("suffix", "a.txt", {}, "unknown file type '.txt'"),
    ("missing", "none.npz", {}, "is no such file"),
    ("csv-views", "t.csv", dict(views="v"), "views need a 3-D array"),
    ("not-npz", "broken.npz", {}, "is not a readable .npz file"),
]


@pytest.mark.parametrize(
    ("name", "kw", "words"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_files_and_keys_are_refused_listing_what_is_there(tmp_path, name, kw, words) -> None:
    np.savez(tmp_path / "a.npz", x=X, y=Y)
    np.save(tmp_path / "a.npy", np.hstack([X, Y]))
    pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "y": Y[:, 0]}).to_csv(tmp_path / "t.csv")
    (tmp_path / "a.txt").write_text("1 2\n")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError) as info:
        load_arrays(tmp_path / name, **kw)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_non_numeric_csv_columns_are_named(tmp_path) -> None:
    pd.DataFrame({"x": ["a", "b"], "y": [1.0, 2.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"x has non-numeric columns \['x'\]"):
        load_arrays(tmp_path / "t.csv")
