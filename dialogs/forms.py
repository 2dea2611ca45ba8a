"""Flows and forms: the building blocks every conversation is made of.

A :class:`Flow` answers in one turn (greet, contacts...). A :class:`Form`
collects slots over several turns like a Rasa form: it declares its slots with
their prompts, extracts values from NLU entities, button payloads or the raw
text, validates each value (a bad one gets a message), optionally asks
"Да/Нет" before submitting, and submits through ``handlers/``. The engine
(``dialogs/engine.py``) drives them; see ``dialogs/FRAMEWORK.md``.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dialogs.context import FlowContext
from dialogs.messages import Button, HandoffRequest, Reply
from dialogs.state import DialogState, FormState
from nlu.types import ParseResult

YES_PAYLOAD = "/affirm"
NO_PAYLOAD = "/deny"


def reply(text: str, *buttons: Button) -> Reply:
    return Reply(text=text, buttons=tuple(buttons))


def yes_no(text: str, yes: str = "Да", no: str = "Нет") -> Reply:
    """A question answered by the two standard buttons (``/affirm``, ``/deny``)."""
    return Reply(text=text, buttons=(Button(yes, YES_PAYLOAD), Button(no, NO_PAYLOAD)))


def payload(intent: str, **entities: str) -> str:
    """A Rasa-style button payload: ``/intent{"slot":"value"}``."""
    if not entities:
        return f"/{intent}"
    inner = ",".join(f'"{k}":"{v}"' for k, v in entities.items())
    return f"/{intent}{{{inner}}}"


@dataclass(frozen=True)
class Outcome:
    """What a flow (or one step of a form) produced.

    ``keep`` is the form's state when the form stays active and waits for the
    customer's next message; None when the flow is finished.
    """

    replies: tuple[Reply, ...] = ()
    handoff: HandoffRequest | None = None
    keep: FormState | None = None
    events: tuple[str, ...] = ()


def answer(*replies: Reply, handoff: HandoffRequest | None = None) -> Outcome:
    return Outcome(replies=tuple(replies), handoff=handoff)


@dataclass(frozen=True)
class SlotCheck:
    """The verdict of a slot validator.

    ``ok``: store ``value`` (possibly normalised). Otherwise the slot stays
    empty and ``replies`` explain why; ``reprompt`` repeats the slot's prompt
    after them (useful when the prompt carries buttons). ``stop`` ends the
    form right away with ``replies`` (say, the customer is locked out).
    ``also`` fills other slots at the same time.
    """

    ok: bool
    value: Any = None
    replies: tuple[Reply, ...] = ()
    reprompt: bool = False
    stop: bool = False
    also: Mapping[str, Any] = field(default_factory=dict)


def valid(value: Any, *replies: Reply, **also: Any) -> SlotCheck:
    return SlotCheck(ok=True, value=value, replies=tuple(replies), also=also)


def invalid(text: str, *buttons: Button, reprompt: bool = False) -> SlotCheck:
    return SlotCheck(ok=False, replies=(reply(text, *buttons),), reprompt=reprompt)


def stop(*replies: Reply) -> SlotCheck:
    return SlotCheck(ok=False, replies=replies, stop=True)


@dataclass(frozen=True)
class Slot:
    """One piece of information a form collects.

    - ``entity``: the NLU entity (or button payload key) that fills it, from
      any message of the form; defaults to the slot's name.
    - ``from_text``: parses the raw text, tried only when this slot was the
      one asked for (returns None when the text does not fit).
    - ``free_text``: when asked for, the whole text is the value (a
      description); other intents then do not interrupt the form, only
      "оператор" and "отмена" do.
    """

    name: str
    prompt: str
    buttons: tuple[Button, ...] = ()
    entity: str | None = None
    from_text: Callable[[str], Any] | None = None
    free_text: bool = False

    @property
    def entity_name(self) -> str:
        return self.entity or self.name


class Flow(abc.ABC):
    """A conversation piece selected by intent.

    Subclasses set ``name`` (unique), ``intents`` (the NLU intents that start
    it) and implement :meth:`run`. Instances are stateless: everything a flow
    remembers between turns lives in :class:`DialogState`.
    """

    name: ClassVar[str]
    intents: ClassVar[frozenset[str]] = frozenset()
    # Run link_account first when no account is linked to the chat.
    requires_account: ClassVar[bool] = False

    @abc.abstractmethod
    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        """Answer one message."""


class Form(Flow):
    """A flow that fills slots over several turns, then submits.

    Override :meth:`submit`; optionally :meth:`validate`, :meth:`prompt`,
    :meth:`required_slots`, :meth:`prefill`, :meth:`confirmation` (with
    ``confirm = True``), :meth:`extract` and :meth:`on_start`.
    """

    slots: ClassVar[tuple[Slot, ...]] = ()
    # Ask "Да/Нет" before :meth:`submit`.
    confirm: ClassVar[bool] = False
    # Asked after an interruption, e.g. "Продолжим передачу показаний?".
    resume_question: ClassVar[str] = "Продолжим?"
    # Said when the customer declines the confirmation or cancels.
    cancelled_text: ClassVar[str] = "Хорошо, отменил. Чем ещё могу помочь?"
    # Said (before the prompt) when an answer to a prompt was not understood.
    not_understood_text: ClassVar[str] = "Не совсем понял ответ."

    # ----- hooks ----------------------------------------------------------

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        """Called once when the form starts; return an Outcome to refuse it."""
        return None

    async def precondition(self, ctx: FlowContext, form: FormState) -> Outcome | None:
        """Checked when the form starts and when it resumes after link_account
        (say, an account without meters); return an Outcome to refuse."""
        return None

    async def required_slots(self, ctx: FlowContext, form: FormState) -> list[str]:
        """The slots still to fill, in order (override for conditional slots)."""
        return [s.name for s in self.slots]

    async def prefill(self, ctx: FlowContext, form: FormState) -> None:
        """Fill slots that need no question (say, the only meter)."""

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        """Slot values found in this message (entities, payload keys, text)."""
        found: dict[str, Any] = {}
        wanted = await self.required_slots(ctx, form)
        for slot in self.slots:
            if slot.name not in wanted:
                continue
            value = parse.entity(slot.entity_name)
            if value is not None and value.value not in (None, ""):
                found[slot.name] = value.value
                continue
            if slot.name != form.requested_slot:
                continue
            text = parse.text.strip()
            if slot.from_text is not None:
                parsed = slot.from_text(text)
                if parsed is not None:
                    found[slot.name] = parsed
            elif slot.free_text and text and not text.startswith("/"):
                found[slot.name] = text
        return found

    async def validate(self, ctx: FlowContext, form: FormState, slot: str, value: Any) -> SlotCheck:
        """Check one value; the default accepts it as is."""
        return valid(value)

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        spec = self.slot(slot)
        return Reply(text=spec.prompt, buttons=spec.buttons)

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Reply:
        return yes_no("Всё верно?")

    @abc.abstractmethod
    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        """All slots are filled (and confirmed): act through handlers/."""

    # ----- machinery used by the engine -----------------------------------

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        form = FormState(name=self.name)
        refusal = await self.on_start(ctx, form, parse) or await self.precondition(ctx, form)
        if refusal is not None:
            return refusal
        return await self.advance(ctx, form, await self.extract(ctx, form, parse))

    def slot(self, name: str) -> Slot:
        for spec in self.slots:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no slot {name!r}")

    def has_slot(self, name: str | None) -> bool:
        return any(s.name == name for s in self.slots)

    async def advance(
        self, ctx: FlowContext, form: FormState, values: Mapping[str, Any]
    ) -> Outcome:
        """Validate new values, then ask for the next slot, confirm or submit."""
        replies: list[Reply] = []
        silent_retry: set[str] = set()
        pending = {**form.pending, **values}
        form.pending = {}
        for name, value in pending.items():
            check = await self.validate(ctx, form, name, value)
            replies.extend(check.replies)
            if check.stop:
                return Outcome(replies=tuple(replies))
            if check.ok:
                form.slots[name] = check.value
                form.slots.update(check.also)
            else:
                form.slots.pop(name, None)
                if check.replies and not check.reprompt:
                    silent_retry.add(name)
        if values:
            # Answers that keep failing validation are counted too (the engine
            # gives up after several), so a form never loops on one question.
            if any(form.has(name) for name in values):
                form.misses = 0
                form.invalid_answers = 0
            else:
                form.invalid_answers += 1
        await self.prefill(ctx, form)
        missing = [s for s in await self.required_slots(ctx, form) if not form.has(s)]
        if missing:
            form.requested_slot = missing[0]
            form.awaiting_confirmation = False
            if missing[0] not in silent_retry:
                replies.append(await self.prompt(ctx, form, missing[0]))
            return Outcome(replies=tuple(replies), keep=form)
        form.requested_slot = None
        if self.confirm:
            form.awaiting_confirmation = True
            replies.append(await self.confirmation(ctx, form))
            return Outcome(replies=tuple(replies), keep=form)
        done = await self.submit(ctx, form)
        return Outcome(
            replies=(*replies, *done.replies),
            handoff=done.handoff,
            keep=done.keep,
            events=done.events,
        )

    async def reprompt(self, ctx: FlowContext, form: FormState) -> Outcome:
        """Ask again what the form waits for (after a resume or a miss)."""
        if form.awaiting_confirmation:
            return Outcome(replies=(await self.confirmation(ctx, form),), keep=form)
        return await self.advance(ctx, form, {})


_CANCEL_WORDS = frozenset(
    {"отмена", "отменить", "отмени", "стоп", "хватит", "выход", "cancel", "otmena", "/cancel"}
)
_PUNCT = re.compile(r"[^\w/]+")


def is_cancel(text: str) -> bool:
    """ "отмена" and friends, as a whole message."""
    words = _PUNCT.sub(" ", text.lower()).split()
    return bool(words) and len(words) <= 2 and words[0] in _CANCEL_WORDS
