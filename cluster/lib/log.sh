# What every script of cluster/, hack/ and images/ prints, on stderr so that
# stdout stays for results (a path, a bin directory). Sourced, not run.
#   log MESSAGE   a progress line, tagged with the script's $LOG_TAG
#   say MESSAGE   a step heading, in bold
#   die MESSAGE   an error line (tagged when $LOG_TAG is set), then exit 1
# shellcheck shell=bash

log() { printf '[%s] %s\n' "${LOG_TAG:-sandrun}" "$*" >&2; }
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '%serror: %s\n' "${LOG_TAG:+[$LOG_TAG] }" "$*" >&2; exit 1; }
