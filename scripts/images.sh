#!/usr/bin/env bash
# Builds the two container images, fdc-kernel and fdc-operator, from the repository root with
# whichever builder exists: docker, podman or buildah (in that order; override with
# FDC_IMAGE_BUILDER=podman etc.).
#
#   scripts/images.sh                                  # local tags fdc-kernel:VERSION, fdc-operator:VERSION
#   scripts/images.sh --push registry.example.com/team # also tag REGISTRY/fdc-*:VERSION and push them
#   scripts/images.sh --tag 0.1.0-rc1 --push ...       # another tag than the workspace version
#
# VERSION defaults to the workspace version in Cargo.toml. The builds are offline-capable
# after the first one (cargo build --locked; the registry is a build cache mount).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

tag="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
registry=""
while [ $# -gt 0 ]; do
    case "$1" in
        --push) registry="${2:?--push needs a registry, e.g. --push registry.example.com/team}"; shift 2 ;;
        --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "images.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ -n "$tag" ] || { echo "images.sh: no version in Cargo.toml; pass --tag" >&2; exit 2; }

builder="${FDC_IMAGE_BUILDER:-}"
if [ -z "$builder" ]; then
    for candidate in docker podman buildah; do
        if command -v "$candidate" >/dev/null 2>&1; then builder="$candidate"; break; fi
    done
fi
if [ -z "$builder" ] || ! command -v "$builder" >/dev/null 2>&1; then
    echo "images.sh: no container builder found (looked for ${builder:-docker, podman and buildah})." >&2
    echo "Install one, e.g. 'sudo apt-get install podman' or Docker (https://docs.docker.com/engine/install/)," >&2
    echo "or set FDC_IMAGE_BUILDER to the one you have." >&2
    exit 1
fi

build() { # dockerfile image
    echo "== $builder: building $2:$tag from $1"
    case "$builder" in
        buildah) buildah build --layers -f "$1" -t "$2:$tag" . ;;
        *) "$builder" build -f "$1" -t "$2:$tag" . ;;
    esac
}

push() { # image
    local remote="$registry/$1:$tag"
    echo "== $builder: pushing $remote"
    "$builder" tag "$1:$tag" "$remote"
    "$builder" push "$remote"
}

build kernel/Dockerfile fdc-kernel
build operator/Dockerfile fdc-operator
if [ -n "$registry" ]; then
    push fdc-kernel
    push fdc-operator
    echo "images: $registry/fdc-kernel:$tag $registry/fdc-operator:$tag"
    echo "install: helm install fdc charts/fdc --namespace fdc-system --create-namespace --set image.repository=$registry/fdc-operator --set image.tag=$tag"
else
    echo "images: fdc-kernel:$tag fdc-operator:$tag (local; --push REGISTRY to publish them)"
fi
