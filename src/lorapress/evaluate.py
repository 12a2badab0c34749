"""Stage `evaluate`: every run of a chunk answers the dataset's questions in one engine.

The base model is started once with LoRA enabled; each question is a request
that carries its run's `LoRARequest` (baseline requests carry none). Replies
are greedy. The judge then grades every reply, through the same engine when
the judge is the base model, and the overlap metrics are computed.
"""

from __future__ import annotations

import logging
import time

from .io import read_jsonl, write_json, write_jsonl, provenance
from .judge import judge_prompt, parse_judgement
from .metrics import answer_scores

log = logging.getLogger(__name__)

# vLLM accepts these values for max_lora_rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

ANSWER_SYSTEM = "Answer in a few words."


def lora_rank_limit(ranks: list[int]) -> int:
    need = max(ranks, default=1)
    return next(r for r in VLLM_LORA_RANKS if r >= need)


def question_messages(question: dict, system_prompt: str) -> list[dict]:
    text = question["question"]
    if question.get("question_date"):
        text = f"Today is {question['question_date']}. {text}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}]


def evaluate_chunk(engine_factory, runs: list[dict], questions: list[dict], settings: dict,
                   judge_factory=None, control: list[dict] | None = None) -> list[dict]:
    """`runs`: [{run_id, adapter (dir or None), rank}]; one record per run and question.

    `control` questions (general knowledge) are answered by every run too, to
    measure forgetting; they are scored by overlap only, not judged.
    """
    engine = engine_factory(max_loras=max(1, min(len(runs), settings["max_loras"])),
                            max_lora_rank=lora_rank_limit([r["rank"] for r in runs if r["adapter"]]))
    asked = [(q, "dataset") for q in questions] + [(q, "control") for q in control or []]
    conversations, adapters, keys = [], [], []
    for run in runs:
        for q, question_set in asked:
            conversations.append(question_messages(q, settings.get("system_prompt", ANSWER_SYSTEM)))
            adapters.append(run["adapter"])
            keys.append((run, q, question_set))
    started = time.perf_counter()
    predictions = engine.chat(conversations, max_tokens=settings["max_tokens"], adapters=adapters)
    answer_seconds = time.perf_counter() - started

    judged = [i for i, (_, _, question_set) in enumerate(keys) if question_set == "dataset"]
    if judge_factory is None:
        judge = engine
    else:  # free the answering engine before a second model is loaded
        engine.close()
        judge = judge_factory()
    started = time.perf_counter()
    replies = judge.chat([[{"role": "user", "content": judge_prompt(keys[i][1], predictions[i])}] for i in judged],
                         max_tokens=settings["judge_max_tokens"])
    judge_seconds = time.perf_counter() - started
    reply_of = dict(zip(judged, replies))
    log.info("answered %d questions in %.1fs, judged %d in %.1fs", len(keys), answer_seconds, len(judged),
             judge_seconds)

    records = []
    for i, ((run, q, question_set), prediction) in enumerate(zip(keys, predictions)):
        record = {
            "run_id": run["run_id"],
            "question_set": question_set,
            "question_id": q["question_id"],
            "question_type": q["question_type"],
            "abstention": q.get("abstention", False),
            "question": q["question"],
            "reference": q["answer"],
            "prediction": prediction,
            **answer_scores(prediction, q["answer"]),
        }
        if i in reply_of:
            record.update(judge_reply=reply_of[i], **parse_judgement(q, reply_of[i]))
        records.append(record)
    return records


def run_evaluate(engine_factory, runs: list[dict], qa_path: str, out_path: str, meta_path: str, settings: dict,
                 judge_factory=None, control_path: str | None = None) -> int:
    from .prepare import load_control

    questions = read_jsonl(qa_path)
    control = load_control(control_path) if control_path else []
    started = time.perf_counter()
    records = evaluate_chunk(engine_factory, runs, questions, settings, judge_factory, control)
    write_json(meta_path, provenance(settings, runs=runs, n_questions=len(questions), n_control=len(control),
                                     seconds=round(time.perf_counter() - started, 1)))
    return write_jsonl(out_path, records)
