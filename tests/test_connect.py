"""chatledger.connect: the URL picks the backend; bad URLs say what is wrong."""

from __future__ import annotations

import pytest

from chatledger import InMemoryStore, connect


async def test_memory_url() -> None:
    """memory:// opens the in-memory reference store."""
    store = await connect("memory://")
    assert isinstance(store, InMemoryStore)
    await store.close()


@pytest.mark.parametrize("url", ["redis://localhost", "chatledger.db", ""])
async def test_unknown_scheme(url: str) -> None:
    """A URL with no known scheme is a ValueError that lists the ones there are."""
    with pytest.raises(ValueError, match="sqlite:///"):
        await connect(url)


async def test_errors_never_show_the_password() -> None:
    """A URL that cannot be used is echoed without its password."""
    with pytest.raises(ValueError, match=r"\*\*\*") as caught:
        await connect("oracle://scott:tiger-secret@db:1521/x")
    assert "tiger-secret" not in str(caught.value)
