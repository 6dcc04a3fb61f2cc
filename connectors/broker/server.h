/*
 * connectors/broker/server.h - the Kafka-protocol server's internal API
 * (private header). server.c implements it over the public broker API only,
 * so that it stays on the storage floor (it includes no header above
 * sluice/broker.h); connector_server.c is the thin public adapter
 * (sluice/server.h) over these functions.
 */
#ifndef SLUICE_BROKER_SERVER_H
#define SLUICE_BROKER_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/broker.h"

typedef struct sl_server sl_server;

#define SLB_FRAME_MAX (100 * 1024 * 1024) /* largest request frame accepted (bytes) */

/* The server's settings (sluice/server.h's sl_server_conf, field by
 * field; connector_server.c copies one into the other). */
typedef struct slb_server_conf {
    const char *listen;
    const char *tls_cert, *tls_key;
    const char *sasl_users;
    int32_t max_request_bytes;
    int32_t max_connections;
    int32_t idle_timeout_ms;
    int32_t log_level;
    FILE *log;
} slb_server_conf;

#define SLB_MAX_CONNECTIONS 10000
#define SLB_IDLE_TIMEOUT_MS 30000

void slb_server_conf_init(slb_server_conf *conf);
int slb_server_open(sl_server **out, sl_broker *b, const char *listen);
int slb_server_open_conf(sl_server **out, sl_broker *b, const slb_server_conf *conf);
int slb_server_user_add(const char *path, const char *user, const char *password, char *err,
                        size_t errlen);
int slb_server_port(const sl_server *s);
void slb_server_set_log(sl_server *s, FILE *log);
int slb_server_run(sl_server *s);
void slb_server_stop(sl_server *s);
void slb_server_close(sl_server *s);
const char *slb_server_errmsg(const sl_server *s);

#endif
