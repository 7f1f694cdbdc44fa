"""A blocking hook marked @concurrent, as mitmproxy scripts do.

flowtap runs sync hooks of different flows on a thread pool anyway, so the decorator is accepted
and changes nothing; with --set script_serial=true it still keeps other flows going.
"""

import time

from mitmproxy.script import concurrent


@concurrent
def request(flow):
    time.sleep(0.2)  # e.g. a blocking library call
    flow.request.headers["x-concurrent"] = "1"
