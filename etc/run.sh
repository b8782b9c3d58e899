#!/bin/sh
# `make run`: start every daemon in the foreground with all state under
# ./run/ and an embedded configuration. It listens on:
#   SMTP        127.0.0.1:2525 (STARTTLS)
#   submission  127.0.0.1:2587 (STARTTLS) and 127.0.0.1:2465 (implicit TLS)
#   IMAP        127.0.0.1:2143 (STARTTLS) and IMAPS on 127.0.0.1:2993
# TLS uses a self-signed certificate made on the first start. The local
# domain is example.test with the virtual user demo@example.test (password
# "demo"), and mail is delivered into ./run/mail/demo/Maildir. filterd
# checks every message with SPF, DKIM and DMARC, signs example.test's
# mail, and sends messages to spamd and clamd where they are installed,
# both started here with local data only. No DNS resolver is set, so the
# lookups of SPF, DKIM and DMARC fail as temporary errors. Outbound
# delivery is off, so nothing is sent off this machine. Ctrl-C stops
# everything.
set -eu

bin=$(cd "${1:-build}/bin" && pwd)
top=$(pwd)/run
conf=$top/etc/estafeta.conf

if [ "$(id -u)" -eq 0 ]; then
	sh "$(dirname "$0")/create-users.sh"
fi

mkdir -p "$top/etc" "$top/sock" "$top/mail" "$top/var-mail" "$top/log" "$top/pid" \
	"$top/etc/dkim"

# One instance per state directory: a second one would fight the first
# for its ports and sockets.
if [ -e "$top/run.pid" ] && kill -0 "$(cat "$top/run.pid")" 2>/dev/null; then
	echo "estafeta: already running with state under $top (pid $(cat "$top/run.pid")); stop it first" >&2
	exit 1
fi
echo $$ >"$top/run.pid"
chmod 755 "$top" "$top/etc" "$top/sock" "$top/mail" "$top/etc/dkim"
chmod 1777 "$top/var-mail"

if [ ! -e "$conf" ]; then
	cat >"$conf" <<CONF
# Embedded configuration written by \`make run\`; edit freely, it is kept.
myhostname = mail.example.test
local_domains = localhost mail.example.test
virtual_domains = example.test
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_listen = 127.0.0.1:2525
smtpd_submission_listen = 127.0.0.1:2587
smtpd_smtps_listen = 127.0.0.1:2465
tls_cert_file = $top/etc/tls/cert.pem
tls_key_file = $top/etc/tls/key.pem
imapd_listen = 127.0.0.1:2143
imapd_imaps_listen = 127.0.0.1:2993
queue_directory = $top/spool
queued_socket = $top/sock/queued.sock
lmtp_socket = $top/sock/lmtp.sock
userdb_socket = $top/sock/auth-userdb
alias_database = $top/etc/aliases
virtual_passwd_file = $top/etc/passwd-file
mail_spool_directory = $top/var-mail
filterd_socket = $top/sock/filterd.sock
smtpd_filter = yes
dkim_key_directory = $top/etc/dkim
dkim_signing_table = $top/etc/dkim/signing-table
syslog = no
CONF
fi
[ -e "$top/etc/passwd-file" ] ||
	(umask 077 && echo "demo@example.test:{PLAIN}demo::::$top/mail/demo::" >"$top/etc/passwd-file")
[ -e "$top/etc/aliases" ] ||
	cat >"$top/etc/aliases" <<ALIASES
# Mail for root, postmaster and abuse (cron's reports among it) goes to
# the demo user; root itself has no mailbox.
root: demo@example.test
postmaster: root
abuse: root
postmaster@example.test: demo@example.test
abuse@example.test: demo@example.test
ALIASES
chmod 644 "$top/etc/aliases"

# A configuration kept from before filterd gets filterd's settings once,
# at its end, so that estafeta dkim keygen finds the key directory too.
if ! grep -q '^filterd_socket' "$conf" && ! grep -q '^smtpd_filter' "$conf"; then
	cat >>"$conf" <<CONF
# filterd, added by \`make run\`.
filterd_socket = $top/sock/filterd.sock
smtpd_filter = yes
dkim_key_directory = $top/etc/dkim
dkim_signing_table = $top/etc/dkim/signing-table
CONF
fi

# The passwd-file contains passwords. authd reads it after dropping to
# smtpd_user, so as root the file gets that user's group and mode 0640,
# and otherwise it stays with the user running this script, mode 0600.
if [ "$(id -u)" -eq 0 ]; then
	smtpd_user=$(sed -n 's/^smtpd_user *= *//p' "$conf" | tail -n 1)
	smtpd_user=${smtpd_user:-_estafeta}
	chown "root:$(id -gn "$smtpd_user")" "$top/etc/passwd-file"
	chmod 640 "$top/etc/passwd-file"
else
	chmod 600 "$top/etc/passwd-file"
fi

