#!/usr/bin/env bash
# Signed .pkpass files per second on one core: tillpass beside passkit-generator (npm), the same
# storeCard (pass.json, images, localisations) and the same certificate chain, in one run.
# Needs Node.js and npm. Both run pinned to CPU 0 with taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/bench/passes
mkdir -p "$work/node"
cp benches/passkit/package.json benches/passkit/bench.mjs "$work/node/"
(cd "$work/node" && npm install --silent --no-audit --no-fund >/dev/null)
cargo build --release --bench passes >/dev/null 2>&1 || true
echo "== tillpass (Rust, ring RSA-2048)"
taskset -c 0 cargo bench --bench passes 2>/dev/null | grep -v '^$'
echo "== passkit-generator $(node -p "require('./$work/node/node_modules/passkit-generator/package.json').version") (node $(node --version), node-forge)"
taskset -c 0 node "$work/node/bench.mjs" "$work" "${PASSKIT_PASSES:-300}"
