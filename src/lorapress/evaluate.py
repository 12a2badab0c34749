"""Stage `evaluate`: every run of a chunk answers the dataset's questions through one engine.

For each run (an adapter, or `baseline`: none) and question this writes the greedy answer
with its finish reason (a `length` finish = truncated), the overlap scores, and the answer
log-likelihood: the mean per-token log-probability of the reference answer given the
question, and of a distractor (a wrong answer of the same kind, another item's). Their
difference, the knowledge-specific margin, widens only when the adapter learned the fact,
not when it merely shifted towards the domain's style. Over the same choices, the reference
and its three distractors, it records lm-evaluation-harness's multiple-choice scores: whether
the reference out-scores every distractor by summed log-likelihood (`mc_acc`) and by
log-likelihood per character (`mc_acc_norm`).

The chunk's answers are then cross-checked: a sample of every run's answers is generated
again through the other backend (transformers + peft against vLLM). Two answers agree when
they are identical, or when they part at a near-tie: at their first differing token the
checking backend gives the two candidate tokens log-probabilities within
`evaluate.self_check.tie_nats` (in bfloat16 the two backends' kernels round differently, and
greedy decoding flips between near-equal tokens; a misapplied adapter moves the distribution
far more). Agreement below `evaluate.self_check.min_agreement` fails the job: an adapter path
that is silently ignored or misapplied must never reach a table.
"""

from __future__ import annotations

import argparse
import logging
import random
import time

from .engine import BACKENDS, EngineSettings, add_runtime_arguments, apply_runtime, open_engine
from .io import StageError, parse_json_arg, provenance, read_json, read_jsonl, write_json, write_jsonl
from .metrics import answer_scores, distractor_scores, multiple_choice

log = logging.getLogger(__name__)

# vLLM accepts these values for max_lora_rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
TRAIN_SUMMARY = "lorapress_train.json"
# What an answer record keeps of an adapter's training summary (for the runs table).
TRAIN_FACTS = ("optimizer_steps", "warmup_steps", "tokens_seen", "n_examples", "n_texts", "loss_first", "loss_last",
               "lr_reached_peak", "trainable_params", "lora_scaling")


class SelfCheckError(RuntimeError):
    """The two backends disagree on the same adapter's greedy answers."""


def lora_rank_limit(ranks: list[int]) -> int:
    need = max(ranks, default=1)
    return next(r for r in VLLM_LORA_RANKS if r >= need)


def question_messages(question: dict, system_prompt: str) -> list[dict]:
    text = question["question"]
    if question.get("question_date"):
        text = f"Today is {question['question_date']}. {text}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}]


def answer_chunk(engine, runs: list[dict], questions: list[dict], control: list[dict], settings: dict) -> list[dict]:
    """One record per run and question (dataset questions, then the control set)."""
    asked = [(q, "dataset") for q in questions] + [(q, "control") for q in control]
    keys = [(run, q, qset) for run in runs for q, qset in asked]
    conversations = [question_messages(q, settings["system_prompt"]) for _, q, _ in keys]
    adapters = [run["adapter"] for run, _, _ in keys]
    # The reference and the distractor are scored through the same prompt the answer came from; the
    # questions of a run share its system prompt, which the engine may compute once.
    replies = [[q["answer"], *q.get("distractors", [])] for _, q, _ in keys]
    started = time.perf_counter()
    answers, logprobs = engine.answer(conversations, replies, max_tokens=settings["max_tokens"], adapters=adapters,
                                      repetition_penalty=settings["repetition_penalty"],
                                      groups=[run["run_id"] for run, _, _ in keys])
    log.info("answered %d questions and scored their answer log-likelihoods in %.1f s", len(keys),
             time.perf_counter() - started)
    loglik = {k: distractor_scores(lps) | multiple_choice(lps, replies[k]) for k, lps in enumerate(logprobs)}

    records = []
    for k, ((run, q, qset), answer) in enumerate(zip(keys, answers)):
        records.append({
            "run_id": run["run_id"], "question_set": qset, "question_id": q["question_id"],
            "question_type": q["question_type"], "abstention": q.get("abstention", False),
            "item_ids": q.get("item_ids", []), "question": q["question"], "reference": q["answer"],
            "prediction": answer.text, "finish_reason": answer.finish_reason, "truncated": answer.truncated,
            "answer_tokens": answer.n_tokens, "distractors": q.get("distractors", []), **loglik[k],
            **answer_scores(answer.text, q["answer"]),
        })
    return records


