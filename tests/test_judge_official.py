"""LongMemEval judging checked against the benchmark's official evaluation (xiaowu0162/LongMemEval, commit 9e0b455:
src/evaluation/evaluate_qa.py and print_qa_metrics.py), transcribed here in our own code, never copied.

No capable judge runs here (the embedded 135M model cannot judge): the case table records the verdict the official
criterion gives each answer by its wording, and these tests pin that our prompt states the criterion that decides
it while the old wording did not. `test_cases_graded_by_a_real_judge` grades the cases with a judge you name.
"""

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lorapress.aggregate import judge_identity, question_scores, run_metrics, task_average_note
from lorapress.endpoint import choice_probs
from lorapress.engine import _Base, logsumexp
from lorapress.io import StageError
from lorapress.judge import (
    LME_TYPES, Templates, judge_items, load_templates, longmemeval_prompt, official_verdict, parse_verdict,
    templates_from_source, verdict_fields,
)
from lorapress.judge import judge_identity as identity_of

CASES = [json.loads(line) for line in
         (Path(__file__).parent / "data/longmemeval_judge_cases.jsonl").read_text().splitlines()]

# The criteria before issue #18, kept to show the tests fail on them.
_OLD_BASE = """You check whether a chat assistant answered a question correctly. {criterion} Reply with yes or no only.
Question: {question}
Correct answer: {reference}
Assistant's response: {prediction}"""
OLD_CRITERIA = {
    "default": "Say yes if the response gives the correct answer, or something equivalent to it, or all the steps that lead to it. Say no if it gives only part of the required information or a different answer.",
    "temporal-reasoning": "Say yes if the response gives the correct answer or something equivalent to it. When the answer counts days, weeks or months, a response that is off by one still counts as correct. Otherwise say no.",
    "knowledge-update": "Say yes if the response gives the updated, correct answer; mentioning older information as well is fine as long as the updated answer is the one given. Otherwise say no.",
    "single-session-preference": "The correct answer is a rubric describing what the user would want. Say yes if the response follows the rubric, using the user's personal information correctly; it need not mention every point. Otherwise say no.",
    "abstention": "This question cannot be answered from the user's history. Say yes if the response says the information is not available or declines to answer; say no if it gives an answer.",
}


def old_prompt(case):
    key = "abstention" if case["abstention"] else (case["question_type"] if case["question_type"] in OLD_CRITERIA
                                                   else "default")
    return _OLD_BASE.format(criterion=OLD_CRITERIA[key], question=case["question"], reference=case["answer"],
                            prediction=case["response"])


def new_prompt(case, templates=None):
    return longmemeval_prompt(case["question_type"], case["abstention"], case["question"], case["answer"],
                              case["response"], templates)


