"""Add a header to every response."""


def response(flow):
    flow.response.headers["x-flowtap"] = "added"
