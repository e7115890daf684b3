/*
 * The privileged monitor (see monitor.h). One request at a time: a fixed
 * header, then NUL-separated strings; a descriptor travels as SCM_RIGHTS.
 * Every reply is {rc, value}. The monitor trusts nothing the daemon sends:
 * actions must be the config's, children its own, owned paths below the
 * directory output.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "harden.h"
#include "monitor.h"
#include "mountpoint.h"
#include "onchange.h"
#include "secretfs/error.h"
#include "secretfs/log.h"

#define MON_MSG_MAX (128 * 1024)
#define MON_MAX_CHILDREN 256

enum mon_op {
	MON_MOUNTED = 1,
	MON_DETACH,
	MON_SIGNAL,
	MON_SPAWN,
	MON_REAP,
	MON_KILL,
	MON_OWN
};

struct mon_req {
	uint32_t op;
	int32_t a, b, c; /* per op: signal / pid / uid, gid, mode */
};

struct mon_reply {
	int32_t rc, value;
};

struct monitor {
	int fd;
	pid_t pid;
	pthread_mutex_t lock;
};

extern char **environ;

/* ---- the monitor process ------------------------------------------------ */

struct mon_state {
	const struct config *cfg;
	int fd;
	bool mounted;
	char root[PATH_MAX]; /* the directory output's real path, or "" */
	pid_t children[MON_MAX_CHILDREN];
	size_t nchildren;
};

/* The config's action for (sig, pid_file), or NULL. */
static const struct config_onchange *find_signal(const struct config *cfg, int sig,
                                                 const char *pid_file)
{
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_onchange *oc = cfg->secrets[i].on_change;

		if (oc && oc->signal && oc->signal == sig &&
		    strcmp(oc->pid_file, pid_file) == 0)
			return oc;
	}
	return NULL;
}

/* The config's command whose argv is the n strings at args, or NULL. */
static const struct config_onchange *find_command(const struct config *cfg,
                                                  const char *args, size_t n)
{
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_onchange *oc = cfg->secrets[i].on_change;
		const char *p = args;
		size_t k;

		if (!oc || oc->signal)
			continue;
		for (k = 0; k < n && oc->argv[k] && strcmp(oc->argv[k], p) == 0; k++)
			p += strlen(p) + 1;
		if (k == n && !oc->argv[k])
			return oc;
	}
	return NULL;
}

static int read_pid_file(const char *path, pid_t *pid)
{
	char buf[32], *end;
	ssize_t n;
	long v;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -EINVAL;
	buf[n] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	while (*end == '\n' || *end == ' ' || *end == '\r' || *end == '\t')
		end++;
	if (errno || *end || v <= 1 || v > 0x3fffffff)
		return -EINVAL;
	*pid = (pid_t)v;
	return 0;
}

static int do_spawn(struct mon_state *s, const struct config_onchange *oc,
                    const char *files, bool incomplete, pid_t *pid)
{
	char env_path[] = "PATH=" ONCHANGE_SAFE_PATH;
	char *env_mount = NULL, *env_files = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int rc = ENOMEM;

	if (s->nchildren >= MON_MAX_CHILDREN)
		return -EAGAIN;
	if (asprintf(&env_mount, "SECRETFS_MOUNT=%s", s->cfg->mount.path) < 0)
		env_mount = NULL;
	if (asprintf(&env_files, "SECRETFS_FILES=%s", files) < 0)
		env_files = NULL;
	char env_incomplete[] = "SECRETFS_FILES_INCOMPLETE=1";
	char *envp[] = {env_path, env_mount, env_files,
	                incomplete ? env_incomplete : NULL, NULL};
	if (!env_mount || !env_files)
		goto out;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawnattr_init(&attr);
	/* The monitor ignores the stop signals; the command must not. */
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	/* Absolute argv[0] is run as is; a bare name is looked up in the
	 * monitor's PATH, which is the safe one. */
	if (oc->argv[0][0] == '/')
		rc = posix_spawn(pid, oc->argv[0], &fa, &attr, oc->argv, envp);
	else
		rc = posix_spawnp(pid, oc->argv[0], &fa, &attr, oc->argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc == 0)
		s->children[s->nchildren++] = *pid;
out:
	free(env_mount);
	free(env_files);
	return -rc;
}

