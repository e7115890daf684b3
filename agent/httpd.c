/*
 * The shared HTTP server library (see httpd.h): libmicrohttpd loaded with
 * dlopen, as http.c loads libcurl; sockets bound here; listen values
 * parsed here for every listener's config.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "httpd.h"
#include "secretfs/log.h"

#define MHD_SONAME "libmicrohttpd.so.12"

static struct httpd_api api;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *load_problem; /* NULL once loaded */

#define LOAD(lib, field, name)                                                           \
	do {                                                                             \
		*(void **)&api.field = dlsym(lib, name);                                 \
		if (!api.field)                                                          \
			return "a function is missing";                                  \
	} while (0)

static const char *load_symbols(void *lib)
{
	LOAD(lib, start_daemon, "MHD_start_daemon");
	LOAD(lib, stop_daemon, "MHD_stop_daemon");
	LOAD(lib, create_response_from_buffer, "MHD_create_response_from_buffer");
	LOAD(lib, create_response_from_buffer_with_free_callback,
	     "MHD_create_response_from_buffer_with_free_callback");
	LOAD(lib, add_response_header, "MHD_add_response_header");
	LOAD(lib, queue_response, "MHD_queue_response");
	LOAD(lib, destroy_response, "MHD_destroy_response");
	LOAD(lib, lookup_connection_value, "MHD_lookup_connection_value");
	LOAD(lib, get_connection_info, "MHD_get_connection_info");
	return NULL;
}

static void load(void)
{
	/* Never dlclose'd: GnuTLS's destructors at exit would run twice. */
	void *lib = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);

	load_problem = lib ? load_symbols(lib) : dlerror();
	if (!load_problem && !lib)
		load_problem = "cannot be opened";
}

const struct httpd_api *httpd_load(const char *what)
{
	pthread_once(&load_once, load);
	if (load_problem) {
		log_error("%s: cannot load %s: %s", what, MHD_SONAME, load_problem);
		return NULL;
	}
	return &api;
}

struct MHD_Daemon *httpd_start(int fd, const struct httpd_bounds *b,
                               MHD_AccessHandlerCallback handler, void *cls)
{
	struct MHD_OptionItem opts[8] = {
	    {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
	    {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)b->max_connections, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)b->idle_timeout_s, NULL},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)b->request_memory, NULL},
	};
	size_t n = 4;
	struct MHD_Daemon *d;
	sigset_t all, old;

	if (b->on_connection)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
		                                    (intptr_t)b->on_connection, cls};
	if (b->on_uri)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK,
		                                    (intptr_t)b->on_uri, cls};
	if (b->on_completed)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED,
		                                    (intptr_t)b->on_completed, cls};
	opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	/* Signals go to the main thread (the FUSE loop), never here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	d = api.start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, handler, cls,
	                     MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return d;
}

static int bind_unix(const char *path, bool *made_file)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	/* A socket file nobody answers on is a leftover: replace it. One
	 * that answers is another instance's. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live =
		    probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;

		if (probe >= 0)
			close(probe);
		if (live) {
			close(fd);
			errno = EADDRINUSE;
			return -1;
		}
		unlink(path);
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0660) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*made_file = true;
	return fd;
}

static int bind_inet(const struct config_telemetry *tc)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int fd, one = 1;

	if (tc->family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(tc->port);
		inet_pton(AF_INET6, tc->host, &a->sin6_addr);
		len = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(tc->port);
		inet_pton(AF_INET, tc->host, &a->sin_addr);
		len = sizeof *a;
	}
	fd = socket(tc->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	/* A restart may bind while old connections linger in TIME_WAIT; a
	 * listener still bound elsewhere is refused all the same. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (tc->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int httpd_bind(const struct config_telemetry *addr, bool *made_file)
{
	*made_file = false;
	if (addr->family == AF_UNIX)
		return bind_unix(addr->path, made_file);
	return bind_inet(addr);
}

/* Parses "port" into *out; NULL or a static reason. */
static const char *parse_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;

	if (!*s)
		return "the port is missing";
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9' || c - s >= 5)
			return "the port must be a number from 1 to 65535";
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v == 0 || v > 65535)
		return "the port must be a number from 1 to 65535";
	*out = (uint16_t)v;
	return NULL;
}

/* Fills tc from a listen value; NULL or a static reason. */
const char *httpd_parse_listen(const char *s, struct config_telemetry *tc)
{
	const char *colon, *host = s;
	size_t hostlen;
	unsigned char addr[sizeof(struct in6_addr)];

	if (strncmp(s, "unix:", 5) == 0) {
		const char *path = s + 5;

		if (path[0] != '/')
			return "a unix socket path must be absolute "
			       "(unix:/run/secretfs/metrics.sock)";
		if (strlen(path) >= sizeof tc->path)
			return "the unix socket path is too long (at most 107 bytes)";
		tc->family = AF_UNIX;
		snprintf(tc->path, sizeof tc->path, "%s", path);
		return NULL;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return "an IPv6 address is written [address]:port";
		host = s + 1;
		hostlen = (size_t)(end - host);
		colon = end + 1;
		tc->family = AF_INET6;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return "must be ADDRESS:PORT (e.g. 127.0.0.1:9464), [IPv6]:PORT "
			       "or "
			       "unix:/path";
		hostlen = (size_t)(colon - s);
		tc->family = AF_INET;
	}
	if (hostlen == 0 || hostlen >= sizeof tc->host)
		return "the address is missing or too long";
	memcpy(tc->host, host, hostlen);
	tc->host[hostlen] = '\0';
	if (inet_pton(tc->family, tc->host, addr) != 1)
		return tc->family == AF_INET
		           ? "not a numeric IPv4 address (names are not resolved; use "
		             "[...] for IPv6)"
		           : "not a numeric IPv6 address";
	return parse_port(colon + 1, &tc->port);
}
