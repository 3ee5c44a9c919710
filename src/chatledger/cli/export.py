"""Streaming export: records to JSON lines or CSV, a chunk at a time.

The store hands records over in chunks of JSON-ready dicts
(``PersistenceStore.export_records``), so memory stays flat at any table
size. JSON lines are the entities' own JSON forms (MoFA's serde forms); CSV
has one column per field, nested values as JSON text. A file is written to
``FILE.partial`` and renamed only once complete, so a failed export never
leaves a file that looks whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, cast

from pydantic_core import to_json

from chatledger.entities import ChatSession, LLMApiCall, LLMMessage
from chatledger.stores.base import RecordKind

__all__ = ["ExportFormat", "ExportTarget", "format_for", "write_records"]

ExportFormat = Literal["jsonl", "csv"]

_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    "sessions": tuple(ChatSession.model_fields),
    "messages": tuple(LLMMessage.model_fields),
    "api_calls": tuple(LLMApiCall.model_fields),
}
# The fields whose values are objects: a CSV cell holds them as JSON text.
_NESTED: dict[RecordKind, tuple[str, ...]] = {
    "sessions": ("metadata",),
    "messages": ("content",),
    "api_calls": ("prompt_tokens_details", "completion_tokens_details", "price_details"),
}


def format_for(output: str | None, asked: ExportFormat | None) -> ExportFormat:
    """The format asked for, else what the file name says (``.csv``, ``.csv.gz``), else jsonl."""
    if asked is not None:
        return asked
    name = (output or "").lower().removesuffix(".gz")
    return "csv" if name.endswith(".csv") else "jsonl"


class ExportTarget:
    """Where an export goes: standard output, or a file completed by rename.

    ``with ExportTarget(path, force) as out:`` yields a binary stream; leaving
    the block normally renames ``FILE.partial`` to ``FILE``, leaving it by an
    exception removes the partial file.
    """

    def __init__(self, path: str | None, *, force: bool) -> None:
        """Write to ``path`` (None: standard output); ``force`` replaces an existing file."""
        self.path = None if path in (None, "-") else Path(path)
        if self.path is not None and self.path.exists() and not force:
            raise FileExistsError(f"{self.path} exists; pass --force to replace it")
        self._partial = (
            None if self.path is None else self.path.with_name(self.path.name + ".partial")
        )
        self._stream: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        """Open the output and return its binary stream."""
        if self._partial is None:
            self._stream = sys.stdout.buffer
        elif self._partial.name.endswith(".gz.partial"):
            self._stream = cast(IO[bytes], gzip.open(self._partial, "wb", compresslevel=6))
        else:
            self._stream = open(self._partial, "wb", buffering=1 << 20)
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Finish the file by renaming it, or remove it if the export failed."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if self._partial is None or self.path is None:
            stream.flush()
            return
        stream.close()
        if exc_type is None:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"ExportTarget({str(self.path) if self.path else 'stdout'})"


def _csv_writer(
    kind: RecordKind, stream: IO[bytes]
) -> tuple[Callable[[list[dict[str, Any]]], None], io.TextIOWrapper]:
    """A function writing a chunk of records as CSV rows, after the header it writes now.

    Records hold JSON values already (ids and times as text); only the nested
    ones become JSON text, and an absent or null field an empty cell.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    fields = _FIELDS[kind]
    csv.writer(text).writerow(fields)
    nested = [fields.index(name) for name in _NESTED[kind]]
    buffer = io.StringIO()
    rows = csv.writer(buffer)

    def write(records: list[dict[str, Any]]) -> None:
        chunk = [[record.get(name) for name in fields] for record in records]
        for row in chunk:
            for index in nested:
                if row[index] is not None:
                    row[index] = to_json(row[index]).decode()
        rows.writerows(chunk)  # None is written as an empty cell
        text.write(buffer.getvalue())  # one write per chunk, not per row
        buffer.seek(0)
        buffer.truncate()

    return write, text


async def write_records(
    chunks: AsyncIterator[list[dict[str, Any]]],
    kind: RecordKind,
    fmt: ExportFormat,
    stream: IO[bytes],
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Write every chunk to ``stream`` in ``fmt``; return how many records were written."""
    written = 0
    text: io.TextIOWrapper | None = None
    if fmt == "csv":
        write_csv, text = _csv_writer(kind, stream)
    try:
        async for records in chunks:
            if fmt == "csv":
                write_csv(records)
            else:
                # one write per chunk: pydantic-core's encoder, as the entities' own JSON
                stream.write(b"".join([to_json(record) + b"\n" for record in records]))
            written += len(records)
            if on_chunk is not None:
                on_chunk(len(records))
    finally:
        if text is not None:
            text.flush()
            text.detach()  # leave the binary stream open for its owner to close
    return written
