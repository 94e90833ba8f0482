"""The store's tables and the views users query.

Everything the engine records is appended to one table, ``events``: a commit
then touches one table, which DuckDB commits in about the time of a single row
(measured: a second table in the same transaction costs as much again). The
current state of runs, steps, approvals and outputs is derived by views.

A run's ``status`` is its latest recorded one, except that a live run (pending,
running, waiting, paused) whose lease is not held or not renewed in time shows as
``interrupted`` (store/lease.py has the rule); ``host`` and ``pid`` name the process
that owns it, or owned it last.
"""

from __future__ import annotations

from flownb.store.lease import INTERRUPTED_SQL, LIVE_STATUSES

EVENTS_COLUMNS = ("run_id", "seq", "ts", "step", "event", "payload")

TABLES = """
CREATE TABLE IF NOT EXISTS events (
    run_id VARCHAR NOT NULL, seq BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL,
    step VARCHAR, event VARCHAR NOT NULL, payload JSON);
CREATE TABLE IF NOT EXISTS _values (
    run_id VARCHAR NOT NULL, step VARCHAR NOT NULL, name VARCHAR NOT NULL,
    hash VARCHAR NOT NULL, codec VARCHAR NOT NULL, data BLOB);
CREATE TABLE IF NOT EXISTS _inbox (
    run_id VARCHAR NOT NULL, step VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL,
    decision VARCHAR NOT NULL, decided_by VARCHAR, comment VARCHAR, via VARCHAR);
CREATE TABLE IF NOT EXISTS _heartbeats (
    run_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS _leases (
    run_id VARCHAR NOT NULL, epoch BIGINT NOT NULL, owner VARCHAR NOT NULL, pid BIGINT NOT NULL,
    host VARCHAR NOT NULL, node VARCHAR NOT NULL, proc_start DOUBLE NOT NULL,
    renewed_at TIMESTAMPTZ NOT NULL, ttl_s DOUBLE NOT NULL, state VARCHAR NOT NULL);
"""
# _heartbeats is read by nothing now (leases replaced it); kept so that older files open alike.
# _leases has one row per run, written under the file lock only (see store/lease.py).

_LIVE = ", ".join(f"'{s}'" for s in LIVE_STATUSES)

VIEWS = f"""
CREATE OR REPLACE VIEW runs AS
WITH started AS (
    SELECT run_id, min(ts) AS started_at, arg_min(payload, seq) AS p
    FROM events WHERE event = 'run_started' GROUP BY run_id),
latest AS (
    SELECT run_id, arg_max(payload->>'status', seq) AS status,
           arg_max(ts, seq) AS status_at, arg_max(payload, seq) AS p
    FROM events WHERE event IN ('run_started', 'run_status', 'run_ended') GROUP BY run_id)
SELECT s.run_id,
       s.p->>'flow' AS flow,
       CASE WHEN l.status IN ({_LIVE}) AND {INTERRUPTED_SQL}
            THEN 'interrupted' ELSE l.status END AS status,
       s.p->'params' AS params,
       s.started_at,
       CASE WHEN l.status IN ('succeeded', 'failed', 'cancelled') THEN l.status_at END AS ended_at,
       CASE WHEN l.status IN ('succeeded', 'failed', 'cancelled')
            THEN date_diff('microsecond', s.started_at, l.status_at) / 1000.0 END AS duration_ms,
       l.p->>'error' AS error,
       COALESCE(o.host, s.p->>'host') AS host,
       CAST(COALESCE(o.pid, CAST(s.p->>'pid' AS BIGINT)) AS INTEGER) AS pid,
       s.p->>'notebook' AS notebook,
       s.p->>'flow_hash' AS flow_hash,
       s.p->>'parent_run_id' AS parent_run_id,
       COALESCE(s.p->>'trigger', 'manual') AS trigger
FROM started s JOIN latest l USING (run_id) LEFT JOIN _leases o USING (run_id);

CREATE OR REPLACE VIEW steps AS
SELECT run_id, step,
       CAST(payload->>'attempt' AS INTEGER) AS attempt,
       payload->>'kind' AS kind,
       payload->>'status' AS status,
       CAST(payload->>'level' AS INTEGER) AS level,
       COALESCE(to_timestamp(CAST(payload->>'started_at' AS DOUBLE)), ts) AS started_at,
       CASE WHEN event = 'step_finished' THEN ts END AS ended_at,
       CAST(payload->>'duration_ms' AS DOUBLE) AS duration_ms,
       payload->>'error_type' AS error_type,
       payload->>'error' AS error,
       payload->>'traceback' AS traceback,
       payload->>'input_hash' AS input_hash,
       payload->>'output_hash' AS output_hash,
       COALESCE(CAST(payload->>'cached' AS BOOLEAN), false) AS cached,
       payload->>'stdout' AS stdout,
       payload->>'stderr' AS stderr,
       CAST(payload->>'tokens_in' AS BIGINT) AS tokens_in,
       CAST(payload->>'tokens_out' AS BIGINT) AS tokens_out,
       CAST(payload->>'cost_usd' AS DOUBLE) AS cost_usd,
       payload->>'reason' AS reason,
       payload->>'code_hash' AS code_hash,
       payload->'inputs' AS inputs,
       seq
FROM events
WHERE event IN ('step_started', 'step_waiting', 'step_finished')
QUALIFY row_number() OVER (PARTITION BY run_id, step, payload->>'attempt' ORDER BY seq DESC) = 1;

CREATE OR REPLACE VIEW approvals AS
WITH requested AS (
    SELECT run_id, step, min(ts) AS requested_at, arg_min(payload->>'message', seq) AS message
    FROM events WHERE event = 'approval_requested' GROUP BY run_id, step),
decided AS (
    SELECT run_id, step, arg_min(ts, ts) AS decided_at, arg_min(decision, ts) AS decision,
           arg_min(decided_by, ts) AS decided_by, arg_min(comment, ts) AS comment,
           arg_min(via, ts) AS via
    FROM (
        SELECT run_id, step, ts, payload->>'decision' AS decision,
               payload->>'decided_by' AS decided_by, payload->>'comment' AS comment,
               payload->>'via' AS via
        FROM events WHERE event = 'approval_decided'
        UNION ALL
        SELECT run_id, step, ts, decision, decided_by, comment, via FROM _inbox)
    GROUP BY run_id, step)
SELECT r.run_id, r.step, r.requested_at, d.decided_at, d.decision, d.decided_by,
       d.comment, d.via, r.message
FROM requested r LEFT JOIN decided d USING (run_id, step);

CREATE OR REPLACE VIEW outputs AS
WITH recorded AS (
    SELECT run_id, step, seq, unnest(json_extract(payload, '$.outputs[*]')) AS o
    FROM events WHERE event = 'step_finished' AND json_extract(payload, '$.outputs') IS NOT NULL)
SELECT run_id, step, o->>'name' AS name, o->>'codec' AS codec,
       CAST(o->>'size_bytes' AS BIGINT) AS size_bytes, o->>'hash' AS hash,
       o->>'table' AS table_name, o->>'reason' AS reason
FROM recorded
QUALIFY row_number() OVER (PARTITION BY run_id, step, o->>'name' ORDER BY seq DESC) = 1;
"""  # noqa: S608  (built from a constant, not user input)
