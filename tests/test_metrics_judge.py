import pytest

from lorapress.judge import (
    SCORE_CHOICES, VERDICT_CHOICES, judge_items, longmemeval_prompt, parse_score, parse_verdict, verdict_fields,
    wiki_prompt,
)
from lorapress.metrics import answer_scores, distractor_scores, multiple_choice


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


def test_multiple_choice_sums_for_acc_and_divides_by_characters_for_acc_norm():
    """Hand-made log-probs where the summed and the per-character scores disagree (and the per-token mean, which
    neither uses, disagrees with the sum)."""
    # A long reference: the lowest sum (-6, more tokens to pay for), the highest per character (-6/21).
    long_reference = [[-1.0] * 6, [-3.0], [-2.5, -1.0], [-4.0]]
    assert multiple_choice(long_reference, ["Jean-Baptiste Lamarck", "Darwin", "Cuvier", "Buffon"]) == \
        {"mc_acc": False, "mc_acc_norm": True}
    # A short reference: the highest sum (-1.5 against -2.0), the lowest per character (-0.75 against -2/7).
    short_reference = [[-1.5], [-1.0, -1.0], [-2.0, -2.5], [-2.0]]
    assert multiple_choice(short_reference, ["Ur", "Babylon", "Nineveh", "Uruk"]) == \
        {"mc_acc": True, "mc_acc_norm": False}
    # Characters, not UTF-8 bytes: "Zürich" is 6 characters (7 bytes): -6.6/6 < -6/6, though -6.6/7 > -6/6.
    assert multiple_choice([[-6.6], [-6.0], [-8.0], [-10.0]], ["Zürich", "Geneva", "Bern", "Basel"]) == \
        {"mc_acc": False, "mc_acc_norm": False}


def test_multiple_choice_counts_a_tie_as_not_won():
    # "abc" and "xyz" tie on both the sum and the per-character score; the others score lower.
    tied = [[-1.0, -1.0], [-2.0], [-5.0], [-5.0]]
    assert multiple_choice(tied, ["abc", "xyz", "def", "ghi"]) == {"mc_acc": False, "mc_acc_norm": False}
    # tied on the sum only: the shorter reference loses per character
    assert multiple_choice([[-2.0], [-2.0], [-5.0], [-5.0]], ["ab", "abcd", "de", "fg"]) == \
        {"mc_acc": False, "mc_acc_norm": False}


def test_multiple_choice_scores_only_questions_with_three_distractors():
    """Fewer choices would raise the chance level above 25%: such a question is not scored (None)."""
    assert multiple_choice([[-1.0], [-3.0], [-3.0]], ["a", "b", "c"]) == {"mc_acc": None, "mc_acc_norm": None}
    assert multiple_choice([[-1.0]], ["an explanation"]) == {"mc_acc": None, "mc_acc_norm": None}  # abstention
