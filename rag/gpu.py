"""GPU helpers: detect CUDA, and exact inner-product search over a matrix held on the GPU.

Nothing here needs a GPU: every function answers sensibly on a CPU-only machine, and ``TorchExactIndex`` runs on
CPU torch too (``device="cpu"``), which is how its tests run in CI. Importing this module is cheap (torch and faiss
load on first use) and it imports nothing else from ``rag`` so that ``benchmarks/gpu.py`` can run on a GPU machine
that has only torch and sentence-transformers installed.

Why an exact search in torch: one H100 multiplies a batch of 1,024 queries by a 1M x 384 fp16 matrix in about a
millisecond, so brute force is exact *and* fast up to tens of millions of vectors; GPU FAISS does the same, but its
wheels need CUDA runtime packages that are not always installable. ``exact_index`` picks GPU FAISS when it is there.

Example::

    >>> import numpy as np
    >>> index = TorchExactIndex(dim=3, device="cpu")
    >>> index.add(np.eye(3, dtype=np.float32))
    >>> scores, ids = index.search(np.array([[0.0, 1.0, 0.0]], dtype=np.float32), k=2)
    >>> int(ids[0, 0]), float(scores[0, 0])
    (1, 1.0)
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from rag.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ExactIndex",
    "FaissGpuExactIndex",
    "TorchExactIndex",
    "cuda_available",
    "cuda_device_name",
    "exact_index",
    "faiss_gpu_available",
    "resolve_device",
]

Precision = Literal["auto", "fp16", "fp32"]


@functools.cache
def cuda_available() -> bool:
    """True when torch is installed and sees at least one CUDA device; never raises.

    >>> isinstance(cuda_available(), bool)
    True
    """
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # a broken driver install must read as "no GPU", not crash the CLI
        return False


def cuda_device_name() -> str | None:
    """The name of CUDA device 0 (e.g. ``"NVIDIA H100 80GB HBM3"``), or None without a GPU."""
    if not cuda_available():
        return None
    import torch

    return str(torch.cuda.get_device_name(0))


def resolve_device(device: str = "auto") -> str:
    """Turn a device setting into a torch device string: ``"auto"`` means CUDA when present, else CPU.

    Asking for ``"cuda"`` on a machine without one raises ``ConfigError`` with what to do, rather than failing later
    inside torch.

    >>> resolve_device("cpu")
    'cpu'
    """
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ConfigError(f"device {device!r} asked for but no CUDA GPU is visible to torch: use 'auto' or 'cpu'")
    return device


@functools.cache
def faiss_gpu_available() -> bool:
    """True when the installed faiss is a GPU build and a GPU is visible; never raises."""
    try:
        import faiss
    except ImportError:
        return False
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


class ExactIndex(Protocol):
    """Exact top-k by inner product; ids are insertion positions (0, 1, 2, ...)."""

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: Any) -> None: ...

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def reset(self) -> None: ...


class TorchExactIndex:
    """Exact inner-product top-k over vectors kept on a torch device (GPU in fp16, or CPU in fp32).

    Vectors are stored in blocks of ``block_rows`` rows; a search multiplies each query batch by each block, keeps the
    block's top-k, and merges: memory stays bounded (``query_batch x block_rows`` scores at a time) however large the
    index grows. With L2-normalised vectors the scores are cosine similarities.

    ``search`` returns ``(scores, ids)`` as numpy arrays of shape ``(n_queries, k)``, float32 and int64, best first.
    When fewer than ``k`` vectors are stored, the missing places hold score ``-inf`` and id ``-1`` (FAISS's
    convention).

    Args:
        dim: vector dimension.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        precision: ``"auto"`` is fp16 on CUDA (half the memory, tensor cores; top-10 agrees with fp32 up to ties
            within fp16 rounding) and fp32 on CPU (CPU fp16 matmuls are slow).
        block_rows: rows per stored block.
        query_batch: queries multiplied at once.

    >>> import numpy as np
    >>> idx = TorchExactIndex(dim=2, device="cpu")
    >>> idx.add(np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32))
    >>> idx.search(np.array([[0.0, 1.0]], dtype=np.float32), k=3)[1].tolist()
    [[1, 0, -1]]
    """

    def __init__(
        self,
        dim: int,
        *,
        device: str = "auto",
        precision: Precision = "auto",
        block_rows: int = 1 << 20,
        query_batch: int = 1024,
    ) -> None:
        if dim < 1:
            raise StoreError(f"dim must be positive, got {dim}")
        if block_rows < 1 or query_batch < 1:
            raise StoreError("block_rows and query_batch must be positive")
        self.dim = dim
        self.device = resolve_device(device)
        if precision == "auto":
            precision = "fp16" if self.device.startswith("cuda") else "fp32"
        self.precision: Precision = precision
        self.block_rows = block_rows
        self.query_batch = query_batch
        self._blocks: list[torch.Tensor] = []  # each (capacity <= block_rows, dim); all full except maybe the last
        self._fill: list[int] = []  # rows in use in each block
        self._ntotal = 0

    @property
    def ntotal(self) -> int:
        return self._ntotal

    def _dtype(self) -> torch.dtype:
        import torch

        return torch.float16 if self.precision == "fp16" else torch.float32

    def _as_tensor(self, x: Any, what: str) -> torch.Tensor:
        import torch

        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if t.ndim == 1:
            t = t.unsqueeze(0)
        if t.ndim != 2 or t.shape[1] != self.dim:
            raise StoreError(f"{what} must have shape (n, {self.dim}), got {tuple(t.shape)}")
        return t.to(device=self.device, dtype=self._dtype())

    def add(self, vectors: Any) -> None:
        """Append vectors (numpy array or torch tensor, shape ``(n, dim)``); their ids follow on from ``ntotal``."""
        import torch

        t = self._as_tensor(vectors, "vectors")
        start = 0
        while start < t.shape[0]:
            if not self._blocks or self._fill[-1] == self.block_rows:
                self._blocks.append(torch.empty((0, self.dim), device=self.device, dtype=self._dtype()))
                self._fill.append(0)
            block, fill = self._blocks[-1], self._fill[-1]
            n = min(t.shape[0] - start, self.block_rows - fill)
            if fill + n > block.shape[0]:
                # grow by doubling (amortised O(1) per row: ingestion adds small batches), capped at block_rows
                capacity = min(self.block_rows, max(2 * block.shape[0], fill + n, 1024))
                grown = torch.empty((capacity, self.dim), device=self.device, dtype=block.dtype)
                grown[:fill] = block[:fill]
                self._blocks[-1] = block = grown
            block[fill : fill + n] = t[start : start + n]
            self._fill[-1] = fill + n
            start += n
        self._ntotal += t.shape[0]

    def reset(self) -> None:
        """Drop every vector (and free the device memory they held)."""
        self._blocks = []
        self._fill = []
        self._ntotal = 0

    def search_tensors(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``search`` but returns torch tensors on the index's device (no host copy: for benchmarks/pipelines)."""
        import torch

        if k < 1:
            raise StoreError(f"k must be positive, got {k}")
        q_all = self._as_tensor(queries, "queries")
        n_q = q_all.shape[0]
        out_scores = torch.full((n_q, k), float("-inf"), device=self.device, dtype=torch.float32)
        out_ids = torch.full((n_q, k), -1, device=self.device, dtype=torch.int64)
        if self._ntotal == 0 or n_q == 0:
            return out_scores, out_ids
        kk = min(k, self._ntotal)
        with torch.inference_mode():
            for qs in range(0, n_q, self.query_batch):
                q = q_all[qs : qs + self.query_batch]
                cand_scores, cand_ids = [], []
                offset = 0
                for block, fill in zip(self._blocks, self._fill, strict=True):
                    s = q @ block[:fill].T  # (batch, rows); fp16 on CUDA accumulates in fp32 inside cuBLAS
                    top_s, top_i = torch.topk(s, min(kk, fill), dim=1)
                    cand_scores.append(top_s.float())
                    cand_ids.append(top_i + offset)
                    offset += fill
                scores = torch.cat(cand_scores, dim=1)
                ids = torch.cat(cand_ids, dim=1)
                if len(self._blocks) > 1:
                    scores, pos = torch.topk(scores, kk, dim=1)
                    ids = torch.gather(ids, 1, pos)
                out_scores[qs : qs + q.shape[0], :kk] = scores
                out_ids[qs : qs + q.shape[0], :kk] = ids
        return out_scores, out_ids

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and scores for each query row (a 1-D query is one row), best first."""
        scores, ids = self.search_tensors(queries, k)
        return scores.cpu().numpy(), ids.cpu().numpy()


class FaissGpuExactIndex:
    """GPU FAISS ``GpuIndexFlatIP`` behind the same small interface (needs a faiss GPU build).

    ``precision="fp16"`` (the default) stores vectors in half precision like ``TorchExactIndex`` does on CUDA.
    """

    def __init__(self, dim: int, *, precision: Precision = "fp16", device: int = 0) -> None:
        if not faiss_gpu_available():
            raise RuntimeError("GPU FAISS is not available: install a faiss GPU build, or use TorchExactIndex")
        import faiss

        self.dim = dim
        self._res = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = device
        config.useFloat16 = precision != "fp32"
        self._index = faiss.GpuIndexFlatIP(self._res, dim, config)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: Any) -> None:
        self._index.add(_to_numpy(vectors))

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _to_numpy(queries)
        if q.ndim == 1:
            q = q[None, :]
        scores, ids = self._index.search(q, k)
        return scores.astype(np.float32), ids.astype(np.int64)

    def reset(self) -> None:
        self._index.reset()


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on the GPU
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def exact_index(
    dim: int, *, device: str = "auto", precision: Precision = "auto", prefer_faiss: bool = True
) -> ExactIndex:
    """The fastest exact inner-product index this machine has: GPU FAISS, else torch on the GPU, else torch on CPU.

    >>> exact_index(8, device="cpu").ntotal
    0
    """
    resolved = resolve_device(device)
    if prefer_faiss and resolved.startswith("cuda") and faiss_gpu_available():
        gpu_id = int(resolved.split(":")[1]) if ":" in resolved else 0
        return FaissGpuExactIndex(dim, precision="fp32" if precision == "fp32" else "fp16", device=gpu_id)
    return TorchExactIndex(dim, device=resolved, precision=precision)
