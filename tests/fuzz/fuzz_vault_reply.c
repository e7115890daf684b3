/*
 * The Vault reply parsers besides login: a mount lookup
 * (vault_kv_mount_from_reply), a KV v2 read and a 404 that names a deleted
 * version (vault_kv_read_from_reply), a KV v2 metadata probe
 * (vault_kv_version_from_metadata), a leased read
 * (vault_lease_from_reply) and a lease renewal
 * (vault_renewal_from_reply). Input: one byte choosing the parser, the
 * requested path, a NUL, then the reply's JSON.
 */
#include "fuzz.h"
#include "secretfs/error.h"
#include "vault_backend.h"

#define MAX_MS ((uint64_t)VAULT_MAX_TTL_S * 1000)

static void mount(const json_t *reply, const char *path)
{
	const char *prefix, *type;
	int kvv;

	if (vault_kv_mount_from_reply(reply, path, &prefix, &type, &kvv) == 0 &&
	    (!*prefix || strncmp(path, prefix, strlen(prefix)) != 0 || kvv < 0 ||
	     kvv > 2))
		abort(); /* a prefix kv2_path would cut path at */
}

static void kv_read(const json_t *reply, const char *path, int rc)
{
	struct backend_error err = {0};
	struct fetch_result out = {0};

	if (vault_kv_read_from_reply(reply, rc, path, &out, &err) == 0) {
		if (!json_is_object(out.value) ||
		    !memchr(out.version, '\0', sizeof out.version))
			abort();
		fetch_result_release(&out);
	}
	if (!memchr(err.msg, '\0', sizeof err.msg))
		abort();
}

static void lease(const json_t *reply, const char *path)
{
	struct backend_error err = {0};
	struct fetch_result out = {0};
	const json_t *id = json_object_get(reply, "lease_id");

	if (vault_lease_from_reply(reply, path, 7, &out, &err) == 0) {
		if (out.lease_ms > MAX_MS || (out.lease_id[0] && out.lease_ms == 0) ||
		    (out.lease_id[0] &&
		     strcmp(out.lease_id, json_string_value(id)) != 0) ||
		    out.auth_generation != 7)
			abort(); /* a TTL that wrapped, or a lease id cut */
		fetch_result_release(&out);
	}
}

static void renewal(const json_t *reply)
{
	struct backend_error err = {0};
	uint64_t ms = 0;
	int rc = vault_renewal_from_reply(reply, &ms, &err);

	if ((rc == 0 || rc == SFS_EEXPIRED) && ms > MAX_MS)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *parts[2];
	char *buf, version[32];
	size_t n;
	json_t *reply;

	if (size < 1)
		return 0;
	n = fuzz_split(data + 1, size - 1, &buf, parts, 2);
	reply = n == 2 ? json_loads(parts[1], JSON_ALLOW_NUL, NULL) : NULL;
	if (reply) {
		switch (data[0] % 6) {
		case 0:
			mount(reply, parts[0]);
			break;
		case 1:
			kv_read(reply, parts[0], 0);
			break;
		case 2:
			kv_read(reply, parts[0], SFS_ENOTFOUND);
			break;
		case 3:
			vault_kv_version_from_metadata(reply, version, sizeof version);
			if (!memchr(version, '\0', sizeof version))
				abort();
			break;
		case 4:
			lease(reply, parts[0]);
			break;
		default:
			renewal(reply);
		}
	}
	json_decref(reply);
	free(buf);
	return 0;
}
