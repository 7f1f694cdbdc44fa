"""`ContentviewRegistry`: the views by (case-insensitive) name, and picking one for data."""

import logging
from collections.abc import Mapping

from mitmproxy.optmanager import _Signal

logger = logging.getLogger(__name__)


class ContentviewRegistry(Mapping):
    def __init__(self):
        self._by_name = {}
        self.on_change = _Signal()

    def register(self, instance):
        """Adds a view (an instance, or a class to instantiate), replacing one of that name."""
        if isinstance(instance, type):
            instance = instance()
        name = instance.name.lower()
        if name in self._by_name:
            logger.info(f"Replacing existing {name} contentview.")
        self._by_name[name] = instance
        self.on_change.send(instance)

    def available_views(self):
        return ["auto", *sorted(self._by_name)]

    def get_view(self, data, metadata, view_name="auto"):
        """The view called `view_name`, or (for "auto" or an unknown name) the one with the
        highest `render_priority` for the data."""
        if view_name != "auto":
            try:
                return self[view_name.lower()]
            except KeyError:
                logger.warning(
                    f"Unknown contentview {view_name!r}, selecting best match instead.")
        best = None
        for view in self._by_name.values():
            try:
                priority = view.render_priority(data, metadata)
                if not isinstance(priority, (int, float)):
                    raise TypeError(f"render_priority for {view.name} did not return a number.")
            except Exception:
                logger.exception(f"Error in {view.name}.render_priority")
                continue
            if best is None or best[0] < priority:
                best = (priority, view)
        if best is None:
            raise ValueError("At least one view needs to have a working `render_priority`.")
        return best[1]

    def __iter__(self):
        return iter(self._by_name)

    def __getitem__(self, item):
        return self._by_name[item.lower()]

    def __len__(self):
        return len(self._by_name)
