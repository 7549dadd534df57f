/*
 * Encode and decode of locks protocol messages (see PROTOCOL.md).
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol.h"

static const char *error_codes[PROTO_E_COUNT] = {
	[PROTO_OK] = "ok",
	[PROTO_E_BAD_JSON] = "bad_json",
	[PROTO_E_BAD_REQUEST] = "bad_request",
	[PROTO_E_UNKNOWN_OP] = "unknown_op",
	[PROTO_E_INVALID_NAME] = "invalid_name",
	[PROTO_E_ALREADY_HELD] = "already_held",
	[PROTO_E_NOT_HELD] = "not_held",
	[PROTO_E_TIMEOUT] = "timeout",
	[PROTO_E_CANCELLED] = "cancelled",
	[PROTO_E_TOO_LARGE] = "too_large",
	[PROTO_E_LIMIT] = "limit",
	[PROTO_E_PERMISSION_DENIED] = "permission_denied",
	[PROTO_E_INTERNAL] = "internal",
	[PROTO_E_UNSUPPORTED] = "unsupported",
	[PROTO_E_UNAVAILABLE] = "unavailable",
	[PROTO_E_DEADLOCK] = "deadlock",
};

#define OP_NAME(op, text)	[PROTO_OP_##op] = text,
static const char *const op_names[] = { PROTO_OPS(OP_NAME) };

#define NOPS (sizeof op_names / sizeof op_names[0])

/* The fields the decoder reads, by FIELD(NAME): the one list's names. */
#define FIELD_ENUM(field, text)	FIELD_##field,
#define FIELD_NAME(field, text)	[FIELD_##field] = text,
enum field { PROTO_FIELDS(FIELD_ENUM) };
static const char *const field_names[] = { PROTO_FIELDS(FIELD_NAME) };
#define FIELD(field)	field_names[FIELD_##field]

/* Return the wire code of an error, such as "bad_json". */
const char *
proto_error_code(enum proto_error error)
{
	if ((unsigned)error >= PROTO_E_COUNT)
		return "unknown";
	return error_codes[error];
}

/* Map a wire code back to its error; PROTO_E_COUNT when unknown. */
enum proto_error
proto_error_from_code(const char *code)
{
	int	 i;

	for (i = 0; i < PROTO_E_COUNT; i++) {
		if (strcmp(error_codes[i], code) == 0)
			return i;
	}
	return PROTO_E_COUNT;
}

/* Parse a mode name; returns 0 on success and -1 for anything else. */
static int
mode_parse(const char *text, enum proto_mode *ret_mode)
{
	if (strcmp(text, "exclusive") == 0)
		*ret_mode = PROTO_EXCLUSIVE;
	else if (strcmp(text, "shared") == 0)
		*ret_mode = PROTO_SHARED;
	else
		return -1;
	return 0;
}

/* The bytes a name may hold. */
static const unsigned char name_chars[256] = {
	['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1,
	['.'] = 1, ['_'] = 1, [':'] = 1, ['@'] = 1, ['+'] = 1, ['-'] = 1
};

/*
 * A name is 1 to PROTO_MAX_NAME bytes of [A-Za-z0-9._:@+-] not starting
 * with '.', so it can never be a path, "..", or a hidden daemon file.
 */
int
proto_name_valid(const char *name, size_t len)
{
	size_t	 i;

	if (name == NULL || len == 0 || len > PROTO_MAX_NAME)
		return 0;
	if (name[0] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		if (!name_chars[(unsigned char)name[i]])
			return 0;
	}
	return 1;
}

/* Whether a lock target is a path rather than a name: it holds a '/'. */
int
proto_is_path(const char *target)
{
	return strchr(target, '/') != NULL;
}

/*
 * A target is a lock name, or a path: 1 to PROTO_MAX_PATH bytes holding a
 * '/' and no NUL.  The daemon never opens a path; it only echoes it.
 */
int
proto_target_valid(const char *target, size_t len)
{
	if (target == NULL || memchr(target, '/', len) == NULL)
		return proto_name_valid(target, len);
	return len <= PROTO_MAX_PATH && memchr(target, '\0', len) == NULL;
}

/*
 * The length of the UTF-8 sequence at p, whose first byte is not ASCII,
 * or 0 if it is not one: overlong forms, surrogates (U+D800 to U+DFFF),
 * code points past U+10FFFF and truncated sequences are refused, as in
 * RFC 3629.
 */
static size_t
utf8_char(const unsigned char *p, const unsigned char *end)
{
	unsigned char	 c = p[0], lo = 0x80, hi = 0xbf;
	size_t		 i, n;

	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0)
		n = 2;
	else if (c < 0xf0) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	}
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	}
	return n;
}

