import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every Snakemake start imports every installed executor plugin, and the SLURM plugin (2.6.1) then asks
# `scontrol show config` for MinJobAge. With slurm-client installed but no controller up (here: after the
# cluster rehearsal stops its SLURM) scontrol gives up only after 9 s, on each of the suite's ~80 starts.
# Tests that run no SLURM get an scontrol that says at once what the real one says then: no controller.
# The cluster rehearsal, which runs a real SLURM, takes it off its PATH (`without_shims`).
SHIMS = str(REPO / "tests/shims")
os.environ["PATH"] = f"{SHIMS}{os.pathsep}{os.environ['PATH']}"


def without_shims(path: str) -> str:
    """PATH with the real tools only."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if p != SHIMS)


REHEARSAL = "test_cluster_rehearsal.py"
CONTENTS = "test_e2e_contents.py"  # reads (and then writes into) what the rehearsal's run wrote
KINDS = "test_e2e.py"


def pytest_collection_modifyitems(items):
    """The two pipelines start with the session, in the background (below); the unit tests run beside them. Then
    the tests of the finished study of every kind (the smaller pipeline, done first), the cluster rehearsal's tests,
    the contents of its run, and last the test of the study of every kind's killed jobs, whose reruns go on beside
    the tests before it (they fill the core the rehearsal's last jobs, and then the contents tests, leave idle)."""
    def order(item) -> int:
        if item.path.name == KINDS and "runs" in item.fixturenames:
            return 4
        return {KINDS: 1, REHEARSAL: 2, CONTENTS: 3}.get(item.path.name, 0)

    items.sort(key=order)  # stable: tests keep their order within each group


def selected(request, name: str) -> bool:
    return any(item.path.name == name for item in request.session.items)


@pytest.fixture(scope="session", autouse=True)
def background_kinds(request, tmp_path_factory, background_rehearsal):
    """The study of every kind (tests/test_e2e.py), started with the session when its tests are selected. It takes
    the embedded model as the rehearsal's run converts it, if there is one (one conversion less)."""
    if not selected(request, KINDS):
        yield None
        return
    from test_e2e import KindsRun

    yield KindsRun(tmp_path_factory, model_from=background_rehearsal)


@pytest.fixture(scope="session", autouse=True)
def background_rehearsal(request, tmp_path_factory):
    """The cluster rehearsal's run, started with the session when its tests (or those of its run's contents) are
    selected and a SLURM can be started here (as root, as in CI); None otherwise. SLURM stops once the rehearsal's
    tests are done, or when the session ends."""
    if os.geteuid() != 0 or not (selected(request, REHEARSAL) or selected(request, CONTENTS)):
        yield None
        return
    from test_cluster_rehearsal import Rehearsal

    rehearsal = Rehearsal(tmp_path_factory)
    yield rehearsal
    rehearsal.stop()


RENDERING = "test_report_renders_in_headless_chromium"


@pytest.fixture(scope="session", autouse=True)
def system_test_deps(request, background_rehearsal):
    """`make system-test-deps` (Debian's chromium, for the report's rendering test; as root, as in CI), in the
    background once the cluster rehearsal's SLURM is up, when the rendering test is selected: a thread to join
    before using them, None otherwise. It installs nothing that is there already."""
    if not any(item.name == RENDERING for item in request.session.items):
        yield None
        return

    def install() -> None:
        if background_rehearsal is not None:  # its start_slurm.sh installs SLURM's packages: one apt at a time
            background_rehearsal.slurm_started.wait()
        installed = subprocess.run(["make", "-s", "system-test-deps"], cwd=REPO, capture_output=True, text=True,
                                   timeout=900)
        thread.output = (installed.stdout + installed.stderr)[-2000:]  # for the test to show (never printed here:
        # a thread's print lands in whichever test's output is being captured)

    thread = threading.Thread(target=install, daemon=True)
    thread.output = ""
    thread.start()
    yield thread


@pytest.fixture(scope="session", autouse=True)
def vllm_server_process(request, tmp_path_factory, background_rehearsal):
    """The endpoint tests' `vllm serve` (tests/test_e2e.py, tests/test_e2e_contents.py); None when no selected test
    uses it. With a cluster rehearsal, it starts as soon as the rehearsal's run has converted the model, beside the
    pipelines (an idle server takes no CPU), so that it is up long before the endpoint tests; otherwise the first
    module that asks starts it. Stopped when the session ends."""
    if not any("vllm_server" in item.fixturenames for item in request.session.items):
        yield None
        return
    from test_e2e_contents import VllmServer

    server = VllmServer(tmp_path_factory.mktemp("vllm-server"))
    if background_rehearsal is not None:
        server.start_when(background_rehearsal.converted_model)
    yield server
    server.stop()


@pytest.fixture
def repo() -> Path:
    return REPO


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def wiki_record(i: int = 1, **overrides) -> dict:
    record = {
        "id": f"a{i}",
        "title": f"Article {i}",
        "text": f"Article {i} is a town. It was founded in 18{i:02d}. It has a red bridge.",
        "questions": [{"question": f"When was Article {i} founded?", "answer": f"18{i:02d}"}],
    }
    record.update(overrides)
    return record


def lme_record(qid: str = "q1", **overrides) -> dict:
    record = {
        "question_id": qid,
        "question_type": "single-session-user",
        "question": "What is my cat called?",
        "answer": "Miso",
        "question_date": "2023/06/01 (Thu) 10:00",
        "haystack_session_ids": ["s2", "s1"],
        "haystack_dates": ["2023/05/20 (Sat) 09:00", "2023/05/02 (Tue) 08:30"],
        "haystack_sessions": [
            [{"role": "user", "content": "I adopted a cat called Miso.", "has_answer": True},
             {"role": "assistant", "content": "Congratulations on adopting Miso!"}],
            [{"role": "user", "content": "Any tips for sourdough?"},
             {"role": "assistant", "content": "Feed the starter daily."}],
        ],
        "answer_session_ids": ["s2"],
    }
    record.update(overrides)
    return record


@pytest.fixture
def sample_data(tmp_path: Path) -> Path:
    """A copy of the committed sample data, safe to edit."""
    target = tmp_path / "data"
    shutil.copytree(REPO / "data", target)
    return target
