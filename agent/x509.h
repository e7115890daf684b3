/*
 * The one fact secretfs needs from an X.509 certificate: when it stops
 * being valid (notAfter), so that a certificate issued without a lease
 * (Vault's PKI engine) is replaced before it expires. A small, bounded DER
 * walker (Certificate -> TBSCertificate -> validity -> notAfter); it
 * checks no signature and trusts nothing else in the certificate.
 */
#ifndef SECRETFS_X509_H
#define SECRETFS_X509_H

#include <stddef.h>
#include <stdint.h>

/* Upper bound on a certificate this module decodes. */
#define X509_MAX_DER (64 * 1024)

/*
 * notAfter of the DER certificate der[0..len) as Unix seconds (UTCTime or
 * GeneralizedTime, in UTC). Returns 0 and sets *out, or SFS_EPARSE when the
 * bytes are not a certificate this walker understands (*out untouched).
 */
int x509_der_not_after(const unsigned char *der, size_t len, int64_t *out);

/*
 * The same for the first "-----BEGIN CERTIFICATE-----" block of the PEM
 * text pem[0..len). Returns 0, SFS_EPARSE (no such block, bad base64, bad
 * DER), SFS_ETOOBIG (larger than X509_MAX_DER) or SFS_ENOMEM.
 */
int x509_pem_not_after(const char *pem, size_t len, int64_t *out);

#endif
