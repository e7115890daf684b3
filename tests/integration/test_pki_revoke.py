"""PKI certificates with "revoke_on_replace": a certificate issued by a
write to pki/issue/<role> (the PKI engine gives it no lease) is replaced at
about 2/3 of its validity, and once the grace period after the replacement
has passed, the OLD certificate is revoked with <mount>/revoke
{"serial_number"} (the fake Vault records it as Vault's PKI API documents).

End to end: a TLS server (Python's ssl) serves with the certificate and key
files of the mount and loads them again when on_change fires (it touches a
file the server watches); a client handshake sees the first serial, then
the new one after the rotation. A consul-template file naming the same issue
call ({{ with secret "pki/issue/web" "common_name=web.svc" }}) shares the
source: one issue for all the files, all from the same certificate.
"""

import json
import os
import signal
import socket
import ssl
import threading

import pytest

from helpers.harness import SLOW, TIMEOUT, assert_no_plaintext, wait_until
from helpers.vault import backend, reqs, start, token_auth

COMMON = {"backend": "vault", "path": "pki/issue/web", "method": "POST",
          "params": {"common_name": "web.svc"}, "revoke_on_replace": True}


def serial_of(text):
    """A serial as an integer, from Vault's "aa:bb:.." or ssl's "AABB..."."""
    return int(text.replace(":", "").replace("-", ""), 16)


class TLSServer:
    """A TLS server on loopback with the cert/key files given, loaded again
    when the file `reload_flag` changes (on_change touches it)."""

    def __init__(self, cert, key, reload_flag):
        self.cert, self.key, self.flag = cert, key, reload_flag
        self.loads = 0
        self.ctx, self.seen = self.load(), self.mtime()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def mtime(self):
        try:
            return os.stat(self.flag).st_mtime_ns
        except FileNotFoundError:
            return None

    def load(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)  # raises if they do not match
        self.loads += 1
        return ctx

    def run(self):
        while not self.stop.is_set():
            if self.mtime() != self.seen:
                self.seen = self.mtime()
                self.ctx = self.load()
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            try:
                conn.settimeout(TIMEOUT)
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(b"ok")
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(TIMEOUT)
        self.sock.close()


