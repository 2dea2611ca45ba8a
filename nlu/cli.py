"""``nlu`` subcommands: train, parse "текст", eval PATH [--report FILE].

The lead wires ``python -m bot nlu ...`` to :func:`main`; ``python -m nlu.cli``
runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO

from config import Settings
from nlu.base import NluError, NluParser
from nlu.data_loader import TrainingDataError, load_training_data
from nlu.embedded import DATA_DIR, save_model, train_model
from nlu.evaluation import EvalReport, evaluate
from nlu.factory import build_parser


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlu", description="Train, try and evaluate the NLU.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train the embedded model from nlu/data and save it")
    parse = sub.add_parser("parse", help="parse one message and print the result as JSON")
    parse.add_argument("text")
    ev = sub.add_parser("eval", help="evaluate intents on a Rasa-format YAML file")
    ev.add_argument("path", type=Path)
    ev.add_argument("--report", type=Path, help="write an intent_report.json there")
    ev.add_argument("--errors", action="store_true", help="list the misclassified examples")
    return parser


def main(argv: list[str], settings: Settings, out: TextIO | None = None) -> int:
    stdout = out or sys.stdout
    args = _arguments().parse_args(argv)
    try:
        if args.command == "train":
            model = train_model(DATA_DIR)
            save_model(model, Path(settings.nlu_model_path))
            print(
                f"trained on {model.meta['examples']} examples, {len(model.labels)} intents "
                f"in {model.trained_seconds:.2f} s; saved to {settings.nlu_model_path}",
                file=stdout,
            )
            return 0
        if args.command == "parse":
            result = asyncio.run(_parse(settings, args.text))
            print(json.dumps(result, ensure_ascii=False, indent=2), file=stdout)
            return 0
        if args.command == "eval":
            examples = load_training_data(args.path).examples
            if not examples:
                print(f"no intent examples in {args.path}", file=sys.stderr)
                return 2
            report = asyncio.run(_evaluate(settings, args.path))
            _print_eval(report, args, stdout)
            return 0
    except (NluError, TrainingDataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


async def _parse(settings: Settings, text: str) -> object:
    parser = build_parser(settings)
    try:
        return (await parser.parse(text)).model_dump(mode="json")
    finally:
        await parser.close()


async def _evaluate(settings: Settings, path: Path) -> EvalReport:
    parser: NluParser = build_parser(settings)
    try:
        return await evaluate(parser, load_training_data(path).examples)
    finally:
        await parser.close()


def _print_eval(report: EvalReport, args: argparse.Namespace, stdout: TextIO) -> None:
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(
            json.dumps(report.report, ensure_ascii=False, indent=2), encoding="utf-8"
        )
    print(report.table(), file=stdout)
    if args.errors:
        for p in report.errors():
            print(
                f"  {p.example.intent:>20} -> {p.predicted:<20} "
                f"{p.result.intent.confidence:.2f}  {p.example.text}",
                file=stdout,
            )
    if args.report is not None:
        print(f"report written to {args.report}", file=stdout)
    print(report.summary_line(), file=stdout)


if __name__ == "__main__":
    from config import load_settings

    sys.exit(main(sys.argv[1:], load_settings()))
