"""Matching semantics of the engine, on small rule packs written here."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coach import Coach, UnknownLanguageError, UnknownRoleError, script, slots
from coach.engine import _fit

EN_RULES = """\
lang: en
category: dont_know
role: agent
rules:
  - id: en.dont_know.i_dont_know
    severity: warning
    match:
      - phrase: no idea
      - pattern: [{LOWER: i}, {LOWER: really, OP: "?"}, {LEMMA: do}, {LOWER: not}, {LEMMA: know}]
    except:
      - pattern: [{LEMMA: know}, {LOWER: {IN: [if, whether]}}]
    message: Offer a next step.
    suggestions: [let me find out for you]
"""

EN_ABSOLUTE = """\
lang: en
category: absolute_no
role: agent
rules:
  - id: en.absolute_no.we_never
    severity: warning
    match:
      - pattern: [{LOWER: we}, {LOWER: never}, {}]
    message: Say what you can do.
    suggestions: [here is what we can do]
"""

EN_CUSTOMER = """\
lang: en
category: frustration
role: customer
rules:
  - id: en.frustration.shouting
    severity: warning
    match:
      - pattern: [{IS_UPPER: true}, {IS_UPPER: true}, {IS_UPPER: true}]
      - regex: "!{3,}"
      - pattern: [{LEMMA: be}, {LOWER: angry}]
    except:
      - pattern: [{LOWER: not}, {LOWER: angry}]
    message: The customer is upset.
    suggestions:
      - "I'm sorry[, {customer_name}]. I'll fix[ {topic}] now.[ — {agent_name}]"
"""

SR_RULES = """\
lang: sr
category: dont_know
role: agent
rules:
  - id: sr.dont_know.ne_znam
    severity: warning
    match:
      - pattern: [{LOWER: ne}, {LEMMA: znati}]
    message: Ponudite sledeći korak.
    suggestions: [proveriću to za vas]
