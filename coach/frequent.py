"""The most frequent words of each language, for choosing a pattern's anchor.

A pattern is looked up by one of its required words (see coach.matcher), so
the rarer that word, the fewer texts in which the pattern is even tried.
spaCy's stop-word lists are too wide for that choice: they hold words such as
"several", "call" or "ten", which are rare in chat, beside "you" and "i",
which are in nearly every message. These short lists hold only the words
that occur in most messages: pronouns, auxiliaries, articles, the commonest
prepositions and particles. English follows the order of spaCy's
``en_lexeme_prob`` table; Serbian, Croatian and Slovenian are written out by
hand (Latin script; Cyrillic folds to it before matching).
"""

from __future__ import annotations

_EN = """
the to a and of you it is that in for have on be with do was are not but this my
they as like just your or at if would so can me about he all get one out from an
what up more there think will them we when some has because know really by did no
had their how does who than only his much could then other been were see i any want
even should too go him her going now being still into which she also very right
say got well need here am things sure please thanks thank hi hello us our yours
let
"""

# Serbian and Croatian share most function words; the match form has no
# diacritics (see coach.script), so "što" is written "sto" here as well.
_SH = """
i u je da se na su za ne od sa s a to sto sta sam smo ste si ja ti mi vi on ona
ono oni me te ga ju nas vas ih li ce cu cemo cete bi bih biti ali ili kao po iz do
o pa jos samo vec ako kad kada koji koja koje ovo taj ta sve vam vasa vase mogu
moze imam ima imate nije nisu nema bio bila bilo jer sada sad tako molim hvala
vama mene tebe nam kako gde gdje ovaj ova
"""

_SL = """
in je da se na so za ne od s z v a to ki sem smo ste si jaz ti mi vi on ona ono
oni me te ga jo nas vas jih li bo bom bomo boste bi biti ali kot po iz do o pa
samo ze ce ko kaj ta vse vam vasa vase lahko imam ima imate ni niso bil bila bilo
ker zdaj tako prosim hvala vama mene tebe nam kako kje
"""

FREQUENT: dict[str, frozenset[str]] = {
    "en": frozenset(_EN.split()),
    "sr": frozenset(_SH.split()),
    "hr": frozenset(_SH.split()),
    "sl": frozenset(_SL.split()),
}
