"""The deployment files: docker-compose.yml validates, its settings are real settings, its commands are real commands.

No Docker engine runs here: ``docker compose config`` (or Debian's ``docker-compose``) only parses, interpolates and
validates the file against the Compose specification. Everything else reads the YAML and the Dockerfile directly, so
a typo in a ``RAG_*`` variable (silently ignored by pydantic-settings at run time) fails here instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from rag.config import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
PROFILES = {
    "single": (("single",), {"vllm", "qdrant", "ui", "api", "ingest"}),
    "cluster": (("cluster",), {"vllm", "qdrant-node1", "qdrant-node2", "qdrant-node3", "ui-cluster", "api-cluster",
                               "ingest-cluster"}),
    "embed": (("single", "embed"), {"vllm", "qdrant", "ui", "api", "ingest", "embed"}),
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}|\$\$")
# variables the file refuses to start without (${VAR:?message})
REQUIRED = {"QDRANT_API_KEY": "test-qdrant-key", "VLLM_API_KEY": "test-vllm-key"}


# ------------------------------------------------------------------------------------------------------------ helpers
def _compose_command() -> list[str] | None:
    """The Compose implementation on this machine: the Docker CLI plugin, else a standalone docker-compose."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    for candidate in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).exists():
            return [str(candidate)]
    return None


COMPOSE_CMD = _compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE_CMD is None,
    reason="no Compose here: install the Docker CLI compose plugin, or Debian's docker-compose (.ci/setup does)",
)


def _clean_env() -> dict[str, str]:
    """This process's environment without the variables the compose file reads, so the file's defaults are tested."""
    text = COMPOSE.read_text()
    used = {m.group(1) for m in _VAR.finditer(text) if m.group(1)}
    return {**{k: v for k, v in os.environ.items() if k not in used and k != "COMPOSE_PROFILES"}, **REQUIRED}


