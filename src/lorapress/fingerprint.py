"""A fingerprint of the library code a stage runs, so Snakemake reruns a stage when its code changes.

Rules call `lorapress <stage>` through `shell:`, and Snakemake tracks only the
command text. Each rule therefore carries, as a param, the fingerprint of its
stage module and of every lorapress module it imports, transitively, including
imports inside functions. The fingerprint hashes the syntax tree with
docstrings removed, so editing a comment, a docstring or the layout changes
nothing, while any change to what the code does reruns the stage.

Parsing the package takes ~0.6 s, and every Snakemake start (each cluster job's
too) computes the fingerprints. `code_fingerprints(stages, cache=...)` keeps what
parsing found in a small JSON file, keyed by the files' bytes: an unchanged
package is read, not parsed, and gives the same fingerprints.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
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


def _qualified(module: str) -> str:
    """`train` -> `lorapress.train`."""
    return module if module.startswith(PACKAGE) else f"{PACKAGE}.{module}"


def _walk(module: str, imports_of) -> list[str] | None:
    """`module` and every module `imports_of` leads to, transitively, sorted; None as soon as it gives None."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        found = imports_of(current)
        if found is None:
            return None
        seen.add(current)
        todo.extend(m for m in found if m not in seen)
    return sorted(seen)


def closure(module: str) -> list[str]:
    """`module` and every lorapress module it imports, transitively, sorted."""
    module = _qualified(module)
    if not _module_path(module):
        raise ValueError(f"no module {module} in {ROOT}")
    return _walk(module, lambda current: _parsed(current)[1])


def code_fingerprint(stage: str) -> str:
    """sha256 (16 hex digits) over the stage module's import closure, docstrings and comments ignored."""
    digest = hashlib.sha256()
    for module in closure(stage):
        digest.update(module.encode() + b"\0" + _parsed(module)[0].encode() + b"\0")
    return digest.hexdigest()[:16]


# what a cache entry depends on besides the files' bytes: ast.dump's format changes between Python versions
_CACHE_VERSION = f"1 python{sys.version_info[0]}.{sys.version_info[1]}"


def _file_key(module: str, keys: dict) -> str:
    """sha256 of the module file's bytes (memoised in `keys`)."""
    if module not in keys:
        keys[module] = hashlib.sha256(_module_path(module).read_bytes()).hexdigest()
    return keys[module]


def _cached_closure(module: str, imports: dict, keys: dict) -> list[str] | None:
    """`closure(module)` from the cached import lists; None when a file's bytes are not in the cache."""
    def imports_of(current):
        found = imports.get(_file_key(current, keys))
        return None if found is None else [m for m in found if _module_path(m)]  # a module since deleted is gone

    return _walk(module, imports_of)


def _closure_key(modules: list[str], keys: dict) -> str:
    """The bytes of every file a fingerprint is computed from."""
    return hashlib.sha256("\0".join(f"{m}={keys[m]}" for m in modules).encode()).hexdigest()


def code_fingerprints(stages, cache: str | os.PathLike | None = None) -> dict[str, str]:
    """{stage: code_fingerprint(stage)}, read from `cache` (a JSON file) where the files they were computed from
    are unchanged, and the cache rewritten when anything had to be parsed. A missing, stale or unreadable cache
    costs only the parse; the cache never changes a fingerprint."""
    if cache is None:
        return {stage: code_fingerprint(stage) for stage in stages}
    cache = Path(cache)
    try:
        stored = json.loads(cache.read_text())
        imports, fingerprints = dict(stored["imports"]), dict(stored["fingerprints"])
        if stored["version"] != _CACHE_VERSION:
            raise ValueError(stored["version"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, damaged or another Python's: start afresh
        imports, fingerprints = {}, {}
    keys, result, used, parsed = {}, {}, set(), False
    for stage in stages:
        modules = _cached_closure(_qualified(stage), imports, keys)
        key = _closure_key(modules, keys) if modules is not None else None
        if key not in fingerprints:
            parsed = True
            modules = closure(stage)
            for name in modules:
                imports[_file_key(name, keys)] = sorted(_parsed(name)[1])
            key = _closure_key(modules, keys)
            fingerprints[key] = code_fingerprint(stage)
        result[stage] = fingerprints[key]
        used.add(key)
    if parsed:  # keep only what describes the files as they are now
        current = set(keys.values())
        stored = {"version": _CACHE_VERSION, "imports": {k: v for k, v in imports.items() if k in current},
                  "fingerprints": {k: v for k, v in fingerprints.items() if k in used}}
        try:  # jobs starting together each write a whole, correct file; the last one stays
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, sort_keys=True))
            os.replace(tmp, cache)
        except OSError:  # a read-only working directory: no cache, the same fingerprints
            pass
    return result
