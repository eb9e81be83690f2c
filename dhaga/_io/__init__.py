"""The I/O plumbing under `dhaga.net`: descriptor waits, the green socket, name resolution, TLS, listening.

Nothing here is public: `dhaga.net` is the face users import. This package must not know any
protocol (HTTP, msgpack-rpc, ZMTP) nor the scheduler's internals beyond what `fdwait` parks on.
"""
