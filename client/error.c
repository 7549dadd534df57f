/*
 * liblocks' errors: their names and sentences, and the last message, kept
 * on the connection and for the thread (for errors with no connection).
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "liblocks.h"

_Static_assert(LOCKS_E_BAD_JSON == -PROTO_E_BAD_JSON &&
    LOCKS_E_INVALID_NAME == -PROTO_E_INVALID_NAME &&
    LOCKS_E_TIMEOUT == -PROTO_E_TIMEOUT &&
    LOCKS_E_INTERNAL == -PROTO_E_INTERNAL &&
    LOCKS_E_UNSUPPORTED == -PROTO_E_UNSUPPORTED &&
    LOCKS_E_UNAVAILABLE == -PROTO_E_UNAVAILABLE &&
    LOCKS_E_DEADLOCK == -PROTO_E_DEADLOCK &&
    PROTO_E_COUNT == PROTO_E_DEADLOCK + 1,
    "locks_error must mirror enum proto_error");

/* The last message of this thread, for errors with no connection to keep it. */
static _Thread_local char last_msg[LOCKS_MSG_MAX];

/* Record a message on the connection (if any) and for the thread. */
void
error_msg(locks_conn *conn, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof last_msg, fmt, ap);
	va_end(ap);
	if (conn != NULL)
		memcpy(conn->msg, last_msg, sizeof conn->msg);
}

/* Return the protocol code of an error, or the library's own name for it. */
const char *
locks_error_code(int error)
{
	if (error <= 0 && error >= LOCKS_E_DEADLOCK)
		return proto_error_code((enum proto_error)-error);
	switch (error) {
	case LOCKS_E_CONNECT:
		return "connect_failed";
	case LOCKS_E_LOST:
		return "connection_lost";
	case LOCKS_E_PROTOCOL:
		return "protocol_error";
	case LOCKS_E_NOMEM:
		return "no_memory";
	case LOCKS_E_INVAL:
		return "invalid_argument";
	case LOCKS_E_UNTRUSTED:
		return "untrusted_socket";
	case LOCKS_E_VERSION:
		return "protocol_version";
	case LOCKS_E_OPEN:
		return "open_failed";
	}
	return "unknown";
}

/* Describe an error in one sentence for people. */
const char *
locks_strerror(int error)
{
	switch (error) {
	case LOCKS_OK:
		return "Success";
	case LOCKS_E_BAD_JSON:
		return "The daemon could not parse the request";
	case LOCKS_E_BAD_REQUEST:
		return "The daemon rejected a malformed request";
	case LOCKS_E_UNKNOWN_OP:
		return "The daemon does not know the operation";
	case LOCKS_E_INVALID_NAME:
		return "Invalid lock name";
	case LOCKS_E_ALREADY_HELD:
		return "The lock is already held or awaited on this connection";
	case LOCKS_E_NOT_HELD:
		return "The lock is not held on this connection";
	case LOCKS_E_TIMEOUT:
		return "Timed out waiting for the lock";
	case LOCKS_E_CANCELLED:
		return "The wait for the lock was cancelled";
	case LOCKS_E_TOO_LARGE:
		return "The request was too large";
	case LOCKS_E_LIMIT:
		return "The daemon hit a resource limit";
	case LOCKS_E_PERMISSION_DENIED:
		return "Permission denied by the daemon";
	case LOCKS_E_INTERNAL:
		return "Internal error in the daemon";
	case LOCKS_E_UNSUPPORTED:
		return "The lock daemon cannot lock that file correctly, or "
		    "has no cluster (--etcd) for a cluster lock";
	case LOCKS_E_UNAVAILABLE:
		return "The lock daemon cannot reach etcd for a cluster lock";
	case LOCKS_E_DEADLOCK:
		return "The request would wait forever: another request that "
		    "waits for this one's lock is ahead of it";
	case LOCKS_E_CONNECT:
		return "Cannot connect to the lock daemon";
	case LOCKS_E_LOST:
		return "The connection to the lock daemon was lost";
	case LOCKS_E_PROTOCOL:
		return "The lock daemon sent a reply that makes no sense";
	case LOCKS_E_NOMEM:
		return "Out of memory";
	case LOCKS_E_INVAL:
		return "Invalid argument";
	case LOCKS_E_UNTRUSTED:
		return "The lock daemon's socket is not trustworthy";
	case LOCKS_E_OPEN:
		return "Cannot open the file to lock";
	case LOCKS_E_VERSION:
		return "The lock daemon speaks a protocol version other than "
		    "this library's (" PROTO_TEXT(PROTO_VERSION) ")";
	}
	return "Unknown error";
}

/* Return the connection's last error message, or this thread's for NULL. */
const char *
locks_last_message(const locks_conn *conn)
{
	return conn != NULL ? conn->msg : last_msg;
}
