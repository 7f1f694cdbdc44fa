"""Rewrite a query parameter: ?lang=... becomes ?lang=en on every request."""


def request(flow):
    if "lang" in flow.request.query:
        flow.request.query["lang"] = "en"
