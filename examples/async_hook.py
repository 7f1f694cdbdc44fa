"""An async hook: waiting pauses only this flow, other flows go on."""

import asyncio


async def request(flow):
    await asyncio.sleep(0.2)  # e.g. ask an external service
    flow.request.headers["x-checked"] = "async"
