"""grpclib's protocol as ovtrio runs it: limits, first SETTINGS, drain-then-close.

* ``--max_connections``: a connection beyond the limit is closed at once (``_Refuse``).
* The first SETTINGS frame carries ovtrio's stream limit (``--grpc_max_concurrent_streams``)
  and 1 MiB frames (``_H2Connection``, made by ``_H2Protocol``). Announced in a second
  frame instead, after h2's default of 100 streams, a grpcio client that queued its calls
  meanwhile could open none of them on that connection (16 calls over a limit of 4 hung in
  ~1 of 50 tries, tests/e2e/test_security.py). Frames of 1 MiB instead of 16 KiB cut the
  per-frame Python work of a 600 KB tensor ~35x (+15 % req/s, MobileNet over gRPC, 4
  clients).
* Listening, and the sockets, are trio's (``_bridge``, ``_hosted``); the calls are trio tasks
  (``_unary``); this module is the protocol side: ``_protocol_factory`` per accepted
  connection (grpclib's ``H2Protocol`` with a ``_unary.ConnectionCalls`` handler) and
  ``close_connections``, which ends the calls still
  running, sends GOAWAY on every connection and closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import grpclib.config
import grpclib.protocol
import h2.config
import h2.connection
import h2.settings

from .._patches.grpclib import CallConnection, CallEventsProcessor
from .._patches.h2 import FrameLanes

if TYPE_CHECKING:
    from ._unary import Calls, ConnectionCalls

__all__ = ["DEFAULT_MAX_STREAMS", "Server"]

log = logging.getLogger(__name__)

DEFAULT_MAX_STREAMS = 100
"""h2's default stream limit, and ovtrio's when none is configured."""
_MAX_FRAME_SIZE = 1 << 20
_WALK_ABOVE = 256
"""Streams held (open or closed) beyond which h2 counts the open ones for a new stream."""


class _Refuse(asyncio.Protocol):
    """Closes a connection beyond --max_connections at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _H2Connection(FrameLanes):
    """h2's server connection whose first SETTINGS frame carries ``settings``.

    Values of the first frame apply at once, as h2 applies its own defaults.
    """

    def __init__(
        self, config: h2.config.H2Configuration, settings: Mapping[h2.settings.SettingCodes, int]
    ) -> None:
        super().__init__(config=config)
        self.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: DEFAULT_MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.DEFAULT_MAX_HEADER_LIST_SIZE,
                **settings,
            },
        )
        self.max_inbound_frame_size = self.local_settings.max_frame_size
        self.incoming_buffer.max_frame_size = self.max_inbound_frame_size

    @property
    def open_inbound_streams(self) -> int:
        """At most the number of streams h2 holds while that is below the stream limit (and
        ``_WALK_ABOVE``), else h2's count.

        h2 reads this only to refuse a new stream beyond ``MAX_CONCURRENT_STREAMS``, and its
        count walks every stream of the connection (dropping the closed ones) for each new
        stream: ~5 % of the gRPC thread's samples at 64 calls on one connection (py-spy).
        While fewer streams than the limit are held, the new one fits whatever the count; the
        closed ones are dropped by the next walk, so at most ``_WALK_ABOVE`` linger.
        """
        held = len(self.streams)
        if held < min(self.local_settings.max_concurrent_streams, _WALK_ABOVE):
            return held
        return super().open_inbound_streams


class _H2Protocol(grpclib.protocol.H2Protocol):
    """grpclib's protocol with ``_H2Connection``'s first SETTINGS.

    ``connection_made`` is grpclib's, except for the connection class;
    ``on_lost`` is called with the protocol when its connection is lost.
    """

    def __init__(
        self,
        handler: grpclib.protocol.AbstractHandler,
        config: grpclib.config.Configuration,
        h2_config: h2.config.H2Configuration,
        settings: Mapping[h2.settings.SettingCodes, int],
        on_lost: Callable[[Any], None],
    ) -> None:
        super().__init__(handler, config, h2_config)
        self._settings = settings
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            grpclib.protocol._set_nodelay(sock)

        h2_conn = _H2Connection(self.h2_config, self._settings)
        h2_conn.initiate_connection()

        initial = h2_conn.local_settings.initial_window_size
        conn_delta = self.config.http2_connection_window_size - initial
        stream_delta = self.config.http2_stream_window_size - initial
        if conn_delta:
            h2_conn.increment_flow_control_window(conn_delta)
        if stream_delta:
            h2_conn.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.config.http2_stream_window_size}
            )

        self.connection = CallConnection(
            h2_conn, cast("asyncio.Transport", transport), config=self.config
        )
        self.connection.flush()
        self.connection.initialize()
        self.processor = CallEventsProcessor(self.handler, self.connection)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._on_lost(self)
        super().connection_lost(exc)


class Server:
    """The connections of one gRPC port: grpclib's protocol, ovtrio's calls (``_unary``) and
    limits, and the drain-then-close shutdown (module doc)."""

    def __init__(
        self,
        calls: Calls,
        *,
        max_connections: int = 0,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        """``max_connections`` 0 means no limit (the connections of every address of the
        port count); ``max_streams`` is announced per connection."""
        self._calls = calls
        self._config = grpclib.config.Configuration().__for_server__()
        self._h2_config = h2.config.H2Configuration(  # grpclib's server's
            client_side=False,
            header_encoding="ascii",
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_inbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._live: dict[Any, ConnectionCalls] = {}
        """The open connections' protocols -> their calls (each removes itself when lost)."""
        self._max_connections = max_connections
        self._settings = {
            h2.settings.SettingCodes.MAX_FRAME_SIZE: _MAX_FRAME_SIZE,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
        }

    def _protocol_factory(self) -> asyncio.Protocol:
        if self._max_connections and len(self._live) >= self._max_connections:
            log.warning(
                "connection refused: %d connections are open (--max_connections)", len(self._live)
            )
            return _Refuse()
        handler = self._calls.handler()
        protocol = _H2Protocol(handler, self._config, self._h2_config, self._settings, self._lost)
        self._live[protocol] = handler
        return protocol

    def _lost(self, protocol: Any) -> None:
        self._live.pop(protocol, None)

    def open_connections(self) -> int:
        return len(self._live)

    def close_connections(self) -> None:
        """End the calls still running (unanswered), then GOAWAY and close every connection."""
        for handler in self._live.values():
            handler.close()
        for protocol in list(self._live):
            conn = getattr(protocol, "connection", None)
            if conn is not None and not conn.is_closing():
                try:
                    conn._connection.close_connection()
                    conn.flush()
                finally:
                    conn._transport.close()
