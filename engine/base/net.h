/*
 * engine/base/net.h - socket address helpers shared by the servers (the
 * broker's Kafka server, the ops/ HTTP endpoint): one rule for what counts
 * as a loopback address, which both use to refuse a non-loopback listen
 * address that no secret protects.
 */
#ifndef SLUICE_BASE_NET_H
#define SLUICE_BASE_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
static inline bool sli_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

#endif
