"""The mutations: small plausible bugs made in a Python module (via ``ast``) or a Lua script.

A mutant is one change: an operator swapped, a comparison flipped at its boundary, a constant
changed, a statement removed, ``abs()`` dropped, ``min``/``max`` swapped, a slice bound dropped.
Python mutants are produced by re-parsing the source, changing the n-th mutation point and
unparsing, so each is valid Python; mutants whose text equals the original are not produced.

Not mutated (each change there would only measure whether a message's wording is asserted):
docstrings, annotations, ``__all__``, ``if TYPE_CHECKING`` blocks, the text of exceptions
raised and of log calls, and the literal parts of f-strings. In Lua, comments, Redis command
names and the ``Needs prelude.lua.`` line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    """The n-th mutation point of a file: where and what, and the mutated text."""

    index: int
    line: int
    desc: str
    text: str


_BINOP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
    ast.BitXor: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
_CMP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_SWAP_CALLS = {"min": "max", "max": "min", "any": "all", "all": "any"}
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}

Setter = Callable[[ast.AST], None]
Point = tuple[int, str, Callable[[], None]]


def _sym(op: type[ast.AST]) -> str:
    return op.__name__


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _no_op_removal(stmt: ast.stmt, *, last: bool) -> bool:
    """Removing it changes nothing: a constant expression (docstring, ``...``), or the
    function's final ``return None``."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True
    if isinstance(stmt, ast.Return) and last:
        return stmt.value is None or (
            isinstance(stmt.value, ast.Constant) and stmt.value.value is None
        )
    return False


def _removable(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Assign):
        return all(isinstance(t, ast.Attribute | ast.Subscript) for t in stmt.targets)
    if isinstance(stmt, ast.If):
        return not stmt.orelse
    return isinstance(
        stmt,
        ast.Expr | ast.Raise | ast.Return | ast.AugAssign | ast.Continue | ast.Break | ast.Delete,
    )


