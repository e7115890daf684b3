/* A whole config document through parsing and validation (config.c and
 * every backend's check). */
#include "fuzz.h"
#include "secretfs/config.h"
#include "secretfs/diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	struct config *cfg = NULL;
	struct diag d;

	diag_init(&d, "fuzz.json");
	if (config_parse(text, "fuzz.json", &d, &cfg) == 0)
		config_free(cfg);
	diag_release(&d);
	free(text);
	return 0;
}
