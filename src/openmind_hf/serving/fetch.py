"""The opt-in media URL fetcher (`--allowed-media-domains`), built against server-side request forgery.

Each hop (the first URL and every redirect) is checked the same way before any byte is sent:
1. scheme http or https, no `user:pass@`, a plain hostname or IP literal;
2. the hostname is an allowed domain or one of its subdomains;
3. EVERY address the name resolves to is public (no loopback, private, link-local, shared, reserved, multicast,
   or IPv6 forms that embed such an IPv4 address);
4. the connection goes to the address that was checked (the URL is rewritten to it, with the `Host` header and
   TLS SNI/certificate check kept on the name), so a second DNS answer cannot swap in an internal address.
Redirects are followed by hand, at most `max_redirects`; the body is capped at `max_bytes` and the whole fetch at
`timeout_s`. Environment proxies are ignored, since a proxy would choose the address instead of us.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence
from urllib.parse import urljoin, urlsplit

import httpx

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = {301, 302, 303, 307, 308}


class FetchRefused(ValueError):
    """The URL was refused or could not be fetched; the message is safe to show to the client."""


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for globally routable unicast addresses, looking inside IPv6 forms that carry an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a connection to a.b.c.d
            return is_public_address(address.ipv4_mapped)
        embedded = address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def normalise_domains(domains: Sequence[str] | str | None) -> tuple[str, ...]:
    """`"example.com, cdn.example.org"` -> ("example.com", "cdn.example.org"): lower-case, no dots at the ends,
    IP literals without brackets."""
    if isinstance(domains, str):
        domains = domains.split(",")
    return tuple(d.strip().strip(".").lower().strip("[]") for d in domains or () if d.strip())


class MediaFetcher:
    r"""
    Fetches media bytes from allowed domains only, checking every hop and every resolved address.

    Args:
        allowed_domains (`Sequence[str]`): domains (subdomains included) or IP literals that may be fetched.
        max_bytes (`int`): body size cap; larger bodies are refused while downloading.
        timeout_s (`float`): limit for the whole fetch, redirects included.
        max_redirects (`int`, *optional*, defaults to 3): redirect hops followed.
        address_allowed (`Callable`, *optional*, defaults to `is_public_address`): the address policy. Only tests
            and special deployments should change it.
        resolve (`Callable`, *optional*, defaults to `socket.getaddrinfo`): the resolver, with getaddrinfo's signature.
    """

    def __init__(
        self,
        allowed_domains: Sequence[str],
        max_bytes: int,
        timeout_s: float,
        max_redirects: int = 3,
        address_allowed: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool] = is_public_address,
        resolve: Callable = socket.getaddrinfo,
    ):
        self.allowed_domains = normalise_domains(allowed_domains)
        if not self.allowed_domains:
            raise ValueError("MediaFetcher needs at least one allowed domain.")
        self.max_bytes, self.timeout_s, self.max_redirects = max_bytes, timeout_s, max_redirects
        self.address_allowed, self.resolve = address_allowed, resolve

    def fetch(self, url: str) -> tuple[bytes, str | None]:
        """Returns (body, content type) of `url` after the checks in the module docstring; raises `FetchRefused`."""
        deadline = time.monotonic() + self.timeout_s
        with httpx.Client(trust_env=False, follow_redirects=False, verify=True) as client:
            for _ in range(self.max_redirects + 1):
                target, headers, extensions = self._checked_target(url)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchRefused("media URL timed out.")
                try:
                    with client.stream(
                        "GET", target, headers=headers, extensions=extensions, timeout=remaining
                    ) as response:
                        if response.status_code in _REDIRECTS:
                            location = response.headers.get("location")
                            if not location:
                                raise FetchRefused("media URL redirected without a Location.")
                            url = urljoin(url, location)
                            continue
                        if response.status_code != 200:
                            raise FetchRefused(f"media URL answered HTTP {response.status_code}.")
                        return self._read_capped(response, deadline), response.headers.get("content-type")
                except httpx.HTTPError:
                    raise FetchRefused("media URL could not be fetched (connection failed or timed out).") from None
        raise FetchRefused(f"media URL redirected more than {self.max_redirects} times.")

    def _checked_target(self, url: str) -> tuple[str, dict, dict]:
        """Validates one hop; returns the URL rewritten to the vetted address, plus Host header and SNI."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise FetchRefused("media URL is malformed.") from None
        if parts.scheme not in ("http", "https"):
            raise FetchRefused("media URLs must be http or https.")
        if parts.username is not None or parts.password is not None or "\\" in url:
            raise FetchRefused("media URLs must not carry credentials or backslashes.")
        host = self._hostname(parts.hostname)
        if not any(host == d or host.endswith("." + d) for d in self.allowed_domains):
            raise FetchRefused("media URL host is not in --allowed-media-domains.")
        port = port or (443 if parts.scheme == "https" else 80)
        address = self._vetted_address(host, port)
        netloc = f"[{address}]" if address.version == 6 else str(address)
        path = parts.path or "/"
        target = f"{parts.scheme}://{netloc}:{port}{path}" + (f"?{parts.query}" if parts.query else "")
        host_header = host if port in (80, 443) else f"{host}:{port}"
        if ":" in host:
            host_header = f"[{host}]" if port in (80, 443) else f"[{host}]:{port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return target, {"Host": host_header}, extensions

    @staticmethod
    def _hostname(raw: str | None) -> str:
        if not raw:
            raise FetchRefused("media URL has no host.")
        host = raw.rstrip(".").lower()
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise FetchRefused("media URL host is not a valid domain name.") from None
        if not _HOSTNAME.match(host):
            raise FetchRefused("media URL host is not a valid domain name.")
        return host

    def _vetted_address(self, host: str, port: int):
        try:
            infos = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise FetchRefused("media URL host does not resolve.") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise FetchRefused("media URL host does not resolve.")
        # One non-public answer refuses the host: a name that mixes public and internal answers is an attack.
        if not all(self.address_allowed(a) for a in addresses):
            raise FetchRefused("media URL resolves to a loopback, private, link-local or reserved address.")
        return addresses[0]

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchRefused(f"media URL body is larger than {self.max_bytes} bytes.")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchRefused(f"media URL body is larger than {self.max_bytes} bytes.")
            if time.monotonic() > deadline:
                raise FetchRefused("media URL timed out.")
            chunks.append(chunk)
        return b"".join(chunks)


__all__ = ["FetchRefused", "MediaFetcher", "is_public_address", "normalise_domains"]
