#!/usr/bin/env bash
# Installs what secretfs needs to build and test on Debian bookworm (as root,
# or through sudo), then configures and builds into build/ (or $BUILD_DIR).
# Extra CMake arguments are passed through.
#   SECRETFS_PACKAGES=build   only what building needs (deploy/Dockerfile)
#   SECRETFS_INSTALL_ONLY=1   install the packages, do not build
set -euo pipefail
cd "$(dirname "$0")/.."

# ca-certificates: the CA bundle deploy/image-rootfs.sh copies into the image.
BUILD_PACKAGES=(build-essential cmake pkg-config libsodium-dev libjansson-dev libfuse3-dev
                fuse3 libseccomp-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev ca-certificates)
# yamllint, python3-yaml: tests/delivery (manifests, workflows).
# clang, libclang-rt-14-dev: the libFuzzer targets (scripts/fuzz.sh).
TEST_PACKAGES=(python3 python3-pytest procps openssl postgresql postgresql-client prometheus
               yamllint python3-yaml clang libclang-rt-14-dev)
PACKAGES=("${BUILD_PACKAGES[@]}")
[[ ${SECRETFS_PACKAGES:-all} == build ]] || PACKAGES+=("${TEST_PACKAGES[@]}")
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	SUDO=""
	[[ $(id -u) -eq 0 ]] || SUDO="sudo"
	echo "setup: installing ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[[ ${SECRETFS_INSTALL_ONLY:-0} == 1 ]] && exit 0

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
