#!/bin/bash
# Builds the data-plane and control-plane images with podman (README, "Deploy on
# Kubernetes"), from the repository's root:  tools/images.sh [tag]
# Exits with 3 when this machine can neither pull nor make the base image, or
# podman cannot run a container on it.
#
# The Dockerfiles start from Debian's official images.  Where no registry can
# be reached (a machine that only reaches Debian's and npm's package mirrors),
# the base is made here instead: a minimal bookworm from this machine's own apt
# sources and trust anchors (mmdebstrap), tagged as the official name, so the
# Dockerfiles stay the ones a registry user builds.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-0.1.0}

# a minimal bookworm made here, tagged $1
make_base() {
    echo "images: no registry answers for $1; making it with mmdebstrap" >&2
    local sources tar
    sources=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
    tar=$(mktemp --suffix=.tar)
    trap 'rm -f "$tar"' RETURN
    # with this machine's own trust anchors too: where the network is only
    # reached through a proxy that signs with a local CA, npm needs it
    if ! mmdebstrap --quiet --variant=minbase --include=ca-certificates --format=tar \
            --customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share' \
            --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
            bookworm "$tar" - <<<"$sources" \
        || ! podman import -q "$tar" "$1" >/dev/null; then
        rm -f "$tar"
        echo "images: cannot make a base image on this machine (mmdebstrap or podman import failed)" >&2
        exit 3
    fi
}

full=docker.io/library/debian:bookworm slim=docker.io/library/debian:bookworm-slim
podman image exists $full || podman pull -q $full >/dev/null 2>&1 || make_base $full
# the slim variant: the same minimal system, where it was made here
podman image exists $slim || podman pull -q $slim >/dev/null 2>&1 || podman tag $full $slim

# How containers run here: podman's defaults, or, inside a sandbox that lets
# no process raise its limits and mixes cgroup versions, runc with the
# limits lowered.  The words that work are kept in build/podman.flags for the
# tests that run the images.
container_flags() {
    local flags
    for flags in "" "--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096"; do
        # shellcheck disable=SC2086
        if podman ${flags%% --ulimit*} run --rm ${flags#--runtime runc} --network host \
                docker.io/library/debian:bookworm-slim true >/dev/null 2>&1; then
            echo "$flags"
            return
        fi
    done
    echo "images: podman cannot run a container on this machine" >&2
    exit 3
}

flags=$(container_flags)
mkdir -p build
echo "$flags" >build/podman.flags
runtime=${flags%% --ulimit*} limits=${flags#--runtime runc}

# shellcheck disable=SC2086
podman $runtime build -q --network host $limits -f docker/Dockerfile.control-plane \
    -t "vmx-gateway/control-plane:$tag" . >/dev/null
# shellcheck disable=SC2086
podman $runtime build -q --network host $limits -f docker/Dockerfile.dataplane \
    -t "vmx-gateway/dataplane:$tag" . >/dev/null
echo "images: vmx-gateway/control-plane:$tag vmx-gateway/dataplane:$tag"
