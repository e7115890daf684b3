/*
 * The sandbox (see sandbox.h). Landlock goes first (of its syscalls only
 * landlock_restrict_self is in the allowlist: a thread can only confine
 * itself further), seccomp last.
 *
 * The allowlist is cut by what runs after start-up: every thread (the
 * scheduler and its workers, curl's resolver threads, the FUSE loop, the
 * listeners) on guarded memory (sodium: mmap, mprotect, mlock, madvise),
 * futexes, clocks, timers, inotify and eventfds; files read and written by
 * descriptor; the monitor's socket. New threads, never new processes:
 * clone only with CLONE_THREAD, and clone3 (whose flags a filter cannot
 * see) answers ENOSYS, so glibc falls back to clone. Never execve, ptrace,
 * mount, setuid and the rest: the monitor (monitor.h) does what needs a
 * process or a privilege.
 *
 * Under AddressSanitizer, LeakSanitizer's check at exit stops the world
 * from a helper task it clones (no CLONE_THREAD) that ptraces every
 * thread: that build also allows clone without CLONE_THREAD, ptrace, wait4
 * and process_vm_readv, or the check would spin on its dead helper.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "aws_api.h"
#include "confval.h"
#include "sandbox.h"
#include "secretfs/audit.h"
#include "secretfs/error.h"
#include "secretfs/log.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif

#ifdef SANDBOX_SANITIZER
/*
 * LeakSanitizer's built-in suppressions (a file could not be read under
 * Landlock at exit). libfuse keeps its own copy of the mount path and frees
 * it only in fuse_session_unmount, which would also unmount (umount2, or a
 * fork of fusermount3) while the kernel connection is up; under the sandbox
 * the monitor unmounts instead, and with a file still open at exit the
 * connection outlives the daemon, so that one string is left, once a run.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libfuse3.so\n";
}
#endif

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

/* ---- Landlock ----------------------------------------------------------- */

#define LL_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_EXEC_READ (LL_READ | LANDLOCK_ACCESS_FS_EXECUTE)
#define LL_WRITE                                                                         \
	(LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |                 \
	 LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |                  \
	 LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SYM |                     \
	 LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE)
/* What applies to a file that is not a directory. */
#define LL_FILE_RIGHTS                                                                   \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |                    \
	 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)

/* Read-only everywhere: what libc, OpenSSL and the resolver read. */
static const char *const system_read[] = {
    "/etc/ssl",
    "/etc/pki",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/proc/self",
    "/proc/stat", /* boot time: process_start_time_seconds */
    "/proc/thread-self",
    "/dev/null",
    "/dev/urandom",
    "/sys/devices/system/cpu",
};
/* Shared libraries (NSS modules and libcurl's are loaded late). */
static const char *const system_exec[] = {"/usr/lib", "/lib", "/usr/lib64", "/lib64",
                                          "/usr/local/lib"};
/* Directories whose every file must not come with a file named there. */
static const char *const too_wide[] = {"/",     "/etc",  "/usr", "/var",  "/run", "/tmp",
                                       "/home", "/root", "/dev", "/proc", NULL};

/* Variables that name files the credential chains read. */
static const char *const file_variables[] = {"AWS_SHARED_CREDENTIALS_FILE",
                                             "AWS_CONFIG_FILE",
                                             "AWS_WEB_IDENTITY_TOKEN_FILE",
                                             "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                             "VAULT_CACERT",
                                             "VAULT_CAPATH",
                                             "SSL_CERT_FILE",
                                             "SSL_CERT_DIR",
                                             "CURL_CA_BUNDLE",
                                             NULL};
/* Where Kubernetes and EKS put the tokens the auth methods re-read. */
static const char *const token_dirs[] = {"/var/run/secrets", "/run/secrets"};

struct landlock {
	int ruleset;
	uint64_t handled;
	const char *config_dir; /* real, for relative names; may be NULL */
};

/* What the sandbox allowed at start, for a reload's check
 * (sandbox_check_config): each readable rule by its real path. */
