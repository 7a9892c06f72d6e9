"""Conversation-level coaching, driven by a clock the test controls."""

from __future__ import annotations

from typing import Any

import pytest

from coach import Coach
from coach.conversation import ConversationCoach

NAMES = {"agent_name": "Ana", "customer_name": "Marko"}


@pytest.fixture
def chat(coach: Coach) -> ConversationCoach:
    return ConversationCoach(
        coach, "en", now=0.0, hold_after=60, upset_window=300, cue_cooldown=300
    )


def test_first_response_timer_nudges_once(chat: ConversationCoach) -> None:
    chat.customer_message("Hi, my parcel is late", now=1)
    assert chat.tick(59) == []
    [nudge] = chat.tick(61, NAMES)
    assert nudge.category == "hold_without_update"
    assert nudge.rule == "en.conversation.first_response"
    assert "61 seconds" in nudge.message and "Ana" in nudge.suggestions[0]
    assert chat.tick(120) == []


def test_hold_without_update_after_the_agent_went_quiet(chat: ConversationCoach) -> None:
    chat.customer_message("Where is my order?", now=0)
    chat.agent_message("Hi, I'm Ana. Let me check that for you.", now=10)
    chat.customer_message("Ok, order 1234.", now=20)
    assert chat.tick(79) == []
    [nudge] = chat.tick(81, {"topic": "order 1234"})
    assert nudge.rule == "en.conversation.hold_without_update"
    assert nudge.waited == pytest.approx(61)
    assert "order 1234" in nudge.suggestions[0]
    chat.agent_update(90)  # e.g. the agent sent a file or a status
    assert chat.tick(140) == []
    assert [n.category for n in chat.tick(151)] == ["hold_without_update"]


def test_no_hold_nudge_when_nobody_is_waiting(chat: ConversationCoach) -> None:
    chat.customer_message("Thanks, that's all", now=0)
    chat.agent_message("My name is Ana. Happy to help!", now=5)
    assert chat.tick(500) == []


@pytest.mark.parametrize(
    "lang, first_reply, nudged",
    [
        ("en", "How can I help?", True),
        ("en", "Hi, my name is Ana. How can I help?", False),
        ("en", "Hello! May I have your name?", False),
        ("sr", "Kako mogu da pomognem?", True),
        ("sr", "Zdravo, ja sam Ana. Kako mogu da pomognem?", False),
        ("sr", "Здраво, како се зовете?", False),
        ("hr", "Kako vam mogu pomoći?", True),
        ("hr", "Pozdrav, moje ime je Ana.", False),
        ("sl", "Kako vam lahko pomagam?", True),
        ("sl", "Pozdravljeni, moje ime je Ana.", False),
    ],
)
def test_missing_introduction_on_the_first_reply_only(coach, lang, first_reply, nudged) -> None:
    chat = ConversationCoach(coach, lang, now=0)
    chat.customer_message("Hi", now=1)
    got = [n.category for n in chat.agent_message(first_reply, now=2, values=NAMES)]
    assert got == (["missing_introduction"] if nudged else [])
    assert chat.agent_message("Anything else?", now=3) == []


@pytest.mark.parametrize(
    "lang, thanks, bye",
    [
        ("en", "Thank you for contacting us!", "Bye."),
        ("sr", "Hvala vam na strpljenju.", "Doviđenja."),
        ("hr", "Hvala vam što ste nas kontaktirali.", "Doviđenja."),
        ("sl", "Hvala, ker ste nas kontaktirali.", "Nasvidenje."),
    ],
)
def test_missing_thanks_when_closing(coach, lang, thanks, bye) -> None:
    rude = ConversationCoach(coach, lang, now=0)
    rude.agent_message(bye, now=1)
    assert [n.category for n in rude.close(now=2)] == ["missing_thanks"]
    polite = ConversationCoach(coach, lang, now=0)
    polite.agent_message(thanks, now=1)
    assert polite.close(now=2) == []


