"""Tests for dhaga.codecs.msgpack_rpc: byte tables, chunking, malformed input, limits, Neovim."""

from __future__ import annotations

import datetime
import random
import threading
import tracemalloc
from decimal import Decimal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhaga.codecs.msgpack_rpc import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_MSGID,
    Decoder,
    ExtHandle,
    Message,
    Notification,
    Request,
    Response,
    encode_notification,
    encode_request,
    encode_response,
)
from dhaga.errors import MessageTooLarge, ProtocolError


def encode(message: Message) -> bytes:
    if type(message) is Request:
        return encode_request(*message)
    if type(message) is Response:
        return encode_response(*message)
    return encode_notification(*message)


def decode_all(data: bytes, **kwargs: int) -> list[Message]:
    return Decoder(**kwargs).feed(data)


# --- byte tables --------------------------------------------------------------------------------

TABLE = [
    (Request(1, "add", [1, 2]), "94 00 01 a3 61 64 64 92 01 02"),
    (Request(MAX_MSGID, "m", []), "94 00 ce ff ff ff ff a1 6d 90"),
    (
        Request(3, "put", [b"\x00\xff", None, True, -1]),
        "94 00 03 a3 70 75 74 94 c4 02 00 ff c0 c3 ff",
    ),
    (
        Request(4, "f", [1.5, {"k": "v"}]),
        "94 00 04 a1 66 92 cb 3f f8 00 00 00 00 00 00 81 a1 6b a1 76",
    ),
    (Response(1, None, 3), "94 01 01 c0 03"),
    (
        Response(7, ["ValueError", "boom"], None),
        "94 01 07 92 aa 56 61 6c 75 65 45 72 72 6f 72 a4 62 6f 6f 6d c0",
    ),
    (Notification("ping", []), "93 02 a4 70 69 6e 67 90"),
    (Notification("redraw", [["flush"]]), "93 02 a6 72 65 64 72 61 77 91 91 a5 66 6c 75 73 68"),
    # Neovim handles: ext types 0 (Buffer), 1 (Window), 2 (Tabpage) carrying a msgpack integer.
    (
        Request(5, "nvim_buf_get_name", [ExtHandle(0, 1)]),
        "94 00 05 b1 6e 76 69 6d 5f 62 75 66 5f 67 65 74 5f 6e 61 6d 65 91 d4 00 01",
    ),
    (Response(6, None, ExtHandle(1, 1000)), "94 01 06 c0 c7 03 01 cd 03 e8"),
    (Response(8, None, [ExtHandle(2, 2)]), "94 01 08 c0 91 d4 02 02"),
]


@pytest.mark.parametrize(("message", "wire"), TABLE)
def test_encode_gives_exact_bytes(message: Message, wire: str) -> None:
    assert encode(message).hex(" ") == wire


@pytest.mark.parametrize(("message", "wire"), TABLE)
def test_decode_exact_bytes(message: Message, wire: str) -> None:
    assert decode_all(bytes.fromhex(wire)) == [message]


def test_messages_of_different_kinds_never_compare_equal() -> None:
    assert Request(1, "a", []) != Response(1, "a", [])
    assert not Request(1, "a", []) == Response(1, "a", [])  # noqa: SIM201
    assert Request(1, "a", []) == Request(1, "a", [])
    assert Request(1, "a", []) != (1, "a", [])


def test_tuple_params_are_sent_as_an_array() -> None:
    assert encode_request(1, "add", (1, 2)) == encode_request(1, "add", [1, 2])
    assert encode_notification("n", ()) == bytes.fromhex("93 02 a1 6e 90")


def test_method_name_sent_as_bin_is_decoded() -> None:
    assert decode_all(bytes.fromhex("94 00 01 c4 03 61 64 64 90")) == [Request(1, "add", [])]
    assert decode_all(bytes.fromhex("93 02 c4 01 6e 90")) == [Notification("n", [])]


