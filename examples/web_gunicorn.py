"""``gunicorn -k dhaga.web.GunicornWorker``: gunicorn manages the process, dhagas serve requests.

Run as a script, it starts gunicorn with one dhaga worker on a free port, sends 50 concurrent
requests that each wait 200 ms, and stops gunicorn. The application is ``app`` below.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def app(environ, start_response):
    time.sleep(0.2)  # the worker monkey-patches: this parks the request's dhaga, not the worker
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"pid {os.getpid()}".encode()]


def main():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "dhaga.web.GunicornWorker", "--workers", "1",
         "--bind", "127.0.0.1:0", "--no-control-socket", "web_gunicorn:app"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=HERE,
    )
    for line in gunicorn.stderr:
        m = re.search(r"Listening at: (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    start = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:  # 50 clients at once
        bodies = list(pool.map(lambda i: urllib.request.urlopen(url, timeout=30).read(), range(50)))
    took = time.perf_counter() - start
    print(f"{len(bodies)} requests of 200 ms each, one worker process "
          f"({len(set(bodies))} pid): {took:.2f}s")
    gunicorn.send_signal(signal.SIGTERM)
    gunicorn.stderr.read()
    print("gunicorn exit status:", gunicorn.wait(timeout=30))


if __name__ == "__main__":
    main()
