"""Saving bodies to disk: safe file names, and files that appear whole or not at all.

Layout of ``save_to=DIR``: one folder per host, one file per URL::

    DIR/<host>[_<port>]/<path>-<hash><ext>

``<host>`` is the host in ASCII (IDNA), lower case, with a non-default port
appended; ``<path>`` is the URL's path with every ``/`` turned into ``_``
and every character other than letters, digits, ``.``, ``_`` and ``-``
replaced by ``_``, cut to 80 characters (``index`` when empty); ``<hash>``
is 16 hex digits of a BLAKE2b hash of the whole URL (query included,
fragment not), so two different URLs never share a file however alike
their cleaned names are;
``<ext>`` is the last segment's extension when it is short and clean
(``.html``, ``.json``). Nothing in a URL can name a path outside ``DIR``:
the cleaned names contain no separator, never start with a dot, and a host
folder that is a symlink is refused.

A file is named from the URL asked for (after ``params``), not from where a
redirect led, so a caller can tell in advance where each URL will land.
A body goes to a temporary file (``.<name>.<random>.part``) in the target's
folder and is renamed into place once complete; a failed, cancelled or
oversized download removes it, and a file already at the target is left as
it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

from yarl import URL

__all__ = ["BodyFile", "SaveDir", "file_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_EXT = re.compile(r"\.[A-Za-z0-9]{1,8}\Z")
MAX_STEM = 80


def _clean(text: str) -> str:
    cleaned = _UNSAFE.sub("_", text)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned


def file_name(url: URL) -> tuple[str, str]:
    """The (host folder, file name) a URL is saved under; both are safe."""
    host = _clean((url.raw_host or "host").lower().strip("[]")) or "host"
    if url.explicit_port is not None and url.port != {"http": 80, "https": 443}.get(
        url.scheme
    ):
        host = f"{host}_{url.port}"
    path = url.path.strip("/")
    last = path.rsplit("/", 1)[-1]
    match = _EXT.search(last)
    ext = match.group(0).lower() if match else ""
    stem = path[: len(path) - len(ext)] if ext else path
    stem = _clean(stem.replace("/", "_"))[:MAX_STEM] or "index"
    # The fragment is never sent: /page#a and /page#b are one resource.
    whole = str(url.with_fragment(None))
    digest = hashlib.blake2b(whole.encode(), digest_size=8).hexdigest()
    return host, f"{stem}-{digest}{ext}"


class SaveDir:
    """``save_to=DIR``: the folder, created if needed, and a path per URL.

    Raises:
        ValueError: ``DIR`` cannot be created or is not a folder.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        root = Path(path)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"save_to={str(path)!r} cannot be created: {exc}") from exc
        if not root.is_dir():
            raise ValueError(f"save_to={str(path)!r} is not a folder")
        self.root = root.resolve()

    def path_for(self, url: URL) -> Path:
        """Where the body of ``url`` goes; creates its host folder.

        Raises:
            OSError: the host folder cannot be created, or is a symlink or
                not a folder.
        """
        host, name = file_name(url)
        folder = self.root / host
        if folder.is_symlink():
            raise OSError(f"{folder} is a symlink; not following it out of {self.root}")
        folder.mkdir(exist_ok=True)
        if not folder.is_dir():
            raise OSError(f"{folder} is not a folder")
        return folder / name


class BodyFile:
    """A body on its way to ``target``: a temporary file in the same folder,
    renamed into place by :meth:`commit`, removed by :meth:`discard`.

    Raises:
        OSError: the temporary file cannot be created.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        while True:  # O_EXCL: never another file; mode 0o666 less the umask
            temp = target.parent / f".{target.name[:40]}.{secrets.token_hex(6)}.part"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # pragma: no cover - 48 random bits
                continue
            break
        self.temp = temp
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        """Append a piece of the body."""
        self._file.write(chunk)

    def commit(self) -> Path:
        """The body is complete: move it into place and return its path."""
        self._file.close()
        os.replace(self.temp, self.target)
        return self.target

    def discard(self) -> None:
        """The body will not be complete: remove the temporary file."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()
