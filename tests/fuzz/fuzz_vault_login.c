/* A Vault login answer's "auth" object (vault_login_from_reply), as every
 * auth method reads it. */
#include "fuzz.h"
#include "secretfs/backend.h"
#include "vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct backend_error err = {0};
	struct vault_login login = {0};
	json_t *reply = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);

	if (!reply)
		return 0;
	if (vault_login_from_reply(reply, &login, &err) == 0 &&
	    (!login.token ||
	     strlen(login.token) !=
	         json_string_length(
	             json_object_get(json_object_get(reply, "auth"), "client_token")) ||
	     login.ttl_ms > 10ull * 365 * 24 * 3600 * 1000))
		abort(); /* a token cut at a NUL, or a TTL that wrapped */
	secmem_free(login.token);
	json_decref(reply);
	return 0;
}
