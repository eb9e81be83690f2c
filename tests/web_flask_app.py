"""An ordinary Flask application: its view calls a slow backend over HTTP with requests.

Nothing here knows about dhaga: served with ``python -m dhaga.web --monkey-patch``, every
request runs in its own dhaga and ``requests`` parks only that dhaga while it waits.
"""

import os

import requests
from flask import Flask, jsonify

app = Flask(__name__)
BACKEND = os.environ.get("BACKEND_URL", "http://127.0.0.1:8001")


@app.route("/users/<int:user>")
def user(user):
    reply = requests.get(f"{BACKEND}/user/{user}", timeout=60)
    reply.raise_for_status()
    return jsonify(user=user, backend=reply.json())