struct ll_rule {
	char *path;
	bool dir;
};
static struct {
	bool landlock, seccomp, network;
	struct ll_rule *rules;
	size_t nrules;
} entered;

static void ll_remember(const char *path, bool dir)
{
	char real[PATH_MAX];
	struct ll_rule *grown;

	if (!realpath(path, real) ||
	    !(grown = realloc(entered.rules, (entered.nrules + 1) * sizeof *grown)))
		return;
	entered.rules = grown;
	if ((grown[entered.nrules].path = strdup(real)))
		grown[entered.nrules++].dir = dir;
}

/* Whether name (a real path) is below a readable rule. */
static bool ll_allows(const char *name)
{
	for (size_t i = 0; i < entered.nrules; i++) {
		const struct ll_rule *r = &entered.rules[i];
		size_t n = strlen(r->path);

		if (strncmp(name, r->path, n) == 0 &&
		    (name[n] == '\0' ||
		     (r->dir && (name[n] == '/' || (n == 1 && r->path[0] == '/')))))
			return true;
	}
	return false;
}

static int ll_add(struct landlock *ll, const char *path, uint64_t access)
{
	struct landlock_path_beneath_attr pb = {0};
	struct stat st = {0};
	int fd = open(path, O_PATH | O_CLOEXEC), rc;

	if (fd < 0) {
		log_debug("landlock: %s: %s (not in the set)", path, strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
		access &= LL_FILE_RIGHTS;
	pb.allowed_access = access & ll->handled;
	pb.parent_fd = fd;
	rc = (int)syscall(SYS_landlock_add_rule, ll->ruleset, LANDLOCK_RULE_PATH_BENEATH,
	                  &pb, 0);
	if (rc < 0) {
		log_warn("landlock: cannot add %s: %s", path, strerror(errno));
	} else {
		log_debug("landlock: %s (%s)", path,
		          access & LANDLOCK_ACCESS_FS_WRITE_FILE ? "read-write" : "read");
		if (access & LANDLOCK_ACCESS_FS_READ_FILE)
			ll_remember(path, S_ISDIR(st.st_mode));
	}
	close(fd);
	return rc;
}

/* name as an absolute path in buf (PATH_MAX): relative names are
 * config_dir's (may be NULL: then false), "-" (stdin, stdout) none. */
static bool absolute_name(const char *name, const char *config_dir, char *buf)
{
	int n;

	if (strcmp(name, "-") == 0 || !name[0])
		return false;
	if (name[0] == '/')
		n = snprintf(buf, PATH_MAX, "%s", name);
	else if (config_dir)
		n = snprintf(buf, PATH_MAX, "%s/%s", config_dir, name);
	else
		return false;
	return n > 0 && n < PATH_MAX;
}

/* The directory dir of the file name: dir, or name alone when dir is a
 * system one whose every file must not come with it. */
static void ll_add_dir_of(struct landlock *ll, const char *dir, const char *name,
                          uint64_t access)
{
	for (const char *const *w = too_wide; *w; w++)
		if (strcmp(dir, *w) == 0) {
			ll_add(ll, name, access);
			return;
		}
	ll_add(ll, dir, access);
}

/*
 * A file the config names: its directory (files are replaced by rename,
 * and watched), or the file alone when the directory is a system one.
 */
static void ll_add_file_of(struct landlock *ll, const char *name, uint64_t access)
{
	char file[PATH_MAX], dir[PATH_MAX], *slash;

	if (!absolute_name(name, ll->config_dir, file))
		return;
	memcpy(dir, file, sizeof dir);
	slash = strrchr(dir, '/');
	*(slash == dir ? slash + 1 : slash) = '\0';
	ll_add_dir_of(ll, dir, file, access);
}

/* Calls fn(arg, key path, name) for every string under a key named "path"
 * (file backends) or ending in "_file" or "_dir", at any depth of a
 * backend's object (kp: its key path; nested objects: a few levels). */
typedef void file_fn(void *arg, const char *kp, const char *name);

static void backend_files(const json_t *obj, const char *kp, bool file_type, int depth,
                          file_fn *fn, void *arg)
{
	char sub[CONFVAL_KP_MAX];
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v)
	{
		size_t n = strlen(key);

		if (json_is_object(v) && depth < 8)
			backend_files(v, confval_keypath(sub, kp, key), false, depth + 1,
			              fn, arg);
		else if (json_is_string(v) &&
		         ((file_type && strcmp(key, "path") == 0) ||
		          (n > 5 && strcmp(key + n - 5, "_file") == 0) ||
		          (n > 4 && strcmp(key + n - 4, "_dir") == 0)))
			fn(arg, confval_keypath(sub, kp, key), json_string_value(v));
	}
}

/* Each file of every backend of cfg. */
static void config_files(const struct config *cfg, file_fn *fn, void *arg)
{
	char kp[CONFVAL_KP_MAX];

	for (size_t i = 0; i < cfg->nbackends; i++)
		backend_files(cfg->backends[i].json,
		              confval_keypath(kp, "backends", cfg->backends[i].name),
		              strcmp(cfg->backends[i].type, "file") == 0, 0, fn, arg);
}

static void ll_add_read(void *arg, const char *kp, const char *name)
{
	(void)kp;
	ll_add_file_of(arg, name, LL_READ);
}

static void ll_add_config(struct landlock *ll, const struct config *cfg)
{
	static char config_dir[PATH_MAX];
	char real[PATH_MAX], home[PATH_MAX], given[PATH_MAX];
	const char *v;

	for (size_t i = 0; i < sizeof system_read / sizeof system_read[0]; i++)
		ll_add(ll, system_read[i], LL_READ);
	for (size_t i = 0; i < sizeof system_exec / sizeof system_exec[0]; i++)
		ll_add(ll, system_exec[i], LL_EXEC_READ);
	for (size_t i = 0; i < sizeof token_dirs / sizeof token_dirs[0]; i++)
		ll_add(ll, token_dirs[i], LL_READ);
	/* The config's directory (relative file names, a reload): where the
	 * file really is, and the one it was named in, where a ConfigMap's
	 * "..data" link moves to a new directory at each update. */
	if (realpath(cfg->file, real)) {
		ll_add_file_of(ll, real, LL_READ);
		memcpy(config_dir, real, sizeof config_dir);
		ll->config_dir = dirname(config_dir);
	}
	snprintf(given, sizeof given, "%s", cfg->file);
	if (realpath(dirname(given), real))
		ll_add_dir_of(ll, real, cfg->file, LL_READ);
	config_files(cfg, ll_add_read, ll);
	/* consul-template files: a reload reads them again. */
	for (size_t i = 0; i < cfg->nsecrets; i++)
		if (cfg->secrets[i].template_file &&
		    realpath(cfg->secrets[i].template_file, given))
			ll_add_file_of(ll, given, LL_READ);
	for (const char *const *e = file_variables; *e; e++)
		if ((v = getenv(*e)) && *v)
			ll_add_file_of(ll, v, LL_READ);
	if ((v = getenv("HOME")) && *v &&
	    snprintf(home, sizeof home, "%s/.aws", v) < (int)sizeof home)
		ll_add(ll, home, LL_READ);
	/* The audit file is reopened after rotation: its directory. An
	 * audited open names its process: /proc/<pid>/comm and status. */
	if (cfg->audit && strcmp(cfg->audit->path, "-") != 0)
		ll_add_file_of(ll, cfg->audit->path, LL_READ | LL_WRITE);
	if (cfg->audit)
		ll_add(ll, "/proc", LL_READ);
	/* The listeners' unix sockets are removed at exit. */
	if (cfg->telemetry && cfg->telemetry->family == AF_UNIX)
		ll_add_file_of(ll, cfg->telemetry->path, LANDLOCK_ACCESS_FS_REMOVE_FILE);
	if (cfg->aws_api && cfg->aws_api->addr.family == AF_UNIX)
		ll_add_file_of(ll, cfg->aws_api->addr.path,
		               LANDLOCK_ACCESS_FS_REMOVE_FILE);
	if (cfg->mount.type == MOUNT_DIRECTORY)
		ll_add(ll, cfg->mount.path, LL_READ | LL_WRITE);
	else
		ll_add(ll, "/dev/fuse", LL_READ | LANDLOCK_ACCESS_FS_WRITE_FILE);
}

/*
 * landlock_restrict_self() confines the calling thread only (and the
 * threads it starts later): the ruleset stays open so that every thread
 * started before, at its next step, confines itself too.
 */
static atomic_int ll_ruleset = -1;
static _Thread_local bool ll_thread_in;

void sandbox_thread_enter(void)
{
	int fd = atomic_load(&ll_ruleset);

	if (ll_thread_in || fd < 0)
		return;
	ll_thread_in = true;
	/* seccomp's TSYNC gave every thread no_new_privs; with seccomp off,
	 * this thread sets its own. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_landlock_restrict_self, fd, 0) < 0)
		log_warn("landlock: a thread cannot confine itself: %s", strerror(errno));
}

static int landlock_enter(const struct config *cfg)
{
	struct landlock_ruleset_attr attr = {0};
	struct landlock ll = {-1, 0, NULL};
	int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
	                       LANDLOCK_CREATE_RULESET_VERSION);

	if (abi < 0) {
		log_info("landlock: not available (%s): file access is not restricted",
		         strerror(errno));
		return 0;
	}
	ll.handled = (LANDLOCK_ACCESS_FS_MAKE_BLOCK << 1) - 1;
	if (abi >= 2)
		ll.handled |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		ll.handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
	attr.handled_access_fs = ll.handled;
	ll.ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (ll.ruleset < 0) {
		log_error("landlock: cannot create a ruleset: %s", strerror(errno));
		return SFS_EIO;
	}
	ll_add_config(&ll, cfg);
	if (syscall(SYS_landlock_restrict_self, ll.ruleset, 0) < 0) {
		log_error("landlock: cannot restrict the process: %s", strerror(errno));
		close(ll.ruleset);
		return SFS_EIO;
	}
	/* Kept for the threads started before (sandbox_thread_enter). */
	atomic_store(&ll_ruleset, ll.ruleset);
	ll_thread_in = true;
	entered.landlock = true;
	log_info("landlock: file access restricted (ABI %d)", abi);
	return 0;
}

/* ---- seccomp ------------------------------------------------------------ */

/* clang-format off */
static const char *const sys_base[] = {
	/* memory (sodium_malloc guards pages and locks them) */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "mlock2",
	"munlock", "mincore", "membarrier",
	/* threads, time, signals */
	"futex", "set_robust_list", "get_robust_list", "rseq", "sched_yield",
	"sched_getaffinity", "sched_setaffinity", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "rt_sigaction",
	"rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigsuspend", "pause",
	"sigaltstack",
	"restart_syscall", "exit", "exit_group", "getpid", "gettid", "getppid",
	"getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid",
	"getresgid", "prctl", "prlimit64", "getrlimit", "getrusage", "times",
	"uname", "sysinfo", "getrandom", "set_tid_address", "capget",
	/* descriptors and waiting */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
	"pwritev", "close", "dup", "dup2", "dup3", "fcntl", "lseek", "pipe", "pipe2",
	"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
	"epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd",
	"eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"fsync", "fdatasync", "ftruncate", "close_range",
	/* threads started before the sandbox confine themselves */
	"landlock_restrict_self",
	/* files (landlock limits which) */
	"open", "openat", "openat2", "stat", "fstat", "lstat", "newfstatat", "statx",
	"statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink",
	"readlinkat", "getdents", "getdents64", "getcwd", "umask", "fchmod",
	"fchown", "fadvise64", "wait4",
	/* the monitor's socket */
	"sendmsg", "recvmsg", "sendto", "recvfrom",
};
static const char *const sys_directory[] = {
	"mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat",
	"rmdir", "symlink", "symlinkat", "fchmodat", "fchownat", "utimensat",
};
static const char *const sys_fuse[] = {"splice", "vmsplice", "tee"};
static const char *const sys_network[] = {
	"connect", "bind", "listen", "accept", "accept4", "getsockname",
	"getpeername", "setsockopt", "getsockopt", "shutdown", "sendmmsg",
	"recvmmsg", "socketpair", "unlink", "unlinkat",
};
#ifdef SANDBOX_SANITIZER
static const char *const sys_sanitizer[] = {"ptrace", "wait4", "waitid",
	"process_vm_readv", "kill", "tgkill", "sched_getparam", "sched_getscheduler"};
#endif
static const unsigned long ioctl_allowed[] = {TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO,
	FIOCLEX, FIONCLEX};
static const int socket_domains[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
/* clang-format on */

/* The line of the SIGSYS handler, built with async-signal-safe calls. */
static void on_sigsys(int sig, siginfo_t *info, void *uctx)
{
	char line[96] = "secretfs: seccomp: refused syscall ";
	char num[16];
	size_t n = strlen(line), k = 0;
	unsigned v = (unsigned)info->si_syscall;
	sigset_t set;

	do
		num[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < sizeof num);
	while (k)
		line[n++] = num[--k];
	memcpy(line + n, "; the process is killed\n", 24);
	n += 24;
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nothing left to tell. */
	}
	signal(SIGSYS, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGSYS);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(SIGSYS);
	_exit(128 + SIGSYS);
}

static int allow_names(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);

		/* Names this architecture lacks are skipped. */
		if (nr == __NR_SCMP_ERROR || nr < 0)
			continue;
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
			return -1;
	}
	return 0;
}

