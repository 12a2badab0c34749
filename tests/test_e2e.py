"""The real pipeline on a study of one's own, run locally (`snakemake --cores`) on the embedded model.

`kinds_run` is a user's study: their own dataset alone, and a variant of every kind (original, a model's
rewrite, TextRank, their own command, a precomputed file). It starts from scratch with the test session, in
the background (`KindsRun`, tests/conftest.py), beside the cluster rehearsal's paper study
(tests/test_cluster_rehearsal.py, whose contents tests/test_e2e_contents.py checks) and the unit tests. It is
SIGKILLed inside compress, train and evaluate in turn and then completed: each killed job must leave nothing
that looks finished and, run again uninterrupted from the same inputs, write the same bytes (so must the
judge and the tables after it). Each run uses its own copy of the library (PYTHONPATH), so tests that edit
library code to check precise reruns touch nothing outside their copy. The finished run also hosts the
self-check's rules and a variant compressed behind an OpenAI-compatible endpoint (`vllm serve`).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e

WORKFLOW_FILES = ["Snakefile", "config.yaml", "config", "workflow", "envs", "data", "profiles"]
TABLES = "results/tables"
CONTROL_QUESTIONS = 2


def environment(workdir: Path) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": str(workdir / "src")}


def snakemake_cmd(*args: str, configfiles=()) -> list[str]:
    """`--configfile` goes last because it takes several values; none: the workflow's config.yaml."""
    return [sys.executable, "-m", "snakemake", "--cores", "2", *args,
            *(["--configfile", *configfiles] if configfiles else [])]


def snakemake(workdir: Path, *args: str, configfiles=(), check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(snakemake_cmd(*args, configfiles=configfiles), cwd=workdir,
                            env=environment(workdir), capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "logs").rglob("*.log"))
        raise AssertionError(f"snakemake {args} failed:\n{result.stderr[-5000:]}\n{logs}")
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts = {}
    for line in dry_run_output.split("Job stats:")[-1].splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) not in ("total", "all"):
            counts[match.group(1)] = int(match.group(2))
    return counts


def workflow_copy(root: Path, converted: Path | None = None) -> Path:
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    control = root / "data/control/general.jsonl"  # 2 of its 12 questions: they are answered by every run
    control.write_text("".join(control.read_text().splitlines(keepends=True)[:CONTROL_QUESTIONS]))
    if converted:  # the embedded model, converted once by the pipeline itself (its job and benchmark file)
        for part in ("resources/models", "results/benchmarks/model"):
            shutil.copytree(converted / part, root / part)
    return root


def killed_outputs(log: Path, workdir: Path, study: str) -> list[Path]:
    """What the job that writes `log` outputs (its log path holds its wildcards)."""
    stage, *rest = log.relative_to(workdir / "logs").with_suffix("").parts
    name = "/".join(rest)
    if stage == "compress":  # one job per variant writes the file of every dataset of the study
        datasets = yaml.safe_load((workdir / study).read_text())["datasets"]
        return [workdir / f"results/compressed/{dataset}/{name}.jsonl" for dataset in datasets]
    return [workdir / {"train": f"results/adapters/{name}", "evaluate": f"results/answers/{name}.jsonl"}[stage]]


