"""Text-overlap metrics, all from well-kept libraries.

ROUGE from rouge-score, BLEU and n-gram precisions from sacrebleu (its default
13a word tokeniser, meant for English), and SQuAD-style exact match / token F1
from torchmetrics.
All scores are on a 0-100 scale. The multiple-choice scores (`multiple_choice`) follow lm-evaluation-harness.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import fmean


def is_judge_metric(metric: str) -> bool:
    """judge_score, judge_accuracy[...], judge_p_yes, ...: the LLM judge's, not the reference-based metrics."""
    return metric.startswith("judge")


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, dict[str, float]]:
    """{rouge1: {precision, recall, fmeasure}, ...} in %."""
    scores = _rouge().score(reference, prediction)
    return {name: {"precision": 100 * s.precision, "recall": 100 * s.recall, "fmeasure": 100 * s.fmeasure}
            for name, s in scores.items()}


def bleu(prediction: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(prediction, [reference]).score


def corpus_ngram_precisions(predictions: list[str], references: list[str]) -> list[float]:
    """sacrebleu's modified 1- to 4-gram precisions (%) of `predictions` against `references`
    (BLEU without its brevity penalty, which for a summary only restates its length)."""
    import sacrebleu

    return list(sacrebleu.corpus_bleu(predictions, [references]).precisions)


def squad(prediction: str, reference: str) -> dict[str, float]:
    """SQuAD exact match and token F1 after SQuAD normalisation (torchmetrics)."""
    from torchmetrics.functional.text import squad as tm_squad

    result = tm_squad(
        [{"prediction_text": prediction, "id": "q"}],
        [{"answers": {"answer_start": [0], "text": [reference]}, "id": "q"}],
    )
    return {"exact_match": float(result["exact_match"]), "f1": float(result["f1"])}


def answer_scores(prediction: str, reference: str) -> dict[str, float]:
    """Every overlap score of one answer against its reference, flat."""
    r = rouge(prediction, reference)
    return {
        "rouge1": r["rouge1"]["fmeasure"],
        "rouge2": r["rouge2"]["fmeasure"],
        "rougeL": r["rougeL"]["fmeasure"],
        "bleu": bleu(prediction, reference),
        **squad(prediction, reference),
    }


def distractor_scores(logprobs: list[list[float]]) -> dict:
    """From the token log-probs of [reference, *distractors]: the reference's mean per-token log-likelihood,
    the distractors' mean of theirs, and the share of distractors the reference beats."""
    reference, *others = [fmean(lp) for lp in logprobs]
    return {"answer_loglik": reference, "distractor_loglik": fmean(others) if others else None,
            "distractors_beaten": sum(reference > o for o in others) / len(others) if others else None}


MC_CHOICES = 4  # the reference and three distractors: a blind guess picks the reference one time in four (25%)


def reference_wins(scores: list[float]) -> bool:
    """Whether the first score (the reference's) is strictly above every other: a tie is not a win, so a model
    indifferent between the reference and a distractor is not credited with knowing the answer."""
    reference, *others = scores
    return all(reference > o for o in others)


def multiple_choice(logprobs: list[list[float]], choices: list[str]) -> dict:
    """lm-evaluation-harness's `acc` and `acc_norm` of one question whose choices are [reference, *distractors],
    from the token log-probs of each choice as the reply to the question.

    `mc_acc`: the reference has the highest summed log-likelihood; `mc_acc_norm`: the highest summed
    log-likelihood per character of the choice's text, so a long answer is not out-scored merely for having more
    tokens to pay for. As in lm-evaluation-harness's lm_eval/api/task.py (commit 0004883,
    ConfigurableTask.process_results, output_type multiple_choice):
    `completion_len = np.array([float(len(i)) for i in choices])`, `pred = np.argmax(lls)`,
    `pred_norm = np.argmax(lls / completion_len)`, with `lls` the summed log-likelihood of each continuation and
    `len` the characters of the choice string (not its UTF-8 bytes). Here the continuation is exactly the choice
    string (no leading-space delimiter), so its characters are what is normalised by. One deliberate difference:
    np.argmax breaks a tie towards the first choice, which would credit the reference (first here) with a tie;
    here a tie counts as not won.

    A question with other than three distractors (an abstention question has none; a small group may give
    fewer) is not scored (None), so every scored question has the same 25% chance level."""
    if len(choices) != MC_CHOICES:
        return {"mc_acc": None, "mc_acc_norm": None}
    sums = [math.fsum(lp) for lp in logprobs]
    return {"mc_acc": reference_wins(sums),
            "mc_acc_norm": reference_wins([s / len(c) for s, c in zip(sums, choices)])}
