"""Text-overlap metrics, all from well-kept libraries.

ROUGE from rouge-score, BLEU and n-gram precisions from sacrebleu (its default
13a word tokeniser, meant for English), and SQuAD-style exact match / token F1
from torchmetrics.
All scores are on a 0-100 scale.
"""

from __future__ import annotations

from functools import lru_cache
from statistics import fmean

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
