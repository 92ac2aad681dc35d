#!/bin/sh
# firedrill agent installer: installs, upgrades and uninstalls firedrill-agent on a systemd host.
#
#   curl -fsSL --cacert ca.pem https://CP:7080/install/agent.sh | sudo sh -s -- --join-token fdj_… --labels app=web
#
# The control plane serves this script (GET /install/agent.sh) with its gRPC address, its HTTPS
# address and the agent version filled in, and the agent tarball it downloads. A copy ships in the
# tarball (share/agent.sh) and is kept at /opt/firedrill/agent/agent.sh for --uninstall
# (`firedrill-agent uninstall`). POSIX sh (runs under dash), never asks anything.
# What it does, step by step, and every exit code: docs/install.md.
#
# Exit codes: 0 done; 1 failed (download, checksum, systemd, the agent did not connect);
# 2 bad arguments; 3 this host cannot run the agent as installed (not root, no systemd, no nft/tc,
# unknown architecture); 4 refused: the control plane refused the join token, or the CA it serves
# is not the one the join token pins.
set -eu
umask 022

# Filled in by the control plane that serves this script.
FIREDRILL_VERSION='@@FIREDRILL_VERSION@@'
SERVED_SERVER='@@FIREDRILL_SERVER_ADDR@@'
SERVED_BASE_URL='@@FIREDRILL_BASE_URL@@'

# Every path lives under FIREDRILL_INSTALL_ROOT (empty on a host; the script's tests set it).
ROOT=${FIREDRILL_INSTALL_ROOT:-}
PREFIX="$ROOT/opt/firedrill/agent"
BIN_LINK="$ROOT/usr/local/bin/firedrill-agent"
ETC_DIR="$ROOT/etc/firedrill"
ENV_FILE="$ETC_DIR/agent.env"
UNIT_NAME=firedrill-agent.service
UNIT_FILE="$ROOT/etc/systemd/system/$UNIT_NAME"
STATE_DIR="$ROOT/var/lib/firedrill-agent"
SYSTEMD_RUN_DIR="$ROOT/run/systemd/system"

ME="firedrill agent.sh"

