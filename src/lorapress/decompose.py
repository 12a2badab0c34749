"""Stage `decompose`: where the knowledge went, for one dataset and variant.

Closed-book scores (an adapter trained on a variant) mix two losses: what compression
destroyed and what training failed to inject. This stage measures the first:
- fact survival: is the reference answer still stated in the compressed text of the
  question's items? (normalised as SQuAD normalises answers: case, punctuation, articles);
- open-book: the untuned base model answers with those items' compressed text in its
  prompt, the ceiling of what the text still holds (answers, overlap scores and the
  answer log-likelihood, as in `evaluate`).
The aggregate stage sets them beside the closed-book scores of the compression runs.
"""

from __future__ import annotations

import argparse
import logging
import re
import string

from .engine import EngineSettings, add_runtime_arguments, apply_runtime, open_engine
from .io import parse_json_arg, provenance, read_jsonl, write_json, write_jsonl
from .metrics import answer_scores, distractor_scores

log = logging.getLogger(__name__)

OPEN_BOOK_PROMPT = "Here is what you know:\n\n{context}\n\n{question}"  # the context first: a shared prefix


def normalise(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def fact_survives(answer: str, text: str) -> bool:
    """The normalised answer appears in the normalised text, on word boundaries."""
    needle = normalise(answer)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


def item_context(question: dict, items: dict[str, dict]) -> str:
    """The question's items (title = dated header for chat sessions, then text), in their file order."""
    return "\n\n".join(f"{items[i]['title']}\n{items[i]['text']}" for i in question["item_ids"] if i in items)


def open_book_messages(question: dict, context: str, system_prompt: str) -> list[dict]:
    text = question["question"]
    if question.get("question_date"):
        text = f"Today is {question['question_date']}. {text}"
    return [{"role": "system", "content": system_prompt},
            {"role": "user", "content": OPEN_BOOK_PROMPT.format(context=context, question=text)}]


def fit_context(engine, context: str, budget: int) -> tuple[str, bool]:
    """Cut the context to `budget` tokens (keeping its start); says whether it was cut."""
    ids = engine.reply_ids(context)
    if len(ids) <= budget:
        return context, False
    return engine.tokenizer.decode(ids[:budget], skip_special_tokens=True), True


def decompose(engine, questions: list[dict], compressed: list[dict], settings: dict, max_model_len: int) -> list[dict]:
    items = {r["item_id"]: r for r in compressed}
    budget = max_model_len - settings["max_tokens"] - 128  # room for the question and the template
    contexts = [fit_context(engine, item_context(q, items), budget) for q in questions]
    conversations = [open_book_messages(q, ctx, settings["system_prompt"]) for q, (ctx, _) in zip(questions, contexts)]
    replies = [[q["answer"], *q.get("distractors", [])] for q in questions]
    # questions about the same items share their context: the engine may compute it once
    answers, logprobs = engine.answer(conversations, replies, max_tokens=settings["max_tokens"],
                                      repetition_penalty=settings["repetition_penalty"],
                                      groups=[tuple(q["item_ids"]) for q in questions])
    loglik = {k: distractor_scores(lps) for k, lps in enumerate(logprobs)}
    records = []
    for k, (q, (ctx, cut), answer) in enumerate(zip(questions, contexts, answers)):
        records.append({
            "question_id": q["question_id"], "question_type": q["question_type"], "abstention": q.get("abstention", False),
            # An abstention question's reference explains why there is no answer: no fact to survive.
            "fact_survived": None if q.get("abstention") else fact_survives(q["answer"], item_context(q, items)),
            "context_tokens": len(engine.reply_ids(ctx)), "context_truncated": cut,
            "prediction": answer.text, "truncated": answer.truncated,
            **loglik[k],
            **answer_scores(answer.text, q["answer"]),
        })
    return records


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress decompose")
    parser.description = "fact survival and open-book answers of one compressed variant, for one or more datasets"
    parser.add_argument("--dataset", nargs=5, action="append", required=True,
                        metavar=("NAME", "QA", "COMPRESSED", "OUT", "META"),
                        help="a dataset's questions, the variant's items, and where to write records and provenance "
                             "(repeat per dataset: one model load serves them all)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--settings", type=parse_json_arg, required=True, help="config `evaluate` as JSON")
    parser.add_argument("--engine", type=parse_json_arg, required=True,
                        help="engine params as JSON: {dtype, backend, model_config, generation}")
    add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    settings = EngineSettings.from_engine(args.model, args.engine)
    engine = open_engine(args.engine["backend"], settings, threads=args.threads)
    for name, qa, compressed, out, meta in args.dataset:
        records = decompose(engine, read_jsonl(qa), read_jsonl(compressed), args.settings, settings.max_model_len)
        survived = [r["fact_survived"] for r in records if r["fact_survived"] is not None]
        write_json(meta, provenance("decompose", args.settings, dataset=name, backend=args.engine["backend"],
                                    dtype=args.engine["dtype"], n_questions=len(records),
                                    fact_survival=sum(survived) / len(survived) if survived else None,
                                    contexts_truncated=sum(r["context_truncated"] for r in records)))
        write_jsonl(out, records)
        log.info("%s: %d open-book answers", name, len(records))
    engine.close()
