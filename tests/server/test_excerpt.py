"""The quote of the customer's words around a cue (Live's "Last cue"): cut between words,
never inside one, with an ellipsis where it was cut."""

from __future__ import annotations

import pytest

from server.coaching import cue_excerpt

# Cut 78 characters from the end, it read "…о сам кафу пре две недеље…".
SR = (
    "Поштовани, наручио сам кафу пре две недеље, још није стигла, а нико не диже телефон. "
    "Срамота!!!"
)
EN = (
    "I have been waiting since Monday for the parcel with the coffee machine and "
    "THIS IS UNACCEPTABLE because nobody at your company answers the phone or the mail."
)
LINK = "Look: https://example.com/" + "x" * 120 + " THIS IS UNACCEPTABLE"


def cut(text: str, cue: str) -> tuple[str, str, str]:
    """The quote of ``cue`` in ``text``, and the text before and after what it quotes."""
    start = text.index(cue)
    quote = cue_excerpt(text, start, start + len(cue))
    words = quote.removeprefix("…").removesuffix("…")
    at = text.index(words)
    return quote, text[:at], text[at + len(words) :]


@pytest.mark.parametrize(
    ("text", "cue"),
    [(SR, "Срамота!!!"), (SR, "!!!"), (SR, "нико не диже"), (EN, "THIS IS UNACCEPTABLE")],
    ids=["sr-end", "sr-marks", "sr-middle", "en-middle"],
)
def test_a_long_message_is_quoted_in_whole_words_around_the_cue(text: str, cue: str) -> None:
    quote, before, after = cut(text, cue)
    assert len(text) > 80 and len(quote) <= 80, quote
    assert cue in quote
    # Where it is cut, it is cut at a space, and an ellipsis says so.
    assert before == "" or before[-1] == " ", quote
    assert after == "" or after[0] == " ", quote
    assert quote.startswith("…") == bool(before) and quote.endswith("…") == bool(after)


def test_the_serbian_quote_does_not_start_in_the_middle_of_a_word() -> None:
    quote, _, _ = cut(SR, "!!!")
    assert quote == "…сам кафу пре две недеље, још није стигла, а нико не диже телефон. Срамота!!!"


def test_a_short_message_is_quoted_whole() -> None:
    assert cue_excerpt("So angry!!!", 8, 11) == "So angry!!!"


def test_a_word_longer_than_the_quote_is_left_out_or_cut_where_it_falls() -> None:
    # A link cut anywhere is noise: the quote starts after it. A message of one long word
    # has no space to cut at, so it is cut where the limit falls.
    start = LINK.index("THIS")
    assert cue_excerpt(LINK, start, len(LINK)) == "…THIS IS UNACCEPTABLE"
    word = "x" * 120 + "!!!"
    quote = cue_excerpt(word, 120, 123)
    assert quote == "…" + word[-78:], quote
