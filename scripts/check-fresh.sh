#!/bin/bash
# Runs the README's two commands on a fresh, minimal Debian 12 machine: a root made with
# debootstrap (--variant=minbase, nothing else installed), a clone of this repository's
# HEAD inside it, each command run as root in a chroot with /proc, /sys and /dev mounted.
# Reports each command's exit status and time, and exits non-zero if any failed.
#
#   scripts/check-fresh.sh            both commands (the main job, then the test suite)
#   scripts/check-fresh.sh main       only scripts/run.sh
#   scripts/check-fresh.sh test       only scripts/test.sh
#
# Needs root, debootstrap (installed from Debian's packages when missing) and a package
# mirror. The pristine root is built once and kept in $CSPRESNET_FRESH_CACHE
# (default /var/cache/cspresnet-fresh/pristine); each run works on a copy of it, removed
# afterwards (CSPRESNET_FRESH_KEEP=1 keeps it). Downloaded .deb files are kept in the cache
# too (the chroot's /var/cache/apt/archives is bound to it), so a second run installs the
# same packages without fetching them again; the installed system is new every time.
# Only committed work is checked: the clone is of HEAD, as a new user's clone would be.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
which="${1:-both}"
case "$which" in
    both) cmds="scripts/run.sh scripts/test.sh" ;;
    main) cmds="scripts/run.sh" ;;
    test) cmds="scripts/test.sh" ;;
    *) echo "usage: scripts/check-fresh.sh [both|main|test]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "check-fresh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }

mirror="${CSPRESNET_FRESH_MIRROR:-http://deb.debian.org/debian}"
cache_dir=$(dirname "${CSPRESNET_FRESH_CACHE:-/var/cache/cspresnet-fresh/pristine}")
pristine="${CSPRESNET_FRESH_CACHE:-$cache_dir/pristine}"
archives="$cache_dir/archives"
mkdir -p "$cache_dir" "$archives/partial"

if [ ! -x "$pristine/bin/sh" ]; then
    if ! command -v debootstrap >/dev/null; then
        echo "check-fresh: installing debootstrap" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "check-fresh: building a minimal Debian 12 root in $pristine (debootstrap, $mirror)" >&2
    rm -rf "$pristine.tmp"
    if ! debootstrap --variant=minbase bookworm "$pristine.tmp" "$mirror" >"$cache_dir/debootstrap.log" 2>&1; then
        echo "check-fresh: debootstrap failed (no package mirror?); see $cache_dir/debootstrap.log" >&2
        tail -5 "$cache_dir/debootstrap.log" >&2
        exit 1
    fi
    mv "$pristine.tmp" "$pristine"
fi

root=$(mktemp -d /var/tmp/cspresnet-fresh.XXXXXX)
mounted=""
cleanup() {
    for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
    if [ "${CSPRESNET_FRESH_KEEP:-0}" = 1 ]; then
        echo "check-fresh: kept $root" >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp -a "$pristine/." "$root/"
# A Debian 12 installation's usual sources: the release, its updates and security.
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
[ -n "${CSPRESNET_FRESH_MIRROR:-}" ] && sed -i '/debian-security/d' "$root/etc/apt/sources.list"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# No package may start a service inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

for m in proc sys dev; do mkdir -p "$root/$m"; done
mount -t proc proc "$root/proc";           mounted="$root/proc $mounted"
mount --rbind /sys "$root/sys";            mounted="$root/sys $mounted"
mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev";            mounted="$root/dev $mounted"
mount --make-rslave "$root/dev"
mount --bind "$archives" "$root/var/cache/apt/archives"
mounted="$root/var/cache/apt/archives $mounted"

git clone -q --no-hardlinks "$repo" "$root/root/cspresnet"
echo "check-fresh: cloned $(git -C "$repo" rev-parse --short HEAD) into a fresh Debian 12 root ($root)" >&2

status=0
report=""
for c in $cmds; do
    echo "check-fresh: ---- $c ----" >&2
    t0=$(date +%s)
    set +e
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/cspresnet && $c" </dev/null
    rc=$?
    set -e
    t1=$(date +%s)
    report="$report$(printf '  %-16s exit %-3s %4d s' "$c" "$rc" $((t1 - t0)))
"
    [ "$rc" -eq 0 ] || status=1
done
echo "check-fresh: results on a fresh Debian 12 root ($(date -u '+%Y-%m-%d %H:%M UTC')):" >&2
printf '%s' "$report" >&2
exit $status
