"""X-Forwarded-For / -Proto believed only from configured proxies; access log without query strings."""

from ipaddress import ip_network

from cad.daphne_drain import _without_query
from cad.proxies import client_scope

PROXIES = [ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")]


def scope(peer: str, forwarded_for: str, proto: str = "https", kind: str = "http") -> dict:
    headers = [(b"host", b"cad.example.mx"), (b"x-forwarded-for", forwarded_for.encode())]
    headers.append((b"x-forwarded-proto", proto.encode()))
    return {"type": kind, "client": (peer, 5000), "scheme": "http", "headers": headers}


def test_a_configured_proxy_gives_the_client_address_and_scheme():
    got = client_scope(scope("10.0.0.5", "203.0.113.9, 10.0.0.7"), PROXIES)
    assert got["client"] == ("203.0.113.9", 0)
    assert got["scheme"] == "https"
    assert (b"x-forwarded-proto", b"https") in got["headers"]
    assert all(name != b"x-forwarded-for" for name, _ in got["headers"])
    assert client_scope(scope("127.0.0.1", "198.51.100.1", kind="websocket"), PROXIES)["scheme"] == "wss"


def test_anyone_else_cannot_choose_their_address_or_scheme():
    got = client_scope(scope("198.51.100.77", "1.2.3.4"), PROXIES)
    assert got["client"] == ("198.51.100.77", 5000)
    assert got["scheme"] == "http"
    assert [name for name, _ in got["headers"]] == [b"host"]  # Django's SECURE_PROXY_SSL_HEADER sees nothing


def test_a_spoofed_left_part_of_the_chain_is_ignored():
    got = client_scope(scope("10.0.0.5", "6.6.6.6, 203.0.113.9"), PROXIES)
    assert got["client"] == ("203.0.113.9", 0)  # the right-most address the proxy saw, not the client's claim


def test_the_access_log_leaves_query_strings_out():
    logged = []
    log = _without_query(lambda protocol, action, details: logged.append(details))
    log(None, "complete", {"path": "/api/v1/calls/duplicates?lat=19.3&lon=-99.6", "status": 200})
    assert logged == [{"path": "/api/v1/calls/duplicates", "status": 200}]
