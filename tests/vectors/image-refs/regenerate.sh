#!/usr/bin/env bash
# Regenerates distribution-reference.jsonl with the real github.com/distribution/reference
# (version pinned in gen/go.mod). Needs Go and Python 3.
set -euo pipefail
cd "$(dirname "$0")"
(cd gen && go build -o /tmp/binauthz-image-ref-vectors .)
python3 gen/corpus.py | /tmp/binauthz-image-ref-vectors | python3 gen/sample.py >distribution-reference.jsonl
rm -f /tmp/binauthz-image-ref-vectors
wc -l distribution-reference.jsonl