class _Points:
    """Walks a module in a fixed order and lists its mutation points (closures on that tree)."""

    def __init__(self, functions: frozenset[str]) -> None:
        self.functions = functions
        self.points: list[Point] = []

    def add(self, node: ast.AST, desc: str, apply: Callable[[], None]) -> None:
        self.points.append((getattr(node, "lineno", 0), desc, apply))

    def module(self, tree: ast.Module) -> None:
        self.body(tree, "body", tree.body, active=not self.functions, top=True)

    def body(
        self, parent: ast.AST, field: str, stmts: list[ast.stmt], *, active: bool, top: bool = False
    ) -> None:
        for i, stmt in enumerate(stmts):
            if _is_docstring(stmt) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            ):
                continue  # docstrings, attribute docstrings, ``...``
            if top and _is_all(stmt):
                continue
            if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                continue
            last = i == len(stmts) - 1 and isinstance(
                parent, ast.FunctionDef | ast.AsyncFunctionDef
            )
            if active and _removable(stmt) and not _no_op_removal(stmt, last=last):

                def remove(stmts: list[ast.stmt] = stmts, i: int = i, old: ast.stmt = stmt) -> None:
                    stmts[i] = ast.copy_location(ast.Pass(), old)

                self.add(stmt, f"remove {type(stmt).__name__} statement", remove)
            self.stmt(stmt, active=active)

    def stmt(self, node: ast.stmt, *, active: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = active or node.name in self.functions
            for defaults in (node.args.defaults, node.args.kw_defaults):
                for i, default in enumerate(defaults):
                    if default is not None:
                        setter = _item_setter(defaults, i)  # type: ignore[arg-type]
                        self.expr(default, setter, active=inner, strings=True)
            self.body(node, "body", node.body, active=inner)
            return
        if isinstance(node, ast.ClassDef):
            self.body(node, "body", node.body, active=active)
            return
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value, _attr_setter(node, "value"), active=active, strings=True)
            return
        strings = not isinstance(node, ast.Raise)
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self.body(node, field, value, active=active)
                    continue
                for i, item in enumerate(value):
                    if isinstance(item, ast.expr):
                        self.expr(item, _item_setter(value, i), active=active, strings=strings)
                    elif isinstance(item, ast.AST):
                        self.other(item, active=active)
            elif isinstance(value, ast.expr):
                self.expr(value, _attr_setter(node, field), active=active, strings=strings)
            elif isinstance(value, ast.AST):
                self.other(value, active=active)

    def other(self, node: ast.AST, *, active: bool) -> None:
        """except handlers, comprehensions, keywords, match cases, withitems."""
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self.body(node, field, value, active=active)
                    continue
                for i, item in enumerate(value):
                    if isinstance(item, ast.expr):
                        self.expr(item, _item_setter(value, i), active=active, strings=True)
                    elif isinstance(item, ast.AST):
                        self.other(item, active=active)
            elif isinstance(value, ast.expr):
                self.expr(value, _attr_setter(node, field), active=active, strings=True)
            elif isinstance(value, ast.AST):
                self.other(value, active=active)

    def expr(self, node: ast.expr, replace: Setter, *, active: bool, strings: bool) -> None:
        if active:
            self.expr_points(node, replace, strings=strings)
        if isinstance(node, ast.JoinedStr) or _is_type_expression(node):
            strings = False
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LOG_METHODS
        ):
            strings = False
        if isinstance(node, ast.Lambda):
            self.expr(node.body, _attr_setter(node, "body"), active=active, strings=strings)
            return
        cast_type = (
            node.args[0]
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "cast"
            and node.args
            else None
        )
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is cast_type:
                        continue  # the type of a cast
                    if isinstance(item, ast.expr):
                        self.expr(item, _item_setter(value, i), active=active, strings=strings)
                    elif isinstance(item, ast.AST):
                        self.keyword_or_comp(item, active=active, strings=strings)
            elif isinstance(value, ast.expr):
                self.expr(value, _attr_setter(node, field), active=active, strings=strings)

    def keyword_or_comp(self, node: ast.AST, *, active: bool, strings: bool) -> None:
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.expr):
                        self.expr(item, _item_setter(value, i), active=active, strings=strings)
            elif isinstance(value, ast.expr):
                self.expr(value, _attr_setter(node, field), active=active, strings=strings)

    def expr_points(self, node: ast.expr, replace: Setter, *, strings: bool) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
            new = _BINOP[type(node.op)]
            desc = f"{_sym(type(node.op))} -> {_sym(new)}"
            self.add(node, desc, lambda n=node, new=new: setattr(n, "op", new()))
        elif isinstance(node, ast.BoolOp):
            new_b: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
            desc = f"{_sym(type(node.op))} -> {_sym(new_b)}"
            self.add(node, desc, lambda n=node, new=new_b: setattr(n, "op", new()))
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _CMP:
                    new_c = _CMP[type(op)]

                    def flip(
                        n: ast.Compare = node, i: int = i, new: type[ast.cmpop] = new_c
                    ) -> None:
                        n.ops[i] = new()

                    self.add(node, f"{_sym(type(op))} -> {_sym(new_c)}", flip)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
            self.add(node, f"drop {_sym(type(node.op))}", lambda n=node: replace(n.operand))
        elif isinstance(node, ast.Constant):
            self.constant(node, replace, strings=strings)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name == "abs" and len(node.args) == 1:
                self.add(node, "drop abs()", lambda n=node: replace(n.args[0]))
            elif name in _SWAP_CALLS:
                other = _SWAP_CALLS[name]
                self.add(node, f"{name}() -> {other}()", lambda n=node, o=other: _rename(n, o))
        elif isinstance(node, ast.Slice):
            if node.lower is not None:
                self.add(node, "drop slice lower bound", lambda n=node: setattr(n, "lower", None))
            if node.upper is not None:
                self.add(node, "drop slice upper bound", lambda n=node: setattr(n, "upper", None))

    def constant(self, node: ast.Constant, replace: Setter, *, strings: bool) -> None:
        value = node.value
        if isinstance(value, bool):
            self.add(node, f"{value} -> {not value}", lambda: replace(ast.Constant(not value)))
        elif isinstance(value, int | float):
            new = value + 1
            self.add(node, f"{value!r} -> {new!r}", lambda: replace(ast.Constant(new)))
        elif isinstance(value, str) and strings:
            s = "XX" + value + "XX"
            self.add(node, f"{_short(value)} -> {_short(s)}", lambda: replace(ast.Constant(s)))
        elif isinstance(value, bytes) and strings:
            b = b"XX" + value + b"XX"
            self.add(node, f"{_short(value)} -> {_short(b)}", lambda: replace(ast.Constant(b)))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rename(call: ast.Call, name: str) -> None:
    assert isinstance(call.func, ast.Name)
    call.func.id = name


def _is_type_expression(node: ast.expr) -> bool:
    """``Literal[...]``, ``cast("T", x)``: strings there are types, not values."""
    if isinstance(node, ast.Subscript):
        target = node.value
        return (isinstance(target, ast.Name) and target.id == "Literal") or (
            isinstance(target, ast.Attribute) and target.attr == "Literal"
        )
    return False


