#!/usr/bin/env bash
# Regenerates the golden payload vectors in this folder with the real gcloud (offline).
# Usage: bash tests/vectors/payloads/capture.sh   (needs `gcloud` on PATH)
set -euo pipefail
cd "$(dirname "$0")"
export CLOUDSDK_CONFIG="$(mktemp -d)" CLOUDSDK_AUTH_ACCESS_TOKEN=x CLOUDSDK_CORE_DISABLE_PROMPTS=1 \
  CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=true CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true
trap 'rm -rf "$CLOUDSDK_CONFIG"' EXIT
D0=sha256:0000000000000000000000000000000000000000000000000000000000000abc
D1=sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb
D2=sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d
D3=sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6
PREFIX='ERROR: (gcloud.container.binauthz.create-signature-payload) '

payload() { gcloud container binauthz create-signature-payload --artifact-url="$1"; }

# name | URL given to binauthz | URL given to gcloud (empty: the same)
ok=(
  "reference-example|gcr.io/example-project/example-image@$D0|"
  "gcr-plain|gcr.io/my-project/app@$D1|"
  "gcr-nested|eu.gcr.io/my-project/team/sub/app@$D2|"
  "artifact-registry|us-docker.pkg.dev/p/r/i@$D3|"
  "https-port|https://registry.example.com:5000/team/app@$D1|"
  "http-scheme|http://gcr.io/my-project/app@$D2|"
  "tag-and-digest|gcr.io/my-project/app:v1.2.3@$D3|"
  "upper-case-registry|GCR.io/my-project/app@$D1|"
  "legacy-docker-hub|index.docker.io/library/nginx@$D2|"
  "docker-hub-short|docker.io/nginx@$D3|"
  "ipv6-port|https://[::1]:5000/a/b:dev@$D0|"
  "other-scheme-and-tag|oci://us-docker.pkg.dev/p/r/i:latest@$D1|"
  "leading-slashes|//gcr.io/my-project/app@$D2|"
  "localhost-port-no-scheme|localhost:5000/a/b@$D3|https://localhost:5000/a/b@$D3"
)
rm -f ./*.url ./*.json
for entry in "${ok[@]}"; do
  IFS='|' read -r name url gcloud_url <<<"$entry"
  if [[ -n $gcloud_url ]]; then printf '%s\n%s\n' "$url" "$gcloud_url" >"$name.url"; else printf '%s\n' "$url" >"$name.url"; fi
  payload "${gcloud_url:-$url}" >"$name.json"
done

# expectation | URL ; gcloud must fail on each
errors=(
  "same|nginx@$D0"
  "same|localhost/a/b@$D0"
  "same|gcr.io/p/i:tag"
  "same|"
  "same|gcr.io/p/i@$D0@$D0"
  "same|https://user@gcr.io/p/i@$D0"
  "same|gcr.io/p/i@sha256:abc"
  "same|gcr.io/p/i@"
  "same|gcr.io/p/i@sha512:${D0#sha256:}${D0#sha256:}"
  "same|gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000ABC"
  "same|gcr.io/P/R/I@$D0"
  "same|gcr.io/p/i:v1:v2@$D0"
  "same|gcr.io/a@$D0"
  "same|@$D0"
  "same|https://"
  "same|https:gcr.io/p/i@$D0"
  "same|https:///p/i@$D0"
  "same|localhost:5000@$D0"
  "both-error|gcr.io/p/i@$D0 "
  "both-error|gcr.io/p /i@$D0"
)
: >errors.tsv
for entry in "${errors[@]}"; do
  expectation=${entry%%|*} url=${entry#*|}
  if err=$(payload "$url" 2>&1 >/dev/null); then echo "gcloud accepted $url" >&2; exit 1; fi
  printf '%s\t%s\t%s\n' "$expectation" "$url" "${err#"$PREFIX"}" >>errors.tsv
done
echo "captured ${#ok[@]} payloads and ${#errors[@]} errors with $(gcloud version 2>/dev/null | head -1)"
