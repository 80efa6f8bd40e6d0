"""ovtrio._patches: nothing is patched at import, install() patches (once), pins are exact."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from ovtrio._patches import PINS, PinError, check_pin
from tests.e2e.conftest import run_on_busy_rest_port

ROOT = Path(__file__).resolve().parents[1]

_PATCHED = textwrap.dedent(
    """
    import h11, h11._readers
    import hypercorn.config, hypercorn.protocol.h11, hypercorn.trio.task_group, hypercorn.trio.tcp_server
    import grpclib.server, grpclib.utils, hyperframe.flags, hyperframe.frame, hpack.hpack, hpack.table

    def patched():
        h11p = hypercorn.protocol.h11.H11Protocol
        tcp = hypercorn.trio.tcp_server
        return {
            "TCPServer._close": tcp.TCPServer._close,
            "TCPServer._read_data": tcp.TCPServer._read_data,
            "TCPServer.run": tcp.TCPServer.run,
            "TCPServer.protocol_send": tcp.TCPServer.protocol_send,
            "MAX_RECV": tcp.MAX_RECV,
            "TaskGroup.spawn_app": hypercorn.trio.task_group.TaskGroup.spawn_app,
            "H11Protocol._create_stream": h11p._create_stream,
            "H11Protocol._send_h11_event": h11p._send_h11_event,
            "H11Protocol.stream_send": h11p.stream_send,
            "Config.response_headers": hypercorn.config.Config.response_headers,
            "READERS[CLIENT, IDLE]": h11._readers.READERS[h11.CLIENT, h11.IDLE],
            "Handler.accept": grpclib.server.Handler.accept,
            "DeadlineWrapper.start": grpclib.utils.DeadlineWrapper.start,
            "request_handler": grpclib.server.request_handler,
            "_abort": grpclib.server._abort,
            "grpclib.protocol.H2Connection": grpclib.protocol.H2Connection,
            "Frame.__repr__": hyperframe.frame.Frame.__repr__,
            "_raw_data_repr": hyperframe.frame._raw_data_repr,
            "Flags.__init__": hyperframe.flags.Flags.__init__,
            "Decoder.decode": hpack.hpack.Decoder.decode,
            "Encoder.encode": hpack.hpack.Encoder.encode,
            "HeaderTable.add": hpack.table.HeaderTable.add,
            "HeaderTable.maxsize": hpack.table.HeaderTable.__dict__["maxsize"],
        }

    original = patched()
    """
)
INSTALLED = {
    "TCPServer._close",
    "TCPServer._read_data",
    "TCPServer.protocol_send",
    "MAX_RECV",
    "TaskGroup.spawn_app",
    "H11Protocol._create_stream",
    "H11Protocol._send_h11_event",
    "H11Protocol.stream_send",
    "Config.response_headers",
    "READERS[CLIENT, IDLE]",
    "Frame.__repr__",
    "_raw_data_repr",
    "Flags.__init__",
    "Decoder.decode",
    "Encoder.encode",
    "HeaderTable.add",
    "HeaderTable.maxsize",
}
"""What ``install()`` replaces; the rest of ``patched()`` stays the library's own."""


