/* Parameters read by deliverd. */
#include "config.h"

const struct config_param config_params_deliverd[] = {
	{ NULL, 0, NULL, 0, 0, NULL },
};
