#!/bin/sh
# Skaffold `custom` builder of the real-Skaffold tests. Skaffold runs it with
# IMAGE (the tag to push), PUSH_IMAGE and BUILD_CONTEXT set; it
#   1. sleeps $RS_CTL/build-sleep-<artifact> seconds (else $RS_BUILD_SLEEP, else 1),
#   2. fails (exit 1) when $RS_CTL/build-fail-<artifact> exists,
#   3. otherwise writes a one-layer OCI image layout holding the artifact's src.txt
#      and pushes it with skopeo to IMAGE (a registry on 127.0.0.1: plain HTTP),
# and appends `<artifact> start|success|failure|canceled <epoch seconds>` lines to
# $RS_CTL/builds.log. The control files are read at each build, so a test can flip
# the behaviour while `skaffold dev` runs. When Skaffold cancels a build (Ctrl-C)
# it kills the script (exec.CommandContext sends SIGKILL; its SIGINT comes too
# late to matter), so no end is logged then; the sleep does not hold Skaffold's
# output pipe, or a killed build would keep Skaffold from exiting until it ended.
# A SIGINT or SIGTERM that does arrive is logged as `canceled` (exit 130).
set -eu
ctl=${RS_CTL:?RS_CTL must name the control directory}
name=$(basename "$BUILD_CONTEXT")
log() { echo "$name $1 $(date +%s.%N)" >>"$ctl/builds.log"; }
secs=$(cat "$ctl/build-sleep-$name" 2>/dev/null || echo "${RS_BUILD_SLEEP:-1}")
pid=
trap 'log canceled; [ -n "$pid" ] && kill "$pid" 2>/dev/null; exit 130' INT TERM
log start
echo "building $name for ${secs}s into $IMAGE (push=${PUSH_IMAGE:-})"
sleep "$secs" >/dev/null 2>&1 &
pid=$!
wait "$pid"
pid=
if [ -e "$ctl/build-fail-$name" ]; then
  log failure
  echo "build of $name fails on purpose ($ctl/build-fail-$name exists)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
cp "$BUILD_CONTEXT/src.txt" "$work/rootfs/src.txt"
blob() { # blob FILE -> prints sha256 and moves FILE into the layout
  d=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$work/oci/blobs/sha256/$d"
  echo "$d"
}
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" src.txt
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n "$work/layer.tar"
layer_size=$(stat -c %s "$work/layer.tar.gz")
layer=$(blob "$work/layer.tar.gz")
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" >"$work/config.json"
config_size=$(stat -c %s "$work/config.json")
config=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest_size=$(stat -c %s "$work/manifest.json")
manifest=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$manifest_size" >"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"

if [ "${PUSH_IMAGE:-false}" = true ]; then
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$work/oci:latest" "docker://$IMAGE"
fi
log success
