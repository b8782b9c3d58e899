/*
 * The root half of the pam passdb: a child process forked before authd
 * drops privileges, the only part of authd that keeps root, because
 * pam_unix needs it to read /etc/shadow. It reads requests from the
 * unprivileged authd over a socketpair in ipc.h frames and calls PAM:
 *
 *   pam      id=N user=NAME password=P [rip=ADDR] [service=S]
 *   result   id=N status=ok|fail|tempfail [user=NAME]
 *
 * It parses nothing from the network itself. libpam is loaded with
 * dlopen(3) when the worker starts, so authd does not need libpam unless
 * the pam passdb is configured.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <security/pam_appl.h>

#include "authd.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

#define LIBPAM_SONAME	"libpam.so.0"

/* The libpam functions the worker calls, resolved by dlsym(3). */
static struct {
	__typeof__(pam_start) *start;
	__typeof__(pam_end) *end;
	__typeof__(pam_set_item) *set_item;
	__typeof__(pam_get_item) *get_item;
	__typeof__(pam_authenticate) *authenticate;
	__typeof__(pam_acct_mgmt) *acct_mgmt;
	__typeof__(pam_strerror) *strerror;
} pam;

struct conversation {
	const char *user;
	const char *password;
};

static void
load_libpam(void)
{
	void *handle = dlopen(LIBPAM_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (handle == NULL)
		fatalx("pam worker: cannot load %s: %s", LIBPAM_SONAME, dlerror());
	pam.start = (__typeof__(pam.start))dlsym(handle, "pam_start");
	pam.end = (__typeof__(pam.end))dlsym(handle, "pam_end");
	pam.set_item = (__typeof__(pam.set_item))dlsym(handle, "pam_set_item");
	pam.get_item = (__typeof__(pam.get_item))dlsym(handle, "pam_get_item");
	pam.authenticate = (__typeof__(pam.authenticate))dlsym(handle, "pam_authenticate");
	pam.acct_mgmt = (__typeof__(pam.acct_mgmt))dlsym(handle, "pam_acct_mgmt");
	pam.strerror = (__typeof__(pam.strerror))dlsym(handle, "pam_strerror");
	if (pam.start == NULL || pam.end == NULL || pam.set_item == NULL ||
	    pam.get_item == NULL || pam.authenticate == NULL || pam.acct_mgmt == NULL ||
	    pam.strerror == NULL)
		fatalx("pam worker: %s lacks a PAM function: %s", LIBPAM_SONAME, dlerror());
}

/* Answer PAM's prompts: the user name when it echoes, the password when it does not. */
static int
converse(int count, const struct pam_message **messages, struct pam_response **responses,
    void *arg)
{
	struct conversation *conversation = arg;
	struct pam_response *replies;

	if (count <= 0 || count > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	replies = calloc((size_t)count, sizeof *replies);
	if (replies == NULL)
		return PAM_BUF_ERR;

	for (int i = 0; i < count; i++) {
		const char *answer = NULL;

		switch (messages[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
			answer = conversation->password;
			break;
		case PAM_PROMPT_ECHO_ON:
			answer = conversation->user;
			break;
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO:
			continue;
		default:
			free(replies);
			return PAM_CONV_ERR;
		}
		replies[i].resp = strdup(answer);
		if (replies[i].resp == NULL) {
			for (int j = 0; j < i; j++)
				free(replies[j].resp);
			free(replies);
			return PAM_BUF_ERR;
		}
	}
	*responses = replies;
	return PAM_SUCCESS;
}

/*
 * pam_unix sleeps about 2 seconds after a wrong password. One worker
 * serves every client in turn, so that sleep is replaced by this no-op,
 * and authd's own per-address delay (throttle.c) applies instead.
 */
static void
skip_fail_delay(int retval, unsigned usec_delay, void *arg)
{
}

/*
 * Whether USER is a system user in the range that may log in. authd
 * checks this before it sends a request; the worker checks again so that
 * a compromised authd cannot test root's password through it.
 */
static int
user_allowed(const char *user)
{
	long long first = config_int("first_valid_uid"), last = config_int("last_valid_uid");
	struct passwd *pw = getpwnam(user);

	return pw != NULL && pw->pw_uid != 0 && pw->pw_uid >= first &&
	    (last == 0 || pw->pw_uid <= last);
}

/* Authenticate USER with PASSWORD through PAM service SERVICE, then check the account. */
static const char *
authenticate(const char *service, const char *user, const char *password, const char *rip,
    char *canonical, size_t canonicalsize)
{
	struct conversation conversation = { user, password };
	struct pam_conv conv = { converse, &conversation };
	pam_handle_t *handle = NULL;
	const void *item = NULL;
	char safe_user[200];
	int rc;

	log_sanitize(safe_user, sizeof safe_user, user, strlen(user));
	if (!user_allowed(user)) {
		log_warn("pam worker: user=<%s> is not a system user in the uid range; not checked",
		    safe_user);
		return "fail";
	}
	rc = pam.start(service, user, &conv, &handle);
	if (rc != PAM_SUCCESS) {
		log_error("pam worker: pam_start for service %s failed: %s", service,
		    pam.strerror(handle, rc));
		return "tempfail";
	}
	pam.set_item(handle, PAM_FAIL_DELAY, (const void *)skip_fail_delay);
	if (*rip != '\0')
		pam.set_item(handle, PAM_RHOST, rip);
	pam.set_item(handle, PAM_TTY, "estafeta");

	rc = pam.authenticate(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS)
		rc = pam.acct_mgmt(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS && pam.get_item(handle, PAM_USER, &item) == PAM_SUCCESS &&
	    item != NULL)
		strlcpy_x(canonical, item, canonicalsize);

	if (rc != PAM_SUCCESS)
		log_debug("pam worker: user=<%s>, service=%s: %s", safe_user, service,
		    pam.strerror(handle, rc));
	pam.end(handle, rc);

	switch (rc) {
	case PAM_SUCCESS:
		return "ok";
	case PAM_AUTH_ERR:
	case PAM_USER_UNKNOWN:
	case PAM_MAXTRIES:
	case PAM_ACCT_EXPIRED:
	case PAM_NEW_AUTHTOK_REQD:
	case PAM_PERM_DENIED:
	case PAM_CRED_INSUFFICIENT:
		return "fail";
	default:
		return "tempfail";
	}
}

/* NOTE: one request at a time, so a slow PAM module (a network
 * directory, say) delays every system user's login behind it. */
static void
serve(int sock)
{
	struct ipc_msg *request, *reply;

	while ((request = ipc_recv(sock)) != NULL) {
		const char *user = ipc_msg_get(request, "user");
		const char *password = ipc_msg_get(request, "password");
		const char *rip = ipc_msg_get(request, "rip");
		const char *service = ipc_msg_get(request, "service");
		char canonical[256] = "";
		const char *status = "tempfail";

		if (strcmp(request->type, "pam") == 0 && user != NULL && password != NULL &&
		    service != NULL)
			status = authenticate(service, user, password, rip != NULL ? rip : "",
			    canonical, sizeof canonical);
		else
			log_error("pam worker: malformed request of type %s", request->type);

		if (strpbrk(canonical, "\r\n") != NULL) {
			log_error("pam worker: PAM changed the user name to one with CR or LF");
			status = "tempfail";
			canonical[0] = '\0';
		}

		reply = ipc_msg_new("result");
		ipc_msg_add(reply, "id", ipc_msg_get(request, "id") != NULL ?
		    ipc_msg_get(request, "id") : "0");
		ipc_msg_add(reply, "status", status);
		if (canonical[0] != '\0')
			ipc_msg_add(reply, "user", canonical);
		if (password != NULL)
			explicit_bzero((char *)password, strlen(password));
		ipc_msg_free(request);
		if (ipc_send(sock, reply, -1) < 0)
			fatal("pam worker: cannot send a result to authd");
		ipc_msg_free(reply);
	}
	if (errno != 0)
		fatal("pam worker: cannot read a request from authd");
}

int
pam_worker_start(void)
{
	int pair[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		fatal("cannot create the socketpair of the pam worker");
	pid = fork();
	if (pid < 0)
		fatal("cannot fork the pam worker");
	if (pid > 0) {
		close(pair[1]);
		return pair[0];
	}

	/* The worker: it exits when authd closes the other end or exits. */
	close(pair[0]);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	load_libpam();
	log_info("pam worker: started as pid %ld", (long)getpid());
	serve(pair[1]);
	_exit(0);
}
