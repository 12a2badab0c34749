import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
