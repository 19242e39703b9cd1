"""A user's samples as checked float tensors: arrays in memory and files on disk.

:func:`as_samples` takes numpy arrays, torch tensors or pandas objects (and nested lists):

- pairs: ``x: (n, d_x)`` and ``y: (n, d_y)``; a 1-D ``(n,)`` array is one coordinate
  (``d = 1``);
- views: ``views: (n, M, d)``, M >= 2 views of one dimension d (for the one-vs-rest MI).

Bad input is refused in one line naming it (``ValueError``; ``TypeError`` for an object that
is not an array at all): x and y of different n, rows holding NaN or inf (how many), constant
columns (which), non-numeric columns, arrays of the wrong rank, too few rows.

:func:`load_arrays` reads a file into the keyword arguments of ``as_samples`` and
``mibounds.estimate`` (docs/estimation.md):

- ``.npz``: ``x`` and ``y`` name arrays of the archive (default ``"x"`` and ``"y"``), or
  ``views`` one array ``(n, M, d)`` (default ``"views"`` when the archive has no x and y);
- ``.npy``: one array; a 3-D one is the views; a 2-D one needs ``x`` and ``y`` as its column
  indices, ``"0:5"`` (a slice) or ``"0,2,4"`` (a list);
- ``.csv`` / ``.parquet`` (pandas; parquet needs pyarrow, the ``parquet`` extra, or
  fastparquet): ``x`` and ``y`` are each a column name, a comma list of names (``"a,b,c"``),
  or a prefix (``"x"`` picks ``x0, x1, ...``, ``x_1, x.2, x[3], x-4``: the prefix then a
  digit, ``_``, ``.``, ``[`` or ``-``), tried in that order; default ``"x"`` and ``"y"``.

An unknown key or column is refused listing the ones the file has.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MARGINALS",
    "SUFFIXES",
    "Samples",
    "as_samples",
    "load_arrays",
    "scale",
    "train_statistics",
]

SUFFIXES = (".npz", ".npy", ".csv", ".parquet")


@dataclass(frozen=True)
class Samples:
    """Checked samples: ``x: (n, d_x)`` and ``y: (n, d_y)`` (pairs, ``views`` None) or
    ``views: (n, M, d)`` (``x``, ``y`` None), float64 tensors on the inputs' device (the CPU
    for anything but a tensor).

    Example:
        >>> s = Samples(views=torch.zeros(10, 3, 2))
        >>> s.n, s.kind, s.width
        (10, 'views', 2)
    """

    x: Tensor | None = None
    y: Tensor | None = None
    views: Tensor | None = None

    @property
    def n(self) -> int:
        """The number of samples (rows)."""
        return int((self.x if self.views is None else self.views).shape[0])

    @property
    def kind(self) -> str:
        """``"pairs"`` or ``"views"``."""
        return "pairs" if self.views is None else "views"

    @property
    def width(self) -> int:
        """One dimension for both sides: ``max(d_x, d_y)`` for pairs (the narrower side is
        zero-padded by :func:`scale`), d for views."""
        if self.views is not None:
            return int(self.views.shape[2])
        return int(max(self.x.shape[1], self.y.shape[1]))

    @property
    def tensors(self) -> tuple[Tensor, Tensor | None]:
        """``(x, y)`` for pairs, ``(views, None)`` for views."""
        return (self.x, self.y) if self.views is None else (self.views, None)


MARGINALS = ("gaussian", "standard")


def train_statistics(
    samples: Samples,
    rows: Tensor,
    dtype: torch.dtype = torch.float32,
    marginals: str = "standard",
) -> dict[str, Tensor]:
    """What :func:`scale` needs to transform every coordinate, from the train ``rows`` only
    (views: pooled over the views), in ``dtype``.

    ``marginals = "standard"``: mean and standard deviation, ``mean_x, std_x: (d_x,)`` and
    ``mean_y, std_y: (d_y,)`` (views: the x pair alone; a coordinate constant on the rows
    scaled by 1). ``"gaussian"``: the sorted train values ``sorted_x: (d_x, n_rows)``,
    ``sorted_y``, for the rank-Gaussian map of :func:`scale`.

    Example:
        >>> s = as_samples(torch.tensor([0.0, 2.0, 10.0]), torch.tensor([1.0, 3.0, 5.0]))
        >>> {k: v.tolist() for k, v in train_statistics(s, torch.tensor([0, 1])).items()}
        {'mean_x': [1.0], 'std_x': [1.4142135381698608], 'mean_y': [2.0], 'std_y': [1.4142135381698608]}
    """  # noqa: E501
    if marginals not in MARGINALS:
        raise ValueError(f"marginals must be one of {MARGINALS}, got {marginals!r}")

    def of(t: Tensor, side: str) -> dict[str, Tensor]:
        part = t[rows].flatten(0, t.dim() - 2)
        if marginals == "gaussian":
            return {f"sorted_{side}": part.mT.sort(dim=1).values.to(dtype).contiguous()}
        std = part.std(0)
        return {
            f"mean_{side}": part.mean(0).to(dtype),
            f"std_{side}": torch.where(std > 0, std, 1.0).to(dtype),
        }

    first, second = samples.tensors
    return {**of(first, "x"), **({} if second is None else of(second, "y"))}


def _transform(t: Tensor, stats: dict[str, Tensor], side: str) -> Tensor:
    if f"sorted_{side}" not in stats:
        mean = stats[f"mean_{side}"]
        return (t.to(mean.device, mean.dtype) - mean) / stats[f"std_{side}"]
    ranks = stats[f"sorted_{side}"]  # (d, m)
    flat = t.to(ranks.device, ranks.dtype).reshape(-1, t.shape[-1]).mT.contiguous()  # (d, N)
    mid = torch.searchsorted(ranks, flat) + torch.searchsorted(ranks, flat, right=True)
    u = (mid.to(ranks.dtype) / 2 + 0.5) / (ranks.shape[1] + 1)
    return torch.special.ndtri(u).mT.reshape(t.shape)


def scale(
    x: Tensor, y: Tensor | None, stats: dict[str, Tensor], width: int
) -> tuple[Tensor, Tensor | None]:
    """Each coordinate transformed with :func:`train_statistics`, in the statistics' dtype and
    device, then zero-padded on its last axis to ``width``: ``(..., d_x) -> (..., width)``;
    views ``(..., M, d)`` with ``y`` None. Zero columns carry nothing, so a critic of one
    dimension scores pairs with ``d_x != d_y``.

    Standard: ``(x - mean_x) / std_x``. Gaussian: ``Phi^-1((r + 1/2) / (m + 1))``, r the
    value's rank among the m sorted train values (ties: the middle rank), so the train rows'
    margins become standard normal. Both maps are strictly increasing on the train values, so
    they leave MI unchanged: ``I(f(x); g(y)) = I(x; y)`` for invertible f, g acting per
    coordinate (docs/estimation.md).

    Example:
        >>> stats = {"mean_x": torch.zeros(1), "std_x": torch.ones(1) * 2,
        ...          "mean_y": torch.ones(2), "std_y": torch.ones(2)}
        >>> sx, sy = scale(torch.tensor([[4.0]]), torch.tensor([[1.0, 3.0]]), stats, 2)
        >>> sx.tolist(), sy.tolist()
        ([[2.0, 0.0]], [[0.0, 2.0]])
    """
    pad = torch.nn.functional.pad
    x = _transform(x, stats, "x")
    if y is None:
        return x, None
    y = _transform(y, stats, "y")
    return pad(x, (0, width - x.shape[-1])), pad(y, (0, width - y.shape[-1]))


def _columns_of(a: Any) -> list[str] | None:
    """Column names of a pandas DataFrame (as text), else None."""
    columns = getattr(a, "columns", None)
    return None if columns is None else [str(c) for c in columns]


def _to_numpy(a: Any, name: str) -> np.ndarray:
    """Any array-like -> a numeric numpy array; non-numeric content is named."""
    if isinstance(a, Tensor):
        if a.is_complex() or a.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got a tensor of dtype {a.dtype}")
        return a
    if a is None or isinstance(a, (str, bytes, dict, set)) or np.isscalar(a):
        raise TypeError(
            f"{name} must be an array (numpy, torch, pandas or a nested list), got "
            f"{type(a).__name__}"
        )
    columns = _columns_of(a)
    if columns is not None:  # a DataFrame: name the columns that are not numbers
        bad = [c for c, t in zip(columns, a.dtypes, strict=True) if not _numeric(t)]
        if bad:
            raise ValueError(f"{name} has non-numeric columns {bad}; expected numbers only")
        a = a.to_numpy()
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _numeric(dtype: Any) -> bool:
    """Whether a pandas column dtype (numpy or extension) holds real numbers."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _as_tensor(a: Any, name: str, rank: int) -> Tensor:
    """``a`` as a float64 tensor of ``rank`` dimensions (rank 2 also takes a 1-D ``(n,)``
    as ``(n, 1)``); every row finite, every column varying."""
    columns = _columns_of(a)
    arr = _to_numpy(a, name)
    t = arr if isinstance(arr, Tensor) else torch.from_numpy(np.array(arr, dtype=np.float64))
    t = t.detach().to(torch.float64)
    if rank == 2 and t.dim() == 1:
        t = t.unsqueeze(1)
    layout = "(n, d) or (n,)" if rank == 2 else "(n, M, d)"
    if t.dim() != rank or any(s == 0 for s in t.shape[1:]):
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(t.shape)}")
    bad_rows = ~torch.isfinite(t).flatten(1).all(1)
    if bool(bad_rows.any()):
        count, first = int(bad_rows.sum()), int(bad_rows.nonzero()[0, 0])
        raise ValueError(
            f"{name} has {count} of {t.shape[0]} rows with NaN or inf (the first is row "
            f"{first}); drop or impute them first"
        )
    if t.shape[0] >= 2:
        flat = t.flatten(2) if rank == 3 else t
        constant = (flat == flat[:1]).all(0)
        if bool(constant.any()):
            where = constant.nonzero().tolist()
            if rank == 2:
                where = [columns[i] if columns else i for (i,) in where]
            else:
                where = [tuple(w) for w in where]
            what = "columns" if rank == 2 else "(view, coordinate) pairs"
            raise ValueError(
                f"{name} has constant {what} {where}: a coordinate that never varies carries no "
                "information; drop it"
            )
    return t


