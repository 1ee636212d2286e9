#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing.
# CI runs as root; elsewhere we say what is missing and let the tests skip nothing silently.
set -u
need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# The ruler's tests run the real Alertmanager and Prometheus (remote-write receiver).
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# The JetStream object store backend's tests run the real nats-server (Debian's 2.9.10 is
# the oldest version Sluiceway supports); Debian puts it in /usr/sbin.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "missing Debian packages (run as root: apt-get install ${need[*]})" >&2
  exit 1
fi