def test_str_that_is_not_utf8_round_trips_byte_for_byte() -> None:
    # Neovim sends its strings as msgpack str even when they are not UTF-8 (a Latin-1 line):
    # the bytes come out as surrogate escapes, as in pynvim, and go back unchanged.
    wire = bytes.fromhex("94 01 01 c0 92 a3 63 61 66 a4 63 61 66 e9")
    [response] = decode_all(wire)
    assert response == Response(1, None, ["caf", "caf\udce9"])
    assert encode(response) == wire
    assert decode_all(bytes.fromhex("93 02 c4 02 6d ff 90")) == [Notification("m\udcff", [])]
    assert encode_notification("m\udcff", []) == bytes.fromhex("93 02 a2 6d ff 90")


def test_lone_surrogate_that_is_no_escaped_byte_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_response(1, None, "\ud800")
    assert encode_response(1, None, "ok") == bytes.fromhex("94 01 01 c0 a2 6f 6b")


def test_other_ext_types_stay_plain_and_round_trip() -> None:
    ext = msgpack.ExtType(42, b"\x01\x02")
    wire = encode_response(1, None, [ext, msgpack.Timestamp(1, 5)])
    [response] = decode_all(wire)
    assert response == Response(1, None, [ext, msgpack.Timestamp(1, 5)])
    assert type(response) is Response and type(response.result[0]) is msgpack.ExtType