def kill_when(workdir: Path, study: str, log_glob: str, marker: str, timeout: float = 1200) -> Path:
    """Start (or resume) the pipeline; SIGKILL it (the whole process group) once a job log matching `log_glob`
    from this attempt contains `marker`. Returns that log; fails if the run ended first."""
    started = time.time()
    process = subprocess.Popen(snakemake_cmd("results/report.html", configfiles=(study,)), cwd=workdir,
                               env=environment(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = started + timeout
    while process.poll() is None and time.time() < deadline:
        fresh = [p for p in workdir.glob(log_glob) if p.stat().st_mtime >= started]  # this attempt's jobs only
        hit = next((p for p in fresh if marker in p.read_text(errors="replace")), None)
        if hit:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            subprocess.run(snakemake_cmd("--unlock", configfiles=(study,)), cwd=workdir, env=environment(workdir),
                           capture_output=True)
            return hit
        time.sleep(0.5)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"no {marker!r} in {log_glob} within {timeout} s")
    raise AssertionError(f"the run ended (exit {process.returncode}) before {marker!r} appeared in {log_glob}")


# The killed jobs' reruns, in two copies of the finished run that run side by side (each stage's reruns in its copy
# alone, so neither rewrites the other's inputs): the answers' side (the evaluation chunk with its judge, then the
# tables) and the adapters' side (the adapter, then the compressed variant).
RERUN_COPIES = {"answers": ("evaluate", "aggregate"), "adapters": ("train", "compress")}


def rerun_calls(workdir: Path, study: str, kills: dict[str, tuple[Path, list[Path]]]) -> dict[str, tuple]:
    """Step -> (targets, --forcerun, what it rewrites), paths relative to the run: the evaluation chunk (with its
    verdicts), the tables, the adapter, the compressed variant."""
    outputs = {stage: [str(p.relative_to(workdir)) for p in killed_outputs(log, workdir, study)]
               for stage, (log, _) in kills.items()}
    verdicts = [o.replace("results/answers/", "results/verdicts/") for o in outputs["evaluate"]]
    tables = [str(p.relative_to(workdir)) for p in sorted((workdir / TABLES).iterdir())]
    return {"evaluate": (verdicts, outputs["evaluate"], [*outputs["evaluate"], *verdicts]),
            "aggregate": (["results/tables/summary.json"], ["aggregate"], tables),
            "train": (outputs["train"], outputs["train"], outputs["train"]),
            "compress": (outputs["compress"], outputs["compress"], outputs["compress"])}


def rerun_in_copy(study: str, steps, calls: dict[str, tuple], into: Path) -> dict:
    """In `into`, a copy of the finished run (mtimes kept), run the killed jobs of `steps` again, uninterrupted, from
    the inputs their resumed run left: last to first, with mtime left out of the rerun triggers, so that only these
    jobs run (Snakemake reruns a job whose input another job rewrote before it, whatever the triggers). Returns the
    jobs run per step."""
    ran = {}
    for step in steps:
        targets, forced, _ = calls[step]
        out = snakemake(into, *targets, "--forcerun", *forced, "--rerun-triggers", "params", "input", "code",
                        "software-env", configfiles=(study,))
        ran[step] = job_counts(out.stdout + out.stderr)
    return ran


def run_again(workdir: Path, study: str, kills: dict[str, tuple[Path, list[Path]]],
              copies: dict[str, Path]) -> tuple[dict[str, Path], dict]:
    """The killed jobs run again in `copies` (RERUN_COPIES: name -> copy of `workdir`), both copies at once.
    Returns where each rewritten output is (its path relative to the run -> the copy that rewrote it: the compressed
    variant, the adapter, the answers and verdicts, and every table) and the jobs run per step."""
    calls = rerun_calls(workdir, study, kills)
    results, errors = {}, []

    def rerun(name: str) -> None:
        try:
            results[name] = rerun_in_copy(study, RERUN_COPIES[name], calls, copies[name])
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=rerun, args=(name,)) for name in RERUN_COPIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise AssertionError("\n".join(errors))
    rewritten = {output: copies[name] for name, steps in RERUN_COPIES.items() for step in steps
                 for output in calls[step][2]}
    return rewritten, {step: counts for ran in results.values() for step, counts in ran.items()}


