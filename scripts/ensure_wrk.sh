#!/usr/bin/env bash
# Make sure the benchmark's load generator, wrk, is installed (Debian package `wrk`).
# Best effort: without root or without the package, `python -m bench` falls back to its Python
# asyncio load generator and says so in its output, so this never fails the build.
set -uo pipefail

command -v wrk >/dev/null 2>&1 && exit 0
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_wrk: wrk is not installed (apt-get install wrk); bench uses its Python load generator" >&2
    exit 0
fi
echo "ensure_wrk: installing wrk"
if ! apt-get install -y -qq wrk >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq wrk >/dev/null 2>&1 \
        || echo "ensure_wrk: could not install wrk; bench uses its Python load generator" >&2
fi
exit 0