def self_check_sample(runs: list[dict], questions: list[dict], n_questions: int, seed: int) -> list[tuple[dict, dict]]:
    """The same `n_questions` questions (a seeded draw) for every run of the chunk."""
    chosen = sorted(random.Random(seed).sample(range(len(questions)), min(n_questions, len(questions))))
    return [(run, questions[i]) for run in runs for i in chosen]


def self_check(engine, sample: list[tuple[dict, dict]], records: list[dict], settings: dict) -> dict:
    """Generate the sample again through `engine` and compare with the primary backend's answers."""
    primary = {(r["run_id"], r["question_id"]): (r["prediction"], r["finish_reason"] == "stop")
               for r in records if r["question_set"] == "dataset"}
    again = engine.generate([question_messages(q, settings["system_prompt"]) for _, q in sample],
                            max_tokens=settings["max_tokens"], adapters=[run["adapter"] for run, _ in sample],
                            repetition_penalty=settings["repetition_penalty"])
    pairs = []
    for (run, q), answer in zip(sample, again):
        first, stopped = primary[(run["run_id"], q["question_id"])]
        pair = {"run_id": run["run_id"], "question_id": q["question_id"], "primary": first, "check": answer.text,
                "identical": first == answer.text, "tie_gap": None}
        if not pair["identical"]:
            pair["tie_gap"] = divergence_gap(engine, question_messages(q, settings["system_prompt"]),
                                             (first, stopped), (answer.text, not answer.truncated), run["adapter"])
        pair["agree"] = pair["identical"] or (pair["tie_gap"] is not None
                                              and pair["tie_gap"] <= settings["self_check"]["tie_nats"])
        pairs.append(pair)
    agreed, identical = sum(p["agree"] for p in pairs), sum(p["identical"] for p in pairs)
    return {"check_backend": engine.backend, "n": len(pairs), "agreed": agreed, "identical": identical,
            "near_ties": agreed - identical,
            "agreement": agreed / len(pairs) if pairs else None, "pairs": pairs}


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first position where two token sequences differ (None: identical or one ends first)."""
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return None


def divergence_gap(engine, conversation: list[dict], primary: tuple[str, bool], check: tuple[str, bool],
                   adapter: str | None) -> float | None:
    """|log p(a) - log p(b)| under `engine` at the first token where two answers part (a: the primary's token,
    b: the check's), given the conversation and their common start. Each answer is (text, stopped): an answer
    that stopped ends with the end-of-turn token, so "stop here" against "go on" is measured like any other
    pair of tokens. None when they part at no token (one was cut at max_tokens inside the other)."""
    eos = engine.tokenizer.eos_token_id
    a, b = ([*engine.reply_ids(text), *([eos] if stopped else [])] for text, stopped in (primary, check))
    k = first_divergence(a, b)
    if k is None:
        return None
    prompt = engine.prompt_ids(conversation) + a[:k]
    lp_a, lp_b = engine.next_token_logprobs(prompt, [a[k], b[k]], adapter)
    return abs(lp_a - lp_b)


def train_facts(adapter: str | None) -> dict:
    if adapter is None:
        return {}
    summary = read_json(f"{adapter}/{TRAIN_SUMMARY}")
    return {k: summary.get(k) for k in TRAIN_FACTS}


def evaluate(backend: str, engine_settings: EngineSettings, runs: list[dict], questions: list[dict],
             control: list[dict], settings: dict, threads: int = 1) -> tuple[list[dict], dict]:
    """Answer with `backend`, then cross-check a sample with the other backend; (records, self-check)."""
    adapters = [r["adapter"] for r in runs if r["adapter"]]
    lora = dict(max_loras=max(1, min(len(adapters), settings["max_loras"])) if adapters else 0,
                max_lora_rank=lora_rank_limit([r["rank"] for r in runs if r["adapter"]]),
                lora_target_modules=sorted({m for a in adapters for m in read_json(f"{a}/adapter_config.json")
                                            ["target_modules"]}))
    engine = open_engine(backend, engine_settings, threads=threads, **lora)
    records = answer_chunk(engine, runs, questions, control, settings)
    engine.close()

    check = settings["self_check"]
    result = {"check_backend": None, "n": 0, "agreed": 0, "identical": 0, "near_ties": 0, "agreement": None,
              "pairs": []}
    if check["questions"] > 0:
        other = next(b for b in BACKENDS if b != backend)
        sample = self_check_sample(runs, questions, check["questions"], engine_settings.seed)
        # a few questions: on a CPU a vLLM checker starts in this process, in half the time
        checker = open_engine(other, engine_settings, threads=threads, in_process=True, **lora)
        result = self_check(checker, sample, records, settings)
        checker.close()
        log.info("self-check: %d of %d sampled answers agree through %s and %s (%d identical, %d part at a near-tie)",
                 result["agreed"], result["n"], backend, other, result["identical"], result["near_ties"])
        if result["agreement"] is not None and result["agreement"] < check["min_agreement"]:
            worst = [p for p in result["pairs"] if not p["agree"]][:3]
            raise SelfCheckError(
                f"self-check failed: only {result['agreed']} of {result['n']} sampled answers agree between {backend} "
                f"and {other} (evaluate.self_check.min_agreement = {check['min_agreement']}, near-ties within "
                f"tie_nats = {check['tie_nats']}); the adapters may be misapplied by one backend. "
                f"First disagreements: {worst}")
    return records, result


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress evaluate")
    parser.description = "answer a dataset's questions with a chunk of runs; score answers and log-likelihoods"
    parser.add_argument("--model", required=True, help="model directory or hub id")
    parser.add_argument("--qa", required=True, help="the dataset's questions (qa.jsonl)")
    parser.add_argument("--control", help="general-knowledge control questions (JSON lines), answered by every run")
    parser.add_argument("--runs", type=parse_json_arg, required=True, help='JSON list of {"run_id", "adapter", "rank"}')
    parser.add_argument("--settings", type=parse_json_arg, required=True, help="config `evaluate` as JSON")
    parser.add_argument("--engine", type=parse_json_arg, required=True,
                        help="engine params as JSON: {dtype, backend, model_config, generation}")
    add_runtime_arguments(parser)
    parser.add_argument("--out", required=True, help="answer records (JSON lines)")
    parser.add_argument("--meta", required=True, help="provenance, self-check and the runs' training facts (JSON)")
    return parser


def main(argv: list[str] | None = None) -> None:
    from .prepare import load_control

    args = build_parser().parse_args(argv)
    apply_runtime(args)
    questions = read_jsonl(args.qa)
    control = load_control(args.control) if args.control else []
    engine_settings = EngineSettings.from_engine(args.model, args.engine)
    started = time.perf_counter()
    try:
        records, check = evaluate(args.engine["backend"], engine_settings, args.runs, questions, control, args.settings,
                                  args.threads)
    except SelfCheckError as exc:
        raise StageError(str(exc)) from None
    runs = [{**run, "training": train_facts(run["adapter"])} for run in args.runs]
    write_json(args.meta, provenance("evaluate", args.settings, backend=args.engine["backend"], dtype=args.engine["dtype"], runs=runs,
                                     self_check=check, n_questions=len(questions), n_control=len(control),
                                     seconds=round(time.perf_counter() - started, 1)))
    write_jsonl(args.out, records)
    log.info("%s: %d answers", args.out, len(records))
