#!/usr/bin/env bash
# Make a private certificate authority (CA) and one TLS certificate per hub for the
# nats-server configs in deploy/nats/ (client, route and leafnode TLS).
#
#   deploy/make-certs.sh OUT_DIR HUB[:DNS_NAME[,DNS_NAME…]] …
#   deploy/make-certs.sh ./tls hub-a:hub-a.example.org hub-b:hub-b.example.org hub-c:hub-c.example.org
#
# Writes OUT_DIR/ca.pem (give to every hub), OUT_DIR/ca-key.pem (keep it off the servers),
# and for each hub OUT_DIR/HUB.pem and OUT_DIR/HUB-key.pem (that hub's server only).
# Every certificate also names localhost and 127.0.0.1, so a node can reach its own server
# over TLS on the loopback address. Run it again with new hub names to add hubs: an existing
# CA in OUT_DIR is reused, existing hub certificates are left alone.
#
# Good for testing and for a small network run by people who know each other. A network
# with a real certificate authority should use that instead. Needs openssl 1.1.1 or newer.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

out=$1
shift
days_ca=3650
days_hub=825
umask 077
mkdir -p "$out"

if [ ! -f "$out/ca.pem" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca-key.pem"
    openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days_ca" \
        -subj "/CN=hubnode private CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$out/ca.pem"
    chmod 644 "$out/ca.pem"
    echo "made CA $out/ca.pem (keep $out/ca-key.pem offline)"
fi

for spec in "$@"; do
    hub=${spec%%:*}
    names=""
    [ "$spec" != "$hub" ] && names=${spec#*:}
    case $hub in
        ""|*[!A-Za-z0-9._-]*) echo "bad hub name: '$hub' (letters, digits, . _ -)" >&2; exit 2 ;;
    esac
    if [ -f "$out/$hub.pem" ]; then
        echo "$out/$hub.pem exists; left alone"
        continue
    fi
    san="DNS:localhost,IP:127.0.0.1"
    IFS=, read -r -a dns <<<"$names"
    for name in "${dns[@]}"; do
        [ -n "$name" ] && san="$san,DNS:$name"
    done
    ext=$(mktemp)
    trap 'rm -f "$ext" "$out/$hub.csr"' EXIT
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=$san" >"$ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/$hub-key.pem"
    openssl req -new -key "$out/$hub-key.pem" -subj "/CN=$hub" -out "$out/$hub.csr"
    # Routes and leaf nodes present the same certificate as clients: both usages.
    openssl x509 -req -in "$out/$hub.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
        -CAcreateserial -sha256 -days "$days_hub" -extfile "$ext" -out "$out/$hub.pem"
    rm -f "$ext" "$out/$hub.csr"
    trap - EXIT
    chmod 644 "$out/$hub.pem"
    echo "made $out/$hub.pem for $san"
done
