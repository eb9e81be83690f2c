"""``python -m dhaga.web --processes 2``: two worker processes share one port.

Run as a script, it starts the server on a free port, shows requests answered by both workers,
then stops it with SIGTERM (a graceful stop). The application is ``app`` below.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def app(environ, start_response):
    body = f"served by worker {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def main():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    server = subprocess.Popen(
        [sys.executable, "-m", "dhaga.web", "web_processes:app",
         "--bind", "127.0.0.1:0", "--processes", "2"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=HERE,
    )
    first_line = server.stdout.readline()
    print(first_line.strip().replace(str(server.pid), "MASTER"))
    url = re.search(r"http://\S+", first_line).group(0)
    workers = set()
    # The kernel hands each new connection to one of the workers; a worker still starting takes
    # none, so ask until both have answered (bounded: at most 20 s and 5,000 requests).
    deadline = time.monotonic() + 20
    for _ in range(5000):
        with urllib.request.urlopen(url, timeout=10) as reply:
            workers.add(reply.read().decode())
        if len(workers) == 2 or time.monotonic() > deadline:
            break
    print(f"{len(workers)} different workers answered")
    server.send_signal(signal.SIGTERM)
    print("exit status after SIGTERM:", server.wait(timeout=30))


if __name__ == "__main__":
    main()