/*
 * Whether len bytes at text are valid UTF-8 (NUL included).  ASCII is
 * skipped eight bytes at a time; only other bytes cost more.
 */
int
proto_utf8_valid(const char *text, size_t len)
{
	const unsigned char	*p = (const unsigned char *)text;
	const unsigned char	*end = p + len;
	uint64_t		 word;
	size_t			 n;

	while (p < end) {
		while (end - p >= 8) {
			memcpy(&word, p, sizeof word);
			if (word & 0x8080808080808080ULL)
				break;
			p += 8;
		}
		if (p == end)
			break;
		if (*p < 0x80) {
			p++;
			continue;
		}
		if ((n = utf8_char(p, end)) == 0)
			return 0;
		p += n;
	}
	return 1;
}

/* $LOCKS_SOCKET, if set and not empty (and not set-uid): the user's choice. */
const char *
proto_socket_env(void)
{
	const char	*env = secure_getenv("LOCKS_SOCKET");

	return env != NULL && *env != '\0' ? env : NULL;
}

/*
 * The system broker's socket: PROTO_SYSTEM_SOCKET, or $LOCKS_SYSTEM_SOCKET
 * if set to an absolute path (and not set-uid), which lets tests and a
 * system broker installed elsewhere move it without touching /run.
 */
const char *
proto_system_socket(void)
{
	const char	*env = secure_getenv("LOCKS_SYSTEM_SOCKET");

	return env != NULL && *env == '/' ? env : PROTO_SYSTEM_SOCKET;
}

/*
 * Write the per-user socket path: $XDG_RUNTIME_DIR/locksd/locksd.sock,
 * else /tmp/locksd-$UID/locksd.sock.  Returns what snprintf returns.
 */
int
proto_user_socket(char *buf, size_t size)
{
	const char	*env;

	if ((env = secure_getenv("XDG_RUNTIME_DIR")) != NULL && *env == '/')
		return snprintf(buf, size, "%s/locksd/locksd.sock", env);
	return snprintf(buf, size, "/tmp/locksd-%ld/locksd.sock",
	    (long)geteuid());
}

/*
 * Write the socket a daemon listens on by default: $LOCKS_SOCKET, else
 * the system socket for root, else the per-user one.  Returns what
 * snprintf returns.
 */
int
proto_default_socket(char *buf, size_t size)
{
	const char	*env;

	if ((env = proto_socket_env()) != NULL)
		return snprintf(buf, size, "%s", env);
	if (geteuid() == 0)
		return snprintf(buf, size, "%s", proto_system_socket());
	return proto_user_socket(buf, size);
}

/* Make a strict tokener with the protocol's depth limit. */
struct json_tokener *
proto_tokener_new(void)
{
	struct json_tokener	*tok;

	tok = json_tokener_new_ex(PROTO_MAX_DEPTH);
	if (tok != NULL)
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	return tok;
}

/* Whether text is only the blanks (space, tab, CR) framing allows. */
int
proto_blank(const char *text, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++) {
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r')
			return 0;
	}
	return 1;
}

/* Return 1 if any number inside value is NaN or infinite (json-c takes them). */
static int
has_nonfinite(struct json_object *value)
{
	struct json_object_iterator	 it, end;
	size_t				 i, n;

	switch (json_object_get_type(value)) {
	case json_type_double:
		return !isfinite(json_object_get_double(value));
	case json_type_array:
		n = json_object_array_length(value);
		for (i = 0; i < n; i++) {
			if (has_nonfinite(json_object_array_get_idx(value, i)))
				return 1;
		}
		return 0;
	case json_type_object:
		it = json_object_iter_begin(value);
		end = json_object_iter_end(value);
		for (; !json_object_iter_equal(&it, &end);
		    json_object_iter_next(&it)) {
			if (has_nonfinite(json_object_iter_peek_value(&it)))
				return 1;
		}
		return 0;
	default:
		return 0;
	}
}

/* Read the four hex digits at p; -1 if they are not. */
static int
hex4(const char *p, unsigned int *ret_value)
{
	unsigned int	 value = 0, c;
	int		 i;

	for (i = 0; i < 4; i++) {
		c = (unsigned char)p[i];
		if (c >= '0' && c <= '9')
			c -= '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			c = (c | 0x20) - 'a' + 10;
		else
			return -1;
		value = value * 16 + c;
	}
	*ret_value = value;
	return 0;
}

