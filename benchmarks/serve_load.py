"""Load test of ``rag serve``: a bounded asyncio client (httpx) on loopback, that stops by itself.

The real command (``python -m rag.cli serve``, one uvicorn process, sign-in on, an API key per request) over the
real retrieval (packaged MiniLM on ONNX, FAISS flat, BM25, hybrid RRF) of ``evals/data/corpus``; the LLM is either
a fast fake OpenAI-compatible server (a fixed cited reply, no delay: the API's own cost) or the real embedded
llama.cpp server (how requests queue behind one local model).

    $ .venv/bin/python benchmarks/serve_load.py                          # search and chat, 50 clients, 60 s each
    $ .venv/bin/python benchmarks/serve_load.py --scenario search --clients 50 --duration 60
    $ .venv/bin/python benchmarks/serve_load.py --scenario llm-queue     # 1, 2 and 4 clients on the real LLM
    $ .venv/bin/python benchmarks/serve_load.py --scenario search --compare-threads 2,40 --rounds 2 --duration 30
      # the same search load against two servers that differ only in server.retrieval_threads, interleaved

Prints one JSON object per run (requests/s, p50/p95/p99 in ms, errors) and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = ROOT / "evals" / "data" / "corpus"
GOLD = ROOT / "evals" / "data" / "gold.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ a fast fake LLM
def fake_llm_app() -> Any:
    """An OpenAI-compatible chat server that answers at once with a fixed cited reply (streamed or not)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    reply = "The answer is in the first source [1]."
    base = {"id": "x", "created": 0, "model": "fake"}

    async def models(request: Any) -> Any:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "bench"}]})

    async def chat(request: Any) -> Any:
        body = await request.json()
        if body.get("stream"):
            async def events() -> Any:
                for part in reply.split(" "):
                    delta = {"choices": [{"index": 0, "delta": {"content": part + " "}, "finish_reason": None}]}
                    yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', **delta})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({**base, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]})

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


# ------------------------------------------------------------------------------------------------------ the rig
def prepare(data_dir: Path) -> str:
    """Ingest the corpus once (real MiniLM, FAISS) and make a reader with an API key; returns the key."""
    from ingest.pipeline import ingest_paths
    from rag.config import Settings
    from rag.identity import IdentityStore

    settings = Settings(data_dir=data_dir, collection="bench", store={"use_gpu": "never"})
    summary = ingest_paths([CORPUS], settings)
    print(f"# corpus: {summary.files_seen} files, {summary.chunks_total} chunks in 'bench'", file=sys.stderr)
    ids = IdentityStore(settings.identity_path)
    if not ids.has_users():
        ids.add_user("bench", None, role="reader")
        ids.grant("bench", "bench", "reader")
    return ids.create_key("bench", "load-test").secret


