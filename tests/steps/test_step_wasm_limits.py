"""A guest's memory is bounded in total: memories, tables and instances, not one memory's size.

The RSS checks run the flow in a fresh subprocess, so that what other tests left
in this process neither hides nor fakes growth.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import flownb
from flownb.steps import wasm as wasm_kind
from tests.steps.helpers import attempts

MB = 1024 * 1024
PAGES_60MB = 60 * 16  # 64 KiB pages
#: what a guest may add to the process beyond its memory_limit_mb (code, stacks, tables)
SLACK_MB = 48

# nine memories of 60 MB each, every page touched
MANY_MEMORIES = "(module {} (func (export \"_start\") {}))".format(
    "".join(f"(memory $m{i} {PAGES_60MB})" for i in range(9)),
    "".join(f"(memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const {60 * MB}))" for i in range(9)),
)
# grows its table by 50M elements (8 bytes each), and traps when refused
HUGE_TABLE_GROW = """(module (table 1 funcref)
  (func (export "_start")
    (if (i32.eq (table.grow 0 (ref.null func) (i32.const 50000000)) (i32.const -1)) (then unreachable))))"""
HUGE_TABLE_DECLARED = '(module (table 50000000 funcref) (func (export "_start")))'
MANY_TABLES = "(module {} (func (export \"_start\")))".format(
    "".join(f"(table $t{i} 200000 funcref)" for i in range(40))
)

PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import flownb

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    warm = flownb.Flow("warm", db=":memory:")
    warm.wasm("echo", "echo", input=[1])
    warm.run().wait(120)  # imports, the store, a wasmtime engine: not the guest's doing
    flow = flownb.Flow("probe", db=":memory:")
    flow.wasm("guest", sys.argv[1], memory_limit_mb=64)
    before = peak_mb()
    run = flow.run().wait(120)
    growth = peak_mb() - before  # before reading run.steps, which imports pandas
    row = run.steps.iloc[-1]
    print(json.dumps({"status": run.status, "error": str(row["error"]), "growth_mb": growth}))
    """
)


def _probe(tmp_path: Path, wat: str) -> dict[str, Any]:
    module = tmp_path / "guest.wat"
    module.write_text(wat)
    done = subprocess.run([sys.executable, "-c", PROBE, str(module)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_many_memories_fail_the_step_and_do_not_grow_rss(tmp_path: Path) -> None:
    result = _probe(tmp_path, MANY_MEMORIES)
    assert result["status"] == "failed"
    assert "one linear memory" in str(result["error"]) and "memory_limit_mb=64" in str(result["error"])
    assert float(result["growth_mb"]) < 64 + SLACK_MB, result


def test_a_huge_table_grow_is_refused_and_does_not_grow_rss(tmp_path: Path) -> None:
    result = _probe(tmp_path, HUGE_TABLE_GROW)
    assert result["status"] == "failed"
    assert "unreachable" in str(result["error"])  # the guest saw table.grow return -1
    assert float(result["growth_mb"]) < SLACK_MB, result


@pytest.mark.parametrize(("wat", "expected"), [(HUGE_TABLE_DECLARED, "table"), (MANY_TABLES, "table")], ids=["huge", "many"])
def test_huge_or_many_tables_fail_the_step_with_a_clear_error(
    flow: flownb.Flow, tmp_path: Path, wat: str, expected: str
) -> None:
    module = tmp_path / "tables.wat"
    module.write_text(wat)
    flow.wasm("tables", str(module))
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "tables")
    assert "does not fit its limits" in row["error"] and expected in row["error"], row["error"]
    assert "memory_limit_mb=64" in row["error"]


def test_a_store_holds_one_instance() -> None:
    engine = wasmtime.Engine()
    store = wasm_kind.limited_store(engine, 64)
    module = wasmtime.Module(engine, '(module (memory 1) (func (export "_start")))')
    wasmtime.Instance(store, module, [])
    with pytest.raises(wasmtime.WasmtimeError, match="instance"):
        wasmtime.Instance(store, module, [])


def test_gc_allocations_are_refused_at_compile_time(flow: flownb.Flow, tmp_path: Path) -> None:
    # the GC heap is outside linear memory: a guest could allocate past memory_limit_mb there
    module = tmp_path / "gc.wat"
    module.write_text(
        '(module (type $a (array (mut i8))) (func (export "_start") (drop (array.new_default $a (i32.const 1000)))))'
    )
    flow.wasm("gc", str(module))
    run = flow.run().wait(60)
    assert run.status == "failed"
    assert "does not compile" in attempts(run, "gc")[0]["error"]