def as_samples(
    x: Any = None,
    y: Any = None,
    *,
    views: Any = None,
    names: tuple[str, str, str] = ("x", "y", "views"),
    min_rows: int = 2,
) -> Samples:
    """Check a user's samples and make them float64 tensors.

    Args:
        x: ``(n, d_x)`` or ``(n,)``; y: ``(n, d_y)`` or ``(n,)``: pairs, both or neither.
        views: ``(n, M, d)`` with M >= 2, instead of x and y.
        names: what to call x, y and views in messages (e.g. ``"--x 'a'"`` on the command
            line).
        min_rows: the fewest rows accepted.
    Returns:
        :class:`Samples` (float64, on the device of a tensor input, else the CPU).
    Raises:
        TypeError: an input is not an array. ValueError: wrong shapes or values (module doc).

    Example:
        >>> import numpy as np
        >>> s = as_samples(np.arange(6.0), np.arange(12.0).reshape(6, 2) ** 2)
        >>> s.kind, s.n, tuple(s.x.shape), tuple(s.y.shape)
        ('pairs', 6, (6, 1), (6, 2))
        >>> as_samples(np.arange(6.0), np.ones(6))
        Traceback (most recent call last):
        ...
        ValueError: y has constant columns [0]: a coordinate that never varies carries no information; drop it
    """  # noqa: E501
    nx, ny, nv = names
    if views is not None:
        if x is not None or y is not None:
            raise ValueError(f"give either {nx} and {ny} (pairs) or {nv} (n, M, d), not both")
        v = _as_tensor(views, nv, 3)
        if v.shape[1] < 2:
            raise ValueError(f"{nv} needs M >= 2 views, got shape {tuple(v.shape)}")
        out = Samples(views=v)
    else:
        if x is None or y is None:
            raise ValueError(f"give both {nx} and {ny} (pairs), or {nv} (n, M, d)")
        tx, ty = _as_tensor(x, nx, 2), _as_tensor(y, ny, 2)
        if tx.shape[0] != ty.shape[0]:
            raise ValueError(
                f"{nx} and {ny} must have the same number of rows n, got {tx.shape[0]} and "
                f"{ty.shape[0]}"
            )
        out = Samples(x=tx, y=ty.to(tx.device))
    if out.n < min_rows:
        raise ValueError(f"need at least {min_rows} rows (samples), got n = {out.n}")
    return out