@pytest.mark.parametrize("lang", ["sr", "hr", "sl"])
def test_an_agent_who_writes_english_in_another_language_s_chat_is_not_nudged(coach, lang) -> None:
    chat = ConversationCoach(coach, lang, now=0)
    chat.customer_message("Dobar dan", now=1)
    said = "Hi, I am Marko and I'll take it from here. Thank you for your patience!"
    assert chat.agent_message(said, now=2, values=NAMES) == []
    assert chat.close(now=3) == []
    # Without either, in English too, the nudges come as before.
    curt = ConversationCoach(coach, lang, now=0)
    got = curt.agent_message("Your parcel ships today.", now=1, values=NAMES)
    assert [n.category for n in got] == ["missing_introduction"]
    assert [n.category for n in curt.close(now=2)] == ["missing_thanks"]


def test_upsell_when_upset_only_within_the_window(chat: ConversationCoach) -> None:
    review = chat.customer_message("This is ridiculous, worst service ever!!!", now=0)
    assert "frustration" in {c.category for c in review.cues}
    offer = "Would you like to upgrade to our premium plan?"
    assert "upsell_when_upset" in [n.category for n in chat.agent_message(offer, now=60)]
    assert "upsell_when_upset" not in [n.category for n in chat.agent_message(offer, now=400)]


def test_offer_to_a_calm_customer_is_fine(chat: ConversationCoach) -> None:
    chat.customer_message("Hi, what plans do you have?", now=0)
    nudges = chat.agent_message(
        "Hi, I'm Ana. Would you like to upgrade to our premium plan?", now=5
    )
    assert nudges == []


def test_scripts_are_offered_once_per_cooldown(chat: ConversationCoach) -> None:
    first = chat.customer_message("This is ridiculous!!!", now=0, values=NAMES)
    assert [s.category for s in first.scripts] == ["frustration"]
    assert all("{" not in s for f in first.scripts for s in f.suggestions)
    again = chat.customer_message("Seriously, this is ridiculous!!!", now=100)
    assert again.scripts == [] and again.cues
    later = chat.customer_message("This is ridiculous!!!", now=301)
    assert [s.category for s in later.scripts] == ["frustration"]


def test_state_survives_a_round_trip(coach: Coach, chat: ConversationCoach) -> None:
    chat.customer_message("Hello?", now=0)
    restored = ConversationCoach.from_dict(coach, chat.to_dict(), hold_after=60)
    assert [n.category for n in restored.tick(61)] == ["hold_without_update"]


def test_serbian_cyrillic_nudges_come_back_in_cyrillic(coach: Coach) -> None:
    chat = ConversationCoach(coach, "sr", now=0)
    [nudge] = chat.agent_message("Како могу да помогнем?", now=1, values={"agent_name": "Ана"})
    assert nudge.suggestions[0].startswith("Ја сам Ана")


@pytest.mark.parametrize(
    "lang, text, expected",
    [
        ("en", "This is ridiculous, where is my parcel???", "about your order"),
        ("sr", "Ovo je sramota!!! Gde je moj paket?", "zbog vaše porudžbine"),
        ("sr", "Ово је срамота!!! Где је мој пакет?", "због ваше поруџбине"),
        ("hr", "Ovo je sramota!!! Gdje je moja narudžba?", "zbog vaše narudžbe"),
        ("sl", "To je sramota!!! Kje je moje naročilo?", "zaradi vašega naročila"),
    ],
)
def test_scripts_name_the_topic_in_the_right_case(coach: Coach, lang, text, expected) -> None:
    chat = ConversationCoach(coach, lang, now=0)
    review = chat.customer_message(text, now=1)
    assert review.scripts, review.cues
    assert any(expected in s for f in review.scripts for s in f.suggestions)


def test_without_a_known_topic_scripts_leave_it_out(coach: Coach) -> None:
    chat = ConversationCoach(coach, "en", now=0)
    review = chat.customer_message("This is ridiculous!!!", now=1)
    assert all("{" not in s and "about ." not in s for f in review.scripts for s in f.suggestions)