def test_ext_handle_checks_and_names() -> None:
    assert [ExtHandle(code, 1).kind for code in (0, 1, 2)] == ["Buffer", "Window", "Tabpage"]
    assert ExtHandle(0, 1) == ExtHandle(0, 1) and len({ExtHandle(0, 1), ExtHandle(1, 1)}) == 2
    with pytest.raises(ValueError, match="0, 1 or 2"):
        ExtHandle(3, 1)
    with pytest.raises(TypeError, match="int"):
        ExtHandle(0, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64 bits"):
        ExtHandle(0, 2**64)
    with pytest.raises(AttributeError):
        ExtHandle(0, 1).handle = 2  # type: ignore[misc]


def test_neovim_handle_with_non_canonical_integer_encoding() -> None:
    # Buffer 1 with its handle sent as uint32 rather than a fixint: still Buffer 1.
    wire = bytes.fromhex("94 01 01 c0 c7 05 00 ce 00 00 00 01")
    assert decode_all(wire) == [Response(1, None, ExtHandle(0, 1))]


# --- chunking -----------------------------------------------------------------------------------

STREAM: list[Message] = [
    Request(1, "nvim_buf_set_lines", [ExtHandle(0, 1), 0, -1, False, ["a" * 300, "b"]]),
    Notification("redraw", [["grid_line", [1, 2, 3, [["x", 1, 70000]]]]]),
    Response(1, None, {"k": [1.25, b"\x00" * 70000, None]}),
    Response(2, ["Exception", "no such method"], None),
    Request(MAX_MSGID, "m", []),
]
STREAM_BYTES = b"".join(encode(m) for m in STREAM)


def test_several_messages_in_one_chunk() -> None:
    assert decode_all(STREAM_BYTES) == STREAM


def test_byte_by_byte_gives_the_same_messages() -> None:
    decoder = Decoder()
    out: list[Message] = []
    for i in range(len(STREAM_BYTES)):
        out += decoder.feed(STREAM_BYTES[i : i + 1])
    assert out == STREAM
    assert decoder.buffered == 0


@pytest.mark.parametrize("seed", range(5))
def test_random_chunks_give_the_same_messages(seed: int) -> None:
    rng = random.Random(seed)
    decoder = Decoder()
    out: list[Message] = []
    pos = 0
    while pos < len(STREAM_BYTES):
        size = rng.choice([1, 2, 3, 7, 100, 4096, 70001])
        out += decoder.feed(memoryview(STREAM_BYTES)[pos : pos + size])
        pos += size
    assert out == STREAM


def test_unfinished_message_is_held_until_complete() -> None:
    wire = encode_request(9, "add", [1, 2])
    decoder = Decoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(wire[:-1]) == []
    assert decoder.buffered == len(wire) - 1
    assert decoder.feed(wire[-1:] + wire[:3]) == [Request(9, "add", [1, 2])]
    assert decoder.buffered == 3


def test_chunks_bigger_than_the_limit_holding_small_messages() -> None:
    wire = b"".join(encode_request(i, "m", [i]) for i in range(200))
    assert len(wire) > 10 * 64
    assert decode_all(wire, max_message_size=64) == [Request(i, "m", [i]) for i in range(200)]


# --- malformed input ----------------------------------------------------------------------------

MALFORMED = [
    ("05", "message must be an array, got int 5"),
    ("81 a1 61 01", "message must be an array, got dict"),
    ("90", "empty array"),
    (
        "93 05 a1 6d 90",
        "message type must be 0 (request), 1 (response) or 2 (notification), got int 5",
    ),
    ("94 c3 01 a1 6d 90", "message type must be"),  # true is not 1
    ("93 a1 30 a1 6d 90", "message type must be"),
    ("93 00 01 a1 6d", "request must have 4 elements, got 3"),
    ("95 00 01 a1 6d 90 c0", "request must have 4 elements, got 5"),
    ("93 01 01 c0", "response must have 4 elements, got 3"),
    ("94 02 a1 6d 90 c0", "notification must have 3 elements, got 4"),
    ("94 00 ff a1 6d 90", "request msgid must be an integer in [0, 2**32), got int -1"),
    ("94 00 cf 00 00 00 01 00 00 00 00 a1 6d 90", "request msgid must be an integer in [0, 2**32)"),
    ("94 00 a1 31 a1 6d 90", "request msgid must be an integer in [0, 2**32), got str '1'"),
    ("94 00 cb 3f f0 00 00 00 00 00 00 a1 6d 90", "request msgid must be an integer"),
    ("94 00 c3 a1 6d 90", "request msgid must be an integer in [0, 2**32), got bool True"),
    ("94 01 c0 c0 c0", "response msgid must be an integer in [0, 2**32), got NoneType None"),
    ("94 00 01 05 90", "request method must be a string, got int 5"),
    ("93 02 c0 90", "notification method must be a string, got NoneType"),
    ("94 00 01 a1 6d 05", "request params must be an array, got int 5"),
    ("93 02 a1 6d 80", "notification params must be an array, got dict of length 0"),
    ("93 02 a1 6d a0", "notification params must be an array, got str ''"),
    ("93 02 a1 6d d4 07 00", "notification params must be an array, got ExtType"),
    ("94 00 92 01 02 a1 6d 90", "request msgid must be an integer in [0, 2**32), got list of"),
    ("c1", "malformed msgpack: invalid type byte"),
    ("94 00 01 a1 6d 91 c1", "malformed msgpack: invalid type byte"),
    ("94 01 01 c0 81 01 02", "malformed msgpack: int is not allowed for map key"),
    ("94 01 01 c0 d5 ff 00 00", "malformed msgpack: invalid timestamp"),
    ("94 01 01 c0 d4 00 c0", "ext type 0 (Neovim Buffer) must carry a msgpack integer"),
    ("94 01 01 c0 d5 01 01 01", "ext type 1 (Neovim Window) must carry a msgpack integer"),
    ("94 01 01 c0 c7 00 02", "ext type 2 (Neovim Tabpage) must carry a msgpack integer"),
    ("91" * 2000 + " 00", "malformed msgpack: nested too deeply"),
]


@pytest.mark.parametrize(("wire", "text"), MALFORMED)
def test_malformed_message_raises_protocol_error_saying_why(wire: str, text: str) -> None:
    data = bytes.fromhex(wire)
    with pytest.raises(ProtocolError) as info:
        Decoder().feed(data)
    assert type(info.value) is ProtocolError
    assert text in str(info.value)
    assert info.value.data and data.startswith(info.value.data)


@pytest.mark.parametrize(
    "bad", ["x" * 100_000, {str(i): i for i in range(10_000)}, msgpack.ExtType(9, b"x" * 100_000)]
)
def test_error_text_stays_short_however_large_the_bad_value(bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        Decoder().feed(msgpack.packb([0, 1, "m", bad]))
    assert "request params must be an array" in str(info.value)
    assert len(str(info.value)) < 120
    assert len(info.value.data or b"") == 64


def test_error_data_is_the_offending_message() -> None:
    good = encode_response(1, None, 2)
    with pytest.raises(ProtocolError) as info:
        Decoder().feed(good + bytes.fromhex("94 00 01 05 90") + good)
    assert info.value.data == bytes.fromhex("94 00 01 05 90")


@pytest.mark.parametrize(
    ("bad", "kind"),
    [(bytes.fromhex("c1"), ProtocolError), (bytes.fromhex("dd ff ff ff ff"), MessageTooLarge)],
)
def test_decoder_is_dead_after_an_error(bad: bytes, kind: type[ProtocolError]) -> None:
    decoder = Decoder()
    with pytest.raises(kind):
        decoder.feed(bad)
    for _ in range(2):
        with pytest.raises(kind, match="decoder already failed"):
            decoder.feed(encode_response(1, None, 2))


def test_feeding_a_str_is_a_type_error_and_not_fatal() -> None:
    decoder = Decoder()
    with pytest.raises(TypeError):
        decoder.feed("text")  # type: ignore[arg-type]
    assert decoder.feed(encode_response(1, None, 2)) == [Response(1, None, 2)]


# --- size limits --------------------------------------------------------------------------------


def test_default_limit_is_64_mib() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 64 * 1024 * 1024 == Decoder().max_message_size


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_limit_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError):
        Decoder(max_message_size=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_message_of_exactly_the_limit_passes_and_one_byte_more_fails(chunk: int) -> None:
    at_limit = encode_response(1, None, "x" * 90)
    limit = len(at_limit)
    over = encode_response(1, None, "x" * 91)

    def feed_all(data: bytes) -> list[Message]:
        decoder = Decoder(max_message_size=limit)
        out: list[Message] = []
        for i in range(0, len(data), chunk):
            out += decoder.feed(data[i : i + chunk])
        return out

    assert feed_all(at_limit * 3) == [Response(1, None, "x" * 90)] * 3
    with pytest.raises(MessageTooLarge, match=f"over max_message_size \\({limit}\\)"):
        feed_all(at_limit + over)


HUGE_HEADERS = [
    "db ff ff ff ff",  # str32 of 4 GiB - 1
    "c6 ff ff ff ff",  # bin32
    "c9 ff ff ff fe 07",  # ext32 (0xffffffff would wrap to 0 in msgpack: see below)
    "dd ff ff ff ff",  # array32
    "df ff ff ff ff",  # map32
    "dd 00 00 00 02 dd 00 00 00 02 db ff ff ff ff",  # nested
]


@pytest.mark.parametrize("header", HUGE_HEADERS)
@pytest.mark.parametrize("prefix", ["", "94 00 01 a1 6d 91", "94 01 01 c0 91"])
def test_announced_huge_size_fails_at_once_without_allocating(prefix: str, header: str) -> None:
    decoder = Decoder()
    data = bytes.fromhex(prefix + header)
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge, match="announces at least"):
            decoder.feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_ext32_of_4_gib_is_refused() -> None:
    # msgpack reads ext32's length plus its type byte into 32 bits, so 0xffffffff wraps to an
    # empty ext that it then refuses: a ProtocolError either way, and nothing is allocated.
    with pytest.raises(ProtocolError):
        Decoder().feed(bytes.fromhex("94 01 01 c0 c9 ff ff ff ff 07"))


def test_announced_size_just_over_a_small_limit_fails_at_once() -> None:
    decoder = Decoder(max_message_size=100)
    assert decoder.feed(bytes.fromhex("94 01 01 c0 d9 5c")) == []  # str8 of 92: 98 bytes in all
    decoder = Decoder(max_message_size=100)
    with pytest.raises(MessageTooLarge):
        decoder.feed(bytes.fromhex("94 01 01 c0 d9 5f"))  # str8 of 95: 101 bytes


def test_oversize_message_behind_many_elements_fails_when_its_string_header_arrives() -> None:
    # The walker reads every header of an unfinished message (it used to stop after 4096), so
    # a string announced after 5000 small elements still fails on arrival of its header.
    message = encode_response(1, None, [0] * 5000 + ["x" * 20000])
    decoder = Decoder(max_message_size=10000)
    fed = 0
    with pytest.raises(MessageTooLarge, match="announces at least 25010 bytes"):
        while True:
            decoder.feed(message[fed : fed + 1000])
            fed += 1000
            assert decoder.buffered <= 10000
    assert fed == 5000  # the feed of bytes 5000-5999 raised: the str header is at byte 5007


# --- encoding errors ----------------------------------------------------------------------------


class Custom:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ({1, 2}, "set"),
        (object(), "object"),
        (Decimal(1), "decimal.Decimal"),
        (datetime.datetime(2024, 1, 1), "datetime.datetime"),
        (Custom(), "Custom"),
        ([{"nested": [Custom()]}], "Custom"),
    ],
)
def test_values_msgpack_cannot_carry_are_refused(value: object, name: str) -> None:
    for call in (
        lambda: encode_request(1, "m", [value]),
        lambda: encode_response(1, None, value),
        lambda: encode_response(1, value, None),
        lambda: encode_notification("m", [value]),
    ):
        with pytest.raises(TypeError, match=f"cannot encode .*{name} object"):
            call()