def _run_compose(
    *args: str, file: Path = COMPOSE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_CMD is not None
    return subprocess.run(
        [*COMPOSE_CMD, "-f", str(file), "--project-directory", str(REPO), *args],
        capture_output=True,
        text=True,
        env=_clean_env() if env is None else env,
        timeout=60,
    )


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` (enough for this file)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            if m.group(2) == "?" and not env.get(m.group(1)):
                raise KeyError(f"{m.group(1)} is required: {m.group(3)}")
            return env.get(m.group(1)) or (m.group(3) if m.group(2) == "-" else "") or ""

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _load(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text())  # resolves the anchors and `<<` merges like Compose does
    return _interpolate(raw, {**REQUIRED, **(env or {})})


def _services() -> dict[str, dict[str, Any]]:
    return _load()["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _setting_path_exists(var: str) -> bool:
    """``RAG_STORE__QDRANT_URL`` -> Settings.store.qdrant_url, walking nested models by ``__``."""
    model: type[BaseModel] = Settings
    parts = var.removeprefix("RAG_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("RAG_"):
            monkeypatch.setenv(key, value)
    return Settings()


def _rag_env_by_service() -> dict[str, dict[str, str]]:
    return {name: _environment(svc) for name, svc in _services().items()}


# ------------------------------------------------------------------------------------------- docker compose config
@needs_compose
@pytest.mark.parametrize("profile", list(PROFILES))
def test_compose_config_validates(profile: str) -> None:
    profiles, expected = PROFILES[profile]
    flags = [arg for p in profiles for arg in ("--profile", p)]
    proc = _run_compose(*flags, "config", "-q")
    assert proc.returncode == 0, proc.stderr
    listed = _run_compose(*flags, "config", "--services")
    assert listed.returncode == 0, listed.stderr
    assert expected <= set(listed.stdout.split()), listed.stdout


def _enabled(profiles: tuple[str, ...]) -> set[str]:
    """The services Compose starts with these profiles active (a service without ``profiles`` always starts)."""
    services = _services().items()
    return {name for name, svc in services if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_profile_starts_exactly_its_services_without_port_clashes(profile: str) -> None:
    profiles, expected = PROFILES[profile]
    enabled = _enabled(profiles)
    assert enabled == expected
    services = _services()
    for name in enabled:  # Compose refuses to start a service whose dependency is not enabled
        assert set(services[name].get("depends_on", {})) <= enabled, name
    published = [p.rsplit(":", 1)[0] for name in enabled for p in services[name].get("ports", [])]
    assert len(published) == len(set(published)), f"two services publish the same host port: {sorted(published)}"


def test_the_cluster_never_starts_the_single_node_and_nothing_starts_without_a_profile() -> None:
    """`--profile cluster` used to also start the single-node qdrant and ui, which clashed on 6333 and 8501."""
    assert _enabled(()) == set()
    assert _enabled(("cluster",)) & {"qdrant", "ui", "api", "ingest"} == set()
    assert _enabled(("single",)) & {"qdrant-node1", "ui-cluster", "api-cluster", "ingest-cluster"} == set()


@needs_compose
def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator is real: a dependency on a service that does not exist is refused."""
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["ui"]["depends_on"]["nonexistent"] = {"condition": "service_healthy"}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    proc = _run_compose("config", "-q", file=path)
    assert proc.returncode != 0
    assert "nonexistent" in (proc.stderr + proc.stdout)


@needs_compose
def test_compose_interpolates_the_model_variable() -> None:
    if COMPOSE_CMD and COMPOSE_CMD[-1] != "compose":
        probe = subprocess.run([*COMPOSE_CMD, "version"], capture_output=True, text=True)
        if "version 1." in probe.stdout:
            pytest.skip("docker-compose v1 has no `config --format json`")
    proc = subprocess.run(
        [*COMPOSE_CMD, "-f", str(COMPOSE), "--project-directory", str(REPO), "config", "--format", "json"],  # type: ignore[misc]
        capture_output=True,
        text=True,
        env={**_clean_env(), "VLLM_MODEL": "meta-llama/Llama-3.1-8B-Instruct"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert "--model=meta-llama/Llama-3.1-8B-Instruct" in config["services"]["vllm"]["command"]
    assert config["services"]["ui"]["environment"]["RAG_LLM__MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"


# --------------------------------------------------------------------------------------- settings are real settings
def test_every_rag_variable_the_compose_file_sets_is_a_real_setting() -> None:
    unknown = sorted(
        f"{name}: {var}"
        for name, env in _rag_env_by_service().items()
        for var in env
        if var.startswith("RAG_") and not _setting_path_exists(var)
    )
    assert not unknown, f"not fields of rag.config.Settings (pydantic-settings would silently ignore them): {unknown}"
    # the interpolation variables named like settings must be settings too (users put them in .env)
    named = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if m.group(1) and m.group(1).startswith("RAG_")}
    assert named and all(_setting_path_exists(v) for v in named), named


def test_the_checker_catches_a_misspelt_setting() -> None:
    assert _setting_path_exists("RAG_STORE__QDRANT_URL")
    assert not _setting_path_exists("RAG_STORE__QDRANT_URI")
    assert not _setting_path_exists("RAG_LLM__BASE_URL__X")


@pytest.mark.parametrize("service", ["ui", "api", "ingest", "ui-cluster", "api-cluster", "ingest-cluster"])
def test_compose_environment_parses_into_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _environment(_services()[service])
    settings = _settings_from(env, monkeypatch)
    assert settings.store.backend == "qdrant" and settings.store.qdrant_mode == "server"
    assert settings.llm.base_url == "http://vllm:8000/v1"
    assert settings.llm.model == "Qwen/Qwen2.5-7B-Instruct"
    assert settings.data_dir == Path("/data")
    assert settings.embedding.backend == "sentence-transformers"
    if service.endswith("-cluster"):
        assert settings.store.qdrant_url == "http://qdrant-node1:6333"
        assert (settings.store.shard_number, settings.store.replication_factor) == (6, 2)
    else:
        assert settings.store.qdrant_url == "http://qdrant:6333"
        assert (settings.store.shard_number, settings.store.replication_factor) == (1, 1)


def test_switching_embeddings_to_vllm_is_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _environment(
        _load({"RAG_EMBEDDING__BACKEND": "openai", "RAG_EMBEDDING__MODEL": "BAAI/bge-base-en-v1.5"})["services"]["ui"]
    )
    settings = _settings_from(env, monkeypatch)
    assert settings.embedding.backend == "openai"
    assert settings.embedding.base_url == "http://embed:8000/v1"
    embed_cmd = _services()["embed"]["command"]
    assert f"--served-model-name={settings.embedding.model}" in embed_cmd


def test_the_app_asks_vllm_for_the_model_it_serves() -> None:
    services = _services()
    vllm_cmd = services["vllm"]["command"]
    env = _environment(services["ui"])
    assert f"--served-model-name={env['RAG_LLM__MODEL']}" in vllm_cmd
    assert f"--max-model-len={env['RAG_LLM__CONTEXT_TOKENS']}" in vllm_cmd
    assert "--enable-prefix-caching" in vllm_cmd


# -------------------------------------------------------------------------------------------- the shape of the stack
def test_official_images_gpu_reservation_and_model_cache() -> None:
    services = _services()
    assert services["vllm"]["image"].startswith("vllm/vllm-openai:")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    devices = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(v.endswith(":/root/.cache/huggingface") for v in services["vllm"]["volumes"])
    assert any(v.endswith(":/qdrant/storage") for v in services["qdrant"]["volumes"])
    assert "/health" in " ".join(services["vllm"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])


def test_ui_waits_for_healthy_dependencies_and_binds_to_loopback() -> None:
    services = _services()
    for name in ("ui", "ui-cluster", "api", "api-cluster", "ingest", "ingest-cluster"):
        for dep, cond in services[name]["depends_on"].items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no health check"
    assert set(services["ui"]["depends_on"]) == {"vllm", "qdrant"}
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    assert services["ingest"]["restart"] == "no" and services["ingest-cluster"]["restart"] == "no"
    assert any(v.endswith(":/docs:ro") for v in services["ingest"]["volumes"])
    # the UI reads the BM25 index and manifests the ingest job writes
    data = {
        s: next(v for v in services[s]["volumes"] if v.endswith(":/data"))
        for s in services
        if "ingest" in s or "ui" in s or "api" in s
    }
    assert data["ui"] == data["ingest"] == data["api"]
    assert data["ui-cluster"] == data["ingest-cluster"] == data["api-cluster"] != data["ui"]


def test_qdrant_cluster_nodes_bootstrap_from_the_first() -> None:
    services = _services()
    for i in (1, 2, 3):
        node = services[f"qdrant-node{i}"]
        assert node["profiles"] == ["cluster"]
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        cmd = node["command"]
        assert cmd[cmd.index("--uri") + 1] == f"http://qdrant-node{i}:6335"
        if i > 1:
            assert cmd[cmd.index("--bootstrap") + 1] == "http://qdrant-node1:6335"


# ------------------------------------------------------------------------------------------ commands are real commands
def _dockerfile_instruction(name: str) -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [ln for ln in text.splitlines() if ln.strip().upper().startswith(name + " ")]
    assert lines, f"Dockerfile has no {name}"
    return json.loads(lines[-1].strip()[len(name) :].strip())


def _check_rag_command(args: list[str]) -> None:
    """``rag ARGS --help`` exits 0 only when the subcommand exists and every option in ARGS is one of its options."""
    from rag.cli import app

    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"`rag {' '.join(args)}` is not a valid command: {result.output}"


def test_dockerfile_runs_rag_subcommands() -> None:
    assert _dockerfile_instruction("ENTRYPOINT") == ["rag"]
    cmd = _dockerfile_instruction("CMD")
    assert cmd[0] == "chat" and "0.0.0.0" in cmd
    _check_rag_command(cmd)


@pytest.mark.parametrize("service", ["ui", "api", "ingest", "ui-cluster", "api-cluster", "ingest-cluster"])
def test_compose_app_commands_are_rag_subcommands(service: str) -> None:
    _check_rag_command(_services()[service]["command"])


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "download.pytorch.org/whl/cpu" in text, "torch must come from the CPU index (no CUDA wheels in the app)"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "/_stcore/health" in text.split("HEALTHCHECK", 1)[1]


def test_dockerignore_keeps_what_the_build_copies_and_drops_secrets() -> None:
    import fnmatch

    patterns = [
        ln.strip().rstrip("/")
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)

    copied = [
        src
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    assert copied and not [c for c in copied if ignored(c.rstrip("/"))], copied
    for must_drop in (".venv", ".env", "rag.toml", "test-artifacts"):
        assert ignored(must_drop), must_drop


# ------------------------------------------------------------------------------------------------ security defaults
@pytest.mark.parametrize("service", ["ui", "api", "ui-cluster", "api-cluster"])
def test_ui_and_api_start_with_sign_in_and_an_initial_admin_from_a_secret(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = _services()[service]
    settings = _settings_from(_environment(svc), monkeypatch)
    assert settings.auth.mode == "on"
    assert settings.auth.initial_admin_password is None  # never a password in the environment
    assert settings.auth.initial_admin_password_file == Path("/run/secrets/admin_password")
    assert "admin_password" in svc["secrets"]
    assert _load()["secrets"]["admin_password"]["file"] == "./secrets/admin_password"


def test_qdrant_requires_an_api_key_and_the_app_sends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services()
    for node in ("qdrant", "qdrant-node1", "qdrant-node2", "qdrant-node3"):
        assert services[node]["environment"]["QDRANT__SERVICE__API_KEY"] == REQUIRED["QDRANT_API_KEY"]
    for app in ("ui", "api", "ingest", "ui-cluster", "api-cluster", "ingest-cluster"):
        settings = _settings_from(_environment(services[app]), monkeypatch)
        assert settings.store.qdrant_api_key is not None
        assert settings.store.qdrant_api_key.get_secret_value() == REQUIRED["QDRANT_API_KEY"]
    with pytest.raises(KeyError, match="QDRANT_API_KEY"):  # no key: compose refuses to start
        _interpolate(yaml.safe_load(COMPOSE.read_text()), {"VLLM_API_KEY": "x"})


def test_vllm_requires_an_api_key_and_the_app_sends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: VLLM_API_KEY defaulted to empty, so anything on the compose network could use the GPU."""
    services = _services()
    for name in ("vllm", "embed"):
        assert services[name]["environment"]["VLLM_API_KEY"] == REQUIRED["VLLM_API_KEY"], name
    for app in ("ui", "api", "ingest", "ui-cluster", "api-cluster", "ingest-cluster"):
        settings = _settings_from(_environment(services[app]), monkeypatch)
        assert settings.llm.api_key.get_secret_value() == REQUIRED["VLLM_API_KEY"], app
        assert settings.embedding.api_key.get_secret_value() == REQUIRED["VLLM_API_KEY"], app
    with pytest.raises(KeyError, match="VLLM_API_KEY"):
        _interpolate(yaml.safe_load(COMPOSE.read_text()), {"QDRANT_API_KEY": "x"})


@needs_compose
@pytest.mark.parametrize("secret", sorted(REQUIRED))
def test_compose_refuses_to_start_without_each_key(secret: str) -> None:
    env = {k: v for k, v in _clean_env().items() if k != secret}
    proc = _run_compose("--profile", "single", "config", "-q", env=env)
    assert proc.returncode != 0 and secret in proc.stderr + proc.stdout


def test_the_api_listens_on_loopback_by_default_with_a_health_check() -> None:
    services = _services()
    for name in ("api", "api-cluster"):
        assert services[name]["ports"] == ["127.0.0.1:8000:8000"]
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"])


def test_the_watch_service_unit_runs_a_real_command() -> None:
    """docs/rag-watch.service: its ExecStart is `rag ingest ... --watch` with options that exist, its settings are
    real settings, and it stops with SIGINT (a clean stop, like Ctrl-C)."""
    unit = (REPO / "docs" / "rag-watch.service").read_text()
    fields = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    exec_start = fields["ExecStart"].split()
    assert exec_start[0].endswith("/rag") and exec_start[1] == "ingest" and "--watch" in exec_start
    _check_rag_command([a.replace("${RAG_DOCS}", "/srv/docs").replace("%i", "papers") for a in exec_start[1:]])
    assert fields["KillSignal"] == "SIGINT"
    env = [line.split("=", 2)[1:] for line in unit.splitlines() if line.startswith(("Environment=", "# Environment="))]
    for name, _ in env:
        if name.startswith("RAG_") and name != "RAG_DOCS":
            parts = name.removeprefix("RAG_").lower().split("__")
            model: Any = Settings
            for part in parts:
                assert part in model.model_fields, f"{name} is not a setting"
                model = model.model_fields[part].annotation
