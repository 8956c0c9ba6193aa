#!/bin/sh
# The fleet's Qdrant TLS material (docker-compose.yml, one-shot service `certs`): a private CA and a
# server certificate for the host name(s) in CERTS_SERVER_NAMES, made once and kept while valid.
#
#   CERTS_CA_DIR/ca.pem      the CA certificate: the API and the workers trust it alone (world-readable)
#   CERTS_TLS_DIR/cert.pem   Qdrant's certificate, signed by that CA (world-readable)
#   CERTS_TLS_DIR/key.pem    its private key: mode 0400, owned by CERTS_KEY_OWNER (Qdrant's uid)
#
# The CA's private key lives in a temporary folder only and is gone when this script ends: nothing
# can sign another certificate the fleet would trust. A new server certificate therefore comes with
# a new CA. That happens when a file is missing, when the certificate no longer verifies against the
# CA or expires within 30 days, or when CERTS_ROTATE is set (docs/DEPLOY.md, "Secrets and certificates").
set -eu
umask 077

ca_dir=${CERTS_CA_DIR:-/certs/ca}
tls_dir=${CERTS_TLS_DIR:-/certs/tls}
names=${CERTS_SERVER_NAMES:-qdrant}
key_owner=${CERTS_KEY_OWNER-1000:1000}   # empty: leave the key to whoever runs this (tests)
days=${CERTS_DAYS:-3650}
ca=$ca_dir/ca.pem
cert=$tls_dir/cert.pem
key=$tls_dir/key.pem

if [ -z "${CERTS_ROTATE:-}" ] && [ -s "$ca" ] && [ -s "$cert" ] && [ -s "$key" ] \
    && openssl verify -CAfile "$ca" "$cert" >/dev/null 2>&1 \
    && openssl x509 -in "$cert" -noout -checkend 2592000 >/dev/null 2>&1; then
    echo "certs: keeping the Qdrant certificate for $names ($(openssl x509 -in "$cert" -noout -enddate))"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work"   # nothing of openssl's lands in a home folder of the (read-only) image

san=""
for name in $(echo "$names" | tr ',' ' '); do
    san="${san:+$san,}DNS:$name"
done
[ -n "$san" ] || { echo "certs: CERTS_SERVER_NAMES names no host" >&2; exit 2; }
first=${san%%,*}
cat > "$work/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ${first#DNS:}
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

quietly() {  # openssl's progress dots stay out of the log; its errors do not
    "$@" >"$work/openssl.log" 2>&1 || { cat "$work/openssl.log" >&2; echo "certs: failed: $1 $2" >&2; exit 1; }
}
quietly openssl req -x509 -new -config "$work/openssl.cnf" -extensions ca_ext \
    -subj "/CN=dinoseek fleet CA $(date -u +%Y%m%dT%H%M%SZ)" \
    -newkey rsa:3072 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days "$days" -sha256
quietly openssl req -new -config "$work/openssl.cnf" -newkey rsa:3072 -nodes -keyout "$work/key.pem" -out "$work/server.csr"
quietly openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 -extfile "$work/openssl.cnf" -extensions server_ext \
    -out "$work/cert.pem"
quietly openssl verify -CAfile "$work/ca.pem" "$work/cert.pem"

# Into place: each file written beside its final name, then renamed over it. The key first, the CA
# last, so that a run cut short leaves a set that fails the check above and is made again.
install_file() {  # SOURCE TARGET MODE [OWNER]
    rm -f "$2.new"
    cp "$1" "$2.new"
    chmod "$3" "$2.new"
    if [ -n "${4:-}" ]; then chown "$4" "$2.new"; fi
    mv -f "$2.new" "$2"
}
mkdir -p "$ca_dir" "$tls_dir"
chmod 0755 "$ca_dir" "$tls_dir"
install_file "$work/key.pem" "$key" 0400 "$key_owner"
install_file "$work/cert.pem" "$cert" 0444
install_file "$work/ca.pem" "$ca" 0444
echo "certs: made a new CA and a Qdrant certificate for $names ($(openssl x509 -in "$cert" -noout -enddate))"