def test_integers_beyond_64_bits_are_refused() -> None:
    with pytest.raises(OverflowError):
        encode_response(1, None, 2**64)
    with pytest.raises(OverflowError):
        encode_response(1, None, -(2**63) - 1)
    assert decode_all(encode_response(1, None, [2**64 - 1, -(2**63)])) == [
        Response(1, None, [2**64 - 1, -(2**63)])
    ]


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: encode_request(-1, "m", []), ValueError, "msgid"),
        (lambda: encode_request(2**32, "m", []), ValueError, "msgid"),
        (lambda: encode_response(2**32, None, None), ValueError, "msgid"),
        (lambda: encode_request(True, "m", []), TypeError, "msgid"),
        (lambda: encode_response("1", None, None), TypeError, "msgid"),  # type: ignore[arg-type]
        (lambda: encode_request(1, b"m", []), TypeError, "method"),  # type: ignore[arg-type]
        (lambda: encode_notification(None, []), TypeError, "method"),  # type: ignore[arg-type]
        (lambda: encode_request(1, "m", {"a": 1}), TypeError, "params"),  # type: ignore[arg-type]
        (lambda: encode_notification("m", 5), TypeError, "params"),  # type: ignore[arg-type]
    ],
)
def test_bad_envelope_is_refused(call, error: type[Exception], text: str) -> None:  # noqa: ANN001
    with pytest.raises(error, match=text):
        call()


