"""A model of bash's quoting: where in a script each template value would land.

:class:`Scanner` reads a shell command template's literal text piece by piece,
between its ``{{ }}`` and ``{% %}`` tags, and keeps a stack of the quoting
contexts bash would be in: a command's words, ``"..."``, ``'...'``, ``$'...'``,
comments, ``$(...)`` and backticks, ``${...}``, arithmetic, array subscripts,
``[[ ]]``, ``case`` patterns and heredoc bodies (quoted or not). For each value
it answers the context (:class:`Slot`), or raises :class:`ShellTemplateError`
where no value can be data. It follows quotes and escapes exactly; it does not
parse bash's grammar beyond what decides quoting, and when it cannot be sure
(an unclosed quote, backticks with escapes, a tag between contexts) it refuses
rather than guesses. :mod:`flownb.steps.shell_template` turns its answers into
references to environment variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_SIMPLE_DELIMITER = re.compile(r"[A-Za-z0-9_.,:+-]+")
#: words after which the next word is a command again
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}",
                       "time", "in", "esac", "function", "select", "for", "case", "coproc"})  # fmt: skip
#: commands that run their arguments as shell code or arithmetic
_CODE_COMMANDS = frozenset({"eval", "trap", "let", "source", ".", "alias"})
_ARITH_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})


class ShellTemplateError(ValueError):
    """A template stands where no value can be shell data; the message says where and why."""


@dataclass
class _Bracket:
    """A ``[[ ... ]]`` test: its operands are arithmetic when it compares numbers."""

    arith: bool = False


@dataclass
class Slot:
    """Where one ``{{ expression }}`` stands: a context of ``shell_template._FORMS``."""

    expression: str
    context: str
    bracket: _Bracket | None = None

    def resolve(self) -> str:
        """The context, once the whole text is read (a ``[[ ]]`` turns arithmetic at its -eq)."""
        if self.bracket is not None and self.bracket.arith:
            return "int-word"
        return self.context


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool
    #: where the delimiter word stands, to unquote it: (piece, start, end)
    word_at: tuple[int, int, int]
    #: literal body text: (piece, start, end)
    body: list[tuple[int, int, int]] = field(default_factory=list)
    has_values: bool = False


@dataclass
class _Frame:
    kind: str  # cmd, dq, sq, ansic, comment, param, arith, heredoc, subscript
    closer: str = ""  # cmd: "" (top), ")" or "`"; arith: "))" or "]"
    depth: int = 0  # parentheses (cmd, arith) or braces (param) opened inside
    case_depth: int = 0
    pending: list[_Heredoc] = field(default_factory=list)
    cmd_start: bool = True
    word: str | None = ""  # the current word's literal text; None once quoted or templated
    in_word: bool = False
    command: str = ""  # the current simple command's name
    bracket: _Bracket | None = None
    heredoc: _Heredoc | None = None
    line: str = ""
    line_plain: bool = True  # the heredoc line so far is literal text (it can be the delimiter)
    backslashed: bool = False  # backticks: an escape seen (bash then parses the text twice)

    def signature(self) -> tuple[Any, ...]:
        return (self.kind, self.closer, self.depth, self.case_depth, len(self.pending), id(self.heredoc),
                self.line if self.kind == "heredoc" else "", id(self.bracket))  # fmt: skip


@dataclass
class _Edit:
    """Replace ``[start, end)`` of a piece of literal text by ``text`` (None: escape it)."""

    piece: int
    start: int
    end: int
    text: str | None


class Scanner:
    """Follows bash's quoting through the literal text of a template, piece by piece."""

    def __init__(self) -> None:
        self.stack: list[_Frame] = [_Frame("cmd")]
        self.escape = False  # the last character was an unconsumed backslash
        self.dollar = False  # the last character was a $ that a following piece would join
        self.open_delimiter = False  # a heredoc delimiter word reached the end of a piece
        self.data_pieces: set[int] = set()
        self.edits: list[_Edit] = []

    @property
    def top(self) -> _Frame:
        return self.stack[-1]

    # -- what the compiler asks ------------------------------------------------

    def template(self, expr: str, lineno: int) -> Slot:
        """A value at the current position: its context, or ShellTemplateError where none is safe."""
        where = f"{{{{ {expr} }}}} (line {lineno})"
        self.refuse_pending(where)
        top = self.top
        for frame in self.stack:
            # in any enclosing command: `eval "$(printf %s {{ v }})"` runs the value too
            if frame.kind == "cmd" and frame.command in _CODE_COMMANDS and not frame.cmd_start:
                raise ShellTemplateError(
                    f"{where} is part of the arguments of {frame.command!r}, which runs them as shell code, so no "
                    "quoting keeps a value data there; put the value in a variable the code reads "
                    f"(V={{{{ {expr} }}}}; {frame.command} '... \"$V\" ...')"
                )
            if frame.kind == "cmd" and frame.closer == "`" and frame.backslashed:
                raise ShellTemplateError(
                    f"{where} stands inside backticks that use backslash escapes, which bash parses twice; "
                    "use $(...) instead of backticks"
                )
        if top.kind == "param":
            raise ShellTemplateError(
                f"{where} stands inside ${{...}}, where bash reads patterns, offsets and defaults, not data; "
                f"assign it first (V={{{{ {expr} }}}}) and use ${{V...}}"
            )
        if top.kind == "heredoc":
            assert top.heredoc is not None
            top.heredoc.has_values = True
            top.line_plain = False
            return Slot(expr, "heredoc")
        if top.kind in ("arith", "subscript"):
            return Slot(expr, "int")
        if top.kind in ("dq", "sq", "ansic", "comment"):
            return Slot(expr, top.kind)
        # a word of a command
        self._enter_word(top)
        top.word = None
        return Slot(expr, "word", top.bracket)

    def state(self, where: str) -> tuple[Any, ...]:
        """The quoting state at a tag; refuses a tag where the next text would join the previous."""
        self.refuse_pending(where)
        return tuple(f.signature() for f in self.stack)

    def finish(self, has_values: bool) -> None:
        """At the end of the text: an unbalanced command is refused when it holds values."""
        top = self.top
        if top.kind == "heredoc" and top.line_plain and self._delimits(top):
            self._pop()  # a delimiter on the last line, without a newline after it
        elif top.kind == "comment":
            self._pop()
        if not has_values:
            return
        still_open = [f for f in self.stack[1:] if f.kind != "heredoc"]
        if still_open:
            what = _OPENERS.get(still_open[-1].kind, "a quote")
            raise ShellTemplateError(
                f"the command's quoting does not close ({what} is still open at its end), so where its "
                "values land cannot be known; close it"
            )
        if self.top.kind == "heredoc" or any(f.pending for f in self.stack):
            raise ShellTemplateError(
                "the command's quoting does not close (a heredoc has no delimiter line), so where its "
                "values land cannot be known; end the heredoc"
            )

    def refuse_pending(self, where: str) -> None:
        """Refuse a template or tag that the text before it would join (``\\``, ``$``, ``<<``)."""
        if self.escape:
            raise ShellTemplateError(
                f"{where} follows a backslash, which would escape the value's quoting; remove the backslash"
            )
        if self.dollar:
            raise ShellTemplateError(
                f"{where} follows a $, which bash would join to the value as an expansion; remove the $"
            )
        if self.open_delimiter:
            raise ShellTemplateError(
                f"{where} stands in a heredoc delimiter, which bash reads before any expansion; "
                "write the delimiter literally"
            )

    # -- the literal text ------------------------------------------------------------

    def feed(self, text: str, piece: int) -> None:
        """Follow one piece of literal text (``piece``: its index in the compiler's output)."""
        self.data_pieces.add(piece)
        i, n = 0, len(text)
        while i < n:
            top = self.top
            if top.kind == "heredoc" and top.heredoc is not None and top.heredoc.quoted:
                # a quoted heredoc's body: literal lines, kept to be escaped if it holds values
                nl = text.find("\n", i)
                end = n if nl < 0 else nl + 1
                top.heredoc.body.append((piece, i, end))
                top.line += text[i : end if nl < 0 else nl]
                if nl >= 0:
                    if top.line_plain and self._delimits(top):
                        self._pop()
                    else:
                        top.line, top.line_plain = "", True
                i = end
                continue
            if self.escape:
                self.escape = False
                self._escaped(top, text[i])
                i += 1
                continue
            i = self._step(text, i, piece)

    def _escaped(self, top: _Frame, ch: str) -> None:
        """The character after a backslash: literal, except a line continuation."""
        if top.kind == "heredoc":
            top.line_plain = False
            if ch != "\n":
                top.line += ch
            return
        if top.kind in ("cmd", "subscript") and ch != "\n":
            self._enter_word(top)
            if top.word is not None:
                top.word = None  # an escaped word is not a command name we can judge

    def _step(self, text: str, i: int, piece: int) -> int:  # noqa: PLR0911  (one dispatch on bash's syntax)
        """Follow the character at ``i``; returns where to go on."""
        top = self.top
        ch = text[i]
        kind = top.kind
        if kind == "sq" or (kind == "ansic" and ch != "\\"):
            if ch == "'":
                self._pop()
            return i + 1
        if kind == "comment":
            if ch == "\n":
                self._pop()
                return i  # the newline ends the command as well
            return i + 1
        if ch == "\\":
            if kind == "cmd" and top.closer == "`":
                top.backslashed = True
            self.escape = True
            return i + 1
        went = self._expansion(top, text, i)
        if went >= 0:
            return went
        if kind == "heredoc":
            return self._heredoc_char(top, text, i)
        if kind == "dq":
            if ch == '"':
                self._pop()
            return i + 1
        if kind == "cmd":
            return self._cmd_char(top, text, i, piece)
        return self._nested_char(top, text, i)

    def _expansion(self, top: _Frame, text: str, i: int) -> int:
        """``$(``, ``$((``, ``${``, ``$[``, backticks (and ``$'``, ``$"`` in words): the
        frame they open, and where to go on; -1 when ``i`` starts none."""
        ch = text[i]
        nxt = text[i + 1 : i + 2]
        if ch == "`":
            if top.kind == "cmd" and top.closer == "`":
                self._pop()
            else:
                self._word_char(top, None)
                self._push(_Frame("cmd", closer="`"))
            return i + 1
        if ch != "$":
            return -1
        if not nxt:
            self.dollar = True  # a value or tag right after would join this $
            return i + 1
        opened = {"(": _Frame("cmd", closer=")"), "{": _Frame("param"), "[": _Frame("arith", closer="]")}
        if top.kind == "cmd":
            opened.update({"'": _Frame("ansic"), '"': _Frame("dq")})
        frame = opened.get(nxt)
        if frame is None:  # $name, $1, $$...: expands, but opens nothing
            self._word_char(top, ch)
            top.line += ch if top.kind == "heredoc" else ""
            return i + 1
        if nxt == "(" and text[i + 2 : i + 3] == "(":
            frame, nxt = _Frame("arith", closer="))"), "(("
        self._word_char(top, None)
        self._push(frame)
        return i + 1 + len(nxt)

    def _nested_char(self, top: _Frame, text: str, i: int) -> int:
        """A character inside ``${...}``, arithmetic or a subscript: find where it closes."""
        ch = text[i]
        if ch == "'":
            self._push(_Frame("sq"))
        elif ch == '"':
            self._push(_Frame("dq"))
        elif top.kind == "param" and ch in "{}":
            if ch == "{":
                top.depth += 1
            elif top.depth:
                top.depth -= 1
            else:
                self._pop()
        elif top.kind == "subscript" and ch == "]":
            self._pop()
        elif top.kind == "arith" and ch == "(":
            top.depth += 1
        elif top.kind == "arith" and ch == ")" and top.depth:
            top.depth -= 1
        elif top.kind == "arith" and text.startswith(top.closer, i):
            self._pop()
            return i + len(top.closer)
        return i + 1

    def _cmd_char(self, top: _Frame, text: str, i: int, piece: int) -> int:  # noqa: PLR0911  (bash's syntax)
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == "'":
            self._word_char(top, None)
            self._push(_Frame("sq"))
            return i + 1
        if ch == '"':
            self._word_char(top, None)
            self._push(_Frame("dq"))
            return i + 1
        if ch == "#" and not top.in_word:
            self._push(_Frame("comment"))
            return i + 1
        if ch == "\n":
            self._end_word(top)
            top.cmd_start, top.command = True, ""
            if top.pending:
                # the bodies follow in order: the first heredoc's frame on top
                for doc in reversed(top.pending):
                    self._push(_Frame("heredoc", heredoc=doc))
                top.pending = []
            return i + 1
        if ch in " \t":
            self._end_word(top)
            return i + 1
        if ch in ";&|":
            self._end_word(top)
            if top.bracket is None:
                top.cmd_start, top.command = True, ""
            return i + 1
        if ch == "<" and nxt == "<" and text[i + 2 : i + 3] != "<":
            self._end_word(top)
            return self._heredoc_start(top, text, i + 2, piece)
        if ch == "<" and nxt == "<":
            self._end_word(top)
            return i + 3  # a here-string: the next word is an ordinary word
        if ch in "<>" and nxt == "(":
            self._end_word(top)
            self._push(_Frame("cmd", closer=")"))
            return i + 2
        if ch in "<>":
            self._end_word(top)
            return i + 1
        if ch == "(":
            if top.cmd_start and nxt == "(" and not top.in_word:
                self._push(_Frame("arith", closer="))"))
                return i + 2
            self._end_word(top)
            top.depth += 1
            top.cmd_start = True
            return i + 1
        if ch == ")":
            self._end_word(top)
            if top.depth:
                top.depth -= 1
            elif top.case_depth:
                pass  # a case pattern's end
            elif top.closer == ")":
                self._pop()
            top.cmd_start = True
            return i + 1
        if ch == "[" and top.in_word and top.word is not None and _NAME.fullmatch(top.word):
            # name[...]: an array subscript, evaluated as arithmetic
            self._push(_Frame("subscript"))
            top.word = None
            return i + 1
        self._word_char(top, ch)
        return i + 1

    def _heredoc_start(self, top: _Frame, text: str, i: int, piece: int) -> int:
        strip_tabs = text[i : i + 1] == "-"
        if strip_tabs:
            i += 1
        while i < len(text) and text[i] in " \t":
            i += 1
        start = i
        word: list[str] = []
        quoted = False
        quote = ""
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == quote:
                    quote = ""
                else:
                    word.append(ch)
            elif ch in "'\"":
                quote, quoted = ch, True
            elif ch == "\\" and i + 1 < len(text):
                quoted = True
                i += 1
                word.append(text[i])
            elif ch in " \t\n;&|<>()":
                break
            else:
                word.append(ch)
            i += 1
        if quote or (i == len(text)) or not word:
            # the delimiter runs into the next piece (or a value), or is missing
            self.open_delimiter = True
        doc = _Heredoc("".join(word), quoted, strip_tabs, (piece, start, i))
        top.pending.append(doc)
        top.cmd_start = False
        return i

    def _heredoc_char(self, top: _Frame, text: str, i: int) -> int:
        """A character of an unquoted heredoc's body (its expansions are handled before)."""
        ch = text[i]
        if ch == "\n":
            if top.line_plain and self._delimits(top):
                self._pop()
            else:
                top.line, top.line_plain = "", True
        else:
            top.line += ch
        return i + 1

    def _delimits(self, top: _Frame) -> bool:
        assert top.heredoc is not None
        line = top.line.lstrip("\t") if top.heredoc.strip_tabs else top.line
        return line == top.heredoc.delimiter

    # -- words and commands -------------------------------------------------------------

    def _enter_word(self, top: _Frame) -> None:
        if not top.in_word:
            top.in_word = True
            top.word = ""

    def _word_char(self, top: _Frame, ch: str | None) -> None:
        """A character of the current word (None: a quoted part, whose text is not tracked)."""
        if top.kind != "cmd":
            return
        self._enter_word(top)
        if ch is None:
            top.word = None
        elif top.word is not None:
            top.word += ch

    def _end_word(self, top: _Frame) -> None:
        if top.kind != "cmd" or not top.in_word:
            return
        word = top.word
        top.in_word = False
        top.word = ""
        if top.bracket is not None:
            if word == "]]":
                top.bracket = None
                top.cmd_start = False
            elif word in _ARITH_OPS:
                top.bracket.arith = True
            return
        if not top.cmd_start:
            return
        if word is None:
            top.cmd_start, top.command = False, ""
        elif word == "[[":
            top.bracket = _Bracket()
        elif word == "case":
            top.case_depth += 1
            top.cmd_start = False
        elif word == "esac":
            top.case_depth = max(0, top.case_depth - 1)
        elif word in _RESERVED or _ASSIGNMENT.match(word):
            pass  # the command is still to come
        else:
            top.cmd_start, top.command = False, word

    # -- the stack -------------------------------------------------------------------------

    def _push(self, frame: _Frame) -> None:
        if self.top.kind == "heredoc":
            self.top.line_plain = False
        self.stack.append(frame)

    def _pop(self) -> None:
        frame = self.stack.pop()
        if frame.kind == "heredoc" and frame.heredoc is not None and frame.heredoc.has_values and \
                frame.heredoc.quoted:  # fmt: skip
            self._unquote(frame.heredoc)
        if frame.kind == "cmd" and frame.closer:
            self.top.cmd_start = False

    def _unquote(self, doc: _Heredoc) -> None:
        """A quoted heredoc that holds values: unquoted, with its literal text escaped, so that
        bash expands the values' references and nothing else."""
        if not _SIMPLE_DELIMITER.fullmatch(doc.delimiter):
            raise ShellTemplateError(
                f"a value stands in the quoted heredoc ending {doc.delimiter!r}, whose delimiter cannot be "
                "written unquoted; use a plain delimiter such as EOF"
            )
        piece, start, end = doc.word_at
        self.edits.append(_Edit(piece, start, end, doc.delimiter))
        self.edits.extend(_Edit(piece, start, end, None) for piece, start, end in doc.body)


#: what an unquoted heredoc body would expand: escaped in a quoted one made unquoted
ESCAPE = re.compile(r"[\\$`]")
_OPENERS = {"dq": 'a "', "sq": "a '", "ansic": "a $'", "cmd": "a $( or `", "param": "a ${",
            "arith": "an arithmetic $((", "subscript": "a [", "comment": "a comment"}  # fmt: skip