def presented_serial(port, ca_file):
    """The serial of the certificate the server presents, verified against
    the fake's CA."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw) as s:
            assert s.recv(2) == b"ok"
            return serial_of(s.getpeercert()["serialNumber"])


@pytest.fixture
def tls_server():
    made = []

    def make(*args):
        made.append(TLSServer(*args))
        return made[-1]
    yield make
    for s in made:
        s.close()


def revoked_serials(vault):
    return [serial_of(s) for s, _ in vault.pki_revoked]


@pytest.mark.fuse
def test_replaced_certificate_is_revoked_after_grace_and_the_server_presents_the_new_one(
        sandbox, vault, vault_pki, tls_server):
    ttl, grace = 6 * SLOW, 1.5 * SLOW
    vault.add_pki_role("web", ttl=ttl)
    flag = os.path.join(sandbox.root, "reload-tls")
    _, auth = token_auth(sandbox, vault)
    bundle = '{{ with secret "pki/issue/web" "common_name=web.svc" }}' \
             '{{ .Data.certificate }}{{ end }}'
    secrets = {
        "tls/cert.pem": {**COMMON, "field": "certificate",
                         "on_change": {"command": ["/bin/sh", "-c", f'touch "{flag}"']}},
        "tls/key.pem": {**COMMON, "field": "private_key"},
        "tls/bundle.pem": {"backend": "vault", "format": "consul-template",
                           "template": bundle, "revoke_on_replace": True},
    }
    d = start(sandbox, secrets, backend(vault, vault_pki, auth,
                                        revoke_grace=f"{grace}s"))
    issues = lambda: reqs(vault, "POST", "pki/issue/web")  # noqa: E731
    assert len(issues()) == 1, "the template shares the plain files' source"
    first = serial_of(vault.pki_issued[0])
    cert1 = d.read("tls/cert.pem")
    assert d.read("tls/bundle.pem") == cert1
    server = tls_server(d.path("tls/cert.pem"), d.path("tls/key.pem"), flag)
    ca = vault._pki_ca.ca_cert
    assert presented_serial(server.port, ca) == first

    wait_until(lambda: len(vault.pki_issued) >= 2, timeout=ttl * 1.5,
               what="the certificate re-issued before it expires")
    gap = issues()[1].time - issues()[0].time
    assert (ttl - 1) * 0.6 <= gap < ttl, f"re-issued after {gap:.2f} s of {ttl} s"
    second = serial_of(vault.pki_issued[1])
    # on_change fires once both files are the new issue's: the server
    # loads them again (a key of another issue would not load).
    wait_until(lambda: server.loads >= 2, what="the TLS server reloaded on on_change")
    assert presented_serial(server.port, ca) == second
    assert d.read("tls/bundle.pem") == d.read("tls/cert.pem") != cert1

    # The old serial is revoked, not before the grace period, and only it.
    wait_until(lambda: first in revoked_serials(vault), timeout=TIMEOUT + grace,
               what="the old certificate revoked")
    (rq,) = reqs(vault, "POST", "pki/revoke")
    assert serial_of(rq.json["serial_number"]) == first
    assert rq.time - issues()[1].time >= grace - 0.2
    assert second not in revoked_serials(vault)
    assert rq.status == 200
    d.wait_log(r"revoked issued pki/cert/")
    key = d.read("tls/key.pem")
    assert key not in d.log_text()
    assert_no_plaintext(d.pid, [key.split("\n")[1]], "with the certificate rotated")


@pytest.mark.fuse
def test_a_failed_revoke_is_logged_and_the_new_certificate_stays(sandbox, vault, vault_pki):
    ttl = 4 * SLOW
    vault.add_pki_role("web", ttl=ttl)
    vault.add_fault("pki/revoke", "status", status=500, times=None)
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, {"cert": {**COMMON, "field": "certificate"}},
              backend(vault, vault_pki, auth, revoke_grace="0s"))
    cert1 = d.read("cert")
    wait_until(lambda: len(vault.pki_issued) >= 2, timeout=ttl * 1.5, what="re-issued")
    d.wait_log(r"cannot revoke issued pki/cert/")
    assert reqs(vault, "POST", "pki/revoke") and vault.pki_revoked == []
    wait_until(lambda: d.read("cert") != cert1, what="the new certificate served")


@pytest.mark.fuse
def test_a_certificate_no_file_uses_after_a_reload_is_revoked_after_grace(
        sandbox, vault, vault_pki):
    vault.add_pki_role("web", ttl=3600)
    vault.kv_put("secret/app/config", {"a": "1"})
    _, auth = token_auth(sandbox, vault)
    be = backend(vault, vault_pki, auth, revoke_grace="1s")
    kv = {"backend": "vault", "path": "secret/app/config", "field": "a"}
    d = start(sandbox, {"cert": {**COMMON, "field": "certificate"}, "kv": kv}, be)
    (serial,) = vault.pki_issued
    sandbox.write_config(sandbox.config({"kv": kv}, backends={"vault": be}), d.config_path)
    d.send(signal.SIGHUP)
    d.wait_log(r"reload: applied")
    d.wait_log(r"no file uses it any more; revoking issued pki/cert/")
    wait_until(lambda: serial_of(serial) in revoked_serials(vault),
               timeout=TIMEOUT + 1, what="the unused certificate revoked")
    assert len(reqs(vault, "POST", "pki/issue/web")) == 1


@pytest.mark.parametrize("extra,message", [
    ({"revoke_on_replace": "yes", "method": "POST"}, "must be true or false"),
    ({"revoke_on_replace": True},
     'applies to certificates issued by a write ("method": "POST" to '
     '<mount>/issue/<role>)'),
])
def test_check_refuses_a_bad_revoke_on_replace(workdir, extra, message):
    path = os.path.join(workdir.root, "cfg.json")
    with open(path, "w") as f:
        json.dump({"mount": {"path": os.path.join(workdir.root, "m")},
                   "backends": {"vault": {"type": "vault", "address": "http://127.0.0.1:1",
                                          "auth": {"method": "kubernetes", "role": "r"}}},
                   "secrets": {"c": {"backend": "vault", "path": "pki/issue/web",
                                     "field": "certificate", **extra}}}, f)
    r = workdir.run(["--check", "--config", path])
    assert r.returncode == 1
    assert r.stderr.strip() == f"{path}: secrets.c.revoke_on_replace: {message}", r.stderr
