#!/bin/bash
# Builds Salvo's libFuzzer targets with clang++-14 (ASan + UBSan) straight
# from the source tree and runs each for a while over its seed corpus
# (tests/fuzz/corpus/<target>/). Exits 1 if any target crashes, leaks,
# hangs or fails to build, printing the reproducer path; exits 0 with
# "skipped: ..." only when clang++-14 is missing. Also run by Bazel as
# //tests/fuzz:fuzz_test (`--time 10`).
#
# Usage: run_fuzzers.sh [--time SECONDS] [--seed N] [--jobs N] [--keep-corpus]
#                       [--build-only] [TARGET...]
# Targets: reply_parser client_fsm render dns_message (default: all).
#   --time        seconds per target (default 10)
#   --seed        libFuzzer -seed (default 1, so a run replays the same way)
#   --keep-corpus keep what the fuzzer finds in $BUILD_DIR/corpus/<target>
#                 and start from it next time (default: a fresh temp dir)
# Objects and binaries are cached by content hash in
# ${SALVO_FUZZ_BUILD:-/tmp/salvo-fuzz-build-$UID}; crash inputs are kept in
# $BUILD_DIR/artifacts/<target>/. Reproduce one with
#   $BUILD_DIR/bin/<target> <crash-file>
set -u -o pipefail

CXX=${CLANGXX:-clang++-14}
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "skipped: clang++-14 not installed"
  exit 0
fi

# The workspace: this script's real location (through Bazel's runfiles
# symlinks), two levels up.
SELF=$(readlink -f "${BASH_SOURCE[0]}")
SRC=$(cd "$(dirname "$SELF")/../.." && pwd)
BUILD_DIR=${SALVO_FUZZ_BUILD:-/tmp/salvo-fuzz-build-$(id -u)}

TIME=10
SEED=1
JOBS=2
KEEP=0
BUILD_ONLY=0
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --keep-corpus) KEEP=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) sed -n '2,20p' "$SELF"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
ALL_TARGETS=(reply_parser client_fsm render dns_message)
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

# Sources per target, relative to $SRC ($GEN/ for generated ones). Files that
# every target of a package may need but that are not listed here are picked
# up as "extras" (see below), so a new helper .cc does not break the build.
sources_of() {
  case "$1" in
    reply_parser) echo tests/fuzz/reply_parser_fuzz.cc \
      engine/smtp/reply_parser.cc engine/smtp/reply.cc ;;
    client_fsm) echo tests/fuzz/client_fsm_fuzz.cc engine/smtp/client_fsm.cc \
      engine/smtp/reply_parser.cc engine/smtp/reply.cc ;;
    render) echo engine/render/template_fuzz.cc engine/render/template.cc \
      engine/render/mime.cc GEN/storage/records.pb.cc ;;
    dns_message) echo engine/dns/dns_message_fuzz.cc engine/dns/dns_message.cc ;;
    *) return 1 ;;
  esac
}
# Other library sources of the target's package, compiled if they compile and
# linked from an archive only when referenced.
extras_of() {
  local dir
  case "$1" in
    reply_parser|client_fsm) dir=engine/smtp ;;
    render) dir=engine/render ;;
    dns_message) dir=engine/dns ;;
  esac
  local f
  for f in "$SRC/$dir"/*.cc; do
    f=${f#"$SRC/"}
    case "$f" in
      *_test.cc|*_bench.cc|*_fuzz.cc|*fixture*|*test_decode*|*/session*.cc|\
      */mx_resolver*.cc) continue ;;
    esac
    echo "$f"
  done
}
for t in "${TARGETS[@]}"; do
  sources_of "$t" >/dev/null || { echo "unknown target $t" >&2; exit 2; }
done

mkdir -p "$BUILD_DIR"/{obj,bin,artifacts,corpus} || exit 1
RUN=$(mktemp -d "$BUILD_DIR/run.XXXXXX") || exit 1
trap 'rm -rf "$RUN"' EXIT
GEN=$RUN/gen
mkdir -p "$GEN"

