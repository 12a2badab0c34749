import pytest

from lorapress.compress import Level, chunk_text, extract, max_new_tokens, on_target, split_sentences, trr

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


def test_on_target_rejects_empty_copies_and_too_long_replies():
    level = Level(prompt="{text}", target_trr=50, tolerance=15)
    source = "x" * 100
    assert on_target(source, "x" * 50, level)
    assert not on_target(source, "", level)
    assert not on_target(source, source, level)
    assert not on_target(source, "x" * 70, level)  # TRR 30 < 35


def test_prompt_states_the_word_budget():
    level = Level(prompt="In {target_words} of {source_words} words: {text}", target_trr=80)
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
