"""The dialog engine: (state, NLU result) -> Turn.

Order of decisions in one step (the first that applies wins):

1. "отмена" with a form in progress cancels every form.
2. After "Продолжим ...?" the answer resumes or drops the interrupted form
   (a value the form can use counts as "yes").
3. An active form takes the message: a slot value, the "Да/Нет" of its
   confirmation, or, failing those, a confident other intent interrupts it
   (the form is suspended, the question answered, continuing offered).
4. Otherwise the intent picks a flow; a form that needs an account runs
   link_account first and resumes after it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Final

from config import Settings
from dialogs.context import FlowContext
from dialogs.forms import Flow, Form, Outcome, is_cancel, reply, yes_no
from dialogs.messages import Turn
from dialogs.state import DialogState, FormState
from dialogs.texts import MENU, EngineTexts
from nlu.types import FALLBACK_INTENT, ParseResult

log = logging.getLogger(__name__)

AFFIRM: Final = "affirm"
DENY: Final = "deny"
LINK_FLOW: Final = "link_account"
FALLBACK_FLOW: Final = "nlu_fallback"
# A different intent interrupts a form only when the NLU is this sure of it:
# a wrong interruption costs the customer more than one more prompt.
INTERRUPT_CONFIDENCE: Final = 0.7
# At most this many interrupted forms are remembered.
MAX_SUSPENDED: Final = 3
# Words besides the entities that still make a message "just the answer"
# ("показание 149,8"); a very confident other intent needs fewer.
ANSWER_EXTRA_WORDS: Final = 2
SURE_CONFIDENCE: Final = 0.9
_WORD = re.compile(r"\w+")
# Prompts without progress before a form offers to start over or an operator.
MAX_MISSES: Final = 3
# Refused answers in a row (a reading below the last one, a house-less
# address...) before a form gives up: more patient than for not understood.
MAX_INVALID_ANSWERS: Final = 5


class FlowRegistryError(Exception):
    """Two flows claim the same name or intent."""


class DialogEngine:
    def __init__(self, settings: Settings, flows: Sequence[Flow] | None = None) -> None:
        if flows is None:
            from dialogs.flows import ALL_FLOWS

            flows = ALL_FLOWS
        self._settings = settings
        self._by_name: dict[str, Flow] = {}
        self._by_intent: dict[str, Flow] = {}
        for flow in flows:
            if flow.name in self._by_name:
                raise FlowRegistryError(f"two flows named {flow.name!r}")
            if flow.requires_account and not isinstance(flow, Form):
                # Link-first resumes the target as a form (advance with no new
                # values); a one-turn flow cannot be resumed that way.
                raise FlowRegistryError(f"{flow.name!r} requires an account: make it a Form")
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
        st = self._known_forms_only(state.model_copy(deep=True))
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
            events=outcome.events,
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
        # "сколько я должен за отопление" at "Какой счётчик?": a question that
        # merely mentions a slot value is a question. Text read as the
        # asked-for slot is an answer only if it is a valid one: "запишите на
        # приём" at "Какой адрес?" is a new question.
        if (
            values
            and self._interrupts(form, fs, parse)
            and not _mostly_values(parse)
            and (
                not _parsed_from_text(form, fs, parse, values)
                or not await _any_valid(ctx, form, fs, values)
            )
        ):
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

    async def _dispatch(self, ctx: FlowContext, st: DialogState, parse: ParseResult) -> Outcome:
        intent = parse.intent.name
        flow = self._by_intent.get(intent)
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
                events=started.events,
            ),
        )

    def _interrupts(self, form: Form, fs: FormState, parse: ParseResult) -> bool:
        intent = parse.intent
        if intent.name in form.intents or intent.name in {AFFIRM, DENY, FALLBACK_INTENT}:
            return False
        if intent.name not in self._by_intent or intent.confidence < INTERRUPT_CONFIDENCE:
            return False
        if form.has_slot(fs.requested_slot):
            slot = form.slot(fs.requested_slot or "")
            if slot.free_text and intent.name != "human_handoff":
                return False
        return True

    async def _interrupt(self, ctx: FlowContext, st: DialogState, parse: ParseResult) -> Outcome:
        assert st.active is not None
        flow = self._by_intent[parse.intent.name]
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
        events = list(outcome.events)
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
                events.extend(resumed.events)
        if st.active is None and handoff is None and st.suspended:
            top = self._form(st.suspended[-1].name)
            replies.append(yes_no(top.resume_question))
            st.offered_resume = True
        if handoff is not None:
            st.clear_forms()
        return Outcome(
            replies=tuple(replies), handoff=handoff, keep=st.active, events=tuple(events)
        )

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


def _mostly_values(parse: ParseResult) -> bool:
    """The message is little more than the entities in it (an answer, not a question)."""
    text = parse.text
    for entity in sorted(parse.entities, key=lambda e: e.start, reverse=True):
        if 0 <= entity.start < entity.end <= len(text):
            text = text[: entity.start] + " " + text[entity.end :]
    extra = len(_WORD.findall(text))
    if parse.intent.confidence >= SURE_CONFIDENCE:
        return extra == 0
    return extra <= ANSWER_EXTRA_WORDS


async def _any_valid(
    ctx: FlowContext, form: Form, fs: FormState, values: dict[str, object]
) -> bool:
    """Would the form accept any of these values? Checked in a savepoint that
    is rolled back, so a validator's lookups or writes leave no trace."""
    probe = fs.model_copy(deep=True)
    async with ctx.session.begin_nested() as savepoint:
        try:
            for name, value in values.items():
                if (await form.validate(ctx, probe, name, value)).ok:
                    return True
            return False
        finally:
            await savepoint.rollback()


def _parsed_from_text(
    form: Form, fs: FormState, parse: ParseResult, values: dict[str, object]
) -> bool:
    """The form read the asked-for slot from the text itself: it is an answer."""
    asked = fs.requested_slot
    if asked is None or asked not in values or not form.has_slot(asked):
        return False
    return parse.entity(form.slot(asked).entity_name) is None