usage() {
  cat <<'EOF'
usage: agent.sh [--join-token TOKEN | --token-file FILE] [--server HOST:PORT[,...]] [--labels K=V,...]
                [--management CIDR|tcp:PORT,...] [--protect-process RULES] [--base-url URL]
                [--cacert FILE] [--version VERSION] [--wait DURATION] [--upgrade | --uninstall]

Installs firedrill-agent as the systemd unit firedrill-agent.service, enrolls it with the control
plane and waits until it is connected. Run it as root, e.g.:

  curl -fsSL --cacert ca.pem https://CP:7080/install/agent.sh | sudo sh -s -- --join-token fdj_...

  --join-token TOKEN      join token from `firedrill join-token create` (needed until enrolled;
                          never stored on this host); it pins the control plane's CA
  --token-file FILE       read the join token from FILE instead (not visible in ps)
  --server HOST:PORT[,HOST:PORT...]
                          the control plane's gRPC address, or up to 16 replicas' (the agent fails
                          over between them) (default: the one that served this script)
  --labels K=V,...        labels for targeting, e.g. app=web,firedrill:opt-in=true
  --management ...        networks and ports this host is managed through (never cut by network faults)
  --protect-process ...   processes process faults never signal (names, /patterns/, unit:NAME.service)
  --base-url URL          where to download from (default: the control plane that served this script)
  --cacert FILE           CA bundle to verify --base-url with (default: the control plane's CA from
                          /install/ca.pem, checked against the CA fingerprint in the join token)
  --version VERSION       the agent version to install (default: the one the control plane serves;
                          its --agent-releases directory must hold that version's tarball)
  --wait DURATION         how long to wait for the agent to connect (default 60s)
  --upgrade               replace the installed version: a clean stop reverts every fault, same identity
  --uninstall             stop and remove the agent, after reverting what its journal holds

Options not given on a second run keep the value of the first (in /etc/firedrill/agent.env);
--labels '' clears the labels. Exit codes: 0 done, 1 failed, 2 bad arguments, 3 host not suitable,
4 join token or CA refused. See docs/install.md.
EOF
}

say() { printf 'firedrill: %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$ME" "$*" >&2; }
die() {
  code=$1
  shift
  printf '%s: error: %s\n' "$ME" "$*" >&2
  exit "$code"
}
usage_error() {
  printf '%s: %s\n\n' "$ME" "$*" >&2
  usage >&2
  exit 2
}

# --- arguments -------------------------------------------------------------------------------

TOKEN=
TOKEN_FILE=
SERVER=
LABELS=
LABELS_SET=0
MANAGEMENT=
MANAGEMENT_SET=0
PROTECT=
PROTECT_SET=0
BASE_URL=
CACERT=
VERSION_ARG=
WAIT=60s
MODE=install

while [ $# -gt 0 ]; do
  opt=$1
  has_value=0
  value=
  case $opt in
    --*=*)
      value=${opt#*=}
      opt=${opt%%=*}
      has_value=1
      ;;
  esac
  case $opt in
    --join-token | --token-file | --server | --labels | --management | --protect-process | --base-url | --cacert | --version | --wait)
      if [ "$has_value" = 0 ]; then
        [ $# -ge 2 ] || usage_error "$opt needs a value"
        value=$2
        shift
      fi
      ;;
    --upgrade | --uninstall | -h | --help)
      [ "$has_value" = 0 ] || usage_error "$opt takes no value"
      ;;
    *)
      usage_error "unknown argument: $opt"
      ;;
  esac
  shift
  case $opt in
    --join-token) TOKEN=$value ;;
    --token-file) TOKEN_FILE=$value ;;
    --server) SERVER=$value ;;
    --labels) LABELS=$value LABELS_SET=1 ;;
    --management) MANAGEMENT=$value MANAGEMENT_SET=1 ;;
    --protect-process)
      if [ "$PROTECT_SET" = 1 ] && [ -n "$PROTECT" ]; then PROTECT="$PROTECT,$value"; else PROTECT=$value; fi
      PROTECT_SET=1
      ;;
    --base-url) BASE_URL=$value ;;
    --cacert) CACERT=$value ;;
    --version) VERSION_ARG=$value ;;
    --wait) WAIT=$value ;;
    --upgrade)
      [ "$MODE" = install ] || usage_error "--upgrade and --uninstall exclude each other"
      MODE=upgrade
      ;;
    --uninstall)
      [ "$MODE" = install ] || usage_error "--upgrade and --uninstall exclude each other"
      MODE=uninstall
      ;;
    -h | --help)
      usage
      exit 0
      ;;
  esac
done

# Whether a value matches an extended regular expression (whole value).
matches() { printf '%s\n' "$1" | grep -Eq "$2"; }

# A value written to agent.env in single quotes: no quote, backslash or line break in it.
check_env_value() {
  case $2 in
    *"'"* | *"\\"* | *"
"*) usage_error "$1: quotes, backslashes and line breaks are not allowed (got: $2)" ;;
  esac
}