static ssize_t child_index(const struct mon_state *s, pid_t pid)
{
	for (size_t i = 0; i < s->nchildren; i++)
		if (s->children[i] == pid)
			return (ssize_t)i;
	return -1;
}

static int do_reap(struct mon_state *s, pid_t pid, int *status)
{
	ssize_t i = child_index(s, pid);
	pid_t r;

	if (i < 0)
		return -ECHILD;
	r = waitpid(pid, status, WNOHANG);
	if (r == 0)
		return 0;
	s->children[i] = s->children[--s->nchildren];
	return r < 0 ? -errno : 1;
}

/* Whether the descriptor fd names something strictly below s->root. */
static bool below_root(const struct mon_state *s, int fd)
{
	char link[64], path[PATH_MAX];
	size_t n = strlen(s->root);
	ssize_t len;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	len = readlink(link, path, sizeof path - 1);
	if (!n || len <= 0)
		return false;
	path[len] = '\0';
	return (size_t)len > n + 1 && strncmp(path, s->root, n) == 0 && path[n] == '/';
}

static int do_own(struct mon_state *s, int fd, const struct mon_req *q)
{
	char link[64];
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return -EINVAL;
	/* The output directory exists once the first generation is written. */
	if (!s->root[0] && (s->cfg->mount.type != MOUNT_DIRECTORY ||
	                    !realpath(s->cfg->mount.path, s->root)))
		s->root[0] = '\0';
	if (!below_root(s, fd))
		return -EPERM;
	if (fchownat(fd, "", (uid_t)q->a, (gid_t)q->b, AT_EMPTY_PATH) < 0)
		return -errno;
	/* An O_PATH descriptor takes no fchmod: its /proc link does. */
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if (q->c != -1 && chmod(link, (mode_t)q->c) < 0)
		return -errno;
	return 0;
}

static void detach(struct mon_state *s)
{
	if (s->mounted && mountpoint_maybe_secretfs(s->cfg->mount.path) &&
	    mountpoint_detach(s->cfg->mount.path) < 0)
		log_error("monitor: cannot unmount %s", s->cfg->mount.path);
	s->mounted = false;
}

/* One request of len bytes at buf (a descriptor with it in fd, or -1). */
static struct mon_reply serve(struct mon_state *s, const char *buf, size_t len, int fd)
{
	const struct mon_req *q = (const struct mon_req *)buf;
	const char *str = buf + sizeof *q;
	size_t slen = len - sizeof *q;
	struct mon_reply r = {-EINVAL, 0};
	const struct config_onchange *oc;
	pid_t pid = 0;
	int status = 0;

	/* Every string part ends with a NUL. */
	if (slen && str[slen - 1] != '\0')
		return r;
	switch (q->op) {
	case MON_MOUNTED:
		s->mounted = !mountpoint_is_fd(s->cfg->mount.path);
		r.rc = 0;
		break;
	case MON_DETACH:
		detach(s);
		r.rc = 0;
		break;
	case MON_SIGNAL:
		if (!slen || !(oc = find_signal(s->cfg, q->a, str)))
			r.rc = -EPERM;
		else if ((r.rc = read_pid_file(oc->pid_file, &pid)) == 0)
			r.rc = kill(pid, oc->signal) < 0 ? -errno : 0;
		r.value = (int32_t)pid;
		break;
	case MON_SPAWN: {
		/* files, then argv: q->a strings; q->b: files incomplete. */
		size_t flen = slen ? strlen(str) + 1 : 0, n = 0;

		for (const char *p = str + flen; p < str + slen; p += strlen(p) + 1)
			n++;
		if (!flen || n == 0 || (int32_t)n != q->a ||
		    !(oc = find_command(s->cfg, str + flen, n)))
			r.rc = -EPERM;
		else if ((r.rc = do_spawn(s, oc, str, q->b != 0, &pid)) == 0)
			r.value = (int32_t)pid;
		break;
	}
	case MON_REAP:
		r.rc = do_reap(s, (pid_t)q->a, &status);
		r.value = status;
		break;
	case MON_KILL:
		r.rc = child_index(s, (pid_t)q->a) < 0  ? -ECHILD
		       : kill((pid_t)q->a, SIGKILL) < 0 ? -errno
		                                        : 0;
		break;
	case MON_OWN:
		r.rc = do_own(s, fd, q);
		break;
	}
	return r;
}