# A self-signed certificate for myhostname, made once. The key is
# readable by its owner only, as a real key would be.
hostname=$(sed -n 's/^myhostname *= *//p' "$conf" | tail -n 1)
hostname=${hostname:-mail.example.test}
if [ ! -e "$top/etc/tls/cert.pem" ]; then
	mkdir -p "$top/etc/tls"
	chmod 755 "$top/etc/tls"
	(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$top/etc/tls/key.pem" -out "$top/etc/tls/cert.pem" -days 825 \
		-subj "/CN=$hostname" \
		-addext "subjectAltName=DNS:$hostname,DNS:localhost,IP:127.0.0.1" \
		-addext "extendedKeyUsage=serverAuth" 2>/dev/null) || {
		echo "estafeta: openssl req failed to make $top/etc/tls/cert.pem" >&2
		exit 1
	}
	chmod 644 "$top/etc/tls/cert.pem"
	echo "estafeta: made a self-signed certificate for $hostname in $top/etc/tls/cert.pem"
fi

export ESTAFETA_CONFIG="$conf"
"$bin/sendmail" -bi

# DKIM signing for example.test with a key made on the first start, so
# that the demo user's submissions are signed. The DNS record to publish
# for it is in run/etc/dkim/example.test.txt.
dkim_selector=estafeta
dkim_key=$top/etc/dkim/example.test/$dkim_selector.pem
dkim_table=$top/etc/dkim/signing-table
dkim_sign=""
if [ -e "$dkim_key" ] ||
	"$bin/estafeta" dkim keygen example.test "$dkim_selector" >"$top/etc/dkim/example.test.txt" 2>&1; then
	[ -s "$dkim_table" ] || echo "example.test:$dkim_selector:$dkim_key" >"$dkim_table"
	dkim_sign="dkim_sign"
else
	echo "estafeta: estafeta dkim keygen failed (see $top/etc/dkim/example.test.txt): DKIM signing off"
	: >>"$dkim_table"
fi

