import json
from pathlib import Path

import pytest

from lorapress.io import InputError, read_jsonl
from lorapress.prepare import LONGMEMEVAL_TYPES, load_longmemeval, load_wiki, prepare

from conftest import REPO, lme_record, wiki_record, write_jsonl


# ---------------------------------------------------------------- committed samples
def test_wiki_sample_meets_the_documented_shape():
    docs, questions = load_wiki(REPO / "data/wiki/sample.jsonl")
    assert len(docs) >= 24
    per_item = {}
    for q in questions:
        per_item[q["item_ids"][0]] = per_item.get(q["item_ids"][0], 0) + 1
    assert min(per_item.values()) >= 3 and set(per_item) == {d["item_id"] for d in docs}
    assert all("date" in d and "source" in d for d in docs)  # optional fields kept through


def test_longmemeval_sample_covers_all_types_and_abstention():
    docs, questions = load_longmemeval(REPO / "data/longmemeval/sample.json")
    assert {q["question_type"] for q in questions} == set(LONGMEMEVAL_TYPES)
    assert len(questions) >= 12
    assert sum(q["abstention"] for q in questions) >= 2
    assert all(q["question_id"].endswith("_abs") == q["abstention"] for q in questions)


# ---------------------------------------------------------------- longmemeval rules
def test_sessions_are_deduplicated_sorted_by_date_and_stripped_of_has_answer(tmp_path):
    first = lme_record("q1")
    second = lme_record("q2", question_type="temporal-reasoning",
                        haystack_session_ids=["s1", "s3"],
                        haystack_dates=["2023/05/02 (Tue) 08:30", "2023/04/01 (Sat) 12:00"],
                        haystack_sessions=[first["haystack_sessions"][1],
                                           [{"role": "user", "content": "I ran 5K in 28:30.", "has_answer": True}]],
                        answer_session_ids=["s3"])
    path = tmp_path / "lme.json"
    path.write_text(json.dumps([first, second]))
    docs, questions = load_longmemeval(path)
    assert [d["item_id"] for d in docs] == ["s3", "s1", "s2"]  # one item per session id, date order
    assert all("has_answer" not in d["text"] and "True" not in d["text"] for d in docs)
    assert docs[2]["text"].splitlines()[0] == "user: I adopted a cat called Miso."
    # the dated header is the item's title: compression rewrites only the text, so every variant keeps the date
    assert docs[2]["title"] == "Chat session s2 on 2023/05/20 (Sat) 09:00" and "2023/05/20" not in docs[2]["text"]
    assert questions[0]["item_ids"] == ["s2"]


def test_distractors_are_another_items_answer_of_the_same_kind():
    from lorapress.prepare import answer_kind, assign_distractors

    assert [answer_kind(a) for a in ("1897", "4,812", "Seven", "About 650", "Albrecht Summerfield")] == \
        ["year", "number", "number", "number", "text"]
    questions = [{"question_id": f"q{i}", "answer": a, "item_ids": [f"a{i // 2}"]}
                 for i, a in enumerate(["1897", "Ada", "1342", "Ben", "Seven", "1911"])]
    assign_distractors(questions, group_of=lambda q: "wiki", k=1)
    # q4 ("Seven") has no other number of another item: it falls back to the next other item's answer
    assert [q["distractor"] for q in questions] == ["1342", "Ben", "1911", "Ada", "1897", "1897"]
    assign_distractors(questions, group_of=lambda q: "wiki", k=3)
    # same kind first, then any other item's answer; never the question's own item
    assert questions[0]["distractors"] == ["1342", "1911", "Ben"] and questions[0]["distractor"] == "1342"
    assert questions[4]["distractors"] == ["1897", "Ada", "1342"]


def test_abstention_questions_get_no_distractor(tmp_path):
    path = tmp_path / "lme.json"
    path.write_text(json.dumps([lme_record("q1"), lme_record("q2_abs"), lme_record("q3", answer="Tofu",
                                haystack_session_ids=["s9", "s1"], answer_session_ids=["s9"])]))
    _, questions = load_longmemeval(path)
    by_id = {q["question_id"]: q for q in questions}
    assert by_id["q2_abs"]["distractor"] is None and by_id["q1"]["distractor"] == "Tofu"


def test_abstention_keeps_its_type(tmp_path):
    path = tmp_path / "lme.json"
    path.write_text(json.dumps([lme_record("q9_abs", question_type="multi-session")]))
    _, questions = load_longmemeval(path)
    assert questions[0]["abstention"] is True and questions[0]["question_type"] == "multi-session"


def test_limit_sample_and_types(tmp_path):
    records = [lme_record(f"q{i}", question_type=LONGMEMEVAL_TYPES[i % 6]) for i in range(12)]
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(records))
    assert [q["question_id"] for q in load_longmemeval(path, limit=3)[1]] == ["q0", "q1", "q2"]
    sampled = [q["question_id"] for q in load_longmemeval(path, sample=4, seed=7)[1]]
    assert len(sampled) == 4 and sampled == [q["question_id"] for q in load_longmemeval(path, sample=4, seed=7)[1]]
    typed = load_longmemeval(path, question_types=["knowledge-update"])[1]
    assert {q["question_type"] for q in typed} == {"knowledge-update"} and len(typed) == 2