/* Wipes every value of the environment (VAULT_TOKEN, AWS keys: it stays
 * readable in /proc/<pid>/environ) and leaves only the safe PATH, which
 * posix_spawnp searches. */
static void wipe_environment(void)
{
	for (char **e = environ; e && *e; e++) {
		char *eq = strchr(*e, '=');

		if (eq)
			sodium_memzero(eq + 1, strlen(eq + 1));
	}
	clearenv();
	setenv("PATH", ONCHANGE_SAFE_PATH, 1);
}

static void monitor_main(const struct config *cfg, int sock)
{
	static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE};
	struct mon_state s = {.cfg = cfg, .fd = 3};
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	char *buf = malloc(MON_MSG_MAX);
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
		sigaction(ignored[i], &sa, NULL);
	if (sock != s.fd && (dup2(sock, s.fd) < 0 || close(sock) < 0))
		_exit(1);
	close_range(4, ~0U, 0);
	prctl(PR_SET_NAME, "secretfs-mon", 0, 0, 0);
	/* The daemon's heap at the fork is ours copy-on-write: what it will
	 * free and reuse (the parsed config document) would stay here, private
	 * dirty pages, megabytes with 10 000 files. Give the free ones back. */
	malloc_trim(0);
	wipe_environment();
	harden_monitor(cfg->mount.type == MOUNT_FUSE);
	while (buf) {
		struct iovec iov = {buf, MON_MSG_MAX};
		struct msghdr msg = {.msg_iov = &iov,
		                     .msg_iovlen = 1,
		                     .msg_control = ctl.space,
		                     .msg_controllen = sizeof ctl.space};
		struct mon_reply r;
		struct cmsghdr *c;
		ssize_t n = recvmsg(s.fd, &msg, MSG_CMSG_CLOEXEC);
		int fd = -1;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		c = CMSG_FIRSTHDR(&msg);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof fd);
		if ((size_t)n < sizeof(struct mon_req) || (msg.msg_flags & MSG_TRUNC))
			r = (struct mon_reply){-EINVAL, 0};
		else
			r = serve(&s, buf, (size_t)n, fd);
		if (fd >= 0)
			close(fd);
		if (send(s.fd, &r, sizeof r, MSG_NOSIGNAL) < 0)
			break;
	}
	/* The daemon is gone (or stopping): never leave its mount behind. */
	detach(&s);
	_exit(0);
}

/* ---- the daemon's side -------------------------------------------------- */

int monitor_start(const struct config *cfg, struct monitor **out)
{
	struct monitor *m = calloc(1, sizeof *m);
	int sv[2];

	if (!m || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("cannot start the monitor: %s", strerror(errno));
		free(m);
		return SFS_EIO;
	}
	fflush(NULL);
	m->pid = fork();
	if (m->pid < 0) {
		log_error("cannot start the monitor: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		free(m);
		return SFS_EIO;
	}
	if (m->pid == 0) {
		close(sv[0]);
		monitor_main(cfg, sv[1]);
	}
	close(sv[1]);
	m->fd = sv[0];
	pthread_mutex_init(&m->lock, NULL);
	log_debug("monitor started as pid %d", (int)m->pid);
	*out = m;
	return 0;
}

/* Sends one request (strings: slen bytes, NUL-separated; fd: -1 or one to
 * pass) and waits for its reply. Returns the reply's rc (-EIO when the
 * monitor is gone); *value gets its value. */
static int call(struct monitor *m, const struct mon_req *q, const char *str, size_t slen,
                int fd, int32_t *value)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov[2] = {{(void *)q, sizeof *q}, {(void *)str, slen}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = slen ? 2 : 1};
	struct mon_reply r = {-EIO, 0};
	ssize_t n;

	if (!m)
		return -ENOSYS;
	if (sizeof *q + slen > MON_MSG_MAX)
		return -E2BIG;
	if (fd >= 0) {
		memset(&ctl, 0, sizeof ctl);
		msg.msg_control = ctl.space;
		msg.msg_controllen = sizeof ctl.space;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	pthread_mutex_lock(&m->lock);
	do
		n = sendmsg(m->fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0) {
		do
			n = recv(m->fd, &r, sizeof r, 0);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof r)
			r = (struct mon_reply){-EIO, 0};
	}
	pthread_mutex_unlock(&m->lock);
	if (value)
		*value = r.value;
	return r.rc;
}

