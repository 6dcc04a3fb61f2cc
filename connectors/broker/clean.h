/*
 * connectors/broker/clean.h - retention and compaction of a partition's
 * sealed segments (private header; clean.c). The top of the storage's
 * layers: clean.c -> log.c -> index.c -> segment.c. log.c does not include
 * this header; it runs cleaning at each roll only through the after_roll hook
 * (log.h) that the openers (broker.c, group.c) set to slb_plog_clean_locked.
 */
#ifndef SLUICE_BROKER_CLEAN_H
#define SLUICE_BROKER_CLEAN_H

#include <stdint.h>

#include "connectors/broker/log.h"

/* Retention and (compacted topics) compaction of the sealed segments; now_ms
 * 0 means the current wall-clock time. */
int slb_plog_clean(slb_plog *l, int64_t now_ms, char *err);
/* The same with mu held and nothing pending: an slb_roll_hook, passed to
 * slb_plog_open so that it runs at each roll. */
int slb_plog_clean_locked(slb_plog *l, int64_t now_ms, char *err);

#endif
