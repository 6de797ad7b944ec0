"""Evaluator for the subset of the Azure Service Bus SQL filter language the platform uses.

Subscriptions in :mod:`shared.messaging.topology` carry a filter expression that production hands to
Service Bus as a ``SqlRuleFilter``; the embedded bus (:mod:`shared.adapters.embedded.sqlite_bus`)
evaluates the same text with this module, so the two must agree on every expression the topology uses.

Supported (keywords are case-insensitive)::

    predicate  := predicate OR predicate | predicate AND predicate | NOT predicate | ( predicate )
                | expr {= | <> | != | < | > | <= | >=} expr
                | expr IS [NOT] NULL
                | expr [NOT] IN ( expr [, expr ...] )
                | expr [NOT] LIKE 'pattern' [ESCAPE 'c']
                | EXISTS ( property )
    expr       := 'string' | [+|-] number | TRUE | FALSE | NULL | property
    property   := [sys. | user.] name | [sys. | user.] [bracketed name]

* Properties without a scope, or with ``user.``, are application properties (names match exactly).
  ``sys.`` properties are the message's system properties, matched case-insensitively:
  ``sys.Label`` / ``sys.Subject``, ``sys.ContentType``, ``sys.CorrelationId``, ``sys.MessageId`` and
  ``sys.SessionId``. Naming any other system property is an error at compile time (Service Bus rejects
  it too); a missing *application* property is not an error, it evaluates to *unknown*.
* Three-valued logic: a comparison, ``IN`` or ``LIKE`` with an unknown (missing / ``NULL``) operand is
  unknown; ``NOT unknown`` is unknown; ``AND`` / ``OR`` follow Kleene logic; the filter matches only
  when the whole predicate is TRUE. Comparing values of different kinds (string vs number vs boolean)
  is also unknown rather than an error; numbers (integers and floats) compare with each other.
  Strings compare ordinally (case-sensitive); booleans support only ``=`` and ``<>``.
* ``LIKE``: ``%`` matches any run of characters, ``_`` exactly one; ``ESCAPE`` names a single
  character that makes the next ``%`` / ``_`` / escape character literal. Matching is case-sensitive.
* ``1=1`` is the TrueFilter and ``1=0`` the FalseFilter, as in Service Bus. A ``None`` expression
  (the ``$Default`` rule) matches every message.

Not supported (rejected with :class:`~shared.messaging.errors.InvalidFilter`, never silently
mis-evaluated): arithmetic operators, functions (``newid()``, ``property()``), SQL rule actions, and
``@parameters``.

The implementation is a hand-written tokenizer and recursive-descent parser that compiles the text to
a tree of closures once; no ``eval``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from shared.messaging.errors import InvalidFilter
from shared.messaging.ports import PropertyValue

__all__ = ["CompiledFilter", "SystemProps", "compile_filter"]


@dataclass(frozen=True, slots=True)
class SystemProps:
    """The broker-level properties a filter may reference with the ``sys.`` scope."""

    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    subject: str | None = None
    session_id: str | None = None


#: ``sys.<name>`` (lower-cased) -> attribute of :class:`SystemProps`.
_SYSTEM_PROPERTIES: Final[Mapping[str, str]] = {
    "label": "subject",
    "subject": "subject",
    "contenttype": "content_type",
    "correlationid": "correlation_id",
    "messageid": "message_id",
    "sessionid": "session_id",
}

_KEYWORDS: Final = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "EXISTS", "TRUE", "FALSE"}
)
_COMPARISONS: Final = frozenset({"=", "<>", "!=", "<", ">", "<=", ">="})

_Value = PropertyValue | None
_Truth = bool | None  # None is SQL "unknown"
_Props = Mapping[str, PropertyValue]
_Expr = Callable[[_Props, SystemProps], _Value]
_Pred = Callable[[_Props, SystemProps], _Truth]


# Tokenizer ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "kw", "ident", "string", "number", "op", "eof"
    text: str
    pos: int
    value: PropertyValue | None = None


_NUMBER_RE: Final = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORD_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS: Final = ("<>", "!=", "<=", ">=", "=", "<", ">", "(", ")", ",", ".", "+", "-")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            j, parts = i + 1, []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise InvalidFilter(f"unterminated string literal at position {i}")
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == "'":  # '' is an escaped quote
                    parts.append("'")
                    j = k + 2
                    continue
                break
            literal = "".join(parts)
            tokens.append(_Token("string", literal, i, literal))
            i = k + 1
            continue
        if ch == "[":
            k = i + 1
            name_parts = []
            while True:
                end = text.find("]", k)
                if end < 0:
                    raise InvalidFilter(f"unterminated bracketed identifier at position {i}")
                name_parts.append(text[k:end])
                if end + 1 < n and text[end + 1] == "]":  # ]] is an escaped bracket
                    name_parts.append("]")
                    k = end + 2
                    continue
                break
            name = "".join(name_parts)
            if not name:
                raise InvalidFilter(f"empty bracketed identifier at position {i}")
            tokens.append(_Token("ident", name, i))
            i = end + 1
            continue
        if ch.isdigit():
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            raw = m.group()
            if m.end() < n and (text[m.end()].isalnum() or text[m.end()] == "_"):
                raise InvalidFilter(f"malformed number at position {i}")
            number: PropertyValue = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Token("number", raw, i, number))
            i = m.end()
            continue
        if ch.isalpha() or ch == "_":
            m = _WORD_RE.match(text, i)
            assert m is not None
            word = m.group()
            kind = "kw" if word.upper() in _KEYWORDS else "ident"
            tokens.append(_Token(kind, word.upper() if kind == "kw" else word, i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Token("op", op, i))
                i += len(op)
                break
        else:
            if ch in "*/%":
                raise InvalidFilter(f"arithmetic operator {ch!r} at position {i} is not supported")
            if ch == "@":
                raise InvalidFilter(f"filter parameters ('@name') at position {i} are not supported")
            raise InvalidFilter(f"unexpected character {ch!r} at position {i}")
    tokens.append(_Token("eof", "", n))
    return tokens


# Evaluation helpers -----------------------------------------------------------------------------------


def _kind(value: PropertyValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _compare(op: str, left: _Value, right: _Value) -> _Truth:
    if left is None or right is None:
        return None
    kind = _kind(left)
    if kind != _kind(right):
        return None
    if op == "=":
        return left == right
    if op in ("<>", "!="):
        return left != right
    if kind == "bool":
        return None
    # Same kind and not bool: both numbers or both strings, so ordering is well defined.
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == ">":
        return left > right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def _not(value: _Truth) -> _Truth:
    return None if value is None else not value


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape is not None and ch == escape:
            if i + 1 >= len(pattern):
                raise InvalidFilter("LIKE pattern ends with the escape character")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


# Parser -----------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._i = 0

    def _peek(self, offset: int = 0) -> _Token:
        return self._tokens[min(self._i + offset, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        tok = self._tokens[self._i]
        if tok.kind != "eof":
            self._i += 1
        return tok

    def _is(self, kind: str, text: str | None = None, offset: int = 0) -> bool:
        tok = self._peek(offset)
        return tok.kind == kind and (text is None or tok.text == text)

    def _accept(self, kind: str, text: str | None = None) -> bool:
        if self._is(kind, text):
            self._next()
            return True
        return False

    def _expect(self, kind: str, text: str | None = None) -> _Token:
        if not self._is(kind, text):
            tok = self._peek()
            wanted = text or kind
            found = tok.text or "end of expression"
            raise InvalidFilter(f"expected {wanted!r} at position {tok.pos}, found {found!r}")
        return self._next()

    def parse(self) -> _Pred:
        pred = self._or()
        if not self._is("eof"):
            tok = self._peek()
            raise InvalidFilter(f"unexpected {tok.text!r} at position {tok.pos}")
        return pred

    def _or(self) -> _Pred:
        left = self._and()
        while self._accept("kw", "OR"):
            right = self._and()
            left = _or_node(left, right)
        return left

    def _and(self) -> _Pred:
        left = self._not()
        while self._accept("kw", "AND"):
            right = self._not()
            left = _and_node(left, right)
        return left

    def _not(self) -> _Pred:
        if self._accept("kw", "NOT"):
            inner = self._not()
            return lambda p, s: _not(inner(p, s))
        return self._primary()

    def _primary(self) -> _Pred:
        if self._accept("kw", "EXISTS"):
            self._expect("op", "(")
            exists = self._exists()
            self._expect("op", ")")
            return exists
        if self._is("op", "("):
            self._next()
            inner = self._or()
            self._expect("op", ")")
            return inner
        left = self._expr()
        tok = self._peek()
        if tok.kind == "op" and tok.text in _COMPARISONS:
            self._next()
            right = self._expr()
            op = tok.text
            return lambda p, s: _compare(op, left(p, s), right(p, s))
        if self._accept("kw", "IS"):
            negate = self._accept("kw", "NOT")
            self._expect("kw", "NULL")
            if negate:
                return lambda p, s: left(p, s) is not None
            return lambda p, s: left(p, s) is None
        negate = self._accept("kw", "NOT")
        if self._accept("kw", "IN"):
            pred = self._in(left)
        elif self._accept("kw", "LIKE"):
            pred = self._like(left)
        else:
            tok = self._peek()
            if tok.kind == "op" and tok.text in ("+", "-"):
                raise InvalidFilter(
                    f"arithmetic operator {tok.text!r} at position {tok.pos} is not supported"
                )
            found = tok.text or "end of expression"
            raise InvalidFilter(f"expected a comparison at position {tok.pos}, found {found!r}")
        if negate:
            return lambda p, s: _not(pred(p, s))
        return pred

    def _in(self, left: _Expr) -> _Pred:
        self._expect("op", "(")
        items = [self._expr()]
        while self._accept("op", ","):
            items.append(self._expr())
        self._expect("op", ")")

        def evaluate(p: _Props, s: SystemProps) -> _Truth:
            value = left(p, s)
            if value is None:
                return None
            unknown = False
            for item in items:
                result = _compare("=", value, item(p, s))
                if result:
                    return True
                unknown = unknown or result is None
            return None if unknown else False

        return evaluate

    def _like(self, left: _Expr) -> _Pred:
        pattern = self._expect("string")
        escape: str | None = None
        if self._accept("kw", "ESCAPE"):
            esc = self._expect("string")
            if len(esc.text) != 1:
                raise InvalidFilter(f"ESCAPE at position {esc.pos} must be a single character")
            escape = esc.text
        regex = _like_regex(pattern.text, escape)

        def evaluate(p: _Props, s: SystemProps) -> _Truth:
            value = left(p, s)
            if not isinstance(value, str):
                return None
            return regex.fullmatch(value) is not None

        return evaluate

    def _expr(self) -> _Expr:
        tok = self._peek()
        if tok.kind == "op" and tok.text in ("+", "-"):
            self._next()
            num = self._expect("number")
            assert isinstance(num.value, int | float)
            signed = -num.value if tok.text == "-" else num.value
            return lambda p, s: signed
        if tok.kind in ("string", "number"):
            self._next()
            constant = tok.value
            return lambda p, s: constant
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE"):
            self._next()
            flag = tok.text == "TRUE"
            return lambda p, s: flag
        if tok.kind == "kw" and tok.text == "NULL":
            self._next()
            return lambda p, s: None
        if tok.kind == "ident":
            return self._property()
        found = tok.text or "end of expression"
        raise InvalidFilter(f"expected a value or property at position {tok.pos}, found {found!r}")

    def _property_ref(self) -> tuple[str, str]:
        """Parse ``[scope.]name``; returns ``("sys", attribute)`` or ``("user", name)``."""
        first = self._expect("ident")
        if first.text.lower() in ("sys", "user") and self._is("op", "."):
            self._next()
            scope = first.text.lower()
            name = self._expect("ident").text
        else:
            scope, name = "user", first.text
        if scope == "sys":
            attr = _SYSTEM_PROPERTIES.get(name.lower())
            if attr is None:
                raise InvalidFilter(f"unknown or unsupported system property sys.{name}")
            return scope, attr
        return scope, name

    def _property(self) -> _Expr:
        scope, name = self._property_ref()
        if scope == "sys":
            return lambda p, s: _system_value(s, name)
        return lambda p, s: p.get(name)

    def _exists(self) -> _Pred:
        scope, name = self._property_ref()
        if scope == "sys":
            return lambda p, s: _system_value(s, name) is not None
        return lambda p, s: name in p


def _system_value(system: SystemProps, attr: str) -> str | None:
    value: str | None = getattr(system, attr)
    return value


def _and_node(left: _Pred, right: _Pred) -> _Pred:
    def evaluate(p: _Props, s: SystemProps) -> _Truth:
        a = left(p, s)
        if a is False:
            return False
        b = right(p, s)
        if b is False:
            return False
        return None if a is None or b is None else True

    return evaluate


def _or_node(left: _Pred, right: _Pred) -> _Pred:
    def evaluate(p: _Props, s: SystemProps) -> _Truth:
        a = left(p, s)
        if a is True:
            return True
        b = right(p, s)
        if b is True:
            return True
        return None if a is None or b is None else False

    return evaluate


# Public API -------------------------------------------------------------------------------------------


class CompiledFilter:
    """A parsed filter; call it with a message's application and system properties."""

    __slots__ = ("_predicate", "expression")

    def __init__(self, expression: str | None, predicate: _Pred | None) -> None:
        self.expression = expression
        self._predicate = predicate

    def __call__(self, properties: Mapping[str, PropertyValue], system: SystemProps | None = None) -> bool:
        """True when the message matches (unknown counts as no match)."""
        if self._predicate is None:
            return True
        return self._predicate(properties, system if system is not None else SystemProps()) is True

    def __repr__(self) -> str:
        return f"CompiledFilter({self.expression!r})"


def compile_filter(expr: str | None) -> CompiledFilter:
    """Compile a Service Bus SQL filter expression; ``None`` matches every message.

    Raises :class:`~shared.messaging.errors.InvalidFilter` when the text is not in the supported subset
    (an empty or blank string is invalid, as in Service Bus: use ``None`` or ``1=1`` for "everything").
    """
    if expr is None:
        return CompiledFilter(None, None)
    if not expr.strip():
        raise InvalidFilter("empty filter expression")
    return CompiledFilter(expr, _Parser(expr).parse())
