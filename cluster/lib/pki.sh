# Cluster PKI with plain openssl. Sourced by up.sh after common.sh.
# Keys never leave $PKI_DIR (mode 0700); nothing here is a fixed secret: every
# key is generated on the machine the first time up.sh runs.
# shellcheck shell=bash

# ECDSA P-256: generated instantly and accepted by every component.
pki_key() {
  [[ -s $1 ]] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

# pki_ca NAME CN: a self-signed CA in NAME.crt/NAME.key.
pki_ca() {
  local name=$1 cn=$2
  [[ -s $PKI_DIR/$name.crt ]] && return 0
  pki_key "$PKI_DIR/$name.key"
  openssl req -x509 -new -key "$PKI_DIR/$name.key" -days 3650 -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI_DIR/$name.crt" 2>/dev/null
}

# pki_cert NAME SUBJECT USAGE [SANS] [CA]: USAGE is clientAuth, serverAuth or
# both (comma separated); SANS is an openssl subjectAltName value; CA is the
# signing CA's name (default: the cluster CA "ca").
pki_cert() {
  local name=$1 subject=$2 usage=$3 sans=${4:-} ca=${5:-ca}
  local crt="$PKI_DIR/$name.crt" key="$PKI_DIR/$name.key" ext
  [[ -s $crt ]] && return 0
  pki_key "$key"
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
  [[ -n $sans ]] && ext+=$'\n'"subjectAltName=$sans"
  openssl req -new -key "$key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$PKI_DIR/$ca.crt" -CAkey "$PKI_DIR/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 3650 -extfile <(printf '%s\n' "$ext") -out "$crt" 2>/dev/null
}

# kubeconfig FILE USER CERTNAME SERVER: a kubeconfig with embedded client cert.
write_kubeconfig() {
  local file=$1 user=$2 cert=$3 server=$4
  local tmp="$file.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sandrun
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$cert.key")
contexts:
- name: sandrun
  context: {cluster: sandrun, user: $user}
current-context: sandrun
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}

# setup_pki NODE_NAME NODE_IP: create whatever is missing. Certificates that
# embed the node's name or IP are re-issued when either changes, so a machine
# handed back with a new address still comes up.
setup_pki() {
  local node=$1 ip=$2
  mkdir -p "$PKI_DIR" && chmod 700 "$PKI_DIR"
  local id="$node $ip"
  if [[ -f $PKI_DIR/node.id && $(<"$PKI_DIR/node.id") != "$id" ]]; then
    log "node identity changed to $id: re-issuing node certificates"
    rm -f "$PKI_DIR"/{apiserver,kubelet-client,kubelet-server}.crt
  fi
  pki_ca ca sandrun-local-ca
  # Separate CA for the aggregation layer's front proxy, as kubeadm does:
  # the API server trusts request headers only from certs of this CA.
  pki_ca front-proxy-ca sandrun-front-proxy-ca
  [[ -s $PKI_DIR/sa.key ]] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI_DIR/sa.key" 2>/dev/null
  [[ -s $PKI_DIR/sa.pub ]] || openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  chmod 600 "$PKI_DIR/sa.key"

  pki_cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$node,IP:127.0.0.1,IP:$API_SERVICE_IP,IP:$ip"
  pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  pki_cert admin "/O=system:masters/CN=sandrun-admin" clientAuth
  pki_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  pki_cert scheduler "/CN=system:kube-scheduler" clientAuth
  pki_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  pki_cert coredns "/CN=system:sandrun-coredns" clientAuth
  pki_cert kube-router "/CN=system:sandrun-kube-router" clientAuth
  # The Node authorizer maps this identity to exactly this node's objects.
  pki_cert kubelet-client "/O=system:nodes/CN=system:node:$node" clientAuth
  # Serving cert so the API server can verify the kubelet (logs, exec).
  pki_cert kubelet-server "/CN=$node" serverAuth "DNS:$node,DNS:localhost,IP:$ip,IP:127.0.0.1"
  pki_cert front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
  echo "$id" >"$PKI_DIR/node.id"

  local server="https://127.0.0.1:$API_PORT"
  write_kubeconfig "$KUBECONFIG_ADMIN" sandrun-admin admin "$server"
  write_kubeconfig "$CONF_DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager "$server"
  write_kubeconfig "$CONF_DIR/scheduler.kubeconfig" system:kube-scheduler scheduler "$server"
  write_kubeconfig "$CONF_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy "$server"
  write_kubeconfig "$CONF_DIR/coredns.kubeconfig" system:sandrun-coredns coredns "$server"
  write_kubeconfig "$CONF_DIR/kube-router.kubeconfig" system:sandrun-kube-router kube-router "$server"
  write_kubeconfig "$CONF_DIR/kubelet.kubeconfig" "system:node:$node" kubelet-client "$server"
}
