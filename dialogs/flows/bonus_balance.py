"""bonus_balance: EnergoBonus points of the linked account."""

from __future__ import annotations

from dialogs.context import FlowContext
from dialogs.format import plural, short_date
from dialogs.forms import Form, Outcome, answer, reply
from dialogs.state import FormState
from handlers.bonus import bonus_summary


class Texts:
    balance = "На счёте {account} {points} {word} ЭнергоБонус."
    zero = "На счёте {account} пока нет баллов ЭнергоБонус."
    how_to_earn = "Условия программы ЭнергоБонус подскажут на горячей линии: {phone}."
    last = "Последние операции:"
    entry = "• {date}: {sign}{points} — {reason}"


def points_word(n: int) -> str:
    return plural(n, "балл", "балла", "баллов")


class BonusBalance(Form):
    """A form without slots, so that it resumes after link_account runs first."""

    name = "bonus_balance"
    intents = frozenset({"bonus_balance"})
    requires_account = True
    resume_question = "Вернёмся к баллам ЭнергоБонус?"

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        account = await ctx.current_account()
        assert account is not None  # requires_account
        summary = await bonus_summary(ctx.session, account.id)
        if summary.balance == 0 and not summary.last_entries:
            return answer(
                reply(
                    f"{Texts.zero.format(account=account.number)}\n{Texts.how_to_earn.format(phone=ctx.settings.hotline_phone)}"
                )
            )
        lines = [
            Texts.balance.format(
                account=account.number,
                points=summary.balance,
                word=points_word(summary.balance),
            )
        ]
        if summary.last_entries:
            lines.append(Texts.last)
            lines.extend(
                Texts.entry.format(
                    date=short_date(e.created_at, ctx.settings.tz),
                    sign="+" if e.points > 0 else "",
                    points=e.points,
                    reason=e.reason,
                )
                for e in summary.last_entries
            )
        lines.append(Texts.how_to_earn.format(phone=ctx.settings.hotline_phone))
        return answer(reply("\n".join(lines)))


FLOWS = (BonusBalance(),)