# ----------------------------------------------------------------------------------- files


def _pick_npz(archive: Any, key: str, what: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise ValueError(
            f"{str(path)!r} has no array {key!r} for {what}; it has {sorted(archive.files)}"
        )
    return archive[key]


def _column_indices(spec: str, width: int, what: str, path: Path) -> list[int]:
    """``"0:5"`` or ``"0,2,4"`` -> column indices of a 2-D ``.npy`` array."""
    try:
        if ":" in spec:
            parts = [int(p) if p.strip() else None for p in spec.split(":")]
            if len(parts) > 3:
                raise ValueError
            picked = list(range(width))[slice(*parts)]
        else:
            picked = [int(p) for p in spec.split(",")]
    except ValueError:
        raise ValueError(
            f"{what} of the 2-D array in {str(path)!r} must be column indices like '0:5' or "
            f"'0,2,4', got {spec!r}"
        ) from None
    out_of_range = [i for i in picked if not -width <= i < width]
    if out_of_range or not picked:
        raise ValueError(
            f"{what} = {spec!r} picks columns {out_of_range or 'none'} of the array in "
            f"{str(path)!r}, which has {width} columns (0 to {width - 1})"
        )
    return picked


_AFTER_PREFIX = re.compile(r"[0-9_.\[-]")


def _pick_columns(columns: Sequence[str], spec: str, what: str, path: Path) -> list[str]:
    """A column name, a comma list of names, or a prefix (module doc)."""
    if spec in columns:
        return [spec]
    if "," in spec:
        picked = [c.strip() for c in spec.split(",")]
        missing = [c for c in picked if c not in columns]
        if not missing:
            return picked
        raise ValueError(
            f"{str(path)!r} has no columns {missing} for {what}; it has {list(columns)}"
        )
    picked = [
        c for c in columns if c.startswith(spec) and _AFTER_PREFIX.match(c[len(spec) :] or " ")
    ]
    if picked:
        return picked
    raise ValueError(
        f"{str(path)!r} has no column {spec!r} nor columns {spec}0, {spec}_1, ... for {what}; "
        f"it has {list(columns)}"
    )


def _read_table(path: Path) -> Any:
    import pandas as pd

    if path.suffix.lower() == ".csv":
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{str(path)!r} is not a readable CSV table: {err}") from None
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise ValueError(
            f"reading {str(path)!r} needs a parquet engine: pip install pyarrow (or fastparquet)"
        ) from None
    except Exception as err:  # the engines raise their own types
        raise ValueError(f"{str(path)!r} is not a readable parquet file: {err}") from None


def load_arrays(
    path: str | Path, *, x: str | None = None, y: str | None = None, views: str | None = None
) -> dict[str, np.ndarray]:
    """Read samples from a file: ``{"x": (n, d_x), "y": (n, d_y)}`` or ``{"views": (n, M, d)}``
    numpy arrays, to pass on as ``as_samples(**arrays)`` or ``mibounds.estimate(**arrays)``.

    Args:
        path: a ``.npz``, ``.npy``, ``.csv`` or ``.parquet`` file.
        x, y: the arrays or columns of the pairs (module doc for each format; default
            ``"x"`` and ``"y"``).
        views: the ``(n, M, d)`` array of an ``.npz`` (default ``"views"`` when the archive has
            no x and y); a 3-D ``.npy`` is the views.
    Raises:
        ValueError: a missing or unreadable file, an unknown suffix, key or column (the known
            ones are listed), non-numeric columns. Shapes and values are checked by
            ``as_samples``.

    Example:
        >>> import tempfile, pandas as pd
        >>> path = Path(tempfile.mkdtemp()) / "data.csv"
        >>> pd.DataFrame({"a": [1.0, 2.0], "x1": [0.0, 1.0], "x2": [1.0, 0.0]}).to_csv(path)
        >>> {k: v.shape for k, v in load_arrays(path, y="a").items()}
        {'x': (2, 2), 'y': (2, 1)}
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{str(path)!r}: unknown file type {path.suffix!r}; expected {SUFFIXES}")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no such file"
        raise ValueError(f"{str(path)!r} is {what}; expected a {suffix} file")
    if views is not None and (x is not None or y is not None):
        raise ValueError("give either x and y (pairs) or views, not both")
    if suffix in (".csv", ".parquet"):
        if views is not None:
            raise ValueError(f"views need a 3-D array (.npz or .npy), not a {suffix} table")
        table = _read_table(path)
        columns = [str(c) for c in table.columns]
        table.columns = columns
        out = {}
        for name, spec in (("x", x or "x"), ("y", y or "y")):
            picked = _pick_columns(columns, spec, name, path)
            out[name] = _to_numpy(table[picked], name)
        overlap = sorted(set(_pick_columns(columns, x or "x", "x", path)) & set(
            _pick_columns(columns, y or "y", "y", path)
        ))  # fmt: skip
        if overlap:
            raise ValueError(f"x and y share columns {overlap} of {str(path)!r}")
        return out
    if suffix == ".npz" and not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not a readable .npz file (not a zip archive)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a readable {suffix} file: {err}") from None
    if suffix == ".npz":
        with loaded as archive:
            pairs = x is not None or y is not None or {"x", "y"} <= set(archive.files)
            if views is None and not pairs and "views" in archive.files:
                views = "views"
            if views is not None:
                return {"views": _pick_npz(archive, views, "views", path)}
            return {
                "x": _pick_npz(archive, x or "x", "x", path),
                "y": _pick_npz(archive, y or "y", "y", path),
            }
    if loaded.ndim == 3 and x is None and y is None:
        return {"views": loaded}
    if views is not None:
        raise ValueError(f"{str(path)!r} holds one array; views takes no key for a .npy file")
    if loaded.ndim != 2 or x is None or y is None:
        raise ValueError(
            f"{str(path)!r} holds one array of shape {loaded.shape}: give x and y as its column "
            "indices (e.g. x='0:5', y='5:10'), or save an .npz with arrays x and y"
        )
    width = loaded.shape[1]
    return {
        "x": loaded[:, _column_indices(x, width, "x", path)],
        "y": loaded[:, _column_indices(y, width, "y", path)],
    }
