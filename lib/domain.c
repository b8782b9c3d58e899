/* Classification of recipient domains: delivered here or relayed. */
#include "config.h"
#include "domain.h"
#include "util.h"

static int
domain_in_list(const char *domain, char *const *list)
{
	for (; *list != NULL; list++)
		if (ascii_casecmp(domain, *list) == 0)
			return 1;
	return 0;
}

enum domain_class
domain_classify(const char *domain)
{
	if (domain[0] == '\0' || ascii_casecmp(domain, config_myhostname()) == 0 ||
	    domain_in_list(domain, config_list("local_domains")))
		return DOMAIN_LOCAL;
	if (domain_in_list(domain, config_list("virtual_domains")))
		return DOMAIN_VIRTUAL;
	return DOMAIN_REMOTE;
}
