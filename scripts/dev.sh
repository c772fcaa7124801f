#!/usr/bin/env bash
# flvpc's one entry point for people and CI, on Debian 12 as root.
#
#   bash scripts/dev.sh run [serve flags]   install what flvpc needs, build it, serve the panel on :5555
#   bash scripts/dev.sh test                install and start what the tests need, then pass them all
#                                           (including Ansible and the target image of tests/ansible.rs)
#   bash scripts/dev.sh setup               only install the panel's front-end packages (xterm.js), which
#                                           every build of flvpc-server embeds
#
# Everything here is idempotent: run it again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages and starts services)"

APT_UPDATED=
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_cargo() {
  command -v cargo >/dev/null 2>&1 \
    || die "flvpc is built with Rust: install the toolchain with rustup (cargo 1.88 or newer), then run this again"
}

start_postgres() {
  apt_install postgresql
  local cluster
  cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')
  [ -n "$cluster" ] || die "no PostgreSQL cluster found after installing postgresql"
  # shellcheck disable=SC2086
  pg_ctlcluster $cluster start 2>/dev/null || true
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
  pg_isready -q -h 127.0.0.1 || die "PostgreSQL did not start (see /var/log/postgresql/)"
  # A role for the tests, on loopback only; each test makes and uses its own database.
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='flvpc_test'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE flvpc_test LOGIN SUPERUSER PASSWORD 'flvpc_test'\""
  # Databases left by earlier runs.
  su postgres -c "psql -qtAc \"SELECT datname FROM pg_database WHERE datname LIKE 'flvpc_test_%'\"" \
    | while read -r db; do [ -n "$db" ] && su postgres -c "dropdb --if-exists '$db'"; done
  export FLVPC_TEST_POSTGRES="postgres://flvpc_test:flvpc_test@127.0.0.1/postgres"
}

