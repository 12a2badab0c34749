"""Stage `judge`: an LLM judge grades every answer: a 1-5 rubric for wiki, yes/no per LongMemEval type.

The judge's reply is constrained to the valid set ("1"..."5", or "yes"/"no"), so no verdict
is ever unparsed: the engine scores each choice and the verdict is the most probable one.
Beside it goes the probability-weighted score (G-Eval style): the expected rubric score, or
the probability of "yes". An endpoint that cannot constrain answers free text, parsed
strictly; what does not parse is counted (`judge_unparsed_pct`), never defaulted.

A judge must prove it judges: `--controls` grades, for every question, the reference answer
itself (it must pass) and a known-wrong answer, another question's reference of the same
kind (it must fail). The aggregate stage turns these into the judge's control accuracy and
flags a judge that cannot tell them apart.

The LongMemEval criteria follow the benchmark's official judge, in our words.
"""

from __future__ import annotations

import argparse
import logging
import re
import time

from .engine import EngineSettings, add_runtime_arguments, apply_runtime, open_engine
from .io import parse_json_arg, provenance, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

# The graded answer comes last, so one question's judgements share everything before it.
WIKI_PROMPT = """Grade an answer against the reference: 1 = wrong, 2 = mostly wrong, 3 = partly right, 4 = right but imprecise, 5 = fully right. Reply with one digit from 1 to 5 only.
Question: {question}
Reference answer: {reference}
Answer to grade: {prediction}"""

_LME_BASE = """You check whether a chat assistant answered a question correctly. {criterion} Reply with yes or no only.
Question: {question}
Correct answer: {reference}
Assistant's response: {prediction}"""

LME_CRITERIA = {
    "default": "Say yes if the response gives the correct answer, or something equivalent to it, or all the steps that lead to it. Say no if it gives only part of the required information or a different answer.",
    "temporal-reasoning": "Say yes if the response gives the correct answer or something equivalent to it. When the answer counts days, weeks or months, a response that is off by one still counts as correct. Otherwise say no.",
    "knowledge-update": "Say yes if the response gives the updated, correct answer; mentioning older information as well is fine as long as the updated answer is the one given. Otherwise say no.",
    "single-session-preference": "The correct answer is a rubric describing what the user would want. Say yes if the response follows the rubric, using the user's personal information correctly; it need not mention every point. Otherwise say no.",
    "abstention": "This question cannot be answered from the user's history. Say yes if the response says the information is not available or declines to answer; say no if it gives an answer.",
}

SCORE_CHOICES = ("1", "2", "3", "4", "5")
VERDICT_CHOICES = ("yes", "no")

_SCORE = re.compile(r"^\s*(?:score\s*[:=]?\s*)?([1-5])\s*(?:/\s*5)?\s*\.?\s*$", re.IGNORECASE)
_VERDICT = re.compile(r"^\s*(yes|no)\b[\s.!]*$", re.IGNORECASE)


def is_rubric(question_type: str) -> bool:
    """Wiki answers get the 1-5 rubric; LongMemEval answers a yes/no verdict."""
    return question_type == "wiki"


def choices_for(question_type: str) -> tuple[str, ...]:
    return SCORE_CHOICES if is_rubric(question_type) else VERDICT_CHOICES


def wiki_prompt(question: str, reference: str, prediction: str) -> str:
    return WIKI_PROMPT.format(question=question, reference=reference, prediction=prediction or "(no answer)")


def longmemeval_prompt(question_type: str, abstention: bool, question: str, reference: str, prediction: str) -> str:
    key = "abstention" if abstention else (question_type if question_type in LME_CRITERIA else "default")
    return _LME_BASE.format(question=question, reference=reference, prediction=prediction or "(no answer)",
                            criterion=LME_CRITERIA[key])


def judge_prompt(item: dict, prediction: str) -> str:
    """`item`: a question (or answer record) with question, reference/answer, question_type, abstention."""
    reference = item.get("reference", item.get("answer"))
    if is_rubric(item["question_type"]):
        return wiki_prompt(item["question"], reference, prediction)
    return longmemeval_prompt(item["question_type"], item.get("abstention", False), item["question"], reference,
                              prediction)


def parse_score(reply: str) -> int | None:
    """A 1-5 score, or None when the reply is not exactly one."""
    match = _SCORE.match(reply or "")
    return int(match.group(1)) if match else None


def parse_verdict(reply: str) -> int | None:
    """1 for yes, 0 for no, None when the reply is neither."""
    match = _VERDICT.match(reply or "")
    return None if not match else int(match.group(1).lower() == "yes")


def verdict_fields(question_type: str, choice: str | None, probs: dict[str, float] | None) -> dict:
    """The verdict (argmax) and the probability-weighted score, on the metric's own scale.

    wiki: judge_score 1-5 and judge_expected = sum p(s)·s; LongMemEval: judge_correct 0/1 and
    judge_p_yes = p("yes"). Unconstrained replies have no probabilities; None = unparsed.
    """
    if is_rubric(question_type):
        score = parse_score(choice) if choice is not None else None
        expected = sum(int(c) * p for c, p in probs.items()) if probs else None
        return {"judge_score": score, "judge_expected": expected}
    verdict = parse_verdict(choice) if choice is not None else None
    return {"judge_correct": verdict, "judge_p_yes": probs.get("yes") if probs else None}


