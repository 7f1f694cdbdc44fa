"""Send messages of the proxy's own into a WebSocket connection, from an asyncio task.

The task starts in `websocket_start` and injects a message to the client every 200 ms until the
connection has closed. Injected messages pass through `websocket_message` (with
`injected=True`) like received ones.
"""

import asyncio

from mitmproxy import ctx


async def inject(flow):
    count = 0
    while flow.websocket.timestamp_end is None and flow.live:
        count += 1
        ctx.master.commands.call("inject.websocket", flow, True, f"injected {count}".encode())
        await asyncio.sleep(0.2)


def websocket_start(flow):
    # A sync hook may start a task, as on mitmproxy's event loop: it runs on the worker's loop.
    asyncio.create_task(inject(flow))


def websocket_end(flow):
    # The flow object the task holds is this one: updated here, so the task stops.
    pass