static bool uses_network(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nbackends; i++)
		if (strcmp(cfg->backends[i].type, "file") != 0 &&
		    strcmp(cfg->backends[i].type, "dev") != 0)
			return true;
	return cfg->telemetry || cfg->aws_api;
}

#define NAMES(a) (a), sizeof(a) / sizeof((a)[0])

static int seccomp_enter(const struct config *cfg)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);

	bool net = uses_network(cfg);
	struct sigaction sa;
	int rc = -1;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (!ctx || sigaction(SIGSYS, &sa, NULL) < 0)
		goto out;
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0 ||
	    allow_names(ctx, NAMES(sys_base)) < 0 ||
	    (cfg->mount.type == MOUNT_DIRECTORY
	         ? allow_names(ctx, NAMES(sys_directory))
	         : allow_names(ctx, NAMES(sys_fuse))) < 0 ||
	    (net && allow_names(ctx, NAMES(sys_network)) < 0))
		goto out;
	/* Threads only; clone3 hides its flags in memory: ENOSYS sends glibc
	 * back to clone. abort() and raise() signal this process only. */
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	                     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) <
	        0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
	                     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid())) < 0)
		goto out;
	for (size_t i = 0; i < sizeof ioctl_allowed / sizeof ioctl_allowed[0]; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		                     SCMP_A1(SCMP_CMP_EQ, ioctl_allowed[i])) < 0)
			goto out;
	for (size_t i = 0; net && i < sizeof socket_domains / sizeof socket_domains[0];
	     i++)
		if (seccomp_rule_add(
		        ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
		        SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)socket_domains[i])) < 0)
			goto out;
