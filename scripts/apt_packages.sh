# Sourced by the setup scripts: apt-get install the Debian packages whose probe is missing.
# A probe is a command name (looked up on PATH) or an absolute path that must exist.

# install_missing TAG ARRAY_NAME [EXTRA_PKG...]: ARRAY_NAME is an associative array probe -> package.
install_missing() {
  local tag=$1 probe
  local -n table=$2
  shift 2
  local missing=("$@")
  for probe in "${!table[@]}"; do
    if [[ $probe == /* ]]; then [[ -e $probe ]] && continue
    else command -v "$probe" >/dev/null 2>&1 && continue; fi
    missing+=("${table[$probe]}")
  done
  ((${#missing[@]})) || return 0
  echo "$tag: installing ${missing[*]}" >&2
  if [[ $(id -u) != 0 ]]; then echo "$tag: need root to apt-get install ${missing[*]}" >&2; return 1; fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
