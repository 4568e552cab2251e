#!/usr/bin/env bash
# Type-checks app/ and engine-*/ (ExecuTorch, LiteRT, MediaPipe) Kotlin sources against api-stubs/
# and core/ (javac + kotlinc).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
demo="$(dirname "$here")"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
javac -nowarn -d "$build/classes" $(find "$here/src" -name '*.java') $(find "$demo/core/src/main/java" -name '*.java')
kotlinc -nowarn -cp "$build/classes" -d "$build/kotlin" \
  $(find "$demo/app" "$demo/engine-executorch" "$demo/engine-litert" "$demo/engine-mediapipe" -name '*.kt') 2>&1 \
  | grep -v -e 'Xverify' -e '^OpenJDK' || true
for cls in ExecuTorchEngine LiteRTEngine MediaPipeEngine MainActivity BenchmarkActivity Bundles; do
  if [ -z "$(find "$build/kotlin" -name "$cls.class" 2>/dev/null)" ]; then
    echo "app and engines: type-check FAILED ($cls did not compile)"
    exit 1
  fi
done
echo "app and engines: type-check passed"
