"""Provider API keys encrypted at rest, with Fernet keys the user supplies.

``CHATLEDGER_SECRET_KEY`` holds one Fernet key, or several separated by
commas: the first encrypts, every one of them decrypts. That is how a key is
rotated: put a new key first, keep the old one after it, run
:func:`reencrypt_api_keys`, then drop the old key (``docs/secrets.md``).

A stored API key is ``fernet:v1:`` followed by the Fernet token. A value
without that prefix is plain text, as MoFA (or chatledger before encryption)
wrote it, and reads back as it is. With no key set, chatledger encrypts with a
key of its own, made on first use and kept in a file only its owner may read
(``CHATLEDGER_SECRET_KEY_FILE``, by default ``~/.config/chatledger/secret.key``):
an API key is never written in plain text, and a provider saved without any
set-up still reads back. A service that runs on several machines sets
``CHATLEDGER_SECRET_KEY`` instead. An empty key has nothing to hide and is
stored as it is. Every error names ``CHATLEDGER_SECRET_KEY`` and the
provider, never a key or a token.

``cryptography`` is imported only when a key is used, so reading plain rows
and empty keys never loads it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatledger.errors import SerializationError

if TYPE_CHECKING:
    from chatledger.stores.base import PersistenceStore

__all__ = [
    "ENCRYPTED_PREFIX",
    "SECRET_KEY_FILE_VARIABLE",
    "SECRET_KEY_VARIABLE",
    "SecretBox",
    "configured_box",
    "generate_key",
    "is_encrypted",
    "key_file",
    "open_api_key",
    "reencrypt_api_keys",
    "seal_api_key",
]

logger = logging.getLogger(__name__)

SECRET_KEY_VARIABLE = "CHATLEDGER_SECRET_KEY"  # noqa: S105  (a variable's name, not a key)
"""The environment variable holding the Fernet keys, newest first, separated by commas."""

SECRET_KEY_FILE_VARIABLE = "CHATLEDGER_SECRET_KEY_FILE"  # noqa: S105  (a variable's name)
"""The environment variable naming the file of chatledger's own key, when no key is set."""

ENCRYPTED_PREFIX = "fernet:v1:"
"""What a stored API key starts with when it is encrypted; the Fernet token follows."""

_INSTALL_HINT = "encrypting API keys needs the cryptography package: pip install cryptography"
_MAKE_ONE = "make one with chatledger.stores.secret_box.generate_key(); see docs/secrets.md"
_HOW_TO_SET = f"set {SECRET_KEY_VARIABLE} to a Fernet key ({_MAKE_ONE})"


def _fernet_module() -> Any:
    try:
        from cryptography import fernet
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT, name=exc.name) from exc
    return fernet


def generate_key() -> str:
    """A new random Fernet key, as the text ``CHATLEDGER_SECRET_KEY`` takes."""
    key: bytes = _fernet_module().Fernet.generate_key()
    return key.decode("ascii")


def is_encrypted(stored: object) -> bool:
    """Whether a stored API key is encrypted (starts with ``fernet:v1:``) rather than plain."""
    return isinstance(stored, str) and stored.startswith(ENCRYPTED_PREFIX)


def _ordinal(index: int, count: int) -> str:
    return "the key" if count == 1 else f"key {index} of {count}"


