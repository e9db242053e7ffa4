#!/usr/bin/env bash
# Builds the image localhost/orex:dev (buildah, `vfs` storage) FROM scratch:
# the release binaries of every orex process and exactly the shared
# libraries `ldd` lists for them, a non-root user and nothing else — no
# shell, no package manager. Base images cannot be pulled here, and none is
# needed. Then runs each binary's `--version` inside the image.
#
#   bash k8s/build-image.sh            # needs cargo and buildah (Debian: apt-get install buildah)
#
# Operators with a registry can build the same image with k8s/Containerfile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

image=${OREX_IMAGE:-localhost/orex:dev}
bins=(orex-gateway orex-sharing orex-risk orex-emergency orex)
# The uid and gid the processes run as (the distroless "nonroot" numbers).
uid=65532
b() { buildah --storage-driver vfs "$@"; }

cargo build --release --locked \
  -p orex-gateway -p orex-sharing -p orex-risk -p orex-emergency -p orex-cli

root=$(mktemp -d)
ctr=""
cleanup() {
  [ -n "$ctr" ] && b rm "$ctr" > /dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"
for bin in "${bins[@]}"; do
  install -m 0755 "target/release/$bin" "$root/usr/local/bin/$bin"
  # Every library the dynamic loader will open, at the path it looks for it
  # (the loader itself included).
  for lib in $(ldd "target/release/$bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
# A name for the uid, for tools that look one up; no login, no shell.
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:%d:%d:orex:/data:/sbin/nologin\n' "$uid" "$uid" > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:%d:\n' "$uid" > "$root/etc/group"
chown "$uid:$uid" "$root/data"

ctr=$(b from scratch)
b copy --quiet "$ctr" "$root" / > /dev/null
b config \
  --user "$uid:$uid" \
  --workingdir /data \
  --env RUST_BACKTRACE=1 \
  --label org.opencontainers.image.title=orex \
  --label org.opencontainers.image.source=https://example.invalid/orex \
  --entrypoint '["/usr/local/bin/orex-gateway"]' \
  --cmd '["--config", "/etc/orex/gateway.toml"]' \
  "$ctr"
b commit --quiet "$ctr" "$image" > /dev/null
b rm "$ctr" > /dev/null
ctr=""
echo "built $image"

# What the image promises: a non-root user, no shell, and each binary
# starting inside it.
user=$(b inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
if [ "$user" != "$uid:$uid" ]; then
  echo "image user is '$user', not $uid:$uid" >&2
  exit 1
fi
ctr=$(b from "$image")
if b run --isolation chroot "$ctr" -- /bin/sh -c true > /dev/null 2>&1; then
  echo "the image has a shell" >&2
  exit 1
fi
for bin in "${bins[@]}"; do
  printf '%s: ' "$bin"
  b run --isolation chroot "$ctr" -- "/usr/local/bin/$bin" --version
done
echo "$image: user $user, no shell, $(b inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$image") by default"
