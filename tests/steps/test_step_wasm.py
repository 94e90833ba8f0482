"""The wasm kind: real wasmtime guests (the shipped skills and small test modules)."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

import flownb
from flownb.errors import FlowDefinitionError
from flownb.steps.wasm import running_guests, skill_path
from tests.steps.helpers import attempts, recorded_inputs, wait_until

IMPORTS = """
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
"""


def _module(tmp_path: Path, name: str, body: str, data: str = "") -> str:
    """A WASI command whose _start runs ``body``; ``(call $say FD PTR LEN)`` writes bytes."""
    wat = f"""(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 100) "$DATA")
  (func $say (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr)) (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start") {body}))"""
    path = tmp_path / f"{name}.wat"
    wat = wat.replace("$DATA", data.replace("\\", "\\\\").replace('"', '\\"'))
    path.write_text(wat)
    return str(path)


def test_wordcount_skill_by_name_and_by_path(flow: flownb.Flow) -> None:
    @flow.step
    def text() -> str:
        return 'The quick\nbrown  fox said "hi"\tto\\the dog. é'

    flow.wasm("count", "wordcount", input="{{ text }}")
    flow.step(name="count2", kind="wasm", module=str(skill_path("wordcount")), input="one two")
    flow.wasm("empty", "wordcount", input="")
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    expected = len(['The', 'quick', 'brown', 'fox', 'said', '"hi"', 'to\\the', 'dog.', 'é'])
    assert run.outputs["count"] == {"words": expected}
    assert run.outputs["count2"] == {"words": 2}
    assert run.outputs["empty"] == {"words": 0}
    [inputs] = recorded_inputs(run, "count")
    assert inputs["module"].endswith("skills/wordcount.wat") and inputs["allow_dirs"] == []


def test_echo_skill_round_trips_json_and_a_binary_module_works(flow: flownb.Flow, tmp_path: Path) -> None:
    binary = tmp_path / "echo.wasm"
    binary.write_bytes(wasmtime.wat2wasm(skill_path("echo").read_text()))
    flow.wasm("same", str(binary), input={"a": [1, 2.5, None], "b": "{{ params.b }}"})
    flow.wasm("nothing", "echo")  # input=None: empty stdin; echo then prints null
    run = flow.run(params={"b": "x"}).wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["same"] == {"a": [1, 2.5, None], "b": "x"}
    assert run.outputs["nothing"] is None


def test_trap_fails_with_the_guests_message(flow: flownb.Flow, tmp_path: Path) -> None:
    msg = "bad input: expected a list"
    body = f"(call $say (i32.const 2) (i32.const 100) (i32.const {len(msg)})) unreachable"
    module = _module(tmp_path, "trap", body, msg)
    flow.wasm("t", module, retries=2, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "t")  # a trap is deterministic: not retried
    assert row["error_type"] == "WasmError"
    assert "trapped" in row["error"] and "unreachable" in row["error"] and msg in row["error"]
    assert row["stderr"] == msg  # stderr streamed into the log


def test_nonzero_exit_fails(flow: flownb.Flow, tmp_path: Path) -> None:
    body = "(call $say (i32.const 2) (i32.const 100) (i32.const 4)) (call $proc_exit (i32.const 2))"
    module = _module(tmp_path, "exit", body, "oops")
    flow.wasm("e", module)
    run = flow.run().wait(60)
    [row] = attempts(run, "e")
    assert "exited with code 2" in row["error"] and "oops" in row["error"]


def test_invalid_json_on_stdout_fails_clearly(flow: flownb.Flow, tmp_path: Path) -> None:
    module = _module(tmp_path, "chatty", "(call $say (i32.const 1) (i32.const 100) (i32.const 15))", "hello, not json")
    flow.wasm("j", module, retries=2, retry_delay=0)
    run = flow.run().wait(60)
    [row] = attempts(run, "j")
    assert "printed invalid JSON" in row["error"] and "hello, not json" in row["error"]


def test_missing_module_fails_at_run_time(flow: flownb.Flow, tmp_path: Path) -> None:
    flow.wasm("m", str(tmp_path / "absent.wasm"), retries=2, retry_delay=0)  # defining it is fine
    flow.wasm("n", "no_such_skill", on_failure="continue")
    run = flow.run().wait(60)
    [row] = attempts(run, "m")
    assert "does not exist" in row["error"] and "absent.wasm" in row["error"]
    assert "wordcount" in attempts(run, "n")[0]["error"]  # the message lists the shipped skills


def test_module_that_does_not_compile_or_is_not_a_command(flow: flownb.Flow, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wat"
    broken.write_text("(module (func")
    library = tmp_path / "lib.wat"
    library.write_text('(module (func (export "main")))')
    flow.wasm("broken", str(broken), on_failure="continue")
    flow.wasm("library", str(library), on_failure="continue")
    run = flow.run().wait(60)
    assert "does not compile" in attempts(run, "broken")[0]["error"]
    assert "_start" in attempts(run, "library")[0]["error"]


def test_endless_loop_stops_at_the_timeout(flow: flownb.Flow, tmp_path: Path) -> None:
    module = _module(tmp_path, "spin", "(loop $forever (br $forever))")
    flow.wasm("spin", module, timeout=1)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "spin")
    assert row["error_type"] in ("StepTimeout", "WasmError")
    assert "timeout" in row["error"] or "timed out" in row["error"]
    wait_until(lambda: running_guests() == 0, "the guest to stop")


def test_cancel_stops_the_guest(flow: flownb.Flow, tmp_path: Path) -> None:
    module = _module(tmp_path, "spin", "(loop $forever (br $forever))")
    flow.wasm("spin", module)
    run = flow.run()
    wait_until(lambda: running_guests() > 0, "the guest to start")
    run.cancel()
    run.wait(60)
    assert run.status == "cancelled"
    assert attempts(run, "spin")[0]["status"] == "cancelled"
    wait_until(lambda: running_guests() == 0, "the guest to stop")


def test_memory_limit(flow: flownb.Flow, tmp_path: Path) -> None:
    big = tmp_path / "big.wat"
    big.write_text('(module (memory (export "memory") 200) (func (export "_start")))')  # 12.5 MiB
    grow = _module(
        tmp_path, "grow",
        """(if (i32.eq (memory.grow (i32.const 100)) (i32.const -1))
             (then (call $say (i32.const 1) (i32.const 100) (i32.const 14)))
             (else (call $say (i32.const 1) (i32.const 114) (i32.const 13))))""",
        '{"grew":false}{"grew":true}',
    )  # fmt: skip
    flow.wasm("big", str(big), memory_limit_mb=4, on_failure="continue")
    flow.wasm("small_limit", grow, memory_limit_mb=4)
    flow.wasm("large_limit", grow, memory_limit_mb=64)
    run = flow.run().wait(60)
    assert "memory" in attempts(run, "big")[0]["error"]
    assert run.outputs["small_limit"] == {"grew": False}
    assert run.outputs["large_limit"] == {"grew": True}


def test_no_filesystem_unless_granted(flow: flownb.Flow, tmp_path: Path) -> None:
    # counts the preopened directories (fds 3, 4...) and prints {"preopens":N}
    body = """(local $fd i32) (local.set $fd (i32.const 3))
      (block $done (loop $next
        (br_if $done (call $prestat (local.get $fd) (i32.const 16)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1))) (br $next)))
      (i32.store8 (i32.const 112) (i32.add (i32.const 45) (local.get $fd)))
      (call $say (i32.const 1) (i32.const 100) (i32.const 14))"""
    module = _module(tmp_path, "dirs", body, '{"preopens":N}')
    shared = tmp_path / "shared"
    shared.mkdir()
    flow.wasm("none", module)
    flow.wasm("one", module, allow_dirs=[str(shared)])
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["none"] == {"preopens": 0}
    assert run.outputs["one"] == {"preopens": 1}


def test_definition_errors(flow: flownb.Flow) -> None:
    with pytest.raises(FlowDefinitionError, match=r"\.wasm or \.wat"):
        flow.wasm("a", "model.py")
    with pytest.raises(FlowDefinitionError, match="memory_limit_mb"):
        flow.wasm("b", "echo", memory_limit_mb=0)
    with pytest.raises(FlowDefinitionError, match="allow_dirs"):
        flow.wasm("c", "echo", allow_dirs="/tmp")
    with pytest.raises(FlowDefinitionError, match="JSON-able"):
        flow.wasm("d", "echo", input={"x": object()})
