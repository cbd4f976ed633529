"""The shared degrade helpers the adapters build on."""

from __future__ import annotations

from integrations.base import first_word, slash_command, split_tail, split_text_within, utf16_len


def test_split_text_within_respects_the_measure():
    text = " ".join(["ЇЇЇЇ"] * 100)  # 499 characters, 899 bytes
    chunks = split_text_within(text, 1000, lambda s: len(s.encode()), 300)
    assert all(len(c.encode()) <= 300 for c in chunks)
    assert " ".join(chunks) == text


def test_split_text_within_cuts_a_single_huge_word():
    chunks = split_text_within("😀" * 10, 10, utf16_len, 4)
    assert all(utf16_len(c) <= 4 for c in chunks)
    assert "".join(chunks) == "😀" * 10


def test_split_tail_keeps_the_longest_tail_on_a_word_boundary():
    head, tail = split_tail("alpha beta gamma delta", 11)
    assert (head, tail) == ("alpha beta", "gamma delta")
    assert split_tail("short", 10) == ("", "short")


def test_split_tail_prefers_paragraphs():
    head, tail = split_tail("one two\n\nthree four five", 16)
    assert (head, tail) == ("one two", "three four five")


def test_split_tail_cuts_hard_when_there_is_no_boundary():
    assert split_tail("abcdefghij", 4) == ("abcdef", "ghij")


def test_slash_command():
    assert slash_command("/start promo_AUTUMN26") == ("start", "promo_AUTUMN26")
    assert slash_command("/Help@ExampleShopBot") == ("help", "")
    assert slash_command("/") is None
    assert slash_command("hello /start") is None


def test_first_word():
    assert first_word("Олена Коваль") == "Олена"
    assert first_word("  ") is None
    assert first_word(None) is None
