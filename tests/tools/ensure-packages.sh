#!/bin/sh
# Install the Debian packages that `make run` (build), `make check`
# (check) or `make bench` (bench) needs. As root, missing packages are installed with apt-get;
# as another user, the exact apt-get line is printed and the script fails.
set -eu

build_packages="gcc make adduser pkg-config libevent-dev libssl-dev libcdb-dev libsystemd-dev libcrypt-dev libpam0g-dev libargon2-dev openssl libcurl4-openssl-dev libunbound-dev dns-root-data libspf2-dev libopendkim-dev libopendmarc-dev libidn2-dev zlib1g-dev publicsuffix"
check_packages="$build_packages check libsubunit-dev python3 python3-pytest python3-pytest-xdist swaks postfix bsd-mailx libpython3.11-testsuite passwd iproute2 apache2-utils openssl argon2 dovecot-imapd mutt strace isync fetchmail nodejs msmtp gsasl libnet-ssleay-perl libio-socket-ssl-perl ldnsutils unbound bind9-dnsutils spamassassin spamd spamc clamav-daemon clamav clamdscan opendkim-tools python3-dkim python3-dnspython python3-spf spfquery zip"

# bench: Postfix is the system measured against, gnuplot draws the plot,
# pytest provides the host class of the integration tests, ss (iproute2)
# checks that nothing connected elsewhere.
bench_packages="$build_packages postfix gnuplot-nox python3 python3-pytest iproute2 procps"

case "${1:-build}" in
build) wanted=$build_packages ;;
check) wanted=$check_packages ;;
bench) wanted=$bench_packages ;;
*) echo "usage: $0 build|check|bench" >&2; exit 2 ;;
esac

missing=""
for package in $wanted; do
	status=$(dpkg-query -W -f '${Status}' "$package" 2>/dev/null || true)
	case "$status" in
	*" installed") ;;
	*) missing="$missing $package" ;;
	esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages; install them with:" >&2
	echo "  sudo apt-get install --no-install-recommends$missing" >&2
	exit 1
fi

# No package may start a daemon or a download while it installs.
if [ ! -x /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix is installed for smtp-source and for the benchmark's private
# instance only: leave it unconfigured so it never touches this host's mail.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# freshclam never runs: the tests build their own signature database.
echo "clamav-freshclam clamav-freshclam/autoupdate_freshclam select manual" | debconf-set-selections

echo "installing:$missing"
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing >/dev/null
