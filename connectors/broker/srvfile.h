/*
 * connectors/broker/srvfile.h - DIR/.server.PID: the record of a
 * Kafka-protocol server running over a broker directory (private header;
 * srvfile.c says why and how). A server claims its record at open and
 * releases it at close; a partition writer whose lock is held by process
 * PID reads PID's record to name the server in its error (log.c).
 */
#ifndef SLUICE_BROKER_SRVFILE_H
#define SLUICE_BROKER_SRVFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Record this process as a server of dir listening on host:port (and
 * remove the records of servers that died): returns the record's
 * descriptor (>= 0; hold it while serving) or SL_EIO (err says why). */
int slb_srvfile_claim(const char *dir, const char *host, int port, char *err, size_t errcap);
/* Remove dir's record and drop its lock (fd from slb_srvfile_claim; -1 does
 * nothing). */
void slb_srvfile_release(const char *dir, int fd);
/* Whether process pid is a live server of dir (a record left by a server
 * that died does not count): then addr gets its "HOST:PORT". */
bool slb_srvfile_owner(const char *dir, long pid, char *addr, size_t addrcap);

#endif
