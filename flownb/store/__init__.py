"""Where runs are recorded: the DuckDB file, an in-memory double, value codecs."""

from flownb.store.base import Decision, Event, Store, StoredValue, open_store, resolve_path

__all__ = ["Decision", "Event", "Store", "StoredValue", "open_store", "resolve_path"]
