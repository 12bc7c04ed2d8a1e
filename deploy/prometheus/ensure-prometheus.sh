#!/usr/bin/env bash
# Makes Debian's Prometheus server and promtool available for the tests and prints the
# directory holding both: that one line is all that goes to stdout, everything else to stderr.
# Installs the `prometheus` package when promtool is missing (needs root); the package's own
# service is kept from starting: each test runs a private server on a port of its own.
set -euo pipefail

exec 3>&1 1>&2
log() { echo "ensure-prometheus: $*"; }
die() { log "$*"; exit 1; }

# Two runs at once (make and pytest, two shells) would race on apt.
exec 9>/var/tmp/aftersales-hub-prometheus.lock
flock 9

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  [ "$(id -u)" -eq 0 ] || die "no prometheus/promtool binaries, and installing them needs root"
  log "installing Prometheus from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d; 101 means "do not start".
  policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=1
  fi
  status=0
  {
    apt-get update -qq &&
      apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 prometheus
  } || status=$?
  if [ -n "$added_policy" ]; then rm -f "$policy"; fi
  [ "$status" -eq 0 ] || die "apt-get failed (exit $status)"
fi

dirname "$(command -v promtool)" >&3
