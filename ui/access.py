"""Sign-in for the Streamlit app, and what the signed-in user may see: every decision is ``rag.policy``'s.

Sign-in is on when ``RAG_AUTH__MODE=on`` (``rag chat`` sets it when it binds a non-loopback address) or, with
``auto``, when Streamlit serves on a non-loopback address; off, the one local user is ``Principal.local()``. Users,
passwords and grants come from ``rag users ...`` (the same identity database as the HTTP API).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rag.config import Settings
from rag.errors import RagError
from rag.identity import IdentityStore
from rag.policy import Principal, auth_required


def sign_in_required(settings: Settings) -> bool:
    host = ""
    try:
        host = str(st.get_option("server.address") or "")
    except Exception:  # an option Streamlit does not know in tests
        host = ""
    return auth_required(settings.auth.mode, host or "127.0.0.1")


@st.cache_resource(show_spinner=False)
def _identity(path: str) -> IdentityStore:
    return IdentityStore(Path(path))


def identity(settings: Settings) -> IdentityStore:
    return _identity(str(settings.identity_path))


def gate(settings: Settings) -> Principal:
    """The signed-in principal; otherwise draws the sign-in form and stops the script run."""
    if not sign_in_required(settings):
        return Principal.local()
    name = st.session_state.get("user")
    if name:
        try:
            return identity(settings).principal(name)  # re-read: role, groups and grants may have changed
        except RagError:
            sign_out()
    st.title(":material/lock: Sign in")
    with st.form("sign-in"):
        user = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            principal = identity(settings).authenticate(user.strip(), password)
        except RagError as e:
            st.error(str(e), icon=":material/error:")
        else:
            st.session_state.user = principal.name
            st.rerun()
    st.stop()
    raise AssertionError("unreachable")  # pragma: no cover - st.stop() ends the run


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]  # the chat history and every choice belong to the user who leaves

