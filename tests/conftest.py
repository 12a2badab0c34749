import json
import os
import shutil
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
    the study of every kind (the smaller one, done first; its tests fill the cores the rehearsal's last jobs leave
    idle), the cluster rehearsal's tests, and the contents of its run."""
    order = {KINDS: 1, REHEARSAL: 2, CONTENTS: 3}
    # stable: tests keep their order within each group
    items.sort(key=lambda item: order.get(item.path.name, 0))


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


@pytest.fixture(scope="session")
def vllm_server_process(request, tmp_path_factory):
    """The endpoint tests' `vllm serve` (tests/test_e2e_contents.py), not yet started: the first module that asks
    starts it; None when no selected test uses it. Stopped when the session ends."""
    if not any("vllm_server" in item.fixturenames for item in request.session.items):
        yield None
        return
    from test_e2e_contents import VllmServer

    server = VllmServer(tmp_path_factory.mktemp("vllm-server"))
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