class KindsRun:
    """The study of every kind, started in the background when the test session starts (tests/conftest.py), like
    the cluster rehearsal: the embedded model converted by the pipeline itself (the rehearsal's run, where there is
    one: `model_from`), the study from scratch,
    SIGKILLed inside compress, train and evaluate in turn and completed (`finished`), then its killed jobs run
    again in two copies (`rerun`) while the tests read and edit the finished run."""

    def __init__(self, tmp_path_factory, model_from=None):
        self.finished_event, self.rerun_event = threading.Event(), threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(tmp_path_factory, model_from), daemon=True)
        self.thread.start()

    def _run(self, tmp_path_factory, model_from) -> None:
        try:
            # the model as the cluster rehearsal's run converted it (tests/test_cluster_rehearsal.py), or as a run
            # of this workflow's own converts it
            model = model_from.converted_model() if model_from is not None else None
            if model is not None:
                converted = model.parents[2]
            else:
                converted = workflow_copy(tmp_path_factory.mktemp("e2e-model"))
                snakemake(converted, "resources/models/smollm2-135m-instruct")
            self.kinds = kinds = workflow_copy(tmp_path_factory.mktemp("e2e-kinds"), converted)
            (kinds / "study.yaml").write_text(yaml.safe_dump(kinds_study(kinds)))
            self.kills = {}
            for stage, log_glob, marker in (("compress", "logs/compress/restated.log", "engine:"),
                                            ("train", "logs/train/*/*/*.log", "optimizer steps"),
                                            ("evaluate", "logs/evaluate/*/*.log", "answered and scored")):
                hit = kill_when(kinds, "study.yaml", log_glob, marker)
                self.kills[stage] = (hit, [p for p in killed_outputs(hit, kinds, "study.yaml") if p.exists()])
            snakemake(kinds, "results/report.html", configfiles=("study.yaml",))
            copies = {name: tmp_path_factory.mktemp(f"e2e-kinds-again-{name}") / "run" for name in RERUN_COPIES}
            for copy in copies.values():  # before any test writes into the finished run
                shutil.copytree(kinds, copy, symlinks=True)
            self.finished_event.set()
            self.rewritten, self.ran = run_again(kinds, "study.yaml", self.kills, copies)
        except BaseException:  # reported by the tests that wait for the run
            self.error = traceback.format_exc()
        finally:
            self.finished_event.set()
            self.rerun_event.set()

    def _wait(self, event: threading.Event) -> None:
        event.wait(timeout=3600)
        if self.error:
            pytest.fail(f"the study of every kind failed:\n{self.error}")

    def finished(self) -> Path:
        self._wait(self.finished_event)
        return self.kinds

    def rerun(self) -> tuple:
        self._wait(self.rerun_event)
        return self.kinds, self.kills, self.rewritten, self.ran


@pytest.fixture(scope="module")
def kinds_run(background_kinds) -> Path:
    return background_kinds.finished()


@pytest.fixture(scope="module")
def runs(background_kinds):
    return background_kinds.rerun()


FIRST_SENTENCES = '''import json, sys
for line in sys.stdin:
    item = json.loads(line)
    sentences = item["text"].split(". ")
    print(json.dumps({"id": item["id"], "text": ". ".join(sentences[:2]).rstrip(".") + "."}))
'''


def kinds_study(root: Path) -> dict:
    """A user's study file: their own dataset alone (two articles), and a variant of every kind."""
    articles = (root / "data/wiki/sample.jsonl").read_text().splitlines()[:2]
    (root / "data/mine").mkdir()
    (root / "data/mine/articles.jsonl").write_text("\n".join(articles) + "\n")
    (root / "first_sentences.py").write_text(FIRST_SENTENCES)
    (root / "precomputed").mkdir()
    (root / "precomputed/mine.jsonl").write_text("".join(  # rewritten elsewhere: each article said twice (TRR ~ -100)
        json.dumps({"id": a["id"], "text": a["text"] + " In other words: " + a["text"]}) + "\n"
        for a in map(json.loads, articles)))
    return {
        "datasets": {"mine": {"format": "wiki_jsonl", "path": "data/mine/articles.jsonl"}},
        "compression": {"backend": "transformers", "variants": {
            "original_text": {},
            "restated": {"kind": "generate", "description": "a rewrite", "target_trr": -50, "tolerance": 60,
                         "max_input_tokens": 512,
                         "prompt": "{text}\n\nRestate the text above in other words. Keep every name, date and number."},
            "textrank": {"kind": "extract", "method": "textrank", "target_trr": 50},
            "first_sentences": {"kind": "command", "command": ["python3", "first_sentences.py"], "target_trr": 60},
            "precomputed": {"kind": "file", "path": "precomputed/{dataset}.jsonl"},
        }},
        "train": {"rank": 8, "epochs": 1, "batch_size": 1},
        "experiments": {"capacity": {"enabled": False}, "rank_items": {"enabled": False},
                        "rank_compression": {"enabled": False}},
        # no open-book decomposition: one model job less per variant (the rehearsed paper study runs it)
        "evaluate": {"max_tokens": 16, "self_check": {"questions": 0}, "open_book": False},
        "aggregate": {"n_resamples": 200},
    }


