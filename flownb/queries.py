"""SQL over the store: ``flownb.sql`` and ``flownb.history``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flownb.store.base import Store, open_store

if TYPE_CHECKING:
    import pandas as pd


def sql(
    query: str, db: str | os.PathLike[str] | Store | None = None, params: list[Any] | dict[str, Any] | None = None
) -> pd.DataFrame:
    """Run SQL over the store's tables and views; values only as ``?`` parameters.

    >>> flownb.sql("SELECT step, count(*) FROM steps GROUP BY step")  # doctest: +SKIP
    """
    store = open_store(db)
    store.flush()
    return store.query(query, params)


def history(db: str | os.PathLike[str] | Store | None = None, limit: int = 50) -> pd.DataFrame:
    """The latest runs, newest first."""
    return open_store(db).history(limit)
