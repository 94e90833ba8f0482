"""A template value reaches bash as data in every quoting context, never as shell syntax.

Each payload of a hostile corpus goes into each quoting context, from the run's
params and from an upstream step's output. A payload that bash ran as code
would create the marker file; where a context prints the value, the printed
text must be the payload exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flownb
from flownb.errors import FlowDefinitionError
from tests.steps.helpers import recorded_inputs

PAYLOADS = [
    "$(touch {m})",
    "`touch {m}`",
    "'; touch {m}; '",
    '"; touch {m}; "',
    "'\"; touch {m}; #",
    "\\",
    "a\\",
    "\\'",
    '\\"',
    "$'\\x41'; touch {m}",
    "x\ntouch {m}\ny",
    "\n",
    "EOF",
    "x\nEOF\ntouch {m}\nEOF",
    "\tEOF\ntouch {m}",
    "$((1))",
    "${IFS}touch${IFS}{m}",
    "$IFS",
    "*",
    "/*",
    "-n",
    "-e",
    "--help",
    "!!",
    "~",
    "%s%d%n",
    "{a,b}",
    "a  b\tc",
    "",
    " ",
    "}}{{",
    "\x01\x02\x07\x08\x1b[31mred\x7f",
    "é 漢字 🙂 \u202e",
    "'\"`$\\|&;<>()[]{}*?#~=%!",
    "$(touch {m})'$(touch {m})'\"$(touch {m})\"",
]

# (a command around one value, what it prints for value v or None when the
# context does not print the value unchanged; only the marker is checked there)
Expect = Callable[[str], str] | None
CONTEXTS: dict[str, tuple[str, Expect]] = {
    "bare": ("printf '%s' {V}", lambda v: v),
    "bare-in-word": ("printf '%s' a{V}b", lambda v: f"a{v}b"),
    "double": ('printf \'%s\' "{V}"', lambda v: v),
    "double-in-text": ('printf \'%s\' "<{V}>$HOME_NOT_SET"', lambda v: f"<{v}>"),
    "single": ("printf '%s' '{V}'", lambda v: v),
    "single-in-text": ("printf '%s' 'it''s: {V}!'", lambda v: f"its: {v}!"),
    "ansi-c": ("printf '%s' $'a\\t{V}'", lambda v: f"a\t{v}"),
    "heredoc": ("cat <<EOF\n{V}\nEOF", lambda v: v + "\n"),
    "heredoc-text": ("cat <<EOF\n[$HOME_NOT_SET{V}]\nEOF", lambda v: f"[{v}]\n"),
    "heredoc-quoted": ("cat <<'EOF'\n$NOT_EXPANDED {V} `x`\\\nEOF", lambda v: f"$NOT_EXPANDED {v} `x`\\\n"),
    "heredoc-dquoted": ('cat <<"END"\n{V}\nEND', lambda v: v + "\n"),
    "heredoc-tabs": ("cat <<-EOF\n\t{V}\n\tEOF", lambda v: v + "\n"),
    "two-heredocs": ("cat <<A - <<'B'\n{V}\nA\n{V}\nB", None),
    "here-string": ("cat <<< {V}", lambda v: v + "\n"),
    "cmd-subst": ("printf '%s' \"$(printf '%s' {V})\"", lambda v: v.rstrip("\n")),
    "cmd-subst-double": ('printf \'%s\' "$(printf \'%s\' "{V}")"', lambda v: v.rstrip("\n")),
    "cmd-subst-single": ("printf '%s' \"$(printf '%s' '{V}')\"", lambda v: v.rstrip("\n")),
    "nested-subst": ('printf \'%s\' "$(printf \'%s\' "$(printf \'%s\' {V})")"', lambda v: v.rstrip("\n")),
    "backticks": ("printf '%s' \"`printf '%s' {V}`\"", lambda v: v.rstrip("\n")),
    "backticks-double": ('printf \'%s\' "`printf \'%s\' "{V}"`"', lambda v: v.rstrip("\n")),
    "backticks-bare": ("printf '%s' `printf '%s' '{V}'`", None),
    "assignment": ('v={V}; printf \'%s\' "$v"', lambda v: v),
    "comment": ("printf ok # it's {V}", lambda v: "ok"),
    "case": ('case {V} in "$NOPE") ;; *) printf \'%s\' {V};; esac', lambda v: v),
    "test": ("[[ {V} == {V} ]] && printf same", lambda v: "same"),
    "subshell": ("(printf '%s' {V})", lambda v: v),
    "pipeline": ("printf '%s' {V} | cat", lambda v: v),
}


def _flow(tmp_path: Path, name: str) -> flownb.Flow:
    return flownb.Flow(name, db=str(tmp_path / "store.duckdb"), max_concurrency=8)


def _check(run: Any, marker: Path, values: list[str], expect: Expect) -> None:
    assert run.status == "succeeded", run.error
    assert not marker.exists(), "a payload ran as shell code"
    if expect is None:
        return
    for i, value in enumerate(values):
        assert run.outputs[f"s{i}"]["stdout"] == expect(value), (i, value)


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_param_values_are_data_in_every_context(tmp_path: Path, context: str) -> None:
    marker = tmp_path / "MARK"
    command, expect = CONTEXTS[context]
    values = [p.replace("{m}", str(marker)) for p in PAYLOADS]
    flow = _flow(tmp_path, "params")
    for i in range(len(values)):
        flow.shell(f"s{i}", command.replace("{V}", f"{{{{ params.v{i} }}}}"))
    run = flow.run(params={f"v{i}": v for i, v in enumerate(values)}).wait(120)
    _check(run, marker, values, expect)


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_upstream_outputs_are_data_in_every_context(tmp_path: Path, context: str) -> None:
    marker = tmp_path / "MARK"
    command, expect = CONTEXTS[context]
    values = [p.replace("{m}", str(marker)) for p in PAYLOADS]
    flow = _flow(tmp_path, "upstream")
    for i, value in enumerate(values):
        flow.step(lambda value=value: value, name=f"u{i}")
        flow.shell(f"s{i}", command.replace("{V}", f"{{{{ u{i} }}}}"))
    run = flow.run().wait(120)
    _check(run, marker, values, expect)


def test_loops_and_conditions_keep_each_value_in_its_context(tmp_path: Path) -> None:
    marker = tmp_path / "MARK"
    values = [p.replace("{m}", str(marker)) for p in PAYLOADS]
    flow = _flow(tmp_path, "loops")
    flow.shell(
        "loop",
        "{% for v in params.vs %}printf '%s|' \"{{ v }}\" '{{ v }}' {{ v }}\n{% endfor %}"
        "{% if params.flag %}cat <<EOF\n{% for v in params.vs %}[{{ v }}]\n{% endfor %}EOF\n{% endif %}",
    )
    run = flow.run(params={"vs": values, "flag": True}).wait(60)
    assert run.status == "succeeded", run.error
    assert not marker.exists()
    expected = "".join(f"{v}|{v}|{v}|" for v in values) + "".join(f"[{v}]\n" for v in values)
    assert run.outputs["loop"]["stdout"] == expected


def test_arithmetic_takes_integers_only(tmp_path: Path) -> None:
    marker = tmp_path / "MARK"
    flow = _flow(tmp_path, "arith")
    flow.shell("sum", "echo $(( {{ params.n }} + 1 )) $(({{ params.n }}*2)); (( {{ params.n }} > 1 )) && echo big")
    flow.shell("cmp", "[[ {{ params.n }} -eq 41 ]] && echo same")
    run = flow.run(params={"n": 41}).wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["sum"]["stdout"] == "42 82\nbig\n" and run.outputs["cmp"]["stdout"] == "same\n"

    for evil in ("a[$(touch {m})]", "x[`touch {m}`]", "1+1", "$(touch {m})"):
        run = flow.run(params={"n": evil.replace("{m}", str(marker))}).wait(60)
        assert run.status == "failed"
        assert "integer" in str(run.error) and "'sum'" in str(run.error)
        assert not marker.exists()


@pytest.mark.parametrize(
    ("command", "context"),
    [
        ("echo ${X:-{{ params.v }}}", "${...}"),
        ('echo "${X/{{ params.v }}/y}"', "${...}"),
        ("eval {{ params.v }}", "eval"),
        ('eval "echo {{ params.v }}"', "eval"),
        ("trap 'echo {{ params.v }}' EXIT", "trap"),
        ("let x={{ params.v }}", "let"),
        ("echo \\{{ params.v }}", "backslash"),
        ('echo "\\{{ params.v }}"', "backslash"),
        ("echo ${{ params.v }}", "$"),
        ("cat <<{{ params.v }}\nx\n", "heredoc delimiter"),
        ("cat <<EOF{{ params.v }}\nx\nEOF{{ params.v }}\n", "heredoc delimiter"),
        ("echo \"{{ params.v }}", "does not close"),
        ("echo '{% if params.v %}' x {% endif %}", "tag"),
        ("{% macro m() %}x{% endmacro %}echo {{ m() }}", "macro"),
        ("echo `echo \\`echo {{ params.v }}\\``", "backticks"),
    ],
)
def test_contexts_that_cannot_be_made_safe_are_refused_at_definition(command: str, context: str) -> None:
    flow = flownb.Flow("refused", db=":memory:")
    with pytest.raises(FlowDefinitionError) as info:
        flow.shell("risky", command)
    message = str(info.value)
    assert "step 'risky'" in message and context in message, message
    assert "risky" not in flow.steps


def test_the_recorded_command_shows_the_script_and_its_values(tmp_path: Path) -> None:
    flow = _flow(tmp_path, "recorded")
    flow.shell("hello", "echo hi '{{ params.who }}'")
    run = flow.run(params={"who": "it's me"}).wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["hello"]["stdout"] == "hi it's me\n"
    [inputs] = recorded_inputs(run, "hello")
    assert inputs["command"] == "echo hi ''\"${FLOWNB_ARG_1}\"''"
    assert inputs["args"] == {"FLOWNB_ARG_1": "it's me"}
