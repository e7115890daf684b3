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


def vault_reply(kind, path, reply):
    """A fuzz_vault_reply input: the parser (0 mount, 1 KV v2 read, 2 KV v2
    404, 3 metadata, 4 leased read, 5 renewal), the path, the reply."""
    put("vault_reply", bytes([kind]) + path.encode() + b"\0" + json.dumps(reply).encode())


def vault_replies():
    # The shapes of Vault's API documentation: sys/internal/ui/mounts,
    # KV v2 data/ and metadata/, a dynamic database credential and
    # sys/leases/renew.
    envelope = {"request_id": "9a2b", "lease_id": "", "renewable": False,
                "lease_duration": 0, "wrap_info": None, "warnings": None, "auth": None}
    for typ, opts in [("kv", {"version": "2"}), ("kv", {"version": "1"}), ("kv", None),
                      ("generic", None), ("database", None), ("pki", {})]:
        vault_reply(0, "secret/app/config", dict(envelope, data={
            "accessor": "kv_5e1d", "config": {"default_lease_ttl": 0, "max_lease_ttl": 0,
                                              "force_no_cache": False},
            "description": "key/value secret storage", "external_entropy_access": False,
            "local": False, "options": opts, "path": "secret/", "seal_wrap": False,
            "type": typ, "uuid": "7a3e"}))
    meta = {"created_time": "2018-03-22T02:24:06.945319214Z",
            "custom_metadata": {"owner": "jdoe", "mission_critical": "false"},
            "deletion_time": "", "destroyed": False, "version": 2}
    vault_reply(1, "secret/my-secret", dict(envelope, data={
        "data": {"foo": "bar", "nested": {"a": [1, 2]}}, "metadata": meta}))
    for deleted, destroyed in [("2018-03-22T02:24:06.945319214Z", False), ("", True)]:
        vault_reply(2, "secret/my-secret", dict(envelope, data={
            "data": None, "metadata": dict(meta, deletion_time=deleted,
                                           destroyed=destroyed)}))
    vault_reply(2, "secret/gone", {"errors": []})
    vault_reply(3, "secret/my-secret", dict(envelope, data={
        "cas_required": False, "created_time": "2018-03-22T02:24:06.945319214Z",
        "current_version": 3, "delete_version_after": "3h25m19s", "max_versions": 0,
        "oldest_version": 0, "updated_time": "2018-03-22T02:36:43.986212308Z",
        "custom_metadata": {"foo": "abc"},
        "versions": {"1": {"created_time": "2018-03-22T02:24:06.945319214Z",
                           "deletion_time": "", "destroyed": False}}}))
    vault_reply(4, "database/creds/app", dict(
        envelope, lease_id="database/creds/app/2f6a614c-4aa2-7b19-24b9-ad944a8d4de6",
        renewable=True, lease_duration=3600,
        data={"username": "v-token-app-x4n2w9", "password": "A1a-8yq2lk"}))
    vault_reply(4, "pki/issue/web", dict(envelope, data={
        "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "expiration": 1654105687, "serial_number": "39:dd:2e"}))
    vault_reply(4, "kv1/app", dict(envelope, lease_duration=2764800, data={"k": "v"}))
    vault_reply(5, "", {"lease_id": "database/creds/app/2f6a", "renewable": True,
                        "lease_duration": 2764800})
    vault_reply(5, "", {"lease_id": "database/creds/app/2f6a", "renewable": False,
                        "lease_duration": 0})


def sm_reply(kind, stage, reply):
    """A fuzz_sm_reply input: 0 GetSecretValue, 1 DescribeSecret; the stage;
    the reply."""
    put("sm_reply", bytes([kind]) + stage.encode() + b"\0" + json.dumps(reply).encode())


def sm_replies():
    # The response syntax of the Secrets Manager API reference.
    arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:MyTestSecret-a1b2c3"
    base = {"ARN": arn, "Name": "MyTestSecret", "CreatedDate": 1523477145.713,
            "VersionId": "EXAMPLE1-90ab-cdef-fedc-ba987SECRET1",
            "VersionStages": ["AWSCURRENT"]}
    sm_reply(0, "", dict(base, SecretString='{"username":"app","password":"EXAMPLE-PASSWORD"}'))
    sm_reply(0, "", dict(base, SecretString="plain text value"))
    sm_reply(0, "", dict(base, SecretBinary="c2VjcmV0IGJ5dGVzAA=="))
    sm_reply(0, "", {"__type": "ResourceNotFoundException",
                     "message": "Secrets Manager can't find the specified secret."})
    describe = {"ARN": arn, "Name": "MyTestSecret", "Description": "My test secret",
                "KmsKeyId": "arn:aws:kms:us-west-2:123456789012:key/EXAMPLE1-90ab",
                "RotationEnabled": True,
                "RotationLambdaARN": "arn:aws:lambda:us-west-2:123456789012:function:Rot",
                "RotationRules": {"AutomaticallyAfterDays": 14, "Duration": "2h",
                                  "ScheduleExpression": "cron(0 16 1,15 * ? *)"},
                "LastRotatedDate": 1525747253.72, "LastChangedDate": 1523477145.729,
                "LastAccessedDate": 1524572133.25, "NextRotationDate": 1665165599,
                "Tags": [{"Key": "SecondTag", "Value": "AnotherValue"}],
                "VersionIdsToStages": {
                    "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE": ["AWSPREVIOUS"],
                    "EXAMPLE2-90ab-cdef-fedc-ba987EXAMPLE": ["AWSCURRENT", "custom"]},
                "CreatedDate": 1523477145.729, "PrimaryRegion": "us-west-2",
                "ReplicationStatus": [{"Region": "eu-west-3", "Status": "InSync",
                                       "StatusMessage": "Replication succeeded"}]}
    for stage in ["AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"]:
        sm_reply(1, stage, describe)
    sm_reply(1, "AWSCURRENT", dict(describe, DeletedDate=1700000000.5))


if __name__ == "__main__":
    configs()
    durations()
    render()
    sigv4()
    aws()
    vault()
    vault_replies()
    sm_replies()
