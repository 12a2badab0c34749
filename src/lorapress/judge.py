"""LLM judges: a 1-5 rubric for wiki answers, a yes/no verdict per LongMemEval type.

Judgements are parsed strictly: a reply that is not exactly a score (or a
yes/no) counts as unparsed, is reported, and never defaults to a value.
The LongMemEval criteria follow the benchmark's official judge, in our words.
"""

from __future__ import annotations

import re

WIKI_PROMPT = """Question: {question}
Reference answer: {reference}
Answer to grade: {prediction}
Grade the answer against the reference: 1 = wrong, 2 = mostly wrong, 3 = partly right, 4 = right but imprecise, 5 = fully right.
Reply with one digit from 1 to 5 only."""

_LME_BASE = """You check whether a chat assistant answered a question correctly.
Question: {question}
Correct answer: {reference}
Assistant's response: {prediction}
{criterion}
Reply with yes or no only."""

LME_CRITERIA = {
    "default": "Say yes if the response gives the correct answer, or something equivalent to it, or all the steps that lead to it. Say no if it gives only part of the required information or a different answer.",
    "temporal-reasoning": "Say yes if the response gives the correct answer or something equivalent to it. When the answer counts days, weeks or months, a response that is off by one still counts as correct. Otherwise say no.",
    "knowledge-update": "Say yes if the response gives the updated, correct answer; mentioning older information as well is fine as long as the updated answer is the one given. Otherwise say no.",
    "single-session-preference": "The correct answer is a rubric describing what the user would want. Say yes if the response follows the rubric, using the user's personal information correctly; it need not mention every point. Otherwise say no.",
    "abstention": "This question cannot be answered from the user's history. Say yes if the response says the information is not available or declines to answer; say no if it gives an answer.",
}

_SCORE = re.compile(r"^\s*(?:score\s*[:=]?\s*)?([1-5])\s*(?:/\s*5)?\s*\.?\s*$", re.IGNORECASE)
_VERDICT = re.compile(r"^\s*(yes|no)\b[\s.!]*$", re.IGNORECASE)


def wiki_prompt(question: str, reference: str, prediction: str) -> str:
    return WIKI_PROMPT.format(question=question, reference=reference, prediction=prediction or "(no answer)")


def longmemeval_prompt(question_type: str, abstention: bool, question: str, reference: str, prediction: str) -> str:
    key = "abstention" if abstention else (question_type if question_type in LME_CRITERIA else "default")
    return _LME_BASE.format(question=question, reference=reference, prediction=prediction or "(no answer)",
                            criterion=LME_CRITERIA[key])


def parse_score(reply: str) -> int | None:
    """A 1-5 score, or None when the reply is not exactly one."""
    match = _SCORE.match(reply or "")
    return int(match.group(1)) if match else None


def parse_verdict(reply: str) -> int | None:
    """1 for yes, 0 for no, None when the reply is neither."""
    match = _VERDICT.match(reply or "")
    return None if not match else int(match.group(1).lower() == "yes")


def judge_prompt(question: dict, prediction: str) -> str:
    if question["question_type"] == "wiki":
        return wiki_prompt(question["question"], question["answer"], prediction)
    return longmemeval_prompt(question["question_type"], question.get("abstention", False),
                              question["question"], question["answer"], prediction)


def parse_judgement(question: dict, reply: str) -> dict:
    if question["question_type"] == "wiki":
        return {"judge_score": parse_score(reply)}
    return {"judge_correct": parse_verdict(reply)}