# ---------------------------------------------------------------- bad input: one clear line
def _wiki_file(tmp_path, lines: list[str] | bytes) -> Path:
    path = tmp_path / "wiki.jsonl"
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n")
    return path


GOOD = json.dumps(wiki_record(1))


@pytest.mark.parametrize("lines, where, message", [
    ([GOOD, '{"id": "a2", "title": '], "line 2", "malformed JSON"),
    ([GOOD, json.dumps(wiki_record(2, text=""))], "line 2", "field 'text': empty"),
    ([json.dumps({k: v for k, v in wiki_record(1).items() if k != "title"})], "line 1", "field 'title': missing"),
    ([json.dumps(wiki_record(1, questions="none"))], "line 1", "field 'questions': expected list"),
    ([json.dumps(wiki_record(1, id=7))], "line 1", "field 'id': expected str"),
    ([GOOD, GOOD], "line 2", "field 'id': duplicate 'a1'"),
    ([json.dumps(wiki_record(1, questions=[{"question": "Q?"}]))], "line 1, questions[0]", "field 'answer': missing"),
    ([GOOD, "[1, 2]"], "line 2", "expected a JSON object"),
])
def test_wiki_bad_input(tmp_path, lines, where, message):
    path = _wiki_file(tmp_path, lines)
    with pytest.raises(InputError) as err:
        load_wiki(path)
    assert err.value.where == where and message in err.value.message
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_wiki_not_utf8(tmp_path):
    path = _wiki_file(tmp_path, GOOD.encode() + b"\n" + json.dumps(wiki_record(2)).encode().replace(b"town", b"t\xffwn"))
    with pytest.raises(InputError, match=r"line 2: not UTF-8"):
        load_wiki(path)


def test_wiki_empty_file(tmp_path):
    with pytest.raises(InputError, match="empty file"):
        load_wiki(_wiki_file(tmp_path, b""))


def _lme_file(tmp_path, content) -> Path:
    path = tmp_path / "lme.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("records, where, message", [
    ([lme_record("q1"), lme_record("q1")], "record 1 (q1)", "field 'question_id': duplicate"),
    ([lme_record("q1", question_type="multi-hop")], "record 0 (q1)", "field 'question_type': unknown 'multi-hop'"),
    ([lme_record("q1", answer_session_ids=["s9"])], "record 0 (q1)", "field 'answer_session_ids': ['s9'] not in"),
    ([lme_record("q1", question_date="30.05.2023")], "record 0 (q1)", "field 'question_date'"),
    ([lme_record("q1", haystack_dates=["2023/05/20 (Sat) 09:00"])], "record 0 (q1)", "lengths differ"),
    ([{k: v for k, v in lme_record("q1").items() if k != "question"}], "record 0 (q1)", "field 'question': missing"),
    ([lme_record("q1", question=["not", "text"])], "record 0 (q1)", "field 'question': expected str"),
    ([lme_record("q1", haystack_sessions=[[{"role": "user", "content": ""}], []])], "record 0 (q1), haystack_sessions[0][0]", "field 'content': empty"),
])
def test_longmemeval_bad_input(tmp_path, records, where, message):
    path = _lme_file(tmp_path, records)
    with pytest.raises(InputError) as err:
        load_longmemeval(path)
    assert err.value.where == where and message in err.value.message


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    ("[]", "empty array"),
    ('{"question_id": "q1"}', "expected a JSON array"),
    (json.dumps([lme_record("q1"), lme_record("q2")])[:-200], "truncated"),
    (json.dumps([lme_record("q1")]).encode().replace(b"Miso", b"Mi\xffso"), "not UTF-8"),
])
def test_longmemeval_broken_files(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        load_longmemeval(_lme_file(tmp_path, content))


def test_prepare_writes_nothing_on_bad_input(tmp_path):
    bad = _wiki_file(tmp_path, [GOOD, "{"])
    out = tmp_path / "results"
    with pytest.raises(InputError):
        prepare("wiki_jsonl", bad, out / "docs.jsonl", out / "qa.jsonl")
    assert not out.exists() or not any(out.iterdir())


def test_prepare_writes_docs_and_questions(tmp_path):
    src = write_jsonl(tmp_path / "w.jsonl", [wiki_record(1), wiki_record(2, date="2024-01-01")])
    n_docs, n_q = prepare("wiki_jsonl", src, tmp_path / "d.jsonl", tmp_path / "q.jsonl")
    assert (n_docs, n_q) == (2, 2)
    assert read_jsonl(tmp_path / "d.jsonl")[1]["date"] == "2024-01-01"
    assert read_jsonl(tmp_path / "q.jsonl")[0] == {
        "question_id": "a1-q1", "question": "When was Article 1 founded?", "answer": "1801",
        "question_type": "wiki", "item_ids": ["a1"], "abstention": False, "distractor": "1802",
        "distractors": ["1802"]}


def test_control_set_loads_and_rejects_duplicates(tmp_path):
    from lorapress.prepare import load_control

    assert len(load_control(REPO / "data/control/general.jsonl")) >= 10
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "c1", "question": "Q?", "answer": "A"}] * 2)
    with pytest.raises(InputError, match="line 2: field 'id': duplicate 'c1'"):
        load_control(path)
