/* Dropping root: the fixed order is chroot, setgroups, setresgid,
 * setresuid, then a check that root cannot be regained. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "privsep.h"

int
privsep_is_root(void)
{
	return geteuid() == 0;
}

int
privsep_lookup(const char *user, uid_t *uid, gid_t *gid)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

void
privsep_drop(const char *user, const char *chroot_dir)
{
	uid_t uid;
	gid_t gid;

	if (!privsep_is_root())
		return;
	if (privsep_lookup(user, &uid, &gid) < 0)
		fatalx("user %s not found: create it (adduser --system --group %s) or set another user in the configuration",
		    user, user);

	if (chroot_dir != NULL && *chroot_dir != '\0') {
		if (chroot(chroot_dir) < 0)
			fatal("chroot %s", chroot_dir);
		if (chdir("/") < 0)
			fatal("chdir / in chroot %s", chroot_dir);
	}
	if (setgroups(1, &gid) < 0)
		fatal("setgroups for %s", user);
	if (setresgid(gid, gid, gid) < 0)
		fatal("setresgid %u for %s", (unsigned)gid, user);
	if (setresuid(uid, uid, uid) < 0)
		fatal("setresuid %u for %s", (unsigned)uid, user);

	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		fatalx("privilege drop to %s failed: root could be regained", user);
	log_debug("running as user %s (uid %u, gid %u)", user, (unsigned)uid, (unsigned)gid);
}

int
privsep_become(uid_t uid, gid_t gid, const char *name)
{
	if (!privsep_is_root())
		return 0;
	if (uid == 0) {
		log_error("refusing to run a delivery as root");
		errno = EPERM;
		return -1;
	}
	if (name != NULL) {
		if (initgroups(name, gid) < 0)
			return -1;
	} else if (setgroups(1, &gid) < 0) {
		return -1;
	}
	if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -1;
	if (setuid(0) == 0) {
		errno = EPERM;
		return -1;
	}
	return 0;
}
