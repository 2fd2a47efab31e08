#!/usr/bin/env bash
# Optional system packages (Debian): chromium for the HTML-report browser test and
# dataset-fashion-mnist (real Fashion-MNIST, used when present). Installed with apt-get when we are
# root (CI machines); otherwise a one-line hint. Nothing here is needed to use dinobench.
set -uo pipefail
PKGS=()
command -v chromium >/dev/null 2>&1 || PKGS+=(chromium)
[ -d /usr/share/datasets/fashion-mnist ] || PKGS+=(dataset-fashion-mnist)
[ ${#PKGS[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${PKGS[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null \
        || echo "warning: apt-get install ${PKGS[*]} failed; the tests that need them fail under CI=true"
else
    echo "hint: sudo apt-get install ${PKGS[*]}  (browser test of the HTML report; Fashion-MNIST tasks)"
fi