if [ "$MODE" != uninstall ]; then
  if [ -n "$TOKEN" ] && [ -n "$TOKEN_FILE" ]; then usage_error "give --join-token or --token-file, not both"; fi
  if [ -n "$TOKEN_FILE" ]; then
    [ -r "$TOKEN_FILE" ] || die 2 "--token-file $TOKEN_FILE: cannot read it; give the file holding the join token from \`firedrill join-token create\`"
    TOKEN=$(tr -d ' \t\r\n' <"$TOKEN_FILE")
    [ -n "$TOKEN" ] || die 2 "--token-file $TOKEN_FILE is empty; put the join token from \`firedrill join-token create\` in it"
  fi
  PIN=
  if [ -n "$TOKEN" ]; then
    matches "$TOKEN" '^fdj_[A-Za-z0-9_-]+_[0-9a-f]{64}$' ||
      usage_error "--join-token: this is not a join token (fdj_<id>_<secret>_<CA sha256>); copy it whole from \`firedrill join-token create\`"
    PIN=${TOKEN##*_}
  fi
  if [ -n "$SERVER" ]; then
    matches "$SERVER" '^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}(,([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}){0,15}$' ||
      usage_error "--server $SERVER is not host:port (or up to 16 of them, comma-separated, no spaces); give the control plane's gRPC address, e.g. cp.example.internal:7070, or cp-a:7070,cp-b:7070 for replicas"
  fi
  if [ -n "$BASE_URL" ]; then
    BASE_URL=${BASE_URL%/}
    matches "$BASE_URL" '^https?://[][A-Za-z0-9.:_~%-]+(/[A-Za-z0-9._~%/-]*)?$' ||
      usage_error "--base-url $BASE_URL is not an http(s) URL of the control plane's HTTP API, e.g. https://cp.example.internal:7080"
  fi
  if [ "$LABELS_SET" = 1 ] && [ -n "$LABELS" ]; then
    matches "$LABELS" '^[A-Za-z0-9._/:@+=,-]+$' || usage_error "--labels $LABELS: use k=v pairs of letters, digits and . _ / : @ + -, comma-separated"
  fi
  if [ "$MANAGEMENT_SET" = 1 ] && [ -n "$MANAGEMENT" ]; then
    matches "$MANAGEMENT" '^[A-Za-z0-9.:/,]+$' || usage_error "--management $MANAGEMENT: give CIDRs, addresses and ports (tcp:22), comma-separated"
  fi
  check_env_value --protect-process "$PROTECT"
  matches "$WAIT" '^[0-9]+(ms|s|m)$' || usage_error "--wait $WAIT is not a duration; use e.g. 60s or 2m"
  if [ -n "$VERSION_ARG" ]; then
    matches "$VERSION_ARG" '^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$' || usage_error "--version $VERSION_ARG is not a version, e.g. 0.1.0"
    FIREDRILL_VERSION=$VERSION_ARG
  fi
  if [ -n "$CACERT" ] && [ ! -r "$CACERT" ]; then die 2 "--cacert $CACERT: cannot read it; give the CA bundle (PEM) that verifies the control plane's HTTPS certificate"; fi
fi

# --- the host ----------------------------------------------------------------------------------

require_root() {
  [ "$(id -u)" = 0 ] ||
    die 3 "must run as root (to install a systemd unit and run faults): run it with sudo, e.g. curl … | sudo sh -s -- --join-token …"
}

require_systemd() {
  [ -d "$SYSTEMD_RUN_DIR" ] ||
    die 3 "this host does not run systemd: $SYSTEMD_RUN_DIR is missing; this script installs a systemd unit. Run the agent under your supervisor with \`firedrill-agent run --server HOST:PORT --token-file FILE --state-dir /var/lib/firedrill-agent\`, and \`firedrill-agent recover --state-dir /var/lib/firedrill-agent\` after every exit of it, instead (the tarball holds the agent: /install/firedrill-agent-<version>-linux-<arch>.tar.gz; see docs/install.md)"
  command -v systemctl >/dev/null 2>&1 || die 3 "systemctl is not on PATH ($PATH) although systemd runs; run this script with a root shell's PATH (sudo -i)"
}

require_tools() {
  missing=
  command -v nft >/dev/null 2>&1 || missing="$missing nft"
  command -v tc >/dev/null 2>&1 || missing="$missing tc"
  [ -z "$missing" ] ||
    die 3 "missing:$missing (PATH $PATH). The network faults run nft (nftables) and tc (iproute2): install them, then run this again: Debian/Ubuntu: apt-get install -y nftables iproute2; RHEL/Fedora/Amazon Linux: dnf install -y nftables iproute-tc"
  missing=
  for tool in tar gzip sha256sum base64 mktemp; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  [ -z "$missing" ] || die 3 "missing:$missing; install them (Debian/Ubuntu: apt-get install -y coreutils tar gzip; RHEL: dnf install -y coreutils tar gzip), then run this again"
  if command -v curl >/dev/null 2>&1; then
    DOWNLOADER=curl
  elif command -v wget >/dev/null 2>&1; then
    DOWNLOADER=wget
  else
    die 3 "neither curl nor wget is installed: install one (apt-get install -y curl / dnf install -y curl), then run this again"
  fi
}

detect_arch() {
  machine=$(uname -m)
  case $machine in
    x86_64 | amd64) ARCH=x64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) die 3 "this host's architecture $machine is not supported: firedrill-agent is built for x86_64 (x64) and aarch64 (arm64)" ;;
  esac
}

# --- downloads ----------------------------------------------------------------------------------

