/*
 * notAfter of an X.509 certificate (see x509.h). DER is walked with a
 * cursor that never reads past its end: each TLV's length is checked
 * against what is left before it is used, only short tags and lengths of up
 * to four bytes are accepted, and nothing is copied but the time digits.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "x509.h"

#define DER_SEQUENCE 0x30
#define DER_CONTEXT_0 0xa0
#define DER_UTCTIME 0x17
#define DER_GENERALIZEDTIME 0x18

struct der {
	const unsigned char *p;
	size_t left;
};

/* Reads one TLV: its tag and its contents (as a sub-cursor), and moves
 * past it. Returns false on anything malformed or truncated. */
static bool der_next(struct der *d, unsigned char *tag, struct der *contents)
{
	size_t len = 0, n;

	if (d->left < 2 || (d->p[0] & 0x1f) == 0x1f)
		return false;
	*tag = d->p[0];
	if (d->p[1] < 0x80) {
		len = d->p[1];
		n = 2;
	} else {
		size_t nlen = d->p[1] & 0x7f;
		if (nlen == 0 || nlen > 4 || d->left < 2 + nlen)
			return false;
		for (size_t i = 0; i < nlen; i++)
			len = len << 8 | d->p[2 + i];
		n = 2 + nlen;
	}
	if (len > d->left - n)
		return false;
	contents->p = d->p + n;
	contents->left = len;
	d->p += n + len;
	d->left -= n + len;
	return true;
}

/* Enters the next TLV when its tag is the expected one. */
static bool der_enter(struct der *d, unsigned char want, struct der *contents)
{
	unsigned char tag;

	return der_next(d, &tag, contents) && tag == want;
}

static bool digits(const unsigned char *s, size_t n, int *out)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil), so no time zone is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* UTCTime "YYMMDDHHMMSSZ" or GeneralizedTime "YYYYMMDDHHMMSSZ" (the forms
 * RFC 5280 allows) as Unix seconds. */
static bool der_time(unsigned char tag, const struct der *t, int64_t *out)
{
	size_t ylen = tag == DER_UTCTIME ? 2 : 4;
	int y, mo, d, h, mi, s;

	if ((tag != DER_UTCTIME && tag != DER_GENERALIZEDTIME) || t->left != ylen + 11 ||
	    t->p[t->left - 1] != 'Z')
		return false;
	if (!digits(t->p, ylen, &y) || !digits(t->p + ylen, 2, &mo) ||
	    !digits(t->p + ylen + 2, 2, &d) || !digits(t->p + ylen + 4, 2, &h) ||
	    !digits(t->p + ylen + 6, 2, &mi) || !digits(t->p + ylen + 8, 2, &s))
		return false;
	if (tag == DER_UTCTIME)
		y += y >= 50 ? 1900 : 2000;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return false;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
	return true;
}

int x509_der_not_after(const unsigned char *der, size_t len, int64_t *out)
{
	struct der all = {der, len}, cert, tbs, skip, validity, t;
	unsigned char tag;

	/* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
	 * OPTIONAL, serialNumber, signature, issuer, validity, ... } ... } */
	if (!der_enter(&all, DER_SEQUENCE, &cert) ||
	    !der_enter(&cert, DER_SEQUENCE, &tbs))
		return SFS_EPARSE;
	if (tbs.left > 0 && tbs.p[0] == DER_CONTEXT_0 && !der_next(&tbs, &tag, &skip))
		return SFS_EPARSE;
	for (int i = 0; i < 3; i++) /* serialNumber, signature, issuer */
		if (!der_next(&tbs, &tag, &skip))
			return SFS_EPARSE;
	if (!der_enter(&tbs, DER_SEQUENCE, &validity) ||
	    !der_next(&validity, &tag, &t) || /* notBefore */
	    !der_next(&validity, &tag, &t) || !der_time(tag, &t, out))
		return SFS_EPARSE;
	return 0;
}

int x509_pem_not_after(const char *pem, size_t len, int64_t *out)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	const char *b64, *stop;
	unsigned char *der;
	size_t derlen = 0;
	int rc;

	b64 = memmem(pem, len, begin, sizeof begin - 1);
	if (!b64)
		return SFS_EPARSE;
	b64 += sizeof begin - 1;
	stop = memmem(b64, len - (size_t)(b64 - pem), end, sizeof end - 1);
	if (!stop)
		return SFS_EPARSE;
	if ((size_t)(stop - b64) / 4 * 3 > X509_MAX_DER)
		return SFS_ETOOBIG;
	der = malloc(X509_MAX_DER);
	if (!der)
		return SFS_ENOMEM;
	rc = sodium_base642bin(der, X509_MAX_DER, b64, (size_t)(stop - b64), " \t\r\n",
	                       &derlen, NULL, sodium_base64_VARIANT_ORIGINAL) == 0
	         ? x509_der_not_after(der, derlen, out)
	         : SFS_EPARSE;
	free(der);
	return rc;
}
