"""dinoseek processes for tests: CLI commands, workers and the API server, each its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def worker_env(home: Path, model: Path, broker: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    env.update(DINOSEEK_HOME=str(home), DINOSEEK_MODEL=str(model), OMP_NUM_THREADS="1")
    if broker:
        env["DINOSEEK_BROKER_URL"] = broker
    return env


def cli_json(env: dict[str, str], *args: str, timeout: float = 300) -> dict:
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", *args, "--json"], env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cli_text(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "worker", "--queues", "gpu,cpu",
                             "--concurrency", "1", "--hostname", f"{name}@%h", "--loglevel", "INFO"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_ready(logs: list[Path], timeout: float = 180) -> None:
    """Block until every worker logged Celery's "ready." line (connected and consuming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(log.exists() and " ready." in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    raise AssertionError("workers did not start: " + " | ".join(log.read_text()[-2000:] for log in logs))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def serve(env: dict[str, str], port: int, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
