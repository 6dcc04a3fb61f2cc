/*
 * engine/base/crc32c.h - CRC-32C (Castagnoli), the one checksum of the
 * broker's files and the engine's checkpoints (private header).
 */
#ifndef SLUICE_ENGINE_BASE_CRC32C_H
#define SLUICE_ENGINE_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) with len bytes of buf. crc32c("123456789") is
 * 0xe3069283. Uses the SSE4.2 crc32 instruction when the CPU has it, else
 * slicing-by-8 tables. */
uint32_t sli_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable version, always (for tests). */
uint32_t sli_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
