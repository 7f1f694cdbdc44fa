"""`libmproxy.contentviews` (0.15-0.18): the registry of content views scripts add to.

mitmdump of that era did not show a script's views: its output picks the built-in view for a
content type first, so a view added here is registered (and can be looked up and removed)
without changing what flowtap prints, as on the old mitmdump.
"""

views = []


class View:
    """A content view: `name`, `prompt`, `content_types`, and `__call__(data, **metadata)`
    returning `(description, lines)`."""

    name = None
    prompt = ()
    content_types = []

    def __call__(self, data, **metadata):
        raise NotImplementedError()


def format_text(text):
    """Lines of `text` as the old views returned them: a list of `[("text", line)]`."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    return [[("text", line)] for line in text.splitlines()]


def add(view):
    for existing in views:
        if existing.name == view.name:
            raise ValueError("Duplicate view: " + view.name)
    views.append(view)


def remove(view):
    if view in views:
        views.remove(view)


def get(name):
    for view in views:
        if view.name.lower() == name.lower():
            return view
    return None
