/*
 * Unit tests of the proxy taken from the environment (backend_util.c
 * backend_proxy_init): which variable applies to which scheme, that the
 * config's proxy and proxy_from_environment win, that NO_PROXY and
 * loopback reach curl's no-proxy list, and that credentials are redacted.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "secretfs/backend.h"
#include "test.h"

static void clear_proxy_env(void)
{
	static const char *const names[] = {
	    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",         "http_proxy",
	    "NO_PROXY",    "no_proxy",    "TEST_OVERRIDE_PROXY"};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		unsetenv(names[i]);
}

static const char *const override_env[] = {"TEST_OVERRIDE_PROXY", NULL};

TEST(test_proxy_scheme_selects_the_variable_uppercase_first)
{
	struct backend_proxy p;

	clear_proxy_env();
	setenv("https_proxy", "http://lower:3128", 1);
	setenv("HTTPS_PROXY", "http://upper:3128", 1);
	setenv("http_proxy", "http://plain:3128", 1);
	CHECK(backend_proxy_init(&p, NULL, true, "https://vault:8200", NULL) == 0);
	CHECK_STR_EQ(p.url, "http://upper:3128");
	CHECK_STR_EQ(p.from, "HTTPS_PROXY");
	CHECK_STR_EQ(p.noproxy, "localhost,127.0.0.0/8,::1");
	backend_proxy_release(&p);
	CHECK(backend_proxy_init(&p, NULL, true, "http://vault:8200", NULL) == 0);
	CHECK_STR_EQ(p.url, "http://plain:3128");
	backend_proxy_release(&p);
}

TEST(test_proxy_no_proxy_is_passed_on_and_star_means_none)
{
	struct backend_proxy p;

	clear_proxy_env();
	setenv("HTTPS_PROXY", "http://proxy:3128", 1);
	setenv("no_proxy", ".internal,10.0.0.0/8", 1);
	CHECK(backend_proxy_init(&p, NULL, true, "https://vault:8200", NULL) == 0);
	CHECK_STR_EQ(p.noproxy, "localhost,127.0.0.0/8,::1,.internal,10.0.0.0/8");
	backend_proxy_release(&p);
	setenv("NO_PROXY", "*", 1);
	CHECK(backend_proxy_init(&p, NULL, true, "https://vault:8200", NULL) == 0);
	CHECK(p.url == NULL);
}

TEST(test_proxy_config_and_switch_and_override)
{
	struct backend_proxy p;

	clear_proxy_env();
	setenv("HTTPS_PROXY", "http://env:3128", 1);
	setenv("TEST_OVERRIDE_PROXY", "http://override:3128", 1);
	CHECK(backend_proxy_init(&p, "http://conf:1", true, "https://v", override_env) ==
	      0);
	CHECK_STR_EQ(p.url, "http://conf:1");
	CHECK_STR_EQ(p.noproxy, ""); /* every request, whatever NO_PROXY says */
	backend_proxy_release(&p);
	CHECK(backend_proxy_init(&p, NULL, false, "https://v", override_env) == 0);
	CHECK(p.url == NULL);
	CHECK(backend_proxy_init(&p, NULL, true, "https://v", override_env) == 0);
	CHECK_STR_EQ(p.url, "http://override:3128");
	CHECK_STR_EQ(p.noproxy, ""); /* an override applies to every request */
	backend_proxy_release(&p);
	clear_proxy_env();
}

TEST(test_proxy_credentials_are_redacted)
{
	char buf[128];

	CHECK_STR_EQ(
	    backend_proxy_redacted("http://user:secret@proxy:3128", buf, sizeof buf),
	    "http://***@proxy:3128");
	CHECK_STR_EQ(backend_proxy_redacted("http://proxy:3128/x@y", buf, sizeof buf),
	             "http://proxy:3128/x@y");
	CHECK_STR_EQ(backend_proxy_redacted("u:p@proxy", buf, sizeof buf), "***@proxy");
}

TEST_MAIN(test_proxy_scheme_selects_the_variable_uppercase_first,
          test_proxy_no_proxy_is_passed_on_and_star_means_none,
          test_proxy_config_and_switch_and_override, test_proxy_credentials_are_redacted)
