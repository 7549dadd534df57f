/*
 * The lock modes, apart from protocol.h so that the lock table, which
 * grants them, builds without json-c.
 */
#ifndef LOCKS_MODE_H
#define LOCKS_MODE_H

enum proto_mode {
	PROTO_EXCLUSIVE = 0,
	PROTO_SHARED
};

#endif /* LOCKS_MODE_H */
