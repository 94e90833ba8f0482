"""Named operations on a store: the questions flownb asks of it, in one place.

Nobody outside ``store/`` writes SQL but users: the engine, the notebook layer,
the CLI and the server ask a store these questions by name. :class:`Operations`
answers them with SQL over the views (``store/schema.py``), which is how the
DuckDB store answers; the in-memory store answers the same questions from its
events in Python (``store/twin.py``), without DuckDB. One test suite runs both
(tests/store/test_operations.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from flownb.errors import RunNotFound

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = (
    "run_id", "flow", "status", "started_at", "ended_at", "duration_ms", "error", "notebook", "parent_run_id",
    "trigger",
)  # fmt: skip
HISTORY_COLUMNS = ("run_id", "flow", "status", "started_at", "duration_ms", "error", "parent_run_id", "trigger")
RUNS_FRAME_COLUMNS = ("run_id", "flow", "status", "started_at", "duration_ms", "error", "trigger")


class Operations(ABC):
    """The named questions, answered by SQL over the store's views."""

    path: str

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is committed."""

    @abstractmethod
    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Users' SQL over the tables and views."""

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the one run whose id is ``run_id`` or starts with it."""
        self.flush()
        found = self.run_ids_like(run_id)
        if run_id in found:
            return run_id
        if len(found) == 1:
            return found[0]
        if not found:
            raise RunNotFound(f"no run {run_id!r} in {self.path}; see flownb history")
        raise RunNotFound(f"{run_id!r} matches several runs: {', '.join(found[:5])}; give more of the id")

    def run_ids_like(self, prefix: str) -> list[str]:
        """Ids of the runs that start with ``prefix``, sorted."""
        df = self.query("SELECT DISTINCT run_id FROM events WHERE run_id LIKE ? ORDER BY run_id", [prefix + "%"])
        return [str(r) for r in df["run_id"]]

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        """The run's row of the ``runs`` view (its status says ``interrupted`` once its owner is gone)."""
        self.flush()
        df = self.query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ?", [run_id])  # noqa: S608
        return None if df.empty else dict(df.iloc[0])

    def runs_frame(self, run_id: str) -> pd.DataFrame:
        """The run's row of the ``runs`` view, as a one-row frame (none when there is no such run)."""
        self.flush()
        return self.query(f"SELECT {', '.join(RUNS_FRAME_COLUMNS)} FROM runs WHERE run_id = ?", [run_id])  # noqa: S608

    def steps_frame(self, run_id: str) -> pd.DataFrame:
        """One row per attempt of the run, as in the ``steps`` view, in the order they started."""
        self.flush()
        return self.query(
            "SELECT * EXCLUDE (seq) FROM steps WHERE run_id = ? ORDER BY started_at, step, attempt", [run_id]
        )

    def history(self, limit: int = 50) -> pd.DataFrame:
        """The latest runs, newest first."""
        self.flush()
        return self.query(
            f"SELECT {', '.join(HISTORY_COLUMNS)} FROM runs ORDER BY started_at DESC LIMIT ?",  # noqa: S608
            [int(limit)],
        )

    def latest_run(self, flow: str) -> tuple[str, str] | None:
        """(run id, status) of the flow's latest top-level run, or None."""
        self.flush()
        df = self.query(
            "SELECT run_id, status FROM runs WHERE flow = ? AND parent_run_id IS NULL ORDER BY started_at DESC LIMIT 1",
            [flow],
        )
        return None if df.empty else (str(df.iloc[0]["run_id"]), str(df.iloc[0]["status"]))

    def approval_state(self, run_id: str, step: str) -> tuple[bool, str | None]:
        """(whether the step asked for approval, its decision so far)."""
        self.flush()
        df = self.query("SELECT decision FROM approvals WHERE run_id = ? AND step = ?", [run_id, step])
        if df.empty:
            return False, None
        decision = df["decision"].iloc[0]
        return True, decision if isinstance(decision, str) else None

    def waiting_approvals(self, run_id: str) -> list[str]:
        """The run's approval steps that asked and have no decision yet, sorted."""
        self.flush()
        df = self.query("SELECT step FROM approvals WHERE run_id = ? AND decision IS NULL ORDER BY step", [run_id])
        return [str(s) for s in df["step"]]

    def cached_success(self, flow: str, step: str, input_hash: str, other_than: str) -> tuple[str, str] | None:
        """(run id, output hash) of the latest success of ``step`` in another run of ``flow`` whose
        inputs and code hashed to ``input_hash``, or None."""
        self.flush()
        df = self.query(
            "SELECT s.run_id, s.output_hash FROM steps s JOIN runs r USING (run_id) "
            "WHERE r.flow = ? AND s.step = ? AND s.input_hash = ? AND s.status IN ('succeeded', 'cached') "
            "AND s.run_id <> ? ORDER BY s.ended_at DESC LIMIT 1",
            [flow, step, input_hash, other_than],
        )
        return None if df.empty else (str(df.iloc[0]["run_id"]), str(df.iloc[0]["output_hash"]))
