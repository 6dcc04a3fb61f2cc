#!/usr/bin/env bash
# Installs the Debian 12 packages sluice builds with, if any is missing.
# Needs root (or sudo) only when something must be installed.
set -euo pipefail
pkgs=(build-essential cmake pkg-config librdkafka-dev libjemalloc-dev libcmocka-dev
      libxxhash-dev libsqlite3-dev python3 clang clang-format kcat
      python3-kafka libssl-dev openssl
      zlib1g-dev liblz4-dev libzstd-dev libsnappy-dev libcurl4-openssl-dev
      # headless, for the status page's test (tests/integration/status_page.sh)
      chromium
      # a real Prometheus, promtool and curl for tests/integration/metrics_http.sh
      prometheus curl)
missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == *"install ok installed"* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
