"""Codec micro-benchmark: our protobuf codec against Google's protobuf (upb), per message.

Our codec (``framework/_protocol``) is pure Python driven by field tables; protobuf's
generated classes parse in C (the upb backend). This measures what that difference costs on
realistic journals, with no HTTP, no server and no handler involved:

* ``replay``: the journal ``bench/replay.py`` sends, ``Start`` + ``Input`` + N x (``Run``
  command + its ``RunCompletionNotification``);
* ``state``: a state-heavy journal, ``Start`` carrying S eager state entries, ``Input``, then
  N x (``GetEagerState`` command with its value + ``SetState`` command), a ``GetEagerStateKeys``
  listing every key, and a few ``ClearState``.

For each journal, best of several rounds, divided by the number of messages:

* framing only: ``FrameDecoder`` splitting the byte stream into frames (both paths need it);
* decode, upb parse only: our ``decode_message`` per frame against ``FromString`` of the class
  protoc generates from ``tests/protocol/restate_protocol.proto``. upb parses into C memory
  and creates Python objects only when a field is read, so this row flatters it;
* decode + read every field: ours unchanged (it builds every field up front anyway), upb
  followed by reading each field by attribute, which is what code using the data pays;
* whole journal: ``FrameDecoder`` + decode + read, end to end, as an SDK consumes a request;
* encode: our ``encode_frame`` against ``SerializeToString`` plus the 8-byte frame header.

Then the decode + read cost per message type, to show which shapes cost us most.

Before timing, every frame is checked to read to the same values and re-encode to the same
bytes in both codecs, so both sides provably do the same work. The garbage collector is off
while timing (as ``timeit`` does): a collection is triggered by allocations anywhere in the
process, so one side's garbage would otherwise be billed to the other.

Run: ``.venv/bin/python bench/decode.py`` (about 15 seconds; ``--help`` for the knobs).
Needs ``protobuf`` and ``grpcio-tools`` (the test extra): the .proto is compiled on each run.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ratio, table
from bench.replay import build_journal as build_replay_journal
from framework._protocol import (
    MESSAGE_TYPES,
    ClearStateCommandMessage,
    FrameDecoder,
    GetEagerStateCommandMessage,
    GetEagerStateKeysCommandMessage,
    InputCommandMessage,
    Message,
    SetStateCommandMessage,
    StartMessage,
    StateEntry,
    decode_message,
    encode_frame,
    encode_message,
    messages,
)

ROOT = Path(__file__).resolve().parents[1]
PROTO_FILE = ROOT / "tests" / "protocol" / "restate_protocol.proto"
PB_MODULE_NAME = "restate_protocol_pb2"
_HEADER = struct.Struct(">HHI")
_REPEATED_SCALARS = frozenset(
    {messages.KIND_REPEATED_UINT32, messages.KIND_REPEATED_STRING, messages.KIND_REPEATED_BYTES}
)

Frame = tuple[int, int, bytes]  # type id, flags, payload
Readers = dict[str, Callable[[Any], tuple[Any, ...]]]


# --- The protobuf side ---


def compile_schema(workdir: Path) -> ModuleType:
    """Compile the test suite's .proto with grpcio-tools' protoc and import the result."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("needs grpcio-tools and protobuf: .venv/bin/pip install grpcio-tools protobuf")
    args = ["grpc_tools.protoc", f"--python_out={workdir}", f"-I{PROTO_FILE.parent}"]
    if protoc.main([*args, str(PROTO_FILE)]) != 0:
        sys.exit(f"protoc could not compile {PROTO_FILE}")
    spec = importlib.util.spec_from_file_location(PB_MODULE_NAME, workdir / f"{PB_MODULE_NAME}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def protobuf_classes(pb: ModuleType) -> dict[int, Any]:
    """Frame type id -> generated class; the .proto names its messages as we do."""
    return {type_id: getattr(pb, cls.__name__) for type_id, cls in MESSAGE_TYPES.items()}


def reachable_classes() -> list[type[messages.ProtoStruct]]:
    """Every frame class and every struct nested in one, found through the field tables."""
    found: dict[str, type[messages.ProtoStruct]] = {}
    pending: list[type[messages.ProtoStruct]] = list(MESSAGE_TYPES.values())
    while pending:
        cls = pending.pop()
        if cls.__name__ in found:
            continue
        found[cls.__name__] = cls
        pending.extend(getattr(messages, f.message) for f in cls.FIELDS if f.message)
    return list(found.values())


def as_tuples(value: Any) -> Any:
    """Our struct as nested tuples and lists: the shape the field readers produce."""
    if isinstance(value, msgspec.Struct):
        return tuple(as_tuples(getattr(value, name)) for name in value.__struct_fields__)
    if isinstance(value, list):
        return [as_tuples(item) for item in value]
    return value


def field_readers() -> Readers:
    """Per class, a function reading every field of a parsed protobuf message by attribute.

    This is what code using the generated classes does: named attribute access, HasField
    where absence matters, lists materialized. The readers are generated source rather than
    a loop over descriptors, so the timing holds attribute access, not reflection overhead.
    They yield the same values our decoder puts in its structs.
    """
    source: list[str] = []
    for cls in reachable_classes():
        parts: list[str] = []
        for f in cls.FIELDS:
            attr = f"m.{f.name}"
            has = f"m.HasField({f.name!r})"
            if f.kind == messages.KIND_VALUE:
                parts.append(f"({attr}.content if {has} else None)")
            elif f.kind == messages.KIND_VOID:
                parts.append(has)
            elif f.kind == messages.KIND_STATE_KEYS:
                parts.append(f"(list({attr}.keys) if {has} else None)")
            elif f.kind == messages.KIND_MESSAGE:
                parts.append(f"(read_{f.message}({attr}) if {has} else None)")
            elif f.kind == messages.KIND_REPEATED_MESSAGE:
                parts.append(f"[read_{f.message}(x) for x in {attr}]")
            elif f.kind in _REPEATED_SCALARS:
                parts.append(f"list({attr})")
            elif f.optional or f.oneof is not None:
                parts.append(f"({attr} if {has} else None)")
            else:
                parts.append(attr)
        body = ", ".join(parts)
        source.append(f"def read_{cls.__name__}(m):\n    return ({body}{',' if parts else ''})\n")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(source), "<field readers>", "exec"), namespace)
    return {name[len("read_") :]: fn for name, fn in namespace.items() if name.startswith("read_")}


