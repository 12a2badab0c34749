"""Code fingerprints: a stage reruns when the code it runs changes, and only then."""

import shutil
import subprocess
import sys
import textwrap

from conftest import REPO

from lorapress.fingerprint import closure


def test_closures_follow_imports_at_any_depth():
    assert "lorapress.train" in closure("train") and "lorapress.io" in closure("train")
    assert "lorapress.train" not in closure("compress") and "lorapress.train" not in closure("prepare")
    # aggregate imports rankfit and claims inside functions: they belong to it
    assert {"lorapress.rankfit", "lorapress.claims", "lorapress.uncertainty"} <= set(closure("aggregate"))
    assert "lorapress.aggregate" not in closure("train")


def fingerprints(package_dir) -> dict:
    code = textwrap.dedent(f"""
        import sys, json
        sys.path.insert(0, {str(package_dir.parent)!r})
        from lorapress.fingerprint import code_fingerprint
        print(json.dumps({{s: code_fingerprint(s) for s in ("prepare", "compress", "train", "evaluate", "aggregate")}}))
    """)
    import json

    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_edits_change_exactly_the_stages_that_run_the_code(tmp_path):
    package = tmp_path / "src" / "lorapress"
    shutil.copytree(REPO / "src/lorapress", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = fingerprints(package)

    train = package / "train.py"
    original = train.read_text()
    train.write_text(original.replace('"""Stage `train`', '"""Stage `train` (docstring edit)', 1)
                     + "\n# a comment\n")
    assert fingerprints(package) == before  # docstrings and comments do not count

    train.write_text(original + "\n\ndef appended():\n    return 1\n")
    after = fingerprints(package)
    assert {s for s in before if before[s] != after[s]} == {"train"}
    train.write_text(original)

    io = package / "io.py"  # shared by every stage
    io.write_text(io.read_text() + "\n\ndef appended():\n    return 1\n")
    after = fingerprints(package)
    assert {s for s in before if before[s] != after[s]} == set(before)


def test_the_cache_gives_the_same_fingerprints_without_parsing_and_follows_edits(tmp_path):
    """Every Snakemake start (each cluster job's too) computes the fingerprints: an unchanged package is read from
    the cache, not parsed; an edited file is parsed again; a damaged cache is only a parse more."""
    package = tmp_path / "src" / "lorapress"
    shutil.copytree(REPO / "src/lorapress", package, ignore=shutil.ignore_patterns("__pycache__"))
    stages = ("prepare", "compress", "train", "evaluate", "aggregate")
    cache = tmp_path / "work/.snakemake/lorapress/code-fingerprints.json"
    code = textwrap.dedent(f"""
        import ast, json, sys
        sys.path.insert(0, {str(package.parent)!r})
        from lorapress import fingerprint
        parse = ast.parse
        parsed = []
        ast.parse = lambda *a, **k: parsed.append(1) or parse(*a, **k)
        found = fingerprint.code_fingerprints({stages!r}, cache={str(cache)!r})
        print(json.dumps({{"fingerprints": found, "parsed": len(parsed)}}))
    """)

    def run():
        import json

        return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout)

    uncached = fingerprints(package)
    first = run()
    assert first["fingerprints"] == uncached and first["parsed"] > 10 and cache.is_file()
    second = run()
    assert second == {"fingerprints": uncached, "parsed": 0}
    train = package / "train.py"
    train.write_text(train.read_text() + "\n\ndef appended():\n    return 1\n")
    edited = run()
    assert edited["fingerprints"] == fingerprints(package) and edited["parsed"] > 0
    assert {s for s in stages if edited["fingerprints"][s] != uncached[s]} == {"train"}
    assert run()["parsed"] == 0
    cache.write_text("{not json")
    assert run()["fingerprints"] == edited["fingerprints"]
