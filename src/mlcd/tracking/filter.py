"""The run filter language, parsed into SQLAlchemy expressions (never filtered in Python).

::

    metrics.roc_auc > 0.9 and params.model = 'gbm' and tags.branch = 'main'
    (status = 'finished' or status = 'running') and not params.lr in (0.1, 0.3)
    metrics.`val/loss` < 0.2 and params.layers is not null and name like 'sweep-%'

* Fields: ``metrics.KEY`` (latest value of a metric), ``params.KEY``, ``tags.KEY``, and run
  attributes, bare or as ``attributes.NAME``: ``id``, ``name``, ``kind``, ``status``,
  ``parent_id``, ``user``, ``git_commit``, ``git_dirty``, ``started_at``, ``ended_at``,
  ``duration``. ``metric.``/``param.``/``tag.``/``attribute.``/``run.`` are accepted too. A key
  with other characters goes in backquotes or double quotes: ``metrics."val loss"``.
* Operators: ``= == != <> < <= > >=``, ``in (...)``, ``not in (...)``, ``like``/``not like``
  (``%`` any run of characters, ``_`` one; case-insensitive on every database),
  ``is null``/``is not null``; ``and``, ``or``, ``not`` and parentheses. Keywords are
  case-insensitive.
* Values: numbers, strings in single or double quotes (``''`` or ``\\'`` escapes a quote),
  ``true``/``false``. ``started_at``/``ended_at`` also take a date, ``'2024-05-01'`` (UTC).
* Missing keys: a comparison on a key a run does not have is false, ``!=`` included; ``not``
  negates the whole comparison, so ``not metrics.x > 1`` matches runs without ``x``. Use
  ``metrics.x is null`` to find runs without a metric.
* Types: metrics compare as numbers; params compare as numbers when the value is a number
  (``params.lr = 0.1`` matches ``"0.1"`` and ``"1e-1"``) and as text when it is a string;
  tags compare as text (a number is compared with its text: ``tags.epoch = 5``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlcd.errors import FilterError

# ---------------------------------------------------------------------- tokens
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "like", "true", "false", "asc", "desc"}
_NAMESPACES = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
#: attribute -> its type: "text", "number", "time" (a number or a date) or "bool".
ATTRIBUTES = {
    "id": "text",
    "name": "text",
    "kind": "text",
    "status": "text",
    "parent_id": "text",
    "user": "text",
    "git_commit": "text",
    "git_dirty": "bool",
    "started_at": "time",
    "ended_at": "time",
    "duration": "number",
}
_OPERATORS = ("<=", ">=", "!=", "<>", "==", "=", "<", ">")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./:@]*")


@dataclass(frozen=True)
class Token:
    """A lexical token with its 0-based position in the expression."""

    kind: str  # word | number | string | quoted | op | ( | ) | , | end
    text: str
    value: Any
    pos: int


def tokenize(expression: str) -> list[Token]:
    """Split an expression into tokens.

    Raises:
        FilterError: an unterminated string or a character that starts no token.
    """
    tokens: list[Token] = []
    i, n = 0, len(expression)
    while i < n:
        char = expression[i]
        if char.isspace():
            i += 1
        elif char in "(),":
            tokens.append(Token(char, char, char, i))
            i += 1
        elif char in "'\"`":
            text, end = _read_quoted(expression, i)
            kind = "quoted" if char == "`" else "string"
            tokens.append(Token(kind, expression[i:end], text, i))
            i = end
        elif op := next((o for o in _OPERATORS if expression.startswith(o, i)), None):
            tokens.append(Token("op", op, "=" if op == "==" else "!=" if op == "<>" else op, i))
            i += len(op)
        elif (match := _NUMBER.match(expression, i)) and not _WORD.match(expression, i):
            end = match.end()
            if end < n and (expression[end].isalpha() or expression[end] == "_"):
                raise FilterError(
                    f"'{expression[i : end + 1]}…' is neither a number nor a name",
                    expression=expression,
                    position=i,
                )
            text = match.group()
            number = float(text)
            value: Any = int(text) if re.fullmatch(r"[+-]?\d+", text) else number
            tokens.append(Token("number", text, value, i))
            i = end
        elif match := _WORD.match(expression, i):
            end = match.end()
            text = match.group()
            if text.endswith(".") and end < n and expression[end] in '`"':
                # metrics."my key": a namespace followed by a quoted key
                key, quoted_end = _read_quoted(expression, end)
                tokens.append(Token("field", expression[i:quoted_end], (text[:-1], key), i))
                i = quoted_end
                continue
            tokens.append(Token("word", text, text, i))
            i = end
        else:
            raise FilterError(
                f"unexpected character {char!r}",
                expression=expression,
                position=i,
            )
    tokens.append(Token("end", "", None, n))
    return tokens


def _read_quoted(expression: str, start: int) -> tuple[str, int]:
    quote = expression[start]
    out: list[str] = []
    i = start + 1
    while i < len(expression):
        char = expression[i]
        if char == "\\" and i + 1 < len(expression) and quote != "`":
            out.append(expression[i + 1])
            i += 2
        elif char == quote:
            if expression.startswith(quote * 2, i):  # '' inside '...' is one quote
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    closing = {"`": "backquote"}.get(quote, "quote")
    raise FilterError(
        f"unterminated string: add the closing {closing} {quote}",
        expression=expression,
        position=start,
    )


# ---------------------------------------------------------------------- syntax tree
@dataclass(frozen=True)
class Field:
    """A reference to a metric, param, tag or run attribute."""

    namespace: str  # metrics | params | tags | attributes
    key: str
    pos: int

    def __str__(self) -> str:
        return self.key if self.namespace == "attributes" else f"{self.namespace}.{self.key}"


@dataclass(frozen=True)
class Compare:
    """``field OP value``."""

    field: Field
    op: str
    value: Any
    pos: int


@dataclass(frozen=True)
class InList:
    """``field [not] in (v, ...)``."""

    field: Field
    values: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    """``field [not] like 'pattern'``."""

    field: Field
    pattern: str
    negated: bool


@dataclass(frozen=True)
class IsNull:
    """``field is [not] null``: whether the run lacks the key."""

    field: Field
    negated: bool


@dataclass(frozen=True)
class BoolOp:
    """``and``/``or`` of several conditions."""

    op: str
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """``not condition``."""

    item: Node


Node = Compare | InList | Like | IsNull | BoolOp | Not


@dataclass(frozen=True)
class OrderKey:
    """One ``field [asc|desc]`` of an ordering."""

    field: Field
    descending: bool


# ---------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = tokenize(expression)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def error(self, message: str, token: Token | None = None) -> FilterError:
        where = token or self.token
        return FilterError(message, expression=self.expression, position=where.pos)

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def is_word(self, *words: str) -> bool:
        return self.token.kind == "word" and self.token.text.lower() in words

    def describe(self, token: Token) -> str:
        return "the end of the filter" if token.kind == "end" else f"'{token.text}'"

    # expression := or
    def parse(self) -> Node:
        node = self.parse_or()
        if self.token.kind != "end":
            if self.token.kind == ")":
                raise self.error("unbalanced ')': there is no '(' to close")
            raise self.error(
                f"expected 'and', 'or' or the end of the filter, found {self.describe(self.token)}"
            )
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.is_word("or"):
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.is_word("and"):
            self.advance()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def parse_not(self) -> Node:
        if self.is_word("not"):
            self.advance()
            return Not(self.parse_not())
        if self.token.kind == "(":
            opening = self.advance()
            node = self.parse_or()
            if self.token.kind != ")":
                raise self.error(
                    f"expected ')' to close the '(' at position {opening.pos}, "
                    f"found {self.describe(self.token)}"
                )
            self.advance()
            return node
        return self.parse_condition()

    def parse_field(self) -> Field:
        token = self.token
        if token.kind == "field":
            self.advance()
            prefix, key = token.value
            return self.make_field(prefix, key, token)
        if token.kind == "quoted":
            self.advance()
            return self.make_field(None, token.value, token)
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            raise self.error(
                f"expected a field such as metrics.NAME, params.NAME, tags.NAME or status, "
                f"found {self.describe(token)}"
            )
        self.advance()
        prefix, dot, key = token.text.partition(".")
        if not dot:
            return self.make_field(None, token.text, token)
        return self.make_field(prefix, key, token)

    def make_field(self, prefix: str | None, key: str, token: Token) -> Field:
        if prefix is None:
            namespace = "attributes"
        else:
            namespace = _NAMESPACES.get(prefix.lower(), "")
            if not namespace:
                close = difflib.get_close_matches(prefix.lower(), _NAMESPACES, n=1)
                hint = f"; did you mean '{close[0]}.{key}'?" if close else ""
                raise self.error(
                    f"unknown field prefix '{prefix}.': use metrics., params., tags. or "
                    f"attributes.{hint}",
                    token,
                )
        if not key:
            raise self.error(f"'{prefix}.' needs a key after the dot", token)
        if namespace == "attributes" and key not in ATTRIBUTES:
            close = difflib.get_close_matches(key, ATTRIBUTES, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "metrics, params and tags need a prefix (metrics.NAME); attributes are "
                + ", ".join(ATTRIBUTES)
            )
            raise self.error(f"unknown attribute '{key}': {hint}", token)
        return Field(namespace, key, token.pos)

    def parse_value(self) -> tuple[Any, Token]:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return token.value, token
        if self.is_word("true", "false"):
            self.advance()
            return token.text.lower() == "true", token
        if self.is_word("null"):
            raise self.error("compare with null using 'is null' or 'is not null'")
        if token.kind == "word" and token.text.lower() not in _KEYWORDS:
            raise self.error(f"text values need quotes: write '{token.text}'")
        raise self.error(
            f"expected a value (a number like 0.9, a quoted string like 'gbm', true or "
            f"false), found {self.describe(token)}"
        )

    def parse_condition(self) -> Node:
        field = self.parse_field()
        token = self.token
        if token.kind == "op":
            self.advance()
            value, value_token = self.parse_value()
            return self.check_compare(Compare(field, token.value, value, value_token.pos))
        negated = False
        if self.is_word("is"):
            self.advance()
            if self.is_word("not"):
                self.advance()
                negated = True
            if not self.is_word("null"):
                raise self.error(f"expected 'null' after 'is', found {self.describe(self.token)}")
            self.advance()
            return IsNull(field, negated)
        if self.is_word("not"):
            self.advance()
            negated = True
            if not self.is_word("in", "like"):
                raise self.error(
                    f"expected 'in' or 'like' after 'not', found {self.describe(self.token)}"
                )
        if self.is_word("in"):
            self.advance()
            return self.parse_in(field, negated)
        if self.is_word("like"):
            self.advance()
            pattern, pattern_token = self.parse_value()
            if not isinstance(pattern, str):
                raise self.error("'like' needs a quoted pattern such as 'sweep-%'", pattern_token)
            if field.namespace == "metrics" or ATTRIBUTES.get(field.key, "text") != "text":
                raise self.error(f"'like' works on text; {field} is a number", token)
            return Like(field, pattern, negated)
        raise self.error(
            f"expected an operator (=, !=, <, <=, >, >=, in, like, is null) after '{field}', "
            f"found {self.describe(token)}"
        )

    def parse_in(self, field: Field, negated: bool) -> Node:
        if self.token.kind != "(":
            raise self.error(f"expected '(' after 'in', found {self.describe(self.token)}")
        self.advance()
        values = []
        while True:
            value, value_token = self.parse_value()
            self.check_compare(Compare(field, "=", value, value_token.pos))
            values.append(value)
            if self.token.kind == ",":
                self.advance()
                continue
            if self.token.kind == ")":
                self.advance()
                return InList(field, tuple(values), negated)
            raise self.error(f"expected ',' or ')' in the list, found {self.describe(self.token)}")

    def check_compare(self, node: Compare) -> Compare:
        field, value, op = node.field, node.value, node.op
        token = self.token_at(node.pos)
        is_bool = isinstance(value, bool)
        is_number = isinstance(value, int | float) and not is_bool
        kind = ATTRIBUTES[field.key] if field.namespace == "attributes" else field.namespace
        if kind == "metrics" and not is_number:
            raise self.error(f"{field} is a number: compare it with a number, not {value!r}", token)
        if kind == "tags" and not isinstance(value, str) and op not in ("=", "!="):
            raise self.error(
                f"tags are text: use = or != with {field}, or quote the value to compare text",
                token,
            )
        if kind == "number" and not is_number:
            raise self.error(f"{field} is a number of seconds: compare it with a number", token)
        if kind == "time" and not is_number:
            if not isinstance(value, str):
                raise self.error(f"{field} is a time: compare it with a date or epoch seconds")
            return Compare(field, op, _parse_time(value, self, node.pos), node.pos)
        if kind == "bool" and (not is_bool or op not in ("=", "!=")):
            raise self.error(f"{field} is true or false: use = true or = false", token)
        if kind == "text" and not isinstance(value, str):
            raise self.error(f"{field} is text: quote the value ('{value}')", token)
        return node

    def token_at(self, pos: int) -> Token:
        return next((t for t in self.tokens if t.pos == pos), self.token)

    def parse_order(self) -> list[OrderKey]:
        keys = []
        while True:
            field = self.parse_field()
            descending = False
            if self.is_word("asc", "desc"):
                descending = self.advance().text.lower() == "desc"
            keys.append(OrderKey(field, descending))
            if self.token.kind == ",":
                self.advance()
                continue
            if self.token.kind != "end":
                raise self.error(
                    f"expected 'asc', 'desc', ',' or the end, found {self.describe(self.token)}"
                )
            return keys


def _parse_time(text: str, parser: _Parser, pos: int) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise parser.error(
            f"{text!r} is not a date: use 'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM[:SS]', or epoch seconds",
            parser.token_at(pos),
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_filter(expression: str | None) -> Node | None:
    """Parse a filter expression; None or blank means "every run".

    Raises:
        FilterError: with the position of the problem and what to write instead.
    """
    if expression is None or not expression.strip():
        return None
    return _Parser(expression).parse()


def parse_order(expression: str | None) -> list[OrderKey]:
    """Parse ``field [asc|desc], ...``; None or blank means newest first.

    Raises:
        FilterError: with the position of the problem.
    """
    if expression is None or not expression.strip():
        return []
    return _Parser(expression).parse_order()


def fields_of(node: Node | None) -> list[Field]:
    """Every field a filter refers to, in order of appearance."""
    if node is None:
        return []
    if isinstance(node, BoolOp):
        return [f for item in node.items for f in fields_of(item)]
    if isinstance(node, Not):
        return fields_of(node.item)
    return [node.field]
