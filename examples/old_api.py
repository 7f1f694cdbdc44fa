"""A script for mitmproxy 0.x: start(context, argv) and response(context, flow).

Run with arguments: -s "old_api.py bananas apples"
"""


def start(context, argv):
    if len(argv) != 3:
        raise ValueError('Usage: -s "old_api.py old new"')
    context.old, context.new = argv[1], argv[2]


def response(context, flow):
    flow.response.content = flow.response.content.replace(
        context.old.encode(), context.new.encode()
    )
    flow.response.headers["newheader"] = ["foo"]
