"""Branch expressions of x (``0.4 * x``, ``sin(3 * x) - 0.5``) as data, never as code.

The text is parsed by Python's parser into a syntax tree (`ast.parse`, which runs nothing) and the
tree is accepted only if every node is in a small arithmetic grammar:

    expr := number | x | pi | e | expr (+ - * / ** %) expr | (+ -) expr | f(expr)
    f    := sin cos tan exp log sqrt abs tanh sign

The accepted tree becomes a function of a tensor x built from torch operations; `eval`, attribute
access, subscripts, keywords, strings, comprehensions and every other name are refused before
anything is computed. Numbers are floats (no integer powers that would take hours: ``9**9**9``).
"""

import ast
import math
import operator
from typing import Callable

import torch

from ebm_cli.errors import UserError

CONSTANTS = {"pi": math.pi, "e": math.e}
FUNCTIONS = {"sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
             "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh, "sign": torch.sign}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Pow: operator.pow, ast.Mod: operator.mod}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_LENGTH = 1000  # characters: a branch is a formula, and Python's parser recurses on nesting
MAX_DEPTH = 100  # nested operations: each is a Python call when the branch is evaluated


def _refuse(text: str, why: str) -> UserError:
    names = ", ".join(["x", *CONSTANTS, *FUNCTIONS])
    return UserError(f"dataset.branches: {text!r}: {why}; a branch is arithmetic (+ - * / ** %) of x, numbers "
                     f"and {names}")


def parse_branch(text: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function of x that `text` describes. Raises UserError for anything outside the grammar.

    Returns f: x (N,) -> y (N,), same dtype and device (a constant expression broadcast to x).
    """
    text = str(text)
    if len(text) > MAX_LENGTH:
        raise _refuse(text[:40] + "...", f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _refuse(text, f"cannot parse ({getattr(exc, 'msg', None) or type(exc).__name__})") from None
    build = _compiler(text)
    try:
        body = build(tree.body, 0)
    except RecursionError:
        raise _refuse(text, "nested too deeply") from None

    def branch(x: torch.Tensor) -> torch.Tensor:
        out = body(x)
        return torch.as_tensor(out, dtype=x.dtype, device=x.device).expand_as(x).clone()

    return branch


def _compiler(text: str):
    """node -> a function of x, checking the grammar on the way down."""

    def build(node: ast.AST, depth: int):
        if depth > MAX_DEPTH:
            raise _refuse(text, f"nested more than {MAX_DEPTH} deep")
        depth += 1
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            try:
                value = float(node.value)
            except OverflowError:  # an integer literal of hundreds of digits
                value = math.inf
            return lambda x: value
        if isinstance(node, ast.Name):
            if node.id == "x":
                return lambda x: x
            if node.id in CONSTANTS:
                value = CONSTANTS[node.id]
                return lambda x: value
            raise _refuse(text, f"unknown name {node.id!r}")
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            op, left, right = BINARY[type(node.op)], build(node.left, depth), build(node.right, depth)
            return lambda x: _apply(text, op, left(x), right(x))
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            op, operand = UNARY[type(node.op)], build(node.operand, depth)
            return lambda x: op(operand(x))
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in FUNCTIONS:
                raise _refuse(text, f"unknown function {ast.unparse(node.func)!r}")
            if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
                raise _refuse(text, f"{name} takes one argument")
            fn, arg = FUNCTIONS[name], build(node.args[0], depth)
            return lambda x: fn(torch.as_tensor(arg(x), dtype=x.dtype))
        raise _refuse(text, f"{type(node).__name__.lower()} is not allowed ({ast.unparse(node)!r})")

    return build


def _apply(text: str, op, a, b):
    """a op b on floats or tensors; a float overflow (``10.0 ** 400``) is inf, as on tensors."""
    try:
        out = op(a, b)
        return math.nan if isinstance(out, complex) else out  # (-8.0) ** 0.5, as a tensor gives
    except OverflowError:
        return math.inf
    except ZeroDivisionError:
        raise _refuse(text, "divides by zero") from None