start_mariadb() {
  apt_install mariadb-server
  if ! mysqladmin --protocol=socket -uroot status >/dev/null 2>&1; then
    say "starting MariaDB"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl start mariadb
    else
      # No systemd as PID 1 (containers, some VMs): Debian's init script starts mysqld_safe.
      service mariadb start >/dev/null
    fi
    for _ in $(seq 1 60); do mysqladmin --protocol=socket -uroot status >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  mysqladmin --protocol=socket -uroot status >/dev/null 2>&1 || die "MariaDB did not start (see /var/log/mysql/)"
  # A user for the tests, on loopback only, allowed to make (and drop) its own flvpc_test* databases;
  # each test makes and uses its own, and connects to flvpc_test to make it.
  mysql --protocol=socket -uroot -e "CREATE USER IF NOT EXISTS 'flvpc_test'@'127.0.0.1' IDENTIFIED BY 'flvpc_test';
    GRANT ALL PRIVILEGES ON \`flvpc\_test%\`.* TO 'flvpc_test'@'127.0.0.1';
    CREATE DATABASE IF NOT EXISTS flvpc_test;"
  # Databases left by earlier runs.
  mysql --protocol=socket -uroot -NBe "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'flvpc\\_test\\_%'" \
    | while read -r db; do [ -n "$db" ] && mysql --protocol=socket -uroot -e "DROP DATABASE IF EXISTS \`$db\`"; done
  export FLVPC_TEST_MYSQL="mysql://flvpc_test:flvpc_test@127.0.0.1/flvpc_test"
}

start_dockerd() {
  # nftables: flvpc walls namespace networks off from each other with a table of its own.
  apt_install docker.io debootstrap nftables
  if ! docker info >/dev/null 2>&1; then
    say "starting dockerd"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl start docker
    else
      # No systemd as PID 1 (containers, some VMs): run the daemon directly.
      nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  docker info >/dev/null 2>&1 || die "dockerd did not start (see /var/log/dockerd.log)"
  tune_host
}

# Every machine runs its own systemd, which needs inotify instances and kernel keys: Debian's
# defaults (128 instances, 200 keys) stop machines from booting after about 30 of them.
tune_host() {
  local want
  for want in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 \
              kernel.keys.maxkeys=20000 kernel.keys.maxbytes=2000000; do
    local key=${want%%=*} value=${want#*=}
    if [ "$(sysctl -n "$key")" -lt "$value" ]; then sysctl -qw "$key=$value"; fi
  done
  cat > /etc/sysctl.d/60-flvpc.conf <<'CONF'
# flvpc: room for many systemd machine containers (written by scripts/dev.sh)
fs.inotify.max_user_instances = 8192
fs.inotify.max_user_watches = 1048576
kernel.keys.maxkeys = 20000
kernel.keys.maxbytes = 2000000
CONF
}

# The default machine image, built once with debootstrap and kept by Docker afterwards.
build_image() {
  local flvpc=$1
  say "machine image flvpc/debian:12 (built with debootstrap if missing: about two minutes)"
  "$flvpc" image build debian-12
  # What runs a microVM inside its container (QEMU, no init); rebuilt only when its recipe changes.
  say "microVM runner image flvpc/vm-runner (built with debootstrap if missing: about two minutes)"
  "$flvpc" image build vm-runner
}

# openapi-spec-validator, which tests/openapi.rs runs on the served OpenAPI document: pinned, in a venv
# under the ignored target/ directory so that nothing is installed into the system's Python.
install_openapi_validator() {
  local venv=target/py version=0.9.0
  if "$venv/bin/openapi-spec-validator" --version 2>/dev/null | grep -q "$version"; then return 0; fi
  command -v python3 >/dev/null 2>&1 || apt_install python3
  say "installing openapi-spec-validator $version into $venv"
  if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv --clear "$venv" || die "cannot make a Python venv in $venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "openapi-spec-validator==$version" \
    || die "pip could not install openapi-spec-validator $version"
}

# Ansible, which runs the install playbook iac/ansible/main.yml (Debian's package: ansible-core with
# the community collections the playbook's database tasks use).
install_ansible() {
  apt_install ansible
  command -v ansible-playbook >/dev/null 2>&1 || die "ansible-playbook is missing after installing ansible"
}

# The target host of crates/flvpc/tests/ansible.rs: the machine image (systemd + sshd) plus Python
# for Ansible's modules and the Debian packages the playbook installs (with PostgreSQL, for the
# flvpc_database: postgresql run), so that the test itself downloads nothing. The playbook's Docker
# engine is the host's (the test binds its socket in), so docker.io is not in it. Rebuilt when this
# recipe or the machine image changes (their hash is the image's label flvpc.test.recipe).
ANSIBLE_TARGET_IMAGE=flvpc/ansible-target:1
ANSIBLE_TARGET_RECIPE='FROM flvpc/debian:12
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-apt qemu-system-x86 qemu-utils e2fsprogs debootstrap nftables \
      postgresql python3-psycopg2 mariadb-server python3-pymysql acl \
 && rm -rf /var/lib/apt/lists/*
'
build_ansible_target() {
  local want have
  want=$( { printf '%s' "$ANSIBLE_TARGET_RECIPE"; docker image inspect -f '{{ .Id }}' flvpc/debian:12; } \
    | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{ index .Config.Labels "flvpc.test.recipe" }}' "$ANSIBLE_TARGET_IMAGE" 2>/dev/null || true)
  [ "$have" = "$want" ] && return 0
  say "test target image $ANSIBLE_TARGET_IMAGE (Debian packages of the install playbook)"
  printf '%s' "$ANSIBLE_TARGET_RECIPE" \
    | docker build -q --label "flvpc.test.recipe=$want" -t "$ANSIBLE_TARGET_IMAGE" - >/dev/null \
    || die "docker build of $ANSIBLE_TARGET_IMAGE failed (is the Debian mirror reachable from containers?)"
}

# QEMU and the disk tools that build and run microVM machines (issue 10; the microVM engine
# runs QEMU inside its runner image, the host's QEMU builds the artifacts and probes KVM).
# QEMU first, then the tools, checked again: on a machine with a newer qemu-utils than
# Debian 12's, installing Debian's qemu-system-x86 removes it.
install_vm_packages() {
  apt_install qemu-system-x86
  apt_install qemu-utils e2fsprogs
}

# xterm.js for the panel's browser terminal, from the npm registry: `npm ci` installs exactly the
# committed lock file into crates/flvpc-server/assets/node_modules (git-ignored), and the server's
# build embeds the files from there (its build.rs stops with a pointer here when they are missing).
install_web_assets() {
  command -v npm >/dev/null 2>&1 || apt_install npm
  say "installing the panel's front-end packages (npm ci in crates/flvpc-server/assets)"
  (cd crates/flvpc-server/assets && npm ci --no-audit --no-fund --loglevel=error) \
    || die "npm ci failed in crates/flvpc-server/assets (is the npm registry reachable?)"
}

# The previous released version's binary, for the upgrade test (crates/flvpc/tests/upgrade.rs): built
# once from `git archive` of its commit into /var/cache/flvpc-test/releases/<tag>-<commit>/flvpc and
# kept there (a cold build takes minutes; its build directory is removed afterwards). Exported as
# FLVPC_TEST_PREVIOUS_BINARY. Which release that is comes from scripts/previous-release (tag and full
# commit), not from `git describe`: a CI clone may carry no tags (and may be shallow), so the commit is
# looked up in the clone, then fetched from its origin, and the cached binary serves when git cannot.
build_previous_release() {
  local tag commit short dir
  read -r tag commit < scripts/previous-release \
    || die "scripts/previous-release must hold the previous release's tag and commit"
  short=${commit:0:12}
  dir=/var/cache/flvpc-test/releases/$tag-$short
  if [ ! -x "$dir/flvpc" ]; then
    if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
      say "fetching $tag ($short) from this clone's origin for the upgrade test"
      git fetch -q origin "$commit" 2>/dev/null || git fetch -q --tags origin 2>/dev/null || true
      git cat-file -e "$commit^{commit}" 2>/dev/null \
        || die "the upgrade test needs $tag ($commit): not in this clone and not fetchable from its origin (clone with full history, or git fetch origin $commit)"
    fi
    say "building the previous version $tag for the upgrade test (once: a few minutes)"
    local src=$dir.src
    rm -rf "$src" && mkdir -p "$src"
    git archive "$commit" | tar -x -C "$src"
    (cd "$src" && cargo build --locked -q -p flvpc) || die "could not build $tag for the upgrade test"
    mkdir -p "$dir" && cp "$src/target/debug/flvpc" "$dir/flvpc.tmp" && mv "$dir/flvpc.tmp" "$dir/flvpc"
    rm -rf "$src"
  fi
  export FLVPC_TEST_PREVIOUS_BINARY=$dir/flvpc FLVPC_TEST_PREVIOUS_VERSION=$tag
}

cmd_setup() {
  install_web_assets
}

cmd_run() {
  need_cargo
  install_web_assets
  install_vm_packages
  start_dockerd
  say "building flvpc (release)"
  cargo build --release --locked -p flvpc
  build_image ./target/release/flvpc
  say "flvpc panel on https://$(hostname):5555 (self-signed certificate in ./data/tls: its fingerprint is in the log). First time? In another shell:"
  echo "    ./target/release/flvpc admin init --login admin --password-stdin"
  exec ./target/release/flvpc serve "$@"
}

cmd_test() {
  need_cargo
  install_web_assets
  # iproute2, util-linux (nsenter) and iptables: the multi-host tests make network namespaces with extra
  # Docker engines in them (their PostgreSQL database is made with psql, which comes with postgresql).
  apt_install openssh-client chromium chromium-driver ca-certificates openssl iputils-ping iproute2 util-linux iptables
  install_vm_packages
  start_postgres
  start_mariadb
  start_dockerd
  say "building flvpc"
  cargo build --locked -p flvpc
  build_image ./target/debug/flvpc
  install_ansible
  build_ansible_target
  install_openapi_validator
  build_previous_release
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy"
  cargo clippy --locked --workspace --all-targets -- -D warnings
  say "cargo test (SQLite, PostgreSQL, the real binary, headless Chromium)"
  cargo test --locked --workspace
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  setup) shift; cmd_setup "$@" ;;
  *) echo "usage: bash scripts/dev.sh run [serve flags] | test | setup" >&2; exit 2 ;;
esac
