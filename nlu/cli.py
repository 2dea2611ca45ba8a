"""``nlu`` subcommands: train, parse "текст", eval PATH, compare PATH.

``eval PATH [--backend embedded|rasa] [--report FILE] [--entity-report FILE]``
evaluates one backend; ``compare PATH [--plots DIR] [--serve]`` both, printing
a Markdown table and writing a confusion-matrix PNG per backend. The Rasa
backend is asked over HTTP at ``settings.rasa_url`` (``make rasa`` serves it),
or on a server ``--serve`` trains and starts itself and stops afterwards.

The lead wires ``python -m bot nlu ...`` to :func:`main`; ``python -m nlu.cli``
runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from config import Settings
from nlu.base import NluError, NluParser
from nlu.data_loader import Example, TrainingDataError, load_training_data
from nlu.embedded import DATA_DIR, EmbeddedNluParser, load_or_train, save_model, train_model
from nlu.evaluation import EvalReport, evaluate
from nlu.factory import build_parser
from nlu.rasa.client import EntityNormaliser, RasaNluParser

BACKEND_NAMES = ("embedded", "rasa")
DEFAULT_PLOTS = Path("var") / "nlu-compare"


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlu", description="Train, try and evaluate the NLU.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train the embedded model from nlu/data and save it")
    parse = sub.add_parser("parse", help="parse one message and print the result as JSON")
    parse.add_argument("text")
    ev = sub.add_parser("eval", help="evaluate intents on a Rasa-format YAML file")
    ev.add_argument("path", type=Path)
    ev.add_argument("--report", type=Path, help="write an intent_report.json there")
    ev.add_argument("--entity-report", type=Path, help="write the entity report JSON there")
    ev.add_argument("--errors", action="store_true", help="list the misclassified examples")
    ev.add_argument(
        "--backend", choices=BACKEND_NAMES, help="the parser to evaluate (default: settings)"
    )
    cmp = sub.add_parser("compare", help="evaluate both backends on one file: a Markdown table")
    cmp.add_argument("path", type=Path)
    cmp.add_argument(
        "--plots", type=Path, default=DEFAULT_PLOTS, help="where the confusion matrices go"
    )
    cmp.add_argument(
        "--serve",
        action="store_true",
        help="train (if needed) and start a Rasa server for the run instead of rasa_url",
    )
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
            backend = args.backend or settings.nlu_backend
            report = asyncio.run(_evaluate(_backend_parser(settings, backend), examples))
            _print_eval(report, args, stdout)
            return 0
        if args.command == "compare":
            examples = load_training_data(args.path).examples
            if not examples:
                print(f"no intent examples in {args.path}", file=sys.stderr)
                return 2
            return _compare(settings, args, examples, stdout)
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


def _backend_parser(settings: Settings, backend: str) -> NluParser:
    """The parser itself: Rasa without the embedded fall-back, so it is what is measured."""
    if backend == "rasa":
        return RasaNluParser.from_settings(settings)
    return load_or_train(settings)


async def _evaluate(parser: NluParser, examples: list[Example]) -> EvalReport:
    try:
        return await evaluate(parser, examples)
    finally:
        await parser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _rasa_server(settings: Settings, serve: bool) -> Iterator[tuple[RasaNluParser, float]]:
    """A Rasa parser and its model's training time: of a server started here, or rasa_url's."""
    from nlu.rasa import server

    home = server.RasaHome.default()
    if not serve:
        parser = RasaNluParser.from_settings(settings)
        yield parser, server.train_seconds_of(server.model_path(home))
        return
    trained = server.train(home)
    port = _free_port()
    token = secrets.token_urlsafe(16)
    process = server.start_server(home, trained.path, port=port, token=token)
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_ready(url, process)
        parser = RasaNluParser(
            url,
            token=token,
            timeout_seconds=settings.rasa_timeout_seconds,
            fallback_threshold=settings.nlu_fallback_threshold,
            normaliser=EntityNormaliser.from_data(),
        )
        yield parser, trained.train_seconds
    finally:
        server.stop_server(process)


def _compare(
    settings: Settings, args: argparse.Namespace, examples: list[Example], stdout: TextIO
) -> int:
    from nlu.compare import BackendRun, markdown_table, plot_confusion

    model = train_model(DATA_DIR)
    embedded = EmbeddedNluParser(model, settings.nlu_fallback_threshold)
    runs = [
        BackendRun(
            "embedded",
            asyncio.run(_evaluate(embedded, examples)),
            model.trained_seconds,
            "in-process",
        )
    ]
    with _rasa_server(settings, args.serve) as (rasa, train_seconds):
        runs.append(
            BackendRun("rasa", asyncio.run(_evaluate(rasa, examples)), train_seconds, "HTTP")
        )
    print(markdown_table(runs, str(args.path)), file=stdout)
    print(file=stdout)
    stem = args.path.stem
    for run in runs:
        picture = plot_confusion(
            run.report, f"{run.name} on {args.path.name}", args.plots / f"{stem}-{run.name}.png"
        )
        print(f"confusion matrix of {run.name}: {picture}", file=stdout)
    if any(math.isnan(r.train_seconds) for r in runs):
        print("(training time n/a: the served model was not trained by this cache)", file=stdout)
    return 0


def _print_eval(report: EvalReport, args: argparse.Namespace, stdout: TextIO) -> None:
    for path, content in ((args.report, report.report), (args.entity_report, report.entity_report)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, ensure_ascii=False, indent=2), encoding="utf-8")
    print(report.table(), file=stdout)
    if report.entity_report:
        print(file=stdout)
        print(report.entity_table(), file=stdout)
    if args.errors:
        for p in report.errors():
            print(
                f"  {p.example.intent:>20} -> {p.predicted:<20} "
                f"{p.result.intent.confidence:.2f}  {p.example.text}",
                file=stdout,
            )
    if args.report is not None:
        print(f"report written to {args.report}", file=stdout)
    if args.entity_report is not None:
        print(f"entity report written to {args.entity_report}", file=stdout)
    if report.entity_report:
        print(report.entity_summary_line(), file=stdout)
    print(report.summary_line(), file=stdout)


if __name__ == "__main__":
    from config import load_settings

    sys.exit(main(sys.argv[1:], load_settings()))
