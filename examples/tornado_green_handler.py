"""A Tornado handler written in blocking style with @dhaga.green, served and queried once."""

import asyncio
import json

import tornado.httpclient
import tornado.netutil
import tornado.web

import dhaga


def slow_backend(user):
    dhaga.sleep(0.05)  # stands for a blocking database or RPC call
    return {"user": user, "greeting": f"hello, {user}"}


class Hello(tornado.web.RequestHandler):
    @dhaga.green
    def get(self, user):
        self.write(slow_backend(user))  # blocking call inside a dhaga: the loop keeps serving


async def main():
    app = tornado.web.Application([(r"/hello/(\w+)", Hello)])
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    port = sock.getsockname()[1]
    tornado.httpclient.AsyncHTTPClient.configure(None, max_clients=100)
    client = tornado.httpclient.AsyncHTTPClient()
    loop = asyncio.get_running_loop()
    start = loop.time()
    replies = await asyncio.gather(
        *(client.fetch(f"http://127.0.0.1:{port}/hello/u{i}") for i in range(50))
    )
    took = loop.time() - start
    users = [json.loads(r.body)["user"] for r in replies]
    print(f"{len(users)} requests answered, each waited 50 ms, all in {took:.2f}s")
    server.stop()


if __name__ == "__main__":
    import tornado.httpserver  # noqa: F401

    asyncio.run(main())