def judge_items(judge, items: list[tuple[dict, str]], constrained: bool, max_tokens: int) -> list[dict]:
    """Grade (question-like item, answer) pairs; one verdict record each, in order."""
    conversations = [[{"role": "user", "content": judge_prompt(item, answer)}] for item, answer in items]
    out: list[dict | None] = [None] * len(items)
    for choices in (SCORE_CHOICES, VERDICT_CHOICES):
        idx = [i for i, (item, _) in enumerate(items) if choices_for(item["question_type"]) == choices]
        if not idx:
            continue
        if constrained:
            # one question's judgements share the prompt up to the graded answer: grouped, it is computed once
            probs = judge.choose([conversations[i] for i in idx], list(choices),
                                 groups=[items[i][0]["question_id"] for i in idx])
            for i, p in zip(idx, probs):
                choice = max(p, key=p.get) if p else None  # {}: an endpoint that did not keep to the choices
                out[i] = {"judge_reply": choice, "judge_probs": p or None,
                          **verdict_fields(items[i][0]["question_type"], choice, p or None)}
        else:
            replies = judge.generate([conversations[i] for i in idx], max_tokens=max_tokens)
            for i, reply in zip(idx, replies):
                out[i] = {"judge_reply": reply.text, "judge_probs": None,
                          **verdict_fields(items[i][0]["question_type"], reply.text, None)}
    return out


def open_judge(settings: dict, *, key_env: str, backend: str, engine_settings: EngineSettings, threads: int):
    """`base` or a model: an engine (the evaluation backend); `openai:NAME`: an endpoint whose key is read
    from the environment variable `key_env`."""
    from .endpoint import PREFIX, EndpointJudge

    name = settings["model"]
    if name.startswith(PREFIX):
        return EndpointJudge(name, settings["base_url"], key_env, seed=engine_settings.seed)
    if name != "base":
        from dataclasses import replace

        engine_settings = replace(engine_settings, model=name)
    return open_engine(backend, engine_settings, threads=threads)


def answer_verdicts(records: list[dict], judge, settings: dict) -> list[dict]:
    """Verdicts on every dataset answer of an answers chunk (control answers are not judged)."""
    answers = [r for r in records if r["question_set"] == "dataset"]
    verdicts = judge_items(judge, [(r, r["prediction"]) for r in answers], settings["constrained"],
                           settings["max_tokens"])
    return [{"run_id": r["run_id"], "question_id": r["question_id"], **v} for r, v in zip(answers, verdicts)]


def control_verdicts(questions: list[dict], judge, settings: dict) -> list[dict]:
    """The reference itself (must pass) and a known-wrong answer (must fail), per question."""
    items = [(q, q["answer"], "reference") for q in questions]
    items += [(q, q["distractor"], "wrong") for q in questions if q.get("distractor")]
    verdicts = judge_items(judge, [(q, a) for q, a, _ in items], settings["constrained"], settings["max_tokens"])
    return [{"question_id": q["question_id"], "question_type": q["question_type"], "control": kind, "answer": a, **v}
            for (q, a, kind), v in zip(items, verdicts)]


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress judge")
    parser.description = "grade a chunk's answers (or, with --controls, the judge's known-answer controls)"
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--answers", help="an answers chunk (JSON lines) from `lorapress evaluate`")
    source.add_argument("--controls", help="qa.jsonl: grade each reference and a known-wrong answer instead")
    parser.add_argument("--judge", type=parse_json_arg, required=True,
                        help="config `judge` as JSON, without api_key_env")
    parser.add_argument("--key-env", default="OPENAI_API_KEY",
                        help="environment variable holding an endpoint judge's API key (judge.api_key_env)")
    parser.add_argument("--model", required=True, help="the base model (used when judge.model is `base`)")
    parser.add_argument("--engine", type=parse_json_arg, required=True,
                        help="engine params as JSON: {dtype, backend, model_config, generation}")
    add_runtime_arguments(parser)
    parser.add_argument("--out", required=True, help="verdicts (JSON lines)")
    parser.add_argument("--meta", required=True, help="provenance (JSON)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    engine_settings = EngineSettings.from_engine(args.model, args.engine)
    judge = open_judge(args.judge, key_env=args.key_env, backend=args.engine["backend"],
                       engine_settings=engine_settings, threads=args.threads)
    started = time.perf_counter()
    if args.controls:
        verdicts = control_verdicts(read_jsonl(args.controls), judge, args.judge)
    else:
        verdicts = answer_verdicts(read_jsonl(args.answers), judge, args.judge)
    judge.close()
    seconds = round(time.perf_counter() - started, 1)
    log.info("%d verdicts in %.1f s", len(verdicts), seconds)
    write_json(args.meta, provenance("judge", args.judge, backend=args.engine["backend"], dtype=args.engine["dtype"],
                                     n_verdicts=len(verdicts), seconds=seconds))
    write_jsonl(args.out, verdicts)
