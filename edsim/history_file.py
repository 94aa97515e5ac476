"""A run's history saved to a file and read back, for ``python -m edsim check`` (and histories from elsewhere).

CSV keeps every column of ``Result.history`` (``edsim.history.COLUMNS``); reading it back gives the same types
(strings for the named columns, whole numbers for keys, values, partitions, offsets, ops and transactions,
floats for times), so the checker finds the same anomalies in the file as in the run. Parquet needs pyarrow
(``pip install 'edsim[parquet]'``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .configs import ConfigError
from .history import COLUMNS

TEXT = ("process", "type", "f", "topic", "error", "group", "service", "detail")
WHOLE = ("index", "key", "value", "partition", "offset", "op", "txn")
FLOAT = ("time", "invoke_time")
# What the checker reads (edsim.checker.analysis._columns_from_frame); the rest is kept for people.
REQUIRED = ("time", "process", "type", "f", "topic", "key", "value", "partition", "offset", "error",
            "invoke_time", "op")
FORMATS = (".csv", ".parquet")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{str(path)!r}: a history file ends in .csv or .parquet")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(f"{str(path)!r}: .parquet needs pyarrow, which is not installed "
                              "(pip install 'edsim[parquet]'); or save the history as .csv") from None
    return suffix


def save_history(frame: pd.DataFrame, path) -> Path:
    """Write ``Result.history`` (or a frame with the same columns) to ``.csv`` or ``.parquet``."""
    path = Path(path)
    suffix = _format(path)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def load_history(path) -> pd.DataFrame:
    """Read a history file; ConfigError if it cannot be read or lacks a column the checker reads."""
    path = Path(path)
    suffix = _format(path)
    if not path.exists():
        raise ConfigError(f"{str(path)!r} does not exist")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            header = pd.read_csv(path, nrows=0).columns
            frame = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in FLOAT if c in header},
                                dtype={c: str for c in TEXT if c in header})
    except (OSError, ValueError) as e:
        raise ConfigError(f"{str(path)!r} cannot be read as a history: {e}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ConfigError(f"{str(path)!r} lacks the column(s) {', '.join(missing)}: a history has the columns "
                          f"{', '.join(COLUMNS)} (the checker reads {', '.join(REQUIRED)})")
    for name in WHOLE:
        if name in frame.columns:
            try:
                frame[name] = frame[name].astype("int64")
            except (TypeError, ValueError):
                raise ConfigError(f"{str(path)!r}: column {name} must hold whole numbers") from None
    for name in FLOAT:
        try:
            frame[name] = frame[name].astype(float)
        except (TypeError, ValueError):
            raise ConfigError(f"{str(path)!r}: column {name} must hold numbers (seconds)") from None
    for name in TEXT:
        if name in frame.columns:
            frame[name] = frame[name].astype(str)
    return frame
