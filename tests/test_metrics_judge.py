import pytest

from lorapress.judge import (
    SCORE_CHOICES, VERDICT_CHOICES, judge_items, longmemeval_prompt, parse_score, parse_verdict, verdict_fields,
    wiki_prompt,
)
from lorapress.metrics import answer_scores, distractor_scores


def test_perfect_answer_scores_full_marks():
    s = answer_scores("Paris", "Paris")
    assert s["exact_match"] == 100 and s["f1"] == 100 and s["rougeL"] == pytest.approx(100)


def test_partial_answer():
    s = answer_scores("The capital is Paris, France", "Paris")
    assert s["exact_match"] == 0
    assert 0 < s["f1"] < 100  # SQuAD token F1: 1 shared token of 4 normalised
    assert s["f1"] == pytest.approx(100 * 2 * (1 / 4) * 1 / (1 / 4 + 1))
    assert s["rouge1"] > 0 and s["bleu"] >= 0


def test_bleu_is_word_level():
    # character-level BLEU would reward the shared letters; word-level does not
    assert answer_scores("Parsi", "Paris")["bleu"] < 5


@pytest.mark.parametrize("reply, score", [
    ("4", 4), (" 5.", 5), ("Score: 3", 3), ("2/5", 2),
    ("4 because it is right", None), ("six", None), ("", None), ("0", None), ("45", None),
])
def test_judge_score_is_parsed_strictly(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply, verdict", [
    ("yes", 1), ("Yes.", 1), ("no", 0), ("NO", 0), ("maybe", None), ("yes and no", 1), ("", None),
])
def test_judge_verdict_is_read_by_the_official_rule(reply, verdict):
    # "yes" anywhere = yes (LongMemEval's evaluate_qa.py); None = neither yes nor no (counted, and wrong)
    assert parse_verdict(reply) == verdict


def test_longmemeval_prompts_differ_by_type():
    args = ("Q?", "A", "P")
    temporal = longmemeval_prompt("temporal-reasoning", False, *args)
    assert "off-by-one" in temporal
    assert "updated" in longmemeval_prompt("knowledge-update", False, *args)
    assert "rubric" in longmemeval_prompt("single-session-preference", False, *args)
    assert "unanswerable" in longmemeval_prompt("multi-session", True, *args)
    assert "(no answer)" in wiki_prompt("Q?", "A", "")


def test_graded_answer_comes_last_so_a_questions_judgements_share_their_prefix():
    first, second = wiki_prompt("Q?", "A", "one answer"), wiki_prompt("Q?", "A", "another answer")
    shared = len(first) - len("one answer")
    assert first[:shared] == second[:shared] and first.endswith("one answer")


def test_verdicts_carry_the_argmax_and_the_probability_weighted_score():
    wiki = verdict_fields("wiki", "4", {"1": 0.1, "2": 0.0, "3": 0.2, "4": 0.5, "5": 0.2})
    assert wiki["judge_score"] == 4 and wiki["judge_expected"] == pytest.approx(0.1 + 0.6 + 2.0 + 1.0)
    lme = verdict_fields("temporal-reasoning", "no", {"yes": 0.3, "no": 0.7})
    assert lme == {"judge_correct": 0, "judge_p_yes": 0.3, "judge_unparsed": False}
    assert verdict_fields("wiki", "four", None) == {"judge_score": None, "judge_expected": None,
                                                   "judge_unparsed": True}


class Choosing:
    """A judge engine that prefers a fixed choice; records what it was asked (a test double for `choose`)."""

    def __init__(self, prefer):
        self.prefer, self.calls = prefer, []

    def choose(self, conversations, choices, *, adapters=None, groups=None, spellings=False):
        self.calls.append((len(conversations), tuple(choices), groups))
        return [{c: (0.9 if c == self.prefer(c, choices) else 0.1 / (len(choices) - 1)) for c in choices}
                for _ in conversations]


def test_constrained_judging_never_leaves_a_verdict_unparsed():
    items = [({"question_id": "w1", "question": "Q?", "answer": "A", "question_type": "wiki"}, "A"),
             ({"question_id": "l1", "question": "Q?", "answer": "A", "question_type": "knowledge-update"}, "B")]
    judge = Choosing(lambda c, choices: "5" if choices == list(SCORE_CHOICES) else "no")
    verdicts = judge_items(judge, items, constrained=True, max_tokens=8)
    assert verdicts[0]["judge_score"] == 5 and verdicts[1]["judge_correct"] == 0
    assert [c[1] for c in judge.calls] == [SCORE_CHOICES, VERDICT_CHOICES] and judge.calls[0][2] == ["w1"]


def test_distractor_scores_average_the_distractors():
    scores = distractor_scores([[-1.0, -1.0], [-3.0], [-0.5, -1.5], [-2.0]])
    assert scores == {"answer_loglik": -1.0, "distractor_loglik": pytest.approx(-2.0), "distractors_beaten": 2 / 3}
    assert distractor_scores([[-1.0]]) == {"answer_loglik": -1.0, "distractor_loglik": None, "distractors_beaten": None}
