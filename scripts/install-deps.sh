#!/bin/sh
# Installs what building and testing cspresnet needs on Debian 12, only when missing.
#   scripts/install-deps.sh build   compiler and make
#   scripts/install-deps.sh test    + PyTorch, NumPy and pytest for the reference tests
set -eu
want="${1:-build}"
pkgs=""
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || pkgs="$pkgs $1"; }
need gcc
need make
need libc6-dev
if [ "$want" = test ]; then
    need python3-torch
    need python3-numpy
    need python3-pytest
fi
if [ -n "$pkgs" ]; then
    echo "installing:$pkgs" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null
fi
