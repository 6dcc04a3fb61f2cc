/*
 * connectors/topic_record.h - one message of a topic (the built-in broker's
 * or Kafka's) made into a pipeline record, the same way for both sources
 * (private to connectors/). The record layout is sluice/connectors.h's:
 * key length (SL_BROKER_NO_KEY: no key), key, value; or what the conf's
 * parse callback makes of the value, whose refusals go to the dead letters
 * as "partition P offset O: reason" with the first 200 bytes of the value.
 */
#ifndef SLUICE_CONNECTORS_TOPIC_RECORD_H
#define SLUICE_CONNECTORS_TOPIC_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/connectors.h"

typedef struct slc_topic_msg {
    const void *key; /* NULL: no key (an empty key is not NULL) */
    size_t key_len;
    const void *value; /* NULL: none (a tombstone reads as an empty value) */
    size_t value_len;
    int64_t ts; /* event time; SL_TIME_NONE when the message has none */
    int32_t partition;
    int64_t offset;
} slc_topic_msg;

/* Emit m on ctx's port 0 (or its dead letter). With parse, rec is a
 * scratch buffer of max_len bytes. Returns 0 or a negative code (recorded). */
int slc_topic_emit(sl_ctx *ctx, const slc_topic_msg *m, sl_line_parse_fn parse, void *ud,
                   uint32_t max_len, uint8_t *rec);

#endif
