"""Helpers for the AWS Secrets Manager integration tests: the in-process fake
AWS (tests/fakes/fake_aws.py), backend configs and daemon environments
pointing secretfs at it, readers of the fake's request log, and a small
pytest plugin that puts the fake's request log in a failing test's report.

Standard library only. The fake runs in the test process; secretfs talks to
it over HTTP (or HTTPS with the test CA) like it talks to AWS, and the fake
verifies the SigV4 signature of every Secrets Manager request.

The daemon never inherits AWS settings from the test runner: clean_env()
starts from the runner's environment minus every AWS_*, VAULT_* and proxy
variable, with HOME pointing at the sandbox (so no ~/.aws is read) and IMDS
disabled unless the test asks for it.
"""

import json
import os
import socket
import sys
import time

import pytest

from helpers.harness import REPO_ROOT, replace_private, write_private  # noqa: F401

_TESTS_DIR = str(REPO_ROOT / "tests")
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from fakes.fake_aws import FakeAws, make_test_pki  # noqa: E402,F401

SM_OPS = ("GetSecretValue", "DescribeSecret")


# ---------------------------------------------------------------- environment

def clean_env(sandbox, imds=None, **extra):
    """The test runner's environment without any AWS_*, VAULT_* or proxy
    variable; HOME is the sandbox (no ~/.aws). IMDS is disabled unless imds
    is an endpoint URL (then AWS_EC2_METADATA_SERVICE_ENDPOINT points at it).
    extra adds variables (a value of None removes one)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "VAULT_")) and k.lower() not in (
               "http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["HOME"] = sandbox.root
    if imds is None:
        env["AWS_EC2_METADATA_DISABLED"] = "true"
    else:
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def non_loopback_ipv4():
    """An IPv4 address of this machine that is not loopback (the source
    address of the default route), or None. No packet is sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.123", 9))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


# ---------------------------------------------------------------- configs

def backend(fake, ca_file=None, **kw):
    """An "aws" backend on the fake (Secrets Manager and STS at fake.url,
    the fake's region, a 5 s timeout); kw adds or replaces keys (a value of
    None removes one)."""
    cfg = {"type": "aws", "region": fake.region, "endpoint": fake.url,
           "sts_endpoint": fake.url, "timeout": "5s"}
    if ca_file:
        cfg["tls"] = {"ca_file": ca_file}
    for k, v in kw.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


def sm(path, refresh="1s", **kw):
    """One secret of the "aws" backend."""
    return {"backend": "aws", "path": path, "refresh": refresh, **kw}


def start(sandbox, secrets, be, env, top=None, **kw):
    """Starts secretfs on secrets with the one backend "aws" = be and the
    environment env (see clean_env); top adds top-level config keys."""
    cfg = sandbox.config(secrets, backends={"aws": be}, **(top or {}))
    return sandbox.start(config=cfg, env=env, **kw)


def static_keys(fake, sandbox, akid=None, **extra_env):
    """Long-term keys known to the fake, in a clean daemon environment.
    Returns (env, access key id, secret access key)."""
    from helpers.harness import rand_token
    akid = akid or "AKIA" + rand_token(16).upper()
    secret = rand_token(40)
    fake.add_static_credentials(akid, secret)
    env = clean_env(sandbox, AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret, **extra_env)
    return env, akid, secret


# ---------------------------------------------------------------- request log

def sm_reqs(fake, op=None, secret=None, since=0, **filters):
    """Secrets Manager requests (op, secret name or id) with seq > since."""
    return [r for r in fake.find_requests(kind="sm", op=op, secret=secret, **filters)
            if r.seq > since]


def last_seq(fake):
    with fake._lock:
        return fake.requests[-1].seq if fake.requests else 0


def describe_requests(fake, limit=300):
    """The fake's request log as text, for failure reports (no secrets)."""
    with fake._lock:
        rs = list(fake.requests)
    t0 = rs[0].time if rs else time.time()
    lines = []
    for r in rs[-limit:]:
        extra = ""
        if r.kind == "sm":
            extra = f" secret={r.secret} akid={r.access_key_id}"
            if isinstance(r.json, dict):
                pins = {k: r.json[k] for k in ("VersionId", "VersionStage") if k in r.json}
                if pins:
                    extra += " " + json.dumps(pins)
        elif r.issued_access_key_id:
            extra = f" issued={r.issued_access_key_id}"
        lines.append(f"{r.time - t0:8.3f} #{r.seq} {r.kind}:{r.op} {r.method} {r.raw_path}"
                     f"{extra} -> {r.status} {r.error or ''}"
                     f"{' fault=' + r.fault if r.fault else ''}")
    return "\n".join(lines) or "(no requests)"


# ---------------------------------------------------------------- pytest plugin

class _ReportPlugin:
    """Puts the request log of each fake AWS a failing test started
    (item._fake_aws, set by the make_aws fixture) in its report."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        fakes = getattr(item, "_fake_aws", None)
        if not fakes or not report.failed:
            return
        for i, fake in enumerate(fakes):
            report.sections.append((f"fake aws {i}: requests", describe_requests(fake)))


_PLUGIN_NAME = "secretfs-fake-aws-report"


def register_report_plugin(config):
    """Registers the report plugin once per session."""
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(_ReportPlugin(), _PLUGIN_NAME)
