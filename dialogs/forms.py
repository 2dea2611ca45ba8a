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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from dialogs.context import FlowContext
from dialogs.messages import Button, HandoffRequest, Reply
from dialogs.state import DialogState, FormState
from dialogs.texts import EngineTexts
from nlu.types import ParseResult

YES_PAYLOAD = "/affirm"
NO_PAYLOAD = "/deny"
# The button payload key that names the flow to start (see Flow.button_intent).
FLOW_KEY = "flow"


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


def answer(*replies: Reply, handoff: HandoffRequest | None = None) -> Outcome:
    return Outcome(replies=tuple(replies), handoff=handoff)


@dataclass(frozen=True)
class Refusal:
    """A validator's "no": the slot stays empty and the customer reads ``text``.

    ``reprompt`` repeats the slot's prompt after the text (useful when the
    prompt carries the buttons to choose from).
    """

    text: str
    buttons: tuple[Button, ...] = ()
    reprompt: bool = False

    @property
    def reply(self) -> Reply:
        return Reply(text=self.text, buttons=self.buttons)


def refuse(text: str, *buttons: Button, reprompt: bool = False) -> Refusal:
    return Refusal(text=text, buttons=tuple(buttons), reprompt=reprompt)


@dataclass(frozen=True)
class Accepted:
    """Slot values with a word to the customer ("Файл приложу к обращению")."""

    values: Mapping[str, Any]
    replies: tuple[Reply, ...] = ()


def accept(values: Mapping[str, Any], *replies: Reply) -> Accepted:
    return Accepted(values=values, replies=tuple(replies))


# What a ``validate_<slot>`` method returns: the slot values to store (one
# validator may fill several slots, say an encrypted phone and its mask),
# those values with a reply (:func:`accept`), or a refusal. An empty mapping
# accepts nothing and says nothing.
Validated = Mapping[str, Any] | Accepted | Refusal
Validator = Callable[[FlowContext, Any, Mapping[str, Any]], Awaitable[Validated]]