/* Read the \uXXXX escape at p into *ret_u; NULL if there is none. */
static const char *
u_escape(const char *p, const char *end, unsigned int *ret_u)
{
	if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
	    hex4(p + 2, ret_u) == -1)
		return NULL;
	return p + 6;
}

#define IS_HIGH_SURROGATE(u)	((u) >= 0xd800 && (u) <= 0xdbff)
#define IS_LOW_SURROGATE(u)	((u) >= 0xdc00 && (u) <= 0xdfff)

/*
 * Whether every \u escape of a JSON text is a character.  json-c quietly
 * turns an unpaired surrogate into U+FFFD, so check the text: a high one
 * must come right before a low one, and a low one never stands alone.
 * Outside strings a backslash is bad JSON, which json-c refuses.
 */
static int
escapes_valid(const char *text, size_t len)
{
	const char	*p = text, *end = text + len;
	unsigned int	 u;

	while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
		if (end - p < 2)
			return 0;
		if (p[1] != 'u') {
			p += 2;
			continue;
		}
		if ((p = u_escape(p, end, &u)) == NULL || IS_LOW_SURROGATE(u))
			return 0;
		if (IS_HIGH_SURROGATE(u) &&
		    ((p = u_escape(p, end, &u)) == NULL ||
		    !IS_LOW_SURROGATE(u)))
			return 0;
	}
	return 1;
}

/* Whether a JSON text is valid UTF-8, its escapes included. */
static int
text_valid(const char *text, size_t len)
{
	return proto_utf8_valid(text, len) && escapes_valid(text, len);
}

/*
 * Reset a tokener after a failed parse.  json-c 0.16's json_tokener_reset
 * keeps a pending high surrogate: after a line cut off just past
 * "\ud800", the first \u escape of the next line would gain a U+FFFD.
 * Parsing one escape clears it.
 */
static void
tokener_scrub(struct json_tokener *tok)
{
	static const char	 escape[] = "\"\\u0000\"";

	json_tokener_reset(tok);
	json_object_put(json_tokener_parse_ex(tok, escape,
	    (int)sizeof escape - 1));
	json_tokener_reset(tok);
}

/* Parse a line as one JSON value, as proto_parse_line but for UTF-8. */
static int
parse_json(struct json_tokener *tok, const char *line, size_t len,
    struct json_object **ret_value)
{
	struct json_object	*value;
	size_t			 end;

	json_tokener_reset(tok);
	value = json_tokener_parse_ex(tok, line, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (json_tokener_get_error(tok) == json_tokener_continue) {
		/* A bare number can only end at end of input. */
		value = json_tokener_parse_ex(tok, "", 1);
		end = len;
	}
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    end > len || !proto_blank(line + end, len - end) ||
	    has_nonfinite(value)) {
		json_object_put(value);
		tokener_scrub(tok);
		return -1;
	}
	*ret_value = value;
	return 0;
}

/*
 * Parse one complete line as exactly one JSON value.  Returns 0 and the
 * value in *ret_value (NULL for JSON null), or -1 for anything else:
 * trailing garbage, NUL bytes, truncation, NaN or Infinity, and text that
 * is not UTF-8 or escapes a lone surrogate.
 */
int
proto_parse_line(struct json_tokener *tok, const char *line, size_t len,
    struct json_object **ret_value)
{
	struct json_object	*value;

	if (parse_json(tok, line, len, &value) == -1)
		return -1;
	if (!text_valid(line, len)) {
		json_object_put(value);
		return -1;
	}
	*ret_value = value;
	return 0;
}

/* Serialise a message as one line of plain JSON, without the newline. */
const char *
proto_serialize(struct json_object *obj, size_t *ret_len)
{
	return json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, ret_len);
}

/* The wire text of an id (NULL is "null"), owned by the id object. */
const char *
proto_id_text(struct json_object *id, size_t *ret_len)
{
	if (id == NULL) {
		*ret_len = 4;
		return "null";
	}
	return proto_serialize(id, ret_len);
}

/*
 * The id whose wire text is text, as a new object (NULL for null); NULL
 * too if out of memory, when a reply goes out with a null id.
 */
struct json_object *
proto_id_parse(const char *text, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*id = NULL;

	if ((tok = proto_tokener_new()) == NULL)
		return NULL;
	if (proto_parse_line(tok, text, len, &id) == -1)
		id = NULL;
	json_tokener_free(tok);
	return id;
}

/*
 * A request's id as a new object for a reply, whichever path decoded it:
 * the fast path keeps only its text.
 */
