/*
 * connectors/broker/connector_server.c - the public face of the
 * Kafka-protocol server (sluice/server.h): each function forwards to its
 * slb_server_* twin in server.c. It exists so that server.c includes
 * nothing above the storage floor (tests/unit/test_broker_floor.c exempts
 * files named connector*.c, the adapters); it holds no state of its own.
 */
#include "sluice/server.h"
#include "connectors/broker/server.h"

int sl_server_open(sl_server **out, sl_broker *b, const char *listen)
{
    return slb_server_open(out, b, listen);
}

void sl_server_conf_init(sl_server_conf *conf)
{
    slb_server_conf c;
    slb_server_conf_init(&c);
    *conf = (sl_server_conf){c.listen,          c.tls_cert,          c.tls_key,
                             c.sasl_users,      c.max_request_bytes, c.max_connections,
                             c.idle_timeout_ms, c.log_level,         c.log};
}

int sl_server_open_conf(sl_server **out, sl_broker *b, const sl_server_conf *conf)
{
    if (!conf) return slb_server_open_conf(out, b, NULL);
    slb_server_conf c = {conf->listen,          conf->tls_cert,          conf->tls_key,
                         conf->sasl_users,      conf->max_request_bytes, conf->max_connections,
                         conf->idle_timeout_ms, conf->log_level,         conf->log};
    return slb_server_open_conf(out, b, &c);
}

int sl_server_user_add(const char *path, const char *user, const char *password, char *err,
                       size_t errlen)
{
    return slb_server_user_add(path, user, password, err, errlen);
}

int sl_server_port(const sl_server *s)
{
    return slb_server_port(s);
}

void sl_server_set_log(sl_server *s, FILE *log)
{
    slb_server_set_log(s, log);
}

int sl_server_run(sl_server *s)
{
    return slb_server_run(s);
}

void sl_server_stop(sl_server *s)
{
    slb_server_stop(s);
}

void sl_server_close(sl_server *s)
{
    slb_server_close(s);
}

const char *sl_server_errmsg(const sl_server *s)
{
    return slb_server_errmsg(s);
}
