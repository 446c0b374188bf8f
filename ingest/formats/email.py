"""E-mail (``.eml``, RFC 822/MIME, the standard library's parser): the message, then its attachments.

The message gives one ``Document``: subject, from, to, cc and date as lines, then the body (the plain-text part,
else the HTML part's visible text) and the names of its attachments; its section is the subject. Each attachment
of a type we read (PDF, DOCX, PPTX, XLSX, CSV, text, HTML, images, attached e-mails) is loaded by its own loader
as its own ``Document``s, with the e-mail as their source and "subject › attachment name" as the start of their
section, so a citation leads to the message and says which attachment. Inline images (logos, signatures) are not
read. An attachment that cannot be read is logged and left out; the message itself is still indexed.

Example::

    >>> [(d.file_type, d.section) for d in load_eml(Path("offer.eml"), "h")]  # doctest: +SKIP
    [('eml', 'Offer for the new roof'), ('pdf', 'Offer for the new roof › quote.pdf')]
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.formats.common import LoadOptions, one_line, vanished
from rag.errors import IngestError
from rag.types import SECTION_SEP, Document

_log = logging.getLogger(__name__)

MAX_DEPTH = 3  # e-mails attached to e-mails attached to e-mails ...
_HEADERS = ("subject", "from", "to", "cc", "date")


def _body_text(msg: Any) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset or a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(content, "lxml")
        for tag in soup(("script", "style", "head")):
            tag.decompose()
        content = soup.get_text("\n")
    lines = [ln.rstrip() for ln in content.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip()


def _message_documents(
    raw: bytes, source: str, file_hash: str, options: LoadOptions, parent: str | None, depth: int
) -> Iterator[Document]:
    from email import policy
    from email.parser import BytesParser

    msg = BytesParser(policy=policy.default).parsebytes(raw)
    if not any(msg.get(h) for h in ("from", "to", "subject", "date", "message-id")):
        raise IngestError("not an e-mail message: no From, To, Subject or Date header")
    subject = one_line(str(msg.get("subject", "") or "")) or "(no subject)"
    section = SECTION_SEP.join(p for p in (parent, subject) if p)
    lines = []
    for name in _HEADERS:
        try:
            value = msg.get(name)
        except Exception:  # a malformed header must not cost the message
            value = None
        if value:
            lines.append(f"{name.capitalize()}: {one_line(str(value))}")
    attachments = []
    for part in msg.iter_attachments():
        inline_image = part.get_content_maintype() == "image" and part.get_content_disposition() == "inline"
        if not inline_image:
            attachments.append(part)
    names = [part.get_filename() or f"attachment {i + 1} ({part.get_content_type()})"
             for i, part in enumerate(attachments)]
    body = _body_text(msg)
    text = "\n".join(lines) + ("\n\n" + body if body else "")
    if names:
        text += "\n\nAttachments: " + ", ".join(one_line(n) for n in names)
    yield Document(source=source, text=text.replace("\x00", ""), file_type="eml", file_hash=file_hash,
                   section=section)
    for part, name in zip(attachments, names, strict=True):
        yield from _attachment(part, one_line(name), source, file_hash, options, section, depth)


def _attachment(
    part: Any, name: str, source: str, file_hash: str, options: LoadOptions, section: str, depth: int
) -> Iterator[Document]:
    import mimetypes

    from ingest.load import LOADERS

    where = SECTION_SEP.join((section, name))
    if part.get_content_type() == "message/rfc822":
        if depth >= MAX_DEPTH:
            return
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        try:
            data = inner.as_bytes() if hasattr(inner, "as_bytes") else bytes(inner)
            yield from _message_documents(data, source, file_hash, options, where, depth + 1)
        except IngestError as e:
            _log.warning("%s: attached e-mail %r not read: %s", source, name, e)
        return
    suffix = Path(name).suffix.lower() or (mimetypes.guess_extension(part.get_content_type()) or "")
    loader = LOADERS.get(suffix)
    data = part.get_payload(decode=True)
    if loader is None or not data:
        return
    if suffix == ".eml":  # an e-mail attached as a file: one level deeper, never an unbounded recursion
        if depth < MAX_DEPTH:
            try:
                yield from _message_documents(data, source, file_hash, options, where, depth + 1)
            except IngestError as e:
                _log.warning("%s: attached e-mail %r not read: %s", source, name, e)
        return
    with tempfile.TemporaryDirectory(prefix="rag-eml-") as tmp:
        path = Path(tmp) / f"attachment{suffix}"  # never the sender's file name: it is not a safe path
        path.write_bytes(data)
        try:
            for doc in loader(path, file_hash, options):
                inner_section = SECTION_SEP.join(p for p in (where, doc.section) if p)
                yield dataclasses.replace(doc, source=source, section=inner_section)
        except IngestError as e:
            _log.warning("%s: attachment %r not read: %s", source, name, e)


def load_eml(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """The message and its attachments as ``Document``s (see the module docstring)."""
    options = options or LoadOptions()
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise vanished() from e
    if not raw.strip():
        raise IngestError("empty file")
    if b"\x00" in raw[:4096]:
        raise IngestError("binary file, not an e-mail (it contains NUL bytes): check the file type")
    yield from _message_documents(raw, str(path), file_hash, options, None, 0)
