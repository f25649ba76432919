"""Repository secrets at rest: webhook secrets and clone credentials encrypted with Fernet
(AES-128-CBC + HMAC-SHA256) under a key kept in the server's HOME (`build-secrets.key`,
mode 0600, made at first use). Several servers sharing one database need the same key file
in each HOME; a key that does not open a stored value is a clear 502, never a silent empty.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from dockyard.errors import BackendError

KEY_FILE = "build-secrets.key"


def _key(home: Path) -> bytes:
    """The key, made once: written aside and linked into place, so a concurrent first use
    never reads a half-written file and exactly one key wins."""
    path = home / KEY_FILE
    if not path.exists():
        tmp = home / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


class SecretBox:
    def __init__(self, home: Path) -> None:
        self._fernet = Fernet(_key(home))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise BackendError(f"a repository secret does not open with HOME/{KEY_FILE} "
                               "(another server's key?)") from exc
