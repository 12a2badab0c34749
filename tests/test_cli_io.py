import json
import subprocess
import sys

import pandas as pd

import pytest

from lorapress.io import atomic_path

from conftest import wiki_record, write_jsonl


def lorapress(*args):
    return subprocess.run([sys.executable, "-m", "lorapress", *args], capture_output=True, text=True, timeout=120)


def test_every_stage_has_help():
    from lorapress.cli import STAGES

    assert set(STAGES) == {"model", "download", "prepare", "compress", "stats", "train", "evaluate", "judge",
                           "decompose", "aggregate", "report", "plan", "check"}
    for stage in STAGES:
        out = lorapress(stage, "--help")
        assert out.returncode == 0 and "usage: lorapress " + stage in out.stdout
    out = lorapress("nonsense")
    assert out.returncode == 2 and "unknown stage 'nonsense'" in out.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    src = write_jsonl(tmp_path / "w.jsonl", [wiki_record(1), wiki_record(1)])
    out = lorapress("prepare", "--format", "wiki_jsonl", "--input", str(src),
                    "--docs", str(tmp_path / "r/docs.jsonl"), "--qa", str(tmp_path / "r/qa.jsonl"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"lorapress prepare: error: {src}:line 2: field 'id': duplicate 'a1' (first on line 1)"]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


SETTINGS = ('{"metrics": ["f1"], "n_resamples": 200, "confidence": 0.95, "seed": 0, "inert_tolerance": 0.001, '
            '"equivalence_margins": {"f1": 2.0}}')


def test_aggregate_runs_on_its_own(tmp_path):
    scores = tmp_path / "scores.csv"
    scores.write_text("dataset,experiment,condition,rank,items,seed,metric,value,n\n"
                      "wiki,compression,baseline,,,0,f1,10,5\n"
                      "wiki,compression,original_text,8,all,0,f1,30,5\n"
                      "wiki,compression,original_text,8,all,1,f1,34,5\n")
    out = lorapress("aggregate", "--settings", SETTINGS, "--from-scores", str(scores), "--out-dir", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "t/compression_wiki.csv").set_index("condition")
    # each variant's compressor, TRR and fact survival first (not measured in a scores file: NaN)
    assert list(table.columns[:9]) == ["compressor", "trr_mean", "fact_survival", "fact_survival_ci_low",
                                       "fact_survival_ci_high", "rank", "items", "metric", "score"]
    assert table.loc["original_text", "compressor"] == "none"
    assert table.loc["original_text", "score"] == 32.0 and table.loc["original_text", "vs_baseline_diff"] == 22.0
    assert table.loc["original_text", "vs_baseline_pct"] == 220.0 and table.loc["original_text", "n_seeds"] == 2
    assert json.loads((tmp_path / "t/summary.json").read_text())["wiki"]["best_condition"]["f1"]["condition"] == \
        "original_text"


def test_aggregate_names_a_wrong_metric_in_one_line(tmp_path):
    scores = tmp_path / "scores.csv"
    scores.write_text("dataset,experiment,condition,rank,items,seed,metric,value,n\nwiki,compression,baseline,0,0,0,f1,1,1\n")
    out = lorapress("aggregate", "--settings", SETTINGS.replace('"f1"', '"bleu"'), "--from-scores", str(scores),
                    "--out-dir", str(tmp_path / "t"))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "lorapress aggregate: error: wiki: none of the metrics ['bleu'] is in the scores table; present: ['f1']"]


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
