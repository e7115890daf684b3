/*
 * The vault-k8s annotation converter: `secretfs --from-vault-annotations
 * FILE` reads a pod, a workload with a pod template (Deployment,
 * StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) or a List holding one
 * of them, as `kubectl get ... -o json` prints it, and writes a secretfs
 * config that serves the files the Vault Agent injector would render, at
 * the same paths. Templates carry over unchanged ("format":
 * "consul-template"); a secret without one gets the injector's default
 * template. Every vault.hashicorp.com/ annotation that does not carry over
 * is named on the error stream with the reason.
 */
#ifndef SECRETFS_ANNOTATIONS_H
#define SECRETFS_ANNOTATIONS_H

#include <stdio.h>

/* Results of annotations_convert. */
enum {
	ANNOT_COMPLETE = 0, /* every annotation carried over */
	ANNOT_INCOMPLETE =
	    1, /* config written; some annotations listed as not carried over */
	ANNOT_INVALID = -1, /* no config: unreadable input, or nothing to convert */
};

/*
 * Converts the object in the file at path ("-": standard input). Writes the
 * config (indented JSON) to out, and to err one line per annotation not
 * carried over, per piece of advice, or the reason nothing was written.
 * Never prints annotation values that could be secret (templates and
 * commands are copied into the config only).
 */
int annotations_convert(const char *path, FILE *out, FILE *err);

#endif