# --- Journals ---


def state_journal(n: int, entries: int) -> bytes:
    """Start with ``entries`` eager state entries, then n eager reads and n writes."""

    def key(i: int) -> bytes:
        return f"user-{i % entries:05d}/profile".encode()

    def value(i: int) -> bytes:
        record = {"id": i, "name": f"customer {i}", "tags": ["a", "b"], "balance": i * 1.25}
        return msgspec.json.encode(record)

    start = StartMessage(
        id=bytes(range(16)),
        debug_id="inv_bench_state",
        known_entries=2 + 2 * n + 1 + 5,
        state_map=[StateEntry(key=key(i), value=value(i)) for i in range(entries)],
        key="customer-42",
        random_seed=11,
    )
    entries_out: list[Message] = [start, InputCommandMessage(value=msgspec.json.encode(n))]
    for i in range(n):
        entries_out.append(GetEagerStateCommandMessage(key=key(i), value=value(i), name="get"))
        entries_out.append(SetStateCommandMessage(key=key(i), value=value(i + 1), name="set"))
    entries_out.append(GetEagerStateKeysCommandMessage(value=[key(i) for i in range(entries)]))
    entries_out.extend(ClearStateCommandMessage(key=key(i)) for i in range(5))
    return b"".join(encode_frame(m) for m in entries_out)


def split_frames(journal: bytes) -> list[Frame]:
    decoder = FrameDecoder()
    decoder.feed(journal)
    frames: list[Frame] = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    decoder.close()
    return frames


def check_equivalence(frames: list[Frame], classes: dict[int, Any], readers: Readers) -> None:
    """Fail unless both codecs read every frame to the same values and the same bytes."""
    for index, (type_id, _flags, payload) in enumerate(frames):
        ours = decode_message(type_id, payload)
        theirs = classes[type_id].FromString(payload)
        same_values = readers[type(ours).__name__](theirs) == as_tuples(ours)
        same_bytes = encode_message(ours) == theirs.SerializeToString() == payload
        if not (same_values and same_bytes):
            sys.exit(f"frame {index} (type 0x{type_id:04X}) reads differently in the two codecs")


# --- Timing ---


def best_per_call(fn: Callable[[], object], rounds: int, min_time: float) -> float:
    """Seconds per call of ``fn``: the fastest round, each round long enough to time well.

    The minimum over rounds, not the mean: on a shared machine noise only ever adds time.
    """
    loops = 1
    while True:  # calibrate: grow the loop count until one round lasts min_time
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed >= min_time:
            break
        loops *= 2 if elapsed < min_time / 4 else 1 + int(min_time / max(elapsed, 1e-9))
    best = elapsed / loops
    gc_was_on = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(loops):
                fn()
            best = min(best, (time.perf_counter() - started) / loops)
    finally:
        if gc_was_on:
            gc.enable()
    return best