# The hex SHA-256 of the first certificate's DER in a PEM file (what a join token pins).
pem_sha256() {
  awk '/-----BEGIN CERTIFICATE-----/ { inside = 1; next } /-----END CERTIFICATE-----/ { exit } inside' "$1" | base64 -d 2>/dev/null | sha256sum | cut -d' ' -f1
}

# The "message" of the control plane's JSON error answer, or the first line of the body.
error_message() {
  message=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' "$1" 2>/dev/null | head -n 1)
  [ -n "$message" ] || message=$(head -c 300 "$1" 2>/dev/null | head -n 1)
  printf '%s' "$message"
}

# fetch URL DEST [insecure]: downloads URL to DEST, verifying HTTPS with CA_FILE (or, with
# "insecure", not at all: only for ca.pem, which is then checked against the join token's pin).
fetch() {
  url=$1
  dest=$2
  mode=${3:-verify}
  rm -f "$dest"
  if [ "$DOWNLOADER" = curl ]; then
    if [ "$mode" = insecure ]; then
      set -- --insecure
    elif [ -n "$CA_FILE" ]; then
      set -- --cacert "$CA_FILE"
    else
      set --
    fi
    status=0
    http_code=$(curl -sS -L --proto '=https,http' --connect-timeout 15 --max-time 900 --retry 3 --retry-delay 1 "$@" -o "$dest" -w '%{http_code}' "$url" 2>"$TMP/fetch.err") || status=$?
    if [ "$status" -ne 0 ]; then
      why=$(tr '\n' ' ' <"$TMP/fetch.err")
      case $status in
        60 | 35 | 51 | 58 | 77 | 83 | 90 | 91)
          die 1 "cannot download $url: its HTTPS certificate does not verify against ${CA_FILE:-the system CAs} ($why). If the control plane's HTTP API serves a certificate of your own (--http-tls-cert), give its CA with --cacert (e.g. --cacert /etc/ssl/certs/ca-certificates.crt)"
          ;;
        *) die 1 "cannot download $url: $why; check that this host reaches the control plane's HTTP API there (--base-url), and proxies or firewalls in between" ;;
      esac
    fi
    if [ "$http_code" != 200 ]; then
      die 1 "cannot download $url: the control plane answered $http_code: $(error_message "$dest")"
    fi
  else
    if [ "$mode" = insecure ]; then
      set -- --no-check-certificate
    elif [ -n "$CA_FILE" ]; then
      set -- --ca-certificate="$CA_FILE"
    else
      set --
    fi
    status=0
    wget -q --content-on-error --timeout=15 --tries=3 "$@" -O "$dest" "$url" 2>"$TMP/fetch.err" || status=$?
    case $status in
      0) ;;
      5) die 1 "cannot download $url: its HTTPS certificate does not verify against ${CA_FILE:-the system CAs}; if the control plane's HTTP API serves a certificate of your own (--http-tls-cert), give its CA with --cacert" ;;
      8) die 1 "cannot download $url: the control plane answered with an error: $(error_message "$dest")" ;;
      *) die 1 "cannot download $url: wget failed ($status: $(tr '\n' ' ' <"$TMP/fetch.err")); check that this host reaches the control plane's HTTP API there (--base-url)" ;;
    esac
  fi
}

# Decides how downloads are verified: --cacert; else the CA this agent enrolled with; else the
# control plane's /install/ca.pem, checked against the CA fingerprint the join token pins.
resolve_ca() {
  CA_FILE=
  case $BASE_URL in
    http://*)
      warn "$BASE_URL is plain HTTP: the download is protected by nothing but the network (serve the API over HTTPS, the default off loopback)"
      return
      ;;
  esac
  if [ -n "$CACERT" ]; then
    CA_FILE=$CACERT
    return
  fi
  if [ -z "$PIN" ] && [ -f "$STATE_DIR/ca.crt" ]; then
    CA_FILE="$STATE_DIR/ca.crt"
    return
  fi
  [ -n "$PIN" ] || die 2 "no way to verify $BASE_URL: give --join-token (it pins the control plane's CA) or --cacert FILE"
  fetch "$BASE_URL/install/ca.pem" "$TMP/ca.pem" insecure
  seen=$(pem_sha256 "$TMP/ca.pem")
  [ "$seen" = "$PIN" ] ||
    die 4 "the CA served at $BASE_URL/install/ca.pem has SHA-256 $seen, but the join token pins $PIN: this is not the control plane the token was made by (or something in between answers for it). Check --base-url, or pass the right CA with --cacert; nothing was installed"
  CA_FILE="$TMP/ca.pem"
}