struct json_object *
proto_request_id(const struct proto_request *req)
{
	if (req->id != NULL)
		return json_object_get(req->id);
	return proto_id_parse(req->id_text, req->id_len);
}

static int
is_scalar(struct json_object *value)
{
	switch (json_object_get_type(value)) {
	case json_type_null:
	case json_type_boolean:
	case json_type_int:
	case json_type_double:
	case json_type_string:
		return 1;
	default:
		return 0;
	}
}

static int
is_number(struct json_object *value)
{
	return json_object_is_type(value, json_type_int) ||
	    json_object_is_type(value, json_type_double);
}

/* Read an optional non-negative number of seconds; absent or null gives dflt. */
static int
get_seconds(struct json_object *req, const char *key, double dflt,
    double *ret_seconds)
{
	struct json_object	*value;
	double			 seconds;

	if (!json_object_object_get_ex(req, key, &value) ||
	    json_object_is_type(value, json_type_null)) {
		*ret_seconds = dflt;
		return 0;
	}
	if (!is_number(value))
		return -1;
	seconds = json_object_get_double(value);
	if (!isfinite(seconds) || seconds < 0 || seconds > PROTO_MAX_SECONDS)
		return -1;
	*ret_seconds = seconds;
	return 0;
}

/* Read an optional string of at most max bytes with no NUL; absent is "". */
static int
get_label(struct json_object *req, const char *key, size_t max,
    const char **ret_label)
{
	struct json_object	*value;
	const char		*text;
	size_t			 len;

	if (!json_object_object_get_ex(req, key, &value) ||
	    json_object_is_type(value, json_type_null)) {
		*ret_label = "";
		return 0;
	}
	if (!json_object_is_type(value, json_type_string))
		return -1;
	text = json_object_get_string(value);
	len = (size_t)json_object_get_string_len(value);
	if (len > max || strlen(text) != len)
		return -1;
	*ret_label = text;
	return 0;
}

/* Read the name field; required says whether absence is an error. */
static enum proto_error
get_name(struct json_object *req, int required, const char **ret_name,
    const char **ret_msg)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(req, FIELD(NAME), &value) ||
	    json_object_is_type(value, json_type_null)) {
		if (!required)
			return PROTO_OK;
		*ret_msg = "missing field: name";
		return PROTO_E_BAD_REQUEST;
	}
	if (!json_object_is_type(value, json_type_string)) {
		*ret_msg = "name must be a string";
		return PROTO_E_BAD_REQUEST;
	}
	if (!proto_target_valid(json_object_get_string(value),
	    (size_t)json_object_get_string_len(value))) {
		*ret_msg = "name must be 1 to " PROTO_TEXT(PROTO_MAX_NAME)
		    " bytes of [A-Za-z0-9._:@+-], not starting with '.', "
		    "or a path (with a '/') of at most "
		    PROTO_TEXT(PROTO_MAX_PATH) " bytes";
		return PROTO_E_INVALID_NAME;
	}
	*ret_name = json_object_get_string(value);
	return PROTO_OK;
}

/* Read acquire's handoff flag, which only a path lock may set. */
static enum proto_error
decode_handoff(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(obj, FIELD(HANDOFF), &value) ||
	    json_object_is_type(value, json_type_null))
		return PROTO_OK;
	if (!json_object_is_type(value, json_type_boolean)) {
		*ret_msg = "handoff must be a boolean";
		return PROTO_E_BAD_REQUEST;
	}
	req->handoff = json_object_get_boolean(value);
	if (req->handoff && !proto_is_path(req->name)) {
		*ret_msg = "handoff is for a path lock, whose name holds a '/'";
		return PROTO_E_BAD_REQUEST;
	}
	return PROTO_OK;
}

/*
 * Read an optional boolean flag of acquire, which the descriptor form
 * (handoff) cannot ask for: why not is with_handoff.
 */
static enum proto_error
decode_flag(struct json_object *obj, const char *field, const char *not_bool,
    const char *with_handoff, struct proto_request *req, int *ret_flag,
    const char **ret_msg)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(obj, field, &value) ||
	    json_object_is_type(value, json_type_null))
		return PROTO_OK;
	if (!json_object_is_type(value, json_type_boolean)) {
		*ret_msg = not_bool;
		return PROTO_E_BAD_REQUEST;
	}
	*ret_flag = json_object_get_boolean(value);
	if (*ret_flag && req->handoff) {
		*ret_msg = with_handoff;
		return PROTO_E_BAD_REQUEST;
	}
	return PROTO_OK;
}

