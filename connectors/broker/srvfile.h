/*
 * connectors/broker/srvfile.h - DIR/.server: the record of the Kafka-protocol
 * server that owns a broker directory (private header; srvfile.c says why
 * and how). The server claims it at open and releases it at close; a
 * partition writer whose lock is taken reads it to name the server in its
 * error (log.c).
 */
#ifndef SLUICE_BROKER_SRVFILE_H
#define SLUICE_BROKER_SRVFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Claim dir for a server listening on host:port: returns the file's
 * descriptor (>= 0; hold it while serving) or SL_EBUSY (another server runs
 * on dir: err says which) or SL_EIO (err says why). */
int slb_srvfile_claim(const char *dir, const char *host, int port, char *err, size_t errcap);
/* Remove dir's record and drop its lock (fd from slb_srvfile_claim; -1 does
 * nothing). */
void slb_srvfile_release(const char *dir, int fd);
/* Whether a live server owns dir now (a record left by a server that died
 * does not count): then *pid and addr ("HOST:PORT") say which. */
bool slb_srvfile_owner(const char *dir, long *pid, char *addr, size_t addrcap);

#endif
