"""The dialog engine: (state, NLU result) -> Turn.

Order of decisions in one step (the first that applies wins):

1. "отмена" with a form in progress cancels every form.
2. After "Продолжим ...?" the answer resumes or drops the interrupted form
   (a value the form can use counts as "yes").
3. An active form takes the message: a slot value, the "Да/Нет" of its
   confirmation, or, failing those, a confident other intent interrupts it
   (the form is suspended, the question answered, continuing offered).
4. Otherwise the flow a button names, or else the intent, picks a flow; a
   form that needs an account runs link_account first and resumes after it.

Whether a message mid-form is an answer or another question is decided by
:class:`InterruptionPolicy` alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from config import Settings
from dialogs.context import FlowContext
from dialogs.forms import FLOW_KEY, Flow, Form, Outcome, is_cancel, reply, yes_no
from dialogs.messages import Turn
from dialogs.state import DialogState, FormState
from dialogs.texts import MENU, EngineTexts
from nlu.types import FALLBACK_INTENT, INTENTS, ParseResult

log = logging.getLogger(__name__)

AFFIRM: Final = "affirm"
DENY: Final = "deny"
LINK_FLOW: Final = "link_account"
FALLBACK_FLOW: Final = "nlu_fallback"
# At most this many interrupted forms are remembered.
MAX_SUSPENDED: Final = 3
# Prompts without progress before a form offers to start over or an operator.
MAX_MISSES: Final = 3
# Refused answers in a row (a reading below the last one, a house-less
# address...) before a form gives up: more patient than for not understood.
MAX_INVALID_ANSWERS: Final = 5


# Interrupts even a free-text slot: "оператор" while describing the problem.
HANDOFF_INTENT: Final = "human_handoff"
# Never an interruption: the form's own Да/Нет, and what the NLU did not understand.
NEVER_INTERRUPT: Final = frozenset({AFFIRM, DENY, FALLBACK_INTENT})
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class InterruptionPolicy:
    """When a message in the middle of a form is another question.

    The one place that decides it (dialogs/FRAMEWORK.md, "Interruptions");
    its numbers are settings (``FORM_INTERRUPT_CONFIDENCE`` and friends).
    """

    confidence: float
    sure_confidence: float
    answer_extra_words: int
    loose_answer_words: int

    @classmethod
    def from_settings(cls, settings: Settings) -> InterruptionPolicy:
        return cls(
            confidence=settings.form_interrupt_confidence,
            sure_confidence=settings.form_sure_confidence,
            answer_extra_words=settings.form_answer_extra_words,
            loose_answer_words=settings.form_loose_answer_words,
        )

    def may_interrupt(self, form: Form, fs: FormState, parse: ParseResult, other: bool) -> bool:
        """A confident intent of another flow (``other``) may take the message.

        A wrong interruption costs the customer more than one more prompt,
        hence the confidence bar; a free-text slot yields to "оператор" only.
        """
        intent = parse.intent
        if not other or intent.name in NEVER_INTERRUPT or intent.confidence < self.confidence:
            return False
        if form.has_slot(fs.requested_slot):
            slot = form.slot(fs.requested_slot or "")
            if slot.free_text and intent.name != HANDOFF_INTENT:
                return False
        return True

    def is_question(
        self, form: Form, fs: FormState, parse: ParseResult, values: Mapping[str, Any]
    ) -> bool | None:
        """A message that may interrupt yet carries slot values: answer or question?

        None: an answer if the form accepts a value of it (the engine asks the
        validators only then, as they may read the database).

        "сколько я должен за отопление" at "Какой счётчик?" mentions a value
        but asks something else. It is an answer when it is little more than
        its entities ("показание 149,8"), or when the form read the asked-for
        slot from the text itself and accepted it, except a keyword match
        (a ``loose`` slot) inside a longer message. At a free-text slot,
        "оператор" is always the request it says.
        """
        asked = fs.requested_slot
        if form.has_slot(asked) and form.slot(asked or "").free_text:
            # Only "оператор" gets this far (may_interrupt): any text would
            # pass as a description, but the customer asks for a human.
            return True
        if self._mostly_entities(parse):
            return False
        from_text = (
            asked is not None
            and asked in values
            and form.has_slot(asked)
            and parse.entity(form.slot(asked).entity_name) is None
        )
        if not from_text:
            return True
        assert asked is not None
        if form.slot(asked).loose and len(parse.text.split()) > self.loose_answer_words:
            return True
        return None

    def _mostly_entities(self, parse: ParseResult) -> bool:
        text = parse.text
        for entity in sorted(parse.entities, key=lambda e: e.start, reverse=True):
            if 0 <= entity.start < entity.end <= len(text):
                text = text[: entity.start] + " " + text[entity.end :]
        extra = len(_WORD.findall(text))
        if parse.intent.confidence >= self.sure_confidence:
            return extra == 0
        return extra <= self.answer_extra_words


class FlowRegistryError(Exception):
    """Two flows claim the same name or intent."""


class DialogEngine:
    def __init__(self, settings: Settings, flows: Sequence[Flow] | None = None) -> None:
        if flows is None:
            from dialogs.flows import ALL_FLOWS

            flows = ALL_FLOWS
        self._settings = settings
        self._policy = InterruptionPolicy.from_settings(settings)
        self._by_name: dict[str, Flow] = {}
        self._by_intent: dict[str, Flow] = {}
        for flow in flows:
            if flow.name in self._by_name:
                raise FlowRegistryError(f"two flows named {flow.name!r}")
            if flow.requires_account and not isinstance(flow, Form):
                # Link-first resumes the target as a form (advance with no new
                # values); a one-turn flow cannot be resumed that way.
                raise FlowRegistryError(f"{flow.name!r} requires an account: make it a Form")
            if flow.button_intent is not None and flow.button_intent not in INTENTS:
                # The payload parser takes contract intents only: a dead button.
                raise FlowRegistryError(f"{flow.name!r}: {flow.button_intent!r} is no intent")
            self._by_name[flow.name] = flow
            for intent in flow.intents:
                if intent in self._by_intent:
                    raise FlowRegistryError(f"two flows for intent {intent!r}")
                self._by_intent[intent] = flow

    @property
    def flows(self) -> tuple[Flow, ...]:
        return tuple(self._by_name.values())

    def flow(self, name: str) -> Flow:
        return self._by_name[name]

    async def step(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Turn:
        st = self._known_forms_only(state.copy_deep())
        st.remember_intent(parse.intent.name)
        ctx.facts.clear()
        ctx.facts.update(st.facts)
        outcome = await self._step(ctx, st, parse)
        st.facts = dict(ctx.facts)
        return Turn(
            replies=outcome.replies,
            state=st,
            handoff=outcome.handoff,
            intent=parse.intent.name,
        )

    # ------------------------------------------------------------------

    async def _step(self, ctx: FlowContext, st: DialogState, parse: ParseResult) -> Outcome:
        intent = parse.intent.name
        if is_cancel(parse.text) or parse.text.strip() == "/cancel":
            busy = st.active is not None or bool(st.suspended) or st.resume_after_link
            st.clear_forms()
            st.fallbacks = 0
            text = EngineTexts.cancelled if busy else EngineTexts.nothing_to_cancel
            return Outcome(replies=(reply(text, *MENU),))

        if st.offered_resume and st.suspended:
            st.offered_resume = False
            top = st.suspended[-1]
            form = self._form(top.name)
            if intent == AFFIRM:
                st.suspended.pop()
                st.fallbacks = 0
                return await self._settle(ctx, st, await form.reprompt(ctx, top))
            if intent == DENY:
                st.suspended = []
                return Outcome(replies=(reply(EngineTexts.resume_declined),))
            if not top.awaiting_confirmation and await form.extract(ctx, top, parse):
                st.suspended.pop()
                st.active = top
            else:
                st.suspended = []
        st.offered_resume = False

        if st.active is not None:
            return await self._continue_form(ctx, st, parse)
        return await self._dispatch(ctx, st, parse)

    async def _continue_form(
        self, ctx: FlowContext, st: DialogState, parse: ParseResult
    ) -> Outcome:
        assert st.active is not None
        fs = st.active
        form = self._form(fs.name)
        intent = parse.intent.name
        if fs.awaiting_confirmation:
            if intent == AFFIRM:
                st.fallbacks = 0
                fs.awaiting_confirmation = False
                return await self._settle(ctx, st, await form.submit(ctx, fs))
            if intent == DENY:
                st.active = None
                return await self._settle(ctx, st, Outcome(replies=(reply(form.cancelled_text),)))
            if self._interrupts(form, fs, parse):
                return await self._interrupt(ctx, st, parse)
            again = await form.confirmation(ctx, fs)
            return Outcome(replies=(reply(EngineTexts.confirm_hint), again), keep=fs)

        values = await form.extract(ctx, fs, parse)
        if values and self._interrupts(form, fs, parse):
            question = self._policy.is_question(form, fs, parse, values)
            if question is None:
                # Validators are pure: asking them whether this is an answer leaves no trace.
                question = not (await form.check(ctx, fs, values)).accepted
            if question:
                return await self._interrupt(ctx, st, parse)
        if not values:
            if self._interrupts(form, fs, parse):
                return await self._interrupt(ctx, st, parse)
            if intent == DENY:
                st.active = None
                return await self._settle(ctx, st, Outcome(replies=(reply(form.cancelled_text),)))
            fs.misses += 1
            if fs.misses >= MAX_MISSES:
                st.active = None
                st.suspended = []
                return Outcome(replies=(reply(EngineTexts.form_gave_up, *MENU),))
            prompt = await form.advance(ctx, fs, {})
            return await self._settle(
                ctx,
                st,
                Outcome(
                    replies=(reply(form.not_understood_text), *prompt.replies),
                    keep=prompt.keep,
                    handoff=prompt.handoff,
                ),
            )
        st.fallbacks = 0
        advanced = await form.advance(ctx, fs, values)
        if advanced.keep is not None and advanced.keep.invalid_answers >= MAX_INVALID_ANSWERS:
            # Answers that keep failing validation: don't loop on one question.
            st.active = None
            st.suspended = []
            return Outcome(replies=(*advanced.replies, reply(EngineTexts.form_gave_up, *MENU)))
        return await self._settle(ctx, st, advanced)

    def _flow_for(self, parse: ParseResult) -> Flow | None:
        """The flow a message starts: the one a button names, else by intent."""
        named = parse.entity(FLOW_KEY)
        if named is not None and named.extractor is None:  # a payload, not the text
            flow = self._by_name.get(str(named.value))
            if flow is not None and flow.button_intent == parse.intent.name:
                return flow
        return self._by_intent.get(parse.intent.name)

    async def _dispatch(self, ctx: FlowContext, st: DialogState, parse: ParseResult) -> Outcome:
        flow = self._flow_for(parse)
        if flow is None:
            flow = self._by_name[FALLBACK_FLOW]
        if flow.name == FALLBACK_FLOW:
            st.fallbacks += 1
        else:
            st.fallbacks = 0
        if flow.requires_account and await ctx.current_account() is None:
            return await self._link_first(ctx, st, flow, parse)
        return await self._settle(ctx, st, await flow.run(ctx, st, parse))

    async def _link_first(
        self, ctx: FlowContext, st: DialogState, flow: Flow, parse: ParseResult
    ) -> Outcome:
        target = FormState(name=flow.name)
        if isinstance(flow, Form):
            # Keep what the first message already said ("передать 1234,5"),
            # to validate once an account is known.
            target.pending = await flow.extract(ctx, target, parse)
        st.resume_after_link = target
        link = self._by_name[LINK_FLOW]
        started = await link.run(ctx, st, parse)
        if started.keep is None and await ctx.current_account() is None:
            # link_account refused at once (locked out): nothing to resume.
            st.resume_after_link = None
            return started
        intro = (reply(EngineTexts.link_first),) if started.keep is not None else ()
        return await self._settle(
            ctx,
            st,
            Outcome(
                replies=(*intro, *started.replies),
                keep=started.keep,
                handoff=started.handoff,
            ),
        )

    def _interrupts(self, form: Form, fs: FormState, parse: ParseResult) -> bool:
        other = self._flow_for(parse)
        return self._policy.may_interrupt(form, fs, parse, other is not None and other is not form)

    async def _interrupt(self, ctx: FlowContext, st: DialogState, parse: ParseResult) -> Outcome:
        assert st.active is not None
        flow = self._flow_for(parse)
        assert flow is not None  # _interrupts found it
        if (
            st.active.name == LINK_FLOW
            and flow.requires_account
            and await ctx.current_account() is None
        ):
            # "сколько я должен" while linking: finish linking, then answer it.
            target = FormState(name=flow.name)
            if isinstance(flow, Form):
                target.pending = await flow.extract(ctx, target, parse)
            st.resume_after_link = target
            again = await self._form(LINK_FLOW).reprompt(ctx, st.active)
            return Outcome(replies=(reply(EngineTexts.link_first), *again.replies), keep=again.keep)
        st.suspended = [*st.suspended, st.active][-MAX_SUSPENDED:]
        st.active = None
        return await self._dispatch(ctx, st, parse)

    async def _settle(self, ctx: FlowContext, st: DialogState, outcome: Outcome) -> Outcome:
        """Store the form that stays active; resume or offer what waits."""
        st.active = outcome.keep
        replies = list(outcome.replies)
        handoff = outcome.handoff
        if st.active is None and handoff is None and st.resume_after_link is not None:
            target = st.resume_after_link
            st.resume_after_link = None
            form = self._form(target.name)
            if await ctx.current_account() is not None:
                refusal = await form.precondition(ctx, target)
                resumed = refusal or await form.advance(ctx, target, {})
                st.active = resumed.keep
                replies.extend(resumed.replies)
                handoff = resumed.handoff
        if st.active is None and handoff is None and st.suspended:
            top = self._form(st.suspended[-1].name)
            replies.append(yes_no(top.resume_question))
            st.offered_resume = True
        if handoff is not None:
            st.clear_forms()
        return Outcome(replies=tuple(replies), handoff=handoff, keep=st.active)

    def _known_forms_only(self, st: DialogState) -> DialogState:
        """Drop forms this engine no longer has (a state saved by an older release)."""

        def known(fs: FormState | None) -> bool:
            return fs is not None and isinstance(self._by_name.get(fs.name), Form)

        if st.active is not None and not known(st.active):
            st.active = None
        st.suspended = [fs for fs in st.suspended if known(fs)]
        if st.resume_after_link is not None and not known(st.resume_after_link):
            st.resume_after_link = None
        st.offered_resume = st.offered_resume and bool(st.suspended)
        return st

    def _form(self, name: str) -> Form:
        flow = self._by_name[name]
        if not isinstance(flow, Form):
            raise FlowRegistryError(f"{name!r} is not a form")
        return flow
