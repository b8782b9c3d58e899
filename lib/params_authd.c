/* Parameters read by authd. */
#include "config.h"

const struct config_param config_params_authd[] = {
	{ NULL, 0, NULL, 0, 0, NULL },
};
