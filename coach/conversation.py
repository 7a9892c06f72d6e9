"""Coaching that needs the whole conversation or the clock.

A :class:`ConversationCoach` is fed the events of one chat with the time
they happened (seconds, any monotonic origin) and answers with what the
agent should be told. It does no I/O and never sleeps: the server calls
:meth:`ConversationCoach.tick` on a timer, tests pass the time they want.
Its state is plain data (:meth:`to_dict` / :meth:`from_dict`) so that any
server process can pick the conversation up.

The four checks follow the guidance the coach teaches:

- ``hold_without_update``: the customer has waited too long since their last
  message or the agent's last update (and, for a new chat, for a first
  response): fill the silence and keep them informed.
- ``missing_introduction``: the agent's first reply gives no name and does
  not ask for the customer's.
- ``missing_thanks``: the chat closes without the agent thanking the customer.
- ``upsell_when_upset``: an offer while a frustration cue is recent: solve
  first, offer later.

Language data (phrases and scripts) lives in ``rules/<lang>/conversation.yaml``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from coach import script, slots
from coach.engine import Coach, Flag

DEFAULT_HOLD_AFTER = 60.0
DEFAULT_UPSET_WINDOW = 300.0
DEFAULT_CUE_COOLDOWN = 300.0


@dataclass(frozen=True)
class Nudge:
    """A conversation-level finding for the agent."""

    rule: str
    category: str
    severity: str
    message: str
    suggestions: list[str]
    at: float
    #: Seconds the customer has waited, for hold nudges.
    waited: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CustomerReview:
    """What a customer message gives the agent: cues, and scripts not on cooldown."""

    cues: list[Flag]
    scripts: list[Flag]


@dataclass
class ConversationState:
    lang: str
    started_at: float
    last_customer_at: float | None = None
    last_agent_at: float | None = None
    #: When the customer's current wait began (None: nobody is waiting).
    waiting_since: float | None = None
    hold_nudged_for: float | None = None
    agent_messages: int = 0
    thanked: bool = False
    last_frustration_at: float | None = None
    scripts_offered_at: dict[str, float] = field(default_factory=dict)
    #: The agent the scripts of ``scripts_offered_at`` went to ("" before anyone had the chat).
    scripts_for: str = ""
    closed: bool = False
    #: The script of the chat (Serbian: Cyrillic or Latin), from the latest message.
    cyrillic: bool = False
    #: What the customer wrote about, once the coach could tell: slot values
    #: ``topic`` and ``topic_<case>`` ("your order").
    topic: dict[str, str] | None = None


class ConversationCoach:
    """The conversation checks of one chat."""

    def __init__(
        self,
        coach: Coach,
        lang: str,
        now: float,
        *,
        hold_after: float = DEFAULT_HOLD_AFTER,
        upset_window: float = DEFAULT_UPSET_WINDOW,
        cue_cooldown: float = DEFAULT_CUE_COOLDOWN,
        state: ConversationState | None = None,
    ) -> None:
        self.coach = coach
        self.hold_after = hold_after
        self.upset_window = upset_window
        self.cue_cooldown = cue_cooldown
        self.state = state or ConversationState(lang=coach.language_of(lang), started_at=now)
        if state is None:
            # A new chat: the first-response timer starts now.
            self.state.waiting_since = now

    # Persistence.

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    @classmethod
    def from_dict(
        cls,
        coach: Coach,
        data: Mapping[str, Any],
        *,
        hold_after: float = DEFAULT_HOLD_AFTER,
        upset_window: float = DEFAULT_UPSET_WINDOW,
        cue_cooldown: float = DEFAULT_CUE_COOLDOWN,
    ) -> ConversationCoach:
        state = ConversationState(**dict(data))
        return cls(
            coach,
            state.lang,
            state.started_at,
            state=state,
            hold_after=hold_after,
            upset_window=upset_window,
            cue_cooldown=cue_cooldown,
        )

    # Events.

    def customer_message(
        self,
        text: str,
        now: float,
        values: Mapping[str, str | None] | None = None,
        *,
        agent: str = "",
    ) -> CustomerReview:
        """A customer wrote: their wait starts (if it had not), cues are read.

        ``agent`` is who has the chat now: the cooldown of a script is per agent, so an
        agent who takes over a chat is offered what the one before them was.
        """
        st = self.state
        self._scripts_for(agent)
        st.last_customer_at = now
        if st.waiting_since is None:
            st.waiting_since = now
            st.hold_nudged_for = None
        if st.lang == "sr" and any(ch.isalpha() for ch in text):
            st.cyrillic = script.is_cyrillic(text)
        if st.topic is None:
            st.topic = self.coach.conversation_topic(text, st.lang)
        cues = self._cues(text, values)
        if any(c.category == "frustration" for c in cues):
            st.last_frustration_at = now
        return CustomerReview(cues, self._offer(cues, now))

    def handover(
        self,
        text: str,
        categories: Collection[str],
        now: float,
        values: Mapping[str, str | None] | None = None,
        *,
        agent: str,
    ) -> list[Flag]:
        """The scripts of ``categories`` for the cues of an earlier customer message
        ``text``, for ``agent``, who has just taken the chat from another agent: what that
        agent was offered, with this one's name, so the new agent knows at once that the
        customer is upset. The customer's wait and cues stay as they were."""
        self._scripts_for(agent)
        cues = self._cues(text, values)
        return self._offer([c for c in cues if c.category in categories], now)

    def _cues(self, text: str, values: Mapping[str, str | None] | None) -> list[Flag]:
        """The cues of a customer's ``text``, read in the language it is written in (an
        English-speaking customer on a Serbian site), with scripts in that language."""
        lang = self.coach.language_written(text, self.state.lang)
        return self.coach.check(text, lang, "customer", slots=self._values(values))

    def _scripts_for(self, agent: str) -> None:
        """Scripts are offered per agent: one who takes the chat over starts afresh."""
        st = self.state
        if agent and agent != st.scripts_for:
            if st.scripts_for:
                st.scripts_offered_at.clear()
            st.scripts_for = agent

    def _offer(self, cues: list[Flag], now: float) -> list[Flag]:
        """One script per category, unless that category had one within the cooldown."""
        st = self.state
        scripts: list[Flag] = []
        for cue in cues:
            offered = st.scripts_offered_at.get(cue.category)
            if offered is not None and now - offered < self.cue_cooldown:
                continue
            if any(s.category == cue.category for s in scripts):
                continue
            st.scripts_offered_at[cue.category] = now
            scripts.append(cue)
        return scripts

    def agent_message(
        self, text: str, now: float, values: Mapping[str, str | None] | None = None
    ) -> list[Nudge]:
        """The agent sent ``text``: the wait ends; introduction, thanks and offers are read."""
        st = self.state
        nudges: list[Nudge] = []
        first = st.agent_messages == 0
        st.agent_messages += 1
        st.last_agent_at = now
        st.waiting_since = None
        st.hold_nudged_for = None
        lang = st.lang
        if self._finds(text, "thanks"):
            st.thanked = True
        if first and not (self._finds(text, "introduces") or self._finds(text, "asks_name")):
            nudges.append(self._nudge("missing_introduction", now, text, values))
        if (
            st.last_frustration_at is not None
            and now - st.last_frustration_at <= self.upset_window
            and self.coach.check(
                text,
                self.coach.language_written(text, lang),
                "agent",
                include_offers=True,
                categories={"upsell_when_upset"},
            )
        ):
            nudges.append(self._nudge("upsell_when_upset", now, text, values))
        return nudges

    def _finds(self, text: str, kind: str) -> bool:
        """Whether the agent's ``text`` has phrases ``kind``, in the chat's language or any
        other: an agent who took a chat in a language they do not speak writes in theirs,
        and their "Thank you" thanks the customer all the same."""
        lang = self.state.lang
        if self.coach.conversation_finds(text, lang, kind):
            return True
        return any(
            self.coach.conversation_finds(text, other, kind)
            for other in self.coach.languages
            if other != lang
        )

    def agent_update(self, now: float) -> None:
        """Anything else the agent did that the customer sees (typing does not count)."""
        st = self.state
        st.last_agent_at = now
        if st.waiting_since is not None:
            st.waiting_since = now
            st.hold_nudged_for = None

    def tick(self, now: float, values: Mapping[str, str | None] | None = None) -> list[Nudge]:
        """Time passed: nudge once per wait that has gone on too long."""
        st = self.state
        if st.closed or st.waiting_since is None:
            return []
        waited = now - st.waiting_since
        if waited < self.hold_after or st.hold_nudged_for == st.waiting_since:
            return []
        st.hold_nudged_for = st.waiting_since
        kind = "first_response" if st.agent_messages == 0 else "hold_without_update"
        return [self._nudge(kind, now, "", values, waited=waited)]

    def close(self, now: float, values: Mapping[str, str | None] | None = None) -> list[Nudge]:
        """The chat ends: was the customer thanked?"""
        st = self.state
        st.closed = True
        st.waiting_since = None
        if st.agent_messages and not st.thanked:
            return [self._nudge("missing_thanks", now, "", values)]
        return []

    def _values(self, values: Mapping[str, str | None] | None) -> dict[str, str | None]:
        """The caller's slot values, with the topic the coach found when it has none."""
        filled = dict(values or {})
        if not filled.get("topic") and self.state.topic:
            filled.update(self.state.topic)
        return filled

    def _nudge(
        self,
        kind: str,
        now: float,
        text: str,
        values: Mapping[str, str | None] | None,
        waited: float | None = None,
    ) -> Nudge:
        entry = self.coach.conversation_entry(self.state.lang, kind)
        filled = self._values(values)
        if waited is not None:
            filled["seconds"] = str(int(waited))
        message = slots.fill(entry.message, filled)
        suggestions = [slots.fill(s, filled) for s in entry.suggestions]
        cyrillic = script.is_cyrillic(text) if text.strip() else self.state.cyrillic
        if self.state.lang == "sr" and cyrillic:
            message = script.latin_to_cyrillic(message)
            suggestions = [script.latin_to_cyrillic(s) for s in suggestions]
        return Nudge(
            rule=f"{self.state.lang}.conversation.{kind}",
            category=entry.category,
            severity=entry.severity,
            message=message,
            suggestions=suggestions,
            at=now,
            waited=waited,
        )
