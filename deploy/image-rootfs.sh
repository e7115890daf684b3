#!/usr/bin/env bash
# Assembles the container image's root filesystem into a directory:
#
#   deploy/image-rootfs.sh BINARY ROOTFS
#
# ROOTFS receives /usr/local/bin/secretfs and nothing it does not need:
#   - the shared libraries the binary links (ldd) AND those it loads with
#     dlopen at run time (libcurl.so.4, libssl.so.3, libcrypto.so.3: see
#     agent/http.c; libmicrohttpd.so.12: see agent/telemetry.c), each with its own ldd closure, the dynamic loader, and
#     Debian's merged-/usr symlinks (/lib, /lib64) so every path ldd names
#     resolves;
#   - /usr/bin/fusermount3 without its setuid bit (see deploy/Dockerfile);
#   - the CA bundle libcurl is built to read, /etc/passwd and /etc/group with
#     root and the unprivileged user 65532 ("nonroot"), nsswitch.conf,
#     os-release;
#   - for every Debian package a copied file came from (dpkg -S), its dpkg
#     status paragraph in /var/lib/dpkg/status.d/<package> (the layout of
#     distroless images, which Trivy, Grype and Syft read) and its copyright
#     file, so scanners report the libraries' CVEs and licences.
# No shell, no package manager, no coreutils. The Dockerfile runs this same
# script; tests/delivery/test_image.py runs it too and checks the result.
set -euo pipefail

