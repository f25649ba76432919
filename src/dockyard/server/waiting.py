"""`?wait=true`: hold the request until an operation finishes (woken by the notifier); a
server that is stopping answers 503 at once (the operation goes on; the client may ask again)."""

from __future__ import annotations

import time

from fastapi.concurrency import run_in_threadpool

from dockyard.errors import BackendError, DockyardError, NotFound, TemporaryError
from dockyard.model.common import Operation, OperationStatus
from dockyard.server.context import ServerContext
from dockyard.store import operations, records


def _load(ctx: ServerContext, op_id: str) -> Operation:
    with ctx.db.read() as sess:
        row = operations.get(sess, op_id)
        if row is None:
            raise NotFound(f"operation {op_id} not found")
        return records.operation_model(row)


async def wait_for(ctx: ServerContext, op_id: str, timeout: float) -> Operation:
    """The finished operation; raises its failure as an error, or 504-like BackendError."""
    deadline = time.monotonic() + timeout
    key: str | None = None  # the operation's instance, once known: woken by its changes
    while True:
        token = ctx.notifier.token(key)
        op = await run_in_threadpool(_load, ctx, op_id)
        key = op.instance
        if op.status == OperationStatus.success:
            return op
        if op.status == OperationStatus.failure:
            raise BackendError(f"{op.kind} failed: {op.error}")
        left = deadline - time.monotonic()
        if ctx.notifier.closing:
            raise TemporaryError(f"the server is stopping; operation {op.id} ({op.kind}) "
                                 "goes on: ask for it again")
        if left <= 0:
            raise BackendError(f"{op.kind} did not finish within {timeout:.0f}s "
                               f"(operation {op.id} still running)")
        await ctx.notifier.wait(token, min(left, 5.0))


__all__ = ["wait_for", "DockyardError"]
