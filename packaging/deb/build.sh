#!/bin/sh
# Builds the Debian package of Gatehouse into target/deb/ (or --out DIR):
#
#   packaging/deb/build.sh [--binary PATH] [--out DIR] [--compress xz|gzip|none]
#
# Without --binary it builds the release binary first. The package holds the binary, the
# configuration (/etc/gatehouse/gatehouse.yaml and sites/example.yaml, as conffiles: an
# upgrade keeps your edits), the hardened systemd units (service and socket), the
# gatehouse system account (sysusers.d), the manual page and shell completions. Needs only
# dpkg-deb (and strip, objdump from binutils when present).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=""
out="$root/target/deb"
compress=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--compress xz|gzip|none]" >&2; exit 2 ;;
    esac
done
command -v dpkg-deb >/dev/null || { echo "$0: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release -p gatehouse)
    bin="$root/target/release/gatehouse"
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/gatehouse"

install -D -m 0755 "$bin" "$pkg/usr/bin/gatehouse"
# Symbols stay (for backtraces); debug information does not belong in the package.
if command -v strip >/dev/null; then strip --strip-debug "$pkg/usr/bin/gatehouse"; fi
# The `init` main file, with storage.path written out: the service's StateDirectory is its
# default anyway, but `gatehouse backup` run from a shell has no STATE_DIRECTORY.
mkdir -p "$pkg/etc/gatehouse"
sed -e 's|^# storage:$|storage:|' -e 's|^#   path: /var/lib/gatehouse/gatehouse.db$|  path: /var/lib/gatehouse/gatehouse.db|' \
    "$root/crates/gatehouse/src/init/gatehouse.yaml" > "$pkg/etc/gatehouse/gatehouse.yaml"
grep -q '^  path: /var/lib/gatehouse/gatehouse.db$' "$pkg/etc/gatehouse/gatehouse.yaml" ||
    { echo "$0: the init template's storage lines changed; update this script" >&2; exit 1; }
chmod 0644 "$pkg/etc/gatehouse/gatehouse.yaml"
install -D -m 0644 "$root/crates/gatehouse/src/init/example.yaml" "$pkg/etc/gatehouse/sites/example.yaml"
install -D -m 0644 "$here/gatehouse.service" "$pkg/lib/systemd/system/gatehouse.service"
install -D -m 0644 "$here/gatehouse.socket" "$pkg/lib/systemd/system/gatehouse.socket"
install -D -m 0644 "$here/sysusers.conf" "$pkg/usr/lib/sysusers.d/gatehouse.conf"
mkdir -p "$pkg/usr/share/man/man1" "$pkg/usr/share/bash-completion/completions" \
    "$pkg/usr/share/zsh/vendor-completions" "$pkg/usr/share/fish/vendor_completions.d" \
    "$pkg/usr/share/doc/gatehouse"
# Through a file, so a failing binary stops the build (sh has no pipefail).
"$bin" man > "$stage/gatehouse.1"
gzip -9n < "$stage/gatehouse.1" > "$pkg/usr/share/man/man1/gatehouse.1.gz"
"$bin" completions bash > "$pkg/usr/share/bash-completion/completions/gatehouse"
"$bin" completions zsh > "$pkg/usr/share/zsh/vendor-completions/_gatehouse"
"$bin" completions fish > "$pkg/usr/share/fish/vendor_completions.d/gatehouse.fish"
gzip -9n < "$root/docs/configuration.md" > "$pkg/usr/share/doc/gatehouse/configuration.md.gz"
cat > "$pkg/usr/share/doc/gatehouse/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: gatehouse

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$pkg/usr/share/doc/gatehouse/copyright"

# The newest glibc symbol version the binary needs is the libc6 it depends on.
glibc=$(objdump -T "$pkg/usr/bin/gatehouse" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
mkdir -p "$pkg/DEBIAN"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: gatehouse
Version: $version
Architecture: $arch
Maintainer: Gatehouse developers <gatehouse@localhost>
Depends: libc6 (>= ${glibc:-2.34}), libgcc-s1, adduser
Section: httpd
Priority: optional
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: edge reverse proxy with automatic HTTPS
 One binary that terminates and routes a server's traffic: HTTP/1.1, HTTP/2 and
 HTTP/3 reverse proxying, static files, automatic HTTPS through ACME, L4 streams
 with TLS termination for databases and mail, load balancing with health checks,
 rate limits, WAF and authentication, and request logs in SQLite.
CONTROL
printf '/etc/gatehouse/gatehouse.yaml\n/etc/gatehouse/sites/example.yaml\n' > "$pkg/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$pkg/DEBIAN/"

mkdir -p "$out"
deb="$out/gatehouse_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$pkg" "$deb" >/dev/null
echo "$deb"
