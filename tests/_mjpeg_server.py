"""A real MJPEG-over-HTTP network camera for tests, served on 127.0.0.1.

It speaks what IP cameras speak: `GET /stream.mjpg` answers `multipart/x-mixed-replace` with one JPEG per
part, at a fixed frame rate, until the client leaves. The test can then misbehave like a real camera:

- `drop()`   closes every open connection (a camera that reboots: new connections still work),
- `kill()`   closes every connection and stops listening (a camera that is gone: connections are refused),
- `stall()`  keeps connections open but stops sending (a wedged camera or a dead Wi-Fi link),
- `resume()` sends again after a stall.

Everything is bounded: each client loop ends after `max_seconds`, and `close()` ends the server.
Run it by hand with `python tests/_mjpeg_server.py --port 8080` to point `edgevision classify` at it.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional, Sequence

BOUNDARY = "edgevisionframe"


def jpeg_frames(frames_bgr: Sequence, quality: int = 85) -> List[bytes]:
    """Encode BGR frames once, so the server loop only sends bytes."""
    import cv2

    out = []
    for frame in frames_bgr:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("could not encode a test frame as JPEG")
        out.append(buf.tobytes())
    return out


class MJPEGServer:
    """Serve `jpegs` in a loop at `fps` on http://127.0.0.1:<port>/stream.mjpg, in background threads."""

    def __init__(self, jpegs: Sequence[bytes], fps: float = 30.0, port: int = 0, max_seconds: float = 60.0):
        if not jpegs:
            raise ValueError("need at least one JPEG frame")
        self.jpegs = list(jpegs)
        self.fps = float(fps)
        self.max_seconds = float(max_seconds)
        self.frames_sent = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._generation = 0  # bumped by drop()/kill(): client loops of older generations end
        self._sending = threading.Event()
        self._sending.set()
        self._closed = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "MJPEGServer":
        self._thread.start()
        return self

    def __enter__(self) -> "MJPEGServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def drop(self) -> None:
        """Close every open stream; the server keeps accepting new ones."""
        with self._lock:
            self._generation += 1
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            _hard_close(s)

    def kill(self) -> None:
        """Go away like an unplugged camera: drop every stream and refuse new connections."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self.drop()

    def stall(self) -> None:
        """Stop sending without closing anything (the client's read blocks)."""
        self._sending.clear()

    def resume(self) -> None:
        self._sending.set()

    def close(self) -> None:
        self._closed.set()
        self._sending.set()
        self.kill()

    # --- serving ------------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path.split("?")[0] != "/stream.mjpg":
                    self.send_error(404)
                    return
                server._serve_stream(self)

        return Handler

    def _serve_stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            generation = self._generation
            self._sockets.append(handler.connection)
            self.connections += 1
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        period = 1.0 / self.fps
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        try:
            for jpeg in itertools.cycle(self.jpegs):
                while not self._sending.is_set():  # stalled: hold the connection open, send nothing
                    if self._closed.is_set() or time.monotonic() > deadline or generation != self._generation:
                        return
                    self._sending.wait(0.05)
                if self._closed.is_set() or time.monotonic() > deadline or generation != self._generation:
                    return
                part = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg
                    + b"\r\n"
                )
                handler.wfile.write(part)
                handler.wfile.flush()
                with self._lock:
                    self.frames_sent += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, OSError):
            return  # the client left, or drop() closed the socket under us
        finally:
            with self._lock:
                if handler.connection in self._sockets:
                    self._sockets.remove(handler.connection)


def _hard_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def main(argv: Optional[Sequence[str]] = None) -> None:
    import cv2
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--image", help="image to stream (default: a moving gradient)")
    p.add_argument("--seconds", type=float, default=600.0)
    args = p.parse_args(argv)
    if args.image:
        frames = [cv2.imread(args.image)]
    else:
        base = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
        frames = [cv2.merge([np.roll(base, 16 * i, axis=1)] * 3) for i in range(40)]
    with MJPEGServer(jpeg_frames(frames), fps=args.fps, port=args.port, max_seconds=args.seconds) as server:
        print(f"serving {server.url} for {args.seconds:.0f} s", flush=True)
        time.sleep(args.seconds)


if __name__ == "__main__":
    main()
