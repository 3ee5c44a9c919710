"""A session's conversation as the page shows it: each message, the calls it came from, its branch.

A call belongs under the reply it produced (``response_message_id``); a call
that produced nothing (it failed) is shown under the message that asked for
it (``request_message_id``), as ``chatledger show`` does. Messages are linked
by ``parent_message_id``: a message whose parent is not the message shown just
before it starts a branch, and replies to one parent are numbered as
alternatives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chatledger.entities import ApiCallStatus, LLMApiCall, LLMMessage
from chatledger.ids import NIL_UUID

__all__ = ["Entry", "anchor_of", "conversation", "pretty_json"]


def anchor_of(call: LLMApiCall) -> uuid.UUID:
    """The message a call is shown under: its reply, or its request when it made none."""
    if call.response_message_id == NIL_UUID or call.status is not ApiCallStatus.SUCCESS:
        return call.request_message_id
    return call.response_message_id


@dataclass
class Entry:
    """One message of the conversation and what the page says around it."""

    message: LLMMessage
    calls: list[LLMApiCall] = field(default_factory=list)
    branches_from: uuid.UUID | None = None  # its parent, when that is not the message before
    alternative: tuple[int, int] | None = None  # (k, n): the k-th of n replies to its parent


def conversation(
    messages: Sequence[LLMMessage],
    calls: Sequence[LLMApiCall],
    *,
    before: uuid.UUID | None = None,
    siblings: dict[uuid.UUID, list[uuid.UUID]] | None = None,
) -> list[Entry]:
    """The entries of ``messages`` (oldest first) with ``calls`` placed under their anchors.

    ``before`` is the id of the message just before the first one (on an
    earlier page); ``siblings`` maps a parent to its children in order, for
    numbering alternatives (built from ``messages`` when not given).
    """
    if siblings is None:
        siblings = {}
        for message in messages:
            if message.parent_message_id is not None:
                siblings.setdefault(message.parent_message_id, []).append(message.id)
    by_anchor: dict[uuid.UUID, list[LLMApiCall]] = {}
    for call in sorted(calls, key=lambda c: (c.create_time, c.id)):
        by_anchor.setdefault(anchor_of(call), []).append(call)
    entries = []
    previous = before
    for message in messages:
        entry = Entry(message, by_anchor.get(message.id, []))
        parent = message.parent_message_id
        if parent is not None:
            if previous is not None and parent != previous:
                entry.branches_from = parent
            children = siblings.get(parent, [])
            if len(children) > 1 and message.id in children:
                entry.alternative = (children.index(message.id) + 1, len(children))
        entries.append(entry)
        previous = message.id
    return entries


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading; text that is not JSON is returned as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
