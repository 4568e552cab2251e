#!/usr/bin/env bash
# Compiles the pure-JVM core and its tests with the JDK's javac and runs them with JUnit 5's
# console launcher (Debian: apt-get install junit5), against golden vectors the Python kit made:
#   android_demo/core/run_jvm_tests.sh GOLDEN.json BUNDLE_DIR BENCH_OUT.json
# Prints the launcher's tree, then one line "N passed, N failed"; exit 0 only if none failed.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 GOLDEN.json BUNDLE_DIR BENCH_OUT.json (make them with: tinybert-edge golden)" >&2
  exit 2
fi
JUNIT="${JUNIT_CONSOLE:-/usr/share/java/junit-platform-console-standalone.jar}"
if [ ! -f "$JUNIT" ]; then
  echo "error: $JUNIT not found; install JUnit 5 (apt-get install junit5) or set JUNIT_CONSOLE" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
javac --release 17 -encoding UTF-8 -d "$build/main" $(find "$here/src/main/java" -name '*.java')
cp -r "$here/src/main/resources/." "$build/main/"
javac --release 17 -encoding UTF-8 -cp "$build/main:$JUNIT" -d "$build/test" $(find "$here/src/test/java" -name '*.java')
set +e
java -Dtinybert.golden="$1" -Dtinybert.bundle="$2" -Dtinybert.benchOut="$3" -jar "$JUNIT" \
  --class-path "$build/main:$build/test" --scan-class-path --disable-banner --disable-ansi-colors --details=tree \
  2>&1 | tee "$build/log"
set -e
passed=$(sed -n 's/.*\[ *\([0-9]\+\) tests successful *\].*/\1/p' "$build/log")
failed=$(sed -n 's/.*\[ *\([0-9]\+\) tests failed *\].*/\1/p' "$build/log")
echo "${passed:-0} passed, ${failed:-?} failed"
[ "${failed:-1}" = "0" ] && [ "${passed:-0}" -gt 0 ]
