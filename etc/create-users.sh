#!/bin/sh
# Create the system users the daemons drop to, if they are missing
# (Debian Policy: system user names start with an underscore).
set -eu

for user in _estafeta _estafeta-queue _estafeta-filter _estafeta-vmail; do
	if ! getent passwd "$user" >/dev/null; then
		adduser --system --group --no-create-home --home /nonexistent \
			--quiet "$user"
	fi
done