def test_encoding_from_another_thread() -> None:
    results: list[bytes] = []
    thread = threading.Thread(
        target=lambda: results.append(encode_request(1, "f", [ExtHandle(0, 1), "\udcff"]))
    )
    thread.start()
    thread.join(timeout=10)
    assert results == [bytes.fromhex("94 00 01 a1 66 92 d4 00 01 a1 ff")]


def test_encoding_after_a_refusal_is_clean() -> None:
    with pytest.raises(TypeError):
        encode_request(1, "m", [1, 2, Custom()])
    assert encode_request(1, "add", [1, 2]) == bytes.fromhex("94 00 01 a3 61 64 64 92 01 02")


# --- property tests -----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(ExtHandle, st.integers(0, 2), st.integers(-(2**63), 2**64 - 1))
    | st.builds(msgpack.ExtType, st.integers(3, 127), st.binary(max_size=8))
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner, max_size=5),
    max_leaves=12,
)
msgids = st.integers(0, MAX_MSGID)
params = st.lists(values, max_size=5)
messages = (
    st.builds(Request, msgids, st.text(max_size=20), params)
    | st.builds(Response, msgids, values, values)
    | st.builds(Notification, st.text(max_size=20), params)
)


@settings(max_examples=40, deadline=None)
@given(st.lists(messages, min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_random_messages_round_trip_in_random_chunks(
    batch: list[Message], rng: random.Random
) -> None:
    parts = [encode(m) for m in batch]
    wire = b"".join(parts)
    # The limit is exactly the largest message, so an announced size the decoder overestimated
    # would show up as a MessageTooLarge here.
    decoder = Decoder(max_message_size=max(len(part) for part in parts))
    out: list[Message] = []
    pos = 0
    while pos < len(wire):
        size = rng.randint(1, len(wire))
        out += decoder.feed(wire[pos : pos + size])
        pos += size
    assert out == batch
    assert decoder.buffered == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=31))
