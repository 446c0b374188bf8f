"""rag.gpu: exact top-k on a torch device must agree with a plain numpy brute force; CUDA cases skip without a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import gpu
from rag.errors import ConfigError, StoreError
from rag.gpu import TorchExactIndex, cuda_available, exact_index, resolve_device

torch = pytest.importorskip("torch")

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")]),
]
REPO = Path(__file__).resolve().parents[2]


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _numpy_topk(db: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q @ db.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, axis=1), ids


@pytest.mark.parametrize("device", DEVICES)
def test_matches_numpy_brute_force_across_blocks_and_query_batches(device: str) -> None:
    db, q = _unit(5_000, 48, 0), _unit(37, 48, 1)
    # small blocks and query batches so that the block merge and the batching both run
    index = TorchExactIndex(48, device=device, precision="fp32", block_rows=1_024, query_batch=8)
    for start in range(0, len(db), 700):  # uneven adds straddle block boundaries
        index.add(db[start : start + 700])
    assert index.ntotal == 5_000
    scores, ids = index.search(q, k=10)
    want_scores, want_ids = _numpy_topk(db, q, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (37, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_finds_the_same_neighbours_as_fp32(device: str) -> None:
    db, q = _unit(4_000, 64, 2), _unit(50, 64, 3)
    index = TorchExactIndex(64, device=device, precision="fp16")
    index.add(db)
    scores, ids = index.search(q, k=10)
    _, want_ids = _numpy_topk(db, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), want_ids.tolist(), strict=True)])
    assert recall >= 0.97  # only near-ties within fp16 rounding may swap places
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must come best first"


def test_fewer_vectors_than_k_pads_with_minus_one() -> None:
    index = TorchExactIndex(4, device="cpu")
    index.add(np.eye(4, dtype=np.float32)[:2])
    scores, ids = index.search(np.eye(4, dtype=np.float32)[0], k=4)  # a 1-D query is one row
    assert ids.tolist() == [[0, 1, -1, -1]]
    assert scores[0, 0] == pytest.approx(1.0) and np.isneginf(scores[0, 2:]).all()


def test_empty_index_and_reset() -> None:
    index = TorchExactIndex(3, device="cpu")
    _, ids = index.search(np.ones((2, 3), np.float32), k=2)
    assert ids.tolist() == [[-1, -1], [-1, -1]]
    index.add(np.ones((5, 3), np.float32))
    index.reset()
    assert index.ntotal == 0
    index.add(np.eye(3, dtype=np.float32))
    assert index.search(np.array([0, 0, 1], np.float32), k=1)[1].tolist() == [[2]]


def test_accepts_torch_tensors_and_rejects_wrong_dimensions() -> None:
    index = TorchExactIndex(3, device="cpu")
    index.add(torch.eye(3))
    with pytest.raises(StoreError, match=r"shape \(n, 3\)"):
        index.add(np.ones((2, 4), np.float32))
    with pytest.raises(StoreError, match="k must be positive"):
        index.search(np.ones(3, np.float32), k=0)
    scores, ids = index.search_tensors(torch.tensor([[0.0, 1.0, 0.0]]), k=1)
    assert isinstance(scores, torch.Tensor) and ids.tolist() == [[1]]


def test_added_buffer_can_be_reused_by_the_caller() -> None:
    index = TorchExactIndex(2, device="cpu")
    buf = np.array([[1.0, 0.0]], np.float32)
    index.add(buf)
    buf[:] = [[0.0, 1.0]]  # the index must own a copy, not a view of the caller's array
    assert index.search(np.array([1.0, 0.0], np.float32), k=1)[0][0, 0] == pytest.approx(1.0)


def test_device_resolution_without_a_gpu_is_explicit() -> None:
    assert resolve_device("auto") == ("cuda" if cuda_available() else "cpu")
    assert exact_index(8, device="cpu").ntotal == 0
    if not cuda_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert TorchExactIndex(8).precision == "fp32"  # auto precision on CPU


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_auto_on_gpu_uses_fp16_on_cuda() -> None:
    index = TorchExactIndex(8)
    assert index.device == "cuda" and index.precision == "fp16"


def test_gpu_module_import_is_cheap() -> None:
    """`import rag.gpu` must not pull torch or faiss (the CLI imports it), nor the rest of rag (the GPU benchmark)."""
    code = "import sys, rag.gpu; print(sorted(m for m in ('torch', 'faiss', 'rag.config') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert gpu.faiss_gpu_available() in (True, False)


def test_gpu_benchmark_runs_quick_on_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu.py --quick measures search on this CPU and prints its table (the GPU run happens on a GPU)."""
    out_json = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--quick", "--skip-embed", "--sizes", "20000", "--json", str(out_json)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "exact top-10" in proc.stdout and "20,000" in proc.stdout
    import json

    result = json.loads(out_json.read_text())
    row = result["search"][0]
    assert row["vectors"] == 20_000 and row["ms_per_query"] > 0 and row["recall_at_10_vs_fp32"] >= 0.97
