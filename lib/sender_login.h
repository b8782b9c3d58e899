/*
 * Sender address ownership: the login names that may use an address
 * after AUTH (the idea of Postfix's smtpd_sender_login_maps). The map lists owners for an address
 * or a whole "@domain". An address the map does not list belongs to
 * the virtual user of that name, or to the system user of that local
 * part when the domain is local.
 */
#ifndef ESTAFETA_SMTPD_SENDER_LOGIN_H
#define ESTAFETA_SMTPD_SENDER_LOGIN_H

#include "addr.h"

struct sender_login_map;

/* The map at PATH (a text file, or a tinycdb file when PATH ends in
 * ".cdb"), loaded at the first lookup; "" means no map. */
struct sender_login_map *sender_login_map_new(const char *path, char recipient_delimiter);
void sender_login_map_free(struct sender_login_map *map);

/*
 * Whether LOGIN owns ADDRESS: 1 yes, 0 no, -1 when the map cannot be
 * read. The null sender belongs to everyone. A "+detail" after
 * the recipient delimiter is ignored.
 */
int sender_login_owns(struct sender_login_map *map, const char *login,
    const struct mailaddr *address);

#endif
