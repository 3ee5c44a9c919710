"""The dashboard as an ASGI application: :func:`create_app` over any store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chatledger.errors import PersistenceError
from chatledger.stores.base import PersistenceStore
from chatledger.stores.urls import redact
from chatledger.ui import views
from chatledger.ui.security import Guard, new_secret
from chatledger.ui.templating import environment

__all__ = ["STATIC", "create_app"]

logger = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"

_TITLES: Final = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route, wrong method) as the site's error page."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith("/static/"):
        return Response(status_code=status)
    title = _TITLES.get(status, "Error")
    text = "There is no page at this address." if status == 404 else title
    return views.error_page(request, status, title, text)


async def _store_error(request: Request, exc: Exception) -> Response:
    """A database that failed: said in one line (chatledger's errors carry no secret)."""
    logger.warning("the store failed on %s: %s", request.url.path, exc)
    return views.error_page(request, 503, "The database failed", str(exc))


def create_app(
    store: PersistenceStore,
    *,
    allow_delete: bool = False,
    token: str | None = None,
    database_url: str | None = None,
) -> Starlette:
    """The dashboard over ``store``: read-only unless ``allow_delete``; ``token`` guards it.

    Without a token it answers to loopback host names only. ``database_url``
    is shown in the page header with its password masked (the backend's name
    when not given). The caller owns the store: it is not closed with the app.
    """
    dashboard = views.Dashboard(
        store=store,
        env=environment(),
        database=redact(database_url) if database_url else store.backend_name,
        allow_delete=allow_delete,
        csrf_token=new_secret(),
    )
    routes = [
        Route("/", views.overview, name="overview"),
        Route("/calls", views.calls, name="calls"),
        Route("/calls/export", views.export_calls, name="export_calls"),
        Route("/calls/{call_id}", views.call_detail, name="call"),
        Route("/sessions", views.sessions, name="sessions"),
        Route("/sessions/{session_id}", views.session_detail, name="session"),
        Route(
            "/sessions/{session_id}/delete",
            views.delete_session,
            methods=["POST"],
            name="delete_session",
        ),
        Route("/live", views.live, name="live"),
        Route("/live/feed", views.live_feed, name="live_feed"),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=token, allow_delete=allow_delete)],
        exception_handlers={
            HTTPException: _http_error,
            PersistenceError: _store_error,
        },
    )
    app.state.dashboard = dashboard
    return app
