"""A small forward HTTP proxy for the tests (standard library only) that
counts what passes through it.

- Absolute-URI requests ("GET http://host:port/path HTTP/1.1") for http://
  targets are forwarded to the target and the answer relayed back.
- CONNECT host:port (https:// targets) opens a tunnel and relays bytes
  both ways until either side closes.

Each request is recorded as (method, target, proxy_authorization) in
proxy.requests. With credentials=(user, password) the proxy requires Basic
proxy authentication and answers 407 otherwise.
"""

import base64
import http.client
import http.server
import select
import socket
import socketserver
import threading
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _authorized(self):
        proxy = self.server.proxy
        got = self.headers.get("Proxy-Authorization")
        proxy._record(self.command, self.path, got)
        if proxy.credentials is None:
            return True
        want = "Basic " + base64.b64encode(":".join(proxy.credentials).encode()).decode()
        if got == want:
            return True
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_CONNECT(self):
        if not self._authorized():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.close_connection = True
        socks = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()

    def _forward(self):
        if not self._authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self.send_error(400, "absolute http:// URI expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-authorization", "proxy-connection",
                                        "connection", "keep-alive")}
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        try:
            conn.request(self.command, (url.path or "/") + ("?" + url.query if url.query else ""),
                         body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            self.send_error(502)
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CountingProxy:
    """A forward proxy on host:port (0: any free port); use as a context
    manager or call start()/stop()."""

    def __init__(self, host="127.0.0.1", port=0, credentials=None):
        self.credentials = credentials
        self.requests = []
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self._thread = None

    @property
    def port(self):
        return self._server.server_address[1]

    def url(self, with_credentials=True):
        host = self._server.server_address[0]
        auth = ""
        if self.credentials and with_credentials:
            auth = ":".join(urllib.parse.quote(c, safe="") for c in self.credentials) + "@"
        return f"http://{auth}{host}:{self.port}"

    def _record(self, method, target, authorization):
        with self._lock:
            self.requests.append((method, target, authorization))

    def count(self, method=None):
        with self._lock:
            return sum(1 for m, _, _ in self.requests if method is None or m == method)

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