# Downloads, checks and unpacks version $FIREDRILL_VERSION into $PREFIX/$FIREDRILL_VERSION,
# unless it is there already (a directory of that name is only ever complete: renamed into place).
install_version() {
  TARGET="$PREFIX/$FIREDRILL_VERSION"
  if [ -x "$TARGET/bin/firedrill-agent" ]; then
    say "firedrill-agent $FIREDRILL_VERSION is already in $TARGET"
    return
  fi
  resolve_ca
  tarball="firedrill-agent-$FIREDRILL_VERSION-linux-$ARCH.tar.gz"
  say "downloading $BASE_URL/install/$tarball"
  fetch "$BASE_URL/install/$tarball.sha256" "$TMP/$tarball.sha256"
  fetch "$BASE_URL/install/$tarball" "$TMP/$tarball"
  read -r expected_sum expected_name <"$TMP/$tarball.sha256" || true
  if [ "${expected_name:-}" != "$tarball" ] || ! matches "${expected_sum:-}" '^[0-9a-f]{64}$'; then
    die 1 "$BASE_URL/install/$tarball.sha256 is not a checksum of $tarball (it reads: $(head -c 200 "$TMP/$tarball.sha256")); check the control plane's --agent-releases directory"
  fi
  (cd "$TMP" && sha256sum -c --quiet "$tarball.sha256" >/dev/null 2>&1) ||
    die 1 "$tarball does not match its SHA-256 ($expected_sum): the download is damaged or was changed on the way; nothing was installed. Run this again; if it persists, rebuild the release (pnpm release) on the control plane"
  mkdir -p "$PREFIX"
  chmod 0755 "$PREFIX"
  work="$PREFIX/.unpack-$FIREDRILL_VERSION-$$"
  rm -rf "$work"
  mkdir "$work"
  tar -xzf "$TMP/$tarball" -C "$work" --no-same-owner || die 1 "cannot unpack $tarball into $work (disk full?); nothing was installed"
  top="$work/firedrill-agent-$FIREDRILL_VERSION-linux-$ARCH"
  if [ ! -x "$top/bin/firedrill-agent" ] || [ ! -f "$top/share/firedrill-agent.service" ]; then
    rm -rf "$work"
    die 1 "$tarball does not hold firedrill-agent-$FIREDRILL_VERSION-linux-$ARCH/bin/firedrill-agent and share/firedrill-agent.service: it is not an agent release; rebuild it with pnpm release on the control plane"
  fi
  chmod -R go-w "$top"
  mv "$top" "$TARGET"
  rm -rf "$work"
  say "installed firedrill-agent $FIREDRILL_VERSION in $TARGET (sha256 $expected_sum)"
}

# Points $PREFIX/current at version $1 (atomically: a new link renamed over the old).
switch_current() {
  ln -sfn "$1" "$PREFIX/.current.new"
  mv -Tf "$PREFIX/.current.new" "$PREFIX/current"
}

# The copy of this script used by --uninstall, and the command on PATH.
install_links() {
  if [ -f "$PREFIX/current/share/agent.sh" ]; then
    cp "$PREFIX/current/share/agent.sh" "$PREFIX/.agent.sh.new"
    chmod 0755 "$PREFIX/.agent.sh.new"
    mv -f "$PREFIX/.agent.sh.new" "$PREFIX/agent.sh"
  fi
  mkdir -p "$(dirname "$BIN_LINK")"
  ln -sfn "$ROOT/opt/firedrill/agent/current/bin/firedrill-agent" "$BIN_LINK"
}

# --- settings ------------------------------------------------------------------------------------

# The value of KEY in the current agent.env ('' when absent).
env_value() {
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^$1='\\(.*\\)'\$/\\1/p" "$ENV_FILE" | tail -n 1
}

