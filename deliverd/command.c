/*
 * Delivery to a |command: /bin/sh -c COMMAND in its own process group,
 * the message on standard input (after a "From sender date" line,
 * Return-Path and Delivered-To, as Postfix's local(8) writes it), and the
 * environment local(8) sets. Output is kept for the error text.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "deliverd.h"
#include "log.h"
#include "util.h"

#define OUTPUT_KEEP 400		/* bytes of command output kept for the reply text */

static void
env_add(char **envp, size_t *n, const char *name, const char *value)
{
	if (value != NULL)
		envp[(*n)++] = xasprintf("%s=%s", name, value);
}

/* The child side: never returns. */
static void
command_exec(const char *command, const struct command_env *env, int input_fd, int output_fd)
{
	char *envp[16];
	size_t n = 0;

	setsid();
	if (dup2(input_fd, STDIN_FILENO) < 0 || dup2(output_fd, STDOUT_FILENO) < 0 ||
	    dup2(output_fd, STDERR_FILENO) < 0)
		_exit(EX_OSERR);
	if (env->home == NULL || env->home[0] == '\0' || chdir(env->home) < 0)
		if (chdir("/") < 0)
			_exit(EX_OSERR);
	signal(SIGPIPE, SIG_DFL);

	env_add(envp, &n, "PATH", "/usr/local/bin:/usr/bin:/bin");
	env_add(envp, &n, "SHELL", "/bin/sh");
	env_add(envp, &n, "HOME", env->home);
	env_add(envp, &n, "USER", env->user);
	env_add(envp, &n, "LOGNAME", env->user);
	env_add(envp, &n, "SENDER", env->sender);
	env_add(envp, &n, "RECIPIENT", env->recipient);
	env_add(envp, &n, "LOCAL", env->local);
	env_add(envp, &n, "DOMAIN", env->domain);
	env_add(envp, &n, "EXTENSION", env->extension);
	env_add(envp, &n, "TZ", getenv("TZ"));
	env_add(envp, &n, "LANG", getenv("LANG"));
	envp[n] = NULL;

	execle("/bin/sh", "sh", "-c", command, (char *)NULL, envp);
	_exit(EX_OSERR);
}

/* A separate process writes the message into the command's standard
 * input while this one reads the command's output, so neither pipe can
 * fill up and block both sides. */
static pid_t
start_feeder(const struct message *msg, const char *prefix, int input_fd)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;

	/* A command that exits without reading its input is not an error. */
	signal(SIGPIPE, SIG_IGN);
	message_write(msg, input_fd, prefix, 0);
	_exit(0);
}

/* "From sender date", Return-Path and Delivered-To, a new string. */
static char *
command_input_prefix(const struct message *msg, const char *recipient)
{
	char *separator = message_mbox_separator(msg->sender);
	char *headers = message_delivery_prefix(msg->sender, recipient);
	char *prefix = xasprintf("%s%s", separator, headers);

	free(separator);
	free(headers);
	return prefix;
}

/*
 * Read the command's output until EOF or DEADLINE, keeping the first
 * OUTPUT_KEEP bytes in OUT. Returns 0, or -1 on timeout.
 */
static int
collect_output(int fd, time_t deadline, char *out, size_t outsize)
{
	size_t kept = 0;
	char buf[4096];

	out[0] = '\0';
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		time_t left = deadline - time(NULL);
		ssize_t n;

		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, left > 60 ? 60000 : (int)left * 1000) < 0) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		if (pfd.revents == 0)
			continue;
		n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		if (kept + 1 < outsize) {
			size_t take = (size_t)n < outsize - 1 - kept ? (size_t)n : outsize - 1 - kept;

			memcpy(out + kept, buf, take);
			kept += take;
			out[kept] = '\0';
		}
	}
}

/* Wait for PID until DEADLINE. Returns 0 with *STATUS, or -1 on timeout. */
static int
wait_until(pid_t pid, time_t deadline, int *status)
{
	for (;;) {
		pid_t done = waitpid(pid, status, WNOHANG);

		if (done == pid)
			return 0;
		if (done < 0 && errno != EINTR)
			return 0;
		if (time(NULL) >= deadline)
			return -1;
		usleep(10000);
	}
}

/* Make OUTPUT one line of printable text for the reply. */
static void
output_to_text(char *output)
{
	size_t len = strlen(output);

	while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == '\r' ||
	    output[len - 1] == ' '))
		output[--len] = '\0';
	for (char *p = output; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = ' ';
}

void
command_deliver(const struct message *msg, const char *command, const struct command_env *env,
    struct delivery_result *result)
{
	char output[OUTPUT_KEEP + 1], what[300];
	int input[2], out_pipe[2], status = 0, timed_out;
	time_t deadline = time(NULL) + (time_t)config_time("command_time_limit");
	pid_t pid, feeder;
	char *prefix;

	snprintf(what, sizeof what, "command %s", command);
	if (pipe2(input, O_CLOEXEC) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0) {
		result_set(result, EX_OSERR, "4.3.0", "cannot create pipe: %s", strerror(errno));
		return;
	}

	pid = fork();
	if (pid < 0) {
		result_set(result, EX_OSERR, "4.3.0", "cannot fork: %s", strerror(errno));
		close(input[0]);
		close(input[1]);
		close(out_pipe[0]);
		close(out_pipe[1]);
		return;
	}
	if (pid == 0)
		command_exec(command, env, input[0], out_pipe[1]);
	close(input[0]);
	close(out_pipe[1]);

	prefix = command_input_prefix(msg, env->recipient);
	feeder = start_feeder(msg, prefix, input[1]);
	free(prefix);
	close(input[1]);

	timed_out = collect_output(out_pipe[0], deadline, output, sizeof output) < 0 ||
	    wait_until(pid, deadline, &status) < 0;

	close(out_pipe[0]);
	if (timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	if (feeder > 0) {
		kill(feeder, SIGKILL);
		waitpid(feeder, NULL, 0);
	}
	output_to_text(output);

	if (timed_out) {
		result_set(result, EX_UNAVAILABLE, "5.3.0", "%s: command time limit exceeded (%lld s)",
		    what, config_time("command_time_limit"));
	} else if (WIFSIGNALED(status)) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "%s: killed by signal %d%s%s", what,
		    WTERMSIG(status), output[0] ? ": " : "", output);
	} else {
		result_from_exit_code(result, WEXITSTATUS(status), what);
		if (result->status != EX_OK && output[0] != '\0') {
			size_t len = strlen(result->text);

			snprintf(result->text + len, sizeof result->text - len, ": %s", output);
		}
	}
}