"""


@pytest.fixture
def small(write_rules, tmp_path: Path) -> Coach:
    root = write_rules(
        {
            "en/dont_know.yaml": EN_RULES,
            "en/absolute_no.yaml": EN_ABSOLUTE,
            "en/frustration.yaml": EN_CUSTOMER,
            "sr/dont_know.yaml": SR_RULES,
        }
    )
    return Coach.load(root, cache_dir=tmp_path / "cache", max_chars=200)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I don't know.", ["I don't know"]),
        ("i dont know", ["i dont know"]),
        ("I do not know", ["I do not know"]),
        ("I really don’t know", ["I really don’t know"]),
        ("I didn't know that", ["I didn't know"]),
        ("No idea, sorry. I don't know!", ["No idea", "I don't know"]),
        ("I don't know if it shipped, let me check.", []),
        ("Let me find out for you.", []),
    ],
)
def test_agent_phrasing_spans(small: Coach, text: str, expected: list[str]) -> None:
    flags = small.check(text, "en", "agent")
    assert [f.text for f in flags] == expected
    for f in flags:
        assert text[f.start : f.end] == f.text


def test_suggestion_fits_the_sentence(small: Coach) -> None:
    [first] = small.check("I don't know.", "en")
    assert first.suggestions == ["Let me find out for you"]
    [inner] = small.check("Sorry, i don't know", "en")
    assert inner.suggestions == ["let me find out for you"]
    [pronoun] = small.check("Sorry, I don't know", "en")
    assert pronoun.suggestions == ["let me find out for you"]


@pytest.mark.parametrize(
    ("text", "span", "suggestion", "spliced"),
    [
        ("Please send me your card number.", "send me your card number",
         "please use the secure payment link", "Please use the secure payment link."),
        ("Molim vas, Molim pošaljite broj kartice", "Molim pošaljite broj kartice",
         "molim koristite sigurni link", "Molim vas, molim koristite sigurni link"),
        ("Sorry, I don't know.", "I don't know", "Let me find out for you",
         "Sorry, let me find out for you."),
        ("Hi! I don't know.", "I don't know", "let me find out for you",
         "Hi! Let me find out for you."),
        # The text's own punctuation stays; the suggestion's goes.
        ("Smirite se i.", "Smirite se i", "razumem vas. Molim vas,", "Razumem vas. Molim vas."),
        ("Calm down, sir.", "Calm down", "I understand.", "I understand, sir."),
        # A question taken whole, its mark too: the suggestion ends the sentence.
        ("What's your PIN?", "What's your PIN?", "please use the secure link",
         "Please use the secure link."),
        ("What's your PIN? Thanks.", "What's your PIN?", "please use the secure link.",
         "Please use the secure link. Thanks."),
        # A comma the matched words begin with stays after the text's word.
        ("Nažalost, to nije moguće.", ", to nije moguće", "Evo šta mogu da uradim",
         "Nažalost, evo šta mogu da uradim."),
    ],
)
def test_a_suggestion_spliced_in_reads_as_one_sentence(
    text: str, span: str, suggestion: str, spliced: str
) -> None:
    start = text.index(span)
    end = start + len(span)
    assert text[:start] + _fit(suggestion, text, start, end) + text[end:] == spliced


CALM_DOWN = [
    ("en", "Calm down, I'll check it.",
     ["I understand how frustrating this is, and I'll check it.",
      "I can see why you're upset, and I'll check it."]),
    ("en", "Please calm down and tell me the order number.",
     ["I understand how frustrating this is, so please tell me the order number.",
      "I can see why you're upset. Please tell me the order number."]),
    ("en", "Okay, calm down and please give me a minute.",
     ["Okay, I understand how frustrating this is, so please give me a minute.",
      "Okay, I can see why you're upset. Please give me a minute."]),
    ("en", "You need to calm down so I can help you.",
     ["I understand how frustrating this is, and I can help you.",
      "I can see why you're upset, and I can help you."]),
    # "so" would make what follows a consequence of the understanding.
    ("en", "Stay calm, the refund is on its way.",
     ["I understand how frustrating this is, and the refund is on its way.",
      "I can see why you're upset, and the refund is on its way."]),
    ("en", "Please stay calm while I check.",
     ["Thank you for bearing with me while I check.",
      "I understand how frustrating this is, so please bear with me while I check."]),
    ("en", "Calm down, please.",
     ["I understand how frustrating this is.",
      "I can see why you're upset, and I'm going to help."]),
    ("en", "Please calm down, sir.",
     ["I understand how frustrating this is, sir.",
      "I can see why you're upset, and I'm going to help, sir."]),
    # A verb in the future tense stays first in its clause after "i" ("i proveriću
    # to"); after "pa" it would have to become "pa ću to proveriti".
    ("sr", "Smirite se, proverićemo.",
     ["Razumem koliko vas je ovo uznemirilo i proverićemo.",
      "Potpuno razumem zašto ste nezadovoljni i proverićemo."]),
    ("sr", "Смирите се, проверићемо.",
     ["Разумем колико вас је ово узнемирило и проверићемо.",
      "Потпуно разумем зашто сте незадовољни и проверићемо."]),
    ("sr", "Smirite se, proveriću to.",
     ["Razumem koliko vas je ovo uznemirilo i proveriću to.",
      "Potpuno razumem zašto ste nezadovoljni i proveriću to."]),
    ("sr", "Molim vas, smirite se, sve ćemo rešiti danas.",
     ["Razumem koliko vas je ovo uznemirilo i sve ćemo rešiti danas.",
      "Potpuno razumem zašto ste nezadovoljni i sve ćemo rešiti danas."]),
    # What follows is no action: no "pa" (so) that makes it follow from the
    # understanding; the blame clause gets a flag of its own.
    ("sr", "Smirite se, molim vas, to nije moja greška.",
     ["Razumem koliko vas je ovo uznemirilo; to nije moja greška.",
      "Potpuno razumem zašto ste nezadovoljni; to nije moja greška."]),
    ("sr", "Opustite se, paket stiže sutra.",
     ["Razumem koliko vas je ovo uznemirilo; paket stiže sutra.",
      "Potpuno razumem zašto ste nezadovoljni; paket stiže sutra."]),
    ("sr", "Smirite se malo, pa ćemo razgovarati.",
     ["Razumem koliko vas je ovo uznemirilo, pa ćemo razgovarati.",
      "Potpuno razumem zašto ste nezadovoljni, pa ćemo razgovarati."]),
    ("sr", "Molim vas, smirite se i recite mi broj porudžbine.",
     ["Razumem koliko vas je ovo uznemirilo. Molim vas, recite mi broj porudžbine.",
      "Potpuno razumem zašto ste nezadovoljni. Molim vas, recite mi broj porudžbine."]),
    ("sr", "Смирите се и реците ми број поруџбине.",
     ["Разумем колико вас је ово узнемирило. Молим вас, реците ми број поруџбине.",
      "Потпуно разумем зашто сте незадовољни. Молим вас, реците ми број поруџбине."]),
    ("sr", "Smirite se molim vas, proveriću.",
     ["Razumem koliko vas je ovo uznemirilo i proveriću.",
      "Potpuno razumem zašto ste nezadovoljni i proveriću."]),
    ("hr", "Smirite se, provjerit ćemo.",
     ["Razumijem koliko vas ovo frustrira i provjerit ćemo.",
      "Potpuno razumijem zašto ste uzrujani i provjerit ćemo."]),
    ("hr", "Smirite se, pa ću to provjeriti.",
     ["Razumijem koliko vas ovo frustrira, pa ću to provjeriti.",
      "Potpuno razumijem zašto ste uzrujani, pa ću to provjeriti."]),
    ("hr", "Smirite se, to nije moja greška.",
     ["Razumijem koliko vas ovo frustrira; to nije moja greška.",
      "Potpuno razumijem zašto ste uzrujani; to nije moja greška."]),
    ("hr", "Molim vas, smirite se i recite mi broj narudžbe.",
     ["Razumijem koliko vas ovo frustrira. Molim vas, recite mi broj narudžbe.",
      "Potpuno razumijem zašto ste uzrujani. Molim vas, recite mi broj narudžbe."]),
    ("sl", "Pomirite se, preverili bomo.",
     ["Razumem vašo jezo in preverili bomo.",
      "Žal mi je za nevšečnosti in preverili bomo."]),
    ("sl", "Pomirite se, prosim, takoj preverim.",
     ["Razumem vašo jezo in takoj preverim.",
      "Žal mi je za nevšečnosti in takoj preverim."]),
    ("sl", "Prosim, pomirite se in mi povejte številko naročila.",
     ["Razumem, da ste razburjeni, zato mi povejte številko naročila.",
      "Razumem vašo jezo, zato mi povejte številko naročila."]),
    ("sl", "Pomirite se, ni moja krivda.",
     ["Razumem vašo jezo; ni moja krivda.", "Žal mi je za nevšečnosti; ni moja krivda."]),
    ("sl", "Umirite se, paket pride jutri.",
     ["Razumem vašo jezo; paket pride jutri.", "Žal mi je za nevšečnosti; paket pride jutri."]),
    ("sl", "Umirite se, gospa.",
     ["Razumem, kako neprijetno je to, gospa.",
      "Razumem vašo jezo in to takoj poskusim popraviti, gospa."]),
]


@pytest.mark.parametrize(("lang", "text", "spliced"), CALM_DOWN)
def test_calm_down_suggestions_splice_into_whole_sentences(
    coach: Coach, lang: str, text: str, spliced: list[str]
) -> None:
    # Each suggestion replaces the flagged words, the comma or "and" after them
    # included where the sentence goes on, so no comma splice or broken join is left.
    [flag] = [f for f in coach.check(text, lang, "agent") if f.category == "dismissive"]
    assert [text[: flag.start] + s + text[flag.end :] for s in flag.suggestions] == spliced


SPLICES = [
    # A question or a sentence taken whole: the suggestion replaces all of it.
    ("en", "Can you send me your password?", "en.sensitive_data_request.ask_for_secret",
     ["For your security, please never share passwords, PINs or codes, not even with us; "
      "I'll verify your account another way.",
      "I'll send you a secure link to verify your account; please don't type passwords or "
      "codes here."]),
    ("en", "What's your CVV?", "en.sensitive_data_request.ask_for_card",
     ["Please use the secure payment link I'm sending you - never share card details, PINs "
      "or passwords in chat.",
      "I'll send you a secure form for that; for your safety, please don't type card details "
      "here."]),
    ("en", "Calm down, okay?", "en.dismissive.calm_down",
     ["I understand how frustrating this is.",
      "I can see why you're upset, and I'm going to help."]),
    ("en", "I DONT KNOW, sorry.", "en.dont_know.i_dont_know",
     ["Let me find out for you.", "I'll find someone who can answer that.",
      "Let me check that for you."]),
    ("en", "No idea, sorry.", "en.dont_know.no_idea",
     ["Let me find out for you.", "I'll find someone who can answer that."]),
    ("en", "That was your mistake, not ours.", "en.blame.your_fault",
     ["Let's go through the steps together.", "Let's get this sorted together."]),
    ("en", "We never give refunds.", "en.absolute_no.never",
     ["Here's what we can offer instead.", "Let me see what we can offer you instead."]),
    ("sr", "Koji je CVV vaše kartice?", "sr.sensitive_data_request.kartica",
     ["Poslaću vam link ka sigurnoj stranici za plaćanje, a podatke kartice nikada ne delite "
      "u četu.",
      "Za proveru mi je dovoljan broj porudžbine.",
      "Molim vas da podatke kartice unesete samo na sigurnoj stranici za plaćanje, nikako "
      "ovde u četu."]),
    ("sr", "Nažalost, to nije moguće.", "sr.absolute_no.nemoguce",
     ["Evo šta mogu da uradim za vas.",
      "To ne mogu, ali mogu da vam ponudim drugo rešenje.",
      "Mogu da vam predložim dve mogućnosti."]),
    ("sr", "Trebalo je da ste proverili adresu.", "sr.blame.da_ste_proverili",
     ["Hajde da zajedno prođemo kroz korake.", "Evo kako ćemo to sada rešiti."]),
    ("sr", "Iskreno, ne mogu vam pomoći.", "sr.absolute_no.ne_mogu_nista",
     ["Evo šta mogu da uradim za vas.", "Ovo je ono što mogu odmah da uradim.",
      "Mogu da vam ponudim dve mogućnosti."]),
    ("sr", "Ne radimo zamenu.", "sr.absolute_no.nikada_ne_vracamo",
     ["Evo šta možemo da ponudimo umesto toga.",
      "Mogu da vam ponudim nekoliko drugih mogućnosti, pa izaberite šta vam najviše odgovara.",
      "Proveriću koje mogućnosti imamo za vaš slučaj."]),
    ("hr", "Opustite se, nije to ništa.", "hr.dismissive.smirite_se",
     ["Razumijem koliko vas ovo frustrira.",
      "Potpuno razumijem zašto ste uzrujani.",
      "Žao mi je što vam je ovo stvorilo toliko neugodnosti."]),
    ("hr", "Koja je vaša lozinka?", "hr.sensitive_data_request.trazi_podatke",
     ["Poslat ću vam sigurnu poveznicu, a takve podatke nikada nemojte slati u chatu.",
      "Za provjeru mi je dovoljan broj narudžbe ili e-mail adresa.",
      "Radi vaše sigurnosti to ćemo riješiti putem sigurne poveznice, a lozinku, PIN i CVV "
      "nikome ne otkrivajte."]),
    ("sl", "Mi lahko pošljete številko kartice?", "sl.sensitive_data_request.kartica_geslo",
     ["Za preverjanje potrebujem le številko naročila; gesla, PIN-a, kode CVV ali številke "
      "kartice nikoli ne delite v klepetu.",
      "Pošljem vam varno povezavo; takih podatkov, prosim, ne pišite v klepet."]),
    ("sl", "Ne dramatizirajte.", "sl.dismissive.pretiravate",
     ["Razumem, da je to za vas zelo neprijetno.", "Razumem, kako pomembno je to za vas."]),
    ("sl", "Zaradi vaše napake je naročilo zavrnjeno.", "sl.blame.vasa_krivda",
     ["Poglejva, kako to skupaj rešiva.", "To bomo hitro uredili."]),
    ("en", "That's not my fault, the courier lost it.", "en.blame.not_my_fault",
     ["I'll put this right for you.", "Let's get this sorted together."]),
    ("sr", "Smirite se, molim vas, to nije moja greška.", "sr.blame.nije_moja_krivica",
     ["Smirite se, molim vas, žao mi je što se ovo desilo i odmah ću to rešiti.",
      "Smirite se, molim vas, hajde da ovo zajedno rešimo."]),
    # The clitic comes right after "ali": "ali vam mogu", "ali ću … provjeriti".
    ("hr", "To nije moguće.", "hr.absolute_no.nemoguce",
     ["Evo što mogu učiniti za vas.", "To ne mogu, ali vam mogu ponuditi drugo rješenje.",
      "Predlažem drugi način."]),
    ("hr", "Sustav mi to ne dopušta.", "hr.policy_refusal.sustav_ne_dopusta",
     ["To ne mogu izravno, ali ću s nadređenim provjeriti koje mogućnosti imamo.",
      "Pronaći ću drugi način da to riješimo.", "Uključit ću kolegu koji to može odobriti."]),
    ("sr", "Nije moja greška, pošta je izgubila paket.", "sr.blame.nije_moja_krivica",
     ["Žao mi je što se ovo desilo i odmah ću to rešiti.", "Hajde da ovo zajedno rešimo."]),
    ("sr", "То није моја кривица.", "sr.blame.nije_moja_krivica",
     ["Жао ми је што се ово десило и одмах ћу то решити.", "Хајде да ово заједно решимо."]),
    ("hr", "Nije moja krivnja.", "hr.blame.nije_moja_krivnja",
     ["Žao mi je što se ovo dogodilo i odmah ću to riješiti.", "Riješimo ovo zajedno."]),
    ("sl", "Ni moja krivda, pošta je izgubila paket.", "sl.blame.ni_moja_krivda",
     ["Opravičujem se za nevšečnosti in to takoj uredim.", "Poglejva, kako to skupaj rešiva."]),
    # The "ne vem" in front is a dont_know flag of its own.
    ("sl", "Ne vem, to ni moje delo.", "sl.not_my_job.ni_moje_delo",
     ["Ne vem, lahko vas premestim na ustrezen oddelek, kjer vam bodo pomagali podrobneje.",
      "Ne vem, takoj vas povežem s kolegi, ki to urejajo."]),
    ("sl", "Ne vem, kdaj bo paket prispel?", "sl.dont_know.ne_vem_vprasanje",
     ["Naj to takoj preverim za vas.", "To preverim in vam takoj sporočim."]),
    ("hr", "Nažalost, ne možemo vam više ništa napraviti.", "hr.absolute_no.ne_mogu_nista",
     ["Evo što mogu učiniti za vas.", "Mogu vam ponuditi dvije mogućnosti.",
      "Pogledat ću koje druge mogućnosti imamo."]),
    ("hr", "Zamjena nije moguća.", "hr.absolute_no.nikada_ne_vracamo",
     ["Mogu vam ponuditi nekoliko drugih mogućnosti, pa odaberite što vam najviše odgovara.",
      "Evo što vam u ovom slučaju možemo ponuditi."]),
    ("sr", "Nažalost, to je protiv naše politike.", "sr.policy_refusal.protiv_politike",
     ["Proveriću koje mogućnosti imamo u vašem slučaju.",
      "Evo šta pravila omogućavaju u vašem slučaju.",
      "Razgovaraću sa nadređenim o mogućnostima za vas."]),
    ("sl", "Žal, to je v nasprotju s pravili.", "sl.policy_refusal.politika_pravila",
     ["Naj preverim, katere možnosti imamo v vašem primeru.",
      "Naše podjetje je zavezano zadovoljstvu strank; preverim, kaj lahko naredimo."]),
    ("sr", "Nažalost, ne znam.", "sr.dont_know.ne_znam",
     ["Odmah ću proveriti.", "Proveriću to za vas.",
      "Naći ću nekoga ko može da odgovori na to."]),
    ("sl", "Žal, ne vem.", "sl.dont_know.ne_vem",
     ["Naj to takoj preverim za vas.", "Poiščem nekoga, ki vam bo znal odgovoriti.",
      "Počakajte trenutek, to preverim."]),
    ("sl", "Takih izdelkov žal ne menjamo.", "sl.absolute_no.nikoli_ne_vracamo",
     ["Lahko vam ponudim več drugih možnosti, vi pa izberite, kar vam najbolj ustreza.",
      "Predlagam vam drugo rešitev."]),
    ("sl", "Pokličite kurirja.", "sl.not_my_job.poklicite_sami",
     ["Lahko namesto vas pokličem jaz.", "Takoj vas povežem z ustreznim oddelkom.",
      "To uredim jaz in vam sporočim."]),
    # What the sentence goes on to say stays, behind an opening that joins it.
    ("en", "I don't know when it will arrive.", "en.dont_know.find_out_what",
     ["Let me find out when it will arrive.", "I'll check when it will arrive."]),
    ("en", "I guarantee it will arrive tomorrow.", "en.overpromise.guarantee",
     ["As far as I can see, it will arrive tomorrow.", "I expect it will arrive tomorrow."]),
    ("en", "It will definitely arrive today.", "en.overpromise.definitely",
     ["It will most likely arrive today.", "It will probably arrive today."]),
    ("en", "Obviously you need to charge it first.", "en.dismissive.obviously",
     ["It looks like you need to charge it first.", "I think you need to charge it first."]),
    ("sr", "Sigurno će stići sutra.", "sr.overpromise.sigurno_ce",
     ["Najverovatnije će stići sutra.", "Po svemu sudeći će stići sutra."]),
    ("sr", "Сигурно ће стићи сутра.", "sr.overpromise.sigurno_ce",
     ["Највероватније ће стићи сутра.", "По свему судећи ће стићи сутра."]),
    ("sr", "Obećavam da će stići sutra.", "sr.overpromise.obecavam_garantujem",
     ["Očekujem da će stići sutra.", "Koliko sada vidim, izgleda da će stići sutra."]),
    ("sr", "Ne znam kada će paket stići.", "sr.dont_know.provericu_sta",
     ["Proveriću kada će paket stići.", "Odmah ću proveriti kada će paket stići."]),
    ("sr", "Nažalost, ne znam šta se desilo sa vašom porudžbinom.", "sr.dont_know.provericu_sta",
     ["Proveriću šta se desilo sa vašom porudžbinom.",
      "Odmah ću proveriti šta se desilo sa vašom porudžbinom."]),
    ("sr", "Sistem mi ne dozvoljava da promenim adresu.",
     "sr.policy_refusal.sistem_ne_dozvoljava_da",
     ["Proveriću na koji drugi način mogu da promenim adresu.",
      "Zatražiću odobrenje da promenim adresu."]),
    ("sr", "Nemam ovlašćenje da vam vratim novac.", "sr.policy_refusal.sistem_ne_dozvoljava_da",
     ["Proveriću na koji drugi način mogu da vam vratim novac.",
      "Zatražiću odobrenje da vam vratim novac."]),
    ("sr", "Ne znamo još tačan datum isporuke.", "sr.dont_know.provericu_sta",
     ["Proveriću tačan datum isporuke.", "Odmah ću proveriti tačan datum isporuke."]),
    ("sr", "Не знамо још тачан датум испоруке.", "sr.dont_know.provericu_sta",
     ["Проверићу тачан датум испоруке.", "Одмах ћу проверити тачан датум испоруке."]),
    ("sr", "Kunem se da sam sve poslala.", "sr.overpromise.kunem_se_da",
     ["U sistemu vidim da sam sve poslala.", "Koliko sada vidim, izgleda da sam sve poslala."]),
    ("hr", "Paket će sigurno stići sutra.", "hr.overpromise.sigurno",
     ["Paket će najvjerojatnije stići sutra.", "Paket će po svemu sudeći stići sutra."]),
    ("hr", "Nemam pojma gdje je vaš paket.", "hr.dont_know.provjerit_cu_sto",
     ["Provjerit ću gdje je vaš paket.", "Odmah ću provjeriti gdje je vaš paket."]),
    ("hr", "Trebali ste pročitati upute.", "hr.blame.trebali_ste",
     ["Sljedeći put možete pročitati upute.", "Ubuduće je dovoljno pročitati upute."]),
    ("sl", "Žal ne vem, kdaj bo paket prispel.", "sl.dont_know.naj_preverim_kaj",
     ["Takoj preverim, kdaj bo paket prispel.", "Naj preverim, kdaj bo paket prispel."]),
    ("sl", "Očitno niste prebrali navodil.", "sl.dismissive.ocitno",
     ["Morda niste prebrali navodil.", "Verjetno niste prebrali navodil."]),
    ("hr", "Iskreno, ne znamo kada će roba stići.", "hr.dont_know.provjerit_cu_sto",
     ["Provjerit ću kada će roba stići.", "Odmah ću provjeriti kada će roba stići."]),
    ("hr", "Kunem se da je sve u redu.", "hr.overpromise.kunem_se_da",
     ["U sustavu vidim da je sve u redu.", "Koliko sada vidim, izgleda da je sve u redu."]),
    ("hr", "Nije mi dopušteno odobriti popust.", "hr.policy_refusal.nije_mi_dopusteno_uciniti",
     ["Provjerit ću kako mogu odobriti popust.",
      "Zamolit ću nadređenog da mi dopusti odobriti popust."]),
    ("sl", "Obljubim, da bo paket jutri pri vas.", "sl.overpromise.obljubim",
     ["Naredim vse, kar je v moji moči, da bo paket jutri pri vas.",
      "Osebno spremljam vaš primer in naredim vse, da bo paket jutri pri vas."]),
]


@pytest.mark.parametrize(("lang", "text", "rule", "spliced"), SPLICES)
def test_suggestions_splice_into_whole_sentences(
    coach: Coach, lang: str, text: str, rule: str, spliced: list[str]
) -> None:
    # A suggestion that is a whole sentence replaces the whole clause or question
    # it stands for; one that opens a clause keeps what the sentence goes on to say.
    [flag] = [f for f in coach.check(text, lang, "agent") if f.rule == rule]
    assert [text[: flag.start] + s + text[flag.end :] for s in flag.suggestions] == spliced


def test_serbian_rule_matches_both_scripts_and_answers_in_kind(small: Coach) -> None:
    [latin] = small.check("Ne znamo to.", "sr")
    assert latin.suggestions == ["Proveriću to za vas"]
    [cyrillic] = small.check("Не знам то.", "sr")
    assert cyrillic.text == "Не знам"
    assert cyrillic.suggestions == ["Проверићу то за вас"]
    assert cyrillic.message == "Понудите следећи корак."


def test_serbian_matches_text_typed_without_diacritics(small: Coach) -> None:
    assert [f.text for f in small.check("ne znas", "sr-Latn")] == ["ne znas"]


# spaCy's Serbian tokenizer reads a Cyrillic word with a full stop as an abbreviation
# ("год." for "година", "пет." for "петак"), which Latin text never meets; the coach reads
# it as Latin: the word, then the end of the sentence.
CYRILLIC_BEFORE_A_FULL_STOP = [
    "Kako god.",
    "Dobro, kako god.",
    "Kako god. Hvala.",
    "Ne znam.",
    "Smirite se.",
    "To nije moj posao.",
    "Imamo pet. Ne znam.",
]


@pytest.mark.parametrize("latin", CYRILLIC_BEFORE_A_FULL_STOP)
def test_cyrillic_before_a_full_stop_is_flagged_as_latin_is(coach: Coach, latin: str) -> None:
    cyrillic = script.latin_to_cyrillic(latin)
    expected = [(f.rule, f.text, f.suggestions) for f in coach.check(latin, "sr", "agent")]
    to_latin = script.cyrillic_to_latin
    found = [
        (f.rule, to_latin(f.text), [to_latin(s) for s in f.suggestions])
        for f in coach.check(cyrillic, "sr", "agent")
    ]
    assert expected
    assert found == expected


def test_wildcard_token_and_hard_negative(small: Coach) -> None:
    assert [f.category for f in small.check("We never give refunds.", "en")] == ["absolute_no"]
    assert small.check("You never have to pay for returns.", "en") == []


def test_customer_cues_respect_negation(small: Coach) -> None:
    assert small.check("I'm not angry, just curious", "en", "customer") == []
    assert [f.category for f in small.check("I am angry", "en", "customer")] == ["frustration"]
    shout = small.check("WHERE IS MY ORDER", "en", "customer")
    assert [f.text for f in shout] == ["WHERE IS MY"]
    assert small.check("Where is my order!!!", "en", "customer")[0].text == "!!!"


@pytest.mark.parametrize(
    ("values", "script"),
    [
        ({}, "Let me look into this right now."),
        ({"topic": "your refund"}, "Let me look into your refund right now."),
        ({"topic": "  "}, "Let me look into this right now."),
    ],
)
def test_an_optional_slot_can_say_what_stands_in_its_place(
    values: dict[str, str], script: str
) -> None:
    assert slots.fill("Let me look into[ {topic}| this] right now.", values) == script
    assert slots.Script("Let me look into[ {topic}| this] right now.").fill(values) == script


def test_scripts_fill_known_slots_and_drop_unknown(small: Coach) -> None:
    [bare] = small.check("I am angry", "en", "customer")
    assert bare.suggestions == ["I'm sorry. I'll fix now."]
    [full] = small.check(
        "I am angry",
        "en",
        "customer",
        slots={"customer_name": "Ana", "topic": "your refund", "agent_name": "Marko"},
    )
    assert full.suggestions == ["I'm sorry, Ana. I'll fix your refund now. — Marko"]
    [some] = small.check("I am angry", "en", "customer", slots={"customer_name": "Ana"})
    assert some.suggestions == ["I'm sorry, Ana. I'll fix now."]
    for unknown in ({"company": "Acme"}, {"customer_name": None}, {"customer_name": "  "}):
        [flag] = small.check("I am angry", "en", "customer", slots=unknown)
        assert flag.suggestions == bare.suggestions, unknown


def test_roles_are_separate(small: Coach) -> None:
    assert small.check("I am angry", "en", "agent") == []
    assert small.check("I don't know", "en", "customer") == []


def test_empty_text_gives_no_flags(small: Coach) -> None:
    assert small.check("", "en") == []
    assert small.check("   \n", "en") == []


def test_long_text_is_checked_up_to_the_limit_and_says_so(small: Coach) -> None:
    text = "I don't know. " + "x " * 200 + "No idea."
    flags = small.check(text, "en")
    assert [f.category for f in flags] == ["dont_know", "text_truncated"]
    assert flags[-1].start == 200 and flags[-1].end == len(text)
    assert "200" in flags[-1].message


def test_unknown_language_lists_the_known_ones(small: Coach) -> None:
    with pytest.raises(UnknownLanguageError, match="en, sr"):
        small.check("hello", "de")


def test_unknown_role_is_refused(small: Coach) -> None:
    with pytest.raises(UnknownRoleError):
        small.check("hello", "en", "visitor")


def test_language_tags_are_accepted(small: Coach) -> None:
    assert small.check("Не знам", "sr-Cyrl")
    assert small.check("I don't know", "en-GB")


def test_check_is_safe_from_many_threads(small: Coach) -> None:
    texts = ["I don't know.", "Не знам то.", "WHERE IS MY ORDER", "fine, thanks"]
    expected = {
        t: small.check(t, "sr" if "Не" in t else "en", "customer" if t.isupper() else "agent")
        for t in texts
    }
    errors: list[str] = []

    def work() -> None:
        for _ in range(200):
            for t in texts:
                got = small.check(
                    t, "sr" if "Не" in t else "en", "customer" if t.isupper() else "agent"
                )
                if got != expected[t]:
                    errors.append(t)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert errors == []


def test_new_words_do_not_grow_memory_without_end(write_rules, tmp_path: Path) -> None:
    # Chat text is open-ended (order numbers, names, links): spaCy would keep every
    # word it ever saw. The pack starts afresh past its limit and keeps matching,
    # in both scripts of Serbian too, while other threads check.
    root = write_rules({"en/dont_know.yaml": EN_RULES, "sr/dont_know.yaml": SR_RULES})
    coach = Coach.load(root, cache_dir=tmp_path / "cache", vocab_limit=500)
    pack = coach._pack("en")
    start = len(pack.nlp.vocab)
    expected = [f.text for f in coach.check("Order A1 - I don't know.", "en")]
    assert expected == ["I don't know"]
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(1500):
            got = coach.check(f"Order A{offset + i}-{i * 7919} - I don't know.", "en")
            if [f.text for f in got] != expected:
                errors.append(f"{offset + i}: {got}")

    threads = [threading.Thread(target=work, args=(n * 10_000,)) for n in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert errors == []
    assert pack.renewals >= 5
    assert len(pack.nlp.vocab) <= start + 500 + 50
    for i in range(700):
        coach.check(f"Ne znam, porudžbina {i}.", "sr")
    assert coach._pack("sr").renewals >= 1
    cyrillic = coach.check("Не знам.", "sr")
    assert [(f.text, f.suggestions) for f in cyrillic] == [("Не знам", ["Проверићу то за вас"])]


def test_lemma_expansion_is_cached_on_disk(write_rules, tmp_path: Path) -> None:
    root = write_rules({"sr/dont_know.yaml": SR_RULES})
    cache = tmp_path / "lemma-cache"
    Coach.load(root, cache_dir=cache, languages=["sr"])
    [entry] = list(cache.glob("lemmas-sr-*.json"))
    assert "znamo" in entry.read_text(encoding="utf-8")
    again = Coach.load(root, cache_dir=cache, languages=["sr"])
    assert again.check("ne znamo", "sr")


# "I don't know" ends at its comma, so a deflection after it is a flag of its own, side
# by side: applying both first suggestions gives one sentence.
DONT_KNOW_AND_NOT_MY_JOB = [
    ("en", "I don't know, that's not my job.",
     "Let me find out for you, I'll get you to the right team, who can help you in more "
     "detail."),
    ("sr", "Ne znam, to nije moj posao.",
     "Odmah ću proveriti, povezaću vas sa kolegom koji je zadužen za to."),
    ("sr", "Не знам, то није мој посао.",
     "Одмах ћу проверити, повезаћу вас са колегом који је задужен за то."),
    ("hr", "Ne znam, to nije moj posao.",
     "Provjerit ću to za vas, spojit ću vas s odjelom koji vam može detaljnije pomoći."),
    ("sl", "Ne vem, to ni moja naloga.",
     "Naj to takoj preverim za vas, lahko vas premestim na ustrezen oddelek, kjer vam bodo "
     "pomagali podrobneje."),
]


@pytest.mark.parametrize(("lang", "text", "spliced"), DONT_KNOW_AND_NOT_MY_JOB)
def test_dont_know_and_a_deflection_are_two_flags_that_splice_into_one_sentence(
    coach: Coach, lang: str, text: str, spliced: str
) -> None:
    flags = coach.check(text, lang, "agent")
    assert [f.category for f in flags] == ["dont_know", "not_my_job"]
    assert flags[0].end < flags[1].start  # side by side, not one inside the other
    out = text
    for flag in reversed(flags):
        out = out[: flag.start] + flag.suggestions[0] + out[flag.end :]
    assert out == spliced


# Not knowing and sending the customer on to find out, in one sentence: one flag takes it
# whole, and each suggestion is one next step for both halves, not two spliced together.
DONT_KNOW_AND_SEND_ON = [
    ("hr", "To ne znam, pitajte nekog drugog.",
     ["Provjerit ću to i javiti vam se.",
      "Raspitat ću se kod nadležnih kolega i javiti vam se."]),
    ("hr", "Hvala na čekanju. Nažalost, to ne znamo, obratite se drugom odjelu!",
     ["Hvala na čekanju. Provjerit ću to i javiti vam se.",
      "Hvala na čekanju. Raspitat ću se kod nadležnih kolega i javiti vam se."]),
    ("sr", "To ne znam, pitajte nekog drugog.",
     ["Proveriću to i javiću vam se.",
      "Raspitaću se kod nadležnih kolega i javiću vam se."]),
    ("sr", "То не знам, питајте неког другог.",
     ["Проверићу то и јавићу вам се.",
      "Распитаћу се код надлежних колега и јавићу вам се."]),
    ("sr", "Nemam pojma, pitajte kolege u prodavnici.",
     ["Proveriću to i javiću vam se.",
      "Raspitaću se kod nadležnih kolega i javiću vam se."]),
]


@pytest.mark.parametrize(("lang", "text", "spliced"), DONT_KNOW_AND_SEND_ON)
def test_dont_know_and_sending_the_customer_on_are_one_flag_with_one_next_step(
    coach: Coach, lang: str, text: str, spliced: list[str]
) -> None:
    [flag] = coach.check(text, lang, "agent")
    assert flag.category == "not_my_job"
    assert [text[: flag.start] + s + text[flag.end :] for s in flag.suggestions] == spliced


# A forgotten step: the step stays, opened with an offer to help, and the general "steps"
# rule (its suggestions say nothing of the step) keeps out of it.
FORGOTTEN_STEP = [
    ("hr", "Zaboravili ste potvrditi narudžbu.",
     ["Mogu vam pomoći potvrditi narudžbu.", "Ostalo je još samo potvrditi narudžbu.",
      "Pomoći ću vam potvrditi narudžbu."]),
    ("hr", "Hvala. Izgleda da ste zaboravili da priložite račun.",
     ["Hvala. Mogu vam pomoći da priložite račun.", "Hvala. Ostalo je još samo da priložite račun.",
      "Hvala. Pomoći ću vam da priložite račun."]),
    ("sr", "Zaboravili ste da potvrdite porudžbinu.",
     ["Mogu da vam pomognem da potvrdite porudžbinu.",
      "Ostalo je još samo da potvrdite porudžbinu.", "Pomoći ću vam da potvrdite porudžbinu."]),
    ("sr", "Заборавили сте да потврдите поруџбину.",
     ["Могу да вам помогнем да потврдите поруџбину.",
      "Остало је још само да потврдите поруџбину.", "Помоћи ћу вам да потврдите поруџбину."]),
    ("sl", "Pozabili ste potrditi naročilo.",
     ["Lahko vam pomagam potrditi naročilo.", "Ostane le še potrditi naročilo."]),
]


@pytest.mark.parametrize(("lang", "text", "spliced"), FORGOTTEN_STEP)
def test_a_forgotten_step_stays_and_gets_an_offer_to_help(
    coach: Coach, lang: str, text: str, spliced: list[str]
) -> None:
    [flag] = coach.check(text, lang, "agent")
    assert flag.category == "blame"
    assert [text[: flag.start] + s + text[flag.end :] for s in flag.suggestions] == spliced


# What is forgotten but no step ("Zaboravili ste da je rok istekao" in hr, a question, a
# softened "Ako ste zaboravili…") gets no opening that would not fit it.
@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("hr", "Zaboravili ste da je rok istekao, pa ću ga produžiti."),
        ("hr", "Zaboravili ste potvrditi narudžbu?"),
        ("sr", "Ako ste zaboravili da potvrdite porudžbinu, poslaću vam novi link."),
        ("sl", "Pozabili ste geslo? Tukaj ga lahko ponastavite."),
    ],
)
def test_no_forgotten_step_gets_no_offer_to_do_it(coach: Coach, lang: str, text: str) -> None:
    rules = [f.rule for f in coach.check(text, lang, "agent")]
    assert not [r for r in rules if r.endswith("_ste_korak")]


# A flag never reaches back over the end of a sentence: applying its suggestion keeps the
# sentence before it.
SENTENCE_BEFORE = [
    ("en", "Thanks for waiting. Calm down.", "Calm down", "Thanks for waiting. "),
    ("sr", "Proveriću to. Smirite se.", "Smirite se", "Proveriću to. "),
    ("sr", "Проверићу то. Смирите се.", "Смирите се", "Проверићу то. "),
    ("hr", "Hvala vam na strpljenju. To nije moguće danas.", "To nije moguće danas",
     "Hvala vam na strpljenju. "),
    ("hr", "Proverit ću to. Smirite se!", "Smirite se!", "Proverit ću to. "),
    ("sl", "Hvala za potrpežljivost. Pomirite se.", "Pomirite se",
     "Hvala za potrpežljivost. "),
]


@pytest.mark.parametrize(("lang", "text", "flagged", "kept"), SENTENCE_BEFORE)
def test_a_flag_keeps_to_its_own_sentence(
    coach: Coach, lang: str, text: str, flagged: str, kept: str
) -> None:
    (flag,) = coach.check(text, lang, "agent")
    assert flag.text == flagged
    spliced = text[: flag.start] + flag.suggestions[0] + text[flag.end :]
    assert spliced.startswith(kept) and spliced[len(kept)].isupper()


# A message of several lines: each flag keeps to its line, with offsets into the whole.
def test_flags_keep_to_their_lines(coach: Coach) -> None:
    text = "Niste pažljivo pročitali moju poruku \r\nHvala.\n\nNe znam, to nije moj posao."
    flags = coach.check(text, "hr", "agent")
    assert [f.text for f in flags] == [
        "Niste pažljivo pročitali moju poruku",
        "Ne znam",
        "to nije moj posao",
    ]
    for f in flags:
        assert text[f.start : f.end] == f.text
    first = flags[0]
    spliced = text[: first.start] + first.suggestions[0] + text[first.end :]
    assert spliced.endswith(" \r\nHvala.\n\nNe znam, to nije moj posao.")


@pytest.mark.parametrize(
    ("text", "lang", "written"),
    [
        ("Calm down, I don't know, that's not my job.", "sr", "en"),
        ("I am sorry, let me check.", "hr", "en"),
        ("Thank you for waiting", "sl", "en"),
        ("Ne znam, to nije moj posao.", "sr", "sr"),
        ("Не знам, то није мој посао.", "sr", "sr"),
        ("Imam i psa a mačka spava.", "hr", "hr"),
        ("Hvala, ok", "hr", "hr"),
        ("Pozdravljeni, to ni moje delo.", "sl", "sl"),
        ("Ne vem.", "sl", "sl"),
        ("I don't know.", "en", "en"),
    ],
)
def test_a_reply_is_checked_in_the_language_it_is_written_in(
    coach: Coach, text: str, lang: str, written: str
) -> None:
    assert coach.language_written(text, lang) == written


@pytest.mark.parametrize(
    ("lang", "text", "kept"),
    [
        ("en", "Your parcel is in the Zagreb warehouse and that's not my job.",
         "Your parcel is in the Zagreb warehouse and "),
        ("hr", "Paket je u skladištu i to nije moj posao.", "Paket je u skladištu i "),
        ("sr", "Пакет је у магацину и то није мој посао.", "Пакет је у магацину и "),
        ("sl", "Paket je v skladišču in to ni moje delo.", "Paket je v skladišču in "),
    ],
)
def test_applying_a_suggestion_keeps_what_was_said_before_and(
    coach: Coach, lang: str, text: str, kept: str
) -> None:
    (flag,) = coach.check(text, lang, "agent")
    applied = text[: flag.start] + flag.suggestions[0] + text[flag.end :]
    assert applied.startswith(kept), applied
