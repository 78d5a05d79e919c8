"""The HTTP side of a network-boot lab: iPXE scripts, boot files, the payload, and the clock.

One server serves every client of ``romlab boot``, ``romlab bench firmware`` and
``romlab serve``:

* ``/boot.ipxe`` and ``/next?mac=..&chip=..`` are iPXE scripts written per request by a
  *planner* (the caller decides what a client with that MAC and that driver does next);
* ``/file/NAME`` serves the files the caller registered (undionly.kpxe, ipxe.pxe, a script);
* ``/payload/ID`` sends the payload and ``/done/ID`` marks it received. A transfer is timed
  here, on the server, from the moment the payload request arrives to the moment the done
  request arrives; the client's script asks for ``/done/ID`` only after ``imgfetch``
  succeeded, so the time covers the bytes reaching the client, not just leaving this
  host's socket buffers (which hold megabytes);
* ``/fail/ID?errno=..`` and ``/status/WORD`` carry what a script has to say.

Every request is also kept in :attr:`LabHttp.hits` so callers and tests can read the
facts (who asked for what, with which driver) from the server's side.
"""
from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hw.errors import LabError
from romlab.lab.netns import in_netns

CHUNK = 256 * 1024


@dataclass
class Hit:
    t: float  # time.monotonic()
    client: str
    path: str
    query: dict[str, str]
    status: int = 200
    sent: int = 0


@dataclass
class Transfer:
    ident: str
    client: str
    size: int
    start: float
    sent: int = 0
    sent_all_at: float | None = None  # the last byte went into the socket
    done_at: float | None = None  # the client said it has them all
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.sent == self.size and self.done_at is not None and self.error is None

    @property
    def seconds(self) -> float | None:
        return None if self.done_at is None else self.done_at - self.start


@dataclass
class ScriptRequest:
    """What a client told us when it asked for its next script."""
    name: str  # "boot.ipxe" or "next"
    client: str
    base: str  # http://HOST:PORT as the client addressed us
    query: dict[str, str]

    @property
    def mac(self) -> str:
        return self.query.get("mac", "").lower()

    @property
    def chip(self) -> str:
        return self.query.get("chip", "")


def first_script(base: str) -> str:
    """The script every client gets first: it comes back saying which MAC and driver it runs.

    The URL is absolute: iPXE would read ``next?mac=52:...`` as a URI with scheme ``next?mac=52``.
    """
    return ("#!ipxe\n"
            f"chain {base}/next?mac=${{netX/mac}}&chip=${{netX/chip}}&busid=${{netX/busid}}&ip=${{netX/ip}} ||\n")


class _Handler(BaseHTTPRequestHandler):
    server_version = "romlab"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the lab reports through its own records
        pass

    def do_GET(self):  # noqa: N802
        lab: LabHttp = self.server.lab
        now = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = url.path
        client = self.client_address[0]
        hit = Hit(now, client, path, query)
        try:
            if path == "/boot.ipxe" or path == "/next":
                host = self.headers.get("Host") or f"{lab.address[0]}:{lab.address[1]}"
                req = ScriptRequest(path.strip("/"), client, f"http://{host}", query)
                text = lab.planner(req) if lab.planner else None
                if text is None:
                    self._send(404, b"no script for this client\n", hit)
                else:
                    self._send(200, text.encode(), hit, ctype="text/plain")
            elif path.startswith("/file/"):
                name = path[len("/file/"):]
                src = lab.files.get(name)
                if src is None:
                    self._send(404, b"no such file\n", hit)
                else:
                    with open(src, "rb") as f:
                        self._send(200, f.read(), hit)
            elif path.startswith("/payload/") and lab.payload is not None:
                self._payload(path[len("/payload/"):], client, now, hit)
            elif path.startswith("/done/"):
                lab._done(path[len("/done/"):], now)
                self._send(200, b"ok\n", hit)
            elif path.startswith("/fail/"):
                lab._fail(path[len("/fail/"):], query, client, now)
                self._send(200, b"noted\n", hit)
            elif path.startswith("/status/"):
                self._send(200, b"noted\n", hit)
            else:
                self._send(404, b"not found\n", hit)
        finally:
            lab._record(hit)

    def _send(self, status: int, body: bytes, hit: Hit, ctype: str = "application/octet-stream") -> None:
        hit.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
            hit.sent = len(body)
        except OSError:
            self.close_connection = True

    def _payload(self, ident: str, client: str, start: float, hit: Hit) -> None:
        lab: LabHttp = self.server.lab
        data = lab.payload
        tr = Transfer(ident, client, len(data), start)
        with lab.lock:
            lab.transfers[ident] = tr
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        view = memoryview(data)
        try:
            for off in range(0, len(data), CHUNK):
                n = self.wfile.write(view[off:off + CHUNK])
                tr.sent += len(view[off:off + CHUNK]) if n is None else n
            tr.sent_all_at = time.monotonic()
        except OSError as exc:
            tr.error = f"connection lost after {tr.sent} of {len(data)} bytes: {exc.strerror or exc}"
            self.close_connection = True
        hit.sent = tr.sent
        hit.status = 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that resets its connection (a guest that reboots mid-request) is not
        # romlab's error; what matters is recorded in the hits and transfers.
        pass


