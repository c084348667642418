# Sourced by the drivers' run.sh: `target_dir MANIFEST` prints the folder cargo builds that
# manifest's binaries into. Asking cargo honours CARGO_TARGET_DIR, `build.target-dir` in a cargo
# config and relative paths alike, so a CI cache setting never sends run.sh to a missing binary.
target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$1" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