def test_a_study_of_ones_own_runs_its_dataset_alone_and_every_kind_through_every_table(kinds_run):
    run = kinds_run
    assert sorted(p.name for p in (run / "results/data").iterdir()) == ["mine"]  # no sample dataset beside it
    trr = pd.read_csv(run / "results/stats/trr.csv").set_index("variant")
    assert set(trr.index) == {"original_text", "restated", "textrank", "first_sentences", "precomputed"}
    # an expansion (the file's rewrite) on the same axis as compression: a negative TRR
    assert trr.loc["precomputed", "trr_mean"] < -100 < 0 < trr.loc["textrank", "trr_mean"]
    # the generate rewrite aims at -50: each item is flagged by the band it missed, whatever the small model wrote
    restated = [json.loads(line) for line in (run / "results/compressed/mine/restated.jsonl").read_text().splitlines()]
    sources = {json.loads(line)["item_id"]: json.loads(line)["text"]
               for line in (run / "results/data/mine/docs.jsonl").read_text().splitlines()}
    for r in restated:
        rate = 100 * (1 - len(r["text"]) / len(sources[r["item_id"]]))
        assert r["off_target"] == (abs(rate + 50) > 60 or r["miss"] in ("copy", "empty", "cut"))
    metas = {v: json.loads((run / f"results/compressed/mine/{v}.meta.json").read_text()) for v in trr.index}
    assert metas["first_sentences"]["settings"]["command"] == ["python3", "first_sentences.py"]
    assert {v: m["settings"]["compressor"] for v, m in metas.items()} == {
        "original_text": "none", "restated": "base", "textrank": "textrank extractive (sumy)",
        "first_sentences": "command: python3 first_sentences.py", "precomputed": "file precomputed/mine.jsonl"}
    table = pd.read_csv(run / "results/tables/compression_mine.csv")
    f1 = table[table["metric"] == "f1"]
    # baseline first, then by measured TRR: the rewrite (negative) before the original text
    order = list(f1["condition"])
    assert order[:3] == ["baseline", "precomputed", "original_text"]
    assert set(order) == {"baseline", *trr.index}
    assert list(table.columns[:4]) == ["condition", "compressor", "trr_mean", "fact_survival"]
    compressors = table.groupby("condition")["compressor"].first()
    assert compressors["textrank"] == "textrank extractive (sumy)" and compressors["original_text"] == "none"
    assert compressors["restated"] == "base model (builtin:smollm2-135m-instruct)"
    assert compressors["first_sentences"] == "command: python3 first_sentences.py"
    report = (run / "results/report.html").read_text()
    assert all(v in report for v in trr.index)


def test_adding_a_variant_runs_that_variants_jobs_only_and_an_equal_definition_reruns_nothing(kinds_run):
    run = kinds_run
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"]["ext"] = {}  # the seed's TF-IDF extraction, by its name alone
    (run / "added.yaml").write_text(yaml.safe_dump(study))
    counts = job_counts(snakemake(run, "-n", "results/report.html", configfiles=("added.yaml",)).stdout)
    assert counts.pop("evaluate") == counts.pop("judge") <= 2  # its chunk, split in two at most
    assert counts == {"compress_cpu": 1, "stats": 1, "train": 1, "aggregate": 1, "report": 1}  # open_book: off
    # the same definitions written out in full (a seed's name alone, or its whole definition): nothing reruns
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"]["original_text"] = {"kind": "original", "description": "the text as it is"}
    (run / "spelled.yaml").write_text(yaml.safe_dump(study))
    assert "Nothing to be done" in snakemake(run, "-n", "results/report.html", configfiles=("spelled.yaml",)).stdout


