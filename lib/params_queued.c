/* Parameters read by queued. */
#include "config.h"

const struct config_param config_params_queued[] = {
	{ NULL, 0, NULL, 0, 0, NULL },
};
