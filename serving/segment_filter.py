"""Segment filters (客群筛选条件): a small language, parsed, checked against known fields, evaluated on a frame.

A filter such as::

    tier == "高端" and demo_occupation in ("civil_servant", "事业单位") and score_consumer >= 0.2

is read by a tokenizer and a recursive-descent parser into a tree (:func:`parse`), never handed
to ``eval`` or to SQL. :func:`check` then resolves every field against the known fields
(:class:`Field`, built by ``serving/segments.py: segment_fields``) and every value against its
field: a categorical field takes its enum names or their Chinese labels (or the integer codes),
mapped to the codes the feature tables store. :func:`evaluate` computes the selection as
vectorised masks over a pandas frame. Every mistake is a :class:`nbp.errors.SegmentError`
naming the field or value, its position (1-based character) and the nearest valid names.

Grammar (keywords in any case)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | condition
    condition  := FIELD ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                | FIELD ["not"] "in" list
                | FIELD "is" ["not"] "null"
    list       := "(" value ("," value)* [","] ")"  |  "[" ... "]"
    value      := ["-"] NUMBER | STRING              (STRING in '...', "...", “...” or ‘...’)

Missing values follow SQL: a comparison with a missing value is neither true nor false
(``!=`` and ``not in`` do not select it either), ``not`` keeps it unknown, and only rows whose
whole filter is true are selected; ``is null`` finds the missing ones.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from nbp.errors import SegmentError

MAX_CHARS = 2_000  # longest filter accepted
MAX_DEPTH = 32  # nesting of parentheses and "not"
MAX_ITEMS = 1_000  # values in one list
SHOWN = 40  # characters of a user's token an error message repeats

KEYWORDS = ("and", "or", "not", "in", "is", "null")
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
OPERATORS = (*COMPARISONS, "in", "not in", "is null", "is not null")
# full-width punctuation a Chinese input method types, read as its ASCII form
_FULL_WIDTH = {"（": "(", "）": ")", "，": ",", "【": "[", "】": "]"}
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’"}

_TOKEN = re.compile(
    r"""
    (?P<ws>[\s\u3000]+)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<>|<|>|=)
  | (?P<punct>[()\[\],\-（），【】])
    """,
    re.VERBOSE,
)

Kind = Literal["number", "category", "text"]


def _shown(text: str) -> str:
    """A user's token as a message repeats it: at most :data:`SHOWN` characters, controls as "?"."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text[: SHOWN + 1])
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def near_names(word: str, names: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` names close to ``word`` (difflib), case-insensitively."""
    lower = {name.lower(): name for name in names}
    return [lower[m] for m in difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=0.6)]


# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is name, keyword, number, string, op, punct or end; ``pos`` is 1-based."""

    kind: str
    text: str
    pos: int
    value: float | str | None = None


def tokenize(text: str) -> list[Token]:
    """The tokens of a filter, ending with an ``end`` token.

    Raises:
        SegmentError: an empty or too long filter, an unterminated string, or a character
            the language does not use (``;``, ``*``, a backslash ...).
    """
    if not isinstance(text, str) or not text.strip():
        raise SegmentError('segment filter is empty: write conditions such as tier == "高端" and score_consumer >= 0.2')
    if len(text) > MAX_CHARS:
        raise SegmentError(f"segment filter is {len(text):,} characters long; at most {MAX_CHARS:,} are accepted")
    out: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _QUOTES:
            end = text.find(_QUOTES[ch], i + 1)
            if end < 0:
                raise SegmentError(f"segment filter: string starting at character {i + 1} has no closing {_QUOTES[ch]}")
            out.append(Token("string", text[i : end + 1], i + 1, text[i + 1 : end]))
            i = end + 1
            continue
        m = _TOKEN.match(text, i)
        if m is None:
            raise SegmentError(
                f"segment filter: unexpected character {_shown(ch)!r} at character {i + 1}; a filter holds only "
                f"fields, comparisons (== != < <= > >= in, not in, is null), and/or/not, parentheses, numbers and "
                f"quoted text"
            )
        kind, tok = m.lastgroup or "", m.group(0)
        if kind == "op" and tok in ("=", "<>"):
            want = "==" if tok == "=" else "!="
            raise SegmentError(f"segment filter: {tok!r} at character {i + 1}: write {want!r}")
        if kind == "name" and tok.lower() in KEYWORDS:
            out.append(Token("keyword", tok.lower(), i + 1))
        elif kind == "number":
            out.append(Token("number", tok, i + 1, float(tok)))
        elif kind == "punct":
            out.append(Token("punct", _FULL_WIDTH.get(tok, tok), i + 1))
        elif kind != "ws":
            out.append(Token(kind, tok, i + 1))
        i = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


# ----------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Value:
    """A literal of the filter: a number or a text, where it was written; ``code`` once checked."""

    raw: float | str
    pos: int
    code: float | str | None = None


@dataclass(frozen=True)
class Condition:
    """``field op value(s)``; ``op`` is one of :data:`OPERATORS`."""

    field: str
    op: str
    values: tuple[Value, ...]
    pos: int


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Condition | And | Or | Not


class _Parser:
    """Recursive descent over :func:`tokenize`'s tokens (module docstring's grammar)."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def _is(self, kind: str, text: str | None = None) -> bool:
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def _fail(self, want: str) -> SegmentError:
        t = self.tok
        got = "the end of the filter" if t.kind == "end" else repr(_shown(t.text))
        return SegmentError(f"segment filter: {want} expected at character {t.pos}, found {got}")

    def parse(self) -> Node:
        node = self._or()
        if not self._is("end"):
            raise self._fail("'and', 'or' or the end of the filter")
        return node

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SegmentError(f"segment filter: nested more than {MAX_DEPTH} deep at character {self.tok.pos}")

    def _or(self) -> Node:
        return self._chain("or", self._and, Or)

    def _and(self) -> Node:
        return self._chain("and", self._not, And)

    def _chain(self, word: str, operand: Callable[[], Node], join: type[And] | type[Or]) -> Node:
        """``operand (word operand)*``: one operand alone, else the operands joined."""
        parts = [operand()]
        while self._is("keyword", word):
            self._take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else join(tuple(parts))

    def _not(self) -> Node:
        if self._is("keyword", "not"):
            self._take()
            self._nest()
            node: Node = Not(self._not())
            self.depth -= 1
            return node
        if self._is("punct", "("):
            self._take()
            self._nest()
            node = self._or()
            if not self._is("punct", ")"):
                raise self._fail("')'")
            self._take()
            self.depth -= 1
            return node
        return self._condition()

    def _condition(self) -> Condition:
        if not self._is("name"):
            if self._is("string") or self._is("number"):
                raise self._fail("a field name (the field comes first: score_consumer >= 0.2)")
            raise self._fail("a field name")
        name = self._take()
        t = self.tok
        if t.kind == "op":
            self._take()
            return Condition(name.text, t.text, (self._value(),), name.pos)
        if t.kind == "keyword" and t.text == "in":
            self._take()
            return Condition(name.text, "in", self._list(), name.pos)
        if t.kind == "keyword" and t.text == "not":
            self._take()
            if not self._is("keyword", "in"):
                raise self._fail("'in' (after 'not')")
            self._take()
            return Condition(name.text, "not in", self._list(), name.pos)
        if t.kind == "keyword" and t.text == "is":
            self._take()
            negated = self._is("keyword", "not")
            if negated:
                self._take()
            if not self._is("keyword", "null"):
                raise self._fail("'null'")
            self._take()
            return Condition(name.text, "is not null" if negated else "is null", (), name.pos)
        raise self._fail(f"a comparison after {_shown(name.text)!r} (== != < <= > >= in, not in, is null)")

    def _value(self) -> Value:
        t = self.tok
        if t.kind == "punct" and t.text == "-":
            self._take()
            if not self._is("number"):
                raise self._fail("a number after '-'")
            n = self._take()
            return Value(-float(n.text), t.pos)
        if t.kind == "number":
            self._take()
            return Value(float(t.text), t.pos)
        if t.kind == "string":
            self._take()
            return Value(str(t.value), t.pos)
        if t.kind == "name":
            raise SegmentError(
                f"segment filter: a value expected at character {t.pos}, found {_shown(t.text)!r}: "
                f'put text in quotes, e.g. "{_shown(t.text)}"'
            )
        raise self._fail("a value (a number or quoted text)")

    def _list(self) -> tuple[Value, ...]:
        if not (self._is("punct", "(") or self._is("punct", "[")):
            raise self._fail('a list in parentheses, e.g. ("farmer", "merchant")')
        close = ")" if self._take().text == "(" else "]"
        items: list[Value] = []
        while True:
            if self._is("punct", close) and items:
                break
            items.append(self._value())
            if len(items) > MAX_ITEMS:
                raise SegmentError(f"segment filter: a list of more than {MAX_ITEMS:,} values")
            if self._is("punct", ","):
                self._take()
                continue
            if not self._is("punct", close):
                raise self._fail(f"',' or '{close}'")
        self._take()
        return tuple(items)


def parse(text: str) -> Node:
    """The tree of a filter (syntax only; :func:`check` resolves fields and values).

    Raises:
        SegmentError: the text is not a filter; the message names the position.
    """
    return _Parser(text).parse()


def conditions(node: Node) -> Iterator[Condition]:
    """Every condition of a tree, left to right."""
    if isinstance(node, Condition):
        yield node
    elif isinstance(node, Not):
        yield from conditions(node.part)
    else:
        for p in node.parts:
            yield from conditions(p)


def field_names(node: Node) -> list[str]:
    """The fields a tree names, each once, in order of appearance."""
    return list(dict.fromkeys(c.field for c in conditions(node)))


# ----------------------------------------------------------------------------- fields and values


@dataclass(frozen=True)
class Field:
    """A field a filter may name.

    Attributes:
        name: the name written in a filter.
        kind: ``number``, ``category`` (integer codes with names) or ``text`` (ids).
        column: the frame's column holding it.
        zh: description for staff (the workbook's header).
        en: description in English.
        labels: a category's names in code order (code = position).
        labels_zh: the same in Chinese (the workbook shows these).
        values: a text field's known values (None: any value is accepted).
        group: where it comes from (``feature``, ``tier``, ``score``, ``customer``), for the docs.
    """

    name: str
    kind: Kind
    column: str
    zh: str
    en: str
    labels: tuple[str, ...] = ()
    labels_zh: tuple[str, ...] = ()
    values: frozenset[str] | None = field(default=None, compare=False)
    group: str = "feature"

    def code_of(self, raw: float | str) -> int | None:
        """A category's code for a name, a Chinese label or an integer code; None if none matches."""
        if isinstance(raw, float):
            return int(raw) if raw.is_integer() and 0 <= raw < len(self.labels) else None
        for names in (self.labels, self.labels_zh):
            if raw in names:
                return names.index(raw)
        folded = [n.lower() for n in self.labels]
        return folded.index(raw.lower()) if raw.lower() in folded else None

    def choices(self) -> str:
        """A category's names as a message lists them: ``farmer/农户, merchant/个体工商户, ...``."""
        return ", ".join(
            f"{a}/{b}" if a != b else a for a, b in zip(self.labels, self.labels_zh or self.labels, strict=True)
        )


def _bad_value(f: Field, v: Value, why: str) -> SegmentError:
    return SegmentError(f"segment filter: {f.name}: {why} (value at character {v.pos})")


def _resolve(f: Field, op: str, v: Value) -> Value:
    """``v`` with its code for ``f``.

    Raises:
        SegmentError: the field does not take the value (why, and the values it takes).
    """
    raw = v.raw
    shown = f'"{_shown(raw)}"' if isinstance(raw, str) else f"{raw:g}"
    if f.kind == "number":
        if isinstance(raw, str):
            raise _bad_value(f, v, f"takes a number, not text {shown}")
        return replace(v, code=float(raw))
    if f.kind == "text":
        if op in ("<", "<=", ">", ">="):
            raise _bad_value(f, v, f"is text: compare it with ==, !=, in or not in, not {op}")
        if not isinstance(raw, str):
            raise _bad_value(f, v, f'is text: put the value in quotes, e.g. {f.name} == "{shown}"')
        if f.values is not None and raw not in f.values:
            near = near_names(raw, sorted(f.values))
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise _bad_value(f, v, f"no customer at this date has {f.name} {shown}{hint}")
        return replace(v, code=raw)
    code = f.code_of(raw)
    if code is None:
        near = near_names(raw, f.labels + f.labels_zh) if isinstance(raw, str) else []
        hint = f"did you mean {', '.join(repr(n) for n in near)}? " if near else ""
        raise _bad_value(f, v, f"unknown value {shown}; {hint}values: {f.choices()}")
    return replace(v, code=float(code))


def check(node: Node, fields: Mapping[str, Field]) -> Node:
    """``node`` with every field known and every value resolved to what the frame holds.

    Args:
        node: a tree from :func:`parse`.
        fields: the known fields by name.

    Returns:
        The same tree whose values carry their ``code`` (a float for numbers and categories,
        the text for text fields).

    Raises:
        SegmentError: an unknown field (with the nearest names) or a value its field does not take.
    """
    if isinstance(node, Condition):
        f = fields.get(node.field)
        if f is None:
            near = near_names(node.field, list(fields))
            hint = f"did you mean {', '.join(near)}? " if near else ""
            raise SegmentError(
                f"segment filter: unknown field {_shown(node.field)!r} at character {node.pos}; {hint}"
                f"the fields are listed by `nbp segment fields` and in docs/segments.md"
            )
        return replace(node, values=tuple(_resolve(f, node.op, v) for v in node.values))
    if isinstance(node, Not):
        return Not(check(node.part, fields))
    return type(node)(tuple(check(p, fields) for p in node.parts))


# ----------------------------------------------------------------------------- evaluation


def _truth(c: Condition, f: Field, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(true, false) masks of one condition; rows in neither are unknown (a missing value)."""
    col = frame[f.column]
    known = col.notna().to_numpy(bool)
    if c.op in ("is null", "is not null"):
        return (~known, known) if c.op == "is null" else (known, ~known)
    codes = [v.code for v in c.values]
    if f.kind == "text":
        s = col.astype(object)
        if c.op in ("in", "not in"):
            hit = s.isin(codes).to_numpy(bool)
        else:
            hit = (s == codes[0]).to_numpy(bool)
            hit = hit if c.op == "==" else ~hit
    else:
        x = pd.to_numeric(col, errors="coerce").to_numpy(float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            if c.op in ("in", "not in"):
                hit = np.isin(x, np.asarray(codes, float))
            else:
                hit = {
                    "==": np.equal,
                    "!=": np.not_equal,
                    "<": np.less,
                    "<=": np.less_equal,
                    ">": np.greater,
                    ">=": np.greater_equal,
                }[c.op](x, float(codes[0]))
    if c.op == "not in":
        hit = ~hit
    return known & hit, known & ~hit


def _masks(node: Node, fields: Mapping[str, Field], frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(node, Condition):
        return _truth(node, fields[node.field], frame)
    if isinstance(node, Not):
        t, f = _masks(node.part, fields, frame)
        return f, t
    parts = [_masks(p, fields, frame) for p in node.parts]
    if isinstance(node, And):
        return np.logical_and.reduce([t for t, _ in parts]), np.logical_or.reduce([f for _, f in parts])
    return np.logical_or.reduce([t for t, _ in parts]), np.logical_and.reduce([f for _, f in parts])


def evaluate(node: Node, fields: Mapping[str, Field], frame: pd.DataFrame) -> np.ndarray:
    """The rows of ``frame`` the (checked) filter selects: a boolean mask, True where the filter is true.

    Args:
        node: a tree from :func:`check`.
        fields: the known fields (their ``column`` names the frame's columns).
        frame: one row per customer, holding every column the tree's fields name.
    """
    return _masks(node, fields, frame)[0]


@dataclass(frozen=True)
class Filter:
    """A parsed and checked filter: its text, its tree and the fields it names."""

    text: str
    tree: Node
    fields: tuple[str, ...]

    def select(self, known: Mapping[str, Field], frame: pd.DataFrame) -> np.ndarray:
        """The mask of the rows of ``frame`` the filter selects (:func:`evaluate`)."""
        return evaluate(self.tree, known, frame)


def compile_filter(text: str, fields: Mapping[str, Field]) -> Filter:
    """Parse and check a filter (:func:`parse`, :func:`check`).

    Raises:
        SegmentError: as :func:`parse` and :func:`check`.
    """
    tree = check(parse(text), fields)
    return Filter(text, tree, tuple(field_names(tree)))
