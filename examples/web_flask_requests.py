"""An ordinary Flask app calling a slow backend with requests, made concurrent by monkey-patching.

The Flask code below is what you would write anyway. Patching first makes `requests` (and every
socket) park only the calling dhaga, so one process answers 200 clients in about one backend
latency. In production: ``python -m dhaga.web --monkey-patch myapp:app``.
"""

from dhaga import monkey

monkey.patch_all()  # before importing anything that uses sockets

import time  # noqa: E402

import requests  # noqa: E402
from flask import Flask, jsonify  # noqa: E402

import dhaga  # noqa: E402
from dhaga.web import WSGIServer  # noqa: E402

LATENCY = 0.5


def backend(environ, start_response):
    time.sleep(LATENCY)  # patched: parks this request's dhaga
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"price": 42}']


app = Flask(__name__)
BACKEND_URL = ""


@app.route("/quote/<item>")
def quote(item):
    price = requests.get(f"{BACKEND_URL}/price/{item}", timeout=10).json()["price"]
    return jsonify(item=item, price=price)


def main():
    global BACKEND_URL
    slow = WSGIServer(backend, ("127.0.0.1", 0))
    slow.start()
    BACKEND_URL = f"http://127.0.0.1:{slow.address[1]}"
    web = WSGIServer(app, ("127.0.0.1", 0))
    web.start()
    url = f"http://127.0.0.1:{web.address[1]}"

    start = time.perf_counter()
    with dhaga.Group() as g:  # 200 clients at once (requests is green too, after patching)
        replies = [g.spawn(requests.get, f"{url}/quote/item{i}", timeout=30) for i in range(200)]
    took = time.perf_counter() - start
    assert all(r.result().json() == {"item": f"item{i}", "price": 42}
               for i, r in enumerate(replies))
    print(f"200 Flask requests, each calling a {LATENCY}s backend with requests: {took:.2f}s in all")
    web.stop(timeout=5)
    slow.stop(timeout=5)


if __name__ == "__main__":
    main()
