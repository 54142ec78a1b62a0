#!/usr/bin/env bash
# Regenerate what is signed or generated under examples/: the attestors' public keys, the
# ImageAttestations and the imported GKE policy. This is the offline CI signing flow.
#
# Private keys are made in a temporary directory and deleted at the end: only public keys and
# signatures are written here. Run from anywhere: examples/regenerate.sh
# (BINAUTHZ=path/to/binauthz to use a binary that is not on PATH).
set -euo pipefail
cd "$(dirname "$0")"
BINAUTHZ=${BINAUTHZ:-binauthz}

WEB=us-docker.pkg.dev/example-project/apps/web@sha256:4b5e57f6eb2f42b9039b3d1e13929295f231749c510cbe341cd68036d9af97e2
SETTLE=us-docker.pkg.dev/example-project/payments/settle@sha256:6868e83de35c465d84d347493ccc23d12b3bfacb9809d30292d21fc4701224d1

WORK=$(mktemp -d)
export GNUPGHOME=$WORK/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null || true; rm -rf "$WORK"' EXIT

# The build attestor: a PGP key that never expires (rotate it by adding a second key).
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
  --quick-gen-key 'Build Attestor <build@example.com>' rsa3072 sign never
FPR=$(gpg --with-colons --fingerprint build@example.com | awk -F: '/^fpr/ {print $10; exit}')

# The qa attestor: an ECDSA P-256 key, as openssl or Cloud KMS makes them.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/qa.key"
openssl pkey -in "$WORK/qa.key" -pubout -out "$WORK/qa.pub"
QA_ID="ni:///sha-256;$(openssl pkey -pubin -in "$WORK/qa.pub" -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d '=')"

cat > attestors/build.yaml <<EOF
# The build pipeline's PGP key. Its id is the key's fingerprint, $FPR.
apiVersion: binauthz.dev/v1alpha1
kind: Attestor
metadata:
  name: build
spec:
  description: Images built by the release pipeline
  publicKeys:
  - comment: release pipeline key
    asciiArmoredPgpPublicKey: |
$(gpg --armor --export "$FPR" | sed 's/^./      &/')
EOF

cat > attestors/qa.yaml <<EOF
# The QA team's ECDSA P-256 key. Its id is computed from the key: $QA_ID
apiVersion: binauthz.dev/v1alpha1
kind: Attestor
metadata:
  name: qa
spec:
  description: Images that passed the QA suite
  publicKeys:
  - comment: QA sign-off key
    pkixPublicKey:
      signatureAlgorithm: ECDSA_P256_SHA256
      publicKeyPem: |
$(sed 's/^/        /' "$WORK/qa.pub")
EOF

# sign_pgp IMAGE NAMESPACE OUTPUT: the build attestor vouches for IMAGE (gpg --sign, as gcloud documents).
sign_pgp() {
  "$BINAUTHZ" create-signature-payload --artifact-url "$1" > "$WORK/payload.json"
  gpg --batch --yes --local-user "$FPR" --armor --output "$WORK/signature.pgp" --sign "$WORK/payload.json"
  "$BINAUTHZ" attestation create --artifact-url "$1" --attestor build \
    --signature-file "$WORK/signature.pgp" --public-key-id "$FPR" --namespace "$2" > "$3"
}

# sign_pkix IMAGE NAMESPACE OUTPUT: the qa attestor vouches for IMAGE (openssl, detached).
sign_pkix() {
  "$BINAUTHZ" create-signature-payload --artifact-url "$1" > "$WORK/payload.json"
  openssl dgst -sha256 -sign "$WORK/qa.key" -out "$WORK/payload.sig" "$WORK/payload.json"
  "$BINAUTHZ" attestation create --artifact-url "$1" --attestor qa \
    --signature-file "$WORK/payload.sig" --public-key-id "$QA_ID" --namespace "$2" > "$3"
}

sign_pgp "$WEB" prod attestations/web-build.yaml
sign_pgp "$SETTLE" payments attestations/settle-build.yaml
sign_pkix "$SETTLE" payments attestations/settle-qa.yaml

"$BINAUTHZ" policy import policies/gke/google-policy.yaml --name payments > policies/payments-policy.yaml

"$BINAUTHZ" verify -f .