#ifdef SANDBOX_SANITIZER
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0) < 0 ||
	    allow_names(ctx, NAMES(sys_sanitizer)) < 0)
		goto out;
#endif
	rc = seccomp_load(ctx);
	entered.seccomp = rc == 0;
	entered.network = net;
	if (rc == 0)
		log_info("seccomp: syscall filter loaded (%s%s mode)",
		         cfg->mount.type == MOUNT_DIRECTORY ? "directory" : "FUSE",
		         net ? ", network" : "");
out:
	if (rc < 0)
		log_error("seccomp: cannot load the syscall filter%s%s",
		          rc < -1 ? ": " : "", rc < -1 ? strerror(-rc) : "");
	seccomp_release(ctx);
	return rc < 0 ? SFS_EIO : 0;
}

int sandbox_enter(const struct config *cfg)
{
	if (!cfg->hardening.landlock)
		log_info("landlock: off (hardening.landlock false)");
	else if (landlock_enter(cfg) < 0)
		return SFS_EIO;
	if (!cfg->hardening.seccomp) {
		log_info("seccomp: off (hardening.seccomp false)");
		return 0;
	}
	return seccomp_enter(cfg);
}

/* ---- a reload ---------------------------------------------------------- */

struct check {
	const char *config_dir;
	struct diag *d;
};