def test_the_case_table_covers_every_official_template():
    covered = {("abstention" if c["abstention"] else c["question_type"]) for c in CASES}
    assert covered >= {*LME_TYPES, "abstention"}
    assert all(c["official"] in ("yes", "no") and c["decided_by"] and c["why"] for c in CASES)
    # the differences the issue names: a hedged answer, a count off by one, personal facts without every rubric
    # point, a bare refusal
    assert {"ssu_hedged", "tr_off_by_one_years", "ssp_personal_not_rubric", "abs_bare_refusal"} <= {c["id"] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_our_prompt_states_the_official_criterion_that_decides_each_case(case):
    prompt = new_prompt(case).lower()
    for phrase in case["decided_by"]:
        assert phrase.lower() in prompt, f"{case['id']}: the prompt should say {phrase!r}"
    for phrase in case["old_decided_by"]:  # what decided the old verdict is gone
        assert phrase.lower() not in prompt, f"{case['id']}: the prompt still says {phrase!r}"


@pytest.mark.parametrize("case", [c for c in CASES if c["old"] != c["official"]],
                         ids=[c["id"] for c in CASES if c["old"] != c["official"]])
def test_the_old_wording_lacked_the_deciding_criterion(case):
    old = old_prompt(case).lower()
    assert any(p.lower() not in old for p in case["decided_by"])
    assert all(p.lower() in old for p in case["old_decided_by"])


def test_references_are_named_as_the_official_templates_name_them():
    assert "\nRubric: " in longmemeval_prompt("single-session-preference", False, "Q?", "R", "P")
    assert "\nExplanation: " in longmemeval_prompt("knowledge-update", True, "Q?", "E", "P")
    assert "\nCorrect answer: " in longmemeval_prompt("multi-session", False, "Q?", "A", "P")


# ---------------------------------------------------------------- the official rule on free text
@pytest.mark.parametrize("reply, verdict, unparsed", [
    ("yes", 1, False), ("Yes, it is correct.", 1, False), ("The answer is yes", 1, False), ("YES", 1, False),
    ("no", 0, False), ("No.", 0, False), ("Yes and no", 1, False),  # "yes" occurs: the official rule says yes
    ("I cannot tell", 0, True), ("", 0, True), ("4", 0, True),
])
def test_free_text_verdicts_follow_the_official_rule(reply, verdict, unparsed):
    assert official_verdict(reply) == verdict == int("yes" in reply.lower())  # evaluate_qa.py's reading
    fields = verdict_fields("multi-session", reply, None)
    assert fields["judge_correct"] == verdict and fields["judge_unparsed"] == unparsed
    assert parse_verdict(reply) == (None if unparsed else verdict)


# ---------------------------------------------------------------- the constrained choice over every spelling
class FakeTokenizer:
    texts = ["yes", " Yes", "YES", "\nyes", "no", " No", "yesterday", "nope", " maybe", "Yes."]

    def __len__(self):
        return len(self.texts)

    def batch_decode(self, ids):
        return [self.texts[i[0]] for i in ids]


class FakeEngine(_Base):
    """`choose` on fixed next-token log-probabilities (no model): what the spelling classes sum."""

    def __init__(self, logprobs):
        self.tokenizer, self.logprobs, self.asked = FakeTokenizer(), logprobs, []

    def prompt_ids(self, conversation):
        return [0]

    def _next_token_logprobs(self, prompts, token_ids, adapters, groups=None):
        self.asked.append(list(token_ids))
        return [[self.logprobs[t] for t in token_ids] for _ in prompts]


def test_the_constrained_verdict_sums_every_spelling_of_yes_and_of_no():
    # lowercase "no" alone beats lowercase "yes" alone, but the model's yes is spelt "Yes" / " Yes" mostly
    lp = [math.log(p) for p in (0.05, 0.30, 0.02, 0.01, 0.10, 0.04, 0.2, 0.1, 0.1, 0.08)]
    engine = FakeEngine(lp)
    assert engine.spelling_ids("yes") == [0, 1, 2, 3] and engine.spelling_ids("no") == [4, 5]
    probs = engine.choose([[{"role": "user", "content": "?"}]], ["yes", "no"], spellings=True)[0]
    assert engine.asked == [[0, 1, 2, 3, 4, 5]]  # "yesterday", "nope", "Yes." are no spelling of either
    assert probs["yes"] == pytest.approx(0.38 / 0.52) and max(probs, key=probs.get) == "yes"
    # the old rule read lowercase "yes" (0.05) against "no" (0.10) alone: the verdict would have been no


def test_logsumexp_is_the_log_of_summed_probabilities():
    assert logsumexp([math.log(0.2), math.log(0.3)]) == pytest.approx(math.log(0.5))
    assert logsumexp([-math.inf, -math.inf]) == -math.inf


def test_the_endpoint_sums_its_top_log_probabilities_per_class():
    top = [("Yes", math.log(0.5)), (" yes", math.log(0.2)), ("No", math.log(0.25)), ("Maybe", math.log(0.05))]
    probs = choice_probs("Yes", top, ("yes", "no"), spellings=True)
    assert probs == {"yes": pytest.approx(0.7 / 0.95), "no": pytest.approx(0.25 / 0.95)}
    assert choice_probs("maybe", top, ("yes", "no"), spellings=True) == {}  # kept to no choice: unparsed
    assert choice_probs("4", [("4", 0.0), (" 4", -1.0)], ("1", "2", "3", "4", "5"), spellings=False)["4"] == 1.0


class Choosing:
    def __init__(self, probs):
        self.probs, self.calls = probs, []

    def choose(self, conversations, choices, *, adapters=None, groups=None, spellings=False):
        self.calls.append((tuple(choices), spellings))
        return [dict(self.probs) for _ in conversations]


def test_judge_items_asks_for_spellings_on_verdicts_only_and_counts_a_lost_verdict_as_wrong():
    items = [({"question_id": "w", "question": "Q?", "answer": "A", "question_type": "wiki"}, "A"),
             ({"question_id": "l", "question": "Q?", "answer": "A", "question_type": "multi-session"}, "B")]
    judge = Choosing({})  # an endpoint that kept to no choice
    wiki, lme = judge_items(judge, items, constrained=True, max_tokens=8)
    assert judge.calls == [(("1", "2", "3", "4", "5"), False), (("yes", "no"), True)]
    assert lme["judge_correct"] == 0 and lme["judge_unparsed"] and wiki["judge_score"] is None and wiki["judge_unparsed"]


# ---------------------------------------------------------------- verbatim templates (judge.templates)
SYNTHETIC_EVALUATE_QA = '''
import json
model_zoo = {"x": ("y", "openai")}

def get_anscheck_prompt(task, question, answer, response, abstention=False):
    if not abstention:
        if task in ['single-session-user', 'single-session-assistant', 'multi-session']:
            template = "PLAIN {} {{not a field}} Q={} A={} R={}."
            prompt = template.format(question, answer, response)
        elif task == 'temporal-reasoning':
            template = "TEMPORAL Q={}\\nA={}\\nR={}"
            prompt = template.format(question, answer, response)
        elif task == 'knowledge-update':
            template = "UPDATE Q={} A={} R={}"
            prompt = template.format(question, answer, response)
        elif task == 'single-session-preference':
            template = "PREF Q={} Rubric={} R={}"
            prompt = template.format(question, answer, response)
        else:
            raise NotImplementedError
    else:
        template = "ABS Q={} E={} R={}"
        prompt = template.format(question, answer, response)
    return prompt

if __name__ == '__main__':
    raise SystemExit('never executed')
'''


def test_an_evaluate_qa_py_is_read_with_ast_and_used_as_written(tmp_path):
    source = SYNTHETIC_EVALUATE_QA.replace("PLAIN {} {{not a field}} Q={}", "PLAIN {{not a field}} Q={}")
    path = tmp_path / "evaluate_qa.py"
    path.write_text(source)
    templates = load_templates(path)
    assert set(templates.templates) == {*LME_TYPES, "abstention"}
    assert templates.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    prompt = longmemeval_prompt("multi-session", False, "q?", "a", "r", templates)
    assert prompt == "PLAIN {not a field} Q=q? A=a R=r."  # as str.format on the original gives
    assert longmemeval_prompt("temporal-reasoning", False, "q?", "a", "", templates) == "TEMPORAL Q=q?\nA=a\nR="
    assert longmemeval_prompt("knowledge-update", True, "q?", "e", "r", templates) == "ABS Q=q? E=e R=r"
    with pytest.raises(StageError, match="no judge template for 'wiki-ish'"):
        longmemeval_prompt("wiki-ish", False, "q?", "a", "r", templates)


def test_the_positional_order_follows_the_format_call(tmp_path):
    source = SYNTHETIC_EVALUATE_QA.replace("PLAIN {} {{not a field}} Q={} A={} R={}.", "R={} Q={} A={}").replace(
        "prompt = template.format(question, answer, response)\n        elif task == 'temporal",
        "prompt = template.format(response, question, answer)\n        elif task == 'temporal", 1)
    templates = templates_from_source(source, "x.py")
    assert templates["single-session-user"] == "R={response} Q={question} A={answer}"


def test_the_official_file_shape_is_what_the_parser_reads():
    """The official evaluate_qa.py when a checkout is at hand (LONGMEMEVAL_EVALUATE_QA=path), else skipped."""
    path = os.environ.get("LONGMEMEVAL_EVALUATE_QA")
    if not path:
        pytest.skip("set LONGMEMEVAL_EVALUATE_QA to a checkout's src/evaluation/evaluate_qa.py")
    templates = load_templates(path)
    assert set(templates.templates) == {*LME_TYPES, "abstention"}
    assert "contains the correct answer" in templates.templates["multi-session"]
    assert "off-by-one" in templates.templates["temporal-reasoning"]


def test_a_yaml_templates_file(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text("default: 'D {question} | {answer} | {response}'\nabstention: 'A {question} {answer} {response}'\n")
    templates = load_templates(path)
    assert longmemeval_prompt("multi-session", False, "q", "a", "r", templates) == "D q | a | r"
    path.write_text("default: 'D {question} {answer} {reply}'\n")
    with pytest.raises(StageError, match="templates.yaml: template 'default': placeholders"):
        load_templates(path)
    with pytest.raises(StageError, match="judge.templates: .*missing.py does not exist"):
        load_templates(tmp_path / "missing.py")


def test_the_verdicts_provenance_names_the_judge_and_the_templates():
    templates = Templates({"default": "{question}{answer}{response}"}, "t.yaml", "ab" * 32)
    base = identity_of({"model": "base"}, ["resources/models/x", "builtin:x"], None)
    assert base == {"model": "base", "self_judge": True, "templates_sha256": None,
                    "criteria": "lorapress wording, official meaning"}
    same = identity_of({"model": "openai:Qwen/Qwen3-8B"}, ["Qwen/Qwen3-8B", "Qwen/Qwen3-8B"], templates)
    assert same["self_judge"] and same["templates_sha256"] == "ab" * 32
    assert not identity_of({"model": "openai:gpt-4o-2024-08-06"}, ["Qwen/Qwen3-8B", None], None)["self_judge"]
    metas = [{"judge": same}, {"judge": same}]
    assert judge_identity(metas, "lme") == same and judge_identity([{}], "lme") is None
    with pytest.raises(StageError, match="lme: verdicts graded by different judges"):
        judge_identity([{"judge": same}, {"judge": base}], "lme")


# ---------------------------------------------------------------- the official metrics, transcribed
def official_metrics(labels: dict[str, bool], question_type: dict[str, str]) -> dict[str, float]:
    """print_qa_metrics.py's arithmetic: every judged question in its type's list (`_abs` ones too), abstention
    over the ids holding `_abs`, task-averaged = mean of the six type means (NaN when one is empty, as np.mean of
    an empty list), overall = mean over every question; fractions, as the script prints them."""
    type2acc = {t: [] for t in LME_TYPES}
    abstention = []
    for qid, label in labels.items():
        type2acc[question_type[qid]].append(1 if label else 0)
        if "_abs" in qid:
            abstention.append(1 if label else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.mean([]) of a missing type: NaN, as the script gets
        task = [np.mean(v) for v in type2acc.values()]
    every = [x for v in type2acc.values() for x in v]
    out = {f"judge_accuracy[{t}]": np.mean(v) for t, v in type2acc.items() if v}
    out["judge_task_avg_accuracy"] = float(np.mean(task))
    out["judge_accuracy"] = float(np.mean(every))
    if abstention:
        out["judge_abstention_accuracy"] = float(np.mean(abstention))
    return out


REPLIES = ["yes", "Yes, it is correct.", "The answer is yes", "no", "No.", "", "I cannot tell", "YES", "no, not yes"]


def lorapress_metrics(questions: pd.DataFrame, replies: dict[str, str]) -> dict[str, float]:
    """The same replies through lorapress: verdict_fields (the judge), then question_scores + run_metrics."""
    verdicts = pd.DataFrame([{"run_id": "baseline", "question_id": q, **verdict_fields(t, replies[q], None)}
                             for q, t in zip(questions["question_id"], questions["question_type"])])
    answers = questions.assign(run_id="baseline", question_set="dataset", truncated=False, answer_loglik=-1.0,
                               distractor_loglik=-2.0, distractors_beaten=1.0, f1=0.0)
    qs = question_scores(answers, verdicts, "longmemeval")
    return {m: v / 100 for m, v, _ in run_metrics(qs)
            if m.startswith("judge_accuracy") or m in ("judge_task_avg_accuracy", "judge_abstention_accuracy")}


def synthetic_questions(rng, types, n_per_type=7):
    rows = []
    for t in types:
        for k in range(n_per_type):
            qid = f"q{LME_TYPES.index(t)}_{k:02d}" + ("_abs" if k % 3 == 0 and t != "single-session-preference" else "")
            rows.append({"question_id": qid, "question_type": t, "abstention": "_abs" in qid})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("types", [LME_TYPES, LME_TYPES[:4]], ids=["all six types", "four types"])
def test_lorapress_aggregation_equals_the_official_metrics(types):
    rng = np.random.default_rng(18)
    questions = synthetic_questions(rng, types)
    replies = {q: REPLIES[rng.integers(len(REPLIES))] for q in questions["question_id"]}
    ours = lorapress_metrics(questions, replies)
    official = official_metrics({q: "yes" in r.lower() for q, r in replies.items()},
                                dict(zip(questions["question_id"], questions["question_type"])))
    assert set(ours) == set(official)
    for metric, value in official.items():
        if math.isnan(value):
            assert math.isnan(ours[metric]), metric  # task-averaged: not available with a type missing
        else:
            assert ours[metric] == pytest.approx(value, abs=1e-12), metric


def test_unparsed_replies_count_as_wrong_and_are_reported():
    questions = pd.DataFrame({"question_id": ["a", "b", "c", "d"], "question_type": "multi-session",
                              "abstention": False})
    replies = {"a": "yes", "b": "I cannot tell", "c": "", "d": "no"}
    verdicts = pd.DataFrame([{"run_id": "baseline", "question_id": q, **verdict_fields("multi-session", r, None)}
                             for q, r in replies.items()])
    answers = questions.assign(run_id="baseline", question_set="dataset", truncated=False, answer_loglik=-1.0,
                               distractor_loglik=-2.0, distractors_beaten=1.0)
    metrics = {m: (v, n) for m, v, n in run_metrics(question_scores(answers, verdicts, "longmemeval"))}
    assert metrics["judge_accuracy"] == (25.0, 4)  # 1 of 4, not 1 of 2
    assert metrics["judge_unparsed_pct"] == (50.0, 4)


def test_task_average_says_which_types_are_present():
    note = task_average_note(["multi-session", "temporal-reasoning", "multi-session"])
    assert not note["available"] and note["types_present"] == ["multi-session", "temporal-reasoning"]
    assert note["note"].startswith("not available: single-session-user, single-session-assistant")
    assert task_average_note(LME_TYPES)["available"]


# ---------------------------------------------------------------- opt-in: a real judge grades the cases
def test_cases_graded_by_a_real_judge():
    """LORAPRESS_TEST_JUDGE=openai:MODEL (LORAPRESS_TEST_JUDGE_URL, key in $OPENAI_API_KEY): our prompts through
    that judge, read by the official rule, must give the recorded official verdicts. Skipped by default."""
    name = os.environ.get("LORAPRESS_TEST_JUDGE")
    if not name:
        pytest.skip("set LORAPRESS_TEST_JUDGE=openai:MODEL to grade the cases with a capable judge")
    from lorapress.endpoint import EndpointJudge

    judge = EndpointJudge(name, os.environ.get("LORAPRESS_TEST_JUDGE_URL"), "OPENAI_API_KEY")
    replies = judge.generate([[{"role": "user", "content": new_prompt(c)}] for c in CASES], max_tokens=10)
    got = {c["id"]: "yes" if official_verdict(r.text) else "no" for c, r in zip(CASES, replies)}
    assert got == {c["id"]: c["official"] for c in CASES}


# ---------------------------------------------------------------- the report names the judge
def test_the_report_names_the_judge_and_labels_a_self_judge_everywhere():
    from lorapress import report

    scores = pd.DataFrame([{"dataset": "lme", "experiment": "compression", "condition": "baseline", "rank": 0,
                            "items": 0, "seed": 0, "metric": m, "value": v, "n": 3}
                           for m, v in (("judge_accuracy", 50.0), ("judge_accuracy[multi-session]", 50.0),
                                        ("judge_task_avg_accuracy", float("nan")), ("judge_unparsed_pct", 0.0))])
    note = task_average_note(["multi-session"])
    self_judge = {"model": "base", "self_judge": True, "templates_sha256": None,
                  "criteria": "lorapress wording, official meaning"}
    summary = {"datasets": {"lme": {"judge": self_judge, "task_average": note}}}
    try:
        report.mark_judge(summary)
        page = report.judge_section(scores, summary)
        assert report.label("judge_accuracy").endswith("[self-judge]") and report.label("f1") == "token F1 (0-100)"
        assert "Graded by self-judge (base: the model under test grades its own answers)" in page
        assert "<td>self-judge</td>" in page and "judge_task_avg_accuracy" in page
        assert "not available: single-session-user" in page
        other = {"datasets": {"lme": {"judge": {**self_judge, "model": "openai:gpt-4o-2024-08-06",
                                                "self_judge": False, "templates_sha256": "0" * 64}}}}
        report.mark_judge(other)
        page = report.judge_section(scores, other)
        assert "self-judge" not in page and "not the model under test" in page and "templates as written" in page
        assert "[self-judge]" not in report.label("judge_accuracy")
    finally:
        report.mark_judge({})


# ---------------------------------------------------------------- the judge command: templates and provenance
class Replying:
    """An unconstrained judge that answers a fixed free-text reply and records the prompts it saw."""

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, conversations, *, max_tokens):
        from lorapress.engine import Generation

        self.prompts += [c[0]["content"] for c in conversations]
        return [Generation(self.reply, "stop", 3) for _ in conversations]

    def close(self):
        pass


def test_the_judge_command_uses_the_templates_and_records_their_hash(tmp_path, monkeypatch):
    from lorapress import judge as judge_module

    templates = tmp_path / "templates.yaml"
    templates.write_text("default: 'Q={question} A={answer} R={response} ok?'\nabstention: 'ABS {question} {answer} {response}'\n")
    sha = hashlib.sha256(templates.read_bytes()).hexdigest()
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"run_id": "baseline", "question_set": "dataset", "question_id": "q1",
                                   "question": "Where?", "reference": "Paris", "prediction": "Paris, or Lyon",
                                   "question_type": "multi-session", "abstention": False}) + "\n")
    fake = Replying("Yes, it is correct.")
    monkeypatch.setattr(judge_module, "open_judge", lambda *a, **k: fake)
    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # main() sets them: restored after the test
    settings = {"model": "openai:gpt-4o-2024-08-06", "base_url": "https://api.openai.com/v1", "constrained": False,
                "max_tokens": 10, "templates": str(templates), "templates_sha256": sha}
    engine = {"dtype": "float32", "backend": "transformers", "model_config": {"max_model_len": 512,
              "trust_remote_code": False, "chat_template_kwargs": {}}, "generation": {"seed": 0, "max_num_seqs": 4}}
    args = ["--answers", str(answers), "--judge", json.dumps(settings), "--model", "resources/models/x",
            "--base-id", "Qwen/Qwen3-8B", "--engine", json.dumps(engine), "--out", str(tmp_path / "v.jsonl"),
            "--meta", str(tmp_path / "v.meta.json")]
    judge_module.main(args)
    assert fake.prompts == ["Q=Where? A=Paris R=Paris, or Lyon ok?"]
    verdict = json.loads((tmp_path / "v.jsonl").read_text())
    assert verdict["judge_correct"] == 1 and not verdict["judge_unparsed"]  # the official rule reads this as yes
    meta = json.loads((tmp_path / "v.meta.json").read_text())
    assert meta["judge"] == {"model": "openai:gpt-4o-2024-08-06", "self_judge": False, "templates_sha256": sha,
                             "criteria": "verbatim templates"}
    templates.write_text(templates.read_text() + "# edited\n")
    with pytest.raises(StageError, match="templates.yaml: sha256 .* differs from the planned"):
        judge_module.main(args)


def test_an_unparsed_control_verdict_is_never_right():
    from lorapress.diagnostics import control_outcomes

    verdicts = pd.DataFrame([
        {"question_id": "a", "question_type": "multi-session", "control": "reference", "judge_correct": 1,
         "judge_unparsed": False},
        {"question_id": "a", "question_type": "multi-session", "control": "wrong", "judge_correct": 0,
         "judge_unparsed": True},  # read as no, it would have 'rejected' the wrong answer
        {"question_id": "w", "question_type": "wiki", "control": "wrong", "judge_score": None, "judge_unparsed": True},
    ])
    out = control_outcomes(verdicts)
    assert out["right"].tolist() == [1.0, 0.0, 0.0] and out["unparsed"].tolist() == [False, True, True]


def test_the_answers_table_says_who_graded():
    from lorapress import report

    summary = {"datasets": {"lme": {"metrics": [], "judge": {"model": "base", "self_judge": True,
                                                              "templates_sha256": None}}}}
    assert "graded by self-judge (base)" in report.answers_section(summary)
