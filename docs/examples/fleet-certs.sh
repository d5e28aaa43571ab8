#!/bin/sh
# fleet-certs.sh: the fleet's CA (once), then one Docker host's proxy certificate, and the
# two clients' certificates (once): the receiver's (its allow-list) and Prometheus' (the
# read-only listing). Run it where the CA's key stays, never on a fleet host:
#   sh fleet-certs.sh edge-2 IP:10.0.0.12           (the address in AUTOFIX_DOCKER_HOSTS)
#   sh fleet-certs.sh edge-3 DNS:edge-3.example.com
set -eu
host=$1 san=$2
umask 077
mkdir -p ca clients "$host"
if [ ! -f ca/ca.pem ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=autofix fleet CA" \
    -keyout ca/ca-key.pem -out ca/ca.pem
fi
sign() {  # file stem, common name, extensions
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$2" -keyout "$1-key.pem" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca/ca.pem -CAkey ca/ca-key.pem -CAcreateserial \
    -days 825 -extfile "$1.ext" -out "$1.pem"
  rm "$1.csr" "$1.ext"
}
# The proxies let in only these names (over TLS): Prometheus' key is not the receiver's.
for client in autofix-receiver autofix-prometheus; do
  [ -f "clients/$client.pem" ] || sign "clients/$client" "$client" "extendedKeyUsage=clientAuth"
done
# The host's proxies: the certificate names the address the clients dial.
sign "$host/server" "$host" "subjectAltName=$san
extendedKeyUsage=serverAuth"
cat "$host/server.pem" "$host/server-key.pem" > "$host/proxy.pem"  # HAProxy's crt
cp ca/ca.pem "$host/ca.pem"
rm "$host/server.pem" "$host/server-key.pem"
echo "copy $host/proxy.pem and $host/ca.pem to $host's /etc/autofix-proxy/"
