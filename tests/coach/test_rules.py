"""The project's rule packs: every example, coverage, hard negatives, real corpora."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from coach import DEFAULT_RULES_DIR, LANGUAGES, Coach
from coach.rulefile import RuleLoader
from coach.taxonomy import AGENT_CATEGORIES, CUSTOMER_CATEGORIES

CORPORA = Path(
    os.environ.get("TACTLINE_CORPORA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
)
MIN_EXAMPLES = 10
MAX_FALSE_ALARM_RATE = 0.02


def _examples() -> list[tuple[str, str, str, str, str]]:
    out = []
    for path in sorted(DEFAULT_RULES_DIR.glob("*/*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=RuleLoader)  # noqa: S506
        for rule in data.get("rules", []):
            examples = rule.get("examples") or {}
            for kind in ("flag", "pass"):
                for sentence in examples.get(kind) or []:
                    out.append((rule["id"], data["lang"], data["category"], kind, sentence))
    return out


EXAMPLES = _examples()


@pytest.fixture(scope="module")
def rules_coach() -> Coach:
    return Coach.load(check_examples=False)


@pytest.mark.parametrize(
    "rule_id, lang, category, kind, sentence",
    EXAMPLES,
    ids=[f"{e[0]}-{e[3]}-{i}" for i, e in enumerate(EXAMPLES)],
)
def test_rule_example(rules_coach: Coach, rule_id, lang, category, kind, sentence) -> None:
    role = "customer" if category in CUSTOMER_CATEGORIES else "agent"
    if kind == "flag":
        # Before overlaps are resolved: a sibling rule may report the same words.
        raw = rules_coach.check(sentence, lang, role, include_offers=True, resolve_overlaps=False)
        assert rule_id in [f.rule for f in raw]
    else:
        flags = rules_coach.check(sentence, lang, role, include_offers=True)
        assert [f.rule for f in flags if f.category == category] == []


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("category", AGENT_CATEGORIES + CUSTOMER_CATEGORIES)
def test_every_category_has_enough_examples(lang: str, category: str) -> None:
    counts = Counter(kind for _, lng, cat, kind, _ in EXAMPLES if lng == lang and cat == category)
    assert counts["flag"] >= MIN_EXAMPLES, f"{lang}/{category}: {counts['flag']} flag examples"
    assert counts["pass"] >= MIN_EXAMPLES, f"{lang}/{category}: {counts['pass']} pass examples"


HARD_NEGATIVES = [
    ("en", "agent", "There's no charge for the replacement."),
    ("en", "agent", "You never have to pay for returns."),
    ("en", "agent", "That's not your fault."),
    ("en", "agent", "I can't wait to hear how it goes!"),
    ("en", "customer", "I'm not angry, just curious."),
    ("sr", "agent", "Nikada ne naplaćujemo povraćaj robe."),
    ("sr", "agent", "Никада не наплаћујемо повраћај робе."),
    ("hr", "agent", "Nikada ne naplaćujemo povrat robe."),
    ("sl", "agent", "Ni vaša krivda."),
    ("sr", "agent", "Nije vaša krivica."),
    ("sr", "agent", "Није ваша кривица."),
    ("hr", "agent", "Nije vaša krivica."),
    ("hr", "agent", "Nije vaša krivnja."),
]


@pytest.mark.parametrize("lang, role, text", HARD_NEGATIVES)
def test_taxonomy_hard_negatives_pass(rules_coach: Coach, lang: str, role: str, text: str) -> None:
    assert [f.rule for f in rules_coach.check(text, lang, role)] == []


SEEDED = [
    ("en", "I don't know, that's not my job.", {"dont_know", "not_my_job"}),
    ("en", "Calm down, the company won't agree to that.", {"dismissive", "policy_refusal"}),
    ("sr", "Ne znam, to nije moj posao.", {"dont_know", "not_my_job"}),
    ("sr", "Не знам, то није мој посао.", {"dont_know", "not_my_job"}),
    ("hr", "Ne znam, to nije moj posao.", {"dont_know", "not_my_job"}),
    ("sl", "Ne vem, to ni moje delo.", {"dont_know", "not_my_job"}),
]


@pytest.mark.parametrize("lang, text, categories", SEEDED)
def test_seed_phrasings_are_flagged_with_suggestions(rules_coach, lang, text, categories) -> None:
    flags = rules_coach.check(text, lang, "agent")
    assert {f.category for f in flags} >= categories
    assert all(f.suggestions and f.message for f in flags)


DEFLECTIONS = [
    ("en", "It's not my fault.", "en.blame.not_my_fault"),
    ("sl", "Ni moja krivda.", "sl.blame.ni_moja_krivda"),
    ("sr", "To nije moja krivica.", "sr.blame.nije_moja_krivica"),
    ("sr", "То није моја кривица.", "sr.blame.nije_moja_krivica"),
    ("hr", "Nije moja krivnja.", "hr.blame.nije_moja_krivnja"),
]


@pytest.mark.parametrize("lang, text, rule", DEFLECTIONS)
def test_deflecting_blame_is_flagged_with_a_fix_to_offer(rules_coach, lang, text, rule) -> None:
    # "Not my fault" keeps the talk on fault; the coach offers to own the fix.
    [flag] = [f for f in rules_coach.check(text, lang, "agent") if f.category == "blame"]
    assert flag.rule == rule
    assert flag.suggestions and flag.message


LATE_ORDERS = [
    ("en", "Hi, my order hasn't arrived yet."),
    ("en", "My order still hasn't arrived."),
    ("en", "Still waiting for my refund."),
    ("sr", "Dobar dan, narudžba mi još nije stigla."),
    ("sr", "Пакет још увек није стигао."),
    ("hr", "Dobar dan, narudžba mi još nije stigla."),
    ("hr", "I dalje čekam povrat novca."),
    ("sl", "Dober dan, naročilo mi še ni prispelo."),
    ("sl", "Paket še vedno ni prišel."),
]
REPEAT_CONTACTS = [
    ("en", "I already wrote to you yesterday."),
    ("en", "Nobody answered my last message."),
    ("en", "Still waiting for a reply to my email."),
    ("sr", "Već sam vam pisala."),
    ("sr", "Ovo je treći put da pišem."),
    ("sr", "Još uvek nisam dobila odgovor na prošlu poruku."),
    ("hr", "Nitko mi nije odgovorio na zadnju poruku."),
    ("hr", "Opet vam pišem zbog iste narudžbe."),
    ("sl", "Nihče mi ni odgovoril na zadnje sporočilo."),
    ("sl", "Že tretjič pišem zaradi istega."),
]


@pytest.mark.parametrize("lang, text", LATE_ORDERS)
def test_a_late_order_is_no_repeat_contact(rules_coach: Coach, lang: str, text: str) -> None:
    # "Still not arrived" is a delay; only having asked before is a repeat contact.
    cats = {f.category for f in rules_coach.check(text, lang, "customer")}
    assert "repeat_contact" not in cats


@pytest.mark.parametrize("lang, text", REPEAT_CONTACTS)
def test_having_asked_before_is_a_repeat_contact(rules_coach: Coach, lang: str, text: str) -> None:
    cats = {f.category for f in rules_coach.check(text, lang, "customer")}
    assert "repeat_contact" in cats


def _scripts() -> list[tuple[str, str]]:
    """Every suggestion and script of every pack, with the file it is in."""
    out = []
    for path in sorted(DEFAULT_RULES_DIR.glob("*/*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=RuleLoader)  # noqa: S506
        where = f"{path.parent.name}/{path.name}"
        for rule in data.get("rules") or []:
            out += [(where, s) for s in rule.get("suggestions") or []]
        for nudge in (data.get("nudges") or {}).values():
            out += [(where, s) for s in nudge.get("suggestions") or []]
    return out


SCRIPTS = _scripts()
QUOTED_SLOT = re.compile(r"[«»„“”\"']\s*\{\w+\}|\{\w+\}\s*[«»„“”\"']")
SLASH_FORM = re.compile(r"\w/\w{1,3}\b")  # pomagal/a, zaboravio/la


@pytest.mark.parametrize(
    "where, text", SCRIPTS, ids=[f"{w}-{i}" for i, (w, _) in enumerate(SCRIPTS)]
)
def test_scripts_speak_plainly_to_the_customer(where: str, text: str) -> None:
    # A topic reads as part of the sentence ("zadevo glede vašega naročila"), not
    # as a quotation; and the agent's own words do not depend on their gender.
    assert not QUOTED_SLOT.search(text), f"{where}: a slot in quotation marks: {text}"
    assert not SLASH_FORM.search(text), f"{where}: a slash form: {text}"


@pytest.mark.parametrize(
    ("lang", "category", "customer_text", "script"),
    [
        ("sl", "repeat_contact", "Še vedno čakam na odgovor glede naročila.",
         "Zadevo glede vašega naročila zdaj prevzemam jaz in vas obvestim, takoj ko bo urejena."),
        ("sl", "escalation_request", "Želim govoriti z vodjo glede vračila.",
         "Preden vas povežem, naj pregledam zadevo glede vračila denarja, da bo imel vodja"),
    ],
)
def test_a_known_topic_is_part_of_the_sentence(
    rules_coach: Coach, lang: str, category: str, customer_text: str, script: str
) -> None:
    topic = rules_coach.conversation_topic(customer_text, lang)
    assert topic is not None
    scripts = [
        s
        for f in rules_coach.check(customer_text, lang, "customer", slots=topic)
        if f.category == category
        for s in f.suggestions
    ]
    assert any(script in s for s in scripts), scripts


AGENT_FLAG_EXAMPLES = [
    (lang, sentence)
    for _, lang, category, kind, sentence in EXAMPLES
    if kind == "flag" and category in AGENT_CATEGORIES
]
#: Punctuation that no splice should leave: ",." "., " " ," "?." and the like.
STRAY_PUNCTUATION = re.compile(r"[,;:][.!?,]|[.!?][,;:]|\s[,.!?;:]|\?\.|(?<!\.)\.\.(?!\.)")


def test_suggestions_splice_into_every_flag_example_cleanly(rules_coach: Coach) -> None:
    # Whatever flag a rule's example raises, each of its suggestions put in place of
    # the flagged words neither glues onto a word nor leaves stray punctuation.
    broken = []
    for lang, text in AGENT_FLAG_EXAMPLES:
        for flag in rules_coach.check(text, lang, "agent"):
            for s in flag.suggestions:
                out = text[: flag.start] + s + text[flag.end :]
                glued = (flag.start > 0 and text[flag.start - 1].isalnum() and s[0].isalnum()) or (
                    flag.end < len(text) and text[flag.end].isalnum() and s[-1].isalnum()
                )
                stray = STRAY_PUNCTUATION.search(out) and not STRAY_PUNCTUATION.search(text)
                if glued or stray:
                    broken.append(f"{flag.rule}: {text!r} -> {out!r}")
    assert broken == []


def _corpus(name: str) -> list[str]:
    path = CORPORA / name
    if not path.exists():
        pytest.skip(f"corpus {path} is not on this machine")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def test_agent_corpus_false_alarms_stay_under_two_percent(rules_coach: Coach) -> None:
    replies = _corpus("twitter-care-agent.jsonl")
    flagged = []
    for text in replies:
        hits = [f for f in rules_coach.check(text, "en", "agent") if f.severity != "info"]
        if hits:
            flagged.append((text, hits))
    rate = len(flagged) / len(replies)
    print(f"\nagent corpus: {len(flagged)}/{len(replies)} replies warned ({rate:.2%})")
    for text, hits in flagged:
        print(f"  {[f.rule for f in hits]}: {text[:140]!r}")
    assert rate <= MAX_FALSE_ALARM_RATE


def test_customer_corpus_cues_by_category(rules_coach: Coach) -> None:
    posts = _corpus("twitter-care-customer.jsonl")
    by_category: Counter[str] = Counter()
    cued = 0
    for text in posts:
        cats = {f.category for f in rules_coach.check(text, "en", "customer")}
        cued += bool(cats)
        by_category.update(cats)
    print(f"\ncustomer corpus: {cued}/{len(posts)} posts cued; by category: {dict(by_category)}")
    assert set(by_category) <= set(CUSTOMER_CATEGORIES)
    assert by_category["frustration"] > 0


@pytest.mark.parametrize(
    ("text", "spliced"),
    [
        ("Calm down, the company won't agree to that.",
         "Calm down, our company is committed to making this right, so let me check the "
         "options with my supervisor."),
        ("Please send me your card number and CVV.",
         "Please use the secure payment link I'm sending you - never share card details, "
         "PINs or passwords in chat."),
        ("Sorry, I don't know.", "Sorry, let me find out for you."),
    ],
)
def test_the_first_suggestion_spliced_in_leaves_a_whole_sentence(
    coach: Coach, text: str, spliced: str
) -> None:
    # The agent's one click: the last flag's first suggestion replaces its words.
    flag = coach.check(text, "en", "agent")[-1]
    assert text[: flag.start] + flag.suggestions[0] + text[flag.end :] == spliced


def test_messages_in_sr_hr_sl_quote_as_those_languages_do(rules_coach: Coach) -> None:
    # „…“ in Serbian and Croatian, »…« in Slovenian: a straight " reads as a slip.
    straight = [
        (r.id, text)
        for r in rules_coach.rules
        if r.lang != "en"
        for text in [r.message, *map(str, r.suggestions)]
        if '"' in text
    ]
    assert straight == []


@pytest.mark.parametrize(
    ("lang", "text", "spliced"),
    [
        ("sr", "Trebalo je ranije da naručite.", "Sledeći put je najbolje da na vreme naručite."),
        ("sr", "Trebalo je ranije da nam javite.",
         "Sledeći put nam se slobodno javite čim primetite problem."),
        ("hr", "Nemam ovlasti za povrat novca.", "Zamolit ću nadređenog da odobri povrat novca."),
        ("sr", "Nemam ovlašćenje za povraćaj novca.",
         "Zamoliću nadređenog da odobri povraćaj novca."),
        ("sl", "Nimam pooblastil za vračilo denarja.",
         "Nadrejenega prosim, da odobri vračilo denarja."),
        ("sr", "Nažalost, to je vaša greška.", "Hajde da ovo zajedno rešimo."),
        ("hr", "Nažalost, to nije moj posao.",
         "Spojit ću vas s odjelom koji vam može detaljnije pomoći."),
        ("sl", "Žal, to je vaša krivda.", "Poglejva, kako to skupaj rešiva."),
    ],
)
def test_the_first_suggestion_keeps_what_the_agent_meant(
    rules_coach: Coach, lang: str, text: str, spliced: str
) -> None:
    # "ranije" and "povrat novca" stay in the sentence; a leading "Nažalost," or
    # "Žal," goes with the words it introduced instead of before a kind offer.
    [flag] = rules_coach.check(text, lang, "agent")
    assert text[: flag.start] + flag.suggestions[0] + text[flag.end :] == spliced


@pytest.mark.parametrize(
    ("lang", "text", "spliced"),
    [
        ("hr", "Razumijem. Nije moguće.", "Razumijem. Evo što mogu učiniti za vas."),
        ("sr", "Nije moguće.", "Evo šta mogu da uradim za vas."),
        ("sr", "Није могуће.", "Ево шта могу да урадим за вас."),
        ("sl", "Razumem. Ni mogoče.", "Razumem. Lahko vam ponudim drugo možnost."),
    ],
)
def test_a_bare_not_possible_is_a_flat_no(
    rules_coach: Coach, lang: str, text: str, spliced: str
) -> None:
    # "Nije moguće." alone, without "to", refuses as flatly as "To nije moguće.",
    # and the sentence before it stays.
    [flag] = [f for f in rules_coach.check(text, lang, "agent") if f.category == "absolute_no"]
    assert text[: flag.start] + flag.suggestions[0] + text[flag.end :] == spliced


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("hr", "Nije moguće da ste čekali tako dugo, odmah provjeravam."),
        ("sr", "Nije moguće da ste čekali toliko dugo, odmah proveravam."),
        ("sl", "Ni mogoče, da ste čakali tako dolgo, takoj preverim."),
    ],
)
def test_not_possible_said_in_sympathy_is_no_refusal(
    rules_coach: Coach, lang: str, text: str
) -> None:
    flags = rules_coach.check(text, lang, "agent")
    assert [f.rule for f in flags if f.category == "absolute_no"] == []


@pytest.mark.parametrize(
    ("lang", "category", "text", "spliced"),
    [
        # No "ih"/"njima" left pointing at a service the text never named.
        ("sr", "not_my_job", "Pitajte nekog drugog.",
         "Ja ću se umesto vas obratiti nadležnoj službi i javiti vam ishod."),
        ("hr", "not_my_job", "Obratite se drugom odjelu.",
         "Ja ću se umjesto vas javiti nadležnoj službi i obavijestiti vas o ishodu."),
        ("hr", "not_my_job", "Nazovite ga sami.",
         "Ja ću se javiti umjesto vas i obavijestiti vas o ishodu."),
        # A cause pinned on the customer has no steps to go through.
        ("hr", "blame", "To se dogodilo zato što ste kasno reagirali.",
         "Nije važno kako se to dogodilo, odmah ću to riješiti."),
        ("hr", "blame", "Krivo ste unijeli adresu.", "To ćemo zajedno ispraviti."),
        ("sr", "blame", "To se desilo zato što ste kasno reagovali.",
         "Nije važno kako se to desilo, odmah ću to rešiti."),
        ("sl", "blame", "To se je zgodilo, ker ste prepozno reagirali.",
         "Ni pomembno, kako se je to zgodilo, takoj to uredim."),
        # "Whatever" has nothing to explain; going along with the customer answers it.
        ("hr", "dismissive", "Kako god.",
         "Razumijem vas, napravit ćemo kako vama najviše odgovara."),
        ("sr", "dismissive", "Dobro, kako god!",
         "Razumem vas, uradićemo kako vama najviše odgovara."),
        ("sr", "dismissive", "Како год.", "Разумем вас, урадићемо како вама највише одговара."),
        ("sr", "dismissive", "Како год. Хвала.",
         "Разумем вас, урадићемо како вама највише одговара. Хвала."),
        ("sl", "dismissive", "Kakorkoli.", "Razumem, naredimo tako, kot vam najbolj ustreza."),
        # What is refused after »da« goes too, not left after the offer.
        ("sl", "absolute_no", "Žal ni mogoče, da bi to uredili danes.",
         "Lahko vam ponudim drugo možnost."),
    ],
)
def test_the_first_suggestion_fits_what_it_replaces(
    rules_coach: Coach, lang: str, category: str, text: str, spliced: str
) -> None:
    [flag] = [f for f in rules_coach.check(text, lang, "agent") if f.category == category]
    assert text[: flag.start] + flag.suggestions[0] + text[flag.end :] == spliced


def test_not_reading_my_message_is_dismissive_not_blame(rules_coach: Coach) -> None:
    # One finding for one sentence: it is about being understood (an offer to
    # explain), not about steps the customer missed.
    flags = rules_coach.check("Niste pažljivo pročitali moju poruku", "hr", "agent")
    assert [f.category for f in flags] == ["dismissive"]


@pytest.mark.parametrize(
    ("text", "categories"),
    [
        ("ZAKAJ NIHČE NE ODGOVORI", {"frustration"}),
        ("Zakaj nihče ne odgovori?", {"frustration"}),
        ("Nihče mi ni odgovoril na zadnje sporočilo.", {"repeat_contact"}),
    ],
)
def test_nobody_answering_is_a_repeat_contact_only_after_writing_before(
    rules_coach: Coach, text: str, categories: set[str]
) -> None:
    assert {f.category for f in rules_coach.check(text, "sl", "customer")} == categories
