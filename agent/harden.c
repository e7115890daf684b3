/*
 * Process hardening (see harden.h). Capabilities are set with the raw
 * capset(2) system call, so no libcap is needed.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harden.h"
#include "secretfs/log.h"

void harden_process(void)
{
	struct rlimit none = {0, 0};

	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static int drop_capabilities(const int *keep, size_t nkeep)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	uint64_t mask = 0;

	for (size_t i = 0; i < nkeep; i++)
		mask |= 1ULL << keep[i];
	/* The bounding set first: children (on_change commands) can never
	 * regain the rest. Unknown numbers past the kernel's last one fail
	 * with EINVAL, which ends the loop. */
	for (int cap = 0; cap < 64; cap++)
		if (!(mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 &&
		    errno == EINVAL)
			break;
	memset(data, 0, sizeof data);
	data[0].effective = data[0].permitted = (uint32_t)mask;
	data[1].effective = data[1].permitted = (uint32_t)(mask >> 32);
	return (int)syscall(SYS_capset, &hdr, data);
}

void harden_monitor(bool fuse)
{
	static const int keep[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_KILL,
	                           CAP_CHOWN,        CAP_FOWNER,          CAP_SYS_ADMIN};
	/* CAP_SYS_ADMIN is last: only FUSE keeps it. */
	size_t nkeep = sizeof keep / sizeof keep[0] - (fuse ? 0 : 1);

	if (geteuid() == 0 && drop_capabilities(keep, nkeep) < 0)
		log_warn("monitor: cannot drop capabilities: %s", strerror(errno));
	/* As non-root, a FUSE unmount runs the setuid fusermount3. */
	if ((geteuid() == 0 || !fuse) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		log_warn("monitor: cannot set no_new_privs: %s", strerror(errno));
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

void harden_after_mount(void)
{
	if (geteuid() == 0 && drop_capabilities(NULL, 0) < 0)
		log_warn("cannot drop capabilities: %s", strerror(errno));
	/* Needed before an unprivileged process may load a seccomp filter. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		log_warn("cannot set no_new_privs: %s", strerror(errno));
	/* A change of credentials may reset it. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
