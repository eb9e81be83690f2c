"""Tornado in blocking style: a @dhaga.green handler making blocking calls, and a WebSocket chat.

The handler calls an RPC service and an HTTP service as plain function calls; the WebSocket
handler reads and writes its connection with ws.receive() and ws.send(). Each runs in its own
dhaga, so a blocked one never stops the others.
"""

import json

import tornado.httpclient
import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer

import dhaga
from dhaga import rpc
from dhaga.web import WebSocketHandler, websocket_connect

prices = rpc.Server()


@prices.method
def price(item):
    dhaga.sleep(0.05)  # a slow service
    return {"apple": 3, "pear": 4}.get(item, 0)


class Quote(tornado.web.RequestHandler):
    def initialize(self, rpc_address):
        self.rpc_address = rpc_address

    @dhaga.green
    def get(self, item):
        with rpc.Client(self.rpc_address) as client:
            cost = client.call("price", item, timeout=5)  # blocking RPC, in this dhaga only
        self.write({"item": item, "price": cost})


class Chat(WebSocketHandler):
    rooms: dict = {}

    def handle(self, ws, room):
        members = Chat.rooms.setdefault(room, set())
        members.add(ws)
        ws.send(f"welcome to {room}: {len(members)} here")
        try:
            for message in ws:  # blocks this dhaga until the next message
                for other in list(members):
                    if other is not ws:
                        other.send(f"{room}: {message}")
                ws.send(f"delivered to {len(members) - 1}")
        finally:
            members.discard(ws)


def main():
    dhaga.get_scheduler()  # Tornado objects below share the scheduler's loop
    prices.listen(("127.0.0.1", 0))
    prices.start()
    app = tornado.web.Application([
        (r"/quote/(\w+)", Quote, {"rpc_address": prices.address}),
        (r"/chat/(\w+)", Chat),
    ])
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets([sock])
    base = f"127.0.0.1:{sock.getsockname()[1]}"

    client = tornado.httpclient.AsyncHTTPClient()
    quotes = [dhaga.spawn(lambda i=i: dhaga.wait(client.fetch(f"http://{base}/quote/{i}")))
              for i in ("apple", "pear", "plum")]
    for q in quotes:
        print("quote:", json.loads(q.result().body))

    alice = websocket_connect(f"ws://{base}/chat/lobby", timeout=5)
    print("alice got:", alice.receive(timeout=5))
    bob = websocket_connect(f"ws://{base}/chat/lobby", timeout=5)
    print("bob got:", bob.receive(timeout=5))
    alice.send("hello, bob")
    print("bob got:", bob.receive(timeout=5))
    print("alice got:", alice.receive(timeout=5))
    alice.close()
    bob.close()
    server.stop()
    prices.stop(timeout=1)


if __name__ == "__main__":
    main()