/*
 * Read acquire's notify_contended flag (the broker must keep the lock to
 * see its waiters) and detect_deadlock flag (a handed-over lock is held
 * by a descriptor, which no connection of the graph is).
 */
static enum proto_error
decode_acquire_flags(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	enum proto_error	 error;

	if ((error = decode_flag(obj, FIELD(NOTIFY_CONTENDED),
	    "notify_contended must be a boolean", "notify_contended cannot "
	    "go with handoff: the descriptor form hands the lock over, and "
	    "the broker no longer sees who waits behind it", req,
	    &req->notify_contended, ret_msg)) != PROTO_OK)
		return error;
	return decode_flag(obj, FIELD(DETECT_DEADLOCK),
	    "detect_deadlock must be a boolean", "detect_deadlock cannot go "
	    "with handoff: the descriptor form hands the lock over to a "
	    "descriptor, which the broker cannot tell waiting for anything",
	    req, &req->detect_deadlock, ret_msg);
}

/* Read the optional scope of an acquire, release or list. */
static enum proto_error
decode_scope(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;
	const char		*text;

	if (!json_object_object_get_ex(obj, FIELD(SCOPE), &value) ||
	    json_object_is_type(value, json_type_null))
		return PROTO_OK;
	text = json_object_is_type(value, json_type_string) ?
	    json_object_get_string(value) : "";
	if (strcmp(text, "local") == 0)
		req->scope = PROTO_SCOPE_LOCAL;
	else if (strcmp(text, "cluster") == 0)
		req->scope = PROTO_SCOPE_CLUSTER;
	else {
		*ret_msg = "scope must be \"local\" or \"cluster\"";
		return PROTO_E_BAD_REQUEST;
	}
	if (req->scope == PROTO_SCOPE_CLUSTER && req->name != NULL &&
	    proto_is_path(req->name)) {
		*ret_msg = "a cluster lock takes a name, not a path";
		return PROTO_E_INVALID_NAME;
	}
	return PROTO_OK;
}

/*
 * The mode (required, or exclusive when absent) and the timeout of an
 * acquire or a convert.
 */
static enum proto_error
decode_mode_timeout(struct json_object *obj, struct proto_request *req,
    int mode_required, const char **ret_msg)
{
	struct json_object	*value = NULL;

	if ((json_object_object_get_ex(obj, FIELD(MODE), &value) &&
	    !json_object_is_type(value, json_type_null)) || mode_required) {
		if (!json_object_is_type(value, json_type_string) ||
		    mode_parse(json_object_get_string(value),
		    &req->mode) != 0) {
			*ret_msg = "mode must be \"exclusive\" or \"shared\"";
			return PROTO_E_BAD_REQUEST;
		}
	}
	if (get_seconds(obj, FIELD(TIMEOUT), -1, &req->timeout) != 0) {
		*ret_msg = "timeout must be null or a number of seconds "
		    "from 0 to " PROTO_TEXT(PROTO_MAX_SECONDS);
		return PROTO_E_BAD_REQUEST;
	}
	return PROTO_OK;
}

static enum proto_error
decode_acquire(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	enum proto_error	 error;

	if ((error = get_name(obj, 1, &req->name, ret_msg)) != PROTO_OK ||
	    (error = decode_mode_timeout(obj, req, 0, ret_msg)) != PROTO_OK)
		return error;
	if (get_seconds(obj, FIELD(NOTIFY_AFTER), 0, &req->notify_after) != 0) {
		*ret_msg = "notify_after must be a number of seconds "
		    "from 0 to " PROTO_TEXT(PROTO_MAX_SECONDS);
		return PROTO_E_BAD_REQUEST;
	}
	if (get_label(obj, FIELD(OWNER), PROTO_MAX_LABEL, &req->owner) != 0) {
		*ret_msg = "owner must be a string of at most "
		    PROTO_TEXT(PROTO_MAX_LABEL) " bytes without NUL";
		return PROTO_E_BAD_REQUEST;
	}
	if (get_label(obj, FIELD(DEADLOCK_GROUP), PROTO_MAX_LABEL,
	    &req->deadlock_group) != 0) {
		*ret_msg = "deadlock_group must be a string of at most "
		    PROTO_TEXT(PROTO_MAX_LABEL) " bytes without NUL";
		return PROTO_E_BAD_REQUEST;
	}
	if ((error = decode_scope(obj, req, ret_msg)) != PROTO_OK ||
	    (error = decode_handoff(obj, req, ret_msg)) != PROTO_OK)
		return error;
	return decode_acquire_flags(obj, req, ret_msg);
}