@dataclass(frozen=True)
class Checked:
    """The verdicts on a batch of values, before anything is stored.

    ``deferred``: values for slots whose ``needs`` are not filled yet (a
    reading before the meter is known), kept and checked once they are.
    """

    accepted: dict[str, Any] = field(default_factory=dict)
    refused: tuple[tuple[str, Refusal], ...] = ()
    deferred: dict[str, Any] = field(default_factory=dict)
    # What the validators said, in their order: refusals and acknowledgements.
    replies: tuple[Reply, ...] = ()


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
    - ``loose``: ``from_text`` is a keyword match (a topic word, any number),
      so in a longer message that the NLU confidently reads as another
      intent it is no answer: the engine lets that message interrupt.
    - ``needs``: slots that must be filled before this one's value can be
      checked (the meter before its reading); an early value waits.
    - ``optional``: never asked for, filled when the customer gives it (the
      files of an appeal); :meth:`Form.extract` overrides fill it.
    """

    name: str
    prompt: str
    buttons: tuple[Button, ...] = ()
    entity: str | None = None
    from_text: Callable[[str], Any] | None = None
    free_text: bool = False
    loose: bool = False
    needs: tuple[str, ...] = ()
    optional: bool = False

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
    # A flow without an intent of its own (the intents are a fixed contract,
    # shared/intents.md) starts from a button: :meth:`start_payload` names
    # the flow and carries this contract intent, which logs and KPIs count.
    button_intent: ClassVar[str | None] = None

    @classmethod
    def start_payload(cls, **entities: str) -> str:
        """The payload of a button that starts this flow (and fills ``entities``)."""
        if cls.button_intent is None:
            raise TypeError(f"{cls.__name__} sets no button_intent: start it by its intent")
        return payload(cls.button_intent, **{FLOW_KEY: cls.name}, **entities)

    @abc.abstractmethod
    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        """Answer one message."""


class Form(Flow):
    """A flow that fills slots over several turns, then submits.

    Declare ``slots``; write one ``validate_<slot>`` method per slot that
    needs checking (found by name, like Rasa's ``FormValidationAction``):

        async def validate_description(
            self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
        ) -> Validated:
            if len(value) < 5:
                return refuse(Texts.too_short)
            return {"description": value}

    A validator is pure: it may READ through ``ctx`` (the previous reading,
    the free office slots) but never writes, neither rows nor the dialog
    state, because the engine also asks it whether a message is an answer at
    all before deciding it is another question. ``slots`` (read-only) are the
    slots filled so far, including those accepted earlier in the same
    message. A slot without a validator takes its value as is. Effects
    (rows, switching the account) happen in :meth:`submit` only.

    Override :meth:`submit`; optionally :meth:`prompt`, :meth:`required_slots`,
    :meth:`prefill`, :meth:`confirmation` (with ``confirm = True``),
    :meth:`extract`, :meth:`on_start` and :meth:`precondition`.
    """

    slots: ClassVar[tuple[Slot, ...]] = ()
    # Ask "Да/Нет" before :meth:`submit`.
    confirm: ClassVar[bool] = False
    # Asked after an interruption, e.g. "Продолжим передачу показаний?".
    resume_question: ClassVar[str] = "Продолжим?"
    # Said when the customer declines the confirmation or cancels.
    cancelled_text: ClassVar[str] = EngineTexts.cancelled
    # Said (before the prompt) when an answer to a prompt was not understood.
    not_understood_text: ClassVar[str] = "Не совсем понял ответ."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A misspelt validator would silently accept anything: refuse it.
        names = {s.name for s in cls.slots}
        for attr in dir(cls):
            if attr.startswith("validate_") and attr.removeprefix("validate_") not in names:
                raise TypeError(f"{cls.__name__}.{attr} validates no slot of {sorted(names)}")

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
        return [s.name for s in self.slots if not s.optional]

    async def prefill(self, ctx: FlowContext, form: FormState) -> Mapping[str, Any]:
        """Slot values that need no question (say, the only meter), from a
        trusted source: stored as they are, without validation."""
        return {}

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

    def _needs_met(self, slot: str, slots: Mapping[str, Any]) -> bool:
        needs = self.slot(slot).needs if self.has_slot(slot) else ()
        return all(slots.get(n) is not None for n in needs)

    def validator(self, slot: str) -> Validator | None:
        found: Validator | None = getattr(self, f"validate_{slot}", None)
        return found

    async def check(self, ctx: FlowContext, form: FormState, values: Mapping[str, Any]) -> Checked:
        """Validate ``values`` against the form's slots; stores nothing.

        Declared slots go first, in their order, so a validator sees the
        slots it depends on already checked.
        """
        order = [s.name for s in self.slots if s.name in values]
        order += [name for name in values if name not in order]
        slots = dict(form.slots)
        accepted: dict[str, Any] = {}
        refused: list[tuple[str, Refusal]] = []
        deferred: dict[str, Any] = {}
        said: list[Reply] = []
        for name in order:
            value = values[name]
            if not self._needs_met(name, slots):
                deferred[name] = value
                continue
            validate = self.validator(name)
            result = (
                await validate(ctx, value, MappingProxyType(dict(slots)))
                if validate is not None
                else {name: value}
            )
            if isinstance(result, Refusal):
                slots.pop(name, None)
                refused.append((name, result))
                said.append(result.reply)
                continue
            if isinstance(result, Accepted):
                said.extend(result.replies)
                result = result.values
            slots.update(result)
            accepted.update(result)
        return Checked(
            accepted=accepted, refused=tuple(refused), deferred=deferred, replies=tuple(said)
        )

    async def advance(
        self, ctx: FlowContext, form: FormState, values: Mapping[str, Any]
    ) -> Outcome:
        """Validate new values, then ask for the next slot, confirm or submit."""
        replies: list[Reply] = []
        silent_retry: set[str] = set()
        # Values that waited for the slots they need: their prompt was never shown.
        waited = {n for n in form.pending if not self._needs_met(n, form.slots)}
        pending = {**form.pending, **values}
        form.pending = {}
        for round_ in ("given", "after prefill"):
            checked = await self.check(ctx, form, pending)
            form.slots.update(checked.accepted)
            replies.extend(checked.replies)
            for name, refusal in checked.refused:
                form.slots.pop(name, None)
                # The refusal stands for the prompt, unless the prompt carries
                # what to choose from or was never shown.
                if not refusal.reprompt and name not in waited:
                    silent_retry.add(name)
            pending = checked.deferred
            waited |= set(pending)
            if round_ == "given":
                form.slots.update(await self.prefill(ctx, form))
        form.pending = pending
        if values:
            # Answers that keep failing validation are counted too (the engine
            # gives up after several), so a form never loops on one question.
            if any(form.has(name) for name in values):
                form.misses = 0
                form.invalid_answers = 0
            else:
                form.invalid_answers += 1
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
