import subprocess
import sys

import pytest

from lorapress.io import atomic_path

from conftest import wiki_record, write_jsonl


def lorapress(*args):
    return subprocess.run([sys.executable, "-m", "lorapress", *args], capture_output=True, text=True, timeout=120)


def test_every_stage_has_help():
    for stage in ("model", "download", "prepare", "compress", "stats", "train", "evaluate", "aggregate", "report"):
        out = lorapress(stage, "--help")
        assert out.returncode == 0 and "usage: lorapress " + stage in out.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    src = write_jsonl(tmp_path / "w.jsonl", [wiki_record(1), wiki_record(1)])
    out = lorapress("prepare", "--format", "wiki_jsonl", "--input", str(src),
                    "--docs", str(tmp_path / "r/docs.jsonl"), "--qa", str(tmp_path / "r/qa.jsonl"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"lorapress prepare: error: {src}:line 2: field 'id': duplicate 'a1' (first on line 1)"]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_aggregate_runs_on_its_own(tmp_path):
    scores = tmp_path / "scores.csv"
    scores.write_text("dataset,experiment,condition,rank,items,seed,metric,value,n\n"
                      "wiki,compression,baseline,0,0,0,f1,10,5\n"
                      "wiki,compression,original_text,8,all,0,f1,30,5\n")
    out = lorapress("aggregate", "--scores", str(scores), "--metric", "f1", "--out", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "t/compression_wiki.csv").read_text().splitlines()
    assert lines[0].startswith("condition,score,vs_baseline_pct,vs_original_pct,")
    assert lines[1].startswith("original_text,30.0000,200.0000,0.0000,")


def test_atomic_path_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "adapter", directory=True) as tmp:
        (tmp / "weights").write_text("w")
    assert (tmp_path / "adapter/weights").read_text() == "w"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
