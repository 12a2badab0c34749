"""A fingerprint of the library code a stage runs, so Snakemake reruns a stage when its code changes.

Rules call `lorapress <stage>` through `shell:`, and Snakemake tracks only the
command text. Each rule therefore carries, as a param, the fingerprint of its
stage module and of every lorapress module it imports, transitively, including
imports inside functions. The fingerprint hashes the syntax tree with
docstrings removed, so editing a comment, a docstring or the layout changes
nothing, while any change to what the code does reruns the stage.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "lorapress"
ROOT = Path(__file__).resolve().parent


def _module_path(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """lorapress modules imported anywhere in `tree` (absolute or relative, at any depth)."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            found.add(target)
            # `from . import io` imports a module; `from .io import x` imports a name
            found.update(f"{target}.{alias.name}" for alias in node.names if _module_path(f"{target}.{alias.name}"))
    return {m for m in found if _module_path(m)}


@lru_cache(maxsize=None)
def _parsed(module: str) -> tuple[str, frozenset[str]]:
    path = _module_path(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports = _imported(tree, module, path.name == "__init__.py")
    return ast.dump(_strip_docstrings(tree), include_attributes=False), frozenset(imports)


def closure(module: str) -> list[str]:
    """`module` and every lorapress module it imports, transitively, sorted."""
    module = module if module.startswith(PACKAGE) else f"{PACKAGE}.{module}"
    if not _module_path(module):
        raise ValueError(f"no module {module} in {ROOT}")
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_parsed(current)[1] - seen)
    return sorted(seen)


def code_fingerprint(stage: str) -> str:
    """sha256 (16 hex digits) over the stage module's import closure, docstrings and comments ignored."""
    digest = hashlib.sha256()
    for module in closure(stage):
        digest.update(module.encode() + b"\0" + _parsed(module)[0].encode() + b"\0")
    return digest.hexdigest()[:16]