class LabHttp:
    """A threaded HTTP server on ``sock`` (already bound, possibly inside a network namespace)."""

    def __init__(self, sock: socket.socket | None = None, *, host: str = "127.0.0.1",
                 payload: bytes | None = None, files: dict[str, str] | None = None, planner=None,
                 on_hit=None):
        self.payload = payload
        self.files = dict(files or {})
        self.planner = planner
        self.on_hit = on_hit
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.transfers: dict[str, Transfer] = {}
        self.failures: list[dict] = []
        self._httpd = _Server((host, 0), _Handler, bind_and_activate=sock is None)
        if sock is not None:
            self._httpd.socket.close()
            self._httpd.socket = sock
            self._httpd.server_address = sock.getsockname()
            sock.listen(16)
        self._httpd.daemon_threads = True
        self._httpd.lab = self
        self.address = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="romlab-http", daemon=True)

    def start(self) -> "LabHttp":
        self._thread.start()
        return self

    def url(self, host: str | None = None) -> str:
        return f"http://{host or self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> "LabHttp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records ----------------------------------------------------------
    def _record(self, hit: Hit) -> None:
        with self.lock:
            self.hits.append(hit)
        if self.on_hit:
            self.on_hit(hit)

    def _done(self, ident: str, now: float) -> None:
        with self.lock:
            tr = self.transfers.get(ident)
            if tr is not None and tr.done_at is None:
                tr.done_at = now

    def _fail(self, ident: str, query: dict, client: str, now: float) -> None:
        with self.lock:
            self.failures.append({"ident": ident, "client": client, "t": now, **query})

    def requested(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def requested_with(self, path: str, **query: str) -> list[Hit]:
        """Requests for ``path`` whose query carried all of ``query``."""
        return [h for h in self.requested(path) if all(h.query.get(k) == v for k, v in query.items())]


def payload_bytes(size: int, seed: int = 0x524F4D) -> bytes:
    """``size`` pseudo-random bytes: nothing on the way can shrink them, and a run can repeat them."""
    import random

    return random.Random(seed).randbytes(size)


def bind_socket(address: str, port: int = 0, netns: str | None = None) -> socket.socket:
    """A TCP socket bound to ``address:port``, created inside network namespace ``netns`` if given.

    Only the calling thread enters the namespace, and only while the socket is made; the
    socket stays in the namespace it was created in.
    """
    if netns is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        return s
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
    return s


def human_size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:g} {unit}"
    return f"{n} B"


def parse_size(text: str) -> int:
    """``16M``, ``2MiB``, ``512K``, ``1000000`` -> bytes (K/M/G are binary)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = 1
    if t and t[-1] in "KMG":
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[t[-1]]
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise LabError(f"{text!r} is not a size; write it like 16M, 512K or 2097152") from None
    n = int(value * mult)
    if n <= 0:
        raise LabError(f"size {text!r} must be more than 0 bytes")
    return n
