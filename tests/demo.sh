#!/usr/bin/env bash
# `make demo`: the enforcement walkthrough on the test control plane, printing what a user
# types and what they see. Needs: the control plane (make cluster-up), the binauthz binary,
# kubectl, gpg, curl.
#   BINAUTHZ=path/to/binauthz KUBECONFIG=target/cluster/kubeconfig tests/demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BINAUTHZ:?set BINAUTHZ to the binauthz binary}"
: "${KUBECONFIG:?set KUBECONFIG to the test control plane kubeconfig}"
for tool in kubectl gpg curl; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing" >&2; exit 1; }
done

ID=$(date +%s)-$$
NS=demo-$ID                  # where the demo's pods go
SYSTEM_NS=binauthz-demo-$ID  # binauthz's own namespace (Lease, TLS Secret), exempt
WEBHOOK_CONFIG=binauthz-demo-$ID
IMAGE=gcr.io/google-samples/hello-app@sha256:845f77fab71033404f4cfceaa1ddb27b70c3551ceb22a5e7f4498cdda6c9daea
UNSIGNED=gcr.io/google-samples/hello-app@sha256:0000000000000000000000000000000000000000000000000000000000000000
WORK=$(mktemp -d "${TMPDIR:-/tmp}/binauthz-demo.XXXXXX")
export GNUPGHOME=$WORK/gnupg
mkdir -m 700 "$GNUPGHOME"
# A kubeconfig of our own whose context defaults to the demo namespace, so the commands
# below read as a user types them.
cp "$KUBECONFIG" "$WORK/kubeconfig"
export KUBECONFIG=$WORK/kubeconfig
mkdir "$WORK/bin"
ln -s "$(cd "$(dirname "$BINAUTHZ")" && pwd)/$(basename "$BINAUTHZ")" "$WORK/bin/binauthz"
export PATH=$WORK/bin:$PATH
BINAUTHZ_PID=

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
show() { printf '\033[36m$ %s\033[0m\n' "$*"; }
# Print a command, run it, indent what it prints; stop the demo if it fails.
run() {
  show "$1"
  local out status=0
  out=$(bash -c "$1" 2>&1) || status=$?
  [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/  /'
  if ((status != 0)); then echo "demo: FAILED: \`$1\` exited with $status" >&2; exit 1; fi
  LAST=$out
}
# Print a command that must be refused, and check the refusal says $2.
refused() {
  show "$1"
  local out status=0
  out=$(bash -c "$1" 2>&1) || status=$?
  printf '%s\n' "$out" | sed 's/^/  /'
  if ((status == 0)); then echo "demo: FAILED: \`$1\` was admitted" >&2; exit 1; fi
  if [[ $out != *"$2"* ]]; then echo "demo: FAILED: expected \"$2\"" >&2; exit 1; fi
}
# Retry a silent check for up to 60 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 300); do
    if bash -c "$*" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "demo: FAILED: timed out waiting for $what" >&2
  [[ -f $WORK/binauthz.log ]] && tail -n 30 "$WORK/binauthz.log" >&2
  exit 1
}
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "demo: no free port" >&2; exit 1
}
cleanup() {
  local status=$?
  set +e
  [[ -n $BINAUTHZ_PID ]] && kill -TERM "$BINAUTHZ_PID" 2>/dev/null && wait "$BINAUTHZ_PID" 2>/dev/null
  # Never leave a webhook configuration pointing at a server that is gone.
  kubectl delete validatingwebhookconfiguration "$WEBHOOK_CONFIG" --ignore-not-found >/dev/null 2>&1
  kubectl delete imageattestations --all -n "$NS" >/dev/null 2>&1
  kubectl delete attestationpolicy require-ci --ignore-not-found >/dev/null 2>&1
  kubectl delete attestor built-by-ci --ignore-not-found >/dev/null 2>&1
  gpgconf --kill gpg-agent >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

WEBHOOK_PORT=$(free_port)
ADMIN_PORT=$(free_port)
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$SYSTEM_NS" >/dev/null
kubectl config set-context --current --namespace "$NS" >/dev/null
cd "$WORK"

say "Install the CustomResourceDefinitions"
run "kubectl apply --server-side --force-conflicts -f $ROOT/crds/"

say "Start binauthz out of cluster: it registers its webhook at a URL"
show "binauthz run --namespace $SYSTEM_NS --webhook-url https://127.0.0.1:$WEBHOOK_PORT/validate --webhook-port $WEBHOOK_PORT --admin-port $ADMIN_PORT --webhook-configuration $WEBHOOK_CONFIG &"
RUST_LOG=${RUST_LOG:-binauthz=info} binauthz run \
  --kubeconfig "$KUBECONFIG" \
  --namespace "$SYSTEM_NS" \
  --identity demo \
  --webhook-url "https://127.0.0.1:$WEBHOOK_PORT/validate" \
  --webhook-port "$WEBHOOK_PORT" \
  --admin-port "$ADMIN_PORT" \
  --webhook-configuration "$WEBHOOK_CONFIG" \
  >"$WORK/binauthz.log" 2>&1 &
BINAUTHZ_PID=$!
wait_for "binauthz to be ready" "curl -fsS http://127.0.0.1:$ADMIN_PORT/readyz"
run "curl -s http://127.0.0.1:$ADMIN_PORT/readyz"

say "A signing key for the CI pipeline (gpg, in a throw-away GNUPGHOME)"
run "gpg --batch --passphrase '' --quick-gen-key 'Demo CI <ci@example.com>' rsa3072 sign 1y"
FPR=$(gpg --with-colons --fingerprint ci@example.com 2>/dev/null | awk -F: '/^fpr:/ {print $10; exit}')
gpg --armor --export "$FPR" >ci.pub.asc 2>/dev/null

say "An Attestor with the public key, and a policy that requires it"
{
  echo "apiVersion: binauthz.dev/v1alpha1"
  echo "kind: Attestor"
  echo "metadata:"
  echo "  name: built-by-ci"
  echo "spec:"
  echo "  description: Images built and signed by CI"
  echo "  publicKeys:"
  echo "  - asciiArmoredPgpPublicKey: |"
  sed 's/^/      /' ci.pub.asc
} >attestor.yaml
cat >policy.yaml <<EOF
apiVersion: binauthz.dev/v1alpha1
kind: AttestationPolicy
metadata:
  name: require-ci
spec:
  # Only the demo namespace: the test control plane is shared with the test suite.
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: $NS
  defaultAdmissionRule:
    evaluationMode: REQUIRE_ATTESTATION
    enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
    requireAttestationsBy:
    - built-by-ci
EOF
run "kubectl apply -f attestor.yaml"
run "cat policy.yaml"
run "kubectl apply -f policy.yaml"
wait_for "the Attestor to be Ready" "kubectl wait --for=condition=Ready attestor/built-by-ci --timeout=1s"
run "kubectl get attestors"
wait_for "the webhook configuration" \
  "[[ \$(kubectl get validatingwebhookconfiguration $WEBHOOK_CONFIG -o jsonpath='{.webhooks[*].name}') == 'pods.binauthz.dev workloads.binauthz.dev' ]]"

say "CI signs the image: payload, gpg signature, ImageAttestation"
run "binauthz create-signature-payload --artifact-url $IMAGE > payload.json && cat payload.json"
run "gpg --local-user $FPR --armor --sign --output signature.pgp payload.json"
run "binauthz attestation create --artifact-url $IMAGE --attestor built-by-ci --signature-file signature.pgp --public-key-id $FPR --namespace $NS | kubectl apply -f -"

say "The signed image is admitted (no nodes here: the Pod stays Pending)"
wait_for "the webhook to trust the attestation" "kubectl run hello-server --image $IMAGE --dry-run=server"
run "kubectl run hello-server --image $IMAGE"
run "kubectl get pod hello-server"

say "An unsigned image is refused"
refused "kubectl run hello-world --image=nginx" \
  "Error from server (VIOLATES_POLICY): admission webhook \"pods.binauthz.dev\" denied the request: Image nginx denied by Binary Authorization default admission rule of policy require-ci. Image nginx denied by attestor built-by-ci: Expected digest with sha256 scheme, but got tag or malformed digest"

say "A Deployment of an unsigned image is refused when it is applied, not later by its pods"
cat >deployment.yaml <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: unsigned-web
spec:
  selector:
    matchLabels: {app: unsigned-web}
  template:
    metadata:
      labels: {app: unsigned-web}
    spec:
      containers:
      - name: web
        image: $UNSIGNED
EOF
refused "kubectl apply -f deployment.yaml" \
  "admission webhook \"workloads.binauthz.dev\" denied the request: Image $UNSIGNED denied by Binary Authorization default admission rule of policy require-ci. Image $UNSIGNED denied by attestor built-by-ci: No attestations found that were valid and signed by a key trusted by the attestor"

say "Dry run: the policy only warns and audits"
run "kubectl patch attestationpolicy require-ci --type merge -p '{\"spec\":{\"defaultAdmissionRule\":{\"enforcementMode\":\"DRYRUN_AUDIT_LOG_ONLY\"}}}'"
wait_for "the webhook to see the dry-run rule" "kubectl apply --dry-run=server -f deployment.yaml"
run "kubectl apply -f deployment.yaml"
[[ $LAST == *"Warning: dry run: Image $UNSIGNED would be denied"* ]] || { echo "demo: FAILED: no dry-run warning" >&2; exit 1; }

say "Breakglass: enforced again, but an emergency pod may run, audited and announced"
run "kubectl patch attestationpolicy require-ci --type merge -p '{\"spec\":{\"defaultAdmissionRule\":{\"enforcementMode\":\"ENFORCED_BLOCK_AND_AUDIT_LOG\"}}}'"
wait_for "the webhook to enforce again" "! kubectl run probe --image=nginx --dry-run=server"
run "kubectl run emergency --image=nginx --labels=image-policy.k8s.io/break-glass=true"
[[ $LAST == *"Warning: break glass: Image nginx would be denied"* ]] || { echo "demo: FAILED: no breakglass warning" >&2; exit 1; }
wait_for "the BreakGlass Event" "kubectl get events --field-selector reason=BreakGlass -o name | grep -q ."
run "kubectl get events --field-selector reason=BreakGlass"
run "kubectl get events --field-selector reason=Denied"

say "The controller verified the attestation too (status is a report; the webhook verifies by itself)"
wait_for "the attestation to be Verified" "kubectl wait --for=condition=Verified imageattestation --all -n $NS --timeout=1s"
run "kubectl get attestations -A"
grep -Eq "^$NS +built-by-ci-[0-9a-f]+ +$IMAGE +built-by-ci +True " <<<"$LAST" ||
  { echo "demo: FAILED: the attestation is not Verified" >&2; exit 1; }

say "What the webhook counted"
run "curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep -E '^binauthz_(admission_decisions_total|trust_index_entries|verifications_total)'"

printf '\n\033[1;32mbinauthz demo: OK — signed image admitted, unsigned refused (pod and Deployment), dry run warned, breakglass admitted with an Event, attestation Verified.\033[0m\n'
