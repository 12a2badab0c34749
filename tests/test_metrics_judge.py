import pytest

from lorapress.judge import longmemeval_prompt, parse_score, parse_verdict, wiki_prompt
from lorapress.metrics import answer_scores


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
    ("yes", 1), ("Yes.", 1), ("no", 0), ("NO", 0), ("maybe", None), ("yes and no", None), ("", None),
])
def test_judge_verdict_is_parsed_strictly(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_longmemeval_prompts_differ_by_type():
    args = ("Q?", "A", "P")
    temporal = longmemeval_prompt("temporal-reasoning", False, *args)
    assert "off by one" in temporal
    assert "updated" in longmemeval_prompt("knowledge-update", False, *args)
    assert "rubric" in longmemeval_prompt("single-session-preference", False, *args)
    assert "not available" in longmemeval_prompt("multi-session", True, *args)
    assert "(no answer)" in wiki_prompt("Q?", "A", "")