# Writes agent.env (0600 in a 0700 /etc/firedrill); ENV_CHANGED=1 when its content changed.
write_env() {
  [ "$LABELS_SET" = 1 ] || LABELS=$(env_value FIREDRILL_LABELS)
  [ "$MANAGEMENT_SET" = 1 ] || MANAGEMENT=$(env_value FIREDRILL_MANAGEMENT)
  [ "$PROTECT_SET" = 1 ] || PROTECT=$(env_value FIREDRILL_PROTECT_PROCESS)
  mkdir -p "$ETC_DIR"
  chmod 0700 "$ETC_DIR"
  new="$ETC_DIR/.agent.env.new"
  (
    umask 077
    {
      echo "# firedrill-agent settings, written by agent.sh (run it again to change them; see docs/install.md)."
      echo "FIREDRILL_SERVER_ADDR='$SERVER'"
      echo "FIREDRILL_LABELS='$LABELS'"
      [ -z "$MANAGEMENT" ] || echo "FIREDRILL_MANAGEMENT='$MANAGEMENT'"
      [ -z "$PROTECT" ] || echo "FIREDRILL_PROTECT_PROCESS='$PROTECT'"
    } >"$new"
  )
  chmod 0600 "$new"
  if [ -f "$ENV_FILE" ] && cmp -s "$new" "$ENV_FILE"; then
    rm -f "$new"
    ENV_CHANGED=0
  else
    mv -f "$new" "$ENV_FILE"
    ENV_CHANGED=1
    say "wrote $ENV_FILE (server $SERVER, labels ${LABELS:-none})"
  fi
}

# The server to write: --server; else the one in agent.env when upgrading or re-running without a
# token; else the address of the control plane that served this script.
choose_server() {
  if [ -n "$SERVER" ]; then return; fi
  existing=$(env_value FIREDRILL_SERVER_ADDR)
  if [ -n "$existing" ] && { [ "$MODE" = upgrade ] || [ -z "$TOKEN" ]; }; then
    SERVER=$existing
    return
  fi
  case $SERVED_SERVER in
    *@@*) die 2 "no --server: this copy of agent.sh was not served by a control plane; give --server HOST:PORT (its gRPC address), or fetch the script from https://CP:7080/install/agent.sh" ;;
  esac
  SERVER=$SERVED_SERVER
}

choose_base_url() {
  [ -z "$BASE_URL" ] || return 0
  case $SERVED_BASE_URL in
    *@@*) die 2 "no --base-url: this copy of agent.sh was not served by a control plane; give --base-url https://CP:7080 (its HTTP API), or fetch the script from there" ;;
  esac
  BASE_URL=$SERVED_BASE_URL
}

require_version() {
  case $FIREDRILL_VERSION in
    *@@*) die 2 "this copy of agent.sh was not served by a control plane and names no version to install: fetch it from https://CP:7080/install/agent.sh, or give --version, --server and --base-url" ;;
  esac
}

# --- enrollment, unit, connection ----------------------------------------------------------------

# Enrolls with the join token (or finds the agent enrolled) using the agent at $1; sets AGENT_ID.
# The token goes to the agent in its environment only: it is never written on this host.
enroll() {
  status=0
  if [ -n "$TOKEN" ]; then
    AGENT_ID=$(FIREDRILL_TOKEN=$TOKEN "$1" enroll --server "$SERVER" --state-dir "$STATE_DIR" 2>"$TMP/enroll.err") || status=$?
  else
    AGENT_ID=$(env -u FIREDRILL_TOKEN -u FIREDRILL_TOKEN_FILE "$1" enroll --server "$SERVER" --state-dir "$STATE_DIR" 2>"$TMP/enroll.err") || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    cat "$TMP/enroll.err" >&2
    if [ "$status" = 2 ]; then
      die 4 "enrollment with the control plane at $SERVER was refused (above); nothing was enabled. Run this again with a valid join token (firedrill join-token create)"
    fi
    die 1 "enrollment with the control plane at $SERVER failed (above); nothing was enabled. Check --server (the control plane's gRPC address) and that this host reaches it, then run this again"
  fi
  if grep -q '^firedrill-agent: enrolled' "$TMP/enroll.err"; then
    say "enrolled as $AGENT_ID"
  fi
}

# Installs the unit from version dir $1; UNIT_CHANGED=1 when its content changed.
install_unit() {
  mkdir -p "$(dirname "$UNIT_FILE")"
  if [ -f "$UNIT_FILE" ] && cmp -s "$1/share/firedrill-agent.service" "$UNIT_FILE"; then
    UNIT_CHANGED=0
  else
    cp "$1/share/firedrill-agent.service" "$UNIT_FILE.new"
    chmod 0644 "$UNIT_FILE.new"
    mv -f "$UNIT_FILE.new" "$UNIT_FILE"
    UNIT_CHANGED=1
    say "installed $UNIT_FILE"
  fi
}

