"""Stage `prepare`: load a dataset, validate it, and write knowledge items and questions.

Writes two JSON-lines files per dataset:
- docs.jsonl: one knowledge item per line `{item_id, title, text, date?, source?}`
  (a wiki article; a LongMemEval chat session: its turns as text, its dated header as title);
- qa.jsonl: one question per line `{question_id, question, answer, question_type,
  item_ids, question_date?, abstention, distractor, distractors}`; `item_ids` are the items
  holding the answer; `distractors` are wrong answers of the same kind (other items'
  answers), against which the knowledge-specific log-likelihood margin is measured.

Every problem in the input is an `InputError` naming file, line or record, and field.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from .io import InputError, parse_json_arg, write_jsonl

log = logging.getLogger(__name__)

LONGMEMEVAL_TYPES = (
    "single-session-user",
    "single-session-assistant",
    "single-session-preference",
    "multi-session",
    "knowledge-update",
    "temporal-reasoning",
)
WIKI_TYPE = "wiki"
_DATE = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) \((\w{3})\) (\d{2}):(\d{2})$")


# ---------------------------------------------------------------- field checks
def _field(record: dict, key: str, kind: type, path: Path, where: str, *, optional=False) -> Any:
    if key not in record or record[key] is None:
        if optional:
            return None
        raise InputError(path, where, f"field '{key}': missing")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(path, where, f"field '{key}': expected {kind.__name__}, got {type(value).__name__}")
    if kind is str and not value.strip():
        raise InputError(path, where, f"field '{key}': empty")
    if kind is list and not value and not optional:
        raise InputError(path, where, f"field '{key}': empty list")
    return value


def parse_longmemeval_date(value: str, path: Path, where: str, field: str) -> datetime:
    match = _DATE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise InputError(path, where, f"field '{field}': {value!r} is not a date like '2023/05/30 (Tue) 23:40'")
    y, m, d, _, hh, mm = match.groups()
    try:
        return datetime(int(y), int(m), int(d), int(hh), int(mm))
    except ValueError as exc:
        raise InputError(path, where, f"field '{field}': {value!r}: {exc}") from None


# ---------------------------------------------------------------- wiki_jsonl
def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(path, f"line {number}", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {number}", f"malformed JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(record, dict):
                raise InputError(path, f"line {number}", f"expected a JSON object, got {type(record).__name__}")
            yield number, record


def _identified_lines(path: Path) -> Iterator[tuple[str, str, dict]]:
    """(place, id, record) per line; ids must be unique strings."""
    seen: dict[str, int] = {}
    for number, record in _json_lines(path):
        where = f"line {number}"
        record_id = _field(record, "id", str, path, where)
        if record_id in seen:
            raise InputError(path, where, f"field 'id': duplicate {record_id!r} (first on line {seen[record_id]})")
        seen[record_id] = number
        yield where, record_id, record


def load_wiki(path: Path, *, limit: int | None = None, sample: int | None = None, seed: int = 0,
              question_types: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Articles with their questions; `limit`/`sample` pick articles."""
    if question_types:
        raise ValueError("question_types applies to longmemeval datasets, not wiki_jsonl")
    docs, questions = [], []
    for where, item_id, record in _identified_lines(path):
        doc = {
            "item_id": item_id,
            "title": _field(record, "title", str, path, where),
            "text": _field(record, "text", str, path, where),
        }
        for key in ("date", "source"):
            value = _field(record, key, str, path, where, optional=True)
            if value is not None:
                doc[key] = value
        docs.append(doc)
        for k, qa in enumerate(_field(record, "questions", list, path, where)):
            qwhere = f"{where}, questions[{k}]"
            if not isinstance(qa, dict):
                raise InputError(path, qwhere, f"expected an object, got {type(qa).__name__}")
            questions.append({
                "question_id": f"{item_id}-q{k + 1}",
                "question": _field(qa, "question", str, path, qwhere),
                "answer": _field(qa, "answer", str, path, qwhere),
                "question_type": WIKI_TYPE,
                "item_ids": [item_id],
                "abstention": False,
            })
    if not docs:
        raise InputError(path, "", "empty file: no records")
    kept = {d["item_id"] for d in _subset(docs, limit=limit, sample=sample, seed=seed)}
    questions = [q for q in questions if q["item_ids"][0] in kept]
    return [d for d in docs if d["item_id"] in kept], assign_distractors(questions, group_of=lambda q: "wiki")


