import os

import mitmproxy

PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    where = os.path.dirname(os.path.abspath(mitmproxy.__file__))
    assert where == os.path.join(PACKAGE, "mitmproxy"), f"mitmproxy imported from {where}"
