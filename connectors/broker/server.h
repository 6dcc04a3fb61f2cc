/*
 * connectors/broker/server.h - the Kafka-protocol server's internal API
 * (private header). server.c implements it over the public broker API only,
 * so that it stays on the storage floor (it includes no header above
 * sluice/broker.h); connector_server.c is the thin public adapter
 * (sluice/server.h) over these functions.
 */
#ifndef SLUICE_BROKER_SERVER_H
#define SLUICE_BROKER_SERVER_H

#include <stdio.h>

#include "sluice/broker.h"

typedef struct sl_server sl_server;

#define SLB_FRAME_MAX (100 * 1024 * 1024) /* largest request frame accepted (bytes) */

int slb_server_open(sl_server **out, sl_broker *b, const char *listen);
int slb_server_port(const sl_server *s);
void slb_server_set_log(sl_server *s, FILE *log);
int slb_server_run(sl_server *s);
void slb_server_stop(sl_server *s);
void slb_server_close(sl_server *s);
const char *slb_server_errmsg(const sl_server *s);

#endif
