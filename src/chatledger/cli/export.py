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
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, cast

from pydantic_core import to_json

from chatledger.entities import ChatSession, LLMApiCall, LLMMessage

__all__ = ["ExportFormat", "ExportTarget", "format_for", "write_records"]

ExportFormat = Literal["jsonl", "csv"]

_FIELDS: dict[str, tuple[str, ...]] = {
    "sessions": tuple(ChatSession.model_fields),
    "messages": tuple(LLMMessage.model_fields),
    "api_calls": tuple(LLMApiCall.model_fields),
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


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return to_json(value).decode()
    if isinstance(value, datetime):
        return to_json(value).decode()[1:-1]  # pydantic's own RFC 3339 form, as in the JSON
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _csv_writer(
    kind: str, stream: IO[bytes]
) -> tuple[Callable[[list[dict[str, Any]]], None], io.TextIOWrapper]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    fields = _FIELDS[kind]
    writer.writerow(fields)
    buffer = io.StringIO()
    chunk_writer = csv.writer(buffer)

    def write(records: list[dict[str, Any]]) -> None:
        cell = _csv_cell
        chunk_writer.writerows([[cell(record.get(name)) for name in fields] for record in records])
        text.write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()

    return write, text


async def write_records(
    chunks: AsyncIterator[list[dict[str, Any]]],
    kind: str,
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
