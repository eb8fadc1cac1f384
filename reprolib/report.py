"""Published numbers, tables and figures for the book.

Published numbers live in ``reprolib/published.yaml`` (one cited data file); our numbers come
from run records (:mod:`reprolib.study`). The two are joined by ``key``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["published", "published_value"]

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")


@lru_cache(maxsize=1)
def _published_rows() -> tuple:
    data = yaml.safe_load(PUBLISHED_FILE.read_text())
    return tuple(data["results"])


def published(key: str | None = None, study: str | None = None, kind: str | None = None) -> list[dict]:
    """Rows of ``published.yaml`` (each: key, study, metric, model, dataset, value or None, kind,
    source), filtered by ``key`` prefix, ``study`` and/or ``kind`` (``paper`` / ``reproduction``)."""
    rows = [dict(r) for r in _published_rows()]
    if key is not None:
        rows = [r for r in rows if r["key"] == key or r["key"].startswith(key.rstrip("/") + "/")]
    if study is not None:
        rows = [r for r in rows if r["study"] == study]
    if kind is not None:
        rows = [r for r in rows if r["kind"] == kind]
    return rows


def published_value(key: str, kind: str = "paper") -> float | None:
    """The single published value for ``key`` of ``kind`` (None when not available)."""
    rows = [r for r in published(kind=kind) if r["key"] == key]
    if not rows:
        raise KeyError(f"no published {kind} value with key {key!r} in {PUBLISHED_FILE.name}")
    return rows[0]["value"]
