"""Card numbers are masked before a message is stored or shown."""

from __future__ import annotations

import pytest

from server.masking import luhn_valid, mask_cards


@pytest.mark.parametrize(
    "text, expected",
    [
        ("my card is 4111111111111111 thanks", "my card is ••••••••••••1111 thanks"),
        ("4111 1111 1111 1111", "•••• •••• •••• 1111"),
        ("5500-0000-0000-0004 exp 12/29", "••••-••••-••••-0004 exp 12/29"),
        ("order 4111111111111112 is late", "order 4111111111111112 is late"),  # fails Luhn
        ("call 0601234567", "call 0601234567"),  # too short
        ("tracking 12345678901234567890123", "tracking 12345678901234567890123"),  # too long
        ("no numbers here", "no numbers here"),
    ],
)
def test_luhn_valid_card_numbers_are_masked(text: str, expected: str) -> None:
    masked, changed = mask_cards(text)
    assert masked == expected
    assert changed == (masked != text)


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