if [[ $# -ne 2 ]]; then
	echo "usage: $0 BINARY ROOTFS" >&2
	exit 2
fi
BINARY=$(realpath "$1")
ROOT=$2
# Loaded with dlopen by agent/http.c and agent/telemetry.c, so ldd on the
# binary does not list them.
DLOPENED=(libcurl.so.4 libssl.so.3 libcrypto.so.3 libmicrohttpd.so.12)
NONROOT_UID=65532

[[ -x $BINARY ]] || { echo "image-rootfs: $BINARY is not an executable" >&2; exit 1; }
mkdir -p "$ROOT"
ROOT=$(realpath "$ROOT")
if [[ -n $(ls -A "$ROOT") ]]; then
	echo "image-rootfs: $ROOT is not empty" >&2
	exit 1
fi

# Debian bookworm is merged-/usr: /lib and /lib64 are links into /usr, and
# ldd names libraries through them.
mkdir -p "$ROOT/usr/lib" "$ROOT/usr/lib64" "$ROOT/usr/local/bin" "$ROOT/usr/bin" \
	"$ROOT/etc/ssl/certs" "$ROOT/var/lib/dpkg/status.d" "$ROOT/tmp"
for d in lib lib64; do
	if [[ -L /$d ]]; then
		ln -s "$(readlink "/$d")" "$ROOT/$d"
	else
		mkdir -p "$ROOT/$d"
	fi
done
chmod 1777 "$ROOT/tmp"

declare -A COPIED=()   # every path copied (files and links), as the host names it

# copy_path PATH: copies PATH into ROOT at the same place, link by link:
# each symbolic link on the way is recreated as a link, then the file.
copy_path() {
	local p=$1 dir target
	while :; do
		dir=$(realpath "$(dirname "$p")")
		p="$dir/$(basename "$p")"
		[[ -n ${COPIED[$p]:-} ]] && return 0
		COPIED[$p]=1
		mkdir -p "$ROOT$dir"
		if [[ -L $p ]]; then
			target=$(readlink "$p")
			ln -sfn "$target" "$ROOT$p"
			[[ $target == /* ]] && p=$target || p="$dir/$target"
		else
			cp -p "$p" "$ROOT$p"
			return 0
		fi
	done
}

# The libraries an ELF file needs, with the loader, as absolute paths; fails
# on any "not found".
ldd_closure() {
	local out
	out=$(ldd "$1")
	if grep -q "not found" <<<"$out"; then
		echo "image-rootfs: unresolved libraries of $1:" >&2
		grep "not found" <<<"$out" >&2
		return 1
	fi
	awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

# A library by soname, found the way dlopen finds it (the loader's cache).
find_soname() {
	local path
	path=$(ldconfig -p | awk -v n="$1" '$1 == n && /x86-64|AArch64|64bit/ { print $NF; exit }')
	[[ -z $path ]] && path=$(ldconfig -p | awk -v n="$1" '$1 == n { print $NF; exit }')
	if [[ -z $path ]]; then
		echo "image-rootfs: $1 is not installed (dlopen'd by secretfs)" >&2
		return 1
	fi
	echo "$path"
}

install -m 0755 "$BINARY" "$ROOT/usr/local/bin/secretfs"
# Symbols stay (for backtraces); DWARF debug information does not.
strip --strip-debug "$ROOT/usr/local/bin/secretfs"
COPIED[/usr/local/bin/secretfs]=1

elves=("$BINARY" /usr/bin/fusermount3)
for so in "${DLOPENED[@]}"; do
	elves+=("$(find_soname "$so")")
done
for elf in "${elves[@]}"; do
	[[ $elf == "$BINARY" ]] || copy_path "$elf"
	while read -r lib; do
		copy_path "$lib"
	done < <(ldd_closure "$elf")
done
# fusermount3 is setuid root in Debian; here it must not be (runs as 65532 by
# default; as root in a privileged FUSE sidecar libfuse mounts directly).
chmod 0755 "$ROOT/usr/bin/fusermount3"

# TLS trust: the bundle libcurl was built to read (curl-config --ca).
copy_path /etc/ssl/certs/ca-certificates.crt
# OS identification for image scanners.
copy_path /etc/os-release
copy_path /etc/debian_version

cat >"$ROOT/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:$NONROOT_UID:$NONROOT_UID:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$ROOT/etc/group" <<EOF
root:x:0:
nonroot:x:$NONROOT_UID:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
mkdir -p "$ROOT/home/nonroot"
chown "$NONROOT_UID:$NONROOT_UID" "$ROOT/home/nonroot" 2>/dev/null || true
chmod 0700 "$ROOT/home/nonroot"

# dpkg -S knows a file by the path its package shipped, which on merged-/usr
# may be the /lib or the /usr/lib spelling (likewise /bin): ask for both
# spellings of every copied path in one dpkg-query call (one call per path
# reads the whole package database each time).
other_spelling() {
	case $1 in
	/usr/bin/* | /usr/sbin/* | /usr/lib/* | /usr/lib64/*) echo "${1#/usr}" ;;
	/bin/* | /sbin/* | /lib/* | /lib64/*) echo "/usr$1" ;;
	*) echo "$1" ;;
	esac
}
declare -A OWNER=()
queries=()
for p in "${!COPIED[@]}"; do
	queries+=("$p" "$(other_spelling "$p")")
done
while IFS= read -r line; do
	[[ $line == diversion* ]] && continue
	OWNER[${line#*: }]=${line%%: *}
done < <(dpkg-query -S "${queries[@]}" 2>/dev/null || true)

declare -A PKGS=()
for p in "${!COPIED[@]}"; do
	[[ $p == /usr/local/bin/secretfs ]] && continue
	pkg=${OWNER[$p]:-${OWNER[$(other_spelling "$p")]:-}}
	pkg=${pkg%%, *}
	if [[ -z $pkg ]]; then
		# Generated at install time (the CA bundle) or a link dpkg does not list.
		case $p in
		/etc/ssl/certs/ca-certificates.crt) pkg=ca-certificates ;;
		*) [[ -L $p ]] && continue ;;
		esac
	fi
	if [[ -z $pkg ]]; then
		echo "image-rootfs: no Debian package owns $p" >&2
		exit 1
	fi
	PKGS[$pkg]=1
done
for pkg in "${!PKGS[@]}"; do
	name=${pkg%%:*}
	dpkg-query -s "$pkg" >"$ROOT/var/lib/dpkg/status.d/$name"
	if [[ -e /usr/share/doc/$name/copyright ]]; then
		copy_path "/usr/share/doc/$name/copyright"
	fi
done

echo "image-rootfs: $ROOT: $(find "$ROOT" -type f | wc -l) files from ${#PKGS[@]} packages:" \
	"$(printf '%s\n' "${!PKGS[@]}" | sed 's/:.*//' | sort | tr '\n' ' ')"
