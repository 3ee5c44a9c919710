"""``chatledger ui``: a local web dashboard over any chatledger store.

Server-rendered pages (Starlette and Jinja2) with htmx for partial updates and
uPlot for charts, both vendored as static files: nothing is fetched at run
time, so the dashboard works offline. Needs the ``ui`` extra::

    pip install 'chatledger[ui]'

:func:`create_app` builds the ASGI application over an open store;
:func:`serve` opens a database URL and serves it with uvicorn.
"""

from __future__ import annotations

from chatledger.integrations.extras import require

for _module in ("starlette", "jinja2"):
    require(_module, "ui", "chatledger.ui")

from chatledger.ui.app import create_app  # noqa: E402  (after the extra is checked)
from chatledger.ui.server import UnsafeBindError, serve, serve_async  # noqa: E402

__all__ = ["UnsafeBindError", "create_app", "serve", "serve_async"]
