#!/usr/bin/env bash
# Runs pjdfstest (POSIX filesystem conformance, https://github.com/pjd/pjdfstest) on a hubfs mount.
#
# Usage: scripts/pjdfstest_mount.sh SOURCE DIR
#   SOURCE  pjdfstest's source: a git repository (its HEAD is exported with `git archive`, a bare
#           mirror works) or an unpacked source folder. pjdfstest is not packaged for Debian or PyPI and
#           its code is not part of hubfs: bring your own copy.
#   DIR     a folder inside a hubfs mount.
#
# pjdfstest is built in a temporary folder (`autoreconf -ifs && ./configure && make pjdfstest`; needs
# autoconf, automake, gcc, make, perl's prove, openssl: apt-installed here when missing) and removed at the end.
#
# - DIR writable (`hubfs mount --read-write`): the suite runs in a new subfolder of DIR (removed at the
#   end) with `prove`, minus the exclusions below, and prints per-folder results and prove's summary.
# - DIR read-only (a plain `hubfs mount`): every pjdfstest test creates the files it checks, so none of the
#   suite applies. The script then runs a small TAP file of its own, written with pjdfstest's binary and
#   its `expect` helper: stat/open/read of an existing file and folder succeed, and every call that would
#   modify the mount (create, mkdir, open for writing, O_TRUNC, truncate, unlink, rmdir, rename, link,
#   symlink, mkfifo, mknod, chmod, chown, utimensat) fails with EROFS.
#
# Exclusions (hf-mount's list, tests/pjdfstest.rs, as the starting point), both overridable:
#   PJDFSTEST_EXCLUDE_DIRS      folders of tests/ skipped whole (space-separated;
#                               default: "mkfifo mknod link": no fifos, devices or hard links on a hub)
#   PJDFSTEST_EXCLUDE_PATTERNS  .t files containing any of these strings are skipped ("|"-separated;
#                               default: fifos, devices and sockets, which the other tests create as fixtures;
#                               ENAMETOOLONG/NAME_MAX; the sticky bit; hard links)
#   PJDFSTEST_TIMEOUT           seconds prove may run (default 3600)
#   PJDFSTEST_LOG               also keep prove's whole output in this file
# Must run as root (pjdfstest switches users and changes owners). Exit status: prove's (0: all passed).
set -euo pipefail

if [ $# -ne 2 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
src=$1
dir=$(cd "$2" && pwd)
[ "$(id -u)" = 0 ] || { echo "pjdfstest_mount.sh: must run as root" >&2; exit 2; }
need=()
for pair in autoreconf:autoconf automake:automake cc:gcc make:make prove:perl openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "pjdfstest_mount.sh: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
fstype=$(stat -f -c %T "$dir")
case "$fstype" in
  fuse*)
    # Many tests run calls as other users (uid 65534 and the like): without allow_other the kernel
    # refuses them any access to a FUSE mount (EACCES), whatever the modes say.
    if command -v findmnt >/dev/null 2>&1 && ! findmnt -n -o OPTIONS,FS-OPTIONS -T "$dir" | grep -q allow_other; then
      echo "pjdfstest_mount.sh: note: the mount has no allow_other: tests acting as other users get EACCES" >&2
    fi
    ;;
  *) echo "pjdfstest_mount.sh: note: $dir is on $fstype, not a FUSE mount" >&2 ;;
esac

exclude_dirs=${PJDFSTEST_EXCLUDE_DIRS-mkfifo mknod link}
exclude_patterns=${PJDFSTEST_EXCLUDE_PATTERNS-mkfifo|mknod|for type in|socket|ENAMETOOLONG|NAME_MAX|S_ISVTX|sticky|expect 0 link}

build=$(mktemp -d /tmp/pjdfstest-build.XXXXXX)
work=""
cleanup() {
  cd /
  if [ -n "$work" ] && [ -d "$work" ]; then
    rm -rf "$work" || echo "pjdfstest_mount.sh: note: could not remove $work" >&2
  fi
  rm -rf "$build"
}
trap cleanup EXIT

# -- build -------------------------------------------------------------------------------------------
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  rev=$(git -C "$src" rev-parse --short HEAD)
  git -C "$src" archive HEAD | tar -x -C "$build"
  origin="$src at $rev"
elif [ -f "$src/pjdfstest.c" ]; then
  cp -R "$src"/. "$build"
  origin="$src"
else
  echo "pjdfstest_mount.sh: $src is neither a git repository nor a pjdfstest source folder" >&2
  exit 2
fi
echo "building pjdfstest ($origin) in $build"
if ! (cd "$build" && autoreconf -ifs && ./configure && make pjdfstest) >"$build/build.log" 2>&1; then
  tail -30 "$build/build.log" >&2
  echo "pjdfstest_mount.sh: the build failed" >&2
  exit 2
fi

