/*
 * Unit tests of the X.509 notAfter walker (x509.c) against certificates
 * made with the openssl CLI:
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
 *       -keyout k.pem -out c.pem -days N -subj /CN=...
 * (-days 30: notAfter as UTCTime; -days 10000: past 2049, GeneralizedTime).
 * The expected times are `date -u -d "$(openssl x509 -noout -enddate ...)" +%s`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "../../agent/x509.h"
#include "secretfs/error.h"
#include "test.h"

/* notAfter=Jan  1 13:47:00 2027 GMT (UTCTime 270101134700Z) */
static const char cert_utc[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBgjCCASmgAwIBAgIUTyfiQsILOOLzL/IvBTSW0JUuYjQwCgYIKoZIzj0EAwIw\n"
    "FzEVMBMGA1UEAwwMc2VjcmV0ZnMtdXRjMB4XDTI2MTIwMjEzNDcwMFoXDTI3MDEw\n"
    "MTEzNDcwMFowFzEVMBMGA1UEAwwMc2VjcmV0ZnMtdXRjMFkwEwYHKoZIzj0CAQYI\n"
    "KoZIzj0DAQcDQgAEjr2gesr05FEm2CT99itxqkS+CmBkkvGZknS/H+xLygoHJ/b3\n"
    "zGimUF60hZwlZiuf2O7tZj3YgL+R/t+wXDec8aNTMFEwHQYDVR0OBBYEFF5ImY/l\n"
    "Y69nTNo0Hu7BsemaUjknMB8GA1UdIwQYMBaAFF5ImY/lY69nTNo0Hu7BsemaUjkn\n"
    "MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgE21Bn9m1CKvrhvd5\n"
    "Sye0Gh1l8da5TR8TO2V2PFTMexkCIGggzya3+CoCRRG0pCS1LhpAoWr59JaugIbQ\n"
    "lTDNL5BS\n"
    "-----END CERTIFICATE-----\n";
static const int64_t cert_utc_not_after = 1798811220;

/* notAfter=Apr 19 13:47:00 2054 GMT (GeneralizedTime 20540419134700Z) */
static const char cert_generalized[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBhjCCASugAwIBAgIUPoieaWgheDw0qkK9duFA66CLQHQwCgYIKoZIzj0EAwIw\n"
    "FzEVMBMGA1UEAwwMc2VjcmV0ZnMtZ2VuMCAXDTI2MTIwMjEzNDcwMFoYDzIwNTQw\n"
    "NDE5MTM0NzAwWjAXMRUwEwYDVQQDDAxzZWNyZXRmcy1nZW4wWTATBgcqhkjOPQIB\n"
    "BggqhkjOPQMBBwNCAATsYFnusA+oATMH2udKWlsSVfTVWiC5wF8++cOpbuRMrImU\n"
    "nFkpTjTxjbKhh6xBTEzhnf6uB+yIOD11K2iKEyIeo1MwUTAdBgNVHQ4EFgQUoHlF\n"
    "najMOA8iTr52rnVmYHOqJAgwHwYDVR0jBBgwFoAUoHlFnajMOA8iTr52rnVmYHOq\n"
    "JAgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEA7hTSeu3/V/vx\n"
    "oSxRAmv96YQKmQ3mbsA/kIux3zRoNSYCIQDkkj1ymM7bKM98eZs/BXF3JebAFP5e\n"
    "R1xj8DmLBX9TMg==\n"
    "-----END CERTIFICATE-----\n";
static const int64_t cert_generalized_not_after = 2660219220;

TEST(test_x509_utctime_not_after)
{
	int64_t t = 0;

	CHECK_EQ_INT(x509_pem_not_after(cert_utc, strlen(cert_utc), &t), 0);
	CHECK_EQ_INT(t, cert_utc_not_after);
}

TEST(test_x509_generalized_time_not_after)
{
	int64_t t = 0;

	CHECK_EQ_INT(x509_pem_not_after(cert_generalized, strlen(cert_generalized), &t),
	             0);
	CHECK_EQ_INT(t, cert_generalized_not_after);
}

TEST(test_x509_first_certificate_of_a_chain_with_text_around)
{
	char pem[4096];
	int64_t t = 0;

	snprintf(pem, sizeof pem, "subject=CN=x\r\n%s%s", cert_generalized, cert_utc);
	CHECK_EQ_INT(x509_pem_not_after(pem, strlen(pem), &t), 0);
	CHECK_EQ_INT(t, cert_generalized_not_after);
}

TEST(test_x509_not_a_certificate_is_a_parse_error)
{
	static const char key[] = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n"
	                          "-----END EC PRIVATE KEY-----\n";
	static const char junk[] = "-----BEGIN CERTIFICATE-----\n!!!!\n"
	                           "-----END CERTIFICATE-----\n";
	static const char notder[] = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n"
	                             "-----END CERTIFICATE-----\n";
	int64_t t = 42;

	CHECK_EQ_INT(x509_pem_not_after(key, strlen(key), &t), SFS_EPARSE);
	CHECK_EQ_INT(x509_pem_not_after(junk, strlen(junk), &t), SFS_EPARSE);
	CHECK_EQ_INT(x509_pem_not_after(notder, strlen(notder), &t), SFS_EPARSE);
	CHECK_EQ_INT(x509_pem_not_after("", 0, &t), SFS_EPARSE);
	CHECK_EQ_INT(t, 42);
}

/* Every truncation and every single-byte corruption of a real certificate
 * is refused or parsed within bounds (run under ASan to see the bounds). */
TEST(test_x509_truncated_and_corrupted_der_stays_in_bounds)
{
	const char *b = strstr(cert_utc, "\n") + 1;
	const char *e = strstr(cert_utc, "-----END");
	unsigned char der[2048];
	size_t len = 0;
	int64_t t;

	CHECK(sodium_base642bin(der, sizeof der, b, (size_t)(e - b), "\n", &len, NULL,
	                        sodium_base64_VARIANT_ORIGINAL) == 0);
	CHECK_EQ_INT(x509_der_not_after(der, len, &t), 0);
	for (size_t n = 0; n < len; n++) {
		unsigned char *cut = malloc(n ? n : 1);
		memcpy(cut, der, n);
		(void)x509_der_not_after(cut, n, &t);
		free(cut);
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char *bad = malloc(len);
		memcpy(bad, der, len);
		bad[i] ^= 0xff;
		(void)x509_der_not_after(bad, len, &t);
		free(bad);
	}
	/* The time section itself is where notAfter lives: cut just before
	 * its last byte, it must be refused. */
	CHECK_EQ_INT(x509_der_not_after(der, 100, &t), SFS_EPARSE);
}

TEST_MAIN(test_x509_utctime_not_after, test_x509_generalized_time_not_after,
          test_x509_first_certificate_of_a_chain_with_text_around,
          test_x509_not_a_certificate_is_a_parse_error,
          test_x509_truncated_and_corrupted_der_stays_in_bounds)
