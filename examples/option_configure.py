"""An option validated in configure: --set max_body_kb=N (N >= 1) caps response bodies."""

from typing import Optional

from mitmproxy import ctx, exceptions


def load(loader):
    loader.add_option("max_body_kb", Optional[int], None, "Truncate larger response bodies.")


def configure(updated):
    if "max_body_kb" in updated and ctx.options.max_body_kb is not None:
        if ctx.options.max_body_kb < 1:
            raise exceptions.OptionsError("max_body_kb must be at least 1")


def response(flow):
    limit = ctx.options.max_body_kb
    if limit is not None and flow.response.raw_content is not None:
        if len(flow.response.raw_content) > limit * 1024:
            flow.response.content = flow.response.content[: limit * 1024]
            flow.response.headers["x-truncated"] = "1"