@pytest.mark.parametrize(
    "lang, first_reply, asks",
    [
        ("en", "Let me check that.", "May I have your name?"),
        ("sr", "Proveriću to.", "Kako se vi zovete?"),
        ("hr", "Provjerit ću to.", "Kako se vi zovete?"),
        ("sl", "Preverim.", "Kako vam je ime?"),
    ],
)
def test_the_introduction_nudge_asks_a_name_only_when_it_is_not_known(
    coach, lang, first_reply, asks
) -> None:
    def nudge(values: dict[str, str]) -> Any:
        chat = ConversationCoach(coach, lang, now=0)
        chat.customer_message("Hi", now=1)
        [got] = chat.agent_message(first_reply, now=2, values=values)
        return got

    unknown = nudge({"agent_name": "Ana"})
    assert any(asks in s for s in unknown.suggestions), unknown.suggestions
    known = nudge(NAMES)
    assert all("Marko" in s and asks not in s for s in known.suggestions), known.suggestions
    assert "Marko" in known.message and "Marko" not in unknown.message


def test_a_script_is_offered_again_to_the_agent_who_takes_the_chat_over(coach) -> None:
    chat = ConversationCoach(coach, "en", now=0)
    upset = "This is ridiculous!!"
    first = chat.customer_message(upset, now=1, values=NAMES, agent="jelena")
    assert [s.category for s in first.scripts] == ["frustration"]
    # Within the cooldown, the same agent is not offered it twice ...
    assert chat.customer_message(upset, now=30, values=NAMES, agent="jelena").scripts == []
    # ... but the agent the chat went to has not seen it.
    again = chat.customer_message(upset, now=60, values=NAMES, agent="marko")
    assert [s.category for s in again.scripts] == ["frustration"]
    assert chat.customer_message(upset, now=90, values=NAMES, agent="marko").scripts == []
    # Scripts held while nobody had the chat go to its first agent: not offered twice.
    queued = ConversationCoach(coach, "en", now=0)
    assert queued.customer_message(upset, now=1, values=NAMES).scripts
    assert queued.customer_message(upset, now=30, values=NAMES, agent="jelena").scripts == []
    restored = ConversationCoach.from_dict(coach, chat.to_dict())
    assert restored.state.scripts_for == "marko"


def test_a_handed_over_chat_brings_its_scripts_to_the_next_agent(coach) -> None:
    chat = ConversationCoach(coach, "en", now=0)
    upset = "I have called three times already, this is ridiculous!!"
    first = chat.customer_message(upset, now=1, values=NAMES, agent="jelena")
    assert {s.category for s in first.scripts} == {"frustration", "repeat_contact"}
    waiting = chat.state.waiting_since
    # Only the categories asked for, with the new agent's name, the wait as it was.
    handed = chat.handover(upset, {"repeat_contact"}, now=20,
                           values={**NAMES, "agent_name": "Ivo"}, agent="ivo")
    assert [s.category for s in handed] == ["repeat_contact"]
    assert any("my name is Ivo" in s for s in handed[0].suggestions), handed[0].suggestions
    assert chat.state.waiting_since == waiting and chat.state.last_customer_at == 1
    # Offered to him now: not again within the cooldown, whether handed or written.
    assert chat.handover(upset, {"repeat_contact"}, now=30, values=NAMES, agent="ivo") == []
    again = chat.customer_message(upset, now=40, values=NAMES, agent="ivo")
    assert [s.category for s in again.scripts] == ["frustration"]


def test_a_customer_writing_english_in_a_serbian_chat_gets_english_scripts(coach) -> None:
    chat = ConversationCoach(coach, "sr", now=0)
    review = chat.customer_message("This is ridiculous, I am so angry!!!", now=1, values=NAMES)
    assert [c.category for c in review.scripts] == ["frustration"]
    assert review.scripts[0].rule.startswith("en.")
    assert any("frustrating" in s or "upset" in s for s in review.scripts[0].suggestions)
    # Serbian stays Serbian.
    chat = ConversationCoach(coach, "sr", now=0)
    review = chat.customer_message("Ovo je sramota, koliko još da čekam!!!", now=1, values=NAMES)
    assert review.scripts and all(s.rule.startswith("sr.") for s in review.scripts)