def measure(
    label: str,
    journal: bytes,
    classes: dict[int, Any],
    readers: Readers,
    rounds: int,
    min_time: float,
) -> None:
    """Time framing, decoding and encoding of one journal both ways; print µs per message."""
    frames = split_frames(journal)
    check_equivalence(frames, classes, readers)
    count = len(frames)
    ours_messages = [decode_message(t, p) for t, _f, p in frames]
    pb_messages = [(t, classes[t].FromString(p)) for t, _f, p in frames]
    ours_frames = [(t, p) for t, _f, p in frames]
    # Resolve class and reader per frame up front, as ours resolves its class by type id
    # inside decode_message: each side pays for one lookup per message.
    upb_frames = [
        (classes[t].FromString, readers[MESSAGE_TYPES[t].__name__], p) for t, _f, p in frames
    ]
    upb_by_type = {t: (classes[t].FromString, readers[MESSAGE_TYPES[t].__name__]) for t in classes}

    def framing() -> None:
        decoder = FrameDecoder()
        decoder.feed(journal)
        while decoder.next_frame() is not None:
            pass

    def ours_decode() -> None:
        for type_id, payload in ours_frames:
            decode_message(type_id, payload)

    def upb_parse_only() -> None:
        for parse, _read, payload in upb_frames:
            parse(payload)

    def upb_decode() -> None:
        for parse, read, payload in upb_frames:
            read(parse(payload))

    def ours_journal() -> None:
        decoder = FrameDecoder()
        decoder.feed(journal)
        for _message in decoder.decode_messages():
            pass

    def upb_journal() -> None:
        decoder = FrameDecoder()
        decoder.feed(journal)
        while (frame := decoder.next_frame()) is not None:
            parse, read = upb_by_type[frame[0]]
            read(parse(frame[2]))

    def ours_encode() -> bytes:
        return b"".join([encode_frame(m) for m in ours_messages])

    def upb_encode() -> bytes:
        out = []
        for type_id, message in pb_messages:
            body = message.SerializeToString()
            out.append(_HEADER.pack(type_id, 0, len(body)))
            out.append(body)
        return b"".join(out)

    if not ours_encode() == upb_encode() == journal:
        sys.exit(f"{label}: the two encoders disagree on the journal's bytes")

    def us(fn: Callable[[], object]) -> float:
        return best_per_call(fn, rounds, min_time) / count * 1e6

    decode_us = us(ours_decode)  # ours has no lazy mode: the same number serves both rows
    rows: list[list[object]] = [["framing only (FrameDecoder)", f"{us(framing):.3f}", "-", "-"]]
    for name, ours_us, upb_us in (
        ("decode, upb parse only (lazy)", decode_us, us(upb_parse_only)),
        ("decode + read every field", decode_us, us(upb_decode)),
        ("whole journal: framing + decode + read", us(ours_journal), us(upb_journal)),
        ("encode: frame header + body", us(ours_encode), us(upb_encode)),
    ):
        rows.append([name, f"{ours_us:.3f}", f"{upb_us:.3f}", ratio(ours_us, upb_us)])
    size = len(journal) / 1024
    print(f"\n{label}: {count} messages, {size:.1f} KiB ({len(journal) / count:.0f} B/message)")
    print(table(["us per message", "ours", "upb", "ours/upb"], rows))


def by_type(
    frames: Iterable[Frame],
    classes: dict[int, Any],
    readers: Readers,
    rounds: int,
    min_time: float,
) -> None:
    """Decode (and read) cost per message type: which shapes our decoder handles worst."""
    groups: dict[int, list[bytes]] = {}
    for type_id, _flags, payload in frames:
        groups.setdefault(type_id, []).append(payload)
    rows: list[list[object]] = []
    for type_id, payloads in groups.items():
        parse = classes[type_id].FromString
        read = readers[MESSAGE_TYPES[type_id].__name__]

        def ours(payloads: list[bytes] = payloads, type_id: int = type_id) -> None:
            for payload in payloads:
                decode_message(type_id, payload)

        def upb(payloads: list[bytes] = payloads, parse: Any = parse, read: Any = read) -> None:
            for payload in payloads:
                read(parse(payload))

        ours_us = best_per_call(ours, rounds, min_time) / len(payloads) * 1e6
        upb_us = best_per_call(upb, rounds, min_time) / len(payloads) * 1e6
        mean_size = sum(map(len, payloads)) / len(payloads)
        rows.append(
            [
                MESSAGE_TYPES[type_id].__name__,
                len(payloads),
                f"{mean_size:.0f}",
                f"{ours_us:.3f}",
                f"{upb_us:.3f}",
                ratio(ours_us, upb_us),
            ]
        )
    header = ["decode + read, by type", "count", "bytes", "ours us", "upb us", "ours/upb"]
    print(table(header, rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="steps per journal (default 1000)")
    parser.add_argument("--state-entries", type=int, default=100, help="eager state entries")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds, best kept")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per round")
    args = parser.parse_args()

    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    with tempfile.TemporaryDirectory(prefix="bench-decode-") as workdir:
        pb = compile_schema(Path(workdir))
    classes = protobuf_classes(pb)
    readers = field_readers()
    print(
        f"python {platform.python_version()}, msgspec {msgspec.__version__}, "
        f"protobuf {protobuf_version} (backend: {api_implementation.Type()})"
    )
    journals = {
        f"replay journal (bench/replay.py, N={args.n})": build_replay_journal(args.n),
        f"state journal (N={args.n}, {args.state_entries} eager entries)": state_journal(
            args.n, args.state_entries
        ),
    }
    for label, journal in journals.items():
        measure(label, journal, classes, readers, args.rounds, args.min_time)
        by_type(
            split_frames(journal), classes, readers, max(3, args.rounds // 2), args.min_time / 2
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