# ---------------------------------------------------------------- longmemeval
def _longmemeval_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Stream the official JSON array one question at a time (the _s file is ~277 MB)."""
    import ijson

    with open(path, "rb") as fh:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
        if not head:
            raise InputError(path, "", "empty file: no records")
        if head != b"[":
            raise InputError(path, "", "expected a JSON array of questions (official LongMemEval format)")
        fh.seek(0)
        index = -1
        try:
            for index, record in enumerate(ijson.items(fh, "item", use_float=True)):
                if not isinstance(record, dict):
                    raise InputError(path, f"record {index}", f"expected an object, got {type(record).__name__}")
                yield index, record
        except ijson.common.IncompleteJSONError as exc:
            detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            detail = detail.strip().splitlines()[0] if detail.strip() else "unexpected end of file"
            problem = "not UTF-8" if "UTF8" in detail else "malformed or truncated JSON"
            raise InputError(path, f"record {index + 1}", f"{problem} ({detail})") from None
        except UnicodeDecodeError as exc:
            raise InputError(path, f"record {index + 1}", f"not UTF-8 ({exc.reason})") from None
        if index < 0:
            raise InputError(path, "", "empty array: no questions")


def session_title(session_id: str, date: str) -> str:
    """The dated header of a session. It is the item's title, so every compressed variant keeps it:
    temporal questions need the date, and compression only rewrites the text."""
    return f"Chat session {session_id} on {date}"


def render_session(turns: list[dict]) -> str:
    """A chat session's turns as plain text. `has_answer` markers never leave the loader."""
    return "\n".join(f"{turn['role']}: {turn['content'].strip()}" for turn in turns)


def _session_turns(turns: Any, path: Path, where: str) -> list[dict]:
    if not isinstance(turns, list) or not turns:
        raise InputError(path, where, "expected a non-empty list of turns")
    clean = []
    for t, turn in enumerate(turns):
        twhere = f"{where}[{t}]"
        if not isinstance(turn, dict):
            raise InputError(path, twhere, f"expected a turn object, got {type(turn).__name__}")
        role = _field(turn, "role", str, path, twhere)
        if role not in ("user", "assistant"):
            raise InputError(path, twhere, f"field 'role': {role!r} is not 'user' or 'assistant'")
        clean.append({"role": role, "content": _field(turn, "content", str, path, twhere)})
    return clean


def load_longmemeval(
    path: Path,
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    question_types: list[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    sessions: dict[str, dict] = {}  # one knowledge item per session id
    questions: list[dict] = []
    seen_ids: dict[str, int] = {}
    wanted_types = set(question_types or LONGMEMEVAL_TYPES)
    for index, record in _longmemeval_records(path):
        where = f"record {index}"
        qid = _field(record, "question_id", str, path, where)
        where = f"record {index} ({qid})"
        if qid in seen_ids:
            raise InputError(path, where, f"field 'question_id': duplicate (first at record {seen_ids[qid]})")
        seen_ids[qid] = index
        qtype = _field(record, "question_type", str, path, where)
        if qtype not in LONGMEMEVAL_TYPES:
            raise InputError(path, where, f"field 'question_type': unknown {qtype!r}; expected one of {', '.join(LONGMEMEVAL_TYPES)}")
        question = _field(record, "question", str, path, where)
        answer = record.get("answer")
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)  # the official files hold a few numeric answers
        answer = _field({"answer": answer}, "answer", str, path, where)
        qdate = _field(record, "question_date", str, path, where)
        parse_longmemeval_date(qdate, path, where, "question_date")
        ids = _field(record, "haystack_session_ids", list, path, where)
        dates = _field(record, "haystack_dates", list, path, where)
        haystack = _field(record, "haystack_sessions", list, path, where)
        if not (len(ids) == len(dates) == len(haystack)):
            raise InputError(path, where, f"fields 'haystack_session_ids', 'haystack_dates', 'haystack_sessions': lengths differ ({len(ids)}, {len(dates)}, {len(haystack)})")
        answer_ids = _field(record, "answer_session_ids", list, path, where)
        missing = [sid for sid in answer_ids if sid not in set(ids)]
        if missing:
            raise InputError(path, where, f"field 'answer_session_ids': {missing} not in haystack_session_ids")
        if qtype not in wanted_types:
            continue
        for k, (sid, date, turns) in enumerate(zip(ids, dates, haystack)):
            swhere = f"{where}, haystack_sessions[{k}]"
            if not isinstance(sid, str) or not sid:
                raise InputError(path, swhere, "field 'haystack_session_ids': expected a non-empty string")
            when = parse_longmemeval_date(date, path, swhere, "haystack_dates")
            if sid not in sessions:
                sessions[sid] = {
                    "item_id": sid,
                    "title": session_title(sid, date),
                    "text": render_session(_session_turns(turns, path, swhere)),
                    "date": date,
                    "_when": when,
                }
        questions.append({
            "question_id": qid,
            "question": question,
            "answer": answer,
            "question_type": qtype,
            "item_ids": list(answer_ids),
            "question_date": qdate,
            "abstention": "_abs" in qid,  # as evaluate_qa.py and print_qa_metrics.py test it
            "_haystack": list(ids),
        })
    if not questions:
        raise InputError(path, "", f"no questions of the requested types {sorted(wanted_types)}")
    questions = _subset(questions, limit=limit, sample=sample, seed=seed)
    # Keep only the sessions the kept questions can see, in date order (the
    # oracle file lists haystacks unsorted).
    needed = {sid for q in questions for sid in q.pop("_haystack")}
    docs = sorted(
        (s for s in sessions.values() if s["item_id"] in needed),
        key=lambda s: (s["_when"], s["item_id"]),
    )
    for doc in docs:
        del doc["_when"]
    return docs, assign_distractors(questions, group_of=lambda q: q["question_type"])


def _subset(questions: list[dict], *, limit: int | None, sample: int | None, seed: int) -> list[dict]:
    if limit is not None:
        questions = questions[:limit]
    if sample is not None and sample < len(questions):
        keep = set(random.Random(seed).sample(range(len(questions)), sample))
        questions = [q for i, q in enumerate(questions) if i in keep]
    return questions


# ---------------------------------------------------------------- distractors
_YEAR = re.compile(r"^(1[0-9]|20)\d\d$")
_NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                 "hundred", "thousand", "million", "dozen"}


