/*
 * The HTTP server library the listeners share (telemetry.c, aws_api.c):
 * libmicrohttpd loaded with dlopen on first use (a daemon configured with
 * no listener maps none of it), listening sockets we bind ourselves (so a
 * busy address is a start-up error with its errno, unix: sockets get mode
 * 0660), and one polling thread per listener with every signal blocked and
 * the common bounds (connections, idle time, request line and headers).
 */
#ifndef SECRETFS_HTTPD_H
#define SECRETFS_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <microhttpd.h>

#include "secretfs/config.h"

/* The libmicrohttpd functions the listeners call, filled by httpd_load. */
struct httpd_api {
	struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t,
	                                   MHD_AcceptPolicyCallback, void *,
	                                   MHD_AccessHandlerCallback, void *, ...);
	void (*stop_daemon)(struct MHD_Daemon *);
	struct MHD_Response *(*create_response_from_buffer)(size_t, void *,
	                                                    enum MHD_ResponseMemoryMode);
	struct MHD_Response *(*create_response_from_buffer_with_free_callback)(
	    size_t, void *, MHD_ContentReaderFreeCallback);
	enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *,
	                                       const char *);
	enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int,
	                                  struct MHD_Response *);
	void (*destroy_response)(struct MHD_Response *);
	const char *(*lookup_connection_value)(struct MHD_Connection *,
	                                       enum MHD_ValueKind, const char *);
	const union MHD_ConnectionInfo *(*get_connection_info)(
	    struct MHD_Connection *, enum MHD_ConnectionInfoType, ...);
};

/* Loads libmicrohttpd once (any thread; later calls return the same).
 * Returns the table, or NULL after logging why (what: "telemetry"). */
const struct httpd_api *httpd_load(const char *what);

/* Binds (does not listen) a socket for addr: inet, inet6 or unix. For a
 * unix socket, a leftover file nobody answers on is replaced, and
 * *made_file says the caller is to unlink addr->path at the end. Returns
 * the descriptor, or -1 with errno set. */
int httpd_bind(const struct config_telemetry *addr, bool *made_file);

/* Bounds of one listener, and its optional per-connection and
 * per-request hooks (libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION,
 * MHD_OPTION_URI_LOG_CALLBACK and MHD_OPTION_NOTIFY_COMPLETED, all called
 * with the handler's cls on the listener's one thread). */
struct httpd_bounds {
	unsigned max_connections;
	unsigned idle_timeout_s;
	size_t request_memory; /* bytes for a request's line and headers */
	MHD_NotifyConnectionCallback on_connection;
	void *(*on_uri)(void *cls, const char *uri, struct MHD_Connection *c);
	MHD_RequestCompletedCallback on_completed;
};

/* Starts a libmicrohttpd daemon on the bound and listening fd (which it
 * then owns) with handler(cls, ...), on a thread of its own with every
 * signal blocked. Returns the daemon or NULL. */
struct MHD_Daemon *httpd_start(int fd, const struct httpd_bounds *b,
                               MHD_AccessHandlerCallback handler, void *cls);

/* Parses a listen value ("127.0.0.1:2773", "[::1]:2773", "unix:/path")
 * into addr's family, host, port and path; NULL, or a static reason. */
const char *httpd_parse_listen(const char *s, struct config_telemetry *addr);

#endif