systemd_do() {
  systemctl "$@" || die 1 "systemctl $* failed; see systemctl status $UNIT_NAME and journalctl -u $UNIT_NAME -n 50"
}

# Waits until the agent says it is connected; on timeout runs $1 (a rollback) before failing.
wait_connected() {
  say "waiting up to $WAIT for the agent to connect"
  if ! "$PREFIX/current/bin/firedrill-agent" status --state-dir "$STATE_DIR" --wait "$WAIT" >/dev/null 2>"$TMP/status.err"; then
    cat "$TMP/status.err" >&2
    ${1:-true}
    die 1 "the agent did not connect to $SERVER within $WAIT (above). It stays installed and keeps trying; see journalctl -u $UNIT_NAME -n 50, and check that this host reaches $SERVER"
  fi
}

remove_old_versions() {
  keep_a=$1
  keep_b=$2
  for dir in "$PREFIX"/*; do
    if [ ! -d "$dir" ] || [ -L "$dir" ]; then continue; fi
    name=${dir##*/}
    [ "$name" = "$keep_a" ] || [ "$name" = "$keep_b" ] || {
      rm -rf "$dir"
      say "removed the old version $name"
    }
  done
}

# --- the modes -----------------------------------------------------------------------------------

do_install() {
  current=
  [ -L "$PREFIX/current" ] && current=$(readlink "$PREFIX/current")
  if [ -n "$current" ] && [ "$current" != "$FIREDRILL_VERSION" ]; then
    die 2 "firedrill-agent $current is installed, and this control plane serves $FIREDRILL_VERSION: run this again with --upgrade to replace it (a clean stop reverts every fault; the agent keeps its identity)"
  fi
  install_version
  if [ -z "$current" ]; then switch_current "$FIREDRILL_VERSION"; fi
  install_links
  write_env
  enroll "$PREFIX/current/bin/firedrill-agent"
  install_unit "$PREFIX/current"
  if [ "$UNIT_CHANGED" = 1 ]; then systemd_do daemon-reload; fi
  systemd_do enable --quiet "$UNIT_NAME"
  if systemctl is-active --quiet "$UNIT_NAME"; then
    if [ "$ENV_CHANGED" = 1 ] || [ "$UNIT_CHANGED" = 1 ]; then
      say "settings changed: restarting $UNIT_NAME (a clean stop reverts every running fault)"
      systemd_do restart "$UNIT_NAME"
    else
      say "$UNIT_NAME is running; nothing changed"
    fi
  else
    systemd_do start "$UNIT_NAME"
  fi
  wait_connected
  echo "firedrill agent $AGENT_ID connected to $SERVER"
}

rollback() {
  warn "rolling back to $OLD_VERSION"
  systemctl stop "$UNIT_NAME" || true
  switch_current "$OLD_VERSION"
  if [ -f "$PREFIX/$OLD_VERSION/share/firedrill-agent.service" ]; then
    cp "$PREFIX/$OLD_VERSION/share/firedrill-agent.service" "$UNIT_FILE"
    systemctl daemon-reload || true
  fi
  systemctl start "$UNIT_NAME" || true
}

do_upgrade() {
  [ -L "$PREFIX/current" ] ||
    die 2 "nothing to upgrade: no agent is installed in $PREFIX; run this without --upgrade to install it"
  OLD_VERSION=$(readlink "$PREFIX/current")
  old_id=$(cat "$STATE_DIR/agent-id" 2>/dev/null || true)
  if [ "$OLD_VERSION" = "$FIREDRILL_VERSION" ]; then
    say "firedrill-agent $FIREDRILL_VERSION is installed already"
    do_install
    return
  fi
  install_version
  write_env
  # Enrolled already (the identity stays in the state dir); the new agent only checks it.
  enroll "$PREFIX/$FIREDRILL_VERSION/bin/firedrill-agent"
  say "stopping $UNIT_NAME: a clean stop reverts every running fault (and ExecStopPost runs recover)"
  systemd_do stop "$UNIT_NAME"
  switch_current "$FIREDRILL_VERSION"
  install_links
  install_unit "$PREFIX/current"
  if [ "$UNIT_CHANGED" = 1 ]; then systemd_do daemon-reload; fi
  systemd_do enable --quiet "$UNIT_NAME"
  systemd_do start "$UNIT_NAME"
  wait_connected rollback
  new_id=$(cat "$STATE_DIR/agent-id" 2>/dev/null || true)
  if [ -n "$old_id" ] && [ "$new_id" != "$old_id" ]; then
    warn "the agent id changed from $old_id to $new_id: the state dir $STATE_DIR lost the identity"
  fi
  remove_old_versions "$FIREDRILL_VERSION" "$OLD_VERSION"
  say "upgraded firedrill-agent $OLD_VERSION -> $FIREDRILL_VERSION (kept $OLD_VERSION beside it)"
  echo "firedrill agent $AGENT_ID connected to $SERVER"
}

