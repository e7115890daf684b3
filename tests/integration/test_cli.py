"""Command line: --version, --help, unknown options, --check, --ready (FUSE)."""

import json
import os
import re
import subprocess

import pytest

from helpers.harness import TIMEOUT, mounts_at, wait_until


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


def test_help_names_once_and_ready(workdir):
    r = workdir.run(["--help"])
    assert "--once" in r.stdout and "--ready" in r.stdout, r.stdout


def test_check_once_and_ready_exclude_each_other(workdir):
    workdir.write_config(valid_config(workdir), workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check", "--ready"])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "exclude each other" in r.stderr


@pytest.mark.fuse
def test_ready_fails_before_the_first_fetch_and_passes_once_mounted(sandbox):
    # secrets.json does not exist yet: the daemon waits for it, unmounted.
    cfg = sandbox.config({"db/password": {"backend": "local", "path": "db",
                                          "field": "password"}},
                         startup_timeout="60s")
    d = sandbox.start(config=cfg, wait=False)
    d.wait_log(r"source local:db: read failed")
    r = sandbox.run(["--config", sandbox.config_path, "--ready"])
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert "not ready" in r.stdout and "no secretfs FUSE mount" in r.stdout, r.stdout
    assert not mounts_at(sandbox.mount), "--ready must not mount anything"
    sandbox.write_data({"db": {"password": "pw"}})
    d.wait_mounted()
    r = sandbox.run(["--config", sandbox.config_path, "--ready"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("ready: 1 files"), r.stdout


@pytest.mark.fuse
def test_ready_names_files_still_missing_from_the_mount(sandbox):
    cfg = sandbox.config({"a": {"backend": "local", "path": "a"},
                          "later/b": {"backend": "local", "path": "b"}},
                         startup_timeout="500ms")
    sandbox.start(config=cfg, data={"a": "va"})
    r = sandbox.run(["--config", sandbox.config_path, "--ready"])
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == ["not ready: later/b: No such file or directory"], r.stdout
    sandbox.write_data({"a": "va", "b": "vb"})
    wait_until(lambda: sandbox.run(["--config", sandbox.config_path, "--ready"]).returncode
               == 0, what="--ready to pass")


def test_ready_fails_without_a_mount_and_creates_nothing(workdir):
    workdir.write_config(valid_config(workdir), workdir.file("cfg.json"))
    os.rmdir(workdir.mount)
    r = workdir.run(["--config", "cfg.json", "--ready"])
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert "not ready" in r.stdout
    assert not os.path.exists(workdir.mount)


# ------------------------------------------------------------ single-dash options

def directory_config(sb):
    """A valid config whose daemon would write into sb.mount: a command line
    read wrongly shows as files there (no FUSE needed)."""
    sb.write_data({"db": {"password": "pw"}, "api": "k"})
    return sb.config({"api-key": {"backend": "local", "path": "api"}},
                     mount={"type": "directory"})


def run_never_starting(sb, args, env=None):
    """Runs secretfs with args; fails if it starts a daemon (it would not
    exit) or writes into the mount."""
    try:
        r = sb.run(args, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"secretfs {' '.join(args)} started the daemon")
    assert os.listdir(sb.mount) == [], f"secretfs {' '.join(args)} wrote the files"
    return r


def test_single_dash_check_validates_and_starts_nothing(workdir):
    # getopt alone reads -check as "-c heck"; the later -c wins and runs.
    workdir.write_config(directory_config(workdir), workdir.file("cfg.json"))
    r = run_never_starting(workdir, ["-check", "-c", "cfg.json"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.strip() == "configuration OK"


@pytest.mark.parametrize("args", [
    ["-config", "cfg.json", "-check"],
    ["-config=cfg.json", "-check"],
    ["--config=cfg.json", "-n"],
    ["-c", "cfg.json", "--check"],
], ids=["separate_value", "equals", "double_dash_equals", "short"])
def test_long_options_take_one_or_two_dashes(workdir, args):
    workdir.write_config(directory_config(workdir), workdir.file("cfg.json"))
    r = run_never_starting(workdir, args)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.strip() == "configuration OK"


@pytest.mark.parametrize("args,message", [
    (["-chek", "-c", "cfg.json"], "unknown option -chek; did you mean --check?"),
    (["-c", "cfg.json", "-onc"], "unknown option -onc; did you mean --once?"),
    (["-cfg.json", "--check"], "unknown option -cfg.json; did you mean -c fg.json "
                               "(--config fg.json)?"),
    (["-c", "cfg.json", "-nV"], "unknown option -nV: a single dash takes one letter"),
    (["-conf=cfg.json", "-check"], "unknown option -conf; did you mean --config?"),
    (["-c", "cfg.json", "-o"], "unknown option -o; did you mean --once?"),
], ids=["misspelled", "abbreviated", "glued_value", "cluster", "abbreviated_with_value",
        "one_letter_abbreviation"])
def test_other_single_dash_words_are_refused_naming_the_right_form(workdir, args, message):
    workdir.write_config(directory_config(workdir), workdir.file("cfg.json"))
    r = run_never_starting(workdir, args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("secretfs: " + message), r.stderr


def test_a_value_that_starts_with_a_dash_is_a_value(workdir):
    workdir.write_config(directory_config(workdir), workdir.file("-odd.json"))
    r = run_never_starting(workdir, ["--config", "-odd.json", "-check"])
    assert r.returncode == 0, (r.stdout, r.stderr)


# ------------------------------------------------------------ environment

def test_config_path_comes_from_secretfs_config_when_no_option_names_one(workdir):
    workdir.write_config(directory_config(workdir), workdir.file("cfg.json"))
    r = run_never_starting(workdir, ["--check"],
                           env=dict(os.environ, SECRETFS_CONFIG="cfg.json"))
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = run_never_starting(workdir, ["--config", "cfg.json", "--check"],
                           env=dict(os.environ, SECRETFS_CONFIG="missing.json"))
    assert r.returncode == 0, "--config wins over SECRETFS_CONFIG: " + r.stderr


def test_no_config_anywhere_is_a_usage_error(workdir):
    env = {k: v for k, v in os.environ.items() if k != "SECRETFS_CONFIG"}
    r = run_never_starting(workdir, ["--check"], env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--config FILE (or SECRETFS_CONFIG) is required" in r.stderr


def once_log(sb, args=(), **env):
    """Runs --once on a directory config logging debug/text; returns stderr."""
    cfg = directory_config(sb)
    sb.write_config(cfg)
    r = sb.run(["--config", sb.config_path, "--once", *args],
               env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stderr.splitlines() if ln.strip()]


def is_json_line(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_log_format_command_line_over_environment_over_config(workdir):
    lines = once_log(workdir)
    assert lines and not any(is_json_line(ln) for ln in lines), lines
    lines = once_log(workdir, SECRETFS_LOG_FORMAT="json")
    assert lines and all(is_json_line(ln) for ln in lines), lines
    lines = once_log(workdir, ["--log-format", "text"], SECRETFS_LOG_FORMAT="json")
    assert lines and not any(is_json_line(ln) for ln in lines), lines
    lines = once_log(workdir, ["-log-format=json"])
    assert lines and all(is_json_line(ln) for ln in lines), lines


def test_log_level_command_line_over_environment_over_config(workdir):
    # The harness's config says debug.
    assert any(" debug " in ln for ln in once_log(workdir))
    assert once_log(workdir, SECRETFS_LOG_LEVEL="error") == []
    lines = once_log(workdir, ["--log-level", "info"], SECRETFS_LOG_LEVEL="error")
    assert lines and not any(" debug " in ln for ln in lines), lines
    assert any(" info " in ln for ln in lines), lines


@pytest.mark.parametrize("args,env,message", [
    (["--log-level", "loud"], {}, "secretfs: --log-level: must be one of debug, info, "
                                  "warn, error"),
    (["--log-format=xml"], {}, 'secretfs: --log-format: must be "text" or "json"'),
    ([], {"SECRETFS_LOG_LEVEL": "verbose"}, "secretfs: SECRETFS_LOG_LEVEL: must be one of"),
    ([], {"SECRETFS_LOG_FORMAT": "yaml"}, "secretfs: SECRETFS_LOG_FORMAT: must be"),
], ids=["option_level", "option_format", "env_level", "env_format"])
def test_invalid_log_settings_are_usage_errors(workdir, args, env, message):
    workdir.write_config(directory_config(workdir), workdir.file("cfg.json"))
    r = run_never_starting(workdir, ["--config", "cfg.json", *args],
                           env=dict(os.environ, **env))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(message), r.stderr


def test_help_lists_every_exit_code(workdir):
    r = workdir.run(["--help"])
    text = " ".join(r.stdout.split())
    for code in ("0 success", "1 invalid configuration", "2 usage error",
                 "3 --once wrote only some files", "4 --once wrote nothing",
                 "5 start-up failure", "6 --ready: not ready"):
        assert code in text, r.stdout


def test_check_refuses_a_consul_template_it_cannot_render(workdir):
    cfg = valid_config(workdir)
    cfg["secrets"]["app.conf"] = {
        "backend": "local", "path": "db", "format": "template",
        "template": 'user={{ with secret "secret/data/app" }}{{ .Data.data.username }}'
                    '{{ end }}\n'}
    workdir.write_config(cfg, workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.splitlines() == [
        'cfg.json: secrets."app.conf".template: line 1, column 9: "with" is a '
        'consul-template/Go template action; the template format substitutes {{key}} '
        'and {{a.b}} only'], r.stderr
