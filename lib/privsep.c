/* Dropping root: the fixed order is chroot, setgroups, setresgid,
 * setresuid, then a check that root cannot be regained. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "privsep.h"
#include "util.h"

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

/* The supplementary group that privsep_drop keeps, or -1 for none. */
static gid_t kept_group = (gid_t)-1;

void
privsep_keep_group(gid_t gid)
{
	kept_group = gid;
}

void
privsep_drop(const char *user, const char *chroot_dir)
{
	uid_t uid;
	gid_t gid;
	gid_t groups[2];
	int ngroups = 1;

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
	groups[0] = gid;
	if (kept_group != (gid_t)-1 && kept_group != gid)
		groups[ngroups++] = kept_group;
	if (setgroups((size_t)ngroups, groups) < 0)
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

int
privsep_create_home(const char *home, uid_t uid, gid_t gid)
{
	char parent[PATH_MAX], temp[PATH_MAX];
	char *slash;

	strlcpy_x(parent, home, sizeof parent);
	slash = strrchr(parent, '/');
	if (slash != NULL && slash != parent) {
		mode_t old_umask = umask(022);
		int rc;

		*slash = '\0';
		rc = mkdir_p(parent, 0755);
		umask(old_umask);
		if (rc < 0)
			return -1;
	}
	/* Build the directory under a temporary name and move it into place
	 * only once the user owns it: a concurrent worker for the same user
	 * must never find HOME still owned by root. */
	if ((size_t)snprintf(temp, sizeof temp, "%s.new.%ld", home, (long)getpid()) >= sizeof temp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (mkdir(temp, 0700) < 0)
		return -1;
	if (privsep_is_root() && chown(temp, uid, gid) < 0) {
		rmdir(temp);
		return -1;
	}
	if (renameat2(AT_FDCWD, temp, AT_FDCWD, home, RENAME_NOREPLACE) < 0) {
		int saved = errno;

		rmdir(temp);
		if (saved == EEXIST)
			return 0;
		errno = saved;
		return -1;
	}
	log_info("created home directory %s for uid %u", home, (unsigned)uid);
	return 0;
}