def answer_kind(answer: str) -> str:
    """A coarse answer type, so a distractor is the same kind of fact: year, number or text."""
    text = answer.strip().lower()
    if _YEAR.match(text):
        return "year"
    if re.search(r"\d", text) or any(w.strip(".,") in _NUMBER_WORDS for w in text.split()):
        return "number"
    return "text"


DISTRACTORS = 3  # wrong answers per question: the margin averages over them, so one odd pick weighs little


def assign_distractors(questions: list[dict], group_of, k: int = DISTRACTORS) -> list[dict]:
    """Give every question up to `k` wrong answers of the same kind from other items: the first questions
    after it (cyclically, in file order) of the same group and answer kind whose items differ, then, if
    too few, of the same group only. `distractor` is the first (the judge's known-wrong control),
    `distractors` all of them. Abstention questions get none (their reference is an explanation, not a
    fact). Deterministic, so every run is scored against the same distractors."""
    candidates = [q for q in questions if not q.get("abstention")]
    n = len(candidates)
    position = {id(q): k for k, q in enumerate(candidates)}
    for question in questions:
        question["distractor"], question["distractors"] = None, []
        if question.get("abstention") or n < 2:
            continue
        start = position[id(question)]
        ring = [candidates[(start + d) % n] for d in range(1, n)]
        other = [q for q in ring if group_of(q) == group_of(question)
                 and not set(q.get("item_ids", [])) & set(question.get("item_ids", []))
                 and q["answer"].strip().lower() != question["answer"].strip().lower()]
        same_kind = [q for q in other if answer_kind(q["answer"]) == answer_kind(question["answer"])]
        picks: list[str] = []
        for q in same_kind + other:
            if len(picks) < k and q["answer"] not in picks:
                picks.append(q["answer"])
        question["distractors"] = picks
        question["distractor"] = picks[0] if picks else None
    return questions


def load_control(path: str | Path) -> list[dict]:
    """The general-knowledge control set: one `{id, question, answer}` per line."""
    path = Path(path)
    questions = []
    for where, qid, record in _identified_lines(path):
        questions.append({"question_id": qid, "question": _field(record, "question", str, path, where),
                          "answer": _field(record, "answer", str, path, where), "question_type": "control",
                          "abstention": False})
    if not questions:
        raise InputError(path, "", "empty file: no records")
    return assign_distractors(questions, group_of=lambda q: "control")


LOADERS = {"wiki_jsonl": load_wiki, "longmemeval": load_longmemeval}


def load_dataset_items(spec: dict) -> int:
    """How many knowledge items a dataset's config entry (`datasets.<name>`) yields, as prepare makes them."""
    options = {k: v for k, v in spec.items() if k in ("limit", "sample", "seed", "question_types") and v is not None}
    return len(LOADERS[spec["format"]](Path(spec["path"]), **options)[0])


def prepare(fmt: str, path: str | Path, docs_out: str | Path, qa_out: str | Path, **options: Any) -> tuple[int, int]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "", "file not found (check datasets.<name>.path in the config)")
    if fmt not in LOADERS:
        raise ValueError(f"unknown dataset format {fmt!r}; known: {sorted(LOADERS)}")
    options = {k: v for k, v in options.items() if v is not None}
    docs, questions = LOADERS[fmt](path, **options)
    return write_jsonl(docs_out, docs), write_jsonl(qa_out, questions)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress prepare")
    parser.description = "load and validate a dataset; write its knowledge items and questions"
    parser.add_argument("--format", required=True, choices=sorted(LOADERS))
    parser.add_argument("--input", required=True, help="dataset file")
    parser.add_argument("--docs", required=True, help="output knowledge items (JSON lines)")
    parser.add_argument("--qa", required=True, help="output questions (JSON lines)")
    parser.add_argument("--options", type=parse_json_arg, default={},
                        help="loader options as JSON (limit, sample, seed, question_types)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    n_docs, n_questions = prepare(args.format, args.input, args.docs, args.qa, **args.options)
    log.info("%s: %d knowledge items, %d questions", args.input, n_docs, n_questions)