do_uninstall() {
  require_root
  removed=
  agent_id=$(cat "$STATE_DIR/agent-id" 2>/dev/null || true)
  if [ -d "$SYSTEMD_RUN_DIR" ] && command -v systemctl >/dev/null 2>&1; then
    if [ -f "$UNIT_FILE" ] || systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null; then
      say "stopping $UNIT_NAME: a clean stop reverts every running fault (and ExecStopPost runs recover)"
      systemctl stop "$UNIT_NAME" 2>/dev/null || warn "systemctl stop $UNIT_NAME failed; reverting with recover below"
      systemctl disable --quiet "$UNIT_NAME" 2>/dev/null || true
    fi
  fi
  agent="$PREFIX/current/bin/firedrill-agent"
  if [ -x "$agent" ] && [ -d "$STATE_DIR" ]; then
    "$agent" recover --state-dir "$STATE_DIR" ||
      die 1 "could not revert everything the journal in $STATE_DIR holds (above), so nothing was removed: fix what the message names, then run this again (firedrill-agent uninstall)"
  fi
  if [ -f "$UNIT_FILE" ]; then
    rm -f "$UNIT_FILE"
    removed="$removed $UNIT_FILE"
  fi
  if [ -d "$PREFIX" ]; then
    rm -rf "$PREFIX"
    removed="$removed $PREFIX"
    rmdir "$ROOT/opt/firedrill" 2>/dev/null || true
  fi
  if [ -L "$BIN_LINK" ]; then
    rm -f "$BIN_LINK"
    removed="$removed $BIN_LINK"
  fi
  if [ -f "$ENV_FILE" ]; then
    rm -f "$ENV_FILE"
    removed="$removed $ENV_FILE"
  fi
  if [ -d "$ETC_DIR" ] && rmdir "$ETC_DIR" 2>/dev/null; then removed="$removed $ETC_DIR"; fi
  if [ -d "$STATE_DIR" ]; then
    rm -rf "$STATE_DIR"
    removed="$removed $STATE_DIR"
  fi
  if [ -d "$SYSTEMD_RUN_DIR" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
    systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
  fi
  if [ -z "$removed" ]; then
    say "nothing to remove: firedrill-agent is not installed here"
    return
  fi
  for path in $removed; do say "removed $path"; done
  if [ -d "$UNIT_FILE.d" ]; then say "left your drop-ins in $UNIT_FILE.d (remove them if you no longer need them)"; fi
  if [ -n "$agent_id" ]; then
    say "revoke $agent_id on the control plane so that its certificate is refused from now on: firedrill agents revoke $agent_id"
  fi
}

# One run at a time (cloud-init and a person, say): later ones wait for the first (util-linux flock).
take_lock() {
  if [ -d "$ROOT/run" ] && command -v flock >/dev/null 2>&1; then
    lock="$ROOT/run/firedrill-agent-install.lock"
    exec 9>"$lock"
    flock -w 600 9 || die 1 "another agent.sh has held $lock for 10 minutes; wait for it to end (or end it), then run this again"
  fi
}

# --- main ----------------------------------------------------------------------------------------

if [ "$MODE" = uninstall ]; then
  require_root
  take_lock
  do_uninstall
  exit 0
fi

require_version
require_root
require_systemd
take_lock
require_tools
detect_arch
choose_server
choose_base_url

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$MODE" = upgrade ]; then do_upgrade; else do_install; fi
