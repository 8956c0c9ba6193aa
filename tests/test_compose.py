"""The fleet's deploy files: docker-compose.yml, .env.example, docker/Dockerfile{,.cuda}, .dockerignore.

No Docker engine runs here, so nothing is built or started. What can be checked without one is:
``docker-compose config -q`` (Debian's docker-compose validates the file against the Compose schema
and interpolates it; fails under CI when missing, skips on a user's machine), and, from the parsed
files, that every service names only settings dinoseek reads and gets the ones it needs, that the
values of .env.example load, that the services can be scaled, that what the Dockerfiles copy
and run exists, and that the fleet is hardened (issue 17, finding 17): every service without
capabilities, privilege gain or a writable root filesystem, Redis behind a password that every
broker URL carries, Qdrant as a non-root user behind an API key and TLS, and the API and the workers
verifying that TLS against the fleet's own CA. The certificate script and Qdrant's health check run
here for real, with openssl, against a TLS server in the test.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import shlex
import shutil
import ssl
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml

from dinoseek.settings import Settings, load_settings, secret_problems

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "cuda": ROOT / "docker" / "Dockerfile.cuda"}
CERTS_SCRIPT = ROOT / "docker" / "qdrant-certs.sh"

FIELDS = {f.name for f in dataclasses.fields(Settings)}
SETTING_NAMES = {f"DINOSEEK_{name.upper()}" for name in FIELDS} | {"DINOSEEK_CONFIG"}  # the file load_settings reads

SERVICES = {"postgres", "redis", "certs", "qdrant", "migrate", "api", "worker-gpu", "worker-cpu", "flower"}
DINOSEEK_SERVICES = ("migrate", "api", "worker-gpu", "worker-cpu")  # built from this repository
WORKERS = ("worker-gpu", "worker-cpu")
ONE_SHOT = ("certs", "migrate")  # run once and exit
# Variables a service may set besides dinoseek's settings: what its image (or script) reads.
OTHER_ENV = {
    "postgres": ("POSTGRES_",),
    "redis": ("REDISCLI_AUTH",),
    "certs": ("CERTS_",),
    "qdrant": ("QDRANT__", "QDRANT_INIT_FILE_PATH"),
    "flower": ("FLOWER_", "CELERY_BROKER_URL"),
    "worker-gpu": ("NVIDIA_",),
}
# The only capabilities a service adds back after dropping them all, and why: `certs` hands
# Qdrant's key to Qdrant's uid. Everything else runs as a non-root user from the start.
CAPABILITIES = {"certs": {"CHOWN"}}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


# ---------------------------------------------------------------------------------------- helpers
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as docker compose reads an env file (the example uses no quotes)."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{number}: not KEY=VALUE: {line!r}"
        assert not value.startswith(("'", '"')), f"{path.name}:{number}: keep values unquoted ({key})"
        assert key not in env, f"{path.name}:{number}: {key} set twice"
        env[key] = value
    return env


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution over a parsed file: ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, and $$ for a literal $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env
        empty = not env.get(name)
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else not present) else env[name]
        if op in (":?", "?"):
            if empty if op == ":?" else not present:
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return env[name]
        if op in (":+", "+"):
            return "" if (empty if op == ":+" else not present) else arg
        return env.get(name, "")

    parts = value.split("$$")
    return "$".join(_VAR.sub(one, part) for part in parts)


def strings(value) -> list[str]:
    """Every string of a parsed YAML document, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def load_compose(env: dict[str, str] | None = None) -> dict:
    doc = yaml.safe_load(COMPOSE.read_text())
    return interpolate(doc, env) if env is not None else doc