# -- read-only mount: the EROFS checks ---------------------------------------------------------------
if ! work=$(mktemp -d "$dir/pjdfstest.XXXXXX" 2>/dev/null); then
  work=""
  file=$(find "$dir" -maxdepth 3 -type f -print -quit)
  sub=$(find "$dir" -mindepth 1 -maxdepth 3 -type d -print -quit)
  [ -n "$file" ] || { echo "pjdfstest_mount.sh: $dir is read-only and holds no file to check" >&2; exit 2; }
  sub=${sub:-$dir}
  echo "$dir is read-only (EROFS): pjdfstest's suite needs a writable folder (each test creates its own"
  echo "files), so it does not apply; running the read-only checks on $file and $sub instead."
  mkdir -p "$build/tests/hubfs_readonly"
  t="$build/tests/hubfs_readonly/erofs.t"
  cat >"$t" <<'EOF'
#!/bin/sh
desc="a read-only hubfs mount: reads succeed, every modification fails with EROFS"
dir=`dirname $0`
. ${dir}/../misc.sh
f="$HUBFS_RO_FILE"; d="$HUBFS_RO_DIR"; n="$HUBFS_RO_DIR/pjdfstest_new"
echo "1..25"
expect regular lstat "$f" type
expect dir lstat "$d" type
expect ENOENT lstat "$n" type
expect ENOTDIR lstat "$f/x" type
expect 0 open "$f" O_RDONLY
expect 0 open "$d" O_RDONLY,O_DIRECTORY
expect EROFS create "$n" 0644
expect EROFS open "$n" O_CREAT,O_WRONLY 0644
expect EROFS mkdir "$n" 0755
expect EROFS open "$f" O_WRONLY
expect EROFS open "$f" O_RDWR
expect EROFS open "$f" O_RDONLY,O_TRUNC
expect EROFS truncate "$f" 0
expect EROFS unlink "$f"
expect EROFS rmdir "$d"
expect EROFS rename "$f" "$n"
expect EROFS link "$f" "$n"
expect EROFS symlink "$f" "$n"
expect EROFS mkfifo "$n" 0644
expect EROFS mknod "$n" f 0644 0 0
expect EROFS chmod "$f" 0600
expect EROFS chown "$f" 65534 65534
expect EROFS utimensat AT_FDCWD "$f" 1 0 1 0 0
expect EROFS chmod "$d" 0700
expect regular lstat "$f" type
EOF
  set +e
  (cd "$dir" && HUBFS_RO_FILE=$file HUBFS_RO_DIR=$sub timeout "${PJDFSTEST_TIMEOUT:-3600}" prove -v "$t")
  rc=$?
  set -e
  echo
  echo "summary: read-only mount: pjdfstest suite not applicable (needs --read-write); read-only EROFS checks: $([ $rc = 0 ] && echo PASS || echo FAIL)"
  exit $rc
fi

# -- writable: the suite -----------------------------------------------------------------------------
chmod 0755 "$work"  # mktemp's 0700 would shut out the tests that act as other users
tests=()
skipped_dirs=()
skipped_files=0
pattern_args=()
IFS='|' read -r -a patterns <<<"$exclude_patterns"
for p in "${patterns[@]}"; do
  if [ -n "$p" ]; then pattern_args+=(-e "$p"); fi
done
for d in "$build"/tests/*/; do
  name=$(basename "$d")
  if [[ " $exclude_dirs " == *" $name "* ]]; then
    skipped_dirs+=("$name")
    continue
  fi
  for t in "$d"*.t; do
    [ -e "$t" ] || continue
    if [ ${#pattern_args[@]} -gt 0 ] && grep -qF "${pattern_args[@]}" "$t"; then
      skipped_files=$((skipped_files + 1))
      continue
    fi
    tests+=("$t")
  done
done
total=$(find "$build/tests" -name '*.t' | wc -l)
echo "running ${#tests[@]} of $total test files in $work"
echo "  skipped folders: ${skipped_dirs[*]:-none}"
echo "  skipped $skipped_files files containing: $exclude_patterns"
set +e
(cd "$work" && timeout "${PJDFSTEST_TIMEOUT:-3600}" prove "${tests[@]}") >"$build/prove.log" 2>&1
rc=$?
set -e
if [ -n "${PJDFSTEST_LOG:-}" ]; then sed "s#$build/##g" "$build/prove.log" >"$PJDFSTEST_LOG"; fi
echo
printf '%-16s %6s %6s\n' folder passed files
for d in "$build"/tests/*/; do
  name=$(basename "$d")
  all=$(grep -c "^$d[^ ]*\.t \.\." "$build/prove.log" || true)
  [ "$all" -gt 0 ] || continue
  ok=$(grep -cE "^$d[^ ]*\.t .* ok$" "$build/prove.log" || true)
  printf '%-16s %6s %6s\n' "$name" "$ok" "$all"
done
echo
sed -n '/^Test Summary Report/,$p' "$build/prove.log" | sed "s#$build/##g"
grep -q '^Test Summary Report' "$build/prove.log" || grep -E '^(All tests successful|Files=|Result:)' "$build/prove.log"
[ $rc = 124 ] && echo "pjdfstest_mount.sh: prove ran past PJDFSTEST_TIMEOUT and was stopped" >&2
exit $rc