class SecretBox:
    """Fernet keys, newest first: the first encrypts, any of them decrypts.

    Neither its repr nor any error it raises shows a key, a plain API key or
    a token.
    """

    __slots__ = ("_current", "_every", "key_count")

    def __init__(self, keys: str | bytes | Sequence[str | bytes]) -> None:
        """Use ``keys``: one key, a comma-separated text of them, or a sequence; newest first.

        Raises ValueError (naming the key's position, never the key) when one
        is not a Fernet key, and ImportError when ``cryptography`` is missing.
        """
        if isinstance(keys, bytes):
            keys = keys.decode("ascii", errors="replace")
        pieces = keys.split(",") if isinstance(keys, str) else list(keys)
        texts = [p.decode("ascii", errors="replace") if isinstance(p, bytes) else p for p in pieces]
        found = [text.strip() for text in texts if text.strip()]
        if not found:
            raise ValueError(f"no key given; {_MAKE_ONE}")
        fernet = _fernet_module()
        fernets = []
        for index, key in enumerate(found, start=1):
            try:
                fernets.append(fernet.Fernet(key))
            except (TypeError, ValueError):
                # from None: the cause is about the key's text, which must stay unseen
                raise ValueError(
                    f"{_ordinal(index, len(found))} is not a Fernet key "
                    f"(32 url-safe base64-encoded bytes); {_MAKE_ONE}"
                ) from None
        self._current = fernets[0]
        self._every = fernet.MultiFernet(fernets)
        self.key_count = len(fernets)

    def __repr__(self) -> str:
        """How many keys the box holds, never the keys."""
        return f"<SecretBox {self.key_count} key{'s' if self.key_count != 1 else ''}>"

    def encrypt(self, plain: str) -> str:
        """``plain`` encrypted with the first key, as stored: ``fernet:v1:`` + token."""
        token: bytes = self._current.encrypt(plain.encode("utf-8"))
        return ENCRYPTED_PREFIX + token.decode("ascii")

    def decrypt(self, stored: str) -> str | None:
        """The plain text of an encrypted value, or None when none of the keys opens it."""
        return self._open(self._every, stored)

    def is_current(self, stored: str) -> bool:
        """Whether ``stored`` is encrypted with the first key (a rotation leaves it as it is)."""
        return is_encrypted(stored) and self._open(self._current, stored) is not None

    @staticmethod
    def _open(fernet: Any, stored: str) -> str | None:
        token = stored.removeprefix(ENCRYPTED_PREFIX).encode("ascii", errors="replace")
        try:
            plain: bytes = fernet.decrypt(token)
        except _fernet_module().InvalidToken:
            return None
        return plain.decode("utf-8")


@functools.lru_cache(maxsize=4)
def _box_of(keys: str) -> SecretBox:
    return SecretBox(keys)


def key_file() -> Path:
    """Where chatledger keeps its own key: ``CHATLEDGER_SECRET_KEY_FILE``, else the config dir."""
    named = os.environ.get(SECRET_KEY_FILE_VARIABLE, "").strip()
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(config) if config else Path.home() / ".config") / "chatledger" / "secret.key"


_making = threading.Lock()  # one key made per process, however many stores save at once


def configured_box(*, create: bool = False) -> SecretBox | None:
    """The box of ``CHATLEDGER_SECRET_KEY``, else of chatledger's own key file, else None.

    Read at each use, so a changed variable takes effect without reopening a
    store; the box of each value is built once. With ``create``, a missing key
    file is made (a new key, readable by its owner alone), so that an API key
    is encrypted even before anyone set a key. A key that is not a Fernet key,
    or a key file that cannot be read or made, raises SerializationError.
    """
    keys = os.environ.get(SECRET_KEY_VARIABLE, "").strip()
    source = SECRET_KEY_VARIABLE
    if not keys:
        path = key_file()
        source = f"the key file {path}"
        keys = _read_key_file(path, create=create)
        if not keys:
            return None
    try:
        return _box_of(keys)
    except ValueError as exc:
        raise SerializationError(f"{source}: {exc}") from None


def _read_key_file(path: Path, *, create: bool) -> str:
    """The key file's text; a new key in a new file when ``create`` and there is none."""
    try:
        return path.read_text("ascii").strip()
    except FileNotFoundError:
        if not create:
            return ""
    except (OSError, UnicodeError) as exc:
        raise SerializationError(
            f"cannot read the key file {path} ({type(exc).__name__}); "
            f"fix its permissions, or {_HOW_TO_SET}"
        ) from None
    with _making:
        key = generate_key()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # O_EXCL: another process making one at the same moment wins, and its key is read.
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text("ascii").strip()
        except OSError as exc:
            raise SerializationError(
                f"cannot make the key file {path} ({type(exc).__name__}); {_HOW_TO_SET}"
            ) from None
        with os.fdopen(handle, "w", encoding="ascii") as file:
            file.write(key + "\n")
            file.flush()
            os.fsync(file.fileno())
    logger.warning(
        "chatledger made a key to encrypt provider API keys with, at %s: back it up, or set "
        "%s on every machine that reads them (docs/secrets.md)",
        path,
        SECRET_KEY_VARIABLE,
    )
    return key