/* Read status's optional metrics flag. */
static enum proto_error
decode_status(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(obj, FIELD(METRICS), &value) ||
	    json_object_is_type(value, json_type_null))
		return PROTO_OK;
	if (!json_object_is_type(value, json_type_boolean)) {
		*ret_msg = "metrics must be a boolean";
		return PROTO_E_BAD_REQUEST;
	}
	req->metrics = json_object_get_boolean(value);
	return PROTO_OK;
}

static enum proto_error
decode_op(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;
	size_t			 i;

	if (!json_object_object_get_ex(obj, FIELD(OP), &value)) {
		*ret_msg = "missing field: op";
		return PROTO_E_BAD_REQUEST;
	}
	if (!json_object_is_type(value, json_type_string)) {
		*ret_msg = "op must be a string";
		return PROTO_E_BAD_REQUEST;
	}
	for (i = 0; i < NOPS; i++) {
		if (strcmp(json_object_get_string(value), op_names[i]) == 0) {
			req->op = i;
			return PROTO_OK;
		}
	}
	*ret_msg = "unknown op";
	return PROTO_E_UNKNOWN_OP;
}

/*
 * Take the id, if it can come back as it came: json-c keeps no integer
 * past int64 as written, and clamps or wraps it to -2^63, 2^64 - 1 or
 * past 2^63, so integers must be of magnitude below 2^63.
 */
static enum proto_error
decode_id(struct json_object *value, struct proto_request *req,
    const char **ret_msg)
{
	const char	*text;
	size_t		 len;

	if (!is_scalar(value)) {
		*ret_msg = "id must be a JSON scalar";
		return PROTO_E_BAD_REQUEST;
	}
	if (json_object_is_type(value, json_type_int) &&
	    (json_object_get_int64(value) == INT64_MIN ||
	    json_object_get_uint64(value) > INT64_MAX)) {
		*ret_msg = "integer id out of range: it must lie within "
		    "+-9223372036854775807";
		return PROTO_E_BAD_REQUEST;
	}
	text = proto_id_text(value, &len);
	if (len > PROTO_MAX_ID) {
		*ret_msg = "id longer than " PROTO_TEXT(PROTO_MAX_ID) " bytes";
		return PROTO_E_BAD_REQUEST;
	}
	req->id = value;
	req->id_text = text;
	req->id_len = len;
	return PROTO_OK;
}

/* Read list's optional paging fields, limit and after. */
static enum proto_error
decode_paging(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;
	int64_t			 limit;

	if (json_object_object_get_ex(obj, FIELD(LIMIT), &value) &&
	    !json_object_is_type(value, json_type_null)) {
		limit = json_object_get_int64(value);
		if (!json_object_is_type(value, json_type_int) || limit < 1 ||
		    limit > PROTO_MAX_LIST) {
			*ret_msg = "limit must be an integer from 1 to "
			    PROTO_TEXT(PROTO_MAX_LIST);
			return PROTO_E_BAD_REQUEST;
		}
		req->limit = (int)limit;
	}
	if (json_object_object_get_ex(obj, FIELD(AFTER), &value) &&
	    !json_object_is_type(value, json_type_null)) {
		if (!json_object_is_type(value, json_type_string)) {
			*ret_msg = "after must be a string";
			return PROTO_E_BAD_REQUEST;
		}
		if (!proto_target_valid(json_object_get_string(value),
		    (size_t)json_object_get_string_len(value))) {
			*ret_msg = "after must be a lock name or path, as "
			    "list shows them";
			return PROTO_E_INVALID_NAME;
		}
		req->after = json_object_get_string(value);
	}
	return PROTO_OK;
}

static enum proto_error
decode_list(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;
	enum proto_error	 error;

	if (json_object_object_get_ex(obj, FIELD(ALL), &value) &&
	    !json_object_is_type(value, json_type_null)) {
		if (!json_object_is_type(value, json_type_boolean)) {
			*ret_msg = "all must be a boolean";
			return PROTO_E_BAD_REQUEST;
		}
		req->all = json_object_get_boolean(value);
	}
	if ((error = decode_paging(obj, req, ret_msg)) != PROTO_OK ||
	    (error = get_name(obj, 0, &req->name, ret_msg)) != PROTO_OK)
		return error;
	return decode_scope(obj, req, ret_msg);
}

/* Empty a request: every field absent, as a line without them decodes. */
void
proto_request_reset(struct proto_request *req)
{
	memset(req, 0, sizeof *req);
	req->timeout = -1;
	req->owner = req->client = req->deadlock_group = "";
	req->id_text = proto_id_text(NULL, &req->id_len);
}

