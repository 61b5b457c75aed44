#!/usr/bin/env bash
# Runs shellcheck on every shell script of the repository: files named *.sh and
# files without an extension that start with a shell's #! line (.ci/run).
# Settings in .shellcheckrc. Debian's shellcheck is installed when missing,
# as on a fresh CI machine.
#   hack/lint-shell.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

if ! command -v shellcheck >/dev/null; then
  say "installing Debian's shellcheck"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

# Tracked and new (not ignored) files, so a script not yet committed counts.
scripts=()
while IFS= read -r -d '' f; do
  [[ -f $f ]] || continue
  case ${f##*/} in
    *.sh) scripts+=("$f") ;;
    *.*) ;;
    *) head -n1 "$f" | grep -qE '^#!.*[/ ](ba)?sh$' && scripts+=("$f") ;;
  esac
done < <(git ls-files -z --cached --others --exclude-standard)

((${#scripts[@]})) || die "no shell scripts found under $repo"
shellcheck "${scripts[@]}"