def start(cmd: list[str], env: dict[str, str], health: str, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"{cmd} did not become healthy: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------------------------------------------------------- the client
async def load(url: str, key: str, kind: str, clients: int, duration: float, questions: list[str]) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            q = rng.choice(questions)
            if kind == "search":
                req = ("/v1/search", {"collection": "bench", "query": q, "k": 5})
            else:
                req = ("/v1/chat/completions", {"model": "bench", "messages": [{"role": "user", "content": q}]})
            t = time.perf_counter()
            try:
                r = await http.post(req[0], json=req[1])
                ok = r.status_code == 200 and (kind == "search" or r.json().get("sources") is not None)
                if not ok:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                    continue
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t)

    start_t = time.monotonic()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=httpx.Timeout(900.0)) as http:  # fmt: skip
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    wall = time.monotonic() - start_t
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0] if latencies else 0.0] * 99
    return {
        "kind": kind, "clients": clients, "seconds": round(wall, 1), "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1), "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1), "errors": sum(errors.values()), "error_kinds": errors,
    }  # fmt: skip


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    key = prepare(data)
    questions = [json.loads(line)["question"] for line in GOLD.read_text().splitlines() if line.strip()]
    env = {"RAG_DATA_DIR": str(data), "RAG_AUTH__MODE": "on", "RAG_STORE__USE_GPU": "never",
           "PYTHONPATH": str(ROOT), "RAG_LLM__MAX_TOKENS": str(args.max_tokens)}  # fmt: skip
    results: list[dict[str, Any]] = []
    procs: list[subprocess.Popen[bytes]] = []
    llm: Any = None
    try:
        if args.scenario in ("search", "chat", "all"):
            llm_port = free_port()
            procs.append(start([sys.executable, str(Path(__file__).resolve()), "--fake-llm", str(llm_port)], env,
                               f"http://127.0.0.1:{llm_port}/v1/models", work / "fake-llm.log"))  # fmt: skip
            llm_url = f"http://127.0.0.1:{llm_port}/v1"
        else:
            from rag.config import LLMSettings, load_settings
            from rag.local_llm import start_server

            llm = start_server(LLMSettings(local_port=free_port()), models_dir=load_settings().models_path,
                               log_path=work / "llama.log")  # fmt: skip
            llm_url = llm.url
        urls: dict[str, str] = {}
        for threads in (args.compare_threads.split(",") if args.compare_threads else [""]):
            port = free_port()
            extra = {"RAG_SERVER__RETRIEVAL_THREADS": threads} if threads else {}
            api = start([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
                        {**env, **extra, "RAG_LLM__BASE_URL": llm_url, "RAG_LLM__MODEL": "fake"
                         if "fake" in llm_url else ""},
                        f"http://127.0.0.1:{port}/healthz", work / f"serve{threads}.log")  # fmt: skip
            procs.append(api)
            urls[threads] = f"http://127.0.0.1:{port}"
            asyncio.run(load(urls[threads], key, "search", 2, 5, questions))  # warm-up: model, BM25, page cache
        plan: list[tuple[str, str, int, float]] = []
        for _ in range(args.rounds):
            for threads in urls:  # interleaved: the machine's load hits every variant alike
                if args.scenario in ("search", "all"):
                    plan.append((threads, "search", args.clients, args.duration))
                if args.scenario in ("chat", "all"):
                    plan.append((threads, "chat", args.clients, args.duration))
                if args.scenario == "llm-queue":
                    plan += [(threads, "chat", c, args.duration) for c in (1, 2, 4)]
        for threads, kind, clients, duration in plan:
            load_before = os.getloadavg()
            result = asyncio.run(load(urls[threads], key, kind, clients, duration, questions))
            result["retrieval_threads"] = threads or "default (2)"
            result["llm"] = "fake (instant)" if args.scenario != "llm-queue" else "embedded llama.cpp, Qwen2.5 0.5B"
            result["loadavg_1m_before"] = round(load_before[0], 2)
            result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        for p in procs:
            stop(p)
        if llm is not None:
            llm.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["all", "search", "chat", "llm-queue"], default="all")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=64, help="answer length for the real LLM")
    parser.add_argument("--compare-threads", default="", help="e.g. 2,40: one server per server.retrieval_threads")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the plan, variants interleaved")
    parser.add_argument("--work", default=str(ROOT / "test-artifacts" / "serve-load"))
    parser.add_argument("--fake-llm", type=int, help=argparse.SUPPRESS)  # internal: run the fake LLM on this port
    args = parser.parse_args()
    if args.fake_llm:
        import uvicorn

        uvicorn.run(fake_llm_app(), host="127.0.0.1", port=args.fake_llm, log_level="warning")
        return
    results = run(args)
    print("\n| load | clients | retrieval threads | LLM | requests/s | p50 ms | p95 ms | p99 ms | errors | "
          "load avg (1 min) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['kind']} | {r['clients']} | {r['retrieval_threads']} | {r['llm']} | {r['rps']} | {r['p50_ms']} | "
              f"{r['p95_ms']} | {r['p99_ms']} | {r['errors']} | {r['loadavg_1m_before']} → {r['loadavg_1m_after']} |")


if __name__ == "__main__":
    main()
