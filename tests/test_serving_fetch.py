"""The opt-in media URL fetcher against real local HTTP servers: redirects, address checks, size and time caps.

The server-level SSRF probes (through `POST /v1/chat/completions`) are in test_serving_hardening.py. Here the
fetcher is also run with an address policy that admits exactly 127.0.0.1, so that a redirect from a reachable
first hop can be followed and shown to be re-checked.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openmind_hf.serving.fetch import FetchRefused, MediaFetcher, is_public_address

LOOPBACK = ipaddress.ip_address("127.0.0.1")


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def do_GET(self):
        Handler.seen.append((self.server.server_address[0], self.path, self.headers.get("Host")))
        status, headers, body = self.routes.get(self.path, (404, {}, b"missing"))
        if callable(body):
            return body(self)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(host: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers():
    first, internal = _serve("127.0.0.1"), _serve("127.0.0.2")
    yield first.server_address[1], internal.server_address[1]
    first.shutdown()
    internal.shutdown()


@pytest.fixture(autouse=True)
def routes(servers):
    first, internal = servers

    def slow(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)

    Handler.routes = {
        "/image.png": (200, {"Content-Type": "image/png"}, b"PNGDATA"),
        "/secret": (200, {}, b"INTERNAL SECRET"),
        "/to-internal": (302, {"Location": f"http://127.0.0.2:{internal}/secret"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/to-self": (301, {"Location": "/image.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/big": (200, {}, b"x" * 5000),
        "/slow": (200, {}, slow),
    }
    Handler.seen = []


def only_first_hop(address) -> bool:
    """Admits exactly 127.0.0.1, where the first test server listens; 127.0.0.2 stands in for an internal host."""
    return address == LOOPBACK


def fetcher(**kwargs) -> MediaFetcher:
    options = {"max_bytes": 1000, "timeout_s": 2.0, "address_allowed": only_first_hop, **kwargs}
    return MediaFetcher(["127.0.0.1", "127.0.0.2", "localhost"], **options)


def test_harness_reaches_both_servers(servers):
    first, internal = servers
    assert fetcher().fetch(f"http://127.0.0.1:{first}/image.png") == (b"PNGDATA", "image/png")
    # Without any address check the internal server answers: the refusals below are the checks' doing.
    open_fetcher = fetcher(address_allowed=lambda address: True)
    assert open_fetcher.fetch(f"http://127.0.0.1:{first}/to-internal")[0] == b"INTERNAL SECRET"


def test_redirect_to_a_private_address_is_refused_at_the_hop(servers):
    first, _ = servers
    with pytest.raises(FetchRefused, match="loopback, private, link-local"):
        fetcher().fetch(f"http://127.0.0.1:{first}/to-internal")
    assert all(host == "127.0.0.1" for host, _, _ in Handler.seen), "the internal server must never be contacted"


@pytest.mark.parametrize(
    "path,error",
    [
        ("/to-metadata", "not in --allowed-media-domains"),  # 169.254.169.254 is not allowed, nor public
        ("/to-file", "must be http or https"),
        ("/loop", "redirected more than 3 times"),
    ],
)
def test_every_redirect_is_checked(servers, path, error):
    with pytest.raises(FetchRefused, match=error):
        fetcher().fetch(f"http://127.0.0.1:{servers[0]}{path}")


def test_redirect_to_metadata_refused_by_address_even_when_domain_allowed(servers):
    allowing = MediaFetcher(["127.0.0.1", "169.254.169.254"], 1000, 2.0, address_allowed=only_first_hop)
    with pytest.raises(FetchRefused, match="loopback, private, link-local"):
        allowing.fetch(f"http://127.0.0.1:{servers[0]}/to-metadata")


def test_relative_redirect_is_followed_and_host_header_keeps_the_name(servers):
    first, _ = servers
    assert fetcher().fetch(f"http://127.0.0.1:{first}/to-self")[0] == b"PNGDATA"
    assert [path for _, path, _ in Handler.seen] == ["/to-self", "/image.png"]
    assert Handler.seen[0][2] == f"127.0.0.1:{first}"


def test_size_and_time_caps(servers):
    first, _ = servers
    with pytest.raises(FetchRefused, match="larger than 1000 bytes"):
        fetcher().fetch(f"http://127.0.0.1:{first}/big")
    started = time.monotonic()
    with pytest.raises(FetchRefused, match="timed out|could not be fetched"):
        fetcher(timeout_s=0.5, max_bytes=10_000).fetch(f"http://127.0.0.1:{first}/slow")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "url,error",
    [
        ("http://127.0.0.1:{port}/image.png", "loopback, private"),
        ("http://localhost:{port}/image.png", "loopback, private"),  # resolved for real: 127.0.0.1 / ::1
        ("http://[::1]:{port}/image.png", "not in --allowed"),
        ("http://169.254.169.254/latest/meta-data/", "not in --allowed"),
        ("http://10.0.0.1/x.png", "not in --allowed"),
        ("file:///etc/passwd", "must be http or https"),
        ("/etc/passwd", "must be http or https"),
        ("ftp://127.0.0.1/x", "must be http or https"),
        ("http://user:pass@127.0.0.1:{port}/image.png", "credentials"),
        ("http://127.0.0.1:{port}\\@evil.example/", "credentials or backslashes"),
        ("http://evil.example/x.png", "not in --allowed"),
        ("http://127.0.0.1.evil.example/x.png", "not in --allowed"),
        ("http://127.0.0.1:99999/x.png", "malformed"),
        ("http:///x.png", "no host"),
    ],
)
def test_default_policy_refuses_internal_targets(servers, url, error):
    strict = MediaFetcher(["127.0.0.1", "localhost"], 1000, 2.0)  # the real policy: public addresses only
    with pytest.raises(FetchRefused, match=error):
        strict.fetch(url.format(port=servers[0]))
    assert Handler.seen == []


@pytest.mark.parametrize(
    "address,public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
    ],
)
def test_is_public_address(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_a_name_with_any_internal_answer_is_refused():
    # A resolver answering one public and one private address (DNS rebinding): one bad answer refuses the host.
    def resolve(host, port, type=0):
        return [(2, 1, 6, "", ("93.184.216.34", port)), (2, 1, 6, "", ("10.0.0.5", port))]

    mixed = MediaFetcher(["example.com"], 1000, 2.0, resolve=resolve)
    with pytest.raises(FetchRefused, match="private"):
        mixed.fetch("http://example.com/x.png")
