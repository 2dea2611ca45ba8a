"""The Rasa server's life outside the bot: its virtualenv, training and serving.

Rasa 3.6 runs on Python 3.10 (the bot is on 3.11), so it lives in its own
virtualenv, outside the source tree::

    ${HEATDESK_CACHE:-${XDG_CACHE_HOME:-~/.cache}/heatdesk}/rasa-3.6.21/
        venv/               rasa==3.6.21 and its dependencies (tensorflow...)
        models/nlu-<fingerprint>.tar.gz   one model per data+config fingerprint
        models/nlu-<fingerprint>.json     its training time

Nothing here imports Rasa: it is driven by subprocess, so the bot's process
never loads it. ``python -m nlu.rasa.server setup|train|serve|paths``; ``make
rasa`` runs ``serve`` (setup and train first, each skipped when done).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RASA_VERSION = "3.6.21"
PYTHON_SERIES = "3.10"
PROJECT_DIR = Path(__file__).resolve().parent
DATA_DIR = PROJECT_DIR.parent / "data"
CONFIG = PROJECT_DIR / "config.yml"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5005
INSTALLED_STAMP = ".heatdesk-installed"
# Rasa, TensorFlow and friends are told to stay quiet and offline.
QUIET_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
}


class RasaSetupError(RuntimeError):
    """The Rasa environment cannot be made (no Python 3.10, a failed install...)."""


def cache_root() -> Path:
    explicit = os.environ.get("HEATDESK_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "heatdesk"


@dataclass(frozen=True, slots=True)
class RasaHome:
    """Where one Rasa version's virtualenv and models live."""

    root: Path

    @classmethod
    def default(cls) -> RasaHome:
        return cls(cache_root() / f"rasa-{RASA_VERSION}")

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def rasa(self) -> Path:
        return self.venv / "bin" / "rasa"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def installed(self) -> bool:
        return (self.venv / INSTALLED_STAMP).is_file() and self.rasa.is_file()


