#!/usr/bin/env bash
# Make Debian's headless Chromium and its driver available to the browser tests:
# ./scripts/servers/chromium.sh start|stop
#
# Nothing runs in the background: each test starts its own browser through chromedriver.
# start installs the packages chromium and chromium-driver when missing (nothing is
# downloaded by Selenium) and writes their paths to .servers/chromium.env.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
envfile="$root/.servers/chromium.env"

find_binaries() {
    browser="$(command -v chromium || true)"
    driver="$(command -v chromedriver || true)"
    [[ -n "$browser" && -n "$driver" ]]
}

install_chromium() {
    find_binaries && return 0
    echo "chromium or chromedriver not found; installing them with apt-get" >&2
    if ! command -v apt-get >/dev/null; then
        echo "error: chromium is not installed and apt-get is not available; install chromium and chromedriver yourself" >&2
        exit 1
    fi
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    if ! { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium chromium-driver; } >&2; then
        echo "error: 'apt-get install chromium chromium-driver' failed (no network, no root, or no such package)" >&2
        exit 1
    fi
    find_binaries || { echo "error: chromium or chromedriver still missing after apt-get" >&2; exit 1; }
}

start() {
    install_chromium
    mkdir -p "$(dirname "$envfile")"
    {
        echo "PIGEON_TEST_CHROMIUM=$browser"
        echo "PIGEON_TEST_CHROMEDRIVER=$driver"
    } >"$envfile"
    echo "chromium ready: $browser, $driver; wrote $envfile"
}

stop() {
    rm -f "$envfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
esac
