#!/usr/bin/env bash
# Installs everything the tests need (system packages too, when run as root) and runs the suite.
# Usage: ./scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

quiet_pip() { grep -v -e "^WARNING: Location" -e "^$" || true; }

# A Debian package is installed (dpkg's status "ii").
have_deb() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }

if [ "$(id -u)" = 0 ]; then
  need=()
  command -v git-lfs >/dev/null 2>&1 || need+=(git-lfs)
  command -v git >/dev/null 2>&1 || need+=(git)
  # The FUSE mount: fusermount3, libfuse3.so.3 (mfusepy loads it) and fio (random-read tests).
  command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
  have_deb libfuse3-3 || need+=(libfuse3-3)
  command -v fio >/dev/null 2>&1 || need+=(fio)
  # Jobs: a job run as another OS user (--jobs-user) commits with curl; prlimit sets its limits.
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
  # The web interface's browser tests: headless Chromium and its driver, from Debian.
  have_deb chromium || need+=(chromium)
  have_deb chromium-driver || need+=(chromium-driver)
  # The PostgreSQL metadata tests: a throwaway cluster (initdb, pg_ctl from /usr/lib/postgresql/*/bin).
  have_deb postgresql || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    apt_log=$(mktemp)
    # Quiet (debconf chatters on stderr), but a failure shows apt's output.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } \
        >"$apt_log" 2>&1; then
      cat "$apt_log" >&2
      rm -f "$apt_log"
      exit 1
    fi
    rm -f "$apt_log"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | quiet_pip
# torch is an optional extra; a bare `torch` would pull a multi-GB CUDA build, so pin the CPU wheel
# first (the test extra's bitsandbytes depends on torch and would otherwise resolve it).
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | quiet_pip
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | quiet_pip
# The lowest hf_xet huggingface_hub accepts, in its own folder: tests run the real Xet client with it
# too (PYTHONPATH=.venv/hf_xet-1.6.0).
if [ ! -d .venv/hf_xet-1.6.0/hf_xet ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --target .venv/hf_xet-1.6.0 \
    "hf_xet==1.6.0" 2>&1 | quiet_pip
fi
# Older official clients, each in its own venv (tests/compat/test_client_versions.py): the last 0.x and 1.x.
for hf_hub in 0.36.2 1.33.0; do
  if [ ! -x ".venv/hf_hub-$hf_hub/bin/hf" ]; then
    python3 -m venv ".venv/hf_hub-$hf_hub"
    ".venv/hf_hub-$hf_hub/bin/python" -m pip install -q --disable-pip-version-check "huggingface_hub==$hf_hub" \
      2>&1 | quiet_pip
  fi
done

# Static checks first: a lint or type error fails the run like a failing test.
# git-remote-hf/ is the package git_remote_hf (pyproject's package-dir): mypy finds it through a link.
mkdir -p .venv/typecheck && ln -sfn ../../git-remote-hf .venv/typecheck/git_remote_hf
echo "test.sh: ruff check hubfs git-remote-hf && mypy hubfs git_remote_hf"
.venv/bin/ruff check -q hubfs git-remote-hf
MYPYPATH=.venv/typecheck .venv/bin/mypy -p hubfs -p git_remote_hf
# With no test paths named, the official-client compatibility suite runs a second time on PostgreSQL +
# S3 (a throwaway cluster and moto's server, both started by tests/conftest.py).
# The whole suite runs on 3 pytest-xdist workers, a test file per worker at a time, each with its own session
# hub (tests mostly wait on servers and subprocesses: on 2 cores, 3 workers took 9.5 min, 2 took 12.4);
# any -n in the arguments (`-n 0`: one process) overrides that.
whole_suite=1
workers=(-n 3 --dist loadfile)
for arg in "$@"; do
  [ -e "${arg%%::*}" ] && whole_suite=0
  case "$arg" in -n|-n*|--numprocesses*) workers=() ;; esac
done
[ "$whole_suite" = 1 ] || workers=()
.venv/bin/python -m pytest "${workers[@]}" "$@"
if [ "$whole_suite" = 1 ] && [ -z "${HUBFS_TEST_BACKEND:-}" ]; then
  echo "test.sh: tests/compat again with PostgreSQL metadata and S3 objects"
  HUBFS_TEST_BACKEND=postgres-s3 .venv/bin/python -m pytest "${workers[@]}" "$@" tests/compat
fi
