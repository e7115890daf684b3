"""Command line: --version, --help, unknown options, --check."""

import re
import subprocess

import pytest

from helpers.harness import TIMEOUT, mounts_at


def valid_config(sb):
    sb.write_data({"db": {"password": "pw"}, "api": "k"})
    return sb.config({
        "db/password": {"backend": "local", "path": "db", "field": "password"},
        "api-key": {"backend": "local", "path": "api"},
    })


def invalid_config(sb):
    """Three problems: an unknown top-level key, a bad mount mode and a secret
    naming an undefined backend."""
    cfg = valid_config(sb)
    cfg["bogus"] = True
    cfg["mount"]["mode"] = "rw"
    cfg["secrets"]["db/password"]["backend"] = "nope"
    return cfg


def test_version_prints_name_and_version_and_exits_0(workdir):
    r = workdir.run(["--version"])
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"secretfs \S+\n?", r.stdout), repr(r.stdout)


def test_help_prints_usage_and_exits_0(workdir):
    r = workdir.run(["--help"])
    assert r.returncode == 0, r.stderr
    assert "--config" in r.stdout and "--check" in r.stdout, r.stdout


def test_unknown_option_exits_2(workdir):
    r = workdir.run(["--no-such-option"])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip(), "an unknown option should be explained on stderr"


def test_check_accepts_valid_config_and_does_not_mount(workdir):
    workdir.write_config(valid_config(workdir), workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK"
    assert not mounts_at(workdir.mount)


def test_check_reports_each_problem_with_file_and_key_path(workdir):
    workdir.write_config(invalid_config(workdir), workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "configuration OK" not in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert ('cfg.json: secrets."db/password".backend: '
            'backend "nope" is not defined in backends') in lines, r.stderr
    assert any(ln.startswith("cfg.json: bogus: ") for ln in lines), r.stderr
    assert any(ln.startswith("cfg.json: mount.mode: ") for ln in lines), r.stderr
    for ln in lines:
        assert re.match(r"cfg\.json: \S+: \S", ln), f"not 'FILE: key.path: reason': {ln!r}"
    assert len(lines) == 3, f"expected one line per problem (3):\n{r.stderr}"


def test_check_rejects_unsafe_secret_names(workdir):
    cfg = valid_config(workdir)
    for bad in ("/abs", "a/../b", "a//b"):
        cfg["secrets"][bad] = {"backend": "local", "path": "api"}
    workdir.write_config(cfg, workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 3, r.stderr
    assert all(ln.startswith("cfg.json: secrets.") for ln in lines), r.stderr


def test_check_reports_a_missing_config_file(workdir):
    r = workdir.run(["--config", "missing.json", "--check"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "missing.json" in r.stderr


def test_check_reports_json_syntax_errors_with_the_file_name(workdir):
    workdir.write_config('{"mount": {"path": "/x"},', workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("cfg.json"), r.stderr


@pytest.mark.fuse
def test_invalid_config_refuses_to_start_and_never_mounts(sandbox):
    d = sandbox.start(config=invalid_config(sandbox), wait=False)
    try:
        rc = d.proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("secretfs kept running with an invalid config")
    assert rc == 1
    assert not mounts_at(sandbox.mount)
    assert 'backend "nope" is not defined in backends' in d.log_text()
