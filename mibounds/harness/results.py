"""Results files: one JSON record per run and line, appended atomically, read as a DataFrame.

Why JSON lines: a record holds lists (the training curve) and the file only ever grows, so the
runs of a finished group are one ``write`` of one line each. A writer killed in that write
leaves at most a partial last line without its newline (a write that fails cuts its bytes back
off itself); ``repair_tail`` removes it before the next append, and ``read_records`` reports and
skips any line that does not parse instead of failing, so no earlier run is ever lost. Files of
the parts of a sharded sweep concatenate into one.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "CorruptRecordWarning",
    "ResultsWriteError",
    "append_records",
    "check_grid",
    "load_results",
    "read_records",
    "repair_tail",
]


class CorruptRecordWarning(UserWarning):
    """A results line that does not parse (a writer killed mid-line); it is skipped."""


def _json_value(value: Any) -> Any:
    """NaN and inf are not JSON: write them as null (read back as NaN by pandas)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _encode(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(_json_value(dict(record)), allow_nan=False) + "\n").encode()


def repair_tail(path: str | Path) -> int:
    """Remove a partial last line (no trailing newline) left by a writer killed mid-write.

    A last line that is a whole record and only lacks its newline gets the newline instead.
    Returns the number of bytes removed (0 if the file was whole), and warns when it removes any.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # find the start of the last line
        start, block = size, 4096
        while start > 0:
            lo = max(0, start - block)
            f.seek(lo)
            chunk = f.read(start - lo)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = lo + cut + 1
                break
            start = lo
        f.seek(start)
        tail = f.read()
        try:
            json.loads(tail)
        except ValueError:
            f.truncate(start)
            warnings.warn(
                f"{path}: removed a partial last line ({len(tail)} bytes) left by a writer that "
                "was killed mid-record; every complete record is kept",
                CorruptRecordWarning,
                stacklevel=2,
            )
            return len(tail)
        f.write(b"\n")
        return 0


class ResultsWriteError(OSError, ValueError):
    """Appending to a results file failed (a full disk, a read-only file, ...); nothing of the
    append is left in the file. Also a ``ValueError``, so the command line prints one line."""


def append_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append the records, one line each, in one ``write`` flushed to disk (fsync), so that a
    crash after this returns cannot lose them.

    All or nothing: if the write or the flush fails, the file is cut back to its size before
    (only one process appends: the sweep's parent) and ``ResultsWriteError`` names the file.
    """
    path = Path(path)
    data = b"".join(_encode(record) for record in records)
    if not data:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise _write_error(path, err, "the file is unchanged") from err
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # a short write (signals, nearly full disks) continues
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            kept = "the file is as it was before (no partial record)"
            try:
                os.ftruncate(fd, start)
            except OSError:  # rare: repair_tail cuts the partial line on the next run instead
                kept = "a partial last line may remain, which the next run removes"
            raise _write_error(path, err, kept) from err
    finally:
        os.close(fd)


def _write_error(path: Path, err: OSError, kept: str) -> ResultsWriteError:
    return ResultsWriteError(
        err.errno,
        f"could not append to results file {str(path)!r}: {err.strerror or err}; {kept}; free "
        "space or fix the file's permissions, then run the same command again to resume",
    )


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file; lines that do not parse are reported and skipped."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"results file {str(path)!r} does not exist")
    records, bad = [], []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad.append(number)
    if bad:
        warnings.warn(
            f"{path}: skipped {len(bad)} line(s) that are not complete records (line(s) "
            f"{', '.join(map(str, bad[:10]))}{', ...' if len(bad) > 10 else ''}), as a writer "
            f"killed mid-line leaves; the other {len(records)} records are read",
            CorruptRecordWarning,
            stacklevel=2,
        )
    return records


def check_grid(records: Sequence[Mapping[str, Any]], grid_hash: str, path: str | Path) -> None:
    """Raise if any record of ``path`` was written by a grid other than ``grid_hash``."""
    other = {r.get("grid_hash") for r in records} - {grid_hash}
    if other:
        names = sorted({str(r.get("sweep")) for r in records if r.get("grid_hash") != grid_hash})
        raise ValueError(
            f"results file {str(path)!r} holds runs of a different grid (sweep {', '.join(names)}, "
            f"grid {', '.join(sorted(map(str, other)))}; this config is grid {grid_hash}). A "
            "results file belongs to one grid: pass another output path, or delete the file to "
            "start over"
        )


def _paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in map(Path, items):
        out.extend(sorted(item.glob("*.jsonl")) if item.is_dir() else [item])
    if not out:
        raise ValueError(f"no results files found in {[str(p) for p in items]}")
    return out


def load_results(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read results files (or directories of ``*.jsonl``) into one DataFrame, a row per run.

    A run that appears more than once (the same ``run_key``, e.g. two copies of one shard) is
    kept once, with a warning. The curve columns hold lists; ``mibounds.records.curves(df)``
    makes them long.
    """
    records = [r for p in _paths(paths) for r in read_records(p)]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    duplicated = frame["run_key"].duplicated()
    if duplicated.any():
        warnings.warn(
            f"{int(duplicated.sum())} run(s) appear more than once; the first copy of each is kept",
            stacklevel=2,
        )
        frame = frame[~duplicated].reset_index(drop=True)
    return frame