pids=""
stop() {
	trap - INT TERM EXIT
	# Ctrl-C reaches the daemons too, so some may have exited already.
	# shellcheck disable=SC2086
	[ -z "$pids" ] || kill $pids 2>/dev/null || true
	wait || true
	rm -f "$top/run.pid" "$top"/pid/*.pid
	echo "estafeta: stopped"
	exit 0
}
trap stop INT TERM EXIT

# Start a helper daemon in the background and remember it for stop().
start_helper() {
	name=$1
	shift
	"$@" >>"$top/log/$name.log" 2>&1 &
	pids="$pids $!"
	echo $! >"$top/pid/$name.pid"
}

# spamd, where Debian's spamd package is installed, with local tests
# only: no DNS (--local and dns_available no), no Bayes database, and no
# rule updates, because sa-update never runs. As root it runs as
# debian-spamd and, where unshare works, in a network namespace of its
# own with only a loopback interface. Its log is run/log/spamd.log.
start_spamd() {
	dir=$top/spamd
	mkdir -p "$dir/home"
	chmod 755 "$dir" "$dir/home"
	set -- /usr/sbin/spamd --local --nouser-config --helper-home-dir="$dir/home" \
		--listen="$dir/spamd.sock" --socketmode=0666 \
		--max-children=2 --min-children=1 --pidfile="$dir/spamd.pid" --syslog=stderr \
		--cf="dns_available no" --cf="use_bayes 0" --cf="bayes_auto_learn 0" \
		--cf="report_safe 0"
	if [ "$(id -u)" -eq 0 ]; then
		chown debian-spamd:debian-spamd "$dir/home"
		set -- "$@" --username=debian-spamd --groupname=debian-spamd
		if unshare --net true 2>/dev/null; then
			set -- unshare --net sh -c 'ip link set lo up && exec "$@"' spamd "$@"
		fi
	fi
	start_helper spamd "$@"
}

# clamd, where Debian's clamav-daemon package is installed, with a
# private database of one signature, the EICAR test string, so it finds
# nothing real. freshclam never runs and nothing is downloaded. Its log
# is run/log/clamd.log.
start_clamd() {
	dir=$top/clamd
	mkdir -p "$dir/db" "$dir/tmp"
	chmod 755 "$dir" "$dir/db"
	chmod 700 "$dir/tmp"
	# A body signature (.ndb): any file type, at any offset.
	echo "Eicar-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a" \
		>"$dir/db/test.ndb"
	cat >"$dir/clamd.conf" <<CLAMD
# Written by \`make run\` at every start.
Foreground yes
LocalSocket $dir/clamd.sock
LocalSocketMode 666
DatabaseDirectory $dir/db
TemporaryDirectory $dir/tmp
PidFile $dir/clamd.pid
MaxThreads 2
SelfCheck 0
ScanMail yes
ScanArchive yes
StreamMaxLength 25M
CLAMD
	if [ "$(id -u)" -eq 0 ]; then
		echo "User clamav" >>"$dir/clamd.conf"
		chown -R clamav:clamav "$dir"
	fi
	start_helper clamd /usr/sbin/clamd -c "$dir/clamd.conf"
}

# filterd runs the configuration's filterd_checks if it has them, else
# every check whose server is here, and finds the scanners at the
# sockets started above unless the configuration names others.
checks="spf dkim_verify dmarc"
spamd_socket=""
if [ -x /usr/sbin/spamd ]; then
	start_spamd
	checks="$checks spamassassin"
	grep -q '^spamd_socket' "$conf" || spamd_socket="spamd_socket=$top/spamd/spamd.sock"
else
	echo "estafeta: spamd not installed: spam checks off"
fi
clamd_socket=""
if [ -x /usr/sbin/clamd ]; then
	start_clamd
	checks="$checks clamav"
	grep -q '^clamd_socket' "$conf" || clamd_socket="clamd_socket=$top/clamd/clamd.sock"
else
	echo "estafeta: clamd not installed: virus checks off"
fi
filterd_checks=""
grep -q '^filterd_checks' "$conf" || filterd_checks="filterd_checks=$checks $dkim_sign authres"

# A configuration kept from before imapd existed lacks imapd_listen,
# and the default port 143 needs root.
imapd_listen=""
grep -q '^imapd_listen' "$conf" || imapd_listen="imapd_listen=127.0.0.1:2143"
imapd_imaps_listen=""
grep -q '^imapd_imaps_listen' "$conf" || imapd_imaps_listen="imapd_imaps_listen=127.0.0.1:2993"

# Likewise a configuration from before TLS: smtpd gets the certificate
# and the submission listeners on the command line.
set --
grep -q '^tls_cert_file' "$conf" ||
	set -- -o "tls_cert_file=$top/etc/tls/cert.pem" -o "tls_key_file=$top/etc/tls/key.pem"
grep -q '^smtpd_submission_listen' "$conf" ||
	set -- "$@" -o "smtpd_submission_listen=127.0.0.1:2587"
grep -q '^smtpd_smtps_listen' "$conf" ||
	set -- "$@" -o "smtpd_smtps_listen=127.0.0.1:2465"

for daemon in authd deliverd queued filterd smtpd imapd; do
	if [ "$daemon" = imapd ]; then
		# "$@" has the certificate options when the configuration lacks
		# them. imapd ignores the smtpd_* options in it.
		"$bin/$daemon" -f -c "$conf" ${imapd_listen:+-o "$imapd_listen"} \
			${imapd_imaps_listen:+-o "$imapd_imaps_listen"} "$@" &
	elif [ "$daemon" = filterd ]; then
		"$bin/$daemon" -f -c "$conf" ${filterd_checks:+-o "$filterd_checks"} \
			${spamd_socket:+-o "$spamd_socket"} ${clamd_socket:+-o "$clamd_socket"} "$@" &
	elif [ "$daemon" = smtpd ]; then
		"$bin/$daemon" -f -c "$conf" "$@" &
	else
		"$bin/$daemon" -f -c "$conf" &
	fi
	pids="$pids $!"
	# Record the daemon's own pid for `kill -HUP`, because smtpd forks
	# a key reader with the same name and imapd a process per login.
	echo $! >"$top/pid/$daemon.pid"
	sleep 0.3
	if ! kill -0 $! 2>/dev/null; then
		echo "estafeta: $daemon failed to start; see the messages above" >&2
		exit 1
	fi
done

cat <<INFO
estafeta: running with state under $top
  SMTP        127.0.0.1:2525 (try: swaks --server 127.0.0.1:2525 --to demo@example.test)
  submission  127.0.0.1:2587 (STARTTLS) and 127.0.0.1:2465 (TLS), user demo@example.test,
              password demo, which may send only as demo@example.test
              (try: swaks --server 127.0.0.1:2587 --tls --auth PLAIN --auth-user
              demo@example.test --auth-password demo --from demo@example.test
              --to demo@example.test)
  certificate $top/etc/tls/cert.pem (self-signed; clients must trust it or skip the check)
  reload      kill -HUP \$(cat $top/pid/smtpd.pid) (likewise imapd.pid)
  IMAP        127.0.0.1:2143 (STARTTLS) and 127.0.0.1:2993 (IMAPS), user demo@example.test,
              password demo
  sendmail    ESTAFETA_CONFIG=$conf $bin/sendmail demo@example.test
  mailbox     $top/mail/demo/Maildir (filterd's quarantined mail in .Junk)
  filterd     checks: ${filterd_checks#filterd_checks=}
              (from $conf when it sets filterd_checks); DNS lookups fail
              until dns_resolvers is set; DKIM record to publish in
              $top/etc/dkim/example.test.txt
  queue       ESTAFETA_CONFIG=$conf $bin/estafeta queue list
Press Ctrl-C to stop.
INFO
wait
