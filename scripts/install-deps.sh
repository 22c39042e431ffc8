#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages mrfs needs to build and test. Does nothing when
# all are present; uses sudo when not root.
set -e
# build: compiler, pkg-config and the four libraries;
# tests: fuse3 (fusermount3), jq, python3 with numpy and torch (the serving
# tests' real readers), rsync, lmdb-utils, psmisc, util-linux (setpriv);
# fuzzing: clang and its runtime; benchmarks: bindfs (the peer measured);
# CI: clang-format (make format-check).
PKGS="build-essential pkg-config libfuse3-dev fuse3 liblmdb-dev lmdb-utils \
libxxhash-dev libjansson-dev jq python3 python3-numpy python3-torch rsync \
psmisc util-linux clang libclang-rt-14-dev bindfs clang-format"
missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "mrfs: installing$missing" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