def find_python310() -> Path:
    """Python 3.10 for the Rasa virtualenv: $RASA_PYTHON, pyenv's, or python3.10."""
    explicit = os.environ.get("RASA_PYTHON")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = sorted(
        (pyenv_root / "versions").glob(f"{PYTHON_SERIES}.*"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
        reverse=True,
    )
    candidates += [v / "bin" / "python" for v in versions]
    on_path = shutil.which(f"python{PYTHON_SERIES}")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and _python_series(candidate) == PYTHON_SERIES:
            return candidate
    raise RasaSetupError(
        f"Rasa {RASA_VERSION} needs Python {PYTHON_SERIES}, and none was found "
        f"(looked at $RASA_PYTHON, {pyenv_root}/versions/{PYTHON_SERIES}.*, "
        f"python{PYTHON_SERIES} on PATH). Install one, e.g. `pyenv install {PYTHON_SERIES}`, "
        "or point RASA_PYTHON at it."
    )


def _python_series(python: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _log(message: str) -> None:
    print(f"rasa: {message}", file=sys.stderr, flush=True)


def setup(home: RasaHome) -> float:
    """Create the virtualenv and install Rasa unless done; the seconds it took."""
    if home.installed():
        return 0.0
    started = time.perf_counter()
    python = find_python310()
    _log(f"creating {home.venv} with {python} and installing rasa=={RASA_VERSION} (minutes)")
    if home.venv.exists():
        shutil.rmtree(home.venv)  # a half-done install from an interrupted run
    home.root.mkdir(parents=True, exist_ok=True)
    pip = [str(home.python), "-m", "pip", "--disable-pip-version-check", "-q"]
    try:
        subprocess.run([str(python), "-m", "venv", str(home.venv)], check=True)
        subprocess.run([*pip, "install", "--upgrade", "pip", "wheel"], check=True)
        subprocess.run([*pip, "install", f"rasa=={RASA_VERSION}"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RasaSetupError(f"installing rasa=={RASA_VERSION} failed: {exc}") from exc
    (home.venv / INSTALLED_STAMP).write_text(RASA_VERSION + "\n", encoding="utf-8")
    seconds = time.perf_counter() - started
    _log(f"rasa {RASA_VERSION} installed in {seconds:.0f} s")
    return seconds


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


def fingerprint(data: Path, config: Path) -> str:
    """Of the training files, the pipeline and the Rasa version: the model's name."""
    digest = hashlib.sha256(f"rasa={RASA_VERSION}".encode())
    for file in _yaml_files(data):
        digest.update(str(file.relative_to(data) if data.is_dir() else file.name).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    digest.update(b"config\0")
    digest.update(config.read_bytes())
    return digest.hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class TrainedModel:
    path: Path
    train_seconds: float
    trained_now: bool


def model_path(home: RasaHome, data: Path = DATA_DIR, config: Path = CONFIG) -> Path:
    return home.models / f"nlu-{fingerprint(data, config)}.tar.gz"


def train_seconds_of(model: Path) -> float:
    """How long the cached model took to train (NaN when not recorded)."""
    return _read_train_seconds(model.with_name(model.name.removesuffix(".tar.gz") + ".json"))


def train(
    home: RasaHome,
    data: Path = DATA_DIR,
    config: Path = CONFIG,
    *,
    force: bool = False,
) -> TrainedModel:
    """The model for this data and config, trained only if none matches yet."""
    model = model_path(home, data, config)
    name = model.name.removesuffix(".tar.gz")
    meta = home.models / f"{name}.json"
    if model.is_file() and not force:
        seconds = _read_train_seconds(meta)
        _log(f"model {model.name} is up to date (data and config unchanged): training skipped")
        return TrainedModel(model, seconds, trained_now=False)
    if not home.installed():
        setup(home)
    home.models.mkdir(parents=True, exist_ok=True)
    _log(f"training {model.name} on {data} with {config}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rasa-train-") as work:
        # Rasa writes .rasa/ caches into its working directory: not the clone.
        command = [
            str(home.rasa),
            "train",
            "nlu",
            "--nlu",
            str(data.resolve()),
            "--config",
            str(config.resolve()),
            "--out",
            str(Path(work) / "out"),
            "--fixed-model-name",
            name,
        ]
        try:
            subprocess.run(command, check=True, cwd=work, env=_env())
        except (OSError, subprocess.CalledProcessError) as exc:
            raise RasaSetupError(f"rasa train nlu failed: {exc}") from exc
        produced = Path(work) / "out" / f"{name}.tar.gz"
        if not produced.is_file():
            raise RasaSetupError(f"rasa train nlu wrote no {produced.name}")
        tmp = model.with_suffix(".partial")
        shutil.copyfile(produced, tmp)
        os.replace(tmp, model)
    seconds = time.perf_counter() - started
    meta.write_text(json.dumps({"train_seconds": round(seconds, 1)}), encoding="utf-8")
    _log(f"trained {model.name} in {seconds:.0f} s")
    return TrainedModel(model, seconds, trained_now=True)


def _read_train_seconds(meta: Path) -> float:
    try:
        return float(json.loads(meta.read_text(encoding="utf-8"))["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("nan")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENV)
    # The bot's virtualenv must not leak into Rasa's interpreter.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def serve_command(home: RasaHome, model: Path, *, host: str, port: int, token: str) -> list[str]:
    return [
        str(home.rasa),
        "run",
        "--enable-api",
        "--auth-token",
        token,
        "--model",
        str(model),
        "--interface",
        host,
        "--port",
        str(port),
    ]


def start_server(
    home: RasaHome,
    model: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``rasa run`` in its own process group (so stopping it stops all)."""
    work = home.root / "run"
    work.mkdir(parents=True, exist_ok=True)
    out = log_file.open("ab") if log_file is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            serve_command(home, model, host=host, port=port, token=token),
            cwd=work,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_file is not None and not isinstance(out, int):
            out.close()


def wait_ready(url: str, process: subprocess.Popen[bytes] | None, timeout: float = 600.0) -> float:
    """Seconds until the server answers (Rasa loads the model before it listens)."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if process is not None and process.poll() is not None:
            raise RasaSetupError(f"rasa run exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RasaSetupError(f"rasa did not answer on {url} within {timeout:.0f} s")


def stop_server(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Stop the server and everything it started; kill it if it lingers past ``grace``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    process.wait()  # reaped, whichever way it ended


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nlu.rasa.server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help=f"create the Python {PYTHON_SERIES} virtualenv with Rasa")
    tr = sub.add_parser("train", help="train unless a model for this data and config exists")
    tr.add_argument("--force", action="store_true")
    tr.add_argument("--data", type=Path, default=DATA_DIR)
    tr.add_argument("--config", type=Path, default=CONFIG)
    sv = sub.add_parser("serve", help="setup, train, then serve /model/parse (RASA_TOKEN)")
    sv.add_argument("--host", default=DEFAULT_HOST)
    sv.add_argument("--port", type=int, default=DEFAULT_PORT)
    sub.add_parser("paths", help="print where the virtualenv and the models are")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments().parse_args(argv)
    home = RasaHome.default()
    try:
        if args.command == "setup":
            seconds = setup(home)
            if seconds == 0.0:
                _log(f"rasa {RASA_VERSION} already installed in {home.venv}")
            return 0
        if args.command == "train":
            print(train(home, args.data, args.config, force=args.force).path)
            return 0
        if args.command == "paths":
            print(json.dumps({"venv": str(home.venv), "models": str(home.models)}, indent=2))
            return 0
        if args.command == "serve":
            token = os.environ.get("RASA_TOKEN", "")
            if not token:
                _log("set RASA_TOKEN: the server is started with --auth-token $RASA_TOKEN")
                return 2
            setup(home)
            model = train(home).path
            _log(f"serving {model.name} on http://{args.host}:{args.port} (Ctrl-C stops it)")
            command = serve_command(home, model, host=args.host, port=args.port, token=token)
            work = home.root / "run"
            work.mkdir(parents=True, exist_ok=True)
            os.chdir(work)
            os.execve(command[0], command, _env())
    except RasaSetupError as exc:
        _log(f"error: {exc}")
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
