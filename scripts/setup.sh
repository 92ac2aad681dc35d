#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine to run firedrill from source: the system tools the agent
# and the tests use, a pinned pnpm, and the workspace's dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.9

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: firedrill needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# System tools: taskset (pins cpu-burn threads), ip/tc (network faults), nft (loss, blackhole).
missing=()
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# dns-fault tests: a real resolver (dnsmasq-base: the binary only, no service listening on :53)
# in a namespace, and dig to query it.
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || missing+=(dnsutils)
command -v fallocate >/dev/null 2>&1 || missing+=(util-linux)
# systemd-host tests: Debian roots built once with debootstrap, booted with systemd-nspawn.
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The install script (agent.sh) is checked with shellcheck by its test.
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
# HA tests: replicas on a real PostgreSQL the tests start themselves (initdb + pg_ctl as the postgres
# user, private port and socket dir); the packaged cluster is not used and is left stopped.
pg_installed_now=0
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
  pg_installed_now=1
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  if [ "$pg_installed_now" = 1 ]; then
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now postgresql.service >/dev/null 2>&1 || true
    else
      $SUDO invoke-rc.d postgresql stop >/dev/null 2>&1 || true
    fi
  fi
fi

# Stop conditions: the tests start their own prometheus and prometheus-alertmanager (binaries from
# Debian's packages) on free loopback ports with their own config and data dirs; the packaged
# services (:9090, :9093) are not what they use, so a fresh install doesn't leave them running.
prom_missing=()
command -v prometheus >/dev/null 2>&1 || prom_missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || prom_missing+=(prometheus-alertmanager)
if [ ${#prom_missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${prom_missing[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${prom_missing[@]}" >/dev/null
  for service in "${prom_missing[@]}"; do
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    else
      $SUDO invoke-rc.d "$service" stop >/dev/null 2>&1 || true
    fi
  done
fi

# The console's browser tests (test/console.test.ts) and `pnpm bench console` drive Debian's
# chromium through playwright-core (Playwright's own browser download is not used).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing chromium with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  echo "setup: installing pnpm@$PNPM_VERSION"
  npm install -g "pnpm@$PNPM_VERSION" >/dev/null
fi

pnpm install --frozen-lockfile --reporter=append-only