def services(env: dict[str, str] | None = None) -> dict[str, dict]:
    return load_compose(env)["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """target → (source, mode) of a service's short-syntax volumes (interpolated first)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *mode = str(volume).split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions(path):
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"{path.name}: write ENV as KEY=VALUE ({rest!r})"
                env[key] = value
    return env


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(relpath: str) -> bool:
    """Whether .dockerignore keeps a path (or a folder above it) out of the build context. Last
    matching pattern wins; ``**/`` matches at any depth."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        globs = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        for cand in candidates:
            names = [cand] + (["/".join(cand.split("/")[i:]) for i in range(1, cand.count("/") + 1)]
                              if pattern.startswith("**/") else [])
            if any(fnmatch.fnmatchcase(n, g) for n in names for g in globs):
                verdict = not negate
    return verdict


def compose_command() -> list[str]:
    """Debian's docker-compose, or the `docker compose` plugin; under CI one must be there."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    message = "docker-compose is not installed (Debian: apt-get install --no-install-recommends docker-compose)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def service_env(name: str, env_file: dict[str, str]) -> dict[str, str]:
    """What a dinoseek container's process sees: its image's ENV, then the service's environment."""
    service = services(env_file)[name]
    image = "cuda" if service["build"]["dockerfile"].endswith(".cuda") else "cpu"
    return {**dockerfile_env(DOCKERFILES[image]), **environment(service)}


# ---------------------------------------------------------------------------------------- compose
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    """The Compose implementation itself accepts the file with .env.example as the env file, and
    its own interpolation gives settings that load."""
    cmd = compose_command() + ["--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE)]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # no stray POSTGRES_* etc.
    quiet = subprocess.run(cmd + ["config", "-q"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run(cmd + ["config"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr
    resolved = yaml.safe_load(full.stdout)["services"]
    assert set(resolved) == SERVICES
    ours = services(read_env_file(ENV_EXAMPLE))
    for name in DINOSEEK_SERVICES:
        assert environment(resolved[name]) == environment(ours[name]), name  # our interpolation agrees
        load_settings(env=environment(resolved[name]))


def test_services_are_the_fleet() -> None:
    assert set(services()) == SERVICES


def test_environment_names_only_settings_dinoseek_reads() -> None:
    for name, service in services().items():
        allowed = OTHER_ENV.get(name, ())
        for key in environment(service):
            if key.startswith("DINOSEEK_"):
                assert key in SETTING_NAMES, f"{name}: {key} is not a dinoseek setting ({', '.join(sorted(FIELDS))})"
            else:
                assert key.startswith(allowed) and allowed, f"{name}: {key} is neither a dinoseek setting nor read by its image"
    for path in DOCKERFILES.values():
        for key in dockerfile_env(path):
            if key.startswith("DINOSEEK_"):
                assert key in SETTING_NAMES, f"{path.name}: {key} is not a dinoseek setting"


def test_each_service_gets_the_settings_it_needs() -> None:
    svcs = services(read_env_file(ENV_EXAMPLE))
    envs = {name: environment(svcs[name]) for name in DINOSEEK_SERVICES}
    for name in DINOSEEK_SERVICES:
        url = urlsplit(envs[name]["DINOSEEK_DATABASE_URL"])
        assert url.scheme == "postgresql" and url.hostname == "postgres" and url.hostname in svcs, name
        assert envs[name]["DINOSEEK_HOME"] == envs["api"]["DINOSEEK_HOME"], name
    for name in ("api", *WORKERS):
        env = envs[name]
        assert env["DINOSEEK_VECTOR_BACKEND"] == "qdrant", name
        assert urlsplit(env["DINOSEEK_QDRANT_URL"]).hostname == "qdrant", name
        assert urlsplit(env["DINOSEEK_BROKER_URL"]).scheme == "redis", name
        assert urlsplit(env["DINOSEEK_BROKER_URL"]).hostname == "redis", name
        # the API and the workers must share the catalog, the broker, the vectors and the model
        for key in ("DINOSEEK_DATABASE_URL", "DINOSEEK_BROKER_URL", "DINOSEEK_QDRANT_URL", "DINOSEEK_MODEL",
                    "DINOSEEK_CHUNK_SIZE", "DINOSEEK_VISIBILITY_TIMEOUT", "DINOSEEK_MAX_IMAGE_PIXELS",
                    # any of them may create a collection: one key, one layout
                    "DINOSEEK_QDRANT_API_KEY", "DINOSEEK_QDRANT_HNSW_M", "DINOSEEK_QDRANT_HNSW_EF_CONSTRUCT",
                    "DINOSEEK_QDRANT_QUANTIZATION", "DINOSEEK_QDRANT_ON_DISK", "DINOSEEK_QDRANT_PATCH_LAYOUT"):
            assert env[key] == envs["api"][key], f"{name}: {key} differs from the API's"
    assert envs["worker-gpu"]["DINOSEEK_DEVICE"] == "cuda"
    assert envs["worker-cpu"]["DINOSEEK_DEVICE"] == "cpu" and envs["api"]["DINOSEEK_DEVICE"] == "cpu"
    assert envs["api"]["DINOSEEK_API_KEYS"] and envs["api"]["DINOSEEK_ALLOWED_ROOTS"]
    assert environment(svcs["flower"])["CELERY_BROKER_URL"] == envs["api"]["DINOSEEK_BROKER_URL"]
    # Qdrant requires the key the API and the workers send
    assert envs["api"]["DINOSEEK_QDRANT_API_KEY"]
    assert environment(svcs["qdrant"])["QDRANT__SERVICE__API_KEY"] == envs["api"]["DINOSEEK_QDRANT_API_KEY"]
    assert envs["migrate"]["DINOSEEK_DATABASE_URL"] == envs["api"]["DINOSEEK_DATABASE_URL"]


def test_interpolated_variables_are_the_ones_env_example_documents() -> None:
    text = "\n".join(strings(load_compose())).replace("$$", "")  # values, not comments: compose interpolates those
    used = {m["name"] for m in _VAR.finditer(text)}
    stray = re.findall(r"\$(?!\{)\S*", _VAR.sub("", text))
    assert not stray, f"write variables as ${{VAR}} (or $$ for a literal $): {stray}"
    documented = set(read_env_file(ENV_EXAMPLE))
    assert used - documented == set(), f"interpolated but not in .env.example: {sorted(used - documented)}"
    assert documented - used == set(), f"in .env.example but unused by docker-compose.yml: {sorted(documented - used)}"
    for key in documented:
        if key.startswith("DINOSEEK_"):
            assert key in SETTING_NAMES, f".env.example: {key} is not a dinoseek setting"


def test_env_example_values_load_as_settings() -> None:
    env_file = read_env_file(ENV_EXAMPLE)
    for name in DINOSEEK_SERVICES:
        settings = load_settings(env=service_env(name, env_file))  # raises SettingsError on a bad value
        assert str(settings.home) == "/var/lib/dinoseek"
        assert settings.database_url.startswith("postgresql://")
    api = load_settings(env=service_env("api", env_file))
    assert api.vector_backend == "qdrant" and api.qdrant_url and api.broker_url
    assert api.api_keys and all(":" not in k or k.endswith(":ro") for k in api.api_keys)
    assert [str(r) for r in api.allowed_roots] == ["/srv/photos"]
    gpu = load_settings(env=service_env("worker-gpu", env_file))
    assert gpu.device == "cuda" and gpu.vector_backend == "qdrant" and gpu.broker_url == api.broker_url
    assert (api.qdrant_hnsw_m, api.qdrant_hnsw_ef_construct, api.qdrant_quantization, api.qdrant_on_disk,
            api.qdrant_patch_layout) == (16, 100, "int8", False, "points")  # the example spells out the defaults
    assert api.qdrant_api_key == env_file["DINOSEEK_QDRANT_API_KEY"]
    # its secrets are public placeholders: the API and the workers refuse to start with them
    assert secret_problems(api) == ["DINOSEEK_API_KEYS entry 1 is a placeholder from .env.example",
                                    "DINOSEEK_API_KEYS entry 2 is a placeholder from .env.example",
                                    "DINOSEEK_QDRANT_API_KEY is a placeholder from .env.example",
                                    "the password in DINOSEEK_DATABASE_URL is a placeholder from .env.example",
                                    "the password in DINOSEEK_BROKER_URL is a placeholder from .env.example"]
    for name in ("worker-gpu", "worker-cpu"):  # the workers refuse the same (dinoseek worker: check_secrets)
        assert "the password in DINOSEEK_BROKER_URL is a placeholder from .env.example" in \
            secret_problems(load_settings(env=service_env(name, env_file)))
    # a real one passes: `openssl rand -hex 24` is URL-safe, so it goes into the URL as it is
    real = {key: "0123456789abcdef0123456789abcdef0123456789abcdef" for key in env_file if "PASSWORD" in key}
    real |= {"DINOSEEK_API_KEYS": "a" * 48, "DINOSEEK_QDRANT_API_KEY": "b" * 48}
    assert secret_problems(load_settings(env=service_env("api", {**env_file, **real}))) == []
    # the alternative values the example documents load too
    for key, value in (("DINOSEEK_QUERY_EMBEDDING", "gpu"), ("DINOSEEK_MODEL", "dinov2_vits14_reg4"),
                       ("DINOSEEK_QDRANT_QUANTIZATION", "none"), ("DINOSEEK_QDRANT_ON_DISK", "true"),
                       ("DINOSEEK_QDRANT_HNSW_M", "0"), ("DINOSEEK_QDRANT_PATCH_LAYOUT", "multivector")):
        load_settings(env=service_env("api", {**env_file, key: value}))


def test_healthchecks_and_restart_policies() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service["restart"] in ("no", "on-failure"), f"{name} runs once"
            continue
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"
        if name == "flower":
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_workers_own_no_state_so_they_scale() -> None:
    svcs = services(read_env_file(ENV_EXAMPLE))
    api_mounts = mounts(svcs["api"])
    for name in WORKERS:
        worker = svcs[name]
        for key in ("container_name", "ports", "hostname"):
            assert key not in worker, f"{name}: {key} would stop `--scale {name}=N`"
        for volume in worker.get("volumes", []):
            assert ":" in str(volume), f"{name}: anonymous volume {volume!r} is per-container state"
        for target, (source, mode) in mounts(worker).items():
            assert api_mounts.get(target) == (source, mode), f"{name}: {source}:{target} is not the API's mount"
            if source.startswith((".", "/")):
                assert mode == "ro", f"{name}: host folder {source} must be mounted read-only"
        command = worker["command"]
        assert command[:2] == ["dinoseek", "worker"]
        node = command[command.index("--hostname") + 1]
        assert "%h" in node, f"{name}: node names must differ per container"


def test_queues_are_served() -> None:
    from workers.app import QUEUES

    svcs = services(read_env_file(ENV_EXAMPLE))
    served = set()
    for name in WORKERS:
        command = svcs[name]["command"]
        served |= set(command[command.index("--queues") + 1].split(","))
    assert served == set(QUEUES)
    assert svcs["worker-gpu"]["command"][svcs["worker-gpu"]["command"].index("--queues") + 1] == "gpu"


def test_gpu_worker_reserves_an_nvidia_gpu_and_uses_the_cuda_image() -> None:
    worker = services()["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    pinned = services({**read_env_file(ENV_EXAMPLE), "WORKER_GPU_DEVICE": "GPU-6f2a"})["worker-gpu"]
    assert pinned["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["GPU-6f2a"]


def deploy_gpu_services_snippet() -> str:
    """The per-GPU services docs/DEPLOY.md tells a multi-GPU host to add (its first yaml block
    after the "#### One worker per GPU" heading)."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    section = text[text.index("#### One worker per GPU"):]
    return section[section.index("```yaml\n") + len("```yaml\n"):section.index("```", section.index("```yaml\n") + 7)]


def test_documented_per_gpu_services_pin_one_gpu_each(tmp_path: Path) -> None:
    """The recipe in docs/DEPLOY.md, pasted into docker-compose.yml as it says, gives services that
    are worker-gpu on GPUs of their own, and Compose accepts the result."""
    snippet = deploy_gpu_services_snippet()
    text = COMPOSE.read_text()
    combined = text.replace("\nvolumes:\n", "\n" + snippet + "\nvolumes:\n", 1)
    doc = interpolate(yaml.safe_load(combined), read_env_file(ENV_EXAMPLE))
    added = sorted(set(doc["services"]) - SERVICES)
    assert len(added) >= 1, "the snippet adds no service"
    base = doc["services"]["worker-gpu"]
    gpus = {"worker-gpu": base["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]}
    for name in added:
        service = doc["services"][name]
        for key in ("command", "environment", "volumes", "depends_on", "healthcheck", "build", "image"):
            assert service[key] == base[key], f"{name}: {key} is not worker-gpu's"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and "count" not in device
        gpus[name] = device["device_ids"]
    assert all(len(ids) == 1 for ids in gpus.values()) and len({ids[0] for ids in gpus.values()}) == len(gpus)
    path = tmp_path / "docker-compose.yml"
    path.write_text(combined)
    cmd = compose_command() + ["--env-file", str(ENV_EXAMPLE), "-f", str(path), "--project-directory", str(ROOT)]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(cmd + ["config", "-q"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_migrate_runs_first() -> None:
    svcs = services()
    assert svcs["migrate"]["command"] == ["dinoseek", "db", "upgrade"]
    assert svcs["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", *WORKERS):
        depends = svcs[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        for server in ("postgres", "redis", "qdrant"):
            assert depends[server]["condition"] == "service_healthy", f"{name} waits for {server}"


def test_data_lives_on_named_volumes() -> None:
    doc = load_compose(read_env_file(ENV_EXAMPLE))
    declared = set(doc["volumes"])
    where = {name: {target: source for target, (source, _) in mounts(s).items()} for name, s in doc["services"].items()}
    assert where["postgres"]["/var/lib/postgresql/data"] in declared
    assert where["redis"]["/data"] in declared
    assert where["qdrant"]["/qdrant/storage"] in declared and where["qdrant"]["/qdrant/snapshots"] in declared
    for name in ("api", *WORKERS):
        env = environment(doc["services"][name])
        assert where[name][env["DINOSEEK_HOME"]] in declared, f"{name}: DINOSEEK_HOME on a named volume"
        assert where[name][f"{env['DINOSEEK_HOME']}/models"] in declared, f"{name}: models on a named volume"
    # the folder the API may index is the library's mount, at the same path in every reader
    roots = environment(doc["services"]["api"])["DINOSEEK_ALLOWED_ROOTS"]
    for name in ("api", *WORKERS):
        assert mounts(doc["services"][name])[roots][1] == "ro", name
    assert "--appendonly" in doc["services"]["redis"]["command"]
    assert doc["services"]["redis"]["command"][doc["services"]["redis"]["command"].index("--appendonly") + 1] == "yes"


def test_images_are_built_here_or_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
            assert service["build"]["context"] == "."
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"


def test_commands_exist_in_the_cli() -> None:
    from dinoseek.cli import build_parser

    parser = build_parser()
    commands = [services(read_env_file(ENV_EXAMPLE))[n]["command"] for n in DINOSEEK_SERVICES]
    for path in DOCKERFILES.values():
        commands += [yaml.safe_load(rest) for word, rest in dockerfile_instructions(path) if word == "CMD"]
    for command in commands:
        assert command[0] == "dinoseek", command
        parser.parse_args(command[1:])  # exits (SystemExit) on an unknown command or option


# ------------------------------------------------------------------------------------- hardening
def test_every_service_drops_capabilities_and_privileges_and_writes_only_its_volumes() -> None:
    """Issue 17, finding 17: no capabilities but the listed ones, no privilege gained through a setuid
    binary, a read-only root filesystem with /tmp in memory; the servers run as non-root users."""
    svcs = services(read_env_file(ENV_EXAMPLE))
    for name, service in svcs.items():
        assert "no-new-privileges:true" in service.get("security_opt", []), f"{name}: no-new-privileges"
        assert service.get("cap_drop") == ["ALL"], f"{name}: cap_drop ALL"
        assert set(service.get("cap_add", [])) == CAPABILITIES.get(name, set()), f"{name}: capabilities added back"
        assert service.get("read_only") is True, f"{name}: read-only root filesystem"
        assert "/tmp" in service.get("tmpfs", []), f"{name}: /tmp in memory"
        assert not service.get("privileged"), name
        user = service.get("user")
        if "build" in service:  # dinoseek's images run as their own user (the Dockerfile test)
            assert user is None, f"{name}: the image's non-root user"
        elif name in CAPABILITIES:
            assert user == "0:0", name  # root without capabilities but those named
        else:
            assert user and user.split(":")[0] not in ("0", "root"), f"{name}: runs as a non-root user"
    assert "/var/run/postgresql" in svcs["postgres"]["tmpfs"]  # its socket and lock file


def test_redis_requires_a_password_that_every_broker_url_carries() -> None:
    raw = services()
    command = raw["redis"]["command"]
    assert "--requirepass" in command and command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    env_file = read_env_file(ENV_EXAMPLE)
    svcs = services(env_file)
    password = env_file["REDIS_PASSWORD"]
    command = svcs["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == password
    assert environment(svcs["redis"])["REDISCLI_AUTH"] == password  # the health check authenticates
    urls = {f"{name}: {key}": value for name, service in svcs.items() for key, value in environment(service).items()
            if value.startswith(("redis://", "rediss://"))}
    assert {"api: DINOSEEK_BROKER_URL", "worker-gpu: DINOSEEK_BROKER_URL", "worker-cpu: DINOSEEK_BROKER_URL",
            "flower: CELERY_BROKER_URL"} <= set(urls)
    for where, url in urls.items():
        assert urlsplit(url).password == password and urlsplit(url).hostname == "redis", where
    # written as the variable everywhere (not a copy of a value), so that one .env line sets them all
    text = COMPOSE.read_text()
    for url in re.findall(r"rediss?://\S*", text):
        assert url.startswith("redis://:${REDIS_PASSWORD:?"), url


def test_qdrant_serves_tls_and_requires_the_key_as_a_non_root_user() -> None:
    svcs = services(read_env_file(ENV_EXAMPLE))
    qdrant, certs = svcs["qdrant"], svcs["certs"]
    env = environment(qdrant)
    assert env["QDRANT__SERVICE__ENABLE_TLS"] == "true"
    assert env["QDRANT__SERVICE__API_KEY"] == environment(svcs["api"])["DINOSEEK_QDRANT_API_KEY"] != ""
    assert qdrant["user"] == "1000:1000" and qdrant["image"].endswith("-unprivileged")
    assert env["QDRANT_INIT_FILE_PATH"].startswith("/qdrant/storage/")  # not into the read-only image
    assert qdrant["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    # the certificate, key and CA Qdrant reads are the ones `certs` writes, mounted read-only
    written = {source: target for target, (source, _) in mounts(certs).items()}
    certs_env = environment(certs)
    assert written["qdrant-tls"] == certs_env["CERTS_TLS_DIR"] and written["qdrant-ca"] == certs_env["CERTS_CA_DIR"]
    assert certs_env["CERTS_SERVER_NAMES"] == "qdrant" and certs_env["CERTS_KEY_OWNER"] == qdrant["user"]
    read = mounts(qdrant)
    for key, volume, name in (("QDRANT__TLS__CERT", "qdrant-tls", "cert.pem"), ("QDRANT__TLS__KEY", "qdrant-tls", "key.pem"),
                              ("QDRANT__TLS__CA_CERT", "qdrant-ca", "ca.pem")):
        folder, file = env[key].rsplit("/", 1)
        assert file == name and read[folder] == (volume, "ro"), key
    assert (ROOT / mounts(certs)[certs["entrypoint"][-1]][0]).resolve() == CERTS_SCRIPT
    # the server's key reaches no other service
    assert {n for n, service in svcs.items() if "qdrant-tls" in str(service.get("volumes"))} == {"certs", "qdrant"}


def test_api_and_workers_reach_qdrant_over_https_verified_by_the_fleet_ca() -> None:
    from indexer.stores.qdrant_server_store import QdrantConfig

    env_file = read_env_file(ENV_EXAMPLE)
    svcs = services(env_file)
    ca_dir = environment(svcs["certs"])["CERTS_CA_DIR"]
    for name in ("api", *WORKERS):
        env = environment(svcs[name])
        assert urlsplit(env["DINOSEEK_QDRANT_URL"]).scheme == "https", name
        folder, file = env["DINOSEEK_QDRANT_CA_FILE"].rsplit("/", 1)
        assert file == "ca.pem" and mounts(svcs[name])[folder] == ("qdrant-ca", "ro"), name
        assert mounts(svcs["certs"])[ca_dir][0] == "qdrant-ca"
        config = QdrantConfig.from_settings(load_settings(env=service_env(name, env_file)))
        assert config.ca_file == env["DINOSEEK_QDRANT_CA_FILE"] and config.api_key, name


# ------------------------------------------------------------------------- certificates (openssl)
class Certs(NamedTuple):
    ca: Path
    cert: Path
    key: Path
    said: str


def make_certs(directory: Path, names: str = "qdrant", **env: str) -> Certs:
    """docker/qdrant-certs.sh run as the `certs` service runs it, into ``directory``, the key left to
    the user running the tests. Skips without openssl."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CERTS_CA_DIR": str(directory / "ca"),
               "CERTS_TLS_DIR": str(directory / "tls"), "CERTS_SERVER_NAMES": names, "CERTS_KEY_OWNER": "", **env}
    run = subprocess.run(["sh", str(CERTS_SCRIPT)], env=run_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return Certs(directory / "ca" / "ca.pem", directory / "tls" / "cert.pem", directory / "tls" / "key.pem", run.stdout)


@contextmanager
def tls_server(server: ThreadingHTTPServer, certs: Certs) -> Iterator[int]:
    """Serve ``server`` over TLS with the certificate and key of ``certs`` from a thread; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)  # handshakes a client refuses are dropped
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def openssl_text(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def test_the_certs_script_makes_a_ca_and_a_qdrant_certificate_once(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    assert "made a new CA" in certs.said
    assert openssl_text("verify", "-CAfile", str(certs.ca), str(certs.cert)).strip().endswith("OK")
    text = openssl_text("x509", "-in", str(certs.cert), "-noout", "-text")
    assert "DNS:qdrant" in text and "TLS Web Server Authentication" in text and "CA:FALSE" in text
    assert "CA:TRUE" in openssl_text("x509", "-in", str(certs.ca), "-noout", "-text")
    assert certs.key.stat().st_mode & 0o777 == 0o400 and certs.cert.stat().st_mode & 0o777 == 0o444
    assert certs.ca.stat().st_mode & 0o777 == 0o444 and (certs.ca.parent.stat().st_mode & 0o755) == 0o755
    # the CA's key is kept nowhere: the volumes hold these three files alone
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["ca.pem", "cert.pem", "key.pem"]
    files = (certs.ca, certs.cert, certs.key)
    before = {p: p.read_bytes() for p in files}
    again = make_certs(tmp_path)
    assert "keeping" in again.said and {p: p.read_bytes() for p in files} == before
    rotated = make_certs(tmp_path, CERTS_ROTATE="1")
    assert "made a new CA" in rotated.said and rotated.ca.read_bytes() != before[certs.ca]
    certs.ca.unlink()  # a lost CA (or a cut-short run) makes the whole set again
    assert "made a new CA" in make_certs(tmp_path).said


class _Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"all shards are ready")

    def log_message(self, *args) -> None:
        pass


def qdrant_healthcheck(port: int, ca: Path) -> int:
    """Qdrant's compose health check, run here with bash and openssl against 127.0.0.1:``port``."""
    test = services()["qdrant"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    script = test[3]
    assert "127.0.0.1:6333" in script and "/qdrant/ca/ca.pem" in script
    script = script.replace("127.0.0.1:6333", f"127.0.0.1:{port}").replace("/qdrant/ca/ca.pem", str(ca))
    return subprocess.run(["bash", "-c", script], capture_output=True, timeout=60).returncode


@pytest.mark.parametrize("status,ok", [(200, True), (503, False)])
def test_qdrant_healthcheck_asks_readyz_over_tls_it_verifies(tmp_path: Path, status: int, ok: bool) -> None:
    fleet = make_certs(tmp_path / "fleet")
    handler = type("Handler", (_Readyz,), {"status": status})
    with tls_server(ThreadingHTTPServer(("127.0.0.1", 0), handler), fleet) as port:
        assert (qdrant_healthcheck(port, fleet.ca) == 0) is ok


def test_qdrant_healthcheck_refuses_another_ca_or_another_name(tmp_path: Path) -> None:
    fleet = make_certs(tmp_path / "fleet")
    stranger = make_certs(tmp_path / "stranger", names="not-qdrant")
    with tls_server(ThreadingHTTPServer(("127.0.0.1", 0), _Readyz), stranger) as port:
        assert qdrant_healthcheck(port, fleet.ca) != 0  # signed by another CA
        assert qdrant_healthcheck(port, stranger.ca) != 0  # its own CA, but not the name `qdrant`


# ---------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_is_multistage_non_root_and_copies_what_exists(kind: str) -> None:
    path = DOCKERFILES[kind]
    steps = dockerfile_instructions(path)
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith("AS builder"), "multi-stage: a builder, then the runtime"
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    assert any(word == "HEALTHCHECK" for word, _ in steps)
    for word, rest in steps:
        if word != "COPY":
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        if "--from=builder" in rest:
            continue
        for source in args[:-1]:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such file in the repository"
            assert not ignored(source), f"{path.name}: COPY {source} is excluded by .dockerignore"
    installs = [rest for word, rest in steps if word == "RUN" and "pip install" in rest]
    assert installs and all("-c constraints.txt" in r for r in installs), "every pip install goes through constraints.txt"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = "gpu" if kind == "cuda" else "cpu"
    assert any(f"'.[{wanted}]'" in r for r in installs) and wanted in extras


def test_cpu_image_takes_torch_from_the_cpu_index_at_the_pinned_version() -> None:
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    runs = [rest for word, rest in dockerfile_instructions(DOCKERFILES["cpu"]) if word == "RUN"]
    torch_step = next(r for r in runs if "torch==" in r)
    assert f"torch=={pins['torch']}" in torch_step and "download.pytorch.org/whl/cpu" in torch_step


def test_default_model_and_migrations_are_packaged_and_reach_the_image() -> None:
    """The shipped model is package data (so a regular install carries it) and no ignore rule
    keeps it, or the migrations, out of the build context."""
    from model.checkpoint import DEFAULT_CHECKPOINT

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    relative = DEFAULT_CHECKPOINT.relative_to(ROOT / "model").as_posix()
    assert DEFAULT_CHECKPOINT.is_file()
    assert any(fnmatch.fnmatchcase(relative, p) for p in package_data["model"]), relative
    assert not ignored(DEFAULT_CHECKPOINT.relative_to(ROOT).as_posix())
    for version in (ROOT / "migrations" / "versions").glob("*.py"):
        assert any(fnmatch.fnmatchcase(f"versions/{version.name}", p) for p in package_data["migrations"])
        assert not ignored(version.relative_to(ROOT).as_posix())
    for secret in (".env", ".git/config", ".venv/bin/python", "tests/conftest.py"):
        assert ignored(secret), f"{secret} should stay out of the build context"
