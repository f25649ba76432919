#!/usr/bin/env bash
# The machine image (dockyard/machine:bookworm) for a test run, built once per content of its
# build context and not at all when that content was built before (`make test`; issue 17).
#
#   scripts/machine-image.sh            build unless the image of this context is the tag
#   scripts/machine-image.sh --digest   print the context's digest and stop
#
# The build context is images/machine (names, modes, contents) and the builder
# src/dockyard/adapters/machine_image.py (suite, packages, init, import changes); its digest
# (sha256 of a normalized tar: sorted names, no times or owners) is a second tag of the image,
# REPO:ctx-DIGEST. When that tag names the same image as REPO:bookworm there is nothing to do;
# otherwise `dockyard image build machine --force` re-imports from the cached debootstrap tree
# (/var/cache/dockyard/images, made once per machine; delete it to download the packages
# again) and the new image gets the tag; the tags of older contexts are dropped.
# DOCKYARD_MACHINE_IMAGE picks another tag than dockyard/machine:bookworm (a trial build).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${DOCKYARD_MACHINE_IMAGE:-dockyard/machine:bookworm}
REPO=${IMAGE%:*}
CONTEXT=(images/machine src/dockyard/adapters/machine_image.py)

digest=$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
           -cf - "${CONTEXT[@]}" | sha256sum | cut -c1-16)
if [ "${1:-}" = --digest ]; then
  echo "$digest"
  exit 0
fi
keyed="$REPO:ctx-$digest"

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

if [ -n "$(image_id "$keyed")" ] && [ "$(image_id "$keyed")" = "$(image_id "$IMAGE")" ]; then
  echo "$IMAGE is built from this context ($keyed): nothing to build"
  exit 0
fi
echo "building $IMAGE for context $digest"
.venv/bin/dockyard image build machine --tag "$IMAGE" --force
docker tag "$IMAGE" "$keyed"
for old in $(docker image ls "$REPO" --format '{{.Tag}}' | grep '^ctx-' | grep -vx "ctx-$digest"); do
  docker rmi "$REPO:$old" >/dev/null 2>&1 || true  # a container still on it keeps it
done
