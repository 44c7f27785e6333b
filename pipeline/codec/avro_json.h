/*
 * avro_json.h - Avro's JSON encoding of a generic Avro-C value, written
 * without loss: Avro-C's own avro_value_to_json goes through jansson, which
 * cuts a bytes value at its first NUL byte; dead-letter payloads need every
 * byte, each as one \u00XX code point as the Avro specification says.
 */
#ifndef PR_AVRO_JSON_H
#define PR_AVRO_JSON_H

#include <avro.h>

#include "common.h"

/* Appends the JSON of value to out. Returns PR_OK or PR_ERR. */
int pr_avro_to_json(avro_value_t *value, struct pr_buf *out);

#endif