def _is_all(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _attr_setter(parent: ast.AST, field: str) -> Setter:
    return lambda new: setattr(parent, field, new)


def _item_setter(items: list[ast.expr], i: int) -> Setter:
    def put(new: ast.AST) -> None:
        assert isinstance(new, ast.expr)
        items[i] = new

    return put


def _python_points(source: str, functions: frozenset[str]) -> tuple[ast.Module, list[Point]]:
    tree = ast.parse(source)
    walker = _Points(functions)
    walker.module(tree)
    return tree, walker.points


def python_mutations(source: str, functions: frozenset[str] = frozenset()) -> Iterator[Mutation]:
    """Every mutant of a Python module (only inside ``functions`` when given)."""
    original = ast.unparse(ast.parse(source))
    _, points = _python_points(source, functions)
    for index in range(len(points)):
        tree, fresh = _python_points(source, functions)
        line, desc, apply = fresh[index]
        apply()
        text = ast.unparse(ast.fix_missing_locations(tree))
        if text != original:
            yield Mutation(index, line, desc, text + "\n")


# ---------------------------------------------------------------- Lua

_LUA_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_LUA_OPS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"~="), "==", "~= -> =="),
    (re.compile(r"=="), "~=", "== -> ~="),
    (re.compile(r"<="), "<", "<= -> <"),
    (re.compile(r">="), ">", ">= -> >"),
    (re.compile(r"<(?!=)"), "<=", "< -> <="),
    (re.compile(r"(?<!-)>(?!=)"), ">=", "> -> >="),
    (re.compile(r"\band\b"), "or", "and -> or"),
    (re.compile(r"\bor\b"), "and", "or -> and"),
    (re.compile(r"\bnot\s+"), "", "drop not"),
    (re.compile(r"\btrue\b"), "false", "true -> false"),
    (re.compile(r"\bfalse\b"), "true", "false -> true"),
    (re.compile(r" \+ "), " - ", "+ -> -"),
    (re.compile(r" - "), " + ", "- -> +"),
]
_LUA_NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.])")
_LUA_CALL_LINE = re.compile(r"^\s*(redis\.call\(|[a-z_]+\()")
_LUA_ONE_LINE_BLOCK = re.compile(r"^\s*(if|for)\b.*\bend\s*$")


def _lua_code_part(line: str) -> tuple[str, list[tuple[int, int]]]:
    """The line without its comment, and the spans of its string literals."""
    strings: list[tuple[int, int]] = []
    pos = 0
    while pos < len(line):
        comment = line.find("--", pos)
        literal = _LUA_STRING.search(line, pos)
        if literal is not None and (comment < 0 or literal.start() < comment):
            strings.append(literal.span())
            pos = literal.end()
            continue
        if comment >= 0:
            return line[:comment], strings
        break
    return line, strings


def _inside(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in spans)


def _balanced(code: str) -> bool:
    depth = 0
    for ch in code:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def lua_mutations(source: str) -> Iterator[Mutation]:
    """Every mutant of a Lua script, line by line (comments and command names untouched)."""
    lines = source.split("\n")
    index = 0
    for no, line in enumerate(lines):
        code, strings = _lua_code_part(line)
        if not code.strip():
            continue
        edits: list[tuple[int, int, str, str]] = []
        for pattern, repl, desc in _LUA_OPS:
            for m in pattern.finditer(code):
                if not _inside(strings, m.start(), m.end()):
                    edits.append((m.start(), m.end(), repl, desc))
        for m in _LUA_NUMBER.finditer(code):
            if not _inside(strings, m.start(), m.end()):
                new = str(int(m.group()) + 1)
                edits.append((m.start(), m.end(), new, f"{m.group()} -> {new}"))
        for start, end in strings:
            before = code[:start].rstrip()
            if before.endswith("redis.call("):
                continue  # a command name: a changed one only errors
            inner = code[start + 1 : end - 1]
            quote = code[start]
            edits.append((start, end, f"{quote}XX{inner}XX{quote}", f"{_short(inner)} -> XX..XX"))
        for start, end, repl, desc in edits:
            mutated = line[:start] + repl + line[end:]
            yield Mutation(index, no + 1, desc, "\n".join([*lines[:no], mutated, *lines[no + 1 :]]))
            index += 1
        stripped = code.strip()
        removable = (
            _LUA_CALL_LINE.match(code) is not None
            and _balanced(code)
            and not stripped.startswith("local")
        ) or _LUA_ONE_LINE_BLOCK.match(code) is not None
        if removable:
            text = "\n".join([*lines[:no], "", *lines[no + 1 :]])
            yield Mutation(index, no + 1, "remove line", text)
            index += 1
