/* Dropping privileges: every daemon calls privsep_drop once, after it has
 * bound its sockets and before it reads input from anyone. */
#ifndef ESTAFETA_PRIVSEP_H
#define ESTAFETA_PRIVSEP_H

#include <sys/types.h>

/*
 * If running as root: look up USER, optionally chroot to CHROOT_DIR
 * (NULL or "" for none), then setgroups, setresgid, setresuid in that
 * order, and check that root cannot be regained. If not root: do
 * nothing (everything runs as the invoking user). Exits on failure.
 */
void privsep_drop(const char *user, const char *chroot_dir);

/* Make a later privsep_drop keep GID as a supplementary group, so that
 * the daemon can still reach a socket of that group. */
void privsep_keep_group(gid_t gid);

/* Switch to UID/GID (with the user's supplementary groups when NAME is
 * given) for a delivery child. Returns 0 or -1; on -1 the caller must
 * exit. Does nothing when not root. */
int privsep_become(uid_t uid, gid_t gid, const char *name);

/* Look up USER; 0 on success with uid/gid filled, -1 if missing. */
int privsep_lookup(const char *user, uid_t *uid, gid_t *gid);

int privsep_is_root(void);

/* As root: create HOME (mode 0700, owned by UID/GID) and any missing
 * parents (mode 0755, owned by root). The home is built under a temporary
 * name and renamed into place, so no process finds it still owned by
 * root. 0 (also when it exists), or -1 with errno set. */
int privsep_create_home(const char *home, uid_t uid, gid_t gid);

#endif
