/*
 * One lock client of any system compared, cycling one name: acquire,
 * then release.  The raw locksd client and the echo client write the
 * very bytes liblocks writes for a cycle; the Redis client runs
 * SET name token NX PX ttl, then DEL name.
 */

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <locks.h>

#include "bench.h"

#define REDIS_TTL_MS	"30000"		/* a lock's lease in Redis */

struct client {
	enum sys	 sys;
	locks_conn	*conn;		/* SYS_LOCKS */
	struct wire	*wire;		/* every other system */
	char		 name[64];
	char		 token[32];	/* the value Redis stores */
	char		 acquire[256];	/* the JSON lines of one cycle */
	size_t		 acquire_len;
	char		 release[128];
	size_t		 release_len;
};

static atomic_uint	 client_serial;

/* A system's name in the tables. */
const char *
sys_name(enum sys sys)
{
	switch (sys) {
	case SYS_LOCKS:
		return "locksd (liblocks)";
	case SYS_RAW:
		return "locksd (raw lines)";
	case SYS_REDIS:
		return "Redis SET NX PX + DEL";
	case SYS_ECHO:
		return "echo limit";
	case SYS_COUNT:
		break;
	}
	return "?";
}

/*
 * The acquire line liblocks sends for locks_acquire(c, name, NULL, ..):
 * without a callback it asks for no blocking event (notify_after 1e9).
 */
int
locks_line_acquire(char *buf, size_t size, const char *name)
{
	return snprintf(buf, size, "{\"id\":2,\"op\":\"acquire\",\"name\":"
	    "\"%s\",\"mode\":\"exclusive\",\"notify_after\":1000000000.0,"
	    "\"owner\":\"\"}\n", name);
}

/* The release line liblocks sends for locks_release(c, name). */
int
locks_line_release(char *buf, size_t size, const char *name)
{
	return snprintf(buf, size, "{\"id\":3,\"op\":\"release\",\"name\":"
	    "\"%s\"}\n", name);
}

/* Open the wire of a raw, echo or Redis client; raw says hello first. */
static int
client_open_wire(struct client *c, const char *path)
{
	static const char	 hello[] =
	    "{\"id\":1,\"op\":\"hello\",\"client\":\"locks-bench\"}\n";

	if (wire_connect(path, &c->wire) == -1)
		return -1;
	if (c->sys == SYS_RAW && (wire_write(c->wire, hello,
	    sizeof hello - 1) == -1 || wire_final_reply(c->wire) == -1))
		return -1;
	c->acquire_len = (size_t)locks_line_acquire(c->acquire,
	    sizeof c->acquire, c->name);
	c->release_len = (size_t)locks_line_release(c->release,
	    sizeof c->release, c->name);
	return 0;
}

/* Connect a client of sys that will cycle name. */
int
client_open(const struct target *t, enum sys sys, const char *name,
    struct client **ret_client)
{
	struct client	*c;
	int		 rc;

	if (t->path[sys] == NULL || (c = calloc(1, sizeof *c)) == NULL)
		return -1;
	c->sys = sys;
	snprintf(c->name, sizeof c->name, "%s", name);
	snprintf(c->token, sizeof c->token, "t%u",
	    atomic_fetch_add(&client_serial, 1));
	if (sys == SYS_LOCKS)
		rc = locks_connect(t->path[sys], "locks-bench", &c->conn);
	else
		rc = client_open_wire(c, t->path[sys]);
	if (rc != 0) {
		client_close(c);
		return -1;
	}
	*ret_client = c;
	return 0;
}

/* One SET NX PX: *got is 1 if this client now holds the name. */
static int
redis_try(struct client *c, int *got)
{
	const char	*argv[] = { "SET", c->name, c->token, "NX", "PX",
			    REDIS_TTL_MS };
	long long	 value;
	char		 type;

	if (wire_resp_command(c->wire, 6, argv) == -1 ||
	    wire_resp_reply(c->wire, &type, &value) == -1)
		return -1;
	if (type == '+') {
		*got = 1;
		return 0;
	}
	if (type == '$' && value == -1) {
		*got = 0;
		return 0;
	}
	return -1;
}

/*
 * Acquire the name.  Every system but Redis waits until granted; Redis
 * only tries once, and *got says whether it got the name.
 */
int
client_acquire(struct client *c, int *got)
{
	*got = 1;
	switch (c->sys) {
	case SYS_LOCKS:
		return locks_acquire(c->conn, c->name, NULL, NULL) ==
		    LOCKS_OK ? 0 : -1;
	case SYS_RAW:
	case SYS_ECHO:
		if (wire_write(c->wire, c->acquire, c->acquire_len) == -1)
			return -1;
		return wire_final_reply(c->wire);
	case SYS_REDIS:
		return redis_try(c, got);
	case SYS_COUNT:
		break;
	}
	return -1;
}

/* Release the name. */
int
client_release(struct client *c)
{
	const char	*argv[] = { "DEL", c->name };
	long long	 value;
	char		 type;

	switch (c->sys) {
	case SYS_LOCKS:
		return locks_release(c->conn, c->name) == LOCKS_OK ? 0 : -1;
	case SYS_RAW:
	case SYS_ECHO:
		if (wire_write(c->wire, c->release, c->release_len) == -1)
			return -1;
		return wire_final_reply(c->wire);
	case SYS_REDIS:
		if (wire_resp_command(c->wire, 2, argv) == -1 ||
		    wire_resp_reply(c->wire, &type, &value) == -1)
			return -1;
		return type == ':' ? 0 : -1;
	case SYS_COUNT:
		break;
	}
	return -1;
}

/* Close the client; what it held goes with the connection (not in Redis). */
void
client_close(struct client *c)
{
	if (c == NULL)
		return;
	locks_close(c->conn);
	wire_close(c->wire);
	free(c);
}