/* name as a real path in buf (PATH_MAX); a file that does not exist (yet)
 * by its directory's real path. */
static bool real_name(const char *name, const char *config_dir, char *buf)
{
	char abs[PATH_MAX], dir[PATH_MAX], real[PATH_MAX], *slash;
	int n;

	if (!absolute_name(name, config_dir, abs))
		return false;
	if (realpath(abs, buf))
		return true;
	memcpy(dir, abs, sizeof dir);
	slash = strrchr(dir, '/');
	*slash = '\0';
	n = realpath(dir[0] ? dir : "/", real)
	        ? snprintf(buf, PATH_MAX, "%s/%s", strcmp(real, "/") ? real : "",
	                   slash + 1)
	        : -1;
	if (n < 0 || n >= PATH_MAX)
		memcpy(buf, abs, PATH_MAX);
	return true;
}

static void check_readable(void *arg, const char *kp, const char *name)
{
	struct check *c = arg;
	char real[PATH_MAX], q[CONFVAL_QUOTE_BUF];

	if (real_name(name, c->config_dir, real) && !ll_allows(real))
		diag_add(c->d, kp,
		         "%s is not readable under the sandbox set at start (Landlock); "
		         "restart secretfs to apply",
		         confval_quote(q, sizeof q, name));
}

