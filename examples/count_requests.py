"""Count requests in a class with state; each request carries the running count."""

import logging
import threading


class Counter:
    def __init__(self):
        self.num = 0
        # Sync hooks of different flows run concurrently on a thread pool.
        self.lock = threading.Lock()

    def request(self, flow):
        with self.lock:
            self.num += 1
            count = self.num
        flow.request.headers["x-request-count"] = str(count)
        logging.info("We've seen %d flows", count)


addons = [Counter()]
