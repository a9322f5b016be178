#!/bin/sh
# Puts a few real photos for `cspresnet demo` into out/photos/: scikit-image's sample
# photos (astronaut, chelsea, coffee, rocket) from Debian's python3-skimage package,
# fetched with `apt-get download` and unpacked with dpkg-deb, so that the ~130
# packages python3-skimage depends on are not installed. Does nothing if they are
# already there (or python3-skimage is installed). Without a package mirror it says so
# and exits 1 (scripts/run.sh stops there; `cspresnet demo` alone falls back to
# generated pictures and says so).
set -u
cd "$(dirname "$0")/.."
dest=out/photos
files="astronaut.png chelsea.png coffee.png rocket.jpg"
[ -f /usr/lib/python3/dist-packages/skimage/data/astronaut.png ] && exit 0
[ -f "$dest/rocket.jpg" ] && exit 0
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
if ! (cd "$work" && apt-get download -qq python3-skimage >/dev/null 2>&1); then
    (apt-get update -qq >/dev/null 2>&1 || sudo apt-get update -qq >/dev/null 2>&1) || true
    if ! (cd "$work" && apt-get download -qq python3-skimage >/dev/null 2>&1); then
        echo "fetch-photos: could not download python3-skimage (no package mirror?): no photos for the demo" >&2
        exit 1
    fi
fi
dpkg-deb -x "$work"/python3-skimage_*.deb "$work/x" || { echo "fetch-photos: cannot unpack python3-skimage" >&2; exit 1; }
for f in $files; do
    cp "$work/x/usr/lib/python3/dist-packages/skimage/data/$f" "$dest/$f.tmp" || exit 1
done
for f in $files; do mv "$dest/$f.tmp" "$dest/$f"; done
echo "fetch-photos: $files -> $dest/ (from Debian's python3-skimage)" >&2