void sandbox_check_config(const struct config *cfg, const char *config_dir,
                          struct diag *d)
{
	struct check c = {config_dir, d};

	if (entered.seccomp && !entered.network && uses_network(cfg))
		for (size_t i = 0; i < cfg->nbackends; i++)
			if (strcmp(cfg->backends[i].type, "file") != 0 &&
			    strcmp(cfg->backends[i].type, "dev") != 0)
				diag_add_at(
				    d, "backends", cfg->backends[i].name,
				    "needs the network, which the syscall filter set "
				    "at start does not allow (no backend used it "
				    "then); restart secretfs to apply");
	if (entered.landlock)
		config_files(cfg, check_readable, &c);
}

/* ---- test hooks --------------------------------------------------------- */

#ifdef SECRETFS_TEST_HOOKS
static char test_hook[PATH_MAX];

void sandbox_take_test_hook(void)
{
	const char *v = getenv("SECRETFS_TEST_HOOK");

	if (v && strlen(v) < sizeof test_hook)
		memcpy(test_hook, v, strlen(v) + 1);
	unsetenv("SECRETFS_TEST_HOOK");
}

void sandbox_run_test_hook(void)
{
	int fd;

	if (strcmp(test_hook, "syscall") == 0) {
		log_info("test hook: calling mount(2), outside the allowlist");
		errno = 0;
		syscall(SYS_mount, NULL, NULL, NULL, 0UL, NULL);
		log_info("test hook: mount(2) returned: %s", strerror(errno));
	} else if (strcmp(test_hook, "leak") == 0) {
		/* For LeakSanitizer's check at exit, inside the filter. */
		static void *volatile leaked;

		leaked = malloc(4242);
		log_info("test hook: 4242 bytes allocated and dropped (%s)",
		         leaked ? "leaked" : "out of memory");
		leaked = NULL;
	} else if (strncmp(test_hook, "open:", 5) == 0) {
		fd = open(test_hook + 5, O_RDONLY | O_CLOEXEC);
		log_info("test hook: open %s: %s", test_hook + 5,
		         fd >= 0 ? "opened" : strerror(errno));
		if (fd >= 0)
			close(fd);
	}
}
#else
void sandbox_take_test_hook(void)
{
}

void sandbox_run_test_hook(void)
{
}
#endif