def _run(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _PATCHED + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_importing_ovtrio_patches_nothing() -> None:
    out = _run(
        """
        import importlib, pkgutil
        import ovtrio, ovtrio.codecs, ovtrio.grpc, ovtrio.rest, ovtrio.server, ovtrio._patches
        for package in (ovtrio.codecs, ovtrio.grpc, ovtrio.rest):
            for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
                importlib.import_module(info.name)
        import ovtrio.rest._server, ovtrio.grpc._server, ovtrio.grpc._bridge
        now = patched()
        print(sorted(name for name in original if now[name] is not original[name]))
        """
    )
    assert out.strip() == "[]"


def test_install_patches_once() -> None:
    out = _run(
        """
        from ovtrio import _patches
        _patches.install()
        first = patched()
        _patches.install()
        again = patched()
        print(sorted(name for name in original if first[name] is not original[name]))
        print(sorted(name for name in original if again[name] is not first[name]))
        """
    )
    changed, changed_again = out.strip().splitlines()
    assert changed == str(sorted(INSTALLED))
    assert changed_again == "[]"


def test_a_version_other_than_the_pin_is_refused() -> None:
    installed = PINS["h11"]
    with pytest.raises(PinError) as info:
        check_pin("h11", {"h11": "0.0.1"})
    assert str(info.value) == (
        f"h11 {installed} is installed, but ovtrio patches its internals and needs exactly "
        "h11==0.0.1"
    )
    for library in PINS:
        check_pin(library)


def test_the_server_exits_1_naming_the_library(tmp_path: Path) -> None:
    script = (
        "import sys; from ovtrio._patches import _pins; _pins.PINS['h2'] = '0.0.1'; "
        "from ovtrio.cli import main; main(sys.argv[1:])"
    )
    # the REST port is taken: if the pin were not checked first, the bind would fail instead
    proc = run_on_busy_rest_port(tmp_path, ["-c", script])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"h2 {PINS['h2']} is installed" in proc.stderr
    assert "needs exactly h2==0.0.1" in proc.stderr


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, sep, pinned = requirement.partition("==")
        if sep:
            pins[name.strip().lower()] = pinned.strip()
    return pins


def test_pyproject_pins_every_patched_library_exactly_as_patches_do() -> None:
    declared = _pyproject_pins()
    assert {name: declared.get(name) for name in PINS} == dict(PINS)


def test_hpack_memo_answers_as_hpack_does() -> None:
    """The same blocks through a patched decoder and an unpatched one (the original decode
    on a second decoder): equal answers, also when a repeated block's indexes point at new
    table entries."""
    out = _run(
        """
        import hpack
        from ovtrio import _patches
        from ovtrio._patches import hpack as memo
        _patches.install()
        plain = hpack.Decoder()
        patched = hpack.Decoder()
        unpatched = lambda data: memo._originals["decode"](plain, data, True)
        enc = hpack.Encoder()
        first = [(":path", "/a/B"), ("content-type", "application/grpc"), ("te", "trailers")]
        blocks = [enc.encode(first), enc.encode(first), enc.encode(first)]
        blocks += [bytes([0x40 | 0, 1]) + b"x" + bytes([1]) + b"1", b"\\xbe"]  # x: 1, then index 62
        blocks += [bytes([0x40 | 0, 1]) + b"x" + bytes([1]) + b"2", b"\\xbe", b"\\xbe"]
        for block in blocks:
            assert patched.decode(block, raw=True) == unpatched(block), block
        print(len(memo._blocks[patched]), [h for h in patched.decode(b"\\xbe", raw=True)])
        """
    )
    remembered, last = out.strip().split(" ", 1)
    assert int(remembered) >= 2  # the repeated all-indexed blocks were remembered
    assert last == "[(b'x', b'2')]"  # index 62 after the second insertion: the new entry


def test_hpack_encoder_memo_answers_as_hpack_does() -> None:
    """The same header lists through a patched encoder and an unpatched one: the same bytes,
    also after a new header changed the table and for never-indexed headers."""
    out = _run(
        """
        import hpack
        from ovtrio import _patches
        from ovtrio._patches import hpack as memo
        _patches.install()
        patched, plain = hpack.Encoder(), hpack.Encoder()
        unpatched = lambda headers: memo._originals["encode"](plain, headers, True)
        reply = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        trailers = [(b"grpc-status", b"0")]
        secret = [hpack.NeverIndexedHeaderTuple(b"authorization", b"Bearer x")]
        lists = [reply, trailers, reply, trailers, secret, secret, reply,
                 [(b"x-new", b"1")], reply, trailers, reply]
        for headers in lists:
            assert patched.encode(list(headers)) == unpatched(list(headers)), headers
        patched.header_table_size = 0  # a size change: not remembered past it
        plain.header_table_size = 0
        for headers in (reply, reply):
            assert patched.encode(list(headers)) == unpatched(list(headers)), headers
        print(len(memo._encoded[patched]))
        """
    )
    assert int(out.strip()) >= 1


def test_response_headers_once_per_second_are_hypercorn_s() -> None:
    """The cached date and server headers: hypercorn's own, a fresh list per answer, and a
    date of this second (or the next, should the second turn between the calls)."""
    out = _run(
        """
        import email.utils, time
        from hypercorn.config import Config
        from ovtrio import _patches
        config = Config()
        theirs = Config.response_headers(config, "h11")
        _patches.install()
        ours, again = config.response_headers("h11"), config.response_headers("h11")
        print(ours is not again, [n for n, _ in ours] == [n for n, _ in theirs])
        print(dict(ours)[b"server"] == b"hypercorn-h11", dict(config.response_headers("h2"))[b"server"])
        stamp = email.utils.parsedate_to_datetime(dict(ours)[b"date"].decode()).timestamp()
        print(0 <= time.time() - stamp < 2)
        """
    )
    assert out.split() == ["True", "True", "True", "b'hypercorn-h2'", "True"]