@pytest.mark.parametrize("name, definition, message", [
    ("broken", {"kind": "command", "command": ["python3", "-c", "import sys; sys.exit('no weights here')"]},
     "lorapress compress: error: command \"python3 -c import sys; sys.exit('no weights here')\" exited with status 1: "
     "no weights here"),
    ("partial", {"kind": "file", "path": "precomputed/partial.jsonl"},
     "lorapress compress: error: precomputed/partial.jsonl: no text for item 'wiki-002' (1 of 2 items missing)"),
])
def test_a_bad_variant_fails_its_job_with_one_line_and_writes_nothing(kinds_run, name, definition, message):
    run = kinds_run
    lines = (run / "precomputed/mine.jsonl").read_text().splitlines()
    (run / "precomputed/partial.jsonl").write_text("\n".join(lines[:1]) + "\n")
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"][name] = definition
    (run / f"{name}.yaml").write_text(yaml.safe_dump(study))
    out = snakemake(run, f"results/compressed/mine/{name}.jsonl", configfiles=(f"{name}.yaml",), check=False)
    assert out.returncode != 0
    assert (run / f"logs/compress/{name}.log").read_text().strip().splitlines()[-1] == message
    assert not (run / f"results/compressed/mine/{name}.jsonl").exists()
    assert not (run / f"results/compressed/mine/{name}.meta.json").exists()


def test_a_tier_larger_than_the_dataset_stops_the_run_before_any_job(kinds_run):
    run = kinds_run
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["experiments"]["capacity"] = {"enabled": True, "items": [1, 50]}
    (run / "tiers.yaml").write_text(yaml.safe_dump(study))
    out = snakemake(run, "results/report.html", configfiles=("tiers.yaml",), check=False)
    assert out.returncode != 0 and "config experiments.capacity.items: 50 is more than the 2 items of dataset mine" \
        in out.stdout + out.stderr
    assert not list((run / "results/adapters/mine/original_text").glob("r*_n1_*"))  # nothing trained for it


def test_self_check_agrees_only_on_identical_answers_or_near_ties(kinds_run):
    """The checking engine's own greedy answers agree; an answer it finds far less likely than its own at the
    first differing token (a misapplied adapter's signature) does not, unless tie_nats is set above that gap."""
    from lorapress.engine import EngineSettings, open_engine
    from lorapress.evaluate import divergence_gap, first_divergence, question_messages, self_check

    run = kinds_run

    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2 and first_divergence([1, 2], [1, 2, 5]) is None
    settings = EngineSettings(model=str(run / "resources/models/smollm2-135m-instruct"), dtype="float32",
                              max_model_len=1024, seed=0, max_num_seqs=8, trust_remote_code=False,
                              chat_template_kwargs={})
    engine = open_engine("transformers", settings)
    adapter = str(run / "results/adapters/mine/original_text/r8_nall_s0")
    questions = [json.loads(line) for line in (run / "results/data/mine/qa.jsonl").read_text().splitlines()][:2]
    evaluate = {"system_prompt": "Answer in a few words.", "max_tokens": 8, "repetition_penalty": 1.0}
    own = engine.generate([question_messages(q, evaluate["system_prompt"]) for q in questions], max_tokens=8,
                          adapters=[adapter] * 2)
    run_ = {"run_id": "r", "adapter": adapter}
    sample = [(run_, q) for q in questions]

    def records(first):
        return [{"run_id": "r", "question_set": "dataset", "question_id": q["question_id"], "prediction": p,
                 "finish_reason": "stop"} for q, p in zip(questions, [first, own[1].text])]

    same = self_check(engine, sample, records(own[0].text), {**evaluate, "self_check": {"tie_nats": 0.5}})
    assert (same["n"], same["agreed"], same["identical"], same["near_ties"]) == (2, 2, 2, 0)
    wrong = "Zyzzyva quokka"  # not what this adapter says: its first token is far from the greedy one
    gap = divergence_gap(engine, question_messages(questions[0], evaluate["system_prompt"]), (wrong, True),
                         (own[0].text, not own[0].truncated), adapter)
    assert gap > 2
    strict = self_check(engine, sample, records(wrong), {**evaluate, "self_check": {"tie_nats": 0.5}})
    assert (strict["agreed"], strict["identical"], strict["pairs"][0]["tie_gap"]) == (1, 1, pytest.approx(gap))
    lenient = self_check(engine, sample, records(wrong), {**evaluate, "self_check": {"tie_nats": gap + 0.01}})
    assert (lenient["agreed"], lenient["near_ties"]) == (2, 1)
    engine.close()