/*
 * Decode a parsed request.  On failure *ret_msg is a static message, and
 * req->id is still set when the id itself was valid, so it can be echoed.
 */
enum proto_error
proto_request_decode(struct json_object *obj, struct proto_request *req,
    const char **ret_msg)
{
	struct json_object	*value;
	enum proto_error	 error;

	proto_request_reset(req);
	if (!json_object_is_type(obj, json_type_object)) {
		*ret_msg = "request must be a JSON object";
		return PROTO_E_BAD_REQUEST;
	}
	if (json_object_object_get_ex(obj, FIELD(ID), &value) &&
	    (error = decode_id(value, req, ret_msg)) != PROTO_OK)
		return error;
	if ((error = decode_op(obj, req, ret_msg)) != PROTO_OK)
		return error;
	switch (req->op) {
	case PROTO_OP_HELLO:
		if (get_label(obj, FIELD(CLIENT), PROTO_MAX_LABEL,
		    &req->client) != 0) {
			*ret_msg = "client must be a string of at most "
			    PROTO_TEXT(PROTO_MAX_LABEL) " bytes without NUL";
			return PROTO_E_BAD_REQUEST;
		}
		return PROTO_OK;
	case PROTO_OP_ACQUIRE:
		return decode_acquire(obj, req, ret_msg);
	case PROTO_OP_RELEASE:
		if ((error = get_name(obj, 1, &req->name, ret_msg)) != PROTO_OK)
			return error;
		return decode_scope(obj, req, ret_msg);
	case PROTO_OP_LIST:
		return decode_list(obj, req, ret_msg);
	case PROTO_OP_CONVERT:
		if ((error = get_name(obj, 1, &req->name, ret_msg)) !=
		    PROTO_OK || (error = decode_mode_timeout(obj, req, 1,
		    ret_msg)) != PROTO_OK)
			return error;
		return decode_scope(obj, req, ret_msg);
	case PROTO_OP_STATUS:
		return decode_status(obj, req, ret_msg);
	case PROTO_OP_PING:
		return PROTO_OK;
	}
	*ret_msg = "unknown op";
	return PROTO_E_UNKNOWN_OP;
}

/* Start a final reply: {"id":id,"ok":ok}; id is borrowed (NULL is null). */
struct json_object *
proto_reply_new(struct json_object *id, int ok)
{
	struct json_object	*obj;

	obj = json_object_new_object();
	json_object_object_add(obj, "id", json_object_get(id));
	json_object_object_add(obj, "ok", json_object_new_boolean(ok));
	return obj;
}

/* Build a failure reply with its error code and message. */
struct json_object *
proto_reply_error(struct json_object *id, enum proto_error error,
    const char *message)
{
	struct json_object	*obj, *err;

	obj = proto_reply_new(id, 0);
	err = json_object_new_object();
	json_object_object_add(err, "code",
	    json_object_new_string(proto_error_code(error)));
	json_object_object_add(err, "message",
	    json_object_new_string(message));
	json_object_object_add(obj, "error", err);
	return obj;
}

/* Start an interim event: {"id":id,"event":name}. */
struct json_object *
proto_event_new(struct json_object *id, const char *event)
{
	struct json_object	*obj;

	obj = json_object_new_object();
	json_object_object_add(obj, "id", json_object_get(id));
	json_object_object_add(obj, "event", json_object_new_string(event));
	return obj;
}

/* A final reply carries "ok"; an event does not. */
int
proto_reply_is_final(struct json_object *reply)
{
	struct json_object	*value;

	return json_object_object_get_ex(reply, "ok", &value) &&
	    json_object_is_type(value, json_type_boolean);
}

/*
 * Return the error of a final reply (PROTO_OK when ok is true), and its
 * message in *ret_msg; a malformed failure counts as bad_request.
 */
enum proto_error
proto_reply_error_decode(struct json_object *reply, const char **ret_msg)
{
	struct json_object	*value, *err, *code, *msg;
	enum proto_error	 error;

	*ret_msg = "";
	if (json_object_object_get_ex(reply, "ok", &value) &&
	    json_object_get_boolean(value))
		return PROTO_OK;
	if (!json_object_object_get_ex(reply, "error", &err) ||
	    !json_object_object_get_ex(err, "code", &code) ||
	    !json_object_is_type(code, json_type_string)) {
		*ret_msg = "malformed error reply";
		return PROTO_E_BAD_REQUEST;
	}
	if (json_object_object_get_ex(err, "message", &msg) &&
	    json_object_is_type(msg, json_type_string))
		*ret_msg = json_object_get_string(msg);
	error = proto_error_from_code(json_object_get_string(code));
	return error == PROTO_E_COUNT ? PROTO_E_BAD_REQUEST : error;
}

