#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/
from real-shaped inputs: the example configs, AWS's SigV4 test-suite
requests, and the documented answers of Vault, STS, the ECS/EKS container
endpoint and IMDS. Run it again after adding seeds here; crash inputs found
later are added by hand (named crash-*) and kept as regressions.
Standard library only."""

import glob
import hashlib
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def readme_json_blocks():
    text = open(os.path.join(ROOT, "README.md")).read()
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        block = block.strip()
        if block.startswith("{"):
            yield block


def configs():
    for p in sorted(glob.glob(os.path.join(ROOT, "deploy", "**", "*.json"), recursive=True)):
        if not p.endswith("dev-secrets.json"):
            put("config", open(p).read())
    for b in readme_json_blocks():
        put("config", b)
    put("config", json.dumps({
        "mount": {"path": "/run/secrets/app", "type": "directory", "mode": 288,
                  "keep_on_exit": True},
        "backends": {"v": {"type": "vault", "address": "https://v:8200",
                           "auth": {"method": "approle", "role_id_file": "r",
                                    "secret_id_file": "s"}},
                     "a": {"type": "aws", "region": "eu-west-1"}},
        "secrets": {"x/y": {"backend": "v", "path": "pki/issue/web", "method": "POST",
                            "params": {"common_name": "web"}, "field": "certificate"},
                    "z": {"backend": "a", "path": "prod/db", "version_stage": "AWSPREVIOUS",
                          "format": "env", "on_change": {"command": ["/bin/true"],
                                                         "debounce": "1.5s"}}},
        "startup_timeout": "1m30s"}))


def durations():
    for s in ["90s", "5m", "1h30m", "250ms", "1.5h", "2d", "30", "0", "1m30s500ms",
              "3649d", "-5s", "1e3s", "99999999999999999999s", "1.0000000001s"]:
        put("duration", s)


def render():
    value = json.dumps({"username": "app", "password": "pw", "api": {"key": "k"},
                        "n": 3, "list": [1, 2], "b64": "aGVsbG8="})
    for fmt in range(4):
        for flags, field in [(0, ""), (0x20, "api"), (0x30, "b64"), (0x20, "api.key")]:
            tpl = "url=postgres://{{username}}@db\nkey={{ api.key }}\n{{{{literal\n"
            put("render", bytes([fmt | flags]) + field.encode() + b"\0" + tpl.encode() +
                b"\0" + value.encode())
    put("render", bytes([0x13]) + b"\0\0\"aGVsbG8\"")


def sigv4():
    suite = os.path.join(ROOT, "tests", "unit", "aws4_testsuite")
    for req in sorted(glob.glob(os.path.join(suite, "**", "*.req"), recursive=True)):
        raw = open(req, "rb").read().decode("utf-8", "replace")
        head, _, body = raw.partition("\n\n")
        lines = head.split("\n")
        method, target = lines[0].split(" ")[0], " ".join(lines[0].split(" ")[1:-1])
        path, _, query = target.partition("?")
        parts = [method, path, query]
        for ln in lines[1:]:
            if ":" in ln:
                k, _, v = ln.partition(":")
                parts += [k, v]
        if body:
            parts.append(body)
        put("sigv4", "\0".join(parts))


STS = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:app</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEDoaD&amp;token&lt;x&gt;</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-11-22T10:00:00Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
STS_ERR = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>
  <Message>No OpenIDConnect provider found</Message></Error>
  <RequestId>c8d2f1a1</RequestId></ErrorResponse>"""


def aws():
    put("aws_xml", STS)
    put("aws_xml", STS_ERR)
    put("aws_creds", json.dumps({"AccessKeyId": "ASIAIOSFODNN7EXAMPLE",
                                 "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                                 "Token": "IQoJb3JpZ2luX2VjEXAMPLE",
                                 "Expiration": "2026-11-22T10:00:00Z",
                                 "RoleArn": "arn:aws:iam::123456789012:role/app"}))
    put("aws_creds", json.dumps({"Code": "Success", "LastUpdated": "2026-11-22T09:00:00Z",
                                 "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLE",
                                 "SecretAccessKey": "secret", "Token": "token",
                                 "Expiration": "2026-11-22T15:00:00.123Z"}))
    put("aws_ini", "[default]\naws_access_key_id = AKIAEXAMPLE\n"
                   "aws_secret_access_key = secret\naws_session_token=token\n\n"
                   "[payments]\n# comment\naws_access_key_id=AKIA2\naws_secret_access_key=s2\n")
    put("aws_ini", "[default]\nregion = eu-west-1\n\n[profile payments]\nregion=us-east-1\n"
                   "role_arn = arn:aws:iam::1:role/r\nweb_identity_token_file = /t\n"
                   "; comment\n[sso-session x]\nsso_region = eu-west-1\n")


def vault():
    put("vault_login", json.dumps({
        "request_id": "7ea8e6b1", "lease_id": "", "renewable": False, "lease_duration": 0,
        "data": None, "wrap_info": None, "warnings": None,
        "auth": {"client_token": "hvs.CAESIJ", "accessor": "0e9e354a",
                 "policies": ["default", "app"], "token_policies": ["default", "app"],
                 "metadata": {"role_name": "app"}, "lease_duration": 3600,
                 "renewable": True, "entity_id": "", "token_type": "service",
                 "orphan": True}}))
    put("vault_login", json.dumps({"errors": ["permission denied"]}))


if __name__ == "__main__":
    configs()
    durations()
    render()
    sigv4()
    aws()
    vault()
