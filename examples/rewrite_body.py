"""Replace a word in HTML and text responses (content encodings are handled for you)."""


def response(flow):
    content_type = flow.response.headers.get("content-type", "")
    if content_type.startswith(("text/", "application/json")) and flow.response.text:
        flow.response.text = flow.response.text.replace("bananas", "apples")
