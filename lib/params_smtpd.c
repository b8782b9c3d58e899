/* Parameters read by smtpd. */
#include "config.h"

const struct config_param config_params_smtpd[] = {
	{ NULL, 0, NULL, 0, 0, NULL },
};
