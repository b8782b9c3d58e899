/* Reply fields of the Dovecot authentication protocol, shared by its clients. */
#ifndef ESTAFETA_AUTH_PROTO_H
#define ESTAFETA_AUTH_PROTO_H

/*
 * Return the value of the field "NAME=value" among the TAB-separated
 * FIELDS, or "" if there is none. Cuts FIELDS at the TAB after each
 * field it passes, so look up at most one field per copy.
 */
const char *auth_proto_field(char *fields, const char *name);

/* Return 1 if the TAB-separated FIELDS contain the bare field NAME ("temp"), else 0. */
int auth_proto_has_field(const char *fields, const char *name);

#endif
