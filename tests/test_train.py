import random

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

from lorapress.train import TrainSettings, batches, training_texts

WORDS = "the bridge opened in 1897 has seven arches town founded river <eos> <pad>".split()


@pytest.fixture
def tokenizer():
    model = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    model.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=model, eos_token="<eos>", pad_token="<pad>")


TEXTS = ["the bridge opened in 1897", "the bridge has seven arches", "town founded", "river"]


def test_padded_batches_mask_padding_out_of_the_loss(tokenizer):
    settings = TrainSettings(batch_size=2, max_length=16)
    out = list(batches(tokenizer, TEXTS, settings, random.Random(0)))
    assert len(out) == 2
    for ids, mask, labels, n in out:
        assert ((labels == -100) == (mask == 0)).all() and n == int(mask.sum())
    assert sum(n for *_, n in out) == sum(len(t.split()) + 1 for t in TEXTS)  # every word + EOS


def test_packed_batches_fill_rows_and_keep_every_token(tokenizer):
    settings = TrainSettings(batch_size=2, max_length=4, packing=True)
    out = list(batches(tokenizer, TEXTS, settings, random.Random(0)))
    total = sum(len(t.split()) + 1 for t in TEXTS)  # 17 tokens -> rows of 4,4,4,4,1
    rows = [row for ids, mask, *_ in out for row in mask.sum(dim=1).tolist()]
    assert rows == [4, 4, 4, 4, 1] and sum(n for *_, n in out) == total


def test_training_texts_take_the_first_items_with_titles():
    records = [{"title": f"T{i}", "text": f"text {i}"} for i in range(5)] + [{"title": "E", "text": " "}]
    assert training_texts(records, 2) == ["T0\n\ntext 0", "T1\n\ntext 1"]
    assert len(training_texts(records, None)) == 5  # empty texts are skipped
