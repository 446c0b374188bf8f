# The app image: the `rag` command (chat UI, ingestion, search, eval) on CPU PyTorch. The LLM runs in vLLM's own
# image and the vectors in Qdrant's (see docker-compose.yml); embeddings run here on CPU with the packaged MiniLM, or
# on the GPU through vLLM's /v1/embeddings (RAG_EMBEDDING__BACKEND=openai).
#
#   docker build -t rag-private-docs .
#   docker run --rm -p 127.0.0.1:8501:8501 -e RAG_LLM__BASE_URL=http://gpu-box:8000/v1 rag-private-docs
FROM python:3.11-slim

# The CPU build of torch: a bare `torch` requirement would pull several GB of CUDA libraries this image never uses.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=qdrant,ui,server,rerank

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TOKENIZERS_PARALLELISM=false \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    RAG_DATA_DIR=/data

RUN pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"

WORKDIR /app
# Dependencies first, in their own layer: editing the code does not reinstall them. The stub packages let pip
# resolve the project's requirements before its code is copied in.
COPY pyproject.toml README.md ./
COPY .ci/constraints.txt /tmp/constraints.txt
RUN mkdir -p rag ingest evals ui \
    && touch rag/__init__.py ingest/__init__.py evals/__init__.py ui/__init__.py \
    && pip install -c /tmp/constraints.txt ".[${EXTRAS}]" \
    && pip uninstall -y rag-private-docs \
    && rm -rf rag ingest evals ui server build *.egg-info

COPY rag ./rag
COPY ingest ./ingest
COPY evals ./evals
COPY ui ./ui
COPY server ./server
RUN pip install --no-deps . && rm -rf build *.egg-info \
    && rag --help > /dev/null

# Never run as root: the app reads user documents and serves them over HTTP.
# /data and the model cache exist before their volumes mount, so that the volumes start owned by this user.
RUN useradd --create-home --uid 10001 rag \
    && mkdir -p /data /home/rag/.cache/huggingface \
    && chown -R rag:rag /data /home/rag/.cache
USER rag
VOLUME ["/data"]
EXPOSE 8501 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

ENTRYPOINT ["rag"]
CMD ["chat", "--host", "0.0.0.0", "--port", "8501"]