def test_any_bytes_in_a_str_round_trip(raw: bytes) -> None:
    wire = bytes.fromhex("93 02 a1 6d 91") + bytes([0xA0 | len(raw)]) + raw
    [notification] = decode_all(wire)
    assert encode(notification) == wire


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_messages_or_a_protocol_error(data: bytes) -> None:
    decoder = Decoder(max_message_size=1024)
    try:
        out = decoder.feed(data)
    except ProtocolError:
        return
    assert all(type(m) in (Request, Response, Notification) for m in out)


# --- object count (issue 17 item 1) --------------------------------------------------------------


@pytest.mark.parametrize("piece", [None, 1, 7, 4096])
@pytest.mark.parametrize("extra", [0, 1])
def test_max_objects_counts_every_value_at_every_depth(piece, extra) -> None:
    # [0, 1, "m", [[[] x n]]]: the message array, 0, 1, "m", params, the inner list, n lists.
    most = 300
    wire = encode_request(1, "m", [[[]] * (most - 6 + extra)])
    decoder = Decoder(max_message_size=1 << 20, max_objects=most)
    parts = [wire] if piece is None else [wire[i : i + piece] for i in range(0, len(wire), piece)]
    if extra:
        with pytest.raises(MessageTooLarge, match=r"more than max_objects \(300\) values"):
            for part in parts:
                decoder.feed(part)
    else:
        out = [m for part in parts for m in decoder.feed(part)]
        assert out == [Request(1, "m", [[[]] * (most - 6)])]


def test_array_bomb_fails_before_building_anything() -> None:
    # 0xdd + 16 M + 0x90 x 16 M: 16 MiB that would become 16 M lists (1.2 GiB).
    count = 16 * 1024 * 1024
    bomb = b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count
    decoder = Decoder(max_message_size=len(bomb), max_objects=1000)
    with pytest.raises(MessageTooLarge, match="max_objects"):
        decoder.feed(bomb)
    with pytest.raises(MessageTooLarge, match="already failed"):
        decoder.feed(b"\x90")


def test_idle_decoder_holds_no_buffer() -> None:
    decoder = Decoder()
    wire = encode_request(1, "m", [b"x" * 100_000])
    assert decoder.feed(wire[:50_000]) == []
    assert decoder._scanner is not None and decoder.buffered == 50_000
    assert decoder.feed(wire[50_000:]) == [Request(1, "m", [b"x" * 100_000])]
    assert decoder._scanner is None and decoder.buffered == 0
    assert decoder.feed(wire + wire) == [Request(1, "m", [b"x" * 100_000])] * 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_max_objects_must_be_a_positive_int(bad) -> None:
    with pytest.raises(ValueError, match="max_objects"):
        Decoder(max_objects=bad)  # type: ignore[arg-type]


def _count_values(obj) -> int:
    if isinstance(obj, list):
        return 1 + sum(_count_values(v) for v in obj)
    if isinstance(obj, dict):
        return 1 + sum(_count_values(k) + _count_values(v) for k, v in obj.items())
    return 1


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=40) | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=10),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None)
@given(_values, st.integers(1, 64))
def test_walker_counts_every_value_and_finds_the_end(value, cut) -> None:
    from dhaga.codecs._msgpack_rpc_decoder import _walk

    wire = msgpack.packb(value, use_bin_type=True)
    assert _walk(wire, 0, len(wire), 1, 0, 10**9) == (len(wire), 0, _count_values(value))
    # Walked in two steps (the first stopping anywhere), it gives the same answer.
    pos, owed, count = _walk(wire, 0, min(cut, len(wire)), 1, 0, 10**9)
    assert _walk(wire, pos, len(wire), owed, count, 10**9) == (
        len(wire), 0, _count_values(value))