/* Encode a holder or waiter; a token of 0 (a waiter) is left out. */
struct json_object *
proto_holder_encode(const struct proto_holder *h)
{
	struct json_object	*obj;

	obj = json_object_new_object();
	if (h->external)
		json_object_object_add(obj, "external",
		    json_object_new_boolean(1));
	json_object_object_add(obj, "pid", json_object_new_int64(h->pid));
	/* An outside holder's uid only when the daemon saw its process. */
	if (!h->external || h->uid != PROTO_NO_UID)
		json_object_object_add(obj, "uid",
		    json_object_new_int64(h->uid));
	if (!h->external) {
		json_object_object_add(obj, "gid",
		    json_object_new_int64(h->gid));
		json_object_object_add(obj, "client",
		    json_object_new_string(h->client ? h->client : ""));
		json_object_object_add(obj, "owner",
		    json_object_new_string(h->owner ? h->owner : ""));
	}
	if (h->command != NULL)
		json_object_object_add(obj, "command",
		    json_object_new_string(h->command));
	if (h->node != NULL)
		json_object_object_add(obj, "node",
		    json_object_new_string(h->node));
	json_object_object_add(obj, "mode",
	    json_object_new_string(proto_mode_name(h->mode)));
	if (!h->external)
		json_object_object_add(obj, "since",
		    json_object_new_double(h->since));
	if (h->token > 0)
		json_object_object_add(obj, "token",
		    json_object_new_int64(h->token));
	if (h->converting)
		json_object_object_add(obj, "converting",
		    json_object_new_string("exclusive"));
	return obj;
}

static int64_t
get_int(struct json_object *obj, const char *key)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(obj, key, &value) || !is_number(value))
		return 0;
	return json_object_get_int64(value);
}

static const char *
get_string(struct json_object *obj, const char *key)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(obj, key, &value) ||
	    !json_object_is_type(value, json_type_string))
		return "";
	return json_object_get_string(value);
}

/* Decode a holder or waiter; strings stay owned by obj.  -1 if not one. */
int
proto_holder_decode(struct json_object *obj, struct proto_holder *h)
{
	struct json_object	*value;

	if (!json_object_is_type(obj, json_type_object))
		return -1;
	memset(h, 0, sizeof *h);
	h->external = json_object_object_get_ex(obj, "external", &value) &&
	    json_object_get_boolean(value);
	h->pid = (pid_t)get_int(obj, "pid");
	h->uid = json_object_object_get_ex(obj, "uid", &value) &&
	    is_number(value) ? (uid_t)json_object_get_int64(value) :
	    PROTO_NO_UID;
	h->gid = (gid_t)get_int(obj, "gid");
	h->token = get_int(obj, "token");
	h->client = get_string(obj, "client");
	h->owner = get_string(obj, "owner");
	h->command = get_string(obj, "command");
	h->node = get_string(obj, "node");
	if (mode_parse(get_string(obj, "mode"), &h->mode) != 0)
		return -1;
	if (json_object_object_get_ex(obj, "since", &value) && is_number(value))
		h->since = json_object_get_double(value);
	return 0;
}

/*
 * Parse and decode one request line, on the fast path when it can.  The
 * caller puts *ret_obj (the parsed tree; NULL on the fast path) when
 * done.  On failure req->id is set when the id itself was valid, as with
 * decode.  Either way proto_request_id gives the id for a reply.
 */
enum proto_error
proto_request_parse(struct json_tokener *tok, const char *line, size_t len,
    struct proto_scratch *scratch, struct proto_request *req,
    struct json_object **ret_obj, const char **ret_msg)
{
	*ret_obj = NULL;
	if (proto_request_scan(line, len, scratch, req) == 0)
		return PROTO_OK;
	if (parse_json(tok, line, len, ret_obj) == -1) {
		proto_request_reset(req);
		*ret_msg = "line is not one valid JSON value";
		return PROTO_E_BAD_JSON;
	}
	if (!text_valid(line, len)) {
		json_object_put(*ret_obj);
		*ret_obj = NULL;
		proto_request_reset(req);
		*ret_msg = "line is not valid UTF-8 (or escapes a lone "
		    "surrogate)";
		return PROTO_E_BAD_JSON;
	}
	return proto_request_decode(*ret_obj, req, ret_msg);
}
