#!/bin/sh
# Install the Debian packages `make bench` needs besides the build ones:
# Postfix (the system measured against, and smtp-source, the load
# generator), gnuplot for the plot, pytest (the Estafeta host class comes
# from the integration tests' conftest.py), ss from iproute2. As root,
# missing packages are installed; as another user, the apt-get line is
# printed and the script fails.
set -eu

wanted="postfix gnuplot-nox python3 python3-pytest iproute2 procps"

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

# No package may start a daemon while it installs: the benchmark runs
# its own private Postfix instance, never the system's.
if [ ! -x /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
# Leave the system's Postfix unconfigured; the benchmark writes its own
# configuration under /tmp.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

echo "installing:$missing"
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing >/dev/null