def _provider(name: object, provider_id: object) -> str:
    return f"provider {name!r} ({provider_id})"


def seal_api_key(plain: str, box: SecretBox | None) -> str:
    """What to store for the API key ``plain``: encrypted, or as it is when it is empty.

    Without a box of the store's own, ``CHATLEDGER_SECRET_KEY``'s or chatledger's
    own key file's, which is made if need be.
    """
    if not plain:
        return plain
    box = box if box is not None else configured_box(create=True)
    assert box is not None  # made when missing
    return box.encrypt(plain)


def open_api_key(stored: Any, box: SecretBox | None, *, name: object, provider_id: object) -> Any:
    """The plain API key of a stored value; a plain (MoFA) value comes back as it is."""
    if not is_encrypted(stored):
        return stored
    if box is None:
        raise SerializationError(
            f"the API key of {_provider(name, provider_id)} is encrypted, and neither "
            f"{SECRET_KEY_VARIABLE} is set nor the key file {key_file()} found; "
            "set the variable to the key it was encrypted with"
        )
    plain = box.decrypt(stored)
    if plain is None:
        raise SerializationError(
            f"the API key of {_provider(name, provider_id)} was encrypted with a key "
            f"{SECRET_KEY_VARIABLE} does not hold; add that key to it, after the current one "
            "(keys are comma-separated, newest first)"
        )
    return plain


async def reencrypt_api_keys(
    store: PersistenceStore, box: SecretBox | None = None, *, encrypt_plain: bool = True
) -> int:
    """Encrypt every stored provider API key with the box's first key; how many were rewritten.

    ``box`` defaults to ``CHATLEDGER_SECRET_KEY``'s. Keys already encrypted
    with the first key are left alone, so running it twice rewrites nothing.
    ``encrypt_plain=False`` leaves plain keys (written by MoFA) plain, for a
    database a MoFA service still reads them from. One transaction: a key
    none of the box's keys opens fails the whole run, and a row changed
    meanwhile by another writer is left to that writer. The in-memory store
    keeps nothing at rest: 0.
    """
    # Imported here: sql.py imports this module (through rows.py), and so may memory.py.
    from chatledger.stores.memory import InMemoryStore
    from chatledger.stores.sql import Read, SqlStore, Write

    if isinstance(store, InMemoryStore):
        return 0
    if not isinstance(store, SqlStore):
        raise TypeError(f"cannot re-encrypt the API keys of a {type(store).__name__}")
    box = box if box is not None else configured_box()
    if box is None:
        raise SerializationError(f"no key to encrypt API keys with: {_HOW_TO_SET}")
    database = store._db  # the store's own database: the column is rewritten in place
    dialect = database.dialect
    (rows,) = await database.read(
        [Read(dialect.sql("SELECT id, provider_name, api_key FROM entity_provider"))]
    )
    update = dialect.sql("UPDATE entity_provider SET api_key = ? WHERE id = ? AND api_key = ?")
    writes = []
    for provider_id, name, stored in rows:
        if not stored or box.is_current(stored) or not (encrypt_plain or is_encrypted(stored)):
            continue
        plain = open_api_key(stored, box, name=name, provider_id=provider_id)
        writes.append(Write(update, (box.encrypt(plain), provider_id, stored)))
    if not writes:
        return 0
    rewritten = sum(await database.write(writes))
    logger.info("re-encrypted %d provider API keys with the first key", rewritten)
    return rewritten
