/*
 * engine/base/crc32c.h - CRC-32C (Castagnoli) for the engine's own files
 * (checkpoints); private header.
 *
 * Same function and results as the broker's slb_crc32c
 * (connectors/broker/crc32c.c), which the engine may not include: the engine
 * floor depends on engine/base/ only. The broker can move onto this one.
 */
#ifndef SLUICE_ENGINE_BASE_CRC32C_H
#define SLUICE_ENGINE_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) with len bytes of buf. sli_crc32c(0, "123456789", 9)
 * is 0xE3069283. Thread-safe. */
uint32_t sli_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
