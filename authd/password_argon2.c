/*
 * {ARGON2I} and {ARGON2ID} passwords, stored as Dovecot and the argon2
 * command write them: "$argon2id$v=19$m=65536,t=3,p=1$SALT$HASH" with
 * base64 salt and hash. libargon2 is loaded with dlopen(3) on the first
 * such password, so authd runs without it when no entry uses Argon2.
 */
#include <dlfcn.h>
#include <string.h>

#include <argon2.h>

#include "authd.h"
#include "log.h"

#define LIBARGON2_SONAME	"libargon2.so.1"

static __typeof__(argon2_verify) *verify_fn;
static int load_failed;

static int
load_libargon2(void)
{
	void *handle;

	if (verify_fn != NULL || load_failed)
		return verify_fn != NULL ? 0 : -1;
	handle = dlopen(LIBARGON2_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (handle != NULL)
		verify_fn = (__typeof__(verify_fn))dlsym(handle, "argon2_verify");
	if (verify_fn == NULL) {
		/* Logged once; every Argon2 password counts as an unsupported scheme then. */
		log_error("cannot load argon2_verify from %s (install libargon2-1): %s",
		    LIBARGON2_SONAME, dlerror());
		load_failed = 1;
		return -1;
	}
	return 0;
}

/*
 * Check PASSWORD against ENCODED of Argon2 variant ID (1) or I (0).
 * Returns 1 on a match, 0 on a mismatch, -1 for malformed data.
 * NOTE: the check runs in the event loop, so an entry with a large
 * memory or time cost delays every other client while it runs.
 */
int
password_check_argon2(const char *encoded, const char *password, int id)
{
	const char *prefix = id ? "$argon2id$" : "$argon2i$";
	int rc;

	if (strncmp(encoded, prefix, strlen(prefix)) != 0 || load_libargon2() < 0)
		return -1;
	rc = verify_fn(encoded, password, strlen(password), id ? Argon2_id : Argon2_i);
	if (rc == ARGON2_OK)
		return 1;
	if (rc == ARGON2_VERIFY_MISMATCH)
		return 0;
	return -1;
}
