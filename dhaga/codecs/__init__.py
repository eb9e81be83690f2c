"""Sans-IO wire codecs: bytes in, events out, with no sockets, loops or schedulers."""
