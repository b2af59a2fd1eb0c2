"""Running the emulator: as a real HTTP server (werkzeug), or in process behind an httpx transport."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

import httpx
from werkzeug.serving import (
    LISTEN_QUEUE,
    BaseWSGIServer,
    WSGIRequestHandler,
    get_sockaddr,
    make_server,
    select_address_family,
)

from reconciler.emulator.app import RAW_HEADERS, ConnectionLost, EmulatorApp, Environ, StartResponse
from reconciler.emulator.errors import EmulatorError


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, also passing the headers as sent: it drops names with `_`, such as `client_id`."""

    def make_environ(self) -> Environ:
        environ: Environ = super().make_environ()
        environ[RAW_HEADERS] = list(self.headers.items())
        return environ

    def send_response(self, code: int, message: str | None = None) -> None:
        """As http.server's, without its Date header: the app sends its own, from its clock (which may be set
        off, to play a server whose clock is wrong), so that both transports carry the same one."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())


class InProcessTransport(httpx.BaseTransport):
    """Serves requests from the app in this process; a lost response becomes the error a socket gives."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raw = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]

        def with_raw_headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
            environ[RAW_HEADERS] = raw
            return self.app(environ, start_response)

        try:
            return httpx.WSGITransport(app=with_raw_headers).handle_request(request)
        except ConnectionLost as e:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from e


def address_of(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets (as a URL writes it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_of(host: str, port: int) -> str:
    return f"http://{address_of(host, port)}"


def start_server(app: EmulatorApp, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded server bound and listening (not yet serving); `.port` is the real port. An address that cannot
    be listened on (taken, not this machine's) is an EmulatorError: werkzeug, binding itself, would print its
    message bare and leave the process."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    family = select_address_family(host, port)
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as socketserver does
        listening.bind(get_sockaddr(host, port, family))
        listening.listen(LISTEN_QUEUE)
    except (OSError, ValueError) as e:
        listening.close()
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise EmulatorError(f"cannot listen on {address_of(host, port)}: {why}") from None
    with listening:  # the server listens on a copy of it
        return make_server(host, port, app, threaded=True, request_handler=_RequestHandler, fd=listening.fileno())


class BackgroundServer:
    """The emulator served from a thread, for tests and in-process tools; a context manager."""

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.server = start_server(app, host, port)
        self.url = url_of(host, self.server.port)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def serve_forever(app: EmulatorApp, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM or Ctrl-C; `announce` receives the URL once connections are accepted."""
    server = start_server(app, host, port)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        announce(url_of(host, server.port))
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