@pytest.fixture(scope="module")
def vllm_server(kinds_run, vllm_server_process):
    """The session's `vllm serve` (tests/conftest.py: started as soon as the cluster rehearsal's run has converted
    the model), or started now with this run's copy of it."""
    vllm_server_process.start(kinds_run / "resources/models/smollm2-135m-instruct")  # nothing if it runs already
    return vllm_server_process.url_and_key()


def test_an_endpoint_compressor_writes_a_variant_and_keeps_its_key_out(kinds_run, vllm_server, monkeypatch):
    """A generate variant whose compressor is an OpenAI-compatible endpoint (real `vllm serve`): a CPU job, lengths
    counted with the base model's tokenizer, the key read from the environment and written nowhere."""
    run, (base_url, key) = kinds_run, vllm_server
    monkeypatch.setenv("LORAPRESS_COMPRESSOR_KEY", key)
    seed = yaml.safe_load((run / "config.yaml").read_text())["compression"]["variants"]["summ_l5_extreme"]
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"]["remote_summary"] = {
        "kind": "generate", "target_trr": 80, "prompt": seed["prompt"], "compressor": "openai:judge",
        "base_url": base_url, "api_key_env": "LORAPRESS_COMPRESSOR_KEY"}
    (run / "endpoint.yaml").write_text(yaml.safe_dump(study))
    target = "results/compressed/mine/remote_summary.jsonl"
    out = snakemake(run, target, configfiles=("endpoint.yaml",))
    assert "rule compress_cpu:" in out.stdout + out.stderr  # no GPU asked for
    records = [json.loads(line) for line in (run / target).read_text().splitlines()]
    assert len(records) == 2 and all(r["text"].strip() for r in records)
    meta = json.loads((run / "results/compressed/mine/remote_summary.meta.json").read_text())
    assert meta["settings"]["compressor"] == "openai:judge"
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000
              and key.encode() in p.read_bytes()]
    assert leaked == []


def test_killed_jobs_leave_nothing_finished_and_run_again_write_the_same_bytes(runs):
    kinds, kills, rewritten, ran = runs
    # after each SIGKILL (inside compress, train and evaluate) the killed job's output does not exist
    assert {stage: written for stage, (_, written) in kills.items()} == {"compress": [], "train": [], "evaluate": []}
    assert ran == {"evaluate": {"evaluate": 1, "judge": 1}, "train": {"train": 1}, "compress": {"compress": 1},
                   "aggregate": {"aggregate": 1}}, ran  # only the forced jobs ran again

    def files(root: Path, name: str) -> dict[str, bytes]:
        # an adapter's weights and config (its training summary also records how long it took)
        found = sorted((root / name).glob("adapter_*")) if (root / name).is_dir() else [root / name]
        return {str(p.relative_to(root)): p.read_bytes() for p in found}

    assert {name for name in rewritten if name.startswith(TABLES)} == {
        str(p.relative_to(kinds)) for p in (kinds / TABLES).iterdir()}  # every table
    for name, again in rewritten.items():
        assert files(again, name) == files(kinds, name), name  # the same bytes, uninterrupted
        assert all((again / f).stat().st_mtime > (kinds / f).stat().st_mtime for f in files(kinds, name)), name
