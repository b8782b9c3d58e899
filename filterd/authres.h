/*
 * Authentication-Results (RFC 8601): the last check of the chain joins
 * the method results of the checks before it into one field.
 */
#ifndef ESTAFETA_FILTERD_AUTHRES_H
#define ESTAFETA_FILTERD_AUTHRES_H

#include "filter.h"

filter_check_fn authres_check;

#endif
