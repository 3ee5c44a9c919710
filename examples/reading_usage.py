"""Reading the ledger: totals, latency percentiles, and breakdowns by model and by day.

Stores a small ledger of API calls spread over the last three days (two
models, one rate-limited call) in a SQLite file in a temporary directory,
then asks for the statistics, the usage by model, and the usage by model
and UTC day.

    python examples/reading_usage.py
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

import chatledger
from chatledger import ApiCallStatus, LLMApiCall, QueryFilter, uuid7
from chatledger.entities import utc_now


async def main() -> None:
    """Save a few days of calls, then print statistics and breakdowns over them."""
    tenant, user, agent, session = uuid7(), uuid7(), uuid7(), uuid7()
    now = utc_now()
    calls = []
    for day in range(3):
        for model, prompt, completion in (("gpt-4o-mini", 900, 120), ("gpt-4o", 1500, 300)):
            start = now - timedelta(days=day, minutes=5)
            end = start + timedelta(milliseconds=800 + 200 * day)
            ids = (session, agent, user, tenant, uuid7(), uuid7())
            calls.append(LLMApiCall.success(*ids, model, prompt, completion, start, end))
    # A refused call: its latency runs up to now, so it starts now.
    refused = LLMApiCall.failed(
        session, agent, user, tenant, uuid7(), "gpt-4o", "Rate limit reached", "429", utc_now(),
        status=ApiCallStatus.RATE_LIMITED,
    )  # fmt: skip
    calls.append(refused)

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'usage.db'}"
        async with await chatledger.connect(url) as store:
            await store.save_api_calls(calls)
            query = QueryFilter().tenant(tenant)

            stats = await store.get_statistics(query)
            print(f"total: {stats.total_calls} calls, {stats.success_count} succeeded")
            print(f"tokens: {stats.total_tokens}, p95 latency: {stats.p95_latency_ms} ms")
            print(f"by status: { {s.value: n for s, n in stats.status_counts.items() if n} }")

            print("by model:")
            for row in await store.get_usage_breakdown(query, ["model"]):
                print(f"  {row.keys['model']:<12} {row.stats.total_calls} calls, "
                      f"{row.stats.total_tokens} tokens")  # fmt: skip

            print("by model and day:")
            for row in await store.get_usage_breakdown(query, ["model"], bucket="day"):
                when = row.bucket_start.date().isoformat() if row.bucket_start else "?"
                print(f"  {when} {row.keys['model']:<12} {row.stats.total_calls} calls")


if __name__ == "__main__":
    asyncio.run(main())
