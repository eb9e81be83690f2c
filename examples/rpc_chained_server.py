"""A chained RPC server: its handler calls another RPC service, in plain blocking style.

    client --quote(items)--> front server --price(item), in parallel--> pricing service

The front server's handler fans out to the pricing service through one shared Client (each
request already runs in its own dhaga, and may start more), and passes the pricing service's
errors on to its own caller unchanged. The three parties share this process only to keep the
example self-contained.
"""

import dhaga
from dhaga import rpc

PRICES = {"tea": 120, "coffee": 250, "cake": 400}


def start_pricing_service():
    pricing = rpc.Server()

    @pricing.method
    def price(item):
        dhaga.sleep(0.02)  # a slow lookup
        if item not in PRICES:
            raise KeyError(f"no price for {item!r}")
        return PRICES[item]

    pricing.listen(("127.0.0.1", 0))
    pricing.start()
    return pricing


def start_front_server(pricing_address):
    front = rpc.Server()
    prices = rpc.Client(pricing_address, timeout=5)  # shared by every request's dhaga

    @front.method
    def quote(items):
        with dhaga.Group() as group:  # one blocking call per item, all at once
            calls = [group.spawn(prices.call, "price", item) for item in items]
        return {"items": len(items), "total": sum(c.result() for c in calls)}

    front.listen(("127.0.0.1", 0))
    front.start()
    return front, prices


def main():
    pricing = start_pricing_service()
    front, prices = start_front_server(pricing.address)
    with rpc.Client(front.address, timeout=5) as client:
        print("quote:", client.call("quote", ["tea", "cake", "coffee", "tea"]))
        with dhaga.Group() as group:  # 100 customers at once, on one connection
            quotes = [group.spawn(client.proxy.quote, ["coffee"] * (i % 5 + 1))
                      for i in range(100)]
        totals = [q.result()["total"] for q in quotes]
        assert totals == [250 * (i % 5 + 1) for i in range(100)]
        print(f"100 concurrent quotes checked, {prices.connections_opened} connection "
              "from the front server to the pricing service")
        try:
            client.call("quote", ["tea", "caviar"])
        except rpc.RemoteError as e:
            print("error passed along:", e.error)
    front.stop()
    prices.close()
    pricing.stop()


if __name__ == "__main__":
    dhaga.run(main)
