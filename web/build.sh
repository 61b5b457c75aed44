#!/usr/bin/env bash
# Builds the playground page into web/dist/ for the gateway to embed.
#
# node_modules come from `npm ci` against package-lock.json, once per
# lockfile: they live under $SANDRUN_CACHE/web/modules-<lockfile hash>/ and
# web/node_modules is a link to them. The bundle is rebuilt only when its
# inputs (lockfile, build.mjs, src/) change, so a warm build does nothing.
# Needs Node.js 18 or later and npm, and the npm registry for a cold cache.
set -euo pipefail
web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$web"
cache="${SANDRUN_CACHE:-/var/cache/sandrun}/web"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: the playground page (web/) needs Node.js 18+ and npm" >&2
  exit 1
fi

lock_hash=$(sha256sum package-lock.json | cut -c1-16)
modules="$cache/modules-$lock_hash"
if [[ ! -d $modules/node_modules ]]; then
  echo "web: npm ci (cached in $modules)" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.modules.XXXXXX")
  chmod 755 "$tmp"
  cp package.json package-lock.json "$tmp/"
  # No install scripts: esbuild's binary comes in its own package.
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  # Another build may have got there first; its copy is as good. A copy
  # without node_modules is what an interrupted one left.
  [[ -d $modules/node_modules ]] || rm -rf "$modules"
  mv -T "$tmp" "$modules" 2>/dev/null || rm -rf "$tmp"
fi
# Marks this copy as in use; copies for other lockfiles go after 30 days unused.
touch "$modules"
find "$cache" -mindepth 1 -maxdepth 1 \( -name 'modules-*' -mtime +30 -o -name '.modules.*' -mtime +1 \) \
  -exec rm -rf {} + 2>/dev/null || true
if [[ -e node_modules && ! -L node_modules ]]; then rm -rf node_modules; fi
[[ $(readlink node_modules 2>/dev/null) == "$modules/node_modules" ]] || ln -sfn "$modules/node_modules" node_modules

inputs=$( { sha256sum package-lock.json build.mjs; find src -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
if [[ -f dist/.inputs && $(cat dist/.inputs) == "$inputs" ]]; then
  echo "web: dist/ is up to date" >&2
  exit 0
fi
node build.mjs >&2
echo "$inputs" > dist/.inputs
