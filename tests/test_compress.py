import pytest

from lorapress.compress import (
    Level, chunk_text, compress, extract, gather, max_new_tokens, miss_reason, on_target, shard_of, split_sentences, trr,
)

TEXT = ("The Varnholt Bridge crosses the River Amsel. It opened in 1897. The bridge has seven arches. "
        "Its granite came from Dunmere. The Amsel bridge was rebuilt after the flood of 1931.")


def test_trr_is_percent_reduction_in_characters():
    assert trr("abcdefghij", "abc") == pytest.approx(70.0)
    assert trr("abcd", "abcd") == 0.0


def test_extract_keeps_original_order_and_meets_the_budget():
    out = extract(TEXT, target_trr=50)
    kept = [s for s in split_sentences(TEXT) if s[2] in out]
    assert len(out) <= len(TEXT) * 0.5 + 1
    positions = [TEXT.index(s[2]) for s in kept]
    assert positions == sorted(positions) and len(kept) >= 1
    assert " ".join(s[2] for s in kept) == out


def test_extract_prefers_central_sentences():
    # "bridge"/"Amsel" recur, so sentences sharing them outrank the isolated one
    out = extract(TEXT, target_trr=60)
    assert "granite" not in out


def test_extract_keeps_speaker_prefixes_of_chat_turns():
    chat = ("Chat session s1 on 2023/05/02 (Tue) 08:30\nuser: I adopted a cat. Her name is Miso. "
            "Miso likes tuna.\nassistant: Congratulations on Miso! Cats like tuna.")
    out = extract(chat, target_trr=40)
    assert all(line.startswith(("user: ", "assistant: ", "Chat session")) for line in out.splitlines())


def test_reply_cap_follows_source_length_and_target():
    assert max_new_tokens(100, 30, 1.0) == 70
    assert max_new_tokens(100, 90, 1.3) == 13
    assert max_new_tokens(10, 90, 1.0) == 8  # floor


def test_on_target_rejects_empty_copies_too_long_and_over_compressed_replies():
    level = Level(prompt="{text}", target_trr=50, tolerance=15, retry_prompt="")
    source = "x" * 100
    assert on_target(source, "x" * 50, level)
    assert miss_reason(source, "", level) == "empty"
    assert miss_reason(source, source, level) == "copy"
    assert miss_reason(source, "x" * 70, level) == "too_long"  # TRR 30 < 35
    # old: anything up to TRR 99.5 passed, so an l1 (target 30) compressed to TRR 95 counted as on target
    assert miss_reason("x" * 100, "x" * 5, Level(prompt="{text}", target_trr=30, tolerance=15, retry_prompt="")) == "over_compressed"


def test_shards_gather_into_the_unsharded_file(tmp_path):
    from lorapress.io import read_jsonl, write_jsonl

    docs = [{"item_id": f"i{k}", "title": f"T{k}", "text": TEXT[: 60 + 10 * k]} for k in range(7)]
    write_jsonl(tmp_path / "docs.jsonl", docs)
    settings = {"target_trr": 50, "tolerance": 15}
    compress("ext", [tmp_path / "docs.jsonl"], [str(tmp_path / "whole.jsonl")], [str(tmp_path / "whole.meta.json")],
             settings)
    parts = []
    for k in range(3):
        part = tmp_path / f"part{k}.jsonl"
        compress("ext", [tmp_path / "docs.jsonl"], [str(part)], [str(tmp_path / f"part{k}.meta.json")], settings,
                 shard=(k, 3))
        parts.append(part)
    assert [len(read_jsonl(p)) for p in parts] == [2, 3, 2] and shard_of(list(range(7)), 2, 3) == [5, 6]
    gather([str(p) for p in parts], [str(tmp_path / f"part{k}.meta.json") for k in range(3)],
           str(tmp_path / "gathered.jsonl"), str(tmp_path / "gathered.meta.json"))
    assert (tmp_path / "gathered.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_prompt_states_the_word_budget():
    level = Level(prompt="In {target_words} of {source_words} words: {text}", target_trr=80, tolerance=15, retry_prompt="")
    assert level.render("one two three four five six seven eight nine ten") .startswith("In 3 of 10 words")


def test_chunk_text_splits_at_sentences_within_budget():
    count = lambda texts: [len(t.split()) for t in texts]  # noqa: E731
    chunks = chunk_text(TEXT, count, max_input_tokens=12)
    assert len(chunks) > 1
    assert all(len(c.split()) <= 12 for c in chunks)
    assert " ".join(chunks) == TEXT
    assert chunk_text(TEXT, count, 1000) == [TEXT]


def test_chunks_of_a_chat_keep_turns_on_their_own_lines():
    chat = "user: I adopted a cat. She is called Miso.\nassistant: Congratulations! Cats are great."
    count = lambda texts: [len(t.split()) for t in texts]  # noqa: E731
    chunks = chunk_text(chat, count, max_input_tokens=9)
    # a chunk that starts mid-turn repeats its speaker, so the summariser knows who speaks
    assert chunks == ["user: I adopted a cat.", "user: She is called Miso.\nassistant: Congratulations!",
                      "assistant: Cats are great."]
