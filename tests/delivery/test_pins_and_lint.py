"""yamllint over every YAML file of the repository, and the pins: GitHub
actions by 40-hex commit SHA, container base images by @sha256 digest."""

import os
import shutil
import subprocess

import pytest
import yaml

import delivery_checks as dc

WORKFLOWS = os.path.join(dc.REPO, ".github", "workflows")
DOCKERFILE = os.path.join(dc.DEPLOY, "Dockerfile")


def yamllint(paths):
    exe = shutil.which("yamllint")
    if not exe:
        pytest.skip("yamllint is not installed (Debian package yamllint; scripts/setup.sh)")
    return subprocess.run([exe, "-s", "-c", os.path.join(dc.REPO, ".yamllint"), *paths],
                          capture_output=True, text=True, timeout=120)


def test_every_yaml_file_passes_yamllint():
    files = dc.repo_files((".yaml", ".yml")) + [os.path.join(dc.REPO, ".yamllint")]
    assert len(files) > 10
    r = yamllint(files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_yamllint_catches_a_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: yes\nb:  [1,2]\n  c: 1\n")
    assert yamllint([str(bad)]).returncode != 0
    warn_only = tmp_path / "warn.yaml"       # -s: warnings fail too
    warn_only.write_text("a: 1\n# comment\n#bad comment\n")
    assert yamllint([str(warn_only)]).returncode != 0


def workflow_files():
    return sorted(os.path.join(WORKFLOWS, f) for f in os.listdir(WORKFLOWS)
                  if f.endswith((".yml", ".yaml")))


def test_workflow_actions_pinned_by_sha():
    files = workflow_files()
    assert files
    for path in files:
        text = open(path).read()
        doc = yaml.safe_load(text)
        assert dc.workflow_uses(doc), path
        assert dc.check_workflow_pins(doc, text) == [], path


@pytest.mark.parametrize("uses,ok", [
    ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2", True),
    ("actions/checkout@v4", False),
    ("actions/checkout@11bd719", False),
    ("actions/checkout@main", False),
    ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", False),   # no version comment
    ("owner/repo/sub/path@0123456789abcdef0123456789abcdef01234567  # v1.0.0", True),
    ("./.github/actions/local", True),
    ("docker://alpine:3.20", False),
])
def test_pin_checker(uses, ok):
    text = f"on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - uses: {uses}\n"
    doc = yaml.safe_load(text)
    assert (dc.check_workflow_pins(doc, text) == []) == ok


def test_pin_checker_catches_an_unpinned_job_container():
    text = "on: push\njobs:\n  j:\n    runs-on: x\n    container: debian:bookworm\n"
    assert dc.check_workflow_pins(yaml.safe_load(text), text)


def test_dockerfile_base_images_pinned_by_digest():
    text = open(DOCKERFILE).read()
    froms = dc.dockerfile_from_lines(text)
    assert any(img.startswith("debian:bookworm") for img, _ in froms)
    assert dc.check_dockerfile_pins(text) == []


@pytest.mark.parametrize("text,ok", [
    ("FROM debian:bookworm AS build\nFROM scratch\nCOPY --from=build / /\n", False),
    ("FROM debian@sha256:" + "0" * 64 + " AS build\nFROM build\n", True),
    ("FROM --platform=linux/amd64 debian:bookworm@sha256:" + "a" * 64 + "\n", True),
    ("FROM debian:bookworm@sha256:abc\n", False),
    ("from debian:latest\n", False),
    ("RUN true\n", False),
])
def test_dockerfile_pin_checker(text, ok):
    assert (dc.check_dockerfile_pins(text) == []) == ok


def test_dockerfile_runs_the_tested_script_and_a_nonroot_user():
    text = open(DOCKERFILE).read()
    assert "deploy/image-rootfs.sh /build/secretfs /rootfs" in text
    assert "ctest --test-dir /build" in text
    assert "FROM scratch" in text and "COPY --from=build /rootfs /" in text
    assert "USER 65532:65532" in text
