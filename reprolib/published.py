"""The published numbers the studies are compared against: ``reprolib/published.yaml``, the one
cited data file (each row: key, study, metric, model, dataset, value or None, kind, source).
``value: null`` means no public source gives the number: shown as "not available", never guessed.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

__all__ = ["PUBLISHED_FILE", "published", "published_value", "published_table"]

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")


@lru_cache(maxsize=1)
def _published_rows() -> tuple:
    data = yaml.safe_load(PUBLISHED_FILE.read_text())
    return tuple(data["results"])


def published(key: str | None = None, study: str | None = None, kind: str | None = None) -> list[dict]:
    """Rows of ``published.yaml`` (each: key, study, metric, model, dataset, value or None, kind,
    source), filtered by ``key`` prefix, ``study`` and/or ``kind`` (``paper`` / ``reproduction``)."""
    return [dict(r) for r in _published_rows()
            if (key is None or r["key"] == key or r["key"].startswith(key.rstrip("/") + "/"))
            and (study is None or r["study"] == study) and (kind is None or r["kind"] == kind)]


def published_value(key: str, kind: str = "paper", strict: bool = True) -> float | None:
    """The single published value for ``key`` of ``kind`` (None when not available). A key the file
    does not have raises ``KeyError``, or gives None with ``strict=False``."""
    rows = [r for r in published(kind=kind) if r["key"] == key]
    if not rows and not strict:
        return None
    if not rows:
        raise KeyError(f"no published {kind} value with key {key!r} in {PUBLISHED_FILE.name}")
    return rows[0]["value"]


def published_table(keys: Sequence[str] | None = None, study: str | None = None) -> pd.DataFrame:
    """Published values as a table (study notebooks): the rows of the key prefixes ``keys`` (e.g.
    ``["lle/sony", "lle/ablation/loss"]``), or every row of ``study`` (e.g. ``"efficiency"``); columns
    ``key``, ``kind``, ``model``, ``metric``, ``dataset``, ``value`` (None = not available), ``source``."""
    rows = published(study=study) if keys is None else [r for k in keys for r in published(key=k, study=study)]
    columns = ["key", "kind", "model", "metric", "dataset", "value", "source"]
    return pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