int monitor_mounted(struct monitor *m)
{
	struct mon_req q = {MON_MOUNTED, 0, 0, 0};

	return call(m, &q, NULL, 0, -1, NULL) < 0 ? SFS_EIO : 0;
}

int monitor_detach(struct monitor *m)
{
	struct mon_req q = {MON_DETACH, 0, 0, 0};

	return call(m, &q, NULL, 0, -1, NULL) < 0 ? SFS_EIO : 0;
}

int monitor_signal(struct monitor *m, const char *pid_file, int sig, pid_t *pid)
{
	struct mon_req q = {MON_SIGNAL, sig, 0, 0};
	int32_t v = 0;
	int rc = call(m, &q, pid_file, strlen(pid_file) + 1, -1, &v);

	*pid = (pid_t)v;
	return rc;
}

int monitor_spawn(struct monitor *m, char *const *argv, const char *files,
                  bool incomplete, pid_t *pid)
{
	struct mon_req q = {MON_SPAWN, 0, incomplete, 0};
	size_t len = strlen(files) + 1;
	char *buf;
	int32_t v = 0;
	int rc;

	for (size_t i = 0; argv[i]; i++, q.a++)
		len += strlen(argv[i]) + 1;
	if (len > MON_MSG_MAX || !(buf = malloc(len)))
		return -E2BIG;
	len = strlen(files) + 1;
	memcpy(buf, files, len);
	for (size_t i = 0; argv[i]; i++) {
		size_t n = strlen(argv[i]) + 1;

		memcpy(buf + len, argv[i], n);
		len += n;
	}
	rc = call(m, &q, buf, len, -1, &v);
	free(buf);
	if (rc == 0)
		*pid = (pid_t)v;
	return rc;
}

int monitor_reap(struct monitor *m, pid_t pid, int *status)
{
	struct mon_req q = {MON_REAP, (int32_t)pid, 0, 0};
	int32_t v = 0;
	int rc = call(m, &q, NULL, 0, -1, &v);

	*status = (int)v;
	return rc;
}

int monitor_kill(struct monitor *m, pid_t pid)
{
	struct mon_req q = {MON_KILL, (int32_t)pid, 0, 0};

	return call(m, &q, NULL, 0, -1, NULL);
}

int monitor_own(struct monitor *m, int fd, uid_t uid, gid_t gid, mode_t mode)
{
	struct mon_req q = {MON_OWN, (int32_t)uid, (int32_t)gid,
	                    mode == (mode_t)-1 ? -1 : (int32_t)mode};
	int rc = call(m, &q, NULL, 0, fd, NULL);

	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return 0;
}

static int privops_detach(void *arg)
{
	return monitor_detach(arg) < 0 ? -1 : 0;
}

static int privops_own(void *arg, int fd, uid_t uid, gid_t gid, mode_t mode)
{
	return monitor_own(arg, fd, uid, gid, mode);
}

struct fs_privops monitor_privops(struct monitor *m)
{
	return (struct fs_privops){
	    .arg = m, .detach = privops_detach, .own = privops_own};
}

void monitor_free(struct monitor *m)
{
	if (!m)
		return;
	close(m->fd);
	while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_destroy(&m->lock);
	free(m);
}
