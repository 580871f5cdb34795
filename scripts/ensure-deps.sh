#!/usr/bin/env bash
# Installs what livegen needs on a fresh machine: npm packages (when node_modules is
# missing or older than package-lock.json) and Debian packages (ffmpeg; more with args)
# when missing and running as root. Safe to run repeatedly: it does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure-deps: installing npm packages" >&2
  npm ci --no-audit --no-fund >&2
fi

# Each argument is "command:debian-package"; ffmpeg is always needed.
wanted=("ffmpeg:ffmpeg" "ffprobe:ffmpeg" "$@")
missing=()
for pair in "${wanted[@]}"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1; then
    case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "ensure-deps: missing ${missing[*]}; install them (e.g. apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
