"""Named operations on a store: the questions flownb asks of it, in one place.

Nobody outside ``store/`` writes SQL but users: the engine, the notebook layer,
the CLI and the server ask these. Each works on any :class:`Store` (DuckDB's, or
the in-memory double), through its views, so the answers are the views' answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flownb.errors import RunNotFound

if TYPE_CHECKING:
    import pandas as pd

    from flownb.store.base import Store

_RUN_COLUMNS = "run_id, flow, status, started_at, ended_at, duration_ms, error, notebook, parent_run_id, trigger"


def resolve_run_id(store: Store, run_id: str) -> str:
    """The full id of the one run whose id is ``run_id`` or starts with it."""
    store.flush()
    found = store.run_ids_like(run_id)
    if run_id in found:
        return run_id
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunNotFound(f"no run {run_id!r} in {store.path}; see flownb history")
    raise RunNotFound(f"{run_id!r} matches several runs: {', '.join(found[:5])}; give more of the id")


def run_row(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's row of the ``runs`` view (its status says ``interrupted`` once its owner is gone)."""
    store.flush()
    df = store.query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", [run_id])  # noqa: S608  (constant columns)
    return None if df.empty else dict(df.iloc[0])


def runs_frame(store: Store, run_id: str) -> pd.DataFrame:
    store.flush()
    return store.query(
        "SELECT run_id, flow, status, started_at, duration_ms, error, trigger FROM runs WHERE run_id = ?", [run_id]
    )


def steps_frame(store: Store, run_id: str) -> pd.DataFrame:
    """One row per attempt of the run, as in the ``steps`` view, in the order they started."""
    store.flush()
    return store.query(
        "SELECT * EXCLUDE (seq) FROM steps WHERE run_id = ? ORDER BY started_at, step, attempt", [run_id]
    )


def history(store: Store, limit: int = 50) -> pd.DataFrame:
    """The latest runs, newest first."""
    store.flush()
    return store.query(
        "SELECT run_id, flow, status, started_at, duration_ms, error, parent_run_id, trigger FROM runs "
        "ORDER BY started_at DESC LIMIT ?",
        [int(limit)],
    )


def latest_run(store: Store, flow: str) -> tuple[str, str] | None:
    """(run id, status) of the flow's latest top-level run, or None."""
    store.flush()
    df = store.query(
        "SELECT run_id, status FROM runs WHERE flow = ? AND parent_run_id IS NULL ORDER BY started_at DESC LIMIT 1",
        [flow],
    )
    return None if df.empty else (str(df.iloc[0]["run_id"]), str(df.iloc[0]["status"]))


def approval_state(store: Store, run_id: str, step: str) -> tuple[bool, str | None]:
    """(whether the step asked for approval, its decision so far)."""
    store.flush()
    df = store.query("SELECT decision FROM approvals WHERE run_id = ? AND step = ?", [run_id, step])
    if df.empty:
        return False, None
    decision = df["decision"].iloc[0]
    return True, decision if isinstance(decision, str) else None


def waiting_approvals(store: Store, run_id: str) -> list[str]:
    store.flush()
    df = store.query("SELECT step FROM approvals WHERE run_id = ? AND decision IS NULL ORDER BY step", [run_id])
    return [str(s) for s in df["step"]]


def cached_success(store: Store, flow: str, step: str, input_hash: str, other_than: str) -> tuple[str, str] | None:
    """(run id, output hash) of the latest success of ``step`` in another run of ``flow`` whose
    inputs and code hashed to ``input_hash``, or None."""
    store.flush()
    df = store.query(
        "SELECT s.run_id, s.output_hash FROM steps s JOIN runs r USING (run_id) "
        "WHERE r.flow = ? AND s.step = ? AND s.input_hash = ? AND s.status IN ('succeeded', 'cached') "
        "AND s.run_id <> ? ORDER BY s.ended_at DESC LIMIT 1",
        [flow, step, input_hash, other_than],
    )
    return None if df.empty else (str(df.iloc[0]["run_id"]), str(df.iloc[0]["output_hash"]))
