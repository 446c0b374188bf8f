"""Streamlit chat over your documents: ``rag chat`` (or ``streamlit run ui/app.py``).

Display code only: settings come from the same ``Settings`` as the CLI (sidebar choices override them per session),
every call into the system goes through ``ui.services``, and ``RagError`` is shown as a message, never a traceback.
Models and the pipeline are cached across reruns and sessions with ``st.cache_resource``.

    $ rag chat --port 8501        # then open http://127.0.0.1:8501
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from rag.config import Settings, load_settings
from rag.errors import CollectionEmpty, CollectionNotFound, ConfigError, LLMError, RagError
from rag.policy import Principal, can, folder_allowed, parse_groups, readable, retrieval_filters
from rag.types import Answer, Message
from ui import access, render, services
from ui.jobs import IngestJob
from ui.uploads import save_uploads, upload_dir

EMPTY_INDEX = "No documents yet: upload some in **Documents**."


# ----------------------------------------------------------------------------------------------------- caching
# Keys are the JSON of the settings that matter; the objects themselves ride along unhashed (leading underscore).
@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder(key: str, _settings: Settings) -> Any:
    return services.make_embedder(_settings)


def embedder_for(settings: Settings) -> Any:
    return _embedder(settings.embedding.model_dump_json() + str(settings.cache_dir), settings)


@st.cache_resource(show_spinner=False, max_entries=4)
def _llm(key: str, _settings: Settings) -> Any:
    return services.make_llm(_settings)  # cheap: the embedded server starts on the first question


def _close(pipeline: Any) -> None:
    store = getattr(getattr(pipeline, "retriever", None), "store", None)
    if store is not None:
        store.close()


@st.cache_resource(show_spinner=False, on_release=_close, max_entries=8)  # one per settings combination
def _pipeline(key: str, _settings: Settings) -> Any:
    llm = _llm(_settings.llm.model_dump_json(), _settings)
    return services.make_pipeline(_settings, embedder=embedder_for(_settings), llm=llm)


def pipeline_for(settings: Settings) -> Any:
    return _pipeline(settings.model_dump_json(), settings)


# ----------------------------------------------------------------------------------------------------- sidebar
@st.cache_resource(show_spinner=False)
def _base_settings() -> Settings:
    return load_settings()  # read once: environment, .env, rag.toml; the sidebar overrides per session


def base_settings() -> Settings:
    try:
        return _base_settings()
    except ConfigError as e:  # a malformed rag.toml or .env, or an invalid RAG_* variable: say which, stop there
        st.error(str(e), icon=":material/error:")
        st.stop()
        raise  # unreachable: st.stop() ends the run


def sidebar(who: Principal) -> Settings:
    base = base_settings()
    with st.sidebar:
        st.title(":material/menu_book: Ask your documents")
        if st.button("New chat", icon=":material/add_comment:", width="stretch"):
            st.session_state.messages = []
        st.subheader("Settings")
        known = readable(who, services.collections(base))  # only the collections this user may read
        creates = can(who, "write", "*")  # admins and editors of every collection may start a new one
        if creates and base.collection not in known:
            known = [base.collection, *known]
        if not known:
            st.info("No collection is shared with you yet: ask an admin for access.", icon=":material/info:")
            st.stop()
        default = base.collection if base.collection in known else known[0]
        collection = st.selectbox(
            "Collection",
            known,
            index=known.index(default),
            accept_new_options=creates,
            help="Type a new name to start a new collection." if creates else "The collections shared with you.",
        )
        k = st.slider("Sources per answer (top-k)", 1, 20, base.retrieval.k)
        modes = list(services.RETRIEVAL_MODES)
        if services.ui_mode(base) not in modes:
            modes.append(services.ui_mode(base))
        mode = st.radio(
            "Retrieval",
            modes,
            index=modes.index(services.ui_mode(base)),
            horizontal=True,
            help="dense: embeddings only · hybrid: BM25 + embeddings, fused · reranked: hybrid, then a cross-encoder",
        )
        base_url, model = base.llm.base_url or "", base.llm.model or ""
        # Only an admin may point the app at another LLM endpoint: it would receive the documents' text.
        if who.is_admin:
            with st.expander("Language model", expanded=False):
                base_url = st.text_input(
                    "Endpoint",
                    base.llm.base_url or "",
                    placeholder=f"embedded local model ({base.llm.local_host}:{base.llm.local_port})",
                    help="Any OpenAI-compatible /v1 endpoint (vLLM, llama.cpp). Empty: the packaged local model.",
                )
                model = st.text_input("Model", base.llm.model or "", placeholder="the server's default")
        if who.name != Principal.local().name:
            st.caption(f"Signed in as **{render.md_escape(who.name)}** ({who.role})")
            if st.button("Sign out", icon=":material/logout:"):
                access.sign_out()
                st.rerun()
    try:
        return services.with_ui_choices(
            base, collection=collection or base.collection, k=k, mode=mode, base_url=base_url, model=model
        )
    except ConfigError as e:
        st.sidebar.error(str(e))
        return base


# ----------------------------------------------------------------------------------------------------- chat
def show_answer(answer: Answer) -> None:
    """The answer text with citation badges (sentences no source supports underlined and marked ⚠, with a
    tooltip), one popover per citation with its supporting span, and the sources panel."""
    if answer.sentences and answer.citations:
        st.markdown(render.attributed_markdown(answer.sentences), unsafe_allow_html=True)
    else:
        st.markdown(render.answer_markdown(answer.text))
    unsupported = answer.unsupported
    if unsupported and not answer.citations:  # declined: nothing the model said was in the sources
        with st.expander("What the model answered (not supported by the sources)", icon=":material/warning:"):
            st.markdown(render.attributed_markdown(answer.sentences), unsafe_allow_html=True)
    elif unsupported:
        st.caption(
            f"⚠ {len(unsupported)} sentence{'s' * (len(unsupported) != 1)} not supported by the sources",
            help=render.UNSUPPORTED_TIP,
        )
    if answer.citations:
        with st.container(horizontal=True, gap="small"):
            for c in answer.citations:
                with st.popover(f"[{c.n}] {render.md_escape(render.source_label(c.hit.chunk))}", type="tertiary"):
                    show_passage(c.n, c.hit.chunk, render.claims_for(answer.text, c.n), c.spans)
    if answer.retrieved:
        cited = {c.n for c in answer.citations}
        spans = {c.n: c.spans for c in answer.citations}
        with st.expander(f"Sources ({len(answer.retrieved)})", icon=":material/menu_book:"):
            for n, hit in enumerate(answer.retrieved, start=1):
                mark = ":green-badge[cited]" if n in cited else ":gray-badge[not cited]"
                label = render.md_escape(render.source_label(hit.chunk))
                st.markdown(f"**\\[{n}\\] {label}** · score {hit.score:.2f} · {mark}")
                st.caption(render.md_escape(hit.chunk.source))
                claim = render.claims_for(answer.text, n) if n in cited else ""
                st.markdown(
                    _passage_box(render.passage_html(hit.chunk.text, claim, spans=spans.get(n, ()))),
                    unsafe_allow_html=True,
                )


def show_passage(n: int, chunk: Any, claim: str, spans: Any = ()) -> None:
    st.markdown(f"**\\[{n}\\] {render.md_escape(render.source_label(chunk))}**")
    st.caption(render.md_escape(chunk.source))
    st.markdown(_passage_box(render.passage_html(chunk.text, claim, spans=spans)), unsafe_allow_html=True)


_CSS = """<style>
.rag-passage mark { background: #fde68a; color: inherit; border-radius: 2px; padding: 0 0.1em; }
.rag-unsupported { text-decoration: underline wavy #d97706; text-underline-offset: 3px; cursor: help; }
</style>"""


def _passage_box(inner_html: str) -> str:
    # The height cap keeps long chunks from swamping the chat.
    return (
        '<div class="rag-passage" style="max-height: 22rem; overflow-y: auto; '
        "font-size: 0.9rem; line-height: 1.45; padding: 0.6rem 0.8rem; border-left: 3px solid #4f8bf9; "
        f'background: rgba(79,139,249,0.06); border-radius: 0.3rem;">{inner_html}</div>'
    )


def show_message(msg: dict[str, Any]) -> None:
    with st.chat_message(msg["role"]):
        if msg.get("error"):
            st.error(msg["error"], icon=":material/error:")
        elif msg.get("info"):
            st.info(msg["info"], icon=":material/info:")
        elif msg.get("answer") is not None:
            show_answer(msg["answer"])
        else:
            st.markdown(render.md_escape(msg["content"]))  # the user's words, shown as typed


def history() -> list[Message]:
    """Earlier turns for follow-up questions (failed turns are not part of the conversation)."""
    turns = []
    for m in st.session_state.messages:
        if m.get("error") or m.get("info"):
            continue
        turns.append(Message(role=m["role"], content=m["content"]))
    # drop a trailing question whose answer failed, so the roles keep alternating
    while turns and turns[-1].role == "user":
        turns.pop()
    return turns


def ask(question: str, settings: Settings, past: list[Message], has_documents: bool,
        who: Principal | None = None) -> dict[str, Any]:  # fmt: skip
    """Stream the answer into the page; return the message to keep in the history."""
    with st.chat_message("assistant"):
        if not has_documents:
            st.info(EMPTY_INDEX, icon=":material/info:")
            return {"role": "assistant", "content": "", "info": EMPTY_INDEX}
        placeholder = st.empty()
        placeholder.markdown("_Searching your documents…_")
        text, answer = "", None
        try:
            pipeline = pipeline_for(settings)
            # the access filter runs inside retrieval: what this user may not see never reaches the prompt
            filters = retrieval_filters(who or Principal.local())
            for part in pipeline.stream(question, history=past, k=settings.retrieval.k, filters=filters):
                if isinstance(part, Answer):
                    answer = part
                else:
                    text += part
                    placeholder.markdown(render.answer_markdown(text) + " ▌")
        except RagError as e:
            placeholder.empty()
            if isinstance(e, LLMError):
                _llm.clear()  # the next question looks for (or restarts) the server again
            message = _explain(e, settings)
            st.error(message, icon=":material/error:")
            return {"role": "assistant", "content": "", "error": message}
        if answer is None:  # a pipeline that ended without its final Answer: show what came
            answer = Answer(question=question, text=text, citations=(), retrieved=(), timings={})
        with placeholder.container():
            show_answer(answer)
        return {"role": "assistant", "content": answer.text, "answer": answer}


def _explain(e: RagError, settings: Settings) -> str:
    if isinstance(e, CollectionEmpty | CollectionNotFound):
        return EMPTY_INDEX
    return str(e)


def chat_tab(settings: Settings, docs: list[tuple[str, int]] | None, who: Principal) -> None:
    messages = st.container()
    with messages:
        if not st.session_state.messages:
            if docs:
                st.caption(
                    f"Ask a question about the {len(docs)} document{'s' * (len(docs) != 1)} in "
                    f"**{settings.collection}**. Answers cite their sources as [1], [2], …"
                )
            elif docs is not None:
                st.info(EMPTY_INDEX, icon=":material/info:")
                if services.sample_documents() and can(who, "write", settings.collection) and st.button(
                    "Try it on the sample documents", icon=":material/science:"
                ):
                    run_ingest(services.sample_documents(), settings)
        for msg in st.session_state.messages:
            show_message(msg)
    job = st.session_state.get("ingest_job")
    if job is not None and job.running:
        st.caption("Indexing is running (progress and Cancel in **Documents**); answers use what is indexed so far.")
    question = st.chat_input("Ask a question about your documents")
    if question:
        with messages:
            past = history()
            st.session_state.messages.append({"role": "user", "content": question})
            show_message(st.session_state.messages[-1])
            reply = ask(question, settings, past, has_documents=bool(docs) or docs is None, who=who)
            st.session_state.messages.append(reply)


# ----------------------------------------------------------------------------------------------------- documents
def documents_tab(settings: Settings, docs: list[tuple[str, int]] | None, who: Principal) -> None:
    if can(who, "write", settings.collection):
        add_documents(settings, who)
    show_documents(settings, docs, who)


def add_documents(settings: Settings, who: Principal) -> None:
    st.subheader("Add documents")
    local = who.name == Principal.local().name
    suffixes = sorted({p.rsplit(".", 1)[-1] for p in settings.ingest.include if "." in p})
    with st.form("upload", clear_on_submit=True, border=False):
        files = st.file_uploader(
            "Drop files here (several at once)",
            type=suffixes,
            accept_multiple_files=True,
            max_upload_size=settings.ui.max_upload_mb,
            help=f"Up to {settings.ui.max_upload_mb} MB per file; saved under {upload_dir(settings)}",
        )
        groups_text = st.text_input(
            "Access groups (optional)", placeholder="e.g. hr, finance",
            help="Only members of these groups will see the documents; empty: everyone who may read the collection.",
        )
        upload = st.form_submit_button("Upload and index", type="primary", icon=":material/upload:")
    if upload:
        st.session_state.upload_rejected = []  # a new upload replaces the last one's report
        try:
            groups = parse_groups(groups_text)
        except ValueError as e:
            st.error(str(e), icon=":material/error:")
            return
        if not files:
            st.warning("Choose some files first.")
        else:
            try:
                result = save_uploads(files, settings, user=None if local else who.name)
            except RagError as e:
                st.error(f"Upload failed: {e}", icon=":material/error:")
            else:
                # kept in the session: indexing the accepted files reruns the page, which must not drop these
                st.session_state.upload_rejected = list(result.rejected)
                if result.saved:
                    run_ingest(list(result.saved), settings, groups)

    if not who.is_admin:
        return  # indexing folders of the server is for admins only
    with st.form("folder", border=False):
        folder = st.text_input("…or index a folder on this machine", placeholder="/path/to/documents")
        index_folder = st.form_submit_button("Index folder", icon=":material/folder_open:")
    if index_folder:
        path = Path(folder.strip()).expanduser()
        if not folder.strip():
            st.warning("Type the path of a folder first.")
        else:
            roots = settings.ingest.allowed_roots
            try:
                # signed-in admins index only below the allowed roots; the local operator too once roots are set
                if roots or not local:
                    path = folder_allowed(path, roots)
            except RagError as e:
                st.error(str(e), icon=":material/error:")
                return
            if not path.exists():
                st.error(f"No such file or folder: {path}", icon=":material/error:")
            else:
                run_ingest([path], settings)


def show_documents(settings: Settings, docs: list[tuple[str, int]] | None, who: Principal) -> None:
    for name, why in st.session_state.get("upload_rejected", ()):
        st.error(f"Upload failed for {name}: {why}", icon=":material/error:")
    job_panel()

    st.subheader(f"Indexed documents in {settings.collection}")
    if docs is None:
        return
    if not docs:
        st.info("The collection is empty.", icon=":material/info:")
        return
    st.dataframe(
        [{"document": Path(s).name, "chunks": n, "path": s} for s, n in docs],
        hide_index=True,
        width="stretch",
        column_config={"chunks": st.column_config.NumberColumn(width="small")},
    )
    if not can(who, "write", settings.collection):
        return
    sources = [s for s, _ in docs]
    with st.form("delete", border=False):
        victim = st.selectbox("Remove a document from the index", sources, format_func=lambda s: Path(s).name)
        delete = st.form_submit_button("Delete", icon=":material/delete:")
    if delete and victim:
        try:
            _pipeline.clear()  # let go of the open index before changing it
            removed = services.delete_document(victim, settings, embedder=embedder_for(settings))
        except RagError as e:
            st.error(str(e), icon=":material/error:")
            return
        _pipeline.clear()  # reopen the index on the next question
        uploaded = upload_dir(settings).resolve()
        if uploaded in Path(victim).resolve().parents:
            Path(victim).unlink(missing_ok=True)  # else the next folder index of uploads would bring it back
        st.session_state.flash = f"Deleted {Path(victim).name} ({removed} chunks)."
        st.rerun()


def run_ingest(paths: list[Path], settings: Settings, groups: tuple[str, ...] = ()) -> None:
    """Start indexing ``paths`` (labelled with the access ``groups``) as a background job; the Documents tab shows
    its progress and a Cancel button."""
    job = st.session_state.get("ingest_job")
    if job is not None and job.running:
        st.warning("An indexing job is running: wait for it, or cancel it in **Documents**.",
                   icon=":material/hourglass:")
        return
    _pipeline.clear()  # the index is about to change: let go of the open one
    embedder = embedder_for(settings)

    def work(progress: Any, cancel: Any) -> Any:
        extra = {"groups": groups} if groups else {}
        return services.ingest(paths, settings, progress=progress, embedder=embedder, cancel=cancel, **extra)

    st.session_state.ingest_job = IngestJob.start(work)
    st.session_state.last_summary = None
    st.session_state.flash = None
    st.rerun()  # draw the job's progress


def job_panel() -> None:
    """The running indexing job (progress, Cancel), or what the last one gave."""
    if st.session_state.get("ingest_job") is not None:
        _job_fragment()
    error = st.session_state.get("ingest_error")
    if error:
        st.error(error, icon=":material/error:")
    if st.session_state.get("last_summary"):
        show_summary(st.session_state.last_summary)


@st.fragment(run_every=0.5)
def _job_fragment() -> None:
    job: IngestJob | None = st.session_state.get("ingest_job")
    if job is None:
        return
    if job.running:
        p = job.progress
        fraction = min(p.files_done / p.files_total, 1.0) if p.files_total else 0.0
        verb = "Cancelling (finishing the batch in progress)" if job.cancel.is_set() else "Indexing"
        name = Path(p.current).name if p.current else "…"
        st.progress(fraction, text=f"{verb}: {p.files_done}/{p.files_total} files · {p.chunks_added} chunks · {name}")
        if st.button("Cancel", key="cancel_ingest", icon=":material/cancel:", disabled=job.cancel.is_set(),
                     help="Stop after the batch in progress: what is indexed stays, the rest is left as it was"):
            job.cancel_now()
            st.rerun(scope="fragment")
        return
    st.session_state.ingest_job = None
    if job.error is not None:
        st.session_state.ingest_error = f"Indexing failed: {job.error}"
    else:
        st.session_state.ingest_error = None
        st.session_state.last_summary = job.summary
    _pipeline.clear()  # reopen the index on the next question
    st.rerun()  # the whole page: the document list and the chat's empty-index notice


def show_summary(summary: Any) -> None:
    """The same numbers as ``rag ingest`` prints, and every file that was not ingested with the reason why."""
    problems = [*summary.failed, *getattr(summary, "skipped", ())]
    plural = "s" * (summary.files_seen != 1)
    total = getattr(summary, "chunks_total", None)
    if getattr(summary, "cancelled", False):
        st.warning("Cancelled: the files indexed before the cancel are kept, the others were left as they were. "
                   "Index the same files or folder again to continue.", icon=":material/cancel:")
    (st.warning if problems else st.success)(
        f"Indexed {summary.files_seen} file{plural} in {summary.seconds:.1f} s: {summary.new} new, "
        f"{summary.changed} changed, {summary.unchanged} unchanged, {len(summary.failed)} failed"
        + (f", {len(summary.skipped)} skipped" if getattr(summary, "skipped", ()) else "")
        + f" · {summary.chunks_added} chunks added, {summary.chunks_removed} removed"
        + (f", {summary.pruned_files} files pruned" if summary.pruned_files else "")
        + (f" · {summary.ocr_pages} page{'s' * (summary.ocr_pages != 1)} read by OCR"
           if getattr(summary, "ocr_pages", 0) else "")
        + (f" · {total} chunks in the collection." if total is not None else "."),
        icon=":material/warning:" if problems else ":material/check_circle:",
    )
    cleaned = getattr(summary, "cleaned_up", ())
    if cleaned:
        st.info(f"Cleaned up {len(cleaned)} file(s) an interrupted run had left half-indexed: "
                + ", ".join(Path(f.path).name for f in cleaned), icon=":material/healing:")  # fmt: skip
    if problems:
        st.markdown("**Not ingested**")
        # a static table: reasons can be long and should wrap, not hide in a cell of a scrolling grid
        st.table([{"file": Path(f.path).name, "reason": f.reason} for f in problems], hide_index=True)


# ----------------------------------------------------------------------------------------------------- page
def load_documents(settings: Settings, who: Principal) -> list[tuple[str, int]] | None:
    """The collection's documents this user may see, or None (with a message) when the index cannot be read."""
    filters = retrieval_filters(who)
    try:
        if filters is None:
            return services.list_documents(settings, embedder=embedder_for(settings))
        return services.list_documents(settings, embedder=embedder_for(settings), filters=filters)
    except RagError as e:
        st.error(str(e), icon=":material/error:")
        return None


def main() -> None:
    st.set_page_config(page_title="Ask your documents", page_icon=":material/menu_book:", layout="centered")
    st.session_state.setdefault("messages", [])
    st.html(_CSS)
    who = access.gate(base_settings())
    settings = sidebar(who)
    docs = load_documents(settings, who)
    if st.session_state.get("flash"):
        st.toast(st.session_state.flash, icon=":material/check_circle:")
        st.session_state.flash = None
    chat, documents = st.tabs([":material/chat: Chat", ":material/description: Documents"])
    with chat:
        chat_tab(settings, docs, who)
    with documents:
        documents_tab(settings, docs, who)


main()