# storage/records.pb.{h,cc}, generated like Bazel's genrule does.
if ! (cd "$SRC" && protoc --proto_path=. --cpp_out="$GEN" storage/records.proto); then
  echo "FAILED: protoc storage/records.proto" >&2
  exit 1
fi

# Flags that change the code; include paths are kept out of the cache key.
CODE_FLAGS="-std=c++17 -O1 -gline-tables-only -fno-omit-frame-pointer \
-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
-Wall -Wno-sign-compare"
INCLUDES="-I$SRC -I$GEN -isystem /usr/include/android"
ABSL_LIBS=$(grep -o -- '-labsl_[a-z0-9_]*' "$SRC/third_party/system/BUILD" | tr '\n' ' ')
LINK_FLAGS="-fsanitize=fuzzer,address,undefined -Wl,--as-needed \
-L/usr/lib/x86_64-linux-gnu/android -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android \
$ABSL_LIBS -lprotobuf -luv -lssl -lcrypto -lpthread"
COMPILER_ID=$("$CXX" --version | head -1)

path_of() {  # source name -> absolute path
  case "$1" in GEN/*) echo "$GEN/${1#GEN/}" ;; *) echo "$SRC/$1" ;; esac
}

# Content key of one translation unit: compiler, flags, the file and every
# non-system header it includes (named relative to $SRC / $GEN).
object_key() {
  local file deps
  file=$(path_of "$1")
  # shellcheck disable=SC2086
  deps=$("$CXX" $CODE_FLAGS $INCLUDES -MM -MT x "$file" 2>/dev/null |
         sed -e 's/^x://' -e 's/\\$//' | tr ' ' '\n' | sed '/^$/d' | sort -u) ||
    return 1
  {
    echo "$COMPILER_ID $CODE_FLAGS"
    local d
    for d in $deps; do
      echo "== ${d#"$SRC/"}" | sed "s|$GEN/|GEN/|"
      cat "$d"
    done
  } | sha256sum | cut -c1-32
}

# Compiles $1 into the object cache; prints the object path.
compile() {
  local key obj file
  key=$(object_key "$1") || return 1
  obj=$BUILD_DIR/obj/$key.o
  if [ ! -s "$obj" ]; then
    file=$(path_of "$1")
    # shellcheck disable=SC2086
    "$CXX" $CODE_FLAGS $INCLUDES -c "$file" -o "$obj.$$" >&2 || {
      rm -f "$obj.$$"; return 1; }
    mv -f "$obj.$$" "$obj"
  fi
  echo "$obj"
}

# Compile every needed source once, $JOBS at a time.
declare -A OBJ
declare -A IS_EXTRA
ALL_SRCS=()
for t in "${TARGETS[@]}"; do
  for s in $(sources_of "$t"); do ALL_SRCS+=("$s"); done
done
for t in "${TARGETS[@]}"; do
  for s in $(extras_of "$t"); do
    if ! printf '%s\n' "${ALL_SRCS[@]}" | grep -qx -- "$s"; then
      IS_EXTRA[$s]=1
      ALL_SRCS+=("$s")
    fi
  done
done
mapfile -t ALL_SRCS < <(printf '%s\n' "${ALL_SRCS[@]}" | sort -u)

echo "building ${TARGETS[*]} with $COMPILER_ID (cache $BUILD_DIR)"
build_start=$SECONDS
mkdir -p "$RUN/objs"
running=0
for s in "${ALL_SRCS[@]}"; do
  ( o=$(compile "$s") && echo "$o" > "$RUN/objs/$(echo "$s" | tr / _)" ) \
    2> "$RUN/objs/$(echo "$s" | tr / _).log" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

FAILED=()
for s in "${ALL_SRCS[@]}"; do
  f=$RUN/objs/$(echo "$s" | tr / _)
  if [ -s "$f" ]; then
    OBJ[$s]=$(cat "$f")
  elif [ -n "${IS_EXTRA[$s]:-}" ]; then
    echo "warning: $s does not compile with clang; left out of the fuzzers"
  else
    cat "$f.log" >&2
    echo "FAILED: compiling $s" >&2
  fi
done

# Link each target: its own objects, then the extras of its package in an
# archive (members pulled in only when referenced).
declare -A BIN
for t in "${TARGETS[@]}"; do
  objs=()
  ok=1
  for s in $(sources_of "$t"); do
    if [ -z "${OBJ[$s]:-}" ]; then ok=0; break; fi
    objs+=("${OBJ[$s]}")
  done
  if [ $ok -eq 0 ]; then FAILED+=("$t (build)"); continue; fi
  extras=()
  for s in $(extras_of "$t"); do
    if [ -n "${IS_EXTRA[$s]:-}" ] && [ -n "${OBJ[$s]:-}" ]; then
      extras+=("${OBJ[$s]}")
    fi
  done
  key=$( { echo "$LINK_FLAGS"; printf '%s\n' "${objs[@]}" "${extras[@]}"; } |
         sha256sum | cut -c1-32)
  bin=$BUILD_DIR/bin/$t-$key
  if [ ! -x "$bin" ]; then
    archive=()
    if [ ${#extras[@]} -gt 0 ]; then
      ar rcs "$RUN/$t-extras.a" "${extras[@]}"
      archive=("$RUN/$t-extras.a")
    fi
    # shellcheck disable=SC2086
    if ! "$CXX" "${objs[@]}" "${archive[@]}" $LINK_FLAGS -o "$bin.$$"; then
      rm -f "$bin.$$"
      echo "FAILED: linking $t" >&2
      FAILED+=("$t (link)")
      continue
    fi
    mv -f "$bin.$$" "$bin"
  fi
  ln -sfn "$bin" "$BUILD_DIR/bin/$t"
  BIN[$t]=$bin
done
echo "built in $((SECONDS - build_start)) s"
if [ $BUILD_ONLY -eq 1 ]; then
  [ ${#FAILED[@]} -eq 0 ] && exit 0
  echo "FAILED: ${FAILED[*]}" >&2
  exit 1
fi

# Run each target over its seeds plus a work corpus for $TIME seconds.
for t in "${TARGETS[@]}"; do
  [ -n "${BIN[$t]:-}" ] || continue
  seeds=$SRC/tests/fuzz/corpus/$t
  if [ $KEEP -eq 1 ]; then
    work=$BUILD_DIR/corpus/$t
  else
    work=$RUN/corpus/$t
  fi
  art=$BUILD_DIR/artifacts/$t
  mkdir -p "$work" "$art"
  before=$(ls "$art" | wc -l)
  echo "=== $t: ${TIME} s over $(ls "$seeds" 2>/dev/null | wc -l) seeds"
  "${BIN[$t]}" -max_total_time="$TIME" -seed="$SEED" -timeout=10 \
    -rss_limit_mb=1024 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "$seeds" > "$RUN/$t.log" 2>&1
  rc=$?
  # Keep the log short: the crash report, or the final stats.
  if [ $rc -ne 0 ]; then
    cat "$RUN/$t.log"
    FAILED+=("$t")
    newest=$(ls -t "$art" | head -1)
    if [ -n "$newest" ] && [ "$(ls "$art" | wc -l)" -gt "$before" ]; then
      echo "FAILED: $t crashed (exit $rc); reproducer: $art/$newest"
      echo "  reproduce: $BUILD_DIR/bin/$t $art/$newest"
      echo "  input (base64): $(head -c 2048 "$art/$newest" | base64 -w0)"
      if [ -n "${TEST_UNDECLARED_OUTPUTS_DIR:-}" ]; then
        cp "$art/$newest" "$TEST_UNDECLARED_OUTPUTS_DIR/$t-$newest"
      fi
    else
      echo "FAILED: $t exited $rc without a reproducer"
    fi
  else
    grep -E '^(#[0-9]+ *DONE|Done [0-9]+ runs|stat::number_of_executed_units|INFO: seed corpus)' \
      "$RUN/$t.log" | tr '\n' ' '
    echo
    echo "ok: $t"
  fi
done

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "all fuzzers passed"
