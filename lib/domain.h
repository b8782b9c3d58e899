/* Classification of recipient domains: delivered here or relayed. */
#ifndef ESTAFETA_DOMAIN_H
#define ESTAFETA_DOMAIN_H

enum domain_class {
	DOMAIN_REMOTE,		/* anywhere else: relayed */
	DOMAIN_LOCAL,		/* myhostname or local_domains: system users and aliases */
	DOMAIN_VIRTUAL,		/* virtual_domains: passwd-file users and full-address aliases */
};

/* Return the class of DOMAIN (case-insensitive). An empty domain is local. */
enum domain_class domain_classify(const char *domain);

#endif
